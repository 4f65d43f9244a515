//! The in-memory API server at fleet scale (`cargo bench --bench kubesim`).
//!
//! Starts `nicip kubesim` as a child process (so its peak RSS is its own),
//! then, at `NICIP_BENCH_OBJECTS` NicIpClaims (10 000 by default), from 16
//! concurrent kube-rs clients: creates, server-side-apply status writes with
//! a watch measuring how late their events arrive, one full list, the same
//! list in pages of 500, and the longest write while full lists run. Prints a
//! table and writes the figures to `target/bench/kubesim.json`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use nicip::api::v1alpha1::NicIpClaim;
use serde_json::{Value, json};

const CLIENTS: usize = 16;
const PAGE: usize = 500;

fn claim(i: usize) -> NicIpClaim {
    serde_json::from_value(json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim",
        "metadata": {"name": format!("claim-{i:05}"), "labels": {"app": "bench", "shard": format!("s{}", i % 16)}},
        "spec": {"nicId": format!("nic-{i:05}"), "ipv4": {"count": 2}}}))
    .expect("claim")
}

fn status(generation: i64) -> Value {
    let condition = |t: &str, s: &str, reason: &str| {
        json!({"type": t, "status": s, "reason": reason,
        "message": "all addresses assigned", "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": generation})
    };
    json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim", "status": {"observedGeneration": generation,
        "conditions": [condition("Ready", "True", "Assigned"), condition("Reconciling", "False", "Assigned"),
            condition("Stalled", "False", "Assigned")]}})
}

/// `nicip kubesim` on a free port, and its URL.
struct Server {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_nicip"))
            .args(["kubesim", "--kubeconfig"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nicip kubesim starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let text = std::fs::read_to_string(&config).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.trim_start().starts_with("server:")) {
                break line
                    .trim_start()
                    .trim_start_matches("server:")
                    .trim()
                    .to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no kubeconfig from nicip kubesim"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Server {
            child,
            url,
            _dir: dir,
        }
    }

    fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().expect("url"));
        kube::Client::try_from(config).expect("client")
    }

    /// VmHWM and VmRSS of the server, MiB.
    fn memory(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb / 1024.0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// CPU seconds (user + system) the server has used so far.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let ticks: Vec<f64> = rest
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        // utime and stime are fields 14 and 15 of the line: the 11th and 12th number after the state letter.
        match (ticks.get(10), ticks.get(11)) {
            (Some(u), Some(s)) => (u + s) / 100.0, // USER_HZ
            _ => f64::NAN,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `op(i)` for every i in 0..n from `CLIENTS` clients; returns operations per second.
async fn from_clients<F, Fut>(clients: &[kube::Client], n: usize, op: F) -> f64
where
    F: Fn(kube::Client, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let op = Arc::new(op);
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .map(|c| {
            let (c, next, op) = (c.clone(), next.clone(), op.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    op(c.clone(), i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client task");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[derive(serde::Deserialize)]
struct ListMeta {
    metadata: ListMetadata,
    items: Vec<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct ListMetadata {
    #[serde(rename = "continue", default)]
    next: Option<String>,
}

/// One list request, as text (the server's work and the transfer, not a client's decoding into types).
async fn list(client: &kube::Client, query: &str) -> ListMeta {
    let req = axum::http::Request::get(format!(
        "/apis/nicip.io/v1alpha1/namespaces/default/nicipclaims?{query}"
    ))
    .body(Vec::new())
    .expect("request");
    let text = client.request_text(req).await.expect("list");
    serde_json::from_str(&text).expect("a list")
}

async fn full_list(client: &kube::Client, n: usize) -> Duration {
    let start = Instant::now();
    let l = list(client, "").await;
    assert_eq!(l.items.len(), n);
    start.elapsed()
}

async fn paged_list(client: &kube::Client, n: usize) -> (Duration, usize) {
    let start = Instant::now();
    let (mut items, mut pages, mut next) = (0, 0, None::<String>);
    loop {
        let query = match &next {
            Some(c) => format!("limit={PAGE}&continue={c}"),
            None => format!("limit={PAGE}"),
        };
        let l = list(client, &query).await;
        items += l.items.len();
        pages += 1;
        next = l.metadata.next.filter(|c| !c.is_empty());
        if next.is_none() {
            break;
        }
    }
    assert_eq!(items, n);
    (start.elapsed(), pages)
}

fn main() {
    let n: usize = std::env::var("NICIP_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let server = Server::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let figures = rt.block_on(run(&server, n));
    let (peak, rss) = server.memory();
    let mut figures = figures;
    figures.push(("peak RSS (VmHWM), MiB", peak));
    figures.push(("RSS at the end, MiB", rss));
    println!(
        "kubesim at {n} NicIpClaims, {CLIENTS} kube-rs clients, nicip kubesim as a child process"
    );
    for (name, value) in &figures {
        println!("{name:<52} {value:>10.3}");
    }
    let json: serde_json::Map<String, Value> = figures
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .chain([("objects".to_string(), json!(n))])
        .collect();
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    std::fs::write(
        out.join("kubesim.json"),
        serde_json::to_string_pretty(&json).expect("json"),
    )
    .expect("write kubesim.json");
}

async fn run(server: &Server, n: usize) -> Vec<(&'static str, f64)> {
    let clients: Vec<kube::Client> = (0..CLIENTS).map(|_| server.client()).collect();
    let mut figures = Vec::new();

    let cpu = server.cpu_seconds();
    let creates = from_clients(&clients, n, |c, i| async move {
        let api: Api<NicIpClaim> = Api::namespaced(c, "default");
        api.create(&PostParams::default(), &claim(i))
            .await
            .expect("create");
    })
    .await;
    figures.push(("creates per second", creates));
    let cpu_creates = server.cpu_seconds() - cpu;
    figures.push(("server CPU per create, ms", cpu_creates * 1000.0 / n as f64));

    // A watch from now on: each status write's event, against when its answer came.
    let answered: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let api: Api<NicIpClaim> = Api::namespaced(clients[0].clone(), "default");
    let rv = {
        let l = list(&clients[0], "limit=1").await;
        drop(l);
        server_rv(&clients[0]).await
    };
    let mut events = api
        .watch(&WatchParams::default().timeout(290), &rv)
        .await
        .expect("watch")
        .boxed();
    let seen = {
        let answered = answered.clone();
        tokio::spawn(async move {
            let (mut count, mut max, mut sum) = (0usize, Duration::ZERO, Duration::ZERO);
            while count < n {
                let Some(Ok(WatchEvent::Modified(o))) = events.next().await else {
                    continue;
                };
                let at = answered
                    .lock()
                    .expect("lock")
                    .get(&o.metadata.name.unwrap_or_default())
                    .copied();
                // An event may arrive before its write's answer: no lag.
                let lag = at.map_or(Duration::ZERO, |t| t.elapsed());
                max = max.max(lag);
                sum += lag;
                count += 1;
            }
            (max, sum / n.max(1) as u32)
        })
    };
    let cpu = server.cpu_seconds();
    let applies = {
        let answered = answered.clone();
        from_clients(&clients, n, move |c, i| {
            let answered = answered.clone();
            async move {
                let api: Api<NicIpClaim> = Api::namespaced(c, "default");
                let name = format!("claim-{i:05}");
                api.patch_status(
                    &name,
                    &PatchParams::apply("nicip-controller").force(),
                    &Patch::Apply(status(1)),
                )
                .await
                .expect("status apply");
                answered.lock().expect("lock").insert(name, Instant::now());
            }
        })
        .await
    };
    figures.push(("status applies per second", applies));
    // The watch's events are sent during the applies: their cost is part of a write's.
    let cpu_applies = server.cpu_seconds() - cpu;
    figures.push((
        "server CPU per status apply, ms",
        cpu_applies * 1000.0 / n as f64,
    ));
    let (max_lag, mean_lag) = tokio::time::timeout(Duration::from_secs(60), seen)
        .await
        .expect("every event arrives")
        .expect("watch task");
    figures.push(("watch lag, mean, ms", ms(mean_lag)));
    figures.push(("watch lag, max, ms", ms(max_lag)));
    let (peak, _) = server.memory();
    figures.push(("peak RSS after creates and applies, MiB", peak));

    let client = &clients[0];
    full_list(client, n).await; // warm-up
    let mut full = Duration::MAX;
    for _ in 0..3 {
        full = full.min(full_list(client, n).await);
    }
    let mut paged = Duration::MAX;
    let mut pages = 0;
    for _ in 0..3 {
        let (d, p) = paged_list(client, n).await;
        paged = paged.min(d);
        pages = p;
    }
    figures.push(("one full list (best of 3), s", full.as_secs_f64()));
    figures.push(("all pages of 500 (best of 3), s", paged.as_secs_f64()));
    figures.push(("pages of 500", pages as f64));
    figures.push(("paged / full", paged.as_secs_f64() / full.as_secs_f64()));

    let (quiet, during) = writes_during_lists(&clients, n, &server.url).await;
    figures.push(("longest write, no list running, ms", ms(quiet)));
    figures.push(("longest write during full lists, ms", ms(during)));
    figures
}

async fn server_rv(client: &kube::Client) -> String {
    let req =
        axum::http::Request::get("/apis/nicip.io/v1alpha1/namespaces/default/nicipclaims?limit=1")
            .body(Vec::new())
            .expect("request");
    let v: Value =
        serde_json::from_str(&client.request_text(req).await.expect("list")).expect("json");
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The longest status write from one client while nothing else runs, and
/// while another client lists everything over and over.
async fn writes_during_lists(
    clients: &[kube::Client],
    n: usize,
    url: &str,
) -> (Duration, Duration) {
    let writer = clients[1].clone();
    let write = move |i: usize| {
        let api: Api<NicIpClaim> = Api::namespaced(writer.clone(), "default");
        async move {
            let start = Instant::now();
            api.patch_status(
                &format!("claim-{:05}", i % n),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"observedGeneration": 2 + i as i64}})),
            )
            .await
            .expect("status merge patch");
            start.elapsed()
        }
    };
    let mut quiet = Duration::ZERO;
    for i in 0..200 {
        quiet = quiet.max(write(i).await);
    }
    // The lister runs on a thread and runtime of its own, so that decoding
    // its 20 MB answers never delays the writer's: what is measured is the
    // server holding the write up.
    let listing = Arc::new(AtomicBool::new(true));
    let lister = {
        let (url, listing) = (
            url.parse::<axum::http::Uri>().expect("url"),
            listing.clone(),
        );
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("lister runtime");
            rt.block_on(async move {
                let client = kube::Client::try_from(kube::Config::new(url)).expect("client");
                for _ in 0..5 {
                    full_list(&client, n).await;
                }
            });
            listing.store(false, Ordering::Relaxed);
        })
    };
    let mut during = Duration::ZERO;
    let mut i = 200;
    while listing.load(Ordering::Relaxed) {
        during = during.max(write(i).await);
        i += 1;
    }
    lister.join().expect("lister");
    (quiet, during)
}
