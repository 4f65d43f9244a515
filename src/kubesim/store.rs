//! The object store and its watch hub.
//!
//! One lock guards every object and the cluster-wide resourceVersion counter,
//! so a handler's read-check-write is atomic, as etcd's transactions make it
//! for kube-apiserver. Every committed change is kept in a bounded history (for
//! watches resuming from a resourceVersion and lists of older versions) and
//! broadcast to live watches in resourceVersion order.
//!
//! Stored objects are shared (`Arc`) between the store, the history and the
//! watch feed: a reader takes references under the lock and copies or
//! serializes after releasing it, so a list never holds writes up for longer
//! than taking its page's references.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
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
    pub object: Arc<Value>,
    /// The state before the change (for selector transitions and older snapshots).
    pub old: Option<Arc<Value>>,
}

pub(crate) type ObjectKey = (String, String);

pub(crate) struct State {
    rv: u64,
    objects: HashMap<String, BTreeMap<ObjectKey, Arc<Value>>>,
    history: VecDeque<Arc<Change>>,
    /// Watches may resume only from resourceVersions at or after this one.
    oldest_resumable: u64,
    history_limit: usize,
    tx: broadcast::Sender<Arc<Change>>,
}

pub(crate) struct Store {
    state: Mutex<State>,
}

/// Which page [`State::page`] cuts.
pub(crate) struct PageQuery<'a> {
    /// One namespace, or all.
    pub ns: Option<&'a str>,
    /// The resourceVersion of the snapshot.
    pub at: u64,
    /// The last key of the previous page.
    pub after: Option<&'a ObjectKey>,
    pub limit: Option<usize>,
    /// Count the matches past `limit` (for `remainingItemCount`).
    pub count_rest: bool,
}

/// What [`State::page`] found.
#[derive(Default)]
pub(crate) struct Page {
    pub items: Vec<(ObjectKey, Arc<Value>)>,
    /// Whether more objects match after the last one.
    pub more: bool,
    /// How many (when counted).
    pub remaining: usize,
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
        self.get_shared(resource, ns, name).map(|o| &**o)
    }

    /// The stored object itself, to copy after the lock is released.
    pub(crate) fn get_shared(&self, resource: &str, ns: &str, name: &str) -> Option<&Arc<Value>> {
        self.objects
            .get(resource)?
            .get(&(ns.to_string(), name.to_string()))
    }

    /// Objects of a resource in key order (namespace, name), optionally in one namespace.
    pub(crate) fn list<'a>(
        &'a self,
        resource: &str,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Arc<Value>)> + 'a {
        self.objects
            .get(resource)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(move |((n, _), _)| ns.is_none_or(|want| want == n))
    }

    /// One page of a resource as it was at resourceVersion `q.at`, as etcd
    /// serves an older revision: the current objects with the retained
    /// changes after `q.at` undone, walked in key order from `q.after`, only
    /// the objects `keep` accepts, shared rather than copied. `None` when
    /// `q.at` was compacted.
    pub(crate) fn page(
        &self,
        resource: &str,
        q: &PageQuery,
        keep: &dyn Fn(&Value) -> bool,
    ) -> Option<Page> {
        let PageQuery {
            ns,
            at,
            after,
            limit,
            count_rest,
        } = *q;
        if at < self.oldest_resumable {
            return None;
        }
        // The state at `at` of every key changed since (None: it did not
        // exist); the oldest change after `at` tells, so it is applied last.
        let mut overlay: BTreeMap<ObjectKey, Option<Arc<Value>>> = BTreeMap::new();
        let later = self.history.iter().rev().take_while(|c| c.rv > at);
        for c in later.filter(|c| c.resource == resource) {
            let before = match c.kind {
                ChangeType::Added => None,
                _ => c.old.clone(),
            };
            overlay.insert(c.key.clone(), before);
        }
        let lower = match (after, ns) {
            (Some(a), Some(n)) if a.0.as_str() < n => {
                Bound::Included((n.to_string(), String::new()))
            }
            (Some(a), _) => Bound::Excluded(a.clone()),
            (None, Some(n)) => Bound::Included((n.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let in_ns = |k: &ObjectKey| ns.is_none_or(|n| k.0 == n);
        let empty = BTreeMap::new();
        let live = self.objects.get(resource).unwrap_or(&empty);
        let mut live = live
            .range((lower.clone(), Bound::Unbounded))
            .take_while(|(k, _)| in_ns(k))
            .map(|(k, v)| (k, Some(v)))
            .peekable();
        let mut changed = overlay
            .range((lower, Bound::Unbounded))
            .take_while(|(k, _)| in_ns(k))
            .map(|(k, v)| (k, v.as_ref()))
            .peekable();
        let mut page = Page::default();
        loop {
            // Merge the two ordered walks; where both have a key, `at`'s state wins.
            let next = match (live.peek(), changed.peek()) {
                (None, None) => break,
                (Some(_), None) => live.next(),
                (None, Some(_)) => changed.next(),
                (Some((a, _)), Some((b, _))) => match a.cmp(b) {
                    std::cmp::Ordering::Less => live.next(),
                    std::cmp::Ordering::Greater => changed.next(),
                    std::cmp::Ordering::Equal => {
                        live.next();
                        changed.next()
                    }
                },
            };
            let Some((key, Some(obj))) = next else {
                continue;
            };
            if !keep(obj) {
                continue;
            }
            if limit.is_some_and(|l| page.items.len() >= l) {
                page.more = true;
                if !count_rest {
                    break;
                }
                page.remaining += 1;
                continue;
            }
            page.items.push((key.clone(), obj.clone()));
        }
        Some(page)
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
        let shared = Arc::new(object);
        let objects = self.objects.entry(resource.to_string()).or_default();
        let old = match kind {
            ChangeType::Deleted => objects.remove(&key),
            _ => objects.insert(key.clone(), shared.clone()),
        };
        let change = Arc::new(Change {
            rv,
            resource: resource.to_string(),
            key,
            kind,
            object: shared.clone(),
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
        (*shared).clone()
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
