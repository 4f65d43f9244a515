//! The controller benchmark's core, shared by `cargo bench --bench controller`
//! and `tests/bench_smoke.rs`.
//!
//! Three processes of the real binary: `nicip kubesim`, `nicip cloudsim` (a
//! generated world with the documented Tencent rate limits switched on, and
//! the same 100/s on Zenlayer, which publishes none) and `nicip controller`.
//! The harness talks to the API server through kube-rs, reads the simulator's
//! audit log (`--audit-log`, JSON lines, read as it grows) and the
//! controller's `/proc/<pid>/status` and `/proc/<pid>/stat`. Kubernetes writes
//! are counted from a watch on the claims: every stored change of a claim is
//! one watch event.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use nicip::api::v1alpha1::{NicIpClaim, ProviderConfig};
use serde::Serialize;
use serde_json::{Value, json};

/// The documented Tencent limits the world and the ProviderConfigs use.
const RATE: f64 = 100.0;
const TASK_RATE: f64 = 20.0;
/// Tencent's documented `AssignIpv6Addresses` limit.
const IPV6_RATE: f64 = 20.0;
/// Simulated completion time of asynchronous work (Tencent tasks).
const ASYNC_LATENCY_MS: u64 = 100;
const ADDRESSES: u32 = 10;
const SCALED: u32 = 5;
const PER_CALL: u32 = 10;
const NICS_PER_SUBNET: usize = 256;
const SECRETS_NS: &str = "nicip-system";
const TC_ID: &str = "AKIDbench0000000000001";
const TC_KEY: &str = "bench-tencent-secret";
const ZL_ID: &str = "bench-zenlayer-key";
const ZL_KEY: &str = "bench-zenlayer-secret";

pub struct Config {
    /// Claims per provider, one run each.
    pub sizes: Vec<usize>,
    /// The `nicip` binary.
    pub bin: PathBuf,
    /// The controller's `--resync`.
    pub resync: Duration,
    /// The controller's `--concurrency`.
    pub concurrency: u16,
    /// The controller's `--log-level`.
    pub log_level: String,
    /// Keep each run's logs, world and audit log in `<keep>/<size>-<providers>/`.
    pub keep: Option<PathBuf>,
    /// The providers to run (`tencent`, `zenlayer`, `legacy`); all if `None`.
    pub providers: Option<Vec<String>>,
    /// All providers' claims in one controller, rather than one run each.
    pub together: bool,
    /// Run the IPv6 burst (at 10,000 claims it takes 500 s on Tencent's 20/s).
    pub ipv6: bool,
}

/// A run's files: in a temporary directory, or kept.
struct Dir {
    _tmp: Option<tempfile::TempDir>,
    root: PathBuf,
}

impl Dir {
    fn path(&self) -> &Path {
        &self.root
    }
}

#[derive(Clone, Copy)]
struct Prov {
    name: &'static str,
    kind: &'static str,
    protocol: &'static str,
    assign: &'static str,
    unassign: &'static str,
    /// NICs per describe call.
    page: usize,
    /// Simulated latency of an assignment (0: the call is synchronous).
    latency_s: f64,
    /// The IPv6 assign action and its configured rate; `None` where the API has no IPv6.
    ipv6: Option<Ipv6Action>,
}

#[derive(Clone, Copy)]
struct Ipv6Action {
    assign: &'static str,
    rate: f64,
    /// Simulated latency of an IPv6 assignment (0: the call is synchronous).
    latency_s: f64,
}

const PROVIDERS: [Prov; 3] = [
    Prov {
        name: "tencent",
        kind: "Tencent",
        protocol: "tencent",
        assign: "AssignPrivateIpAddresses",
        unassign: "UnassignPrivateIpAddresses",
        page: 100,
        latency_s: ASYNC_LATENCY_MS as f64 / 1000.0,
        ipv6: Some(Ipv6Action {
            assign: "AssignIpv6Addresses",
            rate: IPV6_RATE,
            latency_s: ASYNC_LATENCY_MS as f64 / 1000.0,
        }),
    },
    Prov {
        name: "zenlayer",
        kind: "Zenlayer",
        protocol: "zenlayer",
        assign: "BatchAssignNetworkInterfaceIpv4",
        unassign: "UnassignNetworkInterfaceIpv4",
        page: 100,
        latency_s: 0.0,
        // Zenlayer publishes no limits: the same rate as its other actions.
        ipv6: Some(Ipv6Action {
            assign: "AssignNetworkInterfaceIpv6",
            rate: RATE,
            latency_s: 0.0,
        }),
    },
    Prov {
        name: "legacy",
        kind: "TencentLegacy",
        protocol: "tencentLegacy",
        assign: "AssignPrivateIpAddresses",
        unassign: "UnassignPrivateIpAddresses",
        page: 50,
        latency_s: ASYNC_LATENCY_MS as f64 / 1000.0,
        // The legacy API 2.0 has no IPv6 actions.
        ipv6: None,
    },
];

const MUTATIONS: &[&str] = &[
    "BatchAssignNetworkInterfaceIpv4",
    "AssignNetworkInterfaceIpv4",
    "UnassignNetworkInterfaceIpv4",
    "AssignNetworkInterfaceIpv6",
    "UnassignNetworkInterfaceIpv6",
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "AssignIpv6Addresses",
    "UnassignIpv6Addresses",
    "AttachNetworkInterface",
    "DetachNetworkInterface",
];
const THROTTLED: &[&str] = &[
    "RequestLimitExceeded",
    "LimitExceeded.ActionLimited",
    "REQUEST_LIMIT_EXCEEDED",
];

fn nic_id(p: Prov, i: usize) -> String {
    match p.name {
        "tencent" => format!("eni-t{i:07}"),
        "legacy" => format!("eni-l{i:07}"),
        _ => format!("nic-z{i:07}"),
    }
}

/// The NICs of the IPv6 burst, in subnets with IPv6.
fn nic_id_v6(p: Prov, i: usize) -> String {
    match p.name {
        "tencent" => format!("eni-v{i:07}"),
        _ => format!("nic-v{i:07}"),
    }
}

fn namespace(p: Prov) -> String {
    format!("bench-{}", p.name)
}

// ---------------------------------------------------------------- figures

#[derive(Serialize, Default, Clone, Debug)]
pub struct Calls {
    /// Successful mutating calls.
    pub mutations: usize,
    /// Σ⌈addresses/10⌉ over the claims.
    pub min_mutations: usize,
    /// Mutating calls answered with an error other than throttling (retries).
    pub failed_mutations: usize,
    pub describes: usize,
    pub task_queries: usize,
    pub task_queries_per_mutation: f64,
    pub throttled: usize,
}

#[derive(Serialize, Default, Clone, Debug)]
pub struct Burst {
    pub seconds: f64,
    pub bound_seconds: f64,
    pub efficiency: f64,
    pub calls: Calls,
    /// Kubernetes writes of the controller per claim (watch events minus the harness's own).
    pub kube_writes_per_claim: f64,
}

#[derive(Serialize, Default, Clone, Debug)]
pub struct Steady {
    pub window_seconds: f64,
    pub sweeps: usize,
    pub mutations: usize,
    pub kube_writes: u64,
    pub describes: usize,
    /// ⌈E/page⌉ per sweep.
    pub min_describes_per_sweep: usize,
}

#[derive(Serialize, Default, Clone, Debug)]
pub struct Restart {
    /// From the new process's start until every NIC was described again.
    pub seconds: f64,
    pub bound_seconds: f64,
    pub describes: usize,
    pub mutations: usize,
}

#[derive(Serialize, Default, Clone, Debug)]
pub struct ProviderFigures {
    pub burst: Burst,
    pub steady: Steady,
    pub restart: Restart,
    pub scale_down: Burst,
    /// E claims × 1 IPv6 on NICs of their own; `None` where the API has no IPv6 (legacy).
    pub ipv6_burst: Option<Burst>,
}

#[derive(Serialize, Default, Clone, Debug)]
pub struct Memory {
    pub vm_hwm_kib: u64,
    pub vm_rss_kib: u64,
}

#[derive(Serialize, Default, Clone, Debug)]
pub struct Process {
    pub idle: Memory,
    pub after_burst: Memory,
    pub steady: Memory,
    /// (RSS steady − RSS idle) ÷ all claims.
    pub bytes_per_claim: f64,
    /// Controller CPU (user+system) during the burst ÷ claims converged.
    pub cpu_seconds_per_claim: f64,
    /// Controller CPU during the steady window, in % of one core.
    pub steady_cpu_percent: f64,
    /// Kubernetes writes during the restart catch-up (all providers).
    pub restart_kube_writes: u64,
    /// Time the harness takes to list every claim (the bound's "list time").
    pub list_seconds: f64,
}

#[derive(Serialize, Default, Clone, Debug)]
pub struct Headroom {
    /// Simulator requests (all providers) per second during the burst.
    pub cloudsim_requests_per_second: f64,
    /// CPU of each process during the burst, in % of one core.
    pub cloudsim_cpu_percent: f64,
    pub kubesim_cpu_percent: f64,
    pub controller_cpu_percent: f64,
}

#[derive(Serialize, Default, Clone, Debug)]
pub struct SizeFigures {
    pub claims_per_provider: usize,
    pub concurrency: u16,
    pub resync_seconds: f64,
    pub providers: BTreeMap<String, ProviderFigures>,
    pub controller: Process,
    pub headroom: Headroom,
}

// ---------------------------------------------------------------- processes

/// A child process, killed when dropped.
struct Proc {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(bin: &Path, args: &[&str], log: PathBuf) -> anyhow::Result<Proc> {
        let file = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(bin)
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} {}", bin.display(), args.join(" ")))?;
        Ok(Proc { child, log })
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `needle` in the log, returning the text after it.
    async fn wait_log(&mut self, needle: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.log_text();
            if let Some(i) = text.find(needle) {
                return Ok(text[i + needle.len()..].to_string());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("exited with {status}:\n{text}");
            }
            if Instant::now() > deadline {
                bail!("no {needle:?} after 30 s:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

fn memory(pid: u32) -> Memory {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        vm_hwm_kib: field("VmHWM:"),
        vm_rss_kib: field("VmRSS:"),
    }
}

/// User + system CPU seconds of a process (clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = text.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

// ---------------------------------------------------------------- the audit log

struct Entry {
    protocol: String,
    action: String,
    outcome: String,
    /// NIC ids named in the parameters.
    nics: Vec<String>,
    /// Legacy paging: `offset`, when the call pages a VPC.
    offset: Option<u64>,
    /// When the harness read it (the log's own times are whole seconds).
    at: Instant,
}

struct Audit {
    file: std::fs::File,
    partial: String,
    entries: Vec<Entry>,
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

impl Audit {
    fn open(path: &Path) -> anyhow::Result<Audit> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        Ok(Audit {
            file,
            partial: String::new(),
            entries: Vec::new(),
        })
    }

    /// Reads what the simulator appended since the last call.
    fn refresh(&mut self) -> usize {
        let now = Instant::now();
        let mut buf = String::new();
        let _ = self.file.read_to_string(&mut buf);
        self.partial.push_str(&buf);
        let Some(end) = self.partial.rfind('\n') else {
            return self.entries.len();
        };
        let complete: String = self.partial.drain(..=end).collect();
        for line in complete.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            let mut nics = Vec::new();
            strings(&v["params"], &mut nics);
            nics.retain(|s| s.starts_with("eni-") || s.starts_with("nic-"));
            let offset = if v["params"].get("networkInterfaceId").is_none() {
                v["params"]["offset"]
                    .as_str()
                    .and_then(|o| o.parse().ok())
                    .or_else(|| v["params"]["offset"].as_u64())
            } else {
                None
            };
            self.entries.push(Entry {
                protocol: s("provider"),
                action: s("action"),
                outcome: s("outcome"),
                nics,
                offset,
                at: now,
            });
        }
        self.entries.len()
    }

    fn of(&self, p: Prov, from: usize) -> impl Iterator<Item = &Entry> {
        self.entries[from.min(self.entries.len())..]
            .iter()
            .filter(move |e| e.protocol == p.protocol)
    }

    fn calls(&self, p: Prov, from: usize, min_mutations: usize) -> Calls {
        let mut c = Calls {
            min_mutations,
            ..Calls::default()
        };
        for e in self.of(p, from) {
            let throttled = THROTTLED.contains(&e.outcome.as_str());
            if throttled {
                c.throttled += 1;
            }
            if MUTATIONS.contains(&e.action.as_str()) {
                if e.outcome == "Success" {
                    c.mutations += 1;
                } else if !throttled {
                    c.failed_mutations += 1;
                }
            }
            match e.action.as_str() {
                "DescribeNetworkInterfaces" => c.describes += 1,
                "DescribeVpcTaskResult" => c.task_queries += 1,
                _ => {}
            }
        }
        c.task_queries_per_mutation = ratio(c.task_queries as f64, c.mutations as f64);
        c
    }

    /// How many of the provider's `e` NICs successful describes since `from` covered.
    fn covered(&self, p: Prov, from: usize, e: usize) -> usize {
        let mut ids = HashSet::new();
        let mut offsets = HashSet::new();
        for x in self.of(p, from) {
            if x.action != "DescribeNetworkInterfaces" || x.outcome != "Success" {
                continue;
            }
            match x.offset {
                // A legacy page through the VPC: `page` NICs from `offset`.
                Some(o) if x.nics.is_empty() => {
                    offsets.insert(o);
                }
                _ => ids.extend(x.nics.iter().cloned()),
            }
        }
        (ids.len() + offsets.len() * p.page).min(e)
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

// ---------------------------------------------------------------- claims, as watched

#[derive(Default)]
struct Seen {
    /// Generation at which each claim was last seen Ready.
    ready: HashMap<String, Option<i64>>,
    /// Watch events that were changes (not initial listings).
    changes: u64,
}

fn key(c: &NicIpClaim) -> String {
    format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any())
}

fn ready_generation(c: &NicIpClaim) -> Option<i64> {
    let s = c.status.as_ref()?;
    let ready = s.conditions.iter().find(|x| x.type_ == "Ready")?;
    (ready.status == "True"
        && ready.observed_generation == c.metadata.generation
        && s.pending_operation.is_none())
    .then_some(c.metadata.generation.unwrap_or(0))
}

fn watch(client: Client, seen: Arc<Mutex<Seen>>) -> tokio::task::JoinHandle<()> {
    let api: Api<NicIpClaim> = Api::all(client);
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = stream.next().await {
            let Ok(ev) = ev else { continue };
            let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
            match ev {
                watcher::Event::Apply(c) => {
                    s.changes += 1;
                    s.ready.insert(key(&c), ready_generation(&c));
                }
                watcher::Event::InitApply(c) => {
                    s.ready.insert(key(&c), ready_generation(&c));
                }
                watcher::Event::Delete(c) => {
                    s.ready.remove(&key(&c));
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
        }
    })
}

// ---------------------------------------------------------------- the world

/// The world of a run: E NICs (and E IPv6 NICs) for each provider of the
/// run, none for the others (their ProviderConfigs are still verified).
fn world_yaml(e: usize, provs: &[Prov]) -> String {
    let n = |p: Prov| {
        if provs.iter().any(|x| x.name == p.name) {
            e
        } else {
            0
        }
    };
    let mut y = format!(
        "accounts:\n  zenlayer: [{{keyId: {ZL_ID}, keyPassword: {ZL_KEY}}}]\n  tencent: [{{secretId: {TC_ID}, secretKey: {TC_KEY}}}]\n"
    );
    let chunks = e.div_ceil(NICS_PER_SUBNET).max(1);
    let subnet = |base: u32, c: usize| {
        let a = std::net::Ipv4Addr::from(base + (c as u32) * 4096);
        format!("{a}/20")
    };
    let _ = write!(
        y,
        "zenlayer:\n  asyncLatencyMs: {ASYNC_LATENCY_MS}\n  rateLimits: {{BatchAssignNetworkInterfaceIpv4: {RATE}, UnassignNetworkInterfaceIpv4: {RATE}, DescribeNetworkInterfaces: {RATE}, AssignNetworkInterfaceIpv6: {RATE}}}\n  regions: [{{id: asia-east-1, zones: [asia-east-1a]}}]\n  vpcs: [{{id: vpc-z, region: asia-east-1}}]\n  subnets:\n"
    );
    let zl_base = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0));
    let zl_v6_base = u32::from(std::net::Ipv4Addr::new(10, 64, 0, 0));
    for c in 0..chunks {
        let _ = writeln!(
            y,
            "    - {{id: subnet-z{c}, vpc: vpc-z, cidr: {}}}\n    - {{id: subnet-zv{c}, vpc: vpc-z, cidr: {}, ipv6Cidr: '2001:db8:1:{c:x}::/64'}}",
            subnet(zl_base, c),
            subnet(zl_v6_base, c)
        );
    }
    // An empty list is `[]`: a bare `nics:` would be null.
    let nics = |count: usize| {
        if count == 0 {
            "  nics: []\n"
        } else {
            "  nics:\n"
        }
    };
    y.push_str(nics(n(PROVIDERS[1])));
    for i in 0..n(PROVIDERS[1]) {
        let _ = writeln!(
            y,
            "    - {{id: {}, subnet: subnet-z{}, ipQuota: 30}}\n    - {{id: {}, subnet: subnet-zv{}}}",
            nic_id(PROVIDERS[1], i),
            i / NICS_PER_SUBNET,
            nic_id_v6(PROVIDERS[1], i),
            i / NICS_PER_SUBNET
        );
    }
    let _ = write!(
        y,
        "tencent:\n  asyncLatencyMs: {ASYNC_LATENCY_MS}\n  rateLimits: {{AssignPrivateIpAddresses: {RATE}, UnassignPrivateIpAddresses: {RATE}, AttachNetworkInterface: {RATE}, DescribeNetworkInterfaces: {RATE}, DescribeVpcTaskResult: {TASK_RATE}, AssignIpv6Addresses: {TASK_RATE}}}\n  regions: [{{id: ap-guangzhou, zones: [ap-guangzhou-3]}}]\n  vpcs: [{{id: vpc-bencht, region: ap-guangzhou}}, {{id: vpc-benchl, region: ap-guangzhou}}]\n  subnets:\n"
    );
    let tc_base = u32::from(std::net::Ipv4Addr::new(172, 16, 0, 0));
    let lg_base = u32::from(std::net::Ipv4Addr::new(10, 128, 0, 0));
    let tc_v6_base = u32::from(std::net::Ipv4Addr::new(172, 24, 0, 0));
    for c in 0..chunks {
        let _ = writeln!(
            y,
            "    - {{id: subnet-t{c}, vpc: vpc-bencht, zone: ap-guangzhou-3, cidr: {}}}\n    - {{id: subnet-l{c}, vpc: vpc-benchl, zone: ap-guangzhou-3, cidr: {}}}\n    - {{id: subnet-tv{c}, vpc: vpc-bencht, zone: ap-guangzhou-3, cidr: {}, ipv6Cidr: '2001:db8:0:{c:x}::/64'}}",
            subnet(tc_base, c),
            subnet(lg_base, c),
            subnet(tc_v6_base, c)
        );
    }
    y.push_str(nics(n(PROVIDERS[0]) + n(PROVIDERS[2])));
    for (p, s) in [(PROVIDERS[0], "t"), (PROVIDERS[2], "l")] {
        for i in 0..n(p) {
            let _ = writeln!(
                y,
                "    - {{id: {}, subnet: subnet-{s}{}, ipQuota: 30}}",
                nic_id(p, i),
                i / NICS_PER_SUBNET
            );
        }
    }
    for i in 0..n(PROVIDERS[0]) {
        let _ = writeln!(
            y,
            "    - {{id: {}, subnet: subnet-tv{}}}",
            nic_id_v6(PROVIDERS[0], i),
            i / NICS_PER_SUBNET
        );
    }
    y
}

async fn setup_kube(client: &Client, cloud: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names = PROVIDERS
        .iter()
        .map(|p| namespace(*p))
        .chain([SECRETS_NS.to_string()]);
    for ns in names {
        let body: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        namespaces
            .create(&PostParams::default(), &body)
            .await
            .with_context(|| format!("creating namespace {ns}"))?;
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), SECRETS_NS);
    for (name, id, key) in [("zenlayer", ZL_ID, ZL_KEY), ("tencent", TC_ID, TC_KEY)] {
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "stringData": {"accessKeyId": id, "accessKeySecret": key},
        }))?;
        secrets.create(&PostParams::default(), &s).await?;
    }
    let pcs: Api<ProviderConfig> = Api::all(client.clone());
    for p in PROVIDERS {
        let (endpoint, secret, mut limits) = match p.name {
            "zenlayer" => (
                format!("{cloud}/api/v2/zec"),
                "zenlayer",
                json!([
                    {"action": "BatchAssignNetworkInterfaceIpv4", "requestsPerSecond": RATE as u32},
                    {"action": "UnassignNetworkInterfaceIpv4", "requestsPerSecond": RATE as u32},
                    {"action": "DescribeNetworkInterfaces", "requestsPerSecond": RATE as u32},
                ]),
            ),
            name => (
                if name == "legacy" {
                    format!("{cloud}/v2/index.php")
                } else {
                    format!("{cloud}/")
                },
                "tencent",
                json!([
                    {"action": "AssignPrivateIpAddresses", "requestsPerSecond": RATE as u32},
                    {"action": "UnassignPrivateIpAddresses", "requestsPerSecond": RATE as u32},
                    {"action": "DescribeNetworkInterfaces", "requestsPerSecond": RATE as u32},
                    {"action": "DescribeVpcTaskResult", "requestsPerSecond": TASK_RATE as u32},
                ]),
            ),
        };
        if let (Some(v6), Some(list)) = (p.ipv6, limits.as_array_mut()) {
            list.push(json!({"action": v6.assign, "requestsPerSecond": v6.rate as u32}));
        }
        let pc = json!({
            "apiVersion": "nicip.io/v1alpha1", "kind": "ProviderConfig",
            "metadata": {"name": p.name},
            "spec": {
                "provider": p.kind, "region": "ap-guangzhou", "endpoint": endpoint,
                "credentialsSecretRef": {"name": secret}, "rateLimits": limits,
            },
        });
        pcs.patch(p.name, &PatchParams::apply("bench"), &Patch::Apply(&pc))
            .await
            .with_context(|| format!("ProviderConfig {}", p.name))?;
    }
    Ok(())
}

async fn wait_provider_configs(client: &Client) -> anyhow::Result<()> {
    let pcs: Api<ProviderConfig> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = pcs.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|pc| {
                pc.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        if ready == PROVIDERS.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("ProviderConfigs not Ready after 60 s: {:?}", list.items);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- one run

struct Run {
    bin: PathBuf,
    dir: Dir,
    kubeconfig: PathBuf,
    client: Client,
    seen: Arc<Mutex<Seen>>,
    audit: Audit,
    cloudsim: Proc,
    kubesim: Proc,
    controller: Option<Proc>,
    restarts: usize,
    resync: Duration,
    concurrency: u16,
    log_level: String,
    ipv6: bool,
}

impl Run {
    fn start_controller(&mut self) -> anyhow::Result<()> {
        let kubeconfig = self.kubeconfig.to_string_lossy().to_string();
        let resync = format!("{}ms", self.resync.as_millis());
        let concurrency = self.concurrency.to_string();
        let log = self
            .dir
            .path()
            .join(format!("controller-{}.log", self.restarts));
        self.restarts += 1;
        self.controller = Some(Proc::spawn(
            &self.bin,
            &[
                "controller",
                "--kubeconfig",
                &kubeconfig,
                "--secrets-namespace",
                SECRETS_NS,
                "--resync",
                &resync,
                "--concurrency",
                &concurrency,
                "--metrics-addr",
                "127.0.0.1:0",
                "--log-level",
                &self.log_level,
                "--identity",
                "nicip-bench",
            ],
            log,
        )?);
        Ok(())
    }

    fn controller_pid(&self) -> u32 {
        self.controller.as_ref().map_or(0, Proc::pid)
    }

    fn changes(&self) -> u64 {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).changes
    }

    /// Waits until every claim of each of `provs` is Ready at least at its
    /// target generation; returns the seconds since `t0` per provider.
    async fn wait_ready(
        &mut self,
        provs: &[Prov],
        targets: &HashMap<String, i64>,
        t0: Instant,
        timeout: Duration,
    ) -> anyhow::Result<BTreeMap<&'static str, f64>> {
        let mut done: BTreeMap<&'static str, f64> = BTreeMap::new();
        loop {
            self.audit.refresh();
            {
                let s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                for p in provs {
                    if done.contains_key(p.name) {
                        continue;
                    }
                    let prefix = format!("{}/", namespace(*p));
                    let all = targets
                        .iter()
                        .filter(|(k, _)| k.starts_with(&prefix))
                        .all(|(k, g)| s.ready.get(k).copied().flatten().is_some_and(|r| r >= *g));
                    if all {
                        done.insert(p.name, t0.elapsed().as_secs_f64());
                    }
                }
            }
            if done.len() == provs.len() {
                return Ok(done);
            }
            if t0.elapsed() > timeout {
                let log = self
                    .controller
                    .as_ref()
                    .map(Proc::log_text)
                    .unwrap_or_default();
                let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
                bail!(
                    "claims not Ready after {timeout:?} (done: {done:?}); controller log, last lines first:\n{tail}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Applies `spec` to the claims `<prefix>-<i>`, i < `e`, of each of `provs`,
    /// 32 at a time; returns each claim's generation.
    async fn apply_all(
        &self,
        provs: &[Prov],
        e: usize,
        prefix: &str,
        spec: impl Fn(Prov, usize) -> Value,
    ) -> anyhow::Result<HashMap<String, i64>> {
        let mut jobs = Vec::new();
        for &p in provs {
            for i in 0..e {
                jobs.push((p, format!("{prefix}-{i:07}"), spec(p, i)));
            }
        }
        let client = self.client.clone();
        let results: Vec<anyhow::Result<(String, i64)>> = futures::stream::iter(jobs)
            .map(|(p, name, spec)| {
                let api: Api<NicIpClaim> = Api::namespaced(client.clone(), &namespace(p));
                async move {
                    let body = json!({
                        "apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim",
                        "metadata": {"name": name}, "spec": spec,
                    });
                    let c = api
                        .patch(&name, &PatchParams::apply("bench"), &Patch::Apply(&body))
                        .await
                        .with_context(|| format!("applying {}/{name}", namespace(p)))?;
                    Ok((key(&c), c.metadata.generation.unwrap_or(0)))
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        results.into_iter().collect()
    }
}

fn claim_spec(p: Prov, i: usize, count: u32) -> Value {
    let mut spec = json!({
        "providerConfigRef": {"name": p.name},
        "nicId": nic_id(p, i),
        "ipv4": {"count": count},
    });
    if p.name == "legacy" {
        spec["vpcId"] = json!("vpc-benchl");
    }
    spec
}

fn ipv6_claim_spec(p: Prov, i: usize) -> Value {
    json!({
        "providerConfigRef": {"name": p.name},
        "nicId": nic_id_v6(p, i),
        "ipv6": {"count": 1},
    })
}

/// T*: the slowest action at its rate, plus the async latency.
fn bound(p: Prov, e: usize, addresses: u32) -> f64 {
    let mutations = e * addresses.div_ceil(PER_CALL) as usize;
    bound_of(p, e, mutations, RATE, p.latency_s)
}

/// T* of `mutations` minimal calls at `rate` and the describes of `e` NICs.
fn bound_of(p: Prov, e: usize, mutations: usize, rate: f64, latency_s: f64) -> f64 {
    let describes = e.div_ceil(p.page) as f64;
    (mutations as f64 / rate).max(describes / RATE) + latency_s
}

async fn run_size(cfg: &Config, e: usize, provs: &[Prov]) -> anyhow::Result<SizeFigures> {
    // The logs, the world and the audit log: kept for a look when asked.
    let (tmp, root) = match &cfg.keep {
        Some(parent) => {
            let root = parent.join(run_name(e, provs));
            std::fs::create_dir_all(&root)?;
            (None, root)
        }
        None => {
            let tmp = tempfile::tempdir()?;
            let root = tmp.path().to_path_buf();
            (Some(tmp), root)
        }
    };
    let dir = Dir { _tmp: tmp, root };
    let world = dir.path().join("world.yaml");
    std::fs::write(&world, world_yaml(e, provs))?;
    let audit_path = dir.path().join("audit.jsonl");
    let kubeconfig = dir.path().join("kubeconfig");

    let mut cloudsim = Proc::spawn(
        &cfg.bin,
        &[
            "cloudsim",
            "--listen",
            "127.0.0.1:0",
            "--world",
            &world.to_string_lossy(),
            "--audit-log",
            &audit_path.to_string_lossy(),
        ],
        dir.path().join("cloudsim.log"),
    )?;
    let mut kubesim = Proc::spawn(
        &cfg.bin,
        &[
            "kubesim",
            "--listen",
            "127.0.0.1:0",
            "--kubeconfig",
            &kubeconfig.to_string_lossy(),
        ],
        dir.path().join("kubesim.log"),
    )?;
    let after = cloudsim
        .wait_log("cloudsim listening on ")
        .await
        .context("cloudsim")?;
    let cloud_url: String = after.chars().take_while(|c| !c.is_whitespace()).collect();
    kubesim.wait_log("listening").await.context("kubesim")?;
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = Client::try_from(config)?;
    setup_kube(&client, &cloud_url).await?;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let watcher = watch(client.clone(), seen.clone());
    let mut run = Run {
        bin: cfg.bin.clone(),
        audit: Audit::open(&audit_path)?,
        dir,
        kubeconfig,
        client,
        seen,
        cloudsim,
        kubesim,
        controller: None,
        restarts: 0,
        resync: cfg.resync,
        concurrency: cfg.concurrency,
        log_level: cfg.log_level.clone(),
        ipv6: cfg.ipv6,
    };
    let result = measure(&mut run, e, provs).await;
    watcher.abort();
    if let Some(c) = run.controller.take() {
        c.kill().await;
    }
    let Run {
        cloudsim, kubesim, ..
    } = run;
    cloudsim.kill().await;
    kubesim.kill().await;
    result
}

async fn measure(run: &mut Run, e: usize, provs: &[Prov]) -> anyhow::Result<SizeFigures> {
    let mut out = SizeFigures {
        claims_per_provider: e,
        concurrency: run.concurrency,
        resync_seconds: run.resync.as_secs_f64(),
        ..Default::default()
    };
    let all = (e * provs.len()) as f64;
    let timeout = Duration::from_secs(60).max(Duration::from_millis(e as u64 * 1000));

    // Idle: ProviderConfigs verified, no claims.
    run.start_controller()?;
    wait_provider_configs(&run.client).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    out.controller.idle = memory(run.controller_pid());

    // Burst.
    let from = run.audit.refresh();
    let changes0 = run.changes();
    let (cpu_c, cpu_s, cpu_k) = (
        cpu_seconds(run.controller_pid()),
        cpu_seconds(run.cloudsim.pid()),
        cpu_seconds(run.kubesim.pid()),
    );
    let t0 = Instant::now();
    let targets = run
        .apply_all(provs, e, "claim", |p, i| claim_spec(p, i, ADDRESSES))
        .await?;
    let times = run.wait_ready(provs, &targets, t0, timeout).await?;
    let wall = t0.elapsed().as_secs_f64();
    out.headroom = Headroom {
        cloudsim_requests_per_second: ratio((run.audit.refresh() - from) as f64, wall),
        cloudsim_cpu_percent: 100.0 * ratio(cpu_seconds(run.cloudsim.pid()) - cpu_s, wall),
        kubesim_cpu_percent: 100.0 * ratio(cpu_seconds(run.kubesim.pid()) - cpu_k, wall),
        controller_cpu_percent: 100.0 * ratio(cpu_seconds(run.controller_pid()) - cpu_c, wall),
    };
    out.controller.cpu_seconds_per_claim = ratio(cpu_seconds(run.controller_pid()) - cpu_c, all);
    // Late answers of the burst (a task query after Ready) still count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.audit.refresh();
    let burst_writes = run.changes() - changes0;
    for &p in provs {
        let t = times[p.name];
        let b = bound(p, e, ADDRESSES);
        out.providers.entry(p.name.to_string()).or_default().burst = Burst {
            seconds: t,
            bound_seconds: b,
            efficiency: ratio(b, t),
            calls: run
                .audit
                .calls(p, from, e * ADDRESSES.div_ceil(PER_CALL) as usize),
            // The watch sees the harness's creates too: one event per claim.
            kube_writes_per_claim: ratio(burst_writes as f64 - all, all),
        };
    }
    out.controller.after_burst = memory(run.controller_pid());

    // Steady state over one resync period (plus the jitter).
    let from = run.audit.refresh();
    let changes0 = run.changes();
    let cpu0 = cpu_seconds(run.controller_pid());
    let window = run.resync.mul_f64(1.15);
    // Read the audit log as it grows: an entry's time of arrival is when it
    // is read, and sweeps are told apart by the gaps between them.
    let end = Instant::now() + window;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        run.audit.refresh();
    }
    out.controller.steady_cpu_percent = 100.0
        * ratio(
            cpu_seconds(run.controller_pid()) - cpu0,
            window.as_secs_f64(),
        );
    out.controller.steady = memory(run.controller_pid());
    out.controller.bytes_per_claim = ratio(
        (out.controller.steady.vm_rss_kib as f64 - out.controller.idle.vm_rss_kib as f64) * 1024.0,
        all,
    );
    let steady_writes = run.changes() - changes0;
    for &p in provs {
        let calls = run.audit.calls(p, from, 0);
        // Sweeps: describes more than a second apart start a new one.
        let mut sweeps = 0;
        let mut last: Option<Instant> = None;
        for x in run
            .audit
            .of(p, from)
            .filter(|x| x.action == "DescribeNetworkInterfaces")
        {
            if last.is_none_or(|l| x.at.duration_since(l) > Duration::from_secs(1)) {
                sweeps += 1;
            }
            last = Some(x.at);
        }
        let f = out.providers.entry(p.name.to_string()).or_default();
        f.steady = Steady {
            window_seconds: window.as_secs_f64(),
            sweeps,
            mutations: calls.mutations,
            kube_writes: steady_writes,
            describes: calls.describes,
            min_describes_per_sweep: e.div_ceil(p.page),
        };
    }

    // Restart: kill, start a new process, until every NIC is described again.
    let t = Instant::now();
    let listed = Api::<NicIpClaim>::all(run.client.clone())
        .list(&ListParams::default())
        .await?;
    out.controller.list_seconds = t.elapsed().as_secs_f64();
    if listed.items.len() != e * provs.len() {
        bail!("listed {} claims, expected {}", listed.items.len(), all);
    }
    if let Some(c) = run.controller.take() {
        c.kill().await;
    }
    let from = run.audit.refresh();
    let changes0 = run.changes();
    let t0 = Instant::now();
    run.start_controller()?;
    let mut times: BTreeMap<&str, f64> = BTreeMap::new();
    while times.len() < provs.len() {
        run.audit.refresh();
        for &p in provs {
            if !times.contains_key(p.name) && run.audit.covered(p, from, e) >= e {
                times.insert(p.name, t0.elapsed().as_secs_f64());
            }
        }
        if t0.elapsed() > timeout {
            bail!("after the restart, NICs not described again within {timeout:?}: {times:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Anything the catch-up would still do shows within a few async periods.
    tokio::time::sleep(Duration::from_secs(2)).await;
    run.audit.refresh();
    out.controller.restart_kube_writes = run.changes() - changes0;
    for &p in provs {
        let calls = run.audit.calls(p, from, 0);
        let f = out.providers.entry(p.name.to_string()).or_default();
        f.restart = Restart {
            seconds: times[p.name],
            bound_seconds: 2.0 * (out.controller.list_seconds + e.div_ceil(p.page) as f64 / RATE),
            describes: calls.describes,
            mutations: calls.mutations,
        };
    }

    // Scale-down burst: 10 → 5.
    let from = run.audit.refresh();
    let changes0 = run.changes();
    let t0 = Instant::now();
    let targets = run
        .apply_all(provs, e, "claim", |p, i| claim_spec(p, i, SCALED))
        .await?;
    let times = run.wait_ready(provs, &targets, t0, timeout).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.audit.refresh();
    let writes = run.changes() - changes0;
    for &p in provs {
        let t = times[p.name];
        let b = bound(p, e, ADDRESSES - SCALED);
        out.providers
            .entry(p.name.to_string())
            .or_default()
            .scale_down = Burst {
            seconds: t,
            bound_seconds: b,
            efficiency: ratio(b, t),
            calls: run.audit.calls(
                p,
                from,
                e * (ADDRESSES - SCALED).div_ceil(PER_CALL) as usize,
            ),
            kube_writes_per_claim: ratio(writes as f64 - all, all),
        };
    }

    // IPv6 burst: E new claims × 1 IPv6 per provider with IPv6, on NICs of
    // their own in subnets with IPv6, created at once.
    let v6: Vec<Prov> = provs
        .iter()
        .copied()
        .filter(|p| p.ipv6.is_some() && run.ipv6)
        .collect();
    if v6.is_empty() {
        return Ok(out);
    }
    let claims = (e * v6.len()) as f64;
    let from = run.audit.refresh();
    let changes0 = run.changes();
    let t0 = Instant::now();
    let targets = run.apply_all(&v6, e, "v6", ipv6_claim_spec).await?;
    let times = run.wait_ready(&v6, &targets, t0, timeout).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.audit.refresh();
    let writes = run.changes() - changes0;
    for p in v6 {
        let Some(a) = p.ipv6 else { continue };
        let t = times[p.name];
        // One address per claim: one call each (at most 10 per call).
        let b = bound_of(p, e, e, a.rate, a.latency_s);
        out.providers
            .entry(p.name.to_string())
            .or_default()
            .ipv6_burst = Some(Burst {
            seconds: t,
            bound_seconds: b,
            efficiency: ratio(b, t),
            calls: run.audit.calls(p, from, e),
            kube_writes_per_claim: ratio(writes as f64 - claims, claims),
        });
    }
    Ok(out)
}

/// `1000-tencent`, or `1000-legacy+tencent+zenlayer` for a run of several.
fn run_name(e: usize, provs: &[Prov]) -> String {
    let names: Vec<&str> = provs.iter().map(|p| p.name).collect();
    format!("{e}-{}", names.join("+"))
}

/// The providers of each run: each alone (one account's burst, the bound's
/// premise), or all in one controller when `together`.
fn groups(cfg: &Config) -> anyhow::Result<Vec<Vec<Prov>>> {
    let chosen: Vec<Prov> = match &cfg.providers {
        None => PROVIDERS.to_vec(),
        Some(names) => names
            .iter()
            .map(|n| {
                PROVIDERS
                    .iter()
                    .copied()
                    .find(|p| p.name == n.as_str())
                    .with_context(|| format!("unknown provider {n:?}: tencent, zenlayer or legacy"))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    Ok(if cfg.together {
        vec![chosen]
    } else {
        chosen.into_iter().map(|p| vec![p]).collect()
    })
}

/// Runs every size and provider group, printing each table as it is measured.
pub async fn run(cfg: &Config) -> anyhow::Result<Vec<SizeFigures>> {
    let groups = groups(cfg)?;
    let mut out = Vec::new();
    for &e in &cfg.sizes {
        for provs in &groups {
            let f = run_size(cfg, e, provs)
                .await
                .with_context(|| run_name(e, provs))?;
            println!("{}", table(&f));
            out.push(f);
        }
    }
    Ok(out)
}

pub fn table(f: &SizeFigures) -> String {
    let names: Vec<&str> = f.providers.keys().map(String::as_str).collect();
    let mut s = format!(
        "== {} claims × 10 IPv4 on {} (concurrency {}, resync {} s)\n",
        f.claims_per_provider,
        names.join(" + "),
        f.concurrency,
        f.resync_seconds
    );
    let _ = writeln!(
        s,
        "{:<9} {:>8} {:>7} {:>6} {:>6} {:>5} {:>5} {:>6} {:>5} {:>6} | {:>4} {:>6} {:>5} {:>5} | {:>7} {:>7} {:>5} {:>4} | {:>7} {:>7} {:>6} {:>5}",
        "provider",
        "burst s",
        "T* s",
        "T*/T",
        "mut",
        "min",
        "fail",
        "descr",
        "task%",
        "thrtl",
        "st.m",
        "st.kw",
        "st.d",
        "sw×⌈⌉",
        "rst s",
        "bound",
        "r.d",
        "r.m",
        "down s",
        "T* s",
        "T*/T",
        "d.mut"
    );
    for (name, p) in &f.providers {
        let b = &p.burst;
        let _ = writeln!(
            s,
            "{:<9} {:>8.2} {:>7.2} {:>6.3} {:>6} {:>5} {:>5} {:>6} {:>5.1} {:>6} | {:>4} {:>6} {:>5} {:>5} | {:>7.2} {:>7.2} {:>5} {:>4} | {:>7.2} {:>7.2} {:>6.3} {:>5}",
            name,
            b.seconds,
            b.bound_seconds,
            b.efficiency,
            b.calls.mutations,
            b.calls.min_mutations,
            b.calls.failed_mutations,
            b.calls.describes,
            100.0 * b.calls.task_queries_per_mutation,
            b.calls.throttled,
            p.steady.mutations,
            p.steady.kube_writes,
            p.steady.describes,
            p.steady.sweeps * p.steady.min_describes_per_sweep,
            p.restart.seconds,
            p.restart.bound_seconds,
            p.restart.describes,
            p.restart.mutations,
            p.scale_down.seconds,
            p.scale_down.bound_seconds,
            p.scale_down.efficiency,
            p.scale_down.calls.mutations,
        );
    }
    let _ = writeln!(
        s,
        "IPv6 burst, {} claims per provider × 1 IPv6 on NICs of their own:\n{:<9} {:<27} {:>6} {:>8} {:>7} {:>6} {:>6} {:>5} {:>5} {:>6} {:>5} {:>6} {:>6}",
        f.claims_per_provider,
        "provider",
        "action",
        "rate/s",
        "v6 s",
        "T* s",
        "T*/T",
        "mut",
        "min",
        "fail",
        "descr",
        "task%",
        "thrtl",
        "kw/cl"
    );
    for (name, p) in &f.providers {
        let action = PROVIDERS
            .iter()
            .find(|x| x.name == name.as_str())
            .and_then(|x| x.ipv6);
        match (&p.ipv6_burst, action) {
            (Some(b), Some(a)) => {
                let _ = writeln!(
                    s,
                    "{:<9} {:<27} {:>6.0} {:>8.2} {:>7.2} {:>6.3} {:>6} {:>5} {:>5} {:>6} {:>5.1} {:>6} {:>6.2}",
                    name,
                    a.assign,
                    a.rate,
                    b.seconds,
                    b.bound_seconds,
                    b.efficiency,
                    b.calls.mutations,
                    b.calls.min_mutations,
                    b.calls.failed_mutations,
                    b.calls.describes,
                    100.0 * b.calls.task_queries_per_mutation,
                    b.calls.throttled,
                    b.kube_writes_per_claim,
                );
            }
            (_, None) => {
                let _ = writeln!(s, "{name:<9} skipped: the API has no IPv6 actions");
            }
            (None, Some(_)) => {
                let _ = writeln!(s, "{name:<9} skipped (NICIP_BENCH_IPV6=0)");
            }
        }
    }
    let c = &f.controller;
    let _ = writeln!(
        s,
        "kube writes per claim: burst {:.2}, scale-down {:.2}; steady (all providers) {}; restart catch-up {}",
        f.providers
            .values()
            .next()
            .map_or(0.0, |p| p.burst.kube_writes_per_claim),
        f.providers
            .values()
            .next()
            .map_or(0.0, |p| p.scale_down.kube_writes_per_claim),
        f.providers
            .values()
            .next()
            .map_or(0, |p| p.steady.kube_writes),
        c.restart_kube_writes
    );
    let _ = writeln!(
        s,
        "controller MiB (HWM/RSS): idle {:.1}/{:.1}, after burst {:.1}/{:.1}, steady {:.1}/{:.1}; {:.0} B/claim; {:.2} ms CPU/claim; steady CPU {:.2} % of a core; list {:.2} s",
        c.idle.vm_hwm_kib as f64 / 1024.0,
        c.idle.vm_rss_kib as f64 / 1024.0,
        c.after_burst.vm_hwm_kib as f64 / 1024.0,
        c.after_burst.vm_rss_kib as f64 / 1024.0,
        c.steady.vm_hwm_kib as f64 / 1024.0,
        c.steady.vm_rss_kib as f64 / 1024.0,
        c.bytes_per_claim,
        1000.0 * c.cpu_seconds_per_claim,
        c.steady_cpu_percent,
        c.list_seconds
    );
    let h = &f.headroom;
    let _ = writeln!(
        s,
        "burst headroom: cloudsim {:.0} req/s at {:.0} % CPU, kubesim {:.0} % CPU, controller {:.0} % CPU",
        h.cloudsim_requests_per_second,
        h.cloudsim_cpu_percent,
        h.kubesim_cpu_percent,
        h.controller_cpu_percent
    );
    s
}
