//! The invariants every reliability test ends with, in one checker over the
//! simulated cloud, the API server and the controller's captured logs:
//!
//! - **I1** once quiet, every managed NIC carries what its claim's status
//!   owns, and a Ready claim owns what its spec asks for;
//! - **I2** no address is on two NICs, and none belongs to two claims;
//! - **I3** no address nicip assigned is left without an owning claim (a
//!   claim deleted under `Retain` keeps owning its addresses);
//! - **I4** every deleted claim is gone (its finalizer removed), and under
//!   `Release` what it ever owned is off its NIC;
//! - **I5** no secret material appears in the controller's logs, Events,
//!   claims, ProviderConfigs, metrics or error messages.
//!
//! "Nicip assigned" is told from the world as it was when the checker was
//! made: addresses on a NIC then, or declared with [`Invariants::foreign`]
//! later, are somebody else's unless a claim adopted them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use nicip::api::v1alpha1::{DeletionPolicy, ManagementPolicy, NicIpClaim, ProviderConfig};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use super::{Env, TC_SECRET, ZL_SECRET, is_ready, owned4, owned6};

/// At most this much of the controller's logs is kept per test binary; the
/// oldest half is dropped beyond it.
const LOG_CAP: usize = 256 << 20;

fn log_buffer() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| Mutex::new(Vec::new()))
}

#[derive(Clone, Copy)]
struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut logs = log_buffer().lock().unwrap_or_else(|e| e.into_inner());
        if logs.len() + buf.len() > LOG_CAP {
            let half = logs.len() / 2;
            logs.drain(..half);
        }
        logs.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The controller's side of the process: its own modules, the cloud
/// clients, operations and kube-rs, but not the simulators that run in the
/// same test process (they hold the secrets by design).
fn controller_target(target: &str) -> bool {
    let under = |m: &str| target == m || target.starts_with(&format!("{m}::"));
    under("nicip::controller")
        || under("nicip::cloud")
        || under("nicip::ops")
        || under("nicip::signing")
        || under("kube")
        || under("kube_client")
        || under("kube_runtime")
        || under("reqwest")
}

/// Installs, once per test binary, a subscriber that captures the
/// controller's logs at debug level (for I5) and, when `RUST_LOG` is set,
/// also prints what it selects to the test's output.
pub fn capture_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let capture = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| Capture)
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                *m.level() <= tracing::Level::DEBUG && controller_target(m.target())
            }));
        let print = std::env::var_os("RUST_LOG").map(|_| {
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(tracing_subscriber::EnvFilter::from_default_env())
        });
        let _ = tracing_subscriber::registry()
            .with(capture)
            .with(print)
            .try_init();
    });
}

/// What the controller has logged so far in this test binary.
pub fn captured_logs() -> String {
    let logs = log_buffer().lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&logs).into_owned()
}

/// Every claim the checker has seen, by uid: its latest state, and for
/// deleted ones the state they were deleted in.
#[derive(Default)]
struct Seen {
    live: BTreeMap<String, NicIpClaim>,
    deleted: BTreeMap<String, NicIpClaim>,
    /// (NIC, address) pairs each claim ever owned.
    ever_owned: BTreeMap<String, BTreeSet<(String, String)>>,
}

impl Seen {
    fn record(&mut self, c: NicIpClaim) {
        let Some(uid) = c.uid() else { return };
        let owned = self.ever_owned.entry(uid.clone()).or_default();
        for a in owned4(&c).into_iter().chain(owned6(&c)) {
            owned.insert((c.spec.nic_id.clone(), a));
        }
        self.live.insert(uid, c);
    }
}

/// Addresses by NIC.
type Addresses = BTreeMap<String, BTreeSet<String>>;

pub struct Invariants {
    secrets: Mutex<Vec<String>>,
    foreign: Mutex<BTreeMap<String, BTreeSet<String>>>,
    seen: Arc<Mutex<Seen>>,
    watch: tokio::task::JoinHandle<()>,
}

impl Drop for Invariants {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

impl Invariants {
    /// Snapshots the world's addresses (all foreign so far) and starts
    /// following every claim.
    pub async fn new(env: &Env) -> Invariants {
        capture_logs();
        let mut foreign: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (nic, addrs) in cloud_addresses(env) {
            foreign.entry(nic).or_default().extend(addrs);
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
        let api: Api<NicIpClaim> = Api::all(env.client.clone());
        let watch = tokio::spawn(follow(api, seen.clone(), synced_tx));
        tokio::time::timeout(Duration::from_secs(20), synced_rx)
            .await
            .expect("the claim watch lists in time")
            .expect("the claim watch starts");
        Invariants {
            secrets: Mutex::new(vec![ZL_SECRET.to_string(), TC_SECRET.to_string()]),
            foreign: Mutex::new(foreign),
            seen,
            watch,
        }
    }

    /// Declares an address put on a NIC by someone other than nicip.
    pub fn foreign(&self, nic: &str, address: &str) {
        self.foreign
            .lock()
            .unwrap()
            .entry(nic.to_string())
            .or_default()
            .insert(address.to_string());
    }

    /// Declares more secret material (e.g. rotated credentials) for I5.
    pub fn secret(&self, secret: &str) {
        self.secrets.lock().unwrap().push(secret.to_string());
    }

    /// Waits until the controller is quiet, then asserts I1–I5, naming every
    /// violation.
    pub async fn check(&self, env: &Env) {
        let violations = self.violations(env).await;
        assert!(
            violations.is_empty(),
            "invariants violated:\n  {}",
            violations.join("\n  ")
        );
    }

    /// Waits until quiet (60 s at most) and returns the violations of I1–I5.
    pub async fn violations(&self, env: &Env) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(why) = quiet(env, Duration::from_secs(60)).await {
            out.push(format!("never quiet: {why}"));
        }
        let (deleting, claims): (Vec<_>, Vec<_>) = env
            .claims_everywhere()
            .await
            .into_iter()
            .partition(|c| c.metadata.deletion_timestamp.is_some());
        for c in &deleting {
            out.push(format!(
                "I4: {} is being deleted and keeps its finalizer",
                key(c)
            ));
        }
        // The watch may trail the list just made; let it catch up with it.
        for _ in 0..200 {
            let caught_up = {
                let seen = self.seen.lock().unwrap();
                claims.iter().all(|c| {
                    seen.live
                        .get(&c.uid().unwrap_or_default())
                        .is_some_and(|s| s.resource_version() == c.resource_version())
                })
            };
            if caught_up {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let cloud = cloud_addresses(env);
        {
            let seen = self.seen.lock().unwrap();
            self.ownership(env, &claims, &cloud, &seen, &mut out);
        }
        self.secrets_absent(env, &mut out).await;
        out
    }

    fn ownership(
        &self,
        env: &Env,
        claims: &[NicIpClaim],
        cloud: &BTreeMap<String, BTreeSet<String>>,
        seen: &Seen,
        out: &mut Vec<String>,
    ) {
        let none = BTreeSet::new();
        let on = |nic: &str| cloud.get(nic).unwrap_or(&none);
        // I2, in the cloud: an address on two NICs.
        let mut nic_of: BTreeMap<&str, &str> = BTreeMap::new();
        for (nic, addrs) in cloud {
            for a in addrs {
                if let Some(other) = nic_of.insert(a, nic) {
                    out.push(format!("I2: {a} is on {other} and on {nic}"));
                }
            }
        }
        // I2, in the API server: an address owned by two claims.
        let mut owner: BTreeMap<String, String> = BTreeMap::new();
        for c in claims {
            for a in owned4(c).into_iter().chain(owned6(c)) {
                if let Some(other) = owner.insert(a.clone(), key(c)) {
                    out.push(format!("I2: {a} is owned by {other} and by {}", key(c)));
                }
            }
        }
        // I1: the cloud carries what is owned, and Ready means as specified.
        for c in claims {
            let nic = c.spec.nic_id.as_str();
            let (v4, v6) = (owned4(c), owned6(c));
            for a in v4.iter().chain(&v6) {
                if !on(nic).contains(a) {
                    out.push(format!(
                        "I1: {} owns {a}, which {nic} does not carry",
                        key(c)
                    ));
                }
            }
            if c.spec.management_policy == ManagementPolicy::ObserveOnly || !is_ready(c) {
                continue;
            }
            if let Some(ipv4) = &c.spec.ipv4 {
                if let Some(list) = &ipv4.addresses {
                    let want: BTreeSet<String> = list.iter().cloned().collect();
                    if want != v4 {
                        out.push(format!(
                            "I1: {} is Ready owning {v4:?}, spec {want:?}",
                            key(c)
                        ));
                    }
                }
                if let Some(n) = ipv4.count
                    && v4.len() != n as usize
                {
                    out.push(format!(
                        "I1: {} is Ready owning {} IPv4, spec {n}",
                        key(c),
                        v4.len()
                    ));
                }
            }
            let want6 = c.spec.ipv6.as_ref().map_or(0, |s| s.count as usize);
            if v6.len() != want6 {
                out.push(format!(
                    "I1: {} is Ready owning {} IPv6, spec {want6}",
                    key(c),
                    v6.len()
                ));
            }
            if let Some(att) = &c.spec.attachment {
                let instance = env.instance_of(nic);
                if instance.as_deref() != Some(att.instance_id.as_str()) {
                    out.push(format!(
                        "I1: {} is Ready, {nic} is attached to {instance:?}, spec {}",
                        key(c),
                        att.instance_id
                    ));
                }
            }
        }
        // I3: every address nicip put on a NIC has an owner, or was retained:
        // owned by a claim when it was deleted under `Retain` (not every
        // address it ever owned: one it released before may since have been
        // assigned, and leaked, by another claim).
        let mut retained: BTreeSet<(String, String)> = BTreeSet::new();
        for c in seen.deleted.values() {
            if c.spec.deletion_policy == DeletionPolicy::Retain {
                retained.extend(
                    owned4(c)
                        .into_iter()
                        .chain(owned6(c))
                        .map(|a| (c.spec.nic_id.clone(), a)),
                );
            }
        }
        let live_owned: BTreeSet<(String, String)> = claims
            .iter()
            .flat_map(|c| {
                owned4(c)
                    .into_iter()
                    .chain(owned6(c))
                    .map(|a| (c.spec.nic_id.clone(), a))
            })
            .collect();
        for (nic, addrs) in cloud {
            let foreign = self.foreign.lock().unwrap();
            let foreign = foreign.get(nic).unwrap_or(&none);
            for a in addrs {
                let pair = (nic.clone(), a.clone());
                if !foreign.contains(a) && !live_owned.contains(&pair) && !retained.contains(&pair)
                {
                    out.push(format!(
                        "I3: {a} on {nic} was assigned by nicip and has no owner"
                    ));
                }
            }
        }
        // I4: deleted claims are gone, and what a Release claim owned is off,
        // unless another claim owns it now or retained it.
        for (uid, c) in &seen.deleted {
            if c.spec.deletion_policy != DeletionPolicy::Release
                || c.spec.management_policy == ManagementPolicy::ObserveOnly
            {
                continue;
            }
            for (nic, a) in seen.ever_owned.get(uid).into_iter().flatten() {
                let pair = (nic.clone(), a.clone());
                if on(nic).contains(a) && !live_owned.contains(&pair) && !retained.contains(&pair) {
                    out.push(format!(
                        "I4: {} was deleted under Release and {a} is still on {nic}",
                        key(c)
                    ));
                }
            }
        }
    }

    async fn secrets_absent(&self, env: &Env, out: &mut Vec<String>) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let secrets = self.secrets.lock().unwrap().clone();
        let needles: Vec<(String, String)> = secrets
            .iter()
            .flat_map(|s| [(s.clone(), s.clone()), (s.clone(), b64.encode(s))])
            .collect();
        let mut places: Vec<(&str, String)> =
            vec![("logs", captured_logs()), ("metrics", env.metrics())];
        for path in [
            "/apis/events.k8s.io/v1/events",
            "/api/v1/events",
            "/apis/nicip.io/v1alpha1/nicipclaims",
            "/apis/nicip.io/v1alpha1/providerconfigs",
        ] {
            places.push((path, env.get_text(path).await));
        }
        for (place, text) in &places {
            for (secret, form) in &needles {
                if text.contains(form.as_str()) {
                    let shown = &secret[..secret.len().min(4)];
                    out.push(format!("I5: secret {shown}… appears in {place}"));
                }
            }
        }
    }
}

fn key(c: &NicIpClaim) -> String {
    format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any())
}

/// Every NIC's addresses (primary, secondary IPv4, IPv6) in the simulated
/// cloud, the primary address excluded from ownership but kept for I2.
fn cloud_addresses(env: &Env) -> Addresses {
    let w = env.cloud.world();
    let mut out = BTreeMap::new();
    for nic in w.zenlayer.nics.values().chain(w.tencent.nics.values()) {
        let addrs: BTreeSet<String> = std::iter::once(nic.primary_ipv4.to_string())
            .chain(nic.secondary_ipv4.iter().map(|e| e.address.to_string()))
            .chain(nic.ipv6.iter().map(|e| e.address.to_string()))
            .collect();
        out.insert(nic.id.clone(), addrs);
    }
    out
}

async fn follow(
    api: Api<NicIpClaim>,
    seen: Arc<Mutex<Seen>>,
    synced: tokio::sync::oneshot::Sender<()>,
) {
    let mut synced = Some(synced);
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
    while let Some(event) = events.next().await {
        let Ok(event) = event else { continue };
        let mut seen = seen.lock().unwrap();
        match event {
            watcher::Event::Apply(c) | watcher::Event::InitApply(c) => seen.record(c),
            watcher::Event::Delete(c) => {
                seen.record(c.clone());
                if let Some(uid) = c.uid() {
                    seen.live.remove(&uid);
                    seen.deleted.insert(uid, c);
                }
            }
            watcher::Event::Init => {}
            watcher::Event::InitDone => {
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
        }
    }
}

/// Settled: every claim is deleted or has a verdict (Ready or Stalled) for
/// its generation with no operation pending, and neither the claims nor the
/// cloud's addresses changed for half a second.
async fn quiet(env: &Env, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Option<(Vec<String>, Addresses)> = None;
    loop {
        let claims = env.claims_everywhere().await;
        let unsettled: Vec<String> = claims
            .iter()
            .filter(|c| !settled(c))
            .map(|c| {
                format!(
                    "{}: {}",
                    key(c),
                    serde_json::to_string(&c.status).unwrap_or_default()
                )
            })
            .collect();
        let state = (
            claims
                .iter()
                .map(|c| c.resource_version().unwrap_or_default())
                .collect(),
            cloud_addresses(env),
        );
        if unsettled.is_empty() && last.as_ref() == Some(&state) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(if unsettled.is_empty() {
                "claims or the cloud kept changing".into()
            } else {
                unsettled.join("; ")
            });
        }
        last = unsettled.is_empty().then_some(state);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn settled(c: &NicIpClaim) -> bool {
    if c.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let verdict = |t: &str| {
        super::condition(c, t)
            .is_some_and(|x| x.status == "True" && x.observed_generation == c.metadata.generation)
    };
    let pending = c
        .status
        .as_ref()
        .is_some_and(|s| s.pending_operation.is_some());
    !pending && (verdict("Ready") || verdict("Stalled"))
}

impl Env {
    /// Every claim in every namespace.
    pub async fn claims_everywhere(&self) -> Vec<NicIpClaim> {
        Api::<NicIpClaim>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .expect("list claims")
            .items
    }

    /// Every ProviderConfig.
    pub async fn provider_configs(&self) -> Vec<ProviderConfig> {
        Api::<ProviderConfig>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .expect("list ProviderConfigs")
            .items
    }

    /// The API server's answer to a GET, or "" when it has no such path.
    pub async fn get_text(&self, path: &str) -> String {
        let req = axum::http::Request::get(path)
            .body(Vec::new())
            .expect("request");
        self.client.request_text(req).await.unwrap_or_default()
    }
}
