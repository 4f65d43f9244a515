//! The operations layer through its public faces: the admin server over
//! HTTP, leader election against the in-memory API server, the shutdown
//! signal with a real SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use nicip::cloud::tencent::Tencent;
use nicip::cloud::{Credentials, MetricsSink, NicProvider, NicRef, Transport, TransportConfig};
use nicip::cloudsim::{self, Fault, World};
use nicip::kubesim::{KubeSim, RunningKubeSim};
use nicip::ops::{
    ClaimMetrics, Elector, Fence, Health, Leadership, LeaseConfig, Metrics, Role, serve_admin,
};
use tokio::sync::oneshot;

mod openmetrics;
use openmetrics::parse_openmetrics;

const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds, failing the test after [`PATIENCE`].
async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// The admin server

struct Admin {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn admin(health: Arc<Health>, metrics: Arc<Metrics>) -> Admin {
    let (stop, stopped) = oneshot::channel::<()>();
    let (addr, task) = serve_admin(
        "127.0.0.1:0".parse().expect("addr"),
        health,
        metrics,
        async move {
            let _ = stopped.await;
        },
    )
    .await
    .expect("admin server starts");
    Admin {
        addr,
        stop: Some(stop),
        task,
    }
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Option<String>, String) {
    let resp = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, ctype, resp.text().await.expect("body"))
}

#[test]
fn the_openmetrics_check_rejects_what_it_should() {
    let good = "# HELP x things.\n# TYPE x counter\nx_total{a=\"1\"} 2\n# EOF\n";
    assert_eq!(parse_openmetrics(good).map(|s| s.len()), Ok(1));
    for bad in [
        "# TYPE x counter\nx_total 1\n",
        "# TYPE x counter\nx 1\n# EOF\n",
        "x_total 1\n# EOF\n",
        "# TYPE x counter\nx_total{a=1} 1\n# EOF\n",
        "# TYPE x counter\nx_total one\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n# EOF\n",
        "# TYPE x gauge\nx 1\nx 2\n# EOF\n",
        "# TYPE x gauge\nx 1\n# HELP x late.\n# EOF\n",
        "# TYPE x gauge\n# TYPE y gauge\n# HELP x apart.\n# EOF\n",
        "# HELP x things.\n# TYPE x counter\nx_total{a=\"1\"} 2\n",
    ] {
        assert!(parse_openmetrics(bad).is_err(), "accepted {bad:?}");
    }
}

const TC_ID: &str = "AKIDopstest0000000001";
const TC_SECRET: &str = "tc-ops-secret-DO-NOT-LEAK";

#[tokio::test]
async fn metrics_after_cloud_calls_and_reconciles_parse_and_count() {
    let world = World::from_yaml(&format!(
        r#"
accounts:
  tencent: [{{secretId: {TC_ID}, secretKey: {TC_SECRET}}}]
tencent:
  asyncLatencyMs: 5
  regions: [{{id: ap-guangzhou, zones: [ap-guangzhou-3]}}]
  vpcs: [{{id: vpc-abc, region: ap-guangzhou}}]
  subnets:
    - {{id: subnet-abc, vpc: vpc-abc, zone: ap-guangzhou-3, cidr: 10.1.0.0/24}}
  instances:
    - {{id: ins-abc, zone: ap-guangzhou-3}}
  nics:
    - {{id: eni-abc, subnet: subnet-abc, primaryIp: 10.1.0.10}}
"#
    ))
    .expect("world");
    let sim = cloudsim::start(world, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("cloudsim starts");
    let metrics = Metrics::new();
    let transport = Transport::new(TransportConfig {
        timeout: Duration::from_secs(10),
        max_attempts: 4,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..TransportConfig::default()
    })
    .expect("transport")
    .with_metrics(metrics.clone() as Arc<dyn MetricsSink>);
    let tencent = Tencent::new(
        transport,
        Credentials::new(TC_ID, TC_SECRET),
        "ap-guangzhou",
        Some(&format!("{}/", sim.base_url())),
    )
    .expect("client");
    sim.set_faults(vec![Fault {
        action: Some("DescribeNetworkInterfaces".into()),
        error: Some("RequestLimitExceeded".into()),
        times: Some(2),
        ..Fault::default()
    }])
    .expect("faults");
    tencent
        .describe_nics(&[NicRef::new("eni-abc")])
        .await
        .expect("describe succeeds on the third attempt");

    metrics.reconcile_finished(Duration::from_millis(30), None);
    metrics.reconcile_finished(Duration::from_millis(70), Some("Throttled"));
    metrics.reconcile_finished(Duration::from_secs(2), Some("InvalidInput"));
    metrics.set_claim(
        "default/web",
        ClaimMetrics {
            ready: true,
            stalled: false,
            ipv4: 2,
            ipv6: 1,
        },
    );
    metrics.set_claim(
        "default/bad",
        ClaimMetrics {
            ready: false,
            stalled: true,
            ipv4: 0,
            ipv6: 0,
        },
    );

    let server = admin(Health::new(), metrics.clone()).await;
    let (status, ctype, body) = get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        ctype.as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let samples = parse_openmetrics(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    let at = |series: &str| {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{body}"))
    };
    let describe = r#"provider="Tencent",action="DescribeNetworkInterfaces""#;
    assert_eq!(
        at(&format!(
            "nicip_cloud_calls_total{{{describe},code=\"RequestLimitExceeded\"}}"
        )),
        2.0
    );
    assert_eq!(
        at(&format!(
            "nicip_cloud_calls_total{{{describe},code=\"OK\"}}"
        )),
        1.0
    );
    assert_eq!(
        at(&format!("nicip_cloud_throttles_total{{{describe}}}")),
        2.0
    );
    assert_eq!(
        at(&format!(
            "nicip_cloud_call_duration_seconds_count{{{describe}}}"
        )),
        3.0
    );
    assert!(
        at(&format!(
            "nicip_cloud_call_duration_seconds_sum{{{describe}}}"
        )) > 0.0
    );
    assert_eq!(at("nicip_reconciles_total"), 3.0);
    assert_eq!(
        at(r#"nicip_reconcile_errors_total{class="Throttled"}"#),
        1.0
    );
    assert_eq!(
        at(r#"nicip_reconcile_errors_total{class="InvalidInput"}"#),
        1.0
    );
    assert_eq!(at("nicip_reconcile_duration_seconds_count"), 3.0);
    assert!((at("nicip_reconcile_duration_seconds_sum") - 2.1).abs() < 1e-9);
    assert_eq!(
        at(r#"nicip_reconcile_duration_seconds_bucket{le="0.04"}"#),
        1.0
    );
    assert_eq!(at(r#"nicip_claims{condition="Ready"}"#), 1.0);
    assert_eq!(at(r#"nicip_claims{condition="Stalled"}"#), 1.0);
    assert_eq!(at(r#"nicip_claims{condition="NotReady"}"#), 0.0);
    assert_eq!(at(r#"nicip_owned_addresses{family="ipv4"}"#), 2.0);
    assert_eq!(at(r#"nicip_owned_addresses{family="ipv6"}"#), 1.0);
    assert_eq!(at("nicip_leader"), 0.0, "a replica that has not started");
    assert_documented(&body);
    assert!(!body.contains(TC_SECRET));
    sim.shutdown().await;
}

/// `nicip_leader` as `/metrics` serves it.
async fn leader_gauge(addr: SocketAddr) -> f64 {
    let (status, _, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let samples = parse_openmetrics(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    *samples
        .get("nicip_leader")
        .unwrap_or_else(|| panic!("no nicip_leader in\n{body}"))
}

#[tokio::test]
async fn readyz_and_the_leader_gauge_follow_sync_role_and_election_health() {
    let health = Health::new();
    let mut server = admin(health.clone(), Metrics::new()).await;
    let ready = || async { get(server.addr, "/readyz").await.0 };

    assert_eq!(get(server.addr, "/healthz").await.0, 200);
    assert_eq!(ready().await, 503, "starting");
    assert_eq!(leader_gauge(server.addr).await, 0.0, "starting");
    // Also what the controller does without leader election.
    health.set_role(Role::Leader);
    assert_eq!(ready().await, 503, "leader before the first sync");
    assert_eq!(leader_gauge(server.addr).await, 1.0, "leader");
    health.mark_synced();
    assert_eq!(ready().await, 200, "leader after the first sync");

    health.set_role(Role::Standby);
    assert_eq!(leader_gauge(server.addr).await, 0.0, "standby");
    assert_eq!(
        ready().await,
        503,
        "standby that has not reached the API server"
    );
    health.set_election_healthy(true);
    assert_eq!(ready().await, 200, "healthy standby");
    health.set_election_healthy(false);
    assert_eq!(ready().await, 503, "standby that lost the API server");
    assert_eq!(get(server.addr, "/healthz").await.0, 200, "alive all along");
    assert_eq!(get(server.addr, "/nothing").await.0, 404);

    // The shutdown future stops the server.
    let _ = server.stop.take().map(|s| s.send(()));
    tokio::time::timeout(PATIENCE, &mut server.task)
        .await
        .expect("the server stops on shutdown")
        .expect("no panic");
    assert!(
        reqwest::get(format!("http://{}/healthz", server.addr))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn admin_binds_what_it_is_given_and_reports_bind_errors() {
    let addr = nicip::ops::parse_listen_addr("localhost:0").expect("localhost resolves");
    let (bound, _task) = serve_admin(addr, Health::new(), Metrics::new(), std::future::pending())
        .await
        .expect("binds");
    assert!(bound.ip().is_loopback() && bound.port() != 0);
    assert!(
        serve_admin(bound, Health::new(), Metrics::new(), std::future::pending())
            .await
            .is_err(),
        "the port is taken"
    );
}

// ---------------------------------------------------------------------------
// Leader election

const LEASE_NS: &str = "nicip-system";
const LEASE_NAME: &str = "nicip-controller";

async fn cluster() -> RunningKubeSim {
    let sim = KubeSim::new(nicip::api::crds())
        .start()
        .await
        .expect("kubesim starts");
    let namespaces: Api<Namespace> = Api::all(sim.client().expect("client"));
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": LEASE_NS}})).expect("ns");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create the lease namespace");
    sim
}

fn lease_config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: LEASE_NS.into(),
        name: LEASE_NAME.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(500),
    }
}

fn elector(client: kube::Client, config: LeaseConfig) -> (Arc<Elector>, Arc<Health>) {
    let health = Health::new();
    (
        Arc::new(Elector::new(client, config, health.clone())),
        health,
    )
}

async fn lease(sim: &RunningKubeSim) -> Lease {
    Api::<Lease>::namespaced(sim.client().expect("client"), LEASE_NS)
        .get(LEASE_NAME)
        .await
        .expect("the Lease exists")
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref()?.holder_identity.clone()
}

fn spawn_acquire(e: &Arc<Elector>) -> tokio::task::JoinHandle<(Leadership, Instant)> {
    let e = e.clone();
    tokio::spawn(async move {
        let l = e.acquire().await.expect("acquire");
        (l, Instant::now())
    })
}

#[tokio::test]
async fn one_of_two_replicas_leads_and_release_hands_over_at_once() {
    let sim = cluster().await;
    let mut config_b = lease_config("pod-b");
    // Long enough that a takeover within it proves the release, not expiry.
    config_b.lease_duration = Duration::from_secs(20);
    let mut config_a = config_b.clone();
    config_a.identity = "pod-a".into();
    let (a, health_a) = elector(sim.client().expect("client"), config_a);
    let (b, health_b) = elector(sim.client().expect("client"), config_b);

    let leader = a.acquire().await.expect("a leads");
    assert_eq!(health_a.role(), Role::Leader);
    health_a.mark_synced();
    assert!(health_a.readiness().is_ok());
    let written = lease(&sim).await;
    let spec = written.spec.clone().expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("pod-a"));
    assert_eq!(spec.lease_duration_seconds, Some(20));
    assert_eq!(spec.lease_transitions, Some(0));
    // MicroTime: six fractional digits on the wire.
    let raw = serde_json::to_value(&written).expect("json");
    let renew = raw["spec"]["renewTime"].as_str().expect("renewTime");
    assert_eq!(renew.split('.').nth(1).map(str::len), Some(7), "{renew}");

    let mut b_task = spawn_acquire(&b);
    wait_for("b to report a healthy standby", || async {
        health_b.role() == Role::Standby && health_b.readiness().is_ok()
    })
    .await;
    // b keeps waiting through several of a's renews.
    let fence = leader.fence();
    let before = lease(&sim).await.metadata.resource_version;
    wait_for("a to renew", || async {
        lease(&sim).await.metadata.resource_version != before
    })
    .await;
    assert!(!b_task.is_finished(), "b took the Lease a holds");
    assert_eq!(fence.check(), Ok(()));
    assert_eq!(holder(&lease(&sim).await).as_deref(), Some("pod-a"));

    let released = Instant::now();
    leader.release().await;
    assert!(
        fence.check().is_err(),
        "a's fence fails from its release on"
    );
    assert_eq!(health_a.role(), Role::Standby);
    let (b_leads, at) = tokio::time::timeout(PATIENCE, &mut b_task)
        .await
        .expect("b takes over")
        .expect("no panic");
    assert!(
        at - released < Duration::from_secs(20),
        "b waited out the lease instead of taking the released one"
    );
    let spec = lease(&sim).await.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("pod-b"));
    assert_eq!(spec.lease_transitions, Some(1));
    assert_eq!(b_leads.fence().check(), Ok(()));
    assert_eq!(health_b.role(), Role::Leader);
}

fn micro_time(lease: &Lease, field: &str) -> k8s_openapi::jiff::Timestamp {
    let spec = lease.spec.as_ref().expect("spec");
    let t = match field {
        "renewTime" => spec.renew_time.as_ref(),
        _ => spec.acquire_time.as_ref(),
    };
    t.expect(field).0
}

#[tokio::test]
async fn a_killed_leader_is_replaced_after_the_lease_duration() {
    let sim = cluster().await;
    let (a, _) = elector(sim.client().expect("client"), lease_config("pod-a"));
    let (b, health_b) = elector(sim.client().expect("client"), lease_config("pod-b"));
    let leader = a.acquire().await.expect("a leads");
    let b_task = spawn_acquire(&b);
    wait_for("b to stand by", || async { health_b.readiness().is_ok() }).await;

    // Killed without release: renews stop, the Lease still names a.
    drop(leader);
    let last = lease(&sim).await;
    assert_eq!(holder(&last).as_deref(), Some("pod-a"));
    let (_b_leads, _) = tokio::time::timeout(PATIENCE, b_task)
        .await
        .expect("b takes over")
        .expect("no panic");
    let now = lease(&sim).await;
    assert_eq!(holder(&now).as_deref(), Some("pod-b"));
    assert_eq!(now.spec.as_ref().and_then(|s| s.lease_transitions), Some(1));
    // Both stamps come from this machine's wall clock: b may only take over
    // a full lease duration after a's last renew.
    let waited = micro_time(&now, "acquireTime").duration_since(micro_time(&last, "renewTime"));
    assert!(
        waited >= k8s_openapi::jiff::SignedDuration::from_secs(3),
        "b took over {waited:?} after a's last renew"
    );
}

/// A TCP relay to the API server that the test can cut, so one replica
/// loses the API server while the other keeps it.
struct Relay {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
}

async fn relay(upstream: SocketAddr) -> Relay {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (cut, cut_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut accept_cut = cut_rx.clone();
        loop {
            let (mut inbound, _) = tokio::select! {
                _ = accept_cut.wait_for(|c| *c) => return,
                conn = listener.accept() => match conn { Ok(c) => c, Err(_) => return },
            };
            let mut conn_cut = cut_rx.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = conn_cut.wait_for(|c| *c) => {}
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                }
            });
        }
    });
    Relay { addr, cut }
}

#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_stops_before_anyone_takes_over() {
    let sim = cluster().await;
    let upstream: SocketAddr = sim
        .url()
        .trim_start_matches("http://")
        .parse()
        .expect("sim addr");
    let relay = relay(upstream).await;
    let via_relay = kube::Client::try_from(kube::Config::new(
        format!("http://{}", relay.addr).parse().expect("url"),
    ))
    .expect("client");
    let (a, _) = elector(via_relay, lease_config("pod-a"));
    let (b, _) = elector(sim.client().expect("client"), lease_config("pod-b"));
    let leader = a.acquire().await.expect("a leads");
    let fence = leader.fence();
    let lost = leader.lost();
    // The moment b may start mutating, a must already refuse to.
    let b_task = {
        let (b, fence) = (b.clone(), fence.clone());
        tokio::spawn(async move {
            let leads = b.acquire().await.expect("b acquires");
            (leads, fence.check())
        })
    };
    assert_eq!(fence.check(), Ok(()));
    let _ = relay.cut.send(true);

    let (b_leads, a_fence_then) = tokio::time::timeout(PATIENCE, b_task)
        .await
        .expect("b takes over")
        .expect("no panic");
    assert!(
        a_fence_then.is_err(),
        "a's fence still passed when b took over"
    );
    tokio::time::timeout(PATIENCE, lost)
        .await
        .expect("a learns it lost the lead");
    assert!(fence.check().is_err());
    assert_eq!(b_leads.fence().check(), Ok(()));
    assert_eq!(holder(&lease(&sim).await).as_deref(), Some("pod-b"));
}

#[tokio::test]
async fn a_standby_that_loses_the_api_server_turns_unready() {
    let sim = cluster().await;
    let upstream: SocketAddr = sim
        .url()
        .trim_start_matches("http://")
        .parse()
        .expect("sim addr");
    let relay = relay(upstream).await;
    let via_relay = kube::Client::try_from(kube::Config::new(
        format!("http://{}", relay.addr).parse().expect("url"),
    ))
    .expect("client");
    let (a, _) = elector(sim.client().expect("client"), lease_config("pod-a"));
    let (b, health_b) = elector(via_relay, lease_config("pod-b"));
    let _leader = a.acquire().await.expect("a leads");
    let b_task = spawn_acquire(&b);
    wait_for("b to stand by", || async { health_b.readiness().is_ok() }).await;
    let _ = relay.cut.send(true);
    wait_for("b to turn unready", || async {
        health_b.readiness().is_err()
    })
    .await;
    assert_eq!(health_b.role(), Role::Standby);
    assert!(!b_task.is_finished());
    b_task.abort();
}

#[tokio::test]
async fn second_elector_with_only_one_lease_never_leads_while_the_first_renews() {
    let sim = cluster().await;
    let (a, _) = elector(sim.client().expect("client"), lease_config("pod-a"));
    let (b, _) = elector(sim.client().expect("client"), lease_config("pod-b"));
    // Both start at once; exactly one wins.
    let mut a_task = spawn_acquire(&a);
    let mut b_task = spawn_acquire(&b);
    let (first, other) = tokio::select! {
        r = &mut a_task => (r.expect("no panic").0, b_task),
        r = &mut b_task => (r.expect("no panic").0, a_task),
    };
    let fence = first.fence();
    let lead = holder(&lease(&sim).await).expect("a holder");
    // Twice the lease duration: the loser would have taken an expired Lease.
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        assert!(!other.is_finished(), "both replicas lead");
        assert_eq!(fence.check(), Ok(()), "the leader stopped renewing");
        assert_eq!(holder(&lease(&sim).await).as_deref(), Some(lead.as_str()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    other.abort();
}

#[test]
fn a_paused_leader_fails_its_fence_on_resume_until_it_renews() {
    // A current-thread runtime blocked by a synchronous sleep is a paused
    // process: no task of it runs, its renew loop included.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sim = cluster().await;
        let (a, _) = elector(sim.client().expect("client"), lease_config("pod-a"));
        let leader = a.acquire().await.expect("a leads");
        let fence = leader.fence();
        assert_eq!(fence.check(), Ok(()));
        std::thread::sleep(Duration::from_millis(2_500));
        assert!(
            fence.check().is_err(),
            "a resumed leader acted before renewing"
        );
        // Nobody took the Lease meanwhile, so the next renew reopens it.
        wait_for("the renew after the pause", || async {
            fence.check().is_ok()
        })
        .await;
        assert_eq!(holder(&lease(&sim).await).as_deref(), Some("pod-a"));
    });
}

#[test]
fn a_leader_paused_past_its_lease_resumes_as_a_follower() {
    // The API server and the other replica live on their own runtime; only
    // a's runtime pauses.
    let cluster_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let sim = cluster_rt.block_on(cluster());
    let url = sim.url();
    let (b_tx, b_rx) = std::sync::mpsc::channel();
    let a_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (b, _) = cluster_rt
        .block_on(async { elector(sim.client().expect("client"), lease_config("pod-b")) });
    a_rt.block_on(async {
        let client =
            kube::Client::try_from(kube::Config::new(url.parse().expect("url"))).expect("client");
        let (a, _) = elector(client, lease_config("pod-a"));
        let leader = a.acquire().await.expect("a leads");
        let fence = leader.fence();
        let lost = leader.lost();
        cluster_rt.spawn(async move {
            let leads = b.acquire().await.expect("b acquires");
            let _ = b_tx.send(());
            // Keep leading for the rest of the test.
            std::future::pending::<()>().await;
            drop(leads);
        });

        // Blocking here freezes a well past its Lease; b takes over meanwhile.
        b_rx.recv_timeout(PATIENCE)
            .expect("b takes over while a is paused");
        assert!(
            fence.check().is_err(),
            "a resumed leader acted before re-checking the Lease"
        );
        tokio::time::timeout(PATIENCE, lost)
            .await
            .expect("a sees the Lease is b's");
        assert!(fence.check().is_err());
    });
    let holder_now = cluster_rt.block_on(async { holder(&lease(&sim).await) });
    assert_eq!(holder_now.as_deref(), Some("pod-b"));
}

#[tokio::test]
async fn fence_always_passes_without_election() {
    let fence = Fence::always();
    let clone = fence.clone();
    assert_eq!(clone.check(), Ok(()));
}

// ---------------------------------------------------------------------------
// Shutdown

#[tokio::test]
async fn shutdown_signal_catches_a_sigterm_sent_before_it_is_polled() {
    let signal = nicip::ops::shutdown_signal();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    tokio::time::timeout(PATIENCE, signal)
        .await
        .expect("the SIGTERM ends the wait");
}

/// The metrics table of docs/operations.md lists exactly the metric families
/// in `body` (an exposition in which every family has samples).
fn assert_documented(body: &str) {
    let served: std::collections::BTreeSet<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            Some(match kind {
                "counter" => format!("{name}_total"),
                _ => name.to_string(),
            })
        })
        .collect();
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .expect("docs/operations.md");
    let documented: std::collections::BTreeSet<String> = guide
        .lines()
        .filter_map(|l| l.strip_prefix("| `nicip_"))
        .filter_map(|l| Some(format!("nicip_{}", l.split_once('`')?.0)))
        .collect();
    assert_eq!(documented, served, "docs/operations.md's metrics table");
}
