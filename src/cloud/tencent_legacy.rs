//! Tencent Cloud VPC legacy API 2.0 (Tencent's legacy VPC API pages):
//! `POST /v2/index.php` with a form body, HmacSHA1/HmacSHA256 query
//! signature, `{code, message, codeDesc, data}` envelopes and integer task
//! ids. Only IPv4 claims are supported here: assign, unassign, describe and
//! the task query. Every call needs the NIC's `vpcId`.
//!
//! The legacy API has no idempotency token, so its mutations are never
//! repeated when their outcome is open; pending operations are resolved
//! through the task query and, when the task id was lost, by diffing the
//! NIC's addresses against `addressesBefore` (as on Zenlayer).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};

use serde_json::Value;
use tokio::time::Instant;

use super::error::{CodeInfo, lookup, parse_address, row};
use super::operation::{in_flux_state, resolve_with_task, task_failed};
use super::transport::{Idempotence, RawResponse, unexpected_body};
use super::{
    Action, Capabilities, CloudError, Credentials, Endpoint, ErrorClass, InstanceId, NicId,
    NicProvider, NicRef, NicStatus, ObservedInstance, ObservedNic, ObservedSubnet, Operation,
    Provider, RateLimits, Resolution, Submitted, TaskState, Transport, collect_pages,
};
use crate::signing::query::{self, Method};

pub const DEFAULT_ENDPOINT: &str = "https://vpc.api.qcloud.com/v2/index.php";
const CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
const MAX_ADDRESSES_PER_CALL: usize = 10;
/// The legacy DescribeNetworkInterfaces returns at most 50 per page.
const PAGE_SIZE: usize = 50;
const DESCRIBE: &str = "DescribeNetworkInterfaces";
/// NICs described by id at once; the describe limiter sets the rate, this
/// only bounds the connections one batch holds open.
const BY_ID_IN_FLIGHT: usize = 8;

/// The legacy API publishes no per-action limits; the API 3.0 figures are used.
pub fn default_rate_limits() -> RateLimits {
    RateLimits::new(100.0, &[("DescribeVpcTaskResult", 20.0)])
}

use ErrorClass::{
    Configuration, Conflict, Credentials as Creds, InvalidInput, NotFound, Terminal, Throttled,
    Transient,
};

/// `codeDesc` values of the legacy VPC pages and the numeric common codes
/// (used when `codeDesc` is absent or unknown).
pub const ERROR_CODES: &[CodeInfo] = &[
    row(
        "InvalidVpc.NotFound",
        NotFound,
        "The VPC does not exist.",
        "Check the claim's vpcId.",
    ),
    row(
        "InvalidNetworkInterface.NotFound",
        NotFound,
        "The ENI does not exist.",
        "Check nicId and vpcId; on release this counts as done.",
    ),
    row(
        "InvalidPrivateIpAddress.InUse",
        Conflict,
        "The address is already used.",
        "Pick another address or free it where it is used.",
    ),
    row(
        "InvalidPrivateip.IsPrimary",
        InvalidInput,
        "The primary IP cannot be removed.",
        "Remove it from the claim.",
    ),
    row(
        "4000",
        InvalidInput,
        "Invalid parameter.",
        "Fix the claim as the message says.",
    ),
    row(
        "4100",
        Creds,
        "Authentication failed (signature).",
        "Check the SecretKey.",
    ),
    row(
        "4101",
        Creds,
        "Sub-account not authorised for the API.",
        "Grant the API to the key's user.",
    ),
    row(
        "4102",
        Creds,
        "Not authorised for the resource.",
        "Grant access to the ENI.",
    ),
    row(
        "4103",
        Creds,
        "Not authorised for the resource this API operates.",
        "Grant access to the ENI.",
    ),
    row(
        "4104",
        Creds,
        "The key does not exist.",
        "Check the SecretId.",
    ),
    row(
        "4105",
        Creds,
        "Token error.",
        "Refresh the temporary credentials.",
    ),
    row(
        "4106",
        Creds,
        "MFA failed.",
        "Use a key without MFA requirement.",
    ),
    row(
        "4110",
        Creds,
        "Other CAM failure.",
        "Check the key's permissions.",
    ),
    row(
        "4200",
        Creds,
        "Request expired.",
        "Fix the node's clock (NTP).",
    ),
    row(
        "4300",
        Creds,
        "Access denied (banned or out of scope).",
        "Contact Tencent support.",
    ),
    row(
        "4400",
        Throttled,
        "Request quota exceeded (rate).",
        "Nothing: the client slows down and retries.",
    ),
    row(
        "4500",
        Transient,
        "Replay: Nonce reused or Timestamp outside ±5 min.",
        "Retried with a fresh nonce; fix the clock if it persists.",
    ),
    row(
        "4600",
        Configuration,
        "Protocol not supported (HTTPS only).",
        "Use the https:// endpoint.",
    ),
    row(
        "5000",
        NotFound,
        "Resource not found.",
        "Check the ids; on release this counts as done.",
    ),
    row(
        "5100",
        Transient,
        "Resource operation failed; retry later.",
        "Retried with backoff.",
    ),
    row("5200", Terminal, "Purchase failed.", "Check the account."),
    row(
        "5300",
        Terminal,
        "Insufficient balance.",
        "Top up the account.",
    ),
    row(
        "5400",
        Transient,
        "Partially succeeded.",
        "The controller re-observes the NIC and converges the rest.",
    ),
    row(
        "5500",
        Terminal,
        "Qualification check failed.",
        "Check the account's qualification.",
    ),
    row(
        "6000",
        Transient,
        "Internal server error.",
        "Retried with backoff.",
    ),
    row(
        "6100",
        Configuration,
        "Version or interface not supported.",
        "Check the endpoint.",
    ),
    row(
        "6200",
        Transient,
        "Interface temporarily unavailable (maintenance).",
        "Retried with backoff.",
    ),
];

/// The class of a legacy error from its `codeDesc` and numeric `code`.
pub fn classify(code_desc: &str, numeric: i64) -> ErrorClass {
    lookup(ERROR_CODES, code_desc)
        .or_else(|| lookup(ERROR_CODES, &numeric.to_string()))
        .unwrap_or(Terminal)
}

/// A client for one Tencent account through the legacy API 2.0.
#[derive(Debug, Clone)]
pub struct TencentLegacy {
    transport: Transport,
    endpoint: Endpoint,
    region: String,
    credentials: Credentials,
    method: Method,
    /// NICs per VPC as its last page reported (`totalNum`), shared by clones.
    vpc_sizes: Arc<Mutex<HashMap<String, u64>>>,
}

type Params = Vec<(String, String)>;

impl TencentLegacy {
    /// `region` is sent verbatim (`gz` style or `ap-guangzhou` style).
    ///
    /// `endpoint` overrides [`DEFAULT_ENDPOINT`]; a bare base URL such as
    /// `http://127.0.0.1:8080` gets the API path `/v2/index.php`.
    pub fn new(
        transport: Transport,
        credentials: Credentials,
        region: impl Into<String>,
        endpoint: Option<&str>,
    ) -> Result<Self, CloudError> {
        let endpoint = Endpoint::parse(
            Provider::TencentLegacy,
            endpoint.unwrap_or(DEFAULT_ENDPOINT),
        )?
        .with_default_path("/v2/index.php");
        transport.register_limits(Provider::TencentLegacy, default_rate_limits());
        Ok(TencentLegacy {
            transport,
            endpoint,
            region: region.into(),
            credentials,
            method: Method::HmacSha256,
            vpc_sizes: Arc::default(),
        })
    }

    /// HmacSHA256 is the default; HmacSHA1 exists for old accounts.
    pub fn with_signature_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Builds and signs one form-body request.
    pub(crate) fn build_request(
        &self,
        action: &str,
        params: &Params,
        timestamp: i64,
        nonce: u32,
    ) -> Result<reqwest::Request, CloudError> {
        let mut all: Params = vec![
            ("Action".into(), action.into()),
            ("Nonce".into(), nonce.to_string()),
            ("Timestamp".into(), timestamp.to_string()),
            ("Region".into(), self.region.clone()),
            ("SecretId".into(), self.credentials.key_id.clone()),
            ("SignatureMethod".into(), self.method.as_param().into()),
        ];
        if let Some(token) = &self.credentials.token {
            all.push(("Token".into(), token.expose().to_string()));
        }
        all.extend(params.iter().cloned());
        let host = self.endpoint.host_header();
        let to_sign = query::string_to_sign(
            "POST",
            &host,
            self.endpoint.url().path(),
            all.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let signature = query::signature(self.credentials.secret.expose(), self.method, &to_sign);
        all.push(("Signature".into(), signature));
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(all.iter())
            .finish();
        self.transport
            .http()
            .post(self.endpoint.url().clone())
            .header("Content-Type", CONTENT_TYPE)
            .body(body)
            .build()
            .map_err(|e| {
                CloudError::invalid_request(Provider::TencentLegacy, action, e.to_string())
            })
    }

    async fn call(
        &self,
        action: &str,
        params: Params,
        idempotence: Idempotence,
        deadline: Option<Instant>,
    ) -> Result<Value, CloudError> {
        self.transport
            .call(
                Provider::TencentLegacy,
                &self.credentials.key_id,
                action,
                idempotence,
                deadline,
                || {
                    self.build_request(
                        action,
                        &params,
                        jiff::Timestamp::now().as_second(),
                        rand::random_range(1..u32::MAX),
                    )
                },
                |raw| parse_response(action, raw),
            )
            .await
    }

    /// The legacy task query: 0 success, 1 failure, 2 running.
    pub async fn task_status(&self, task_id: &str) -> Result<(i64, Value), CloudError> {
        let data = self
            .call(
                "DescribeVpcTaskResult",
                vec![("taskId".into(), task_id.into())],
                Idempotence::Safe,
                None,
            )
            .await?;
        let status = data.get("status").and_then(as_int).ok_or_else(|| {
            CloudError::bad_response(
                Provider::TencentLegacy,
                "DescribeVpcTaskResult",
                "the task result has no numeric status".into(),
            )
        })?;
        Ok((status, data.get("output").cloned().unwrap_or(Value::Null)))
    }

    /// The task's state; a failed task is classified by its output's
    /// `errorCode` where the table knows it.
    async fn task_state(&self, action: Action, task: &str) -> Result<TaskState, CloudError> {
        Ok(match self.task_status(task).await? {
            (2, _) => TaskState::Running,
            (1, output) => {
                let code = output
                    .get("errorCode")
                    .and_then(as_int)
                    .map(|c| c.to_string());
                TaskState::Failed(task_failed(
                    Provider::TencentLegacy,
                    action.as_str(),
                    task,
                    code.as_deref(),
                    |c| lookup(ERROR_CODES, c),
                    &output.to_string(),
                ))
            }
            _ => TaskState::Succeeded,
        })
    }

    /// The NICs of one VPC asked for, in as few calls as the legacy API
    /// allows: it filters by at most one `networkInterfaceId`, so k NICs cost
    /// k calls by id or ⌈N/50⌉ pages of the VPC's N NICs, whichever is fewer.
    /// N is remembered from the VPC's last page (a sweep's, usually); when it
    /// is not known, the first page tells it.
    async fn describe_in_vpc(
        &self,
        vpc_id: &str,
        nic_ids: &BTreeSet<String>,
    ) -> Result<Vec<ObservedNic>, CloudError> {
        let k = nic_ids.len() as u64;
        let fewer_by_id = k == 1 || self.vpc_size(vpc_id).is_some_and(|n| k < pages(n));
        if fewer_by_id {
            self.describe_by_id(vpc_id, nic_ids.iter().cloned().collect())
                .await
        } else {
            self.page_vpc(vpc_id, nic_ids).await
        }
    }

    /// Pages through the VPC, and switches to asking by id as soon as fewer
    /// NICs are missing than pages are left (a NIC's page cannot be known
    /// in advance: new NICs shift the offsets).
    async fn page_vpc(
        &self,
        vpc_id: &str,
        nic_ids: &BTreeSet<String>,
    ) -> Result<Vec<ObservedNic>, CloudError> {
        let total = AtomicU64::new(0);
        let seen = AtomicU64::new(0);
        let result = collect_pages(
            Provider::TencentLegacy,
            DESCRIBE,
            |kept: &[ObservedNic]| {
                let found = kept.iter().map(|n| &n.id).collect::<BTreeSet<_>>().len();
                let missing = nic_ids.len().saturating_sub(found) as u64;
                let left = pages(
                    total
                        .load(Ordering::Relaxed)
                        .saturating_sub(seen.load(Ordering::Relaxed)),
                );
                missing == 0 || missing < left
            },
            |_, offset| {
                let (total, seen) = (&total, &seen);
                async move {
                    let (items, reported) = self.list(vpc_id, None, offset).await?;
                    let mut kept = Vec::new();
                    for item in &items {
                        let nic = observe_nic(item)?;
                        if nic_ids.contains(&nic.id.0) {
                            kept.push(nic);
                        }
                    }
                    total.store(reported, Ordering::Relaxed);
                    seen.store(
                        (offset as u64).saturating_add(items.len() as u64),
                        Ordering::Relaxed,
                    );
                    Ok((kept, items.len(), Some(reported)))
                }
            },
        )
        .await;
        let mut out = match result {
            Ok(out) => out,
            Err(e) if absent(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        self.remember_size(vpc_id, total.load(Ordering::Relaxed));
        let mut found = BTreeSet::new();
        out.retain(|n| found.insert(n.id.0.clone()));
        // Asked for by id: the NICs paging switched away from, and any the
        // pages missed. Offsets shift when a NIC is created or deleted during
        // the page-through, and a NIC missed there must not read as gone (a
        // deleting claim would then release nothing). Normally none are left.
        let missing: Vec<String> = nic_ids.difference(&found).cloned().collect();
        if !missing.is_empty() {
            out.extend(self.describe_by_id(vpc_id, missing).await?);
        }
        Ok(out)
    }

    /// One call per NIC, a few at a time (the describe limiter paces them).
    async fn describe_by_id(
        &self,
        vpc_id: &str,
        nic_ids: Vec<String>,
    ) -> Result<Vec<ObservedNic>, CloudError> {
        // Owned ids: borrowed ones trip the compiler's `Send` proof of the stream.
        futures::stream::iter(nic_ids)
            .map(|id| async move { self.describe_one(vpc_id, &id).await })
            .buffer_unordered(BY_ID_IN_FLIGHT)
            .try_filter_map(|nic| async move { Ok(nic) })
            .try_collect()
            .await
    }

    /// `None` when the cloud does not know the NIC. An answer that lists
    /// another NIC ignored the filter: paging on through it by id would cost
    /// the whole VPC per NIC, so it is refused.
    async fn describe_one(
        &self,
        vpc_id: &str,
        nic_id: &str,
    ) -> Result<Option<ObservedNic>, CloudError> {
        let items = match self.list(vpc_id, Some(nic_id), 0).await {
            Ok((items, _)) => items,
            Err(e) if absent(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = None;
        for item in &items {
            let nic = observe_nic(item)?;
            if nic.id.0 != nic_id {
                return Err(CloudError::bad_response(
                    Provider::TencentLegacy,
                    DESCRIBE,
                    format!(
                        "asked for NIC {nic_id} by networkInterfaceId, the answer lists NIC {}",
                        nic.id
                    ),
                ));
            }
            out = Some(nic);
        }
        Ok(out)
    }

    /// One page of DescribeNetworkInterfaces: its items and `totalNum`.
    async fn list(
        &self,
        vpc_id: &str,
        nic_id: Option<&str>,
        offset: usize,
    ) -> Result<(Vec<Value>, u64), CloudError> {
        let mut params: Params = vec![("vpcId".into(), vpc_id.into())];
        if let Some(id) = nic_id {
            params.push(("networkInterfaceId".into(), id.into()));
        }
        params.push(("offset".into(), offset.to_string()));
        params.push(("limit".into(), PAGE_SIZE.to_string()));
        let mut data = self.call(DESCRIBE, params, Idempotence::Safe, None).await?;
        let total = data
            .get("totalNum")
            .and_then(as_int)
            .map_or(0, |t| t.max(0) as u64);
        let items = match data.get_mut("data").map(Value::take) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        Ok((items, total))
    }

    fn vpc_size(&self, vpc_id: &str) -> Option<u64> {
        self.sizes().get(vpc_id).copied()
    }

    fn remember_size(&self, vpc_id: &str, nics: u64) {
        self.sizes().insert(vpc_id.to_string(), nics);
    }

    fn sizes(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        // Plain numbers: a panic elsewhere while holding the lock leaves nothing half-done.
        self.vpc_sizes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Pages of `nics` NICs at the legacy page size.
fn pages(nics: u64) -> u64 {
    nics.div_ceil(PAGE_SIZE as u64)
}

/// A "not found" that means the NIC is gone. A VPC that does not exist is
/// the claim's error (a wrong vpcId), not an answer about its NICs: the
/// caller reports the code.
fn absent(e: &CloudError) -> bool {
    e.class == NotFound && e.code != "InvalidVpc.NotFound"
}

fn as_int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn parse_response(action: &str, raw: RawResponse) -> Result<Value, CloudError> {
    let RawResponse { status, body, .. } = raw;
    let envelope: Value = serde_json::from_slice(&body).map_err(|e| {
        unexpected_body(
            Provider::TencentLegacy,
            action,
            status,
            &body,
            &format!("not JSON ({e})"),
        )
    })?;
    let Some(code) = envelope.get("code").and_then(as_int) else {
        return Err(unexpected_body(
            Provider::TencentLegacy,
            action,
            status,
            &body,
            "no numeric `code`",
        ));
    };
    if code != 0 {
        let desc = envelope
            .get("codeDesc")
            .and_then(Value::as_str)
            .unwrap_or("");
        return Err(CloudError::answered(
            Provider::TencentLegacy,
            action,
            if desc.is_empty() {
                code.to_string()
            } else {
                desc.to_string()
            },
            envelope
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            Some(status),
            None,
            classify(desc, code),
        ));
    }
    if status != 200 {
        return Err(unexpected_body(
            Provider::TencentLegacy,
            action,
            status,
            &body,
            "unexpected HTTP status",
        ));
    }
    // Some pages document fields at the top level, examples nest them in `data`.
    Ok(envelope
        .get("data")
        .filter(|d| d.is_object())
        .cloned()
        .unwrap_or(envelope))
}

fn observe_nic(item: &Value) -> Result<ObservedNic, CloudError> {
    const A: &str = "DescribeNetworkInterfaces";
    let text = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let id = text(item, "networkInterfaceId").ok_or_else(|| {
        CloudError::bad_response(
            Provider::TencentLegacy,
            A,
            "a NIC without networkInterfaceId".into(),
        )
    })?;
    let mut primary_ipv4 = None;
    let mut secondary_ipv4 = BTreeSet::new();
    let mut addresses_in_flux = BTreeSet::new();
    for spec in item
        .get("privateIpAddressesSet")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(raw) = text(spec, "privateIpAddress") else {
            continue;
        };
        let ip: Ipv4Addr = parse_address(Provider::TencentLegacy, A, &raw)?;
        let primary = matches!(spec.get("primary"), Some(Value::Bool(true)))
            || spec.get("primary").and_then(as_int) == Some(1);
        if primary {
            primary_ipv4 = Some(ip)
        } else {
            secondary_ipv4.insert(ip);
            // The legacy page lists no per-address state, but when the answer carries
            // API 3.0's (`PENDING`/`DELETING`/`MIGRATING`), an address still
            // being added or removed must not settle an operation whose task
            // id was lost: that would report a release as not applied and
            // invite a second, conflicting call.
            if in_flux_state(text(spec, "state").as_deref()) {
                addresses_in_flux.insert(IpAddr::V4(ip));
            }
        }
    }
    let instance = match item.get("instanceSet") {
        Some(Value::Array(list)) => list.first().and_then(|i| text(i, "instanceId")),
        Some(obj @ Value::Object(_)) => text(obj, "instanceId"),
        _ => None,
    };
    Ok(ObservedNic {
        id: NicId(id),
        status: if instance.is_some() {
            NicStatus::InUse
        } else {
            NicStatus::Available
        },
        vpc_id: text(item, "vpcId"),
        subnet_id: text(item, "subnetId"),
        primary_ipv4,
        secondary_ipv4,
        ipv6: BTreeSet::new(),
        ipv6_cidr: None,
        instance_id: instance.map(InstanceId),
        addresses_in_flux,
        zone: text(item, "zone"),
    })
}

fn unsupported(action: &str, what: &str) -> CloudError {
    CloudError::invalid_request(
        Provider::TencentLegacy,
        action,
        format!(
            "{what} is not available through the Tencent legacy API 2.0; use provider Tencent (API 3.0)"
        ),
    )
}

fn vpc_of<'a>(nic: &'a NicRef, action: &str) -> Result<&'a str, CloudError> {
    nic.vpc_id
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            CloudError::invalid_request(
                Provider::TencentLegacy,
                action,
                format!(
                    "NIC {} needs spec.vpcId on the Tencent legacy API 2.0",
                    nic.id
                ),
            )
        })
}

/// The one call an operation is.
pub(crate) fn operation_call(op: &Operation) -> Result<(&'static str, Params), CloudError> {
    let action = match op.action {
        Action::AssignIpv4 => "AssignPrivateIpAddresses",
        Action::UnassignIpv4 => "UnassignPrivateIpAddresses",
        _ => return Err(unsupported(op.action.as_str(), op.action.as_str())),
    };
    let invalid = |m: &str| CloudError::invalid_request(Provider::TencentLegacy, action, m.into());
    let mut params: Params = vec![
        ("vpcId".into(), vpc_of(&op.nic, action)?.into()),
        ("networkInterfaceId".into(), op.nic.id.0.clone()),
    ];
    let addresses = op.ipv4_addresses();
    if addresses.len() > MAX_ADDRESSES_PER_CALL
        || op
            .count
            .is_some_and(|c| c as usize > MAX_ADDRESSES_PER_CALL)
    {
        return Err(invalid(
            "more than 10 addresses in one call: split the change into operations of at most 10",
        ));
    }
    if addresses.is_empty() {
        if op.action == Action::UnassignIpv4 {
            return Err(invalid("a release names the addresses it releases"));
        }
        let count = op.count.filter(|c| *c >= 1).ok_or_else(|| {
            invalid("an IPv4 assignment needs addresses or a count of at least 1")
        })?;
        params.push(("secondaryPrivateIpAddressCount".into(), count.to_string()));
        return Ok((action, params));
    }
    for (i, a) in addresses.iter().enumerate() {
        if op.action == Action::AssignIpv4 {
            params.push((
                format!("privateIpAddressSet.{i}.privateIpAddress"),
                a.to_string(),
            ));
            params.push((format!("privateIpAddressSet.{i}.primary"), "false".into()));
        } else {
            params.push((format!("privateIpAddress.{i}"), a.to_string()));
        }
    }
    Ok((action, params))
}

#[async_trait::async_trait]
impl NicProvider for TencentLegacy {
    fn provider(&self) -> Provider {
        Provider::TencentLegacy
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            ipv6: false,
            max_ipv6_per_nic: 0,
            attach: false,
            max_addresses_per_call: MAX_ADDRESSES_PER_CALL,
            async_tasks: true,
        }
    }

    fn in_flight_window(&self) -> Duration {
        self.transport.in_flight_window()
    }

    /// The task query for a task id that cannot exist: authentication and the
    /// endpoint are checked before the task is looked up, so "no such task"
    /// proves them.
    async fn check_credentials(&self) -> Result<(), CloudError> {
        match self
            .call(
                "DescribeVpcTaskResult",
                vec![("taskId".into(), "0".into())],
                Idempotence::Safe,
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.class == NotFound || e.class == InvalidInput => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Grouped by VPC; in each, by id or by paging through the VPC,
    /// whichever takes fewer calls (the legacy API has no id-list filter).
    async fn describe_nics(&self, nics: &[NicRef]) -> Result<Vec<ObservedNic>, CloudError> {
        let mut by_vpc: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for nic in nics {
            by_vpc
                .entry(vpc_of(nic, DESCRIBE)?)
                .or_default()
                .insert(nic.id.0.clone());
        }
        let mut out = Vec::new();
        for (vpc, ids) in by_vpc {
            out.extend(self.describe_in_vpc(vpc, &ids).await?);
        }
        Ok(out)
    }

    async fn describe_instance(
        &self,
        _id: &InstanceId,
    ) -> Result<Option<ObservedInstance>, CloudError> {
        Err(unsupported(
            "DescribeInstances",
            "describing instances (needed only for attachments)",
        ))
    }

    /// The legacy client does not read subnets: an invalid explicit address
    /// is named by the cloud's own error.
    async fn describe_subnet(
        &self,
        _nic: &ObservedNic,
    ) -> Result<Option<ObservedSubnet>, CloudError> {
        Ok(None)
    }

    async fn submit(&self, op: &Operation) -> Result<Submitted, CloudError> {
        let (action, params) = operation_call(op)?;
        let deadline =
            self.transport
                .send_deadline(Provider::TencentLegacy, action, op.started_at)?;
        let data = self
            .call(action, params, Idempotence::Unsafe, Some(deadline))
            .await?;
        Ok(Submitted {
            request_id: data.get("taskId").and_then(as_int).map(|t| t.to_string()),
            addresses: if op.action == Action::UnassignIpv4 {
                op.addresses.iter().copied().collect::<BTreeSet<IpAddr>>()
            } else {
                BTreeSet::new()
            },
            complete: false,
        })
    }

    async fn resolve_observed(
        &self,
        op: &Operation,
        nic: Option<&ObservedNic>,
    ) -> Result<Resolution, CloudError> {
        resolve_with_task(
            Provider::TencentLegacy,
            op,
            nic,
            self.in_flight_window(),
            |task| async move { self.task_state(op.action, &task).await },
            || async move {
                let found = self.describe_nics(std::slice::from_ref(&op.nic)).await?;
                Ok(found.into_iter().find(|n| n.id == op.nic.id))
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::TransportConfig;

    fn client(method: Method) -> TencentLegacy {
        TencentLegacy::new(
            Transport::new(TransportConfig::default()).unwrap(),
            Credentials::new(
                "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
                "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
            ),
            "gz",
            None,
        )
        .unwrap()
        .with_signature_method(method)
    }

    fn body_of(req: &reqwest::Request) -> String {
        String::from_utf8_lossy(req.body().and_then(|b| b.as_bytes()).unwrap_or_default())
            .into_owned()
    }

    /// The call of `op` on `nic`, as a list (one call per operation).
    fn operation_calls(
        nic: &NicRef,
        op: &Operation,
    ) -> Result<Vec<(&'static str, Params)>, CloudError> {
        operation_call(&Operation {
            nic: nic.clone(),
            ..op.clone()
        })
        .map(|c| vec![c])
    }

    #[test]
    fn request_builder_matches_x3() {
        let nic = NicRef::new("eni-m6dyj72l").in_vpc("vpc-7t9nf3pu");
        let op = Operation {
            count: Some(2),
            ..Operation::blank(Action::AssignIpv4)
        };
        let calls = operation_calls(&nic, &op).unwrap();
        assert_eq!(calls.len(), 1);
        let req = client(Method::HmacSha1)
            .build_request(calls[0].0, &calls[0].1, 1_465_185_768, 11886)
            .unwrap();
        assert_eq!(
            req.url().as_str(),
            "https://vpc.api.qcloud.com/v2/index.php"
        );
        assert_eq!(req.headers()["content-type"], CONTENT_TYPE);
        let body = body_of(&req);
        assert!(
            body.contains("Signature=FWtzs64KKAfeqkjb22AMrSu262E%3D"),
            "{body}"
        );
        assert!(
            body.contains("secondaryPrivateIpAddressCount=2")
                && body.contains("vpcId=vpc-7t9nf3pu")
        );
    }

    #[test]
    fn explicit_addresses_use_zero_based_sets_and_hmac_sha256_x2() {
        let nic = NicRef::new("eni-m6dyj72l").in_vpc("vpc-7t9nf3pu");
        let op = Operation {
            addresses: vec!["10.0.0.6".parse().unwrap()],
            ..Operation::blank(Action::AssignIpv4)
        };
        let calls = operation_calls(&nic, &op).unwrap();
        // X2 is a GET; the same parameters signed for POST must differ only by method.
        let to_sign = query::string_to_sign(
            "GET",
            "vpc.api.qcloud.com",
            "/v2/index.php",
            [
                ("Action", "AssignPrivateIpAddresses"),
                ("Nonce", "11886"),
                ("Region", "gz"),
                ("SecretId", "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"),
                ("SignatureMethod", "HmacSHA256"),
                ("Timestamp", "1465185768"),
            ]
            .into_iter()
            .chain(calls[0].1.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        );
        assert_eq!(
            query::signature(
                "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
                Method::HmacSha256,
                &to_sign
            ),
            "F/CSucUtVe3lwGBxaeByM1BlFLMixvfjJNpu3y9JHPA="
        );
        let unassign = Operation {
            action: Action::UnassignIpv4,
            ..op
        };
        let calls = operation_calls(&nic, &unassign).unwrap();
        assert!(
            calls[0]
                .1
                .contains(&("privateIpAddress.0".to_string(), "10.0.0.6".to_string()))
        );
        assert!(
            operation_calls(&NicRef::new("eni-1"), &unassign).is_err(),
            "vpcId is required"
        );
        assert!(
            operation_calls(&nic, &Operation::blank(Action::AssignIpv6)).is_err(),
            "no IPv6 on the legacy API"
        );
    }

    #[test]
    fn envelopes_are_parsed() {
        let data = parse_response(
            "A",
            RawResponse::test(
                200,
                r#"{"code":0,"message":"","codeDesc":"Success","data":{"taskId":16284}}"#,
            ),
        )
        .unwrap();
        assert_eq!(data["taskId"], 16284);
        let err = parse_response(
            "A",
            RawResponse::test(
                200,
                r#"{"code":5000,"message":"no","codeDesc":"InvalidNetworkInterface.NotFound"}"#,
            ),
        )
        .unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.class),
            ("InvalidNetworkInterface.NotFound", NotFound)
        );
        let err = parse_response(
            "A",
            RawResponse::test(200, r#"{"code":4400,"message":"slow"}"#),
        )
        .unwrap_err();
        assert_eq!((err.code.as_str(), err.class), ("4400", Throttled));
        let err = parse_response("A", RawResponse::test(200, "<html>")).unwrap_err();
        assert_eq!(err.code, "Client.BadResponse");
        let nic = observe_nic(&serde_json::json!({
            "networkInterfaceId": "eni-1", "vpcId": "vpc-1",
            "privateIpAddressesSet": [{"privateIpAddress": "10.0.0.2", "primary": true}, {"privateIpAddress": "10.0.0.9", "primary": false}],
            "instanceSet": {"instanceId": "ins-1"}
        }))
        .unwrap();
        assert_eq!(nic.secondary_ipv4.len(), 1);
        assert_eq!(nic.status, NicStatus::InUse);
    }
}
