//! Operation handles: what a mutating call intends, stored in a claim's
//! `status.pendingOperation` before the call, so that a new process can
//! resolve it from the cloud's state after a crash, a timeout or a lost
//! response (DESIGN §3 "Crash safety").
//!
//! Resolution rules (also in `docs/errors.md`, "Unknown outcomes"):
//! - explicit addresses: the operation took effect for exactly the listed
//!   addresses the NIC now carries (assign) or no longer carries (unassign);
//! - count mode (Zenlayer has no idempotency token): the NIC's address set
//!   just before the call is recorded in `addresses_before`; the addresses
//!   that appeared since are the ones the call assigned, capped at `count`
//!   and taken in ascending order. This assumes nothing else assigns
//!   addresses to the NIC while the operation is pending, which the
//!   controller guarantees for the NICs it manages (one claim per NIC);
//! - without a token (Zenlayer, legacy API) and without a recorded answer,
//!   "nothing visible" is "in progress" until the request can no longer be
//!   in flight ([`unless_in_flight`]), so it is never sent twice;
//! - Tencent additionally sends a `ClientToken` derived from the claim's UID,
//!   generation and step, so resubmitting after `NotApplied` is the same
//!   request and cannot assign twice.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};

use crate::api::v1alpha1::PendingOperation;

use super::{
    CloudError, ErrorClass, InstanceId, Ipv4Request, NicRef, NicStatus, ObservedNic, Provider,
    QosLevel,
};

/// The mutating actions, in domain terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    AssignIpv4,
    UnassignIpv4,
    AssignIpv6,
    UnassignIpv6,
    Attach,
    Detach,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::AssignIpv4 => "AssignIpv4",
            Action::UnassignIpv4 => "UnassignIpv4",
            Action::AssignIpv6 => "AssignIpv6",
            Action::UnassignIpv6 => "UnassignIpv6",
            Action::Attach => "Attach",
            Action::Detach => "Detach",
        }
    }
}

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

/// Derives idempotency tokens from the claim's identity, so that the same
/// step of the same generation always produces the same token (and a retry
/// after a crash is the same request), while a new generation or a different
/// step never reuses one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    token: String,
}

impl IdempotencyKey {
    /// `step` names the operation within the generation (e.g. `assign-ipv4`,
    /// or a counter); tokens are `nicip-` + 40 hex chars, within Tencent's
    /// 64-character `ClientToken` limit even with a chunk suffix.
    pub fn derive(claim_uid: &str, generation: i64, step: &str) -> Self {
        let digest =
            crate::signing::sha256_hex(format!("{claim_uid}\n{generation}\n{step}").as_bytes());
        IdempotencyKey {
            token: format!("nicip-{}", &digest[..40]),
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

/// The token of one chunk of an operation split into several calls
/// (Tencent: at most 10 addresses per call). The first chunk uses the
/// operation's token unchanged.
pub(crate) fn chunk_token(token: &str, chunk: usize) -> String {
    if chunk == 0 {
        token.to_string()
    } else {
        format!("{token}-{chunk}")
    }
}

/// Zenlayer's public-IPv6 billing fields (ignored elsewhere).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Ipv6Billing {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internet_charge_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_size: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

/// A mutating call, as recorded in `status.pendingOperation`. Field names
/// follow that status object (`action`, `token`, `requestId`, `addresses`,
/// `addressesBefore`, `instanceId`, `startedAt`); `count`, `qosLevel` and
/// `ipv6Billing` are only set for the operations that need them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub action: Action,
    /// Idempotency token (Tencent `ClientToken`); `None` for calls without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The cloud's request id (Tencent task id) once the call was accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Explicit addresses involved; empty in count mode.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// The NIC's secondary addresses (IPv4 and IPv6) just before the call.
    #[serde(default)]
    pub addresses_before: Vec<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos_level: Option<QosLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_billing: Option<Ipv6Billing>,
    pub started_at: jiff::Timestamp,
}

fn before_of(nic: &ObservedNic) -> Vec<IpAddr> {
    nic.secondary_ipv4
        .iter()
        .map(|a| IpAddr::V4(*a))
        .chain(nic.ipv6.iter().map(|a| IpAddr::V6(*a)))
        .collect()
}

impl Operation {
    fn new(action: Action, before: &ObservedNic) -> Self {
        Operation {
            action,
            token: None,
            request_id: None,
            addresses: Vec::new(),
            addresses_before: before_of(before),
            instance_id: None,
            count: None,
            qos_level: None,
            ipv6_billing: None,
            started_at: jiff::Timestamp::now(),
        }
    }

    pub fn assign_ipv4(
        request: &Ipv4Request,
        qos: Option<QosLevel>,
        before: &ObservedNic,
        key: &IdempotencyKey,
    ) -> Self {
        let mut op = Operation::new(Action::AssignIpv4, before);
        op.token = Some(key.token().to_string());
        op.qos_level = qos;
        match request {
            Ipv4Request::Addresses(set) => {
                op.addresses = set.iter().map(|a| IpAddr::V4(*a)).collect()
            }
            Ipv4Request::Count(n) => op.count = Some(*n),
        }
        op
    }

    pub fn unassign_ipv4(addresses: &BTreeSet<std::net::Ipv4Addr>, before: &ObservedNic) -> Self {
        let mut op = Operation::new(Action::UnassignIpv4, before);
        op.addresses = addresses.iter().map(|a| IpAddr::V4(*a)).collect();
        op
    }

    pub fn assign_ipv6(
        count: u32,
        billing: Option<Ipv6Billing>,
        before: &ObservedNic,
        key: &IdempotencyKey,
    ) -> Self {
        let mut op = Operation::new(Action::AssignIpv6, before);
        op.token = Some(key.token().to_string());
        op.count = Some(count);
        op.ipv6_billing = billing;
        op
    }

    pub fn unassign_ipv6(addresses: &BTreeSet<std::net::Ipv6Addr>, before: &ObservedNic) -> Self {
        let mut op = Operation::new(Action::UnassignIpv6, before);
        op.addresses = addresses.iter().map(|a| IpAddr::V6(*a)).collect();
        op
    }

    pub fn attach(instance: &InstanceId, before: &ObservedNic, key: &IdempotencyKey) -> Self {
        let mut op = Operation::new(Action::Attach, before);
        op.token = Some(key.token().to_string());
        op.instance_id = Some(instance.0.clone());
        op
    }

    pub fn detach(instance: &InstanceId, before: &ObservedNic, key: &IdempotencyKey) -> Self {
        let mut op = Operation::new(Action::Detach, before);
        op.token = Some(key.token().to_string());
        op.instance_id = Some(instance.0.clone());
        op
    }

    /// An operation with nothing set, for tests of request encoding.
    #[cfg(test)]
    pub(crate) fn blank(action: Action) -> Self {
        Operation {
            action,
            token: None,
            request_id: None,
            addresses: Vec::new(),
            addresses_before: Vec::new(),
            instance_id: None,
            count: None,
            qos_level: None,
            ipv6_billing: None,
            started_at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    pub(crate) fn ipv4_addresses(&self) -> Vec<std::net::Ipv4Addr> {
        self.addresses
            .iter()
            .filter_map(|a| {
                if let IpAddr::V4(v4) = a {
                    Some(*v4)
                } else {
                    None
                }
            })
            .collect()
    }

    pub(crate) fn ipv6_addresses(&self) -> Vec<std::net::Ipv6Addr> {
        self.addresses
            .iter()
            .filter_map(|a| {
                if let IpAddr::V6(v6) = a {
                    Some(*v6)
                } else {
                    None
                }
            })
            .collect()
    }
}

/// Stored in the claim's `status.pendingOperation`. `qosLevel` and the IPv6
/// billing fields are not stored: they come from the spec, and the
/// controller rebuilds an operation from the spec (same idempotency key, so
/// the same token) when it has to submit it again.
impl From<&Operation> for PendingOperation {
    fn from(op: &Operation) -> Self {
        PendingOperation {
            action: op.action.as_str().to_string(),
            token: op.token.clone(),
            request_id: op.request_id.clone(),
            addresses: op.addresses.iter().map(IpAddr::to_string).collect(),
            count: op.count,
            addresses_before: op.addresses_before.iter().map(IpAddr::to_string).collect(),
            instance_id: op.instance_id.clone(),
            started_at: Time(op.started_at),
        }
    }
}

/// Reads a stored pending operation back (e.g. in a new process) so that it
/// can be resolved. A status edited into nonsense is a clear error.
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
        Ok(Operation {
            action: p.action.parse()?,
            token: p.token.clone(),
            request_id: p.request_id.clone(),
            addresses: parse(&p.addresses)?,
            addresses_before: parse(&p.addresses_before)?,
            instance_id: p.instance_id.clone(),
            count: p.count,
            qos_level: None,
            ipv6_billing: None,
            started_at: p.started_at.0,
        })
    }
}

/// What `submit` learned from the cloud.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Submitted {
    /// The request id of the (last) accepted call; Tencent's task id.
    pub request_id: Option<String>,
    /// Addresses the cloud reported as assigned (count mode picks them).
    pub addresses: BTreeSet<IpAddr>,
    /// True when the change is already visible; false when the cloud
    /// completes it later (resolve until settled).
    pub complete: bool,
}

/// The outcome of an operation, decided from the cloud's own state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The cloud is still working on it: resolve again after a short, growing delay.
    InProgress,
    /// It took effect. `addresses` are the addresses it added (assign) or
    /// removed (unassign), possibly a subset of an explicit list when only
    /// some chunks were applied; empty for attach/detach.
    Applied { addresses: BTreeSet<IpAddr> },
    /// Nothing of it is visible: it never reached the cloud or was rejected.
    /// Submitting the same operation again is safe.
    NotApplied,
    /// The cloud ran it and reports failure (a Tencent task ended `FAILED`).
    Failed(CloudError),
}

/// Polls an asynchronous task with a growing interval (50 ms doubling to
/// 2 s) until `running` says it is over, for at most two minutes: chunks of
/// one operation are sent one after the other because the cloud locks the
/// ENI while a task runs. `running` returns an error for a failed task.
pub(crate) async fn wait_for_task<F, Fut>(
    provider: Provider,
    action: &str,
    task: &str,
    running: F,
) -> Result<(), CloudError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool, CloudError>>,
{
    let mut delay = std::time::Duration::from_millis(50);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while running().await? {
        if std::time::Instant::now() > deadline {
            return Err(CloudError::client(
                provider,
                action,
                "Client.Timeout",
                ErrorClass::Transient,
                format!("task {task} still running after 120 s"),
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(2));
    }
    Ok(())
}

/// For calls without an idempotency token (Zenlayer, the legacy API): when
/// no answer was recorded (`request_id` unset: the response was lost, the
/// request timed out, the process died), the request may still be running
/// in the cloud and be applied after the client gave up on it. Until it can
/// no longer be in flight (`window` after `started_at`), "nothing visible"
/// means "not yet", not "never": resubmitting earlier could apply it twice
/// (in count mode, more addresses than asked).
pub(crate) fn unless_in_flight(
    resolution: Resolution,
    op: &Operation,
    window: std::time::Duration,
) -> Resolution {
    let elapsed_ms = jiff::Timestamp::now().as_millisecond() - op.started_at.as_millisecond();
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    if resolution == Resolution::NotApplied && op.request_id.is_none() && elapsed_ms < window_ms {
        Resolution::InProgress
    } else {
        resolution
    }
}

/// The outcome of a call without an idempotency token, from a Describe of its
/// NIC (`observed` may hold other NICs or none): [`settle`], then
/// [`unless_in_flight`].
pub(crate) fn settle_untokened(
    provider: Provider,
    op: &Operation,
    nic: &NicRef,
    observed: &[ObservedNic],
    window: std::time::Duration,
) -> Resolution {
    let resolution = settle(
        provider,
        op,
        observed.iter().find(|n| n.id == nic.id),
        &nic.id.0,
    );
    unless_in_flight(resolution, op, window)
}

/// Decides an operation's outcome from one observation of its NIC (`None`:
/// the NIC no longer exists). Shared by all providers; Tencent consults its
/// task query first.
pub(crate) fn settle(
    provider: Provider,
    op: &Operation,
    nic: Option<&ObservedNic>,
    nic_id: &str,
) -> Resolution {
    let Some(nic) = nic else {
        return match op.action {
            // Releasing from a NIC that is gone: nothing is left to release.
            Action::UnassignIpv4 | Action::UnassignIpv6 | Action::Detach => Resolution::Applied {
                addresses: op.addresses.iter().copied().collect(),
            },
            _ => Resolution::Failed(CloudError::client(
                provider,
                op.action.as_str(),
                "Client.NicNotFound",
                ErrorClass::NotFound,
                format!("NIC {nic_id} no longer exists"),
            )),
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
            (_, Some(id)) if Some(&id.0) == op.instance_id.as_ref() => Resolution::Applied {
                addresses: BTreeSet::new(),
            },
            _ => Resolution::NotApplied,
        },
        Action::Detach => match (&nic.status, &nic.instance_id) {
            (NicStatus::Detaching, _) => Resolution::InProgress,
            (_, None) => Resolution::Applied {
                addresses: BTreeSet::new(),
            },
            (_, Some(id)) if Some(&id.0) != op.instance_id.as_ref() => Resolution::Applied {
                addresses: BTreeSet::new(),
            },
            _ => Resolution::NotApplied,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{NicId, NicStatus};
    use std::net::Ipv4Addr;

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
        }
    }

    fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn tokens_are_deterministic_and_distinct() {
        let a = IdempotencyKey::derive("uid-1", 3, "assign-ipv4");
        assert_eq!(a, IdempotencyKey::derive("uid-1", 3, "assign-ipv4"));
        assert_ne!(a, IdempotencyKey::derive("uid-1", 4, "assign-ipv4"));
        assert_ne!(a, IdempotencyKey::derive("uid-2", 3, "assign-ipv4"));
        assert_ne!(a, IdempotencyKey::derive("uid-1", 3, "attach"));
        assert!(a.token().starts_with("nicip-"));
        assert!(chunk_token(a.token(), 99).len() <= 64);
        assert!(a.token().is_ascii());
    }

    #[test]
    fn operation_round_trips_through_json_with_status_field_names() {
        let key = IdempotencyKey::derive("uid", 1, "s");
        let op = Operation::assign_ipv4(&Ipv4Request::Count(2), None, &nic(&["10.0.0.5"]), &key);
        let json = serde_json::to_value(&op).unwrap();
        for field in [
            "action",
            "token",
            "addresses",
            "addressesBefore",
            "startedAt",
            "count",
        ] {
            assert!(json.get(field).is_some(), "missing {field} in {json}");
        }
        assert_eq!(json["action"], "AssignIpv4");
        let back: Operation = serde_json::from_value(json).unwrap();
        assert_eq!(back, op);
    }

    #[test]
    fn operation_round_trips_through_the_claim_status() {
        let key = IdempotencyKey::derive("uid", 1, "s");
        let before = nic(&["10.0.0.5"]);
        for op in [
            Operation::assign_ipv4(&Ipv4Request::Count(2), None, &before, &key),
            Operation::unassign_ipv4(&["10.0.0.5".parse().unwrap()].into(), &before),
            Operation::attach(&InstanceId("ins-1".into()), &before, &key),
        ] {
            let op = Operation {
                request_id: Some("req-1".into()),
                ..op
            };
            let stored = PendingOperation::from(&op);
            assert_eq!(Operation::try_from(&stored).unwrap(), op);
        }
        let mut stored =
            PendingOperation::from(&Operation::unassign_ipv4(&BTreeSet::new(), &before));
        stored.addresses_before = vec!["10.0.0.300".into()];
        assert!(
            Operation::try_from(&stored)
                .unwrap_err()
                .contains("10.0.0.300")
        );
        stored.action = "Explode".into();
        assert!(Operation::try_from(&stored).is_err());
    }

    #[test]
    fn count_mode_resolves_by_diffing_against_the_recorded_set() {
        let key = IdempotencyKey::derive("uid", 1, "s");
        let op = Operation::assign_ipv4(&Ipv4Request::Count(2), None, &nic(&["10.0.0.5"]), &key);
        let r = settle(Provider::Zenlayer, &op, Some(&nic(&["10.0.0.5"])), "nic-1");
        assert_eq!(r, Resolution::NotApplied);
        let r = settle(
            Provider::Zenlayer,
            &op,
            Some(&nic(&["10.0.0.5", "10.0.0.9", "10.0.0.7"])),
            "nic-1",
        );
        assert_eq!(
            r,
            Resolution::Applied {
                addresses: ips(&["10.0.0.7", "10.0.0.9"])
            }
        );
        // Never more than asked, even if more addresses appeared.
        let r = settle(
            Provider::Zenlayer,
            &op,
            Some(&nic(&["10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8"])),
            "nic-1",
        );
        assert_eq!(
            r,
            Resolution::Applied {
                addresses: ips(&["10.0.0.6", "10.0.0.7"])
            }
        );
    }

    #[test]
    fn explicit_and_release_resolutions() {
        let key = IdempotencyKey::derive("uid", 1, "s");
        let want: BTreeSet<Ipv4Addr> =
            ["10.0.0.7".parse().unwrap(), "10.0.0.8".parse().unwrap()].into();
        let op =
            Operation::assign_ipv4(&Ipv4Request::Addresses(want.clone()), None, &nic(&[]), &key);
        assert_eq!(
            settle(Provider::Tencent, &op, Some(&nic(&["10.0.0.7"])), "n"),
            Resolution::Applied {
                addresses: ips(&["10.0.0.7"])
            }
        );
        let mut busy = nic(&["10.0.0.7", "10.0.0.8"]);
        busy.addresses_in_flux = ips(&["10.0.0.8"]);
        assert_eq!(
            settle(Provider::Tencent, &op, Some(&busy), "n"),
            Resolution::InProgress
        );

        let op = Operation::unassign_ipv4(&want, &nic(&["10.0.0.7", "10.0.0.8"]));
        assert_eq!(
            settle(
                Provider::Tencent,
                &op,
                Some(&nic(&["10.0.0.7", "10.0.0.8"])),
                "n"
            ),
            Resolution::NotApplied
        );
        assert_eq!(
            settle(Provider::Tencent, &op, Some(&nic(&[])), "n"),
            Resolution::Applied {
                addresses: ips(&["10.0.0.7", "10.0.0.8"])
            }
        );
        // A NIC that is gone has nothing left to release; assigning to it fails.
        assert!(matches!(
            settle(Provider::Tencent, &op, None, "n"),
            Resolution::Applied { .. }
        ));
        let assign = Operation::assign_ipv4(&Ipv4Request::Count(1), None, &nic(&[]), &key);
        match settle(Provider::Tencent, &assign, None, "n") {
            Resolution::Failed(e) => assert_eq!(e.class, ErrorClass::NotFound),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unanswered_calls_are_in_flight_until_their_window_passed() {
        let key = IdempotencyKey::derive("uid", 1, "s");
        let op = Operation::assign_ipv4(&Ipv4Request::Count(1), None, &nic(&[]), &key);
        let window = std::time::Duration::from_secs(60);
        assert_eq!(
            unless_in_flight(Resolution::NotApplied, &op, window),
            Resolution::InProgress
        );
        let answered = Operation {
            request_id: Some("req".into()),
            ..op.clone()
        };
        assert_eq!(
            unless_in_flight(Resolution::NotApplied, &answered, window),
            Resolution::NotApplied
        );
        let old = Operation {
            started_at: jiff::Timestamp::now() - jiff::SignedDuration::from_secs(61),
            ..op.clone()
        };
        assert_eq!(
            unless_in_flight(Resolution::NotApplied, &old, window),
            Resolution::NotApplied
        );
        let applied = Resolution::Applied {
            addresses: ips(&["10.0.0.9"]),
        };
        assert_eq!(unless_in_flight(applied.clone(), &op, window), applied);
    }

    #[test]
    fn attach_and_detach_resolutions() {
        let key = IdempotencyKey::derive("uid", 1, "s");
        let ins = InstanceId("ins-1".into());
        let mut n = nic(&[]);
        n.status = NicStatus::Available;
        let op = Operation::attach(&ins, &n, &key);
        assert_eq!(
            settle(Provider::Zenlayer, &op, Some(&n), "n"),
            Resolution::NotApplied
        );
        n.status = NicStatus::Attaching;
        assert_eq!(
            settle(Provider::Zenlayer, &op, Some(&n), "n"),
            Resolution::InProgress
        );
        n.status = NicStatus::InUse;
        n.instance_id = Some(ins.clone());
        assert!(matches!(
            settle(Provider::Zenlayer, &op, Some(&n), "n"),
            Resolution::Applied { .. }
        ));
        let op = Operation::detach(&ins, &n, &key);
        assert_eq!(
            settle(Provider::Zenlayer, &op, Some(&n), "n"),
            Resolution::NotApplied
        );
        n.status = NicStatus::Available;
        n.instance_id = None;
        assert!(matches!(
            settle(Provider::Zenlayer, &op, Some(&n), "n"),
            Resolution::Applied { .. }
        ));
    }
}
