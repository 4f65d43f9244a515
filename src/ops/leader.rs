//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! The algorithm is the one client-go's `leaderelection` package uses, kept
//! to plain get/create/update (the verbs the controller's RBAC grants):
//!
//! - A candidate reads the Lease every `retry_period`. It takes the Lease
//!   when nobody holds it, or when the holder's record (its resourceVersion)
//!   has not changed for the record's `leaseDurationSeconds`, measured on the
//!   candidate's own monotonic clock from when it first saw that record. No
//!   two clocks are compared, so skew between nodes does not matter.
//! - Every write carries the resourceVersion just read, so of two racing
//!   writers exactly one wins; the loser gets `409 Conflict`.
//! - The holder renews every `retry_period`. Its [`Fence`] passes only while
//!   the last successful renew *started* less than `renew_deadline` ago.
//!   A candidate can only take over `lease_duration` after it saw that renew,
//!   which is later than when it started, so with `lease_duration >
//!   renew_deadline` the old holder stops mutating before anyone else may
//!   start. A process that was paused fails the fence on resume until a
//!   renew succeeds.
//!
//! See <https://kubernetes.io/docs/concepts/architecture/leases/>.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use rand::Rng as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Health, Role};

/// Where the Lease lives, who we are, and the timings (flags
/// `--lease-duration`, `--renew-deadline`, `--retry-period`; 15 s, 10 s, 2 s
/// by default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// The holder identity written to the Lease (the Pod name).
    pub identity: String,
    /// How long a candidate waits on an unchanged Lease before taking it.
    pub lease_duration: Duration,
    /// How long the holder may go without a successful renew before it stops
    /// acting as leader.
    pub renew_deadline: Duration,
    /// How often the holder renews and a candidate retries.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// The timings must leave the holder time to stop before a candidate may
    /// start: `lease_duration > renew_deadline > retry_period > 0`.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.identity.is_empty() {
            bail!("the leader-election identity is empty");
        }
        if self.name.is_empty() || self.namespace.is_empty() {
            bail!("the Lease name and namespace must not be empty");
        }
        if self.retry_period.is_zero() {
            bail!("the retry period must be positive");
        }
        if self.renew_deadline <= self.retry_period {
            bail!(
                "the renew deadline ({:?}) must be longer than the retry period ({:?})",
                self.renew_deadline,
                self.retry_period
            );
        }
        if self.lease_duration <= self.renew_deadline {
            bail!(
                "the lease duration ({:?}) must be longer than the renew deadline ({:?})",
                self.lease_duration,
                self.renew_deadline
            );
        }
        Ok(())
    }

    /// Whole seconds, rounded up so that others never wait less than we
    /// assume; at least 1.
    fn lease_duration_seconds(&self) -> i32 {
        let secs = self.lease_duration.as_secs_f64().ceil().max(1.0);
        if secs >= f64::from(i32::MAX) {
            i32::MAX
        } else {
            secs as i32
        }
    }
}

/// Returned by [`Fence::check`] when this replica must not mutate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not the leader: {reason}")]
pub struct NotLeader {
    reason: &'static str,
}

/// Competes for the Lease; see the module documentation.
#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    health: Arc<Health>,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The Lease record a candidate last saw, and when it first saw it.
struct Observed {
    resource_version: Option<String>,
    since: Instant,
}

enum Attempt {
    /// We hold the Lease; the renew that made it so started at this instant.
    Held(Instant),
    /// Someone else holds it and their Lease is still running.
    HeldByOther(String),
    /// Our write lost a race, or the holder changed; read again.
    Conflict,
}

impl Elector {
    pub fn new(client: kube::Client, config: LeaseConfig, health: Arc<Health>) -> Elector {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            health,
        }
    }

    /// Waits until this replica holds the Lease, then keeps renewing it in
    /// the background until the returned [`Leadership`] is released, dropped
    /// or lost. While waiting, the replica is a standby whose readiness
    /// follows whether it reaches the API server.
    pub async fn acquire(&self) -> anyhow::Result<Leadership> {
        self.config.validate()?;
        self.health.set_role(Role::Standby);
        let mut observed: Option<Observed> = None;
        let mut last_contact: Option<Instant> = None;
        let mut last_holder: Option<String> = None;
        loop {
            let started = Instant::now();
            let result = tokio::time::timeout(
                self.config.renew_deadline,
                self.try_acquire(&mut observed, &mut last_contact),
            )
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the Lease request timed out")));
            let healthy = last_contact.is_some_and(|at| at.elapsed() < self.config.lease_duration);
            self.health.set_election_healthy(healthy);
            match result {
                Ok(Attempt::Held(renewed)) => {
                    tracing::info!(
                        lease = %self.config.name,
                        namespace = %self.config.namespace,
                        identity = %self.config.identity,
                        "acquired the Lease; leading"
                    );
                    return Ok(self.lead(renewed));
                }
                Ok(Attempt::HeldByOther(holder)) => {
                    if last_holder.as_deref() != Some(holder.as_str()) {
                        tracing::info!(lease = %self.config.name, %holder, "the Lease is held by another replica; standing by");
                        last_holder = Some(holder);
                    }
                }
                Ok(Attempt::Conflict) => {
                    tracing::debug!(lease = %self.config.name, "lost a race for the Lease");
                }
                Err(e) => {
                    tracing::warn!(lease = %self.config.name, error = %format!("{e:#}"), "cannot read or take the Lease");
                }
            }
            let jitter = self
                .config
                .retry_period
                .mul_f64(rand::rng().random_range(0.0..0.2));
            tokio::time::sleep_until(started + self.config.retry_period + jitter).await;
        }
    }

    async fn try_acquire(
        &self,
        observed: &mut Option<Observed>,
        last_contact: &mut Option<Instant>,
    ) -> anyhow::Result<Attempt> {
        let started = Instant::now();
        let current = self
            .api
            .get_opt(&self.config.name)
            .await
            .context("reading the Lease")?;
        *last_contact = Some(Instant::now());
        let Some(mut lease) = current else {
            return self.create(started).await;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let rv = lease.metadata.resource_version.clone();
        let since = match observed {
            Some(o) if o.resource_version == rv => o.since,
            _ => {
                *observed = Some(Observed {
                    resource_version: rv,
                    since: started,
                });
                started
            }
        };
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let taking_over = match holder {
            // Ours already, e.g. this replica restarted under the same name:
            // carry on without counting a transition.
            Some(h) if h == self.config.identity => false,
            Some(h) => {
                let duration = spec
                    .lease_duration_seconds
                    .filter(|s| *s > 0)
                    .map(|s| Duration::from_secs(u64::from(s.unsigned_abs())))
                    .unwrap_or(self.config.lease_duration);
                if started < since + duration {
                    return Ok(Attempt::HeldByOther(h));
                }
                tracing::info!(lease = %self.config.name, holder = %h, "the Lease expired; taking it over");
                true
            }
            None => true,
        };
        if taking_over {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.holder_identity = Some(self.config.identity.clone());
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(self.config.lease_duration_seconds());
        self.replace(&lease, started).await
    }

    async fn create(&self, started: Instant) -> anyhow::Result<Attempt> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.config.lease_duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Held(started)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e).context("creating the Lease"),
        }
    }

    /// Writes `lease` as read (its resourceVersion makes this conditional).
    async fn replace(&self, lease: &Lease, started: Instant) -> anyhow::Result<Attempt> {
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), lease)
            .await
        {
            Ok(_) => Ok(Attempt::Held(started)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e).context("updating the Lease"),
        }
    }

    /// One renew by the holder: succeeds only while the Lease still names us.
    async fn renew(&self) -> anyhow::Result<Attempt> {
        let started = Instant::now();
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .context("reading the Lease")?
        else {
            return Ok(Attempt::HeldByOther(
                "nobody (the Lease was deleted)".into(),
            ));
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        match spec.holder_identity.as_deref() {
            Some(h) if h == self.config.identity => {}
            Some(h) if !h.is_empty() => return Ok(Attempt::HeldByOther(h.to_string())),
            _ => {
                return Ok(Attempt::HeldByOther(
                    "nobody (the Lease was released)".into(),
                ));
            }
        }
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        spec.lease_duration_seconds = Some(self.config.lease_duration_seconds());
        self.replace(&lease, started).await
    }

    fn lead(&self, renewed: Instant) -> Leadership {
        self.health.set_role(Role::Leader);
        let shared = Arc::new(Shared::new(self.config.renew_deadline, renewed));
        let (stop_tx, stop_rx) = watch::channel(false);
        let renewer = Renewer {
            elector: self.clone(),
            shared: shared.clone(),
        };
        let task = tokio::spawn(renewer.run(stop_rx));
        Leadership {
            shared,
            stop: stop_tx,
            task: Some(task),
            api: self.api.clone(),
            config: self.config.clone(),
            health: self.health.clone(),
        }
    }
}

/// State shared by the renew loop and every [`Fence`].
#[derive(Debug)]
struct Shared {
    renew_deadline: Duration,
    /// When the last successful renew started.
    renewed: Mutex<Instant>,
    lost: AtomicBool,
    lost_tx: watch::Sender<bool>,
}

impl Shared {
    fn new(renew_deadline: Duration, renewed: Instant) -> Shared {
        Shared {
            renew_deadline,
            renewed: Mutex::new(renewed),
            lost: AtomicBool::new(false),
            lost_tx: watch::channel(false).0,
        }
    }

    fn renewed(&self) -> Instant {
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record_renew(&self, started: Instant) {
        let mut renewed = self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        *renewed = (*renewed).max(started);
    }

    fn mark_lost(&self) {
        self.lost.store(true, Ordering::SeqCst);
        self.lost_tx.send_replace(true);
    }

    fn check(&self) -> Result<(), NotLeader> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Result<(), NotLeader> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(NotLeader {
                reason: "this replica no longer holds the Lease",
            });
        }
        if now.saturating_duration_since(self.renewed()) >= self.renew_deadline {
            return Err(NotLeader {
                reason: "the Lease was not renewed within the renew deadline",
            });
        }
        Ok(())
    }
}

struct Renewer {
    elector: Elector,
    shared: Arc<Shared>,
}

impl Renewer {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let config = &self.elector.config;
        let mut next = Instant::now() + config.retry_period;
        loop {
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            let started = Instant::now();
            next = started + config.retry_period;
            // Until the deadline the attempt may take what is left; after a
            // pause, one retry period, so the loop decides promptly.
            let left = (self.shared.renewed() + config.renew_deadline)
                .saturating_duration_since(started)
                .max(config.retry_period);
            let result = tokio::time::timeout(left, self.elector.renew())
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the Lease request timed out")));
            match result {
                Ok(Attempt::Held(at)) => {
                    self.shared.record_renew(at);
                    tracing::trace!(lease = %config.name, "renewed the Lease");
                    continue;
                }
                Ok(Attempt::HeldByOther(holder)) => {
                    tracing::warn!(lease = %config.name, %holder, "the Lease was taken over; no longer leading");
                    self.shared.mark_lost();
                    break;
                }
                Ok(Attempt::Conflict) => {
                    tracing::warn!(lease = %config.name, "the Lease changed under us while renewing");
                }
                Err(e) => {
                    tracing::warn!(lease = %config.name, error = %format!("{e:#}"), "cannot renew the Lease");
                }
            }
            if self.shared.renewed().elapsed() >= config.renew_deadline {
                tracing::error!(lease = %config.name, deadline = ?config.renew_deadline, "could not renew the Lease within the renew deadline; no longer leading");
                self.shared.mark_lost();
                break;
            }
        }
        self.elector.health.set_role(Role::Standby);
        self.elector.health.set_election_healthy(false);
    }
}

/// Proof of holding the Lease. Dropping it stops renewing (others take over
/// after the lease duration); [`Leadership::release`] hands over at once.
pub struct Leadership {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    api: Api<Lease>,
    config: LeaseConfig,
    health: Arc<Health>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Leadership {
    /// A cheap handle to check before every mutation.
    pub fn fence(&self) -> Fence {
        Fence {
            shared: Some(self.shared.clone()),
        }
    }

    /// Resolves once leadership is lost: the Lease was taken over, or could
    /// not be renewed within the renew deadline. The controller should stop.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.shared.lost_tx.subscribe();
        async move {
            // An error means the sender is gone, which only happens with the
            // leadership itself.
            let _ = rx.wait_for(|lost| *lost).await;
        }
    }

    /// Stops renewing, then clears the holder so a standby takes over at its
    /// next retry instead of after the lease duration. Fences fail from the
    /// moment this is called.
    pub async fn release(mut self) {
        self.shared.mark_lost();
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.health.set_role(Role::Standby);
        self.health.set_election_healthy(false);
        let deadline = Instant::now() + self.config.renew_deadline;
        loop {
            match tokio::time::timeout_at(deadline, self.clear_holder()).await {
                Ok(Ok(true)) => {
                    tracing::info!(lease = %self.config.name, "released the Lease");
                    return;
                }
                Ok(Ok(false)) => {
                    tracing::info!(lease = %self.config.name, "the Lease is no longer ours; nothing to release");
                    return;
                }
                Ok(Err(e)) if Instant::now() < deadline => {
                    tracing::debug!(error = %format!("{e:#}"), "releasing the Lease; retrying");
                    tokio::time::sleep(self.config.retry_period.min(Duration::from_millis(200)))
                        .await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.config.name, error = %format!("{e:#}"), "could not release the Lease; others take over after it expires");
                    return;
                }
                Err(_) => {
                    tracing::warn!(lease = %self.config.name, "releasing the Lease timed out; others take over after it expires");
                    return;
                }
            }
        }
    }

    /// `Ok(false)` when someone else holds the Lease by now.
    async fn clear_holder(&self) -> anyhow::Result<bool> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(false);
        }
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        spec.holder_identity = None;
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(self.config.lease_duration_seconds());
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                anyhow::bail!("the Lease changed while releasing it")
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.shared.mark_lost();
        if let Some(task) = self.task.take() {
            task.abort();
            self.health.set_role(Role::Standby);
            self.health.set_election_healthy(false);
        }
    }
}

/// Checked before every mutation: passes only while this replica leads and
/// renewed its Lease less than the renew deadline ago.
#[derive(Clone, Debug)]
pub struct Fence {
    /// `None`: no election, always passes.
    shared: Option<Arc<Shared>>,
}

impl Fence {
    /// For runs without leader election (`--leader-elect` off, tests).
    pub fn always() -> Fence {
        Fence { shared: None }
    }

    pub fn check(&self) -> Result<(), NotLeader> {
        match &self.shared {
            None => Ok(()),
            Some(shared) => shared.check(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(lease: u64, renew: u64, retry: u64) -> LeaseConfig {
        LeaseConfig {
            namespace: "nicip-system".into(),
            name: "nicip-controller".into(),
            identity: "pod-a".into(),
            lease_duration: Duration::from_millis(lease),
            renew_deadline: Duration::from_millis(renew),
            retry_period: Duration::from_millis(retry),
        }
    }

    #[test]
    fn timings_must_nest() {
        assert!(config(15_000, 10_000, 2_000).validate().is_ok());
        assert!(config(10_000, 10_000, 2_000).validate().is_err());
        assert!(config(15_000, 2_000, 2_000).validate().is_err());
        assert!(config(15_000, 10_000, 0).validate().is_err());
        let mut anonymous = config(15_000, 10_000, 2_000);
        anonymous.identity.clear();
        assert!(anonymous.validate().is_err());
    }

    #[test]
    fn lease_seconds_round_up() {
        assert_eq!(config(15_000, 1, 0).lease_duration_seconds(), 15);
        assert_eq!(config(2_500, 1, 0).lease_duration_seconds(), 3);
        assert_eq!(config(10, 1, 0).lease_duration_seconds(), 1);
    }

    #[test]
    fn handles_travel_between_tasks() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        fn sendable<T: Send + 'static>() {}
        shareable::<Fence>();
        shareable::<Elector>();
        sendable::<Leadership>();
    }

    #[test]
    fn always_fence_passes() {
        assert_eq!(Fence::always().check(), Ok(()));
    }

    #[test]
    fn fence_expires_at_the_renew_deadline_and_recovers_on_renew() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let shared = Shared::new(Duration::from_secs(10), t0);
        assert_eq!(shared.check_at(t0), Ok(()));
        assert_eq!(shared.check_at(at(9_999)), Ok(()));
        assert!(
            shared.check_at(at(10_000)).is_err(),
            "exactly at the deadline"
        );

        // A process resuming from a pause: the fence stays shut until a
        // renew that started after the pause succeeds.
        assert!(shared.check_at(at(70_000)).is_err());
        shared.record_renew(at(70_000));
        assert_eq!(shared.check_at(at(70_001)), Ok(()));

        // A renew that started earlier than the one on record (a slow
        // response arriving late) never moves the window back.
        shared.record_renew(at(75_000));
        shared.record_renew(at(71_000));
        assert_eq!(shared.check_at(at(84_999)), Ok(()));
        assert!(shared.check_at(at(85_000)).is_err());

        shared.mark_lost();
        shared.record_renew(at(90_000));
        assert!(shared.check_at(at(90_001)).is_err(), "lost is final");
    }
}
