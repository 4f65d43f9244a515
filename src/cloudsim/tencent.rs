//! Tencent Cloud API 3.0 on `/`: `POST` with a JSON body or `GET`/`POST`
//! with form parameters, signed with `TC3-HMAC-SHA256` (headers) or the
//! query "signature v1" (parameters). Serves the `vpc` actions a controller
//! needs and CVM `DescribeInstances`. Every answer is HTTP 200 with
//! `Content-Type: application/json` and a `{"Response": {...}}` envelope.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use axum::http::Method;
use serde_json::{Map, Value, json};

use super::faults::{Decision, Protocol, tencent_default_limit};
use super::server::{
    CallInfo, HttpRequest, Reply, Sim, Wire, audit, credential_of, presented_key_id, run_call,
};
use super::world::{
    Async, Cloud, Instance, Nic, Rule, Subnet, TaskStatus, TokenRecord, parse_ipv4_list,
    parse_ipv6_list,
};
use crate::signing::{self, query, tc3};

pub const VERSION: &str = "2017-03-12";

/// An API 3.0 error: code and message.
#[derive(Debug)]
pub(crate) struct TcError {
    pub code: String,
    pub message: String,
}

pub(crate) fn tc_err(code: &str, message: impl Into<String>) -> TcError {
    TcError {
        code: code.to_string(),
        message: message.into(),
    }
}

fn error_body(request_id: &str, e: &TcError) -> Value {
    json!({"Response": {"Error": {"Code": e.code, "Message": e.message}, "RequestId": request_id}})
}

/// The common parameters of the query signature; they are not action
/// parameters.
const COMMON_V1: &[&str] = &[
    "Action",
    "Version",
    "Region",
    "Timestamp",
    "Nonce",
    "SecretId",
    "Signature",
    "SignatureMethod",
    "Token",
    "Language",
    "RequestClient",
];

/// The most `.`-separated segments a form parameter name may have.
const MAX_NAME_DEPTH: usize = 16;

/// Decodes `a=1&b=2` into ordered pairs.
pub(crate) fn form_pairs(raw: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(raw)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Turns flattened form names (`PrivateIpAddresses.0.PrivateIpAddress`) back
/// into nested JSON. Values stay strings; the getters below accept numeric
/// and boolean strings.
pub(crate) fn unflatten(pairs: &[(String, String)]) -> Map<String, Value> {
    let mut root = Value::Object(Map::new());
    for (name, value) in pairs {
        let mut node = &mut root;
        let segments: Vec<&str> = name.split('.').collect();
        // No API parameter nests deeper; a name of thousands of segments
        // would build a document whose drop overflows the stack.
        if segments.len() > MAX_NAME_DEPTH {
            continue;
        }
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let next_is_index = segments
                .get(i + 1)
                .is_some_and(|s| s.parse::<usize>().is_ok());
            let child_default = || {
                if next_is_index {
                    Value::Array(Vec::new())
                } else {
                    Value::Object(Map::new())
                }
            };
            node = match node {
                Value::Object(map) => {
                    if last {
                        map.insert(seg.to_string(), Value::String(value.clone()));
                        break;
                    }
                    map.entry(seg.to_string()).or_insert_with(child_default)
                }
                Value::Array(arr) => {
                    let Ok(idx) = seg.parse::<usize>() else { break };
                    if idx > 1000 {
                        break;
                    }
                    while arr.len() <= idx {
                        arr.push(Value::Null);
                    }
                    if last {
                        arr[idx] = Value::String(value.clone());
                        break;
                    }
                    if arr[idx].is_null() {
                        arr[idx] = child_default();
                    }
                    &mut arr[idx]
                }
                _ => break,
            };
        }
    }
    match root {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Verifies a query signature (API 3.0 v1 and legacy API 2.0) against the
/// received `Host` and the decoded parameters.
pub(crate) fn query_signature_ok(
    secret_key: &str,
    http_method: &str,
    host: &str,
    path: &str,
    pairs: &[(String, String)],
) -> bool {
    let presented = pairs
        .iter()
        .find(|(k, _)| k == "Signature")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let method = query::Method::from_param(
        pairs
            .iter()
            .find(|(k, _)| k == "SignatureMethod")
            .map(|(_, v)| v.as_str()),
    );
    let sts = query::string_to_sign(
        http_method,
        host,
        path,
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    signing::signatures_match(&query::signature(secret_key, method, &sts), presented)
}

/// A parsed, authenticated API 3.0 request.
struct Parsed {
    action: String,
    service: String,
    version: Option<String>,
    region: Option<String>,
    params: Map<String, Value>,
}

fn authenticate(sim: &Sim, req: &HttpRequest) -> Result<(String, Parsed), TcError> {
    let auth = req.header("authorization").unwrap_or("");
    if auth.starts_with(tc3::ALGORITHM) {
        authenticate_tc3(sim, req, auth)
    } else {
        authenticate_v1(sim, req)
    }
}

fn check_timestamp(sim: &Sim, ts: i64) -> Result<(), TcError> {
    if (sim.now_unix() - ts).abs() > sim.settings.timestamp_window_seconds {
        return Err(tc_err(
            "AuthFailure.SignatureExpire",
            "The signature has expired: the request timestamp differs from the server time by more than the allowed window.",
        ));
    }
    Ok(())
}

fn check_token(sim: &Sim, secret_id: &str, token: Option<&str>) -> Result<(), TcError> {
    let Some(account) = sim
        .accounts
        .tencent
        .iter()
        .find(|a| a.secret_id == secret_id)
    else {
        return Ok(());
    };
    let token = token.filter(|t| !t.is_empty());
    let ok = match token {
        Some(t) => account
            .session_tokens
            .iter()
            .any(|k| signing::signatures_match(k, t)),
        None => account.session_tokens.is_empty(),
    };
    if ok {
        Ok(())
    } else {
        Err(tc_err(
            "AuthFailure.TokenFailure",
            "The session token is invalid or missing.",
        ))
    }
}

fn secret_of<'a>(sim: &'a Sim, secret_id: &str) -> Result<&'a str, TcError> {
    sim.accounts
        .tencent
        .iter()
        .find(|a| a.secret_id.trim() == secret_id)
        .map(|a| a.secret_key.trim())
        .ok_or_else(|| {
            tc_err(
                "AuthFailure.SecretIdNotFound",
                "The SecretId is not found, please check your credentials.",
            )
        })
}

fn authenticate_tc3(sim: &Sim, req: &HttpRequest, auth: &str) -> Result<(String, Parsed), TcError> {
    let invalid = || {
        tc_err(
            "AuthFailure.InvalidAuthorization",
            "The Authorization header is malformed.",
        )
    };
    let rest = auth
        .strip_prefix(tc3::ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(invalid)?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(invalid());
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [secret_id, date, service, terminator] = scope.as_slice() else {
        return Err(invalid());
    };
    let ts_raw = req.header("x-tc-timestamp").ok_or_else(|| {
        tc_err(
            "MissingParameter",
            "The request is missing the X-TC-Timestamp header.",
        )
    })?;
    let ts: i64 = ts_raw.trim().parse().map_err(|_| {
        tc_err(
            "InvalidParameter",
            "X-TC-Timestamp must be an integer number of seconds.",
        )
    })?;
    check_timestamp(sim, ts)?;
    let secret = secret_of(sim, secret_id)?;
    let mismatch = || {
        tc_err(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature is correct.",
        )
    };
    let names: Vec<&str> = signed.split(';').collect();
    if !names.contains(&"content-type") || !names.contains(&"host") {
        return Err(mismatch());
    }
    if tc3::date_of(ts).as_deref() != Some(*date)
        || *terminator != "tc3_request"
        || !matches!(*service, "vpc" | "cvm")
    {
        return Err(mismatch());
    }
    let mut headers = Vec::with_capacity(names.len());
    for name in &names {
        headers.push((*name, req.header(name).ok_or_else(mismatch)?));
    }
    let payload_hash = if req.header("x-tc-content-sha256") == Some("UNSIGNED-PAYLOAD") {
        signing::sha256_hex(b"UNSIGNED-PAYLOAD")
    } else {
        signing::sha256_hex(&req.body)
    };
    let method = req.method.as_str();
    let canonical_query = if req.method == Method::GET {
        req.query.as_str()
    } else {
        ""
    };
    let expected = tc3::signature(
        secret,
        &tc3::Request {
            method,
            canonical_query,
            headers: &headers,
            payload_hash: &payload_hash,
            service,
            timestamp: ts,
        },
    )
    .ok_or_else(mismatch)?;
    if !signing::signatures_match(&expected, signature) {
        return Err(mismatch());
    }
    check_token(sim, secret_id, req.header("x-tc-token"))?;
    let params = if req.method == Method::GET {
        unflatten(&form_pairs(req.query.as_bytes()))
    } else if req
        .header("content-type")
        .unwrap_or("")
        .starts_with("application/json")
    {
        match serde_json::from_slice::<Value>(&req.body) {
            Ok(Value::Object(m)) => m,
            Ok(_) | Err(_) => {
                return Err(tc_err(
                    "InvalidParameter",
                    "The request body is not a JSON object.",
                ));
            }
        }
    } else {
        unflatten(&form_pairs(&req.body))
    };
    let action = req.header("x-tc-action").ok_or_else(|| {
        tc_err(
            "MissingParameter",
            "The request is missing the X-TC-Action header.",
        )
    })?;
    Ok((
        secret_id.to_string(),
        Parsed {
            action: action.to_string(),
            service: service.to_string(),
            version: req.header("x-tc-version").map(str::to_string),
            region: req.header("x-tc-region").map(str::to_string),
            params,
        },
    ))
}

fn authenticate_v1(sim: &Sim, req: &HttpRequest) -> Result<(String, Parsed), TcError> {
    let pairs = if req.method == Method::GET {
        form_pairs(req.query.as_bytes())
    } else {
        form_pairs(&req.body)
    };
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("Signature").is_none() {
        return Err(tc_err(
            "AuthFailure.InvalidAuthorization",
            "The request carries neither an Authorization header nor a Signature.",
        ));
    }
    let missing = |k: &str| {
        tc_err(
            "MissingParameter",
            format!("The request is missing a required parameter `{k}`."),
        )
    };
    let secret_id = get("SecretId").ok_or_else(|| missing("SecretId"))?;
    let ts: i64 = get("Timestamp")
        .ok_or_else(|| missing("Timestamp"))?
        .parse()
        .map_err(|_| {
            tc_err(
                "InvalidParameter",
                "Timestamp must be an integer number of seconds.",
            )
        })?;
    get("Nonce").ok_or_else(|| missing("Nonce"))?;
    check_timestamp(sim, ts)?;
    let secret = secret_of(sim, secret_id)?;
    let host = req.header("host").unwrap_or("");
    if !query_signature_ok(secret, req.method.as_str(), host, "/", &pairs) {
        return Err(tc_err(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature is correct.",
        ));
    }
    check_token(sim, secret_id, get("Token"))?;
    let action = get("Action").ok_or_else(|| missing("Action"))?.to_string();
    let action_pairs: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| !COMMON_V1.contains(&k.as_str()))
        .cloned()
        .collect();
    Ok((
        secret_id.to_string(),
        Parsed {
            service: if action == "DescribeInstances" {
                "cvm".into()
            } else {
                "vpc".into()
            },
            version: get("Version").map(str::to_string),
            region: get("Region").map(str::to_string),
            params: unflatten(&action_pairs),
            action,
        },
    ))
}

/// Each action's accepted parameters; anything else is `UnknownParameter`.
fn allowed_params(service: &str, action: &str) -> Option<&'static [&'static str]> {
    Some(match (service, action) {
        ("vpc", "AssignPrivateIpAddresses") => &[
            "NetworkInterfaceId",
            "PrivateIpAddresses",
            "SecondaryPrivateIpAddressCount",
            "QosLevel",
            "ClientToken",
        ],
        ("vpc", "UnassignPrivateIpAddresses") => {
            &["NetworkInterfaceId", "PrivateIpAddresses", "InstanceId"]
        }
        ("vpc", "AssignIpv6Addresses") => &[
            "NetworkInterfaceId",
            "Ipv6Addresses",
            "Ipv6AddressCount",
            "ClientToken",
        ],
        ("vpc", "UnassignIpv6Addresses") => &["NetworkInterfaceId", "Ipv6Addresses"],
        ("vpc", "AttachNetworkInterface") => &[
            "NetworkInterfaceId",
            "InstanceId",
            "AttachType",
            "ClientToken",
        ],
        ("vpc", "DetachNetworkInterface") => &["NetworkInterfaceId", "InstanceId", "ClientToken"],
        ("vpc", "DescribeNetworkInterfaces") => {
            &["NetworkInterfaceIds", "Filters", "Offset", "Limit"]
        }
        ("vpc", "DescribeSubnets") => &["SubnetIds", "Filters", "Offset", "Limit"],
        ("vpc", "DescribeVpcTaskResult") => &["TaskId"],
        ("vpc", "DescribeNetworkInterfaceLimit") => &["InstanceId"],
        ("cvm", "DescribeInstances") => &["InstanceIds", "Filters", "Offset", "Limit"],
        _ => return None,
    })
}

pub(crate) async fn handle(sim: &Sim, req: &HttpRequest) -> (Reply, bool) {
    let rid = uuid::Uuid::new_v4().to_string();
    let mut info = CallInfo {
        protocol: Protocol::Tencent,
        action: req.header("x-tc-action").unwrap_or("").to_string(),
        key_id: String::new(),
        params: Value::Null,
        request_id: rid.clone(),
    };
    let refuse = |info: &CallInfo, e: TcError| {
        audit(sim, info, e.code.clone());
        (
            Reply {
                status: 200,
                body: error_body(&info.request_id, &e),
            },
            false,
        )
    };
    if req.method != Method::GET && req.method != Method::POST {
        return refuse(
            &info,
            tc_err("UnsupportedProtocol", "Only GET and POST are supported."),
        );
    }
    if req.body_too_large {
        return refuse(
            &info,
            tc_err(
                "RequestSizeLimitExceeded",
                "The request body is over 1 MiB.",
            ),
        );
    }
    let (key_id, parsed) = match authenticate(sim, req) {
        Ok(p) => p,
        Err(e) => {
            let auth = req.header("authorization").unwrap_or("");
            info.key_id = if auth.starts_with(tc3::ALGORITHM) {
                presented_key_id(credential_of(auth))
            } else {
                let raw = if req.method == Method::GET {
                    req.query.as_bytes()
                } else {
                    &req.body
                };
                let pairs = form_pairs(raw);
                presented_key_id(
                    pairs
                        .iter()
                        .find(|(k, _)| k == "SecretId")
                        .map(|(_, v)| v.as_str()),
                )
            };
            return refuse(&info, e);
        }
    };
    info.key_id = key_id;
    info.action = parsed.action.clone();
    info.params = Value::Object(parsed.params.clone());
    let Some(allowed) = allowed_params(&parsed.service, &parsed.action) else {
        let msg = format!(
            "The action `{}` is not found for service `{}`.",
            parsed.action, parsed.service
        );
        return refuse(&info, tc_err("InvalidAction", msg));
    };
    match parsed.version.as_deref() {
        None => {
            return refuse(
                &info,
                tc_err(
                    "MissingParameter",
                    "The request is missing a required parameter `Version`.",
                ),
            );
        }
        Some(VERSION) => {}
        Some(v) => {
            return refuse(
                &info,
                tc_err(
                    "NoSuchVersion",
                    format!("The API version `{v}` does not exist."),
                ),
            );
        }
    }
    let region = match parsed.region.as_deref() {
        None | Some("") => {
            return refuse(
                &info,
                tc_err(
                    "MissingParameter",
                    "The request is missing a required parameter `Region`.",
                ),
            );
        }
        Some(r) if !sim.tencent_regions.iter().any(|x| x == r) => {
            return refuse(
                &info,
                tc_err(
                    "UnsupportedRegion",
                    format!("The region `{r}` is not supported."),
                ),
            );
        }
        Some(r) => r.to_string(),
    };
    if let Some(unknown) = parsed
        .params
        .keys()
        .find(|k| !allowed.contains(&k.as_str()))
    {
        let msg = format!("The parameter `{unknown}` is not recognized.");
        return refuse(&info, tc_err("UnknownParameter", msg));
    }
    let wire = Tencent { region };
    run_call(sim, &wire, info).await
}

struct Tencent {
    region: String,
}

/// The configured or documented limit of a Tencent action (both API
/// generations share it).
pub(crate) fn tencent_limit(sim: &Sim, action: &str) -> f64 {
    sim.limits
        .tencent
        .get(action)
        .copied()
        .or_else(|| tencent_default_limit(action))
        .unwrap_or(0.0)
}

impl Wire for Tencent {
    fn limit_for(&self, sim: &Sim, action: &str) -> f64 {
        tencent_limit(sim, action)
    }

    fn throttled(&self, sim: &Sim, info: &CallInfo) -> Reply {
        let e = tc_err(
            sim.settings.tencent_throttle_code.code(),
            "Your current request times equals to `limit`, please retry later.",
        );
        Reply {
            status: 200,
            body: error_body(&info.request_id, &e),
        }
    }

    fn injected(&self, info: &CallInfo, code: &str, _http_status: u16, message: &str) -> Reply {
        Reply {
            status: 200,
            body: error_body(&info.request_id, &tc_err(code, message)),
        }
    }

    fn execute(&self, sim: &Sim, info: &CallInfo, decision: &Decision) -> Reply {
        let empty = Map::new();
        let params = info.params.as_object().unwrap_or(&empty);
        let ctx = Ctx {
            sim,
            region: &self.region,
            rid: &info.request_id,
            action: &info.action,
            key_id: &info.key_id,
            fail_task: decision.fail_task.as_deref(),
        };
        match execute(&ctx, params) {
            Ok(Value::Object(mut fields)) => {
                // A ClientToken replay answers with the original response,
                // RequestId included.
                fields
                    .entry("RequestId")
                    .or_insert_with(|| json!(info.request_id));
                Reply {
                    status: 200,
                    body: json!({"Response": fields}),
                }
            }
            Ok(_) => Reply {
                status: 200,
                body: json!({"Response": {"RequestId": info.request_id}}),
            },
            Err(e) => Reply {
                status: 200,
                body: error_body(&info.request_id, &e),
            },
        }
    }

    fn outcome(&self, reply: &Reply) -> String {
        reply.body["Response"]["Error"]["Code"]
            .as_str()
            .unwrap_or("Success")
            .to_string()
    }
}

struct Ctx<'a> {
    sim: &'a Sim,
    region: &'a str,
    rid: &'a str,
    action: &'a str,
    key_id: &'a str,
    fail_task: Option<&'a str>,
}

impl Ctx<'_> {
    fn run_async(&self) -> Async<'_> {
        Async {
            request_id: self.rid,
            action: self.action,
            fail: self.fail_task,
        }
    }
}

pub(crate) fn rule_error(rule: Rule, ipv6: bool) -> TcError {
    let message = rule.to_string();
    let code = match rule {
        Rule::NicNotFound | Rule::InstanceNotFound => "ResourceNotFound",
        Rule::NicStatus(_) => "UnsupportedOperation.InvalidState",
        Rule::MutexTask => "UnsupportedOperation.MutexOperationTaskRunning",
        Rule::SubnetNoIpv4
        | Rule::Ipv6StackNotSupported
        | Rule::Ipv6Exists
        | Rule::PrimaryNicDetach => "UnsupportedOperation",
        Rule::IpMalformed(_) => "InvalidParameterValue.Malformed",
        Rule::IpDuplicate(_) => "InvalidParameterValue.DuplicatePara",
        Rule::IpOutOfRange(_) | Rule::IpNotPrivate(_) => "InvalidParameterValue.Range",
        Rule::IpNetwork(_) | Rule::IpBroadcast(_) | Rule::IpGateway(_) | Rule::IpReserved(_) => {
            "InvalidParameterValue.Reserved"
        }
        Rule::IpInUse(_) if ipv6 => "ResourceInUse.Address",
        Rule::IpInUse(_) => "ResourceInUse",
        Rule::SubnetExhausted => "ResourceInsufficient.Subnet",
        Rule::Ipv6Exhausted => "ResourceInsufficient",
        Rule::NicQuota(_) | Rule::InstanceNicLimit(_) => "LimitExceeded",
        Rule::Ipv6Quota(_) => "LimitExceeded.Address",
        Rule::TooManyPerCall(_) => "InvalidParameterValue.LimitExceeded",
        Rule::NothingRequested => "MissingParameter",
        Rule::PrimaryIp(_) => "UnsupportedOperation.PrimaryIp",
        Rule::IpNotOnNic(_) | Rule::NicNotAttached => "UnsupportedOperation.AttachmentNotFound",
        Rule::NicAttached => "UnsupportedOperation.AttachmentAlreadyExists",
        Rule::RegionMismatch | Rule::ZoneMismatch => "UnsupportedOperation.ZoneMismatch",
        Rule::InstanceStatus(_) => "UnsupportedOperation.ResourceIsInvalidState",
    };
    TcError {
        code: code.to_string(),
        message,
    }
}

// Lenient getters: form-encoded requests carry every value as a string.

fn req_str<'a>(p: &'a Map<String, Value>, key: &str) -> Result<&'a str, TcError> {
    match p.get(key) {
        None | Some(Value::Null) => Err(tc_err(
            "MissingParameter",
            format!("The request is missing a required parameter `{key}`."),
        )),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(tc_err(
            "InvalidParameter",
            format!("The parameter `{key}` must be a non-empty string."),
        )),
    }
}

fn opt_u64(p: &Map<String, Value>, key: &str) -> Result<Option<u64>, TcError> {
    let bad = || {
        tc_err(
            "InvalidParameter",
            format!("The parameter `{key}` must be a non-negative integer."),
        )
    };
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

fn opt_str_list(p: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, TcError> {
    list_param(p, key, "strings", Value::as_str)
}

/// `[{"<field>": "..."}]` lists such as `PrivateIpAddresses`.
fn address_list(
    p: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<Vec<String>>, TcError> {
    list_param(
        p,
        key,
        &format!("objects with `{field}`"),
        |item: &Value| item.get(field).and_then(Value::as_str),
    )
}

/// A list parameter whose items each yield one string; `None` when absent.
fn list_param(
    p: &Map<String, Value>,
    key: &str,
    items_are: &str,
    item: impl Fn(&Value) -> Option<&str>,
) -> Result<Option<Vec<String>>, TcError> {
    let bad = || {
        tc_err(
            "InvalidParameter",
            format!("The parameter `{key}` must be a list of {items_are}."),
        )
    };
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| item(v).map(str::to_string).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad()),
    }
}

/// An action's address list (`PrivateIpAddresses`, `Ipv6Addresses`): at most
/// 10 per call; `None` when absent and not `required`.
fn addresses_param(
    p: &Map<String, Value>,
    key: &str,
    field: &str,
    required: bool,
    ipv6: bool,
) -> Result<Vec<String>, TcError> {
    let list = match address_list(p, key, field)? {
        Some(list) => list,
        None if required => {
            let msg = format!("The request is missing a required parameter `{key}`.");
            return Err(tc_err("MissingParameter", msg));
        }
        None => Vec::new(),
    };
    if list.len() > 10 {
        return Err(rule_error(Rule::TooManyPerCall(10), ipv6));
    }
    Ok(list)
}

struct Filter {
    name: String,
    values: Vec<String>,
}

fn filters(p: &Map<String, Value>, known: &[&str]) -> Result<Vec<Filter>, TcError> {
    let Some(raw) = p.get("Filters") else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = raw else {
        return Err(tc_err(
            "InvalidParameter.FilterNotDict",
            "Filters must be a list of objects.",
        ));
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Object(obj) = item else {
            return Err(tc_err(
                "InvalidParameter.FilterNotDict",
                "Each filter must be an object.",
            ));
        };
        let name = obj
            .get("Name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !known.contains(&name.as_str()) {
            return Err(tc_err(
                "InvalidParameter.FilterInvalidKey",
                format!("The filter name `{name}` is not supported."),
            ));
        }
        let values = match obj.get("Values") {
            Some(Value::Array(vs)) => vs
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => {
                return Err(tc_err(
                    "InvalidParameter.FilterValuesNotList",
                    format!("The filter `{name}` needs a Values list."),
                ));
            }
        };
        out.push(Filter { name, values });
    }
    Ok(out)
}

fn ids_or_filters(
    p: &Map<String, Value>,
    ids_key: &str,
    known: &[&str],
) -> Result<(Option<Vec<String>>, Vec<Filter>), TcError> {
    let ids = opt_str_list(p, ids_key)?;
    let f = filters(p, known)?;
    if ids.is_some() && p.contains_key("Filters") {
        return Err(tc_err(
            "InvalidParameter.Coexist",
            format!("`{ids_key}` and `Filters` cannot be given together."),
        ));
    }
    if ids.as_ref().is_some_and(|ids| ids.len() > 100) {
        return Err(tc_err(
            "InvalidParameterValue.LimitExceeded",
            format!("`{ids_key}` accepts at most 100 ids."),
        ));
    }
    Ok((ids, f))
}

fn paging(p: &Map<String, Value>) -> Result<(usize, usize), TcError> {
    let offset = opt_u64(p, "Offset")?.unwrap_or(0) as usize;
    let limit = opt_u64(p, "Limit")?.unwrap_or(20) as usize;
    if limit > 100 {
        return Err(tc_err(
            "InvalidParameterValue.LimitExceeded",
            "Limit must be at most 100.",
        ));
    }
    Ok((offset, limit))
}

fn bool_value(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// The ClientToken bookkeeping around a mutating call: replays answer the
/// original response, reuse with other parameters or while the first call
/// runs is refused. Only successful calls are remembered.
fn with_client_token(
    ctx: &Ctx<'_>,
    p: &Map<String, Value>,
    run: impl FnOnce(&mut Cloud) -> Result<Value, TcError>,
) -> Result<Value, TcError> {
    let token = p
        .get("ClientToken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    if token.as_ref().is_some_and(|t| t.len() > 64) {
        return Err(tc_err(
            "InvalidParameterValue.TooLong",
            "ClientToken is at most 64 characters.",
        ));
    }
    let mut fingerprint_src = p.clone();
    fingerprint_src.remove("ClientToken");
    let fingerprint = format!("{}|{}", ctx.region, Value::Object(fingerprint_src));
    ctx.sim.with_world(|w| {
        let cloud = &mut w.tencent;
        let key = token.map(|t| (ctx.key_id.to_string(), ctx.action.to_string(), t));
        if let Some(key) = &key
            && let Some(rec) = cloud.client_tokens.get(key)
        {
            if rec.fingerprint != fingerprint {
                return Err(tc_err(
                    "UnsupportedOperation.IdempotentParameterMismatch",
                    "The ClientToken was already used with other parameters.",
                ));
            }
            let running = rec
                .task_id
                .as_ref()
                .and_then(|t| cloud.tasks.get(t))
                .is_some_and(|t| t.status == TaskStatus::Running);
            if running {
                return Err(tc_err(
                    "UnsupportedOperation.IdempotentProcessing",
                    "The request with this ClientToken is still being processed.",
                ));
            }
            return Ok(rec.response.clone());
        }
        let mut response = run(cloud)?;
        if let Value::Object(fields) = &mut response {
            fields.insert("RequestId".into(), json!(ctx.rid));
        }
        if let Some(key) = key {
            let record = TokenRecord {
                fingerprint,
                task_id: Some(ctx.rid.to_string()),
                response: response.clone(),
            };
            cloud.client_tokens.insert(key, record);
        }
        Ok(response)
    })
}

fn execute(ctx: &Ctx<'_>, p: &Map<String, Value>) -> Result<Value, TcError> {
    let region = Some(ctx.region);
    match ctx.action {
        "AssignPrivateIpAddresses" => {
            let nic_id = req_str(p, "NetworkInterfaceId")?.to_string();
            let raw = addresses_param(p, "PrivateIpAddresses", "PrivateIpAddress", false, false)?;
            let count = opt_u64(p, "SecondaryPrivateIpAddressCount")?.unwrap_or(0) as usize;
            let items: Vec<&Map<String, Value>> = match p.get("PrivateIpAddresses") {
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_object).collect(),
                _ => Vec::new(),
            };
            // A requested address cannot be a primary one (the vendor's
            // AssignPrivateIpAddresses page); refused as the legacy API does.
            if items
                .iter()
                .any(|i| i.get("Primary") == Some(&Value::Bool(true)))
            {
                return Err(tc_err(
                    "InvalidParameterValue",
                    "the primary address already exists and cannot be assigned",
                ));
            }
            let qos_of = |v: Option<&Value>| -> Result<Option<String>, TcError> {
                match v.and_then(Value::as_str) {
                    None => Ok(None),
                    Some(q @ ("PT" | "AU" | "AG" | "DEFAULT")) => Ok(Some(q.to_string())),
                    Some(q) => Err(tc_err(
                        "InvalidParameterValue",
                        format!("QosLevel `{q}` is not one of PT, AU, AG, DEFAULT."),
                    )),
                }
            };
            let qos = qos_of(p.get("QosLevel"))?;
            let mut item_qos = std::collections::BTreeMap::new();
            for item in &items {
                if let (Some(a), Some(q)) = (
                    item.get("PrivateIpAddress").and_then(Value::as_str),
                    qos_of(item.get("QosLevel"))?,
                ) {
                    item_qos.insert(a.to_string(), q);
                }
            }
            // A list and a count together add up, within the same 10.
            if !raw.is_empty() && raw.len().saturating_add(count) > 10 {
                return Err(rule_error(Rule::TooManyPerCall(10), false));
            }
            let explicit = parse_ipv4_list(&raw).map_err(|r| rule_error(r, false))?;
            with_client_token(ctx, p, |cloud| {
                let chosen = cloud
                    .assign_ipv4(&nic_id, region, &explicit, count, Some(ctx.run_async()))
                    .map_err(|r| rule_error(r, false))?;
                let level = |a: &Ipv4Addr| {
                    item_qos
                        .get(&a.to_string())
                        .or(qos.as_ref())
                        .cloned()
                        .unwrap_or_else(|| "DEFAULT".into())
                };
                if let Some(nic) = cloud.nics.get_mut(&nic_id) {
                    for a in &chosen {
                        nic.qos_levels.insert(*a, level(a));
                    }
                }
                let set: Vec<Value> = chosen.iter().map(|a| json!({"PrivateIpAddress": a.to_string(), "Primary": false, "State": "PENDING", "QosLevel": level(a)})).collect();
                Ok(json!({"PrivateIpAddressSet": set}))
            })
        }
        "UnassignPrivateIpAddresses" => {
            let nic_id = req_str(p, "NetworkInterfaceId")?.to_string();
            let raw = addresses_param(p, "PrivateIpAddresses", "PrivateIpAddress", true, false)?;
            let addresses = parse_ipv4_list(&raw).map_err(|r| rule_error(r, false))?;
            ctx.sim
                .with_world(|w| {
                    w.tencent
                        .unassign_ipv4(&nic_id, region, &addresses, Some(ctx.run_async()))
                })
                .map_err(|r| rule_error(r, false))?;
            Ok(json!({}))
        }
        "AssignIpv6Addresses" => {
            let nic_id = req_str(p, "NetworkInterfaceId")?.to_string();
            let raw = addresses_param(p, "Ipv6Addresses", "Address", false, true)?;
            let count = opt_u64(p, "Ipv6AddressCount")?.unwrap_or(0) as usize;
            if count > 10 {
                return Err(rule_error(Rule::TooManyPerCall(10), true));
            }
            let explicit = parse_ipv6_list(&raw).map_err(|r| rule_error(r, true))?;
            with_client_token(ctx, p, |cloud| {
                let chosen = cloud
                    .assign_ipv6(&nic_id, region, &explicit, count, ctx.run_async())
                    .map_err(|r| rule_error(r, true))?;
                let set: Vec<Value> = chosen.iter().map(|a| ipv6_json(a, "PENDING")).collect();
                Ok(json!({"Ipv6AddressSet": set}))
            })
        }
        "UnassignIpv6Addresses" => {
            let nic_id = req_str(p, "NetworkInterfaceId")?.to_string();
            let raw = addresses_param(p, "Ipv6Addresses", "Address", true, true)?;
            let addresses = parse_ipv6_list(&raw).map_err(|r| rule_error(r, true))?;
            ctx.sim
                .with_world(|w| {
                    w.tencent
                        .unassign_ipv6(&nic_id, region, &addresses, ctx.run_async())
                })
                .map_err(|r| rule_error(r, true))?;
            Ok(json!({}))
        }
        "AttachNetworkInterface" => {
            let nic_id = req_str(p, "NetworkInterfaceId")?.to_string();
            let instance_id = req_str(p, "InstanceId")?.to_string();
            match opt_u64(p, "AttachType")? {
                None | Some(0) => {}
                Some(_) => {
                    return Err(tc_err(
                        "UnsupportedOperation",
                        "Only the standard attach type (0) is simulated.",
                    ));
                }
            }
            with_client_token(ctx, p, |cloud| {
                cloud
                    .attach(&nic_id, &instance_id, region, ctx.run_async())
                    .map_err(|r| rule_error(r, false))?;
                Ok(json!({}))
            })
        }
        "DetachNetworkInterface" => {
            let nic_id = req_str(p, "NetworkInterfaceId")?.to_string();
            let instance_id = req_str(p, "InstanceId")?.to_string();
            with_client_token(ctx, p, |cloud| {
                cloud
                    .detach(&nic_id, Some(&instance_id), region, ctx.run_async())
                    .map_err(|r| rule_error(r, false))?;
                Ok(json!({}))
            })
        }
        "DescribeNetworkInterfaces" => {
            const KNOWN: &[&str] = &[
                "vpc-id",
                "subnet-id",
                "network-interface-id",
                "attachment.instance-id",
                "network-interface-name",
                "address-ip",
                "ip-exact-match",
                "is-primary",
                "eni-type",
                "address-ipv6",
            ];
            let (ids, filters) = ids_or_filters(p, "NetworkInterfaceIds", KNOWN)?;
            let (offset, limit) = paging(p)?;
            ctx.sim.with_world(|w| {
                let cloud = &w.tencent;
                let mut selected: Vec<&Nic> = Vec::new();
                let candidates: Vec<&Nic> = match &ids {
                    None => cloud.nics.values().collect(),
                    Some(ids) => {
                        let wanted: std::collections::BTreeSet<&String> = ids.iter().collect();
                        wanted
                            .into_iter()
                            .filter_map(|id| cloud.nics.get(id))
                            .collect()
                    }
                };
                for n in candidates.into_iter().filter(|n| n.region == ctx.region) {
                    if filters.iter().all(|f| nic_matches(n, f)) {
                        selected.push(n);
                    }
                }
                let total = selected.len();
                let set: Vec<Value> = selected
                    .into_iter()
                    .skip(offset)
                    .take(limit)
                    .map(nic_json)
                    .collect();
                Ok(json!({"NetworkInterfaceSet": set, "TotalCount": total}))
            })
        }
        "DescribeSubnets" => {
            const KNOWN: &[&str] = &["subnet-id", "vpc-id", "cidr-block", "zone", "subnet-name"];
            let (ids, filters) = ids_or_filters(p, "SubnetIds", KNOWN)?;
            let (offset, limit) = paging(p)?;
            ctx.sim.with_world(|w| {
                let cloud = &w.tencent;
                let selected: Vec<&Subnet> = cloud
                    .subnets
                    .values()
                    .filter(|s| s.region == ctx.region)
                    .filter(|s| ids.as_ref().is_none_or(|ids| ids.contains(&s.id)))
                    .filter(|s| {
                        filters.iter().all(|f| {
                            let v = match f.name.as_str() {
                                "subnet-id" => s.id.clone(),
                                "vpc-id" => s.vpc_id.clone(),
                                "cidr-block" => s.cidr.to_string(),
                                "zone" => s.zone.clone().unwrap_or_default(),
                                _ => s.name.clone(),
                            };
                            f.values.contains(&v)
                        })
                    })
                    .collect();
                let total = selected.len();
                let set: Vec<Value> = selected
                    .into_iter()
                    .skip(offset)
                    .take(limit)
                    .map(subnet_json)
                    .collect();
                Ok(json!({"SubnetSet": set, "TotalCount": total}))
            })
        }
        "DescribeVpcTaskResult" => {
            let task_id = req_str(p, "TaskId")?;
            ctx.sim.with_world(|w| {
                let task = w.tencent.tasks.get(task_id).ok_or_else(|| {
                    tc_err(
                        "ResourceNotFound",
                        format!("The task `{task_id}` does not exist."),
                    )
                })?;
                let status = match task.status {
                    TaskStatus::Running => "RUNNING",
                    TaskStatus::Success => "SUCCESS",
                    TaskStatus::Failed => "FAILED",
                };
                let result = vec![json!({"ResourceId": task.nic_id, "Status": status})];
                Ok(json!({"Status": status, "Output": task.output, "Result": result}))
            })
        }
        "DescribeNetworkInterfaceLimit" => {
            let id = req_str(p, "InstanceId")?;
            ctx.sim.with_world(|w| {
                let cloud = &w.tencent;
                let (eni_quantity, ip_quantity) = if let Some(inst) =
                    cloud.instances.get(id).filter(|i| i.region == ctx.region)
                {
                    (inst.nic_limit, inst.ips_per_nic)
                } else if let Ok(nic) = cloud.nic_in(id, Some(ctx.region)) {
                    let limit = nic
                        .instance_id
                        .as_ref()
                        .and_then(|i| cloud.instances.get(i))
                        .map(|i| i.nic_limit)
                        .unwrap_or(0);
                    (limit, nic.ip_quota)
                } else if id.starts_with("ins-") {
                    return Err(tc_err(
                        "InvalidInstanceId.NotFound",
                        format!("The instance `{id}` does not exist."),
                    ));
                } else {
                    return Err(tc_err(
                        "ResourceNotFound",
                        format!("The resource `{id}` does not exist."),
                    ));
                };
                Ok(json!({
                    "EniQuantity": eni_quantity,
                    "EniPrivateIpAddressQuantity": ip_quantity,
                    "ExtendEniQuantity": 0,
                    "ExtendEniPrivateIpAddressQuantity": 0,
                    "SubEniQuantity": 0,
                    "SubEniPrivateIpAddressQuantity": 0,
                }))
            })
        }
        "DescribeInstances" => {
            const KNOWN: &[&str] = &[
                "zone",
                "instance-id",
                "instance-state",
                "instance-name",
                "vpc-id",
                "subnet-id",
            ];
            let (ids, filters) = ids_or_filters(p, "InstanceIds", KNOWN)?;
            let (offset, limit) = paging(p)?;
            ctx.sim.with_world(|w| {
                let cloud = &w.tencent;
                let selected: Vec<&Instance> = cloud
                    .instances
                    .values()
                    .filter(|i| i.region == ctx.region)
                    .filter(|i| ids.as_ref().is_none_or(|ids| ids.contains(&i.id)))
                    .filter(|i| filters.iter().all(|f| instance_matches(cloud, i, f)))
                    .collect();
                let total = selected.len();
                let set: Vec<Value> = selected
                    .into_iter()
                    .skip(offset)
                    .take(limit)
                    .map(|i| instance_json(cloud, i))
                    .collect();
                Ok(json!({"InstanceSet": set, "TotalCount": total}))
            })
        }
        other => Err(tc_err(
            "InvalidAction",
            format!("The action `{other}` is not found."),
        )),
    }
}

fn nic_matches(n: &Nic, f: &Filter) -> bool {
    let any = |v: &str| f.values.iter().any(|x| x == v);
    match f.name.as_str() {
        "vpc-id" => any(&n.vpc_id),
        "subnet-id" => any(&n.subnet_id),
        "network-interface-id" => any(&n.id),
        "attachment.instance-id" => n.instance_id.as_deref().is_some_and(any),
        "network-interface-name" => f.values.iter().any(|v| n.name.contains(v.as_str())),
        // Exact match for every value; the real service's suffix matching of
        // a single value is not simulated.
        "address-ip" => {
            let ips: Vec<Ipv4Addr> = std::iter::once(n.primary_ipv4)
                .chain(n.secondary_ipv4s())
                .collect();
            f.values
                .iter()
                .any(|v| v.parse::<Ipv4Addr>().is_ok_and(|ip| ips.contains(&ip)))
        }
        "address-ipv6" => f.values.iter().any(|v| {
            v.parse::<Ipv6Addr>()
                .is_ok_and(|ip| n.ipv6.iter().any(|e| e.address == ip))
        }),
        "is-primary" => f.values.iter().any(|v| bool_value(v) == Some(n.primary)),
        "eni-type" => any(if n.primary { "1" } else { "0" }),
        _ => true,
    }
}

fn instance_matches(cloud: &Cloud, i: &Instance, f: &Filter) -> bool {
    let any = |v: &str| f.values.iter().any(|x| x == v);
    match f.name.as_str() {
        "zone" => any(&i.zone),
        "instance-id" => any(&i.id),
        "instance-state" => any(&i.status),
        "instance-name" => f.values.iter().any(|v| i.name.contains(v.as_str())),
        "vpc-id" | "subnet-id" => primary_nic(cloud, i).is_some_and(|n| {
            any(if f.name == "vpc-id" {
                &n.vpc_id
            } else {
                &n.subnet_id
            })
        }),
        _ => true,
    }
}

fn primary_nic<'a>(cloud: &'a Cloud, i: &Instance) -> Option<&'a Nic> {
    cloud
        .nics
        .values()
        .find(|n| n.primary && n.instance_id.as_deref() == Some(&i.id))
}

fn ipv6_json(a: &Ipv6Addr, state: &str) -> Value {
    json!({"Address": a.to_string(), "Primary": false, "AddressId": "", "Description": "", "IsWanIpBlocked": false, "State": state, "AddressType": "GUA"})
}

/// Tencent's `State` of a NIC (an attached, idle NIC is `AVAILABLE`) and
/// `NetworkInterfaceState` (`INUSE` when attached).
pub(crate) fn tencent_states(n: &Nic) -> (&str, &str) {
    match n.status.as_str() {
        "USED" => ("AVAILABLE", "INUSE"),
        s => (s, s),
    }
}

fn nic_json(n: &Nic) -> Value {
    let mut ips = vec![json!({
        "PrivateIpAddress": n.primary_ipv4.to_string(), "Primary": true, "PublicIpAddress": "", "AddressId": "",
        "Description": "", "IsWanIpBlocked": false, "State": "AVAILABLE", "QosLevel": "DEFAULT",
    })];
    ips.extend(n.secondary_ipv4.iter().map(|e| {
        json!({
            "PrivateIpAddress": e.address.to_string(), "Primary": false, "PublicIpAddress": "", "AddressId": "",
            "Description": "", "IsWanIpBlocked": false, "State": e.state.as_str(),
            "QosLevel": n.qos_levels.get(&e.address).map_or("DEFAULT", String::as_str),
        })
    }));
    let (state, eni_state) = tencent_states(n);
    let attachment = match (n.status.as_str(), &n.instance_id) {
        ("USED" | "DETACHING", Some(inst)) => json!({
            "InstanceId": inst, "DeviceIndex": if n.primary { 0 } else { 1 }, "InstanceAccountId": "", "AttachTime": n.created,
        }),
        _ => Value::Null,
    };
    json!({
        "NetworkInterfaceId": n.id,
        "NetworkInterfaceName": n.name,
        "NetworkInterfaceDescription": "",
        "SubnetId": n.subnet_id,
        "VpcId": n.vpc_id,
        "GroupSet": ["sg-default0"],
        "Primary": n.primary,
        "MacAddress": n.mac_address,
        "State": state,
        "NetworkInterfaceState": eni_state,
        "PrivateIpAddressSet": ips,
        "Attachment": attachment,
        "Zone": n.zone,
        "CreatedTime": n.created.replace('T', " ").trim_end_matches('Z'),
        "Ipv6AddressSet": n.ipv6.iter().map(|e| ipv6_json(&e.address, e.state.as_str())).collect::<Vec<_>>(),
        "TagSet": [],
        "EniType": if n.primary { 1 } else { 0 },
        "Business": "cvm",
        "CdcId": "",
        "AttachType": 0,
        "ResourceId": "",
        "QosLevel": "DEFAULT",
    })
}

fn subnet_json(s: &Subnet) -> Value {
    json!({
        "VpcId": s.vpc_id,
        "SubnetId": s.id,
        "SubnetName": s.name,
        "CidrBlock": s.cidr.to_string(),
        "IsDefault": false,
        "EnableBroadcast": false,
        "Zone": s.zone,
        "RouteTableId": "rtb-default0",
        "CreatedTime": "2026-01-01 00:00:00",
        "AvailableIpAddressCount": s.free_ipv4_count(),
        "Ipv6CidrBlock": s.ipv6_cidr.map(|c| c.to_string()).unwrap_or_default(),
        "NetworkAclId": "",
        "IsRemoteVpcSnat": false,
        "TotalIpAddressCount": s.usable_ipv4_count(),
        "TagSet": [],
        "CdcId": "",
        "IsCdcSubnet": 0,
        "StackType": if s.ipv6_cidr.is_some() { "DualStack" } else { "" },
    })
}

fn instance_json(cloud: &Cloud, i: &Instance) -> Value {
    let nics: Vec<&Nic> = cloud
        .nics
        .values()
        .filter(|n| n.instance_id.as_deref() == Some(&i.id))
        .collect();
    let primary = nics.iter().find(|n| n.primary);
    let mut private: Vec<String> = primary
        .map(|n| vec![n.primary_ipv4.to_string()])
        .unwrap_or_default();
    private.extend(
        nics.iter()
            .filter(|n| !n.primary)
            .map(|n| n.primary_ipv4.to_string()),
    );
    json!({
        "InstanceId": i.id,
        "InstanceName": i.name,
        "InstanceType": i.instance_type,
        "CPU": i.cpu,
        "Memory": i.memory,
        "InstanceState": i.status,
        "Placement": {"Zone": i.zone, "ProjectId": 0},
        "PrivateIpAddresses": private,
        "VirtualPrivateCloud": {
            "VpcId": primary.map(|n| n.vpc_id.clone()).unwrap_or_default(),
            "SubnetId": primary.map(|n| n.subnet_id.clone()).unwrap_or_default(),
        },
        "LatestOperationState": "SUCCESS",
        "RestrictState": "NORMAL",
        "Uuid": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, i.id.as_bytes()).to_string(),
    })
}

/// Used by the legacy API: the parameters of a query-signed request without
/// the secrets, for the audit log.
pub(crate) fn audit_params(pairs: &[(String, String)]) -> Value {
    let kept: BTreeMap<&str, &str> = pairs
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "Signature" | "Token" | "SecretId"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    json!(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(raw: &str) -> Vec<(String, String)> {
        form_pairs(raw.as_bytes())
    }

    #[test]
    fn unflatten_rebuilds_nested_parameters() {
        let got = unflatten(&pairs(
            "NetworkInterfaceId=eni-1&PrivateIpAddresses.1.PrivateIpAddress=10.0.0.7\
             &PrivateIpAddresses.0.PrivateIpAddress=10.0.0.6&Filters.0.Name=vpc-id&Filters.0.Values.0=vpc-1",
        ));
        assert_eq!(
            Value::Object(got),
            json!({
                "NetworkInterfaceId": "eni-1",
                "PrivateIpAddresses": [{"PrivateIpAddress": "10.0.0.6"}, {"PrivateIpAddress": "10.0.0.7"}],
                "Filters": [{"Name": "vpc-id", "Values": ["vpc-1"]}],
            })
        );
    }

    #[test]
    fn unflatten_survives_hostile_names() {
        // Conflicting shapes, absurd indexes and empty segments are dropped
        // or kept as far as they make sense; nothing panics.
        let got = unflatten(&pairs("A=1&A.0=2&B.99999999=x&C..D=3&.=4&E.0=5&E.x=6"));
        assert_eq!(got["A"], "1");
        assert_eq!(got["E"], json!(["5"]));
        assert!(
            got.get("B")
                .is_none_or(|b| b.as_array().is_some_and(Vec::is_empty))
        );
        // A name nested deeper than any parameter is dropped: built, it
        // overflowed the stack when dropped (found by tests/fuzz.rs).
        let deep = vec!["a"; 100_000].join(".");
        assert!(unflatten(&[(deep, "1".into())]).is_empty());
    }

    #[test]
    fn rule_codes_follow_the_documentation() {
        assert_eq!(
            rule_error(Rule::IpInUse("a".into()), false).code,
            "ResourceInUse"
        );
        assert_eq!(
            rule_error(Rule::IpInUse("a".into()), true).code,
            "ResourceInUse.Address"
        );
        assert_eq!(
            rule_error(Rule::TooManyPerCall(10), false).code,
            "InvalidParameterValue.LimitExceeded"
        );
    }
}
