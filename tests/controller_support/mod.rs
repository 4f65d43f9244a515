//! A test world for the controller: the in-memory API server with the CRDs,
//! the simulated cloud, credentials and one ProviderConfig per provider, and
//! the real controller running in-process over HTTP against both.
#![allow(dead_code)]

pub mod invariants;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use nicip::api::v1alpha1::{NicIpClaim, ProviderConfig};
use nicip::cloudsim::{self, AuditEntry, RunningSim, World};
use nicip::controller::{CheckpointHook, Handles, Settings};
use nicip::kubesim::{KubeSim, RunningKubeSim};
use nicip::ops::{Fence, Health, Metrics};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ZL_KEY: &str = "zl-test-key";
pub const ZL_SECRET: &str = "zl-secret-DO-NOT-LEAK";
pub const TC_ID: &str = "AKIDctrl000000000000001";
pub const TC_SECRET: &str = "tc-secret-DO-NOT-LEAK";
pub const NS: &str = "apps";
pub const SECRETS_NS: &str = "nicip-system";

pub fn world_yaml() -> String {
    format!(
        r#"
accounts:
  zenlayer: [{{keyId: {ZL_KEY}, keyPassword: {ZL_SECRET}}}]
  tencent: [{{secretId: {TC_ID}, secretKey: {TC_SECRET}}}]
zenlayer:
  asyncLatencyMs: 30
  regions: [{{id: asia-east-1, zones: [asia-east-1a, asia-east-1b]}}]
  vpcs: [{{id: vpc-z, region: asia-east-1}}]
  subnets:
    - {{id: subnet-z, vpc: vpc-z, cidr: 10.0.0.0/24}}
    - {{id: subnet-z6, vpc: vpc-z, cidr: 10.5.0.0/24, ipv6Cidr: "2001:db8:5::/64"}}
    - {{id: subnet-zpub, vpc: vpc-z, cidr: 10.6.0.0/24, ipv6Cidr: "2001:db8:6::/64", ipv6Type: Public}}
    - {{id: subnet-ztiny, vpc: vpc-z, cidr: 10.7.0.0/29}}
  instances:
    - {{id: ins-z1, zone: asia-east-1a}}
    - {{id: ins-z2, zone: asia-east-1a}}
    - {{id: ins-zstop, zone: asia-east-1a, status: STOPPED}}
    - {{id: ins-zb, zone: asia-east-1b}}
  nics:
    - {{id: nic-z1, subnet: subnet-z, primaryIp: 10.0.0.10, ipQuota: 60}}
    - {{id: nic-z2, subnet: subnet-z, primaryIp: 10.0.0.20, ipQuota: 60}}
    - {{id: nic-z3, subnet: subnet-z, primaryIp: 10.0.0.30, ipQuota: 60}}
    - {{id: nic-zadopt, subnet: subnet-z, primaryIp: 10.0.0.40, secondaryIps: [10.0.0.41, 10.0.0.42], ipQuota: 60}}
    - {{id: nic-z6, subnet: subnet-z6}}
    - {{id: nic-z6has, subnet: subnet-z6, ipv6: ["2001:db8:5::99"]}}
    - {{id: nic-zpub, subnet: subnet-zpub}}
    - {{id: nic-zatt, subnet: subnet-z, primaryIp: 10.0.0.60}}
    - {{id: nic-zatt2, subnet: subnet-z, primaryIp: 10.0.0.61}}
    - {{id: nic-zbusy, subnet: subnet-z, primaryIp: 10.0.0.62, status: PENDING}}
    - {{id: nic-ztiny, subnet: subnet-ztiny, primaryIp: 10.7.0.2, ipQuota: 60}}
    - {{id: nic-zq, subnet: subnet-z, primaryIp: 10.0.0.70, ipQuota: 3}}
tencent:
  asyncLatencyMs: 30
  regions: [{{id: ap-guangzhou, zones: [ap-guangzhou-3, ap-guangzhou-4]}}]
  vpcs: [{{id: vpc-t, region: ap-guangzhou}}]
  subnets:
    - {{id: subnet-t, vpc: vpc-t, zone: ap-guangzhou-3, cidr: 10.1.0.0/24, ipv6Cidr: "2402:4e00:1::/64"}}
    - {{id: subnet-ttiny, vpc: vpc-t, zone: ap-guangzhou-3, cidr: 10.2.0.0/29}}
  instances:
    - {{id: ins-t1, zone: ap-guangzhou-3, ipsPerNic: 30}}
    - {{id: ins-t2, zone: ap-guangzhou-3, ipsPerNic: 30}}
    - {{id: ins-tstop, zone: ap-guangzhou-3, status: STOPPED}}
  nics:
    - {{id: eni-t1, subnet: subnet-t, primaryIp: 10.1.0.10, ipQuota: 60, ipv6Quota: 10}}
    - {{id: eni-t2, subnet: subnet-t, primaryIp: 10.1.0.20, ipQuota: 60, ipv6Quota: 10}}
    - {{id: eni-t3, subnet: subnet-t, primaryIp: 10.1.0.30, ipQuota: 60}}
    - {{id: eni-tatt, subnet: subnet-t, primaryIp: 10.1.0.40}}
    - {{id: eni-tq, subnet: subnet-t, primaryIp: 10.1.0.50, ipQuota: 3}}
    - {{id: eni-ttiny, subnet: subnet-ttiny, primaryIp: 10.2.0.2, ipQuota: 60}}
    - {{id: eni-l1, subnet: subnet-t, primaryIp: 10.1.0.70, ipQuota: 60}}
    - {{id: eni-l2, subnet: subnet-t, primaryIp: 10.1.0.80, ipQuota: 60}}
"#
    )
}

/// The three ProviderConfigs of the test world.
pub const ZENLAYER: &str = "zenlayer";
pub const TENCENT: &str = "tencent";
pub const LEGACY: &str = "legacy";

pub struct Env {
    pub kube: RunningKubeSim,
    pub cloud: RunningSim,
    pub client: Client,
    controller: Option<Running>,
    pub settings: Settings,
    /// I1–I5, following the world from before the controller first starts.
    pub invariants: Option<invariants::Invariants>,
}

struct Running {
    task: JoinHandle<anyhow::Result<()>>,
    stop: oneshot::Sender<()>,
    metrics: Arc<Metrics>,
}

impl Env {
    pub async fn new() -> Env {
        Env::with_world(&world_yaml()).await
    }

    pub async fn with_world(yaml: &str) -> Env {
        Env::with(yaml, nicip::api::crds()).await
    }

    /// A test world served with these CRDs (e.g. a loosened schema).
    pub async fn with(
        yaml: &str,
        crds: Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
    ) -> Env {
        Env::on(yaml, KubeSim::new(crds)).await
    }

    /// A test world on this server (e.g. one with RBAC on, whose
    /// [`Env::client`] is then an administrator's).
    pub async fn on(yaml: &str, kube: KubeSim) -> Env {
        // `RUST_LOG=nicip=debug cargo test ...` shows the controller's logs;
        // they are captured in any case, for the secrets invariant.
        invariants::capture_logs();
        let world = World::from_yaml(yaml).expect("test world");
        let cloud = cloudsim::start(world, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("cloudsim");
        let kube = kube.start().await.expect("kubesim");
        let client = kube.client().expect("client");
        for ns in [NS, SECRETS_NS, "other"] {
            let api: Api<Namespace> = Api::all(client.clone());
            let _ = api
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
                )
                .await;
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), SECRETS_NS);
        for (name, id, key) in [
            ("zenlayer-creds", ZL_KEY, ZL_SECRET),
            ("tencent-creds", TC_ID, TC_SECRET),
        ] {
            let s: Secret = serde_json::from_value(json!({
                "metadata": {"name": name},
                "stringData": {"accessKeyId": id, "accessKeySecret": key},
            }))
            .unwrap();
            secrets
                .create(&PostParams::default(), &s)
                .await
                .expect("secret");
        }
        let env = Env {
            kube,
            cloud,
            client,
            controller: None,
            settings: test_settings(),
            invariants: None,
        };
        for (name, provider, secret) in [
            (ZENLAYER, "Zenlayer", "zenlayer-creds"),
            (TENCENT, "Tencent", "tencent-creds"),
            (LEGACY, "TencentLegacy", "tencent-creds"),
        ] {
            env.provider_config(name, provider, secret, json!({})).await;
        }
        let mut env = env;
        env.invariants = Some(invariants::Invariants::new(&env).await);
        env
    }

    /// Waits until quiet and asserts I1–I5 (see [`invariants`]).
    pub async fn check_invariants(&self) {
        self.invariants
            .as_ref()
            .expect("the invariants checker")
            .check(self)
            .await;
    }

    /// Declares an address put on a NIC by someone other than nicip.
    pub fn foreign(&self, nic: &str, address: &str) {
        if let Some(i) = &self.invariants {
            i.foreign(nic, address);
        }
    }

    pub async fn provider_config(&self, name: &str, provider: &str, secret: &str, extra: Value) {
        let endpoint = match provider {
            "Zenlayer" => format!("{}/api/v2/zec", self.cloud.base_url()),
            "TencentLegacy" => format!("{}/v2/index.php", self.cloud.base_url()),
            _ => format!("{}/", self.cloud.base_url()),
        };
        let mut spec = json!({
            "provider": provider,
            "region": "ap-guangzhou",
            "endpoint": endpoint,
            "credentialsSecretRef": {"name": secret},
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        let api: Api<ProviderConfig> = Api::all(self.client.clone());
        let pc = json!({"apiVersion": "nicip.io/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": name}, "spec": spec});
        api.patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&pc),
        )
        .await
        .expect("providerconfig");
    }

    pub fn start(&mut self) {
        let settings = self.settings.clone();
        self.start_with(settings);
    }

    pub fn start_with(&mut self, settings: Settings) {
        self.start_as(self.client.clone(), settings, Fence::always());
    }

    /// Runs the controller with its own client (e.g. a ServiceAccount's) and
    /// fence (e.g. a Lease's).
    pub fn start_as(&mut self, client: Client, settings: Settings, fence: Fence) {
        assert!(self.controller.is_none(), "a controller is already running");
        let metrics = Metrics::new();
        let handles = Handles {
            metrics: metrics.clone(),
            health: Health::new(),
            fence,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            nicip::controller::run(client, settings, handles, async move {
                let _ = stopped.await;
            })
            .await
        });
        self.controller = Some(Running {
            task,
            stop,
            metrics,
        });
    }

    /// Kills the controller where it is, as a crash would: nothing after this
    /// point of its reconciles runs.
    pub async fn crash(&mut self) {
        if let Some(r) = self.controller.take() {
            r.task.abort();
            let _ = r.task.await;
        }
    }

    /// Stops the controller gracefully and returns its result.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let r = self.controller.take().expect("a running controller");
        let _ = r.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), r.task)
            .await
            .expect("stops in time")
            .expect("joins")
    }

    pub fn metrics(&self) -> String {
        self.controller
            .as_ref()
            .map(|r| r.metrics.encode())
            .unwrap_or_default()
    }

    pub fn claims(&self) -> Api<NicIpClaim> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Creates or updates a claim (server-side apply, as `kubectl apply --server-side`).
    pub async fn apply(&self, name: &str, spec: Value) {
        let claim = json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim", "metadata": {"name": name}, "spec": spec});
        self.claims()
            .patch(
                name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(&claim),
            )
            .await
            .unwrap_or_else(|e| panic!("applying claim {name}: {e}"));
    }

    pub async fn delete(&self, name: &str) {
        self.claims()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }

    pub async fn get(&self, name: &str) -> Option<NicIpClaim> {
        self.claims().get_opt(name).await.expect("get")
    }

    /// Waits until the claim satisfies `check` (20 s at most), returning it.
    pub async fn wait(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&NicIpClaim) -> bool,
    ) -> NicIpClaim {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let claim = self.get(name).await;
            if let Some(c) = &claim
                && check(c)
            {
                return c.clone();
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "claim {name} never became {what}; last seen:\n{}",
                    serde_json::to_string_pretty(&claim).unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn wait_ready(&self, name: &str) -> NicIpClaim {
        self.wait(name, "Ready", is_ready).await
    }

    pub async fn wait_gone(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.get(name).await.is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "claim {name} was never deleted: {:?}",
                self.get(name).await
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A NIC of the simulated cloud, as it is now.
    pub fn nic(&self, nic: &str) -> nicip::cloudsim::Nic {
        let w = self.cloud.world();
        w.zenlayer
            .nics
            .get(nic)
            .or_else(|| w.tencent.nics.get(nic))
            .unwrap_or_else(|| panic!("no NIC {nic}"))
            .clone()
    }

    /// Secondary IPv4 addresses of a NIC in the simulated cloud.
    pub fn ipv4(&self, nic: &str) -> BTreeSet<String> {
        self.nic(nic)
            .secondary_ipv4
            .iter()
            .map(|e| e.address.to_string())
            .collect()
    }

    pub fn ipv6(&self, nic: &str) -> BTreeSet<String> {
        self.nic(nic)
            .ipv6
            .iter()
            .map(|e| e.address.to_string())
            .collect()
    }

    pub fn instance_of(&self, nic: &str) -> Option<String> {
        self.nic(nic).instance_id
    }

    /// Unassigns an address from a Zenlayer NIC through the cloud's API, as
    /// someone outside nicip would.
    pub async fn zenlayer_unassign_out_of_band(&self, nic: &str, address: &str) {
        use nicip::cloud::{
            Credentials, IdempotencyKey, NicRef, Operation, Provider, ProviderSettings, Transport,
            TransportConfig,
        };
        let settings = ProviderSettings::new(Provider::Zenlayer, "", "out-of-band")
            .with_endpoint(format!("{}/api/v2/zec", self.cloud.base_url()));
        let provider = nicip::cloud::connect(
            &settings,
            Transport::new(TransportConfig::default()).unwrap(),
            Credentials::new(ZL_KEY, ZL_SECRET),
        )
        .unwrap();
        let nic = NicRef::new(nic);
        let observed = provider
            .describe_nics(std::slice::from_ref(&nic))
            .await
            .unwrap()
            .remove(0);
        let mut op = Operation::unassign_ipv4(
            &nic,
            &[address.parse().unwrap()].into(),
            &observed,
            &IdempotencyKey::derive("out-of-band", 1, 0),
            1,
            0,
        );
        op.mark_sent();
        provider.submit(&op).await.expect("out-of-band unassign");
    }

    pub fn audit(&self) -> Vec<AuditEntry> {
        self.cloud.audit()
    }

    /// Successful calls of these actions.
    pub fn count(&self, actions: &[&str]) -> usize {
        self.audit()
            .iter()
            .filter(|e| actions.contains(&e.action.as_str()))
            .count()
    }
}

pub fn test_settings() -> Settings {
    let mut s = Settings::new(SECRETS_NS, "test-controller");
    s.async_poll = Duration::from_millis(40);
    s.slow_retry = Duration::from_secs(2);
    s.max_backoff = Duration::from_secs(2);
    // A short in-flight window (about 4 s): after a crash, a call without an
    // idempotency token is waited for that long before it counts as not sent.
    s.transport = nicip::cloud::TransportConfig {
        timeout: Duration::from_secs(2),
        max_attempts: 2,
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..Default::default()
    };
    s
}

pub const MUTATIONS: &[&str] = &[
    "BatchAssignNetworkInterfaceIpv4",
    "UnassignNetworkInterfaceIpv4",
    "AssignNetworkInterfaceIpv6",
    "UnassignNetworkInterfaceIpv6",
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "AssignIpv6Addresses",
    "UnassignIpv6Addresses",
    "AttachNetworkInterface",
    "DetachNetworkInterface",
];

pub fn condition<'a>(
    c: &'a NicIpClaim,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    c.status
        .as_ref()?
        .conditions
        .iter()
        .find(|x| x.type_ == type_)
}

/// A claim's reference to a ProviderConfig.
pub fn pc(name: &str) -> Value {
    json!({"name": name})
}

/// A simulator fault rule, from its JSON form.
pub fn fault(rule: Value) -> nicip::cloudsim::Fault {
    serde_json::from_value(rule).expect("fault rule")
}

/// The message of a claim's condition, or "".
pub fn message(c: &NicIpClaim, type_: &str) -> String {
    condition(c, type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Reconciles the running controller has finished, from its metrics.
pub fn reconciles(env: &Env) -> usize {
    env.metrics()
        .lines()
        .filter(|l| l.starts_with("nicip_reconciles_total"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as usize
}

pub fn is_ready(c: &NicIpClaim) -> bool {
    condition(c, "Ready")
        .is_some_and(|r| r.status == "True" && r.observed_generation == c.metadata.generation)
        && c.status
            .as_ref()
            .is_some_and(|s| s.pending_operation.is_none())
}

pub fn is_stalled(c: &NicIpClaim, reason: &str) -> bool {
    condition(c, "Stalled").is_some_and(|r| {
        r.status == "True" && r.reason == reason && r.observed_generation == c.metadata.generation
    })
}

pub fn owned4(c: &NicIpClaim) -> BTreeSet<String> {
    c.status
        .as_ref()
        .map(|s| s.ipv4.iter().map(|o| o.address.clone()).collect())
        .unwrap_or_default()
}

pub fn owned6(c: &NicIpClaim) -> BTreeSet<String> {
    c.status
        .as_ref()
        .map(|s| s.ipv6.iter().map(|o| o.address.clone()).collect())
        .unwrap_or_default()
}

pub fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A hook that freezes every reconcile reaching `point` for `claim`, and tells
/// the test it did (the test then kills the controller).
pub fn freeze_at(
    point: nicip::controller::Checkpoint,
    claim: &str,
) -> (CheckpointHook, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let claim = format!("{NS}/{claim}");
    let hook: CheckpointHook = Arc::new(move |p, key| {
        let hit = p == point && key == claim;
        let tx = tx.clone();
        Box::pin(async move {
            if hit {
                let _ = tx.send(());
                futures::future::pending::<()>().await;
            }
        })
    });
    (hook, rx)
}

/// I1–I5 once the controller is quiet (see [`invariants`]).
pub async fn check_invariants(env: &Env) {
    env.check_invariants().await;
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>;

/// Faults between the controller's Kubernetes client and the API server:
/// a real write by another client just before chosen status patches of
/// claims (which the API server then refuses with a 409, the patch being
/// based on the older version), and a
/// delay line on the claim watch, so the controller's cache trails the API
/// server. Build the client with [`Env::client_through`].
#[derive(Default)]
pub struct KubeFaults {
    /// 1-based numbers of the claim status patches to precede with another
    /// client's write.
    conflict_on: std::sync::Mutex<BTreeSet<usize>>,
    status_patches: std::sync::atomic::AtomicUsize,
    /// How many of those patches the API server answered with a 409.
    pub conflicts: std::sync::atomic::AtomicUsize,
    /// Each frame of a claim watch is passed on this long after it arrived.
    watch_delay: std::sync::Mutex<Duration>,
    /// Claim GETs the controller made (it reads its own writes back this way).
    pub claim_gets: std::sync::atomic::AtomicUsize,
}

impl KubeFaults {
    pub fn conflict_on(&self, patches: &[usize]) {
        self.conflict_on.lock().unwrap().extend(patches);
    }

    pub fn delay_watch(&self, delay: Duration) {
        *self.watch_delay.lock().unwrap() = delay;
    }

    async fn handle(
        &self,
        inner: &Client,
        req: axum::http::Request<kube::client::Body>,
    ) -> Result<axum::http::Response<ProxyBody>, BoxError> {
        use http_body_util::BodyExt as _;
        use std::sync::atomic::Ordering::SeqCst;
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let claim = path
            .split_once("/nicipclaims/")
            .map(|(_, rest)| rest.split('/').next().unwrap_or_default().to_string());
        let is_status_patch =
            req.method() == axum::http::Method::PATCH && path.ends_with("/status");
        if let Some(name) = claim.as_deref().filter(|_| is_status_patch) {
            let n = self.status_patches.fetch_add(1, SeqCst) + 1;
            if self.conflict_on.lock().unwrap().remove(&n) {
                // Another writer changes the claim first; the patch then goes
                // on to the API server, based on the older version.
                let namespace = path
                    .split("/namespaces/")
                    .nth(1)
                    .and_then(|r| r.split('/').next())
                    .unwrap_or(NS);
                let api: Api<NicIpClaim> = Api::namespaced(inner.clone(), namespace);
                let touch =
                    json!({"metadata": {"annotations": {"test/concurrent-writer": n.to_string()}}});
                api.patch(name, &PatchParams::default(), &Patch::Merge(&touch))
                    .await?;
                let resp = inner.send(req).await?;
                if resp.status() == axum::http::StatusCode::CONFLICT {
                    self.conflicts.fetch_add(1, SeqCst);
                }
                let (parts, body) = resp.into_parts();
                return Ok(axum::http::Response::from_parts(
                    parts,
                    body.map_err(BoxError::from).boxed_unsync(),
                ));
            }
        }
        let is_watch = query.split('&').any(|p| p == "watch=true");
        if claim.is_some() && req.method() == axum::http::Method::GET && !is_watch {
            self.claim_gets.fetch_add(1, SeqCst);
        }
        let claim_watch = is_watch && path.ends_with("/nicipclaims");
        let resp = inner.send(req).await?;
        let (parts, body) = resp.into_parts();
        if !claim_watch {
            return Ok(axum::http::Response::from_parts(
                parts,
                body.map_err(BoxError::from).boxed_unsync(),
            ));
        }
        // The delay line: frames keep their order, each held for the delay
        // in force when it arrived.
        let delay = *self.watch_delay.lock().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut body = body;
            while let Some(frame) = body.frame().await {
                let due = tokio::time::Instant::now() + delay;
                if tx.send((due, frame.map_err(BoxError::from))).is_err() {
                    break;
                }
            }
        });
        let frames = futures::StreamExt::then(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
            |(due, frame)| async move {
                tokio::time::sleep_until(due).await;
                frame
            },
        );
        Ok(axum::http::Response::from_parts(
            parts,
            http_body_util::StreamBody::new(frames).boxed_unsync(),
        ))
    }
}

impl Env {
    /// A Kubernetes client whose requests pass through `faults`.
    pub fn client_through(&self, faults: Arc<KubeFaults>) -> Client {
        let inner = self.client.clone();
        let service = tower::service_fn(move |req| {
            let (inner, faults) = (inner.clone(), faults.clone());
            async move { faults.handle(&inner, req).await }
        });
        Client::new(service, NS)
    }

    /// Whether the controller started last is still running (it did not
    /// return or panic).
    pub fn controller_running(&self) -> bool {
        self.controller
            .as_ref()
            .is_some_and(|r| !r.task.is_finished())
    }

    /// Records every version of every claim from now on, with when it was seen.
    pub async fn record_claims(&self) -> ClaimHistory {
        use futures::StreamExt as _;
        let seen: Arc<std::sync::Mutex<Vec<(tokio::time::Instant, NicIpClaim)>>> = Arc::default();
        let kept = seen.clone();
        let api: Api<NicIpClaim> = Api::all(self.client.clone());
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let events = kube::runtime::watcher(api, Default::default());
            let mut events = std::pin::pin!(events);
            while let Some(e) = events.next().await {
                match e {
                    Ok(kube::runtime::watcher::Event::Apply(c))
                    | Ok(kube::runtime::watcher::Event::InitApply(c)) => {
                        kept.lock().unwrap().push((tokio::time::Instant::now(), c))
                    }
                    Ok(kube::runtime::watcher::Event::InitDone) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    _ => {}
                }
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(20), ready_rx).await;
        ClaimHistory { seen, task }
    }
}

/// Every version of the claims seen since [`Env::record_claims`].
pub struct ClaimHistory {
    seen: Arc<std::sync::Mutex<Vec<(tokio::time::Instant, NicIpClaim)>>>,
    task: JoinHandle<()>,
}

impl ClaimHistory {
    /// The versions of one claim, oldest first.
    pub fn of(&self, name: &str) -> Vec<(tokio::time::Instant, NicIpClaim)> {
        use kube::ResourceExt as _;
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, c)| c.name_any() == name)
            .cloned()
            .collect()
    }
}

impl Drop for ClaimHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A reconcile held at a checkpoint until the test lets it go on.
pub struct Paused {
    /// Receives once the reconcile reached the checkpoint.
    pub reached: tokio::sync::mpsc::UnboundedReceiver<()>,
    resume: Arc<tokio::sync::Notify>,
}

impl Paused {
    /// Waits (20 s at most) until the reconcile is held.
    pub async fn wait(&mut self) {
        tokio::time::timeout(Duration::from_secs(20), self.reached.recv())
            .await
            .expect("the checkpoint is reached in time")
            .expect("the hook is alive");
    }

    /// Lets the held reconcile go on.
    pub fn resume(&self) {
        self.resume.notify_one();
    }
}

/// A hook that holds the first reconcile of `claim` reaching `point` until
/// [`Paused::resume`], so that a test can change the world exactly there
/// (later ones pass straight through).
pub fn pause_once_at(
    point: nicip::controller::Checkpoint,
    claim: &str,
) -> (CheckpointHook, Paused) {
    let (tx, reached) = tokio::sync::mpsc::unbounded_channel();
    let resume = Arc::new(tokio::sync::Notify::new());
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let claim = format!("{NS}/{claim}");
    let waker = resume.clone();
    let hook: CheckpointHook = Arc::new(move |p, key| {
        let hit =
            p == point && key == claim && armed.swap(false, std::sync::atomic::Ordering::SeqCst);
        let (tx, waker) = (tx.clone(), waker.clone());
        Box::pin(async move {
            if hit {
                let _ = tx.send(());
                waker.notified().await;
            }
        })
    });
    (hook, Paused { reached, resume })
}

/// Polls `cond` every 25 ms, failing after 20 s.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
