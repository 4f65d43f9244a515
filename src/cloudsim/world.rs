//! The simulated clouds' state and the rules every mutation obeys.
//!
//! One [`Cloud`] per vendor (Zenlayer, Tencent). The operations here speak in
//! domain terms and fail with a [`Rule`]; each wire protocol maps a `Rule` to
//! its own documented error code, so the rules are written once.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::config::{CloudFile, NicFile, SubnetFile};

/// Which vendor a cloud (and its ID style) belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Vendor {
    Zenlayer,
    Tencent,
}

/// A subnet's IP stack, in Zenlayer's words (`IPv4`, `IPv4_IPv6`, `IPv6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum StackType {
    #[default]
    #[serde(rename = "IPv4")]
    Ipv4,
    #[serde(rename = "IPv4_IPv6")]
    DualStack,
    #[serde(rename = "IPv6")]
    Ipv6,
}

impl StackType {
    pub fn as_str(self) -> &'static str {
        match self {
            StackType::Ipv4 => "IPv4",
            StackType::DualStack => "IPv4_IPv6",
            StackType::Ipv6 => "IPv6",
        }
    }
    pub fn has_ipv4(self) -> bool {
        self != StackType::Ipv6
    }
}

/// Whether a subnet's IPv6 addresses are public (billed) or private.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Ipv6Type {
    Public,
    #[default]
    Private,
}

/// State of one address on a NIC; Tencent shows `PENDING`/`DELETING` while
/// the task that adds or removes it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IpState {
    Available,
    Pending,
    Deleting,
}

impl IpState {
    pub fn as_str(self) -> &'static str {
        match self {
            IpState::Available => "AVAILABLE",
            IpState::Pending => "PENDING",
            IpState::Deleting => "DELETING",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpEntry<A> {
    pub address: A,
    pub state: IpState,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Region {
    pub id: String,
    pub zones: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Vpc {
    pub id: String,
    pub name: String,
    pub region: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    pub id: String,
    pub name: String,
    pub vpc_id: String,
    pub region: String,
    pub zone: Option<String>,
    pub cidr: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub stack_type: StackType,
    pub ipv6_cidr: Option<Ipv6Net>,
    pub ipv6_type: Ipv6Type,
    /// Prefix length of the IPv6 block Zenlayer hands each NIC.
    pub ipv6_mask_length: u8,
    /// Every IPv4 taken in the subnet (primaries and secondaries of all NICs).
    #[serde(skip)]
    used_v4: BTreeSet<Ipv4Addr>,
    #[serde(skip)]
    used_v6: BTreeSet<Ipv6Addr>,
}

impl Subnet {
    pub fn used_ipv4_count(&self) -> usize {
        self.used_v4.len()
    }
    pub fn used_ipv6_count(&self) -> usize {
        self.used_v6.len()
    }
    /// Addresses that may be handed out: all but network, gateway, broadcast.
    pub fn usable_ipv4_count(&self) -> u64 {
        let total = 1u64 << (32 - self.cidr.prefix_len());
        total.saturating_sub(3)
    }
    pub fn free_ipv4_count(&self) -> u64 {
        self.usable_ipv4_count()
            .saturating_sub(self.used_v4.len() as u64)
    }

    fn check_ipv4(&self, ip: Ipv4Addr) -> Result<(), Rule> {
        let s = ip.to_string();
        if !self.cidr.contains(&ip) {
            return Err(Rule::IpOutOfRange(s));
        }
        if ip == self.cidr.network() {
            return Err(Rule::IpNetwork(s));
        }
        if ip == self.cidr.broadcast() {
            return Err(Rule::IpBroadcast(s));
        }
        if ip == self.gateway {
            return Err(Rule::IpGateway(s));
        }
        if self.used_v4.contains(&ip) {
            return Err(Rule::IpInUse(s));
        }
        Ok(())
    }

    /// The first `count` free host addresses, not counting `taken` either.
    fn free_ipv4s(&self, count: usize, taken: &[Ipv4Addr]) -> Option<Vec<Ipv4Addr>> {
        let mut out = Vec::with_capacity(count);
        let net = u32::from(self.cidr.network());
        let bcast = u32::from(self.cidr.broadcast());
        let mut cursor = net.saturating_add(1);
        while out.len() < count && cursor < bcast {
            let ip = Ipv4Addr::from(cursor);
            if ip != self.gateway && !self.used_v4.contains(&ip) && !taken.contains(&ip) {
                out.push(ip);
            }
            cursor += 1;
        }
        (out.len() == count).then_some(out)
    }

    /// Tencent style: single IPv6 addresses, skipping the network address and
    /// `::1` (the gateway).
    fn free_ipv6s(&self, count: usize, taken: &[Ipv6Addr]) -> Option<Vec<Ipv6Addr>> {
        let cidr = self.ipv6_cidr?;
        let net = u128::from(cidr.network());
        let last = u128::from(cidr.broadcast());
        let mut out = Vec::with_capacity(count);
        let mut cursor = net.saturating_add(2);
        while out.len() < count && cursor <= last {
            let ip = Ipv6Addr::from(cursor);
            if !self.used_v6.contains(&ip) && !taken.contains(&ip) {
                out.push(ip);
            }
            let Some(next) = cursor.checked_add(1) else {
                break;
            };
            cursor = next;
        }
        (out.len() == count).then_some(out)
    }

    /// Zenlayer style: the first free per-NIC block; returns the block and its
    /// first host address (the NIC's `primaryIpv6`).
    fn free_ipv6_block(&self) -> Option<(Ipv6Net, Ipv6Addr)> {
        let cidr = self.ipv6_cidr?;
        let mask = self.ipv6_mask_length.max(cidr.prefix_len());
        let step = 1u128.checked_shl(u32::from(128 - mask)).unwrap_or(0).max(1);
        let blocks = 1u128
            .checked_shl(u32::from(mask - cidr.prefix_len()))
            .unwrap_or(u128::MAX)
            .min(1 << 20);
        let net = u128::from(cidr.network());
        (0..blocks).find_map(|k| {
            let base = net + k * step;
            let host = Ipv6Addr::from(base + 1);
            if self.used_v6.contains(&host) {
                return None;
            }
            Ipv6Net::new(Ipv6Addr::from(base), mask)
                .ok()
                .map(|n| (n, host))
        })
    }

    /// Tencent reserves `::1` (the gateway) too; a Zenlayer NIC's IPv6 is the
    /// first host of its block, which is `::1` for the first block.
    fn check_ipv6(&self, ip: Ipv6Addr, reserve_gateway: bool) -> Result<(), Rule> {
        let s = ip.to_string();
        let Some(cidr) = self.ipv6_cidr else {
            return Err(Rule::Ipv6StackNotSupported);
        };
        if !cidr.contains(&ip) {
            return Err(Rule::IpOutOfRange(s));
        }
        if ip == cidr.network()
            || (reserve_gateway && u128::from(ip) == u128::from(cidr.network()) + 1)
        {
            return Err(Rule::IpReserved(s));
        }
        if self.used_v6.contains(&ip) {
            return Err(Rule::IpInUse(s));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub zone: String,
    pub region: String,
    pub status: String,
    pub nic_limit: u32,
    /// Address quota reported for NICs of this instance by
    /// `DescribeNetworkInterfaceLimit`.
    pub ips_per_nic: u32,
    pub instance_type: String,
    pub cpu: u32,
    pub memory: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Nic {
    pub id: String,
    pub name: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub region: String,
    pub zone: Option<String>,
    /// Zenlayer vocabulary: `AVAILABLE`, `USED`, `ATTACHING`, `DETACHING`,
    /// `PENDING`, `DELETING`, `CREATE_FAILED`.
    pub status: String,
    /// The instance's primary NIC (cannot be detached).
    pub primary: bool,
    pub primary_ipv4: Ipv4Addr,
    pub secondary_ipv4: Vec<IpEntry<Ipv4Addr>>,
    pub ipv6: Vec<IpEntry<Ipv6Addr>>,
    /// Zenlayer: the block the NIC's IPv6 comes from.
    pub ipv6_cidr: Option<Ipv6Net>,
    pub instance_id: Option<String>,
    /// Maximum private IPv4 addresses on the NIC, primary included.
    pub ip_quota: u32,
    pub ipv6_quota: u32,
    pub mac_address: String,
    pub created: String,
    /// The Tencent task currently holding the NIC (mutating calls are refused
    /// while it runs).
    pub busy_task: Option<String>,
    /// Tencent: the QoS level of secondary addresses assigned with one
    /// (`PT`, `AU`, `AG`); the others report `DEFAULT`.
    pub qos_levels: BTreeMap<Ipv4Addr, String>,
}

impl Nic {
    pub fn ipv4_count(&self) -> usize {
        1 + self.secondary_ipv4.len()
    }
    pub fn secondary_ipv4s(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.secondary_ipv4.iter().map(|e| e.address)
    }
    pub fn is_attached(&self) -> bool {
        self.instance_id.is_some()
    }
}

/// A broken rule. The protocols translate these into their own codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    NicNotFound,
    InstanceNotFound,
    NicStatus(String),
    MutexTask,
    SubnetNoIpv4,
    IpMalformed(String),
    IpNotPrivate(String),
    IpDuplicate(String),
    IpOutOfRange(String),
    IpNetwork(String),
    IpBroadcast(String),
    IpGateway(String),
    IpReserved(String),
    IpInUse(String),
    SubnetExhausted,
    NicQuota(u32),
    TooManyPerCall(usize),
    NothingRequested,
    Ipv6StackNotSupported,
    Ipv6Exists,
    Ipv6Exhausted,
    Ipv6Quota(u32),
    PrimaryIp(String),
    IpNotOnNic(String),
    NicAttached,
    NicNotAttached,
    RegionMismatch,
    ZoneMismatch,
    InstanceStatus(String),
    InstanceNicLimit(u32),
    PrimaryNicDetach,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::NicNotFound => write!(f, "the network interface does not exist"),
            Rule::InstanceNotFound => write!(f, "the instance does not exist"),
            Rule::NicStatus(s) => write!(
                f,
                "the network interface is {s}, which does not allow this operation"
            ),
            Rule::MutexTask => write!(f, "another task is running on the network interface"),
            Rule::SubnetNoIpv4 => write!(f, "the subnet's stack type does not include IPv4"),
            Rule::IpMalformed(ip) => write!(f, "`{ip}` is not a valid IP address"),
            Rule::IpNotPrivate(ip) => write!(f, "`{ip}` is not a private address"),
            Rule::IpDuplicate(ip) => write!(f, "`{ip}` is given more than once"),
            Rule::IpOutOfRange(ip) => write!(f, "`{ip}` is outside the subnet's CIDR"),
            Rule::IpNetwork(ip) => write!(f, "`{ip}` is the subnet's network address"),
            Rule::IpBroadcast(ip) => write!(f, "`{ip}` is the subnet's broadcast address"),
            Rule::IpGateway(ip) => write!(f, "`{ip}` is the subnet's gateway address"),
            Rule::IpReserved(ip) => write!(f, "`{ip}` is reserved by the system"),
            Rule::IpInUse(ip) => write!(f, "`{ip}` is already in use"),
            Rule::SubnetExhausted => write!(f, "the subnet has not enough free addresses"),
            Rule::NicQuota(q) => write!(
                f,
                "the network interface may hold at most {q} private addresses"
            ),
            Rule::TooManyPerCall(n) => write!(f, "at most {n} addresses may be given per call"),
            Rule::NothingRequested => write!(f, "give addresses or a count"),
            Rule::Ipv6StackNotSupported => {
                write!(f, "the subnet's stack type does not support IPv6")
            }
            Rule::Ipv6Exists => write!(f, "the network interface already has an IPv6 address"),
            Rule::Ipv6Exhausted => write!(f, "the subnet has not enough free IPv6 addresses"),
            Rule::Ipv6Quota(q) => write!(
                f,
                "the network interface may hold at most {q} IPv6 addresses"
            ),
            Rule::PrimaryIp(ip) => {
                write!(f, "`{ip}` is the primary address and cannot be released")
            }
            Rule::IpNotOnNic(ip) => write!(f, "`{ip}` is not assigned to the network interface"),
            Rule::NicAttached => write!(f, "the network interface is attached to an instance"),
            Rule::NicNotAttached => {
                write!(f, "the network interface is not attached to this instance")
            }
            Rule::RegionMismatch => write!(
                f,
                "the instance and the network interface are in different regions"
            ),
            Rule::ZoneMismatch => write!(
                f,
                "the instance and the network interface are in different zones"
            ),
            Rule::InstanceStatus(s) => write!(
                f,
                "the instance is {s}, which does not allow this operation"
            ),
            Rule::InstanceNicLimit(n) => {
                write!(f, "the instance may hold at most {n} network interfaces")
            }
            Rule::PrimaryNicDetach => write!(f, "the primary network interface cannot be detached"),
        }
    }
}

/// What an asynchronous task will do when it completes (or undo on failure).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Effect {
    AssignIpv4 { addresses: Vec<Ipv4Addr> },
    UnassignIpv4 { addresses: Vec<Ipv4Addr> },
    AssignIpv6 { addresses: Vec<Ipv6Addr> },
    UnassignIpv6 { addresses: Vec<Ipv6Addr> },
    Attach { instance_id: String },
    Detach { instance_id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Running,
    Success,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// The RequestId of the call that started it (Tencent API 3.0 task id).
    pub id: String,
    /// The integer task id the legacy API 2.0 hands out.
    pub legacy_id: u64,
    pub action: String,
    pub nic_id: String,
    pub effect: Effect,
    pub status: TaskStatus,
    /// `SUCCESS` or the failure's message.
    pub output: String,
    /// Set by fault injection: the task ends FAILED with this code and is
    /// rolled back.
    #[serde(skip)]
    fail: Option<String>,
}

/// A remembered Tencent `ClientToken` request.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub fingerprint: String,
    pub task_id: Option<String>,
    pub response: serde_json::Value,
}

const KEEP_FINISHED_TASKS: usize = 100_000;

/// The remembered `ClientToken` requests, keyed by (key id, action, token). Bounded: once
/// `capacity` tokens are held the oldest is forgotten, so a long-running simulator (or a
/// benchmark) does not grow without limit. A forgotten token behaves as a new one, which is
/// what a client retrying days later would meet on the real cloud too.
#[derive(Debug, Clone)]
pub struct ClientTokens {
    records: HashMap<(String, String, String), TokenRecord>,
    order: VecDeque<(String, String, String)>,
    capacity: usize,
}

impl ClientTokens {
    fn new(capacity: usize) -> ClientTokens {
        ClientTokens {
            records: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn get(&self, key: &(String, String, String)) -> Option<&TokenRecord> {
        self.records.get(key)
    }

    pub fn insert(&mut self, key: (String, String, String), record: TokenRecord) {
        if self.records.insert(key.clone(), record).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.records.remove(&oldest);
            }
        }
    }
}

/// One vendor's resources.
#[derive(Debug, Clone)]
pub struct Cloud {
    pub vendor: Vendor,
    pub regions: Vec<Region>,
    pub vpcs: BTreeMap<String, Vpc>,
    pub subnets: BTreeMap<String, Subnet>,
    pub instances: BTreeMap<String, Instance>,
    pub nics: BTreeMap<String, Nic>,
    pub tasks: HashMap<String, Task>,
    legacy_tasks: HashMap<u64, String>,
    pending: BTreeMap<(Instant, u64), String>,
    finished: VecDeque<String>,
    next_task: u64,
    pub client_tokens: ClientTokens,
    pub async_latency: Duration,
    pub max_bandwidth: u32,
    pub max_traffic_package: f64,
}

/// An error in the world file, naming the offending entry.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WorldError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, WorldError> {
    Err(WorldError(msg.into()))
}

fn tencent_id_ok(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn mac_for(index: usize) -> String {
    let b = (index as u32).to_be_bytes();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[1], b[2], b[3])
}

pub(crate) fn now_iso() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Cloud {
    pub(crate) fn from_file(vendor: Vendor, file: CloudFile) -> Result<Cloud, WorldError> {
        let tencent = vendor == Vendor::Tencent;
        let label = match vendor {
            Vendor::Zenlayer => "zenlayer",
            Vendor::Tencent => "tencent",
        };
        let default_quota = file
            .default_nic_ip_quota
            .unwrap_or(if tencent { 10 } else { 20 });
        let mut cloud = Cloud {
            vendor,
            regions: file
                .regions
                .into_iter()
                .map(|r| Region {
                    id: r.id,
                    zones: r.zones,
                })
                .collect(),
            vpcs: BTreeMap::new(),
            subnets: BTreeMap::new(),
            instances: BTreeMap::new(),
            nics: BTreeMap::new(),
            tasks: HashMap::new(),
            legacy_tasks: HashMap::new(),
            pending: BTreeMap::new(),
            finished: VecDeque::new(),
            next_task: 1000,
            client_tokens: ClientTokens::new(file.client_token_capacity.unwrap_or(100_000)),
            async_latency: Duration::from_millis(file.async_latency_ms.unwrap_or(100)),
            max_bandwidth: file.max_bandwidth.unwrap_or(10_000),
            max_traffic_package: file.max_traffic_package.unwrap_or(1000.0),
        };
        let region_of_zone = |regions: &[Region], zone: &str| {
            regions
                .iter()
                .find(|r| r.zones.iter().any(|z| z == zone))
                .map(|r| r.id.clone())
        };
        for v in file.vpcs {
            if tencent && !tencent_id_ok(&v.id, "vpc") {
                return err(format!(
                    "{label}.vpcs: `{}` is not a Tencent VPC id (vpc-xxxxxxxx)",
                    v.id
                ));
            }
            if !cloud.regions.iter().any(|r| r.id == v.region) {
                return err(format!(
                    "{label}.vpcs.{}: region `{}` is not listed in regions",
                    v.id, v.region
                ));
            }
            let vpc = Vpc {
                name: v.name.unwrap_or_else(|| v.id.clone()),
                id: v.id.clone(),
                region: v.region,
            };
            if cloud.vpcs.insert(v.id.clone(), vpc).is_some() {
                return err(format!("{label}.vpcs: duplicate id `{}`", v.id));
            }
        }
        for s in file.subnets {
            let subnet = cloud.subnet_from_file(label, s)?;
            let id = subnet.id.clone();
            if cloud.subnets.insert(id.clone(), subnet).is_some() {
                return err(format!("{label}.subnets: duplicate id `{id}`"));
            }
        }
        for i in file.instances {
            if tencent && !tencent_id_ok(&i.id, "ins") {
                return err(format!(
                    "{label}.instances: `{}` is not a Tencent instance id (ins-xxxxxxxx)",
                    i.id
                ));
            }
            let Some(region) = region_of_zone(&cloud.regions, &i.zone) else {
                return err(format!(
                    "{label}.instances.{}: zone `{}` is not listed in regions",
                    i.id, i.zone
                ));
            };
            let inst = Instance {
                name: i.name.unwrap_or_else(|| i.id.clone()),
                id: i.id.clone(),
                zone: i.zone,
                region,
                status: i.status.unwrap_or_else(|| "RUNNING".into()),
                nic_limit: i.nic_limit.unwrap_or(8),
                ips_per_nic: i.ips_per_nic.unwrap_or(default_quota),
                instance_type: i.instance_type.unwrap_or_else(|| "S5.MEDIUM4".into()),
                cpu: i.cpu.unwrap_or(2),
                memory: i.memory.unwrap_or(4),
            };
            if cloud.instances.insert(i.id.clone(), inst).is_some() {
                return err(format!("{label}.instances: duplicate id `{}`", i.id));
            }
        }
        for (index, n) in file.nics.into_iter().enumerate() {
            let nic = cloud.nic_from_file(label, index, default_quota, n)?;
            if cloud.nics.contains_key(&nic.id) {
                return err(format!("{label}.nics: duplicate id `{}`", nic.id));
            }
            cloud.nics.insert(nic.id.clone(), nic);
        }
        for inst in cloud.instances.values() {
            let attached = cloud
                .nics
                .values()
                .filter(|n| n.instance_id.as_deref() == Some(&inst.id))
                .count();
            if attached as u32 > inst.nic_limit {
                return err(format!(
                    "{label}.instances.{}: {attached} NICs attached but nicLimit is {}",
                    inst.id, inst.nic_limit
                ));
            }
        }
        Ok(cloud)
    }

    fn subnet_from_file(&self, label: &str, s: SubnetFile) -> Result<Subnet, WorldError> {
        let tencent = self.vendor == Vendor::Tencent;
        if tencent && !tencent_id_ok(&s.id, "subnet") {
            return err(format!(
                "{label}.subnets: `{}` is not a Tencent subnet id (subnet-xxxxxxxx)",
                s.id
            ));
        }
        let Some(vpc) = self.vpcs.get(&s.vpc) else {
            return err(format!(
                "{label}.subnets.{}: vpc `{}` is not defined",
                s.id, s.vpc
            ));
        };
        if let Some(zone) = &s.zone {
            let in_region = self
                .regions
                .iter()
                .any(|r| r.id == vpc.region && r.zones.contains(zone));
            if !in_region {
                return err(format!(
                    "{label}.subnets.{}: zone `{zone}` is not in region `{}`",
                    s.id, vpc.region
                ));
            }
        } else if tencent {
            return err(format!(
                "{label}.subnets.{}: Tencent subnets need a zone",
                s.id
            ));
        }
        let cidr = s.cidr.trunc();
        if cidr.prefix_len() > 29 {
            return err(format!(
                "{label}.subnets.{}: CIDR {cidr} is too small (at most /29)",
                s.id
            ));
        }
        let gateway = s
            .gateway
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(cidr.network()) + 1));
        if !cidr.contains(&gateway) || gateway == cidr.network() || gateway == cidr.broadcast() {
            return err(format!(
                "{label}.subnets.{}: gateway {gateway} is not a host of {cidr}",
                s.id
            ));
        }
        let stack_type = s.stack_type.unwrap_or(if s.ipv6_cidr.is_some() {
            StackType::DualStack
        } else {
            StackType::Ipv4
        });
        if stack_type != StackType::Ipv4 && s.ipv6_cidr.is_none() {
            return err(format!(
                "{label}.subnets.{}: stack type {} needs ipv6Cidr",
                s.id,
                stack_type.as_str()
            ));
        }
        let ipv6_cidr = s.ipv6_cidr.map(|c| c.trunc());
        // A CIDR smaller than the default /96 block is one block, so that a
        // small Tencent subnet (which has no blocks) needs no Zenlayer field.
        let mask = s
            .ipv6_mask_length
            .unwrap_or_else(|| ipv6_cidr.map_or(96, |c| c.prefix_len().max(96)));
        if let Some(c) = ipv6_cidr
            && (mask < c.prefix_len() || mask > 127)
        {
            return err(format!(
                "{label}.subnets.{}: ipv6MaskLength {mask} does not fit {c}",
                s.id
            ));
        }
        Ok(Subnet {
            name: s.name.unwrap_or_else(|| s.id.clone()),
            id: s.id,
            vpc_id: vpc.id.clone(),
            region: vpc.region.clone(),
            zone: s.zone,
            cidr,
            gateway,
            stack_type,
            ipv6_cidr,
            ipv6_type: s.ipv6_type.unwrap_or_default(),
            ipv6_mask_length: mask,
            used_v4: BTreeSet::new(),
            used_v6: BTreeSet::new(),
        })
    }

    fn nic_from_file(
        &mut self,
        label: &str,
        index: usize,
        default_quota: u32,
        n: NicFile,
    ) -> Result<Nic, WorldError> {
        let tencent = self.vendor == Vendor::Tencent;
        let ctx = format!("{label}.nics.{}", n.id);
        if tencent && !tencent_id_ok(&n.id, "eni") {
            return err(format!(
                "{label}.nics: `{}` is not a Tencent ENI id (eni-xxxxxxxx)",
                n.id
            ));
        }
        if let Some(inst_id) = &n.instance {
            let Some(inst) = self.instances.get(inst_id) else {
                return err(format!("{ctx}: instance `{inst_id}` is not defined"));
            };
            let subnet_zone_ok = self.subnets.get(&n.subnet).is_none_or(|s| {
                s.zone.as_ref().is_none_or(|z| z == &inst.zone) && s.region == inst.region
            });
            if !subnet_zone_ok {
                return err(format!(
                    "{ctx}: instance `{inst_id}` is in another zone or region than the subnet"
                ));
            }
        }
        let Some(subnet) = self.subnets.get_mut(&n.subnet) else {
            return err(format!("{ctx}: subnet `{}` is not defined", n.subnet));
        };
        let ip_quota = n.ip_quota.unwrap_or(default_quota);
        if 1 + n.secondary_ips.len() as u32 > ip_quota {
            return err(format!(
                "{ctx}: {} addresses exceed ipQuota {ip_quota}",
                1 + n.secondary_ips.len()
            ));
        }
        let primary_ipv4 = match n.primary_ip {
            Some(ip) => ip,
            None => match subnet.free_ipv4s(1, &[]) {
                Some(v) => v[0],
                None => return err(format!("{ctx}: subnet `{}` has no free address", subnet.id)),
            },
        };
        let mut secondary = Vec::new();
        for ip in std::iter::once(primary_ipv4).chain(n.secondary_ips.iter().copied()) {
            if let Err(rule) = subnet.check_ipv4(ip) {
                return err(format!("{ctx}: {rule}"));
            }
            subnet.used_v4.insert(ip);
            if ip != primary_ipv4 {
                secondary.push(IpEntry {
                    address: ip,
                    state: IpState::Available,
                });
            }
        }
        let mut ipv6 = Vec::new();
        let mut ipv6_cidr = None;
        if !n.ipv6.is_empty() {
            if !matches!(subnet.stack_type, StackType::DualStack) {
                return err(format!("{ctx}: subnet `{}` has no IPv6", subnet.id));
            }
            if !tencent && n.ipv6.len() > 1 {
                return err(format!("{ctx}: a Zenlayer NIC holds one IPv6"));
            }
            for ip in &n.ipv6 {
                if let Err(rule) = subnet.check_ipv6(*ip, tencent) {
                    return err(format!("{ctx}: {rule}"));
                }
                subnet.used_v6.insert(*ip);
                ipv6.push(IpEntry {
                    address: *ip,
                    state: IpState::Available,
                });
                if !tencent {
                    ipv6_cidr = Ipv6Net::new(*ip, subnet.ipv6_mask_length)
                        .ok()
                        .map(|n| n.trunc());
                }
            }
        }
        let status = n.status.unwrap_or_else(|| {
            if n.instance.is_some() {
                "USED"
            } else {
                "AVAILABLE"
            }
            .to_string()
        });
        Ok(Nic {
            name: n.name.unwrap_or_else(|| n.id.clone()),
            id: n.id,
            subnet_id: subnet.id.clone(),
            vpc_id: subnet.vpc_id.clone(),
            region: subnet.region.clone(),
            zone: subnet.zone.clone(),
            status,
            primary: n.primary,
            primary_ipv4,
            secondary_ipv4: secondary,
            ipv6,
            ipv6_cidr,
            instance_id: n.instance,
            ip_quota,
            ipv6_quota: n.ipv6_quota.unwrap_or(if tencent { 10 } else { 1 }),
            mac_address: mac_for(index),
            created: now_iso(),
            busy_task: None,
            qos_levels: BTreeMap::new(),
        })
    }

    /// Completes every task whose latency has passed.
    pub fn advance(&mut self, now: Instant) {
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let task_id = entry.remove();
            self.complete(&task_id);
        }
        while self.finished.len() > KEEP_FINISHED_TASKS {
            if let Some(old) = self.finished.pop_front()
                && let Some(task) = self.tasks.remove(&old)
            {
                self.legacy_tasks.remove(&task.legacy_id);
            }
        }
    }

    fn complete(&mut self, task_id: &str) {
        let Some(task) = self.tasks.get_mut(task_id) else {
            return;
        };
        let fail = task.fail.is_some();
        task.status = if fail {
            TaskStatus::Failed
        } else {
            TaskStatus::Success
        };
        task.output = match &task.fail {
            Some(code) => format!("{code}: the task failed (injected fault)"),
            None => "SUCCESS".into(),
        };
        let effect = task.effect.clone();
        let nic_id = task.nic_id.clone();
        self.finished.push_back(task_id.to_string());
        let Some(nic) = self.nics.get_mut(&nic_id) else {
            return;
        };
        if nic.busy_task.as_deref() == Some(task_id) {
            nic.busy_task = None;
        }
        let subnet = self.subnets.get_mut(&nic.subnet_id);
        match (effect, fail) {
            (Effect::AssignIpv4 { addresses }, false)
            | (Effect::UnassignIpv4 { addresses }, true) => {
                mark(&mut nic.secondary_ipv4, &addresses, IpState::Available);
            }
            (Effect::AssignIpv4 { addresses }, true)
            | (Effect::UnassignIpv4 { addresses }, false) => {
                release(
                    &mut nic.secondary_ipv4,
                    subnet.map(|s| &mut s.used_v4),
                    &addresses,
                );
            }
            (Effect::AssignIpv6 { addresses }, false)
            | (Effect::UnassignIpv6 { addresses }, true) => {
                mark(&mut nic.ipv6, &addresses, IpState::Available);
            }
            (Effect::AssignIpv6 { addresses }, true)
            | (Effect::UnassignIpv6 { addresses }, false) => {
                release(&mut nic.ipv6, subnet.map(|s| &mut s.used_v6), &addresses);
                if nic.ipv6.is_empty() {
                    nic.ipv6_cidr = None;
                }
            }
            (Effect::Attach { .. }, false) | (Effect::Detach { .. }, true) => {
                nic.status = "USED".into();
            }
            (Effect::Attach { .. }, true) | (Effect::Detach { .. }, false) => {
                nic.status = "AVAILABLE".into();
                nic.instance_id = None;
            }
        }
    }

    fn start_task(
        &mut self,
        request_id: &str,
        action: &str,
        nic_id: &str,
        effect: Effect,
        fail: Option<&str>,
        hold_nic: bool,
    ) -> u64 {
        self.next_task += 1;
        let legacy_id = self.next_task;
        let due = Instant::now() + self.async_latency;
        self.tasks.insert(
            request_id.to_string(),
            Task {
                id: request_id.to_string(),
                legacy_id,
                action: action.to_string(),
                nic_id: nic_id.to_string(),
                effect,
                status: TaskStatus::Running,
                output: String::new(),
                fail: fail.map(str::to_string),
            },
        );
        self.legacy_tasks.insert(legacy_id, request_id.to_string());
        self.pending
            .insert((due, legacy_id), request_id.to_string());
        if hold_nic && let Some(nic) = self.nics.get_mut(nic_id) {
            nic.busy_task = Some(request_id.to_string());
        }
        legacy_id
    }

    pub fn task_by_legacy_id(&self, id: u64) -> Option<&Task> {
        self.legacy_tasks.get(&id).and_then(|t| self.tasks.get(t))
    }

    /// The NIC as seen from `region` (Tencent resources are regional; `None`
    /// sees every region, as Zenlayer's global endpoint does).
    pub fn nic_in(&self, id: &str, region: Option<&str>) -> Result<&Nic, Rule> {
        self.nics
            .get(id)
            .filter(|n| region.is_none_or(|r| n.region == r))
            .ok_or(Rule::NicNotFound)
    }

    fn mutable_nic(&self, id: &str, region: Option<&str>) -> Result<&Nic, Rule> {
        let nic = self.nic_in(id, region)?;
        if nic.busy_task.is_some() {
            return Err(Rule::MutexTask);
        }
        if !matches!(nic.status.as_str(), "AVAILABLE" | "USED") {
            return Err(Rule::NicStatus(nic.status.clone()));
        }
        Ok(nic)
    }
}

/// Sets the state of the entries for `addresses`.
fn mark<A: PartialEq>(entries: &mut [IpEntry<A>], addresses: &[A], state: IpState) {
    for e in entries
        .iter_mut()
        .filter(|e| addresses.contains(&e.address))
    {
        e.state = state;
    }
}

/// Removes `addresses` from a NIC and frees them in its subnet.
fn release<A: Ord>(entries: &mut Vec<IpEntry<A>>, used: Option<&mut BTreeSet<A>>, addresses: &[A]) {
    entries.retain(|e| !addresses.contains(&e.address));
    if let Some(used) = used {
        for a in addresses {
            used.remove(a);
        }
    }
}

/// How a cloud carries out an accepted change.
#[derive(Debug, Clone)]
pub struct Async<'a> {
    /// The task id (the request id of the call).
    pub request_id: &'a str,
    pub action: &'a str,
    /// Fault injection: let the task end FAILED with this code and roll back.
    pub fail: Option<&'a str>,
}

/// Parses addresses as the clouds do: a list of strings, each a valid
/// private IPv4, no duplicates.
pub fn parse_ipv4_list(raw: &[String]) -> Result<Vec<Ipv4Addr>, Rule> {
    let mut out: Vec<Ipv4Addr> = Vec::with_capacity(raw.len());
    for s in raw {
        let ip: Ipv4Addr = s.trim().parse().map_err(|_| Rule::IpMalformed(s.clone()))?;
        if !(ip.is_private() || (ip.octets()[0] == 100 && (ip.octets()[1] & 0xC0) == 64)) {
            return Err(Rule::IpNotPrivate(s.clone()));
        }
        if out.contains(&ip) {
            return Err(Rule::IpDuplicate(s.clone()));
        }
        out.push(ip);
    }
    Ok(out)
}

pub fn parse_ipv6_list(raw: &[String]) -> Result<Vec<Ipv6Addr>, Rule> {
    let mut out: Vec<Ipv6Addr> = Vec::with_capacity(raw.len());
    for s in raw {
        let ip: Ipv6Addr = s.trim().parse().map_err(|_| Rule::IpMalformed(s.clone()))?;
        if out.contains(&ip) {
            return Err(Rule::IpDuplicate(s.clone()));
        }
        out.push(ip);
    }
    Ok(out)
}

impl Cloud {
    /// Adds secondary IPv4s: the explicit list if given, else `count` free
    /// ones (Zenlayer: the list wins; Tencent: both may be given and add up).
    /// With `run_async` the addresses are `PENDING` until the task completes.
    pub fn assign_ipv4(
        &mut self,
        nic_id: &str,
        region: Option<&str>,
        explicit: &[Ipv4Addr],
        count: usize,
        run_async: Option<Async<'_>>,
    ) -> Result<Vec<Ipv4Addr>, Rule> {
        if explicit.is_empty() && count == 0 {
            return Err(Rule::NothingRequested);
        }
        let nic = self.mutable_nic(nic_id, region)?;
        let (subnet_id, current, quota) = (nic.subnet_id.clone(), nic.ipv4_count(), nic.ip_quota);
        let subnet = self.subnets.get(&subnet_id).ok_or(Rule::NicNotFound)?;
        if !subnet.stack_type.has_ipv4() {
            return Err(Rule::SubnetNoIpv4);
        }
        for ip in explicit {
            subnet.check_ipv4(*ip)?;
        }
        if current.saturating_add(explicit.len()).saturating_add(count) > quota as usize {
            return Err(Rule::NicQuota(quota));
        }
        let mut chosen = explicit.to_vec();
        if count > 0 {
            chosen.extend(
                subnet
                    .free_ipv4s(count, explicit)
                    .ok_or(Rule::SubnetExhausted)?,
            );
        }
        let state = if run_async.is_some() {
            IpState::Pending
        } else {
            IpState::Available
        };
        if let Some(s) = self.subnets.get_mut(&subnet_id) {
            s.used_v4.extend(chosen.iter().copied());
        }
        if let Some(nic) = self.nics.get_mut(nic_id) {
            nic.secondary_ipv4
                .extend(chosen.iter().map(|a| IpEntry { address: *a, state }));
        }
        if let Some(a) = run_async {
            let effect = Effect::AssignIpv4 {
                addresses: chosen.clone(),
            };
            self.start_task(a.request_id, a.action, nic_id, effect, a.fail, true);
        }
        Ok(chosen)
    }

    /// Removes secondary IPv4s. The primary address and addresses not on the
    /// NIC are refused, the whole call fails for one bad address.
    pub fn unassign_ipv4(
        &mut self,
        nic_id: &str,
        region: Option<&str>,
        addresses: &[Ipv4Addr],
        run_async: Option<Async<'_>>,
    ) -> Result<(), Rule> {
        if addresses.is_empty() {
            return Err(Rule::NothingRequested);
        }
        let nic = self.mutable_nic(nic_id, region)?;
        for ip in addresses {
            if *ip == nic.primary_ipv4 {
                return Err(Rule::PrimaryIp(ip.to_string()));
            }
            let on_nic = nic
                .secondary_ipv4
                .iter()
                .any(|e| e.address == *ip && e.state == IpState::Available);
            if !on_nic {
                return Err(Rule::IpNotOnNic(ip.to_string()));
            }
        }
        match run_async {
            Some(a) => {
                if let Some(nic) = self.nics.get_mut(nic_id) {
                    mark(&mut nic.secondary_ipv4, addresses, IpState::Deleting);
                }
                let effect = Effect::UnassignIpv4 {
                    addresses: addresses.to_vec(),
                };
                self.start_task(a.request_id, a.action, nic_id, effect, a.fail, true);
            }
            None => {
                let Some(nic) = self.nics.get_mut(nic_id) else {
                    return Err(Rule::NicNotFound);
                };
                let used = self.subnets.get_mut(&nic.subnet_id).map(|s| &mut s.used_v4);
                release(&mut nic.secondary_ipv4, used, addresses);
            }
        }
        Ok(())
    }

    /// Zenlayer: gives the NIC its one IPv6 (a block of the subnet's IPv6
    /// CIDR). Billing checks are the protocol's job and happen before.
    pub fn assign_ipv6_block(&mut self, nic_id: &str) -> Result<(Ipv6Net, Ipv6Addr), Rule> {
        let nic = self.mutable_nic(nic_id, None)?;
        if !nic.ipv6.is_empty() {
            return Err(Rule::Ipv6Exists);
        }
        let subnet = self.subnets.get(&nic.subnet_id).ok_or(Rule::NicNotFound)?;
        if subnet.stack_type != StackType::DualStack {
            return Err(Rule::Ipv6StackNotSupported);
        }
        let (block, host) = subnet.free_ipv6_block().ok_or(Rule::Ipv6Exhausted)?;
        let subnet_id = nic.subnet_id.clone();
        if let Some(s) = self.subnets.get_mut(&subnet_id) {
            s.used_v6.insert(host);
        }
        if let Some(nic) = self.nics.get_mut(nic_id) {
            nic.ipv6.push(IpEntry {
                address: host,
                state: IpState::Available,
            });
            nic.ipv6_cidr = Some(block);
        }
        Ok((block, host))
    }

    /// Zenlayer: releases the NIC's IPv6.
    pub fn unassign_ipv6_block(&mut self, nic_id: &str) -> Result<(), Rule> {
        let nic = self.mutable_nic(nic_id, None)?;
        let Some(entry) = nic.ipv6.first() else {
            return Err(Rule::IpNotOnNic("IPv6".into()));
        };
        let (subnet_id, host) = (nic.subnet_id.clone(), entry.address);
        if let Some(s) = self.subnets.get_mut(&subnet_id) {
            s.used_v6.remove(&host);
        }
        if let Some(nic) = self.nics.get_mut(nic_id) {
            nic.ipv6.clear();
            nic.ipv6_cidr = None;
        }
        Ok(())
    }

    /// Tencent: adds IPv6 addresses (explicit and/or counted).
    pub fn assign_ipv6(
        &mut self,
        nic_id: &str,
        region: Option<&str>,
        explicit: &[Ipv6Addr],
        count: usize,
        run_async: Async<'_>,
    ) -> Result<Vec<Ipv6Addr>, Rule> {
        if explicit.is_empty() && count == 0 {
            return Err(Rule::NothingRequested);
        }
        let nic = self.mutable_nic(nic_id, region)?;
        let subnet = self.subnets.get(&nic.subnet_id).ok_or(Rule::NicNotFound)?;
        if subnet.ipv6_cidr.is_none() {
            return Err(Rule::Ipv6StackNotSupported);
        }
        for ip in explicit {
            subnet.check_ipv6(*ip, true)?;
        }
        if nic
            .ipv6
            .len()
            .saturating_add(explicit.len())
            .saturating_add(count)
            > nic.ipv6_quota as usize
        {
            return Err(Rule::Ipv6Quota(nic.ipv6_quota));
        }
        let mut chosen = explicit.to_vec();
        if count > 0 {
            chosen.extend(
                subnet
                    .free_ipv6s(count, explicit)
                    .ok_or(Rule::Ipv6Exhausted)?,
            );
        }
        let subnet_id = nic.subnet_id.clone();
        if let Some(s) = self.subnets.get_mut(&subnet_id) {
            s.used_v6.extend(chosen.iter().copied());
        }
        if let Some(nic) = self.nics.get_mut(nic_id) {
            nic.ipv6.extend(chosen.iter().map(|a| IpEntry {
                address: *a,
                state: IpState::Pending,
            }));
        }
        let effect = Effect::AssignIpv6 {
            addresses: chosen.clone(),
        };
        self.start_task(
            run_async.request_id,
            run_async.action,
            nic_id,
            effect,
            run_async.fail,
            true,
        );
        Ok(chosen)
    }

    /// Tencent: removes IPv6 addresses.
    pub fn unassign_ipv6(
        &mut self,
        nic_id: &str,
        region: Option<&str>,
        addresses: &[Ipv6Addr],
        run_async: Async<'_>,
    ) -> Result<(), Rule> {
        if addresses.is_empty() {
            return Err(Rule::NothingRequested);
        }
        let nic = self.mutable_nic(nic_id, region)?;
        for ip in addresses {
            if !nic
                .ipv6
                .iter()
                .any(|e| e.address == *ip && e.state == IpState::Available)
            {
                return Err(Rule::IpNotOnNic(ip.to_string()));
            }
        }
        if let Some(nic) = self.nics.get_mut(nic_id) {
            mark(&mut nic.ipv6, addresses, IpState::Deleting);
        }
        let effect = Effect::UnassignIpv6 {
            addresses: addresses.to_vec(),
        };
        self.start_task(
            run_async.request_id,
            run_async.action,
            nic_id,
            effect,
            run_async.fail,
            true,
        );
        Ok(())
    }

    /// Attaches a NIC; it is `ATTACHING` until the task completes.
    /// Zenlayer wants the same region and a RUNNING instance; Tencent the same
    /// zone and a RUNNING or STOPPED instance.
    pub fn attach(
        &mut self,
        nic_id: &str,
        instance_id: &str,
        region: Option<&str>,
        run_async: Async<'_>,
    ) -> Result<(), Rule> {
        let tencent = self.vendor == Vendor::Tencent;
        let nic = self.nic_in(nic_id, region)?;
        let inst = self
            .instances
            .get(instance_id)
            .filter(|i| region.is_none_or(|r| i.region == r))
            .ok_or(Rule::InstanceNotFound)?;
        if nic.is_attached() {
            return Err(Rule::NicAttached);
        }
        if nic.busy_task.is_some() {
            return Err(Rule::MutexTask);
        }
        if nic.status != "AVAILABLE" {
            return Err(Rule::NicStatus(nic.status.clone()));
        }
        if tencent {
            if nic.zone.as_deref() != Some(inst.zone.as_str()) {
                return Err(Rule::ZoneMismatch);
            }
        } else if nic.region != inst.region {
            return Err(Rule::RegionMismatch);
        }
        let status_ok = inst.status == "RUNNING" || (tencent && inst.status == "STOPPED");
        if !status_ok {
            return Err(Rule::InstanceStatus(inst.status.clone()));
        }
        let attached = self
            .nics
            .values()
            .filter(|n| n.instance_id.as_deref() == Some(instance_id))
            .count();
        if attached as u32 >= inst.nic_limit {
            return Err(Rule::InstanceNicLimit(inst.nic_limit));
        }
        if let Some(nic) = self.nics.get_mut(nic_id) {
            nic.status = "ATTACHING".into();
            nic.instance_id = Some(instance_id.to_string());
        }
        let effect = Effect::Attach {
            instance_id: instance_id.to_string(),
        };
        self.start_task(
            run_async.request_id,
            run_async.action,
            nic_id,
            effect,
            run_async.fail,
            tencent,
        );
        Ok(())
    }

    /// Detaches a NIC; it is `DETACHING` until the task completes.
    /// `instance_id` (Tencent) must name the instance the NIC is attached to.
    pub fn detach(
        &mut self,
        nic_id: &str,
        instance_id: Option<&str>,
        region: Option<&str>,
        run_async: Async<'_>,
    ) -> Result<(), Rule> {
        let tencent = self.vendor == Vendor::Tencent;
        let nic = self.nic_in(nic_id, region)?;
        if let Some(want) = instance_id
            && !self.instances.contains_key(want)
        {
            return Err(Rule::InstanceNotFound);
        }
        let Some(attached_to) = nic.instance_id.clone() else {
            return Err(Rule::NicNotAttached);
        };
        if instance_id.is_some_and(|want| want != attached_to) {
            return Err(Rule::NicNotAttached);
        }
        if nic.busy_task.is_some() {
            return Err(Rule::MutexTask);
        }
        if nic.status != "USED" {
            return Err(Rule::NicStatus(nic.status.clone()));
        }
        if nic.primary {
            return Err(Rule::PrimaryNicDetach);
        }
        if let Some(inst) = self.instances.get(&attached_to) {
            let status_ok = inst.status == "RUNNING" || (tencent && inst.status == "STOPPED");
            if !status_ok {
                return Err(Rule::InstanceStatus(inst.status.clone()));
            }
        }
        if let Some(nic) = self.nics.get_mut(nic_id) {
            nic.status = "DETACHING".into();
        }
        let effect = Effect::Detach {
            instance_id: attached_to,
        };
        self.start_task(
            run_async.request_id,
            run_async.action,
            nic_id,
            effect,
            run_async.fail,
            tencent,
        );
        Ok(())
    }
}

/// Both clouds; the whole simulated world behind one lock.
#[derive(Debug, Clone)]
pub struct WorldState {
    pub zenlayer: Cloud,
    pub tencent: Cloud,
}

impl WorldState {
    pub fn advance(&mut self, now: Instant) {
        self.zenlayer.advance(now);
        self.tencent.advance(now);
    }
}
