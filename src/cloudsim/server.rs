//! The HTTP listener: routes each request to its protocol, applies rate
//! limits and faults, writes the audit log, and serves the control endpoints.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::any;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::config::{Accounts, RateLimits, Settings, World};
use super::conn::{Cut, CuttableListener};
use super::faults::{Audit, AuditEntry, Decision, Fault, Faults, Protocol, RateLimiter};
use super::world::{WorldState, now_iso};
use super::{legacy, tencent, zenlayer};

const MAX_BODY: usize = 1 << 20;

tokio::task_local! {
    /// The `User-Agent` of the request being handled, for the audit log; set
    /// around the protocol handlers so that they need not carry it.
    static USER_AGENT: String;
}

/// A request as the protocol handlers see it.
pub(crate) struct HttpRequest {
    pub method: Method,
    pub path: String,
    /// The raw query string (what follows `?`), as sent.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body was over `MAX_BODY` and was not read: the protocol answers
    /// with its size-limit error.
    pub body_too_large: bool,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A protocol's answer, before faults and auditing.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
}

/// What one request did, for rate limiting, faults and the audit log.
pub(crate) struct CallInfo {
    pub protocol: Protocol,
    pub action: String,
    pub key_id: String,
    pub params: Value,
    pub request_id: String,
}

/// Shared simulator state.
pub(crate) struct Sim {
    world: Mutex<WorldState>,
    pub accounts: Accounts,
    pub settings: Settings,
    pub limits: RateLimits,
    /// Tencent regions, for `X-TC-Region` / `Region` checks without the lock.
    pub tencent_regions: Vec<String>,
    pub faults: Faults,
    pub limiter: RateLimiter,
    pub audit: Audit,
    pub nonces: super::legacy::NonceCache,
    /// While set, asynchronous work (Tencent tasks, Zenlayer attach/detach)
    /// stays in flight however long it has been due, so that tests can look at
    /// transitional states without racing the simulated latency.
    pub async_held: AtomicBool,
}

impl Sim {
    pub fn new(world: World, audit: Audit) -> Sim {
        Sim {
            tencent_regions: world
                .state
                .tencent
                .regions
                .iter()
                .map(|r| r.id.clone())
                .collect(),
            limits: world.limits,
            world: Mutex::new(world.state),
            accounts: world.accounts,
            settings: world.settings,
            faults: Faults::new(world.faults),
            limiter: RateLimiter::default(),
            audit,
            nonces: Default::default(),
            async_held: AtomicBool::new(false),
        }
    }

    /// Runs `f` on the world after completing every task that is due. Keep
    /// `f` short: every request goes through this one lock.
    pub fn with_world<R>(&self, f: impl FnOnce(&mut WorldState) -> R) -> R {
        let mut world = self.world.lock().unwrap_or_else(|e| e.into_inner());
        if !self.async_held.load(Ordering::SeqCst) {
            world.advance(Instant::now());
        }
        f(&mut world)
    }

    pub fn now_unix(&self) -> i64 {
        jiff::Timestamp::now().as_second()
    }
}

/// How a protocol handler hooks into the common pipeline.
pub(crate) trait Wire: Sync {
    /// Requests per second allowed for `action` (0: unlimited).
    fn limit_for(&self, sim: &Sim, action: &str) -> f64;
    /// The error reply for throttling.
    fn throttled(&self, sim: &Sim, info: &CallInfo) -> Reply;
    /// The error reply for an injected fault.
    fn injected(&self, info: &CallInfo, code: &str, http_status: u16, message: &str) -> Reply;
    /// Runs the action.
    fn execute(&self, sim: &Sim, info: &CallInfo, decision: &Decision) -> Reply;
    /// The outcome code of a reply, for the audit log.
    fn outcome(&self, reply: &Reply) -> String;
}

/// The common tail of every cloud call: rate limit, faults, execute, audit.
/// Returns the reply and whether to drop it. A throttled call does not
/// consume fault rules.
pub(crate) async fn run_call(sim: &Sim, proto: &dyn Wire, info: CallInfo) -> (Reply, bool) {
    let limit = proto.limit_for(sim, &info.action);
    if !sim
        .limiter
        .allow(info.protocol, &info.key_id, &info.action, limit)
    {
        let reply = proto.throttled(sim, &info);
        audit(sim, &info, proto.outcome(&reply));
        return (reply, false);
    }
    let decision = sim.faults.decide(info.protocol, &info.action);
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    let reply = match &decision.error {
        Some(e) => proto.injected(&info, &e.code, e.http_status, &e.message),
        None => proto.execute(sim, &info, &decision),
    };
    audit(sim, &info, proto.outcome(&reply));
    (reply, decision.drop_response)
}

/// The key id a refused request presented, for the audit log: who tried
/// matters most when authentication fails. Capped, since it is unverified.
pub(crate) fn presented_key_id(id: Option<&str>) -> String {
    id.unwrap_or("").trim().chars().take(128).collect()
}

/// The `Credential=` of a `ZC2-HMAC-SHA256`/`TC3-HMAC-SHA256` header, up to
/// the first `/` (TC3 adds the scope after it).
pub(crate) fn credential_of(authorization: &str) -> Option<&str> {
    let (_, rest) = authorization.split_once("Credential=")?;
    rest.split([',', '/']).next()
}

pub(crate) fn audit(sim: &Sim, info: &CallInfo, outcome: String) {
    tracing::debug!(
        protocol = ?info.protocol,
        action = %info.action,
        key_id = %info.key_id,
        request_id = %info.request_id,
        outcome = %outcome,
        "cloud call"
    );
    sim.audit.record(AuditEntry {
        time: now_iso(),
        protocol: info.protocol,
        action: info.action.clone(),
        key_id: info.key_id.clone(),
        params: info.params.clone(),
        outcome,
        request_id: info.request_id.clone(),
        user_agent: USER_AGENT.try_with(Clone::clone).unwrap_or_default(),
    });
}

fn json_response(status: u16, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // Exactly `application/json`: the Tencent Python SDK only parses errors
    // for that exact value.
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Reads the body (up to `MAX_BODY`: a larger one is left unread and flagged).
async fn read_request(req: Request) -> HttpRequest {
    let (parts, body) = req.into_parts();
    let (body, body_too_large) = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => (b, false),
        Err(_) => (Bytes::new(), true),
    };
    HttpRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        body,
        body_too_large,
    }
}

/// The cloud APIs, one per path.
#[derive(Clone, Copy)]
enum Api {
    Zenlayer,
    Tencent,
    TencentLegacy,
}

fn router(sim: Arc<Sim>) -> Router {
    let api = |api| {
        any(
            move |State(sim): State<Arc<Sim>>, ConnectInfo(cut): ConnectInfo<Cut>, req| {
                cloud_call(api, sim, cut, req)
            },
        )
    };
    Router::new()
        .route("/api/v2/zec", api(Api::Zenlayer))
        .route("/v2/index.php", api(Api::TencentLegacy))
        .route("/", api(Api::Tencent))
        .fallback(other)
        .with_state(sim)
}

async fn cloud_call(api: Api, sim: Arc<Sim>, cut: Cut, req: Request) -> Response {
    let req = read_request(req).await;
    // Unverified input: capped like the presented key id.
    let user_agent: String = req
        .header("user-agent")
        .unwrap_or("")
        .chars()
        .take(256)
        .collect();
    let call = async {
        match api {
            Api::Zenlayer => zenlayer::handle(&sim, &req).await,
            Api::Tencent => tencent::handle(&sim, &req).await,
            Api::TencentLegacy => legacy::handle(&sim, &req).await,
        }
    };
    let (reply, dropped) = USER_AGENT.scope(user_agent, call).await;
    if dropped {
        // The connection closes before this (empty) answer is written.
        cut.cut();
        return Response::new(Body::empty());
    }
    json_response(reply.status, &reply.body)
}

/// The control endpoints, and 404 for every other path.
async fn other(State(sim): State<Arc<Sim>>, req: Request) -> Response {
    let req = read_request(req).await;
    let reply = if req.body_too_large {
        Reply {
            status: 413,
            body: json!({"error": "request body too large or unreadable"}),
        }
    } else if req.path.starts_with("/_sim/") {
        control(&sim, &req)
    } else {
        Reply {
            status: 404,
            body: json!({"error": format!("no such path: {}", req.path)}),
        }
    };
    json_response(reply.status, &reply.body)
}

/// `/_sim/world` (GET), `/_sim/faults` (GET, PUT/POST to replace, DELETE to
/// clear), `/_sim/audit` (GET), `/_sim/async` (GET, PUT `{"held": bool}`).
/// No cloud signature: a loopback dev tool.
fn control(sim: &Sim, req: &HttpRequest) -> Reply {
    let ok = |body: Value| Reply { status: 200, body };
    match (req.method.clone(), req.path.as_str()) {
        (Method::GET, "/_sim/world") => ok(super::snapshot_json(sim)),
        (Method::GET, "/_sim/faults") => ok(json!(sim.faults.list())),
        (Method::PUT | Method::POST, "/_sim/faults") => {
            match serde_json::from_slice::<Vec<Fault>>(&req.body) {
                Ok(rules) => match rules
                    .iter()
                    .enumerate()
                    .find_map(|(i, r)| r.validate().err().map(|e| (i, e)))
                {
                    Some((i, e)) => Reply {
                        status: 400,
                        body: json!({"error": format!("faults[{i}]: {e}")}),
                    },
                    None => {
                        sim.faults.set(rules);
                        ok(json!(sim.faults.list()))
                    }
                },
                Err(e) => Reply {
                    status: 400,
                    body: json!({"error": format!("expected a JSON list of faults: {e}")}),
                },
            }
        }
        (Method::DELETE, "/_sim/faults") => {
            sim.faults.set(Vec::new());
            ok(json!([]))
        }
        (Method::GET, "/_sim/audit") => ok(json!(sim.audit.recent())),
        (Method::GET, "/_sim/async") => ok(json!({"held": sim.async_held.load(Ordering::SeqCst)})),
        (Method::PUT | Method::POST, "/_sim/async") => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Hold {
                held: bool,
            }
            match serde_json::from_slice::<Hold>(&req.body) {
                Ok(Hold { held }) => {
                    sim.async_held.store(held, Ordering::SeqCst);
                    ok(json!({"held": held}))
                }
                Err(e) => Reply {
                    status: 400,
                    body: json!({"error": format!("expected {{\"held\": true|false}}: {e}")}),
                },
            }
        }
        _ => Reply {
            status: 404,
            body: json!({"error": format!("no control endpoint {} {}", req.method, req.path)}),
        },
    }
}

/// How long a shutdown waits for in-flight requests.
const GRACE: Duration = Duration::from_secs(5);

/// Accepts connections until `shutdown` flips, then lets in-flight requests
/// finish (up to [`GRACE`]).
pub(crate) async fn serve(listener: TcpListener, sim: Arc<Sim>, shutdown: watch::Receiver<bool>) {
    let stopping = |mut rx: watch::Receiver<bool>| async move {
        // A dropped sender stops the server too.
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let app = router(sim).into_make_service_with_connect_info::<Cut>();
    let server = axum::serve(CuttableListener(listener), app)
        .with_graceful_shutdown(stopping(shutdown.clone()));
    let deadline = async {
        stopping(shutdown).await;
        tokio::time::sleep(GRACE).await;
    };
    tokio::select! {
        served = server => {
            if let Err(e) = served {
                tracing::error!(error = %e, "cloudsim server stopped");
            }
        }
        () = deadline => {}
    }
}
