//! Field ownership: `metadata.managedFields` for updates and server-side apply.
//!
//! Field sets are the leaves of an object, addressed the way structured-merge-diff
//! does (`f:name`, `k:{"type":"Ready"}` for items of `x-kubernetes-list-type: map`
//! lists, `v:"x"` for `set` lists; other lists are atomic). The set of a manager is
//! stored in the object as `fieldsV1`, so the object stays the only state.
//!
//! Simplifications, documented in docs/kubesim.md: conflicts are detected on
//! leaves only, and `managedFields` sent by a client are ignored (the server
//! keeps its own).

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    Field(String),
    /// An item of an associative list, by its key fields (JSON object text).
    Key(String),
    /// An item of a set list, by its value (JSON text).
    Item(String),
}

pub(crate) type Path = Vec<Step>;

/// `.spec.ipv4.count`, as kube-apiserver prints a field in conflict messages.
pub(crate) fn path_text(path: &Path) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            Step::Key(k) => out.push_str(&format!("[{}]", key_text(k))),
            Step::Item(v) => out.push_str(&format!("[={v}]")),
        }
    }
    out
}

fn key_text(k: &str) -> String {
    match serde_json::from_str::<Map<String, Value>>(k) {
        Ok(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        Err(_) => k.to_string(),
    }
}

/// The schema of `metadata`, which CRD schemas do not carry.
fn metadata_schema() -> Value {
    json!({"type": "object", "properties": {
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"]}
    }})
}

fn child_schema<'a>(schema: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let s = schema?;
    s.get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
}

/// Which top-level parts of an object a write may own: the main resource
/// owns everything but status (when status is a subresource), the status
/// subresource only status.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Main { status_is_subresource: bool },
    Status,
}

/// What a write can own in an object: its leaves with their values (list
/// items and empty maps included, as structured-merge-diff counts them), and
/// the maps and lists holding them, which an update that creates them owns too.
#[derive(Default)]
pub(crate) struct Owned {
    pub leaves: BTreeMap<Path, Value>,
    pub containers: BTreeSet<Path>,
}

/// Every owned leaf of `obj` with its value.
pub(crate) fn leaves(schema: Option<&Value>, obj: &Value, scope: Scope) -> BTreeMap<Path, Value> {
    owned(schema, obj, scope).leaves
}

/// The leaves and containers of `obj` that a write in `scope` may own
/// (`metadata` itself never: kube-apiserver strips it from every set).
pub(crate) fn owned(schema: Option<&Value>, obj: &Value, scope: Scope) -> Owned {
    let mut out = Owned::default();
    let Some(map) = obj.as_object() else {
        return out;
    };
    let meta_schema = metadata_schema();
    for (key, value) in map {
        let included = match (scope, key.as_str()) {
            (_, "apiVersion" | "kind") => false,
            (Scope::Status, k) => k == "status",
            (
                Scope::Main {
                    status_is_subresource,
                },
                "status",
            ) => !status_is_subresource,
            _ => true,
        };
        if !included {
            continue;
        }
        let path = vec![Step::Field(key.clone())];
        if key == "metadata" {
            if let Some(meta) = value.as_object() {
                for k in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(v) = meta.get(k) {
                        let p = vec![Step::Field(key.clone()), Step::Field(k.into())];
                        walk(child_schema(Some(&meta_schema), k), v, p, &mut out);
                    }
                }
            }
        } else {
            walk(child_schema(schema, key), value, path, &mut out);
        }
    }
    out
}

fn walk(schema: Option<&Value>, value: &Value, path: Path, out: &mut Owned) {
    match value {
        Value::Object(map) if !map.is_empty() && !is_atomic(schema) => {
            out.containers.insert(path.clone());
            for (k, v) in map {
                let mut p = path.clone();
                p.push(Step::Field(k.clone()));
                walk(child_schema(schema, k), v, p, out);
            }
        }
        Value::Array(items) => {
            let item_schema = schema.and_then(|s| s.get("items"));
            match list_type(schema) {
                Some("set") => {
                    if !items.is_empty() {
                        out.containers.insert(path.clone());
                    }
                    for item in items {
                        let mut p = path.clone();
                        p.push(Step::Item(item.to_string()));
                        out.leaves.insert(p, Value::Null);
                    }
                }
                Some("map") => {
                    if !items.is_empty() {
                        out.containers.insert(path.clone());
                    }
                    for item in items {
                        let mut p = path.clone();
                        p.push(Step::Key(Value::Object(list_key(schema, item)).to_string()));
                        out.leaves.insert(p.clone(), Value::Null);
                        walk(item_schema, item, p, out);
                    }
                }
                _ => {
                    out.leaves.insert(path, value.clone());
                }
            }
        }
        _ => {
            out.leaves.insert(path, value.clone());
        }
    }
}

fn list_type(schema: Option<&Value>) -> Option<&str> {
    schema
        .and_then(|s| s.get("x-kubernetes-list-type"))
        .and_then(Value::as_str)
}

fn is_atomic(schema: Option<&Value>) -> bool {
    schema
        .and_then(|s| s.get("x-kubernetes-map-type"))
        .and_then(Value::as_str)
        == Some("atomic")
}

fn list_key(schema: Option<&Value>, item: &Value) -> Map<String, Value> {
    schema
        .and_then(|s| s.get("x-kubernetes-list-map-keys"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|k| item.get(k).map(|v| (k.to_string(), v.clone())))
        .collect()
}

/// One `managedFields` entry.
#[derive(Debug, Clone)]
pub(crate) struct Manager {
    pub name: String,
    pub apply: bool,
    pub subresource: Option<String>,
    pub api_version: String,
    pub time: String,
    pub fields: BTreeSet<Path>,
}

impl Manager {
    fn same_identity(&self, name: &str, apply: bool, subresource: Option<&str>) -> bool {
        self.name == name && self.apply == apply && self.subresource.as_deref() == subresource
    }
}

pub(crate) fn read_managers(obj: &Value) -> Vec<Manager> {
    let entries = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array);
    entries
        .into_iter()
        .flatten()
        .map(|e| {
            let mut fields = BTreeSet::new();
            if let Some(f) = e.get("fieldsV1") {
                parse_fields(f, Vec::new(), &mut fields);
            }
            Manager {
                name: e
                    .get("manager")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                apply: e.get("operation").and_then(Value::as_str) == Some("Apply"),
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                api_version: e
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                time: e
                    .get("time")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                fields,
            }
        })
        .collect()
}

fn parse_fields(node: &Value, path: Path, out: &mut BTreeSet<Path>) {
    let Some(map) = node.as_object() else { return };
    if (map.is_empty() || map.contains_key(".")) && !path.is_empty() {
        out.insert(path.clone());
    }
    for (k, v) in map {
        let step = if let Some(f) = k.strip_prefix("f:") {
            Step::Field(f.to_string())
        } else if let Some(key) = k.strip_prefix("k:") {
            Step::Key(key.to_string())
        } else if let Some(item) = k.strip_prefix("v:") {
            Step::Item(item.to_string())
        } else {
            continue;
        };
        let mut p = path.clone();
        p.push(step);
        parse_fields(v, p, out);
    }
}

fn render_fields(fields: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for (i, step) in path.iter().enumerate() {
            let key = match step {
                Step::Field(f) => format!("f:{f}"),
                Step::Key(k) => format!("k:{k}"),
                Step::Item(v) => format!("v:{v}"),
            };
            let entry = node.entry(key).or_insert_with(|| json!({}));
            let Some(next) = entry.as_object_mut() else {
                break;
            };
            node = next;
            let last = i + 1 == path.len();
            let owned_itself = if last {
                !node.is_empty()
            } else {
                fields.contains(&path[..=i].to_vec())
            };
            if owned_itself {
                node.insert(".".into(), json!({}));
            }
        }
    }
    Value::Object(root)
}

pub(crate) fn write_managers(obj: &mut Value, managers: &[Manager]) {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut e = json!({
                "manager": m.name,
                "operation": if m.apply { "Apply" } else { "Update" },
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": render_fields(&m.fields),
            });
            if let Some(s) = &m.subresource {
                e["subresource"] = json!(s);
            }
            e
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// Who is writing, for `managedFields`.
pub(crate) struct Writer<'a> {
    pub manager: &'a str,
    pub subresource: Option<&'a str>,
    pub api_version: &'a str,
    pub now: &'a str,
    pub scope: Scope,
}

/// Record an `Update` (create, replace, merge/JSON patch): the writer takes the
/// fields it changed from every other manager, and owns the maps, lists and
/// list items it created (`.` entries in `fieldsV1`), as structured-merge-diff
/// compares the old object with the new one.
pub(crate) fn record_update(
    schema: Option<&Value>,
    old: Option<&Value>,
    new: &mut Value,
    w: &Writer,
) {
    let mut managers = old.map(read_managers).unwrap_or_default();
    let before = old.map(|o| owned(schema, o, w.scope)).unwrap_or_default();
    let after = owned(schema, new, w.scope);
    let changed: BTreeSet<Path> = after
        .leaves
        .iter()
        .filter(|(p, v)| before.leaves.get(*p) != Some(*v))
        .map(|(p, _)| p.clone())
        .chain(
            before
                .leaves
                .keys()
                .filter(|p| !after.leaves.contains_key(*p))
                .cloned(),
        )
        .collect();
    let in_scope = |p: &Path| {
        let top = match p.first() {
            Some(Step::Field(f)) => f.as_str(),
            _ => "",
        };
        (top == "status") == (w.scope == Scope::Status)
            || matches!(
                w.scope,
                Scope::Main {
                    status_is_subresource: false
                }
            )
    };
    for m in &mut managers {
        m.fields.retain(|p| {
            !in_scope(p)
                || (after.leaves.contains_key(p) && !changed.contains(p))
                || after.containers.contains(p)
        });
    }
    let mine: BTreeSet<Path> = changed
        .into_iter()
        .filter(|p| after.leaves.contains_key(p))
        .chain(after.containers.difference(&before.containers).cloned())
        .collect();
    if !mine.is_empty() {
        entry_for(&mut managers, w, false).fields.extend(mine);
    }
    write_managers(new, &managers);
}

/// The writer's entry (created when missing), stamped with this write's time and version.
fn entry_for<'a>(managers: &'a mut Vec<Manager>, w: &Writer, apply: bool) -> &'a mut Manager {
    let pos = match managers
        .iter()
        .position(|m| m.same_identity(w.manager, apply, w.subresource))
    {
        Some(pos) => pos,
        None => {
            managers.push(Manager {
                name: w.manager.to_string(),
                apply,
                subresource: w.subresource.map(str::to_string),
                api_version: String::new(),
                time: String::new(),
                fields: BTreeSet::new(),
            });
            managers.len() - 1
        }
    };
    let m = &mut managers[pos];
    m.time = w.now.to_string();
    m.api_version = w.api_version.to_string();
    m
}

/// A field another manager owns with a different value.
pub(crate) struct Conflict {
    pub manager: String,
    pub path: Path,
    /// The owner's `managedFields` entry, for naming it as kube-apiserver does.
    pub apply: bool,
    pub subresource: Option<String>,
    pub api_version: String,
}

impl Conflict {
    /// `"alice"` for an applier; `"bob" using v1` for an updater;
    /// `with subresource "status"` when it wrote through one.
    pub(crate) fn manager_text(&self) -> String {
        let mut text = serde_json::Value::String(self.manager.clone()).to_string();
        if let Some(s) = &self.subresource {
            text.push_str(&format!(" with subresource {}", Value::String(s.clone())));
        }
        if !self.apply {
            text.push_str(&format!(" using {}", self.api_version));
        }
        text
    }
}

/// Server-side apply of `config` onto `current` by `w.manager`. Returns the
/// merged object with its managedFields, or the conflicts when not forced.
pub(crate) fn apply(
    schema: Option<&Value>,
    current: &Value,
    config: &Value,
    force: bool,
    w: &Writer,
) -> Result<Value, Vec<Conflict>> {
    let mut managers = read_managers(current);
    let applied = leaves(schema, config, w.scope);
    let existing = leaves(schema, current, w.scope);
    let mut conflicts = Vec::new();
    for m in managers
        .iter_mut()
        .filter(|m| !m.same_identity(w.manager, true, w.subresource))
    {
        let lost: Vec<Path> = m
            .fields
            .iter()
            .filter(|p| applied.get(*p).is_some_and(|v| existing.get(*p) != Some(v)))
            .cloned()
            .collect();
        for p in lost {
            if force {
                m.fields.remove(&p);
            } else {
                conflicts.push(Conflict {
                    manager: m.name.clone(),
                    path: p,
                    apply: m.apply,
                    subresource: m.subresource.clone(),
                    api_version: m.api_version.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    let mut merged = current.clone();
    merge(schema, &mut merged, config, true);
    // As structured-merge-diff prunes: what this manager applied last time and
    // no longer applies goes, unless another applier (or this configuration)
    // claims it. Items go whole; a map or list emptied by the removal goes too.
    let previous = managers
        .iter()
        .find(|m| m.same_identity(w.manager, true, w.subresource))
        .map(|m| m.fields.clone())
        .unwrap_or_default();
    let claimed: BTreeSet<&Path> = managers
        .iter()
        .filter(|m| m.apply && !m.same_identity(w.manager, true, w.subresource))
        .flat_map(|m| m.fields.iter())
        .chain(applied.keys())
        .collect();
    let mut gone: BTreeSet<Path> = previous
        .into_iter()
        .filter(|p| !claimed.contains(p))
        .collect();
    // structured-merge-diff's EnsureNamedFieldsAreMembers: a struct (a field
    // with declared properties) whose fields go, goes whole, unless anything
    // under it is still claimed (its addBackOwnedItems).
    let parents: BTreeSet<Path> = gone
        .iter()
        .flat_map(|p| struct_parents(schema, p))
        .filter(|parent| !claimed.iter().any(|c| c.starts_with(parent)))
        .collect();
    gone.extend(parents);
    if !gone.is_empty() {
        merged = remove_items(schema, &merged, &gone, true).unwrap_or_else(|| json!({}));
    }
    let fields: BTreeSet<Path> = applied.into_keys().collect();
    entry_for(&mut managers, w, true).fields = fields;
    write_managers(&mut merged, &managers);
    Ok(merged)
}

/// The prefixes of `path` that are structs: fields whose schema declares
/// `properties` (not maps of `additionalProperties`, not list items).
fn struct_parents(schema: Option<&Value>, path: &Path) -> Vec<Path> {
    let meta = metadata_schema();
    let mut out = Vec::new();
    let mut current = schema;
    for i in 0..path.len().saturating_sub(1) {
        current = match &path[i] {
            Step::Field(k) if i == 0 => schema_for_top(current, k, &meta),
            Step::Field(k) => child_schema(current, k),
            _ => current.and_then(|s| s.get("items")),
        };
        let is_struct = current.is_some_and(|s| s.get("properties").is_some());
        if is_struct && matches!(path[i], Step::Field(_)) {
            out.push(path[..=i].to_vec());
        }
    }
    out
}

fn schema_for_top<'a>(schema: Option<&'a Value>, key: &str, meta: &'a Value) -> Option<&'a Value> {
    if key == "metadata" {
        Some(meta)
    } else {
        child_schema(schema, key)
    }
}

/// Structured merge: maps recursively, associative and set lists item by
/// item, everything else replaced.
fn merge(schema: Option<&Value>, into: &mut Value, from: &Value, root: bool) {
    let meta = metadata_schema();
    match (into, from) {
        (Value::Object(dst), Value::Object(src)) if !is_atomic(schema) => {
            for (k, v) in src {
                let s = if root {
                    schema_for_top(schema, k, &meta)
                } else {
                    child_schema(schema, k)
                };
                match dst.get_mut(k) {
                    Some(existing) if existing.is_object() || existing.is_array() => {
                        merge(s, existing, v, false)
                    }
                    _ => {
                        dst.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(dst), Value::Array(src))
            if matches!(list_type(schema), Some("set" | "map")) =>
        {
            *dst = merge_list(schema, dst, src);
        }
        (dst, src) => *dst = src.clone(),
    }
}

/// The identity of a list item: its key fields in a map list, its value in a set.
fn item_key(schema: Option<&Value>, item: &Value) -> Value {
    if list_type(schema) == Some("map") {
        Value::Object(list_key(schema, item))
    } else {
        item.clone()
    }
}

/// Merge two associative or set lists as structured-merge-diff orders them:
/// items only the live list has keep their place, the applied items come in
/// the configuration's order.
fn merge_list(schema: Option<&Value>, lhs: &[Value], rhs: &[Value]) -> Vec<Value> {
    let item_schema = schema.and_then(|s| s.get("items"));
    let index = |list: &[Value]| {
        let mut out: Vec<(Value, Value)> = Vec::new();
        for item in list {
            let key = item_key(schema, item);
            // Repeated keys count once, as structured-merge-diff indexes them.
            if !out.iter().any(|(k, _)| *k == key) {
                out.push((key, item.clone()));
            }
        }
        out
    };
    let (lhs, rhs) = (index(lhs), index(rhs));
    let in_rhs = |k: &Value| rhs.iter().any(|(rk, _)| rk == k);
    let merged_item = |key: &Value, from: &Value| match lhs.iter().find(|(lk, _)| lk == key) {
        Some((_, live)) if list_type(schema) == Some("map") => {
            let mut item = live.clone();
            merge(item_schema, &mut item, from, false);
            item
        }
        _ => from.clone(),
    };
    let mut shared: std::collections::VecDeque<&Value> = rhs
        .iter()
        .map(|(k, _)| k)
        .filter(|k| lhs.iter().any(|(lk, _)| lk == *k))
        .collect();
    let mut next_shared = shared.pop_front();
    let mut merged_rhs: Vec<&Value> = Vec::new();
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let (mut l, mut r) = (0, 0);
    while l < lhs.len() || r < rhs.len() {
        if l < lhs.len() && r < rhs.len() {
            let key = &lhs[l].0;
            if *key == rhs[r].0 {
                merged_rhs.push(key);
                out.push(merged_item(key, &rhs[r].1));
                l += 1;
                r += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if in_rhs(key) && next_shared.is_some_and(|n| n != key) {
                // A shared item, but not the one due now: it comes in the configuration's order.
                l += 1;
                continue;
            }
        }
        if l < lhs.len() {
            let key = &lhs[l].0;
            if !in_rhs(key) {
                out.push(lhs[l].1.clone());
                l += 1;
                continue;
            }
            if merged_rhs.contains(&key) {
                l += 1;
                continue;
            }
        }
        if r < rhs.len() {
            let key = &rhs[r].0;
            merged_rhs.push(key);
            out.push(merged_item(key, &rhs[r].1));
            r += 1;
            if next_shared == Some(key) {
                next_shared = shared.pop_front();
            }
        }
    }
    out
}

/// `value` without the items and fields in `paths` (relative to it), as
/// structured-merge-diff's `RemoveItems` and kube-apiserver's pruning of the
/// resulting `null`s leave it: `None` when nothing is left of it.
fn remove_items(
    schema: Option<&Value>,
    value: &Value,
    paths: &BTreeSet<Path>,
    root: bool,
) -> Option<Value> {
    let below = |step: &Step| -> BTreeSet<Path> {
        paths
            .iter()
            .filter(|p| p.len() > 1 && p[0] == *step)
            .map(|p| p[1..].to_vec())
            .collect()
    };
    let meta = metadata_schema();
    match value {
        Value::Object(map) if !is_atomic(schema) => {
            let mut out = Map::new();
            // A child emptied by the removal becomes a null, which pruning
            // drops from a non-nullable field: it still keeps its parent.
            let mut kept = false;
            for (k, v) in map {
                let step = Step::Field(k.clone());
                if paths.contains(&vec![step.clone()]) {
                    continue;
                }
                let sub = below(&step);
                if sub.is_empty() {
                    out.insert(k.clone(), v.clone());
                    kept = true;
                    continue;
                }
                let s = if root {
                    schema_for_top(schema, k, &meta)
                } else {
                    child_schema(schema, k)
                };
                kept = true;
                match remove_items(s, v, &sub, false) {
                    Some(rest) => {
                        out.insert(k.clone(), rest);
                    }
                    None if s.is_some_and(|s| s.get("nullable") == Some(&Value::Bool(true))) => {
                        out.insert(k.clone(), Value::Null);
                    }
                    None => {}
                }
            }
            kept.then_some(Value::Object(out))
        }
        Value::Array(items) if matches!(list_type(schema), Some("set" | "map")) => {
            let item_schema = schema.and_then(|s| s.get("items"));
            let mut out = Vec::new();
            for item in items {
                let key = item_key(schema, item).to_string();
                let step = if list_type(schema) == Some("map") {
                    Step::Key(key)
                } else {
                    Step::Item(key)
                };
                if paths.contains(&vec![step.clone()]) {
                    continue;
                }
                let sub = below(&step);
                if sub.is_empty() {
                    out.push(item.clone());
                } else if let Some(rest) = remove_items(item_schema, item, &sub, false) {
                    out.push(rest);
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => Some(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}},
            "status": {"type": "object", "properties": {"conditions": {"type": "array",
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                "items": {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}}}}}})
    }

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            subresource: None,
            api_version: "x/v1",
            now: "t",
            scope: Scope::Main {
                status_is_subresource: true,
            },
        }
    }

    #[test]
    fn apply_merges_conflicts_and_removes_dropped_fields() {
        let s = schema();
        let base = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n"}});
        let one = apply(
            Some(&s),
            &base,
            &json!({"spec": {"a": "1", "tags": ["x"]}}),
            false,
            &writer("one"),
        )
        .ok()
        .expect("applies");
        let two = apply(
            Some(&s),
            &one,
            &json!({"spec": {"b": "2", "tags": ["y"]}}),
            false,
            &writer("two"),
        )
        .ok()
        .expect("applies");
        assert_eq!(two["spec"], json!({"a": "1", "b": "2", "tags": ["x", "y"]}));
        let Err(conflicts) = apply(
            Some(&s),
            &two,
            &json!({"spec": {"a": "other"}}),
            false,
            &writer("two"),
        ) else {
            panic!("expected a conflict")
        };
        assert_eq!(conflicts.len(), 1);
        assert_eq!(
            (conflicts[0].manager.as_str(), path_text(&conflicts[0].path)),
            ("one", ".spec.a".to_string())
        );
        // "one" drops its tag and field a; "two" still owns tag y and b.
        let three = apply(Some(&s), &two, &json!({"spec": {}}), false, &writer("one"))
            .ok()
            .expect("applies");
        assert_eq!(three["spec"], json!({"b": "2", "tags": ["y"]}));
        let one_fields = &three["metadata"]["managedFields"][0];
        assert_eq!(one_fields["manager"], "one");
        assert_eq!(
            one_fields["fieldsV1"],
            json!({"f:spec": {}}),
            "an empty map in the config is owned as a leaf"
        );
    }

    #[test]
    fn applied_items_follow_the_configuration_and_others_keep_their_place() {
        let s = schema();
        let conditions = s.pointer("/properties/status/properties/conditions");
        let item = |t: &str, st: &str| json!({"type": t, "status": st});
        let merged = merge_list(
            conditions,
            &[item("A", "1"), item("X", "1"), item("B", "1")],
            &[item("B", "2"), item("A", "2")],
        );
        assert_eq!(merged, [item("X", "1"), item("B", "2"), item("A", "2")]);
        let gone: BTreeSet<Path> = [vec![
            Step::Field("status".into()),
            Step::Field("conditions".into()),
            Step::Key(r#"{"type":"X"}"#.into()),
        ]]
        .into();
        let obj = json!({"status": {"conditions": [item("X", "1")], "other": 1}});
        assert_eq!(
            remove_items(Some(&s), &obj, &gone, true),
            Some(json!({"status": {"other": 1}})),
            "a list emptied by the removal goes"
        );
    }

    #[test]
    fn fields_v1_round_trips() {
        let s = schema();
        let obj = json!({"metadata": {"labels": {"a": "b"}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let fields: BTreeSet<Path> = leaves(Some(&s), &obj, Scope::Status).into_keys().collect();
        let rendered = render_fields(&fields);
        assert_eq!(
            rendered,
            json!({"f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}}}}})
        );
        let mut back = BTreeSet::new();
        parse_fields(&rendered, Vec::new(), &mut back);
        assert_eq!(back, fields);
    }
}
