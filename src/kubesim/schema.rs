//! What kube-apiserver does to a custom resource between decoding and
//! storage: prune unknown fields, apply `default`s, validate the structural
//! OpenAPI schema, then run the CEL `x-kubernetes-validations` rules.
//!
//! Messages and reasons follow kube-apiserver's (`k8s.io/apiextensions-apiserver`
//! validation through kube-openapi), so a test written against this module
//! reads like the 422 a real cluster returns. Not checked: `format`s other
//! than those `format_matches` knows, and CEL cost budgets.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use kube::core::cel::CompiledSchema;
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex};

/// One rejected field, shaped like a `details.causes` entry of an `Invalid`
/// Status: `field` is the path (`spec.ipv4.count`), `reason` the cause type
/// (`FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, ...)
/// and `message` the cause message (`Invalid value: 0: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl FieldError {
    fn invalid(field: &str, value: &Value, detail: impl fmt::Display) -> Self {
        FieldError {
            field: field.to_string(),
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {}: {detail}", render(value)),
        }
    }
    fn new(field: &str, reason: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Validate `obj` (a whole custom resource) against one CRD version's
/// `openAPIV3Schema`: the structural rules and the CEL rules, with `old` the
/// stored object on update (for transition rules using `oldSelf`). The object
/// is validated as given; use [`admit`] to prune and default first, as the
/// server does.
pub fn validate(
    schema: &JSONSchemaProps,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), Vec<FieldError>> {
    let schema = serde_json::to_value(schema)
        .map_err(|e| vec![FieldError::new("", "InternalError", e.to_string())])?;
    validate_value(&schema, obj, old)
}

/// [`validate`] over the schema as JSON.
pub fn validate_value(
    schema: &Value,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), Vec<FieldError>> {
    validate_with(schema, None, obj, old)
}

/// A schema's CEL rules, compiled once (when a CRD is served) rather than for
/// every write.
pub(crate) fn compile_cel(schema: &Value) -> CompiledSchema {
    kube::core::cel::compile_schema(schema)
}

fn validate_with(
    schema: &Value,
    compiled: Option<&CompiledSchema>,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), Vec<FieldError>> {
    let mut errs = Vec::new();
    if let (Some(props), Some(obj)) = (
        schema.get("properties").and_then(Value::as_object),
        obj.as_object(),
    ) {
        // The root's apiVersion, kind and metadata are validated by the server
        // itself, never by the CRD's schema.
        for (key, value) in obj {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(child) = props.get(key) {
                structural(child, value, key, &mut errs);
            }
        }
        for req in required(schema) {
            if !obj.contains_key(req) && !matches!(req, "apiVersion" | "kind" | "metadata") {
                errs.push(FieldError::new(req, "FieldValueRequired", "Required value"));
            }
        }
    }
    // As kube-apiserver: the CEL rules run unless a type, enum, required or
    // size error makes their input unreliable; then one cause says so.
    let blocking = [
        "FieldValueTypeInvalid",
        "FieldValueNotSupported",
        "FieldValueRequired",
        "FieldValueTooLong",
        "FieldValueTooMany",
    ];
    if errs.iter().any(|e| blocking.contains(&e.reason.as_str())) {
        errs.push(FieldError::new(
            "<nil>",
            "FieldValueInvalid",
            "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ));
    } else {
        cel(schema, compiled, obj, old, &mut errs);
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// Prune unknown fields and apply defaults in place, then validate. Returns
/// the paths of the pruned fields (for `fieldValidation` warnings/errors).
pub fn admit(
    schema: &Value,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<Vec<String>, Vec<FieldError>> {
    admit_compiled(schema, None, obj, old)
}

/// [`admit`] with the schema's CEL rules compiled beforehand ([`compile_cel`]).
pub(crate) fn admit_compiled(
    schema: &Value,
    compiled: Option<&CompiledSchema>,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<Vec<String>, Vec<FieldError>> {
    let pruned = prune_and_default_root(schema, obj);
    validate_with(schema, compiled, obj, old)?;
    Ok(pruned)
}

/// The paths of the fields the schema does not declare (`spec.x`), which
/// [`admit`] would prune; the object is left as it is.
pub(crate) fn undeclared_fields(schema: &Value, obj: &Value) -> Vec<String> {
    prune_and_default_root(schema, &mut obj.clone())
}

/// Prune and default a whole object in place; the pruned paths.
fn prune_and_default_root(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    if let Some(map) = obj.as_object_mut() {
        let props = schema.get("properties").and_then(Value::as_object);
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match props.and_then(|p| p.get(&key)) {
                Some(child) => {
                    if let Some(v) = map.get_mut(&key) {
                        prune_and_default(child, v, &key, &mut pruned);
                    }
                    drop_null(map, &key, child);
                }
                None => {
                    map.remove(&key);
                    pruned.push(key);
                }
            }
        }
        if let Some(props) = props {
            for (key, child) in props {
                if !map.contains_key(key)
                    && !matches!(key.as_str(), "apiVersion" | "kind" | "metadata")
                    && let Some(d) = child.get("default")
                {
                    let mut d = d.clone();
                    prune_and_default(child, &mut d, key, &mut Vec::new());
                    map.insert(key.clone(), d);
                }
            }
        }
    }
    pruned
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn is_true(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

fn required(schema: &Value) -> impl Iterator<Item = &str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// kube-apiserver drops a `null` it could not default from a field that is
/// not nullable before validating, so it never fails a type check.
fn drop_null(map: &mut Map<String, Value>, key: &str, schema: &Value) {
    if map.get(key).is_some_and(Value::is_null) && !is_true(schema, "nullable") {
        map.remove(key);
    }
}

fn prune_and_default(schema: &Value, value: &mut Value, path: &str, pruned: &mut Vec<String>) {
    // kube-apiserver defaults a null in a non-nullable field.
    if value.is_null() && !is_true(schema, "nullable") {
        if let Some(d) = schema.get("default") {
            *value = d.clone();
        } else {
            return;
        }
    }
    match value {
        Value::Object(map) => {
            let embedded = is_true(schema, "x-kubernetes-embedded-resource");
            let preserve = is_true(schema, "x-kubernetes-preserve-unknown-fields");
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let sub = child_path(path, &key);
                if let Some(child) = props.and_then(|p| p.get(&key)) {
                    if let Some(v) = map.get_mut(&key) {
                        prune_and_default(child, v, &sub, pruned);
                    }
                    drop_null(map, &key, child);
                } else if let Some(add) = additional.filter(|a| a.is_object()) {
                    if let Some(v) = map.get_mut(&key) {
                        prune_and_default(add, v, &sub, pruned);
                    }
                    drop_null(map, &key, add);
                } else if !preserve && additional.and_then(Value::as_bool) != Some(true) {
                    map.remove(&key);
                    pruned.push(sub);
                }
            }
            if let Some(props) = props {
                for (key, child) in props {
                    if !map.contains_key(key)
                        && let Some(d) = child.get("default")
                    {
                        let mut d = d.clone();
                        prune_and_default(child, &mut d, &child_path(path, key), &mut Vec::new());
                        map.insert(key.clone(), d);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_and_default(item_schema, item, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

/// How kube-openapi names a value in messages: strings quoted, the rest as JSON.
fn render(value: &Value) -> String {
    match value {
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(want: &str, value: &Value) -> bool {
    match (want, value) {
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_)) => true,
        ("boolean", Value::Bool(_)) => true,
        ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

/// A type mismatch; kube-apiserver shows the JSON type, not the value.
fn wrong_type(path: &str, want: &str, value: &Value) -> FieldError {
    let got = type_name(value);
    FieldError::new(
        path,
        "FieldValueTypeInvalid",
        format!("Invalid value: \"{got}\": {path} in body must be of type {want}: \"{got}\""),
    )
}

fn structural(schema: &Value, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let nullable = value.is_null() && is_true(schema, "nullable");
    let wanted = if is_true(schema, "x-kubernetes-int-or-string") {
        (!matches!(type_name(value), "integer" | "string")).then_some("integer or string")
    } else {
        schema
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| !nullable && !type_matches(t, value))
    };
    if let Some(want) = wanted {
        errs.push(wrong_type(path, want, value));
        return;
    }
    if value.is_null() {
        return;
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let list: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        errs.push(FieldError::new(
            path,
            "FieldValueNotSupported",
            format!(
                "Unsupported value: {}: supported values: {}",
                value,
                list.join(", ")
            ),
        ));
    }
    combinators(schema, value, path, errs);
    if let Some(format) = schema.get("format").and_then(Value::as_str)
        && !format_matches(format, value)
    {
        errs.push(FieldError::new(
            path,
            "FieldValueTypeInvalid",
            format!(
                "Invalid value: {}: {path} in body must be of type {format}: {}",
                render(value),
                render(value)
            ),
        ));
    }
    match value {
        Value::String(s) => string_rules(schema, s, value, path, errs),
        Value::Number(n) => number_rules(schema, n.as_f64().unwrap_or(0.0), value, path, errs),
        Value::Array(items) => array_rules(schema, items, value, path, errs),
        Value::Object(map) => object_rules(schema, map, value, path, errs),
        _ => {}
    }
}

/// The string and integer formats kube-apiserver checks (kube-openapi's
/// registry); other formats are not checked.
fn format_matches(format: &str, value: &Value) -> bool {
    use base64::Engine;
    match (format, value) {
        ("date-time", Value::String(s)) => {
            s.parse::<jiff::Timestamp>().is_ok() || s.parse::<jiff::civil::DateTime>().is_ok()
        }
        ("date", Value::String(s)) => s.parse::<jiff::civil::Date>().is_ok(),
        ("byte", Value::String(s)) => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        ("ipv4", Value::String(s)) => s.parse::<std::net::Ipv4Addr>().is_ok(),
        ("ipv6", Value::String(s)) => s.parse::<std::net::Ipv6Addr>().is_ok(),
        ("uuid", Value::String(s)) => uuid::Uuid::parse_str(s).is_ok_and(|_| s.len() == 36),
        ("int32", Value::Number(n)) => n.as_i64().is_none_or(|i| i32::try_from(i).is_ok()),
        _ => true,
    }
}

fn combinators(schema: &Value, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let passes = |s: &Value| {
        let mut e = Vec::new();
        structural(s, value, path, &mut e);
        e.is_empty()
    };
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            structural(s, value, path, errs);
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array)
        && !any.iter().any(passes)
    {
        errs.push(FieldError::invalid(
            path,
            value,
            format!("{path} in body must validate at least one schema (anyOf)"),
        ));
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array)
        && one.iter().filter(|s| passes(s)).count() != 1
    {
        errs.push(FieldError::invalid(
            path,
            value,
            format!("{path} in body must validate one and only one schema (oneOf)"),
        ));
    }
    if let Some(not) = schema.get("not")
        && passes(not)
    {
        errs.push(FieldError::invalid(
            path,
            value,
            format!("{path} in body should not validate the given schema"),
        ));
    }
}

fn string_rules(schema: &Value, s: &str, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let len = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        errs.push(FieldError::new(
            path,
            "FieldValueTooLong",
            format!("Too long: may not be more than {max} bytes"),
        ));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        errs.push(FieldError::invalid(
            path,
            value,
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match compiled_pattern(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => errs.push(FieldError::invalid(
                path,
                value,
                format!("{path} in body should match '{pattern}'"),
            )),
            Err(e) => errs.push(FieldError::new(
                path,
                "InternalError",
                format!("schema pattern {pattern:?}: {e}"),
            )),
        }
    }
}

/// A schema's `pattern`, compiled on first use. Schemas are few and fixed for
/// the server's life, so the cache stays small; past its cap (schemas given
/// to [`validate_value`] by callers) patterns are compiled each time.
fn compiled_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    const CAP: usize = 1024;
    static PATTERNS: LazyLock<Mutex<HashMap<String, Regex>>> = LazyLock::new(Mutex::default);
    if let Some(re) = PATTERNS
        .lock()
        .ok()
        .and_then(|cache| cache.get(pattern).cloned())
    {
        return Ok(re);
    }
    let re = Regex::new(pattern)?;
    if let Ok(mut cache) = PATTERNS.lock()
        && cache.len() < CAP
    {
        cache.insert(pattern.to_string(), re.clone());
    }
    Ok(re)
}

fn number_rules(schema: &Value, n: f64, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        if is_true(schema, "exclusiveMinimum") && n <= min {
            errs.push(FieldError::invalid(
                path,
                value,
                format!("{path} in body should be greater than {}", num(min)),
            ));
        } else if n < min {
            errs.push(FieldError::invalid(
                path,
                value,
                format!(
                    "{path} in body should be greater than or equal to {}",
                    num(min)
                ),
            ));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        if is_true(schema, "exclusiveMaximum") && n >= max {
            errs.push(FieldError::invalid(
                path,
                value,
                format!("{path} in body should be less than {}", num(max)),
            ));
        } else if n > max {
            errs.push(FieldError::invalid(
                path,
                value,
                format!(
                    "{path} in body should be less than or equal to {}",
                    num(max)
                ),
            ));
        }
    }
    if let Some(m) = schema.get("multipleOf").and_then(Value::as_f64)
        && m > 0.0
    {
        let q = n / m;
        if (q - q.round()).abs() > 1e-9 {
            errs.push(FieldError::invalid(
                path,
                value,
                format!("{path} in body should be a multiple of {}", num(m)),
            ));
        }
    }
}

fn num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

fn array_rules(
    schema: &Value,
    items: &[Value],
    value: &Value,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    size_rules(
        schema,
        items.len(),
        ("maxItems", "minItems", "items"),
        value,
        path,
        errs,
    );
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    errs.push(FieldError::new(
                        &format!("{path}[{i}]"),
                        "FieldValueDuplicate",
                        format!("Duplicate value: {item}"),
                    ));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let key_of = |item: &Value| -> Map<String, Value> {
                keys.iter()
                    .filter_map(|k| item.get(*k).map(|v| (k.to_string(), v.clone())))
                    .collect()
            };
            for (i, item) in items.iter().enumerate() {
                let key = key_of(item);
                if items[..i].iter().any(|other| key_of(other) == key) {
                    errs.push(FieldError::new(
                        &format!("{path}[{i}]"),
                        "FieldValueDuplicate",
                        format!("Duplicate value: {}", Value::Object(key)),
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            structural(item_schema, item, &format!("{path}[{i}]"), errs);
        }
    }
}

/// maxItems/minItems and maxProperties/minProperties.
fn size_rules(
    schema: &Value,
    len: usize,
    (max_key, min_key, unit): (&str, &str, &str),
    value: &Value,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if let Some(max) = schema.get(max_key).and_then(Value::as_u64)
        && len as u64 > max
    {
        errs.push(FieldError::new(
            path,
            "FieldValueTooMany",
            format!("Too many: {len}: must have at most {max} items"),
        ));
    }
    if let Some(min) = schema.get(min_key).and_then(Value::as_u64)
        && (len as u64) < min
    {
        errs.push(FieldError::invalid(
            path,
            value,
            format!("{path} in body should have at least {min} {unit}"),
        ));
    }
}

fn object_rules(
    schema: &Value,
    map: &Map<String, Value>,
    value: &Value,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    for req in required(schema) {
        if !map.contains_key(req) {
            errs.push(FieldError::new(
                &child_path(path, req),
                "FieldValueRequired",
                "Required value",
            ));
        }
    }
    size_rules(
        schema,
        map.len(),
        ("maxProperties", "minProperties", "properties"),
        value,
        path,
        errs,
    );
    if is_true(schema, "x-kubernetes-embedded-resource") {
        for key in ["apiVersion", "kind"] {
            if map
                .get(key)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                errs.push(FieldError::new(
                    &child_path(path, key),
                    "FieldValueRequired",
                    "Required value: must not be empty",
                ));
            }
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (key, v) in map {
        if let Some(child) = props.and_then(|p| p.get(key)) {
            structural(child, v, &child_path(path, key), errs);
        } else if let Some(add) = additional {
            structural(add, v, &format!("{path}[{key}]"), errs);
        }
    }
}

fn cel(
    schema: &Value,
    compiled: Option<&CompiledSchema>,
    obj: &Value,
    old: Option<&Value>,
    errs: &mut Vec<FieldError>,
) {
    use kube::core::cel::{ErrorKind, Validator};
    // Registering the Kubernetes CEL functions is costly: once per thread.
    thread_local! {
        static VALIDATOR: Validator = Validator::new();
    }
    let result = VALIDATOR.with(|v| match compiled {
        Some(c) => v.validate_compiled(c, obj, old),
        None => v.validate(schema, obj, old),
    });
    let Err(failures) = result else {
        return;
    };
    let mut failures = failures.into_vec();
    if compiled.is_some() {
        // A compiled schema keeps its properties in a hash map: put the
        // failures back in the schema's (sorted) order, as an uncompiled walk gives them.
        failures.sort_by_cached_key(|f| path_key(&f.field_path));
    }
    for f in failures {
        let field = f.field_path.clone();
        // kube-apiserver shows the type of the schema carrying the rule, not the
        // value: `spec: Invalid value: "object": ...`.
        let rule_type = Value::String(rule_type(schema, &f.rule, &field)).to_string();
        let e = match f.kind {
            ErrorKind::ValidationFailure => {
                let reason = f
                    .reason
                    .clone()
                    .unwrap_or_else(|| "FieldValueInvalid".into());
                // A rule's `reason` picks the cause type and, as in kube-apiserver, its wording.
                let message = match reason.as_str() {
                    "FieldValueForbidden" => format!("Forbidden: {}", f.message),
                    "FieldValueRequired" => format!("Required value: {}", f.message),
                    "FieldValueDuplicate" => format!("Duplicate value: {rule_type}"),
                    _ => format!("Invalid value: {rule_type}: {}", f.message),
                };
                FieldError {
                    reason,
                    message,
                    field,
                }
            }
            _ => FieldError::new(
                &field,
                "InternalError",
                format!("Internal error: {}: {}", f.rule, f.message),
            ),
        };
        errs.push(e);
    }
}

/// A field path (`spec.tags[1].name`) as the components a schema walk visits
/// in order: names sorted as text, list indexes as numbers.
fn path_key(path: &str) -> Vec<(String, u64)> {
    path.split(['.', '['])
        .map(|part| match part.strip_suffix(']').map(str::parse::<u64>) {
            Some(Ok(i)) => (String::new(), i),
            _ => (part.to_string(), 0),
        })
        .collect()
}

/// The `type` of the schema node whose `x-kubernetes-validations` hold
/// `rule` and whose path leads to `field` (the rule's `fieldPath` may go deeper).
fn rule_type(schema: &Value, rule: &str, field: &str) -> String {
    fn walk(s: &Value, path: &str, rule: &str, want: &str, found: &mut Option<String>) {
        if found.is_some() {
            return;
        }
        let carries = s
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .is_some_and(|rs| {
                rs.iter()
                    .any(|r| r.get("rule").and_then(Value::as_str) == Some(rule))
            });
        let leads = want == path
            || path.is_empty()
            || want
                .strip_prefix(path)
                .is_some_and(|rest| rest.starts_with(['.', '[']));
        if !leads {
            return;
        }
        if carries {
            *found = Some(
                s.get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            );
            return;
        }
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (k, child) in props {
                walk(child, &child_path(path, k), rule, want, found);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(child) = s.get(key).filter(|c| c.is_object()) {
                walk(child, &format!("{path}[]"), rule, want, found);
            }
        }
    }
    static INDEX: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\[[^\]]*\]").expect("a valid pattern"));
    let want = INDEX.replace_all(field, "[]").into_owned();
    let mut found = None;
    walk(schema, "", rule, &want, &mut found);
    found.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["nic"],
        "x-kubernetes-validations": [{"rule": "!has(self.count) || self.count != 7", "message": "seven is unlucky"}],
        "properties": {
            "nic": {"type": "string", "minLength": 3, "pattern": "^nic-"},
            "count": {"type": "integer", "minimum": 1, "maximum": 50},
            "mode": {"type": "string", "enum": ["Full", "ObserveOnly"], "default": "Full"},
            "tags": {"type": "array", "maxItems": 2, "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "port": {"x-kubernetes-int-or-string": true}
        }}}})
    }

    fn errors(obj: Value) -> Vec<String> {
        let mut obj = obj;
        match admit(&schema(), &mut obj, None) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(|e| format!("{}|{e}", e.reason)).collect(),
        }
    }

    /// The cause kube-apiserver adds when blocking errors keep the CEL rules from running.
    const SKIPPED_CEL: &str = "FieldValueInvalid|<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

    #[test]
    fn structural_rules_reject_like_kube_apiserver() {
        let e = errors(json!({"spec": {"nic": "nic-1", "count": 0}}));
        assert_eq!(
            e,
            [
                "FieldValueInvalid|spec.count: Invalid value: 0: spec.count in body should be greater than or equal to 1"
            ]
        );
        let e = errors(json!({"spec": {"nic": "nic-1", "mode": "Sometimes"}}));
        assert_eq!(
            e,
            [
                r#"FieldValueNotSupported|spec.mode: Unsupported value: "Sometimes": supported values: "Full", "ObserveOnly""#,
                SKIPPED_CEL,
            ]
        );
        let e = errors(json!({"spec": {"count": 3}}));
        assert_eq!(
            e,
            ["FieldValueRequired|spec.nic: Required value", SKIPPED_CEL]
        );
        let e = errors(json!({"spec": {"nic": "eth0", "count": "3"}}));
        assert_eq!((e.len(), e[2].as_str()), (3, SKIPPED_CEL), "{e:?}");
        assert!(
            e[0].contains("spec.count in body must be of type integer: \"string\""),
            "{e:?}"
        );
        assert!(
            e[1].contains("spec.nic in body should match '^nic-'"),
            "{e:?}"
        );
        let e = errors(json!({"spec": {"nic": "nic-1", "tags": ["a", "a", "b"]}}));
        assert_eq!((e.len(), e[2].as_str()), (3, SKIPPED_CEL), "{e:?}");
        assert!(
            e[0].starts_with("FieldValueTooMany|spec.tags: Too many: 3"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("FieldValueDuplicate|spec.tags[1]"),
            "{e:?}"
        );
        assert!(errors(json!({"spec": {"nic": "nic-1", "port": 80}})).is_empty());
        assert_eq!(
            errors(json!({"spec": {"nic": "nic-1", "port": true}})).len(),
            2
        );
    }

    #[test]
    fn formats_are_checked() {
        let schema = json!({"type": "object", "properties": {"status": {"type": "object", "properties": {
            "since": {"type": "string", "format": "date-time"}, "n": {"type": "integer", "format": "int32"}}}}});
        let ok = json!({"status": {"since": "2026-01-01T00:00:00Z", "n": 5}});
        assert!(validate_value(&schema, &ok, None).is_ok());
        let bad = json!({"status": {"since": "yesterday", "n": 5_000_000_000_i64}});
        let errs = validate_value(&schema, &bad, None).expect_err("bad formats");
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "status.n: Invalid value: 5000000000: status.n in body must be of type int32: 5000000000",
                r#"status.since: Invalid value: "yesterday": status.since in body must be of type date-time: "yesterday""#,
                "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ]
        );
    }

    #[test]
    fn cel_runs_after_structural_rules_pass() {
        let e = errors(json!({"spec": {"nic": "nic-1", "count": 7}}));
        assert_eq!(
            e,
            [r#"FieldValueInvalid|spec: Invalid value: "object": seven is unlucky"#]
        );
    }

    #[test]
    fn prunes_unknown_fields_and_defaults() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"nic": "nic-1", "bogus": 1}, "extra": true});
        let pruned = admit(&schema(), &mut obj, None).expect("valid");
        assert_eq!(pruned, ["extra", "spec.bogus"]);
        assert_eq!(obj["spec"], json!({"nic": "nic-1", "mode": "Full"}));
        assert_eq!(obj["metadata"]["name"], "a");
    }

    /// Compiled once, the CEL rules fail the same fields in the same order
    /// as compiled on the spot (the compiled tree keeps properties in a hash map).
    #[test]
    fn compiled_cel_rules_report_as_uncompiled_ones() {
        let rule = |r: &str, m: &str| json!([{"rule": r, "message": m}]);
        let leaf =
            |m: &str| json!({"type": "integer", "x-kubernetes-validations": rule("self != 7", m)});
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
        "x-kubernetes-validations": rule("!has(self.z) || self.z != 7", "whole spec"),
        "properties": {
            "z": leaf("z"), "a": leaf("a"), "m": leaf("m"), "b-c": leaf("b-c"),
            "list": {"type": "array", "items": leaf("item")},
            "nested": {"type": "object", "properties": {"y": leaf("y"), "x": leaf("x")}}
        }}}});
        let obj = json!({"spec": {"z": 7, "a": 7, "m": 7, "b-c": 7,
            "list": [7, 1, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7],
            "nested": {"y": 7, "x": 7}}});
        let compiled = compile_cel(&schema);
        let uncompiled = admit(&schema, &mut obj.clone(), None).expect_err("invalid");
        assert_eq!(uncompiled.len(), 18, "{uncompiled:?}");
        for _ in 0..8 {
            let got = admit_compiled(&schema, Some(&compiled), &mut obj.clone(), None)
                .expect_err("invalid");
            assert_eq!(got, uncompiled);
        }
    }
}
