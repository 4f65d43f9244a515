//! Parse, don't re-check: the claim's spec and status turned into typed values
//! once, so that planning never looks at raw strings again.
//!
//! The CRD's CEL rules reject at admission everything checked here that can be
//! known statically; this code checks it again because an object can reach the
//! controller without passing them (a CRD installed without its rules, an old
//! object stored before a rule existed), and because what a provider can do
//! (its capabilities) is only known here.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::api::v1alpha1::{
    AddressSource, AddressState, DeletionPolicy, InternetChargeType, MAX_IPV4_ADDRESSES,
    MAX_IPV6_ADDRESSES, ManagementPolicy, NicIpClaimSpec, NicIpClaimStatus, OwnedAddress, QosLevel,
};
use crate::cloud::{Capabilities, InstanceId, Ipv6Billing, NicRef, Provider};

/// The secondary IPv4 addresses a claim asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ipv4Want {
    /// No `spec.ipv4`: the claim owns no IPv4 (any it owned is released).
    Nothing,
    Addresses(BTreeSet<Ipv4Addr>),
    Count(u32),
}

/// The IPv6 addresses a claim asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Ipv6Want {
    pub count: u32,
    pub billing: Option<Ipv6Billing>,
}

/// A spec that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSpec {
    pub nic: NicRef,
    pub ipv4: Ipv4Want,
    pub qos: Option<QosLevel>,
    pub ipv6: Option<Ipv6Want>,
    pub instance: Option<InstanceId>,
    pub deletion: DeletionPolicy,
    pub management: ManagementPolicy,
}

/// Why a spec cannot be acted on: a stable condition reason and a message
/// naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: &'static str,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> Invalid {
    Invalid {
        reason: "InvalidSpec",
        message: message.into(),
    }
}

fn unsupported(message: impl Into<String>) -> Invalid {
    Invalid {
        reason: "Unsupported",
        message: message.into(),
    }
}

/// Checks a spec against the CRD's rules and the provider's capabilities.
pub fn validate(
    spec: &NicIpClaimSpec,
    provider: Provider,
    caps: &Capabilities,
) -> Result<ValidSpec, Invalid> {
    // Lengths are those of the raw values, in bytes, as the CRD's schema
    // bounds them: what admission would refuse is never accepted here.
    let nic_id = spec.nic_id.trim();
    if nic_id.is_empty() || spec.nic_id.len() > 64 {
        return Err(invalid("spec.nicId must be 1 to 64 characters"));
    }
    let pc = &spec.provider_config_ref.name;
    if pc.is_empty() || pc.len() > 253 {
        return Err(invalid(
            "spec.providerConfigRef.name must be 1 to 253 characters",
        ));
    }
    if spec
        .vpc_id
        .as_ref()
        .is_some_and(|v| v.is_empty() || v.len() > 64)
    {
        return Err(invalid("spec.vpcId must be 1 to 64 characters"));
    }
    let mut nic = NicRef::new(nic_id);
    match (&spec.vpc_id, provider) {
        (Some(vpc), _) if !vpc.trim().is_empty() => nic = nic.in_vpc(vpc.trim()),
        (_, Provider::TencentLegacy) => {
            return Err(invalid(
                "spec.vpcId is required by the Tencent legacy API 2.0 (provider TencentLegacy)",
            ));
        }
        _ => {}
    }

    let (ipv4, qos) = match &spec.ipv4 {
        None => (Ipv4Want::Nothing, None),
        Some(v4) => {
            let want = match (&v4.addresses, v4.count) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(invalid(
                        "set exactly one of spec.ipv4.addresses and spec.ipv4.count",
                    ));
                }
                (Some(list), None) => Ipv4Want::Addresses(parse_ipv4_list(list)?),
                (None, Some(n)) if (1..=MAX_IPV4_ADDRESSES).contains(&n) => Ipv4Want::Count(n),
                (None, Some(n)) => {
                    return Err(invalid(format!(
                        "spec.ipv4.count must be between 1 and {MAX_IPV4_ADDRESSES}, not {n}"
                    )));
                }
            };
            if v4.qos_level.is_some() && provider != Provider::Tencent {
                return Err(unsupported(format!(
                    "spec.ipv4.qosLevel is a Tencent API 3.0 feature; provider {provider} has none"
                )));
            }
            (want, v4.qos_level)
        }
    };

    let ipv6 = match &spec.ipv6 {
        None => None,
        Some(v6) => {
            if !caps.ipv6 {
                return Err(unsupported(format!(
                    "spec.ipv6: provider {provider} cannot assign IPv6 addresses"
                )));
            }
            let most = caps.max_ipv6_per_nic.min(MAX_IPV6_ADDRESSES);
            if v6.count < 1 || v6.count > most {
                return Err(invalid(format!(
                    "spec.ipv6.count must be between 1 and {most} on provider {provider}, not {}",
                    v6.count
                )));
            }
            Some(Ipv6Want {
                count: v6.count,
                billing: ipv6_billing(v6, provider)?,
            })
        }
    };

    let instance = match &spec.attachment {
        None => None,
        Some(a) => {
            if !caps.attach {
                return Err(unsupported(format!(
                    "spec.attachment: provider {provider} cannot attach NICs"
                )));
            }
            let id = a.instance_id.trim();
            if id.is_empty() || a.instance_id.len() > 64 {
                return Err(invalid(
                    "spec.attachment.instanceId must be 1 to 64 characters",
                ));
            }
            Some(InstanceId(id.to_string()))
        }
    };

    Ok(ValidSpec {
        nic,
        ipv4,
        qos,
        ipv6,
        instance,
        deletion: spec.deletion_policy,
        management: spec.management_policy,
    })
}

fn parse_ipv4_list(list: &[String]) -> Result<BTreeSet<Ipv4Addr>, Invalid> {
    if list.is_empty() || list.len() > MAX_IPV4_ADDRESSES as usize {
        return Err(invalid(format!(
            "spec.ipv4.addresses must list 1 to {MAX_IPV4_ADDRESSES} addresses"
        )));
    }
    let mut set = BTreeSet::new();
    for (i, raw) in list.iter().enumerate() {
        let addr: Ipv4Addr = raw.parse().map_err(|_| {
            invalid(format!(
                "spec.ipv4.addresses[{i}]: {raw:?} is not an IPv4 address in dotted-decimal form"
            ))
        })?;
        if addr.is_unspecified()
            || addr.is_loopback()
            || addr.is_link_local()
            || addr.is_multicast()
            || addr.is_broadcast()
        {
            return Err(invalid(format!(
                "spec.ipv4.addresses[{i}]: {addr} is not a unicast address"
            )));
        }
        if !set.insert(addr) {
            return Err(invalid(format!(
                "spec.ipv4.addresses[{i}]: {addr} is listed twice"
            )));
        }
    }
    Ok(set)
}

/// Zenlayer's public-IPv6 billing fields, as the CRD's rules require them.
fn ipv6_billing(
    v6: &crate::api::v1alpha1::Ipv6Spec,
    provider: Provider,
) -> Result<Option<Ipv6Billing>, Invalid> {
    let any = v6.internet_charge_type.is_some()
        || v6.bandwidth.is_some()
        || v6.package_size.is_some()
        || v6.cluster_id.is_some();
    if !any {
        return Ok(None);
    }
    if provider != Provider::Zenlayer {
        return Err(unsupported(format!(
            "spec.ipv6 billing fields are Zenlayer's; provider {provider} takes none"
        )));
    }
    let charge = v6.internet_charge_type;
    if charge.is_some() != v6.bandwidth.is_some() {
        return Err(invalid(
            "spec.ipv6: a public IPv6 needs both internetChargeType and bandwidth",
        ));
    }
    if v6.package_size.is_some() != (charge == Some(InternetChargeType::ByTrafficPackage)) {
        return Err(invalid(
            "spec.ipv6.packageSize goes with internetChargeType ByTrafficPackage, and only with it",
        ));
    }
    if v6.cluster_id.is_some() != (charge == Some(InternetChargeType::BandwidthCluster)) {
        return Err(invalid(
            "spec.ipv6.clusterId goes with internetChargeType BandwidthCluster, and only with it",
        ));
    }
    if let Some(size) = v6.package_size
        && (!size.is_finite()
            || !(0.0..=100_000.0).contains(&size)
            || ((size * 10.0).round() - size * 10.0).abs() >= 1e-6)
    {
        return Err(invalid(
            "spec.ipv6.packageSize must be 0 to 100000, a multiple of 0.1 TB",
        ));
    }
    if v6.bandwidth.is_some_and(|b| !(1..=100_000).contains(&b)) {
        return Err(invalid("spec.ipv6.bandwidth must be 1 to 100000 Mbps"));
    }
    if v6
        .cluster_id
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > 64)
    {
        return Err(invalid("spec.ipv6.clusterId must be 1 to 64 characters"));
    }
    Ok(Some(Ipv6Billing {
        internet_charge_type: charge.map(|c| format!("{c:?}")),
        bandwidth: v6.bandwidth,
        package_size: v6.package_size,
        cluster_id: v6.cluster_id.clone(),
    }))
}

/// One address a claim owns, read from its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned<A> {
    pub address: A,
    pub source: AddressSource,
    /// When it was assigned or adopted; orders scale-down (newest first).
    pub since: jiff::Timestamp,
}

/// The attachment a claim manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedAttachment {
    pub instance: InstanceId,
    /// Only an attachment the claim made is detached on release.
    pub by_claim: bool,
}

/// Everything a claim owns, according to its status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ownership {
    pub ipv4: Vec<Owned<Ipv4Addr>>,
    pub ipv6: Vec<Owned<Ipv6Addr>>,
    pub attachment: Option<OwnedAttachment>,
}

impl Ownership {
    /// Reads the owned addresses from a status. Entries that do not parse (a
    /// status edited by hand) are dropped and returned, so the caller can warn:
    /// the claim never releases what it cannot name. `Assigning` entries are
    /// the addresses of the call in flight, not owned yet: settling that call
    /// takes in the ones the cloud shows (read as owned, a restarted
    /// controller would take them for drift, or leak them once the spec drops
    /// them).
    pub fn from_status(status: Option<&NicIpClaimStatus>) -> (Ownership, Vec<String>) {
        let mut owned = Ownership::default();
        let mut unreadable = Vec::new();
        let Some(status) = status else {
            return (owned, unreadable);
        };
        fn read<A: std::str::FromStr + Ord + Copy>(
            entries: &[OwnedAddress],
            out: &mut Vec<Owned<A>>,
            unreadable: &mut Vec<String>,
        ) {
            let mut seen = BTreeSet::new();
            for e in entries {
                if e.state == AddressState::Assigning {
                    continue;
                }
                match e.address.parse::<A>() {
                    Ok(a) if seen.insert(a) => out.push(Owned {
                        address: a,
                        source: e.source,
                        since: e
                            .since
                            .as_ref()
                            .map(|t| t.0)
                            .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                    }),
                    Ok(_) => {}
                    Err(_) => unreadable.push(e.address.clone()),
                }
            }
        }
        read(&status.ipv4, &mut owned.ipv4, &mut unreadable);
        read(&status.ipv6, &mut owned.ipv6, &mut unreadable);
        owned.attachment = status.attachment.as_ref().map(|a| OwnedAttachment {
            instance: InstanceId(a.instance_id.clone()),
            by_claim: a.attached_by_claim,
        });
        (owned, unreadable)
    }

    pub fn ipv4_set(&self) -> BTreeSet<Ipv4Addr> {
        self.ipv4.iter().map(|o| o.address).collect()
    }

    pub fn ipv6_set(&self) -> BTreeSet<Ipv6Addr> {
        self.ipv6.iter().map(|o| o.address).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.ipv4.is_empty() && self.ipv6.is_empty() && self.attachment.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1alpha1::{AttachmentSpec, Ipv4Spec, Ipv6Spec};

    fn caps(ipv6: bool, attach: bool) -> Capabilities {
        Capabilities {
            ipv6,
            max_ipv6_per_nic: if ipv6 { 10 } else { 0 },
            attach,
            max_addresses_per_call: 10,
            async_tasks: true,
        }
    }

    fn spec() -> NicIpClaimSpec {
        NicIpClaimSpec {
            provider_config_ref: Default::default(),
            nic_id: "eni-1".into(),
            vpc_id: None,
            ipv4: None,
            ipv6: None,
            attachment: None,
            deletion_policy: Default::default(),
            management_policy: Default::default(),
        }
    }

    fn list(addrs: &[&str]) -> Option<Ipv4Spec> {
        Some(Ipv4Spec {
            addresses: Some(addrs.iter().map(|s| s.to_string()).collect()),
            count: None,
            qos_level: None,
        })
    }

    #[test]
    fn rejections_name_the_field() {
        let all = caps(true, true);
        let cases: Vec<(NicIpClaimSpec, Provider, &str)> = vec![
            (
                NicIpClaimSpec {
                    ipv4: list(&["10.0.0.5", "10.0.0.x"]),
                    ..spec()
                },
                Provider::Tencent,
                "spec.ipv4.addresses[1]",
            ),
            (
                NicIpClaimSpec {
                    ipv4: list(&["10.0.0.5", "10.0.0.5"]),
                    ..spec()
                },
                Provider::Tencent,
                "listed twice",
            ),
            (
                NicIpClaimSpec {
                    ipv4: list(&["127.0.0.1"]),
                    ..spec()
                },
                Provider::Tencent,
                "not a unicast",
            ),
            (
                NicIpClaimSpec {
                    ipv4: Some(Ipv4Spec {
                        addresses: None,
                        count: Some(51),
                        qos_level: None,
                    }),
                    ..spec()
                },
                Provider::Tencent,
                "spec.ipv4.count",
            ),
            (
                NicIpClaimSpec {
                    ipv4: Some(Ipv4Spec {
                        addresses: None,
                        count: None,
                        qos_level: None,
                    }),
                    ..spec()
                },
                Provider::Tencent,
                "exactly one",
            ),
            (spec(), Provider::TencentLegacy, "spec.vpcId"),
            (
                NicIpClaimSpec {
                    ipv4: Some(Ipv4Spec {
                        addresses: None,
                        count: Some(2),
                        qos_level: Some(QosLevel::Au),
                    }),
                    ..spec()
                },
                Provider::Zenlayer,
                "qosLevel",
            ),
            (
                NicIpClaimSpec {
                    ipv6: Some(Ipv6Spec {
                        count: 1,
                        bandwidth: Some(5),
                        ..Default::default()
                    }),
                    ..spec()
                },
                Provider::Zenlayer,
                "internetChargeType and bandwidth",
            ),
            (
                NicIpClaimSpec {
                    ipv6: Some(Ipv6Spec {
                        count: 11,
                        ..Default::default()
                    }),
                    ..spec()
                },
                Provider::Tencent,
                "spec.ipv6.count",
            ),
        ];
        for (s, provider, needle) in cases {
            let err = validate(&s, provider, &all).unwrap_err();
            assert!(err.message.contains(needle), "{needle}: {}", err.message);
        }
    }

    #[test]
    fn capabilities_decide_ipv6_and_attachment() {
        let legacy = caps(false, false);
        let s = NicIpClaimSpec {
            vpc_id: Some("vpc-1".into()),
            ipv6: Some(Ipv6Spec {
                count: 1,
                ..Default::default()
            }),
            ..spec()
        };
        assert_eq!(
            validate(&s, Provider::TencentLegacy, &legacy)
                .unwrap_err()
                .reason,
            "Unsupported"
        );
        let s = NicIpClaimSpec {
            vpc_id: Some("vpc-1".into()),
            attachment: Some(AttachmentSpec {
                instance_id: "ins-1".into(),
            }),
            ..spec()
        };
        assert_eq!(
            validate(&s, Provider::TencentLegacy, &legacy)
                .unwrap_err()
                .reason,
            "Unsupported"
        );
        let zen = Capabilities {
            max_ipv6_per_nic: 1,
            ..caps(true, true)
        };
        let s = NicIpClaimSpec {
            ipv6: Some(Ipv6Spec {
                count: 2,
                ..Default::default()
            }),
            ..spec()
        };
        assert!(validate(&s, Provider::Zenlayer, &zen).is_err());
        let s = NicIpClaimSpec {
            ipv6: Some(Ipv6Spec {
                count: 1,
                ..Default::default()
            }),
            ..spec()
        };
        assert_eq!(
            validate(&s, Provider::Zenlayer, &zen)
                .unwrap()
                .ipv6
                .unwrap()
                .count,
            1
        );
    }

    #[test]
    fn a_valid_spec_is_typed() {
        let s = NicIpClaimSpec {
            ipv4: list(&["10.0.0.6", "10.0.0.5"]),
            attachment: Some(AttachmentSpec {
                instance_id: " ins-1 ".into(),
            }),
            ..spec()
        };
        let v = validate(&s, Provider::Tencent, &caps(true, true)).unwrap();
        assert_eq!(
            v.ipv4,
            Ipv4Want::Addresses(["10.0.0.5".parse().unwrap(), "10.0.0.6".parse().unwrap()].into())
        );
        assert_eq!(v.instance, Some(InstanceId("ins-1".into())));
    }

    #[test]
    fn unreadable_owned_entries_are_reported_not_owned() {
        let status = NicIpClaimStatus {
            ipv4: vec![
                OwnedAddress {
                    address: "10.0.0.5".into(),
                    source: AddressSource::Count,
                    state: crate::api::v1alpha1::AddressState::Assigned,
                    since: None,
                },
                OwnedAddress {
                    address: "bogus".into(),
                    source: AddressSource::Count,
                    state: crate::api::v1alpha1::AddressState::Assigned,
                    since: None,
                },
            ],
            ..Default::default()
        };
        let (owned, bad) = Ownership::from_status(Some(&status));
        assert_eq!(owned.ipv4_set(), ["10.0.0.5".parse().unwrap()].into());
        assert_eq!(bad, vec!["bogus".to_string()]);
    }

    #[test]
    fn addresses_of_the_call_in_flight_are_not_owned_yet() {
        let entry = |address: &str, state| OwnedAddress {
            address: address.into(),
            source: AddressSource::Explicit,
            state,
            since: None,
        };
        let status = NicIpClaimStatus {
            ipv4: vec![
                entry("10.0.0.5", AddressState::Assigned),
                entry("10.0.0.6", AddressState::Assigning),
                entry("10.0.0.7", AddressState::Releasing),
            ],
            ..Default::default()
        };
        let (owned, bad) = Ownership::from_status(Some(&status));
        assert_eq!(
            owned.ipv4_set(),
            ["10.0.0.5".parse().unwrap(), "10.0.0.7".parse().unwrap()].into()
        );
        assert!(bad.is_empty());
    }
}
