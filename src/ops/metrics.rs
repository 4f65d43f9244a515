//! Prometheus metrics, prefix `nicip_`, served as OpenMetrics text on
//! `/metrics`.

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::cloud::{CallRecord, MetricsSink};

/// Cloud error codes come from the wire; one misbehaving endpoint must not be
/// able to blow up the label cardinality with long, unique strings.
const MAX_CODE_LEN: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    provider: String,
    action: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    provider: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    condition: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabels {
    family: &'static str,
}

/// What one claim contributes to the claim and address gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClaimMetrics {
    pub ready: bool,
    pub stalled: bool,
    /// IPv4 addresses the claim owns on its NIC.
    pub ipv4: u32,
    /// IPv6 addresses the claim owns on its NIC.
    pub ipv6: u32,
}

impl ClaimMetrics {
    /// Each claim counts under exactly one condition, so the series add up
    /// to the number of claims: `Ready`, else `Stalled`, else `NotReady`.
    fn condition(&self) -> &'static str {
        if self.ready {
            "Ready"
        } else if self.stalled {
            "Stalled"
        } else {
            "NotReady"
        }
    }
}

type DurationHistograms = Family<ActionLabels, Histogram, fn() -> Histogram>;

/// The controller's metrics; share it as `Arc<Metrics>` between the
/// reconciler, the cloud transports (as their [`MetricsSink`]) and the admin
/// server.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    reconcile_errors: Family<ClassLabels, Counter>,
    reconcile_duration: Histogram,
    cloud_calls: Family<CallLabels, Counter>,
    cloud_call_duration: DurationHistograms,
    cloud_throttles: Family<ActionLabels, Counter>,
    claims_by_condition: Family<ConditionLabels, Gauge<i64, AtomicI64>>,
    owned_addresses: Family<FamilyLabels, Gauge<i64, AtomicI64>>,
    leader: Gauge<i64, AtomicI64>,
    claims: Mutex<HashMap<String, ClaimMetrics>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// 5 ms to about 80 s: a reconcile may wait on several cloud calls.
fn reconcile_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// 5 ms to about 20 s, the transport's whole-request timeout range.
fn cloud_call_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("nicip");
        let reconciles = Counter::default();
        registry.register(
            "reconciles",
            "Reconciles finished, successful or not",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ClassLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that ended in an error, by error class",
            reconcile_errors.clone(),
        );
        let reconcile_duration = reconcile_buckets();
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconcile took",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let cloud_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "cloud_calls",
            "Cloud API attempts by provider, action and result code (OK or the error code)",
            cloud_calls.clone(),
        );
        let cloud_call_duration: DurationHistograms =
            Family::new_with_constructor(cloud_call_buckets);
        registry.register_with_unit(
            "cloud_call_duration",
            "Latency of one cloud API attempt",
            Unit::Seconds,
            cloud_call_duration.clone(),
        );
        let cloud_throttles = Family::<ActionLabels, Counter>::default();
        registry.register(
            "cloud_throttles",
            "Cloud API attempts the cloud answered with a throttling error",
            cloud_throttles.clone(),
        );
        let claims_by_condition = Family::<ConditionLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "claims",
            "NicIpClaims this controller reconciles, by condition (Ready, else Stalled, else NotReady)",
            claims_by_condition.clone(),
        );
        let owned_addresses = Family::<FamilyLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "owned_addresses",
            "Addresses the claims own on their NICs, by IP family",
            owned_addresses.clone(),
        );
        let leader = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "leader",
            "1 while this replica leads (holds the Lease, or runs without leader election), else 0",
            leader.clone(),
        );
        // Zero series exist from the start, so dashboards see 0, not "no data".
        for condition in ["Ready", "Stalled", "NotReady"] {
            claims_by_condition
                .get_or_create(&ConditionLabels { condition })
                .set(0);
        }
        for family in ["ipv4", "ipv6"] {
            owned_addresses
                .get_or_create(&FamilyLabels { family })
                .set(0);
        }
        Arc::new(Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            cloud_calls,
            cloud_call_duration,
            cloud_throttles,
            claims_by_condition,
            owned_addresses,
            leader,
            claims: Mutex::new(HashMap::new()),
        })
    }

    /// One reconcile ended; `error_class` is the error's class label (for
    /// example `ErrorClass::as_str`) or `None` on success.
    pub fn reconcile_finished(&self, duration: Duration, error_class: Option<&str>) {
        self.reconciles.inc();
        self.reconcile_duration.observe(duration.as_secs_f64());
        if let Some(class) = error_class {
            self.reconcile_errors
                .get_or_create(&ClassLabels {
                    class: class.to_string(),
                })
                .inc();
        }
    }

    /// Whether this replica leads; the admin server sets it from the
    /// elector's role at every scrape, so it cannot drift from `/readyz`.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Sets what the claim `key` (e.g. `namespace/name`) contributes to the
    /// claim and address gauges, replacing its previous contribution.
    pub fn set_claim(&self, key: &str, state: ClaimMetrics) {
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        let old = claims.insert(key.to_string(), state);
        if let Some(old) = old {
            self.add(&old, -1);
        }
        self.add(&state, 1);
    }

    /// Removes the claim `key` from the gauges (deleted, or no longer ours).
    pub fn forget_claim(&self, key: &str) {
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = claims.remove(key) {
            self.add(&old, -1);
        }
    }

    /// Callers hold the `claims` lock, so the gauges move together with it.
    fn add(&self, state: &ClaimMetrics, sign: i64) {
        self.claims_by_condition
            .get_or_create(&ConditionLabels {
                condition: state.condition(),
            })
            .inc_by(sign);
        for (family, count) in [("ipv4", state.ipv4), ("ipv6", state.ipv6)] {
            self.owned_addresses
                .get_or_create(&FamilyLabels { family })
                .inc_by(sign * i64::from(count));
        }
    }

    /// The OpenMetrics text exposition of every metric, ending in `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; the encoder's own errors would
        // mean an invalid metric name, which the tests rule out.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}

/// The `code` label for an attempt's outcome (`OK` or the cloud's code).
fn code_label(outcome: &str) -> &str {
    if outcome.len() > MAX_CODE_LEN {
        "Other"
    } else {
        outcome
    }
}

impl MetricsSink for Metrics {
    fn record(&self, call: &CallRecord) {
        let provider = call.provider.as_str().to_string();
        self.cloud_calls
            .get_or_create(&CallLabels {
                provider: provider.clone(),
                action: call.action.clone(),
                code: code_label(&call.outcome).to_string(),
            })
            .inc();
        let action = ActionLabels {
            provider,
            action: call.action.clone(),
        };
        self.cloud_call_duration
            .get_or_create(&action)
            .observe(call.latency.as_secs_f64());
        if call.throttled {
            self.cloud_throttles.get_or_create(&action).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn claim_gauges_follow_set_and_forget() {
        let m = Metrics::new();
        let ready = ClaimMetrics {
            ready: true,
            stalled: false,
            ipv4: 2,
            ipv6: 1,
        };
        m.set_claim("a/one", ready);
        m.set_claim(
            "a/two",
            ClaimMetrics {
                stalled: true,
                ipv4: 1,
                ..Default::default()
            },
        );
        m.set_claim("a/three", ClaimMetrics::default());
        let text = m.encode();
        assert_eq!(
            sample(&text, r#"nicip_claims{condition="Ready"}"#),
            Some("1"),
            "{text}"
        );
        assert_eq!(
            sample(&text, r#"nicip_claims{condition="Stalled"}"#),
            Some("1")
        );
        assert_eq!(
            sample(&text, r#"nicip_claims{condition="NotReady"}"#),
            Some("1")
        );
        assert_eq!(
            sample(&text, r#"nicip_owned_addresses{family="ipv4"}"#),
            Some("3")
        );
        assert_eq!(
            sample(&text, r#"nicip_owned_addresses{family="ipv6"}"#),
            Some("1")
        );

        // Replacing a claim's state moves it between conditions.
        m.set_claim(
            "a/two",
            ClaimMetrics {
                ready: true,
                ipv4: 4,
                ..Default::default()
            },
        );
        m.forget_claim("a/one");
        m.forget_claim("a/never-seen");
        let text = m.encode();
        assert_eq!(
            sample(&text, r#"nicip_claims{condition="Ready"}"#),
            Some("1"),
            "{text}"
        );
        assert_eq!(
            sample(&text, r#"nicip_claims{condition="Stalled"}"#),
            Some("0")
        );
        assert_eq!(
            sample(&text, r#"nicip_claims{condition="NotReady"}"#),
            Some("1")
        );
        assert_eq!(
            sample(&text, r#"nicip_owned_addresses{family="ipv4"}"#),
            Some("4")
        );
        assert_eq!(
            sample(&text, r#"nicip_owned_addresses{family="ipv6"}"#),
            Some("0")
        );
    }

    #[test]
    fn long_cloud_codes_collapse_into_one_label() {
        assert_eq!(code_label("OK"), "OK");
        assert_eq!(
            code_label("InvalidParameterValue.Range"),
            "InvalidParameterValue.Range"
        );
        assert_eq!(code_label(&"X".repeat(MAX_CODE_LEN)).len(), MAX_CODE_LEN);
        assert_eq!(code_label(&"X".repeat(MAX_CODE_LEN + 1)), "Other");
    }
}
