//! kube-apiserver's own checks of the built-in kinds a controller writes:
//! Secrets (`ValidateSecret`, `ValidateSecretUpdate`), Leases
//! (`ValidateLeaseSpec`) and Events (`ValidateEventCreate`,
//! `ValidateEventUpdate`), and the decoding of `MicroTime` fields, which a
//! real server refuses with a 400 before any validation.
//!
//! Events are checked in their stored (core `v1`) layout, as kube-apiserver
//! does after converting them, so the field paths are core's (`involvedObject`,
//! `message`); what `events.k8s.io/v1` adds is checked for requests of that API.

use super::discovery::ResourceType;
use super::schema::FieldError;
use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;

fn required(field: &str) -> FieldError {
    FieldError {
        field: field.into(),
        reason: "FieldValueRequired".into(),
        message: "Required value".into(),
    }
}

fn invalid(field: &str, value: &Value, detail: &str) -> FieldError {
    FieldError {
        field: field.into(),
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {value}: {detail}"),
    }
}

fn forbidden(field: &str, detail: &str) -> FieldError {
    FieldError {
        field: field.into(),
        reason: "FieldValueForbidden".into(),
        message: format!("Forbidden: {detail}"),
    }
}

fn text<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The `MicroTime` fields of a kind (RFC 3339 with exactly six fractional
/// digits), as JSON pointers into the stored layout.
fn micro_time_fields(t: &ResourceType) -> &'static [&'static str] {
    match t.plural.as_str() {
        "leases" => &["/spec/acquireTime", "/spec/renewTime"],
        "events" => &["/eventTime", "/series/lastObservedTime"],
        _ => &[],
    }
}

/// Go's `time.Parse` with `MicroTime`'s layout: a value without exactly six
/// fractional digits does not decode, so the request is a 400.
pub(crate) fn check_micro_times(t: &ResourceType, obj: &Value) -> Result<(), String> {
    const LAYOUT: &str = "2006-01-02T15:04:05.000000Z07:00";
    static MICRO: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$")
            .expect("a valid pattern")
    });
    for pointer in micro_time_fields(t) {
        let Some(Value::String(s)) = obj.pointer(pointer) else {
            continue;
        };
        if MICRO.is_match(s) {
            continue;
        }
        // Name the part Go stops at: after the seconds it wants `.000000`.
        let detail = match s.get(19..) {
            Some(rest) if s.len() >= 19 && !rest.starts_with('.') => {
                format!(
                    ": cannot parse {} as \".000000\"",
                    Value::String(rest.into())
                )
            }
            _ => String::new(),
        };
        return Err(format!(
            "{kind} in version \"v1\" cannot be handled as a {kind}: parsing time {} as \"{LAYOUT}\"{detail}",
            Value::String(s.clone()),
            kind = t.kind
        ));
    }
    Ok(())
}

/// The built-in kind's validation, as kube-apiserver's strategy runs it.
pub(crate) fn validate(t: &ResourceType, new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    match t.plural.as_str() {
        "secrets" => secret(new, old),
        "leases" => lease(new),
        "events" => event(t.is_event_v1(), new, old),
        "rolebindings" | "clusterrolebindings" => role_binding(new, old),
        _ => Vec::new(),
    }
}

/// `ValidateRoleBinding(Update)`: a binding names a role, and never another one.
fn role_binding(new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let role_ref = new.get("roleRef").cloned().unwrap_or(Value::Null);
    if text(&role_ref, "/name").is_empty() {
        return vec![required("roleRef.name")];
    }
    if !matches!(text(&role_ref, "/kind"), "Role" | "ClusterRole") {
        return vec![FieldError {
            field: "roleRef.kind".into(),
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "Unsupported value: {}: supported values: \"Role\", \"ClusterRole\"",
                role_ref.get("kind").cloned().unwrap_or(Value::Null)
            ),
        }];
    }
    match old.and_then(|o| o.get("roleRef")) {
        Some(before) if *before != role_ref => {
            vec![invalid("roleRef", &role_ref, "cannot change roleRef")]
        }
        _ => Vec::new(),
    }
}

/// `IsConfigMapKey`, which Secret data keys must pass.
fn config_key_errors(key: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if key.len() > 253 {
        errs.push("must be no more than 253 characters");
    }
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        errs.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')");
    }
    match key {
        "." => errs.push("must not be '.'"),
        ".." => errs.push("must not be '..'"),
        k if k.starts_with("..") => errs.push("must not start with '..'"),
        _ => {}
    }
    errs
}

fn secret(new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(old) = old {
        let (now, before) = (text(new, "/type"), text(old, "/type"));
        if now != before {
            errs.push(invalid(
                "type",
                &Value::String(now.into()),
                "field is immutable",
            ));
        }
        if old.get("immutable") == Some(&Value::Bool(true)) {
            if new.get("immutable") != Some(&Value::Bool(true)) {
                errs.push(forbidden(
                    "immutable",
                    "field is immutable when `immutable` is set",
                ));
            }
            if new.get("data") != old.get("data") {
                errs.push(forbidden(
                    "data",
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }
    let data = new.get("data").and_then(Value::as_object);
    let mut keys: Vec<&String> = data.into_iter().flat_map(|d| d.keys()).collect();
    keys.sort();
    for key in keys {
        for msg in config_key_errors(key) {
            errs.push(invalid(
                &format!("data[{key}]"),
                &Value::String(key.clone()),
                msg,
            ));
        }
    }
    let has = |key: &str| data.is_some_and(|d| d.contains_key(key));
    match text(new, "/type") {
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    errs.push(required(&format!("data[{key}]")));
                }
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(required("data[username]"));
            errs.push(required("data[password]"));
        }
        "kubernetes.io/ssh-auth" if !has("ssh-privatekey") => {
            errs.push(required("data[ssh-privatekey]"));
        }
        _ => {}
    }
    errs
}

fn lease(new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(d) = new.pointer("/spec/leaseDurationSeconds")
        && d.as_i64().is_some_and(|d| d <= 0)
    {
        errs.push(invalid(
            "spec.leaseDurationSeconds",
            d,
            "must be greater than 0",
        ));
    }
    if let Some(n) = new.pointer("/spec/leaseTransitions")
        && n.as_i64().is_some_and(|n| n < 0)
    {
        errs.push(invalid(
            "spec.leaseTransitions",
            n,
            "must be greater than or equal to 0",
        ));
    }
    errs
}

const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

fn event(events_v1: bool, new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let empty = Value::String(String::new());
    let mut errs = Vec::new();
    let ns = text(new, "/metadata/namespace");
    let regarding_ns = text(new, "/involvedObject/namespace");
    let has_time = !text(new, "/eventTime").is_empty();
    if !has_time {
        // An old-style Event: its namespace must be its object's.
        let agrees = if regarding_ns.is_empty() {
            ns.is_empty() || ns == "default"
        } else {
            ns == regarding_ns
        };
        if !agrees {
            errs.push(invalid(
                "involvedObject.namespace",
                &Value::String(regarding_ns.into()),
                "does not match event.namespace",
            ));
        }
    } else {
        if regarding_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(invalid(
                "involvedObject.namespace",
                &Value::String(regarding_ns.into()),
                "does not match event.namespace",
            ));
        }
        let controller_field = if events_v1 {
            "reportingController"
        } else {
            "reportingComponent"
        };
        if text(new, "/reportingComponent").is_empty() {
            errs.push(required(controller_field));
        }
        for (pointer, field, limit) in [
            (
                "/reportingInstance",
                "reportingInstance",
                REPORTING_INSTANCE_LIMIT,
            ),
            ("/action", "action", ACTION_LIMIT),
            ("/reason", "reason", REASON_LIMIT),
        ] {
            let value = text(new, pointer);
            if value.is_empty() {
                errs.push(required(field));
            } else if value.len() > limit {
                errs.push(invalid(
                    field,
                    &empty,
                    &format!("can have at most {limit} characters"),
                ));
            }
        }
        if text(new, "/message").len() > NOTE_LIMIT {
            errs.push(invalid(
                "message",
                &empty,
                &format!("can have at most {NOTE_LIMIT} characters"),
            ));
        }
    }
    if !events_v1 {
        return errs;
    }
    // Strict validation of events.k8s.io/v1 writes.
    let series_changed = old.is_none_or(|o| o.get("series") != new.get("series"));
    if series_changed && let Some(series) = new.get("series").filter(|s| !s.is_null()) {
        let count = series.get("count").and_then(Value::as_i64).unwrap_or(0);
        if count < 2 {
            errs.push(invalid("series.count", &empty, "should be at least 2"));
        }
        if text(series, "/lastObservedTime").is_empty() {
            errs.push(required("series.lastObservedTime"));
        }
    }
    match old {
        None => {
            if !has_time {
                errs.push(required("eventTime"));
            }
            let type_ = text(new, "/type");
            if type_ != "Normal" && type_ != "Warning" {
                errs.push(invalid(
                    "type",
                    &empty,
                    &format!("has invalid value: {type_}"),
                ));
            }
            for (core, v1) in [
                ("firstTimestamp", "deprecatedFirstTimestamp"),
                ("lastTimestamp", "deprecatedLastTimestamp"),
            ] {
                if !text(new, &format!("/{core}")).is_empty() {
                    errs.push(invalid(v1, &empty, "needs to be unset"));
                }
            }
            if new
                .get("count")
                .and_then(Value::as_i64)
                .is_some_and(|c| c != 0)
            {
                errs.push(invalid("deprecatedCount", &empty, "needs to be unset"));
            }
            if !text(new, "/source/component").is_empty() || !text(new, "/source/host").is_empty() {
                errs.push(invalid("deprecatedSource", &empty, "needs to be unset"));
            }
        }
        Some(old) => {
            for field in [
                "involvedObject",
                "reason",
                "message",
                "source",
                "firstTimestamp",
                "lastTimestamp",
                "count",
                "type",
                "eventTime",
                "action",
                "related",
                "reportingComponent",
                "reportingInstance",
            ] {
                let (now, before) = (new.get(field), old.get(field));
                if now.filter(|v| !v.is_null()) != before.filter(|v| !v.is_null()) {
                    errs.push(invalid(
                        field,
                        now.unwrap_or(&Value::Null),
                        "field is immutable",
                    ));
                }
            }
        }
    }
    errs
}
