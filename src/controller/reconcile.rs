//! One reconcile of one claim: observe → validate → plan → apply → report.
//!
//! Apply makes one recorded cloud call at a time: the call is written to
//! `status.pendingOperation` first, then sent; its outcome is settled from the
//! cloud's own state (a later observation of the NIC, or the task) before
//! anything new is planned. Calls the cloud completes at once are followed by
//! the next step in the same reconcile; asynchronous ones end the reconcile
//! with a short, growing requeue, so no worker ever waits on the cloud.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::events::EventType;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::api::v1alpha1::{
    DeletionPolicy, LastError, ManagementPolicy, NicIpClaim, NicIpClaimStatus,
};
use crate::cloud::{
    Action as CloudAction, CloudError, ErrorClass, IdempotencyKey, InstanceId, Ipv4Request,
    NicProvider, ObservedInstance, ObservedNic, Operation, Resolution,
};

use super::plan::{self, Inputs, Note, Step, Wait};
use super::spec::{self, Ipv4Want, Owned, OwnedAttachment, Ownership, ValidSpec};
use super::status::{self, Detail, Report, Standing};
use super::{Checkpoint, Context, Error, FINALIZER, RESYNC_ANNOTATION};

/// Most calls one reconcile makes before it yields the worker.
const MAX_STEPS: usize = 8;

/// What a reconcile asks for next, as kube-runtime's `Action`, which does not
/// tell its delay: the controller remembers it (see `Context::nothing_new`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Action(Option<Duration>);

impl Action {
    fn requeue(after: Duration) -> Action {
        Action(Some(after))
    }

    fn await_change() -> Action {
        Action(None)
    }
}

pub async fn reconcile(
    claim: Arc<NicIpClaim>,
    ctx: Arc<Context>,
) -> Result<kube::runtime::controller::Action, Error> {
    use kube::runtime::controller::Action as Next;
    if let Some(left) = ctx.nothing_new(&claim) {
        return Ok(left.map_or_else(Next::await_change, Next::requeue));
    }
    if let Some(left) = ctx.backoff_left(&claim) {
        return Ok(Next::requeue(left));
    }
    let uid = claim.uid().unwrap_or_default();
    let started = tokio::time::Instant::now();
    let mut cloud_class = None;
    let result = match Reconcile::start(claim, &ctx).await {
        Ok(Some(mut r)) => {
            let result = r.run().await;
            cloud_class = r.cloud_class;
            result
        }
        Ok(None) => Ok(Action::await_change()),
        Err(e) => Err(e),
    };
    // A cloud error the claim reports counts as the reconcile's error too.
    let class = result.as_ref().err().map(Error::class).or(cloud_class);
    ctx.metrics.reconcile_finished(started.elapsed(), class);
    let action = result?;
    ctx.set_due(&uid, action.0);
    Ok(match action.0 {
        Some(after) => Next::requeue(after),
        None => Next::await_change(),
    })
}

/// The state of one reconcile.
struct Reconcile<'a> {
    ctx: &'a Context,
    api: Api<NicIpClaim>,
    claim: Arc<NicIpClaim>,
    key: String,
    uid: String,
    now: jiff::Timestamp,
    /// A call was sent and its outcome not yet written (for the test checkpoint).
    after_call: bool,
    /// The class of a cloud error this reconcile reported, for the metrics.
    cloud_class: Option<&'static str>,
}

/// What the reconcile decided to report.
struct Outcome {
    standing: Standing,
    details: Vec<Detail>,
    action: Action,
}

impl<'a> Reconcile<'a> {
    async fn start(
        claim: Arc<NicIpClaim>,
        ctx: &'a Context,
    ) -> Result<Option<Reconcile<'a>>, Error> {
        let namespace = claim
            .namespace()
            .ok_or(Error::Malformed("metadata.namespace"))?;
        let uid = claim.uid().ok_or(Error::Malformed("metadata.uid"))?;
        let api: Api<NicIpClaim> = Api::namespaced(ctx.client.clone(), &namespace);
        let key = format!("{namespace}/{}", claim.name_any());
        // Read our own writes: when the cache is behind what this controller
        // last wrote, ask the API server, never act on the older copy.
        let remembered = ctx.memory(&uid, |m| m.resource_version.clone());
        let claim = match remembered {
            Some(rv) if claim.resource_version().as_deref() != Some(rv.as_str()) => {
                match api.get_opt(&claim.name_any()).await? {
                    Some(fresh) if fresh.uid().as_deref() == Some(uid.as_str()) => {
                        ctx.memory(&uid, |m| m.resource_version = fresh.resource_version());
                        Arc::new(fresh)
                    }
                    _ => {
                        ctx.forget(&uid, &key);
                        return Ok(None);
                    }
                }
            }
            _ => claim,
        };
        ctx.memory(&uid, |m| m.know(claim.resource_version()));
        let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        Ok(Some(Reconcile {
            ctx,
            api,
            claim,
            key,
            uid,
            now,
            after_call: false,
            cloud_class: None,
        }))
    }

    fn status(&self) -> Option<&NicIpClaimStatus> {
        self.claim.status.as_ref()
    }

    fn deleting(&self) -> bool {
        self.claim.meta().deletion_timestamp.is_some()
    }

    fn has_finalizer(&self) -> bool {
        self.claim.finalizers().iter().any(|f| f == FINALIZER)
    }

    async fn run(&mut self) -> Result<Action, Error> {
        use tracing::Instrument;
        // `claim`, not `name`: JSON logs already use `name` for the span's own name.
        let span = tracing::info_span!("reconcile", namespace = %self.claim.namespace().unwrap_or_default(), claim = %self.claim.name_any());
        self.run_inner().instrument(span).await
    }

    async fn run_inner(&mut self) -> Result<Action, Error> {
        let deleting = self.deleting();
        if deleting && !self.has_finalizer() {
            self.ctx.forget(&self.uid, &self.key);
            return Ok(Action::await_change());
        }
        let (owned, unreadable) = Ownership::from_status(self.status());
        if !unreadable.is_empty() {
            warn!(addresses = ?unreadable, "status lists addresses that do not parse; they are not owned");
        }
        let has_pending = self
            .status()
            .and_then(|s| s.pending_operation.as_ref())
            .is_some();
        let nothing_to_release = owned.is_empty() && !has_pending;

        // Deletion that needs no cloud: nothing owned and nothing in flight,
        // or ObserveOnly. Under Retain a call in flight is settled first when
        // the account is at hand, so that the claim never goes while the
        // cloud may still act on its behalf.
        let leave_cloud = self.claim.spec.deletion_policy == DeletionPolicy::Retain
            || self.claim.spec.management_policy == ManagementPolicy::ObserveOnly;
        if deleting && (nothing_to_release || (leave_cloud && !has_pending)) {
            return self.finish_deletion().await;
        }

        let pc_name = self.claim.spec.provider_config_ref.name.clone();
        let namespace = self.claim.namespace().unwrap_or_default();
        let resolved = match self.ctx.providers.for_claim(&pc_name, &namespace) {
            Ok(r) => r,
            // Retain is the way out when the account is gone: leave the cloud.
            Err(_) if deleting && leave_cloud => return self.finish_deletion().await,
            Err(p) => {
                let message = if deleting {
                    format!(
                        "{}; deletion waits for it, or set deletionPolicy: Retain to leave the cloud as it is",
                        p.message
                    )
                } else {
                    p.message.clone()
                };
                let outcome = Outcome {
                    standing: Standing::stalled(p.reason, message),
                    details: Vec::new(),
                    action: Action::requeue(self.ctx.settings.slow_retry),
                };
                return self.report(None, &owned, outcome).await;
            }
        };
        let provider = resolved.provider.clone();
        let caps = provider.capabilities();
        let spec = match spec::validate(&self.claim.spec, provider.provider(), &caps) {
            Ok(s) => s,
            // Cleanup never depends on a spec that passes validation.
            Err(_) if deleting => release_only_spec(&self.claim),
            Err(invalid) => {
                let outcome = Outcome {
                    standing: Standing::stalled(invalid.reason, invalid.message),
                    details: Vec::new(),
                    action: Action::await_change(),
                };
                return self.report(None, &owned, outcome).await;
            }
        };

        if !deleting && let Some(message) = self.ctx.conflict(&self.claim) {
            let outcome = Outcome {
                standing: Standing::stalled("Conflict", message),
                details: Vec::new(),
                action: Action::requeue(self.ctx.settings.resync),
            };
            return self.report(Some(&spec), &owned, outcome).await;
        }

        let needs_finalizer =
            spec.management == ManagementPolicy::Full && !deleting && !self.has_finalizer();
        let scope = resolved.config.name_any();
        let mut apply = Apply {
            scope,
            provider,
            spec,
            owned,
            nic: None,
            instance: None,
            // The stored call in flight until it is settled: a status written
            // before that (a failed observation) must not drop it, or the
            // cloud's later answer to it would belong to nobody.
            pending: self
                .status()
                .and_then(|s| s.pending_operation.as_ref())
                .and_then(|p| Operation::try_from(p).ok()),
            sequence: self
                .status()
                .and_then(|s| s.operation_sequence)
                .unwrap_or(0),
            last_error: self.status().and_then(|s| s.last_error.clone()),
        };
        self.apply(&mut apply, needs_finalizer).await
    }

    async fn apply(&mut self, a: &mut Apply, needs_finalizer: bool) -> Result<Action, Error> {
        let deleting = self.deleting();
        // Observe; the finalizer, when it is missing, is written meanwhile:
        // both come before any call.
        let ctx = self.ctx;
        let observing = ctx
            .observer
            .observe(&a.scope, a.provider.clone(), &a.spec.nic);
        let observed = if needs_finalizer {
            let (finalizer, observed) = futures::join!(self.add_finalizer(), observing);
            finalizer?;
            observed
        } else {
            observing.await
        };
        match observed {
            Ok(nic) => a.nic = nic,
            Err(e) => return self.cloud_failure(a, e, None).await,
        }
        if let (Some(want), Some(nic)) = (&a.spec.instance, &a.nic)
            && nic.instance_id.as_ref() != Some(want)
            && !deleting
        {
            match a.provider.describe_instance(want).await {
                Ok(i) => a.instance = i,
                Err(e) => return self.cloud_failure(a, e, None).await,
            }
        }

        // Settle what is in flight before anything new.
        if let Some(stored) = self.status().and_then(|s| s.pending_operation.clone()) {
            match Operation::try_from(&stored) {
                Ok(mut op) => {
                    if op.request_id.is_none() {
                        op.request_id = self
                            .ctx
                            .memory(&self.uid, |m| m.request_ids.get(&op.sequence).cloned());
                    }
                    match self.settle(a, op).await? {
                        Settled::Continue => {}
                        Settled::Done(action) => return Ok(action),
                    }
                }
                Err(e) => {
                    warn!(error = %e, "status.pendingOperation cannot be read; it is dropped")
                }
            }
        }

        for _ in 0..MAX_STEPS {
            let generation = self.claim.metadata.generation.unwrap_or(0);
            let (rejected, isolate) = self.ctx.memory(&self.uid, |m| m.isolation(generation));
            let p = plan::plan(&Inputs {
                spec: &a.spec,
                owned: &a.owned,
                nic: a.nic.as_ref(),
                instance: a.instance.as_ref(),
                caps: &a.provider.capabilities(),
                deleting,
                rejected: &rejected,
                isolate: &isolate,
                now: self.now,
            });
            if a.spec.management == ManagementPolicy::Full {
                a.owned = p.owned.clone();
            }
            self.publish_notes(&p.notes, a.spec.management).await;

            if deleting && p.steps.is_empty() && p.wait.is_none() {
                // Record what was released before the finalizer goes, so that
                // the status never claims addresses the cloud no longer has.
                let stored = self
                    .status()
                    .and_then(|s| s.pending_operation.as_ref())
                    .is_some()
                    || !Ownership::from_status(self.status()).0.is_empty();
                if stored {
                    let standing =
                        Standing::progressing("Releasing", "released; removing the finalizer");
                    self.write(a, standing, Vec::new()).await?;
                }
                return self.finish_deletion().await;
            }
            if a.spec.management == ManagementPolicy::ObserveOnly {
                let standing = if p.converged() {
                    Standing::Converged
                } else if let Some(b) = &p.blocked {
                    Standing::stalled(b.reason, b.message.clone())
                } else {
                    Standing::stalled(
                        "ObserveOnly",
                        format!(
                            "the cloud differs from the spec: {}; managementPolicy ObserveOnly never changes it",
                            describe_steps(&p.steps)
                        ),
                    )
                };
                let details = status::details(
                    &a.spec,
                    &a.owned,
                    &p.steps,
                    (!p.converged()).then_some("ObserveOnly"),
                );
                let action = self.ready_action();
                return self
                    .report_apply(
                        a,
                        Outcome {
                            standing,
                            details,
                            action,
                        },
                    )
                    .await;
            }
            if let Some(wait) = &p.wait {
                let (reason, message, delay) = match wait {
                    Wait::NicBusy(s) => (
                        "NicBusy",
                        format!("NIC {} is {s}; waiting for a stable state", a.spec.nic.id),
                        self.next_wait(),
                    ),
                    Wait::AddressesInFlux => (
                        "WaitingForCloud",
                        "the cloud is still changing the NIC's addresses".to_string(),
                        self.next_wait(),
                    ),
                    Wait::InstanceNotRunning { instance, status } => (
                        "InstanceNotRunning",
                        format!(
                            "instance {instance} is {status}; the NIC is attached once it runs"
                        ),
                        self.ctx.settings.slow_retry,
                    ),
                };
                let details = status::details(&a.spec, &a.owned, &p.steps, Some(reason));
                let outcome = Outcome {
                    standing: Standing::progressing(reason, message),
                    details,
                    action: Action::requeue(delay),
                };
                return self.report_apply(a, outcome).await;
            }
            let Some(step) = p.steps.first().cloned() else {
                let (standing, why) = match &p.blocked {
                    Some(b) => (
                        Standing::stalled(b.reason, b.message.clone()),
                        Some(b.reason),
                    ),
                    None => (Standing::Converged, None),
                };
                if why.is_none() {
                    a.last_error = None;
                }
                let details = status::details(&a.spec, &a.owned, &[], why);
                let action = if why.is_some() {
                    Action::requeue(self.ctx.settings.resync)
                } else {
                    self.ready_action()
                };
                self.ctx.memory(&self.uid, |m| {
                    m.waits = 0;
                    m.errors = 0;
                });
                return self
                    .report_apply(
                        a,
                        Outcome {
                            standing,
                            details,
                            action,
                        },
                    )
                    .await;
            };
            if let Some(refused) = self.ctx.memory(&self.uid, |m| {
                m.refused_again(generation, &step, self.ctx.settings.resync)
            }) {
                let details = status::details(&a.spec, &a.owned, &p.steps, Some("CloudRefused"));
                let outcome = Outcome {
                    standing: Standing::stalled("CloudRefused", refused_message(&refused)),
                    details,
                    action: Action::requeue(self.ctx.settings.resync),
                };
                return self.report_apply(a, outcome).await;
            }

            let op = self.operation(a, &step);
            match self.send(a, op, &p.steps).await? {
                Settled::Continue => continue,
                Settled::Done(action) => return Ok(action),
            }
        }
        // More steps remain: give the worker back and come straight back.
        Ok(Action::requeue(Duration::from_millis(10)))
    }

    /// Builds the next call, with a new operation sequence number.
    fn operation(&self, a: &mut Apply, step: &Step) -> Operation {
        a.sequence += 1;
        let seq = a.sequence;
        let key = IdempotencyKey::derive(&self.uid, seq, 0);
        let before = a.nic.clone().unwrap_or_else(|| plan::empty_nic(&a.spec));
        let nic = &a.spec.nic;
        match step {
            Step::AssignIpv4 { request } => {
                Operation::assign_ipv4(nic, request.clone(), a.spec.qos, &before, &key, seq, 0)
            }
            Step::UnassignIpv4 { addresses, .. } => {
                Operation::unassign_ipv4(nic, addresses, &before, &key, seq, 0)
            }
            Step::AssignIpv6 { count, billing } => {
                Operation::assign_ipv6(nic, *count, billing.clone(), &before, &key, seq)
            }
            Step::UnassignIpv6 { addresses, .. } => {
                Operation::unassign_ipv6(nic, addresses, &before, &key, seq)
            }
            Step::Attach { instance } => Operation::attach(nic, instance, &before, &key, seq),
            Step::Detach { instance } => Operation::detach(nic, instance, &before, &key, seq),
        }
    }

    /// Records the call, sends it, and takes in what the cloud answered.
    async fn send(
        &mut self,
        a: &mut Apply,
        mut op: Operation,
        steps: &[Step],
    ) -> Result<Settled, Error> {
        if let Err(e) = self.ctx.fence.check() {
            debug!(error = %e, "not the leader: no cloud call");
            return Ok(Settled::Done(Action::requeue(Duration::from_secs(2))));
        }
        op.mark_sent();
        a.pending = Some(op.clone());
        let reason = step_reason(op.action);
        let details = status::details(&a.spec, &a.owned, steps, Some(reason));
        let message = format!("{} on NIC {}", reason_text(op.action), a.spec.nic.id);
        self.write(a, Standing::progressing(reason, message), details)
            .await?;
        self.checkpoint(Checkpoint::BeforeCall).await;
        self.ctx.observer.invalidate(&a.scope, &a.spec.nic.id);
        if self.ctx.fence.check().is_err() {
            // Leadership was lost while recording: the pending operation is
            // resolved by whoever leads next, and it was never sent.
            return Ok(Settled::Done(Action::requeue(Duration::from_secs(2))));
        }
        let result = a.provider.submit(&op).await;
        // Again once the call is answered: a sweep that described the NIC
        // while the call waited for its rate limiter saw the NIC before the
        // change, and settling from that view would cost a task query.
        self.ctx.observer.invalidate(&a.scope, &a.spec.nic.id);
        self.after_call = true;
        self.checkpoint(Checkpoint::AfterCall).await;
        match result {
            Ok(submitted) => {
                if let Some(id) = &submitted.request_id {
                    self.ctx.memory(&self.uid, |m| {
                        m.request_ids.insert(op.sequence, id.clone());
                    });
                }
                if submitted.complete {
                    let addresses: BTreeSet<IpAddr> = match op.action {
                        CloudAction::AssignIpv4 | CloudAction::AssignIpv6
                            if !submitted.addresses.is_empty() =>
                        {
                            submitted.addresses.clone()
                        }
                        _ => op.addresses.iter().copied().collect(),
                    };
                    self.applied(a, &op, &addresses).await;
                    a.pending = None;
                    a.last_error = None;
                    Ok(Settled::Continue)
                } else {
                    op.request_id = submitted.request_id.clone();
                    a.pending = Some(op);
                    self.ctx.memory(&self.uid, |m| {
                        m.waits = 0;
                        m.errors = 0;
                    });
                    Ok(Settled::Done(Action::requeue(self.next_wait())))
                }
            }
            Err(e) if e.may_have_acted() => {
                // The call may have acted: it stays pending and is resolved
                // from the cloud's state before anything else.
                warn!(code = %e.code, action = %e.action, "outcome unknown; resolving from the cloud's state");
                Ok(Settled::Done(Action::requeue(self.next_error_delay())))
            }
            Err(e)
                if e.class == ErrorClass::NotFound
                    && matches!(
                        op.action,
                        CloudAction::UnassignIpv4 | CloudAction::UnassignIpv6 | CloudAction::Detach
                    ) =>
            {
                a.pending = None;
                self.release_not_found(a, op, e, steps).await
            }
            Err(e) => {
                a.pending = None;
                self.refused(a, &op, e, steps).await
            }
        }
    }

    /// A release answered "not found": what the NIC, described again, no
    /// longer carries counts as released (someone else removed it, or the
    /// NIC is gone); only a release that still has work left is an error.
    async fn release_not_found(
        &mut self,
        a: &mut Apply,
        op: Operation,
        e: CloudError,
        steps: &[Step],
    ) -> Result<Settled, Error> {
        let observed = self
            .ctx
            .observer
            .observe(&a.scope, a.provider.clone(), &a.spec.nic)
            .await;
        let Ok(nic) = observed else {
            return self.refused(a, &op, e, steps).await;
        };
        a.nic = nic;
        // The call was answered: it is not in flight any more.
        let resolution = crate::cloud::settle(
            a.provider.provider(),
            &op,
            a.nic.as_ref(),
            None,
            jiff::Timestamp::now(),
            Duration::ZERO,
        );
        match resolution {
            Resolution::Applied { addresses } => {
                info!(code = %e.code, "the release found nothing to release; done");
                self.applied(a, &op, &addresses).await;
                Ok(Settled::Continue)
            }
            _ => self.refused(a, &op, e, steps).await,
        }
    }

    /// Settles the recorded operation against this reconcile's observation.
    async fn settle(&mut self, a: &mut Apply, op: Operation) -> Result<Settled, Error> {
        let resolution = match a.provider.resolve_observed(&op, a.nic.as_ref()).await {
            Ok(r) => r,
            Err(e) => {
                a.pending = Some(op);
                return self.cloud_failure(a, e, None).await.map(Settled::Done);
            }
        };
        match resolution {
            Resolution::InProgress => {
                let reason = step_reason(op.action);
                let message = format!("{} on NIC {}", reason_text(op.action), a.spec.nic.id);
                a.pending = Some(op);
                let delay = self.next_wait();
                let details = status::details(&a.spec, &a.owned, &[], Some(reason));
                let outcome = Outcome {
                    standing: Standing::progressing(reason, message),
                    details,
                    action: Action::requeue(delay),
                };
                self.report_apply(a, outcome).await.map(Settled::Done)
            }
            Resolution::Applied { addresses } => {
                self.applied(a, &op, &addresses).await;
                a.pending = None;
                a.last_error = None;
                self.ctx.memory(&self.uid, |m| {
                    m.request_ids.remove(&op.sequence);
                    m.waits = 0;
                    m.errors = 0;
                });
                Ok(Settled::Continue)
            }
            Resolution::NotApplied => {
                if op.token.is_some() && op.request_id.is_none() {
                    // The answer was lost: the same request with the same
                    // token is safe to send again, and a new one is not.
                    info!(
                        sequence = op.sequence,
                        "resending the recorded request with its token"
                    );
                    let steps = Vec::new();
                    return self.send(a, op, &steps).await;
                }
                a.pending = None;
                Ok(Settled::Continue)
            }
            Resolution::Failed(e) => {
                a.pending = None;
                self.ctx.memory(&self.uid, |m| {
                    m.request_ids.remove(&op.sequence);
                });
                self.refused(a, &op, e, &[]).await
            }
        }
    }

    /// The cloud refused a call (or its task failed): nothing changed.
    async fn refused(
        &mut self,
        a: &mut Apply,
        op: &Operation,
        e: CloudError,
        steps: &[Step],
    ) -> Result<Settled, Error> {
        let generation = self.claim.metadata.generation.unwrap_or(0);
        a.last_error = Some(status::last_error(&e, self.now));
        self.cloud_class = Some(e.class.as_str());
        self.warn_event(
            "CloudError",
            &format!("{} failed with {}: {}", e.action, e.code, e.message),
        )
        .await;
        // A batch of explicit addresses refused as a whole: find the bad
        // address instead of refusing them all.
        if op.action == CloudAction::AssignIpv4
            && !op.addresses.is_empty()
            && matches!(
                e.class,
                ErrorClass::InvalidInput | ErrorClass::Conflict | ErrorClass::Terminal
            )
        {
            let v4: Vec<std::net::Ipv4Addr> = op
                .addresses
                .iter()
                .filter_map(|a| match a {
                    IpAddr::V4(v) => Some(*v),
                    IpAddr::V6(_) => None,
                })
                .collect();
            if v4.len() == 1 {
                self.ctx
                    .memory(&self.uid, |m| m.reject(generation, v4[0], &e.code));
                return Ok(Settled::Continue);
            }
            let culprits = match &a.nic {
                Some(nic) => match a.provider.describe_subnet(nic).await {
                    Ok(Some(subnet)) => plan::bad_in_subnet(&v4, &subnet),
                    _ => Vec::new(),
                },
                None => Vec::new(),
            };
            self.ctx.memory(&self.uid, |m| {
                if culprits.is_empty() {
                    m.suspect(generation, &v4);
                } else {
                    for c in &culprits {
                        m.reject(generation, *c, &e.code);
                    }
                }
            });
            return Ok(Settled::Continue);
        }
        let step = steps.first().cloned().unwrap_or_else(|| step_of(op));
        self.cloud_failure(a, e, Some(step))
            .await
            .map(Settled::Done)
    }

    /// Reports a cloud error by its class and chooses when to come back.
    async fn cloud_failure(
        &mut self,
        a: &mut Apply,
        e: CloudError,
        step: Option<Step>,
    ) -> Result<Action, Error> {
        let generation = self.claim.metadata.generation.unwrap_or(0);
        let text = format!("{} failed with {}: {}", e.action, e.code, e.message);
        // A state the cloud refuses changes in that does not pass by itself
        // (say `CREATE_FAILED`): retrying cannot help, whatever the code's class.
        let stuck_nic = a
            .nic
            .as_ref()
            .is_some_and(|n| matches!(n.status, crate::cloud::NicStatus::Other(_)));
        let class = if stuck_nic && e.class == ErrorClass::Transient {
            ErrorClass::Terminal
        } else {
            e.class
        };
        self.cloud_class = Some(class.as_str());
        let (standing, action) = match class {
            ErrorClass::Throttled => (
                Standing::progressing(
                    "Throttled",
                    format!("the cloud is throttling {}; slowing down", e.action),
                ),
                Action::requeue(self.next_error_delay()),
            ),
            ErrorClass::Transient => (
                Standing::progressing(
                    "CloudUnavailable",
                    format!("{} failed with {}; retrying with backoff", e.action, e.code),
                ),
                Action::requeue(self.next_error_delay()),
            ),
            ErrorClass::Credentials => (
                Standing::stalled("CredentialsRejected", text),
                Action::requeue(self.ctx.settings.slow_retry),
            ),
            ErrorClass::Configuration => (
                Standing::stalled("ProviderConfigInvalid", text),
                Action::requeue(self.ctx.settings.slow_retry),
            ),
            ErrorClass::InvalidInput
            | ErrorClass::Terminal
            | ErrorClass::Conflict
            | ErrorClass::NotFound => {
                if let Some(step) = step {
                    self.ctx
                        .memory(&self.uid, |m| m.refuse(generation, step, e.clone()));
                }
                (
                    Standing::stalled("CloudRefused", text),
                    Action::requeue(self.ctx.settings.resync),
                )
            }
        };
        if !matches!(e.class, ErrorClass::Throttled) {
            a.last_error = Some(status::last_error(&e, self.now));
        }
        let reason = standing.reason().to_string();
        let details = status::details(&a.spec, &a.owned, &[], Some(&reason));
        self.report_apply(
            a,
            Outcome {
                standing,
                details,
                action,
            },
        )
        .await
    }

    /// Takes a call's effect into the claim's ownership and the local view of the NIC.
    async fn applied(&mut self, a: &mut Apply, op: &Operation, addresses: &BTreeSet<IpAddr>) {
        let source = if op.count.is_some() {
            crate::api::v1alpha1::AddressSource::Count
        } else {
            crate::api::v1alpha1::AddressSource::Explicit
        };
        let nic = a.nic.get_or_insert_with(|| plan::empty_nic(&a.spec));
        let shown: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
        match op.action {
            CloudAction::AssignIpv4 | CloudAction::AssignIpv6 => {
                for addr in addresses {
                    match addr {
                        IpAddr::V4(v) if !a.owned.ipv4.iter().any(|o| o.address == *v) => {
                            a.owned.ipv4.push(Owned {
                                address: *v,
                                source,
                                since: self.now,
                            });
                            nic.secondary_ipv4.insert(*v);
                        }
                        IpAddr::V6(v) if !a.owned.ipv6.iter().any(|o| o.address == *v) => {
                            a.owned.ipv6.push(Owned {
                                address: *v,
                                source: crate::api::v1alpha1::AddressSource::Count,
                                since: self.now,
                            });
                            nic.ipv6.insert(*v);
                        }
                        _ => {}
                    }
                }
                if !shown.is_empty() {
                    self.event(
                        "Assigned",
                        &format!("assigned {} to NIC {}", shown.join(", "), a.spec.nic.id),
                    )
                    .await;
                }
            }
            CloudAction::UnassignIpv4 | CloudAction::UnassignIpv6 => {
                a.owned
                    .ipv4
                    .retain(|o| !addresses.contains(&IpAddr::V4(o.address)));
                a.owned
                    .ipv6
                    .retain(|o| !addresses.contains(&IpAddr::V6(o.address)));
                for addr in addresses {
                    match addr {
                        IpAddr::V4(v) => {
                            nic.secondary_ipv4.remove(v);
                        }
                        IpAddr::V6(v) => {
                            nic.ipv6.remove(v);
                        }
                    }
                }
                if !shown.is_empty() {
                    self.event(
                        "Released",
                        &format!("released {} from NIC {}", shown.join(", "), a.spec.nic.id),
                    )
                    .await;
                }
            }
            CloudAction::Attach => {
                if let Some(i) = &op.instance_id {
                    a.owned.attachment = Some(OwnedAttachment {
                        instance: i.clone(),
                        by_claim: true,
                    });
                    nic.instance_id = Some(i.clone());
                    nic.status = crate::cloud::NicStatus::InUse;
                    self.event(
                        "Attached",
                        &format!("attached NIC {} to instance {i}", a.spec.nic.id),
                    )
                    .await;
                }
            }
            CloudAction::Detach => {
                a.owned.attachment = None;
                nic.instance_id = None;
                nic.status = crate::cloud::NicStatus::Available;
                if let Some(i) = &op.instance_id {
                    self.event(
                        "Detached",
                        &format!("detached NIC {} from instance {i}", a.spec.nic.id),
                    )
                    .await;
                }
            }
        }
    }

    async fn report_apply(&mut self, a: &mut Apply, outcome: Outcome) -> Result<Action, Error> {
        let Outcome {
            standing,
            details,
            action,
        } = outcome;
        self.write(a, standing, details).await?;
        Ok(action)
    }

    /// Writes the status of an apply in progress.
    async fn write(
        &mut self,
        a: &Apply,
        standing: Standing,
        details: Vec<Detail>,
    ) -> Result<(), Error> {
        let report = Report {
            generation: self.claim.metadata.generation,
            spec: Some(&a.spec),
            owned: &a.owned,
            nic: a.nic.as_ref(),
            pending: a.pending.as_ref(),
            sequence: a.sequence,
            last_error: a.last_error.clone(),
            standing,
            details,
        };
        self.write_status(report).await
    }

    /// Writes a status computed without an apply (no provider, invalid spec,
    /// conflict): what is owned, pending and last failed stays as stored.
    async fn report(
        &mut self,
        spec: Option<&ValidSpec>,
        owned: &Ownership,
        outcome: Outcome,
    ) -> Result<Action, Error> {
        let status = self.status();
        let pending = status
            .and_then(|s| s.pending_operation.as_ref())
            .and_then(|p| Operation::try_from(p).ok());
        let report = Report {
            generation: self.claim.metadata.generation,
            spec,
            owned,
            nic: None,
            pending: pending.as_ref(),
            sequence: status.and_then(|s| s.operation_sequence).unwrap_or(0),
            last_error: status.and_then(|s| s.last_error.clone()),
            standing: outcome.standing,
            details: outcome.details,
        };
        self.write_status(report).await?;
        Ok(outcome.action)
    }

    /// Server-side apply of the whole status, skipped when nothing changed.
    async fn write_status(&mut self, report: Report<'_>) -> Result<(), Error> {
        let standing = report.standing.clone();
        let owned = report.owned.clone();
        let status = status::build(report, self.status(), self.now);
        self.ctx.metrics.set_claim(
            &self.key,
            crate::ops::ClaimMetrics {
                ready: standing == Standing::Converged,
                stalled: matches!(standing, Standing::Stalled { .. }),
                ipv4: owned.ipv4.len() as u32,
                ipv6: owned.ipv6.len() as u32,
            },
        );
        let new = serde_json::to_value(&status).map_err(Error::Serialize)?;
        let old = serde_json::to_value(self.status()).map_err(Error::Serialize)?;
        if new == old {
            return Ok(());
        }
        // This write records the outcome of a call (sent now, or settled now).
        let previous_pending = self.status().and_then(|s| s.pending_operation.clone());
        let records_outcome = (self.after_call || previous_pending.is_some())
            && status.pending_operation != previous_pending;
        // The resourceVersion this status was computed from is a
        // precondition: a write from a stale view (a leader that lost its
        // Lease while the write was on its way, or a cache behind another
        // writer) gets a 409 instead of replacing a newer status.
        let patch = json!({
            "apiVersion": "nicip.io/v1alpha1",
            "kind": "NicIpClaim",
            "metadata": {
                "name": self.claim.name_any(),
                "resourceVersion": self.claim.resource_version(),
            },
            "status": new,
        });
        let updated = self
            .api
            .patch_status(
                &self.claim.name_any(),
                &PatchParams::apply(status::FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        self.remember(updated);
        if records_outcome {
            self.after_call = false;
            self.checkpoint(Checkpoint::AfterStatusWrite).await;
        }
        Ok(())
    }

    fn remember(&mut self, updated: NicIpClaim) {
        self.ctx.memory(&self.uid, |m| {
            m.resource_version = updated.resource_version();
            m.know(updated.resource_version());
        });
        self.claim = Arc::new(updated);
    }

    async fn add_finalizer(&mut self) -> Result<(), Error> {
        let rv = self.claim.resource_version();
        let patch = if self.claim.finalizers().is_empty() {
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
            ])
        } else {
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
            ])
        };
        let patch: json_patch::Patch = serde_json::from_value(patch).map_err(Error::Serialize)?;
        let updated = self
            .api
            .patch(
                &self.claim.name_any(),
                &PatchParams::default(),
                &Patch::Json::<()>(patch),
            )
            .await?;
        self.remember(updated);
        Ok(())
    }

    /// Removes the finalizer: the claim's cloud side is done.
    async fn finish_deletion(&mut self) -> Result<Action, Error> {
        if self.has_finalizer() {
            let finalizers = self.claim.finalizers();
            if let Some(index) = finalizers.iter().position(|f| f == FINALIZER) {
                let patch = json!([
                    {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
                    {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
                ]);
                let patch: json_patch::Patch =
                    serde_json::from_value(patch).map_err(Error::Serialize)?;
                match self
                    .api
                    .patch(
                        &self.claim.name_any(),
                        &PatchParams::default(),
                        &Patch::Json::<()>(patch),
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let scope = self.claim.spec.provider_config_ref.name.clone();
        self.ctx
            .observer
            .forget(&scope, &crate::cloud::NicId(self.claim.spec.nic_id.clone()));
        self.ctx.forget(&self.uid, &self.key);
        Ok(Action::await_change())
    }

    fn ready_action(&self) -> Action {
        match self
            .claim
            .annotations()
            .get(RESYNC_ANNOTATION)
            .and_then(|v| humantime::parse_duration(v).ok())
        {
            Some(period) if period >= Duration::from_secs(1) => {
                Action::requeue(super::jitter(period))
            }
            // The drift sweep re-observes every claim on the resync period.
            _ => Action::await_change(),
        }
    }

    /// A short, growing delay while the cloud completes an operation.
    fn next_wait(&self) -> Duration {
        let n = self.ctx.memory(&self.uid, |m| {
            m.waits = m.waits.saturating_add(1);
            m.waits
        });
        let base = self.ctx.settings.async_poll;
        let delay = base
            .saturating_mul(1u32 << n.min(6).saturating_sub(1))
            .min(Duration::from_secs(10));
        super::jitter(delay)
    }

    /// Exponential backoff with jitter, capped; it starts over once the claim
    /// converges or a call completes. (The transport already honours a
    /// throttling answer's `Retry-After` within a call.)
    fn next_error_delay(&self) -> Duration {
        let cap = self.ctx.settings.max_backoff;
        self.ctx.memory(&self.uid, |m| {
            m.errors = m.errors.saturating_add(1);
            let delay = super::jitter(
                Duration::from_secs(1)
                    .saturating_mul(1u32 << m.errors.min(9))
                    .min(cap),
            );
            m.not_before = Some(tokio::time::Instant::now() + delay);
            delay
        })
    }

    async fn checkpoint(&self, point: Checkpoint) {
        if let Some(hook) = &self.ctx.settings.checkpoint {
            hook(point, self.key.clone()).await;
        }
    }

    async fn publish_notes(&self, notes: &[Note], management: ManagementPolicy) {
        for note in notes {
            match note {
                Note::Adopted(addrs) if management == ManagementPolicy::Full => {
                    let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                    self.event(
                        "Adopted",
                        &format!(
                            "adopted {} already on NIC {}",
                            list.join(", "),
                            self.claim.spec.nic_id
                        ),
                    )
                    .await;
                }
                Note::Drift(addrs) => {
                    let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                    let what = if management == ManagementPolicy::Full {
                        "restoring"
                    } else {
                        "reporting only (ObserveOnly)"
                    };
                    self.warn_event(
                        "DriftDetected",
                        &format!(
                            "{} removed from NIC {} outside nicip; {what}",
                            list.join(", "),
                            self.claim.spec.nic_id
                        ),
                    )
                    .await;
                }
                Note::Unowned(addrs) => {
                    let changed = self.ctx.memory(&self.uid, |m| {
                        let same = m.unowned_reported.as_ref() == Some(addrs);
                        m.unowned_reported = Some(addrs.clone());
                        !same
                    });
                    if changed {
                        let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                        info!(addresses = %list.join(","), "addresses on the NIC that this claim does not own are left alone");
                    }
                }
                _ => {}
            }
        }
    }

    async fn event(&self, reason: &str, note: &str) {
        self.publish(EventType::Normal, reason, note).await;
    }

    async fn warn_event(&self, reason: &str, note: &str) {
        self.publish(EventType::Warning, reason, note).await;
    }

    async fn publish(&self, type_: EventType, reason: &str, note: &str) {
        let note: String = note.chars().take(1000).collect();
        let regarding = self.claim.object_ref(&());
        if let Err(e) = self
            .ctx
            .recorder
            .publish(&regarding, type_, reason, "Reconcile", &note)
            .await
        {
            debug!(error = %e, "could not publish event");
        }
    }
}

enum Settled {
    /// Go on planning with what is known now.
    Continue,
    /// End the reconcile.
    Done(Action),
}

/// What one apply works with; changes as calls complete.
struct Apply {
    scope: String,
    provider: Arc<dyn NicProvider>,
    spec: ValidSpec,
    owned: Ownership,
    nic: Option<ObservedNic>,
    instance: Option<ObservedInstance>,
    pending: Option<Operation>,
    sequence: u64,
    last_error: Option<LastError>,
}

/// For deletion of a claim whose spec no longer validates: only the NIC and
/// the policy matter, and only owned addresses are released.
fn release_only_spec(claim: &NicIpClaim) -> ValidSpec {
    let mut nic = crate::cloud::NicRef::new(claim.spec.nic_id.trim());
    if let Some(vpc) = &claim.spec.vpc_id {
        nic = nic.in_vpc(vpc.trim());
    }
    ValidSpec {
        nic,
        ipv4: Ipv4Want::Nothing,
        qos: None,
        ipv6: None,
        instance: None,
        deletion: claim.spec.deletion_policy,
        management: claim.spec.management_policy,
    }
}

fn step_reason(action: CloudAction) -> &'static str {
    match action {
        CloudAction::AssignIpv4 | CloudAction::AssignIpv6 => "Assigning",
        CloudAction::UnassignIpv4 | CloudAction::UnassignIpv6 => "Releasing",
        CloudAction::Attach => "Attaching",
        CloudAction::Detach => "Detaching",
    }
}

fn reason_text(action: CloudAction) -> &'static str {
    match action {
        CloudAction::AssignIpv4 => "assigning IPv4 addresses",
        CloudAction::AssignIpv6 => "assigning IPv6 addresses",
        CloudAction::UnassignIpv4 => "releasing IPv4 addresses",
        CloudAction::UnassignIpv6 => "releasing IPv6 addresses",
        CloudAction::Attach => "attaching",
        CloudAction::Detach => "detaching",
    }
}

/// The step a recorded operation carried out (for refusal bookkeeping).
fn step_of(op: &Operation) -> Step {
    let v4: BTreeSet<std::net::Ipv4Addr> = op
        .addresses
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(v) => Some(*v),
            _ => None,
        })
        .collect();
    let v6: BTreeSet<std::net::Ipv6Addr> = op
        .addresses
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(v) => Some(*v),
            _ => None,
        })
        .collect();
    let instance = op
        .instance_id
        .clone()
        .unwrap_or_else(|| InstanceId(String::new()));
    match op.action {
        CloudAction::AssignIpv4 => Step::AssignIpv4 {
            request: match op.count {
                Some(n) => Ipv4Request::Count(n),
                None => Ipv4Request::Addresses(v4),
            },
        },
        CloudAction::UnassignIpv4 => Step::UnassignIpv4 {
            addresses: v4,
            reason: plan::ReleaseReason::ScaleDown,
        },
        CloudAction::AssignIpv6 => Step::AssignIpv6 {
            count: op.count.unwrap_or(1),
            billing: op.ipv6_billing.clone(),
        },
        CloudAction::UnassignIpv6 => Step::UnassignIpv6 {
            addresses: v6,
            reason: plan::ReleaseReason::ScaleDown,
        },
        CloudAction::Attach => Step::Attach { instance },
        CloudAction::Detach => Step::Detach { instance },
    }
}

fn refused_message(e: &CloudError) -> String {
    format!(
        "{} failed with {}: {}; not retried until the spec changes",
        e.action, e.code, e.message
    )
}

fn describe_steps(steps: &[Step]) -> String {
    let parts: Vec<String> = steps
        .iter()
        .map(|s| match s {
            Step::AssignIpv4 {
                request: Ipv4Request::Addresses(a),
            } => format!("assign {}", join(a)),
            Step::AssignIpv4 {
                request: Ipv4Request::Count(n),
            } => format!("assign {n} IPv4"),
            Step::UnassignIpv4 { addresses, .. } => format!("release {}", join(addresses)),
            Step::AssignIpv6 { count, .. } => format!("assign {count} IPv6"),
            Step::UnassignIpv6 { addresses, .. } => format!("release {}", join(addresses)),
            Step::Attach { instance } => format!("attach to {instance}"),
            Step::Detach { instance } => format!("detach from {instance}"),
        })
        .collect();
    parts.join("; ")
}

fn join<A: std::fmt::Display>(set: &BTreeSet<A>) -> String {
    set.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
