//! HTTP transport shared by the providers: reqwest over rustls with a timeout
//! on every request, endpoint validation (plain `http://` only for loopback),
//! retries on a capped, jittered exponential schedule (re-signing every
//! attempt, honouring `Retry-After`), a send deadline per call, one adaptive
//! rate limiter per (scope, action) shared by every caller of the transport,
//! a cap on the size of every response body, and a metrics hook per attempt.
//! All waiting is on `tokio::time`.
//!
//! TLS: certificates are always verified against the bundled Web PKI roots
//! (rustls); there is deliberately no option to turn verification off. The
//! only unencrypted endpoints accepted are loopback ones ([`Endpoint::parse`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use backon::BackoffBuilder;
use reqwest::Url;
use reqwest::header::HeaderMap;
use tokio::time::Instant;

use super::error::class_of_status;
use super::{CloudError, ErrorClass, Outcome, Provider};

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
                ErrorClass::Configuration,
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
    /// Sent as `User-Agent`.
    pub user_agent: String,
    /// The most bytes read from one response body: a longer answer (a
    /// misbehaving proxy, an endless stream) is cut off and is the
    /// `Client.ResponseTooLarge` error. The largest documented answer (a
    /// Describe page of 100 NICs with 50 addresses each) is well under 1 MiB.
    pub max_response_bytes: usize,
    /// Host names resolved to these addresses instead of through DNS (e.g. a
    /// private endpoint in a split-horizon network). The certificate is
    /// still verified against the host name of the URL.
    pub resolve: Vec<(String, SocketAddr)>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            timeout: Duration::from_secs(30),
            max_attempts: 4,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            user_agent: concat!("nicip/", env!("CARGO_PKG_VERSION")).to_string(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            resolve: Vec::new(),
        }
    }
}

/// [`TransportConfig::max_response_bytes`] by default: 4 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Concurrent throttling answers are one signal: a limiter slows down at most
/// once per this window.
const SLOWDOWN_WINDOW: Duration = Duration::from_secs(1);

/// A token bucket whose rate halves on a throttling answer (at most once
/// per [`SLOWDOWN_WINDOW`]) and recovers additively on success, so callers
/// slow down when the cloud says so.
///
/// It holds half a second's worth of calls where the cloud's own bucket is
/// assumed to hold a second's: the cloud counts arrivals, and a call sent on
/// time can arrive after the next one (pooled connections, scheduling), so
/// a client bucket as deep as the cloud's leaves no room for that jitter and
/// a sustained burst at the full rate gets throttled now and then. The other
/// half is the cloud's reserve; it costs half a second at the start of a
/// burst.
#[derive(Debug)]
struct Bucket {
    configured: f64,
    rate: f64,
    tokens: f64,
    last: Instant,
    slowed: Option<Instant>,
}

impl Bucket {
    fn new(rate: f64) -> Self {
        Bucket {
            configured: rate,
            rate,
            tokens: Self::depth(rate),
            last: Instant::now(),
            slowed: None,
        }
    }

    /// The most tokens held: half a second's worth, at least one call.
    fn depth(rate: f64) -> f64 {
        (rate / 2.0).max(1.0)
    }

    /// Takes a token, or says how long to wait for one.
    fn try_take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        let burst = Self::depth(self.rate);
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            // At least a millisecond (tokio's timer granularity): rounding can
            // leave the bucket a hair under one token, and a zero wait then
            // spins without the clock moving (forever on a paused clock).
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
                .max(Duration::from_millis(1)))
        }
    }

    fn throttled(&mut self) {
        let now = Instant::now();
        self.tokens = 0.0;
        if self
            .slowed
            .is_some_and(|t| now.duration_since(t) < SLOWDOWN_WINDOW)
        {
            return;
        }
        self.slowed = Some(now);
        self.rate = (self.rate / 2.0).max(self.configured / 64.0);
    }

    fn succeeded(&mut self) {
        self.rate = (self.rate + self.configured / 16.0).min(self.configured);
    }

    /// A new configured rate (an edited ProviderConfig): a slowed-down
    /// limiter stays slowed down, but never above the new rate.
    fn reconfigure(&mut self, rate: f64) {
        if rate != self.configured {
            let ratio = self.rate / self.configured;
            self.configured = rate;
            self.rate = (rate * ratio).min(rate);
        }
    }
}

/// A lock that a panicking holder cannot turn into "no limiting".
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type LimiterKey = (String, String);

#[derive(Default)]
struct Limiters {
    /// Documented defaults by provider, for clients built without a scope.
    defaults: HashMap<Provider, RateLimits>,
    /// Limits by scope (a ProviderConfig's name).
    scopes: HashMap<String, RateLimits>,
    buckets: HashMap<LimiterKey, Arc<Mutex<Bucket>>>,
}

/// The shared part of a transport. Clones share limiters and the HTTP pool.
#[derive(Clone)]
pub struct Transport {
    http: reqwest::Client,
    config: TransportConfig,
    limiters: Arc<Mutex<Limiters>>,
    scope: Option<Arc<str>>,
    metrics: Option<Arc<dyn MetricsSink>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("config", &self.config)
            .field("scope", &self.scope)
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
        let mut http = reqwest::Client::builder();
        for (host, addr) in &config.resolve {
            http = http.resolve(host, *addr);
        }
        let http = http
            .use_rustls_tls()
            // Certificate verification stays reqwest's default (on): this is
            // the only place a cloud client is built, and nothing relaxes it.
            // Plain http:// is refused by `Endpoint::parse` instead, so the
            // loopback simulator stays reachable.
            .https_only(false)
            // The APIs never redirect; following one could carry a signed
            // request to an http:// or foreign host the endpoint check never saw.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(config.user_agent.clone())
            .build()?;
        Ok(Transport {
            http,
            config,
            limiters: Arc::new(Mutex::new(Limiters::default())),
            scope: None,
            metrics: None,
        })
    }

    pub fn with_metrics(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.metrics = Some(sink);
        self
    }

    /// How long after a call was first sent one of its requests may still
    /// act: its send window (no attempt starts later) plus one request timeout.
    pub(crate) fn in_flight_window(&self) -> Duration {
        self.send_window() + self.config.timeout
    }

    /// How long after a call was first sent a new attempt may start: every
    /// attempt's timeout and the longest backoff before the next one.
    pub(crate) fn send_window(&self) -> Duration {
        let attempts = self.config.max_attempts.max(1);
        self.config.timeout * (attempts - 1) + self.config.max_backoff * attempts
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A clone whose limiters belong to `scope` (a ProviderConfig), with
    /// these limits. Applying new limits to a scope keeps its limiters'
    /// state (a slowed-down limiter stays slowed down).
    pub fn scoped(&self, scope: &str, limits: RateLimits) -> Transport {
        let mut l = lock(&self.limiters);
        for ((s, action), bucket) in &l.buckets {
            if s == scope {
                lock(bucket).reconfigure(limits.rate_of(action));
            }
        }
        l.scopes.insert(scope.to_string(), limits);
        drop(l);
        Transport {
            scope: Some(scope.into()),
            ..self.clone()
        }
    }

    /// Records a provider's documented default limits (for clients built
    /// without a scope) unless limits were configured with
    /// [`Transport::with_rate_limits`].
    pub(crate) fn register_limits(&self, provider: Provider, limits: RateLimits) {
        lock(&self.limiters)
            .defaults
            .entry(provider)
            .or_insert(limits);
    }

    /// Sets the limits of clients of `provider` built without a scope.
    pub fn with_rate_limits(self, provider: Provider, limits: RateLimits) -> Self {
        lock(&self.limiters).defaults.insert(provider, limits);
        self
    }

    /// The limiter scope of a call: the transport's scope, or, unscoped, the
    /// provider and account.
    fn scope_of(&self, provider: Provider, account: &str) -> String {
        match &self.scope {
            Some(s) => s.to_string(),
            None => format!("{provider}/{account}"),
        }
    }

    fn bucket(&self, scope: &str, provider: Provider, action: &str) -> Arc<Mutex<Bucket>> {
        let mut l = lock(&self.limiters);
        let rate = l
            .scopes
            .get(scope)
            .or_else(|| l.defaults.get(&provider))
            .map(|r| r.rate_of(action))
            .unwrap_or(10.0);
        l.buckets
            .entry((scope.to_string(), action.to_string()))
            .or_insert_with(|| Arc::new(Mutex::new(Bucket::new(rate))))
            .clone()
    }

    /// The current rate of one limiter (for tests and diagnostics). `scope`
    /// is a ProviderConfig name, or `<provider>/<account>` for clients built
    /// without one.
    pub fn current_rate(&self, scope: &str, action: &str) -> Option<f64> {
        let l = lock(&self.limiters);
        l.buckets
            .get(&(scope.to_string(), action.to_string()))
            .map(|b| lock(b).rate)
    }

    /// Waits for a token; `false` when none comes before `deadline`.
    async fn acquire(&self, bucket: &Mutex<Bucket>, deadline: Option<Instant>) -> bool {
        loop {
            let wait = lock(bucket).try_take();
            match wait {
                Ok(()) => return true,
                Err(d) => {
                    if deadline.is_some_and(|end| Instant::now() + d > end) {
                        return false;
                    }
                    tokio::time::sleep(d).await
                }
            }
        }
    }

    /// The retry delays: exponential from half the base to half the cap,
    /// each with a random jitter that adds up to the same again, so a delay
    /// lies in `[d, 2d)` and never exceeds `max_backoff`.
    fn backoff_schedule(&self) -> impl Iterator<Item = Duration> + use<> {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.config.base_backoff / 2)
            .with_max_delay(self.config.max_backoff / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// The send deadline of a mutating call, as a point on tokio's clock:
    /// `started_at` + the send window. An operation never marked sent, or
    /// whose deadline passed, is refused without sending (`NotSent`).
    pub(crate) fn send_deadline(
        &self,
        provider: Provider,
        action: &str,
        started_at: Option<jiff::Timestamp>,
    ) -> Result<Instant, CloudError> {
        let Some(started) = started_at else {
            return Err(CloudError::invalid_request(
                provider,
                action,
                "the operation was not marked sent (Operation::mark_sent) and recorded before submit"
                    .into(),
            ));
        };
        let window_ms = i64::try_from(self.send_window().as_millis()).unwrap_or(i64::MAX);
        let left_ms = started
            .as_millisecond()
            .saturating_add(window_ms)
            .saturating_sub(jiff::Timestamp::now().as_millisecond());
        if left_ms <= 0 {
            return Err(deadline_exceeded(provider, action));
        }
        Ok(Instant::now() + Duration::from_millis(left_ms.unsigned_abs()))
    }

    /// Runs one logical call: `build` makes (and signs) a fresh request for
    /// every attempt; `parse` turns the answer into a value or a classified
    /// error. Retries throttled and transient failures within the budget;
    /// no attempt starts after `deadline` (waiting on the limiter counts).
    /// The error's outcome covers every attempt: `Unknown` if any may have
    /// acted.
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(name = "cloud_call", level = "info", skip_all, fields(provider = %provider, action = %action))]
    pub(crate) async fn call<T, B, P>(
        &self,
        provider: Provider,
        account: &str,
        action: &str,
        idempotence: Idempotence,
        deadline: Option<Instant>,
        build: B,
        parse: P,
    ) -> Result<T, CloudError>
    where
        B: Fn() -> Result<reqwest::Request, CloudError>,
        P: Fn(RawResponse) -> Result<T, CloudError>,
    {
        let bucket = self.bucket(&self.scope_of(provider, account), provider, action);
        let mut schedule = self.backoff_schedule();
        let mut attempt = 0u32;
        let mut outcome = Outcome::NotSent;
        let mut last: Option<CloudError> = None;
        loop {
            let past = |extra: Duration| deadline.is_some_and(|end| Instant::now() + extra > end);
            if past(Duration::ZERO) || !self.acquire(&bucket, deadline).await {
                return Err(last
                    .map(|e| with_outcome(e, outcome))
                    .unwrap_or_else(|| deadline_exceeded(provider, action)));
            }
            let request = build()?;
            let started = Instant::now();
            let sent = self.http.execute(request).await;
            let mut retry_after = None;
            let (result, may_have_acted) = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    retry_after = retry_after_of(&headers);
                    match read_body(resp, self.config.max_response_bytes).await {
                        Ok(body) => (
                            parse(RawResponse {
                                status,
                                headers,
                                body,
                            }),
                            true,
                        ),
                        Err(BodyError::Transport(e)) => (
                            Err(transport_error(provider, action, &e, Some(status))),
                            true,
                        ),
                        Err(BodyError::TooLarge) => (
                            Err(too_large(
                                provider,
                                action,
                                status,
                                self.config.max_response_bytes,
                            )),
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
            {
                let mut b = lock(&bucket);
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
            let this = if !may_have_acted {
                Outcome::NotSent
            } else if outcome_open(&err) {
                Outcome::Unknown
            } else {
                Outcome::Rejected
            };
            outcome = outcome.max(this);
            tracing::debug!(%provider, action, attempt, code = %err.code, class = %err.class, "cloud call failed");
            let retry = match err.class {
                ErrorClass::Throttled => true,
                ErrorClass::Transient => {
                    idempotence == Idempotence::Safe || this != Outcome::Unknown
                }
                _ => false,
            };
            attempt += 1;
            if !retry || attempt >= self.config.max_attempts {
                return Err(with_outcome(err, outcome));
            }
            let delay = schedule
                .next()
                .unwrap_or(self.config.max_backoff)
                .max(retry_after.unwrap_or_default());
            if past(delay) {
                return Err(with_outcome(err, outcome));
            }
            last = Some(err);
            tokio::time::sleep(delay).await;
        }
    }
}

impl Outcome {
    /// `Unknown` > `Rejected` > `NotSent`: what a sequence of attempts adds up to.
    fn max(self, other: Outcome) -> Outcome {
        let rank = |o: Outcome| match o {
            Outcome::NotSent => 0,
            Outcome::Rejected => 1,
            Outcome::Unknown => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

fn with_outcome(mut err: CloudError, outcome: Outcome) -> CloudError {
    err.outcome = outcome;
    err
}

fn deadline_exceeded(provider: Provider, action: &str) -> CloudError {
    CloudError::client(
        provider,
        action,
        "Client.DeadlineExceeded",
        ErrorClass::Transient,
        "the call's send window after it was first recorded has passed; it was not sent".into(),
    )
}

/// `Retry-After` in seconds (the clouds do not send HTTP dates), capped at a minute.
fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(60)))
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

/// Whether a failed call that reached the cloud may have been applied, so
/// that it must not be repeated blindly: the caller resolves the pending
/// operation from the cloud's state first. Only an answer that refuses it
/// outright is a rejection.
fn outcome_open(err: &CloudError) -> bool {
    let family = err.code.split('.').next().unwrap_or_default();
    err.code.starts_with("Client.")
        || err.http_status.is_some_and(|s| s >= 500)
        || OUTCOME_OPEN_CODES.contains(&err.code.as_str())
        || OUTCOME_OPEN_CODES.contains(&family)
}

enum BodyError {
    Transport(reqwest::Error),
    TooLarge,
}

/// Reads a response body of at most `limit` bytes, chunk by chunk, so that
/// an endless or huge answer costs at most `limit` bytes of memory. The
/// request timeout covers the whole read.
async fn read_body(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn too_large(provider: Provider, action: &str, status: u16, limit: usize) -> CloudError {
    let mut err = CloudError::client(
        provider,
        action,
        "Client.ResponseTooLarge",
        ErrorClass::Transient,
        format!("the response body is larger than {limit} bytes and was not read"),
    );
    err.http_status = Some(status);
    err
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
    // reqwest's error text names the URL (no credentials: they are in
    // headers); its causes say why, e.g. a certificate's `UnknownIssuer`.
    let mut text = format!("{what}: {e}");
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    let mut err = CloudError::client(
        provider,
        action,
        code,
        ErrorClass::Transient,
        super::error::bounded(text, super::error::MAX_MESSAGE_CHARS),
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
            assert_eq!(err.class, ErrorClass::Configuration);
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

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_throttles_slows_down_once_per_window() {
        let mut b = Bucket::new(20.0);
        // Twenty concurrent callers all see the same throttling answer.
        for _ in 0..20 {
            b.throttled();
        }
        assert_eq!(b.rate, 10.0, "one slowdown, not twenty");
        assert!(b.try_take().is_err(), "a throttle empties the bucket");
        tokio::time::advance(SLOWDOWN_WINDOW).await;
        b.throttled();
        assert_eq!(b.rate, 5.0, "the next window slows down again");
        for _ in 0..100 {
            b.succeeded();
        }
        assert_eq!(b.rate, 20.0);
        for _ in 0..100 {
            tokio::time::advance(SLOWDOWN_WINDOW).await;
            b.throttled();
        }
        assert_eq!(
            b.rate,
            20.0 / 64.0,
            "never below 1/64 of the configured rate"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_refill_on_tokio_time() {
        let mut b = Bucket::new(4.0);
        // Half a second's worth at once, then one per 1/rate.
        assert!(b.try_take().is_ok() && b.try_take().is_ok());
        let wait = b.try_take().unwrap_err();
        assert_eq!(wait, Duration::from_millis(250));
        tokio::time::advance(wait).await;
        assert!(b.try_take().is_ok());
        assert!(b.try_take().is_err());
        // A long pause refills only to the depth.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.try_take().is_ok() && b.try_take().is_ok());
        assert!(b.try_take().is_err());
    }

    /// Found by the fuzzer: refills that add up to a hair under one token
    /// asked for a zero wait, which never moves a paused clock: a hang.
    #[tokio::test(start_paused = true)]
    async fn a_bucket_never_asks_for_a_zero_wait() {
        let mut b = Bucket::new(10.0);
        b.tokens = 1.0 - 1e-12;
        b.last = Instant::now();
        let wait = b.try_take().unwrap_err();
        assert!(wait >= Duration::from_millis(1), "{wait:?}");
        tokio::time::advance(wait).await;
        assert!(b.try_take().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_poisoned_limiter_still_limits() {
        let t = Transport::new(TransportConfig::default()).unwrap();
        let scoped = t.scoped("pc", RateLimits::new(1.0, &[]));
        let bucket = scoped.bucket("pc", Provider::Tencent, "A");
        let poison = bucket.clone();
        let _ = std::thread::spawn(move || {
            let _guard = poison.lock().unwrap();
            panic!("poison the limiter");
        })
        .join();
        assert!(bucket.is_poisoned());
        assert!(scoped.acquire(&bucket, None).await);
        let deadline = Some(Instant::now() + Duration::from_millis(100));
        assert!(
            !scoped.acquire(&bucket, deadline).await,
            "the second token is a second away: past the deadline"
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_its_documented_range() {
        let t = Transport::new(TransportConfig {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..TransportConfig::default()
        })
        .unwrap();
        let delays: Vec<Duration> = t.backoff_schedule().take(20).collect();
        for (attempt, d) in delays.iter().enumerate() {
            let base = Duration::from_millis(50)
                .saturating_mul(1 << attempt.min(16))
                .min(Duration::from_millis(500));
            assert!(
                *d >= base && *d < base * 2,
                "{attempt}: {d:?} not in [{base:?}, 2x)"
            );
            assert!(*d <= Duration::from_secs(1));
        }
        assert!(
            delays[10..].windows(2).any(|w| w[0] != w[1]),
            "capped delays still vary"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn edited_limits_apply_to_existing_limiters_and_keep_their_state() {
        let t = Transport::new(TransportConfig::default()).unwrap();
        let first = t.scoped(
            "pc-a",
            RateLimits::new(100.0, &[("DescribeVpcTaskResult", 20.0)]),
        );
        let bucket = first.bucket("pc-a", Provider::Tencent, "DescribeVpcTaskResult");
        lock(&bucket).throttled();
        assert_eq!(t.current_rate("pc-a", "DescribeVpcTaskResult"), Some(10.0));
        // The ProviderConfig is edited: the provider is rebuilt with the override.
        let overrides = HashMap::from([("DescribeVpcTaskResult".to_string(), 4.0)]);
        let _second = t.scoped(
            "pc-a",
            RateLimits::new(100.0, &[("DescribeVpcTaskResult", 20.0)]).with_overrides(&overrides),
        );
        assert_eq!(
            t.current_rate("pc-a", "DescribeVpcTaskResult"),
            Some(2.0),
            "still slowed down by half, of the new rate"
        );
        // Another ProviderConfig has its own limiters.
        let other = t.scoped("pc-b", RateLimits::new(100.0, &[]));
        other.bucket("pc-b", Provider::Tencent, "DescribeVpcTaskResult");
        assert_eq!(t.current_rate("pc-b", "DescribeVpcTaskResult"), Some(100.0));
    }

    #[test]
    fn unscoped_clients_use_configured_limits_over_documented_defaults() {
        let overrides = HashMap::from([("DescribeVpcTaskResult".to_string(), 5.0)]);
        let t = Transport::new(TransportConfig::default())
            .unwrap()
            .with_rate_limits(
                Provider::Tencent,
                RateLimits::new(100.0, &[("DescribeVpcTaskResult", 20.0)])
                    .with_overrides(&overrides),
            );
        t.register_limits(Provider::Tencent, RateLimits::new(1.0, &[]));
        let scope = t.scope_of(Provider::Tencent, "AKID1");
        t.bucket(&scope, Provider::Tencent, "DescribeVpcTaskResult");
        t.bucket(&scope, Provider::Tencent, "AssignPrivateIpAddresses");
        assert_eq!(t.current_rate(&scope, "DescribeVpcTaskResult"), Some(5.0));
        assert_eq!(
            t.current_rate(&scope, "AssignPrivateIpAddresses"),
            Some(100.0)
        );
    }

    #[test]
    fn the_send_window_leaves_room_for_one_timeout_within_the_in_flight_window() {
        let t = Transport::new(TransportConfig::default()).unwrap();
        assert_eq!(
            t.in_flight_window(),
            t.send_window() + TransportConfig::default().timeout
        );
        let err = t.send_deadline(Provider::Zenlayer, "A", None).unwrap_err();
        assert_eq!(err.outcome, Outcome::NotSent);
        let long_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3600);
        let err = t
            .send_deadline(Provider::Zenlayer, "A", Some(long_ago))
            .unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.outcome),
            ("Client.DeadlineExceeded", Outcome::NotSent)
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after_of(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after_of(&headers), Some(Duration::from_secs(3)));
        headers.insert(reqwest::header::RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(retry_after_of(&headers), Some(Duration::from_secs(60)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after_of(&headers), None);
    }

    #[test]
    fn outcomes_add_up_to_the_strongest() {
        use Outcome::{NotSent, Rejected, Unknown};
        assert_eq!(NotSent.max(Rejected), Rejected);
        assert_eq!(Unknown.max(Rejected), Unknown);
        assert_eq!(Rejected.max(NotSent), Rejected);
        assert_eq!(NotSent.max(Unknown), Unknown);
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
