//! The cloud layer (DESIGN §4): one provider trait in domain terms and its
//! three implementations. The controller never sees HTTP: it observes NICs
//! and instances, builds an [`Operation`] (which it records in the claim's
//! `status.pendingOperation` *before* calling), [`NicProvider::submit`]s it,
//! and later [`NicProvider::resolve`]s it from the cloud's own state.

mod error;
mod operation;
pub mod tencent;
pub mod tencent_legacy;
pub mod transport;
pub mod zenlayer;

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

pub use error::{CLIENT_CODES, CloudError, CodeInfo, ErrorClass, markdown_table};
pub use operation::{Action, IdempotencyKey, Ipv6Billing, Operation, Resolution, Submitted};
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
/// share (`Arc<dyn NicProvider>`); all callers of one instance share its rate
/// limiters.
#[async_trait::async_trait]
pub trait NicProvider: Send + Sync {
    fn provider(&self) -> Provider;

    /// Describes NICs in as few calls as the API allows (batched up to the
    /// documented maximum of ids per call, pages followed). NICs the cloud
    /// does not know are absent from the result, not an error.
    async fn describe_nics(&self, nics: &[NicRef]) -> Result<Vec<ObservedNic>, CloudError>;

    /// Describes one instance; `None` when the cloud does not know it.
    async fn describe_instance(
        &self,
        id: &InstanceId,
    ) -> Result<Option<ObservedInstance>, CloudError>;

    /// Sends the operation to the cloud. On success the operation has been
    /// accepted; [`Submitted::complete`] says whether it is already visible.
    /// Record [`Submitted::request_id`] in the pending operation, then call
    /// [`NicProvider::resolve`] until it settles.
    async fn submit(&self, nic: &NicRef, op: &Operation) -> Result<Submitted, CloudError>;

    /// Decides from the cloud's own state whether an operation whose outcome
    /// is unknown (in flight, timed out, lost in a crash) took effect. Never
    /// performs a second, different assignment.
    async fn resolve(&self, nic: &NicRef, op: &Operation) -> Result<Resolution, CloudError>;
}

/// Builds the provider for one cloud account (one `ProviderConfig`).
/// `region` is Tencent's `X-TC-Region` / legacy `Region` (Zenlayer ignores
/// it); `endpoint` overrides the documented default URL. Providers built on
/// clones of one [`Transport`] share its rate limiters and connection pool.
pub fn connect(
    provider: Provider,
    transport: Transport,
    credentials: Credentials,
    region: &str,
    endpoint: Option<&str>,
) -> Result<std::sync::Arc<dyn NicProvider>, CloudError> {
    Ok(match provider {
        Provider::Zenlayer => {
            std::sync::Arc::new(zenlayer::Zenlayer::new(transport, credentials, endpoint)?)
        }
        Provider::Tencent => std::sync::Arc::new(tencent::Tencent::new(
            transport,
            credentials,
            region,
            endpoint,
        )?),
        Provider::TencentLegacy => std::sync::Arc::new(tencent_legacy::TencentLegacy::new(
            transport,
            credentials,
            region,
            endpoint,
        )?),
    })
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
        for text in [
            format!("{c:?}"),
            format!("{:?}", c.secret),
            format!("{}", c.secret),
        ] {
            assert!(
                !text.contains("very-secret-key") && !text.contains("session-token-value"),
                "{text}"
            );
        }
        assert!(format!("{c:?}").contains("AKIDkey"));
        assert_eq!(c.account(), "AKIDkey");
        let a = Credentials::new("", "").with_token("pat-one-secret");
        let b = Credentials::new("", "").with_token("pat-two-secret");
        assert_ne!(a.account(), b.account());
        assert!(!a.account().contains("pat-one-secret"));
        assert_eq!(c.secret.expose(), "very-secret-key");
        assert_eq!(c.key_id, "AKIDkey");
    }

    #[test]
    fn connect_builds_each_provider_and_rejects_plain_http_to_remote_hosts() {
        let transport = Transport::new(TransportConfig::default()).unwrap();
        for provider in [
            Provider::Zenlayer,
            Provider::Tencent,
            Provider::TencentLegacy,
        ] {
            let p = connect(
                provider,
                transport.clone(),
                Credentials::new("k", "s"),
                "ap-guangzhou",
                None,
            )
            .unwrap();
            assert_eq!(p.provider(), provider);
            let err = connect(
                provider,
                transport.clone(),
                Credentials::new("k", "s"),
                "r",
                Some("http://example.com/"),
            )
            .err()
            .unwrap();
            assert_eq!(err.code, "Client.InvalidEndpoint");
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
