//! Kubernetes Events about claims (`events.k8s.io/v1`), the ones
//! `kubectl describe` shows. The same event repeated within
//! [`SERIES_WINDOW`] becomes a series on the first Event (a patch of its
//! count and last time), as client-go's recorder does, so a retry loop writes
//! one Event, not one per try.
//!
//! kube-runtime's `Recorder` does the same, but it keeps a clone of every
//! Event it wrote for six minutes and scans all of them on each publish.
//! After a burst at fleet scale, that cache was the controller's largest
//! allocation, about 3.5 KB per claim, and each Event cost time linear in the
//! number of claims. Here a repeat is found by a 64-bit key in a bounded map.
//! Entries expire in the order they were written.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// How long a repeat joins the first Event's series (client-go: 6 minutes).
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// Most events remembered for series; past it the oldest are forgotten early
/// (a repeat of one of those starts a new Event).
const MAX_REMEMBERED: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Publishes Events as one reporting controller and instance.
pub struct Events {
    client: Client,
    controller: String,
    instance: String,
    keys: std::hash::RandomState,
    remembered: Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    by_key: HashMap<u64, Written>,
    /// Keys in the order they were written or repeated (a key repeated is
    /// listed again; its older places are skipped when they come up).
    order: VecDeque<(Timestamp, u64)>,
}

/// An Event written (in the namespace of what it regards, part of the key).
struct Written {
    name: String,
    count: i32,
    last: Timestamp,
}

impl Remembered {
    fn expire(&mut self, now: Timestamp) {
        while let Some(&(at, key)) = self.order.front() {
            let full = self.by_key.len() > MAX_REMEMBERED || self.order.len() > 4 * MAX_REMEMBERED;
            if !full && at + SERIES_WINDOW > now {
                break;
            }
            self.order.pop_front();
            // Only the entry's latest place removes it, unless memory is full.
            if self.by_key.get(&key).is_some_and(|w| full || w.last == at) {
                self.by_key.remove(&key);
            }
        }
    }
}

impl Events {
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Events {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            keys: std::hash::RandomState::new(),
            remembered: Mutex::default(),
        }
    }

    /// Publishes an Event about `regarding`, or counts a repeat of one.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let key = self.keys.hash_one((
            &regarding.uid,
            &regarding.namespace,
            &regarding.name,
            type_,
            reason,
            action,
            note,
        ));
        let now = Timestamp::now();
        let repeat = {
            let mut r = self.lock();
            r.expire(now);
            let repeat = r.by_key.get_mut(&key).map(|w| {
                w.count = w.count.saturating_add(1);
                w.last = now;
                (w.name.clone(), w.count)
            });
            if repeat.is_some() {
                r.order.push_back((now, key));
            }
            repeat
        };
        if let Some((name, count)) = repeat {
            let series = EventSeries {
                count,
                last_observed_time: MicroTime(now),
            };
            let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
            match api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "series": series })),
                )
                .await
            {
                Ok(_) => return Ok(()),
                // Deleted meanwhile (an Event's time to live, or by hand): a new one.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            regarding: Some(regarding.clone()),
            type_: Some(type_.as_str().to_string()),
            reason: Some(reason.to_string()),
            action: Some(action.to_string()),
            note: Some(note.to_string()),
            ..Default::default()
        };
        Api::<Event>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &event)
            .await?;
        let mut r = self.lock();
        r.by_key.insert(
            key,
            Written {
                name,
                count: 1,
                last: now,
            },
        );
        r.order.push_back((now, key));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.remembered.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(last: Timestamp) -> Written {
        Written {
            name: "n".into(),
            count: 1,
            last,
        }
    }

    #[test]
    fn entries_expire_after_the_window_and_a_repeat_keeps_its_entry() {
        let t0 = Timestamp::UNIX_EPOCH + SignedDuration::from_hours(1);
        let mut r = Remembered::default();
        r.by_key.insert(1, written(t0));
        r.order.push_back((t0, 1));
        r.by_key.insert(2, written(t0));
        r.order.push_back((t0, 2));
        // Key 2 repeated a minute later: its entry lives on from then.
        let t1 = t0 + SignedDuration::from_mins(1);
        r.by_key.get_mut(&2).expect("2").last = t1;
        r.order.push_back((t1, 2));

        r.expire(t0 + SERIES_WINDOW - SignedDuration::from_secs(1));
        assert_eq!(r.by_key.len(), 2, "nothing is older than the window yet");
        r.expire(t0 + SERIES_WINDOW);
        assert!(!r.by_key.contains_key(&1), "1 expired");
        assert!(r.by_key.contains_key(&2), "2 was repeated since");
        r.expire(t1 + SERIES_WINDOW);
        assert!(r.by_key.is_empty() && r.order.is_empty());
    }

    #[test]
    fn memory_is_bounded_whatever_the_rate() {
        let t0 = Timestamp::UNIX_EPOCH + SignedDuration::from_hours(1);
        let mut r = Remembered::default();
        for key in 0..(3 * MAX_REMEMBERED as u64) {
            r.expire(t0);
            r.by_key.insert(key, written(t0));
            r.order.push_back((t0, key));
        }
        r.expire(t0);
        assert!(r.by_key.len() <= MAX_REMEMBERED, "{}", r.by_key.len());
        assert!(r.order.len() <= MAX_REMEMBERED, "{}", r.order.len());
        assert!(
            r.by_key.contains_key(&(3 * MAX_REMEMBERED as u64 - 1)),
            "the newest stay"
        );
    }
}
