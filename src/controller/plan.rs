//! The pure decision of a reconcile: from the validated spec, what the claim
//! owns (its status) and what the cloud shows, the cloud calls still needed, in
//! the order they must run, and the ownership to report.
//!
//! The rules, in the words of `docs/controller.md`:
//! - a claim only releases what it owns; an address the explicit list asks for
//!   that is already on the NIC is adopted, not assigned again;
//! - count mode counts only owned addresses, and a smaller count releases the
//!   newest first;
//! - releases run before assignments (the NIC's quota), then the attachment,
//!   then assignments; each call carries at most the provider's per-call maximum;
//! - an attachment is made only to a running instance in the NIC's zone, while
//!   the NIC is available; only an attachment the claim made is ever detached;
//! - an owned address gone from the NIC (drift) is forgotten and, in list mode,
//!   assigned again; in count mode another is requested.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::api::v1alpha1::{AddressSource, DeletionPolicy};
use crate::cloud::{
    Capabilities, InstanceId, InstanceStatus, Ipv4Request, Ipv6Billing, NicStatus,
    ObservedInstance, ObservedNic,
};

use super::spec::{Ipv4Want, Owned, OwnedAttachment, Ownership, ValidSpec};

/// Why an address is released; `nicip plan` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ReleaseReason {
    /// `spec.ipv4.count` (or `spec.ipv6.count`) went down: newest first.
    ScaleDown,
    /// The explicit list no longer names it.
    ListEdited,
    /// `spec.ipv4` or `spec.ipv6` was removed.
    NoLongerRequested,
    /// The claim is being deleted under `deletionPolicy: Release`.
    Deletion,
}

/// One cloud call the plan still needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    UnassignIpv4 {
        addresses: BTreeSet<Ipv4Addr>,
        reason: ReleaseReason,
    },
    UnassignIpv6 {
        addresses: BTreeSet<Ipv6Addr>,
        reason: ReleaseReason,
    },
    Detach {
        instance: InstanceId,
    },
    Attach {
        instance: InstanceId,
    },
    AssignIpv4 {
        request: Ipv4Request,
    },
    AssignIpv6 {
        count: u32,
        billing: Option<Ipv6Billing>,
    },
}

impl Step {
    pub fn is_release(&self) -> bool {
        matches!(
            self,
            Step::UnassignIpv4 { .. } | Step::UnassignIpv6 { .. } | Step::Detach { .. }
        )
    }
}

/// Why the plan cannot make progress now, though the claim is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// The NIC is in a state the cloud refuses changes in (e.g. `ATTACHING`).
    NicBusy(String),
    /// Addresses the cloud still reports as being added or removed.
    AddressesInFlux,
    /// The attachment's instance is not running.
    InstanceNotRunning { instance: String, status: String },
}

/// A condition the claim must report without a cloud call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// Stable CamelCase reason.
    pub reason: &'static str,
    pub message: String,
}

/// What the plan noticed, for events and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Adopted(BTreeSet<Ipv4Addr>),
    /// Owned addresses the NIC no longer carries, removed out of band.
    Drift(BTreeSet<std::net::IpAddr>),
    /// Addresses on the NIC that the claim does not own and leaves alone.
    Unowned(BTreeSet<std::net::IpAddr>),
}

/// Explicit addresses the cloud refused for this generation, with the cloud's
/// code; the plan leaves them out so the rest still converge.
pub type Rejected = BTreeMap<Ipv4Addr, String>;

pub struct Inputs<'a> {
    pub spec: &'a ValidSpec,
    pub owned: &'a Ownership,
    /// `None`: the cloud does not know the NIC.
    pub nic: Option<&'a ObservedNic>,
    /// The attachment's instance, when the spec names one and it was observed;
    /// `None` also when the cloud does not know it.
    pub instance: Option<&'a ObservedInstance>,
    pub caps: &'a Capabilities,
    pub deleting: bool,
    pub rejected: &'a Rejected,
    /// Explicit addresses to send one per call: a batch holding them was
    /// refused and the subnet could not tell which address was bad.
    pub isolate: &'a BTreeSet<Ipv4Addr>,
    /// When assignments made now are recorded as made (`since`).
    pub now: jiff::Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Ownership after the plan's status-only changes (adoption, forgetting
    /// addresses that vanished). Steps do not change it: their outcomes do.
    pub owned: Ownership,
    /// Every call still needed, in order; the controller runs the first.
    pub steps: Vec<Step>,
    pub wait: Option<Wait>,
    pub blocked: Option<Blocked>,
    pub notes: Vec<Note>,
}

impl Plan {
    /// Nothing to do and nothing in the way.
    pub fn converged(&self) -> bool {
        self.steps.is_empty() && self.wait.is_none() && self.blocked.is_none()
    }
}

/// Decides the remaining cloud calls for a claim. Pure.
pub fn plan(input: &Inputs<'_>) -> Plan {
    let mut out = Plan {
        owned: input.owned.clone(),
        steps: Vec::new(),
        wait: None,
        blocked: None,
        notes: Vec::new(),
    };
    let absent;
    let nic = match input.nic {
        Some(nic) => nic,
        // Nothing is left to release on a NIC that does not exist.
        None if input.deleting => {
            out.owned = Ownership::default();
            return out;
        }
        // A claim that owns addresses on a NIC that vanished: keep what it
        // owns (a describe can lag) and touch nothing.
        None if !input.owned.is_empty() => {
            out.blocked = Some(Blocked {
                reason: "NicNotFound",
                message: format!("the cloud no longer shows NIC {}", input.spec.nic.id),
            });
            return out;
        }
        // A new claim on a NIC the describe does not show: plan as for an
        // empty NIC, so that the first call brings back the cloud's own code
        // (a NIC or VPC that does not exist), which the claim then reports.
        None => {
            absent = empty_nic(input.spec);
            &absent
        }
    };
    let chunk = input.caps.max_addresses_per_call.max(1);

    // Owned addresses the NIC no longer carries were removed out of band:
    // forget them, so they are neither released nor counted.
    let on_v4 = &nic.secondary_ipv4;
    let on_v6 = &nic.ipv6;
    let gone: BTreeSet<std::net::IpAddr> = out
        .owned
        .ipv4
        .iter()
        .filter(|o| !on_v4.contains(&o.address))
        .map(|o| o.address.into())
        .chain(
            out.owned
                .ipv6
                .iter()
                .filter(|o| !on_v6.contains(&o.address))
                .map(|o| o.address.into()),
        )
        .collect();
    if !gone.is_empty() {
        out.owned.ipv4.retain(|o| on_v4.contains(&o.address));
        out.owned.ipv6.retain(|o| on_v6.contains(&o.address));
        out.notes.push(Note::Drift(gone));
    }

    if input.deleting {
        plan_release(input, nic, chunk, &mut out);
    } else {
        plan_apply(input, nic, chunk, &mut out);
    }

    let owned_all: BTreeSet<std::net::IpAddr> = out
        .owned
        .ipv4_set()
        .into_iter()
        .map(Into::into)
        .chain(out.owned.ipv6_set().into_iter().map(Into::into))
        .collect();
    let wanted_explicit: BTreeSet<std::net::IpAddr> = match &input.spec.ipv4 {
        Ipv4Want::Addresses(d) => d.iter().map(|a| (*a).into()).collect(),
        _ => BTreeSet::new(),
    };
    let unowned: BTreeSet<std::net::IpAddr> = on_v4
        .iter()
        .map(|a| (*a).into())
        .chain(on_v6.iter().map(|a| (*a).into()))
        .filter(|a| !owned_all.contains(a) && !wanted_explicit.contains(a))
        .collect();
    if !unowned.is_empty() {
        out.notes.push(Note::Unowned(unowned));
    }

    if out.wait.is_none() && !out.steps.is_empty() {
        if in_transition(&nic.status) {
            out.wait = Some(Wait::NicBusy(nic_status_text(&nic.status)));
        } else if !nic.addresses_in_flux.is_empty() {
            out.wait = Some(Wait::AddressesInFlux);
        }
    }
    out
}

/// A NIC as the cloud would show it with nothing on it: what a call is
/// planned against when no observation is at hand.
pub fn empty_nic(spec: &ValidSpec) -> ObservedNic {
    ObservedNic {
        id: spec.nic.id.clone(),
        status: NicStatus::Available,
        vpc_id: spec.nic.vpc_id.clone(),
        subnet_id: None,
        primary_ipv4: None,
        secondary_ipv4: BTreeSet::new(),
        ipv6: BTreeSet::new(),
        ipv6_cidr: None,
        instance_id: None,
        addresses_in_flux: BTreeSet::new(),
        zone: None,
    }
}

/// States that pass by themselves. Any other state the cloud refuses changes
/// in (say `CREATE_FAILED`) is not waited for: the call is made, and the
/// cloud's own error code is reported.
fn in_transition(status: &NicStatus) -> bool {
    matches!(
        status,
        NicStatus::Attaching | NicStatus::Detaching | NicStatus::Busy(_)
    )
}

fn plan_release(input: &Inputs<'_>, nic: &ObservedNic, chunk: usize, out: &mut Plan) {
    if input.spec.deletion == DeletionPolicy::Retain {
        return;
    }
    let v4 = out.owned.ipv4_set();
    push_unassign_v4(&mut out.steps, &v4, chunk, ReleaseReason::Deletion);
    let v6 = out.owned.ipv6_set();
    if !v6.is_empty() {
        out.steps.push(Step::UnassignIpv6 {
            addresses: v6,
            reason: ReleaseReason::Deletion,
        });
    }
    if let Some(att) = &out.owned.attachment {
        if att.by_claim && nic.instance_id.as_ref() == Some(&att.instance) {
            out.steps.push(Step::Detach {
                instance: att.instance.clone(),
            });
        } else if nic.instance_id.as_ref() != Some(&att.instance) {
            // Detached by someone else already: nothing left to undo.
            out.owned.attachment = None;
        }
    }
}

fn plan_apply(input: &Inputs<'_>, nic: &ObservedNic, chunk: usize, out: &mut Plan) {
    let spec = input.spec;
    let on_v4 = &nic.secondary_ipv4;
    let mut assigns = Vec::new();

    // IPv4.
    match &spec.ipv4 {
        Ipv4Want::Nothing => {
            let release = out.owned.ipv4_set();
            push_unassign_v4(
                &mut out.steps,
                &release,
                chunk,
                ReleaseReason::NoLongerRequested,
            );
        }
        Ipv4Want::Addresses(wanted) => {
            let owned = out.owned.ipv4_set();
            let adopt: BTreeSet<Ipv4Addr> = wanted
                .intersection(on_v4)
                .filter(|a| !owned.contains(a))
                .copied()
                .collect();
            if !adopt.is_empty() {
                for a in &adopt {
                    out.owned.ipv4.push(Owned {
                        address: *a,
                        source: AddressSource::Adopted,
                        since: input.now,
                    });
                }
                out.notes.push(Note::Adopted(adopt));
            }
            let release: BTreeSet<Ipv4Addr> = owned.difference(wanted).copied().collect();
            push_unassign_v4(&mut out.steps, &release, chunk, ReleaseReason::ListEdited);
            let missing: BTreeSet<Ipv4Addr> = wanted
                .difference(on_v4)
                .filter(|a| !input.rejected.contains_key(a))
                .copied()
                .collect();
            let (single, batch): (BTreeSet<Ipv4Addr>, BTreeSet<Ipv4Addr>) =
                missing.iter().partition(|a| input.isolate.contains(a));
            for part in chunks(&batch, chunk) {
                assigns.push(Step::AssignIpv4 {
                    request: Ipv4Request::Addresses(part),
                });
            }
            for a in single {
                assigns.push(Step::AssignIpv4 {
                    request: Ipv4Request::Addresses([a].into()),
                });
            }
            if !input.rejected.is_empty() {
                let named: Vec<String> = input
                    .rejected
                    .iter()
                    .filter(|(a, _)| wanted.contains(a))
                    .map(|(a, code)| format!("{a} ({code})"))
                    .collect();
                if !named.is_empty() {
                    out.blocked = Some(Blocked {
                        reason: "AddressRejected",
                        message: format!(
                            "the cloud refused {}; the other addresses are managed as usual",
                            named.join(", ")
                        ),
                    });
                }
            }
        }
        Ipv4Want::Count(n) => {
            let n = *n as usize;
            let have = out.owned.ipv4.len();
            if have > n {
                let mut newest: Vec<&Owned<Ipv4Addr>> = out.owned.ipv4.iter().collect();
                newest.sort_by(|a, b| b.since.cmp(&a.since).then(b.address.cmp(&a.address)));
                let release: BTreeSet<Ipv4Addr> =
                    newest.iter().take(have - n).map(|o| o.address).collect();
                push_unassign_v4(&mut out.steps, &release, chunk, ReleaseReason::ScaleDown);
            } else {
                let mut left = n - have;
                while left > 0 {
                    let take = left.min(chunk);
                    assigns.push(Step::AssignIpv4 {
                        request: Ipv4Request::Count(take as u32),
                    });
                    left -= take;
                }
            }
        }
    }

    // IPv6: count-based on every provider.
    let want6 = spec.ipv6.as_ref().map_or(0, |w| w.count as usize);
    let have6 = out.owned.ipv6.len();
    if have6 > want6 {
        let mut newest: Vec<&Owned<Ipv6Addr>> = out.owned.ipv6.iter().collect();
        newest.sort_by(|a, b| b.since.cmp(&a.since).then(b.address.cmp(&a.address)));
        let reason = if want6 == 0 {
            ReleaseReason::NoLongerRequested
        } else {
            ReleaseReason::ScaleDown
        };
        out.steps.push(Step::UnassignIpv6 {
            addresses: newest
                .iter()
                .take(have6 - want6)
                .map(|o| o.address)
                .collect(),
            reason,
        });
    } else if have6 < want6
        && let Some(w) = &spec.ipv6
    {
        assigns.push(Step::AssignIpv6 {
            count: (want6 - have6) as u32,
            billing: w.billing.clone(),
        });
    }

    // Attachment.
    plan_attachment(input, nic, out);

    out.steps.extend(assigns);
}

fn plan_attachment(input: &Inputs<'_>, nic: &ObservedNic, out: &mut Plan) {
    let Some(want) = &input.spec.instance else {
        // Leaving `spec.attachment` out leaves the attachment alone.
        out.owned.attachment = None;
        return;
    };
    let previous = out.owned.attachment.clone();
    match &nic.instance_id {
        Some(current) if current == want => {
            let by_claim = previous.is_some_and(|p| p.instance == *want && p.by_claim);
            out.owned.attachment = Some(OwnedAttachment {
                instance: want.clone(),
                by_claim,
            });
        }
        Some(current) => {
            if previous
                .as_ref()
                .is_some_and(|p| p.by_claim && p.instance == *current)
            {
                out.steps.push(Step::Detach {
                    instance: current.clone(),
                });
                attach_if_eligible(input, nic, want, out, true);
            } else {
                out.owned.attachment = None;
                out.blocked = Some(Blocked {
                    reason: "AttachedElsewhere",
                    message: format!(
                        "NIC {} is attached to instance {current}, which this claim did not attach; detach it first",
                        nic.id
                    ),
                });
            }
        }
        None => {
            if previous.is_some() {
                // Detached out of band (or by our own detach): attach again below.
                out.owned.attachment = None;
            }
            attach_if_eligible(input, nic, want, out, false);
        }
    }
}

fn attach_if_eligible(
    input: &Inputs<'_>,
    nic: &ObservedNic,
    want: &InstanceId,
    out: &mut Plan,
    after_detach: bool,
) {
    let Some(instance) = input.instance else {
        out.blocked = Some(Blocked {
            reason: "InstanceNotFound",
            message: format!("the cloud does not know instance {want}"),
        });
        return;
    };
    if let (Some(a), Some(b)) = (&nic.zone, &instance.zone)
        && a != b
    {
        out.blocked = Some(Blocked {
            reason: "ZoneMismatch",
            message: format!("instance {want} is in zone {b}, NIC {} in zone {a}", nic.id),
        });
        return;
    }
    if instance.status != InstanceStatus::Running {
        out.wait = Some(Wait::InstanceNotRunning {
            instance: want.0.clone(),
            status: match &instance.status {
                InstanceStatus::Running => "RUNNING".into(),
                InstanceStatus::Stopped => "STOPPED".into(),
                InstanceStatus::Other(s) => s.clone(),
            },
        });
        return;
    }
    if !after_detach && in_transition(&nic.status) {
        out.wait = Some(Wait::NicBusy(nic_status_text(&nic.status)));
        return;
    }
    out.steps.push(Step::Attach {
        instance: want.clone(),
    });
}

fn push_unassign_v4(
    steps: &mut Vec<Step>,
    release: &BTreeSet<Ipv4Addr>,
    chunk: usize,
    reason: ReleaseReason,
) {
    for part in chunks(release, chunk) {
        steps.push(Step::UnassignIpv4 {
            addresses: part,
            reason,
        });
    }
}

fn chunks<A: Ord + Copy>(set: &BTreeSet<A>, size: usize) -> Vec<BTreeSet<A>> {
    let all: Vec<A> = set.iter().copied().collect();
    all.chunks(size.max(1))
        .map(|c| c.iter().copied().collect())
        .collect()
}

/// Explicit addresses the subnet shows to be impossible: outside its CIDR,
/// or its network, broadcast or gateway address.
pub fn bad_in_subnet(
    addresses: &[std::net::Ipv4Addr],
    subnet: &crate::cloud::ObservedSubnet,
) -> Vec<std::net::Ipv4Addr> {
    addresses
        .iter()
        .filter(|a| {
            let outside = subnet
                .cidr
                .is_some_and(|c| !c.contains(*a) || c.network() == **a || c.broadcast() == **a);
            outside || subnet.gateway == Some(**a)
        })
        .copied()
        .collect()
}

pub(crate) fn nic_status_text(status: &NicStatus) -> String {
    match status {
        NicStatus::Available => "AVAILABLE".into(),
        NicStatus::InUse => "IN_USE".into(),
        NicStatus::Attaching => "ATTACHING".into(),
        NicStatus::Detaching => "DETACHING".into(),
        NicStatus::Busy(s) | NicStatus::Other(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::ManagementPolicy;
    use crate::cloud::{NicId, NicRef};
    use crate::controller::spec::Ipv6Want;

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn set(list: &[&str]) -> BTreeSet<Ipv4Addr> {
        list.iter().map(|s| v4(s)).collect()
    }

    fn t(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn caps(per_call: usize) -> Capabilities {
        Capabilities {
            ipv6: true,
            max_ipv6_per_nic: 10,
            attach: true,
            max_addresses_per_call: per_call,
            async_tasks: true,
        }
    }

    fn nic(secondary: &[&str]) -> ObservedNic {
        ObservedNic {
            id: NicId("eni-1".into()),
            status: NicStatus::Available,
            vpc_id: None,
            subnet_id: Some("subnet-1".into()),
            primary_ipv4: Some(v4("10.0.0.2")),
            secondary_ipv4: set(secondary),
            ipv6: BTreeSet::new(),
            ipv6_cidr: None,
            instance_id: None,
            addresses_in_flux: BTreeSet::new(),
            zone: Some("z1".into()),
        }
    }

    fn spec(ipv4: Ipv4Want) -> ValidSpec {
        ValidSpec {
            nic: NicRef::new("eni-1"),
            ipv4,
            qos: None,
            ipv6: None,
            instance: None,
            deletion: DeletionPolicy::Release,
            management: ManagementPolicy::Full,
        }
    }

    fn owned(list: &[(&str, AddressSource, i64)]) -> Ownership {
        Ownership {
            ipv4: list
                .iter()
                .map(|(a, s, since)| Owned {
                    address: v4(a),
                    source: *s,
                    since: t(*since),
                })
                .collect(),
            ..Default::default()
        }
    }

    struct Case<'a> {
        spec: ValidSpec,
        owned: Ownership,
        nic: Option<ObservedNic>,
        instance: Option<ObservedInstance>,
        per_call: usize,
        deleting: bool,
        rejected: Rejected,
        isolate: BTreeSet<Ipv4Addr>,
        _p: std::marker::PhantomData<&'a ()>,
    }

    fn case(spec: ValidSpec, owned: Ownership, nic: Option<ObservedNic>) -> Case<'static> {
        Case {
            spec,
            owned,
            nic,
            instance: None,
            per_call: 10,
            deleting: false,
            rejected: Rejected::new(),
            isolate: BTreeSet::new(),
            _p: std::marker::PhantomData,
        }
    }

    fn run(c: &Case<'_>) -> Plan {
        let caps = caps(c.per_call);
        plan(&Inputs {
            spec: &c.spec,
            owned: &c.owned,
            nic: c.nic.as_ref(),
            instance: c.instance.as_ref(),
            caps: &caps,
            deleting: c.deleting,
            rejected: &c.rejected,
            isolate: &c.isolate,
            now: t(1000),
        })
    }

    fn assign(list: &[&str]) -> Step {
        Step::AssignIpv4 {
            request: Ipv4Request::Addresses(set(list)),
        }
    }

    fn unassign(list: &[&str], reason: ReleaseReason) -> Step {
        Step::UnassignIpv4 {
            addresses: set(list),
            reason,
        }
    }

    #[test]
    fn list_mode_adopts_what_is_already_there_and_assigns_the_rest() {
        let p = run(&case(
            spec(Ipv4Want::Addresses(set(&["10.0.0.5", "10.0.0.6"]))),
            Ownership::default(),
            Some(nic(&["10.0.0.5", "10.0.0.9"])),
        ));
        assert_eq!(p.steps, vec![assign(&["10.0.0.6"])]);
        assert_eq!(p.owned.ipv4.len(), 1);
        assert_eq!(p.owned.ipv4[0].source, AddressSource::Adopted);
        assert!(p.notes.contains(&Note::Adopted(set(&["10.0.0.5"]))));
        // 10.0.0.9 is neither owned nor asked for: reported, never touched.
        assert!(
            p.notes
                .contains(&Note::Unowned([v4("10.0.0.9").into()].into()))
        );
    }

    #[test]
    fn list_edit_releases_before_assigning() {
        let p = run(&case(
            spec(Ipv4Want::Addresses(set(&["10.0.0.6"]))),
            owned(&[("10.0.0.5", AddressSource::Explicit, 0)]),
            Some(nic(&["10.0.0.5"])),
        ));
        assert_eq!(
            p.steps,
            vec![
                unassign(&["10.0.0.5"], ReleaseReason::ListEdited),
                assign(&["10.0.0.6"])
            ]
        );
    }

    #[test]
    fn calls_carry_at_most_the_providers_maximum() {
        let wanted: Vec<String> = (10..35).map(|i| format!("10.0.0.{i}")).collect();
        let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
        let p = run(&case(
            spec(Ipv4Want::Addresses(set(&wanted))),
            Ownership::default(),
            Some(nic(&[])),
        ));
        let sizes: Vec<usize> = p
            .steps
            .iter()
            .map(|s| match s {
                Step::AssignIpv4 {
                    request: Ipv4Request::Addresses(a),
                } => a.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        let p = run(&case(
            spec(Ipv4Want::Count(25)),
            Ownership::default(),
            Some(nic(&[])),
        ));
        assert_eq!(
            p.steps,
            [10, 10, 5]
                .map(|n| Step::AssignIpv4 {
                    request: Ipv4Request::Count(n)
                })
                .to_vec()
        );
    }

    #[test]
    fn count_mode_counts_only_owned_addresses() {
        // Two addresses on the NIC belong to someone else: they are not counted.
        let p = run(&case(
            spec(Ipv4Want::Count(2)),
            owned(&[("10.0.0.5", AddressSource::Count, 0)]),
            Some(nic(&["10.0.0.5", "10.0.0.7", "10.0.0.8"])),
        ));
        assert_eq!(
            p.steps,
            vec![Step::AssignIpv4 {
                request: Ipv4Request::Count(1)
            }]
        );
    }

    #[test]
    fn scale_down_releases_the_newest_first() {
        let p = run(&case(
            spec(Ipv4Want::Count(1)),
            owned(&[
                ("10.0.0.5", AddressSource::Count, 10),
                ("10.0.0.6", AddressSource::Count, 30),
                ("10.0.0.7", AddressSource::Count, 20),
            ]),
            Some(nic(&["10.0.0.5", "10.0.0.6", "10.0.0.7"])),
        ));
        assert_eq!(
            p.steps,
            vec![unassign(
                &["10.0.0.6", "10.0.0.7"],
                ReleaseReason::ScaleDown
            )]
        );
    }

    #[test]
    fn drift_forgets_the_vanished_address_and_restores_it() {
        let p = run(&case(
            spec(Ipv4Want::Addresses(set(&["10.0.0.5", "10.0.0.6"]))),
            owned(&[
                ("10.0.0.5", AddressSource::Explicit, 0),
                ("10.0.0.6", AddressSource::Explicit, 0),
            ]),
            Some(nic(&["10.0.0.5"])),
        ));
        assert_eq!(p.steps, vec![assign(&["10.0.0.6"])]);
        assert_eq!(p.owned.ipv4_set(), set(&["10.0.0.5"]));
        assert!(
            p.notes
                .contains(&Note::Drift([v4("10.0.0.6").into()].into()))
        );
        // Count mode asks for a replacement.
        let p = run(&case(
            spec(Ipv4Want::Count(2)),
            owned(&[
                ("10.0.0.5", AddressSource::Count, 0),
                ("10.0.0.6", AddressSource::Count, 0),
            ]),
            Some(nic(&["10.0.0.5"])),
        ));
        assert_eq!(
            p.steps,
            vec![Step::AssignIpv4 {
                request: Ipv4Request::Count(1)
            }]
        );
    }

    #[test]
    fn converged_claims_plan_nothing() {
        let p = run(&case(
            spec(Ipv4Want::Addresses(set(&["10.0.0.5"]))),
            owned(&[("10.0.0.5", AddressSource::Explicit, 0)]),
            Some(nic(&["10.0.0.5"])),
        ));
        assert!(p.converged(), "{p:?}");
        assert_eq!(p.owned, owned(&[("10.0.0.5", AddressSource::Explicit, 0)]));
    }

    #[test]
    fn rejected_addresses_are_left_out_and_named() {
        let mut c = case(
            spec(Ipv4Want::Addresses(set(&["10.0.0.1", "10.0.0.6"]))),
            Ownership::default(),
            Some(nic(&[])),
        );
        c.rejected
            .insert(v4("10.0.0.1"), "INVALID_IP_GATEWAY".into());
        let p = run(&c);
        assert_eq!(p.steps, vec![assign(&["10.0.0.6"])]);
        let b = p.blocked.unwrap();
        assert_eq!(b.reason, "AddressRejected");
        assert!(
            b.message.contains("10.0.0.1 (INVALID_IP_GATEWAY)"),
            "{}",
            b.message
        );
    }

    #[test]
    fn suspects_are_sent_one_per_call() {
        let mut c = case(
            spec(Ipv4Want::Addresses(set(&[
                "10.0.0.5", "10.0.0.6", "10.0.0.7",
            ]))),
            Ownership::default(),
            Some(nic(&[])),
        );
        c.isolate = set(&["10.0.0.6", "10.0.0.7"]);
        let p = run(&c);
        assert_eq!(
            p.steps,
            vec![
                assign(&["10.0.0.5"]),
                assign(&["10.0.0.6"]),
                assign(&["10.0.0.7"])
            ]
        );
    }

    #[test]
    fn deletion_releases_exactly_what_is_owned() {
        let mut c = case(
            spec(Ipv4Want::Addresses(set(&["10.0.0.5"]))),
            owned(&[
                ("10.0.0.5", AddressSource::Adopted, 0),
                ("10.0.0.6", AddressSource::Count, 0),
            ]),
            Some(nic(&["10.0.0.5", "10.0.0.6", "10.0.0.7"])),
        );
        c.deleting = true;
        c.owned.ipv6.push(Owned {
            address: "2001:db8::1".parse().unwrap(),
            source: AddressSource::Count,
            since: t(0),
        });
        c.owned.attachment = Some(OwnedAttachment {
            instance: InstanceId("ins-1".into()),
            by_claim: true,
        });
        let mut n = nic(&["10.0.0.5", "10.0.0.6", "10.0.0.7"]);
        n.ipv6.insert("2001:db8::1".parse().unwrap());
        n.instance_id = Some(InstanceId("ins-1".into()));
        n.status = NicStatus::InUse;
        c.nic = Some(n);
        let p = run(&c);
        assert_eq!(
            p.steps,
            vec![
                unassign(&["10.0.0.5", "10.0.0.6"], ReleaseReason::Deletion),
                Step::UnassignIpv6 {
                    addresses: ["2001:db8::1".parse().unwrap()].into(),
                    reason: ReleaseReason::Deletion
                },
                Step::Detach {
                    instance: InstanceId("ins-1".into())
                },
            ]
        );
        // Retain leaves the cloud alone; a missing NIC has nothing left to release.
        c.spec.deletion = DeletionPolicy::Retain;
        assert!(run(&c).steps.is_empty());
        c.spec.deletion = DeletionPolicy::Release;
        c.nic = None;
        let p = run(&c);
        assert!(p.steps.is_empty() && p.blocked.is_none() && p.owned.is_empty());
    }

    #[test]
    fn an_attachment_the_claim_did_not_make_is_never_detached() {
        let mut c = case(
            spec(Ipv4Want::Nothing),
            Ownership::default(),
            Some(nic(&[])),
        );
        c.deleting = true;
        c.owned.attachment = Some(OwnedAttachment {
            instance: InstanceId("ins-1".into()),
            by_claim: false,
        });
        let mut n = nic(&[]);
        n.instance_id = Some(InstanceId("ins-1".into()));
        c.nic = Some(n);
        assert!(run(&c).steps.is_empty());
    }

    fn instance(status: InstanceStatus, zone: &str) -> ObservedInstance {
        ObservedInstance {
            id: InstanceId("ins-1".into()),
            status,
            zone: Some(zone.into()),
        }
    }

    #[test]
    fn attachment_waits_for_a_running_instance_in_the_nics_zone() {
        let mut s = spec(Ipv4Want::Nothing);
        s.instance = Some(InstanceId("ins-1".into()));
        let mut c = case(s, Ownership::default(), Some(nic(&[])));
        c.instance = Some(instance(InstanceStatus::Running, "z1"));
        assert_eq!(
            run(&c).steps,
            vec![Step::Attach {
                instance: InstanceId("ins-1".into())
            }]
        );
        c.instance = Some(instance(InstanceStatus::Stopped, "z1"));
        let p = run(&c);
        assert!(p.steps.is_empty());
        assert!(matches!(p.wait, Some(Wait::InstanceNotRunning { .. })));
        c.instance = Some(instance(InstanceStatus::Running, "z2"));
        assert_eq!(run(&c).blocked.unwrap().reason, "ZoneMismatch");
        c.instance = None;
        assert_eq!(run(&c).blocked.unwrap().reason, "InstanceNotFound");
    }

    #[test]
    fn changing_the_instance_detaches_only_its_own_attachment() {
        let mut s = spec(Ipv4Want::Nothing);
        s.instance = Some(InstanceId("ins-2".into()));
        let mut n = nic(&[]);
        n.instance_id = Some(InstanceId("ins-1".into()));
        n.status = NicStatus::InUse;
        let mut c = case(s, Ownership::default(), Some(n));
        c.instance = Some(ObservedInstance {
            id: InstanceId("ins-2".into()),
            status: InstanceStatus::Running,
            zone: Some("z1".into()),
        });
        assert_eq!(run(&c).blocked.unwrap().reason, "AttachedElsewhere");
        c.owned.attachment = Some(OwnedAttachment {
            instance: InstanceId("ins-1".into()),
            by_claim: true,
        });
        assert_eq!(
            run(&c).steps,
            vec![
                Step::Detach {
                    instance: InstanceId("ins-1".into())
                },
                Step::Attach {
                    instance: InstanceId("ins-2".into())
                }
            ]
        );
    }

    #[test]
    fn ipv6_count_up_down_and_removed() {
        let mut s = spec(Ipv4Want::Nothing);
        s.ipv6 = Some(Ipv6Want {
            count: 2,
            billing: None,
        });
        let mut c = case(s, Ownership::default(), Some(nic(&[])));
        assert_eq!(
            run(&c).steps,
            vec![Step::AssignIpv6 {
                count: 2,
                billing: None
            }]
        );
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8::2".parse().unwrap();
        c.owned.ipv6 = vec![
            Owned {
                address: a,
                source: AddressSource::Count,
                since: t(1),
            },
            Owned {
                address: b,
                source: AddressSource::Count,
                since: t(2),
            },
        ];
        let mut n = nic(&[]);
        n.ipv6 = [a, b].into();
        c.nic = Some(n);
        c.spec.ipv6 = Some(Ipv6Want {
            count: 1,
            billing: None,
        });
        assert_eq!(
            run(&c).steps,
            vec![Step::UnassignIpv6 {
                addresses: [b].into(),
                reason: ReleaseReason::ScaleDown
            }]
        );
        c.spec.ipv6 = None;
        assert_eq!(
            run(&c).steps,
            vec![Step::UnassignIpv6 {
                addresses: [a, b].into(),
                reason: ReleaseReason::NoLongerRequested
            }]
        );
    }

    #[test]
    fn a_busy_nic_or_addresses_in_flux_make_the_plan_wait() {
        let mut n = nic(&[]);
        n.status = NicStatus::Attaching;
        let p = run(&case(
            spec(Ipv4Want::Count(1)),
            Ownership::default(),
            Some(n),
        ));
        assert_eq!(p.wait, Some(Wait::NicBusy("ATTACHING".into())));
        let mut n = nic(&[]);
        n.addresses_in_flux.insert(v4("10.0.0.9").into());
        let p = run(&case(
            spec(Ipv4Want::Count(1)),
            Ownership::default(),
            Some(n),
        ));
        assert_eq!(p.wait, Some(Wait::AddressesInFlux));
        // A state that does not pass by itself is left to the cloud to refuse.
        let mut n = nic(&[]);
        n.status = NicStatus::Other("CREATE_FAILED".into());
        let p = run(&case(
            spec(Ipv4Want::Count(1)),
            Ownership::default(),
            Some(n),
        ));
        assert_eq!(p.wait, None);
        assert_eq!(p.steps.len(), 1);
    }

    #[test]
    fn a_missing_nic_keeps_what_is_owned_or_lets_the_cloud_answer() {
        let owning = owned(&[("10.0.0.5", AddressSource::Count, 0)]);
        let p = run(&case(spec(Ipv4Want::Count(1)), owning.clone(), None));
        assert_eq!(p.blocked.unwrap().reason, "NicNotFound");
        assert!(p.steps.is_empty());
        assert_eq!(p.owned, owning, "a lagging describe never drops ownership");
        // Owning nothing, the first call is made so the cloud names the problem.
        let p = run(&case(spec(Ipv4Want::Count(1)), Ownership::default(), None));
        assert_eq!(
            p.steps,
            vec![Step::AssignIpv4 {
                request: Ipv4Request::Count(1)
            }]
        );
        assert!(p.blocked.is_none());
    }
}
