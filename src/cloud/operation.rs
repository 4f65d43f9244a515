//! Operation handles: one mutating wire call, recorded whole in a claim's
//! `status.pendingOperation` before it is sent, so that a new process can
//! resolve it from the cloud's state after a crash, a timeout or a lost
//! response, or send exactly the same request again (`docs/errors.md`,
//! "Unknown outcomes").
//!
//! Resolution rules ([`settle`]):
//! - explicit addresses: the call took effect for exactly the listed
//!   addresses the NIC now carries (assign) or no longer carries (unassign);
//! - count mode: the NIC's address set just before the call is recorded in
//!   `addresses_before`; the addresses that appeared since are the ones the
//!   call assigned, capped at `count` and taken in ascending order. This
//!   assumes nothing else assigns addresses to the NIC while the operation is
//!   pending, which the controller guarantees for the NICs it manages;
//! - without a token the cloud honours (Zenlayer, the legacy API) and without
//!   a recorded answer, "nothing visible" is "in progress" until the request
//!   can no longer act (its in-flight window after `started_at`), so it is
//!   never sent twice;
//! - Tencent calls carry a `ClientToken` derived from the claim's UID, its
//!   operation sequence number and the chunk, so resending after `NotApplied`
//!   is the same request and cannot act twice, while a new sequence number
//!   (after a failed task, or a repair) is a new request.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use serde::{Deserialize, Serialize};

use crate::api::v1alpha1::PendingOperation;

use super::{
    CloudError, ErrorClass, InstanceId, Ipv4Request, NicId, NicRef, NicStatus, ObservedNic,
    Provider, QosLevel,
};

/// Zenlayer's public-IPv6 billing fields (ignored elsewhere): the CRD's type.
pub use crate::api::v1alpha1::Ipv6Billing;
/// The mutating actions, in domain terms: the CRD's typed enum.
pub use crate::api::v1alpha1::OperationAction as Action;

impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            Action::AssignIpv4,
            Action::UnassignIpv4,
            Action::AssignIpv6,
            Action::UnassignIpv6,
            Action::Attach,
            Action::Detach,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
        .ok_or_else(|| format!("unknown pending operation action {s:?}"))
    }
}

/// Derives idempotency tokens from the claim's identity and its operation
/// sequence number, so that a retry of the recorded call is the same request,
/// while every new call (a bumped sequence number) gets a new token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    token: String,
}

impl IdempotencyKey {
    /// Tokens are `nicip-` + 40 hex chars: 46 characters, within Tencent's
    /// 64-character `ClientToken` limit.
    pub fn derive(claim_uid: &str, sequence: u64, chunk: u32) -> Self {
        let digest =
            crate::signing::sha256_hex(format!("{claim_uid}\n{sequence}\n{chunk}").as_bytes());
        IdempotencyKey {
            token: format!("nicip-{}", &digest[..40]),
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

/// One mutating wire call, complete enough to resend byte for byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub action: Action,
    pub nic: NicRef,
    pub sequence: u64,
    pub chunk: u32,
    /// Idempotency token (Tencent `ClientToken`); `None` where the API has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The cloud's request id (Tencent: the task id) once the call was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The explicit addresses of this call; for releases exactly the owned
    /// addresses to release. Empty in count mode.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_level: Option<QosLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_billing: Option<Ipv6Billing>,
    /// Attach and Detach: the instance (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<InstanceId>,
    /// The NIC's secondary addresses (IPv4 and IPv6) just before the call.
    #[serde(default)]
    pub addresses_before: Vec<IpAddr>,
    /// When the request was first sent; `None` until [`Operation::mark_sent`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<jiff::Timestamp>,
}

fn before_of(nic: &ObservedNic) -> Vec<IpAddr> {
    nic.secondary_ipv4
        .iter()
        .map(|a| IpAddr::V4(*a))
        .chain(nic.ipv6.iter().map(|a| IpAddr::V6(*a)))
        .collect()
}

impl Operation {
    fn new(
        action: Action,
        nic: &NicRef,
        before: &ObservedNic,
        token: Option<&IdempotencyKey>,
        sequence: u64,
        chunk: u32,
    ) -> Self {
        Operation {
            action,
            nic: nic.clone(),
            sequence,
            chunk,
            token: token.map(|k| k.token().to_string()),
            request_id: None,
            addresses: Vec::new(),
            count: None,
            qos_level: None,
            ipv6_billing: None,
            instance_id: None,
            addresses_before: before_of(before),
            started_at: None,
        }
    }

    pub fn assign_ipv4(
        nic: &NicRef,
        request: Ipv4Request,
        qos: Option<QosLevel>,
        before: &ObservedNic,
        key: &IdempotencyKey,
        sequence: u64,
        chunk: u32,
    ) -> Self {
        let mut op = Operation::new(Action::AssignIpv4, nic, before, Some(key), sequence, chunk);
        op.qos_level = qos;
        match request {
            Ipv4Request::Addresses(set) => op.addresses = set.into_iter().map(IpAddr::V4).collect(),
            Ipv4Request::Count(n) => op.count = Some(n),
        }
        op
    }

    /// Tencent's `UnassignPrivateIpAddresses` takes no `ClientToken`: the
    /// key is not used, the sequence number still names the call.
    pub fn unassign_ipv4(
        nic: &NicRef,
        addresses: &BTreeSet<Ipv4Addr>,
        before: &ObservedNic,
        _key: &IdempotencyKey,
        sequence: u64,
        chunk: u32,
    ) -> Self {
        let mut op = Operation::new(Action::UnassignIpv4, nic, before, None, sequence, chunk);
        op.addresses = addresses.iter().map(|a| IpAddr::V4(*a)).collect();
        op
    }

    pub fn assign_ipv6(
        nic: &NicRef,
        count: u32,
        billing: Option<Ipv6Billing>,
        before: &ObservedNic,
        key: &IdempotencyKey,
        sequence: u64,
    ) -> Self {
        let mut op = Operation::new(Action::AssignIpv6, nic, before, Some(key), sequence, 0);
        op.count = Some(count);
        op.ipv6_billing = billing;
        op
    }

    /// `addresses` are the IPv6 addresses the claim owns and releases; on
    /// Zenlayer (whose call names only the NIC) the NIC must still carry
    /// exactly that address when the call is sent.
    pub fn unassign_ipv6(
        nic: &NicRef,
        addresses: &BTreeSet<Ipv6Addr>,
        before: &ObservedNic,
        _key: &IdempotencyKey,
        sequence: u64,
    ) -> Self {
        let mut op = Operation::new(Action::UnassignIpv6, nic, before, None, sequence, 0);
        op.addresses = addresses.iter().map(|a| IpAddr::V6(*a)).collect();
        op
    }

    pub fn attach(
        nic: &NicRef,
        instance: &InstanceId,
        before: &ObservedNic,
        key: &IdempotencyKey,
        sequence: u64,
    ) -> Self {
        let mut op = Operation::new(Action::Attach, nic, before, Some(key), sequence, 0);
        op.instance_id = Some(instance.clone());
        op
    }

    pub fn detach(
        nic: &NicRef,
        instance: &InstanceId,
        before: &ObservedNic,
        key: &IdempotencyKey,
        sequence: u64,
    ) -> Self {
        let mut op = Operation::new(Action::Detach, nic, before, Some(key), sequence, 0);
        op.instance_id = Some(instance.clone());
        op
    }

    /// Stamps `started_at` with the current time. Call it right before the
    /// status write that records the operation; `submit` refuses an
    /// operation that was never marked, and starts no attempt after its
    /// send window. A resend of a recorded operation keeps its first stamp.
    /// The time is cut to the microsecond that the claim's status keeps.
    pub fn mark_sent(&mut self) {
        let now = jiff::Timestamp::now();
        let micros = now.as_microsecond();
        self.started_at = Some(jiff::Timestamp::from_microsecond(micros).unwrap_or(now));
    }

    /// An operation with nothing set, for tests of request encoding.
    #[cfg(test)]
    pub(crate) fn blank(action: Action) -> Self {
        Operation {
            action,
            nic: NicRef::new("nic-1"),
            sequence: 0,
            chunk: 0,
            token: None,
            request_id: None,
            addresses: Vec::new(),
            count: None,
            qos_level: None,
            ipv6_billing: None,
            instance_id: None,
            addresses_before: Vec::new(),
            started_at: None,
        }
    }

    pub(crate) fn ipv4_addresses(&self) -> Vec<Ipv4Addr> {
        self.addresses
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .collect()
    }

    pub(crate) fn ipv6_addresses(&self) -> Vec<Ipv6Addr> {
        self.addresses
            .iter()
            .filter_map(|a| match a {
                IpAddr::V6(v6) => Some(*v6),
                IpAddr::V4(_) => None,
            })
            .collect()
    }

    fn is_release(&self) -> bool {
        matches!(
            self.action,
            Action::UnassignIpv4 | Action::UnassignIpv6 | Action::Detach
        )
    }
}

impl From<&Operation> for PendingOperation {
    fn from(op: &Operation) -> Self {
        PendingOperation {
            action: op.action,
            nic_id: op.nic.id.0.clone(),
            vpc_id: op.nic.vpc_id.clone(),
            sequence: op.sequence,
            chunk: op.chunk,
            token: op.token.clone(),
            request_id: op.request_id.clone(),
            addresses: op.addresses.iter().map(IpAddr::to_string).collect(),
            count: op.count,
            qos_level: op.qos_level,
            ipv6_billing: op.ipv6_billing.clone(),
            instance_id: op.instance_id.as_ref().map(|i| i.0.clone()),
            addresses_before: op.addresses_before.iter().map(IpAddr::to_string).collect(),
            started_at: op.started_at.map(MicroTime),
        }
    }
}

/// Reads a stored pending operation back (e.g. in a new process) so that it
/// can be resolved or resent. A status edited into nonsense is a clear error.
impl TryFrom<&PendingOperation> for Operation {
    type Error = String;

    fn try_from(p: &PendingOperation) -> Result<Self, String> {
        let parse = |list: &[String]| {
            list.iter()
                .map(|a| {
                    a.parse::<IpAddr>()
                        .map_err(|_| format!("pendingOperation holds an invalid address {a:?}"))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        if p.nic_id.is_empty() {
            return Err("pendingOperation has no nicId".into());
        }
        let instance_id = p.instance_id.clone().map(InstanceId);
        if matches!(p.action, Action::Attach | Action::Detach)
            && instance_id.as_ref().is_none_or(|i| i.0.is_empty())
        {
            return Err(format!("pendingOperation {} has no instanceId", p.action));
        }
        Ok(Operation {
            action: p.action,
            nic: NicRef {
                id: NicId(p.nic_id.clone()),
                vpc_id: p.vpc_id.clone(),
            },
            sequence: p.sequence,
            chunk: p.chunk,
            token: p.token.clone(),
            request_id: p.request_id.clone(),
            addresses: parse(&p.addresses)?,
            count: p.count,
            qos_level: p.qos_level,
            ipv6_billing: p.ipv6_billing.clone(),
            instance_id,
            addresses_before: parse(&p.addresses_before)?,
            started_at: p.started_at.as_ref().map(|t| t.0),
        })
    }
}

/// What `submit` learned from the cloud's answer to its one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Submitted {
    /// The request id of the accepted call; Tencent's task id.
    pub request_id: Option<String>,
    /// Addresses the cloud reported as assigned (count mode picks them), or
    /// the released ones.
    pub addresses: BTreeSet<IpAddr>,
    /// True when the change is already visible; false when the cloud
    /// completes it later (resolve until settled).
    pub complete: bool,
}

/// The outcome of an operation, decided from the cloud's own state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The cloud may still be working on it: resolve again after a short, growing delay.
    InProgress,
    /// It took effect. `addresses` are the addresses it added (assign) or
    /// removed (unassign), possibly a subset of the call's list; empty for
    /// attach/detach.
    Applied { addresses: BTreeSet<IpAddr> },
    /// Nothing of it is visible and it can no longer act: submitting the
    /// same operation again is safe.
    NotApplied,
    /// The cloud ran it and reports failure (a task ended `FAILED`), or it
    /// can never apply (the NIC is gone). Plan again with a new sequence number.
    Failed(CloudError),
}

/// An asynchronous task's state (Tencent `DescribeVpcTaskResult`, the
/// legacy task query), for [`settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    Running,
    Succeeded,
    /// Classified by the task's own error code where its output names one.
    Failed(CloudError),
}

/// Whether `op` carries a token the provider's API honours, so that a
/// resend cannot act twice.
fn tokened(provider: Provider, op: &Operation) -> bool {
    provider == Provider::Tencent && op.token.is_some()
}

/// Settles an operation against one observation of its NIC (`None`: the NIC
/// is gone) and, on task-based providers, the task's state when known.
/// Pure: `now` and `window` decide whether an untokened call without a
/// recorded answer may still be in flight.
pub fn settle(
    provider: Provider,
    op: &Operation,
    nic: Option<&ObservedNic>,
    task: Option<&TaskState>,
    now: jiff::Timestamp,
    window: Duration,
) -> Resolution {
    match task {
        Some(TaskState::Running) => return Resolution::InProgress,
        Some(TaskState::Failed(e)) => return Resolution::Failed(e.clone()),
        Some(TaskState::Succeeded) | None => {}
    }
    let resolution = from_observation(provider, op, nic);
    if resolution != Resolution::NotApplied || tokened(provider, op) || task.is_some() {
        return resolution;
    }
    if op.request_id.is_none() && may_be_in_flight(op, now, window) {
        Resolution::InProgress
    } else {
        resolution
    }
}

/// Whether a call without a recorded answer may still act: within its
/// in-flight window after it was first sent. A call never marked sent was
/// never sent.
fn may_be_in_flight(op: &Operation, now: jiff::Timestamp, window: Duration) -> bool {
    let Some(started) = op.started_at else {
        return false;
    };
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    now.as_millisecond()
        .saturating_sub(started.as_millisecond())
        < window_ms
}

/// Whether a NIC or address state means a change is still being applied.
pub(crate) fn in_flux_state(state: Option<&str>) -> bool {
    matches!(state, Some("PENDING" | "DELETING" | "MIGRATING"))
}

/// The task state of a failed task from its output: classified by the
/// error code the output starts with when `table` knows it (a quota failure
/// is terminal, not transient), else `Client.TaskFailed`.
pub(crate) fn task_failed(
    provider: Provider,
    action: &str,
    task: &str,
    code: Option<&str>,
    class_of: impl Fn(&str) -> Option<ErrorClass>,
    output: &str,
) -> CloudError {
    let known = code
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .and_then(|c| class_of(c).map(|class| (c.to_string(), class)));
    let (code, class) =
        known.unwrap_or_else(|| ("Client.TaskFailed".to_string(), ErrorClass::Transient));
    let mut err = CloudError::answered(
        provider,
        action,
        code,
        format!("task {task} failed: {output}"),
        None,
        Some(task.to_string()),
        class,
    );
    // The task ran and failed: the cloud rolled the change back.
    err.outcome = super::Outcome::Rejected;
    err
}

/// The shared resolve path of task-based providers: the observation first;
/// the task only when the observation cannot decide (nothing visible and a
/// task id is known). A task that succeeded while the observation shows
/// nothing means the observation is older than the change: the NIC is
/// described again (`describe`) and decides alone. A task id the cloud
/// forgot leaves the observation.
pub(crate) async fn resolve_with_task<F, Fut, D, DFut>(
    provider: Provider,
    op: &Operation,
    nic: Option<&ObservedNic>,
    window: Duration,
    task_state: F,
    describe: D,
) -> Result<Resolution, CloudError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<TaskState, CloudError>>,
    D: FnOnce() -> DFut,
    DFut: std::future::Future<Output = Result<Option<ObservedNic>, CloudError>>,
{
    let now = jiff::Timestamp::now();
    let first = settle(provider, op, nic, None, now, window);
    let Some(task) = op.request_id.clone() else {
        return Ok(first);
    };
    if first != Resolution::NotApplied {
        return Ok(first);
    }
    let state = match task_state(task).await {
        Ok(state) => state,
        Err(e) if e.class == ErrorClass::NotFound => return Ok(first),
        Err(e) => return Err(e),
    };
    if state == TaskState::Succeeded {
        let fresh = describe().await?;
        return Ok(settle(
            provider,
            op,
            fresh.as_ref(),
            Some(&state),
            now,
            window,
        ));
    }
    Ok(settle(provider, op, nic, Some(&state), now, window))
}

fn from_observation(provider: Provider, op: &Operation, nic: Option<&ObservedNic>) -> Resolution {
    let Some(nic) = nic else {
        return if op.is_release() {
            // Releasing from a NIC that is gone: nothing is left to release.
            Resolution::Applied {
                addresses: op.addresses.iter().copied().collect(),
            }
        } else {
            Resolution::Failed(CloudError::client(
                provider,
                op.action.as_str(),
                "Client.NicNotFound",
                ErrorClass::NotFound,
                format!("NIC {} no longer exists", op.nic.id),
            ))
        };
    };
    let before: BTreeSet<IpAddr> = op.addresses_before.iter().copied().collect();
    let current: BTreeSet<IpAddr> = before_of(nic).into_iter().collect();
    let involved: BTreeSet<IpAddr> = if op.addresses.is_empty() {
        current.symmetric_difference(&before).copied().collect()
    } else {
        op.addresses.iter().copied().collect()
    };
    if !nic.addresses_in_flux.is_disjoint(&involved)
        || (op.addresses.is_empty() && !nic.addresses_in_flux.is_empty())
    {
        return Resolution::InProgress;
    }
    let applied = |addresses: BTreeSet<IpAddr>| {
        if addresses.is_empty() {
            Resolution::NotApplied
        } else {
            Resolution::Applied { addresses }
        }
    };
    let done = Resolution::Applied {
        addresses: BTreeSet::new(),
    };
    match op.action {
        Action::AssignIpv4 | Action::AssignIpv6 => {
            let wanted_v6 = op.action == Action::AssignIpv6;
            if op.addresses.is_empty() {
                let cap = op.count.unwrap_or(u32::MAX) as usize;
                applied(
                    current
                        .difference(&before)
                        .filter(|a| a.is_ipv6() == wanted_v6)
                        .copied()
                        .take(cap)
                        .collect(),
                )
            } else {
                applied(involved.intersection(&current).copied().collect())
            }
        }
        Action::UnassignIpv4 | Action::UnassignIpv6 => {
            applied(involved.difference(&current).copied().collect())
        }
        Action::Attach => match (&nic.status, &nic.instance_id) {
            (NicStatus::Attaching, _) => Resolution::InProgress,
            (_, Some(id)) if Some(id) == op.instance_id.as_ref() => done,
            _ => Resolution::NotApplied,
        },
        // Released when the NIC no longer carries that exact instance.
        Action::Detach => match (&nic.status, &nic.instance_id) {
            (NicStatus::Detaching, _) => Resolution::InProgress,
            (_, Some(id)) if Some(id) == op.instance_id.as_ref() => Resolution::NotApplied,
            _ => done,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{NicId, NicStatus};

    const WINDOW: Duration = Duration::from_secs(60);

    fn nic(secondary: &[&str]) -> ObservedNic {
        ObservedNic {
            id: NicId("nic-1".into()),
            status: NicStatus::InUse,
            vpc_id: None,
            subnet_id: None,
            primary_ipv4: Some(Ipv4Addr::new(10, 0, 0, 2)),
            secondary_ipv4: secondary.iter().map(|s| s.parse().unwrap()).collect(),
            ipv6: BTreeSet::new(),
            ipv6_cidr: None,
            instance_id: None,
            addresses_in_flux: BTreeSet::new(),
            zone: None,
        }
    }

    fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn v4(list: &[&str]) -> BTreeSet<Ipv4Addr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn key() -> IdempotencyKey {
        IdempotencyKey::derive("uid", 1, 0)
    }

    fn r() -> NicRef {
        NicRef::new("nic-1")
    }

    /// Sent at `at`, settled at `now`.
    fn sent(mut op: Operation, at: jiff::Timestamp) -> Operation {
        op.started_at = Some(at);
        op
    }

    fn t(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn applied(list: &[&str]) -> Resolution {
        Resolution::Applied {
            addresses: ips(list),
        }
    }

    #[test]
    fn tokens_are_deterministic_and_distinct_per_sequence_and_chunk() {
        let a = IdempotencyKey::derive("uid-1", 3, 0);
        assert_eq!(a, IdempotencyKey::derive("uid-1", 3, 0));
        assert_ne!(
            a,
            IdempotencyKey::derive("uid-1", 4, 0),
            "a new sequence retries"
        );
        assert_ne!(a, IdempotencyKey::derive("uid-1", 3, 1), "chunks differ");
        assert_ne!(a, IdempotencyKey::derive("uid-2", 3, 0));
        assert!(a.token().starts_with("nicip-"));
        assert!(a.token().len() <= 64 && a.token().is_ascii());
    }

    fn every_field_set() -> Operation {
        let before = ObservedNic {
            ipv6: ["2001:db8::9".parse().unwrap()].into(),
            ..nic(&["10.0.0.5"])
        };
        let mut op = Operation::assign_ipv4(
            &r().in_vpc("vpc-1"),
            Ipv4Request::Addresses(v4(&["10.0.0.7", "10.0.0.8"])),
            Some(QosLevel::Au),
            &before,
            &IdempotencyKey::derive("uid", 7, 2),
            7,
            2,
        );
        op.count = Some(3);
        op.request_id = Some("req-1".into());
        op.instance_id = Some(InstanceId("ins-1".into()));
        op.ipv6_billing = Some(Ipv6Billing {
            internet_charge_type: Some("ByTrafficPackage".into()),
            bandwidth: Some(100),
            package_size: Some(1.5),
            cluster_id: Some("bwc-1".into()),
        });
        op.mark_sent();
        op
    }

    #[test]
    fn every_field_round_trips_through_the_claim_status_and_json() {
        let op = every_field_set();
        let stored = PendingOperation::from(&op);
        // Every field of the stored form is set, so none can be dropped unnoticed.
        let json = serde_json::to_value(&stored).unwrap();
        for field in [
            "action",
            "nicId",
            "vpcId",
            "sequence",
            "chunk",
            "token",
            "requestId",
            "addresses",
            "count",
            "qosLevel",
            "ipv6Billing",
            "instanceId",
            "addressesBefore",
            "startedAt",
        ] {
            assert!(json.get(field).is_some(), "missing {field} in {json}");
        }
        assert_eq!(json["action"], "AssignIpv4");
        assert_eq!(json["ipv6Billing"]["packageSize"], 1.5);
        let back: PendingOperation = serde_json::from_value(json).unwrap();
        assert_eq!(Operation::try_from(&back).unwrap(), op);
        let json = serde_json::to_value(&op).unwrap();
        assert_eq!(serde_json::from_value::<Operation>(json).unwrap(), op);
    }

    #[test]
    fn a_stored_operation_edited_into_nonsense_is_a_clear_error() {
        let mut stored = PendingOperation::from(&every_field_set());
        stored.addresses_before = vec!["10.0.0.300".into()];
        assert!(
            Operation::try_from(&stored)
                .unwrap_err()
                .contains("10.0.0.300")
        );
        let mut stored = PendingOperation::from(&Operation::attach(
            &r(),
            &InstanceId("ins-1".into()),
            &nic(&[]),
            &key(),
            1,
        ));
        stored.instance_id = None;
        assert!(
            Operation::try_from(&stored)
                .unwrap_err()
                .contains("instanceId")
        );
        let json = serde_json::json!({"action": "Explode", "nicId": "n", "sequence": 1});
        assert!(serde_json::from_value::<PendingOperation>(json).is_err());
    }

    #[test]
    fn mark_sent_stamps_the_send_time_not_the_build_time() {
        let mut op =
            Operation::assign_ipv4(&r(), Ipv4Request::Count(1), None, &nic(&[]), &key(), 1, 0);
        assert_eq!(op.started_at, None);
        op.mark_sent();
        assert!(op.started_at.is_some());
    }

    #[test]
    fn settle_table() {
        let count2 = Operation::assign_ipv4(
            &r(),
            Ipv4Request::Count(2),
            None,
            &nic(&["10.0.0.5"]),
            &key(),
            1,
            0,
        );
        let explicit = Operation::assign_ipv4(
            &r(),
            Ipv4Request::Addresses(v4(&["10.0.0.7", "10.0.0.8"])),
            None,
            &nic(&[]),
            &key(),
            1,
            0,
        );
        let release = Operation::unassign_ipv4(
            &r(),
            &v4(&["10.0.0.7", "10.0.0.8"]),
            &nic(&["10.0.0.7", "10.0.0.8"]),
            &key(),
            1,
            0,
        );
        let mut busy = nic(&["10.0.0.7", "10.0.0.8"]);
        busy.addresses_in_flux = ips(&["10.0.0.8"]);
        let failed = TaskState::Failed(CloudError::client(
            Provider::Tencent,
            "AssignIpv4",
            "LimitExceeded",
            ErrorClass::Terminal,
            "quota".into(),
        ));
        use Provider::{Tencent, TencentLegacy, Zenlayer};
        type Row<'a> = (
            &'a str,
            Provider,
            &'a Operation,
            Option<ObservedNic>,
            Option<TaskState>,
            i64,
            Resolution,
        );
        let rows: Vec<Row> = vec![
            (
                "count: nothing new, long ago",
                Zenlayer,
                &count2,
                Some(nic(&["10.0.0.5"])),
                None,
                600,
                Resolution::NotApplied,
            ),
            (
                "count: nothing new, may be in flight",
                Zenlayer,
                &count2,
                Some(nic(&["10.0.0.5"])),
                None,
                5,
                Resolution::InProgress,
            ),
            (
                "count: nothing new, in flight, legacy",
                TencentLegacy,
                &count2,
                Some(nic(&["10.0.0.5"])),
                None,
                5,
                Resolution::InProgress,
            ),
            (
                "count: tokened, resend is safe at once",
                Tencent,
                &count2,
                Some(nic(&["10.0.0.5"])),
                None,
                5,
                Resolution::NotApplied,
            ),
            (
                "count: diff against before",
                Zenlayer,
                &count2,
                Some(nic(&["10.0.0.5", "10.0.0.9", "10.0.0.7"])),
                None,
                5,
                applied(&["10.0.0.7", "10.0.0.9"]),
            ),
            (
                "count: never more than asked",
                Zenlayer,
                &count2,
                Some(nic(&["10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8"])),
                None,
                5,
                applied(&["10.0.0.6", "10.0.0.7"]),
            ),
            (
                "explicit: partial",
                Tencent,
                &explicit,
                Some(nic(&["10.0.0.7"])),
                None,
                5,
                applied(&["10.0.0.7"]),
            ),
            (
                "explicit: in flux",
                Tencent,
                &explicit,
                Some(busy.clone()),
                None,
                5,
                Resolution::InProgress,
            ),
            (
                "task running",
                Tencent,
                &explicit,
                Some(nic(&[])),
                Some(TaskState::Running),
                5,
                Resolution::InProgress,
            ),
            (
                "task failed: its own error",
                Tencent,
                &explicit,
                Some(nic(&[])),
                Some(failed.clone()),
                5,
                Resolution::Failed(match &failed {
                    TaskState::Failed(e) => e.clone(),
                    _ => unreachable!(),
                }),
            ),
            (
                "task succeeded, legacy, nothing visible",
                TencentLegacy,
                &explicit,
                Some(nic(&[])),
                Some(TaskState::Succeeded),
                5,
                Resolution::NotApplied,
            ),
            (
                "release: nothing gone",
                Tencent,
                &release,
                Some(nic(&["10.0.0.7", "10.0.0.8"])),
                None,
                600,
                Resolution::NotApplied,
            ),
            (
                "release: all gone",
                Tencent,
                &release,
                Some(nic(&[])),
                None,
                5,
                applied(&["10.0.0.7", "10.0.0.8"]),
            ),
            (
                "release: NIC gone",
                Zenlayer,
                &release,
                None,
                None,
                5,
                applied(&["10.0.0.7", "10.0.0.8"]),
            ),
        ];
        for (what, provider, op, observed, task, after, want) in rows {
            let op = sent(op.clone(), t(0));
            let got = settle(
                provider,
                &op,
                observed.as_ref(),
                task.as_ref(),
                t(after),
                WINDOW,
            );
            assert_eq!(got, want, "{what}");
        }
        // Assigning to a NIC that is gone fails for good.
        match settle(Tencent, &explicit, None, None, t(5), WINDOW) {
            Resolution::Failed(e) => assert_eq!(e.class, ErrorClass::NotFound),
            other => panic!("unexpected {other:?}"),
        }
        // An answered call (request id recorded) is not in flight.
        let answered = Operation {
            request_id: Some("req".into()),
            ..sent(count2.clone(), t(0))
        };
        assert_eq!(
            settle(
                Zenlayer,
                &answered,
                Some(&nic(&["10.0.0.5"])),
                None,
                t(5),
                WINDOW
            ),
            Resolution::NotApplied
        );
        // Never marked sent: never sent.
        assert_eq!(
            settle(
                Zenlayer,
                &count2,
                Some(&nic(&["10.0.0.5"])),
                None,
                t(5),
                WINDOW
            ),
            Resolution::NotApplied
        );
    }

    #[test]
    fn attach_and_detach_settle_on_that_exact_instance() {
        let ins = InstanceId("ins-1".into());
        let mut n = nic(&[]);
        n.status = NicStatus::Available;
        let attach = sent(Operation::attach(&r(), &ins, &n, &key(), 1), t(0));
        let s = |op: &Operation, n: &ObservedNic| {
            settle(Provider::Tencent, op, Some(n), None, t(600), WINDOW)
        };
        assert_eq!(s(&attach, &n), Resolution::NotApplied);
        n.status = NicStatus::Attaching;
        assert_eq!(s(&attach, &n), Resolution::InProgress);
        n.status = NicStatus::InUse;
        n.instance_id = Some(ins.clone());
        assert!(matches!(s(&attach, &n), Resolution::Applied { .. }));
        let detach = sent(Operation::detach(&r(), &ins, &n, &key(), 2), t(0));
        assert_eq!(s(&detach, &n), Resolution::NotApplied);
        n.instance_id = Some(InstanceId("ins-other".into()));
        assert!(
            matches!(s(&detach, &n), Resolution::Applied { .. }),
            "not ours any more"
        );
        n.status = NicStatus::Available;
        n.instance_id = None;
        assert!(matches!(s(&detach, &n), Resolution::Applied { .. }));
    }

    #[test]
    fn failed_tasks_are_classified_by_their_own_code() {
        let lookup =
            |c: &str| (c == "LimitExceeded.EniPrivateIpLimit").then_some(ErrorClass::Terminal);
        let e = task_failed(
            Provider::Tencent,
            "AssignIpv4",
            "req-1",
            Some("LimitExceeded.EniPrivateIpLimit"),
            lookup,
            "LimitExceeded.EniPrivateIpLimit: full",
        );
        assert_eq!(
            (e.code.as_str(), e.class),
            ("LimitExceeded.EniPrivateIpLimit", ErrorClass::Terminal)
        );
        assert_eq!(e.outcome, super::super::Outcome::Rejected);
        let e = task_failed(
            Provider::Tencent,
            "AssignIpv4",
            "req-1",
            Some("Gibberish"),
            lookup,
            "Gibberish",
        );
        assert_eq!(
            (e.code.as_str(), e.class),
            ("Client.TaskFailed", ErrorClass::Transient)
        );
    }
}
