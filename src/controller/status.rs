//! The claim's status, computed by pure functions from what a reconcile
//! learned, and written with server-side apply under one field manager only
//! when it differs from what is stored.

use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::v1alpha1::{
    AddressSource, AddressState, AttachmentState, AttachmentStatus, LastError, NicIpClaimStatus,
    ObservedNic as ObservedNicStatus, OwnedAddress,
};
use crate::cloud::{Action, CloudError, ObservedNic, Operation};

use super::spec::{Ipv4Want, Ownership, ValidSpec};

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "nicip-controller";

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const IPV4_ASSIGNED: &str = "IPv4Assigned";
pub const IPV6_ASSIGNED: &str = "IPv6Assigned";
pub const ATTACHED: &str = "Attached";

/// Where a claim stands, summarised for the top-level conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The cloud matches the spec.
    Converged,
    /// Work is under way or will be retried by itself.
    Progressing { reason: String, message: String },
    /// Nothing will change without a change to the claim or the cloud.
    Stalled { reason: String, message: String },
}

impl Standing {
    pub fn progressing(reason: &str, message: impl Into<String>) -> Self {
        Standing::Progressing {
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    pub fn stalled(reason: &str, message: impl Into<String>) -> Self {
        Standing::Stalled {
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Standing::Converged => "Converged",
            Standing::Progressing { reason, .. } | Standing::Stalled { reason, .. } => reason,
        }
    }
}

/// A detail condition (`IPv4Assigned`, `IPv6Assigned`, `Attached`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

/// Everything a status is computed from.
pub struct Report<'a> {
    pub generation: Option<i64>,
    pub spec: Option<&'a ValidSpec>,
    pub owned: &'a Ownership,
    pub nic: Option<&'a ObservedNic>,
    pub pending: Option<&'a Operation>,
    pub sequence: u64,
    pub last_error: Option<LastError>,
    pub standing: Standing,
    pub details: Vec<Detail>,
}

/// Builds the whole status. `previous` keeps condition transition times and
/// the observed NIC when this reconcile did not observe it.
pub fn build(
    report: Report<'_>,
    previous: Option<&NicIpClaimStatus>,
    now: jiff::Timestamp,
) -> NicIpClaimStatus {
    let previous_conditions = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let pending_assign: Vec<IpAddr> = match report.pending {
        Some(op) if matches!(op.action, Action::AssignIpv4 | Action::AssignIpv6) => {
            op.addresses.clone()
        }
        _ => Vec::new(),
    };
    let releasing: Vec<IpAddr> = match report.pending {
        Some(op) if matches!(op.action, Action::UnassignIpv4 | Action::UnassignIpv6) => {
            op.addresses.clone()
        }
        _ => Vec::new(),
    };
    let entry = |address: IpAddr, source: AddressSource, since: jiff::Timestamp| OwnedAddress {
        address: address.to_string(),
        source,
        state: if releasing.contains(&address) {
            AddressState::Releasing
        } else {
            AddressState::Assigned
        },
        since: Some(Time(since)),
    };
    let mut ipv4: Vec<OwnedAddress> = report
        .owned
        .ipv4
        .iter()
        .map(|o| entry(o.address.into(), o.source, o.since))
        .collect();
    let mut ipv6: Vec<OwnedAddress> = report
        .owned
        .ipv6
        .iter()
        .map(|o| entry(o.address.into(), o.source, o.since))
        .collect();
    // Explicit addresses of an assignment in flight are shown as Assigning;
    // they become owned only once the cloud shows them.
    let since = report.pending.and_then(|op| op.started_at).unwrap_or(now);
    for a in pending_assign {
        let e = OwnedAddress {
            address: a.to_string(),
            source: AddressSource::Explicit,
            state: AddressState::Assigning,
            since: Some(Time(since)),
        };
        match a {
            IpAddr::V4(_) if !ipv4.iter().any(|o| o.address == e.address) => ipv4.push(e),
            IpAddr::V6(_) if !ipv6.iter().any(|o| o.address == e.address) => ipv6.push(e),
            _ => {}
        }
    }
    ipv4.sort_by_key(|a| sort_key(&a.address));
    ipv6.sort_by_key(|a| sort_key(&a.address));

    let attachment = attachment_status(report.owned, report.pending);
    let nic = match report.nic {
        Some(n) => Some(nic_status(n)),
        None => previous.and_then(|p| p.nic.clone()),
    };

    let generation = report.generation;
    let mut conditions = Vec::new();
    let mut put = |type_: &str, ok: bool, reason: &str, message: &str| {
        conditions.push(condition(
            previous_conditions,
            generation,
            now,
            type_,
            ok,
            reason,
            message,
        ));
    };
    match &report.standing {
        Standing::Converged => {
            put(READY, true, "Converged", "the cloud matches the spec");
            put(RECONCILING, false, "Converged", "nothing left to do");
            put(STALLED, false, "Converged", "nothing left to do");
        }
        Standing::Progressing { reason, message } => {
            put(READY, false, reason, message);
            put(RECONCILING, true, reason, message);
            put(STALLED, false, reason, "progressing");
        }
        Standing::Stalled { reason, message } => {
            put(READY, false, reason, message);
            put(RECONCILING, false, reason, "waiting for a change");
            put(STALLED, true, reason, message);
        }
    }
    for d in &report.details {
        put(d.type_, d.ok, &d.reason, &d.message);
    }

    NicIpClaimStatus {
        observed_generation: generation,
        ipv4_count: Some(report.owned.ipv4.len() as u32),
        ipv4,
        ipv6,
        attachment,
        nic,
        pending_operation: report.pending.map(Into::into),
        operation_sequence: (report.sequence > 0).then_some(report.sequence),
        last_error: repeated_error(report.last_error, previous),
        conditions,
    }
}

/// The stored error when the new one is the same error again: a retry that
/// fails alike changes nothing in the status, so the write (and the watch
/// event it would wake this controller with, cutting its backoff short) is
/// skipped. `lastError` tells when and with which request a run of the same
/// failure began.
fn repeated_error(
    new: Option<LastError>,
    previous: Option<&NicIpClaimStatus>,
) -> Option<LastError> {
    let new = new?;
    match previous.and_then(|p| p.last_error.as_ref()) {
        Some(old)
            if (
                &old.action,
                &old.code,
                &old.message,
                old.http_status,
                old.retryable,
            ) == (
                &new.action,
                &new.code,
                &new.message,
                new.http_status,
                new.retryable,
            ) =>
        {
            Some(old.clone())
        }
        _ => Some(new),
    }
}

fn sort_key(address: &str) -> (u8, u128) {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => (4, u32::from(a) as u128),
        Ok(IpAddr::V6(a)) => (6, u128::from(a)),
        Err(_) => (9, 0),
    }
}

fn attachment_status(owned: &Ownership, pending: Option<&Operation>) -> Option<AttachmentStatus> {
    if let Some(op) = pending
        && let Some(instance) = &op.instance_id
    {
        match op.action {
            Action::Attach => {
                return Some(AttachmentStatus {
                    instance_id: instance.0.clone(),
                    state: AttachmentState::Attaching,
                    attached_by_claim: true,
                });
            }
            Action::Detach => {
                return Some(AttachmentStatus {
                    instance_id: instance.0.clone(),
                    state: AttachmentState::Detaching,
                    attached_by_claim: true,
                });
            }
            _ => {}
        }
    }
    owned.attachment.as_ref().map(|a| AttachmentStatus {
        instance_id: a.instance.0.clone(),
        state: AttachmentState::Attached,
        attached_by_claim: a.by_claim,
    })
}

pub fn nic_status(n: &ObservedNic) -> ObservedNicStatus {
    ObservedNicStatus {
        status: Some(super::plan::nic_status_text(&n.status)),
        subnet_id: n.subnet_id.clone(),
        vpc_id: n.vpc_id.clone(),
        primary_ipv4: n.primary_ipv4.map(|a| a.to_string()),
        instance_id: n.instance_id.as_ref().map(|i| i.0.clone()),
    }
}

/// A condition whose `lastTransitionTime` moves only when its status flips.
fn condition(
    previous: &[Condition],
    generation: Option<i64>,
    now: jiff::Timestamp,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    let mut message: String = message.chars().take(1024).collect();
    if message.is_empty() {
        message = reason.to_string();
    }
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// `status.lastError` from a cloud error. Nothing in a `CloudError` carries
/// credentials.
pub fn last_error(e: &CloudError, now: jiff::Timestamp) -> LastError {
    LastError {
        action: e.action.chars().take(64).collect(),
        code: e.code.chars().take(128).collect(),
        message: e.message.chars().take(1024).collect(),
        http_status: e.http_status,
        request_id: e.request_id.as_ref().map(|r| r.chars().take(128).collect()),
        retryable: e.is_retryable(),
        time: Time(now),
    }
}

/// The detail conditions of a plan's outcome.
pub fn details(
    spec: &ValidSpec,
    owned: &Ownership,
    remaining: &[super::plan::Step],
    why: Option<&str>,
) -> Vec<Detail> {
    use super::plan::Step;
    let mut out = Vec::new();
    let v4_left = remaining
        .iter()
        .any(|s| matches!(s, Step::AssignIpv4 { .. } | Step::UnassignIpv4 { .. }));
    let v6_left = remaining
        .iter()
        .any(|s| matches!(s, Step::AssignIpv6 { .. } | Step::UnassignIpv6 { .. }));
    let att_left = remaining
        .iter()
        .any(|s| matches!(s, Step::Attach { .. } | Step::Detach { .. }));
    let pending_reason = why.unwrap_or("Pending");
    let detail = |type_, ok: bool, done: &str| Detail {
        type_,
        ok,
        reason: if ok {
            "Assigned".to_string()
        } else {
            pending_reason.to_string()
        },
        message: if ok {
            done.to_string()
        } else {
            format!("in progress: {pending_reason}")
        },
    };
    if !matches!(spec.ipv4, Ipv4Want::Nothing) || !owned.ipv4.is_empty() {
        out.push(detail(
            IPV4_ASSIGNED,
            !v4_left && why.is_none(),
            "the NIC carries the requested IPv4 addresses",
        ));
    }
    if spec.ipv6.is_some() || !owned.ipv6.is_empty() {
        out.push(detail(
            IPV6_ASSIGNED,
            !v6_left && why.is_none(),
            "the NIC carries the requested IPv6 addresses",
        ));
    }
    if let Some(instance) = &spec.instance {
        let ok = !att_left
            && owned
                .attachment
                .as_ref()
                .is_some_and(|a| &a.instance == instance);
        out.push(Detail {
            type_: ATTACHED,
            ok,
            reason: if ok {
                "Attached".into()
            } else {
                pending_reason.to_string()
            },
            message: if ok {
                format!("the NIC is attached to instance {instance}")
            } else {
                format!("not attached to instance {instance}: {pending_reason}")
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::{DeletionPolicy, ManagementPolicy};
    use crate::cloud::NicRef;
    use crate::controller::spec::Owned;

    fn t(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn spec() -> ValidSpec {
        ValidSpec {
            nic: NicRef::new("eni-1"),
            ipv4: Ipv4Want::Count(1),
            qos: None,
            ipv6: None,
            instance: None,
            deletion: DeletionPolicy::Release,
            management: ManagementPolicy::Full,
        }
    }

    fn report<'a>(spec: &'a ValidSpec, owned: &'a Ownership, standing: Standing) -> Report<'a> {
        Report {
            generation: Some(3),
            spec: Some(spec),
            owned,
            nic: None,
            pending: None,
            sequence: 0,
            last_error: None,
            standing,
            details: details(spec, owned, &[], None),
        }
    }

    #[test]
    fn transition_times_move_only_when_a_status_flips() {
        let s = spec();
        let owned = Ownership {
            ipv4: vec![Owned {
                address: "10.0.0.5".parse().unwrap(),
                source: AddressSource::Count,
                since: t(0),
            }],
            ..Default::default()
        };
        let first = build(
            report(&s, &owned, Standing::progressing("Assigning", "assigning")),
            None,
            t(10),
        );
        let second = build(
            report(
                &s,
                &owned,
                Standing::progressing("WaitingForCloud", "waiting"),
            ),
            Some(&first),
            t(20),
        );
        let ready = |st: &NicIpClaimStatus| {
            st.conditions
                .iter()
                .find(|c| c.type_ == READY)
                .unwrap()
                .clone()
        };
        assert_eq!(ready(&second).last_transition_time, Time(t(10)));
        assert_eq!(ready(&second).reason, "WaitingForCloud");
        let third = build(
            report(&s, &owned, Standing::Converged),
            Some(&second),
            t(30),
        );
        assert_eq!(ready(&third).status, "True");
        assert_eq!(ready(&third).last_transition_time, Time(t(30)));
        assert!(
            third
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
        // The same inputs give the same status: nothing to write.
        assert_eq!(
            third,
            build(report(&s, &owned, Standing::Converged), Some(&third), t(40))
        );
    }

    #[test]
    fn stalled_claims_say_so_in_three_conditions() {
        let s = spec();
        let owned = Ownership::default();
        let st = build(
            report(
                &s,
                &owned,
                Standing::stalled("Conflict", "claim ns/a owns NIC eni-1"),
            ),
            None,
            t(0),
        );
        let get = |ty: &str| st.conditions.iter().find(|c| c.type_ == ty).unwrap();
        assert_eq!(get(STALLED).status, "True");
        assert_eq!(get(READY).status, "False");
        assert_eq!(get(READY).reason, "Conflict");
        assert_eq!(get(RECONCILING).status, "False");
    }
}
