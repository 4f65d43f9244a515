//! The resources the server knows (built-in kinds and the given CRDs) and
//! what it tells clients about them: discovery documents, OpenAPI v3 (for
//! kubectl's field validation check and `kubectl explain`), and the
//! `meta.k8s.io/v1` Table that `kubectl get` prints.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// A printer column (`additionalPrinterColumns`).
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    pub json_path: String,
}

/// One served resource (one group/version/plural).
#[derive(Debug, Clone)]
pub(crate) struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub status_subresource: bool,
    /// Custom resources carry `metadata.generation`, a schema and a
    /// pruning/validation pipeline; built-ins here do not.
    pub custom: bool,
    pub schema: Option<Value>,
    /// The schema's CEL rules, compiled once.
    pub cel: Option<Arc<kube::core::cel::CompiledSchema>>,
    pub columns: Vec<Column>,
    /// Storage key; `events.k8s.io/v1` and core `v1` Events share one store.
    pub storage: String,
}

impl ResourceType {
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `nicipclaims.nicip.io`, as used in error messages.
    pub(crate) fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `NicIpClaim.nicip.io`, as used in `Invalid` messages.
    pub(crate) fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The verbs discovery lists, and the only ones served. CRDs are
    /// served read-only: they are the ones the server was started with.
    pub(crate) fn verbs(&self) -> &'static [&'static str] {
        match self.plural.as_str() {
            "customresourcedefinitions" => &["get", "list", "watch"],
            "namespaces" => &[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ],
            _ => &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
        }
    }

    pub(crate) fn is_event_v1(&self) -> bool {
        self.group == "events.k8s.io"
    }

    fn builtin(
        group: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        short: &[&str],
        columns: Vec<Column>,
    ) -> Self {
        ResourceType {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            short_names: short.iter().map(|s| s.to_string()).collect(),
            categories: Vec::new(),
            namespaced,
            status_subresource: plural == "namespaces",
            custom: false,
            schema: None,
            cel: None,
            columns,
            storage: if plural == "events" {
                "events".into()
            } else {
                format!("{group}/{plural}")
            },
        }
    }
}

fn column(name: &str, type_: &str, json_path: &str, priority: i32) -> Column {
    Column {
        name: name.into(),
        type_: type_.into(),
        format: String::new(),
        description: String::new(),
        priority,
        json_path: json_path.into(),
    }
}

fn age() -> Column {
    column("Age", "date", ".metadata.creationTimestamp", 0)
}

fn event_columns(extra: &[(&str, &str)]) -> Vec<Column> {
    let mut columns = vec![
        column("Type", "string", ".type", 0),
        column("Reason", "string", ".reason", 0),
    ];
    columns.extend(
        extra
            .iter()
            .map(|(name, path)| column(name, "string", path, 0)),
    );
    columns
}

/// The built-in kinds: Namespace, Secret, ServiceAccount, Event (core and
/// `events.k8s.io`), Lease, the RBAC kinds, and (read-only) CustomResourceDefinition.
pub(crate) fn builtins() -> Vec<ResourceType> {
    vec![
        ResourceType::builtin(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            vec![column(
                "Created At",
                "date",
                ".metadata.creationTimestamp",
                0,
            )],
        ),
        ResourceType::builtin(
            "",
            "Namespace",
            "namespaces",
            false,
            &["ns"],
            vec![column("Status", "string", ".status.phase", 0), age()],
        ),
        ResourceType::builtin(
            "",
            "Secret",
            "secrets",
            true,
            &[],
            vec![column("Type", "string", ".type", 0), age()],
        ),
        ResourceType::builtin(
            "",
            "Event",
            "events",
            true,
            &["ev"],
            event_columns(&[("Object", ".involvedObject.name"), ("Message", ".message")]),
        ),
        ResourceType::builtin(
            "events.k8s.io",
            "Event",
            "events",
            true,
            &["ev"],
            event_columns(&[("Note", ".note")]),
        ),
        ResourceType::builtin(
            "coordination.k8s.io",
            "Lease",
            "leases",
            true,
            &[],
            vec![column("Holder", "string", ".spec.holderIdentity", 0), age()],
        ),
        ResourceType::builtin(
            "",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["sa"],
            vec![age()],
        ),
        ResourceType::builtin(
            "rbac.authorization.k8s.io",
            "Role",
            "roles",
            true,
            &[],
            vec![column(
                "Created At",
                "date",
                ".metadata.creationTimestamp",
                0,
            )],
        ),
        ResourceType::builtin(
            "rbac.authorization.k8s.io",
            "ClusterRole",
            "clusterroles",
            false,
            &[],
            vec![column(
                "Created At",
                "date",
                ".metadata.creationTimestamp",
                0,
            )],
        ),
        ResourceType::builtin(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            "rolebindings",
            true,
            &[],
            vec![column("Role", "string", ".roleRef.name", 0), age()],
        ),
        ResourceType::builtin(
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            &[],
            vec![column("Role", "string", ".roleRef.name", 0), age()],
        ),
    ]
}

/// The served versions of a CRD.
pub(crate) fn from_crd(crd: &CustomResourceDefinition) -> Vec<ResourceType> {
    let spec = &crd.spec;
    spec.versions
        .iter()
        .filter(|v| v.served)
        .map(|v| {
            let mut columns: Vec<Column> = v
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| Column {
                    name: c.name.clone(),
                    type_: c.type_.clone(),
                    format: c.format.clone().unwrap_or_default(),
                    description: c.description.clone().unwrap_or_default(),
                    priority: c.priority.unwrap_or(0),
                    json_path: c.json_path.clone(),
                })
                .collect();
            // kube-apiserver adds Age only when the CRD declares no columns.
            if v.additional_printer_columns.is_none() {
                columns.push(age());
            }
            let schema = v
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .and_then(|s| serde_json::to_value(s).ok());
            ResourceType {
                group: spec.group.clone(),
                version: v.name.clone(),
                kind: spec.names.kind.clone(),
                plural: spec.names.plural.clone(),
                singular: spec
                    .names
                    .singular
                    .clone()
                    .unwrap_or_else(|| spec.names.kind.to_lowercase()),
                short_names: spec.names.short_names.clone().unwrap_or_default(),
                categories: spec.names.categories.clone().unwrap_or_default(),
                namespaced: spec.scope == "Namespaced",
                status_subresource: v.subresources.as_ref().is_some_and(|s| s.status.is_some()),
                custom: true,
                cel: schema
                    .as_ref()
                    .map(|s| Arc::new(super::schema::compile_cel(s))),
                schema,
                columns,
                storage: format!("{}/{}", spec.group, spec.names.plural),
            }
        })
        .collect()
}

pub(crate) fn versions_doc(addr: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]})
}

fn groups_in_order(types: &[ResourceType]) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, versions)) if !versions.contains(&t.version) => {
                versions.push(t.version.clone())
            }
            Some(_) => {}
            None => groups.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    groups
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

pub(crate) fn group_list_doc(types: &[ResourceType]) -> Value {
    let groups: Vec<Value> = groups_in_order(types)
        .iter()
        .map(|(g, vs)| group_doc(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub(crate) fn group_doc_for(types: &[ResourceType], group: &str) -> Option<Value> {
    groups_in_order(types)
        .iter()
        .find(|(g, _)| g == group)
        .map(|(g, vs)| {
            let mut doc = group_doc(g, vs);
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            doc
        })
}

pub(crate) fn resource_list_doc(
    types: &[ResourceType],
    group: &str,
    version: &str,
) -> Option<Value> {
    let mut resources = Vec::new();
    for t in types
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        let mut r = json!({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
            "verbs": t.verbs(),
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        if t.status_subresource {
            resources.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced,
                "kind": t.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// `/openapi/v3`: one document per group/version.
pub(crate) fn openapi_root(types: &[ResourceType]) -> Value {
    let mut paths = Map::new();
    let mut gvs: Vec<String> = types.iter().map(gv_path).collect();
    gvs.dedup();
    for gv in gvs {
        paths.insert(
            gv.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{gv}")}),
        );
    }
    json!({"paths": paths})
}

fn gv_path(t: &ResourceType) -> String {
    if t.group.is_empty() {
        format!("api/{}", t.version)
    } else {
        format!("apis/{}/{}", t.group, t.version)
    }
}

fn schema_name(t: &ResourceType) -> String {
    let reversed: Vec<&str> = t.group.split('.').rev().collect();
    if t.group.is_empty() {
        format!("io.k8s.api.core.{}.{}", t.version, t.kind)
    } else {
        format!("{}.{}.{}", reversed.join("."), t.version, t.kind)
    }
}

/// One group/version's OpenAPI v3 document: the object schemas (what
/// `kubectl explain` reads) and PATCH operations declaring `fieldValidation`
/// (how kubectl learns that the server validates fields itself).
pub(crate) fn openapi_doc(types: &[ResourceType], gv: &str) -> Option<Value> {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for t in types.iter().filter(|t| gv_path(t) == gv) {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let mut schema = t.schema.clone().unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert("metadata".into(), json!({"type": "object", "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}));
        }
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        schemas.insert(schema_name(t), schema);
        let prefix = if t.namespaced {
            format!("/{gv}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("/{gv}/{}", t.plural)
        };
        let params = json!([
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}
        ]);
        let op = |action: &str| json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk, "parameters": params});
        paths.insert(format!("{prefix}/{{name}}"), json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
        paths.insert(prefix, json!({"get": op("list"), "post": op("post")}));
    }
    if schemas.is_empty() {
        return None;
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "kubesim"}, "paths": paths,
        "components": {"schemas": schemas}}),
    )
}

/// What a Table row carries besides its cells (the `includeObject` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// An object as `PartialObjectMetadata` (metadata only, managedFields kept),
/// as kube-apiserver serves `as=PartialObjectMetadata`.
pub(crate) fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

/// The `meta.k8s.io/v1` Table of `objects`, as kube-apiserver's table convertor builds it.
pub(crate) fn table(
    t: &ResourceType,
    objects: &[&Value],
    list_meta: Value,
    include: IncludeObject,
) -> Value {
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace. It is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names", "priority": 0}),
    ];
    for c in &t.columns {
        defs.push(json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            for c in &t.columns {
                cells.push(cell(c, o));
            }
            let mut row = json!({"cells": cells});
            match include {
                IncludeObject::None => {}
                IncludeObject::Object => row["object"] = (*o).clone(),
                IncludeObject::Metadata => {
                    let mut partial = partial_metadata(o);
                    if let Some(m) = partial["metadata"].as_object_mut() {
                        m.remove("managedFields");
                    }
                    row["object"] = partial;
                }
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "rows": rows,
        "columnDefinitions": defs})
}

fn cell(c: &Column, obj: &Value) -> Value {
    let Some(value) = jsonpath(obj, &c.json_path).into_iter().next() else {
        return Value::Null;
    };
    match (c.type_.as_str(), &value) {
        ("date", Value::String(s)) => match s.parse::<jiff::Timestamp>() {
            Ok(ts) => json!(human_age(
                jiff::Timestamp::now().as_second() - ts.as_second()
            )),
            Err(_) => Value::Null,
        },
        ("string", Value::String(_)) => value,
        ("string", other) => json!(other.to_string()),
        (_, v) => v.clone(),
    }
}

/// kubectl's short duration (`5s`, `3m`, `2d`), as `translateTimestampSince` prints.
fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=599 => format!("{}m{}s", s / 60, s % 60),
        600..=10799 => format!("{}m", s / 60),
        10800..=172799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// The subset of JSONPath that printer columns use: `.a.b`, `[n]`, `[*]`
/// and filters `[?(@.type=="Ready")]`.
pub(crate) fn jsonpath(obj: &Value, path: &str) -> Vec<Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut current = vec![obj.clone()];
    let mut rest = path.trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            current = current.iter().filter_map(|v| v.get(key).cloned()).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return Vec::new();
            };
            let inner = &r[..end];
            rest = &r[end + 1..];
            current = if inner == "*" {
                current
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .collect()
            } else if let Ok(i) = inner.parse::<usize>() {
                current.iter().filter_map(|v| v.get(i).cloned()).collect()
            } else if let Some(filter) =
                inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')'))
            {
                let Some((field, want)) = filter.split_once("==") else {
                    return Vec::new();
                };
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                current
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .filter(|item| match item.get(field.trim()) {
                        Some(Value::String(s)) => s == want,
                        Some(other) => {
                            serde_json::from_str::<Value>(want).is_ok_and(|w| w == *other)
                        }
                        None => false,
                    })
                    .collect()
            } else {
                return Vec::new();
            };
        } else {
            return Vec::new();
        }
    }
    current
}

/// `events.k8s.io/v1` field name and the core `v1` Event field it is stored as.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Convert between the two Event APIs; storage holds core `v1`.
pub(crate) fn convert_event(obj: &Value, to_events_v1: bool) -> Value {
    let mut out = obj.clone();
    let Some(map) = out.as_object_mut() else {
        return out;
    };
    for (v1, core) in EVENT_FIELDS {
        let (from, to) = if to_events_v1 { (core, v1) } else { (v1, core) };
        if let Some(v) = map.remove(*from) {
            map.insert(to.to_string(), v);
        }
    }
    map.insert(
        "apiVersion".into(),
        json!(if to_events_v1 {
            "events.k8s.io/v1"
        } else {
            "v1"
        }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_filters_conditions() {
        let obj = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "X", "status": "True"}],
            "ips": [{"a": "1"}, {"a": "2"}]}});
        assert_eq!(
            jsonpath(&obj, r#".status.conditions[?(@.type=="Ready")].status"#),
            vec![json!("False")]
        );
        assert_eq!(
            jsonpath(&obj, ".status.ips[*].a"),
            vec![json!("1"), json!("2")]
        );
        assert_eq!(jsonpath(&obj, ".status.ips[1].a"), vec![json!("2")]);
        assert!(jsonpath(&obj, ".spec.nothing").is_empty());
    }

    #[test]
    fn events_round_trip_between_apis() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "regarding": {"name": "a"}, "note": "hi",
            "reportingController": "c", "reportingInstance": "i"});
        let core = convert_event(&v1, false);
        assert_eq!(core["involvedObject"]["name"], "a");
        assert_eq!(core["message"], "hi");
        assert_eq!(core["reportingComponent"], "c");
        assert_eq!(core.get("source"), None, "as kube-apiserver converts it");
        let back = convert_event(&core, true);
        assert_eq!(back["regarding"], v1["regarding"]);
        assert_eq!(back["note"], "hi");
    }
}
