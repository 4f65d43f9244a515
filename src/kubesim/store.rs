//! The object store and its watch hub.
//!
//! One lock guards every object and the cluster-wide resourceVersion counter,
//! so a handler's read-check-write is atomic, as etcd's transactions make it
//! for kube-apiserver. Every committed change is kept in a history bounded by
//! count and by bytes, which serves watches resuming from a resourceVersion,
//! lists of older versions and live watches alike: a commit only announces
//! its resourceVersion, and each watch reads the changes after the last one
//! it sent. So no per-watch buffer holds objects, and a watch that falls
//! behind the history gets `410 Gone`, as one that falls behind
//! kube-apiserver's watch cache does.
//!
//! Stored objects are kept serialized ([`Stored`]) and shared (`Arc`) between
//! the store, the history and the watch feed: a reader takes references under
//! the lock and parses or splices them after releasing it, so a list never
//! holds writes up for longer than taking its page's references. The
//! serialized form is what keeps memory proportional to the data: a parsed
//! `serde_json::Value` gives every non-empty map (managedFields is made of
//! them) a B-tree node of its own, some 30 times the object's JSON.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

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
    pub object: Arc<Stored>,
    /// The state before the change (for selector transitions and older snapshots).
    pub old: Option<Arc<Stored>>,
}

pub(crate) type ObjectKey = (String, String);

impl Change {
    /// What the change adds to the history's size (shared objects counted
    /// in full, so the bound errs on the safe side).
    fn bytes(&self) -> usize {
        self.object.json.len() + self.old.as_ref().map_or(0, |o| o.json.len())
    }
}

/// A stored object as its JSON text, and the `apiVersion` it was stored
/// with (a reader in that version can send the text as it is).
#[derive(Debug)]
pub(crate) struct Stored {
    json: Box<str>,
    api_version: Box<str>,
}

impl Stored {
    fn new(object: &Value) -> Stored {
        Stored {
            json: object.to_string().into_boxed_str(),
            api_version: object
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
        }
    }

    /// The object, parsed (a copy the caller owns).
    pub(crate) fn value(&self) -> Value {
        // The text was serialized from a Value, so it parses.
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }

    /// The JSON text, as stored.
    pub(crate) fn json(&self) -> &str {
        &self.json
    }

    pub(crate) fn api_version(&self) -> &str {
        &self.api_version
    }
}

pub(crate) struct State {
    rv: u64,
    objects: HashMap<String, BTreeMap<ObjectKey, Arc<Stored>>>,
    history: VecDeque<Arc<Change>>,
    /// The history's size: the JSON of every change's new and old object.
    history_bytes: usize,
    /// Watches may resume only from resourceVersions at or after this one.
    oldest_resumable: u64,
    limits: HistoryLimits,
    /// The last committed resourceVersion, for live watches to wake on.
    tx: watch::Sender<u64>,
}

/// How much change history is kept: at most `changes` changes and, beyond
/// the latest, `bytes` of their objects' JSON.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HistoryLimits {
    pub changes: usize,
    pub bytes: usize,
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
    pub items: Vec<(ObjectKey, Arc<Stored>)>,
    /// Whether more objects match after the last one.
    pub more: bool,
    /// How many (when counted).
    pub remaining: usize,
}

impl Store {
    pub(crate) fn new(limits: HistoryLimits) -> Store {
        let (tx, _) = watch::channel(1);
        Store {
            state: Mutex::new(State {
                rv: 1,
                objects: HashMap::new(),
                history: VecDeque::new(),
                history_bytes: 0,
                oldest_resumable: 1,
                limits,
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

    /// A copy of a stored object.
    pub(crate) fn get(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        self.get_shared(resource, ns, name).map(|o| o.value())
    }

    pub(crate) fn contains(&self, resource: &str, ns: &str, name: &str) -> bool {
        self.get_shared(resource, ns, name).is_some()
    }

    /// The stored object itself, to parse after the lock is released.
    pub(crate) fn get_shared(&self, resource: &str, ns: &str, name: &str) -> Option<&Arc<Stored>> {
        self.objects
            .get(resource)?
            .get(&(ns.to_string(), name.to_string()))
    }

    /// Objects of a resource in key order (namespace, name), optionally in one namespace.
    pub(crate) fn list<'a>(
        &'a self,
        resource: &str,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Arc<Stored>)> + 'a {
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
        keep: &dyn Fn(&Stored) -> bool,
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
        let mut overlay: BTreeMap<ObjectKey, Option<Arc<Stored>>> = BTreeMap::new();
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
        let shared = Arc::new(Stored::new(&object));
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
        self.history_bytes += change.bytes();
        self.history.push_back(change);
        while self.history.len() > self.limits.changes
            || (self.history_bytes > self.limits.bytes && self.history.len() > 1)
        {
            if let Some(dropped) = self.history.pop_front() {
                self.history_bytes -= dropped.bytes();
                self.oldest_resumable = dropped.rv;
            }
        }
        self.tx.send_replace(rv);
        object
    }

    /// Forget the history, as an etcd compaction does: watches from any
    /// earlier resourceVersion get `410 Gone`.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.history_bytes = 0;
        self.oldest_resumable = self.rv;
    }

    /// Wakes when a change is committed (the receiver has seen the changes so far).
    pub(crate) fn announcements(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// The retained changes of `resource` after resourceVersion `since`, and
    /// the resourceVersion they bring a watch to. `Err` carries the oldest
    /// resumable resourceVersion when `since` is older.
    pub(crate) fn changes_after(
        &self,
        resource: &str,
        since: u64,
    ) -> Result<(Vec<Arc<Change>>, u64), u64> {
        if since < self.oldest_resumable {
            return Err(self.oldest_resumable);
        }
        let first = self.history.partition_point(|c| c.rv <= since);
        let changes = self
            .history
            .range(first..)
            .filter(|c| c.resource == resource)
            .cloned()
            .collect();
        Ok((changes, self.rv))
    }

    pub(crate) fn oldest_resumable(&self) -> u64 {
        self.oldest_resumable
    }
}
