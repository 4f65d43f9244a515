//! The cloud layer: one provider trait in domain terms and its three
//! implementations. The controller never sees HTTP: it observes NICs and
//! instances, builds one [`Operation`] per wire call (which it records in the
//! claim's `status.pendingOperation` *before* calling), [`NicProvider::submit`]s
//! it, and later settles it from the cloud's own state
//! ([`NicProvider::resolve_observed`], [`settle`]).

mod error;
mod operation;
pub mod tencent;
pub mod tencent_legacy;
pub mod transport;
pub mod zenlayer;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::{CLIENT_CODES, CloudError, CodeInfo, ErrorClass, Outcome, markdown_table};
pub use operation::{
    Action, IdempotencyKey, Ipv6Billing, Operation, Resolution, Submitted, TaskState, settle,
};
pub use transport::{CallRecord, Endpoint, MetricsSink, RateLimits, Transport, TransportConfig};

/// Which cloud API a provider speaks: the `ProviderConfig` field itself.
pub use crate::api::v1alpha1::Provider;

/// A cloud NIC id (`nic-…` on Zenlayer, `eni-…` on Tencent).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NicId(pub String);

/// A cloud instance id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceId(pub String);

impl fmt::Display for NicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A NIC as the operations address it: the legacy Tencent API also needs the
/// NIC's VPC (`vpcId` is mandatory there); the other APIs ignore it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NicRef {
    pub id: NicId,
    pub vpc_id: Option<String>,
}

impl NicRef {
    pub fn new(id: impl Into<String>) -> Self {
        NicRef {
            id: NicId(id.into()),
            vpc_id: None,
        }
    }

    pub fn in_vpc(mut self, vpc_id: impl Into<String>) -> Self {
        self.vpc_id = Some(vpc_id.into());
        self
    }
}

/// A secret string (key secret, session token). `Debug` and `Display` never
/// show it; only the signing code reads it, through `Secret::expose`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Surrounding whitespace is dropped: a trailing newline in a Kubernetes
    /// Secret is the classic cause of signature mismatches.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into().trim().to_string())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One cloud account's API key. The key id is not secret (it appears in the
/// `Authorization` header and in audit logs); the secret and the optional
/// token are. The token is a Tencent session token (temporary credentials,
/// sent as `X-TC-Token` beside the signature) or a Zenlayer personal access
/// token (sent as `Authorization: Bearer`, instead of the signature).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub key_id: String,
    pub secret: Secret,
    pub token: Option<Secret>,
}

impl Credentials {
    pub fn new(key_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Credentials {
            key_id: key_id.into().trim().to_string(),
            secret: Secret::new(secret),
            token: None,
        }
    }

    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret::new(token));
        self
    }

    /// The account a rate limiter belongs to: the key id, or, for a
    /// Zenlayer personal access token (which has none), a short digest of
    /// the token, so that two token-only accounts never share a limiter and
    /// the token itself is never used as a name.
    pub fn account(&self) -> String {
        match &self.token {
            Some(token) if self.key_id.is_empty() => {
                let digest = crate::signing::sha256_hex(token.expose().as_bytes());
                format!("token-{}", &digest[..16])
            }
            _ => self.key_id.clone(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("key_id", &self.key_id)
            .field("secret", &self.secret)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A NIC's lifecycle state, normalised across the clouds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NicStatus {
    /// Exists and is not attached.
    Available,
    /// Attached to an instance (Zenlayer `USED`, Tencent `INUSE`).
    InUse,
    Attaching,
    Detaching,
    /// Being created or deleted, or any other transitional state.
    Busy(String),
    /// A state this client does not know (reported verbatim).
    Other(String),
}

impl NicStatus {
    /// Whether the cloud accepts address changes in this state.
    pub fn is_stable(&self) -> bool {
        matches!(self, NicStatus::Available | NicStatus::InUse)
    }
}

/// What the cloud says about one NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedNic {
    pub id: NicId,
    pub status: NicStatus,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub primary_ipv4: Option<Ipv4Addr>,
    /// Secondary private IPv4s, the set IPv4 claims are reconciled against.
    pub secondary_ipv4: BTreeSet<Ipv4Addr>,
    /// IPv6 addresses on the NIC (Zenlayer: its one primary IPv6).
    pub ipv6: BTreeSet<Ipv6Addr>,
    /// Zenlayer's IPv6 prefix on the NIC, when it has one.
    pub ipv6_cidr: Option<ipnet::Ipv6Net>,
    pub instance_id: Option<InstanceId>,
    /// Addresses the cloud still reports as being added or removed (Tencent's
    /// per-IP `PENDING`/`DELETING`); a change is complete when this is empty.
    pub addresses_in_flux: BTreeSet<std::net::IpAddr>,
    /// The NIC's zone, when the cloud reports it (attachments need an instance in it).
    pub zone: Option<String>,
}

/// A subnet, as far as naming a bad explicit address needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedSubnet {
    pub id: String,
    pub cidr: Option<ipnet::Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub zone: Option<String>,
}

/// What a provider can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub ipv6: bool,
    /// Zenlayer: one IPv6 per NIC; Tencent: 10 per call.
    pub max_ipv6_per_nic: u32,
    pub attach: bool,
    /// The most explicit addresses (or the largest count) one call may carry:
    /// plan larger changes as several operations (chunks).
    pub max_addresses_per_call: usize,
    /// Whether mutations complete asynchronously as tasks (resolve them).
    pub async_tasks: bool,
}

/// An instance's state, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceStatus {
    Running,
    Stopped,
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedInstance {
    pub id: InstanceId,
    pub status: InstanceStatus,
    /// Zenlayer zone id or Tencent placement zone, when reported.
    pub zone: Option<String>,
}

/// Secondary IPv4s to add: an explicit set, or a count the cloud picks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ipv4Request {
    Addresses(BTreeSet<Ipv4Addr>),
    Count(u32),
}

/// Tencent's QoS level for count-mode IPv4 assignment (the claim API's type).
pub use crate::api::v1alpha1::QosLevel;

/// The provider interface the controller calls. Implementations are cheap to
/// share (`Arc<dyn NicProvider>`); all callers of one transport share its rate
/// limiters.
#[async_trait::async_trait]
pub trait NicProvider: Send + Sync {
    fn provider(&self) -> Provider;

    fn capabilities(&self) -> Capabilities;

    /// How long after `started_at` a call may still act: its send deadline
    /// plus one request timeout. No attempt starts after the send deadline.
    fn in_flight_window(&self) -> Duration;

    /// A cheap read-only call proving the credentials, region and endpoint work.
    async fn check_credentials(&self) -> Result<(), CloudError>;

    /// Describes NICs in as few calls as the API allows (batched up to the
    /// documented maximum of ids per call, pages followed). NICs the cloud
    /// does not know are absent from the result, not an error.
    async fn describe_nics(&self, nics: &[NicRef]) -> Result<Vec<ObservedNic>, CloudError>;

    /// Describes one instance; `None` when the cloud does not know it.
    async fn describe_instance(
        &self,
        id: &InstanceId,
    ) -> Result<Option<ObservedInstance>, CloudError>;

    /// The NIC's subnet (CIDR, gateway), to name a bad explicit address
    /// without trying addresses one by one; `None` when it is not known.
    async fn describe_subnet(
        &self,
        nic: &ObservedNic,
    ) -> Result<Option<ObservedSubnet>, CloudError>;

    /// Sends exactly one mutating request and returns at once (it never
    /// waits for a task). The operation must have been marked sent
    /// ([`Operation::mark_sent`]) and recorded. Record
    /// [`Submitted::request_id`], then settle it with
    /// [`NicProvider::resolve_observed`]. A failed call's
    /// [`CloudError::outcome`] says whether it may have acted.
    async fn submit(&self, op: &Operation) -> Result<Submitted, CloudError>;

    /// Settles `op` against an observation the caller already has (`None`:
    /// the NIC is gone); asks for the task only when the observation cannot
    /// decide (nothing visible yet and a task id is known). Never acts.
    ///
    /// The observation must be taken after `submit` returned (for an
    /// answered call) or after `started_at` (for a call whose answer was
    /// lost): on Zenlayer, which has no idempotency token, an older one that
    /// shows nothing would read as "not applied", inviting a second call.
    /// (With a task id, both Tencent APIs ask the task, and describe the NIC
    /// again when it succeeded.)
    async fn resolve_observed(
        &self,
        op: &Operation,
        nic: Option<&ObservedNic>,
    ) -> Result<Resolution, CloudError>;

    /// Describes the operation's NIC, then [`NicProvider::resolve_observed`].
    async fn resolve(&self, op: &Operation) -> Result<Resolution, CloudError> {
        let observed = self.describe_nics(std::slice::from_ref(&op.nic)).await?;
        let nic = observed.iter().find(|n| n.id == op.nic.id);
        self.resolve_observed(op, nic).await
    }
}

/// How to build the provider of one cloud account (one `ProviderConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSettings {
    pub provider: Provider,
    /// Tencent's `X-TC-Region` / legacy `Region`; Zenlayer ignores it.
    pub region: String,
    /// Overrides the documented VPC (or Zenlayer) endpoint.
    pub endpoint: Option<String>,
    /// Overrides Tencent's CVM endpoint; defaults to `endpoint` when that is set.
    pub cvm_endpoint: Option<String>,
    /// Requests per second by cloud action name, over the documented defaults.
    pub rate_limits: HashMap<String, f64>,
    /// Whose limiters these are: the ProviderConfig's name.
    pub scope: String,
}

impl ProviderSettings {
    pub fn new(provider: Provider, region: impl Into<String>, scope: impl Into<String>) -> Self {
        ProviderSettings {
            provider,
            region: region.into(),
            endpoint: None,
            cvm_endpoint: None,
            rate_limits: HashMap::new(),
            scope: scope.into(),
        }
    }

    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }
}

/// Builds the provider for one cloud account. Limiters live in the shared
/// [`Transport`], keyed by (scope, action); this applies the settings'
/// overrides every time, so rebuilding a provider after an edit of the
/// ProviderConfig takes effect without a restart and keeps the limiters'
/// state.
pub fn connect(
    settings: &ProviderSettings,
    transport: Transport,
    credentials: Credentials,
) -> Result<Arc<dyn NicProvider>, CloudError> {
    let defaults = match settings.provider {
        Provider::Zenlayer => zenlayer::default_rate_limits(),
        Provider::Tencent => tencent::default_rate_limits(),
        Provider::TencentLegacy => tencent_legacy::default_rate_limits(),
    };
    let client = transport.scoped(
        &settings.scope,
        defaults.with_overrides(&settings.rate_limits),
    );
    let endpoint = settings.endpoint.as_deref();
    Ok(match settings.provider {
        Provider::Zenlayer => Arc::new(zenlayer::Zenlayer::new(client, credentials, endpoint)?),
        Provider::Tencent => Arc::new(
            tencent::Tencent::new(client, credentials, &settings.region, endpoint)?
                .with_cvm_endpoint(settings.cvm_endpoint.as_deref().or(endpoint))?,
        ),
        Provider::TencentLegacy => Arc::new(tencent_legacy::TencentLegacy::new(
            client,
            credentials,
            &settings.region,
            endpoint,
        )?),
    })
}

/// Describes of one large request (a sweep of a fleet) under way at once.
/// One at a time, a sweep of 10,000 NICs waited out 100 round trips in a
/// row and took twice as long as the describe rate allows; the rate limiter
/// still paces them.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Describes `ids` in chunks of `max` (the API's most ids per call), up to
/// [`CHUNKS_IN_FLIGHT`] chunks at once; the first error fails the whole.
pub(crate) async fn describe_chunks<'a, F, Fut>(
    ids: &'a [String],
    max: usize,
    describe: F,
) -> Result<Vec<ObservedNic>, CloudError>
where
    F: Fn(&'a [String]) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<ObservedNic>, CloudError>>,
{
    use futures::{StreamExt as _, TryStreamExt as _};
    // The futures are made first: a stream mapping through `describe` is not
    // `Send` for every lifetime, which the providers' boxed futures need.
    let calls: Vec<Fut> = ids.chunks(max.max(1)).map(describe).collect();
    let found: Vec<Vec<ObservedNic>> = futures::stream::iter(calls)
        .buffer_unordered(CHUNKS_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

/// The most pages one Describe follows (25 000 NICs at the legacy API's 50
/// a page): an endpoint that keeps answering full pages of other NICs under
/// a lying total must not be paged through forever.
const MAX_PAGES: usize = 500;

/// Follows a Describe's pages: `fetch(page_index, offset)` returns the kept
/// items of one page, how many the page held and the reported total. Stops
/// at an empty page, at the total, or when `enough` holds for what was kept
/// (a batch names at most so many NICs: a misbehaving total must not page
/// on forever). Past [`MAX_PAGES`] it fails rather than answer with some
/// NICs missing, which would read as NICs that no longer exist.
pub(crate) async fn collect_pages<T, F, Fut>(
    provider: Provider,
    action: &str,
    enough: impl Fn(&[T]) -> bool,
    mut fetch: F,
) -> Result<Vec<T>, CloudError>
where
    F: FnMut(usize, usize) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, usize, Option<u64>), CloudError>>,
{
    let mut out = Vec::new();
    let mut seen = 0usize;
    for page in 0..MAX_PAGES {
        let (items, count, total) = fetch(page, seen).await?;
        seen = seen.saturating_add(count);
        out.extend(items);
        if count == 0 || seen as u64 >= total.unwrap_or(0) || enough(&out) {
            return Ok(out);
        }
    }
    Err(CloudError::bad_response(
        provider,
        action,
        format!("still more pages after {MAX_PAGES}: the reported total is not believable"),
    ))
}

impl InstanceStatus {
    /// Zenlayer's and Tencent CVM's instance states share their names.
    pub(crate) fn from_cloud(state: &str) -> Self {
        match state {
            "RUNNING" => InstanceStatus::Running,
            "STOPPED" => InstanceStatus::Stopped,
            other => InstanceStatus::Other(other.to_string()),
        }
    }
}

/// The API action a mutating operation is sent as, per provider (what the
/// cloud's audit trail and `nicip plan` show).
pub fn wire_action(provider: Provider, action: Action) -> &'static str {
    match (provider, action) {
        (Provider::Zenlayer, Action::AssignIpv4) => "BatchAssignNetworkInterfaceIpv4",
        (Provider::Zenlayer, Action::UnassignIpv4) => "UnassignNetworkInterfaceIpv4",
        (Provider::Zenlayer, Action::AssignIpv6) => "AssignNetworkInterfaceIpv6",
        (Provider::Zenlayer, Action::UnassignIpv6) => "UnassignNetworkInterfaceIpv6",
        (_, Action::AssignIpv4) => "AssignPrivateIpAddresses",
        (_, Action::UnassignIpv4) => "UnassignPrivateIpAddresses",
        (_, Action::AssignIpv6) => "AssignIpv6Addresses",
        (_, Action::UnassignIpv6) => "UnassignIpv6Addresses",
        (_, Action::Attach) => "AttachNetworkInterface",
        (_, Action::Detach) => "DetachNetworkInterface",
    }
}

/// The error tables of all providers as published in `docs/errors.md`
/// (a test keeps the document in step with the code).
pub fn error_tables_markdown() -> String {
    [
        markdown_table("Zenlayer ZEC API 2.0", zenlayer::ERROR_CODES),
        markdown_table("Tencent VPC API 3.0", tencent::ERROR_CODES),
        markdown_table("Tencent VPC legacy API 2.0", tencent_legacy::ERROR_CODES),
        markdown_table("Client-side codes (all providers)", CLIENT_CODES),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show_their_secrets() {
        let c =
            Credentials::new(" AKIDkey ", "very-secret-key\n").with_token("session-token-value");
        assert_eq!(format!("{:?}", c.secret), "Secret(<redacted>)");
        assert_eq!(format!("{}", c.secret), "<redacted>");
        assert_eq!(
            format!("{c:?}"),
            r#"Credentials { key_id: "AKIDkey", secret: Secret(<redacted>), token: Some("<redacted>") }"#
        );
        assert_eq!(c.account(), "AKIDkey");
        let a = Credentials::new("", "").with_token("pat-one-secret");
        let b = Credentials::new("", "").with_token("pat-two-secret");
        assert_ne!(a.account(), b.account());
        assert!(a.account().starts_with("token-") && !a.account().contains("pat-one"));
        // Whitespace around a secret (a trailing newline in a Secret) is dropped.
        assert_eq!(c.secret.expose(), "very-secret-key");
    }

    #[test]
    fn connect_builds_each_provider_with_its_capabilities_and_rejects_plain_http() {
        let transport = Transport::new(TransportConfig::default()).unwrap();
        for provider in [
            Provider::Zenlayer,
            Provider::Tencent,
            Provider::TencentLegacy,
        ] {
            let settings = ProviderSettings::new(provider, "ap-guangzhou", "pc");
            let p = connect(&settings, transport.clone(), Credentials::new("k", "s")).unwrap();
            assert_eq!(p.provider(), provider);
            let caps = p.capabilities();
            match provider {
                Provider::Zenlayer => {
                    assert!(caps.ipv6 && caps.attach && !caps.async_tasks);
                    assert_eq!(caps.max_ipv6_per_nic, 1);
                }
                Provider::Tencent => {
                    assert!(caps.ipv6 && caps.attach && caps.async_tasks);
                    assert_eq!(
                        (caps.max_ipv6_per_nic, caps.max_addresses_per_call),
                        (10, 10)
                    );
                }
                Provider::TencentLegacy => {
                    assert!(!caps.ipv6 && !caps.attach && caps.async_tasks);
                    assert_eq!(caps.max_addresses_per_call, 10);
                }
            }
            for bad in [
                settings.clone().with_endpoint("http://example.com/"),
                ProviderSettings {
                    cvm_endpoint: Some("http://example.com/".into()),
                    ..settings.clone()
                },
            ] {
                if bad.endpoint.is_none() && provider != Provider::Tencent {
                    continue; // only Tencent has a CVM endpoint
                }
                let err = connect(&bad, transport.clone(), Credentials::new("k", "s"))
                    .err()
                    .unwrap();
                assert_eq!(err.code, "Client.InvalidEndpoint");
                assert!(err.is_account_problem(), "{err}");
            }
        }
    }

    #[test]
    fn docs_publish_the_error_tables() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/errors.md");
        let tables = error_tables_markdown();
        if std::env::var_os("NICIP_UPDATE_DOCS").is_some() {
            let doc = std::fs::read_to_string(path).unwrap_or_default();
            let marker =
                "<!-- generated tables below: NICIP_UPDATE_DOCS=1 cargo test docs_publish -->\n";
            let head = doc.split(marker).next().unwrap_or_default();
            std::fs::write(path, format!("{head}{marker}\n{tables}")).unwrap();
        }
        let doc = std::fs::read_to_string(path).unwrap();
        assert!(
            doc.contains(&tables),
            "docs/errors.md is stale: run NICIP_UPDATE_DOCS=1 cargo test docs_publish"
        );
    }

    #[test]
    fn every_table_row_is_unique_and_classified() {
        for table in [
            zenlayer::ERROR_CODES,
            tencent::ERROR_CODES,
            tencent_legacy::ERROR_CODES,
            CLIENT_CODES,
        ] {
            let mut seen = std::collections::BTreeSet::new();
            for row in table {
                assert!(seen.insert(row.code), "duplicate {}", row.code);
                assert_eq!(error::lookup(table, row.code), Some(row.class));
            }
        }
    }
}
