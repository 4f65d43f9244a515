//! The object store and its watch hub.
//!
//! One lock guards every object and the cluster-wide resourceVersion counter,
//! so a handler's read-check-write is atomic, as etcd's transactions make it
//! for kube-apiserver. Every committed change is kept in a bounded history (for
//! watches resuming from a resourceVersion) and broadcast to live watches in
//! resourceVersion order.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One committed write.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    /// The resource's storage key (`group/plural`).
    pub resource: String,
    /// The object's key (namespace, name).
    pub key: ObjectKey,
    pub kind: ChangeType,
    /// The new object; for a deletion, the last state with the deletion's resourceVersion.
    pub object: Value,
    /// The state before the change (for selector transitions).
    pub old: Option<Value>,
}

pub(crate) type ObjectKey = (String, String);

pub(crate) struct State {
    rv: u64,
    objects: HashMap<String, BTreeMap<ObjectKey, Value>>,
    history: VecDeque<Arc<Change>>,
    /// Watches may resume only from resourceVersions at or after this one.
    oldest_resumable: u64,
    history_limit: usize,
    tx: broadcast::Sender<Arc<Change>>,
}

pub(crate) struct Store {
    state: Mutex<State>,
}

/// A watch's starting point: the changes it must replay and the live feed.
pub(crate) struct Subscription {
    pub backlog: Vec<Arc<Change>>,
    pub live: broadcast::Receiver<Arc<Change>>,
    pub start_rv: u64,
}

impl Store {
    pub(crate) fn new(history_limit: usize) -> Store {
        let (tx, _) = broadcast::channel(4096);
        Store {
            state: Mutex::new(State {
                rv: 1,
                objects: HashMap::new(),
                history: VecDeque::new(),
                oldest_resumable: 1,
                history_limit,
                tx,
            }),
        }
    }

    /// Lock the store; a panic in another handler cannot poison the data
    /// (every write is a single insert/remove), so a poisoned lock is recovered.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    pub(crate) fn current_rv(&self) -> u64 {
        self.rv
    }

    pub(crate) fn get(&self, resource: &str, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(resource)?
            .get(&(ns.to_string(), name.to_string()))
    }

    /// Objects of a resource in key order (namespace, name), optionally in one namespace.
    pub(crate) fn list<'a>(
        &'a self,
        resource: &str,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Value)> + 'a {
        self.objects
            .get(resource)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(move |((n, _), _)| ns.is_none_or(|want| want == n))
    }

    /// The objects of a resource (optionally in one namespace) as they were at
    /// resourceVersion `at`, in key order: the current state with the retained
    /// changes after `at` undone, as etcd serves an older revision. `None`
    /// when `at` is older than the history (compacted).
    pub(crate) fn list_at(
        &self,
        resource: &str,
        ns: Option<&str>,
        at: u64,
    ) -> Option<Vec<(ObjectKey, Value)>> {
        if at < self.oldest_resumable {
            return None;
        }
        let mut objects: BTreeMap<ObjectKey, Value> = self
            .list(resource, ns)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let later = self.history.iter().rev().take_while(|c| c.rv > at);
        for c in later.filter(|c| c.resource == resource) {
            if ns.is_some_and(|want| want != c.key.0) {
                continue;
            }
            match (c.kind, &c.old) {
                (ChangeType::Added, _) | (_, None) => {
                    objects.remove(&c.key);
                }
                (_, Some(old)) => {
                    objects.insert(c.key.clone(), old.clone());
                }
            }
        }
        Some(objects.into_iter().collect())
    }

    /// Store `object` (stamping its resourceVersion) or delete it, and publish the change.
    pub(crate) fn commit(
        &mut self,
        resource: &str,
        ns: &str,
        name: &str,
        kind: ChangeType,
        mut object: Value,
    ) -> Value {
        self.rv += 1;
        let rv = self.rv;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let key = (ns.to_string(), name.to_string());
        let objects = self.objects.entry(resource.to_string()).or_default();
        let old = match kind {
            ChangeType::Deleted => objects.remove(&key),
            _ => objects.insert(key.clone(), object.clone()),
        };
        let change = Arc::new(Change {
            rv,
            resource: resource.to_string(),
            key,
            kind,
            object: object.clone(),
            old,
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.oldest_resumable = dropped.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(change);
        object
    }

    /// Forget the history, as an etcd compaction does: watches from any
    /// earlier resourceVersion get `410 Gone`.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.oldest_resumable = self.rv;
    }

    /// Start a watch of `resource` after `since` (replaying retained changes),
    /// or from now when `since` is `None`. `Err` carries the oldest resumable
    /// resourceVersion when `since` is older.
    pub(crate) fn subscribe(
        &self,
        resource: &str,
        since: Option<u64>,
    ) -> Result<Subscription, u64> {
        let live = self.tx.subscribe();
        let Some(since) = since else {
            return Ok(Subscription {
                backlog: Vec::new(),
                live,
                start_rv: self.rv,
            });
        };
        if since < self.oldest_resumable {
            return Err(self.oldest_resumable);
        }
        let backlog = self
            .history
            .iter()
            .filter(|c| c.rv > since && c.resource == resource)
            .cloned()
            .collect();
        Ok(Subscription {
            backlog,
            live,
            start_rv: self.rv,
        })
    }

    pub(crate) fn oldest_resumable(&self) -> u64 {
        self.oldest_resumable
    }
}
