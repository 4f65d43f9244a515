//! Routing and the request handlers: the REST verbs over the store, with
//! kube-apiserver's status codes and `Status` bodies.

use super::builtin;
use super::discovery::{self, ResourceType};
use super::fields::{self, Scope, Writer};
use super::rbac::{Attributes, Rbac, Refusal};
use super::schema::{self, FieldError};
use super::select::Selector;
use super::store::{ChangeType, PageQuery, State, Store, Stored};
use super::{RequestLog, RequestRecord};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use regex::Regex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

pub(crate) struct Server {
    pub store: Store,
    pub types: Vec<ResourceType>,
    pub log: Mutex<RequestLog>,
    pub addr: SocketAddr,
    pub bookmark_interval: Duration,
    pub watch_timeout: Duration,
    /// Becomes `true` when the server is stopping.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Authentication and authorization, when on.
    pub rbac: Option<Rbac>,
}

pub(crate) fn router(server: Arc<Server>) -> Router {
    Router::new().fallback(handle).with_state(server)
}

/// A failed request, rendered as a `Status`.
#[derive(Debug)]
pub(crate) struct ApiError {
    code: u16,
    reason: &'static str,
    message: String,
    details: Option<Value>,
    /// The Status's ListMeta (a 410 for an expired continue token carries a fresh one).
    list_meta: Value,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            list_meta: json!({}),
        }
    }
    fn details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }
    fn not_found(t: &ResourceType, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", t.group_resource()),
        )
        .details(json!({"name": name, "group": t.group, "kind": t.plural}))
    }
    fn conflict(t: &ResourceType, name: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                t.group_resource()
            ),
        )
        .details(json!({"name": name, "group": t.group, "kind": t.plural}))
    }
    fn invalid(t: &ResourceType, name: &str, errs: &[FieldError]) -> Self {
        let (summary, causes) = summary_and_causes(errs);
        ApiError::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {summary}", t.group_kind()),
        )
        .details(json!({"name": name, "group": t.group, "kind": t.kind, "causes": causes}))
    }
    /// A 422 for invalid request options (`CreateOptions`, `PatchOptions`, ...),
    /// as kube-apiserver words it: `PatchOptions.meta.k8s.io "" is invalid: ...`.
    fn invalid_options(kind: &str, errs: &[FieldError]) -> Self {
        let (summary, causes) = summary_and_causes(errs);
        ApiError::new(
            422,
            "Invalid",
            format!("{kind}.meta.k8s.io \"\" is invalid: {summary}"),
        )
        .details(json!({"group": "meta.k8s.io", "kind": kind, "causes": causes}))
    }
    fn expired(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }
    fn body(&self) -> Value {
        let mut status = json!({"kind": "Status", "apiVersion": "v1", "metadata": self.list_meta, "status": "Failure",
            "message": self.message, "code": self.code});
        // An unknown reason is omitted, as Go's omitempty does.
        if !self.reason.is_empty() {
            status["reason"] = json!(self.reason);
        }
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}

/// An `Invalid` Status's message tail (one error, or `[a, b]`) and its causes.
fn summary_and_causes(errs: &[FieldError]) -> (String, Vec<Value>) {
    let listed: Vec<String> = errs.iter().map(ToString::to_string).collect();
    let summary = if listed.len() == 1 {
        listed[0].clone()
    } else {
        format!("[{}]", listed.join(", "))
    };
    let causes = errs
        .iter()
        .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
        .collect();
    (summary, causes)
}

fn json_response(code: u16, body: &Value, warnings: &[String]) -> Response {
    let mut resp = raw_json_response(body.to_string());
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for w in warnings {
        let text = format!("299 - {}", Value::String(w.clone()));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("Warning", v);
        }
    }
    resp
}

/// A 200 with a JSON text already rendered.
fn raw_json_response(body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A response as `application/yaml`, which kube-apiserver serves for anything
/// but watches.
fn yaml_response(code: u16, body: &Value, warnings: &[String]) -> Response {
    let mut resp = json_response(code, body, warnings);
    match serde_saphyr::to_string(body) {
        Ok(text) => {
            *resp.body_mut() = Body::from(text);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/yaml"),
            );
        }
        Err(e) => tracing::warn!(error = %e, "kubesim: rendering YAML, answering JSON"),
    }
    resp
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.body(), &[])
}

/// A request for a resource, parsed from its path, query and headers.
#[derive(Clone)]
struct Req<'a> {
    t: &'a ResourceType,
    ns: String,
    name: Option<String>,
    sub: Option<String>,
    query: HashMap<String, String>,
    body: Bytes,
    content_type: String,
    output: Output,
    user_agent: String,
    /// `dryRun=All` (query), or `dryRun: ["All"]` in a delete's body.
    dry_run: bool,
}

impl Req<'_> {
    fn q(&self, key: &str) -> Option<&str> {
        self.query
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
    fn dry_run(&self) -> bool {
        self.dry_run
    }
    /// kube-apiserver's checks of `CreateOptions`, `UpdateOptions` and
    /// `PatchOptions` (`apply` tells an apply patch from the others): a 422
    /// naming the option rather than a silently ignored value.
    fn check_options(&self, kind: &str, apply: bool) -> Result<(), ApiError> {
        let mut errs = Vec::new();
        if kind == "PatchOptions" {
            if !apply && self.query.contains_key("force") {
                errs.push(FieldError {
                    field: "force".into(),
                    reason: "FieldValueForbidden".into(),
                    message: "Forbidden: may not be specified for non-apply patch".into(),
                });
            }
            if apply && self.q("fieldManager").is_none() {
                errs.push(FieldError {
                    field: "fieldManager".into(),
                    reason: "FieldValueRequired".into(),
                    message: "Required value: is required for apply patch".into(),
                });
            }
        }
        errs.extend(dry_run_error(self.q("dryRun").into_iter().collect()));
        if let Some(v) = self.q("fieldValidation")
            && !matches!(v, "Ignore" | "Strict" | "Warn")
        {
            errs.push(FieldError {
                field: "fieldValidation".into(),
                reason: "FieldValueNotSupported".into(),
                message: format!(
                    "Unsupported value: {}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"",
                    Value::String(v.into())
                ),
            });
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid_options(kind, &errs))
        }
    }
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }
    /// The field manager of an update: the parameter, else the user agent's
    /// first word, as kube-apiserver derives it.
    fn manager(&self) -> String {
        match self.q("fieldManager") {
            Some(m) => m.to_string(),
            None => match self.user_agent.split('/').next() {
                Some(agent) if !agent.is_empty() => agent.to_string(),
                _ => "unknown".to_string(),
            },
        }
    }
    fn writer<'a>(&'a self, manager: &'a str, api_version: &'a str, now: &'a str) -> Writer<'a> {
        Writer {
            manager,
            subresource: self.sub.as_deref(),
            api_version,
            now,
            scope: self.scope(),
        }
    }
    fn scope(&self) -> Scope {
        if self.sub.is_some() {
            Scope::Status
        } else {
            Scope::Main {
                status_is_subresource: self.t.status_subresource,
            }
        }
    }
    /// The body as a JSON object (anything else is a 400, as kube-apiserver's decoder answers).
    fn parse_body(&self) -> Result<Value, ApiError> {
        let v: Value = serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))?;
        as_object(v)
    }
    /// A merge, JSON or strategic merge patch (not an apply).
    fn is_update_patch(&self) -> bool {
        matches!(
            self.content_type.split(';').next().map(str::trim),
            Some(
                "application/merge-patch+json"
                    | "application/json-patch+json"
                    | "application/strategic-merge-patch+json"
            )
        )
    }
    /// The object of a create, update or delete, in the encodings kubesim
    /// decodes: JSON and YAML. Protobuf and CBOR (what kubectl's imperative
    /// `create` commands send for built-in kinds) are a 415, as kube-apiserver
    /// answers an encoding it does not accept, instead of a misleading 400.
    fn object_body(&self) -> Result<Value, ApiError> {
        match self
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
        {
            "" | "application/json" => self.parse_body(),
            "application/yaml" => {
                let text = std::str::from_utf8(&self.body).map_err(|e| {
                    ApiError::bad_request(format!("error decoding request body: {e}"))
                })?;
                let v: Value = serde_saphyr::from_str(text)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
                as_object(v)
            }
            other => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (kubesim does not decode {other})"
                ),
            )),
        }
    }
}

/// A boolean query parameter as Go's `strconv.ParseBool` reads it.
pub(crate) fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// kube-apiserver decodes its query parameters into typed options: a value
/// that is not a number or a boolean where one is expected is a 400, not ignored.
fn check_param_types(query: &HashMap<String, String>) -> Result<(), ApiError> {
    for (key, value) in query.iter().filter(|(_, v)| !v.is_empty()) {
        let bad = match key.as_str() {
            "limit" | "timeoutSeconds" | "gracePeriodSeconds" => value.parse::<i64>().is_err(),
            "watch"
            | "allowWatchBookmarks"
            | "sendInitialEvents"
            | "force"
            | "orphanDependents" => go_bool(value).is_none(),
            _ => false,
        };
        if bad {
            return Err(ApiError::bad_request(format!(
                "invalid value for query parameter {key}: {}",
                Value::String(value.clone())
            )));
        }
    }
    Ok(())
}

fn as_object(v: Value) -> Result<Value, ApiError> {
    if v.is_object() {
        Ok(v)
    } else {
        Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ))
    }
}

async fn handle(AxumState(srv): AxumState<Arc<Server>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).unwrap_or_default();
    let header_text = |h: header::HeaderName| {
        parts
            .headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let accept = header_text(header::ACCEPT);
    let content_type = header_text(header::CONTENT_TYPE);
    let user_agent = header_text(header::USER_AGENT);
    let body = match axum::body::to_bytes(body, 16 << 20).await {
        Ok(b) => b,
        Err(e) => {
            return error_response(&ApiError::new(413, "RequestEntityTooLarge", e.to_string()));
        }
    };
    if let Some(rbac) = &srv.rbac {
        // As kube-apiserver: authentication and authorization come before
        // routing, so a refused request learns nothing about what is served.
        let attrs = Attributes::of(&parts.method, &path, &query);
        let checked = rbac.check(
            &srv.store.lock(),
            &header_text(header::AUTHORIZATION),
            &attrs,
        );
        match checked {
            Ok(()) => {}
            Err(Refusal::Unauthorized) => {
                return error_response(&ApiError::new(401, "Unauthorized", "Unauthorized"));
            }
            Err(Refusal::Forbidden { message, details }) => {
                return error_response(&ApiError::new(403, "Forbidden", message).details(details));
            }
        }
    }
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if parts.method == Method::GET
        && let Some(resp) = srv.discovery(&segs)
    {
        return resp;
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return error_response(&not_served()),
    };
    let (ns, plural, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..] => (
            Some(*ns),
            *plural,
            tail.first().copied(),
            tail.get(1).copied(),
        ),
        [plural, tail @ ..] => (None, *plural, tail.first().copied(), tail.get(1).copied()),
        [] => return error_response(&not_served()),
    };
    let too_long = rest.len() > if ns.is_some() { 5 } else { 3 };
    let Some(t) = srv
        .types
        .iter()
        .find(|t| t.group == group && t.version == version && t.plural == plural)
    else {
        return error_response(&not_served());
    };
    if too_long
        || (ns.is_some() && !t.namespaced)
        || (name.is_some() && ns.is_none() && t.namespaced)
    {
        return error_response(&not_served());
    }
    if let Some(s) = sub
        && !(s == "status" && t.status_subresource)
    {
        return error_response(&not_served());
    }
    let watch = query.get("watch").and_then(|v| go_bool(v)) == Some(true);
    let verb = match (&parts.method, name.is_some()) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unsupported",
    };
    if verb != "unsupported" && !t.verbs().contains(&verb) {
        return error_response(&ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ));
    }
    if t.namespaced && ns.is_none() && !matches!(verb, "list" | "watch") {
        return error_response(&ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource: {} across all namespaces",
                parts.method
            ),
        ));
    }
    // Checked here, answered below, so the request log has these refusals too.
    let output = check_param_types(&query)
        .and_then(|()| negotiate(&accept, query.get("includeObject").map(String::as_str)));
    let mut r = Req {
        t,
        ns: ns.unwrap_or_default().to_string(),
        name: name.map(str::to_string),
        sub: sub.map(str::to_string),
        query,
        body,
        content_type,
        output: *output.as_ref().unwrap_or(&Output::Object),
        user_agent,
        dry_run: false,
    };
    r.dry_run = r.q("dryRun") == Some("All");
    let result = match (output, verb) {
        (Err(e), _) => Err(e),
        (Ok(_), "get") => srv.get(&r),
        (Ok(_), "list") => match srv.list(&r) {
            Ok(resp) => {
                srv.record(&r, verb, resp.status().as_u16());
                return resp;
            }
            Err(e) => Err(e),
        },
        (Ok(_), "watch") => {
            let resp = srv.watch(&r);
            srv.record(&r, verb, resp.status().as_u16());
            return resp;
        }
        (Ok(_), "create") => srv.create(&r),
        (Ok(_), "update") => srv.update(&r),
        (Ok(_), "patch") => srv.patch(&r),
        (Ok(_), "delete" | "deletecollection") => match delete_options(&r) {
            Ok(opts) => {
                r.dry_run = opts.get("dryRun").is_some_and(|d| d == &json!(["All"]));
                if verb == "delete" {
                    srv.delete(&r, &opts)
                } else {
                    srv.delete_collection(&r, &opts)
                }
            }
            Err(e) => Err(e),
        },
        (Ok(_), _) => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "{} {path} is not supported by kubesim (no POST to a named object)",
                parts.method
            ),
        )),
    };
    let resp = match (result, r.output) {
        (Ok((code, body, warnings)), Output::Yaml) => yaml_response(code, &body, &warnings),
        (Err(e), Output::Yaml) => yaml_response(e.code, &e.body(), &[]),
        (Ok((code, body, warnings)), _) => json_response(code, &body, &warnings),
        (Err(e), _) => error_response(&e),
    };
    srv.record(&r, verb, resp.status().as_u16());
    resp
}

/// The representation a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    Object,
    /// The object (or list, or Status) as YAML.
    Yaml,
    Table(discovery::IncludeObject),
    PartialMetadata,
}

/// Pick the first representation of the `Accept` header kubesim can serve,
/// as kube-apiserver negotiates: JSON, `as=Table` (with `includeObject`) and
/// `as=PartialObjectMetadata[List]`; a 406 when none is (YAML, protobuf, CBOR).
fn negotiate(accept: &str, include: Option<&str>) -> Result<Output, ApiError> {
    if accept.trim().is_empty() {
        return Ok(Output::Object);
    }
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        if media == "application/yaml" && !range.contains("as=") {
            return Ok(Output::Yaml);
        }
        if !matches!(media, "application/json" | "application/*" | "*/*") {
            continue;
        }
        let params: HashMap<&str, &str> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let meta_group = params.get("g") == Some(&"meta.k8s.io");
        match params.get("as").copied() {
            None => return Ok(Output::Object),
            Some("Table") if meta_group && matches!(params.get("v"), Some(&("v1" | "v1beta1"))) => {
                let include = match include.unwrap_or_default() {
                    "" | "Metadata" => discovery::IncludeObject::Metadata,
                    "None" => discovery::IncludeObject::None,
                    "Object" => discovery::IncludeObject::Object,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "unrecognized includeObject value: {}",
                            Value::String(other.into())
                        )));
                    }
                };
                return Ok(Output::Table(include));
            }
            Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                if meta_group && params.get("v") == Some(&"v1") =>
            {
                return Ok(Output::PartialMetadata);
            }
            Some(_) => {}
        }
    }
    Err(ApiError::new(
        406,
        "NotAcceptable",
        format!(
            "only the following media types are accepted by kubesim: application/json (plain, as=Table, as=PartialObjectMetadata), application/yaml; requested {accept}"
        ),
    ))
}

fn not_served() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
    .details(json!({}))
}

type Reply = Result<(u16, Value, Vec<String>), ApiError>;

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::now())
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `metadata` of an object, created when missing. Callers only pass objects
/// (request bodies are checked to be JSON objects before they get here).
fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// The object without what every write changes (resourceVersion, managedFields
/// timestamps), to recognise a no-op write, which kube-apiserver does not persist.
fn comparable(obj: &Value) -> Value {
    let mut o = obj.clone();
    let m = meta_mut(&mut o);
    m.remove("resourceVersion");
    if let Some(Value::Array(entries)) = m.get_mut("managedFields") {
        for e in entries {
            if let Some(e) = e.as_object_mut() {
                e.remove("time");
            }
        }
    }
    o
}

/// RFC 1123 names as kube-apiserver checks them, compiled once.
pub(crate) static DNS1123_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("a valid pattern")
});
static DNS1123_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("a valid pattern"));
/// A label value (without the length limit).
static LABEL_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").expect("a valid pattern")
});

fn check_name(t: &ResourceType, name: &str) -> Option<FieldError> {
    let (pattern, max, what) = if t.plural == "namespaces" {
        (
            &*DNS1123_LABEL,
            63,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        )
    } else {
        (
            &*DNS1123_SUBDOMAIN,
            253,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )
    };
    let ok = name.len() <= max && pattern.is_match(name);
    (!ok).then(|| FieldError {
        field: "metadata.name".into(),
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {}: {what}", Value::String(name.into())),
    })
}

fn check_labels(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) else {
        return errs;
    };
    for (k, v) in labels {
        let text = v.as_str().unwrap_or_default();
        if !v.is_string() || text.len() > 63 || !LABEL_VALUE.is_match(text) {
            errs.push(FieldError {
                field: "metadata.labels".to_string(),
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {v}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
            });
        }
        if k.is_empty() || k.len() > 317 {
            errs.push(FieldError {
                field: "metadata.labels".into(),
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {k:?}: name part must be non-empty"),
            });
        }
    }
    errs
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

impl Server {
    fn record(&self, r: &Req, verb: &str, code: u16) {
        let rec = RequestRecord {
            verb: verb.to_string(),
            group: r.t.group.clone(),
            resource: r.t.plural.clone(),
            subresource: r.sub.clone(),
            namespace: (!r.ns.is_empty()).then(|| r.ns.clone()),
            name: r.name.clone(),
            field_manager: r.q("fieldManager").map(str::to_string),
            code,
        };
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(rec);
    }

    fn discovery(&self, segs: &[&str]) -> Option<Response> {
        let addr = self.addr.to_string();
        let doc = match segs {
            ["version"] => Some(
                json!({"major": "1", "minor": "36", "gitVersion": "v1.36.0-kubesim", "gitCommit": "",
                "gitTreeState": "clean", "buildDate": "", "goVersion": "", "compiler": "rustc", "platform": "linux/amd64"}),
            ),
            ["api"] => Some(discovery::versions_doc(&addr)),
            ["apis"] => Some(discovery::group_list_doc(&self.types)),
            ["api", v] => discovery::resource_list_doc(&self.types, "", v),
            ["apis", g] => discovery::group_doc_for(&self.types, g),
            ["apis", g, v] => discovery::resource_list_doc(&self.types, g, v),
            ["openapi", "v3"] => Some(discovery::openapi_root(&self.types)),
            ["openapi", "v3", rest @ ..] => discovery::openapi_doc(&self.types, &rest.join("/")),
            ["openapi", ..] => return Some(error_response(&not_served())),
            _ => return None,
        };
        Some(match doc {
            Some(d) => json_response(200, &d, &[]),
            None => error_response(&not_served()),
        })
    }

    fn unview(&self, t: &ResourceType, obj: Value) -> Value {
        if t.is_event_v1() {
            discovery::convert_event(&obj, false)
        } else {
            obj
        }
    }

    /// A namespace kube-apiserver has from the start (`default`, `kube-system`, ...).
    pub(crate) fn create_namespace(&self, name: &str) {
        let mut st = self.store.lock();
        if st.contains("/namespaces", "", name) {
            return;
        }
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": now(), "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        st.commit("/namespaces", "", name, ChangeType::Added, ns);
    }

    /// An object the server has from the start (the RBAC bootstrap policy).
    pub(crate) fn create_builtin(&self, storage: &str, ns: &str, mut obj: Value) {
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let m = meta_mut(&mut obj);
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now()));
        let mut st = self.store.lock();
        if !st.contains(storage, ns, &name) {
            st.commit(storage, ns, &name, ChangeType::Added, obj);
        }
    }

    /// A CRD the server serves, readable as kube-apiserver shows it once established.
    pub(crate) fn create_crd(&self, crd: &CustomResourceDefinition) {
        let Ok(mut obj) = serde_json::to_value(crd) else {
            return;
        };
        let name = crd.metadata.name.clone().unwrap_or_default();
        let now = now();
        obj["apiVersion"] = json!("apiextensions.k8s.io/v1");
        obj["kind"] = json!("CustomResourceDefinition");
        let m = meta_mut(&mut obj);
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now));
        m.insert("generation".into(), json!(1));
        let stored: Vec<&str> = crd
            .spec
            .versions
            .iter()
            .filter(|v| v.storage)
            .map(|v| v.name.as_str())
            .collect();
        let condition = |type_: &str, reason: &str, message: &str| json!({"type": type_, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
        obj["status"] = json!({"acceptedNames": crd.spec.names, "storedVersions": stored, "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted")]});
        let mut st = self.store.lock();
        st.commit(
            "apiextensions.k8s.io/customresourcedefinitions",
            "",
            &name,
            ChangeType::Added,
            obj,
        );
    }

    /// kube-apiserver's NamespaceLifecycle admission: nothing is created in a
    /// namespace that does not exist.
    fn check_namespace(&self, st: &State, r: &Req) -> Result<(), ApiError> {
        if !r.t.namespaced || st.contains("/namespaces", "", &r.ns) {
            return Ok(());
        }
        Err(ApiError::new(
            404,
            "NotFound",
            format!("namespaces \"{}\" not found", r.ns),
        )
        .details(json!({"name": r.ns, "kind": "namespaces"})))
    }

    fn get(&self, r: &Req) -> Reply {
        let shared = self
            .store
            .lock()
            .get_shared(&r.t.storage, &r.ns, r.name())
            .cloned()
            .ok_or_else(|| ApiError::not_found(r.t, r.name()))?;
        let obj = into_view(r.t, shared.value());
        match r.output {
            Output::Table(include) => Ok((
                200,
                discovery::table(
                    r.t,
                    &[&obj],
                    json!({"resourceVersion": meta_str(&obj, "resourceVersion")}),
                    include,
                ),
                vec![],
            )),
            Output::PartialMetadata => Ok((200, discovery::partial_metadata(&obj), vec![])),
            Output::Object | Output::Yaml => Ok((200, obj, vec![])),
        }
    }

    fn selector(&self, r: &Req) -> Result<Selector, ApiError> {
        let extra: &[&str] = match r.t.plural.as_str() {
            "events" if !r.t.is_event_v1() => &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            // events.k8s.io's field labels, converted as kube-apiserver converts them.
            "events" => &[
                "regarding.kind",
                "regarding.namespace",
                "regarding.name",
                "regarding.uid",
                "regarding.apiVersion",
                "regarding.resourceVersion",
                "regarding.fieldPath",
                "reason",
                "reportingController",
                "type",
            ],
            "secrets" => &["type"],
            _ => &[],
        };
        Selector::parse(r.q("labelSelector"), r.q("fieldSelector"), extra)
            .map_err(ApiError::bad_request)
    }

    /// Rendered here rather than by the caller: an object list is spliced from
    /// the stored texts, never built as one `Value`.
    fn list(&self, r: &Req) -> Result<Response, ApiError> {
        check_list_options(r, false)?;
        let selector = self.selector(r)?;
        let st = self.store.lock();
        let current = st.current_rv();
        let rv = r
            .q("resourceVersion")
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))
            })
            .transpose()?;
        let exact = r.q("resourceVersionMatch") == Some("Exact");
        if let Some(rv) = rv
            && rv > current
        {
            return Err(too_large(rv, current));
        }
        let (list_rv, after) = match r.q("continue") {
            Some(_) if rv.is_some_and(|v| v != 0) => {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            // A token kube-apiserver hands out with a 410: go on at the current version.
            Some(token) => match decode_continue(token)? {
                (None, after) => (current, after),
                (Some(rv), after) => (rv, after),
            },
            None => match rv {
                Some(rv) if exact => (rv, None),
                _ => (current, None),
            },
        };
        if list_rv < st.oldest_resumable() {
            if r.q("continue").is_none() {
                return Err(ApiError::expired(format!(
                    "too old resource version: {list_rv} ({})",
                    st.oldest_resumable()
                )));
            }
            // As kube-apiserver: a 410 whose Status carries a token that continues
            // the list at the current version, inconsistently.
            let mut e = ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
            );
            e.list_meta =
                json!({"continue": encode_continue(None, after.as_deref().unwrap_or_default())});
            return Err(e);
        }
        let ns = (!r.ns.is_empty()).then_some(r.ns.as_str());
        // `resourceVersion=0` is served from the watch cache, which ignores `limit`.
        let from_cache = rv == Some(0) && r.q("continue").is_none();
        let limit = r
            .q("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0 && !from_cache);
        let after = after.as_deref().and_then(|a| a.split_once('/'));
        let after = after.map(|(ns, name)| (ns.to_string(), name.to_string()));
        // Every page of a list is cut from the snapshot of its first page;
        // kube-apiserver counts what remains only when nothing is selected.
        // A selector needs each object parsed, so under the lock the page
        // takes references to every candidate, and they are filtered and cut
        // after it is released: the lock is held only for taking references.
        let selecting = !selector.is_empty();
        let query = PageQuery {
            ns,
            at: list_rv,
            after: after.as_ref(),
            limit: limit.filter(|_| !selecting),
            count_rest: !selecting,
        };
        let mut page = st.page(&r.t.storage, &query, &|_| true).unwrap_or_default();
        drop(st);
        if selecting {
            let mut kept = Vec::new();
            for item in page.items {
                if !selector.matches_in(r.t, &item.1.value()) {
                    continue;
                }
                if limit.is_some_and(|l| kept.len() >= l) {
                    page.more = true;
                    break;
                }
                kept.push(item);
            }
            page.items = kept;
        }
        let mut meta = json!({"resourceVersion": list_rv.to_string()});
        if page.more
            && let Some((last, _)) = page.items.last()
        {
            meta["continue"] = json!(encode_continue(
                Some(list_rv),
                &format!("{}/{}", last.0, last.1)
            ));
            if selector.is_empty() {
                meta["remainingItemCount"] = json!(page.remaining);
            }
        }
        let list = match r.output {
            Output::Object | Output::Yaml => {
                let body = ListBody::new(r.t, page.items, &meta);
                if r.output == Output::Object {
                    return Ok(body.stream());
                }
                serde_json::from_str(&body.collect()).unwrap_or(Value::Null)
            }
            Output::Table(include) => {
                let viewed: Vec<Value> = page
                    .items
                    .iter()
                    .map(|(_, o)| into_view(r.t, o.value()))
                    .collect();
                discovery::table(r.t, &viewed.iter().collect::<Vec<_>>(), meta, include)
            }
            Output::PartialMetadata => {
                let items: Vec<Value> = page
                    .items
                    .iter()
                    .map(|(_, o)| discovery::partial_metadata(&into_view(r.t, o.value())))
                    .collect();
                json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items})
            }
        };
        Ok(match r.output {
            Output::Yaml => yaml_response(200, &list, &[]),
            _ => json_response(200, &list, &[]),
        })
    }

    fn create(&self, r: &Req) -> Reply {
        if r.sub.is_some() {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "create on a subresource is not supported",
            ));
        }
        r.check_options("CreateOptions", false)?;
        let body = r.object_body()?;
        self.check_kind(r, &body)?;
        let mut st = self.store.lock();
        let new = self.unview(r.t, body);
        let (new, warnings) = self.prepare(&st, r, None, new)?;
        self.check_namespace(&st, r)?;
        let name = meta_str(&new, "name").unwrap_or_default().to_string();
        if st.contains(&r.t.storage, &r.ns, &name) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", r.t.group_resource()),
            )
            .details(json!({"name": name, "group": r.t.group, "kind": r.t.plural})));
        }
        let (code, obj) = self.commit(&mut st, r, None, new, Some(&r.manager()));
        Ok((code, view(r.t, &obj), warnings))
    }

    fn update(&self, r: &Req) -> Reply {
        r.check_options("UpdateOptions", false)?;
        let body = r.object_body()?;
        self.check_kind(r, &body)?;
        let mut st = self.store.lock();
        let old = st
            .get(&r.t.storage, &r.ns, r.name())
            .ok_or_else(|| ApiError::not_found(r.t, r.name()))?;
        let new = self.unview(r.t, body);
        let (new, warnings) = self.prepare(&st, r, Some(&old), new)?;
        let (code, obj) = self.commit(&mut st, r, Some(&old), new, Some(&r.manager()));
        Ok((code, view(r.t, &obj), warnings))
    }

    fn patch(&self, r: &Req) -> Reply {
        let kind = r
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let supported = [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ];
        if !supported.contains(&kind.as_str())
            && (r.t.custom || kind != "application/strategic-merge-patch+json")
        {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: {}{}",
                    supported.join(", "),
                    if r.t.custom {
                        ""
                    } else {
                        ", application/strategic-merge-patch+json"
                    }
                ),
            ));
        }
        let apply = kind == "application/apply-patch+yaml";
        r.check_options("PatchOptions", apply)?;
        if apply {
            return self.apply(r);
        }
        let mut st = self.store.lock();
        let old = st
            .get(&r.t.storage, &r.ns, r.name())
            .ok_or_else(|| ApiError::not_found(r.t, r.name()))?;
        let mut doc = view(r.t, &old);
        match kind.as_str() {
            "application/merge-patch+json" => json_patch::merge(&mut doc, &r.parse_body()?),
            "application/strategic-merge-patch+json" if !r.t.custom => {
                let p = r.parse_body()?;
                if strategic_directives(&p) {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        "kubesim treats strategic merge patches as JSON merge patches and refuses those using $patch directives or merging metadata.finalizers/ownerReferences",
                    ));
                }
                json_patch::merge(&mut doc, &p)
            }
            _ => {
                // kube-apiserver answers any patch that does not apply (a failed
                // `test`, a missing path, an unknown op) with this generic 422
                // and no causes; only a body that is no list of operations is a 400.
                let rejected = || {
                    ApiError::new(
                        422,
                        "Invalid",
                        "the server rejected our request due to an error in our request",
                    )
                    .details(json!({}))
                };
                let ops: Vec<serde_json::Map<String, Value>> = serde_json::from_slice(&r.body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                let p: json_patch::Patch =
                    serde_json::from_value(json!(ops)).map_err(|_| rejected())?;
                json_patch_go(&mut doc, p).map_err(|_| rejected())?;
            }
        }
        if !doc.is_object() {
            return Err(ApiError::new(
                422,
                "Invalid",
                "the patched object is not a JSON object",
            ));
        }
        let old_rv = meta_str(&old, "resourceVersion")
            .unwrap_or_default()
            .to_string();
        if meta_str(&doc, "resourceVersion").is_none() {
            meta_mut(&mut doc).insert("resourceVersion".into(), json!(old_rv));
        }
        let new = self.unview(r.t, doc);
        let (new, warnings) = self.prepare(&st, r, Some(&old), new)?;
        let (code, obj) = self.commit(&mut st, r, Some(&old), new, Some(&r.manager()));
        Ok((code, view(r.t, &obj), warnings))
    }

    fn apply(&self, r: &Req) -> Reply {
        // check_options made sure there is one.
        let manager = r.q("fieldManager").unwrap_or_default();
        let text =
            std::str::from_utf8(&r.body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let config: Value = serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        if !config.is_object() {
            return Err(ApiError::bad_request("apply patch must be an object"));
        }
        self.check_kind(r, &config)?;
        if let Some(n) = meta_str(&config, "name")
            && n != r.name()
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                r.name()
            )));
        }
        // Server-side apply types the configuration against the schema first:
        // an undeclared field fails the request whatever fieldValidation says,
        // with kube-apiserver's untyped error, a 500 without a reason.
        if let Some(schema) = &r.t.schema {
            let undeclared = schema::undeclared_fields(schema, &config);
            if !undeclared.is_empty() {
                let errs: Vec<String> = undeclared
                    .iter()
                    .map(|p| format!(".{p}: field not declared in schema"))
                    .collect();
                let detail = match errs.as_slice() {
                    [one] => one.clone(),
                    _ => format!("errors:\n  {}", errs.join("\n  ")),
                };
                return Err(ApiError::new(
                    500,
                    "",
                    format!(
                        "failed to create typed patch object ({}/{}; {}, Kind={}): {detail}",
                        // The configuration's own namespace and name, as kube-apiserver prints them.
                        meta_str(&config, "namespace").unwrap_or_default(),
                        meta_str(&config, "name").unwrap_or_default(),
                        r.t.api_version(),
                        r.t.kind
                    ),
                ));
            }
        }
        let force = r.q("force").and_then(go_bool) == Some(true);
        let mut st = self.store.lock();
        let old = st.get(&r.t.storage, &r.ns, r.name());
        if old.is_none() && r.sub.is_some() {
            return Err(ApiError::not_found(r.t, r.name()));
        }
        let current = match &old {
            Some(o) => view(r.t, o),
            None => {
                json!({"apiVersion": r.t.api_version(), "kind": r.t.kind, "metadata": {"name": r.name()}})
            }
        };
        let now = now();
        let api_version = r.t.api_version();
        let writer = r.writer(manager, &api_version, &now);
        let mut merged = fields::apply(r.t.schema.as_ref(), &current, &config, force, &writer)
            .map_err(|c| conflict_error(&c))?;
        if let Some(o) = &old {
            // A resourceVersion in the configuration is a precondition, as for any write.
            if meta_str(&config, "resourceVersion")
                .is_some_and(|v| Some(v) != meta_str(o, "resourceVersion"))
            {
                return Err(ApiError::conflict(r.t, r.name()));
            }
            meta_mut(&mut merged).insert(
                "resourceVersion".into(),
                json!(meta_str(o, "resourceVersion")),
            );
        } else if r.t.namespaced {
            meta_mut(&mut merged).insert("namespace".into(), json!(r.ns));
        }
        let new = self.unview(r.t, merged);
        let (new, warnings) = self.prepare(&st, r, old.as_ref(), new)?;
        if old.is_none() {
            self.check_namespace(&st, r)?;
        }
        let (code, obj) = self.commit(&mut st, r, old.as_ref(), new, None);
        Ok((code, view(r.t, &obj), warnings))
    }

    fn delete(&self, r: &Req, opts: &Value) -> Reply {
        let mut st = self.store.lock();
        let old = st
            .get(&r.t.storage, &r.ns, r.name())
            .ok_or_else(|| ApiError::not_found(r.t, r.name()))?;
        if r.t.plural == "namespaces" {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "kubesim does not delete namespaces (it would have to delete their contents)",
            ));
        }
        let (obj, removed) = delete_object(&mut st, r, old, opts)?;
        if removed {
            return Ok((200, deleted_status(r.t, &obj), vec![]));
        }
        Ok((200, view(r.t, &obj), vec![]))
    }

    /// `deletecollection`: every object the selectors match, deleted one by
    /// one as a delete would, answered with the list of what was deleted or
    /// marked, as kube-apiserver's `DeleteCollection` answers.
    fn delete_collection(&self, r: &Req, opts: &Value) -> Reply {
        if r.sub.is_some() || r.t.plural == "namespaces" {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ));
        }
        let selector = self.selector(r)?;
        let mut st = self.store.lock();
        let ns = (!r.ns.is_empty()).then_some(r.ns.as_str());
        let targets: Vec<Value> = st
            .list(&r.t.storage, ns)
            .map(|(_, o)| o.value())
            .filter(|o| selector.matches_in(r.t, o))
            .collect();
        let mut items = Vec::new();
        for old in targets {
            let name = meta_str(&old, "name").unwrap_or_default().to_string();
            // The same request, for this object.
            let one = Req {
                name: Some(name),
                ns: meta_str(&old, "namespace").unwrap_or_default().to_string(),
                ..r.clone()
            };
            let (obj, _) = delete_object(&mut st, &one, old, opts)?;
            items.push(view(r.t, &obj));
        }
        Ok((
            200,
            json!({"kind": format!("{}List", r.t.kind), "apiVersion": r.t.api_version(),
                "metadata": {"resourceVersion": st.current_rv().to_string()}, "items": items}),
            vec![],
        ))
    }

    /// The body's apiVersion and kind against the URL's: another version is
    /// the decoder's 400; another kind of a custom resource is the 422 of its
    /// strategy's `ValidateTypeMeta`, of a built-in the decoder's 400.
    fn check_kind(&self, r: &Req, body: &Value) -> Result<(), ApiError> {
        let api_version = body
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
        if !api_version.is_empty() && api_version != r.t.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({})",
                r.t.api_version()
            )));
        }
        if kind.is_empty() || kind == r.t.kind {
            return Ok(());
        }
        if !r.t.custom {
            return Err(ApiError::bad_request(format!(
                "no kind {} is registered for version {} in scheme \"pkg/api/legacyscheme/scheme.go:30\"",
                Value::String(kind.into()),
                Value::String(r.t.api_version())
            )));
        }
        let name = meta_str(body, "name").unwrap_or(r.name());
        Err(ApiError::invalid(
            r.t,
            name,
            &[FieldError {
                field: "kind".into(),
                reason: "FieldValueInvalid".into(),
                message: format!(
                    "Invalid value: {}: must be {}",
                    Value::String(kind.into()),
                    r.t.kind
                ),
            }],
        ))
    }

    /// Everything kube-apiserver does to an object before storing it: identity
    /// and metadata rules, the status subresource split, schema pruning,
    /// defaulting and validation, generation and finalizer rules.
    fn prepare(
        &self,
        st: &State,
        r: &Req,
        old: Option<&Value>,
        mut new: Value,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let t = r.t;
        let stored_version = if t.is_event_v1() {
            "v1".to_string()
        } else {
            t.api_version()
        };
        new["apiVersion"] = json!(stored_version);
        new["kind"] = json!(t.kind);
        let url_ns = r.ns.clone();
        {
            let m = meta_mut(&mut new);
            if t.namespaced {
                match m
                    .get("namespace")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    Some(ns) if ns != url_ns => {
                        return Err(ApiError::bad_request(
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ));
                    }
                    _ => {
                        m.insert("namespace".into(), json!(url_ns));
                    }
                }
            } else {
                m.remove("namespace");
            }
        }
        match old {
            None => {
                let m = meta_mut(&mut new);
                let mut name = m
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if name.is_empty() {
                    match m
                        .get("generateName")
                        .and_then(Value::as_str)
                        .filter(|g| !g.is_empty())
                    {
                        Some(prefix) => name = format!("{prefix}{}", random_suffix()),
                        None => {
                            return Err(ApiError::invalid(
                                t,
                                "",
                                &[FieldError {
                                    field: "metadata.name".into(),
                                    reason: "FieldValueRequired".into(),
                                    message: "Required value: name or generateName is required"
                                        .into(),
                                }],
                            ));
                        }
                    }
                    m.insert("name".into(), json!(name));
                }
                if m.get("resourceVersion")
                    .and_then(Value::as_str)
                    .is_some_and(|v| !v.is_empty())
                {
                    return Err(ApiError::new(
                        500,
                        "InternalError",
                        "resourceVersion should not be set on objects to be created",
                    ));
                }
                if let Some(e) = check_name(t, &name) {
                    return Err(ApiError::invalid(t, &name, &[e]));
                }
                m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
                m.insert("creationTimestamp".into(), json!(now()));
                for k in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
                    m.remove(k);
                }
                if t.custom {
                    m.insert("generation".into(), json!(1));
                } else {
                    m.remove("generation");
                }
                if t.custom
                    && t.status_subresource
                    && let Some(o) = new.as_object_mut()
                {
                    o.remove("status");
                }
            }
            Some(old) => {
                let name = r.name();
                if let Some(n) = meta_str(&new, "name")
                    && n != name
                {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({name})"
                    )));
                }
                match meta_str(&new, "resourceVersion") {
                    None if t.custom => {
                        return Err(ApiError::invalid(
                            t,
                            name,
                            &[FieldError {
                                field: "metadata.resourceVersion".into(),
                                reason: "FieldValueInvalid".into(),
                                message: "Invalid value: 0x0: must be specified for an update"
                                    .into(),
                            }],
                        ));
                    }
                    Some(rv) if Some(rv) != meta_str(old, "resourceVersion") => {
                        return Err(ApiError::conflict(t, name));
                    }
                    _ => {}
                }
                if r.sub.is_some() {
                    // Status writes change status only.
                    let status = new.get("status").cloned();
                    let managed = new.pointer("/metadata/managedFields").cloned();
                    new = old.clone();
                    if let Some(mf) = managed {
                        meta_mut(&mut new).insert("managedFields".into(), mf);
                    }
                    match status {
                        Some(s) => new["status"] = s,
                        None => {
                            if let Some(o) = new.as_object_mut() {
                                o.remove("status");
                            }
                        }
                    }
                } else if t.status_subresource {
                    match old.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            if let Some(o) = new.as_object_mut() {
                                o.remove("status");
                            }
                        }
                    }
                }
                let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
                let m = meta_mut(&mut new);
                for k in [
                    "name",
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                ] {
                    match old_meta.get(k) {
                        Some(v) => m.insert(k.into(), v.clone()),
                        None => m.remove(k),
                    };
                }
                if meta_str(old, "deletionTimestamp").is_some() {
                    let before = finalizers(old);
                    let mut added: Vec<String> = finalizers(&new)
                        .into_iter()
                        .filter(|f| !before.contains(f))
                        .map(|f| Value::String(f).to_string())
                        .collect();
                    added.sort();
                    added.dedup();
                    if !added.is_empty() {
                        return Err(ApiError::invalid(
                            t,
                            name,
                            &[FieldError {
                                field: "metadata.finalizers".into(),
                                reason: "FieldValueForbidden".into(),
                                message: format!(
                                    "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                                    added.join(", ")
                                ),
                            }],
                        ));
                    }
                }
            }
        }
        let name = meta_str(&new, "name").unwrap_or_default().to_string();
        let label_errors = check_labels(&new);
        if !label_errors.is_empty() {
            return Err(ApiError::invalid(t, &name, &label_errors));
        }
        if t.plural == "secrets" {
            secret_defaults(&mut new)?;
        }
        if !t.custom {
            builtin::check_micro_times(t, &new).map_err(ApiError::bad_request)?;
            let errs = builtin::validate(t, &new, old);
            if !errs.is_empty() {
                return Err(ApiError::invalid(t, &name, &errs));
            }
        }
        if t.plural == "namespaces" {
            // Set on every write, as kube-apiserver does: selectors can rely on it.
            let m = meta_mut(&mut new);
            if !m.get("labels").is_some_and(Value::is_object) {
                m.insert("labels".into(), json!({}));
            }
            if let Some(labels) = m.get_mut("labels").and_then(Value::as_object_mut) {
                labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        if t.plural == "namespaces" && old.is_none() {
            new["status"] = json!({"phase": "Active"});
            if new.pointer("/spec/finalizers").is_none() {
                new["spec"] = json!({"finalizers": ["kubernetes"]});
            }
        }
        let mut warnings = Vec::new();
        if let Some(schema) = &t.schema {
            let submitted = r.is_update_patch().then(|| new.to_string());
            let pruned = schema::admit_compiled(schema, t.cel.as_deref(), &mut new, old)
                .map_err(|errs| ApiError::invalid(t, &name, &errs))?;
            let unknown: Vec<String> = pruned
                .iter()
                .map(|p| format!("unknown field \"{p}\""))
                .collect();
            match r.q("fieldValidation") {
                // kube-apiserver's patcher words it as an invalid patch.
                Some("Strict") if !unknown.is_empty() && submitted.is_some() => {
                    let errs = [FieldError {
                        field: "patch".into(),
                        reason: "FieldValueInvalid".into(),
                        message: format!(
                            "Invalid value: {}: strict decoding error: {}",
                            Value::String(submitted.unwrap_or_default()),
                            unknown.join(", ")
                        ),
                    }];
                    let (summary, causes) = summary_and_causes(&errs);
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!(" \"\" is invalid: {summary}"),
                    )
                    .details(json!({"causes": causes})));
                }
                Some("Strict") if !unknown.is_empty() => {
                    return Err(ApiError::bad_request(format!(
                        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                        unknown.join(", "),
                        kind = t.kind,
                        version = t.version
                    )));
                }
                Some("Ignore") => {}
                _ => warnings = unknown,
            }
        }
        if t.custom
            && let Some(old) = old
            && spec_changed(old, &new, t.status_subresource)
        {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        let _ = st;
        Ok((new, warnings))
    }

    /// Store a prepared object (recording the writer's fields unless apply
    /// already did), skipping no-op writes and completing a finished deletion.
    fn commit(
        &self,
        st: &mut State,
        r: &Req,
        old: Option<&Value>,
        mut new: Value,
        manager: Option<&str>,
    ) -> (u16, Value) {
        let now = now();
        let api_version = r.t.api_version();
        if let Some(manager) = manager {
            let writer = r.writer(manager, &api_version, &now);
            let view_old = old.map(|o| view(r.t, o));
            let mut view_new = view(r.t, &new);
            fields::record_update(
                r.t.schema.as_ref(),
                view_old.as_ref(),
                &mut view_new,
                &writer,
            );
            let managed = view_new.pointer("/metadata/managedFields").cloned();
            let m = meta_mut(&mut new);
            match managed {
                Some(mf) => m.insert("managedFields".into(), mf),
                None => m.remove("managedFields"),
            };
        }
        let name = meta_str(&new, "name").unwrap_or_default().to_string();
        if let Some(old) = old {
            if comparable(old) == comparable(&new) {
                return (200, old.clone());
            }
            if meta_str(&new, "deletionTimestamp").is_some() && finalizers(&new).is_empty() {
                // Go's omitempty: no `finalizers: []` in the answer.
                let m = meta_mut(&mut new);
                m.remove("finalizers");
                if r.dry_run() {
                    return (200, new);
                }
                // As kube-apiserver's store: the update is not written, the
                // object is deleted as it was stored last, finalizers and all,
                // and that is what the DELETED event shows.
                let gone = st.commit(&r.t.storage, &r.ns, &name, ChangeType::Deleted, old.clone());
                meta_mut(&mut new).insert(
                    "resourceVersion".into(),
                    json!(meta_str(&gone, "resourceVersion")),
                );
                return (200, new);
            }
        }
        if r.dry_run() {
            return (if old.is_some() { 200 } else { 201 }, new);
        }
        let kind = if old.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        let stored = st.commit(&r.t.storage, &r.ns, &name, kind, new);
        (if old.is_some() { 200 } else { 201 }, stored)
    }
}

/// Delete one stored object as kube-apiserver's store does: preconditions
/// first, then either mark it (finalizers left) or remove it. The object as
/// stored (or as it was when removed), and whether it is gone.
fn delete_object(
    st: &mut State,
    r: &Req,
    old: Value,
    opts: &Value,
) -> Result<(Value, bool), ApiError> {
    if let Some(pre) = opts.get("preconditions") {
        let uid = meta_str(&old, "uid").unwrap_or_default();
        let rv = meta_str(&old, "resourceVersion").unwrap_or_default();
        for (key, label, actual, hint) in [
            ("uid", "UID", uid, "deleted and then recreated"),
            ("resourceVersion", "ResourceVersion", rv, "modified"),
        ] {
            if let Some(want) = pre.get(key).and_then(Value::as_str)
                && want != actual
            {
                // Worded as kube-apiserver's BeforeDelete check words it.
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{}\": the {label} in the precondition ({want}) does not match the {label} in record ({actual}). The object might have been {hint}",
                        r.t.group_resource(),
                        r.name()
                    ),
                )
                .details(json!({"name": r.name(), "group": r.t.group, "kind": r.t.plural})));
            }
        }
    }
    if !finalizers(&old).is_empty() {
        if meta_str(&old, "deletionTimestamp").is_some() {
            return Ok((old, false));
        }
        let mut marked = old;
        let m = meta_mut(&mut marked);
        m.insert("deletionTimestamp".into(), json!(now()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        if let Some(g) = m.get("generation").and_then(Value::as_i64) {
            m.insert("generation".into(), json!(g + 1));
        }
        let stored = if r.dry_run() {
            marked
        } else {
            st.commit(&r.t.storage, &r.ns, r.name(), ChangeType::Modified, marked)
        };
        return Ok((stored, false));
    }
    let gone = if r.dry_run() {
        old
    } else {
        st.commit(&r.t.storage, &r.ns, r.name(), ChangeType::Deleted, old)
    };
    Ok((gone, true))
}

/// What kube-apiserver answers a delete that removed the object at once.
fn deleted_status(t: &ResourceType, gone: &Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": meta_str(gone, "name"), "group": t.group, "kind": t.plural, "uid": meta_str(gone, "uid")}})
}

/// A list's JSON, spliced from the stored texts of its items (no object is
/// parsed unless it was stored in another version) piece by piece as the
/// client reads it: no list-sized buffer, and no handler busy rendering a
/// long list while writes wait for a worker.
struct ListBody {
    t: ResourceType,
    items: std::vec::IntoIter<(super::store::ObjectKey, Arc<Stored>)>,
    head: Option<String>,
    tail: Option<String>,
    first: bool,
}

impl ListBody {
    /// How much JSON one piece carries, at least.
    const PIECE: usize = 64 << 10;

    fn new(
        t: &ResourceType,
        items: Vec<(super::store::ObjectKey, Arc<Stored>)>,
        meta: &Value,
    ) -> ListBody {
        ListBody {
            t: t.clone(),
            items: items.into_iter(),
            head: Some(format!(
                "{{\"apiVersion\":{},\"items\":[",
                Value::String(t.api_version())
            )),
            tail: Some(format!(
                "],\"kind\":{},\"metadata\":{meta}}}",
                Value::String(format!("{}List", t.kind))
            )),
            first: true,
        }
    }

    /// The next piece of the list, `None` after its end.
    fn piece(&mut self) -> Option<String> {
        let mut out = self.head.take().unwrap_or_default();
        while out.len() < Self::PIECE {
            let Some((_, o)) = self.items.next() else {
                out.push_str(&self.tail.take()?);
                return Some(out);
            };
            if !std::mem::take(&mut self.first) {
                out.push(',');
            }
            out.push_str(&view_json(&self.t, &o));
        }
        Some(out)
    }

    fn collect(mut self) -> String {
        let mut all = String::new();
        while let Some(p) = self.piece() {
            all.push_str(&p);
        }
        all
    }

    fn stream(self) -> Response {
        let pieces = futures::stream::unfold(self, |mut body| async move {
            // Each piece is a turn of the runtime: other requests run between pieces.
            tokio::task::yield_now().await;
            body.piece()
                .map(|p| (Ok::<_, std::convert::Infallible>(Bytes::from(p)), body))
        });
        let mut resp = Response::new(Body::from_stream(pieces));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// The object as this API version shows it (Events are stored as core v1).
fn view(t: &ResourceType, obj: &Value) -> Value {
    into_view(t, obj.clone())
}

/// [`view`] as JSON text: the stored text itself when it was stored in the
/// version asked for (kind and the rest are the same in every version).
pub(crate) fn view_json<'a>(t: &ResourceType, obj: &'a Stored) -> std::borrow::Cow<'a, str> {
    if !t.is_event_v1() && obj.api_version() == t.api_version() {
        std::borrow::Cow::Borrowed(obj.json())
    } else {
        std::borrow::Cow::Owned(into_view(t, obj.value()).to_string())
    }
}

/// [`view`] of an object the caller owns.
fn into_view(t: &ResourceType, obj: Value) -> Value {
    let mut o = if t.is_event_v1() {
        discovery::convert_event(&obj, true)
    } else {
        obj
    };
    if let Some(m) = o.as_object_mut() {
        m.insert("apiVersion".into(), json!(t.api_version()));
        m.insert("kind".into(), json!(t.kind));
    }
    o
}

/// Generation counts changes outside metadata (and outside status when
/// status is a subresource).
fn spec_changed(old: &Value, new: &Value, status_is_subresource: bool) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("metadata");
            if status_is_subresource {
                o.remove("status");
            }
        }
        v
    };
    strip(old) != strip(new)
}

/// `stringData` folded into `data` and `type` defaulted, as kube-apiserver
/// does; values that would not decode into a Secret are a 400, as its decoder answers.
fn secret_defaults(secret: &mut Value) -> Result<(), ApiError> {
    use base64::Engine;
    let undecodable = |detail: String| {
        ApiError::bad_request(format!(
            "Secret in version \"v1\" cannot be handled as a Secret: {detail}"
        ))
    };
    let Some(obj) = secret.as_object_mut() else {
        return Ok(());
    };
    if let Some(Value::Object(data)) = obj.get("data") {
        for v in data.values() {
            let text = v.as_str().ok_or_else(|| {
                undecodable(format!(
                    "json: cannot unmarshal {} into Go struct field Secret.data of type []uint8",
                    go_type(v)
                ))
            })?;
            // Only the offset, as Go says it: the bytes are secret material.
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| {
                    let at = match e {
                        base64::DecodeError::InvalidByte(at, _)
                        | base64::DecodeError::InvalidLastSymbol(at, _) => at,
                        base64::DecodeError::InvalidLength(at) => at,
                        base64::DecodeError::InvalidPadding => text.len(),
                    };
                    undecodable(format!("illegal base64 data at input byte {at}"))
                })?;
        }
    }
    if let Some(plain) = obj.remove("stringData") {
        let Value::Object(plain) = plain else {
            return Err(undecodable(format!(
                "json: cannot unmarshal {} into Go struct field Secret.stringData of type map[string]string",
                go_type(&plain)
            )));
        };
        let data = obj.entry("data").or_insert_with(|| json!({}));
        if let Some(data) = data.as_object_mut() {
            for (k, v) in plain {
                let text = v.as_str().ok_or_else(|| {
                    undecodable(format!(
                        "json: cannot unmarshal {} into Go struct field Secret.stringData of type string",
                        go_type(&v)
                    ))
                })?;
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
    obj.entry("type").or_insert_with(|| json!("Opaque"));
    Ok(())
}

/// How Go's JSON decoder names a JSON value's type in its errors.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// RFC 6902 as kube-apiserver's implementation (evanphx/json-patch) applies
/// it: a `test` for `null` passes on a missing path, which kube-runtime's
/// finalizer helper relies on when an object has no finalizers yet.
fn json_patch_go(doc: &mut Value, patch: json_patch::Patch) -> Result<(), json_patch::PatchError> {
    for op in patch.0 {
        if let json_patch::PatchOperation::Test(t) = &op
            && t.value.is_null()
            && doc.pointer(t.path.as_str()).is_none_or(Value::is_null)
        {
            continue;
        }
        json_patch::patch(doc, &[op])?;
    }
    Ok(())
}

/// Whether a strategic merge patch needs more than JSON merge semantics.
fn strategic_directives(patch: &Value) -> bool {
    fn walk(v: &Value) -> bool {
        match v {
            Value::Object(m) => m.keys().any(|k| k.starts_with('$')) || m.values().any(walk),
            Value::Array(a) => a.iter().any(walk),
            _ => false,
        }
    }
    walk(patch)
        || patch.pointer("/metadata/finalizers").is_some()
        || patch.pointer("/metadata/ownerReferences").is_some()
}

fn conflict_error(conflicts: &[fields::Conflict]) -> ApiError {
    let message = match conflicts {
        [c] => format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager_text(),
            fields::path_text(&c.path)
        ),
        _ => {
            // As kube-apiserver: grouped by manager, managers sorted.
            let mut by_manager: std::collections::BTreeMap<String, Vec<String>> =
                Default::default();
            for c in conflicts {
                by_manager
                    .entry(c.manager_text())
                    .or_default()
                    .push(format!("- {}", fields::path_text(&c.path)));
            }
            let lines: Vec<String> = by_manager
                .into_iter()
                .flat_map(|(m, paths)| std::iter::once(format!("conflicts with {m}:")).chain(paths))
                .collect();
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        }
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", c.manager_text()), "field": fields::path_text(&c.path)}))
        .collect();
    // kube-apiserver's apply conflicts name no object in their details, only causes.
    ApiError::new(409, "Conflict", message).details(json!({"causes": causes}))
}

/// kube-apiserver's `ValidateListOptions` for a list or a watch: 422s naming
/// the parameter rather than a combination silently served as something else.
fn check_list_options(r: &Req, watch: bool) -> Result<(), ApiError> {
    let matching = r.q("resourceVersionMatch");
    let send_initial = r.q("sendInitialEvents");
    let has_continue = r.q("continue").is_some();
    let mut errs = Vec::new();
    let forbidden = |field: &str, message: &str| FieldError {
        field: field.into(),
        reason: "FieldValueForbidden".into(),
        message: format!("Forbidden: {message}"),
    };
    let unsupported = |value: &str, supported: &str| FieldError {
        field: "resourceVersionMatch".into(),
        reason: "FieldValueNotSupported".into(),
        message: format!(
            "Unsupported value: {}: supported values: {supported}",
            Value::String(value.into())
        ),
    };
    if watch {
        if send_initial.is_some() && matching != Some("NotOlderThan") {
            errs.push(forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if let Some(m) = matching {
            if send_initial.is_none() {
                errs.push(forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if m != "NotOlderThan" {
                errs.push(unsupported(m, "\"NotOlderThan\""));
            }
        }
    } else {
        if let Some(m) = matching {
            if r.q("resourceVersion").is_none() {
                errs.push(forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if !matches!(m, "Exact" | "NotOlderThan") {
                errs.push(unsupported(m, "\"Exact\", \"NotOlderThan\", \"\""));
            }
            if m == "Exact" && r.q("resourceVersion") == Some("0") {
                errs.push(forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if send_initial.is_some() {
            errs.push(forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            ));
        }
    }
    if matching.is_some() && has_continue {
        errs.push(forbidden(
            "resourceVersionMatch",
            "resourceVersionMatch is forbidden when continue is provided",
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_options("ListOptions", &errs))
    }
}

/// `dryRun` accepts only `All`, as kube-apiserver's `ValidateDryRun`.
fn dry_run_error(values: Vec<&str>) -> Option<FieldError> {
    if values.iter().all(|v| *v == "All") {
        return None;
    }
    let listed: Vec<String> = values
        .iter()
        .map(|v| Value::String((*v).into()).to_string())
        .collect();
    Some(FieldError {
        field: "dryRun".into(),
        reason: "FieldValueNotSupported".into(),
        message: format!(
            "Unsupported value: []string{{{}}}: supported values: \"All\"",
            listed.join(", ")
        ),
    })
}

/// The `DeleteOptions` of a delete: its body when there is one, else the
/// query parameters, as kube-apiserver reads them; validated as
/// kube-apiserver does, and refused (400) where they would need the garbage
/// collector kubesim does not have.
fn delete_options(r: &Req) -> Result<Value, ApiError> {
    let opts = if r.body.is_empty() {
        let mut o = serde_json::Map::new();
        if let Some(p) = r.q("propagationPolicy") {
            o.insert("propagationPolicy".into(), json!(p));
        }
        if let Some(v) = r.q("orphanDependents").and_then(go_bool) {
            o.insert("orphanDependents".into(), json!(v));
        }
        if let Some(d) = r.q("dryRun") {
            o.insert("dryRun".into(), json!([d]));
        }
        Value::Object(o)
    } else {
        r.object_body()?
    };
    let policy = opts.get("propagationPolicy").and_then(Value::as_str);
    let orphan = opts.get("orphanDependents").and_then(Value::as_bool);
    let mut errs = Vec::new();
    if let Some(p) = policy {
        if orphan.is_some() {
            errs.push(FieldError {
                field: "propagationPolicy".into(),
                reason: "FieldValueInvalid".into(),
                message: format!(
                    "Invalid value: {}: orphanDependents and deletionPropagation cannot be both set",
                    Value::String(p.into())
                ),
            });
        }
        if !matches!(p, "Foreground" | "Background" | "Orphan") {
            errs.push(FieldError {
                field: "propagationPolicy".into(),
                reason: "FieldValueNotSupported".into(),
                message: format!(
                    "Unsupported value: {}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\"",
                    Value::String(p.into())
                ),
            });
        }
    }
    let dry_run: Vec<&str> = opts
        .get("dryRun")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap_or_default())
        .collect();
    errs.extend(dry_run_error(dry_run));
    if !errs.is_empty() {
        return Err(ApiError::invalid_options("DeleteOptions", &errs));
    }
    if orphan == Some(true) || matches!(policy, Some("Foreground" | "Orphan")) {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy {} needs the garbage collector, which kubesim does not have; use Background",
            policy.unwrap_or("Orphan")
        )));
    }
    Ok(opts)
}

fn too_large(rv: u64, current: u64) -> ApiError {
    ApiError::new(504, "Timeout", format!("Too large resource version: {rv}, current: {current}"))
        .details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}))
}

/// A continue token: the first page's resourceVersion (`-1`: the current
/// one, as kube-apiserver marks the token of an expired list) and the last key served.
fn encode_continue(rv: Option<u64>, after: &str) -> String {
    use base64::Engine;
    let rv = rv.map_or(json!(-1), |v| json!(v));
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"rv": rv, "after": after}).to_string())
}

fn decode_continue(token: &str) -> Result<(Option<u64>, Option<String>), ApiError> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = match v.get("rv") {
        Some(n) if n.as_i64() == Some(-1) => None,
        Some(n) => Some(n.as_u64().ok_or_else(bad)?),
        None => return Err(bad()),
    };
    let after = v.get("after").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rv, Some(after.to_string())))
}

mod watch;
