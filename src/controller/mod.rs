//! `nicip controller`: the reconcile loop of `NicIpClaim`s and `ProviderConfig`s
//! on kube-runtime's `Controller`.
//!
//! Reading order: [`run`] wires the watches, the two controllers and the drift
//! sweep; `reconcile` is one claim's pipeline (observe → validate → plan →
//! apply → report); `plan` is its pure decision; `status` computes what is
//! written; `observe` batches the describes; `providers` turns a
//! ProviderConfig and its Secret into a cloud provider. The rules as
//! implemented are in `docs/controller.md`.

pub mod cli;
mod events;
mod observe;
pub mod plan;
mod providers;
mod reconcile;
pub mod spec;
pub mod status;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::api::v1alpha1::{NicIpClaim, ProviderConfig, ProviderConfigStatus};
use crate::cloud::{CloudError, ErrorClass, NicRef, Transport, TransportConfig};
use crate::ops::{Fence, Health, Metrics};

pub use observe::Observer;
pub use plan::{Plan, Step};
pub use providers::{Problem, Providers};

/// The finalizer on every claim the controller changes the cloud for.
pub const FINALIZER: &str = "nicip.io/release";
/// A per-claim drift-check period, e.g. `nicip.io/resync-period: 30s`.
pub const RESYNC_ANNOTATION: &str = "nicip.io/resync-period";

/// Points of a mutating call at which tests stop the controller, as a crash
/// would (before the call, after it but before its status write, after that write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Checkpoint {
    BeforeCall,
    AfterCall,
    AfterStatusWrite,
}

/// Called at every [`Checkpoint`] with the claim's `namespace/name`; a test
/// hook that never returns freezes the reconcile exactly there.
pub type CheckpointHook = Arc<dyn Fn(Checkpoint, String) -> BoxFuture<'static, ()> + Send + Sync>;

/// How the controller runs (the `nicip controller` flags).
#[derive(Clone)]
pub struct Settings {
    /// Watch claims only in this namespace.
    pub namespace: Option<String>,
    /// Label selector on claims.
    pub selector: Option<String>,
    pub concurrency: u16,
    /// Where credential Secrets are read from.
    pub secrets_namespace: String,
    /// Drift-check period.
    pub resync: Duration,
    /// First delay while the cloud completes an asynchronous call; grows.
    pub async_poll: Duration,
    /// Retry delay for problems that need a change elsewhere (credentials, a stopped instance).
    pub slow_retry: Duration,
    /// Cap of the error backoff.
    pub max_backoff: Duration,
    /// The replica's identity: Lease holder, Event reporter, cloud User-Agent.
    pub identity: String,
    pub transport: TransportConfig,
    pub checkpoint: Option<CheckpointHook>,
}

impl Settings {
    pub fn new(secrets_namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Settings {
            namespace: None,
            selector: None,
            concurrency: 64,
            secrets_namespace: secrets_namespace.into(),
            resync: Duration::from_secs(300),
            async_poll: Duration::from_millis(250),
            slow_retry: Duration::from_secs(60),
            max_backoff: Duration::from_secs(300),
            identity: identity.into(),
            transport: TransportConfig::default(),
            checkpoint: None,
        }
    }
}

/// The operations pieces the controller reports to.
#[derive(Clone)]
pub struct Handles {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Checked before every mutating cloud call.
    pub fence: Fence,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the object has no {0}")]
    Malformed(&'static str),
    #[error("encoding a request: {0}")]
    Serialize(serde_json::Error),
}

impl Error {
    /// The metric label of the error.
    pub fn class(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "Conflict",
            Error::Kube(_) => "KubernetesApi",
            Error::Malformed(_) => "Malformed",
            Error::Serialize(_) => "Internal",
        }
    }
}

/// What the controller remembers of a claim between reconciles. Losing it
/// (a restart) costs at most one repeated refusal, never safety: everything
/// that safety depends on is in the claim's status.
#[derive(Default)]
struct Memory {
    /// The resourceVersion of the last status this controller wrote or read.
    resource_version: Option<String>,
    /// The last few resourceVersions this controller wrote, read or
    /// reconciled, hashed: a watch event of one of them brings nothing new.
    known: std::collections::VecDeque<u64>,
    /// When the last reconcile asked to come back (`None`: on a change only).
    due: Option<tokio::time::Instant>,
    /// A change elsewhere (the ProviderConfig, its Secret, the NIC) asks for a
    /// reconcile before `due`.
    woken: bool,
    /// Request or task ids of calls in flight, by operation sequence.
    request_ids: HashMap<u64, String>,
    /// Consecutive in-progress requeues and error backoffs.
    waits: u32,
    errors: u32,
    /// The end of the current error backoff.
    not_before: Option<tokio::time::Instant>,
    /// Explicit addresses the cloud refused, and suspects to send one by one,
    /// for one generation.
    generation: i64,
    rejected: plan::Rejected,
    isolate: BTreeSet<Ipv4Addr>,
    /// A call refused for its input, not repeated within the generation
    /// (boxed: rare, and a fleet keeps one Memory per claim).
    refused: Option<Box<(i64, Step, CloudError, tokio::time::Instant)>>,
    unowned_reported: Option<BTreeSet<std::net::IpAddr>>,
}

/// How many resourceVersions of a claim [`Memory::known`] holds.
const KNOWN_VERSIONS: usize = 8;

/// A resourceVersion as [`Memory::known`] keeps it: eight bytes rather than a
/// string each (a collision would only skip one reconcile of a watch event,
/// and the resync sweep would still come).
fn version_key(resource_version: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    resource_version.hash(&mut h);
    h.finish()
}

impl Memory {
    fn know(&mut self, resource_version: Option<String>) {
        let Some(rv) = resource_version else { return };
        if self.knows(&rv) {
            return;
        }
        if self.known.len() >= KNOWN_VERSIONS {
            self.known.pop_front();
        }
        self.known.push_back(version_key(&rv));
    }

    fn knows(&self, resource_version: &str) -> bool {
        self.known.contains(&version_key(resource_version))
    }

    fn isolation(&mut self, generation: i64) -> (plan::Rejected, BTreeSet<Ipv4Addr>) {
        self.roll(generation);
        (self.rejected.clone(), self.isolate.clone())
    }

    fn roll(&mut self, generation: i64) {
        if self.generation != generation {
            self.generation = generation;
            self.rejected.clear();
            self.isolate.clear();
        }
    }

    fn reject(&mut self, generation: i64, address: Ipv4Addr, code: &str) {
        self.roll(generation);
        self.rejected.insert(address, code.to_string());
        self.isolate.remove(&address);
    }

    fn suspect(&mut self, generation: i64, addresses: &[Ipv4Addr]) {
        self.roll(generation);
        self.isolate.extend(addresses.iter().copied());
    }

    fn refuse(&mut self, generation: i64, step: Step, e: CloudError) {
        self.refused = Some(Box::new((generation, step, e, tokio::time::Instant::now())));
    }

    /// The error of the same call refused in this generation less than one
    /// resync period ago.
    fn refused_again(&self, generation: i64, step: &Step, period: Duration) -> Option<CloudError> {
        match self.refused.as_deref() {
            Some((g, s, e, at)) if *g == generation && s == step && at.elapsed() < period => {
                Some(e.clone())
            }
            _ => None,
        }
    }
}

pub struct Context {
    client: Client,
    settings: Settings,
    claims: Store<NicIpClaim>,
    providers: Providers,
    observer: Observer,
    recorder: events::Events,
    metrics: Arc<Metrics>,
    fence: Fence,
    memory: Mutex<HashMap<String, Memory>>,
}

impl Context {
    fn memory<R>(&self, uid: &str, f: impl FnOnce(&mut Memory) -> R) -> R {
        let mut all = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(uid.to_string()).or_default())
    }

    fn forget(&self, uid: &str, key: &str) {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
        self.metrics.forget_claim(key);
    }

    /// What is left of the claim's error backoff when nothing changed since
    /// this controller last wrote it: the watch event of its own status
    /// write must not start the retry early.
    fn backoff_left(&self, claim: &NicIpClaim) -> Option<Duration> {
        let uid = claim.uid()?;
        let rv = claim.resource_version();
        self.memory(&uid, |m| {
            let until = m
                .not_before
                .filter(|_| m.errors > 0 && m.resource_version == rv)?;
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            (!left.is_zero()).then_some(left)
        })
    }

    fn conflict(&self, claim: &NicIpClaim) -> Option<String> {
        conflict_with(claim, self.claims.state())
    }

    /// When a reconcile of `claim` would learn nothing new, what its last
    /// reconcile asked for instead: the claim is as this controller last
    /// wrote or read it (the watch event of its own write), nothing else
    /// asked for it, and the time its last reconcile asked to come back has
    /// not come. kube-runtime's scheduler replaces a requeue by the reconcile
    /// such an event triggers, so without this a poll timed for the cloud's
    /// task would run at once, find the task unfinished and back off.
    fn nothing_new(&self, claim: &NicIpClaim) -> Option<Option<Duration>> {
        let (uid, rv) = (claim.uid()?, claim.resource_version()?);
        let mut all = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        let m = all.get_mut(&uid)?;
        if std::mem::take(&mut m.woken) || !m.knows(&rv) {
            return None;
        }
        match m.due {
            None => Some(None),
            Some(due) => due
                .checked_duration_since(tokio::time::Instant::now())
                .filter(|left| !left.is_zero())
                .map(Some),
        }
    }

    /// Records when the claim asked to come back, if it is still remembered.
    fn set_due(&self, uid: &str, after: Option<Duration>) {
        let mut all = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = all.get_mut(uid) {
            m.due = after.map(|d| tokio::time::Instant::now() + d);
        }
    }

    /// Asks for a reconcile of `claim` now, whatever its last one asked for.
    fn wake(&self, claim: &NicIpClaim, tx: &mpsc::UnboundedSender<ObjectRef<NicIpClaim>>) {
        if let Some(uid) = claim.uid() {
            self.memory(&uid, |m| m.woken = true);
        }
        let _ = tx.send(ObjectRef::from_obj(claim));
    }
}

/// The older claim this one conflicts with, as a condition message: two
/// claims on one NIC, or naming the same explicit address, through the same
/// ProviderConfig. The older (creationTimestamp, then UID) wins.
pub fn conflict_with(
    claim: &NicIpClaim,
    others: impl IntoIterator<Item = Arc<NicIpClaim>>,
) -> Option<String> {
    let pc = &claim.spec.provider_config_ref.name;
    let mine = explicit(claim);
    let mut key = None;
    let mut winner: Option<(Arc<NicIpClaim>, String)> = None;
    for other in others {
        // This runs over every claim at each reconcile: cheap comparisons
        // first, and nothing allocated for a claim that cannot conflict.
        if other.spec.provider_config_ref.name != *pc || other.metadata.uid == claim.metadata.uid {
            continue;
        }
        let same_nic = other.spec.nic_id == claim.spec.nic_id;
        if !same_nic && (mine.is_empty() || !lists_addresses(&other)) {
            continue;
        }
        let key = key.get_or_insert_with(|| age_key(claim));
        if age_key(&other) >= *key {
            continue;
        }
        let what = if same_nic {
            format!("NIC {}", claim.spec.nic_id)
        } else {
            let shared: Vec<String> = mine
                .intersection(&explicit(&other))
                .map(|a| a.to_string())
                .collect();
            if shared.is_empty() {
                continue;
            }
            format!("address {}", shared.join(", "))
        };
        if winner
            .as_ref()
            .is_none_or(|(w, _)| age_key(&other) < age_key(w))
        {
            winner = Some((other, what));
        }
    }
    winner.map(|(w, what)| {
        format!(
            "claim {}/{} claimed {what} through ProviderConfig {pc} first; this claim makes no cloud call until that changes",
            w.namespace().unwrap_or_default(),
            w.name_any()
        )
    })
}

/// A claim is gone: the claims it stalled with a conflict (same account,
/// same NIC or a shared explicit address) may go ahead now, so they are
/// reconciled at once instead of on their next resync.
fn wake_rivals(
    gone: &NicIpClaim,
    ctx: &Context,
    wake: &mpsc::UnboundedSender<ObjectRef<NicIpClaim>>,
) {
    let addresses = explicit(gone);
    for c in ctx.claims.state() {
        if c.spec.provider_config_ref.name == gone.spec.provider_config_ref.name
            && (c.spec.nic_id == gone.spec.nic_id
                || (!addresses.is_empty()
                    && lists_addresses(&c)
                    && !explicit(&c).is_disjoint(&addresses)))
        {
            ctx.wake(&c, wake);
        }
    }
}

fn lists_addresses(claim: &NicIpClaim) -> bool {
    claim
        .spec
        .ipv4
        .as_ref()
        .and_then(|v| v.addresses.as_ref())
        .is_some_and(|list| !list.is_empty())
}

fn explicit(claim: &NicIpClaim) -> BTreeSet<Ipv4Addr> {
    claim
        .spec
        .ipv4
        .as_ref()
        .and_then(|v| v.addresses.as_ref())
        .map(|list| list.iter().filter_map(|a| a.parse().ok()).collect())
        .unwrap_or_default()
}

fn age_key(claim: &NicIpClaim) -> (i64, String) {
    (
        claim
            .creation_timestamp()
            .map(|t| t.0.as_second())
            .unwrap_or(i64::MAX),
        claim.uid().unwrap_or_default(),
    )
}

/// A duration with ±10 % jitter, so that requeues of many claims spread out.
pub(crate) fn jitter(d: Duration) -> Duration {
    let factor: f64 = rand::random_range(0.9..1.1);
    d.mul_f64(factor)
}

fn error_policy(claim: Arc<NicIpClaim>, error: &Error, ctx: Arc<Context>) -> Action {
    let uid = claim.uid().unwrap_or_default();
    let n = ctx.memory(&uid, |m| {
        m.errors = m.errors.saturating_add(1);
        m.errors
    });
    let delay = match error {
        // Someone wrote the object since it was read: read it again soon.
        Error::Kube(kube::Error::Api(s)) if s.code == 409 => Duration::from_millis(500),
        _ => Duration::from_secs(1)
            .saturating_mul(1u32 << n.min(8))
            .min(ctx.settings.max_backoff),
    };
    warn!(claim = %claim.name_any(), error = %error, retry_in = ?delay, "reconcile failed");
    let delay = jitter(delay);
    ctx.set_due(&uid, Some(delay));
    Action::requeue(delay)
}

/// Runs the controller until `shutdown` resolves: in-flight reconciles finish
/// (recording their pending operations), then it returns.
pub async fn run(
    client: Client,
    settings: Settings,
    handles: Handles,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut transport_config = settings.transport.clone();
    transport_config.user_agent = format!(
        "nicip/{} ({})",
        env!("CARGO_PKG_VERSION"),
        settings.identity
    );
    let transport = Transport::new(transport_config)?.with_metrics(handles.metrics.clone());

    // Claims: watched untyped and converted one by one, so that one object
    // that does not decode is logged and skipped instead of failing the list.
    let resource = ApiResource::erase::<NicIpClaim>(&());
    let claims_api: Api<DynamicObject> = match &settings.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let mut claim_watch = watcher::Config::default();
    if let Some(selector) = &settings.selector {
        claim_watch = claim_watch.labels(selector);
    }
    let (claims, claims_writer) = reflector::store::<NicIpClaim>();
    let typed = watcher(claims_api, claim_watch)
        .default_backoff()
        .filter_map(|event| async move {
            match event {
                Ok(e) => typed_event(e).map(Ok),
                Err(e) => Some(Err(e)),
            }
        });
    let (claim_tx, claim_rx) = mpsc::unbounded_channel();
    let (wake_tx, wake_rx) = mpsc::unbounded_channel::<ObjectRef<NicIpClaim>>();
    // The context is made below, from the store this feed fills; a delete
    // seen before then has no rival to wake yet.
    let rivals_ctx: Arc<std::sync::OnceLock<Arc<Context>>> = Arc::default();
    let (rivals, rivals_wake) = (rivals_ctx.clone(), wake_tx.clone());
    let claim_feed = reflector::reflector(claims_writer, typed)
        .inspect(move |e| {
            if let (Ok(watcher::Event::Delete(gone)), Some(ctx)) = (e, rivals.get()) {
                wake_rivals(gone, ctx, &rivals_wake);
            }
        })
        .applied_objects()
        .for_each(move |r| {
            match r {
                Ok(c) => {
                    let _ = claim_tx.send(Ok(c));
                }
                Err(e) => warn!(error = %e, "watching NicIpClaims"),
            }
            futures::future::ready(())
        });

    let (configs, configs_writer) = reflector::store::<ProviderConfig>();
    let configs_api: Api<ProviderConfig> = Api::all(client.clone());
    // The controller below waits on this store's readiness itself, and a
    // kube-runtime store wakes only one waiter: this flag is ours.
    let (configs_listed, mut configs_ready) = tokio::sync::watch::channel(false);
    let config_stream = reflector::reflector(
        configs_writer,
        watcher(configs_api, watcher::Config::default())
            .default_backoff()
            .inspect(move |e| {
                if matches!(e, Ok(watcher::Event::InitDone)) {
                    let _ = configs_listed.send(true);
                }
            }),
    )
    .touched_objects();
    let (secrets, secrets_writer) = reflector::store::<Secret>();
    let secrets_api: Api<Secret> = Api::namespaced(client.clone(), &settings.secrets_namespace);
    let secret_stream = reflector::reflector(
        secrets_writer,
        watcher(secrets_api, watcher::Config::default()).default_backoff(),
    )
    .touched_objects();
    let (namespaces, namespaces_writer) = reflector::store::<Namespace>();
    let namespaces_api: Api<Namespace> = Api::all(client.clone());
    let namespace_feed = reflector::reflector(
        namespaces_writer,
        watcher(namespaces_api, watcher::Config::default()).default_backoff(),
    )
    .for_each(|r| {
        if let Err(e) = r {
            warn!(error = %e, "watching Namespaces");
        }
        futures::future::ready(())
    });

    let recorder = events::Events::new(client.clone(), "nicip-controller", &settings.identity);
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings: settings.clone(),
        claims: claims.clone(),
        providers: Providers::new(
            configs.clone(),
            secrets.clone(),
            namespaces.clone(),
            settings.secrets_namespace.clone(),
            transport,
        ),
        observer: Observer::new(),
        recorder,
        metrics: handles.metrics.clone(),
        fence: handles.fence.clone(),
        memory: Mutex::new(HashMap::new()),
    });
    let _ = rivals_ctx.set(ctx.clone());

    let shutdown = shutdown.shared();
    let feeds = tokio::spawn(async move {
        futures::join!(claim_feed, namespace_feed);
    });

    // ProviderConfigs: readiness from a read-only call; a change wakes the claims using it.
    let pc_ctx = Arc::new(ConfigContext {
        ctx: ctx.clone(),
        wake: wake_tx.clone(),
        seen: Mutex::new(HashMap::new()),
    });
    let providers_for_secrets = configs.clone();
    let secrets_namespace = settings.secrets_namespace.clone();
    let config_controller = Controller::for_stream(config_stream, configs.clone())
        .watches_stream(secret_stream, move |secret: Secret| {
            let ns = secret.namespace().unwrap_or_default();
            let name = secret.name_any();
            providers_for_secrets
                .state()
                .iter()
                .filter(|c| {
                    let r = &c.spec.credentials_secret_ref;
                    r.name == name && r.namespace.as_deref().unwrap_or(&secrets_namespace) == ns
                })
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_config, config_error_policy, pc_ctx)
        .for_each(|_| futures::future::ready(()));
    let config_task = tokio::spawn(config_controller);

    // Wait for the first list of claims and accounts, then sweep every account
    // once so the first reconciles read batched observations.
    let startup = async {
        claims.wait_until_ready().await?;
        tracing::debug!("claims listed");
        configs_ready.wait_for(|listed| *listed).await?;
        tracing::debug!("ProviderConfigs listed; first sweep");
        sweep_all(&ctx, &claims, &wake_tx, Sweep::StartUp).await;
        Ok::<(), anyhow::Error>(())
    };
    tokio::select! {
        r = startup => r?,
        () = shutdown.clone() => {
            // Nothing was reconciled yet; kube-runtime's applier would wait
            // for a store that is no longer fed.
            feeds.abort();
            config_task.abort();
            info!("stopped before the caches synced");
            return Ok(());
        }
    }
    handles.health.mark_synced();
    info!(claims = claims.state().len(), "caches synced; reconciling");

    let sweep_ctx = ctx.clone();
    let sweep_claims = claims.clone();
    let sweep_shutdown = shutdown.clone();
    let sweeper = tokio::spawn(async move {
        let period = sweep_ctx.settings.resync;
        let sweeping = async {
            loop {
                tokio::time::sleep(jitter(period)).await;
                sweep_all(&sweep_ctx, &sweep_claims, &wake_tx, Sweep::Resync).await;
            }
        };
        tokio::select! {
            () = sweeping => {}
            () = sweep_shutdown => {}
        }
    });

    let wake = tokio_stream::wrappers::UnboundedReceiverStream::new(wake_rx);
    let claim_stream = tokio_stream::wrappers::UnboundedReceiverStream::new(claim_rx);
    Controller::for_stream(claim_stream, claims)
        .with_config(kube::runtime::controller::Config::default().concurrency(settings.concurrency))
        .reconcile_on(wake)
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller");
            }
            futures::future::ready(())
        })
        .await;
    sweeper.abort();
    feeds.abort();
    let _ = config_task.await;
    info!("controller stopped");
    Ok(())
}

fn typed_event(event: watcher::Event<DynamicObject>) -> Option<watcher::Event<NicIpClaim>> {
    let convert = |mut o: DynamicObject| -> Option<NicIpClaim> {
        let name = format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
        // Never read here, and most of an object's size: the cache of a
        // large fleet is kept small without them.
        o.metadata.managed_fields = None;
        if let Some(a) = o.metadata.annotations.as_mut() {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
        match serde_json::to_value(&o).and_then(serde_json::from_value::<NicIpClaim>) {
            Ok(c) => Some(c),
            Err(e) => {
                warn!(claim = %name, error = %e, "skipping a NicIpClaim that does not decode");
                None
            }
        }
    };
    Some(match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(convert(o)?),
        watcher::Event::Delete(o) => watcher::Event::Delete(convert(o)?),
        watcher::Event::InitApply(o) => watcher::Event::InitApply(convert(o)?),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    })
}

/// Which sweep [`sweep_all`] runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sweep {
    /// Before the first reconciles, which read its answers.
    StartUp,
    /// On the resync period; only the claims it wakes read its answers.
    Resync,
}

/// Describes every claimed NIC of each account in batches and wakes the
/// claims whose NIC no longer matches what their status reports.
async fn sweep_all(
    ctx: &Context,
    claims: &Store<NicIpClaim>,
    wake: &mpsc::UnboundedSender<ObjectRef<NicIpClaim>>,
    sweep: Sweep,
) {
    let mut by_config: BTreeMap<String, Vec<Arc<NicIpClaim>>> = BTreeMap::new();
    for c in claims.state() {
        if c.meta().deletion_timestamp.is_none() {
            by_config
                .entry(c.spec.provider_config_ref.name.clone())
                .or_default()
                .push(c);
        }
    }
    for (name, list) in by_config {
        let Some(config) = ctx.providers.config(&name) else {
            continue;
        };
        let Ok(provider) = ctx.providers.build(&config) else {
            continue;
        };
        // One sweep per batch of NICs the batcher would also describe together.
        let mut groups: BTreeMap<String, Vec<NicRef>> = BTreeMap::new();
        let mut listed: HashSet<(String, &str)> = HashSet::new();
        for c in &list {
            let mut nic = NicRef::new(c.spec.nic_id.trim());
            if let Some(vpc) = &c.spec.vpc_id {
                nic = nic.in_vpc(vpc.trim());
            }
            let group = observe::batch_key(&name, provider.provider(), &nic);
            // Two claims on one NIC (a conflict) describe it once.
            if listed.insert((group.clone(), c.spec.nic_id.trim())) {
                groups.entry(group).or_default().push(nic);
            }
        }
        let mut swept = Vec::new();
        for nics in groups.values() {
            match ctx.observer.sweep(&name, &provider, nics).await {
                Ok(s) => swept.push(s),
                Err(e) => warn!(provider_config = %name, code = %e.code, "drift sweep failed"),
            }
        }
        for c in &list {
            let id = crate::cloud::NicId(c.spec.nic_id.trim().to_string());
            let Some((s, nic)) = swept.iter().find_map(|s| Some((s, s.get(&id)?))) else {
                continue;
            };
            let drifted = drifted(c, nic);
            // At start-up every claim is about to be reconciled: all of them
            // read the sweep's answers, and nothing else describes their NICs.
            if sweep == Sweep::StartUp || drifted {
                ctx.observer.keep(s, &id);
            }
            if drifted {
                ctx.wake(c, wake);
            }
        }
    }
}

/// Whether a claim that reports itself as converged no longer matches the NIC.
/// Claims that are not Ready are on their own requeue timers and need no wake.
fn drifted(claim: &NicIpClaim, nic: Option<&crate::cloud::ObservedNic>) -> bool {
    let Some(status) = &claim.status else {
        return true;
    };
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == status::READY && c.status == "True");
    let current = status.observed_generation == claim.metadata.generation;
    if !ready || !current {
        return false;
    }
    let Some(nic) = nic else { return true };
    let (owned, _) = spec::Ownership::from_status(Some(status));
    let v4_ok = owned
        .ipv4
        .iter()
        .all(|o| nic.secondary_ipv4.contains(&o.address));
    let v6_ok = owned.ipv6.iter().all(|o| nic.ipv6.contains(&o.address));
    let listed_ok = explicit(claim)
        .iter()
        .all(|a| nic.secondary_ipv4.contains(a));
    let count_ok = claim
        .spec
        .ipv4
        .as_ref()
        .and_then(|v| v.count)
        .is_none_or(|n| owned.ipv4.len() == n as usize);
    let attach_ok = claim.spec.attachment.as_ref().is_none_or(|a| {
        nic.instance_id.as_ref().map(|i| i.0.as_str()) == Some(a.instance_id.trim())
    });
    !(v4_ok && v6_ok && listed_ok && count_ok && attach_ok)
}

struct ConfigContext {
    ctx: Arc<Context>,
    wake: mpsc::UnboundedSender<ObjectRef<NicIpClaim>>,
    /// What each ProviderConfig's provider was last built from.
    seen: Mutex<HashMap<String, String>>,
}

/// A ProviderConfig's `Ready` condition, from a cheap read-only call.
async fn reconcile_config(
    config: Arc<ProviderConfig>,
    pc: Arc<ConfigContext>,
) -> Result<Action, Error> {
    let ctx = &pc.ctx;
    let name = config.name_any();
    let (ready, reason, message) = match ctx.providers.build(&config) {
        Err(p) => (false, p.reason.to_string(), p.message),
        Ok(provider) => match provider.check_credentials().await {
            Ok(()) => (
                true,
                "CredentialsVerified".to_string(),
                "a read-only call with these credentials succeeded".to_string(),
            ),
            Err(e) => (
                false,
                config_reason(&e).to_string(),
                format!("{} failed with {}: {}", e.action, e.code, e.message),
            ),
        },
    };
    let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let status_text = if ready { "True" } else { "False" };
    let previous = config
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == status::READY));
    let since = previous
        .filter(|c| c.status == status_text)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    let status = ProviderConfigStatus {
        observed_generation: config.metadata.generation,
        conditions: vec![Condition {
            type_: status::READY.into(),
            status: status_text.into(),
            reason,
            message: message.chars().take(1024).collect(),
            observed_generation: config.metadata.generation,
            last_transition_time: since,
        }],
    };
    let new = serde_json::to_value(&status).map_err(Error::Serialize)?;
    if Some(&new)
        != config
            .status
            .as_ref()
            .map(|s| serde_json::to_value(s).unwrap_or_default())
            .as_ref()
    {
        let api: Api<ProviderConfig> = Api::all(ctx.client.clone());
        let patch =
            json!({"apiVersion": "nicip.io/v1alpha1", "kind": "ProviderConfig", "status": new});
        api.patch_status(
            &name,
            &PatchParams::apply(status::FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    // Claims follow their account: wake them when what it is built from changed.
    let secret_ref = &config.spec.credentials_secret_ref;
    let secret_ns = secret_ref
        .namespace
        .clone()
        .unwrap_or_else(|| ctx.providers.secrets_namespace().to_string());
    let fingerprint = format!(
        "{:?}/{secret_ns}/{}/{ready}",
        config.metadata.generation, secret_ref.name
    );
    let changed = {
        let mut seen = pc.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(name.clone(), fingerprint.clone()) != Some(fingerprint)
    };
    if changed {
        for c in ctx.claims.state() {
            if c.spec.provider_config_ref.name == name {
                ctx.wake(&c, &pc.wake);
            }
        }
    }
    Ok(Action::requeue(jitter(if ready {
        Duration::from_secs(600)
    } else {
        ctx.settings.slow_retry
    })))
}

fn config_reason(e: &CloudError) -> &'static str {
    match e.class {
        ErrorClass::Credentials => "CredentialsRejected",
        ErrorClass::Configuration => "ProviderConfigInvalid",
        ErrorClass::Throttled | ErrorClass::Transient => "CloudUnavailable",
        _ => "CheckFailed",
    }
}

fn config_error_policy(
    config: Arc<ProviderConfig>,
    error: &Error,
    _ctx: Arc<ConfigContext>,
) -> Action {
    warn!(provider_config = %config.name_any(), error = %error, "ProviderConfig reconcile failed");
    Action::requeue(jitter(Duration::from_secs(10)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_remembers_its_last_few_versions_once_each() {
        let mut m = Memory::default();
        m.know(None);
        assert!(m.known.is_empty());
        for rv in 0..KNOWN_VERSIONS + 3 {
            m.know(Some(rv.to_string()));
            m.know(Some(rv.to_string()));
        }
        assert_eq!(m.known.len(), KNOWN_VERSIONS);
        assert!(!m.knows("2"));
        assert!(m.knows("3"));
        assert!(m.knows(&(KNOWN_VERSIONS + 2).to_string()));
    }
}
