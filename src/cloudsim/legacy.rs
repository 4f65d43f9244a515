//! Tencent VPC legacy API 2.0: `GET|POST /v2/index.php?Action=...`, the
//! query signature over `METHOD host /v2/index.php ? sorted params`, and the
//! `{code, message, codeDesc, data}` envelope with integer task ids.
//!
//! The numeric `code` of each business error is not documented; the
//! simulator uses the documented classes: 4000 invalid parameter, 5000
//! resource not found, 5100 operation failed, with the string code in
//! `codeDesc` (see `docs/cloudsim.md`).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::Method;
use serde_json::{Map, Value, json};

use super::faults::{Decision, Protocol};
use super::server::{CallInfo, HttpRequest, Reply, Sim, Wire, audit, presented_key_id, run_call};
use super::tencent::{
    TcError, audit_params, form_pairs, query_signature_ok, rule_error, tc_err, tencent_limit,
    unflatten,
};
use super::world::{Async, Rule, TaskStatus, parse_ipv4_list};

const PATH: &str = "/v2/index.php";

/// Legacy region names and the API 3.0 regions they stand for.
const SHORT_REGIONS: &[(&str, &str)] = &[
    ("gz", "ap-guangzhou"),
    ("sh", "ap-shanghai"),
    ("bj", "ap-beijing"),
    ("cd", "ap-chengdu"),
    ("cq", "ap-chongqing"),
    ("hk", "ap-hongkong"),
    ("sg", "ap-singapore"),
    ("kr", "ap-seoul"),
    ("jp", "ap-tokyo"),
    ("in", "ap-mumbai"),
    ("th", "ap-bangkok"),
    ("ca", "na-toronto"),
    ("usw", "na-siliconvalley"),
    ("use", "na-ashburn"),
    ("de", "eu-frankfurt"),
    ("ru", "eu-moscow"),
    ("gzopen", "ap-guangzhou-open"),
];

/// Nonces seen within the timestamp window, per key: a replayed nonce is
/// refused with code 4500.
#[derive(Default)]
pub(crate) struct NonceCache {
    seen: Mutex<HashMap<(String, String), i64>>,
}

impl NonceCache {
    fn fresh(&self, key_id: &str, nonce: &str, now: i64, window: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 100_000 {
            seen.retain(|_, t| (now - *t).abs() <= window);
        }
        let key = (key_id.to_string(), nonce.to_string());
        match seen.get(&key) {
            Some(t) if (now - *t).abs() <= window => false,
            _ => {
                seen.insert(key, now);
                true
            }
        }
    }
}

fn numeric_code(code: &str) -> i64 {
    match code {
        "AuthFailure.SignatureFailure" | "AuthFailure.InvalidAuthorization" => 4100,
        "AuthFailure.SecretIdNotFound" => 4104,
        "AuthFailure.TokenFailure" => 4105,
        "AuthFailure.SignatureExpire" | "AuthFailure.NonceReplayed" => 4500,
        "RequestLimitExceeded" | "LimitExceeded.ActionLimited" => 4400,
        "InvalidAction" => 6100,
        "InternalError" => 6000,
        c if c.ends_with(".NotFound") || c == "ResourceNotFound" => 5000,
        c if c.starts_with("InvalidParameter")
            || c.starts_with("MissingParameter")
            || c == "UnsupportedRegion"
            || c == "RequestSizeLimitExceeded" =>
        {
            4000
        }
        c if c.starts_with("InvalidPrivateip") => 4000,
        _ => 5100,
    }
}

fn error_body(e: &TcError) -> Value {
    json!({"code": numeric_code(&e.code), "message": e.message, "codeDesc": e.code})
}

fn success(data: Value) -> Value {
    json!({"code": 0, "message": "", "codeDesc": "Success", "data": data})
}

pub(crate) async fn handle(sim: &Sim, req: &HttpRequest) -> (Reply, bool) {
    let pairs = if req.method == Method::GET {
        form_pairs(req.query.as_bytes())
    } else {
        form_pairs(&req.body)
    };
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let mut info = CallInfo {
        protocol: Protocol::TencentLegacy,
        action: get("Action").unwrap_or("").to_string(),
        key_id: String::new(),
        params: audit_params(&pairs),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let refuse = |info: &CallInfo, e: TcError| {
        audit(sim, info, e.code.clone());
        (
            Reply {
                status: 200,
                body: error_body(&e),
            },
            false,
        )
    };
    if req.method != Method::GET && req.method != Method::POST {
        return refuse(
            &info,
            tc_err("UnsupportedProtocol", "only GET and POST are supported"),
        );
    }
    if req.body_too_large {
        return refuse(
            &info,
            tc_err("RequestSizeLimitExceeded", "the request body is over 1 MiB"),
        );
    }
    let result = authenticate(sim, req, &pairs);
    match result {
        Ok(key_id) => info.key_id = key_id,
        Err(e) => {
            info.key_id = presented_key_id(get("SecretId"));
            return refuse(&info, e);
        }
    }
    if !matches!(
        info.action.as_str(),
        "AssignPrivateIpAddresses"
            | "UnassignPrivateIpAddresses"
            | "DescribeNetworkInterfaces"
            | "DescribeVpcTaskResult"
            | "AttachNetworkInterface"
            | "DetachNetworkInterface"
    ) {
        let msg = format!("the action `{}` is not supported", info.action);
        return refuse(&info, tc_err("InvalidAction", msg));
    }
    let region = match get("Region") {
        None | Some("") => {
            return refuse(
                &info,
                tc_err("MissingParameter", "missing parameter `Region`"),
            );
        }
        Some(r) => SHORT_REGIONS
            .iter()
            .find(|(s, _)| *s == r)
            .map(|(_, long)| *long)
            .unwrap_or(r)
            .to_string(),
    };
    if !sim.tencent_regions.contains(&region) {
        return refuse(
            &info,
            tc_err(
                "UnsupportedRegion",
                format!("the region `{region}` is not supported"),
            ),
        );
    }
    let action_pairs: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "Action"
                    | "Region"
                    | "Timestamp"
                    | "Nonce"
                    | "SecretId"
                    | "Signature"
                    | "SignatureMethod"
                    | "Token"
                    | "RequestClient"
                    | "Version"
            )
        })
        .map(|(k, v)| (k.replace('_', "."), v.clone()))
        .collect();
    let wire = Legacy {
        region,
        params: unflatten(&action_pairs),
    };
    run_call(sim, &wire, info).await
}

fn authenticate(
    sim: &Sim,
    req: &HttpRequest,
    pairs: &[(String, String)],
) -> Result<String, TcError> {
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let missing = |k: &str| tc_err("MissingParameter", format!("missing parameter `{k}`"));
    get("Signature").ok_or_else(|| missing("Signature"))?;
    let secret_id = get("SecretId").ok_or_else(|| missing("SecretId"))?;
    let nonce = get("Nonce").ok_or_else(|| missing("Nonce"))?;
    let ts: i64 = get("Timestamp")
        .ok_or_else(|| missing("Timestamp"))?
        .parse()
        .map_err(|_| tc_err("InvalidParameter", "Timestamp must be an integer"))?;
    let window = sim.settings.timestamp_window_seconds;
    let now = sim.now_unix();
    if (now - ts).abs() > window {
        return Err(tc_err(
            "AuthFailure.SignatureExpire",
            "the request timestamp is outside the allowed window",
        ));
    }
    let account = sim
        .accounts
        .tencent
        .iter()
        .find(|a| a.secret_id.trim() == secret_id)
        .ok_or_else(|| {
            tc_err(
                "AuthFailure.SecretIdNotFound",
                "the SecretId does not exist",
            )
        })?;
    let host = req.header("host").unwrap_or("");
    if !query_signature_ok(
        account.secret_key.trim(),
        req.method.as_str(),
        host,
        PATH,
        pairs,
    ) {
        return Err(tc_err(
            "AuthFailure.SignatureFailure",
            "signature verification failed",
        ));
    }
    let token = get("Token").filter(|t| !t.is_empty());
    let token_ok = match token {
        Some(t) => account
            .session_tokens
            .iter()
            .any(|k| crate::signing::signatures_match(k, t)),
        None => account.session_tokens.is_empty(),
    };
    if !token_ok {
        return Err(tc_err(
            "AuthFailure.TokenFailure",
            "the session token is invalid or missing",
        ));
    }
    if !sim.nonces.fresh(secret_id, nonce, now, window) {
        return Err(tc_err(
            "AuthFailure.NonceReplayed",
            "the Nonce was already used",
        ));
    }
    Ok(account.secret_id.clone())
}

struct Legacy {
    region: String,
    params: Map<String, Value>,
}

impl Wire for Legacy {
    fn limit_for(&self, sim: &Sim, action: &str) -> f64 {
        tencent_limit(sim, action)
    }

    fn throttled(&self, sim: &Sim, _info: &CallInfo) -> Reply {
        Reply {
            status: 200,
            body: error_body(&tc_err(
                sim.settings.tencent_throttle_code.code(),
                "request limit exceeded",
            )),
        }
    }

    fn injected(&self, _info: &CallInfo, code: &str, _http_status: u16, message: &str) -> Reply {
        Reply {
            status: 200,
            body: error_body(&tc_err(code, message)),
        }
    }

    fn execute(&self, sim: &Sim, info: &CallInfo, decision: &Decision) -> Reply {
        let run_async = Async {
            request_id: &info.request_id,
            action: &info.action,
            fail: decision.fail_task.as_deref(),
        };
        match execute(sim, &self.region, &info.action, &self.params, run_async) {
            Ok(data) => Reply {
                status: 200,
                body: success(data),
            },
            Err(e) => Reply {
                status: 200,
                body: error_body(&e),
            },
        }
    }

    fn outcome(&self, reply: &Reply) -> String {
        reply.body["codeDesc"]
            .as_str()
            .unwrap_or("Success")
            .to_string()
    }
}

fn legacy_rule(rule: Rule) -> TcError {
    match rule {
        Rule::NicNotFound => tc_err("InvalidNetworkInterface.NotFound", rule.to_string()),
        Rule::InstanceNotFound => tc_err("InvalidInstanceId.NotFound", rule.to_string()),
        Rule::IpInUse(_) => tc_err("InvalidPrivateIpAddress.InUse", rule.to_string()),
        Rule::PrimaryIp(_) => tc_err("InvalidPrivateip.IsPrimary", rule.to_string()),
        other => rule_error(other, false),
    }
}

fn req_str<'a>(p: &'a Map<String, Value>, key: &str) -> Result<&'a str, TcError> {
    p.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| tc_err("MissingParameter", format!("missing parameter `{key}`")))
}

fn opt_num(p: &Map<String, Value>, key: &str) -> Result<Option<u64>, TcError> {
    match p.get(key).and_then(Value::as_str) {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| {
            tc_err(
                "InvalidParameter",
                format!("`{key}` must be a non-negative integer"),
            )
        }),
    }
}

fn str_items(p: &Map<String, Value>, key: &str) -> Vec<Value> {
    match p.get(key) {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// The VPC named by `vpcId` must exist and hold the NIC.
fn check_vpc(sim: &Sim, region: &str, vpc_id: &str, nic_id: &str) -> Result<(), TcError> {
    sim.with_world(|w| {
        let cloud = &w.tencent;
        if cloud.vpcs.get(vpc_id).is_none_or(|v| v.region != region) {
            return Err(tc_err(
                "InvalidVpc.NotFound",
                format!("the VPC `{vpc_id}` does not exist"),
            ));
        }
        match cloud.nic_in(nic_id, Some(region)) {
            Ok(n) if n.vpc_id == vpc_id => Ok(()),
            _ => Err(legacy_rule(Rule::NicNotFound)),
        }
    })
}

fn execute(
    sim: &Sim,
    region: &str,
    action: &str,
    p: &Map<String, Value>,
    run_async: Async<'_>,
) -> Result<Value, TcError> {
    let rid = run_async.request_id.to_string();
    let task_data = |sim: &Sim| {
        sim.with_world(|w| w.tencent.tasks.get(&rid).map(|t| t.legacy_id))
            .map(|id| json!({"taskId": id}))
    };
    match action {
        "AssignPrivateIpAddresses" => {
            let nic_id = req_str(p, "networkInterfaceId")?;
            check_vpc(sim, region, req_str(p, "vpcId")?, nic_id)?;
            let mut raw = Vec::new();
            for item in str_items(p, "privateIpAddressSet") {
                if item
                    .get("primary")
                    .and_then(Value::as_str)
                    .and_then(|v| match v {
                        "true" | "True" | "1" => Some(true),
                        _ => None,
                    })
                    == Some(true)
                {
                    return Err(tc_err(
                        "InvalidParameter",
                        "the primary address already exists and cannot be assigned",
                    ));
                }
                let ip = item
                    .get("privateIpAddress")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        tc_err(
                            "MissingParameter",
                            "missing `privateIpAddressSet.n.privateIpAddress`",
                        )
                    })?;
                raw.push(ip.to_string());
            }
            let count = opt_num(p, "secondaryPrivateIpAddressCount")?.unwrap_or(0) as usize;
            if raw.len() > 10 {
                return Err(rule_error(Rule::TooManyPerCall(10), false));
            }
            let explicit = parse_ipv4_list(&raw).map_err(legacy_rule)?;
            sim.with_world(|w| {
                w.tencent
                    .assign_ipv4(nic_id, Some(region), &explicit, count, Some(run_async))
            })
            .map_err(legacy_rule)?;
            task_data(sim).ok_or_else(|| tc_err("InternalError", "task not recorded"))
        }
        "UnassignPrivateIpAddresses" => {
            let nic_id = req_str(p, "networkInterfaceId")?;
            check_vpc(sim, region, req_str(p, "vpcId")?, nic_id)?;
            let raw: Vec<String> = str_items(p, "privateIpAddress")
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            if raw.is_empty() {
                return Err(tc_err(
                    "MissingParameter",
                    "missing parameter `privateIpAddress.n`",
                ));
            }
            if raw.len() > 10 {
                return Err(rule_error(Rule::TooManyPerCall(10), false));
            }
            let addresses = parse_ipv4_list(&raw).map_err(legacy_rule)?;
            sim.with_world(|w| {
                w.tencent
                    .unassign_ipv4(nic_id, Some(region), &addresses, Some(run_async))
            })
            .map_err(legacy_rule)?;
            task_data(sim).ok_or_else(|| tc_err("InternalError", "task not recorded"))
        }
        "AttachNetworkInterface" | "DetachNetworkInterface" => {
            let nic_id = req_str(p, "networkInterfaceId")?;
            check_vpc(sim, region, req_str(p, "vpcId")?, nic_id)?;
            let instance_id = req_str(p, "instanceId")?;
            sim.with_world(|w| {
                if action == "AttachNetworkInterface" {
                    w.tencent
                        .attach(nic_id, instance_id, Some(region), run_async)
                } else {
                    w.tencent
                        .detach(nic_id, Some(instance_id), Some(region), run_async)
                }
            })
            .map_err(legacy_rule)?;
            task_data(sim).ok_or_else(|| tc_err("InternalError", "task not recorded"))
        }
        "DescribeVpcTaskResult" => {
            let id: u64 = req_str(p, "taskId")?
                .parse()
                .map_err(|_| tc_err("InvalidParameter", "`taskId` must be an integer"))?;
            sim.with_world(|w| {
                let task = w.tencent.task_by_legacy_id(id).ok_or_else(|| {
                    tc_err(
                        "InvalidTask.NotFound",
                        format!("the task {id} does not exist"),
                    )
                })?;
                let (status, code) = match task.status {
                    TaskStatus::Success => (0, 0),
                    TaskStatus::Failed => (1, 5100),
                    TaskStatus::Running => (2, 0),
                };
                let msg = if task.status == TaskStatus::Failed {
                    task.output.clone()
                } else {
                    String::new()
                };
                Ok(json!({"status": status, "output": {"errorCode": code, "errorMsg": msg}}))
            })
        }
        "DescribeNetworkInterfaces" => {
            let offset = opt_num(p, "offset")?.unwrap_or(0) as usize;
            let limit = opt_num(p, "limit")?.unwrap_or(20) as usize;
            if limit > 50 {
                return Err(tc_err("InvalidParameter", "`limit` must be at most 50"));
            }
            let s = |k: &str| p.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
            let (vpc, eni, name, inst) = (
                s("vpcId"),
                s("networkInterfaceId"),
                s("eniName"),
                s("instanceId"),
            );
            let order_by_name = s("orderField") == Some("eniName");
            let ascending = s("orderDirection").is_some_and(|d| d.eq_ignore_ascii_case("asc"));
            sim.with_world(|w| {
                let cloud = &w.tencent;
                let mut selected: Vec<_> = cloud
                    .nics
                    .values()
                    .filter(|n| n.region == region)
                    .filter(|n| vpc.is_none_or(|v| n.vpc_id == v))
                    .filter(|n| eni.is_none_or(|v| n.id == v))
                    .filter(|n| name.is_none_or(|v| n.name.contains(v)))
                    .filter(|n| inst.is_none_or(|v| n.instance_id.as_deref() == Some(v)))
                    .collect();
                if order_by_name {
                    selected.sort_by(|a, b| a.name.cmp(&b.name));
                } else {
                    selected.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
                }
                if !ascending {
                    selected.reverse();
                }
                let total = selected.len();
                let items: Vec<Value> = selected
                    .into_iter()
                    .skip(offset)
                    .take(limit)
                    .map(|n| {
                        let mut ips = vec![json!({"privateIpAddress": n.primary_ipv4.to_string(), "primary": true, "description": "", "wanIp": "", "isWanIpBlocked": false, "eipId": ""})];
                        ips.extend(n.secondary_ipv4.iter().map(|e| {
                            json!({"privateIpAddress": e.address.to_string(), "primary": false, "description": "", "wanIp": "", "isWanIpBlocked": false, "eipId": "", "state": e.state.as_str()})
                        }));
                        let (state, _) = super::tencent::tencent_states(n);
                        let instance = match (n.status.as_str(), &n.instance_id) {
                            ("USED" | "DETACHING", Some(i)) => json!({"instanceId": i, "attachTime": n.created}),
                            _ => json!({}),
                        };
                        json!({
                            "vpcId": n.vpc_id, "subnetId": n.subnet_id, "zoneId": 0, "zone": n.zone, "eniName": n.name, "eniDescription": "",
                            "networkInterfaceId": n.id, "primary": n.primary, "macAddress": n.mac_address, "state": state,
                            "privateIpAddressesSet": ips, "instanceSet": instance, "groupSet": [], "createTime": n.created,
                        })
                    })
                    .collect();
                Ok(json!({"totalNum": total, "data": items}))
            })
        }
        other => Err(tc_err(
            "InvalidAction",
            format!("the action `{other}` is not supported"),
        )),
    }
}
