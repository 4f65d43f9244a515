//! Throughput of the simulated cloud (`cargo bench --bench cloudsim`).
//!
//! The simulator runs on one core (a current-thread runtime on its own
//! thread); signed requests come from 32 concurrent clients over keep-alive
//! connections on another thread. Prints requests per second per scenario.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nicip::cloudsim::{self, World};
use nicip::signing::{self, tc3, zc2};
use serde_json::{Value, json};

const NICS: usize = 512;
const CLIENTS: usize = 32;
const RUN_FOR: Duration = Duration::from_secs(3);

fn world_yaml() -> String {
    let mut y = String::from(
        "accounts:\n  zenlayer: [{keyId: bench, keyPassword: bench-secret}]\n  tencent: [{secretId: AKIDbench, secretKey: bench-secret}]\n\
         zenlayer:\n  asyncLatencyMs: 0\n  regions: [{id: r1, zones: [r1a]}]\n  vpcs: [{id: vpc-1, region: r1}]\n\
         \x20 subnets: [{id: subnet-1, vpc: vpc-1, cidr: 10.0.0.0/16}]\n  nics:\n",
    );
    for i in 0..NICS {
        let _ = writeln!(y, "    - {{id: nic-{i}, subnet: subnet-1, ipQuota: 50}}");
    }
    y.push_str(
        "tencent:\n  asyncLatencyMs: 0\n  rateLimits: {AssignPrivateIpAddresses: 0, UnassignPrivateIpAddresses: 0, DescribeNetworkInterfaces: 0}\n\
         \x20 regions: [{id: ap-guangzhou, zones: [ap-guangzhou-3]}]\n  vpcs: [{id: vpc-bench001, region: ap-guangzhou}]\n\
         \x20 subnets: [{id: subnet-bench001, vpc: vpc-bench001, zone: ap-guangzhou-3, cidr: 172.16.0.0/16}]\n  nics:\n",
    );
    for i in 0..NICS {
        let _ = writeln!(
            y,
            "    - {{id: eni-{i:08}, subnet: subnet-bench001, ipQuota: 50}}"
        );
    }
    y
}

struct Target {
    http: reqwest::Client,
    base: String,
    host: String,
}

impl Target {
    async fn zenlayer(&self, action: &str, body: Value) -> Value {
        let body = body.to_string();
        let ts = jiff::Timestamp::now().as_second();
        let sig = zc2::signature(
            "bench-secret",
            ts,
            "application/json",
            &self.host,
            body.as_bytes(),
        );
        let resp = self
            .http
            .post(format!("{}/api/v2/zec", self.base))
            .header("Content-Type", "application/json")
            .header("X-ZC-Action", action)
            .header("X-ZC-Timestamp", ts.to_string())
            .header("Authorization", zc2::authorization("bench", &sig))
            .body(body)
            .send()
            .await
            .expect("request");
        resp.json().await.expect("JSON")
    }

    async fn tencent(&self, action: &str, body: Value) -> Value {
        let body = body.to_string();
        let ts = jiff::Timestamp::now().as_second();
        let headers = [
            ("content-type", "application/json"),
            ("host", self.host.as_str()),
        ];
        let payload = signing::sha256_hex(body.as_bytes());
        let req = tc3::Request {
            method: "POST",
            canonical_query: "",
            headers: &headers,
            payload_hash: &payload,
            service: "vpc",
            timestamp: ts,
        };
        let sig = tc3::signature("bench-secret", &req).expect("signature");
        let resp = self
            .http
            .post(format!("{}/", self.base))
            .header("Content-Type", "application/json")
            .header("X-TC-Action", action)
            .header("X-TC-Version", "2017-03-12")
            .header("X-TC-Region", "ap-guangzhou")
            .header("X-TC-Timestamp", ts.to_string())
            .header(
                "Authorization",
                tc3::authorization("AKIDbench", &req, &sig).expect("authorization"),
            )
            .body(body)
            .send()
            .await
            .expect("request");
        resp.json().await.expect("JSON")
    }
}

/// Runs `step` (which makes `per_step` requests) from every client for
/// `RUN_FOR`, returns requests per second and the number of error answers.
async fn measure<F, Fut>(target: Arc<Target>, per_step: u64, step: F) -> (f64, u64)
where
    F: Fn(Arc<Target>, usize, u64) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (target, done, errors) = (target.clone(), done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut round = 0;
            while start.elapsed() < RUN_FOR {
                if !step(target.clone(), client, round).await {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(per_step, Ordering::Relaxed);
                round += 1;
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let secs = start.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / secs,
        errors.load(Ordering::Relaxed),
    )
}

fn nic_for(client: usize, round: u64) -> usize {
    (client + CLIENTS * (round as usize % (NICS / CLIENTS))) % NICS
}

fn main() {
    let world = World::from_yaml(&world_yaml()).expect("bench world");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let sim = cloudsim::start(world, "127.0.0.1:0".parse().expect("addr"))
                .await
                .expect("start");
            addr_tx.send(sim.addr()).expect("send addr");
            let _ = stop_rx.await;
            sim.shutdown().await;
        });
    });
    let addr = addr_rx.recv().expect("simulator address");
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    clients.block_on(async move {
        let target = Arc::new(Target {
            http: reqwest::Client::builder().pool_max_idle_per_host(CLIENTS).build().expect("client"),
            base: format!("http://{addr}"),
            host: addr.to_string(),
        });
        println!("cloudsim throughput: simulator on one core, {CLIENTS} clients, {NICS} NICs per cloud, {}s per scenario", RUN_FOR.as_secs());
        let scenarios: Vec<(&str, (f64, u64))> = vec![
            (
                "zenlayer DescribeNetworkInterfaces (1 id)",
                measure(target.clone(), 1, |t, c, r| async move {
                    let v = t.zenlayer("DescribeNetworkInterfaces", json!({"nicIds": [format!("nic-{}", nic_for(c, r))]})).await;
                    v["response"]["totalCount"] == 1
                })
                .await,
            ),
            (
                "zenlayer BatchAssign (count 1) + Unassign",
                measure(target.clone(), 2, |t, c, r| async move {
                    let nic = format!("nic-{}", nic_for(c, r));
                    let v = t.zenlayer("BatchAssignNetworkInterfaceIpv4", json!({"nicId": nic, "ipAddressCount": 1})).await;
                    let Some(ip) = v["response"]["ipAddresses"][0].as_str().map(str::to_string) else { return false };
                    let v = t.zenlayer("UnassignNetworkInterfaceIpv4", json!({"nicId": nic, "ipAddresses": [ip]})).await;
                    v.get("code").is_none()
                })
                .await,
            ),
            (
                "tencent DescribeNetworkInterfaces (1 id)",
                measure(target.clone(), 1, |t, c, r| async move {
                    let v = t.tencent("DescribeNetworkInterfaces", json!({"NetworkInterfaceIds": [format!("eni-{:08}", nic_for(c, r))]})).await;
                    v["Response"]["TotalCount"] == 1
                })
                .await,
            ),
            (
                "tencent AssignPrivateIpAddresses (count 1) + Unassign",
                measure(target.clone(), 2, |t, c, r| async move {
                    let nic = format!("eni-{:08}", nic_for(c, r));
                    let v = t.tencent("AssignPrivateIpAddresses", json!({"NetworkInterfaceId": nic, "SecondaryPrivateIpAddressCount": 1})).await;
                    let Some(ip) = v["Response"]["PrivateIpAddressSet"][0]["PrivateIpAddress"].as_str().map(str::to_string) else { return false };
                    let v = t.tencent("UnassignPrivateIpAddresses", json!({"NetworkInterfaceId": nic, "PrivateIpAddresses": [{"PrivateIpAddress": ip}]})).await;
                    v["Response"].get("Error").is_none()
                })
                .await,
            ),
        ];
        for (name, (rps, errors)) in scenarios {
            println!("{name:<55} {rps:>9.0} requests/s  ({errors} failed steps)");
        }
    });
    let _ = stop_tx.send(());
    server.join().expect("server thread");
}
