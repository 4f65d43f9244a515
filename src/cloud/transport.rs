//! HTTP transport shared by the providers: reqwest over rustls with a timeout
//! on every request, endpoint validation (plain `http://` only for loopback),
//! retries with capped exponential backoff and full jitter (re-signing every
//! attempt), one adaptive rate limiter per (account, action) shared by every
//! caller of the transport, and a metrics hook per attempt.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::header::HeaderMap;

use super::error::class_of_status;
use super::{CloudError, ErrorClass, Provider};

/// A validated API endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: Url,
}

impl Endpoint {
    /// Accepts `https://` URLs, and `http://` only when the host is loopback
    /// (the simulated cloud); everything else is a clear error.
    pub fn parse(provider: Provider, raw: &str) -> Result<Self, CloudError> {
        let bad = |why: String| {
            CloudError::client(
                provider,
                "Configure",
                "Client.InvalidEndpoint",
                ErrorClass::InvalidInput,
                why,
            )
        };
        let url =
            Url::parse(raw).map_err(|e| bad(format!("endpoint {raw:?} is not a URL: {e}")))?;
        let host = url
            .host_str()
            .ok_or_else(|| bad(format!("endpoint {raw:?} has no host")))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(host) => {}
            "http" => {
                return Err(bad(format!(
                    "endpoint {raw:?} uses plain http:// for the non-loopback host {host:?}; use https:// \
                     (http:// is accepted only for 127.0.0.1, ::1 and localhost)"
                )));
            }
            other => {
                return Err(bad(format!(
                    "endpoint {raw:?} has unsupported scheme {other:?}"
                )));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "endpoint must not carry user info; credentials come from the Secret".into(),
            ));
        }
        Ok(Endpoint { url })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// An endpoint given as a bare base URL (`http://127.0.0.1:8080`, the
    /// simulated cloud serving every API on one listener) gets the API's
    /// documented path; an explicit path is kept as given.
    pub(crate) fn with_default_path(mut self, path: &str) -> Self {
        if self.url.path() == "/" {
            self.url.set_path(path);
        }
        self
    }

    /// The `Host` header value reqwest sends for this URL: `host`, or
    /// `host:port` for a non-default port. Signatures cover it.
    pub fn host_header(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        match self.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }

    /// Whether this endpoint is an override pointing at a loopback server.
    pub fn is_loopback(&self) -> bool {
        self.url.host_str().is_some_and(is_loopback)
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Requests per second per action; actions not listed use `default_per_second`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    pub default_per_second: f64,
    pub per_action: HashMap<String, f64>,
}

impl RateLimits {
    pub fn new(default_per_second: f64, per_action: &[(&str, f64)]) -> Self {
        RateLimits {
            default_per_second,
            per_action: per_action
                .iter()
                .map(|(a, r)| (a.to_string(), *r))
                .collect(),
        }
    }

    /// Overrides (e.g. from a ProviderConfig) win over the documented defaults.
    pub fn with_overrides(mut self, overrides: &HashMap<String, f64>) -> Self {
        for (action, rate) in overrides {
            self.per_action.insert(action.clone(), *rate);
        }
        self
    }

    fn rate_of(&self, action: &str) -> f64 {
        self.per_action
            .get(action)
            .copied()
            .unwrap_or(self.default_per_second)
            .max(0.001)
    }
}

/// One HTTP attempt, as reported to the metrics hook. `outcome` is `OK` or
/// the error code; nothing here can carry a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub provider: Provider,
    pub action: String,
    pub outcome: String,
    pub latency: Duration,
    pub throttled: bool,
    pub attempt: u32,
}

/// Receives one record per HTTP attempt (calls, latency, throttles and
/// errors by provider/action/code); the controller plugs Prometheus in here.
pub trait MetricsSink: Send + Sync {
    fn record(&self, call: &CallRecord);
}

#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Whole-request timeout (connect, send, receive).
    pub timeout: Duration,
    /// Attempts per call, including the first.
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            timeout: Duration::from_secs(30),
            max_attempts: 4,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// A token bucket whose rate halves on every throttling answer and recovers
/// additively on success, so callers slow down when the cloud says so
/// (DESIGN §3 "throttling → slow down that action's limiter").
#[derive(Debug)]
struct Bucket {
    configured: f64,
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Self {
        Bucket {
            configured: rate,
            rate,
            tokens: rate.clamp(1.0, rate.max(1.0)),
            last: Instant::now(),
        }
    }

    /// Takes a token, or says how long to wait for one.
    fn try_take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        let burst = self.rate.max(1.0);
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    fn throttled(&mut self) {
        self.rate = (self.rate / 2.0).max(self.configured / 64.0);
        self.tokens = 0.0;
    }

    fn succeeded(&mut self) {
        self.rate = (self.rate + self.configured / 16.0).min(self.configured);
    }
}

type LimiterKey = (Provider, String, String);

/// The shared part of a transport. Clones share limiters and the HTTP pool.
#[derive(Clone)]
pub struct Transport {
    http: reqwest::Client,
    config: TransportConfig,
    limits: Arc<Mutex<HashMap<Provider, RateLimits>>>,
    buckets: Arc<Mutex<HashMap<LimiterKey, Arc<Mutex<Bucket>>>>>,
    metrics: Option<Arc<dyn MetricsSink>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The answer of one attempt, handed to the provider's parser.
pub(crate) struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Whether a call may be repeated after an attempt whose outcome is unknown
/// (timeout, connection lost after sending, 5xx). Calls without an
/// idempotency token are only retried when the cloud certainly did not act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotence {
    Safe,
    Unsafe,
}

impl Transport {
    pub fn new(config: TransportConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            // Plain http:// is refused by `Endpoint::parse` instead, so the
            // loopback simulator stays reachable.
            .https_only(false)
            // The APIs never redirect; following one could carry a signed
            // request to an http:// or foreign host the endpoint check never saw.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()?;
        Ok(Transport {
            http,
            config,
            limits: Arc::new(Mutex::new(HashMap::new())),
            buckets: Arc::new(Mutex::new(HashMap::new())),
            metrics: None,
        })
    }

    pub fn with_metrics(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.metrics = Some(sink);
        self
    }

    /// How long after a call started one of its requests may still be in
    /// flight: every attempt's timeout and the longest backoff before it.
    pub(crate) fn in_flight_window(&self) -> Duration {
        (self.config.timeout + self.config.max_backoff) * self.config.max_attempts.max(1)
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Records a provider's documented default limits unless limits were
    /// already configured for it with [`Transport::with_rate_limits`].
    pub(crate) fn register_limits(&self, provider: Provider, limits: RateLimits) {
        if let Ok(mut map) = self.limits.lock() {
            map.entry(provider).or_insert(limits);
        }
    }

    /// Sets the limits (requests per second per action) for every account of
    /// `provider` on this transport, e.g. the documented defaults
    /// `tencent::default_rate_limits().with_overrides(&from_provider_config)`.
    /// Applies to limiters created afterwards: configure before first use.
    pub fn with_rate_limits(self, provider: Provider, limits: RateLimits) -> Self {
        if let Ok(mut map) = self.limits.lock() {
            map.insert(provider, limits);
        }
        self
    }

    fn bucket(&self, provider: Provider, account: &str, action: &str) -> Arc<Mutex<Bucket>> {
        let rate = self
            .limits
            .lock()
            .ok()
            .and_then(|m| m.get(&provider).map(|l| l.rate_of(action)))
            .unwrap_or(10.0);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .entry((provider, account.to_string(), action.to_string()))
            .or_insert_with(|| Arc::new(Mutex::new(Bucket::new(rate))))
            .clone()
    }

    /// The current rate of one limiter (for tests and diagnostics).
    pub fn current_rate(&self, provider: Provider, account: &str, action: &str) -> f64 {
        let bucket = self.bucket(provider, account, action);
        bucket.lock().map(|b| b.rate).unwrap_or_default()
    }

    async fn acquire(&self, bucket: &Mutex<Bucket>) {
        loop {
            let wait = match bucket.lock() {
                Ok(mut b) => b.try_take(),
                Err(_) => Ok(()),
            };
            match wait {
                Ok(()) => return,
                Err(d) => tokio::time::sleep(d).await,
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .config
            .base_backoff
            .saturating_mul(1u32 << attempt.min(16));
        let cap = exp.min(self.config.max_backoff);
        // Full jitter: uniformly in [cap/2, cap] so retries spread out but still back off.
        cap.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }

    /// Runs one logical call: `build` makes (and signs) a fresh request for
    /// every attempt; `parse` turns the answer into a value or a classified
    /// error. Retries throttled and transient failures within the budget.
    pub(crate) async fn call<T, B, P>(
        &self,
        provider: Provider,
        account: &str,
        action: &str,
        idempotence: Idempotence,
        build: B,
        parse: P,
    ) -> Result<T, CloudError>
    where
        B: Fn() -> Result<reqwest::Request, CloudError>,
        P: Fn(RawResponse) -> Result<T, CloudError>,
    {
        let bucket = self.bucket(provider, account, action);
        let mut attempt = 0u32;
        loop {
            self.acquire(&bucket).await;
            let request = build()?;
            let started = Instant::now();
            let sent = self.http.execute(request).await;
            let (result, may_have_acted) = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(body) => (
                            parse(RawResponse {
                                status,
                                headers,
                                body: body.to_vec(),
                            }),
                            true,
                        ),
                        Err(e) => (
                            Err(transport_error(provider, action, &e, Some(status))),
                            true,
                        ),
                    }
                }
                Err(e) => {
                    let never_sent = e.is_connect() || e.is_builder();
                    (
                        Err(transport_error(provider, action, &e, None)),
                        !never_sent,
                    )
                }
            };
            let latency = started.elapsed();
            let throttled = matches!(&result, Err(e) if e.class == ErrorClass::Throttled);
            if let Ok(mut b) = bucket.lock() {
                if throttled {
                    b.throttled()
                } else if result.is_ok() {
                    b.succeeded()
                }
            }
            if let Some(sink) = &self.metrics {
                sink.record(&CallRecord {
                    provider,
                    action: action.to_string(),
                    outcome: match &result {
                        Ok(_) => "OK".to_string(),
                        Err(e) => e.code.clone(),
                    },
                    latency,
                    throttled,
                    attempt,
                });
            }
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            tracing::debug!(%provider, action, attempt, code = %err.code, class = %err.class, "cloud call failed");
            let retry = match err.class {
                ErrorClass::Throttled => true,
                ErrorClass::Transient => {
                    idempotence == Idempotence::Safe || !outcome_open(&err, may_have_acted)
                }
                _ => false,
            };
            attempt += 1;
            if !retry || attempt >= self.config.max_attempts {
                return Err(err);
            }
            tokio::time::sleep(self.backoff(attempt)).await;
        }
    }
}

/// Transient error answers that may follow a change the cloud applied:
/// internal failures, backend timeouts, partial success (legacy `5400`,
/// `6000`). Matched exactly or by family (the part before the first `.`).
/// Other transient codes (a task still running on the NIC, a transitional
/// state) are refusals: the cloud did nothing.
const OUTCOME_OPEN_CODES: &[&str] = &[
    "InternalError",
    "InternalServerError",
    "FailedOperation",
    "INTERNAL_SERVER_ERROR",
    "SERVICE_TEMPORARY_UNAVAILABLE",
    "REQUEST_TIMED_OUT",
    "INVALID_OPERATION_TIMEOUT",
    "5400",
    "6000",
];

/// Whether a failed call without a token may have been applied, so that it
/// must not be repeated blindly: the caller resolves the pending operation
/// from the cloud's state first. Only a request that never got through, or
/// an answer that refuses it outright, can be sent again.
fn outcome_open(err: &CloudError, may_have_acted: bool) -> bool {
    if !may_have_acted {
        return false;
    }
    let family = err.code.split('.').next().unwrap_or_default();
    err.code.starts_with("Client.")
        || err.http_status.is_some_and(|s| s >= 500)
        || OUTCOME_OPEN_CODES.contains(&err.code.as_str())
        || OUTCOME_OPEN_CODES.contains(&family)
}

fn transport_error(
    provider: Provider,
    action: &str,
    e: &reqwest::Error,
    status: Option<u16>,
) -> CloudError {
    let (code, what) = if e.is_timeout() {
        ("Client.Timeout", "no response within the request timeout")
    } else if e.is_connect() {
        ("Client.Network", "could not connect")
    } else if e.is_body() || e.is_decode() {
        (
            "Client.BadResponse",
            "the response body could not be read completely",
        )
    } else {
        ("Client.Network", "the request failed in transit")
    };
    // reqwest's error text names the URL (no credentials: they are in headers).
    let mut err = CloudError::client(
        provider,
        action,
        code,
        ErrorClass::Transient,
        format!("{what}: {e}"),
    );
    err.http_status = status;
    err
}

#[cfg(test)]
impl RawResponse {
    pub(crate) fn test(status: u16, body: &str) -> Self {
        RawResponse {
            status,
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }
}

/// A short, printable excerpt of an unexpected body for error messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(160)]);
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.is_empty() {
        "<empty body>".to_string()
    } else {
        clean.trim().to_string()
    }
}

/// The error for a response that is not the cloud's JSON envelope.
pub(crate) fn unexpected_body(
    provider: Provider,
    action: &str,
    status: u16,
    body: &[u8],
    why: &str,
) -> CloudError {
    let class = if status == 200 {
        ErrorClass::Transient
    } else {
        class_of_status(status)
    };
    let code = if status == 200 {
        "Client.BadResponse"
    } else {
        "Client.HttpStatus"
    };
    let mut err = CloudError::client(
        provider,
        action,
        code,
        class,
        format!("HTTP {status}, {why}; body starts with: {}", excerpt(body)),
    );
    err.http_status = Some(status);
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_allow_http_only_on_loopback() {
        for ok in [
            "https://vpc.tencentcloudapi.com/",
            "http://127.0.0.1:8080/",
            "http://[::1]:1/",
            "http://localhost:9",
        ] {
            assert!(Endpoint::parse(Provider::Tencent, ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://vpc.tencentcloudapi.com/",
            "http://10.0.0.1/",
            "ftp://127.0.0.1/",
            "not a url",
            "https://u:p@h/",
        ] {
            let err = Endpoint::parse(Provider::Tencent, bad).unwrap_err();
            assert_eq!(err.code, "Client.InvalidEndpoint", "{bad}");
            assert_eq!(err.class, ErrorClass::InvalidInput);
        }
        let e = Endpoint::parse(Provider::Zenlayer, "http://127.0.0.1:18080/api/v2/zec").unwrap();
        assert_eq!(e.host_header(), "127.0.0.1:18080");
        let e = Endpoint::parse(
            Provider::Zenlayer,
            "https://console.zenlayer.com/api/v2/zec",
        )
        .unwrap();
        assert_eq!(e.host_header(), "console.zenlayer.com");
    }

    #[test]
    fn bucket_halves_on_throttle_and_recovers() {
        let mut b = Bucket::new(20.0);
        b.throttled();
        assert_eq!(b.rate, 10.0);
        assert!(b.try_take().is_err(), "a throttle empties the bucket");
        for _ in 0..100 {
            b.succeeded();
        }
        assert_eq!(b.rate, 20.0);
        for _ in 0..100 {
            b.throttled();
        }
        assert!(b.rate >= 20.0 / 64.0);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let t = Transport::new(TransportConfig {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..TransportConfig::default()
        })
        .unwrap();
        for attempt in 0..20 {
            let d = t.backoff(attempt);
            assert!(d <= Duration::from_secs(1), "{d:?}");
            let cap = Duration::from_millis(100)
                .saturating_mul(1 << attempt.min(16))
                .min(Duration::from_secs(1));
            assert!(d >= cap / 2, "{d:?} < half of {cap:?}");
        }
    }

    #[test]
    fn configured_limits_win_over_documented_defaults() {
        let overrides = HashMap::from([("DescribeVpcTaskResult".to_string(), 5.0)]);
        let t = Transport::new(TransportConfig::default())
            .unwrap()
            .with_rate_limits(
                Provider::Tencent,
                RateLimits::new(100.0, &[("DescribeVpcTaskResult", 20.0)])
                    .with_overrides(&overrides),
            );
        t.register_limits(Provider::Tencent, RateLimits::new(1.0, &[]));
        assert_eq!(
            t.current_rate(Provider::Tencent, "AKID1", "DescribeVpcTaskResult"),
            5.0
        );
        assert_eq!(
            t.current_rate(Provider::Tencent, "AKID1", "AssignPrivateIpAddresses"),
            100.0
        );
    }

    #[test]
    fn unexpected_bodies_become_clear_errors() {
        let e = unexpected_body(
            Provider::Zenlayer,
            "X",
            403,
            b"<html>challenge</html>",
            "not JSON",
        );
        assert_eq!(e.class, ErrorClass::Credentials);
        assert!(e.message.contains("<html>challenge"));
        let e = unexpected_body(Provider::Tencent, "X", 200, b"", "truncated");
        assert_eq!(e.code, "Client.BadResponse");
        assert!(e.is_retryable());
        let e = unexpected_body(
            Provider::Tencent,
            "X",
            502,
            &[0xff, 0xfe, b'\n'],
            "not JSON",
        );
        assert_eq!(e.class, ErrorClass::Transient);
    }
}
