//! Zenlayer ZEC API 2.0: `POST /api/v2/zec`, action in `X-ZC-Action`,
//! `ZC2-HMAC-SHA256` or bearer-token auth, `{requestId, response}` success
//! and `{requestId, code, message}` error envelopes with the HTTP statuses of
//! the vendor's error tables.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::faults::{Decision, Protocol};
use super::server::{
    CallInfo, HttpRequest, Reply, Sim, Wire, audit, credential_of, presented_key_id, run_call,
};
use super::world::{Async, Cloud, Instance, Ipv6Type, Nic, Rule, Subnet, parse_ipv4_list};
use crate::signing::{self, zc2};

/// The simulator's own code for every authentication failure: Zenlayer does
/// not publish its codes for bad, unknown or expired credentials, so the
/// name says it is not Zenlayer's.
pub const AUTH_FAILED: &str = "SIMULATOR_AUTH_FAILED";
/// Unknown or missing `X-ZC-Action` (real code unpublished).
pub const INVALID_ACTION: &str = "SIMULATOR_INVALID_ACTION";
/// Malformed JSON, wrong parameter types, missing or out-of-range parameters
/// (real code unpublished).
pub const INVALID_PARAMETER: &str = "INVALID_PARAMETER";

const ACTIONS: &[&str] = &[
    "BatchAssignNetworkInterfaceIpv4",
    "AssignNetworkInterfaceIpv4",
    "UnassignNetworkInterfaceIpv4",
    "UnAssignNetworkInterfaceIpv4",
    "AssignNetworkInterfaceIpv6",
    "UnassignNetworkInterfaceIpv6",
    "AttachNetworkInterface",
    "DetachNetworkInterface",
    "DescribeNetworkInterfaces",
    "DescribeNetworkInterfaceRegions",
    "DescribeInstances",
    "DescribeInstancesStatus",
    "DescribeSubnets",
];

struct Failure {
    status: u16,
    code: &'static str,
    message: String,
}

fn fail(status: u16, code: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        status,
        code,
        message: message.into(),
    }
}

fn error_reply(request_id: &str, status: u16, code: &str, message: &str) -> Reply {
    Reply {
        status,
        body: json!({"requestId": request_id, "code": code, "message": message}),
    }
}

fn request_id() -> String {
    format!("T{}", uuid::Uuid::new_v4().to_string().to_uppercase())
}

pub(crate) async fn handle(sim: &Sim, req: &HttpRequest) -> (Reply, bool) {
    let rid = request_id();
    let action = req.header("x-zc-action").unwrap_or("").to_string();
    let params: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let mut info = CallInfo {
        protocol: Protocol::Zenlayer,
        action,
        key_id: String::new(),
        params,
        request_id: rid,
    };
    let refuse = |info: &CallInfo, f: Failure| {
        let reply = error_reply(&info.request_id, f.status, f.code, &f.message);
        audit(sim, info, f.code.to_string());
        (reply, false)
    };
    if req.method != Method::POST {
        return refuse(
            &info,
            fail(405, INVALID_PARAMETER, "only POST is supported"),
        );
    }
    // Zenlayer documents no size limit or code for it (*choice*: 413 with the
    // generic parameter code, in the usual envelope).
    if req.body_too_large {
        return refuse(
            &info,
            fail(413, INVALID_PARAMETER, "the request body is over 1 MiB"),
        );
    }
    match authenticate(sim, req) {
        Ok(key_id) => info.key_id = key_id,
        Err(f) => {
            // A bearer token is the secret itself: only a signature's key id is logged.
            let credential = req
                .header("authorization")
                .filter(|a| a.starts_with(zc2::ALGORITHM))
                .and_then(credential_of);
            info.key_id = presented_key_id(credential);
            return refuse(&info, f);
        }
    }
    if !ACTIONS.contains(&info.action.as_str()) {
        let msg = format!("unknown action `{}`", info.action);
        return refuse(&info, fail(400, INVALID_ACTION, msg));
    }
    if !info.params.is_object() {
        return refuse(
            &info,
            fail(400, INVALID_PARAMETER, "the body must be a JSON object"),
        );
    }
    run_call(sim, &Zenlayer, info).await
}

fn authenticate(sim: &Sim, req: &HttpRequest) -> Result<String, Failure> {
    let denied = |why: &str| fail(401, AUTH_FAILED, why);
    let auth = req
        .header("authorization")
        .ok_or_else(|| denied("missing Authorization header"))?;
    if let Some(token) = auth.strip_prefix("Bearer ") {
        let token = token.trim();
        return sim
            .accounts
            .zenlayer
            .iter()
            .find(|a| {
                a.bearer_tokens
                    .iter()
                    .any(|t| signing::signatures_match(t, token))
            })
            .map(|a| a.key_id.clone())
            .ok_or_else(|| denied("unknown bearer token"));
    }
    let rest = auth
        .strip_prefix(zc2::ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| denied("unsupported authorization scheme"))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(key_id), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(denied("malformed Authorization header"));
    };
    if signed_headers != zc2::SIGNED_HEADERS {
        return Err(denied("SignedHeaders must be content-type;host"));
    }
    if let Some(method) = req.header("x-zc-signature-method")
        && method != zc2::ALGORITHM
    {
        return Err(denied("unsupported X-ZC-Signature-Method"));
    }
    let timestamp: i64 = req
        .header("x-zc-timestamp")
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| denied("missing or malformed X-ZC-Timestamp"))?;
    if (sim.now_unix() - timestamp).abs() > sim.settings.timestamp_window_seconds {
        return Err(denied("X-ZC-Timestamp is outside the allowed window"));
    }
    let account = sim
        .accounts
        .zenlayer
        .iter()
        .find(|a| a.key_id.trim() == key_id)
        .ok_or_else(|| denied("unknown access key id"))?;
    let expected = zc2::signature(
        account.key_password.trim(),
        timestamp,
        req.header("content-type").unwrap_or(""),
        req.header("host").unwrap_or(""),
        &req.body,
    );
    if !signing::signatures_match(&expected, signature) {
        return Err(denied("signature mismatch"));
    }
    Ok(account.key_id.clone())
}

struct Zenlayer;

impl Wire for Zenlayer {
    fn limit_for(&self, sim: &Sim, action: &str) -> f64 {
        sim.limits.zenlayer.get(action).copied().unwrap_or(0.0)
    }

    fn throttled(&self, _sim: &Sim, info: &CallInfo) -> Reply {
        error_reply(
            &info.request_id,
            429,
            "REQUEST_LIMIT_EXCEEDED",
            "request limit exceeded",
        )
    }

    fn injected(&self, info: &CallInfo, code: &str, http_status: u16, message: &str) -> Reply {
        error_reply(&info.request_id, http_status, code, message)
    }

    fn execute(&self, sim: &Sim, info: &CallInfo, decision: &Decision) -> Reply {
        let empty = Map::new();
        let params = info.params.as_object().unwrap_or(&empty);
        match execute(sim, &info.action, params, &info.request_id, decision) {
            Ok(mut fields) => {
                fields.insert("requestId".into(), json!(info.request_id));
                Reply {
                    status: 200,
                    body: json!({"requestId": info.request_id, "response": fields}),
                }
            }
            Err(f) => error_reply(&info.request_id, f.status, f.code, &f.message),
        }
    }

    fn outcome(&self, reply: &Reply) -> String {
        reply
            .body
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("Success")
            .to_string()
    }
}

fn rule_failure(rule: Rule) -> Failure {
    let message = rule.to_string();
    let (status, code) = match rule {
        Rule::NicNotFound => (404, "INVALID_NIC_NOT_FOUND"),
        Rule::InstanceNotFound => (404, "INVALID_INSTANCE_NOT_FOUND"),
        Rule::NicStatus(_) | Rule::MutexTask => (400, "INVALID_NIC_STATUS"),
        Rule::SubnetNoIpv4 => (400, "OPERATION_DENIED_SUBNET_TYPE_NOT_SUPPORT_IPV4"),
        Rule::IpMalformed(_) | Rule::IpNotPrivate(_) => {
            (400, "INVALID_PARAMETER_PRIVATE_IP_ILLEGAL")
        }
        Rule::IpDuplicate(_) | Rule::TooManyPerCall(_) | Rule::NothingRequested => {
            (400, INVALID_PARAMETER)
        }
        Rule::IpOutOfRange(_) => (400, "INVALID_IP_OUT_OF_RANGE"),
        Rule::IpNetwork(_) => (400, "INVALID_IP_NETWORK_ADDRESS"),
        Rule::IpBroadcast(_) => (400, "INVALID_IP_BROADCAST_ADDRESS"),
        Rule::IpGateway(_) | Rule::IpReserved(_) => (400, "INVALID_IP_FIRST_ADDRESS"),
        Rule::IpInUse(_) => (409, "INVALID_SUBNET_PRIVATE_IPV4_IN_USED"),
        Rule::SubnetExhausted => (400, "OPERATION_DENIED_SUBNET_IP_INSUFFICIENT"),
        Rule::NicQuota(_) => (400, "OPERATION_DENIED_NIC_ATTACH_LAN_IP_EXCEED_LIMIT"),
        Rule::Ipv6StackNotSupported => (400, "INVALID_SUBNET_IPSTACK_NOT_SUPPORT"),
        Rule::Ipv6Exists | Rule::Ipv6Quota(_) => (400, "INVALID_NIC_IPV6_EXISTS"),
        Rule::Ipv6Exhausted => (409, "INVALID_SUBNET_IPV6_INSUFFICIENT"),
        Rule::PrimaryIp(_) => (409, "INVALID_NIC_PRIMARY_IP_CANT_DETACH"),
        Rule::IpNotOnNic(_) => (404, "OPERATION_FAILED_RESOURCE_NOT_FOUND"),
        Rule::NicAttached => (400, "INVALID_NIC_ATTACHED"),
        Rule::NicNotAttached => (403, "OPERATION_DENIED_NIC_NOT_EXIST_INSTANCE"),
        Rule::RegionMismatch | Rule::ZoneMismatch => (409, "INVALID_NIC_INSTANCE_REGION_MISMATCH"),
        Rule::InstanceStatus(_) => (400, "OPERATION_DENIED_INSTANCE_STATUS_NOT_SUPPORT"),
        Rule::InstanceNicLimit(_) => (400, "INVALID_INSTANCE_NIC_LIMIT"),
        Rule::PrimaryNicDetach => (409, "INVALID_NIC_PRIMARY_CANT_DETACH"),
    };
    Failure {
        status,
        code,
        message,
    }
}

fn parse<T: DeserializeOwned>(params: &Map<String, Value>) -> Result<T, Failure> {
    serde_json::from_value(Value::Object(params.clone()))
        .map_err(|e| fail(400, INVALID_PARAMETER, e.to_string()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NicOnly {
    nic_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchAssign {
    nic_id: String,
    ip_addresses: Option<Vec<String>>,
    ip_address_count: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignOne {
    nic_id: String,
    ip_address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Unassign {
    nic_id: String,
    ip_addresses: Option<Vec<String>>,
    ip_address: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignIpv6 {
    nic_id: String,
    internet_charge_type: Option<String>,
    bandwidth: Option<i64>,
    package_size: Option<f64>,
    cluster_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Attach {
    nic_id: String,
    instance_id: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DescribeNics {
    nic_ids: Option<Vec<String>>,
    name: Option<String>,
    region_id: Option<String>,
    vpc_id: Option<String>,
    subnet_id: Option<String>,
    instance_id: Option<String>,
    status: Option<String>,
    nic_type: Option<String>,
    nic_subnet_type: Option<String>,
    page_size: Option<i64>,
    page_num: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DescribeInstances {
    instance_ids: Option<Vec<String>>,
    zone_id: Option<String>,
    status: Option<String>,
    name: Option<String>,
    page_size: Option<i64>,
    page_num: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DescribeSubnets {
    subnet_ids: Option<Vec<String>>,
    vpc_ids: Option<Vec<String>>,
    region_id: Option<String>,
    cidr_block: Option<String>,
    name: Option<String>,
    page_size: Option<i64>,
    page_num: Option<i64>,
}

type Fields = Map<String, Value>;

fn fields(v: Value) -> Fields {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The entries named by `ids` (in id order, unknown ids skipped), or all.
fn by_ids<'a, T>(
    map: &'a BTreeMap<String, T>,
    ids: Option<&[String]>,
) -> Box<dyn Iterator<Item = &'a T> + 'a> {
    match ids {
        None => Box::new(map.values()),
        Some(ids) => {
            let wanted: BTreeSet<&String> = ids.iter().collect();
            let found: Vec<&T> = wanted.into_iter().filter_map(|id| map.get(id)).collect();
            Box::new(found.into_iter())
        }
    }
}

fn id_list(ids: &Option<Vec<String>>, what: &str) -> Result<(), Failure> {
    match ids {
        Some(ids) if ids.len() > 100 => Err(fail(
            400,
            INVALID_PARAMETER,
            format!("{what}: at most 100 ids"),
        )),
        _ => Ok(()),
    }
}

/// One page of `items` (1-based `pageNum`; `pageSize` 1..=1000, default 20).
fn page<T>(
    items: Vec<T>,
    page_num: Option<i64>,
    page_size: Option<i64>,
) -> Result<(usize, Vec<T>), Failure> {
    let size = page_size.unwrap_or(20);
    let num = page_num.unwrap_or(1);
    if !(1..=1000).contains(&size) {
        return Err(fail(
            400,
            INVALID_PARAMETER,
            "pageSize must be within 1..=1000",
        ));
    }
    if num < 1 {
        return Err(fail(400, INVALID_PARAMETER, "pageNum must be at least 1"));
    }
    let total = items.len();
    let skip = ((num - 1) as usize).saturating_mul(size as usize);
    Ok((
        total,
        items.into_iter().skip(skip).take(size as usize).collect(),
    ))
}

fn execute(
    sim: &Sim,
    action: &str,
    params: &Fields,
    rid: &str,
    decision: &Decision,
) -> Result<Fields, Failure> {
    let run_async = Async {
        request_id: rid,
        action,
        fail: decision.fail_task.as_deref(),
    };
    match action {
        "BatchAssignNetworkInterfaceIpv4" => {
            let p: BatchAssign = parse(params)?;
            let (explicit, count) = match (&p.ip_addresses, p.ip_address_count) {
                // The list wins when both are given (seed document).
                (Some(list), _) if !list.is_empty() => (list.clone(), 0),
                (_, Some(n)) if n >= 1 => (Vec::new(), n as usize),
                (_, Some(_)) => {
                    return Err(fail(
                        400,
                        INVALID_PARAMETER,
                        "ipAddressCount must be at least 1",
                    ));
                }
                _ => {
                    return Err(fail(
                        400,
                        INVALID_PARAMETER,
                        "give ipAddresses or ipAddressCount",
                    ));
                }
            };
            let explicit = parse_ipv4_list(&explicit).map_err(rule_failure)?;
            let chosen = sim
                .with_world(|w| {
                    w.zenlayer
                        .assign_ipv4(&p.nic_id, None, &explicit, count, None)
                })
                .map_err(rule_failure)?;
            let list: Vec<String> = chosen.iter().map(|a| a.to_string()).collect();
            Ok(fields(json!({"ipAddresses": list})))
        }
        "AssignNetworkInterfaceIpv4" => {
            let p: AssignOne = parse(params)?;
            let explicit = parse_ipv4_list(&[p.ip_address]).map_err(rule_failure)?;
            sim.with_world(|w| w.zenlayer.assign_ipv4(&p.nic_id, None, &explicit, 0, None))
                .map_err(rule_failure)?;
            Ok(Map::new())
        }
        "UnassignNetworkInterfaceIpv4" | "UnAssignNetworkInterfaceIpv4" => {
            let p: Unassign = parse(params)?;
            // `ipAddresses` wins over the deprecated single `ipAddress`.
            let raw = match (p.ip_addresses, p.ip_address) {
                (Some(list), _) if !list.is_empty() => list,
                (_, Some(one)) => vec![one],
                _ => return Err(fail(400, INVALID_PARAMETER, "give ipAddresses")),
            };
            let addresses = parse_ipv4_list(&raw).map_err(rule_failure)?;
            sim.with_world(|w| w.zenlayer.unassign_ipv4(&p.nic_id, None, &addresses, None))
                .map_err(rule_failure)?;
            Ok(Map::new())
        }
        "AssignNetworkInterfaceIpv6" => {
            let p: AssignIpv6 = parse(params)?;
            sim.with_world(|w| {
                let cloud = &mut w.zenlayer;
                let nic = cloud.nic_in(&p.nic_id, None).map_err(rule_failure)?;
                let public = cloud
                    .subnets
                    .get(&nic.subnet_id)
                    .is_some_and(|s| s.ipv6_type == Ipv6Type::Public);
                if public && nic.ipv6.is_empty() {
                    check_billing(cloud, &p)?;
                }
                cloud
                    .assign_ipv6_block(&p.nic_id)
                    .map_err(|rule| match rule {
                        Rule::Ipv6Exists => Failure {
                            code: sim.settings.zenlayer_ipv6_exists_code.code(),
                            ..rule_failure(rule)
                        },
                        rule => rule_failure(rule),
                    })
            })?;
            Ok(Map::new())
        }
        "UnassignNetworkInterfaceIpv6" => {
            let p: NicOnly = parse(params)?;
            sim.with_world(|w| w.zenlayer.unassign_ipv6_block(&p.nic_id))
                .map_err(rule_failure)?;
            Ok(Map::new())
        }
        "AttachNetworkInterface" => {
            let p: Attach = parse(params)?;
            sim.with_world(|w| {
                w.zenlayer
                    .attach(&p.nic_id, &p.instance_id, None, run_async)
            })
            .map_err(rule_failure)?;
            Ok(Map::new())
        }
        "DetachNetworkInterface" => {
            let p: NicOnly = parse(params)?;
            sim.with_world(|w| w.zenlayer.detach(&p.nic_id, None, None, run_async))
                .map_err(rule_failure)?;
            Ok(Map::new())
        }
        "DescribeNetworkInterfaces" => {
            let p: DescribeNics = parse(params)?;
            id_list(&p.nic_ids, "nicIds")?;
            let nics = sim.with_world(|w| {
                let cloud = &w.zenlayer;
                let selected: Vec<&Nic> = by_ids(&cloud.nics, p.nic_ids.as_deref())
                    .filter(|n| p.name.as_ref().is_none_or(|s| n.name.contains(s.as_str())))
                    .filter(|n| p.region_id.as_ref().is_none_or(|s| &n.region == s))
                    .filter(|n| p.vpc_id.as_ref().is_none_or(|s| &n.vpc_id == s))
                    .filter(|n| p.subnet_id.as_ref().is_none_or(|s| &n.subnet_id == s))
                    .filter(|n| {
                        p.instance_id
                            .as_ref()
                            .is_none_or(|s| n.instance_id.as_ref() == Some(s))
                    })
                    .filter(|n| p.status.as_ref().is_none_or(|s| &n.status == s))
                    .filter(|n| p.nic_type.as_ref().is_none_or(|s| nic_type(n) == s))
                    .filter(|n| p.nic_subnet_type.as_ref().is_none_or(|s| nic_stack(n) == s))
                    .collect();
                page(selected, p.page_num, p.page_size).map(|(total, items)| {
                    (total, items.into_iter().map(nic_info).collect::<Vec<_>>())
                })
            })?;
            Ok(fields(json!({"totalCount": nics.0, "dataSet": nics.1})))
        }
        "DescribeNetworkInterfaceRegions" => {
            let regions = sim.with_world(|w| {
                w.zenlayer
                    .regions
                    .iter()
                    .map(|r| r.id.clone())
                    .collect::<Vec<_>>()
            });
            Ok(fields(json!({"regionIds": regions})))
        }
        "DescribeInstances" | "DescribeInstancesStatus" => {
            let p: DescribeInstances = parse(params)?;
            id_list(&p.instance_ids, "instanceIds")?;
            let status_only = action == "DescribeInstancesStatus";
            let (total, items) = sim.with_world(|w| {
                let cloud = &w.zenlayer;
                let selected: Vec<&Instance> = by_ids(&cloud.instances, p.instance_ids.as_deref())
                    .filter(|i| p.zone_id.as_ref().is_none_or(|s| &i.zone == s))
                    .filter(|i| p.status.as_ref().is_none_or(|s| &i.status == s))
                    .filter(|i| p.name.as_ref().is_none_or(|s| i.name.contains(s.as_str())))
                    .collect();
                page(selected, p.page_num, p.page_size).map(|(total, items)| {
                    let rendered = items
                        .into_iter()
                        .map(|i| {
                            if status_only {
                                json!({"instanceId": i.id, "instanceStatus": i.status})
                            } else {
                                instance_info(cloud, i)
                            }
                        })
                        .collect::<Vec<_>>();
                    (total, rendered)
                })
            })?;
            Ok(fields(json!({"totalCount": total, "dataSet": items})))
        }
        "DescribeSubnets" => {
            let p: DescribeSubnets = parse(params)?;
            id_list(&p.subnet_ids, "subnetIds")?;
            id_list(&p.vpc_ids, "vpcIds")?;
            let (total, items) = sim.with_world(|w| {
                let cloud = &w.zenlayer;
                let selected: Vec<&Subnet> = cloud
                    .subnets
                    .values()
                    .filter(|s| p.subnet_ids.as_ref().is_none_or(|ids| ids.contains(&s.id)))
                    .filter(|s| p.vpc_ids.as_ref().is_none_or(|ids| ids.contains(&s.vpc_id)))
                    .filter(|s| p.region_id.as_ref().is_none_or(|r| &s.region == r))
                    .filter(|s| {
                        p.cidr_block
                            .as_ref()
                            .is_none_or(|c| &s.cidr.to_string() == c)
                    })
                    .filter(|s| p.name.as_ref().is_none_or(|n| s.name.contains(n.as_str())))
                    .collect();
                page(selected, p.page_num, p.page_size).map(|(total, items)| {
                    (
                        total,
                        items
                            .into_iter()
                            .map(|s| subnet_info(cloud, s))
                            .collect::<Vec<_>>(),
                    )
                })
            })?;
            Ok(fields(json!({"totalCount": total, "dataSet": items})))
        }
        _ => Err(fail(
            400,
            INVALID_ACTION,
            format!("unknown action `{action}`"),
        )),
    }
}

/// Public IPv6 needs its billing fields (seed `AssignNetworkInterfaceIpv6`).
fn check_billing(cloud: &Cloud, p: &AssignIpv6) -> Result<(), Failure> {
    let charge = p.internet_charge_type.as_deref().unwrap_or("");
    if !matches!(
        charge,
        "ByBandwidth" | "ByTrafficPackage" | "BandwidthCluster"
    ) {
        return Err(fail(
            400,
            "OPERATION_DENIED_INTERNET_CHARGE_TYPE_NOT_SUPPORT",
            format!("internetChargeType `{charge}` is not supported for public IPv6"),
        ));
    }
    match p.bandwidth {
        None => {
            return Err(fail(
                400,
                "INVALID_PARAMETER_BANDWIDTH_ERROR",
                "bandwidth is required for public IPv6",
            ));
        }
        Some(b) if b < 1 => {
            return Err(fail(
                400,
                "INVALID_PARAMETER_BANDWIDTH_ERROR",
                "bandwidth must be at least 1 Mbps",
            ));
        }
        Some(b) if b > i64::from(cloud.max_bandwidth) => {
            let msg = format!("bandwidth must be at most {} Mbps", cloud.max_bandwidth);
            return Err(fail(400, "INVALID_PARAMETER_BANDWIDTH_EXCEED", msg));
        }
        Some(_) => {}
    }
    if charge == "ByTrafficPackage" {
        let size = p.package_size.ok_or_else(|| {
            fail(
                400,
                "INVALID_PARAMETER_FLOW_TRAFFIC_PACKAGE",
                "packageSize is required for ByTrafficPackage",
            )
        })?;
        let tenths = size * 10.0;
        if size < 0.0 || (tenths - tenths.round()).abs() > 1e-6 {
            return Err(fail(
                400,
                "INVALID_PARAMETER_FLOW_TRAFFIC_PACKAGE",
                "packageSize must be 0 or a multiple of 0.1",
            ));
        }
        if size > cloud.max_traffic_package {
            let msg = format!(
                "packageSize must be at most {} TB",
                cloud.max_traffic_package
            );
            return Err(fail(400, "INVALID_PARAMETER_TRAFFIC_PACKAGE_EXCEED", msg));
        }
    }
    if charge == "BandwidthCluster" && p.cluster_id.as_deref().is_none_or(str::is_empty) {
        return Err(fail(
            400,
            INVALID_PARAMETER,
            "clusterId is required for BandwidthCluster",
        ));
    }
    Ok(())
}

fn nic_type(n: &Nic) -> &'static str {
    if n.primary { "Primary" } else { "Secondary" }
}

fn nic_stack(n: &Nic) -> &'static str {
    if n.ipv6.is_empty() {
        "IPv4"
    } else {
        "IPv4_IPv6"
    }
}

fn nic_info(n: &Nic) -> Value {
    let secondaries: Vec<String> = n.secondary_ipv4s().map(|a| a.to_string()).collect();
    let mut private = vec![n.primary_ipv4.to_string()];
    private.extend(secondaries.iter().cloned());
    json!({
        "nicId": n.id,
        "name": n.name,
        "status": n.status,
        "nicType": nic_type(n),
        "regionId": n.region,
        "nicSubnetType": nic_stack(n),
        "publicIpList": [],
        "privateIpList": private,
        "primaryIpv4": n.primary_ipv4.to_string(),
        "secondaryIpv4s": secondaries,
        "primaryIpv6": n.ipv6.first().map(|e| e.address.to_string()),
        "ipv6Cidr": n.ipv6_cidr.map(|c| c.to_string()),
        "macAddress": n.mac_address,
        "instanceId": n.instance_id,
        "vpcId": n.vpc_id,
        "subnetId": n.subnet_id,
        "createTime": n.created,
        "updateTime": n.created,
        "resourceGroup": {"resourceGroupId": "default", "resourceGroupName": "Default Resource Group"},
        "securityGroupId": null,
        "tags": {"tags": []},
    })
}

fn instance_info(cloud: &Cloud, i: &Instance) -> Value {
    let nics: Vec<&Nic> = cloud
        .nics
        .values()
        .filter(|n| n.instance_id.as_deref() == Some(&i.id))
        .collect();
    let private: Vec<String> = nics.iter().map(|n| n.primary_ipv4.to_string()).collect();
    let primary_subnet = nics.iter().find(|n| n.primary).map(|n| n.subnet_id.clone());
    json!({
        "instanceId": i.id,
        "instanceName": i.name,
        "zoneId": i.zone,
        "instanceType": i.instance_type,
        "cpu": i.cpu,
        "memory": i.memory,
        "status": i.status,
        "publicIpAddresses": [],
        "privateIpAddresses": private,
        "subnetId": primary_subnet,
        "nics": nics.iter().map(|n| nic_info(n)).collect::<Vec<_>>(),
        "resourceGroupId": "default",
        "tags": {"tags": []},
    })
}

fn subnet_info(cloud: &Cloud, s: &Subnet) -> Value {
    let v6 = s.ipv6_cidr.is_some();
    json!({
        "subnetId": s.id,
        "regionId": s.region,
        "name": s.name,
        "cidrBlock": s.cidr.to_string(),
        "gatewayIpAddress": s.gateway.to_string(),
        "ipv6CidrBlock": s.ipv6_cidr.map(|c| c.to_string()),
        "ipv6GatewayIpAddress": s.ipv6_cidr.map(|c| std::net::Ipv6Addr::from(u128::from(c.network()) + 1).to_string()),
        "stackType": s.stack_type.as_str(),
        "ipv6Type": v6.then_some(match s.ipv6_type { Ipv6Type::Public => "Public", Ipv6Type::Private => "Private" }),
        "ipv6MaskLength": v6.then_some(s.ipv6_mask_length),
        "vpcId": s.vpc_id,
        "vpcName": cloud.vpcs.get(&s.vpc_id).map(|v| v.name.clone()),
        "usageIpv4Count": s.used_ipv4_count(),
        "usageIpv6Count": s.used_ipv6_count(),
        "createTime": "2026-01-01T00:00:00Z",
        "isDefault": false,
    })
}
