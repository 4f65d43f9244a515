//! Tencent Cloud VPC API 3.0 (Tencent Cloud API documentation, VPC and CVM):
//! `POST /` with `X-TC-*` headers, version `2017-03-12`, `TC3-HMAC-SHA256`.
//! Business errors arrive as HTTP 200 with `Response.Error`.
//!
//! Every mutating call that accepts one carries a `ClientToken` derived from
//! the claim and its operation sequence (see
//! [`crate::cloud::IdempotencyKey`]); one operation is one call of at most 10
//! addresses (the controller plans larger changes as several). All mutations
//! are asynchronous: `submit` returns the call's `RequestId`, and resolving
//! confirms it from the NIC's per-address states and, when those cannot
//! decide, `DescribeVpcTaskResult`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use tokio::time::Instant;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::{CodeInfo, class_of_status, lookup, parse_address, row};
use super::operation::{in_flux_state, resolve_with_task, task_failed};
use super::transport::{Idempotence, RawResponse, unexpected_body};
use super::{
    Action, Capabilities, CloudError, Credentials, Endpoint, ErrorClass, InstanceId,
    InstanceStatus, NicId, NicProvider, NicStatus, ObservedInstance, ObservedNic, ObservedSubnet,
    Operation, Provider, RateLimits, Resolution, Submitted, TaskState, Transport, collect_pages,
};

pub const DEFAULT_ENDPOINT: &str = "https://vpc.tencentcloudapi.com/";
/// CVM `DescribeInstances` lives on its own host and service (§8.10).
pub const DEFAULT_CVM_ENDPOINT: &str = "https://cvm.tencentcloudapi.com/";
pub const API_VERSION: &str = "2017-03-12";
const CONTENT_TYPE: &str = "application/json";
/// At most 10 addresses per Assign/Unassign call (IPv4 and IPv6).
pub const MAX_ADDRESSES_PER_CALL: usize = 10;
const MAX_IDS: usize = 100;
const PAGE_SIZE: usize = 100;

/// The documented per-action limits (requests per second, §11).
pub fn default_rate_limits() -> RateLimits {
    RateLimits::new(
        100.0,
        &[
            ("DescribeVpcTaskResult", 20.0),
            ("DescribeNetworkInterfaceLimit", 20.0),
            ("AssignIpv6Addresses", 20.0),
            ("UnassignIpv6Addresses", 20.0),
            ("DescribeInstances", 40.0),
        ],
    )
}

use ErrorClass::{
    Configuration, Conflict, Credentials as Creds, InvalidInput, NotFound, Terminal, Throttled,
    Transient,
};

/// Every code of the vendor's VPC API pages (common and per-action error codes).
/// Lookup is exact first, then by the family before the first `.`.
pub const ERROR_CODES: &[CodeInfo] = &[
    row(
        "ActionOffline",
        Terminal,
        "The API was retired.",
        "Upgrade nicip.",
    ),
    row(
        "AuthFailure",
        Creds,
        "Authentication failed.",
        "Check the credentials Secret.",
    ),
    row(
        "AuthFailure.InvalidAuthorization",
        Creds,
        "The Authorization header is malformed.",
        "Report a bug; check proxies rewriting headers.",
    ),
    row(
        "AuthFailure.InvalidSecretId",
        Creds,
        "The key is not a cloud API key.",
        "Use a CAM API key.",
    ),
    row(
        "AuthFailure.MFAFailure",
        Creds,
        "MFA failed.",
        "Use a key without MFA requirement for API calls.",
    ),
    row(
        "AuthFailure.SecretIdNotFound",
        Creds,
        "The key does not exist or is disabled (often stray whitespace).",
        "Check the SecretId in the Secret.",
    ),
    row(
        "AuthFailure.SignatureExpire",
        Creds,
        "The request timestamp is more than 5 minutes off.",
        "Fix the node's clock (NTP).",
    ),
    row(
        "AuthFailure.SignatureFailure",
        Creds,
        "The signature does not match (wrong SecretKey).",
        "Check the SecretKey in the Secret.",
    ),
    row(
        "AuthFailure.TokenFailure",
        Creds,
        "The temporary token is invalid or expired.",
        "Refresh the temporary credentials.",
    ),
    row(
        "AuthFailure.UnauthorizedOperation",
        Creds,
        "CAM denies this action.",
        "Grant the VPC ENI actions to the key's user or role.",
    ),
    row(
        "DryRunOperation",
        Terminal,
        "A dry run would have succeeded (not used by nicip).",
        "None.",
    ),
    row(
        "FailedOperation",
        Transient,
        "The operation failed.",
        "Retried with backoff.",
    ),
    row(
        "FailedOperation.NetDetectTimeOut",
        Transient,
        "Network probe timed out; retry later.",
        "Retried with backoff.",
    ),
    row(
        "InternalError",
        Transient,
        "Internal error.",
        "Retried with backoff.",
    ),
    row(
        "InternalError.ModuleError",
        Transient,
        "Internal module error.",
        "Retried with backoff.",
    ),
    row(
        "InternalServerError",
        Transient,
        "Internal server error.",
        "Retried with backoff.",
    ),
    row(
        "InvalidAction",
        Configuration,
        "Unknown action (wrong endpoint or version).",
        "Check the ProviderConfig endpoint.",
    ),
    row(
        "InvalidParameter",
        InvalidInput,
        "A parameter is wrong.",
        "Fix the claim as the message says.",
    ),
    row(
        "InvalidParameter.Coexist",
        InvalidInput,
        "Mutually exclusive parameters were given together.",
        "Report a bug.",
    ),
    row(
        "InvalidParameter.FilterInvalidKey",
        InvalidInput,
        "Unknown filter key.",
        "Report a bug.",
    ),
    row(
        "InvalidParameter.FilterNotDict",
        InvalidInput,
        "Malformed filter.",
        "Report a bug.",
    ),
    row(
        "InvalidParameter.FilterValuesNotList",
        InvalidInput,
        "Malformed filter values.",
        "Report a bug.",
    ),
    row(
        "InvalidParameterValue",
        InvalidInput,
        "A parameter value is wrong.",
        "Fix the claim as the message says.",
    ),
    row(
        "InvalidParameterValue.DuplicatePara",
        InvalidInput,
        "The same value was given twice.",
        "Remove duplicates from the claim.",
    ),
    row(
        "InvalidParameterValue.Duplicate",
        InvalidInput,
        "Duplicate value.",
        "Remove duplicates from the claim.",
    ),
    row(
        "InvalidParameterValue.Empty",
        InvalidInput,
        "Empty value.",
        "Fill in the field.",
    ),
    row(
        "InvalidParameterValue.LimitExceeded",
        Terminal,
        "Too many addresses for one call or for the ENI.",
        "Lower the claim's count or use another ENI.",
    ),
    row(
        "InvalidParameterValue.Malformed",
        InvalidInput,
        "Malformed address or id.",
        "Fix the address or nicId.",
    ),
    row(
        "InvalidParameterValue.NotUtf8EncodingError",
        InvalidInput,
        "Value is not UTF-8.",
        "Fix the value.",
    ),
    row(
        "InvalidParameterValue.Range",
        InvalidInput,
        "The address is outside the ENI's subnet.",
        "Use an address inside the subnet CIDR.",
    ),
    row(
        "InvalidParameterValue.Reserved",
        InvalidInput,
        "The address is reserved by the subnet (network, gateway, broadcast).",
        "Use another address.",
    ),
    row(
        "InvalidParameterValue.TooLong",
        InvalidInput,
        "Value too long.",
        "Shorten the value.",
    ),
    row(
        "InvalidRequest",
        InvalidInput,
        "Malformed request body.",
        "Report a bug.",
    ),
    row(
        "InvalidInstanceId.NotFound",
        NotFound,
        "The instance does not exist.",
        "Check attachment.instanceId.",
    ),
    row(
        "IpInBlacklist",
        Creds,
        "The caller's IP is blacklisted.",
        "Check the account's API IP policy.",
    ),
    row(
        "IpNotInWhitelist",
        Creds,
        "The caller's IP is not whitelisted.",
        "Allow the controller's egress IP.",
    ),
    row(
        "LimitExceeded",
        Terminal,
        "A quota is reached.",
        "Lower the claim's count, or raise the quota.",
    ),
    row(
        "LimitExceeded.ActionLimited",
        Throttled,
        "Per-action call frequency exceeded.",
        "Nothing: the client slows this action down and retries.",
    ),
    row(
        "LimitExceeded.Address",
        Terminal,
        "Too many IPv6 addresses.",
        "Lower ipv6.count.",
    ),
    row(
        "LimitExceeded.EniPrivateIpLimit",
        Terminal,
        "The ENI's private IP quota is reached.",
        "Lower the claim's count or use another ENI.",
    ),
    row(
        "LimitExceeded.NetworkInterfaceLimitExceeded",
        Terminal,
        "Too many ENIs in the VPC.",
        "Raise the quota.",
    ),
    row(
        "MissingParameter",
        InvalidInput,
        "A required parameter is missing.",
        "Report a bug.",
    ),
    row(
        "NoSuchProduct",
        Configuration,
        "Unknown product.",
        "Check the endpoint.",
    ),
    row(
        "NoSuchVersion",
        Configuration,
        "Unknown API version.",
        "Check the endpoint.",
    ),
    row(
        "RequestLimitExceeded",
        Throttled,
        "Rate limit exceeded.",
        "Nothing: the client slows down and retries.",
    ),
    row(
        "RequestLimitExceeded.GlobalRegionUinLimitExceeded",
        Throttled,
        "Account rate limit across regions.",
        "Nothing: the client slows down; lower reconcile concurrency if frequent.",
    ),
    row(
        "RequestLimitExceeded.IPLimitExceeded",
        Throttled,
        "Per-IP rate limit.",
        "Nothing: the client slows down.",
    ),
    row(
        "RequestLimitExceeded.UinLimitExceeded",
        Throttled,
        "Root-account rate limit.",
        "Nothing: the client slows down.",
    ),
    row(
        "RequestSizeLimitExceeded",
        InvalidInput,
        "Request too large.",
        "Report a bug.",
    ),
    row(
        "ResponseSizeLimitExceeded",
        Transient,
        "Response too large.",
        "Report a bug; pages are 100 items.",
    ),
    row(
        "ResourceInUse",
        Conflict,
        "The address or resource is taken.",
        "Pick another address or free it where it is used.",
    ),
    row(
        "ResourceInUse.Address",
        Conflict,
        "The IPv6 address is taken.",
        "Free it where it is used.",
    ),
    row(
        "ResourceInsufficient",
        Terminal,
        "Not enough resources.",
        "Free addresses or use a larger subnet.",
    ),
    row(
        "ResourceInsufficient.Subnet",
        Terminal,
        "The subnet has no free IPs.",
        "Free addresses or use a larger subnet.",
    ),
    row(
        "ResourceNotFound",
        NotFound,
        "The ENI, instance or task does not exist.",
        "Check the ids; on release this counts as done.",
    ),
    row(
        "ResourceUnavailable",
        Transient,
        "Resource temporarily unavailable.",
        "Retried with backoff.",
    ),
    row(
        "ServiceUnavailable",
        Transient,
        "Service temporarily unavailable.",
        "Retried with backoff.",
    ),
    row(
        "UnauthorizedOperation",
        Creds,
        "Not authorised.",
        "Grant the key the VPC ENI permissions.",
    ),
    row(
        "UnauthorizedOperation.AttachmentNotFound",
        NotFound,
        "The binding does not exist.",
        "Nothing on release: counts as done.",
    ),
    row(
        "UnauthorizedOperation.PrimaryIp",
        InvalidInput,
        "Not allowed on a primary IP.",
        "Remove the primary IP from the claim.",
    ),
    row(
        "UnknownParameter",
        InvalidInput,
        "An undefined parameter was sent.",
        "Report a bug.",
    ),
    row(
        "UnsupportedOperation",
        Terminal,
        "Unsupported operation.",
        "Read the message; fix the NIC or claim.",
    ),
    row(
        "UnsupportedOperation.AppIdMismatch",
        InvalidInput,
        "Resource belongs to another account.",
        "Use the right account.",
    ),
    row(
        "UnsupportedOperation.AttachmentAlreadyExists",
        Conflict,
        "The ENI is already attached.",
        "Done if attached to the wanted instance; otherwise detach it elsewhere.",
    ),
    row(
        "UnsupportedOperation.AttachmentNotFound",
        NotFound,
        "The address is not on the ENI / the ENI is not attached.",
        "Nothing on release: counts as done.",
    ),
    row(
        "UnsupportedOperation.EniServiceManaged",
        Terminal,
        "The ENI is managed by another service.",
        "Use an ENI you manage.",
    ),
    row(
        "UnsupportedOperation.IdempotentParameterMismatch",
        Terminal,
        "The ClientToken was used with other parameters.",
        "Report a bug (tokens are derived per claim operation sequence and chunk; a retry with other parameters takes a new sequence number).",
    ),
    row(
        "UnsupportedOperation.IdempotentProcessing",
        Transient,
        "The request with this ClientToken is still running.",
        "Retried with the same token.",
    ),
    row(
        "UnsupportedOperation.InstanceAssociateHavip",
        Conflict,
        "The instance is bound to a HAVIP.",
        "Unbind the HAVIP first.",
    ),
    row(
        "UnsupportedOperation.InvalidState",
        Transient,
        "The resource is in a transitional state.",
        "Retried after it settles.",
    ),
    row(
        "UnsupportedOperation.MutexOperationTaskRunning",
        Transient,
        "Another task on this ENI is running.",
        "Retried after the task finishes.",
    ),
    row(
        "UnsupportedOperation.PrimaryIp",
        InvalidInput,
        "Not allowed on a primary IP.",
        "Remove the primary IP from the claim.",
    ),
    row(
        "UnsupportedOperation.ResourceIsInvalidState",
        Transient,
        "The resource is in a transitional state.",
        "Retried after it settles.",
    ),
    row(
        "UnsupportedOperation.ResourceMismatch",
        InvalidInput,
        "The resource id does not match the IP's binding.",
        "Check nicId and the addresses.",
    ),
    row(
        "UnsupportedOperation.UnassignCidrBlock",
        Terminal,
        "The subnet has no IPv6 CIDR.",
        "Add an IPv6 CIDR to the subnet.",
    ),
    row(
        "UnsupportedOperation.UnsupportedInstanceFamily",
        Terminal,
        "The instance family cannot take this ENI.",
        "Use another instance type.",
    ),
    row(
        "UnsupportedOperation.VpcMismatch",
        InvalidInput,
        "Instance and ENI are in different VPCs.",
        "Attach to an instance in the ENI's VPC.",
    ),
    row(
        "UnsupportedOperation.ZoneMismatch",
        InvalidInput,
        "Instance and ENI are in different zones.",
        "Attach to an instance in the ENI's zone.",
    ),
    row(
        "UnsupportedProtocol",
        Terminal,
        "Only GET/POST over HTTP(S).",
        "Report a bug.",
    ),
    row(
        "UnsupportedRegion",
        Configuration,
        "The region is not supported.",
        "Fix the ProviderConfig region.",
    ),
];

/// The class of a Tencent API 3.0 error code.
pub fn classify(code: &str) -> ErrorClass {
    lookup(ERROR_CODES, code).unwrap_or(Terminal)
}

/// Tencent's documented IPv6 addresses per ENI.
const MAX_IPV6_PER_NIC: u32 = 10;

/// Quotas from `DescribeNetworkInterfaceLimit`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NicLimits {
    #[serde(default)]
    pub eni_quantity: Option<i64>,
    #[serde(default)]
    pub eni_private_ip_address_quantity: Option<i64>,
    #[serde(default)]
    pub extend_eni_quantity: Option<i64>,
    #[serde(default)]
    pub extend_eni_private_ip_address_quantity: Option<i64>,
}

/// A client for one Tencent Cloud account in one region.
#[derive(Debug, Clone)]
pub struct Tencent {
    transport: Transport,
    vpc: Endpoint,
    cvm: Endpoint,
    region: String,
    credentials: Credentials,
    page_size: usize,
}

/// Which service an action belongs to (it selects host and credential scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Vpc,
    Cvm,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct AddressSpec {
    private_ip_address: Option<String>,
    primary: Option<bool>,
    state: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Ipv6Spec {
    address: Option<String>,
    state: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Attachment {
    instance_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkInterface {
    network_interface_id: String,
    subnet_id: Option<String>,
    vpc_id: Option<String>,
    state: Option<String>,
    network_interface_state: Option<String>,
    private_ip_address_set: Option<Vec<AddressSpec>>,
    ipv6_address_set: Option<Vec<Ipv6Spec>>,
    attachment: Option<Attachment>,
    zone: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Subnet {
    subnet_id: String,
    cidr_block: Option<String>,
    zone: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct SubnetPage {
    subnet_set: Option<Vec<Subnet>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct NicPage {
    network_interface_set: Option<Vec<NetworkInterface>>,
    total_count: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Placement {
    zone: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Instance {
    instance_id: String,
    instance_state: Option<String>,
    placement: Option<Placement>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct InstancePage {
    instance_set: Option<Vec<Instance>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct AssignResult {
    private_ip_address_set: Option<Vec<AddressSpec>>,
    ipv6_address_set: Option<Vec<Ipv6Spec>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct TaskResult {
    status: Option<String>,
    output: Option<String>,
}

impl Tencent {
    /// `endpoint` overrides both the VPC and the CVM endpoint (the simulated
    /// cloud serves both services on one listener and tells them apart by the
    /// TC3 credential scope); [`Tencent::with_cvm_endpoint`] sets CVM's apart.
    pub fn new(
        transport: Transport,
        credentials: Credentials,
        region: impl Into<String>,
        endpoint: Option<&str>,
    ) -> Result<Self, CloudError> {
        let vpc = Endpoint::parse(Provider::Tencent, endpoint.unwrap_or(DEFAULT_ENDPOINT))?;
        let cvm = Endpoint::parse(Provider::Tencent, endpoint.unwrap_or(DEFAULT_CVM_ENDPOINT))?;
        transport.register_limits(Provider::Tencent, default_rate_limits());
        Ok(Tencent {
            transport,
            vpc,
            cvm,
            region: region.into(),
            credentials,
            page_size: PAGE_SIZE,
        })
    }

    /// Overrides the CVM endpoint alone (`None` keeps the current one).
    pub fn with_cvm_endpoint(mut self, endpoint: Option<&str>) -> Result<Self, CloudError> {
        if let Some(endpoint) = endpoint {
            self.cvm = Endpoint::parse(Provider::Tencent, endpoint)?;
        }
        Ok(self)
    }

    /// Items per Describe page (default {PAGE_SIZE}, at most 100): smaller pages
    /// trade calls for smaller answers.
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.clamp(1, 100);
        self
    }

    /// Builds and signs one request at `timestamp` (Unix seconds).
    pub(crate) fn build_request(
        &self,
        service: Service,
        action: &str,
        body: &[u8],
        timestamp: i64,
    ) -> Result<reqwest::Request, CloudError> {
        let (endpoint, service_name) = match service {
            Service::Vpc => (&self.vpc, "vpc"),
            Service::Cvm => (&self.cvm, "cvm"),
        };
        let invalid = |m: String| CloudError::invalid_request(Provider::Tencent, action, m);
        let host = endpoint.host_header();
        let payload_hash = crate::signing::sha256_hex(body);
        let headers = [("content-type", CONTENT_TYPE), ("host", host.as_str())];
        let signed = crate::signing::tc3::Request {
            method: "POST",
            canonical_query: "",
            headers: &headers,
            payload_hash: &payload_hash,
            service: service_name,
            timestamp,
        };
        let authorization =
            crate::signing::tc3::signature(self.credentials.secret.expose(), &signed)
                .and_then(|sig| {
                    crate::signing::tc3::authorization(&self.credentials.key_id, &signed, &sig)
                })
                .ok_or_else(|| invalid(format!("timestamp {timestamp} is out of range")))?;
        let mut builder = self
            .transport
            .http()
            .post(endpoint.url().clone())
            .header("Content-Type", CONTENT_TYPE)
            .header("X-TC-Action", action)
            .header("X-TC-Version", API_VERSION)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Region", &self.region)
            .header("X-TC-Language", "en-US")
            .header(
                "X-TC-RequestClient",
                concat!("nicip/", env!("CARGO_PKG_VERSION")),
            )
            .header("Authorization", authorization);
        if let Some(token) = &self.credentials.token {
            builder = builder.header("X-TC-Token", token.expose());
        }
        builder
            .body(body.to_vec())
            .build()
            .map_err(|e| invalid(e.to_string()))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        service: Service,
        action: &str,
        params: Value,
        idempotence: Idempotence,
        deadline: Option<Instant>,
    ) -> Result<(T, Option<String>), CloudError> {
        let body = params.to_string().into_bytes();
        self.transport
            .call(
                Provider::Tencent,
                &self.credentials.key_id,
                action,
                idempotence,
                deadline,
                || self.build_request(service, action, &body, jiff::Timestamp::now().as_second()),
                |raw| parse_response(action, raw),
            )
            .await
    }

    /// The ENI and IP quotas of an instance (or of the instance an ENI id
    /// belongs to): the authoritative source for "how many addresses fit".
    pub async fn describe_limits(&self, instance_or_nic_id: &str) -> Result<NicLimits, CloudError> {
        let (limits, _) = self
            .call(
                Service::Vpc,
                "DescribeNetworkInterfaceLimit",
                json!({"InstanceId": instance_or_nic_id}),
                Idempotence::Safe,
                None,
            )
            .await?;
        Ok(limits)
    }

    /// `DescribeVpcTaskResult` for an async call's `RequestId`:
    /// `SUCCESS`, `FAILED` or `RUNNING`, plus the task's output text.
    pub async fn task_status(
        &self,
        request_id: &str,
    ) -> Result<(String, Option<String>), CloudError> {
        let (task, _): (TaskResult, _) = self
            .call(
                Service::Vpc,
                "DescribeVpcTaskResult",
                json!({"TaskId": request_id}),
                Idempotence::Safe,
                None,
            )
            .await?;
        Ok((task.status.unwrap_or_default(), task.output))
    }

    /// The task's state; a failed task is classified by the error code its
    /// output starts with (`Code: message`).
    async fn task_state(&self, action: Action, request_id: &str) -> Result<TaskState, CloudError> {
        Ok(match self.task_status(request_id).await? {
            (status, _) if status == "RUNNING" => TaskState::Running,
            (status, output) if status == "FAILED" => {
                let output = output.unwrap_or_default();
                let code = output.split([':', ' ']).next();
                TaskState::Failed(task_failed(
                    Provider::Tencent,
                    action.as_str(),
                    request_id,
                    code,
                    |c| lookup(ERROR_CODES, c),
                    &output,
                ))
            }
            _ => TaskState::Succeeded,
        })
    }

    /// One batch through the documented `NetworkInterfaceIds` (at most 100).
    /// An unknown id may fail the whole batch with `ResourceNotFound`: the
    /// batch is then split in halves until the unknown ids stand alone.
    async fn describe_batch(&self, ids: &[String]) -> Result<Vec<ObservedNic>, CloudError> {
        let result = collect_pages(
            Provider::Tencent,
            "DescribeNetworkInterfaces",
            |kept: &[ObservedNic]| kept.len() >= ids.len(),
            |_, offset| async move {
                let (page, _): (NicPage, _) = self
                    .call(
                        Service::Vpc,
                        "DescribeNetworkInterfaces",
                        json!({
                            "NetworkInterfaceIds": ids,
                            "Offset": offset,
                            "Limit": self.page_size,
                        }),
                        Idempotence::Safe,
                        None,
                    )
                    .await?;
                let set = page.network_interface_set.unwrap_or_default();
                let count = set.len();
                let nics = set
                    .into_iter()
                    .map(observe_nic)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((nics, count, page.total_count))
            },
        )
        .await;
        match result {
            Err(e) if e.code == "ResourceNotFound" && ids.len() == 1 => Ok(Vec::new()),
            Err(e) if e.code == "ResourceNotFound" => {
                let (a, b) = ids.split_at(ids.len() / 2);
                let mut out = Box::pin(self.describe_batch(a)).await?;
                out.extend(Box::pin(self.describe_batch(b)).await?);
                Ok(out)
            }
            other => other,
        }
    }

    async fn describe_nic_ids(&self, ids: &[String]) -> Result<Vec<ObservedNic>, CloudError> {
        super::describe_chunks(ids, MAX_IDS, |chunk| self.describe_batch(chunk)).await
    }
}

/// The parts of a `Response` that say whether it is an answer: read first,
/// skipping everything else without building it.
#[derive(Deserialize)]
struct Envelope<R> {
    #[serde(rename = "Response")]
    response: Option<R>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "RequestId")]
    request_id: Option<String>,
    #[serde(rename = "Error", default)]
    error: Present,
}

/// Whether a field is there at all, `null` included.
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

fn parse_response<T: DeserializeOwned>(
    action: &str,
    raw: RawResponse,
) -> Result<(T, Option<String>), CloudError> {
    // An ordinary answer is read straight into `T`: a describe of 100 NICs
    // as a `Value` tree first cost tens of thousands of allocations, most of
    // a sweep's CPU at fleet scale. Anything unusual takes the careful path.
    if raw.status == 200
        && let Ok(Envelope {
            response:
                Some(Meta {
                    request_id,
                    error: Present(false),
                }),
        }) = serde_json::from_slice::<Envelope<Meta>>(&raw.body)
        && let Ok(Envelope {
            response: Some(value),
        }) = serde_json::from_slice::<Envelope<T>>(&raw.body)
    {
        return Ok((value, super::error::request_id(request_id)));
    }
    parse_response_slowly(action, raw)
}

/// [`parse_response`] through a `Value`, naming what is wrong with the body.
fn parse_response_slowly<T: DeserializeOwned>(
    action: &str,
    raw: RawResponse,
) -> Result<(T, Option<String>), CloudError> {
    let RawResponse { status, body, .. } = raw;
    let envelope: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return Err(unexpected_body(
                Provider::Tencent,
                action,
                status,
                &body,
                &format!("not JSON ({e})"),
            ));
        }
    };
    let Some(response) = envelope.get("Response") else {
        return Err(unexpected_body(
            Provider::Tencent,
            action,
            status,
            &body,
            "no `Response` object",
        ));
    };
    let request_id = response
        .get("RequestId")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(error) = response.get("Error") {
        let code = error
            .get("Code")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if code.is_empty() {
            return Err(unexpected_body(
                Provider::Tencent,
                action,
                status,
                &body,
                "`Response.Error` without a code",
            ));
        }
        return Err(CloudError::answered(
            Provider::Tencent,
            action,
            code.clone(),
            error
                .get("Message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            Some(status),
            request_id,
            classify(&code),
        ));
    }
    if status != 200 {
        let mut err = unexpected_body(
            Provider::Tencent,
            action,
            status,
            &body,
            "unexpected HTTP status",
        );
        err.class = class_of_status(status);
        return Err(err);
    }
    let value = T::deserialize(response).map_err(|e| {
        unexpected_body(
            Provider::Tencent,
            action,
            status,
            &body,
            &format!("unexpected fields ({e})"),
        )
    })?;
    Ok((value, super::error::request_id(request_id)))
}

fn observe_nic(nic: NetworkInterface) -> Result<ObservedNic, CloudError> {
    const A: &str = "DescribeNetworkInterfaces";
    let instance_id = nic
        .attachment
        .and_then(|a| a.instance_id)
        .filter(|s| !s.is_empty())
        .map(InstanceId);
    let status = match nic.state.as_deref().unwrap_or("") {
        "ATTACHING" => NicStatus::Attaching,
        "DETACHING" => NicStatus::Detaching,
        s @ ("PENDING" | "DELETING") => NicStatus::Busy(s.to_string()),
        "AVAILABLE"
            if instance_id.is_some() || nic.network_interface_state.as_deref() == Some("INUSE") =>
        {
            NicStatus::InUse
        }
        "AVAILABLE" => NicStatus::Available,
        other => NicStatus::Other(other.to_string()),
    };
    let mut primary_ipv4 = None;
    let mut secondary_ipv4 = BTreeSet::new();
    let mut addresses_in_flux = BTreeSet::new();
    for spec in nic.private_ip_address_set.unwrap_or_default() {
        let Some(raw) = spec.private_ip_address.as_deref() else {
            continue;
        };
        let ip: Ipv4Addr = parse_address(Provider::Tencent, A, raw)?;
        if spec.primary == Some(true) {
            primary_ipv4 = Some(ip);
        } else {
            secondary_ipv4.insert(ip);
            if in_flux_state(spec.state.as_deref()) {
                addresses_in_flux.insert(IpAddr::V4(ip));
            }
        }
    }
    let mut ipv6 = BTreeSet::new();
    for spec in nic.ipv6_address_set.unwrap_or_default() {
        let Some(raw) = spec.address.as_deref() else {
            continue;
        };
        let ip: Ipv6Addr = parse_address(Provider::Tencent, A, raw)?;
        ipv6.insert(ip);
        if in_flux_state(spec.state.as_deref()) {
            addresses_in_flux.insert(IpAddr::V6(ip));
        }
    }
    Ok(ObservedNic {
        id: NicId(nic.network_interface_id),
        status,
        vpc_id: nic.vpc_id,
        subnet_id: nic.subnet_id,
        primary_ipv4,
        secondary_ipv4,
        ipv6,
        ipv6_cidr: None,
        instance_id,
        addresses_in_flux,
        zone: nic.zone.filter(|z| !z.is_empty()),
    })
}

/// The one call an operation is: `(wire action, body, idempotence)`.
pub(crate) fn operation_call(
    op: &Operation,
) -> Result<(&'static str, Value, Idempotence), CloudError> {
    let id = &op.nic.id.0;
    let with_token = |mut body: Value| {
        if let (Some(t), Value::Object(map)) = (&op.token, &mut body) {
            map.insert("ClientToken".into(), Value::String(t.clone()));
        }
        body
    };
    let invalid = |action: &str, m: &str| {
        CloudError::invalid_request(Provider::Tencent, action, m.to_string())
    };
    let list = |field: &str, item: &str, addresses: Vec<String>| {
        let items: Vec<Value> = addresses.iter().map(|a| json!({ item: a })).collect();
        json!({"NetworkInterfaceId": id, field: items})
    };
    let v4: Vec<String> = op.ipv4_addresses().iter().map(|a| a.to_string()).collect();
    let v6: Vec<String> = op.ipv6_addresses().iter().map(|a| a.to_string()).collect();
    if op.addresses.len() > MAX_ADDRESSES_PER_CALL
        || op
            .count
            .is_some_and(|c| c as usize > MAX_ADDRESSES_PER_CALL)
    {
        return Err(invalid(
            op.action.as_str(),
            "more than 10 addresses in one call: split the change into operations of at most 10",
        ));
    }
    Ok(match op.action {
        Action::AssignIpv4 if v4.is_empty() => {
            let count = op.count.filter(|c| *c >= 1).ok_or_else(|| {
                invalid(
                    "AssignPrivateIpAddresses",
                    "an IPv4 assignment needs addresses or a count of at least 1",
                )
            })?;
            let mut body =
                json!({"NetworkInterfaceId": id, "SecondaryPrivateIpAddressCount": count});
            if let (Some(q), Value::Object(map)) = (op.qos_level, &mut body) {
                map.insert("QosLevel".into(), json!(q));
            }
            (
                "AssignPrivateIpAddresses",
                with_token(body),
                Idempotence::Safe,
            )
        }
        Action::AssignIpv4 => {
            let mut body = list("PrivateIpAddresses", "PrivateIpAddress", v4);
            if let (Some(q), Some(items)) =
                (op.qos_level, body["PrivateIpAddresses"].as_array_mut())
            {
                for item in items {
                    item["QosLevel"] = json!(q);
                }
            }
            (
                "AssignPrivateIpAddresses",
                with_token(body),
                Idempotence::Safe,
            )
        }
        Action::UnassignIpv4 if v4.is_empty() => {
            return Err(invalid(
                "UnassignPrivateIpAddresses",
                "a release names the addresses it releases",
            ));
        }
        Action::UnassignIpv4 => (
            "UnassignPrivateIpAddresses",
            list("PrivateIpAddresses", "PrivateIpAddress", v4),
            Idempotence::Unsafe,
        ),
        Action::AssignIpv6 => {
            let count = op
                .count
                .filter(|c| *c >= 1)
                .ok_or_else(|| invalid("AssignIpv6Addresses", "IPv6 count must be at least 1"))?;
            let body = json!({"NetworkInterfaceId": id, "Ipv6AddressCount": count});
            ("AssignIpv6Addresses", with_token(body), Idempotence::Safe)
        }
        Action::UnassignIpv6 if v6.is_empty() => {
            return Err(invalid(
                "UnassignIpv6Addresses",
                "a release names the addresses it releases",
            ));
        }
        Action::UnassignIpv6 => (
            "UnassignIpv6Addresses",
            list("Ipv6Addresses", "Address", v6),
            Idempotence::Unsafe,
        ),
        Action::Attach | Action::Detach => {
            let action = if op.action == Action::Attach {
                "AttachNetworkInterface"
            } else {
                "DetachNetworkInterface"
            };
            let instance = op
                .instance_id
                .as_ref()
                .filter(|i| !i.0.is_empty())
                .ok_or_else(|| invalid(action, "attach and detach need an instance id"))?;
            let body = json!({"NetworkInterfaceId": id, "InstanceId": instance.0});
            (action, with_token(body), Idempotence::Safe)
        }
    })
}

#[async_trait::async_trait]
impl NicProvider for Tencent {
    fn provider(&self) -> Provider {
        Provider::Tencent
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            ipv6: true,
            max_ipv6_per_nic: MAX_IPV6_PER_NIC,
            attach: true,
            max_addresses_per_call: MAX_ADDRESSES_PER_CALL,
            async_tasks: true,
        }
    }

    fn in_flight_window(&self) -> Duration {
        self.transport.in_flight_window()
    }

    /// One ENI of the region: proves the key, the region and the endpoint.
    async fn check_credentials(&self) -> Result<(), CloudError> {
        let _: (NicPage, _) = self
            .call(
                Service::Vpc,
                "DescribeNetworkInterfaces",
                json!({"Limit": 1}),
                Idempotence::Safe,
                None,
            )
            .await?;
        Ok(())
    }

    async fn describe_nics(&self, nics: &[super::NicRef]) -> Result<Vec<ObservedNic>, CloudError> {
        let ids: Vec<String> = nics.iter().map(|n| n.id.0.clone()).collect();
        self.describe_nic_ids(&ids).await
    }

    async fn describe_instance(
        &self,
        id: &InstanceId,
    ) -> Result<Option<ObservedInstance>, CloudError> {
        let result: Result<(InstancePage, _), _> = self
            .call(
                Service::Cvm,
                "DescribeInstances",
                json!({"InstanceIds": [id.0]}),
                Idempotence::Safe,
                None,
            )
            .await;
        let page = match result {
            Ok((page, _)) => page,
            Err(e) if e.class == NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(page
            .instance_set
            .unwrap_or_default()
            .into_iter()
            .find(|i| i.instance_id == id.0)
            .map(|i| ObservedInstance {
                id: InstanceId(i.instance_id),
                status: InstanceStatus::from_cloud(i.instance_state.as_deref().unwrap_or("")),
                zone: i.placement.and_then(|p| p.zone),
            }))
    }

    /// Tencent reports no gateway address: it is the subnet's first host
    /// (`.1`), which the VPC reserves with the network and broadcast ones.
    async fn describe_subnet(
        &self,
        nic: &ObservedNic,
    ) -> Result<Option<ObservedSubnet>, CloudError> {
        const A: &str = "DescribeSubnets";
        let Some(subnet_id) = nic.subnet_id.as_deref() else {
            return Ok(None);
        };
        let result: Result<(SubnetPage, _), _> = self
            .call(
                Service::Vpc,
                A,
                json!({"SubnetIds": [subnet_id]}),
                Idempotence::Safe,
                None,
            )
            .await;
        let page = match result {
            Ok((page, _)) => page,
            Err(e) if e.class == NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(subnet) = page
            .subnet_set
            .unwrap_or_default()
            .into_iter()
            .find(|s| s.subnet_id == subnet_id)
        else {
            return Ok(None);
        };
        let cidr: Option<ipnet::Ipv4Net> = subnet
            .cidr_block
            .filter(|c| !c.is_empty())
            .map(|c| parse_address(Provider::Tencent, A, &c))
            .transpose()?;
        Ok(Some(ObservedSubnet {
            id: subnet.subnet_id,
            gateway: cidr.and_then(|c| c.hosts().next()),
            cidr,
            zone: subnet.zone.filter(|z| !z.is_empty()),
        }))
    }

    async fn submit(&self, op: &Operation) -> Result<Submitted, CloudError> {
        let (action, body, idempotence) = operation_call(op)?;
        let deadline = self
            .transport
            .send_deadline(Provider::Tencent, action, op.started_at)?;
        let result: Result<(AssignResult, _), CloudError> = self
            .call(Service::Vpc, action, body, idempotence, Some(deadline))
            .await;
        let (result, request_id) = match result {
            Ok(answer) => answer,
            // On a release of several addresses, "not on the ENI" may name
            // just one of them: the others are still there. Resolve from
            // the NIC instead of counting the whole release as done.
            Err(mut e)
                if e.code == "UnsupportedOperation.AttachmentNotFound"
                    && matches!(op.action, Action::UnassignIpv4 | Action::UnassignIpv6)
                    && op.addresses.len() > 1 =>
            {
                e.class = Transient;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let mut submitted = Submitted {
            request_id,
            addresses: BTreeSet::new(),
            complete: false,
        };
        let accepted = CloudError::after_acceptance;
        for spec in result.private_ip_address_set.unwrap_or_default() {
            if let Some(raw) = spec.private_ip_address.as_deref() {
                let ip = parse_address(Provider::Tencent, action, raw).map_err(accepted)?;
                submitted.addresses.insert(IpAddr::V4(ip));
            }
        }
        for spec in result.ipv6_address_set.unwrap_or_default() {
            if let Some(raw) = spec.address.as_deref() {
                let ip = parse_address(Provider::Tencent, action, raw).map_err(accepted)?;
                submitted.addresses.insert(IpAddr::V6(ip));
            }
        }
        if matches!(op.action, Action::UnassignIpv4 | Action::UnassignIpv6) {
            submitted.addresses = op.addresses.iter().copied().collect();
        }
        Ok(submitted)
    }

    async fn resolve_observed(
        &self,
        op: &Operation,
        nic: Option<&ObservedNic>,
    ) -> Result<Resolution, CloudError> {
        resolve_with_task(
            Provider::Tencent,
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
    use crate::cloud::{IdempotencyKey, Ipv4Request, TransportConfig};

    const ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";
    const KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";

    fn answer(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status,
            headers: Default::default(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// The direct read of ordinary answers and the careful one agree, and
    /// anything odd still gets the careful one's error.
    #[test]
    fn answers_read_directly_or_carefully_alike() {
        let ok =
            r#"{"Response": {"TotalCount": 1, "NetworkInterfaceSet": [], "RequestId": "r-1"}}"#;
        let (page, id): (NicPage, _) = parse_response("D", answer(200, ok)).unwrap();
        let (slow, slow_id): (NicPage, _) = parse_response_slowly("D", answer(200, ok)).unwrap();
        assert_eq!((page.total_count, id.as_deref()), (Some(1), Some("r-1")));
        assert_eq!((slow.total_count, slow_id), (page.total_count, id));
        for (status, body, code) in [
            (
                200,
                r#"{"Response": {"Error": null, "RequestId": "r"}}"#,
                "Client.BadResponse",
            ),
            (
                200,
                r#"{"Response": {"Error": {"Code": "InvalidParameter", "Message": "m"}, "RequestId": "r"}}"#,
                "InvalidParameter",
            ),
            (500, ok, "Client.HttpStatus"),
            (200, r#"{"Other": {}}"#, "Client.BadResponse"),
        ] {
            let Err(err) = parse_response::<NicPage>("D", answer(status, body)) else {
                panic!("{status} {body} read as an answer");
            };
            assert_eq!(err.code, code, "{status} {body}");
        }
    }

    fn client(credentials: Credentials, region: &str) -> Tencent {
        Tencent::new(
            Transport::new(TransportConfig::default()).unwrap(),
            credentials,
            region,
            None,
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
    fn request_builder_matches_v5_and_v7() {
        let t = client(Credentials::new(ID, KEY), "ap-guangzhou");
        let body = br#"{"NetworkInterfaceId":"eni-m6dyj72l","SecondaryPrivateIpAddressCount":2,"ClientToken":"nic-claim-0001"}"#;
        let req = t
            .build_request(
                Service::Vpc,
                "AssignPrivateIpAddresses",
                body,
                1_551_113_065,
            )
            .unwrap();
        assert_eq!(req.url().as_str(), "https://vpc.tencentcloudapi.com/");
        assert_eq!(header(&req, "x-tc-action"), "AssignPrivateIpAddresses");
        assert_eq!(header(&req, "x-tc-version"), "2017-03-12");
        assert_eq!(header(&req, "x-tc-timestamp"), "1551113065");
        assert_eq!(header(&req, "x-tc-region"), "ap-guangzhou");
        assert_eq!(header(&req, "content-type"), "application/json");
        assert!(req.headers().get("x-tc-token").is_none());
        assert_eq!(
            header(&req, "authorization"),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/vpc/tc3_request, \
             SignedHeaders=content-type;host, Signature=78ec0ce641cc0231e5a925d1789b529626ba5dd82a84f27108174d79cb277036"
        );
        let req = t
            .build_request(
                Service::Vpc,
                "DescribeNetworkInterfaces",
                b"{}",
                1_700_006_399,
            )
            .unwrap();
        assert!(
            header(&req, "authorization")
                .ends_with("0f84404d45b2bb9fefc6344fd4679e85bece12e8f56709a615f79ba6539fd15f")
        );
    }

    #[test]
    fn request_builder_matches_the_sdk_bodies_v1_v2_v4() {
        let t = client(Credentials::new(ID, KEY), "ap-guangzhou");
        let v1 = br#"{"NetworkInterfaceId": "eni-m6dyj72l", "SecondaryPrivateIpAddressCount": 2, "ClientToken": "nic-claim-0001"}"#;
        let req = t
            .build_request(Service::Vpc, "AssignPrivateIpAddresses", v1, 1_551_113_065)
            .unwrap();
        assert!(
            header(&req, "authorization")
                .ends_with("56071861d33a107e1a42ca79bb2ee4be3643c0aa9637cbceb56e9fe89e4d3c49")
        );
        let v4 = br#"{"NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": [{"PrivateIpAddress": "172.16.32.237"}, {"PrivateIpAddress": "172.16.32.84"}]}"#;
        let req = t
            .build_request(
                Service::Vpc,
                "UnassignPrivateIpAddresses",
                v4,
                1_551_113_065,
            )
            .unwrap();
        assert!(
            header(&req, "authorization")
                .ends_with("0b5ac9e760a13dcb5ce42bf8bdf6280bac6b8eed62d54de629d85577a59b5b8f")
        );

        let intl = Tencent::new(
            Transport::new(TransportConfig::default()).unwrap(),
            Credentials::new(ID, KEY).with_token("tmp-session-token-EXAMPLE"),
            "ap-singapore",
            Some("https://vpc.intl.tencentcloudapi.com/"),
        )
        .unwrap();
        let v2 = br#"{"Filters": [{"Name": "attachment.instance-id", "Values": ["ins-3nqpdn3i"]}], "Offset": 0, "Limit": 100}"#;
        let req = intl
            .build_request(Service::Vpc, "DescribeNetworkInterfaces", v2, 1_700_000_000)
            .unwrap();
        assert_eq!(header(&req, "x-tc-region"), "ap-singapore");
        assert_eq!(header(&req, "x-tc-token"), "tmp-session-token-EXAMPLE");
        assert!(
            header(&req, "authorization")
                .ends_with("1f8e8a2c6d2c6d6d580740bb8ee037b7cb7a7655178a1ce0efa4dcdb8cb1829a")
        );
    }

    #[test]
    fn session_token_is_sent_but_not_signed_and_cvm_uses_its_scope() {
        let t = client(
            Credentials::new(ID, KEY).with_token("tmp-session-token-EXAMPLE"),
            "ap-singapore",
        );
        let req = t
            .build_request(
                Service::Vpc,
                "DescribeNetworkInterfaces",
                b"{}",
                1_700_006_399,
            )
            .unwrap();
        assert_eq!(header(&req, "x-tc-token"), "tmp-session-token-EXAMPLE");
        assert!(
            header(&req, "authorization")
                .ends_with("0f84404d45b2bb9fefc6344fd4679e85bece12e8f56709a615f79ba6539fd15f")
        );
        let req = t
            .build_request(Service::Cvm, "DescribeInstances", b"{}", 1_700_006_399)
            .unwrap();
        assert_eq!(req.url().as_str(), "https://cvm.tencentcloudapi.com/");
        assert!(header(&req, "authorization").contains("/2023-11-14/cvm/tc3_request"));
    }

    fn nic(secondary: &[&str]) -> ObservedNic {
        ObservedNic {
            id: NicId("eni-1".into()),
            status: NicStatus::Available,
            vpc_id: None,
            subnet_id: None,
            primary_ipv4: None,
            secondary_ipv4: secondary.iter().map(|s| s.parse().unwrap()).collect(),
            ipv6: BTreeSet::new(),
            ipv6_cidr: None,
            instance_id: None,
            addresses_in_flux: BTreeSet::new(),
            zone: None,
        }
    }

    #[test]
    fn one_operation_is_one_call_of_at_most_ten_addresses() {
        let nic_ref = crate::cloud::NicRef::new("eni-1");
        let key = IdempotencyKey::derive("uid-1", 7, 0);
        let ten: BTreeSet<Ipv4Addr> = (10..20).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let op = Operation::assign_ipv4(
            &nic_ref,
            Ipv4Request::Addresses(ten),
            None,
            &nic(&[]),
            &key,
            7,
            0,
        );
        let (action, body, idempotence) = operation_call(&op).unwrap();
        assert_eq!(action, "AssignPrivateIpAddresses");
        assert_eq!(body["PrivateIpAddresses"].as_array().unwrap().len(), 10);
        assert_eq!(body["ClientToken"], key.token());
        assert_eq!(idempotence, Idempotence::Safe);
        assert_eq!(
            operation_call(&op).unwrap().1,
            body,
            "same op, same request"
        );
        let eleven: BTreeSet<Ipv4Addr> = (10..21).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let op = Operation::assign_ipv4(
            &nic_ref,
            Ipv4Request::Addresses(eleven.clone()),
            None,
            &nic(&[]),
            &key,
            7,
            0,
        );
        assert_eq!(
            operation_call(&op).unwrap_err().code,
            "Client.InvalidRequest"
        );
        let op = Operation::unassign_ipv4(&nic_ref, &eleven, &nic(&[]), &key, 8, 0);
        assert_eq!(
            operation_call(&op).unwrap_err().code,
            "Client.InvalidRequest"
        );
        let two = eleven.into_iter().take(2).collect();
        let op = Operation::unassign_ipv4(&nic_ref, &two, &nic(&[]), &key, 8, 0);
        let (action, body, idempotence) = operation_call(&op).unwrap();
        assert_eq!(action, "UnassignPrivateIpAddresses");
        assert!(body.get("ClientToken").is_none());
        assert_eq!(idempotence, Idempotence::Unsafe);
    }

    #[test]
    fn qos_and_token_go_out_in_both_modes() {
        let nic_ref = crate::cloud::NicRef::new("eni-1");
        let key = IdempotencyKey::derive("uid-1", 1, 0);
        let qos = Some(crate::cloud::QosLevel::Au);
        let op =
            Operation::assign_ipv4(&nic_ref, Ipv4Request::Count(3), qos, &nic(&[]), &key, 1, 0);
        assert_eq!(
            operation_call(&op).unwrap().1,
            json!({"NetworkInterfaceId": "eni-1", "SecondaryPrivateIpAddressCount": 3, "QosLevel": "AU", "ClientToken": key.token()})
        );
        let one = BTreeSet::from([Ipv4Addr::new(10, 0, 0, 7)]);
        let op = Operation::assign_ipv4(
            &nic_ref,
            Ipv4Request::Addresses(one),
            qos,
            &nic(&[]),
            &key,
            1,
            0,
        );
        assert_eq!(
            operation_call(&op).unwrap().1,
            json!({"NetworkInterfaceId": "eni-1", "PrivateIpAddresses": [{"PrivateIpAddress": "10.0.0.7", "QosLevel": "AU"}], "ClientToken": key.token()})
        );
    }

    #[test]
    fn business_errors_in_http_200_are_errors() {
        let err = parse_response::<Value>("A", RawResponse::test(200, r#"{"Response":{"Error":{"Code":"InvalidParameterValue.Range","Message":"out"},"RequestId":"r-1"}}"#))
            .unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.class, err.request_id.as_deref()),
            ("InvalidParameterValue.Range", InvalidInput, Some("r-1"))
        );
        let err = parse_response::<Value>("A", RawResponse::test(200, r#"{"Response":{"Error":{"Code":"RequestLimitExceeded","Message":""},"RequestId":"r"}}"#)).unwrap_err();
        assert_eq!(err.class, Throttled);
        // Unknown member of a known family falls back to the family's class.
        assert_eq!(classify("AuthFailure.SomethingNew"), Creds);
        assert_eq!(classify("Totally.Unknown"), Terminal);
        let err =
            parse_response::<Value>("A", RawResponse::test(200, r#"{"Response":{"RequestId""#))
                .unwrap_err();
        assert_eq!(err.code, "Client.BadResponse");
        let err =
            parse_response::<Value>("A", RawResponse::test(504, "<html>gateway timeout</html>"))
                .unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.class),
            ("Client.HttpStatus", Transient)
        );
        let (v, id) = parse_response::<AssignResult>("A", RawResponse::test(200, r#"{"Response":{"PrivateIpAddressSet":[{"PrivateIpAddress":"172.16.32.237"}],"RequestId":"f23"}}"#)).unwrap();
        assert_eq!(v.private_ip_address_set.unwrap().len(), 1);
        assert_eq!(id.as_deref(), Some("f23"));
    }

    #[test]
    fn nics_are_normalised_with_pending_addresses_in_flux() {
        let wire: NetworkInterface = serde_json::from_value(json!({
            "NetworkInterfaceId": "eni-1", "State": "AVAILABLE", "NetworkInterfaceState": "INUSE",
            "Attachment": {"InstanceId": "ins-1"},
            "PrivateIpAddressSet": [
                {"PrivateIpAddress": "10.0.0.2", "Primary": true, "State": "AVAILABLE"},
                {"PrivateIpAddress": "10.0.0.7", "Primary": false, "State": "PENDING"},
                {"PrivateIpAddress": "10.0.0.8", "Primary": false, "State": "AVAILABLE"}
            ],
            "Ipv6AddressSet": [{"Address": "2402:4e00::1", "State": "AVAILABLE"}]
        }))
        .unwrap();
        let nic = observe_nic(wire).unwrap();
        assert_eq!(nic.status, NicStatus::InUse);
        assert_eq!(nic.primary_ipv4, Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(nic.secondary_ipv4.len(), 2);
        assert_eq!(nic.addresses_in_flux.len(), 1);
        assert_eq!(nic.ipv6.len(), 1);
    }
}
