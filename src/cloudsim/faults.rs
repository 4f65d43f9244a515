//! Fault injection, per-action rate limits and the audit log.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The three wire protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Protocol {
    /// Zenlayer ZEC API 2.0.
    Zenlayer,
    /// Tencent Cloud API 3.0.
    Tencent,
    /// Tencent VPC legacy API 2.0.
    TencentLegacy,
}

/// One fault rule. It matches a protocol and action (either may be left out
/// to match all) and fires with probability `rate`, at most `times` times.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default = "always")]
    pub rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// Answer with this error code instead of running the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// HTTP status for an injected Zenlayer error (Tencent errors are always
    /// HTTP 200); defaults to 500 for `INTERNAL_SERVER_ERROR`-like codes,
    /// 429 for `REQUEST_LIMIT_EXCEEDED`, else 400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Delay the answer by this much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Apply the change, then close the connection without answering.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop_response: bool,
    /// Tencent async actions: accept, then let the task end FAILED and roll
    /// the change back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_task: bool,
    /// With `failTask`: the error code the failed task reports in its
    /// output (default `InternalError`), e.g. `LimitExceeded.EniPrivateIpLimit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_error: Option<String>,
}

fn always() -> f64 {
    1.0
}

/// A rule that matches everything, always, and does nothing yet: set one
/// effect, e.g. `Fault { error: Some("InternalError".into()), ..Fault::default() }`.
impl Default for Fault {
    fn default() -> Self {
        Fault {
            protocol: None,
            action: None,
            rate: always(),
            times: None,
            error: None,
            http_status: None,
            message: None,
            latency_ms: None,
            drop_response: false,
            fail_task: false,
            task_error: None,
        }
    }
}

impl Fault {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.rate) {
            return Err(format!("rate {} is not within 0..=1", self.rate));
        }
        if self.error.is_none()
            && self.latency_ms.is_none()
            && !self.drop_response
            && !self.fail_task
        {
            return Err("a fault needs one of error, latencyMs, dropResponse, failTask".into());
        }
        if self.task_error.is_some() && !self.fail_task {
            return Err("taskError needs failTask".into());
        }
        if self.error.as_deref().is_some_and(str::is_empty) {
            return Err("error must not be empty".into());
        }
        if let Some(s) = self.http_status
            && !(100..=599).contains(&s)
        {
            return Err(format!("httpStatus {s} is not an HTTP status"));
        }
        Ok(())
    }

    fn matches(&self, protocol: Protocol, action: &str) -> bool {
        self.protocol.is_none_or(|p| p == protocol)
            && self.action.as_deref().is_none_or(|a| a == action)
    }
}

/// An error the fault rules ask for.
#[derive(Debug, Clone)]
pub struct InjectedError {
    pub code: String,
    pub http_status: u16,
    pub message: String,
}

/// What the fault rules decided for one request.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    pub error: Option<InjectedError>,
    pub latency: Duration,
    pub drop_response: bool,
    /// The code a failed task reports; `None`: the task succeeds.
    pub fail_task: Option<String>,
}

#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Fault>>,
}

impl Faults {
    pub fn new(rules: Vec<Fault>) -> Faults {
        Faults {
            rules: Mutex::new(rules),
        }
    }

    pub fn set(&self, rules: Vec<Fault>) {
        *self.rules.lock().unwrap_or_else(|e| e.into_inner()) = rules;
    }

    pub fn list(&self) -> Vec<Fault> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn decide(&self, protocol: Protocol, action: &str) -> Decision {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let mut d = Decision::default();
        if rules.is_empty() {
            return d;
        }
        for rule in rules.iter_mut().filter(|r| r.matches(protocol, action)) {
            if rule.times == Some(0) || (rule.rate < 1.0 && rand::random::<f64>() >= rule.rate) {
                continue;
            }
            if let Some(t) = rule.times.as_mut() {
                *t -= 1;
            }
            if let Some(code) = &rule.error
                && d.error.is_none()
            {
                let http_status = rule.http_status.unwrap_or(match code.as_str() {
                    "REQUEST_LIMIT_EXCEEDED" => 429,
                    c if c.contains("INTERNAL")
                        || c.contains("UNAVAILABLE")
                        || c.contains("TIMED_OUT") =>
                    {
                        500
                    }
                    _ => 400,
                });
                d.error = Some(InjectedError {
                    code: code.clone(),
                    http_status,
                    message: rule
                        .message
                        .clone()
                        .unwrap_or_else(|| format!("injected fault: {code}")),
                });
            }
            d.latency += Duration::from_millis(rule.latency_ms.unwrap_or(0));
            d.drop_response |= rule.drop_response;
            if rule.fail_task && d.fail_task.is_none() {
                d.fail_task = Some(
                    rule.task_error
                        .clone()
                        .unwrap_or_else(|| "InternalError".into()),
                );
            }
        }
        rules.retain(|r| r.times != Some(0));
        d
    }
}

/// The documented Tencent per-action limits (requests per second).
pub fn tencent_default_limit(action: &str) -> Option<f64> {
    Some(match action {
        "AssignPrivateIpAddresses"
        | "UnassignPrivateIpAddresses"
        | "DescribeNetworkInterfaces"
        | "AttachNetworkInterface"
        | "DetachNetworkInterface"
        | "DeleteNetworkInterface"
        | "DescribeSubnets" => 100.0,
        "DescribeVpcTaskResult"
        | "DescribeNetworkInterfaceLimit"
        | "AssignIpv6Addresses"
        | "UnassignIpv6Addresses"
        | "CreateAndAttachNetworkInterface"
        | "DescribeVpcPrivateIpAddresses" => 20.0,
        "DescribeInstances" => 40.0,
        _ => return None,
    })
}

type Limiter = governor::DefaultDirectRateLimiter;
/// A limiter and the rate it was built for, per (protocol, key id, action).
type Buckets = HashMap<(Protocol, String, String), (f64, Arc<Limiter>)>;

/// Fixed token buckets per (protocol, key id, action), from `governor`;
/// burst = one second's worth (at least one call).
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<Buckets>,
}

fn limiter(per_second: f64) -> Limiter {
    let burst = NonZeroU32::new(per_second.floor().clamp(1.0, f64::from(u32::MAX)) as u32)
        .unwrap_or(NonZeroU32::MIN);
    let period = Duration::from_secs_f64(1.0 / per_second).max(Duration::from_nanos(1));
    let quota = governor::Quota::with_period(period)
        .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    governor::RateLimiter::direct(quota)
}

impl RateLimiter {
    /// `true` when the call may go ahead.
    pub fn allow(&self, protocol: Protocol, key_id: &str, action: &str, per_second: f64) -> bool {
        if per_second <= 0.0 || !per_second.is_finite() {
            return true;
        }
        let bucket = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            let entry = buckets
                .entry((protocol, key_id.to_string(), action.to_string()))
                .or_insert_with(|| (per_second, Arc::new(limiter(per_second))));
            // A changed limit (settings edited over the control endpoint) starts afresh.
            if entry.0 != per_second {
                *entry = (per_second, Arc::new(limiter(per_second)));
            }
            entry.1.clone()
        };
        bucket.check().is_ok()
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub time: String,
    /// Written as `provider`, the word the issue and the ProviderConfig use;
    /// the value names the wire protocol (`zenlayer`, `tencent`,
    /// `tencentLegacy`), as fault rules do.
    #[serde(rename = "provider")]
    pub protocol: Protocol,
    pub action: String,
    pub key_id: String,
    /// The action's parameters; signatures, tokens and secrets are removed.
    pub params: serde_json::Value,
    /// `Success` or the error code answered.
    pub outcome: String,
    pub request_id: String,
    /// The caller's `User-Agent` header, capped: it tells which replica made
    /// a call. Empty, and then not written, when the request had none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
}

const KEEP_AUDIT: usize = 10_000;

/// Audit entries go to a JSON-lines file (when configured) and to a bounded
/// in-memory buffer readable from Rust and over `/_sim/audit`.
pub struct Audit {
    file: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
    recent: Mutex<VecDeque<AuditEntry>>,
}

impl Audit {
    pub fn new(path: Option<&Path>) -> std::io::Result<Audit> {
        let file = match path {
            Some(p) => Some(Mutex::new(std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ))),
            None => None,
        };
        Ok(Audit {
            file,
            recent: Mutex::new(VecDeque::new()),
        })
    }

    pub fn record(&self, entry: AuditEntry) {
        if let Some(file) = &self.file {
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(line) = serde_json::to_string(&entry) {
                let written = writeln!(f, "{line}").and_then(|_| f.flush());
                if let Err(e) = written {
                    tracing::warn!("cannot write the audit log: {e}");
                }
            }
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= KEEP_AUDIT {
            recent.pop_front();
        }
        recent.push_back(entry);
    }

    pub fn recent(&self) -> Vec<AuditEntry> {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_second_worth_then_throttles() {
        let limiter = RateLimiter::default();
        let allowed = (0..10)
            .filter(|_| limiter.allow(Protocol::Tencent, "k", "A", 4.0))
            .count();
        assert_eq!(allowed, 4);
        // Separate keys and actions have separate buckets; 0 is unlimited.
        assert!(limiter.allow(Protocol::Tencent, "other", "A", 4.0));
        assert!(limiter.allow(Protocol::Tencent, "k", "B", 4.0));
        assert!((0..100).all(|_| limiter.allow(Protocol::Zenlayer, "k", "A", 0.0)));
    }

    #[test]
    fn one_shot_faults_disappear() {
        let faults = Faults::new(vec![Fault {
            error: Some("X".into()),
            times: Some(1),
            ..Fault::default()
        }]);
        assert_eq!(
            faults
                .decide(Protocol::Zenlayer, "A")
                .error
                .map(|e| e.code)
                .as_deref(),
            Some("X")
        );
        assert!(faults.decide(Protocol::Zenlayer, "A").error.is_none());
        assert!(faults.list().is_empty());
    }
}
