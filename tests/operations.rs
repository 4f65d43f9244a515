//! The operations of the real `nicip controller` binary, run as separate
//! processes against the in-memory API server and the simulated cloud (both
//! served by this test process): the probes and `/metrics` over HTTP, SIGTERM
//! during a burst of asynchronous calls, and leader election between two
//! processes, told apart by the `User-Agent` the cloud's audit log records.

mod controller_support;
mod openmetrics;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use controller_support::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use nicip::cloudsim::AuditEntry;
use openmetrics::parse_openmetrics;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};

const PATIENCE: Duration = Duration::from_secs(30);
const LEASE: &str = "nicip-controller";
/// The election timings of these tests: short, so that a takeover is quick.
const ELECTION: &[&str] = &[
    "--leader-elect",
    "--lease-namespace",
    SECRETS_NS,
    "--lease-duration",
    "3s",
    "--renew-deadline",
    "2s",
    "--retry-period",
    "500ms",
];

/// Polls `cond` until it holds, failing the test after [`PATIENCE`].
async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One `nicip controller` process. Its stderr (JSON logs) is kept, and shown
/// when the test fails.
struct Controller {
    identity: String,
    child: Child,
    admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

/// The address in an `admin server listening` JSON log line.
fn admin_addr(line: &str) -> Option<SocketAddr> {
    let v: Value = serde_json::from_str(line).ok()?;
    let fields = &v["fields"];
    if fields["message"] != "admin server listening" {
        return None;
    }
    fields["addr"].as_str()?.parse().ok()
}

impl Controller {
    async fn start(kubeconfig: &Path, identity: &str, extra: &[&str]) -> Controller {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nicip"))
            .arg("controller")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "json"])
            .args(["--secrets-namespace", SECRETS_NS])
            .args(["--identity", identity])
            .args(extra)
            .args(if extra.contains(&"--log-level") {
                &[][..]
            } else {
                &["--log-level", "info"][..]
            })
            .env_remove("KUBECONFIG")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("nicip controller starts");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (found, addr) = oneshot::channel();
        let kept = logs.clone();
        tokio::spawn(async move {
            let mut found = Some(found);
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(a) = admin_addr(&line)
                    && let Some(tx) = found.take()
                {
                    let _ = tx.send(a);
                }
                kept.lock().unwrap().push(line);
            }
        });
        // Nothing is expected on stdout; whatever comes is kept for I5.
        let stdout = child.stdout.take().expect("stdout");
        let kept = logs.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        let admin = match tokio::time::timeout(PATIENCE, addr).await {
            Ok(Ok(a)) => a,
            _ => panic!(
                "controller {identity} never logged its admin address:\n{}",
                logs.lock().unwrap().join("\n")
            ),
        };
        Controller {
            identity: identity.to_string(),
            child,
            admin,
            logs,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// Sends `signal` (`TERM`, `KILL`, `STOP`, `CONT`) with kill(1).
    async fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .await
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    async fn exited(&mut self) -> ExitStatus {
        match tokio::time::timeout(PATIENCE, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!("controller {} did not exit", self.identity),
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::get(format!("http://{}{path}", self.admin))
            .await
            .unwrap_or_else(|e| panic!("GET {path} from {}: {e}", self.identity));
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    /// `nicip_leader` from `/metrics`.
    async fn leader_gauge(&self) -> f64 {
        let (status, text) = self.get("/metrics").await;
        assert_eq!(status, 200, "{}: {text}", self.identity);
        let samples = parse_openmetrics(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
        sample(&samples, "nicip_leader", &[])
            .unwrap_or_else(|| panic!("{} exports no nicip_leader:\n{text}", self.identity))
    }

    async fn wait_ready(&self) {
        wait_for(&format!("{} to be ready", self.identity), || async {
            self.get("/readyz").await.0 == 200
        })
        .await;
    }

    fn logged(&self, message: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v["fields"]["message"] == message)
        })
    }

    /// I5 for the process: no secret, plain or base64, in its output.
    fn assert_no_secrets(&self) {
        use base64::Engine as _;
        let text = self.logs.lock().unwrap().join("\n");
        for secret in [ZL_SECRET, TC_SECRET] {
            let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
            assert!(
                !text.contains(secret) && !text.contains(&b64),
                "I5: controller {} wrote secret {}… to its output",
                self.identity,
                &secret[..4]
            );
        }
    }

    /// `nicip/<version> (<identity>)`, what the controller sends.
    fn sent(&self, entry: &AuditEntry) -> bool {
        entry.user_agent.starts_with("nicip/")
            && entry.user_agent.ends_with(&format!(" ({})", self.identity))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- logs of controller {} ---\n{}",
                self.identity,
                self.logs.lock().unwrap().join("\n")
            );
        }
    }
}

fn kubeconfig(env: &Env, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    env.kube.write_kubeconfig(&path).expect("kubeconfig");
    path
}

/// The API server's address, for a relay in front of it.
fn kubesim_addr(env: &Env) -> SocketAddr {
    env.kube
        .url()
        .strip_prefix("http://")
        .and_then(|a| a.parse().ok())
        .expect("kubesim address")
}

/// A kubeconfig at `path` that reaches the API server through `relay`.
fn relayed_kubeconfig(env: &Env, path: &Path, relay: SocketAddr) {
    std::fs::write(
        path,
        env.kube
            .kubeconfig_yaml()
            .replace(&env.kube.url(), &format!("http://{relay}")),
    )
    .expect("kubeconfig");
}

/// A TCP relay to `upstream` that holds every connection until the gate opens,
/// so that a controller behind it cannot list anything before the test says so.
async fn gated_relay(upstream: SocketAddr) -> (SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (open, gate) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut gate = gate.clone();
            tokio::spawn(async move {
                if gate.wait_for(|open| *open).await.is_err() {
                    return;
                }
                if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, open)
}

/// The value of the one series of `name` carrying every label of `labels`.
fn sample(samples: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|(series, _)| {
            series
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| *v)
        .collect();
    match found[..] {
        [v] => Some(v),
        [] => None,
        _ => panic!("{name} {labels:?} matches several series"),
    }
}

fn successes<'a>(audit: &'a [AuditEntry], action: &str) -> Vec<&'a AuditEntry> {
    audit
        .iter()
        .filter(|e| e.action == action && e.outcome == "Success")
        .collect()
}

fn mutations(audit: &[AuditEntry]) -> Vec<&AuditEntry> {
    audit
        .iter()
        .filter(|e| MUTATIONS.contains(&e.action.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_follow_the_first_sync_and_metrics_count_a_scenario() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (relay, open) = gated_relay(kubesim_addr(&env)).await;
    let path = dir.path().join("kubeconfig");
    relayed_kubeconfig(&env, &path, relay);
    let c = Controller::start(&path, "probe", &[]).await;

    // Nothing can be listed yet: alive, not ready, and it stays so.
    for _ in 0..5 {
        assert_eq!(c.get("/healthz").await.0, 200);
        let (status, body) = c.get("/readyz").await;
        assert_eq!(status, 503, "ready before any list: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    open.send_replace(true);
    c.wait_ready().await;
    assert_eq!(c.get("/healthz").await.0, 200);

    env.apply(
        "t",
        json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t1", "ipv4": {"count": 2}}),
    )
    .await;
    env.apply(
        "z",
        json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z1", "ipv4": {"count": 2}}),
    )
    .await;
    env.apply(
        "orphan",
        json!({"providerConfigRef": pc("nowhere"), "nicId": "eni-t2", "ipv4": {"count": 1}}),
    )
    .await;
    env.wait_ready("t").await;
    env.wait_ready("z").await;
    env.wait("orphan", "Stalled", |c| {
        is_stalled(c, "ProviderConfigNotFound")
    })
    .await;

    let scrape = || async {
        let (status, text) = c.get("/metrics").await;
        assert_eq!(status, 200);
        parse_openmetrics(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
    };
    let claims = |s: &BTreeMap<String, f64>, condition: &str| {
        sample(s, "nicip_claims", &[("condition", condition)])
    };
    wait_for("the claim gauges to settle", || async {
        let s = scrape().await;
        claims(&s, "Ready") == Some(2.0) && claims(&s, "Stalled") == Some(1.0)
    })
    .await;
    let s = scrape().await;
    assert_eq!(claims(&s, "NotReady"), Some(0.0));
    assert_eq!(
        sample(&s, "nicip_leader", &[]),
        Some(1.0),
        "without leader election the replica leads"
    );
    assert!(
        sample(&s, "nicip_reconciles_total", &[]).is_some_and(|n| n >= 3.0),
        "reconciles: {:?}",
        sample(&s, "nicip_reconciles_total", &[])
    );
    // Every successful assignment the cloud saw is counted, under its provider.
    let audit = env.audit();
    for (provider, action) in [
        ("Tencent", "AssignPrivateIpAddresses"),
        ("Zenlayer", "BatchAssignNetworkInterfaceIpv4"),
    ] {
        let seen = successes(&audit, action).len();
        assert!(seen >= 1, "no {action} reached the cloud");
        assert_eq!(
            sample(
                &s,
                "nicip_cloud_calls_total",
                &[("provider", provider), ("action", action), ("code", "OK")]
            ),
            Some(seen as f64),
            "{provider} {action}"
        );
    }
    assert_eq!(
        sample(&s, "nicip_owned_addresses", &[("family", "ipv4")]),
        Some(4.0)
    );
}

/// The test world with 20 more Tencent NICs, and Tencent's asynchronous
/// tasks slow enough that a burst is still in flight when SIGTERM comes.
fn burst_world() -> String {
    let mut yaml = world_yaml().replacen(
        "tencent:\n  asyncLatencyMs: 30",
        "tencent:\n  asyncLatencyMs: 1500",
        1,
    );
    assert!(
        yaml.contains("asyncLatencyMs: 1500"),
        "world layout changed"
    );
    for i in 0..20 {
        yaml.push_str(&format!(
            "    - {{id: eni-b{i:02}, subnet: subnet-t, primaryIp: 10.1.0.{}, ipQuota: 10}}\n",
            100 + i
        ));
    }
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_exits_zero_and_a_new_process_converges_without_duplicates() {
    let env = Env::with_world(&burst_world()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = kubeconfig(&env, dir.path());
    let nics: Vec<String> = (0..20).map(|i| format!("eni-b{i:02}")).collect();

    let mut first = Controller::start(&kc, "first", &[]).await;
    first.wait_ready().await;
    for (i, nic) in nics.iter().enumerate() {
        env.apply(
            &format!("burst-{i:02}"),
            json!({"providerConfigRef": pc(TENCENT), "nicId": nic, "ipv4": {"count": 3}}),
        )
        .await;
    }
    wait_for("a few assignments to be under way", || async {
        successes(&env.audit(), "AssignPrivateIpAddresses").len() >= 3
    })
    .await;
    first.signal("TERM").await;
    let status = first.exited().await;
    assert!(
        status.success(),
        "SIGTERM ended the controller with {status}"
    );
    assert!(
        first.logged("controller stopped"),
        "no graceful stop logged"
    );

    // The burst was cut short: some claims still wait for the cloud.
    let claims = env.claims().list(&Default::default()).await.expect("list");
    let pending = claims
        .iter()
        .filter(|c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.pending_operation.is_some())
        })
        .count();
    let ready = claims.iter().filter(|c| is_ready(c)).count();
    assert!(
        pending > 0 && ready < 20,
        "SIGTERM came too late to test anything: {pending} pending, {ready} ready"
    );

    let second = Controller::start(&kc, "second", &[]).await;
    for i in 0..20 {
        env.wait_ready(&format!("burst-{i:02}")).await;
    }
    check_invariants(&env).await;
    first.assert_no_secrets();
    second.assert_no_secrets();
    let audit = env.audit();
    for (i, nic) in nics.iter().enumerate() {
        let claim = env.get(&format!("burst-{i:02}")).await.expect("claim");
        assert_eq!(owned4(&claim).len(), 3, "{nic}");
        assert_eq!(
            owned4(&claim),
            env.ipv4(nic),
            "{nic} carries what its claim owns"
        );
        let assigned = successes(&audit, "AssignPrivateIpAddresses")
            .into_iter()
            .filter(|e| e.params["NetworkInterfaceId"] == nic.as_str())
            .count();
        assert_eq!(assigned, 1, "{nic} assigned {assigned} times");
    }
    assert_eq!(
        successes(&audit, "UnassignPrivateIpAddresses").len(),
        0,
        "nothing needed releasing"
    );
    drop(second);
}

async fn holder(env: &Env) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), SECRETS_NS);
    leases
        .get_opt(LEASE)
        .await
        .expect("get lease")
        .and_then(|l| l.spec?.holder_identity)
}

async fn wait_holder(env: &Env, identity: &str) {
    wait_for(&format!("{identity} to hold the Lease"), || async {
        holder(env).await.as_deref() == Some(identity)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_processes_mutates_and_a_killed_leader_is_replaced() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = kubeconfig(&env, dir.path());
    let a = Controller::start(&kc, "a", ELECTION).await;
    wait_holder(&env, "a").await;
    a.wait_ready().await;
    let b = Controller::start(&kc, "b", ELECTION).await;
    // A standby that reaches the API server is ready too.
    b.wait_ready().await;
    assert_eq!(a.leader_gauge().await, 1.0, "the leader's nicip_leader");
    assert_eq!(b.leader_gauge().await, 0.0, "the standby's nicip_leader");

    env.apply(
        "one",
        json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t1", "ipv4": {"count": 2}}),
    )
    .await;
    env.wait_ready("one").await;
    let audit = env.audit();
    assert!(!mutations(&audit).is_empty(), "nothing was assigned");
    assert!(
        mutations(&audit).iter().all(|e| a.sent(e)),
        "a mutation not from the leader: {:?}",
        mutations(&audit)
    );
    assert!(
        !audit.iter().any(|e| b.sent(e)),
        "the standby called the cloud"
    );
    assert_eq!(holder(&env).await.as_deref(), Some("a"));

    a.signal("KILL").await;
    let killed = Instant::now();
    wait_holder(&env, "b").await;
    let took = killed.elapsed();
    wait_for("b's nicip_leader to become 1", || async {
        b.leader_gauge().await == 1.0
    })
    .await;
    println!("b took over {took:?} after a was killed");
    // The Lease lasts 3 s from a's last renewal (every 500 ms); the rest is
    // slack for a loaded machine.
    assert!(took < Duration::from_secs(10), "takeover took {took:?}");

    let before = env.audit().len();
    env.apply(
        "two",
        json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t2", "ipv4": {"count": 2}}),
    )
    .await;
    env.wait_ready("two").await;
    let audit = env.audit();
    let after = mutations(&audit[before..]);
    assert!(!after.is_empty(), "the new leader assigned nothing");
    assert!(
        after.iter().all(|e| b.sent(e)),
        "a mutation not from the new leader: {after:?}"
    );
    check_invariants(&env).await;
    a.assert_no_secrets();
    b.assert_no_secrets();
}

/// A TCP relay to `upstream` that can be cut: while cut, it passes no byte
/// either way on any connection, old or new (the API server is unreachable,
/// as behind a dropped route); restored, what was held goes through.
async fn cuttable_relay(upstream: SocketAddr) -> (SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (cut, cut_rx) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let cut = cut_rx.clone();
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::join!(pass(ri, wo, cut.clone()), pass(ro, wi, cut));
            });
        }
    });
    (addr, cut)
}

/// Copies `from` to `to`, holding each chunk while the relay is cut.
async fn pass(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    mut cut: watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 << 10];
    loop {
        if cut.wait_for(|c| !*c).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if cut.wait_for(|c| !*c).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

/// Longer election timings, for the test that measures the renew deadline:
/// on a loaded machine the new leader must not miss its own deadline.
const SLOW_ELECTION: &[&str] = &[
    "--leader-elect",
    "--lease-namespace",
    SECRETS_NS,
    "--lease-duration",
    "8s",
    "--renew-deadline",
    "5s",
    "--retry-period",
    "1s",
];

/// R20: two replicas; the leader's route to the API server is cut in the
/// middle of a burst of asynchronous assignments (its cloud calls still go
/// through). From its last renewal on it has `--renew-deadline` (5 s) to
/// stop mutating: after that no mutating call of it reaches the cloud, not
/// even once the route is back and its held writes complete; the standby
/// takes the Lease and finishes the burst, and the old leader exits
/// non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r20_a_leader_cut_off_from_the_api_server_stops_mutating_within_the_renew_deadline() {
    let env = Env::with_world(&burst_world()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (relay, cut) = cuttable_relay(kubesim_addr(&env)).await;
    let cut_kc = dir.path().join("kubeconfig-cut");
    relayed_kubeconfig(&env, &cut_kc, relay);
    let kc = kubeconfig(&env, dir.path());
    let fence_log = [
        SLOW_ELECTION,
        &["--log-level", "info,nicip::controller=debug"],
    ]
    .concat();
    let mut a = Controller::start(&cut_kc, "a", &fence_log).await;
    wait_holder(&env, "a").await;
    a.wait_ready().await;
    let b = Controller::start(&kc, "b", SLOW_ELECTION).await;
    b.wait_ready().await;

    let nics: Vec<String> = (0..20).map(|i| format!("eni-b{i:02}")).collect();
    for (i, nic) in nics.iter().enumerate() {
        env.apply(
            &format!("burst-{i:02}"),
            json!({"providerConfigRef": pc(TENCENT), "nicId": nic, "ipv4": {"count": 3}}),
        )
        .await;
    }
    wait_for("a few assignments to be under way", || async {
        successes(&env.audit(), "AssignPrivateIpAddresses").len() >= 3
    })
    .await;
    cut.send_replace(true);
    let cut_at = Instant::now();
    // The renew deadline, and a little for a call already on the wire.
    tokio::time::sleep(Duration::from_millis(5300)).await;
    let deadline_index = env.audit().len();
    let deadline = cut_at.elapsed();
    wait_holder(&env, "b").await;
    println!("b took over {:?} after the cut", cut_at.elapsed());
    for i in 0..20 {
        env.wait_ready(&format!("burst-{i:02}")).await;
    }
    // The route comes back: whatever `a` held is delivered now.
    cut.send_replace(false);
    let status = a.exited().await;
    assert!(
        !status.success(),
        "a replica that lost its Lease exits non-zero"
    );
    println!(
        "R20: a's fence refused a call: {}; a's mutations {}",
        a.logged("not the leader: no cloud call"),
        mutations(&env.audit()).iter().filter(|e| a.sent(e)).count()
    );
    check_invariants(&env).await;
    let audit = env.audit();
    let late: Vec<&AuditEntry> = audit[deadline_index..]
        .iter()
        .filter(|e| a.sent(e) && MUTATIONS.contains(&e.action.as_str()))
        .collect();
    assert!(
        late.is_empty(),
        "a mutated more than {deadline:?} after it was cut off: {late:?}"
    );
    assert!(
        audit[deadline_index..]
            .iter()
            .any(|e| b.sent(e) && MUTATIONS.contains(&e.action.as_str())),
        "b finished the burst"
    );
    for (i, nic) in nics.iter().enumerate() {
        let claim = env.get(&format!("burst-{i:02}")).await.expect("claim");
        assert_eq!(owned4(&claim), env.ipv4(nic), "{nic}");
        assert_eq!(owned4(&claim).len(), 3, "{nic}");
    }
    a.assert_no_secrets();
    b.assert_no_secrets();
}

/// R21: the leader is paused in the middle of a reconcile that will want to
/// assign (its NIC description is on the way), the other replica takes over
/// and does the work, then the first resumes with its stale view: its fence
/// must refuse the call it planned, before it has renewed (it never can).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r21_a_paused_leader_mutates_nothing_before_it_rechecks_the_lease() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = kubeconfig(&env, dir.path());
    // The fence's refusal is logged at debug.
    let fence_log = [ELECTION, &["--log-level", "info,nicip::controller=debug"]].concat();
    let mut a = Controller::start(&kc, "a", &fence_log).await;
    wait_holder(&env, "a").await;
    a.wait_ready().await;
    let b = Controller::start(&kc, "b", ELECTION).await;
    b.wait_ready().await;
    env.apply(
        "one",
        json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t1", "ipv4": {"count": 2}}),
    )
    .await;
    env.wait_ready("one").await;
    assert!(mutations(&env.audit()).iter().all(|e| a.sent(e)));
    // `a` is idle (no call for a second): the claim's next reconcile is the
    // one the change below starts, not a follow-up of the last one.
    let mut calls = env.audit().len();
    let mut quiet_since = Instant::now();
    wait_for("a to be idle", || {
        let now = env.audit().len();
        if now != calls {
            calls = now;
            quiet_since = Instant::now();
        }
        let idle = quiet_since.elapsed() >= Duration::from_secs(1);
        async move { idle }
    })
    .await;

    // The next description of the NIC is answered late; `a` is paused while
    // it waits for it.
    env.cloud
        .set_faults(vec![nicip::cloudsim::Fault {
            protocol: Some(nicip::cloudsim::Protocol::Tencent),
            action: Some("DescribeNetworkInterfaces".into()),
            times: Some(1),
            latency_ms: Some(1500),
            ..Default::default()
        }])
        .expect("fault");
    env.apply(
        "one",
        json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t1", "ipv4": {"count": 4}}),
    )
    .await;
    wait_for("a to describe the NIC", || async {
        env.cloud.faults().is_empty()
    })
    .await;
    a.signal("STOP").await;
    wait_holder(&env, "b").await;
    let one = env
        .wait("one", "Ready with 4 addresses", |c| {
            is_ready(c) && owned4(c).len() == 4
        })
        .await;
    let resumed = env.audit().len();
    a.signal("CONT").await;

    let status = a.exited().await;
    assert!(
        !status.success(),
        "a replica that lost its Lease exits non-zero"
    );
    assert!(
        a.logged("not the leader: no cloud call"),
        "the resumed replica never reached its fence, so this test tested nothing"
    );
    let audit = env.audit();
    let after = &audit[resumed..];
    assert!(
        !after
            .iter()
            .any(|e| a.sent(e) && MUTATIONS.contains(&e.action.as_str())),
        "the resumed replica mutated: {after:?}"
    );
    assert_eq!(holder(&env).await.as_deref(), Some("b"));
    assert_eq!(env.get("one").await.map(|c| owned4(&c)), Some(owned4(&one)));
    assert_eq!(owned4(&one), env.ipv4("eni-t1"));
    check_invariants(&env).await;
    a.assert_no_secrets();
    b.assert_no_secrets();
}
