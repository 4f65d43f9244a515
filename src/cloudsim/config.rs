//! The world file (YAML). `docs/cloudsim.md` documents every field; the
//! defaults keep a small world short.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::faults::Fault;
use super::world::{Cloud, Ipv6Type, StackType, Vendor, WorldError, WorldState};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct WorldFile {
    #[serde(default)]
    accounts: Accounts,
    #[serde(default)]
    settings: Settings,
    #[serde(default)]
    faults: Vec<Fault>,
    #[serde(default)]
    zenlayer: CloudFile,
    #[serde(default)]
    tencent: CloudFile,
}

/// Credentials the simulator accepts. Secrets are never serialized or logged.
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Accounts {
    #[serde(default)]
    pub zenlayer: Vec<ZenlayerAccount>,
    #[serde(default)]
    pub tencent: Vec<TencentAccount>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field(
                "zenlayer",
                &self.zenlayer.iter().map(|a| &a.key_id).collect::<Vec<_>>(),
            )
            .field(
                "tencent",
                &self
                    .tencent
                    .iter()
                    .map(|a| &a.secret_id)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZenlayerAccount {
    pub key_id: String,
    pub key_password: String,
    /// Personal access tokens accepted as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_tokens: Vec<String>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TencentAccount {
    pub secret_id: String,
    pub secret_key: String,
    /// When set, the key pair is temporary: requests must carry one of these
    /// as `X-TC-Token` (or `Token`).
    #[serde(default)]
    pub session_tokens: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// Allowed clock skew of signed timestamps, both directions.
    #[serde(default = "default_window")]
    pub timestamp_window_seconds: i64,
    /// The code a throttled Tencent call (API 3.0 and legacy 2.0) answers.
    /// The vendor's pages list both: the gateway's `RequestLimitExceeded` (the
    /// default, §3/§11) and the VPC service's own per-action
    /// `LimitExceeded.ActionLimited` (§8.1); which one the real service sends
    /// for its per-action limit is undocumented, so either can be chosen.
    #[serde(default)]
    pub tencent_throttle_code: TencentThrottleCode,
    /// The code Zenlayer answers when an `AssignNetworkInterfaceIpv6` finds
    /// the NIC already holding an IPv6. The seed lists two codes for it with
    /// the same meaning and no rule for choosing; the default is the first.
    #[serde(default)]
    pub zenlayer_ipv6_exists_code: ZenlayerIpv6ExistsCode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum TencentThrottleCode {
    #[default]
    RequestLimitExceeded,
    #[serde(rename = "LimitExceeded.ActionLimited")]
    ActionLimited,
}

impl TencentThrottleCode {
    pub fn code(self) -> &'static str {
        match self {
            TencentThrottleCode::RequestLimitExceeded => "RequestLimitExceeded",
            TencentThrottleCode::ActionLimited => "LimitExceeded.ActionLimited",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum ZenlayerIpv6ExistsCode {
    #[default]
    #[serde(rename = "INVALID_NIC_IPV6_EXISTS")]
    InvalidNicIpv6Exists,
    #[serde(rename = "OPERATION_DENIED_NIC_EXIST_IPV6")]
    OperationDeniedNicExistIpv6,
}

impl ZenlayerIpv6ExistsCode {
    pub fn code(self) -> &'static str {
        match self {
            ZenlayerIpv6ExistsCode::InvalidNicIpv6Exists => "INVALID_NIC_IPV6_EXISTS",
            ZenlayerIpv6ExistsCode::OperationDeniedNicExistIpv6 => {
                "OPERATION_DENIED_NIC_EXIST_IPV6"
            }
        }
    }
}

fn default_window() -> i64 {
    300
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timestamp_window_seconds: default_window(),
            tencent_throttle_code: TencentThrottleCode::default(),
            zenlayer_ipv6_exists_code: ZenlayerIpv6ExistsCode::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CloudFile {
    #[serde(default)]
    pub regions: Vec<RegionFile>,
    #[serde(default)]
    pub vpcs: Vec<VpcFile>,
    #[serde(default)]
    pub subnets: Vec<SubnetFile>,
    #[serde(default)]
    pub instances: Vec<InstanceFile>,
    #[serde(default)]
    pub nics: Vec<NicFile>,
    pub async_latency_ms: Option<u64>,
    #[serde(default)]
    pub rate_limits: BTreeMap<String, f64>,
    pub default_nic_ip_quota: Option<u32>,
    pub max_bandwidth: Option<u32>,
    pub max_traffic_package: Option<f64>,
    pub client_token_capacity: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RegionFile {
    pub id: String,
    #[serde(default)]
    pub zones: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct VpcFile {
    pub id: String,
    pub name: Option<String>,
    pub region: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SubnetFile {
    pub id: String,
    pub name: Option<String>,
    pub vpc: String,
    pub zone: Option<String>,
    pub cidr: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub stack_type: Option<StackType>,
    pub ipv6_cidr: Option<Ipv6Net>,
    pub ipv6_type: Option<Ipv6Type>,
    pub ipv6_mask_length: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct InstanceFile {
    pub id: String,
    pub name: Option<String>,
    pub zone: String,
    pub status: Option<String>,
    pub nic_limit: Option<u32>,
    pub ips_per_nic: Option<u32>,
    pub instance_type: Option<String>,
    pub cpu: Option<u32>,
    pub memory: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NicFile {
    pub id: String,
    pub name: Option<String>,
    pub subnet: String,
    pub status: Option<String>,
    #[serde(default)]
    pub primary: bool,
    pub primary_ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub secondary_ips: Vec<Ipv4Addr>,
    #[serde(default)]
    pub ipv6: Vec<Ipv6Addr>,
    pub instance: Option<String>,
    pub ip_quota: Option<u32>,
    pub ipv6_quota: Option<u32>,
}

/// A validated world: credentials, settings, initial faults and both clouds.
#[derive(Debug, Clone)]
pub struct World {
    pub(crate) accounts: Accounts,
    pub(crate) settings: Settings,
    pub(crate) faults: Vec<Fault>,
    pub(crate) limits: RateLimits,
    pub(crate) state: WorldState,
}

/// Configured per-action limits (requests per second per key).
#[derive(Debug, Clone, Default)]
pub(crate) struct RateLimits {
    pub zenlayer: BTreeMap<String, f64>,
    pub tencent: BTreeMap<String, f64>,
}

impl World {
    /// Parses and checks a world file; errors name the offending entry.
    pub fn from_yaml(text: &str) -> Result<World, WorldError> {
        // The world file is the operator's own, and a fleet-sized one (the
        // controller benchmark's holds tens of thousands of NICs) outgrows
        // the parser's default of 250,000 nodes; its other limits (aliases,
        // nesting) stay.
        let options = serde_saphyr::options! {
            budget: serde_saphyr::budget! { max_nodes: 20_000_000 },
        };
        let mut file: WorldFile = serde_saphyr::from_str_with_options(text, options)
            .map_err(|e| WorldError(format!("world file: {e}")))?;
        let mut faults = file.faults;
        for (i, f) in faults.iter_mut().enumerate() {
            f.validate()
                .map_err(|e| WorldError(format!("faults[{i}]: {e}")))?;
        }
        for a in &file.accounts.zenlayer {
            if a.key_id.trim().is_empty() || a.key_password.trim().is_empty() {
                return Err(WorldError(
                    "accounts.zenlayer: keyId and keyPassword must not be empty".into(),
                ));
            }
        }
        for a in &file.accounts.tencent {
            if a.secret_id.trim().is_empty() || a.secret_key.trim().is_empty() {
                return Err(WorldError(
                    "accounts.tencent: secretId and secretKey must not be empty".into(),
                ));
            }
        }
        let limits = RateLimits {
            zenlayer: std::mem::take(&mut file.zenlayer.rate_limits),
            tencent: std::mem::take(&mut file.tencent.rate_limits),
        };
        for (action, rate) in limits.zenlayer.iter().chain(&limits.tencent) {
            if !rate.is_finite() || *rate < 0.0 {
                return Err(WorldError(format!(
                    "rateLimits.{action}: {rate} is not a rate (0 means unlimited)"
                )));
            }
        }
        Ok(World {
            limits,
            accounts: file.accounts,
            settings: file.settings,
            faults,
            state: WorldState {
                zenlayer: Cloud::from_file(Vendor::Zenlayer, file.zenlayer)?,
                tencent: Cloud::from_file(Vendor::Tencent, file.tencent)?,
            },
        })
    }
}
