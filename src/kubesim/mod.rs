//! An in-memory Kubernetes API server for tests and `nicip demo`.
//!
//! It serves plain HTTP on 127.0.0.1 (no TLS; authentication and RBAC only
//! when [`KubeSim::with_rbac`] asks for them) to kube-rs's `Client` and to
//! kubectl: discovery, the built-in kinds Namespace, Secret, ServiceAccount,
//! Event (core `v1` and `events.k8s.io/v1`), Lease and the RBAC kinds, and every
//! `CustomResourceDefinition` it is given, with kube-apiserver's semantics for
//! what it supports and a `Status` error for what it does not. It is never on
//! the path of `nicip controller`. What it does and refuses: `docs/kubesim.md`.
//!
//! ```no_run
//! # async fn demo(crds: Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>) -> anyhow::Result<()> {
//! let sim = nicip::kubesim::KubeSim::new(crds).start().await?;
//! let client = sim.client()?;
//! # Ok(()) }
//! ```

mod builtin;
mod discovery;
mod fields;
mod http;
mod rbac;
pub mod schema;
mod select;
mod store;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use std::time::Duration;

pub use rbac::{Decision, Grant, Identity};

/// One served request, for tests that count writes or compare calls with RBAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The RBAC verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// API group (`""` for core).
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// `status` for the status subresource.
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The `fieldManager` query parameter, when given.
    pub field_manager: Option<String>,
    /// HTTP status code of the response (200 for a watch that started).
    pub code: u16,
}

/// The request log: the last `limit` records and how many were served in all,
/// so a long-running server (the demo, benchmarks) does not grow with every request.
pub(crate) struct RequestLog {
    records: std::collections::VecDeque<RequestRecord>,
    limit: usize,
    served: u64,
}

impl RequestLog {
    fn new(limit: usize) -> RequestLog {
        RequestLog {
            records: std::collections::VecDeque::new(),
            limit,
            served: 0,
        }
    }

    pub(crate) fn push(&mut self, rec: RequestRecord) {
        self.served += 1;
        if self.records.len() >= self.limit {
            self.records.pop_front();
        }
        self.records.push_back(rec);
    }
}

/// Configuration of a server to start.
pub struct KubeSim {
    crds: Vec<CustomResourceDefinition>,
    bookmark_interval: Duration,
    watch_timeout: Duration,
    history_limit: usize,
    history_bytes: usize,
    request_log_limit: usize,
    listen: SocketAddr,
    rbac: bool,
}

impl KubeSim {
    /// A server for `crds` with kube-apiserver-like defaults: bookmarks every
    /// minute, watches ending after 30 minutes unless the client asks for less.
    pub fn new(crds: Vec<CustomResourceDefinition>) -> KubeSim {
        KubeSim {
            crds,
            bookmark_interval: Duration::from_secs(60),
            watch_timeout: Duration::from_secs(1800),
            history_limit: 10_000,
            history_bytes: 64 << 20,
            request_log_limit: 10_000,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            rbac: false,
        }
    }

    /// Authenticate requests by bearer token and authorize them with the
    /// Roles, ClusterRoles and bindings stored in the server, as
    /// kube-apiserver's RBAC authorizer does. Clients come from
    /// [`RunningKubeSim::client_for`]; [`RunningKubeSim::client`] is then an
    /// administrator's (group `system:masters`). Off by default.
    pub fn with_rbac(mut self) -> Self {
        self.rbac = true;
        self
    }

    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub fn bookmark_interval(mut self, every: Duration) -> Self {
        // A zero period would make the watch's ticker panic.
        self.bookmark_interval = every.max(Duration::from_millis(1));
        self
    }

    /// How long a watch without `timeoutSeconds` lasts.
    pub fn watch_timeout(mut self, timeout: Duration) -> Self {
        self.watch_timeout = timeout;
        self
    }

    /// How many changes are kept for watches resuming from a resourceVersion
    /// and for lists of older versions (continue tokens, `Exact`).
    pub fn history_limit(mut self, changes: usize) -> Self {
        self.history_limit = changes.max(1);
        self
    }

    /// How many bytes of objects (their JSON) the history keeps at most,
    /// whatever `history_limit` allows: 64 MiB by default.
    pub fn history_bytes(mut self, bytes: usize) -> Self {
        self.history_bytes = bytes;
        self
    }

    /// How many requests [`RunningKubeSim::requests`] keeps (the latest).
    pub fn request_log_limit(mut self, requests: usize) -> Self {
        self.request_log_limit = requests;
        self
    }

    /// Where to listen; a free port on 127.0.0.1 by default. The server has no
    /// authentication: keep it on loopback unless the network is trusted.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Bind the listen address and serve until the returned handle is dropped.
    pub async fn start(self) -> anyhow::Result<RunningKubeSim> {
        let mut types = discovery::builtins();
        for crd in &self.crds {
            types.extend(discovery::from_crd(crd));
        }
        let listener = tokio::net::TcpListener::bind(self.listen).await?;
        // Set when the handle is dropped: open watches end, so the graceful
        // shutdown below does not wait for their timeouts.
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let addr = listener.local_addr()?;
        let server = Arc::new(http::Server {
            store: store::Store::new(store::HistoryLimits {
                changes: self.history_limit,
                bytes: self.history_bytes,
            }),
            types,
            log: Mutex::new(RequestLog::new(self.request_log_limit)),
            addr,
            bookmark_interval: self.bookmark_interval,
            watch_timeout: self.watch_timeout,
            stopping,
            rbac: self.rbac.then(rbac::Rbac::new),
        });
        if self.rbac {
            for (plural, object) in rbac::bootstrap_policy() {
                server.create_builtin(&format!("rbac.authorization.k8s.io/{plural}"), "", object);
            }
        }
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            server.create_namespace(ns);
        }
        for crd in &self.crds {
            server.create_crd(crd);
        }
        let app = http::router(server.clone());
        let mut stopped = server.stopping.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            // Without TCP_NODELAY, the last piece of a streamed list waits
            // for the client's delayed ACK (some 40 ms on Linux).
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "kubesim server stopped");
            }
        });
        Ok(RunningKubeSim { server, addr, stop })
    }
}

/// A started server; stops when dropped.
pub struct RunningKubeSim {
    server: Arc<http::Server>,
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
}

impl RunningKubeSim {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for this server (namespace `default`); with RBAC on,
    /// an administrator's.
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        self.client_for(&Identity::admin())
    }

    /// A kube client that authenticates as `identity` (with RBAC off, every
    /// client is the same unauthenticated one).
    pub fn client_for(&self, identity: &Identity) -> anyhow::Result<kube::Client> {
        let mut config = kube::Config::new(self.url().parse()?);
        if let Some(token) = self.token(identity) {
            config.auth_info.token = Some(token.into());
        }
        Ok(kube::Client::try_from(config)?)
    }

    fn token(&self, identity: &Identity) -> Option<String> {
        self.server.rbac.as_ref().map(|r| r.token_for(identity))
    }

    /// A kubeconfig for kubectl and other clients (context `kubesim`; with
    /// RBAC on, an administrator's token).
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_for(&Identity::admin())
    }

    /// A kubeconfig that authenticates as `identity`.
    pub fn kubeconfig_for(&self, identity: &Identity) -> String {
        let user = match self.token(identity) {
            Some(token) => format!("\n    token: {token}"),
            None => " {}".to_string(),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: {}\ncontexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: kubesim\n    namespace: default\ncurrent-context: kubesim\nusers:\n- name: kubesim\n  user:{user}\n",
            self.url()
        )
    }

    /// Every authorization decision so far, oldest first (empty with RBAC off).
    pub fn authorizations(&self) -> Vec<Decision> {
        self.server
            .rbac
            .as_ref()
            .map(|r| r.decisions())
            .unwrap_or_default()
    }

    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// The requests served so far, oldest first: the latest
    /// [`KubeSim::request_log_limit`] (10 000 by default) of them.
    pub fn requests(&self) -> Vec<RequestRecord> {
        let log = self.server.log.lock().unwrap_or_else(|e| e.into_inner());
        log.records.iter().cloned().collect()
    }

    /// How many requests were served in all, including those
    /// [`requests`](Self::requests) no longer holds.
    pub fn requests_served(&self) -> u64 {
        self.server
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .served
    }

    /// Forget the change history, as an etcd compaction does: watches and list
    /// continuations from any earlier resourceVersion get `410 Gone`.
    pub fn compact(&self) {
        self.server.store.lock().compact();
    }

    /// The current cluster-wide resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.server.store.lock().current_rv()
    }
}

impl Drop for RunningKubeSim {
    fn drop(&mut self) {
        // Nobody listening means the server already stopped.
        let _ = self.stop.send(true);
    }
}
