//! Zenlayer Cloud ZEC API 2.0 (Zenlayer's API reference): `POST /api/v2/zec`,
//! action in `X-ZC-Action`, version `2025-09-01`, `ZC2-HMAC-SHA256`.
//!
//! Count-mode assignment (`ipAddressCount`) has no idempotency token on
//! Zenlayer, so a blind retry after a lost response could bind extra
//! addresses. This client never retries a mutating call whose outcome is
//! open (timeout, 5xx, truncated answer); the controller resolves it from
//! `addressesBefore` instead (see [`crate::cloud::Operation`]).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use std::time::Duration;

use tokio::time::Instant;

use super::error::{CodeInfo, class_of_status, lookup, parse_address, row};
use super::transport::{Idempotence, RawResponse, unexpected_body};
use super::{
    Action, Capabilities, CloudError, Credentials, Endpoint, ErrorClass, InstanceId,
    InstanceStatus, NicId, NicProvider, NicRef, NicStatus, ObservedInstance, ObservedNic,
    ObservedSubnet, Operation, Provider, RateLimits, Resolution, Submitted, Transport,
    collect_pages, settle,
};

pub const DEFAULT_ENDPOINT: &str = "https://console.zenlayer.com/api/v2/zec";
pub const API_VERSION: &str = "2025-09-01";
const CONTENT_TYPE: &str = "application/json";
/// `nicIds` and `instanceIds` filters take at most 100 ids.
const MAX_IDS: usize = 100;
const PAGE_SIZE: usize = 100;
/// Zenlayer documents no batch maximum for `BatchAssignNetworkInterfaceIpv4`;
/// 50 (the most one claim asks for) is what the controller plans with. The
/// cloud, not this client, refuses a larger call.
const MAX_ADDRESSES_PER_CALL: usize = 50;

/// Zenlayer publishes no rate limits; 20 requests per second per action is a
/// conservative default (its SDKs only react to 429). Configurable.
pub fn default_rate_limits() -> RateLimits {
    RateLimits::new(20.0, &[])
}

use ErrorClass::{
    Conflict, Credentials as Creds, InvalidInput, NotFound, Terminal, Throttled, Transient,
};

/// Every code of Zenlayer's ZEC API pages and SDKs, with its class.
pub const ERROR_CODES: &[CodeInfo] = &[
    row(
        "REQUEST_LIMIT_EXCEEDED",
        Throttled,
        "Too many requests (HTTP 429).",
        "Nothing: the client slows this action down and retries.",
    ),
    row(
        "INTERNAL_SERVER_ERROR",
        Transient,
        "Zenlayer server fault (5xx).",
        "Retried with backoff; a write is first resolved from the NIC's state.",
    ),
    row(
        "SERVICE_TEMPORARY_UNAVAILABLE",
        Transient,
        "Service temporarily unavailable.",
        "Retried with backoff.",
    ),
    row(
        "REQUEST_TIMED_OUT",
        Transient,
        "Upstream timeout.",
        "Retried after re-reading the NIC.",
    ),
    row(
        "INVALID_OPERATION_TIMEOUT",
        Transient,
        "A backend operation timed out.",
        "Retried after re-reading the NIC.",
    ),
    row(
        "SECURITY_CHALLENGE",
        Creds,
        "HTTP 403 with `cf-mitigated: challenge`: a CDN/WAF challenge, not an API answer.",
        "Retried slowly; ask Zenlayer to allow the controller's egress address.",
    ),
    row(
        "REQUEST_BLOCKED",
        Creds,
        "HTTP 451: blocked by a security policy.",
        "Contact Zenlayer support; retried slowly.",
    ),
    row(
        "OPERATION_FAILED_RESOURCE_NOT_FOUND",
        NotFound,
        "Generic not found (older docs' name for a missing NIC).",
        "Check nicId/instanceId; on release this counts as done.",
    ),
    row(
        "INVALID_NIC_NOT_FOUND",
        NotFound,
        "The NIC does not exist.",
        "Check the claim's nicId; on release this counts as done.",
    ),
    row(
        "INVALID_INSTANCE_NOT_FOUND",
        NotFound,
        "The instance does not exist.",
        "Check attachment.instanceId.",
    ),
    row(
        "INVALID_SUBNET_NOT_FOUND",
        NotFound,
        "The subnet does not exist.",
        "Check the NIC's subnet in the console.",
    ),
    row(
        "INVALID_ZONE_NOT_FOUND",
        NotFound,
        "The zone does not exist.",
        "Check the region/zone of the ProviderConfig.",
    ),
    row(
        "INVALID_NIC_STATUS",
        Transient,
        "The NIC is in a state that does not allow the change (creating, attaching, detaching, deleting).",
        "Retried after the NIC settles; if it stays failed, fix the NIC.",
    ),
    row(
        "OPERATION_DENIED_SUBNET_TYPE_NOT_SUPPORT_IPV4",
        Terminal,
        "The NIC's subnet has no IPv4 stack.",
        "Use a NIC in an IPv4 or dual-stack subnet.",
    ),
    row(
        "INVALID_SUBNET_PRIVATE_IPV4_IN_USED",
        Conflict,
        "A requested address is already used in the subnet.",
        "Pick another address, or release it where it is used.",
    ),
    row(
        "INVALID_IP_OUT_OF_RANGE",
        InvalidInput,
        "The address is outside the subnet CIDR.",
        "Use an address inside the NIC's subnet.",
    ),
    row(
        "INVALID_IP_NETWORK_ADDRESS",
        InvalidInput,
        "The address is the subnet's network address.",
        "Use a host address.",
    ),
    row(
        "INVALID_IP_BROADCAST_ADDRESS",
        InvalidInput,
        "The address is the subnet's broadcast address.",
        "Use a host address.",
    ),
    row(
        "INVALID_IP_FIRST_ADDRESS",
        InvalidInput,
        "The address is the subnet's gateway (first) address.",
        "Use another host address.",
    ),
    row(
        "OPERATION_DENIED_SUBNET_IP_INSUFFICIENT",
        Terminal,
        "The subnet has too few free addresses.",
        "Free addresses or use a larger subnet.",
    ),
    row(
        "INVALID_PARAMETER_PRIVATE_IP_ILLEGAL",
        InvalidInput,
        "Not a valid private address.",
        "Use a private address of the subnet.",
    ),
    row(
        "OPERATION_DENIED_NIC_ATTACH_LAN_IP_EXCEED_LIMIT",
        Terminal,
        "The NIC's private address limit is reached.",
        "Lower the claim's count or use another NIC.",
    ),
    row(
        "INVALID_NIC_PRIVATE_IP_EXCEED_LIMIT",
        Terminal,
        "Same limit, older documentation's name.",
        "Lower the claim's count or use another NIC.",
    ),
    row(
        "INVALID_NIC_PRIMARY_IP_CANT_DETACH",
        InvalidInput,
        "The primary address cannot be removed.",
        "Remove it from the claim.",
    ),
    row(
        "INVALID_NIC_HAS_PUBLIC_IP_CANT_DETACH",
        Conflict,
        "Elastic public IPs are bound, so private addresses cannot be removed.",
        "Unbind the EIPs first.",
    ),
    row(
        "INVALID_NIC_LB_ASSOCIATED",
        Conflict,
        "The NIC or address is a load-balancer backend.",
        "Remove it from the load balancer first.",
    ),
    row(
        "INVALID_NIC_IPV6_EXISTS",
        Conflict,
        "The NIC already has an IPv6.",
        "Nothing if this claim owns it; otherwise release it first.",
    ),
    row(
        "OPERATION_DENIED_NIC_EXIST_IPV6",
        Conflict,
        "The NIC already has an IPv6 (other name).",
        "Nothing if this claim owns it; otherwise release it first.",
    ),
    row(
        "INVALID_PARAMETER_BANDWIDTH_ERROR",
        InvalidInput,
        "IPv6 bandwidth below the minimum.",
        "Raise ipv6.bandwidth.",
    ),
    row(
        "INVALID_PARAMETER_BANDWIDTH_EXCEED",
        InvalidInput,
        "IPv6 bandwidth above the maximum.",
        "Lower ipv6.bandwidth.",
    ),
    row(
        "INVALID_PARAMETER_FLOW_TRAFFIC_PACKAGE",
        InvalidInput,
        "Invalid traffic package size.",
        "Use a multiple of 0.1 TB.",
    ),
    row(
        "INVALID_PARAMETER_TRAFFIC_PACKAGE_EXCEED",
        InvalidInput,
        "Traffic package above the maximum.",
        "Lower ipv6.packageSize.",
    ),
    row(
        "INVALID_SUBNET_IPSTACK_NOT_SUPPORT",
        Terminal,
        "The subnet's IP stack does not allow IPv6.",
        "Use a NIC in an IPv4_IPv6 subnet.",
    ),
    row(
        "INVALID_SUBNET_IPV6_INSUFFICIENT",
        Terminal,
        "No free IPv6 in the subnet.",
        "Free IPv6 addresses in the subnet.",
    ),
    row(
        "OPERATION_DENIED_INTERNET_CHARGE_TYPE_NOT_SUPPORT",
        InvalidInput,
        "The IPv6 charge type is not supported here.",
        "Change ipv6.internetChargeType.",
    ),
    row(
        "INVALID_NIC_ATTACHED",
        Conflict,
        "The NIC is already attached.",
        "Done if attached to the wanted instance; otherwise detach it elsewhere.",
    ),
    row(
        "INVALID_NIC_INSTANCE_REGION_MISMATCH",
        InvalidInput,
        "Instance and NIC are in different regions.",
        "Attach to an instance in the NIC's region.",
    ),
    row(
        "OPERATION_DENIED_INSTANCE_STATUS_NOT_SUPPORT",
        Transient,
        "The instance's state does not allow it (must be RUNNING).",
        "Retried; start the instance if it is stopped.",
    ),
    row(
        "INVALID_INSTANCE_NIC_LIMIT",
        Terminal,
        "The instance has its maximum number of NICs.",
        "Detach another NIC or use a larger instance.",
    ),
    row(
        "INVALID_INSTANCE_PRECHECK_ABNORMAL",
        Terminal,
        "The instance failed the pre-check.",
        "Check the instance in the console.",
    ),
    row(
        "INVALID_NIC_PRIMARY_CANT_DETACH",
        InvalidInput,
        "A primary NIC cannot be detached.",
        "Do not manage the primary NIC's attachment.",
    ),
    row(
        "OPERATION_DENIED_NIC_NOT_EXIST_INSTANCE",
        NotFound,
        "The NIC is not attached.",
        "Nothing: on detach this counts as done.",
    ),
    row(
        "INVALID_NIC_PRIMARY_CANT_DELETE",
        InvalidInput,
        "A primary NIC cannot be deleted (not used by nicip).",
        "None.",
    ),
    row(
        "OPERATION_DENIED_POSTPAID_INSTANCE_IN_PROMISE",
        Terminal,
        "Postpaid instance under commitment (NIC deletion; not used by nicip).",
        "None.",
    ),
];

/// The class of a Zenlayer error code; unknown codes fall back to the HTTP status.
pub fn classify(code: &str, http_status: u16) -> ErrorClass {
    lookup(ERROR_CODES, code).unwrap_or_else(|| class_of_status(http_status))
}

/// A client for one Zenlayer account.
#[derive(Debug, Clone)]
pub struct Zenlayer {
    transport: Transport,
    endpoint: Endpoint,
    credentials: Credentials,
    page_size: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SuccessEnvelope<T> {
    request_id: Option<String>,
    response: Option<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorEnvelope {
    request_id: Option<String>,
    code: String,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    #[serde(default)]
    total_count: Option<u64>,
    /// Absent or `null` when there is nothing to list (Zenlayer's API reference, "Response").
    #[serde(default)]
    data_set: Option<Vec<T>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct NicInfo {
    nic_id: String,
    status: Option<String>,
    vpc_id: Option<String>,
    subnet_id: Option<String>,
    primary_ipv4: Option<String>,
    secondary_ipv4s: Option<Vec<String>>,
    primary_ipv6: Option<String>,
    ipv6_cidr: Option<String>,
    instance_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct InstanceInfo {
    instance_id: String,
    status: Option<String>,
    zone_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SubnetInfo {
    subnet_id: String,
    cidr_block: Option<String>,
    gateway_ip_address: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AssignResult {
    ip_addresses: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
struct Empty {}

impl Zenlayer {
    /// `endpoint` overrides [`DEFAULT_ENDPOINT`]; a bare base URL such as
    /// `http://127.0.0.1:8080` gets the API path `/api/v2/zec`.
    pub fn new(
        transport: Transport,
        credentials: Credentials,
        endpoint: Option<&str>,
    ) -> Result<Self, CloudError> {
        let endpoint = Endpoint::parse(Provider::Zenlayer, endpoint.unwrap_or(DEFAULT_ENDPOINT))?
            .with_default_path("/api/v2/zec");
        transport.register_limits(Provider::Zenlayer, default_rate_limits());
        Ok(Zenlayer {
            transport,
            endpoint,
            credentials,
            page_size: PAGE_SIZE,
        })
    }

    /// Items per Describe page (default {PAGE_SIZE}, at most 1000): smaller pages
    /// trade calls for smaller answers.
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.clamp(1, 1000);
        self
    }

    /// Builds and signs one request for `timestamp` (Unix seconds). With a personal access
    /// token in the credentials, the request carries `Authorization: Bearer` and, as the SDKs
    /// do, no timestamp or signature headers.
    pub(crate) fn build_request(
        &self,
        action: &str,
        body: &[u8],
        timestamp: i64,
    ) -> Result<reqwest::Request, CloudError> {
        let request = self
            .transport
            .http()
            .post(self.endpoint.url().clone())
            .header("Content-Type", CONTENT_TYPE)
            .header("X-ZC-Action", action)
            .header("X-ZC-Version", API_VERSION)
            .header("X-ZC-Service", "zec")
            .header("X-ZC-Request-Client", "nicip");
        let request = match &self.credentials.token {
            Some(token) => request.header("Authorization", format!("Bearer {}", token.expose())),
            None => {
                let signature = crate::signing::zc2::signature(
                    self.credentials.secret.expose(),
                    timestamp,
                    CONTENT_TYPE,
                    &self.endpoint.host_header(),
                    body,
                );
                request
                    .header("X-ZC-Timestamp", timestamp.to_string())
                    .header("X-ZC-Signature-Method", crate::signing::zc2::ALGORITHM)
                    .header(
                        "Authorization",
                        crate::signing::zc2::authorization(&self.credentials.key_id, &signature),
                    )
            }
        };
        request
            .body(body.to_vec())
            .build()
            .map_err(|e| CloudError::invalid_request(Provider::Zenlayer, action, e.to_string()))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        action: &str,
        params: Value,
        idempotence: Idempotence,
        deadline: Option<Instant>,
    ) -> Result<(T, Option<String>), CloudError> {
        let body = params.to_string().into_bytes();
        self.transport
            .call(
                Provider::Zenlayer,
                &self.credentials.account(),
                action,
                idempotence,
                deadline,
                || self.build_request(action, &body, jiff::Timestamp::now().as_second()),
                |raw| parse_response(action, raw),
            )
            .await
    }

    async fn describe_nic_ids(
        &self,
        ids: &[String],
        deadline: Option<Instant>,
    ) -> Result<Vec<ObservedNic>, CloudError> {
        super::describe_chunks(ids, MAX_IDS, |chunk| {
            collect_pages(
                Provider::Zenlayer,
                "DescribeNetworkInterfaces",
                move |kept: &[ObservedNic]| kept.len() >= chunk.len(),
                move |page, _| async move {
                    let (page, _): (Page<NicInfo>, _) = self
                        .call(
                            "DescribeNetworkInterfaces",
                            json!({"nicIds": chunk, "pageSize": self.page_size, "pageNum": page + 1}),
                            Idempotence::Safe,
                            deadline,
                        )
                        .await?;
                    let items = page.data_set.unwrap_or_default();
                    let count = items.len();
                    let nics = items
                        .into_iter()
                        .map(observe_nic)
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((nics, count, page.total_count))
                },
            )
        })
        .await
    }

    /// `UnassignNetworkInterfaceIpv6` and `DetachNetworkInterface` name only
    /// the NIC: before sending one, prove that the NIC still carries exactly
    /// the address or instance the operation means to release.
    async fn check_owned(&self, op: &Operation, deadline: Instant) -> Result<(), CloudError> {
        let action = op.action.as_str();
        let observed = self
            .describe_nic_ids(std::slice::from_ref(&op.nic.id.0), Some(deadline))
            .await?;
        let not_owned = |what: String| {
            CloudError::client(
                Provider::Zenlayer,
                action,
                "Client.NotOwned",
                ErrorClass::Conflict,
                what,
            )
        };
        let Some(nic) = observed.iter().find(|n| n.id == op.nic.id) else {
            return Err(CloudError::client(
                Provider::Zenlayer,
                action,
                "Client.NicNotFound",
                ErrorClass::NotFound,
                format!("NIC {} no longer exists", op.nic.id),
            ));
        };
        match op.action {
            Action::UnassignIpv6 => {
                let wanted: BTreeSet<Ipv6Addr> = op.ipv6_addresses().into_iter().collect();
                if nic.ipv6 != wanted {
                    return Err(not_owned(format!(
                        "NIC {} carries IPv6 {:?}, not the {:?} this operation releases; nothing was sent",
                        op.nic.id, nic.ipv6, wanted
                    )));
                }
            }
            Action::Detach if nic.instance_id.is_none() => {
                return Err(CloudError::client(
                    Provider::Zenlayer,
                    action,
                    "Client.NotAttached",
                    ErrorClass::NotFound,
                    format!("NIC {} is not attached; nothing was sent", op.nic.id),
                ));
            }
            Action::Detach if nic.instance_id != op.instance_id => {
                return Err(not_owned(format!(
                    "NIC {} is attached to {:?}, not to the {:?} this operation detaches; nothing was sent",
                    op.nic.id,
                    nic.instance_id.as_ref().map(|i| &i.0),
                    op.instance_id.as_ref().map(|i| &i.0)
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

fn parse_response<T: DeserializeOwned>(
    action: &str,
    raw: RawResponse,
) -> Result<(T, Option<String>), CloudError> {
    let RawResponse {
        status,
        headers,
        body,
    } = raw;
    if status == 200 {
        let envelope: SuccessEnvelope<T> = serde_json::from_slice(&body).map_err(|e| {
            unexpected_body(
                Provider::Zenlayer,
                action,
                status,
                &body,
                &format!("not the expected JSON ({e})"),
            )
        })?;
        let response = envelope.response.ok_or_else(|| {
            unexpected_body(
                Provider::Zenlayer,
                action,
                status,
                &body,
                "no `response` object",
            )
        })?;
        return Ok((response, super::error::request_id(envelope.request_id)));
    }
    let challenged = headers.get("cf-mitigated").and_then(|v| v.to_str().ok()) == Some("challenge");
    let label = match status {
        403 if challenged => Some((
            "SECURITY_CHALLENGE",
            "network-layer security challenge (cf-mitigated: challenge)",
        )),
        451 => Some((
            "REQUEST_BLOCKED",
            "request blocked by a security policy (HTTP 451)",
        )),
        _ => None,
    };
    if let Some((code, message)) = label {
        return Err(CloudError::answered(
            Provider::Zenlayer,
            action,
            code.to_string(),
            message.to_string(),
            Some(status),
            None,
            classify(code, status),
        ));
    }
    match serde_json::from_slice::<ErrorEnvelope>(&body) {
        Ok(e) => Err(CloudError::answered(
            Provider::Zenlayer,
            action,
            e.code.clone(),
            e.message.unwrap_or_default(),
            Some(status),
            e.request_id,
            classify(&e.code, status),
        )),
        Err(_) => Err(unexpected_body(
            Provider::Zenlayer,
            action,
            status,
            &body,
            "not a Zenlayer error envelope",
        )),
    }
}

fn observe_nic(info: NicInfo) -> Result<ObservedNic, CloudError> {
    const A: &str = "DescribeNetworkInterfaces";
    let status = match info.status.as_deref().unwrap_or("") {
        "AVAILABLE" => NicStatus::Available,
        "USED" => NicStatus::InUse,
        "ATTACHING" => NicStatus::Attaching,
        "DETACHING" => NicStatus::Detaching,
        s @ ("PENDING" | "DELETING") => NicStatus::Busy(s.to_string()),
        other => NicStatus::Other(other.to_string()),
    };
    let secondary_ipv4 = info
        .secondary_ipv4s
        .unwrap_or_default()
        .iter()
        .map(|s| parse_address::<Ipv4Addr>(Provider::Zenlayer, A, s))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let ipv6 = match info.primary_ipv6.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => BTreeSet::from([parse_address::<Ipv6Addr>(Provider::Zenlayer, A, s)?]),
        None => BTreeSet::new(),
    };
    Ok(ObservedNic {
        id: NicId(info.nic_id),
        status,
        vpc_id: info.vpc_id,
        subnet_id: info.subnet_id,
        primary_ipv4: info
            .primary_ipv4
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_address(Provider::Zenlayer, A, s))
            .transpose()?,
        secondary_ipv4,
        ipv6,
        ipv6_cidr: info
            .ipv6_cidr
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_address(Provider::Zenlayer, A, s))
            .transpose()?,
        instance_id: info.instance_id.filter(|s| !s.is_empty()).map(InstanceId),
        addresses_in_flux: BTreeSet::new(),
        // NicInfo carries a region, not a zone.
        zone: None,
    })
}

/// The JSON body of a mutating operation: `(wire action, body)`.
pub(crate) fn operation_body(op: &Operation) -> Result<(&'static str, Value), CloudError> {
    let nic_id = &op.nic.id.0;
    let invalid =
        |action: &str, m: &str| CloudError::invalid_request(Provider::Zenlayer, action, m.into());
    let instance = |action: &str| {
        op.instance_id
            .as_ref()
            .filter(|i| !i.0.is_empty())
            .map(|i| i.0.clone())
            .ok_or_else(|| invalid(action, "attach and detach need an instance id"))
    };
    Ok(match op.action {
        Action::AssignIpv4 => {
            let addresses = op.ipv4_addresses();
            let body = if addresses.is_empty() {
                let count = op.count.filter(|c| *c >= 1).ok_or_else(|| {
                    invalid(
                        "BatchAssignNetworkInterfaceIpv4",
                        "an IPv4 assignment needs addresses or a count of at least 1",
                    )
                })?;
                json!({"nicId": nic_id, "ipAddressCount": count})
            } else {
                json!({"nicId": nic_id, "ipAddresses": addresses})
            };
            ("BatchAssignNetworkInterfaceIpv4", body)
        }
        Action::UnassignIpv4 => {
            let addresses = op.ipv4_addresses();
            if addresses.is_empty() {
                return Err(invalid(
                    "UnassignNetworkInterfaceIpv4",
                    "a release names the addresses it releases",
                ));
            }
            (
                "UnassignNetworkInterfaceIpv4",
                json!({"nicId": nic_id, "ipAddresses": addresses}),
            )
        }
        Action::AssignIpv6 => {
            let mut body = json!({"nicId": nic_id});
            if let Some(billing) = &op.ipv6_billing
                && let (Value::Object(map), Ok(Value::Object(extra))) =
                    (&mut body, serde_json::to_value(billing))
            {
                map.extend(extra);
            }
            ("AssignNetworkInterfaceIpv6", body)
        }
        Action::UnassignIpv6 => {
            // The call names only the NIC: the operation must name the one
            // address it releases, which `submit` checks is the NIC's.
            if op.ipv6_addresses().len() != 1 || op.addresses.len() != 1 {
                return Err(invalid(
                    "UnassignNetworkInterfaceIpv6",
                    "a Zenlayer IPv6 release names exactly the one IPv6 address the claim owns",
                ));
            }
            ("UnassignNetworkInterfaceIpv6", json!({"nicId": nic_id}))
        }
        Action::Attach => (
            "AttachNetworkInterface",
            json!({"nicId": nic_id, "instanceId": instance("AttachNetworkInterface")?}),
        ),
        Action::Detach => {
            instance("DetachNetworkInterface")?;
            ("DetachNetworkInterface", json!({"nicId": nic_id}))
        }
    })
}

#[async_trait::async_trait]
impl NicProvider for Zenlayer {
    fn provider(&self) -> Provider {
        Provider::Zenlayer
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            ipv6: true,
            max_ipv6_per_nic: 1,
            attach: true,
            max_addresses_per_call: MAX_ADDRESSES_PER_CALL,
            async_tasks: false,
        }
    }

    fn in_flight_window(&self) -> Duration {
        self.transport.in_flight_window()
    }

    async fn check_credentials(&self) -> Result<(), CloudError> {
        let _: (Value, _) = self
            .call(
                "DescribeNetworkInterfaceRegions",
                json!({}),
                Idempotence::Safe,
                None,
            )
            .await?;
        Ok(())
    }

    async fn describe_nics(&self, nics: &[NicRef]) -> Result<Vec<ObservedNic>, CloudError> {
        let ids: Vec<String> = nics.iter().map(|n| n.id.0.clone()).collect();
        self.describe_nic_ids(&ids, None).await
    }

    async fn describe_instance(
        &self,
        id: &InstanceId,
    ) -> Result<Option<ObservedInstance>, CloudError> {
        let (page, _): (Page<InstanceInfo>, _) = self
            .call(
                "DescribeInstances",
                json!({"instanceIds": [id.0], "pageSize": 1, "pageNum": 1}),
                Idempotence::Safe,
                None,
            )
            .await?;
        Ok(page
            .data_set
            .unwrap_or_default()
            .into_iter()
            .find(|i| i.instance_id == id.0)
            .map(|i| ObservedInstance {
                id: InstanceId(i.instance_id),
                status: InstanceStatus::from_cloud(i.status.as_deref().unwrap_or("")),
                zone: i.zone_id,
            }))
    }

    async fn describe_subnet(
        &self,
        nic: &ObservedNic,
    ) -> Result<Option<ObservedSubnet>, CloudError> {
        const A: &str = "DescribeSubnets";
        let Some(subnet_id) = nic.subnet_id.as_deref() else {
            return Ok(None);
        };
        let (page, _): (Page<SubnetInfo>, _) = self
            .call(
                A,
                json!({"subnetIds": [subnet_id], "pageSize": 1, "pageNum": 1}),
                Idempotence::Safe,
                None,
            )
            .await?;
        let Some(info) = page
            .data_set
            .unwrap_or_default()
            .into_iter()
            .find(|s| s.subnet_id == subnet_id)
        else {
            return Ok(None);
        };
        let field = |v: Option<String>| v.filter(|s| !s.is_empty());
        Ok(Some(ObservedSubnet {
            id: info.subnet_id,
            cidr: field(info.cidr_block)
                .map(|c| parse_address(Provider::Zenlayer, A, &c))
                .transpose()?,
            gateway: field(info.gateway_ip_address)
                .map(|g| parse_address(Provider::Zenlayer, A, &g))
                .transpose()?,
            zone: None,
        }))
    }

    async fn submit(&self, op: &Operation) -> Result<Submitted, CloudError> {
        let (action, body) = operation_body(op)?;
        let deadline = self
            .transport
            .send_deadline(Provider::Zenlayer, action, op.started_at)?;
        if matches!(op.action, Action::UnassignIpv6 | Action::Detach) {
            self.check_owned(op, deadline)
                .await
                .map_err(CloudError::before_sending)?;
        }
        // Mutations carry no token: never repeated when their outcome is open.
        match op.action {
            Action::AssignIpv4 => {
                let (result, request_id): (AssignResult, _) = self
                    .call(action, body, Idempotence::Unsafe, Some(deadline))
                    .await?;
                let addresses = result
                    .ip_addresses
                    .unwrap_or_default()
                    .iter()
                    .map(|s| {
                        parse_address::<Ipv4Addr>(Provider::Zenlayer, action, s).map(IpAddr::V4)
                    })
                    .collect::<Result<_, _>>()
                    .map_err(CloudError::after_acceptance)?;
                Ok(Submitted {
                    request_id,
                    addresses,
                    complete: true,
                })
            }
            Action::UnassignIpv4 => {
                let (_, request_id): (Empty, _) = self
                    .call(action, body, Idempotence::Unsafe, Some(deadline))
                    .await?;
                Ok(Submitted {
                    request_id,
                    addresses: op.addresses.iter().copied().collect(),
                    complete: true,
                })
            }
            Action::AssignIpv6 | Action::UnassignIpv6 | Action::Attach | Action::Detach => {
                let (_, request_id): (Empty, _) = self
                    .call(action, body, Idempotence::Unsafe, Some(deadline))
                    .await?;
                Ok(Submitted {
                    request_id,
                    addresses: BTreeSet::new(),
                    complete: false,
                })
            }
        }
    }

    async fn resolve_observed(
        &self,
        op: &Operation,
        nic: Option<&ObservedNic>,
    ) -> Result<Resolution, CloudError> {
        Ok(settle(
            Provider::Zenlayer,
            op,
            nic,
            None,
            jiff::Timestamp::now(),
            self.in_flight_window(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::TransportConfig;

    fn client(endpoint: &str) -> Zenlayer {
        let transport = Transport::new(TransportConfig::default()).unwrap();
        Zenlayer::new(
            transport,
            Credentials::new("AKIDTESTEXAMPLE0001", "TestSecretKeyExample/0001+abc"),
            Some(endpoint),
        )
        .unwrap()
    }

    fn header<'a>(req: &'a reqwest::Request, name: &str) -> &'a str {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[test]
    fn a_personal_access_token_replaces_the_signature() {
        let z = Zenlayer::new(
            Transport::new(TransportConfig::default()).unwrap(),
            Credentials::new("", "").with_token("pat-123\n"),
            Some(DEFAULT_ENDPOINT),
        )
        .unwrap();
        let req = z
            .build_request("DescribeNetworkInterfaces", b"{}", 1_700_000_000)
            .unwrap();
        assert_eq!(header(&req, "Authorization"), "Bearer pat-123");
        assert_eq!(header(&req, "X-ZC-Action"), "DescribeNetworkInterfaces");
        assert!(req.headers().get("X-ZC-Timestamp").is_none());
        assert!(req.headers().get("X-ZC-Signature-Method").is_none());
    }

    fn body_on(nic: &NicRef, op: &Operation) -> Result<(&'static str, Value), CloudError> {
        operation_body(&Operation {
            nic: nic.clone(),
            ..op.clone()
        })
    }

    #[test]
    fn request_builder_matches_tv4_and_tv5() {
        let z = client(DEFAULT_ENDPOINT);
        let op = Operation {
            addresses: vec!["10.0.0.3".parse().unwrap(), "10.0.0.4".parse().unwrap()],
            ..Operation::blank(Action::AssignIpv4)
        };
        let (action, body) = body_on(&NicRef::new("nic-abc123"), &op).unwrap();
        let bytes = serde_json::to_vec(&body).unwrap();
        assert_eq!(
            bytes,
            br#"{"ipAddresses":["10.0.0.3","10.0.0.4"],"nicId":"nic-abc123"}"#
        );
        // TV-4 pins the exact body bytes; sign those through the builder.
        let tv4 = br#"{"nicId":"nic-abc123","ipAddresses":["10.0.0.3","10.0.0.4"]}"#;
        let req = z.build_request(action, tv4, 1_700_000_000).unwrap();
        assert_eq!(action, "BatchAssignNetworkInterfaceIpv4");
        assert_eq!(req.method(), reqwest::Method::POST);
        assert_eq!(
            req.url().as_str(),
            "https://console.zenlayer.com/api/v2/zec"
        );
        assert_eq!(
            header(&req, "x-zc-action"),
            "BatchAssignNetworkInterfaceIpv4"
        );
        assert_eq!(header(&req, "x-zc-version"), "2025-09-01");
        assert_eq!(header(&req, "x-zc-timestamp"), "1700000000");
        assert_eq!(header(&req, "x-zc-signature-method"), "ZC2-HMAC-SHA256");
        assert_eq!(header(&req, "content-type"), "application/json");
        assert_eq!(
            header(&req, "authorization"),
            "ZC2-HMAC-SHA256 Credential=AKIDTESTEXAMPLE0001, SignedHeaders=content-type;host, \
             Signature=8f277a359e1a31c7538d63890fdd9a14aa3b26926df8a9345996f8b7d517aaa1"
        );
        let tv5 = br#"{"nicId":"nic-abc123","instanceId":"ins-xyz789"}"#;
        let req = z
            .build_request("AttachNetworkInterface", tv5, 1_700_000_000)
            .unwrap();
        assert!(
            header(&req, "authorization")
                .ends_with("f093e184912462831b3563db9f19a06b25d6bd426a5d44745ae4e7ecb8c73c7f")
        );
    }

    #[test]
    fn request_builder_matches_the_python_sdk_bodies_tv1_tv2() {
        let z = client(DEFAULT_ENDPOINT);
        let tv1 = br#"{"nicId": "nic-abc123", "ipAddresses": ["10.0.0.3", "10.0.0.4"]}"#;
        let req = z
            .build_request("BatchAssignNetworkInterfaceIpv4", tv1, 1_700_000_000)
            .unwrap();
        assert!(
            header(&req, "authorization")
                .ends_with("d84fca4c983a98deb913802d791813d1cc800f28f4b82b4e0e884d3b0adedf49")
        );
        let tv2 = br#"{"nicIds": ["nic-abc123"], "pageSize": 100, "pageNum": 1}"#;
        let req = z
            .build_request("DescribeNetworkInterfaces", tv2, 1_735_689_600)
            .unwrap();
        assert!(
            header(&req, "authorization")
                .ends_with("2b4242c5dcc1c7b9265182a900679d55e436a888ea003d89f966adf394f81de0")
        );
    }

    #[test]
    fn request_builder_signs_the_simulator_host_with_port_tv7() {
        let transport = Transport::new(TransportConfig::default()).unwrap();
        let z = Zenlayer::new(
            transport,
            Credentials::new("sim-key-id", "sim-key-secret\n"),
            Some("http://127.0.0.1:18080/api/v2/zec"),
        )
        .unwrap();
        let req = z
            .build_request("DescribeNetworkInterfaceRegions", b"{}", 1_767_225_600)
            .unwrap();
        assert!(
            header(&req, "authorization")
                .ends_with("ffccc2b7a431bc5312b5fd93df279803834fa6ea5ad99d3542c87fb656144b8e")
        );
    }

    #[test]
    fn operation_bodies() {
        let nic = NicRef::new("nic-1");
        let (a, b) = body_on(
            &nic,
            &Operation {
                count: Some(3),
                ..Operation::blank(Action::AssignIpv4)
            },
        )
        .unwrap();
        assert_eq!(
            (a, b),
            (
                "BatchAssignNetworkInterfaceIpv4",
                json!({"nicId": "nic-1", "ipAddressCount": 3})
            )
        );
        assert!(
            body_on(&nic, &Operation::blank(Action::AssignIpv4)).is_err(),
            "neither addresses nor count"
        );
        let billing = crate::cloud::Ipv6Billing {
            internet_charge_type: Some("BandwidthCluster".into()),
            bandwidth: Some(100),
            package_size: None,
            cluster_id: Some("bwc-1".into()),
        };
        let (a, b) = body_on(
            &nic,
            &Operation {
                ipv6_billing: Some(billing),
                ..Operation::blank(Action::AssignIpv6)
            },
        )
        .unwrap();
        assert_eq!(a, "AssignNetworkInterfaceIpv6");
        assert_eq!(
            b,
            json!({"nicId": "nic-1", "internetChargeType": "BandwidthCluster", "bandwidth": 100, "clusterId": "bwc-1"})
        );
        let (a, b) = body_on(
            &nic,
            &Operation {
                instance_id: Some(InstanceId("ins-9".into())),
                ..Operation::blank(Action::Attach)
            },
        )
        .unwrap();
        assert_eq!(
            (a, b),
            (
                "AttachNetworkInterface",
                json!({"nicId": "nic-1", "instanceId": "ins-9"})
            )
        );
        let detach = Operation {
            instance_id: Some(InstanceId("ins-9".into())),
            ..Operation::blank(Action::Detach)
        };
        let (a, b) = body_on(&nic, &detach).unwrap();
        assert_eq!(
            (a, b),
            ("DetachNetworkInterface", json!({"nicId": "nic-1"}))
        );
        // Attach or detach without an instance, an IPv6 release that does
        // not name the one address it releases: refused, never sent.
        for action in [Action::Attach, Action::Detach, Action::UnassignIpv6] {
            assert_eq!(
                body_on(&nic, &Operation::blank(action)).unwrap_err().code,
                "Client.InvalidRequest",
                "{action}"
            );
        }
    }

    #[test]
    fn responses_and_errors_are_parsed() {
        let ok = RawResponse::test(
            200,
            r#"{"requestId":"T1","response":{"requestId":"T1","ipAddresses":["10.0.0.3"]}}"#,
        );
        let (r, id): (AssignResult, _) = parse_response("A", ok).unwrap();
        assert_eq!(r.ip_addresses.unwrap(), vec!["10.0.0.3"]);
        assert_eq!(id.as_deref(), Some("T1"));

        let err = parse_response::<Empty>("A", RawResponse::test(409, r#"{"requestId":"T2","code":"INVALID_SUBNET_PRIVATE_IPV4_IN_USED","message":"used"}"#))
            .unwrap_err();
        assert_eq!(
            (
                err.code.as_str(),
                err.class,
                err.http_status,
                err.request_id.as_deref()
            ),
            (
                "INVALID_SUBNET_PRIVATE_IPV4_IN_USED",
                Conflict,
                Some(409),
                Some("T2")
            )
        );
        let err = parse_response::<Empty>(
            "A",
            RawResponse::test(429, r#"{"code":"REQUEST_LIMIT_EXCEEDED","message":"slow"}"#),
        )
        .unwrap_err();
        assert_eq!(err.class, Throttled);

        let mut challenge = RawResponse::test(403, "<html>Just a moment...</html>");
        challenge
            .headers
            .insert("cf-mitigated", "challenge".parse().unwrap());
        let err = parse_response::<Empty>("A", challenge).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.class),
            ("SECURITY_CHALLENGE", Creds)
        );
        let err = parse_response::<Empty>("A", RawResponse::test(451, "blocked")).unwrap_err();
        assert_eq!(err.code, "REQUEST_BLOCKED");
        let err = parse_response::<Empty>("A", RawResponse::test(502, "<html>Bad gateway</html>"))
            .unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.class),
            ("Client.HttpStatus", Transient)
        );
        let err =
            parse_response::<Empty>("A", RawResponse::test(200, r#"{"requestId":"T3","respo"#))
                .unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.class),
            ("Client.BadResponse", Transient)
        );
        let err = parse_response::<Empty>(
            "A",
            RawResponse::test(401, r#"{"code":"SOMETHING_NEW","message":"auth"}"#),
        )
        .unwrap_err();
        assert_eq!(err.class, Creds);
    }

    #[test]
    fn nic_info_is_normalised_and_bad_addresses_are_errors() {
        let info: NicInfo = serde_json::from_value(json!({
            "nicId": "nic-1", "status": "USED", "primaryIpv4": "10.0.0.2",
            "secondaryIpv4s": ["10.0.0.9", "10.0.0.3"], "primaryIpv6": "2001:db8::5",
            "ipv6Cidr": "2001:db8::/96", "instanceId": "ins-1", "unknownField": 1
        }))
        .unwrap();
        let nic = observe_nic(info).unwrap();
        assert_eq!(nic.status, NicStatus::InUse);
        assert_eq!(nic.secondary_ipv4.len(), 2);
        assert_eq!(nic.ipv6.len(), 1);
        assert_eq!(nic.instance_id, Some(InstanceId("ins-1".into())));
        let info: NicInfo =
            serde_json::from_value(json!({"nicId": "n", "secondaryIpv4s": ["10.0.0.300"]}))
                .unwrap();
        assert_eq!(observe_nic(info).unwrap_err().code, "Client.BadResponse");
    }

    /// "Action fields may be null or absent" (Zenlayer's API reference, "Response"): the SDK
    /// models read a null `dataSet` as no items and keep the code of an error
    /// whose message is null, and so must we.
    #[test]
    fn null_fields_read_as_the_sdks_read_them() {
        for body in [
            r#"{"requestId":"T4","response":{"requestId":"T4","totalCount":0,"dataSet":null}}"#,
            r#"{"requestId":"T5","response":{"requestId":"T5","totalCount":null}}"#,
        ] {
            let (page, _): (Page<NicInfo>, _) =
                parse_response("DescribeNetworkInterfaces", RawResponse::test(200, body)).unwrap();
            assert!(page.data_set.is_none(), "{body}");
        }
        let err = parse_response::<Empty>(
            "A",
            RawResponse::test(
                404,
                r#"{"requestId":"T6","code":"INVALID_NIC_NOT_FOUND","message":null}"#,
            ),
        )
        .unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.message.as_str()),
            ("INVALID_NIC_NOT_FOUND", "")
        );
    }
}
