//! The simulated cloud over real HTTP: every rule and error code of the three
//! protocols, signature verification (vectors computed with the vendors'
//! official SDKs and the examples of their signature pages; tampering, wrong
//! keys, stale timestamps), async tasks, ClientToken,
//! rate limits, faults, audit log, control endpoints, and the official
//! Python SDKs driven against it.

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use nicip::cloudsim::{self, Fault, Protocol, RunningSim, World};
use nicip::signing::{self, query, tc3, zc2};
use serde_json::{Value, json};

const WORLD: &str = include_str!("support/cloudsim_world.yaml");
const ZL_KEY: (&str, &str) = ("zl-test-key", "zl-test-password");
const TC_KEY: (&str, &str) = ("AKIDtestkey0001", "tc-test-secret-key");

async fn sim_from(yaml: &str) -> RunningSim {
    let world = World::from_yaml(yaml).expect("world file");
    cloudsim::start(world, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("start")
}

async fn sim() -> RunningSim {
    sim_from(WORLD).await
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// A control endpoint's JSON answer.
async fn sim_get(sim: &RunningSim, path: &str) -> Value {
    http()
        .get(format!("{}{path}", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body: Value = resp.json().await.expect("JSON body");
    if status != 404 {
        assert_eq!(ct, "application/json", "exact content type");
    }
    (status, body)
}

// ---------------------------------------------------------------- Zenlayer

struct ZlReq<'a> {
    action: &'a str,
    body: String,
    key: (&'a str, &'a str),
    timestamp: i64,
    host: Option<String>,
}

async fn zl_send(sim: &RunningSim, r: ZlReq<'_>) -> (u16, Value) {
    let host = r.host.unwrap_or_else(|| sim.addr().to_string());
    let sig = zc2::signature(
        r.key.1,
        r.timestamp,
        "application/json",
        &host,
        r.body.as_bytes(),
    );
    let resp = http()
        .post(format!("{}/api/v2/zec", sim.base_url()))
        .header("Host", host)
        .header("Content-Type", "application/json")
        .header("X-ZC-Action", r.action)
        .header("X-ZC-Version", "2025-09-01")
        .header("X-ZC-Timestamp", r.timestamp.to_string())
        .header("X-ZC-Signature-Method", "ZC2-HMAC-SHA256")
        .header("Authorization", zc2::authorization(r.key.0, &sig))
        .body(r.body)
        .send()
        .await
        .expect("send");
    json_of(resp).await
}

async fn zl(sim: &RunningSim, action: &str, body: Value) -> (u16, Value) {
    zl_send(
        sim,
        ZlReq {
            action,
            body: body.to_string(),
            key: ZL_KEY,
            timestamp: now(),
            host: None,
        },
    )
    .await
}

/// Asserts a Zenlayer error envelope.
fn zl_err(resp: &(u16, Value), status: u16, code: &str) {
    assert_eq!(resp.1["code"], code, "{resp:?}");
    assert_eq!(resp.0, status, "{resp:?}");
    assert!(
        resp.1["requestId"]
            .as_str()
            .is_some_and(|r| r.starts_with('T')),
        "{resp:?}"
    );
    assert!(resp.1.get("response").is_none());
}

fn zl_ok(resp: &(u16, Value)) -> &Value {
    assert_eq!(resp.0, 200, "{resp:?}");
    assert_eq!(
        resp.1["requestId"], resp.1["response"]["requestId"],
        "{resp:?}"
    );
    &resp.1["response"]
}

fn secondaries(sim: &RunningSim, nic: &str) -> Vec<Ipv4Addr> {
    let w = sim.world();
    let n = w
        .zenlayer
        .nics
        .get(nic)
        .or_else(|| w.tencent.nics.get(nic))
        .expect("nic");
    n.secondary_ipv4.iter().map(|e| e.address).collect()
}

async fn poll<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn zenlayer_assign_describe_unassign() {
    let sim = sim().await;
    let r = zl(
        &sim,
        "BatchAssignNetworkInterfaceIpv4",
        json!({"nicId": "nic-zl-a", "ipAddresses": ["10.0.0.30", "10.0.0.31"]}),
    )
    .await;
    assert_eq!(zl_ok(&r)["ipAddresses"], json!(["10.0.0.30", "10.0.0.31"]));
    assert_eq!(
        secondaries(&sim, "nic-zl-a"),
        [
            "10.0.0.30".parse::<Ipv4Addr>().unwrap(),
            "10.0.0.31".parse().unwrap()
        ]
    );

    // The list wins over the count.
    let r = zl(
        &sim,
        "BatchAssignNetworkInterfaceIpv4",
        json!({"nicId": "nic-zl-a", "ipAddresses": ["10.0.0.32"], "ipAddressCount": 2}),
    )
    .await;
    assert_eq!(zl_ok(&r)["ipAddresses"], json!(["10.0.0.32"]));

    // A count picks free addresses of the subnet (not the gateway .1, not used ones).
    let r = zl(
        &sim,
        "BatchAssignNetworkInterfaceIpv4",
        json!({"nicId": "nic-zl-b", "ipAddressCount": 2}),
    )
    .await;
    let picked = zl_ok(&r)["ipAddresses"].as_array().unwrap().clone();
    // (.2 is nic-zl-pending's primary, chosen at load time.)
    assert_eq!(picked, vec![json!("10.0.0.3"), json!("10.0.0.4")]);

    let r = zl(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"nicIds": ["nic-zl-a", "nic-zl-missing"]}),
    )
    .await;
    let resp = zl_ok(&r);
    assert_eq!(resp["totalCount"], 1);
    let nic = &resp["dataSet"][0];
    assert_eq!(nic["nicId"], "nic-zl-a");
    assert_eq!(nic["status"], "AVAILABLE");
    assert_eq!(nic["primaryIpv4"], "10.0.0.10");
    assert_eq!(
        nic["secondaryIpv4s"],
        json!(["10.0.0.30", "10.0.0.31", "10.0.0.32"])
    );
    assert_eq!(
        nic["privateIpList"],
        json!(["10.0.0.10", "10.0.0.30", "10.0.0.31", "10.0.0.32"])
    );
    assert_eq!(nic["regionId"], "asia-east-1");

    let r = zl(
        &sim,
        "UnassignNetworkInterfaceIpv4",
        json!({"nicId": "nic-zl-a", "ipAddresses": ["10.0.0.30", "10.0.0.32"]}),
    )
    .await;
    zl_ok(&r);
    assert_eq!(
        secondaries(&sim, "nic-zl-a"),
        ["10.0.0.31".parse::<Ipv4Addr>().unwrap()]
    );
    // The deprecated 2024-04-01 spelling and single-address field work too.
    let r = zl(
        &sim,
        "UnAssignNetworkInterfaceIpv4",
        json!({"nicId": "nic-zl-a", "ipAddress": "10.0.0.31"}),
    )
    .await;
    zl_ok(&r);
    assert!(secondaries(&sim, "nic-zl-a").is_empty());
    // Released addresses can be assigned again.
    let r = zl(
        &sim,
        "AssignNetworkInterfaceIpv4",
        json!({"nicId": "nic-zl-b", "ipAddress": "10.0.0.30"}),
    )
    .await;
    zl_ok(&r);
}

#[tokio::test]
async fn zenlayer_assign_rules() {
    let sim = sim().await;
    let cases: &[(&str, Value, u16, &str)] = &[
        (
            "out of range",
            json!({"nicId": "nic-zl-a", "ipAddresses": ["10.0.1.5"]}),
            400,
            "INVALID_IP_OUT_OF_RANGE",
        ),
        (
            "network",
            json!({"nicId": "nic-zl-a", "ipAddresses": ["10.0.0.0"]}),
            400,
            "INVALID_IP_NETWORK_ADDRESS",
        ),
        (
            "broadcast",
            json!({"nicId": "nic-zl-a", "ipAddresses": ["10.0.0.255"]}),
            400,
            "INVALID_IP_BROADCAST_ADDRESS",
        ),
        (
            "gateway",
            json!({"nicId": "nic-zl-a", "ipAddresses": ["10.0.0.1"]}),
            400,
            "INVALID_IP_FIRST_ADDRESS",
        ),
        (
            "other NIC's primary",
            json!({"nicId": "nic-zl-a", "ipAddresses": ["10.0.0.20"]}),
            409,
            "INVALID_SUBNET_PRIVATE_IPV4_IN_USED",
        ),
        (
            "other NIC's secondary",
            json!({"nicId": "nic-zl-a", "ipAddresses": ["10.0.0.21"]}),
            409,
            "INVALID_SUBNET_PRIVATE_IPV4_IN_USED",
        ),
        (
            "own primary",
            json!({"nicId": "nic-zl-a", "ipAddresses": ["10.0.0.10"]}),
            409,
            "INVALID_SUBNET_PRIVATE_IPV4_IN_USED",
        ),
        (
            "malformed",
            json!({"nicId": "nic-zl-a", "ipAddresses": ["10.0.0.300"]}),
            400,
            "INVALID_PARAMETER_PRIVATE_IP_ILLEGAL",
        ),
        (
            "public",
            json!({"nicId": "nic-zl-a", "ipAddresses": ["8.8.8.8"]}),
            400,
            "INVALID_PARAMETER_PRIVATE_IP_ILLEGAL",
        ),
        (
            "quota (5 incl. primary)",
            json!({"nicId": "nic-zl-a", "ipAddressCount": 5}),
            400,
            "OPERATION_DENIED_NIC_ATTACH_LAN_IP_EXCEED_LIMIT",
        ),
        (
            "absurd count",
            json!({"nicId": "nic-zl-a", "ipAddressCount": i64::MAX}),
            400,
            "OPERATION_DENIED_NIC_ATTACH_LAN_IP_EXCEED_LIMIT",
        ),
        (
            "subnet exhausted",
            json!({"nicId": "nic-zl-tiny", "ipAddressCount": 5}),
            400,
            "OPERATION_DENIED_SUBNET_IP_INSUFFICIENT",
        ),
        (
            "NIC status",
            json!({"nicId": "nic-zl-pending", "ipAddressCount": 1}),
            400,
            "INVALID_NIC_STATUS",
        ),
        (
            "IPv6-only subnet",
            json!({"nicId": "nic-zl-v6only", "ipAddressCount": 1}),
            400,
            "OPERATION_DENIED_SUBNET_TYPE_NOT_SUPPORT_IPV4",
        ),
        (
            "no NIC",
            json!({"nicId": "nic-zl-nope", "ipAddressCount": 1}),
            404,
            "INVALID_NIC_NOT_FOUND",
        ),
        (
            "neither list nor count",
            json!({"nicId": "nic-zl-a"}),
            400,
            "INVALID_PARAMETER",
        ),
        (
            "count zero",
            json!({"nicId": "nic-zl-a", "ipAddressCount": 0}),
            400,
            "INVALID_PARAMETER",
        ),
        (
            "wrong type",
            json!({"nicId": "nic-zl-a", "ipAddresses": "10.0.0.40"}),
            400,
            "INVALID_PARAMETER",
        ),
    ];
    for (what, body, status, code) in cases {
        let r = zl(&sim, "BatchAssignNetworkInterfaceIpv4", body.clone()).await;
        assert_eq!(
            (r.0, r.1["code"].as_str().unwrap_or("")),
            (*status, *code),
            "{what}: {r:?}"
        );
    }
}

#[tokio::test]
async fn zenlayer_batches_are_all_or_nothing_and_subnets_run_out() {
    let sim = sim().await;
    // One bad address fails the whole batch: nothing was assigned.
    let r = zl(
        &sim,
        "BatchAssignNetworkInterfaceIpv4",
        json!({"nicId": "nic-zl-a", "ipAddresses": ["10.0.0.40", "10.0.0.255"]}),
    )
    .await;
    zl_err(&r, 400, "INVALID_IP_BROADCAST_ADDRESS");
    assert!(secondaries(&sim, "nic-zl-a").is_empty());
    // The tiny /29 has 5 usable addresses; the NIC's primary took one.
    let r = zl(
        &sim,
        "BatchAssignNetworkInterfaceIpv4",
        json!({"nicId": "nic-zl-tiny", "ipAddressCount": 4}),
    )
    .await;
    assert_eq!(zl_ok(&r)["ipAddresses"].as_array().unwrap().len(), 4);
    let r = zl(
        &sim,
        "BatchAssignNetworkInterfaceIpv4",
        json!({"nicId": "nic-zl-tiny", "ipAddressCount": 1}),
    )
    .await;
    zl_err(&r, 400, "OPERATION_DENIED_SUBNET_IP_INSUFFICIENT");

    let r = zl(
        &sim,
        "UnassignNetworkInterfaceIpv4",
        json!({"nicId": "nic-zl-b", "ipAddresses": ["10.0.0.20"]}),
    )
    .await;
    zl_err(&r, 409, "INVALID_NIC_PRIMARY_IP_CANT_DETACH");
    let r = zl(
        &sim,
        "UnassignNetworkInterfaceIpv4",
        json!({"nicId": "nic-zl-b", "ipAddresses": ["10.0.0.99"]}),
    )
    .await;
    zl_err(&r, 404, "OPERATION_FAILED_RESOURCE_NOT_FOUND");
    let r = zl(
        &sim,
        "UnassignNetworkInterfaceIpv4",
        json!({"nicId": "nic-zl-nope", "ipAddresses": ["10.0.0.99"]}),
    )
    .await;
    zl_err(&r, 404, "INVALID_NIC_NOT_FOUND");
    let r = zl(
        &sim,
        "UnassignNetworkInterfaceIpv4",
        json!({"nicId": "nic-zl-pending", "ipAddresses": ["10.0.0.99"]}),
    )
    .await;
    zl_err(&r, 400, "INVALID_NIC_STATUS");
}

#[tokio::test]
async fn zenlayer_ipv6() {
    let sim = sim().await;
    let r = zl(
        &sim,
        "AssignNetworkInterfaceIpv6",
        json!({"nicId": "nic-zl-dual"}),
    )
    .await;
    zl_ok(&r);
    let r = zl(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"nicIds": ["nic-zl-dual"]}),
    )
    .await;
    let nic = &zl_ok(&r)["dataSet"][0];
    assert_eq!(nic["primaryIpv6"], "2001:db8:1::1");
    assert_eq!(nic["ipv6Cidr"], "2001:db8:1::/96");
    assert_eq!(nic["nicSubnetType"], "IPv4_IPv6");
    for (nic, status, code) in [
        ("nic-zl-dual", 400, "INVALID_NIC_IPV6_EXISTS"),
        ("nic-zl-a", 400, "INVALID_SUBNET_IPSTACK_NOT_SUPPORT"),
        // An IPv6-only subnet's NIC is not an IPv4 NIC in an IPv4_IPv6 subnet either.
        ("nic-zl-v6only", 400, "INVALID_SUBNET_IPSTACK_NOT_SUPPORT"),
        ("nic-zl-nope", 404, "INVALID_NIC_NOT_FOUND"),
        ("nic-zl-pending", 400, "INVALID_NIC_STATUS"),
    ] {
        let r = zl(&sim, "AssignNetworkInterfaceIpv6", json!({"nicId": nic})).await;
        zl_err(&r, status, code);
    }
    let r = zl(
        &sim,
        "UnassignNetworkInterfaceIpv6",
        json!({"nicId": "nic-zl-dual"}),
    )
    .await;
    zl_ok(&r);
    assert!(sim.world().zenlayer.nics["nic-zl-dual"].ipv6.is_empty());
    let r = zl(
        &sim,
        "UnassignNetworkInterfaceIpv6",
        json!({"nicId": "nic-zl-dual"}),
    )
    .await;
    zl_err(&r, 404, "OPERATION_FAILED_RESOURCE_NOT_FOUND");

    // Public IPv6 needs its billing fields.
    let cases: &[(Value, &str)] = &[
        (
            json!({}),
            "OPERATION_DENIED_INTERNET_CHARGE_TYPE_NOT_SUPPORT",
        ),
        (
            json!({"internetChargeType": "ByMagic", "bandwidth": 10}),
            "OPERATION_DENIED_INTERNET_CHARGE_TYPE_NOT_SUPPORT",
        ),
        (
            json!({"internetChargeType": "ByBandwidth"}),
            "INVALID_PARAMETER_BANDWIDTH_ERROR",
        ),
        (
            json!({"internetChargeType": "ByBandwidth", "bandwidth": 0}),
            "INVALID_PARAMETER_BANDWIDTH_ERROR",
        ),
        (
            json!({"internetChargeType": "ByBandwidth", "bandwidth": 10001}),
            "INVALID_PARAMETER_BANDWIDTH_EXCEED",
        ),
        (
            json!({"internetChargeType": "ByTrafficPackage", "bandwidth": 10}),
            "INVALID_PARAMETER_FLOW_TRAFFIC_PACKAGE",
        ),
        (
            json!({"internetChargeType": "ByTrafficPackage", "bandwidth": 10, "packageSize": 0.15}),
            "INVALID_PARAMETER_FLOW_TRAFFIC_PACKAGE",
        ),
        (
            json!({"internetChargeType": "ByTrafficPackage", "bandwidth": 10, "packageSize": -1.0}),
            "INVALID_PARAMETER_FLOW_TRAFFIC_PACKAGE",
        ),
        (
            json!({"internetChargeType": "ByTrafficPackage", "bandwidth": 10, "packageSize": 1000.1}),
            "INVALID_PARAMETER_TRAFFIC_PACKAGE_EXCEED",
        ),
        (
            json!({"internetChargeType": "BandwidthCluster", "bandwidth": 10}),
            "INVALID_PARAMETER",
        ),
    ];
    for (extra, code) in cases {
        let mut body = extra.clone();
        body["nicId"] = json!("nic-zl-pub");
        let r = zl(&sim, "AssignNetworkInterfaceIpv6", body.clone()).await;
        zl_err(&r, 400, code);
    }
    assert!(sim.world().zenlayer.nics["nic-zl-pub"].ipv6.is_empty());
    let body = json!({"nicId": "nic-zl-pub", "internetChargeType": "ByTrafficPackage", "bandwidth": 100, "packageSize": 1.2});
    zl_ok(&zl(&sim, "AssignNetworkInterfaceIpv6", body).await);
    assert_eq!(sim.world().zenlayer.nics["nic-zl-pub"].ipv6.len(), 1);
    sim.shutdown().await;

    // The seed's other code for the same rule, chosen in the world file.
    let sim = sim_from(&WORLD.replace(
        "accounts:\n",
        "settings: {zenlayerIpv6ExistsCode: OPERATION_DENIED_NIC_EXIST_IPV6}\naccounts:\n",
    ))
    .await;
    let body = json!({"nicId": "nic-zl-dual"});
    zl_ok(&zl(&sim, "AssignNetworkInterfaceIpv6", body.clone()).await);
    let r = zl(&sim, "AssignNetworkInterfaceIpv6", body).await;
    zl_err(&r, 400, "OPERATION_DENIED_NIC_EXIST_IPV6");
    assert_eq!(sim.world().zenlayer.nics["nic-zl-dual"].ipv6.len(), 1);
}

#[tokio::test]
async fn held_async_work_stays_in_flight_until_released() {
    let sim = sim().await;
    let hold = |held: bool| {
        let url = format!("{}/_sim/async", sim.base_url());
        async move {
            http()
                .put(url)
                .json(&json!({"held": held}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(hold(true).await, 200);
    zl_ok(
        &zl(
            &sim,
            "AttachNetworkInterface",
            json!({"nicId": "nic-zl-a", "instanceId": "ins-zl-run"}),
        )
        .await,
    );
    // Well past the world's 500 ms latency, the attachment is still in flight.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(sim.world().zenlayer.nics["nic-zl-a"].status, "ATTACHING");
    assert_eq!(hold(false).await, 200);
    assert_eq!(sim.world().zenlayer.nics["nic-zl-a"].status, "USED");
    let bad = http()
        .put(format!("{}/_sim/async", sim.base_url()))
        .json(&json!({"hold": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn zenlayer_attach_detach() {
    let sim = sim().await;
    sim.hold_async(true);
    let r = zl(
        &sim,
        "AttachNetworkInterface",
        json!({"nicId": "nic-zl-a", "instanceId": "ins-zl-run"}),
    )
    .await;
    zl_ok(&r);
    let r = zl(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"nicIds": ["nic-zl-a"]}),
    )
    .await;
    assert_eq!(zl_ok(&r)["dataSet"][0]["status"], "ATTACHING");
    // While attaching, the NIC cannot be attached again or detached.
    let r = zl(
        &sim,
        "AttachNetworkInterface",
        json!({"nicId": "nic-zl-a", "instanceId": "ins-zl-run"}),
    )
    .await;
    zl_err(&r, 400, "INVALID_NIC_ATTACHED");
    sim.hold_async(false);
    poll("nic-zl-a USED", || {
        sim.world().zenlayer.nics["nic-zl-a"].status == "USED"
    })
    .await;
    let r = zl(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"instanceId": "ins-zl-run"}),
    )
    .await;
    let ids: Vec<&str> = zl_ok(&r)["dataSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["nicId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["nic-zl-a", "nic-zl-primary"]);
    // Assignment works on a USED NIC.
    zl_ok(
        &zl(
            &sim,
            "BatchAssignNetworkInterfaceIpv4",
            json!({"nicId": "nic-zl-a", "ipAddressCount": 1}),
        )
        .await,
    );

    let cases: &[(&str, &str, u16, &str)] = &[
        ("nic-zl-a", "ins-zl-run", 400, "INVALID_NIC_ATTACHED"),
        ("nic-zl-b", "ins-zl-nope", 404, "INVALID_INSTANCE_NOT_FOUND"),
        ("nic-zl-nope", "ins-zl-run", 404, "INVALID_NIC_NOT_FOUND"),
        (
            "nic-zl-b",
            "ins-zl-eu",
            409,
            "INVALID_NIC_INSTANCE_REGION_MISMATCH",
        ),
        (
            "nic-zl-b",
            "ins-zl-stopped",
            400,
            "OPERATION_DENIED_INSTANCE_STATUS_NOT_SUPPORT",
        ),
        ("nic-zl-pending", "ins-zl-run", 400, "INVALID_NIC_STATUS"),
    ];
    for (nic, ins, status, code) in cases {
        let r = zl(
            &sim,
            "AttachNetworkInterface",
            json!({"nicId": nic, "instanceId": ins}),
        )
        .await;
        zl_err(&r, *status, code);
    }
    let r = zl(&sim, "DetachNetworkInterface", json!({"nicId": "nic-zl-b"})).await;
    zl_err(&r, 403, "OPERATION_DENIED_NIC_NOT_EXIST_INSTANCE");
    let r = zl(
        &sim,
        "DetachNetworkInterface",
        json!({"nicId": "nic-zl-primary"}),
    )
    .await;
    zl_err(&r, 409, "INVALID_NIC_PRIMARY_CANT_DETACH");
    let r = zl(
        &sim,
        "DetachNetworkInterface",
        json!({"nicId": "nic-zl-nope"}),
    )
    .await;
    zl_err(&r, 404, "INVALID_NIC_NOT_FOUND");
    sim.hold_async(true);
    zl_ok(&zl(&sim, "DetachNetworkInterface", json!({"nicId": "nic-zl-a"})).await);
    assert_eq!(sim.world().zenlayer.nics["nic-zl-a"].status, "DETACHING");
    sim.hold_async(false);
    poll("nic-zl-a AVAILABLE", || {
        sim.world().zenlayer.nics["nic-zl-a"].status == "AVAILABLE"
    })
    .await;
    assert_eq!(sim.world().zenlayer.nics["nic-zl-a"].instance_id, None);

    // Instance state is checked on detach too; an instance can be stopped at run time.
    zl_ok(
        &zl(
            &sim,
            "AttachNetworkInterface",
            json!({"nicId": "nic-zl-a", "instanceId": "ins-zl-run"}),
        )
        .await,
    );
    poll("attached again", || {
        sim.world().zenlayer.nics["nic-zl-a"].status == "USED"
    })
    .await;
    sim.edit_world(|w| {
        w.zenlayer.instances.get_mut("ins-zl-run").unwrap().status = "STOPPED".into()
    });
    let r = zl(&sim, "DetachNetworkInterface", json!({"nicId": "nic-zl-a"})).await;
    zl_err(&r, 400, "OPERATION_DENIED_INSTANCE_STATUS_NOT_SUPPORT");
}

#[tokio::test]
async fn zenlayer_describe_paging_and_other_reads() {
    let sim = sim().await;
    let r = zl(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"pageSize": 4, "pageNum": 3}),
    )
    .await;
    let resp = zl_ok(&r);
    assert_eq!(resp["totalCount"], 9);
    assert_eq!(resp["dataSet"].as_array().unwrap().len(), 1);
    let r = zl(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"subnetId": "subnet-zl-v4", "status": "PENDING"}),
    )
    .await;
    assert_eq!(zl_ok(&r)["dataSet"][0]["nicId"], "nic-zl-pending");
    let mut ids: Vec<String> = (0..99).map(|i| format!("nic-{i}")).collect();
    ids.push("nic-zl-a".into());
    let r = zl(&sim, "DescribeNetworkInterfaces", json!({"nicIds": ids})).await;
    assert_eq!(zl_ok(&r)["totalCount"], 1, "100 ids are allowed: {r:?}");
    ids.push("nic-100".into());
    zl_err(
        &zl(&sim, "DescribeNetworkInterfaces", json!({"nicIds": ids})).await,
        400,
        "INVALID_PARAMETER",
    );
    zl_err(
        &zl(&sim, "DescribeNetworkInterfaces", json!({"pageSize": 1001})).await,
        400,
        "INVALID_PARAMETER",
    );

    let r = zl(
        &sim,
        "DescribeInstances",
        json!({"instanceIds": ["ins-zl-run"]}),
    )
    .await;
    let ins = &zl_ok(&r)["dataSet"][0];
    assert_eq!(ins["status"], "RUNNING");
    assert_eq!(ins["zoneId"], "asia-east-1a");
    assert_eq!(ins["nics"][0]["nicId"], "nic-zl-primary");
    let r = zl(
        &sim,
        "DescribeInstancesStatus",
        json!({"instanceIds": ["ins-zl-stopped"]}),
    )
    .await;
    assert_eq!(
        zl_ok(&r)["dataSet"],
        json!([{"instanceId": "ins-zl-stopped", "instanceStatus": "STOPPED"}])
    );
    let r = zl(
        &sim,
        "DescribeSubnets",
        json!({"subnetIds": ["subnet-zl-dual"]}),
    )
    .await;
    let s = &zl_ok(&r)["dataSet"][0];
    assert_eq!(
        (
            s["cidrBlock"].as_str(),
            s["stackType"].as_str(),
            s["gatewayIpAddress"].as_str()
        ),
        (Some("10.1.0.0/24"), Some("IPv4_IPv6"), Some("10.1.0.1"))
    );
    assert_eq!(s["ipv6Type"], "Private");
    let r = zl(&sim, "DescribeNetworkInterfaceRegions", json!({})).await;
    assert_eq!(zl_ok(&r)["regionIds"], json!(["asia-east-1", "eu-west-1"]));
    zl_err(
        &zl(&sim, "LaunchRockets", json!({})).await,
        400,
        "SIMULATOR_INVALID_ACTION",
    );
}

/// ZC2-HMAC-SHA256 vectors computed with the official Python SDK's signer
/// (`zenlayercloud-sdk-python` 2.0.77; the algorithm is in Zenlayer's API
/// reference, <https://docs.console.zenlayer.com/api-reference/>),
/// sent verbatim (Host header included) to a simulator with a wide timestamp window: the signature is
/// accepted, so the answer is about the action, not authentication.
#[tokio::test]
async fn zenlayer_signature_vectors() {
    let yaml = r#"
settings: {timestampWindowSeconds: 2000000000}
accounts:
  zenlayer:
    - {keyId: AKIDTESTEXAMPLE0001, keyPassword: TestSecretKeyExample/0001+abc}
    - {keyId: my-access-key-id, keyPassword: my-access-key-password}
    - {keyId: sim-key-id, keyPassword: sim-key-secret}
    - {keyId: 0D9UtpyKYcHxms5v, keyPassword: Gu5t9xGARNpq86cd98joQYCN3}
zenlayer:
  regions: [{id: r1, zones: [r1a]}]
"#;
    let sim = sim_from(yaml).await;
    let vectors: &[(&str, i64, &str, &str, &str, &str, &str)] = &[
        (
            "AKIDTESTEXAMPLE0001",
            1700000000,
            "BatchAssignNetworkInterfaceIpv4",
            "console.zenlayer.com",
            "application/json",
            r#"{"nicId": "nic-abc123", "ipAddresses": ["10.0.0.3", "10.0.0.4"]}"#,
            "d84fca4c983a98deb913802d791813d1cc800f28f4b82b4e0e884d3b0adedf49",
        ),
        (
            "AKIDTESTEXAMPLE0001",
            1735689600,
            "DescribeNetworkInterfaces",
            "console.zenlayer.com",
            "application/json",
            r#"{"nicIds": ["nic-abc123"], "pageSize": 100, "pageNum": 1}"#,
            "2b4242c5dcc1c7b9265182a900679d55e436a888ea003d89f966adf394f81de0",
        ),
        (
            "my-access-key-id",
            1712345678,
            "DescribeNetworkInterfaceRegions",
            "127.0.0.1:18080",
            "application/json",
            "{}",
            "194d15aec7044f135dfff6d18e0eef57ead48f7c03d46589e58e989dd76c89f1",
        ),
        (
            "AKIDTESTEXAMPLE0001",
            1700000000,
            "BatchAssignNetworkInterfaceIpv4",
            "console.zenlayer.com",
            "application/json",
            r#"{"nicId":"nic-abc123","ipAddresses":["10.0.0.3","10.0.0.4"]}"#,
            "8f277a359e1a31c7538d63890fdd9a14aa3b26926df8a9345996f8b7d517aaa1",
        ),
        (
            "AKIDTESTEXAMPLE0001",
            1700000000,
            "AttachNetworkInterface",
            "console.zenlayer.com",
            "application/json",
            r#"{"nicId":"nic-abc123","instanceId":"ins-xyz789"}"#,
            "f093e184912462831b3563db9f19a06b25d6bd426a5d44745ae4e7ecb8c73c7f",
        ),
        (
            "0D9UtpyKYcHxms5v",
            1673361177,
            "DescribeInstances",
            "console.zenlayer.com",
            "application/json; charset=utf-8",
            r#"{"pageSize":10,"pageNum":1,"zoneId":"HKG-A"}"#,
            "efb356c32e55c781e10dc676da59462c22596d82e91c57803666243379555b2f",
        ),
        (
            "sim-key-id",
            1767225600,
            "DescribeNetworkInterfaceRegions",
            "127.0.0.1:18080",
            "application/json",
            "{}",
            "ffccc2b7a431bc5312b5fd93df279803834fa6ea5ad99d3542c87fb656144b8e",
        ),
    ];
    for (key, ts, action, host, ct, body, sig) in vectors {
        let send = |sig: String, body: String| {
            http()
                .post(format!("{}/api/v2/zec", sim.base_url()))
                .header("Host", *host)
                .header("Content-Type", *ct)
                .header("X-ZC-Action", *action)
                .header("X-ZC-Timestamp", ts.to_string())
                .header("Authorization", zc2::authorization(key, &sig))
                .body(body)
                .send()
        };
        let (status, resp) = json_of(send(sig.to_string(), body.to_string()).await.unwrap()).await;
        assert_ne!(
            resp["code"], "SIMULATOR_AUTH_FAILED",
            "{action} {ts}: {resp}"
        );
        assert!(
            status == 200
                || resp["code"]
                    .as_str()
                    .is_some_and(|c| c.contains("NOT_FOUND")),
            "{resp}"
        );
        // The same signature over a tampered body is refused.
        let (status, resp) = json_of(
            send(sig.to_string(), body.replace("nic", "nIc") + " ")
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, resp["code"].as_str()),
            (401, Some("SIMULATOR_AUTH_FAILED"))
        );
    }
}

#[tokio::test]
async fn zenlayer_auth_failures() {
    let sim = sim().await;
    let body = json!({}).to_string();
    let base = || ZlReq {
        action: "DescribeNetworkInterfaceRegions",
        body: body.clone(),
        key: ZL_KEY,
        timestamp: now(),
        host: None,
    };
    zl_ok(&zl_send(&sim, base()).await);
    let cases = [
        (
            "wrong secret",
            ZlReq {
                key: ("zl-test-key", "not-the-password"),
                ..base()
            },
        ),
        (
            "unknown key id",
            ZlReq {
                key: ("zl-other", "zl-test-password"),
                ..base()
            },
        ),
        (
            "stale timestamp",
            ZlReq {
                timestamp: now() - 301,
                ..base()
            },
        ),
        (
            "future timestamp",
            ZlReq {
                timestamp: now() + 301,
                ..base()
            },
        ),
        (
            "signed for another host",
            ZlReq {
                host: Some("console.zenlayer.com".into()),
                ..base()
            },
        ),
    ];
    for (what, req) in cases {
        let r = if what == "signed for another host" {
            // Sign for one host, send to the simulator's.
            let sig = zc2::signature(
                ZL_KEY.1,
                req.timestamp,
                "application/json",
                "console.zenlayer.com",
                body.as_bytes(),
            );
            let resp = http()
                .post(format!("{}/api/v2/zec", sim.base_url()))
                .header("Content-Type", "application/json")
                .header("X-ZC-Action", req.action)
                .header("X-ZC-Timestamp", req.timestamp.to_string())
                .header("Authorization", zc2::authorization(ZL_KEY.0, &sig))
                .body(body.clone())
                .send()
                .await
                .unwrap();
            json_of(resp).await
        } else {
            zl_send(&sim, req).await
        };
        assert_eq!(
            (r.0, r.1["code"].as_str()),
            (401, Some("SIMULATOR_AUTH_FAILED")),
            "{what}: {r:?}"
        );
        assert!(!r.1.to_string().contains("zl-test-password"));
    }
    let bearer = |token: &str| {
        http()
            .post(format!("{}/api/v2/zec", sim.base_url()))
            .header("Content-Type", "application/json")
            .header("X-ZC-Action", "DescribeNetworkInterfaceRegions")
            .header("Authorization", format!("Bearer {token}"))
            .body("{}")
            .send()
    };
    zl_ok(&json_of(bearer("zl-test-bearer").await.unwrap()).await);
    let r = json_of(bearer("zl-wrong").await.unwrap()).await;
    zl_err(&r, 401, "SIMULATOR_AUTH_FAILED");
    let r = json_of(
        http()
            .post(format!("{}/api/v2/zec", sim.base_url()))
            .header("X-ZC-Action", "DescribeNetworkInterfaceRegions")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    zl_err(&r, 401, "SIMULATOR_AUTH_FAILED");
    // The audit log names the key, never the secret or the token.
    let audit = serde_json::to_string(&sim.audit()).unwrap();
    assert!(audit.contains("zl-test-key"));
    assert!(!audit.contains("zl-test-password") && !audit.contains("zl-test-bearer"));
}

// ---------------------------------------------------------------- Tencent API 3.0

/// A signed TC3 request, ready to send.
fn tc_request(
    sim: &RunningSim,
    key: (&str, &str),
    service: &str,
    action: &str,
    region: &str,
    body: Value,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    let body = body.to_string();
    let host = sim.addr().to_string();
    let ts = now();
    let headers = [
        ("content-type", "application/json"),
        ("host", host.as_str()),
    ];
    let payload = signing::sha256_hex(body.as_bytes());
    let req = tc3::Request {
        method: "POST",
        canonical_query: "",
        headers: &headers,
        payload_hash: &payload,
        service,
        timestamp: ts,
    };
    let sig = tc3::signature(key.1, &req).unwrap();
    let mut b = http()
        .post(format!("{}/", sim.base_url()))
        .header("Content-Type", "application/json")
        .header("X-TC-Action", action)
        .header("X-TC-Version", "2017-03-12")
        .header("X-TC-Region", region)
        .header("X-TC-Timestamp", ts.to_string())
        .header(
            "Authorization",
            tc3::authorization(key.0, &req, &sig).unwrap(),
        );
    if let Some(t) = token {
        b = b.header("X-TC-Token", t);
    }
    b.body(body)
}

async fn tc_with(
    sim: &RunningSim,
    key: (&str, &str),
    service: &str,
    action: &str,
    region: &str,
    body: Value,
    token: Option<&str>,
) -> Value {
    let b = tc_request(sim, key, service, action, region, body, token);
    let (status, v) = json_of(b.send().await.unwrap()).await;
    assert_eq!(
        status, 200,
        "Tencent answers every processed request with 200"
    );
    assert!(
        v["Response"]["RequestId"]
            .as_str()
            .is_some_and(|r| r.len() == 36),
        "{v}"
    );
    v["Response"].clone()
}

async fn tc(sim: &RunningSim, action: &str, body: Value) -> Value {
    tc_with(sim, TC_KEY, "vpc", action, "ap-guangzhou", body, None).await
}

/// The temporary key pair of the test world (it needs `tc-session-token`).
const TC_TEMP: (&str, &str) = ("AKIDtempkey0001", "tc-temp-secret-key");

/// `DescribeSubnets` signed with `key`, carrying `token` as `X-TC-Token`.
async fn tc_subnets_as(sim: &RunningSim, key: (&str, &str), token: Option<&str>) -> Value {
    tc_with(
        sim,
        key,
        "vpc",
        "DescribeSubnets",
        "ap-guangzhou",
        json!({}),
        token,
    )
    .await
}

fn tc_code(resp: &Value) -> &str {
    resp["Error"]["Code"].as_str().unwrap_or("")
}

fn tc_ok(resp: &Value) -> &Value {
    assert!(resp.get("Error").is_none(), "{resp}");
    resp
}

fn ips(list: &[&str]) -> Value {
    json!(
        list.iter()
            .map(|ip| json!({"PrivateIpAddress": ip}))
            .collect::<Vec<_>>()
    )
}

#[tokio::test]
async fn tencent_assign_is_async_with_task_result() {
    let sim = sim().await;
    sim.hold_async(true);
    let r = tc(&sim, "AssignPrivateIpAddresses", json!({"NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": ips(&["172.16.0.30"]), "SecondaryPrivateIpAddressCount": 1})).await;
    let set: Vec<&str> = tc_ok(&r)["PrivateIpAddressSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["PrivateIpAddress"].as_str().unwrap())
        .collect();
    assert_eq!(set, ["172.16.0.30", "172.16.0.2"]);
    let task = r["RequestId"].as_str().unwrap().to_string();
    let t = tc(&sim, "DescribeVpcTaskResult", json!({"TaskId": task})).await;
    assert_eq!(t["Status"], "RUNNING");
    let d = tc(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"NetworkInterfaceIds": ["eni-m6dyj72l"]}),
    )
    .await;
    let states: Vec<&str> = d["NetworkInterfaceSet"][0]["PrivateIpAddressSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["State"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["AVAILABLE", "PENDING", "PENDING"]);
    // Another mutation on the same ENI while the task runs.
    let r = tc(
        &sim,
        "AssignPrivateIpAddresses",
        json!({"NetworkInterfaceId": "eni-m6dyj72l", "SecondaryPrivateIpAddressCount": 1}),
    )
    .await;
    assert_eq!(
        tc_code(&r),
        "UnsupportedOperation.MutexOperationTaskRunning"
    );
    sim.hold_async(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = tc(&sim, "DescribeVpcTaskResult", json!({"TaskId": task})).await;
        if t["Status"] == "SUCCESS" {
            assert_eq!(t["Output"], "SUCCESS");
            break;
        }
        assert!(Instant::now() < deadline, "task never finished");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let d = tc(&sim, "DescribeNetworkInterfaces", json!({"Filters": [{"Name": "vpc-id", "Values": ["vpc-7t9nf3pu"]}, {"Name": "address-ip", "Values": ["172.16.0.30"]}]})).await;
    assert_eq!(d["TotalCount"], 1);
    let nic = &d["NetworkInterfaceSet"][0];
    assert_eq!(nic["NetworkInterfaceId"], "eni-m6dyj72l");
    assert_eq!(nic["PrivateIpAddressSet"][1]["State"], "AVAILABLE");
    assert_eq!(
        (nic["State"].as_str(), nic["NetworkInterfaceState"].as_str()),
        (Some("AVAILABLE"), Some("AVAILABLE"))
    );

    let r = tc(
        &sim,
        "UnassignPrivateIpAddresses",
        json!({"NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": ips(&["172.16.0.30"])}),
    )
    .await;
    tc_ok(&r);
    poll("unassigned", || {
        !secondaries(&sim, "eni-m6dyj72l").contains(&"172.16.0.30".parse().unwrap())
    })
    .await;
    let t = tc(
        &sim,
        "DescribeVpcTaskResult",
        json!({"TaskId": "00000000-0000-0000-0000-000000000000"}),
    )
    .await;
    assert_eq!(tc_code(&t), "ResourceNotFound");
}

/// `QosLevel` is kept, not only validated: the answer and every later
/// `DescribeNetworkInterfaces` report the level asked for, in count mode
/// and per address; addresses assigned without one report `DEFAULT`.
#[tokio::test]
async fn tencent_assign_keeps_the_qos_level() {
    let sim = sim().await;
    let r = tc(
        &sim,
        "AssignPrivateIpAddresses",
        json!({"NetworkInterfaceId": "eni-m6dyj72l", "SecondaryPrivateIpAddressCount": 1, "QosLevel": "AU"}),
    )
    .await;
    let counted = tc_ok(&r)["PrivateIpAddressSet"][0].clone();
    assert_eq!(counted["QosLevel"], "AU");
    poll("the first task ends", || {
        sim.world().tencent.nics["eni-m6dyj72l"].busy_task.is_none()
    })
    .await;
    let r = tc(
        &sim,
        "AssignPrivateIpAddresses",
        json!({"NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": [
            {"PrivateIpAddress": "172.16.0.40", "QosLevel": "PT"},
            {"PrivateIpAddress": "172.16.0.41"}
        ]}),
    )
    .await;
    tc_ok(&r);
    let d = tc(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"NetworkInterfaceIds": ["eni-m6dyj72l"]}),
    )
    .await;
    let levels: std::collections::BTreeMap<String, String> =
        d["NetworkInterfaceSet"][0]["PrivateIpAddressSet"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["Primary"] == false)
            .map(|i| {
                (
                    i["PrivateIpAddress"].as_str().unwrap().to_string(),
                    i["QosLevel"].as_str().unwrap().to_string(),
                )
            })
            .collect();
    assert_eq!(levels[counted["PrivateIpAddress"].as_str().unwrap()], "AU");
    assert_eq!(levels["172.16.0.40"], "PT");
    assert_eq!(levels["172.16.0.41"], "DEFAULT");
}

/// A requested address cannot be a primary one (the vendor's
/// AssignPrivateIpAddresses pages): both API generations refuse
/// `Primary: true` and assign nothing, instead of API 3.0 silently adding a
/// secondary.
#[tokio::test]
async fn both_generations_refuse_a_request_for_a_primary_address() {
    let sim = sim().await;
    let before = secondaries(&sim, "eni-m6dyj72l");
    let r = tc(
        &sim,
        "AssignPrivateIpAddresses",
        json!({"NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": [
            {"PrivateIpAddress": "172.16.0.42", "Primary": true}
        ]}),
    )
    .await;
    assert_eq!(tc_code(&r), "InvalidParameterValue", "{r}");
    let r = legacy(
        &sim,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("vpcId", "vpc-7t9nf3pu"),
            ("networkInterfaceId", "eni-m6dyj72l"),
            ("privateIpAddressSet.0.privateIpAddress", "172.16.0.43"),
            ("privateIpAddressSet.0.primary", "true"),
        ],
    )
    .await;
    assert_ne!(r["code"].as_i64(), Some(0), "{r}");
    assert_eq!(secondaries(&sim, "eni-m6dyj72l"), before);
}

#[tokio::test]
async fn tencent_assign_rules() {
    let sim = sim().await;
    let eleven: Vec<String> = (40..51).map(|i| format!("172.16.0.{i}")).collect();
    let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "out of range",
            json!({"NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": ips(&["172.16.9.5"])}),
            "InvalidParameterValue.Range",
        ),
        (
            "network",
            json!({"NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": ips(&["172.16.0.0"])}),
            "InvalidParameterValue.Reserved",
        ),
        (
            "gateway",
            json!({"NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": ips(&["172.16.0.1"])}),
            "InvalidParameterValue.Reserved",
        ),
        (
            "broadcast",
            json!({"NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": ips(&["172.16.0.255"])}),
            "InvalidParameterValue.Reserved",
        ),
        (
            "in use",
            json!({"NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": ips(&["172.16.0.21"])}),
            "ResourceInUse",
        ),
        (
            "malformed",
            json!({"NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": ips(&["172.16.0.x"])}),
            "InvalidParameterValue.Malformed",
        ),
        (
            "duplicate",
            json!({"NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": ips(&["172.16.0.40", "172.16.0.40"])}),
            "InvalidParameterValue.DuplicatePara",
        ),
        (
            "eleven per call",
            json!({"NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": ips(&eleven)}),
            "InvalidParameterValue.LimitExceeded",
        ),
        (
            "quota",
            json!({"NetworkInterfaceId": "eni-m6dyj72l", "SecondaryPrivateIpAddressCount": 6}),
            "LimitExceeded",
        ),
        (
            "absurd count",
            json!({"NetworkInterfaceId": "eni-m6dyj72l", "SecondaryPrivateIpAddressCount": u64::MAX}),
            "LimitExceeded",
        ),
        (
            "subnet full",
            json!({"NetworkInterfaceId": "eni-tiny0001", "SecondaryPrivateIpAddressCount": 5}),
            "ResourceInsufficient.Subnet",
        ),
        (
            "no ENI",
            json!({"NetworkInterfaceId": "eni-nope0000", "SecondaryPrivateIpAddressCount": 1}),
            "ResourceNotFound",
        ),
        (
            "ENI of another region",
            json!({"NetworkInterfaceId": "eni-shanghai1", "SecondaryPrivateIpAddressCount": 1}),
            "ResourceNotFound",
        ),
        (
            "nothing asked",
            json!({"NetworkInterfaceId": "eni-m6dyj72l"}),
            "MissingParameter",
        ),
        (
            "no ENI id",
            json!({"SecondaryPrivateIpAddressCount": 1}),
            "MissingParameter",
        ),
        (
            "bad QosLevel",
            json!({"NetworkInterfaceId": "eni-m6dyj72l", "SecondaryPrivateIpAddressCount": 1, "QosLevel": "XX"}),
            "InvalidParameterValue",
        ),
        (
            "unknown parameter",
            json!({"NetworkInterfaceId": "eni-m6dyj72l", "Colour": "red"}),
            "UnknownParameter",
        ),
    ];
    for (what, body, code) in cases {
        let r = tc(&sim, "AssignPrivateIpAddresses", body).await;
        assert_eq!(tc_code(&r), code, "{what}: {r}");
    }
    // Numbers may come as strings (the documentation's own example does that).
    let r = tc(
        &sim,
        "AssignPrivateIpAddresses",
        json!({"NetworkInterfaceId": "eni-m6dyj72l", "SecondaryPrivateIpAddressCount": "2"}),
    )
    .await;
    assert_eq!(
        tc_ok(&r)["PrivateIpAddressSet"].as_array().unwrap().len(),
        2
    );
    poll("assign done", || {
        sim.world().tencent.nics["eni-m6dyj72l"].busy_task.is_none()
    })
    .await;

    let unassign: Vec<(&str, Value, &str)> = vec![
        (
            "primary",
            json!({"NetworkInterfaceId": "eni-bbbbbbbb", "PrivateIpAddresses": ips(&["172.16.0.20"])}),
            "UnsupportedOperation.PrimaryIp",
        ),
        (
            "not on ENI",
            json!({"NetworkInterfaceId": "eni-bbbbbbbb", "PrivateIpAddresses": ips(&["172.16.0.99"])}),
            "UnsupportedOperation.AttachmentNotFound",
        ),
        (
            "eleven",
            json!({"NetworkInterfaceId": "eni-bbbbbbbb", "PrivateIpAddresses": ips(&eleven)}),
            "InvalidParameterValue.LimitExceeded",
        ),
        (
            "no list",
            json!({"NetworkInterfaceId": "eni-bbbbbbbb"}),
            "MissingParameter",
        ),
        (
            "no ENI",
            json!({"NetworkInterfaceId": "eni-nope0000", "PrivateIpAddresses": ips(&["172.16.0.21"])}),
            "ResourceNotFound",
        ),
    ];
    for (what, body, code) in unassign {
        let r = tc(&sim, "UnassignPrivateIpAddresses", body).await;
        assert_eq!(tc_code(&r), code, "{what}: {r}");
    }
}

#[tokio::test]
async fn tencent_common_errors_and_reads() {
    let sim = sim().await;
    let r = tc(&sim, "LaunchRockets", json!({})).await;
    assert_eq!(tc_code(&r), "InvalidAction");
    let r = tc_with(
        &sim,
        TC_KEY,
        "vpc",
        "DescribeSubnets",
        "ap-mars",
        json!({}),
        None,
    )
    .await;
    assert_eq!(tc_code(&r), "UnsupportedRegion");
    let r = tc(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"NetworkInterfaceIds": ["eni-m6dyj72l"], "Filters": []}),
    )
    .await;
    assert_eq!(tc_code(&r), "InvalidParameter.Coexist");
    let r = tc(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"Filters": [{"Name": "colour", "Values": ["red"]}]}),
    )
    .await;
    assert_eq!(tc_code(&r), "InvalidParameter.FilterInvalidKey");
    let r = tc(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"Filters": [{"Name": "vpc-id", "Values": "vpc-7t9nf3pu"}]}),
    )
    .await;
    assert_eq!(tc_code(&r), "InvalidParameter.FilterValuesNotList");
    let r = tc(&sim, "DescribeNetworkInterfaces", json!({"Limit": 101})).await;
    assert_eq!(tc_code(&r), "InvalidParameterValue.LimitExceeded");
    // Up to 100 ids per call (unknown ones are left out), not 101.
    let mut ids: Vec<String> = (0..99).map(|i| format!("eni-{i:08}")).collect();
    ids.push("eni-m6dyj72l".into());
    let r = tc(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"NetworkInterfaceIds": ids}),
    )
    .await;
    assert_eq!(tc_ok(&r)["TotalCount"], 1, "{r}");
    ids.push("eni-99999999".into());
    let r = tc(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"NetworkInterfaceIds": ids}),
    )
    .await;
    assert_eq!(tc_code(&r), "InvalidParameterValue.LimitExceeded", "{r}");
    // Paging, region scoping.
    let r = tc(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"Offset": 1, "Limit": 2}),
    )
    .await;
    assert_eq!(r["TotalCount"], 5);
    assert_eq!(r["NetworkInterfaceSet"].as_array().unwrap().len(), 2);
    let r = tc(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"Filters": [{"Name": "attachment.instance-id", "Values": ["ins-gz000001"]}]}),
    )
    .await;
    assert_eq!(
        r["NetworkInterfaceSet"][0]["NetworkInterfaceId"],
        "eni-primary1"
    );
    assert_eq!(
        r["NetworkInterfaceSet"][0]["NetworkInterfaceState"],
        "INUSE"
    );
    assert_eq!(
        r["NetworkInterfaceSet"][0]["Attachment"]["InstanceId"],
        "ins-gz000001"
    );
    let r = tc(
        &sim,
        "DescribeSubnets",
        json!({"SubnetIds": ["subnet-gz000003"], "Offset": "0", "Limit": "10"}),
    )
    .await;
    assert_eq!(r["SubnetSet"][0]["AvailableIpAddressCount"], 4);
    assert_eq!(r["SubnetSet"][0]["CidrBlock"], "172.16.2.0/29");
    let r = tc(
        &sim,
        "DescribeNetworkInterfaceLimit",
        json!({"InstanceId": "ins-gz000001"}),
    )
    .await;
    assert_eq!(
        (
            r["EniQuantity"].as_u64(),
            r["EniPrivateIpAddressQuantity"].as_u64()
        ),
        (Some(2), Some(10))
    );
    let r = tc(
        &sim,
        "DescribeNetworkInterfaceLimit",
        json!({"InstanceId": "eni-m6dyj72l"}),
    )
    .await;
    assert_eq!(r["EniPrivateIpAddressQuantity"], 6);
    let r = tc(
        &sim,
        "DescribeNetworkInterfaceLimit",
        json!({"InstanceId": "ins-nope0000"}),
    )
    .await;
    assert_eq!(tc_code(&r), "InvalidInstanceId.NotFound");
    // CVM DescribeInstances under service cvm; the vpc service has no such action.
    let r = tc_with(
        &sim,
        TC_KEY,
        "cvm",
        "DescribeInstances",
        "ap-guangzhou",
        json!({"InstanceIds": ["ins-gz000001", "ins-gz000003"]}),
        None,
    )
    .await;
    assert_eq!(r["TotalCount"], 2);
    assert_eq!(r["InstanceSet"][0]["InstanceState"], "RUNNING");
    assert_eq!(r["InstanceSet"][1]["InstanceState"], "PENDING");
    assert_eq!(r["InstanceSet"][0]["Placement"]["Zone"], "ap-guangzhou-3");
    let r = tc(&sim, "DescribeInstances", json!({})).await;
    assert_eq!(tc_code(&r), "InvalidAction");
}

#[tokio::test]
async fn tencent_ipv6() {
    let sim = sim().await;
    let r = tc(
        &sim,
        "AssignIpv6Addresses",
        json!({"NetworkInterfaceId": "eni-m6dyj72l", "Ipv6AddressCount": 2}),
    )
    .await;
    let got: Vec<&str> = tc_ok(&r)["Ipv6AddressSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["Address"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["2402:4e00:1::2", "2402:4e00:1::3"]);
    poll("ipv6 done", || {
        sim.world().tencent.nics["eni-m6dyj72l"].busy_task.is_none()
    })
    .await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "in use",
            json!({"NetworkInterfaceId": "eni-bbbbbbbb", "Ipv6Addresses": [{"Address": "2402:4e00:1::2"}]}),
            "ResourceInUse.Address",
        ),
        (
            "out of range",
            json!({"NetworkInterfaceId": "eni-bbbbbbbb", "Ipv6Addresses": [{"Address": "2402:4e00:9::2"}]}),
            "InvalidParameterValue.Range",
        ),
        (
            "reserved",
            json!({"NetworkInterfaceId": "eni-bbbbbbbb", "Ipv6Addresses": [{"Address": "2402:4e00:1::"}]}),
            "InvalidParameterValue.Reserved",
        ),
        (
            "malformed",
            json!({"NetworkInterfaceId": "eni-bbbbbbbb", "Ipv6Addresses": [{"Address": "nope"}]}),
            "InvalidParameterValue.Malformed",
        ),
        (
            "no IPv6 in subnet",
            json!({"NetworkInterfaceId": "eni-v4only01", "Ipv6AddressCount": 1}),
            "UnsupportedOperation",
        ),
        (
            "quota",
            json!({"NetworkInterfaceId": "eni-m6dyj72l", "Ipv6AddressCount": 9}),
            "LimitExceeded.Address",
        ),
        (
            "eleven",
            json!({"NetworkInterfaceId": "eni-bbbbbbbb", "Ipv6AddressCount": 11}),
            "InvalidParameterValue.LimitExceeded",
        ),
        (
            "nothing",
            json!({"NetworkInterfaceId": "eni-bbbbbbbb"}),
            "MissingParameter",
        ),
    ];
    for (what, body, code) in cases {
        let r = tc(&sim, "AssignIpv6Addresses", body).await;
        assert_eq!(tc_code(&r), code, "{what}: {r}");
    }
    let r = tc(&sim, "UnassignIpv6Addresses", json!({"NetworkInterfaceId": "eni-m6dyj72l", "Ipv6Addresses": [{"Address": "2402:4e00:1::9"}]})).await;
    assert_eq!(tc_code(&r), "UnsupportedOperation.AttachmentNotFound");
    let r = tc(&sim, "UnassignIpv6Addresses", json!({"NetworkInterfaceId": "eni-m6dyj72l", "Ipv6Addresses": [{"Address": "2402:4e00:1::2"}]})).await;
    tc_ok(&r);
    poll("ipv6 released", || {
        sim.world().tencent.nics["eni-m6dyj72l"].ipv6.len() == 1
    })
    .await;
}

#[tokio::test]
async fn tencent_attach_detach_and_client_token() {
    let sim = sim().await;
    sim.hold_async(true);
    let attach = json!({"NetworkInterfaceId": "eni-m6dyj72l", "InstanceId": "ins-gz000001", "ClientToken": "claim-uid-1"});
    let first = tc(&sim, "AttachNetworkInterface", attach.clone()).await;
    tc_ok(&first);
    let d = tc(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"NetworkInterfaceIds": ["eni-m6dyj72l"]}),
    )
    .await;
    assert_eq!(d["NetworkInterfaceSet"][0]["State"], "ATTACHING");
    // Same token while running, then with other parameters.
    let r = tc(&sim, "AttachNetworkInterface", attach.clone()).await;
    assert_eq!(tc_code(&r), "UnsupportedOperation.IdempotentProcessing");
    let mut other = attach.clone();
    other["InstanceId"] = json!("ins-gz000002");
    let r = tc(&sim, "AttachNetworkInterface", other).await;
    assert_eq!(
        tc_code(&r),
        "UnsupportedOperation.IdempotentParameterMismatch"
    );
    sim.hold_async(false);
    poll("attached", || {
        sim.world().tencent.nics["eni-m6dyj72l"].status == "USED"
    })
    .await;
    // A replay after completion answers the original response.
    let replay = tc(&sim, "AttachNetworkInterface", attach.clone()).await;
    assert_eq!(replay["RequestId"], first["RequestId"]);
    let d = tc(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"NetworkInterfaceIds": ["eni-m6dyj72l"]}),
    )
    .await;
    assert_eq!(
        d["NetworkInterfaceSet"][0]["NetworkInterfaceState"],
        "INUSE"
    );

    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "eni-m6dyj72l",
            "ins-gz000001",
            "UnsupportedOperation.AttachmentAlreadyExists",
        ),
        ("eni-bbbbbbbb", "ins-gz000001", "LimitExceeded"),
        (
            "eni-v4only01",
            "ins-gz000001",
            "UnsupportedOperation.ZoneMismatch",
        ),
        (
            "eni-bbbbbbbb",
            "ins-gz000003",
            "UnsupportedOperation.ResourceIsInvalidState",
        ),
        ("eni-bbbbbbbb", "ins-nope0000", "ResourceNotFound"),
        ("eni-nope0000", "ins-gz000001", "ResourceNotFound"),
    ];
    for (nic, ins, code) in cases {
        let r = tc(
            &sim,
            "AttachNetworkInterface",
            json!({"NetworkInterfaceId": nic, "InstanceId": ins}),
        )
        .await;
        assert_eq!(tc_code(&r), code, "{nic} -> {ins}: {r}");
    }
    let r = tc(
        &sim,
        "DetachNetworkInterface",
        json!({"NetworkInterfaceId": "eni-bbbbbbbb", "InstanceId": "ins-gz000001"}),
    )
    .await;
    assert_eq!(tc_code(&r), "UnsupportedOperation.AttachmentNotFound");
    let r = tc(
        &sim,
        "DetachNetworkInterface",
        json!({"NetworkInterfaceId": "eni-primary1", "InstanceId": "ins-gz000001"}),
    )
    .await;
    assert_eq!(tc_code(&r), "UnsupportedOperation");
    let r = tc(
        &sim,
        "DetachNetworkInterface",
        json!({"NetworkInterfaceId": "eni-m6dyj72l", "InstanceId": "ins-gz000001"}),
    )
    .await;
    tc_ok(&r);
    poll("detached", || {
        sim.world().tencent.nics["eni-m6dyj72l"]
            .instance_id
            .is_none()
    })
    .await;
    // ClientToken on assign: a replay does not allocate again.
    let body = json!({"NetworkInterfaceId": "eni-bbbbbbbb", "SecondaryPrivateIpAddressCount": 1, "ClientToken": "count-1"});
    let a = tc(&sim, "AssignPrivateIpAddresses", body.clone()).await;
    poll("assigned", || {
        sim.world().tencent.nics["eni-bbbbbbbb"].busy_task.is_none()
    })
    .await;
    let b = tc(&sim, "AssignPrivateIpAddresses", body).await;
    assert_eq!(a["PrivateIpAddressSet"], b["PrivateIpAddressSet"]);
    assert_eq!(secondaries(&sim, "eni-bbbbbbbb").len(), 2);
}

/// The ClientToken memory is bounded: past `clientTokenCapacity` the oldest
/// token is forgotten (and acts as new), the newest are still honoured.
#[tokio::test]
async fn tencent_client_tokens_are_forgotten_oldest_first() {
    let sim =
        sim_from(&WORLD.replacen("\ntencent:\n", "\ntencent:\n  clientTokenCapacity: 2\n", 1))
            .await;
    let assign = |nic: &str, count: u32, token: &str| json!({"NetworkInterfaceId": nic, "SecondaryPrivateIpAddressCount": count, "ClientToken": token});
    tc_ok(
        &tc(
            &sim,
            "AssignPrivateIpAddresses",
            assign("eni-bbbbbbbb", 1, "t1"),
        )
        .await,
    );
    let r = tc(
        &sim,
        "AssignPrivateIpAddresses",
        assign("eni-bbbbbbbb", 2, "t1"),
    )
    .await;
    assert_eq!(
        tc_code(&r),
        "UnsupportedOperation.IdempotentParameterMismatch"
    );
    tc_ok(
        &tc(
            &sim,
            "AssignPrivateIpAddresses",
            assign("eni-m6dyj72l", 1, "t2"),
        )
        .await,
    );
    tc_ok(
        &tc(
            &sim,
            "AssignPrivateIpAddresses",
            assign("eni-v4only01", 1, "t3"),
        )
        .await,
    );
    // t1 was forgotten when t3 arrived; t2 and t3 are remembered.
    for (nic, token) in [("eni-m6dyj72l", "t2"), ("eni-v4only01", "t3")] {
        let r = tc(&sim, "AssignPrivateIpAddresses", assign(nic, 3, token)).await;
        assert_eq!(
            tc_code(&r),
            "UnsupportedOperation.IdempotentParameterMismatch",
            "{token} must still be remembered"
        );
    }
    poll("t1 completed", || {
        sim.world().tencent.nics["eni-bbbbbbbb"].busy_task.is_none()
    })
    .await;
    let r = tc(
        &sim,
        "AssignPrivateIpAddresses",
        assign("eni-bbbbbbbb", 2, "t1"),
    )
    .await;
    tc_ok(&r);
    assert_eq!(
        r["PrivateIpAddressSet"].as_array().map(Vec::len),
        Some(2),
        "{r}"
    );
}

/// The world of the vendors' signature examples (their keys, regions and
/// timestamps); `token` adds session tokens to the first key.
fn signature_world(token: &str) -> String {
    format!(
        r#"
settings: {{timestampWindowSeconds: 2000000000}}
accounts:
  tencent:
    - {{secretId: AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE, secretKey: Gu5t9xGARNpq86cd98joQYCN3EXAMPLE{token}}}
    - {{secretId: AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA, secretKey: Gu5t9xGARNpq86cd98joQYCN3Cozk1qA}}
tencent:
  regions: [{{id: ap-guangzhou, zones: [ap-guangzhou-3]}}, {{id: ap-singapore, zones: [ap-singapore-1]}}, {{id: ap-shanghai, zones: [ap-shanghai-2]}}]
"#
    )
}

/// Tencent API 3.0 TC3-HMAC-SHA256 vectors, verbatim; each also fails once tampered with.
#[tokio::test]
async fn tencent_tc3_signature_vectors() {
    let plain = signature_world("");
    let temp = signature_world(", sessionTokens: [tmp-session-token-EXAMPLE]");
    // (world, method, host, content type, action, region, token, body or query, Authorization)
    type Tc3 = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        i64,
        Option<&'static str>,
        &'static str,
        &'static str,
    );
    let tc3_vectors: &[Tc3] = &[
        (
            "O1",
            "POST",
            "cvm.tencentcloudapi.com",
            "application/json; charset=utf-8",
            "DescribeInstances",
            "ap-guangzhou",
            1551113065,
            None,
            r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#,
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168",
        ),
        (
            "O2",
            "POST",
            "cvm.tencentcloudapi.com",
            "application/json; charset=utf-8",
            "DescribeInstances",
            "ap-guangzhou",
            1551113065,
            None,
            r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#,
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host;x-tc-action, Signature=644be983de9a8a3f00db8eadaba61467c3b429e2215758ba897b738ca469fd26",
        ),
        (
            "V1",
            "POST",
            "vpc.tencentcloudapi.com",
            "application/json",
            "AssignPrivateIpAddresses",
            "ap-guangzhou",
            1551113065,
            None,
            r#"{"NetworkInterfaceId": "eni-m6dyj72l", "SecondaryPrivateIpAddressCount": 2, "ClientToken": "nic-claim-0001"}"#,
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/vpc/tc3_request, SignedHeaders=content-type;host, Signature=56071861d33a107e1a42ca79bb2ee4be3643c0aa9637cbceb56e9fe89e4d3c49",
        ),
        (
            "V2",
            "POST",
            "vpc.intl.tencentcloudapi.com",
            "application/json",
            "DescribeNetworkInterfaces",
            "ap-singapore",
            1700000000,
            Some("tmp-session-token-EXAMPLE"),
            r#"{"Filters": [{"Name": "attachment.instance-id", "Values": ["ins-3nqpdn3i"]}], "Offset": 0, "Limit": 100}"#,
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2023-11-14/vpc/tc3_request, SignedHeaders=content-type;host, Signature=1f8e8a2c6d2c6d6d580740bb8ee037b7cb7a7655178a1ce0efa4dcdb8cb1829a",
        ),
        (
            "V3",
            "GET",
            "vpc.tencentcloudapi.com",
            "application/x-www-form-urlencoded",
            "DescribeVpcTaskResult",
            "ap-shanghai",
            1712345678,
            None,
            "TaskId=f23d1450-ed00-4442-98d4-be409e625e6c",
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2024-04-05/vpc/tc3_request, SignedHeaders=content-type;host, Signature=7574e35434f40fa232cd55989d0c483bf282c294c507ca901ae85f27f4d93839",
        ),
        (
            "V4",
            "POST",
            "vpc.tencentcloudapi.com",
            "application/json",
            "UnassignPrivateIpAddresses",
            "ap-guangzhou",
            1551113065,
            None,
            r#"{"NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": [{"PrivateIpAddress": "172.16.32.237"}, {"PrivateIpAddress": "172.16.32.84"}]}"#,
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/vpc/tc3_request, SignedHeaders=content-type;host, Signature=0b5ac9e760a13dcb5ce42bf8bdf6280bac6b8eed62d54de629d85577a59b5b8f",
        ),
        (
            "V5",
            "POST",
            "vpc.tencentcloudapi.com",
            "application/json",
            "AssignPrivateIpAddresses",
            "ap-guangzhou",
            1551113065,
            None,
            r#"{"NetworkInterfaceId":"eni-m6dyj72l","SecondaryPrivateIpAddressCount":2,"ClientToken":"nic-claim-0001"}"#,
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/vpc/tc3_request, SignedHeaders=content-type;host, Signature=78ec0ce641cc0231e5a925d1789b529626ba5dd82a84f27108174d79cb277036",
        ),
        (
            "V6",
            "POST",
            "vpc.tencentcloudapi.com",
            "application/json; charset=utf-8",
            "DescribeVpcTaskResult",
            "ap-guangzhou",
            1712345678,
            None,
            r#"{"TaskId":"f23d1450-ed00-4442-98d4-be409e625e6c"}"#,
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2024-04-05/vpc/tc3_request, SignedHeaders=content-type;host, Signature=9bbc6d733633462f3f6448e6700311b6a25f25d2c53eadc7420e2995d6e1df6b",
        ),
        (
            "V7",
            "POST",
            "vpc.tencentcloudapi.com",
            "application/json",
            "DescribeSubnets",
            "ap-guangzhou",
            1700006399,
            None,
            "{}",
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2023-11-14/vpc/tc3_request, SignedHeaders=content-type;host, Signature=0f84404d45b2bb9fefc6344fd4679e85bece12e8f56709a615f79ba6539fd15f",
        ),
    ];
    let auth_codes = [
        "AuthFailure.SignatureFailure",
        "AuthFailure.InvalidAuthorization",
        "AuthFailure.SecretIdNotFound",
        "AuthFailure.TokenFailure",
        "AuthFailure.SignatureExpire",
    ];
    for (name, method, host, ct, action, region, ts, token, payload, authz) in tc3_vectors {
        let sim = sim_from(if token.is_some() { &temp } else { &plain }).await;
        let send = |payload: String| {
            let (url, body) = if *method == "GET" {
                (format!("{}/?{payload}", sim.base_url()), String::new())
            } else {
                (format!("{}/", sim.base_url()), payload)
            };
            let mut b = http()
                .request(method.parse().unwrap(), url)
                .header("Host", *host)
                .header("Content-Type", *ct)
                .header("X-TC-Action", *action)
                .header("X-TC-Version", "2017-03-12")
                .header("X-TC-Region", *region)
                .header("X-TC-Timestamp", ts.to_string())
                .header("Authorization", *authz);
            if let Some(t) = token {
                b = b.header("X-TC-Token", *t);
            }
            b.body(body).send()
        };
        let (_, v) = json_of(send(payload.to_string()).await.unwrap()).await;
        let code = tc_code(&v["Response"]).to_string();
        assert!(!auth_codes.contains(&code.as_str()), "{name}: {v}");
        let tampered = if *method == "GET" {
            format!("{payload}&Offset=1")
        } else {
            format!("{payload} ")
        };
        let (_, v) = json_of(send(tampered).await.unwrap()).await;
        assert_eq!(
            tc_code(&v["Response"]),
            "AuthFailure.SignatureFailure",
            "{name} tampered: {v}"
        );
    }
}

/// Signature v1 on API 3.0, verbatim vectors.
#[tokio::test]
async fn tencent_v1_signature_vectors() {
    let plain = signature_world("");
    let temp = signature_world(", sessionTokens: [tmp-session-token-EXAMPLE]");
    let auth_codes = [
        "AuthFailure.SignatureFailure",
        "AuthFailure.InvalidAuthorization",
        "AuthFailure.SecretIdNotFound",
        "AuthFailure.TokenFailure",
        "AuthFailure.SignatureExpire",
    ];
    // Signature v1 on API 3.0 (W1 POST form, W2 GET, W3 the Python SDK's exact body with a token) and O3.
    let v1: &[(&str, &str, &str, &str)] = &[
        (
            "W1",
            "POST",
            "vpc.tencentcloudapi.com",
            "NetworkInterfaceId=eni-m6dyj72l&PrivateIpAddresses.0.PrivateIpAddress=10.0.0.6&PrivateIpAddresses.1.PrivateIpAddress=10.0.0.7&Action=AssignPrivateIpAddresses&Nonce=11886&Timestamp=1465185768&Version=2017-03-12&Region=ap-guangzhou&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&SignatureMethod=HmacSHA1&Signature=PC761u%2FxPUfD0LWcZhbJuyAgP10%3D",
        ),
        (
            "W2",
            "GET",
            "vpc.tencentcloudapi.com",
            "Action=AssignPrivateIpAddresses&NetworkInterfaceId=eni-m6dyj72l&Nonce=11886&PrivateIpAddresses.0.PrivateIpAddress=10.0.0.6&PrivateIpAddresses.1.PrivateIpAddress=10.0.0.7&Region=ap-guangzhou&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&SignatureMethod=HmacSHA256&Timestamp=1465185768&Version=2017-03-12&Signature=h1LI3qVA8HO4FvhiJHArUiK2la%2BS6VW4gthw%2BO6sOOY%3D",
        ),
        (
            "W3",
            "POST",
            "vpc.tencentcloudapi.com",
            "NetworkInterfaceId=eni-m6dyj72l&SecondaryPrivateIpAddressCount=2&Action=AssignPrivateIpAddresses&RequestClient=SDK_PYTHON_3.1.193&Nonce=11886&Timestamp=1465185768&Version=2017-03-12&Region=ap-guangzhou&Token=tmp-session-token-EXAMPLE&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&SignatureMethod=HmacSHA256&Language=en-US&Signature=x%2FGrAFgUQnjG%2BJaKgAbFuVC3LWr1pH3XwWWYiBS%2BnJY%3D",
        ),
        (
            "O3",
            "GET",
            "cvm.tencentcloudapi.com",
            "Action=DescribeInstances&InstanceIds.0=ins-09dx96dg&Limit=20&Nonce=11886&Offset=0&Region=ap-guangzhou&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&Timestamp=1465185768&Version=2017-03-12&Signature=EliP9YW3pW28FpsEdkXt%2F%2BWcGeI%3D",
        ),
    ];
    for (name, method, host, form) in v1 {
        let sim = sim_from(if *name == "W3" { &temp } else { &plain }).await;
        let send = |form: String| {
            let b = if *method == "GET" {
                http().get(format!("{}/?{form}", sim.base_url()))
            } else {
                http()
                    .post(format!("{}/", sim.base_url()))
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form)
            };
            b.header("Host", *host).send()
        };
        let (_, v) = json_of(send(form.to_string()).await.unwrap()).await;
        let code = tc_code(&v["Response"]).to_string();
        assert!(!auth_codes.contains(&code.as_str()), "{name}: {v}");
        assert!(code == "ResourceNotFound" || code.is_empty(), "{name}: {v}");
        let (_, v) = json_of(
            send(
                form.replace("eni-m6dyj72l", "eni-m6dyj72x")
                    .replace("ins-09dx96dg", "ins-09dx96dx"),
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(
            tc_code(&v["Response"]),
            "AuthFailure.SignatureFailure",
            "{name} tampered: {v}"
        );
    }
}

/// Legacy API 2.0 vectors (vpc.api.qcloud.com, the cvm host), verbatim.
#[tokio::test]
async fn legacy_signature_vectors() {
    let plain = signature_world("");
    // Legacy API 2.0 vectors X1-X3 (vpc.api.qcloud.com) and O4/O5 (the cvm host).
    let legacy: &[(&str, &str, &str, &str)] = &[
        (
            "X1",
            "GET",
            "vpc.api.qcloud.com",
            "Action=AssignPrivateIpAddresses&Nonce=11886&Timestamp=1465185768&Region=gz&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&SignatureMethod=HmacSHA1&vpcId=vpc-7t9nf3pu&networkInterfaceId=eni-m6dyj72l&secondaryPrivateIpAddressCount=1&Signature=AgZ2NSOGr7XZmXDHlkxBcJRYdis%3D",
        ),
        (
            "X2",
            "GET",
            "vpc.api.qcloud.com",
            "Action=AssignPrivateIpAddresses&Nonce=11886&Region=gz&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&SignatureMethod=HmacSHA256&Timestamp=1465185768&networkInterfaceId=eni-m6dyj72l&privateIpAddressSet.0.primary=false&privateIpAddressSet.0.privateIpAddress=10.0.0.6&vpcId=vpc-7t9nf3pu&Signature=F%2FCSucUtVe3lwGBxaeByM1BlFLMixvfjJNpu3y9JHPA%3D",
        ),
        (
            "X3",
            "POST",
            "vpc.api.qcloud.com",
            "Action=AssignPrivateIpAddresses&Nonce=11886&Timestamp=1465185768&Region=gz&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE&SignatureMethod=HmacSHA1&vpcId=vpc-7t9nf3pu&networkInterfaceId=eni-m6dyj72l&secondaryPrivateIpAddressCount=2&Signature=FWtzs64KKAfeqkjb22AMrSu262E%3D",
        ),
        (
            "O4",
            "GET",
            "cvm.api.qcloud.com",
            "Action=DescribeInstances&Nonce=11886&Region=gz&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA&Timestamp=1465185768&instanceIds.0=ins-09dx96dg&limit=20&offset=0&Signature=NSI3UqqD99b%2FUJb4tbG%2FxZpRW64%3D",
        ),
        (
            "O5",
            "GET",
            "cvm.api.qcloud.com",
            "Action=DescribeInstances&InstanceIds.0=ins-09dx96dg&Nonce=11886&Region=ap-guangzhou&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA&SignatureMethod=HmacSHA256&Timestamp=1465185768&Signature=0EEm%2FHtGRr%2FVJXTAD9tYMth1Bzm3lLHz5RCDv1GdM8s%3D",
        ),
    ];
    for (name, method, host, form) in legacy {
        let send = |sim_url: String, form: String| {
            let b = if *method == "GET" {
                http().get(format!("{sim_url}/v2/index.php?{form}"))
            } else {
                http()
                    .post(format!("{sim_url}/v2/index.php"))
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form)
            };
            b.header("Host", *host).send()
        };
        let sim = sim_from(&plain).await;
        let (_, v) = json_of(send(sim.base_url(), form.to_string()).await.unwrap()).await;
        assert!(
            ![4100, 4104, 4500].contains(&v["code"].as_i64().unwrap()),
            "{name}: {v}"
        );
        let sim = sim_from(&plain).await;
        let (_, v) = json_of(
            send(
                sim.base_url(),
                form.replace("=gz", "=sh")
                    .replace("ap-guangzhou", "ap-shanghai"),
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(
            (v["code"].as_i64(), v["codeDesc"].as_str()),
            (Some(4100), Some("AuthFailure.SignatureFailure")),
            "{name} tampered: {v}"
        );
    }
}

#[tokio::test]
async fn tencent_auth_failures() {
    let sim = sim().await;
    let r = tc_with(
        &sim,
        ("AKIDtestkey0001", "wrong-secret"),
        "vpc",
        "DescribeSubnets",
        "ap-guangzhou",
        json!({}),
        None,
    )
    .await;
    assert_eq!(tc_code(&r), "AuthFailure.SignatureFailure");
    let r = tc_with(
        &sim,
        ("AKIDunknown", "tc-test-secret-key"),
        "vpc",
        "DescribeSubnets",
        "ap-guangzhou",
        json!({}),
        None,
    )
    .await;
    assert_eq!(tc_code(&r), "AuthFailure.SecretIdNotFound");
    // Temporary credentials need their session token.
    let r = tc_subnets_as(&sim, TC_TEMP, None).await;
    assert_eq!(tc_code(&r), "AuthFailure.TokenFailure");
    let r = tc_subnets_as(&sim, TC_TEMP, Some("bad-token")).await;
    assert_eq!(tc_code(&r), "AuthFailure.TokenFailure");
    tc_ok(&tc_subnets_as(&sim, TC_TEMP, Some("tc-session-token")).await);
    // Stale timestamp, garbage Authorization, no credentials at all, bad version.
    let stale = now() - 400;
    let host = sim.addr().to_string();
    let headers = [
        ("content-type", "application/json"),
        ("host", host.as_str()),
    ];
    let payload = signing::sha256_hex(b"{}");
    let req = tc3::Request {
        method: "POST",
        canonical_query: "",
        headers: &headers,
        payload_hash: &payload,
        service: "vpc",
        timestamp: stale,
    };
    let sig = tc3::signature(TC_KEY.1, &req).unwrap();
    let send = |ts: i64, authz: String, version: &'static str| {
        http()
            .post(format!("{}/", sim.base_url()))
            .header("Content-Type", "application/json")
            .header("X-TC-Action", "DescribeSubnets")
            .header("X-TC-Version", version)
            .header("X-TC-Region", "ap-guangzhou")
            .header("X-TC-Timestamp", ts.to_string())
            .header("Authorization", authz)
            .body("{}")
            .send()
    };
    let (_, v) = json_of(
        send(
            stale,
            tc3::authorization(TC_KEY.0, &req, &sig).unwrap(),
            "2017-03-12",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(tc_code(&v["Response"]), "AuthFailure.SignatureExpire");
    let (_, v) = json_of(
        send(now(), "TC3-HMAC-SHA256 nonsense".into(), "2017-03-12")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(tc_code(&v["Response"]), "AuthFailure.InvalidAuthorization");
    let (_, v) = json_of(
        http()
            .post(format!("{}/", sim.base_url()))
            .header("X-TC-Action", "DescribeSubnets")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(tc_code(&v["Response"]), "AuthFailure.InvalidAuthorization");
    let ts = now();
    let req = tc3::Request {
        timestamp: ts,
        ..req
    };
    let sig = tc3::signature(TC_KEY.1, &req).unwrap();
    let (_, v) = json_of(
        send(
            ts,
            tc3::authorization(TC_KEY.0, &req, &sig).unwrap(),
            "2020-01-01",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(tc_code(&v["Response"]), "NoSuchVersion");
    let audit = serde_json::to_string(&sim.audit()).unwrap();
    assert!(!audit.contains("tc-test-secret-key") && !audit.contains("tc-session-token"));
}

// ---------------------------------------------------------------- Legacy API 2.0

/// A query-signed request (legacy API 2.0 at `/v2/index.php`, signature v1
/// of API 3.0 at `/`): `params` get a fresh nonce, the timestamp and the key,
/// and are sent as the query (GET) or a form body (POST). Also returns the
/// signature, which must never be echoed anywhere.
fn query_request(
    sim: &RunningSim,
    method: &str,
    path: &str,
    key: (&str, &str),
    params: &[(&str, &str)],
    ts: i64,
) -> (reqwest::RequestBuilder, String) {
    let host = sim.addr().to_string();
    let nonce = rand::random::<u32>().to_string();
    let ts = ts.to_string();
    let mut all: Vec<(&str, &str)> = vec![
        ("Nonce", &nonce),
        ("Timestamp", &ts),
        ("SecretId", key.0),
        ("SignatureMethod", "HmacSHA256"),
    ];
    all.extend_from_slice(params);
    let sts = query::string_to_sign(method, &host, path, all.iter().copied());
    let sig = query::signature(key.1, query::Method::HmacSha256, &sts);
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &all {
        ser.append_pair(k, v);
    }
    ser.append_pair("Signature", &sig);
    let form = ser.finish();
    let b = if method == "GET" {
        http().get(format!("{}{path}?{form}", sim.base_url()))
    } else {
        http()
            .post(format!("{}{path}", sim.base_url()))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
    };
    (b, sig)
}

async fn legacy_with(
    sim: &RunningSim,
    method: &str,
    key: (&str, &str),
    params: &[(&str, &str)],
    ts: i64,
) -> Value {
    let mut all = vec![("Region", "gz")];
    all.extend_from_slice(params);
    let (b, _) = query_request(sim, method, "/v2/index.php", key, &all, ts);
    let (status, v) = json_of(b.send().await.unwrap()).await;
    assert_eq!(status, 200);
    v
}

async fn legacy(sim: &RunningSim, params: &[(&str, &str)]) -> Value {
    legacy_with(sim, "GET", TC_KEY, params, now()).await
}

#[tokio::test]
async fn legacy_assign_task_describe() {
    let sim = sim().await;
    // Held, so that the task is still running when queried however slow the machine.
    sim.hold_async(true);
    let r = legacy(
        &sim,
        &[
            ("Action", "AssignPrivateIpAddresses"),
            ("vpcId", "vpc-7t9nf3pu"),
            ("networkInterfaceId", "eni-m6dyj72l"),
            ("privateIpAddressSet.0.privateIpAddress", "172.16.0.50"),
            ("privateIpAddressSet.0.primary", "false"),
        ],
    )
    .await;
    assert_eq!(
        (r["code"].as_i64(), r["codeDesc"].as_str()),
        (Some(0), Some("Success")),
        "{r}"
    );
    let task = r["data"]["taskId"]
        .as_u64()
        .expect("integer taskId")
        .to_string();
    let t = legacy(
        &sim,
        &[("Action", "DescribeVpcTaskResult"), ("taskId", &task)],
    )
    .await;
    assert_eq!(t["data"]["status"], 2);
    sim.hold_async(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while legacy(
        &sim,
        &[("Action", "DescribeVpcTaskResult"), ("taskId", &task)],
    )
    .await["data"]["status"]
        != 0
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let r = legacy_with(
        &sim,
        "POST",
        TC_KEY,
        &[
            ("Action", "DescribeNetworkInterfaces"),
            ("networkInterfaceId", "eni-m6dyj72l"),
        ],
        now(),
    )
    .await;
    assert_eq!(r["data"]["totalNum"], 1);
    let ips: Vec<&str> = r["data"]["data"][0]["privateIpAddressesSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["privateIpAddress"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["172.16.0.10", "172.16.0.50"]);

    type Case<'a> = (Vec<(&'a str, &'a str)>, i64, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("Action", "AssignPrivateIpAddresses"),
                ("vpcId", "vpc-nope0000"),
                ("networkInterfaceId", "eni-m6dyj72l"),
                ("secondaryPrivateIpAddressCount", "1"),
            ],
            5000,
            "InvalidVpc.NotFound",
        ),
        (
            vec![
                ("Action", "AssignPrivateIpAddresses"),
                ("vpcId", "vpc-7t9nf3pu"),
                ("networkInterfaceId", "eni-nope0000"),
                ("secondaryPrivateIpAddressCount", "1"),
            ],
            5000,
            "InvalidNetworkInterface.NotFound",
        ),
        (
            vec![
                ("Action", "AssignPrivateIpAddresses"),
                ("vpcId", "vpc-7t9nf3pu"),
                ("networkInterfaceId", "eni-bbbbbbbb"),
                ("privateIpAddressSet.0.privateIpAddress", "172.16.0.50"),
                ("privateIpAddressSet.0.primary", "false"),
            ],
            5100,
            "InvalidPrivateIpAddress.InUse",
        ),
        (
            vec![
                ("Action", "AssignPrivateIpAddresses"),
                ("vpcId", "vpc-7t9nf3pu"),
                ("networkInterfaceId", "eni-bbbbbbbb"),
                ("privateIpAddressSet.0.privateIpAddress", "172.16.0.255"),
                ("privateIpAddressSet.0.primary", "false"),
            ],
            4000,
            "InvalidParameterValue.Reserved",
        ),
        (
            vec![
                ("Action", "UnassignPrivateIpAddresses"),
                ("vpcId", "vpc-7t9nf3pu"),
                ("networkInterfaceId", "eni-bbbbbbbb"),
                ("privateIpAddress.0", "172.16.0.20"),
            ],
            4000,
            "InvalidPrivateip.IsPrimary",
        ),
        (
            vec![("Action", "DescribeVpcTaskResult"), ("taskId", "999999")],
            5000,
            "InvalidTask.NotFound",
        ),
        (vec![("Action", "LaunchRockets")], 6100, "InvalidAction"),
        (
            vec![("Action", "DescribeNetworkInterfaces"), ("limit", "51")],
            4000,
            "InvalidParameter",
        ),
    ];
    for (params, code, desc) in cases {
        let r = legacy(&sim, &params).await;
        assert_eq!(
            (r["code"].as_i64(), r["codeDesc"].as_str()),
            (Some(code), Some(desc)),
            "{params:?}: {r}"
        );
        assert!(r.get("data").is_none());
    }
    let r = legacy(
        &sim,
        &[
            ("Action", "UnassignPrivateIpAddresses"),
            ("vpcId", "vpc-7t9nf3pu"),
            ("networkInterfaceId", "eni-bbbbbbbb"),
            ("privateIpAddress.0", "172.16.0.21"),
        ],
    )
    .await;
    assert_eq!(r["code"], 0, "{r}");
    poll("legacy unassign", || {
        secondaries(&sim, "eni-bbbbbbbb").is_empty()
    })
    .await;
}

#[tokio::test]
async fn legacy_attach_and_detach() {
    let sim = sim().await;
    // Attach and detach through the legacy API.
    let r = legacy(
        &sim,
        &[
            ("Action", "AttachNetworkInterface"),
            ("vpcId", "vpc-7t9nf3pu"),
            ("networkInterfaceId", "eni-bbbbbbbb"),
            ("instanceId", "ins-gz000001"),
        ],
    )
    .await;
    assert_eq!(r["code"], 0, "{r}");
    poll("legacy attach", || {
        sim.world().tencent.nics["eni-bbbbbbbb"].status == "USED"
    })
    .await;
    let r = legacy(
        &sim,
        &[
            ("Action", "DetachNetworkInterface"),
            ("vpcId", "vpc-7t9nf3pu"),
            ("networkInterfaceId", "eni-bbbbbbbb"),
            ("instanceId", "ins-gz000001"),
        ],
    )
    .await;
    assert_eq!(r["code"], 0, "{r}");
    poll("legacy detach", || {
        sim.world().tencent.nics["eni-bbbbbbbb"].status == "AVAILABLE"
    })
    .await;
}

#[tokio::test]
async fn legacy_authentication() {
    let sim = sim().await;
    // Authentication.
    let r = legacy_with(
        &sim,
        "GET",
        ("AKIDtestkey0001", "wrong"),
        &[("Action", "DescribeNetworkInterfaces")],
        now(),
    )
    .await;
    assert_eq!(
        (r["code"].as_i64(), r["codeDesc"].as_str()),
        (Some(4100), Some("AuthFailure.SignatureFailure"))
    );
    let r = legacy_with(
        &sim,
        "GET",
        ("AKIDnobody", "wrong"),
        &[("Action", "DescribeNetworkInterfaces")],
        now(),
    )
    .await;
    assert_eq!(
        (r["code"].as_i64(), r["codeDesc"].as_str()),
        (Some(4104), Some("AuthFailure.SecretIdNotFound"))
    );
    let r = legacy_with(
        &sim,
        "GET",
        TC_KEY,
        &[("Action", "DescribeNetworkInterfaces")],
        now() - 400,
    )
    .await;
    assert_eq!(
        (r["code"].as_i64(), r["codeDesc"].as_str()),
        (Some(4500), Some("AuthFailure.SignatureExpire"))
    );
}

#[tokio::test]
async fn legacy_nonce_replay_is_refused() {
    let sim = sim().await;
    let host = sim.addr().to_string();
    let ts = now().to_string();
    let all = [
        ("Action", "DescribeNetworkInterfaces"),
        ("Nonce", "4242"),
        ("Timestamp", ts.as_str()),
        ("Region", "gz"),
        ("SecretId", TC_KEY.0),
    ];
    let sig = query::signature(
        TC_KEY.1,
        query::Method::HmacSha1,
        &query::string_to_sign("GET", &host, "/v2/index.php", all.iter().copied()),
    );
    let mut ser = form_urlencoded::Serializer::new(String::new());
    ser.extend_pairs(all.iter());
    ser.append_pair("Signature", &sig);
    let url = format!("{}/v2/index.php?{}", sim.base_url(), ser.finish());
    let (_, first) = json_of(http().get(&url).send().await.unwrap()).await;
    assert_eq!(first["code"], 0, "{first}");
    let (_, again) = json_of(http().get(&url).send().await.unwrap()).await;
    assert_eq!(
        (again["code"].as_i64(), again["codeDesc"].as_str()),
        (Some(4500), Some("AuthFailure.NonceReplayed")),
        "{again}"
    );
}

// ---------------------------------------------------------------- limits, faults, audit, control

/// A world where `DescribeSubnets` (Zenlayer, Tencent) and
/// `DescribeNetworkInterfaces` (Tencent, both generations) allow one call per
/// key and then nothing for a quarter of an hour: the second call is throttled
/// however slowly the test runs.
fn throttled_world(extra_settings: &str) -> String {
    WORLD
        .replace(
            "zenlayer:\n  asyncLatencyMs: 500",
            "zenlayer:\n  asyncLatencyMs: 500\n  rateLimits: {DescribeSubnets: 0.001}",
        )
        .replace(
            "tencent:\n  asyncLatencyMs: 500",
            "tencent:\n  asyncLatencyMs: 500\n  rateLimits: {DescribeSubnets: 0.001, DescribeNetworkInterfaces: 0.001}",
        )
        .replace("accounts:\n", &format!("settings: {{{extra_settings}}}\naccounts:\n"))
}

#[tokio::test]
async fn rate_limits_answer_with_throttling_errors() {
    let sim = sim_from(&throttled_world("")).await;
    zl_ok(&zl(&sim, "DescribeSubnets", json!({})).await);
    zl_err(
        &zl(&sim, "DescribeSubnets", json!({})).await,
        429,
        "REQUEST_LIMIT_EXCEEDED",
    );
    // Other actions have their own buckets.
    zl_ok(&zl(&sim, "DescribeNetworkInterfaceRegions", json!({})).await);

    // Tencent API 3.0: HTTP 200 (asserted by `tc_with`) and the gateway code.
    tc_ok(&tc(&sim, "DescribeSubnets", json!({})).await);
    let r = tc(&sim, "DescribeSubnets", json!({})).await;
    assert_eq!(tc_code(&r), "RequestLimitExceeded", "{r}");
    // Each key has its own buckets.
    tc_ok(&tc_subnets_as(&sim, TC_TEMP, Some("tc-session-token")).await);

    // Legacy API 2.0: its own envelope, numeric class 4400.
    let describe = [("Action", "DescribeNetworkInterfaces")];
    let r = legacy(&sim, &describe).await;
    assert_eq!(r["code"], 0, "{r}");
    let r = legacy(&sim, &describe).await;
    assert_eq!(
        (r["code"].as_i64(), r["codeDesc"].as_str()),
        (Some(4400), Some("RequestLimitExceeded")),
        "{r}"
    );

    // The documented default for an action the world leaves alone:
    // `DescribeVpcTaskResult`, 20 per second. However long 200 concurrent calls
    // take, at most 20 + 20/s of them pass (so some are throttled unless they
    // take 9 s), and at least the first 20.
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let req = tc_request(
            &sim,
            TC_KEY,
            "vpc",
            "DescribeVpcTaskResult",
            "ap-guangzhou",
            json!({"TaskId": "1"}),
            None,
        );
        calls.spawn(async move { json_of(req.send().await.unwrap()).await.1 });
    }
    let mut passed = 0.0;
    while let Some(r) = calls.join_next().await {
        if tc_code(&r.unwrap()["Response"]) != "RequestLimitExceeded" {
            passed += 1.0;
        }
    }
    let ceiling = 20.0 + 20.0 * started.elapsed().as_secs_f64();
    assert!(
        (20.0..=ceiling).contains(&passed) && passed < 200.0,
        "{passed} of 200 passed, at most {ceiling} allowed"
    );

    let outcomes: Vec<_> = sim
        .audit()
        .into_iter()
        .map(|e| (e.protocol, e.action, e.outcome))
        .collect();
    for (protocol, action, code) in [
        (
            Protocol::Zenlayer,
            "DescribeSubnets",
            "REQUEST_LIMIT_EXCEEDED",
        ),
        (Protocol::Tencent, "DescribeSubnets", "RequestLimitExceeded"),
        (
            Protocol::TencentLegacy,
            "DescribeNetworkInterfaces",
            "RequestLimitExceeded",
        ),
    ] {
        assert!(
            outcomes.contains(&(protocol, action.to_string(), code.to_string())),
            "throttling is audited: {outcomes:?}"
        );
    }
    sim.shutdown().await;

    // The VPC service's own per-action code, chosen in the world file.
    let sim = sim_from(&throttled_world(
        "tencentThrottleCode: LimitExceeded.ActionLimited",
    ))
    .await;
    tc_ok(&tc(&sim, "DescribeSubnets", json!({})).await);
    let r = tc(&sim, "DescribeSubnets", json!({})).await;
    assert_eq!(tc_code(&r), "LimitExceeded.ActionLimited", "{r}");
    assert_eq!(legacy(&sim, &describe).await["code"], 0);
    let r = legacy(&sim, &describe).await;
    assert_eq!(
        (r["code"].as_i64(), r["codeDesc"].as_str()),
        (Some(4400), Some("LimitExceeded.ActionLimited")),
        "{r}"
    );
    let err = World::from_yaml("settings: {tencentThrottleCode: SlowDown}")
        .expect_err("an unknown throttle code is refused")
        .to_string();
    assert!(err.contains("SlowDown"), "{err}");
}

/// A latency fault delays the answer on tokio's clock: measured on a paused
/// clock, the delay is exact and the test takes no wall-clock time.
#[tokio::test(start_paused = true)]
async fn latency_faults_delay_the_answer_on_tokio_time() {
    let sim = sim().await;
    sim.set_faults(vec![Fault {
        action: Some("DescribeNetworkInterfaceRegions".into()),
        latency_ms: Some(300),
        ..Fault::default()
    }])
    .unwrap();
    let started = tokio::time::Instant::now();
    zl_ok(&zl(&sim, "DescribeNetworkInterfaceRegions", json!({})).await);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(400),
        "{elapsed:?}"
    );
    let started = tokio::time::Instant::now();
    zl_ok(&zl(&sim, "DescribeSubnets", json!({})).await);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "no fault, no delay"
    );
}

#[tokio::test]
async fn faults_over_the_control_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let world = World::from_yaml(WORLD).unwrap();
    let sim =
        cloudsim::start_with_audit_log(world, "127.0.0.1:0".parse().unwrap(), Some(log.clone()))
            .await
            .unwrap();
    let faults = json!([
        {"protocol": "zenlayer", "action": "DescribeSubnets", "error": "INTERNAL_SERVER_ERROR", "times": 1},
        {"protocol": "tencent", "action": "DescribeSubnets", "error": "InternalError", "message": "boom"},
        {"action": "DescribeNetworkInterfaceRegions", "latencyMs": 300}
    ]);
    let resp = http()
        .put(format!("{}/_sim/faults", sim.base_url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    zl_err(
        &zl(&sim, "DescribeSubnets", json!({})).await,
        500,
        "INTERNAL_SERVER_ERROR",
    );
    zl_ok(&zl(&sim, "DescribeSubnets", json!({})).await);
    let r = tc(&sim, "DescribeSubnets", json!({})).await;
    assert_eq!(
        (tc_code(&r), r["Error"]["Message"].as_str()),
        ("InternalError", Some("boom"))
    );
    zl_ok(&zl(&sim, "DescribeNetworkInterfaceRegions", json!({})).await);
    let listed: Value = sim_get(&sim, "/_sim/faults").await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        2,
        "the one-shot fault is gone: {listed}"
    );
    let bad = http()
        .put(format!("{}/_sim/faults", sim.base_url()))
        .json(&json!([{"rate": 2.0, "error": "X"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let cleared = http()
        .delete(format!("{}/_sim/faults", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);
    tc_ok(&tc(&sim, "DescribeSubnets", json!({})).await);

    // A Tencent task that fails: FAILED in DescribeVpcTaskResult, change rolled back.
    sim.set_faults(vec![Fault {
        protocol: Some(Protocol::Tencent),
        action: Some("AssignPrivateIpAddresses".into()),
        fail_task: true,
        ..Fault::default()
    }])
    .unwrap();
    let r = tc(
        &sim,
        "AssignPrivateIpAddresses",
        json!({"NetworkInterfaceId": "eni-m6dyj72l", "SecondaryPrivateIpAddressCount": 1}),
    )
    .await;
    let task = tc_ok(&r)["RequestId"].as_str().unwrap().to_string();
    poll("task failed", || {
        sim.world().tencent.tasks[&task].status == cloudsim::TaskStatus::Failed
    })
    .await;
    assert_eq!(
        tc(&sim, "DescribeVpcTaskResult", json!({"TaskId": task})).await["Status"],
        "FAILED"
    );
    assert!(secondaries(&sim, "eni-m6dyj72l").is_empty());
    sim.clear_faults();
    zl_ok(
        &zl(
            &sim,
            "BatchAssignNetworkInterfaceIpv4",
            json!({"nicId": "nic-zl-a", "ipAddresses": ["10.0.0.77"]}),
        )
        .await,
    );

    // The world endpoint and the audit log.
    let w: Value = sim_get(&sim, "/_sim/world").await;
    let nic = w["zenlayer"]["nics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "nic-zl-a")
        .unwrap()
        .clone();
    assert_eq!(nic["secondaryIpv4"][0]["address"], "10.0.0.77");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for l in &lines {
        let mut keys: Vec<_> = l.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "action",
                "keyId",
                "outcome",
                "params",
                "provider",
                "requestId",
                "time"
            ],
            "exactly the fields the issue asks for: {l}"
        );
    }
    let first = &lines[0];
    assert_eq!(
        (
            first["provider"].as_str(),
            first["action"].as_str(),
            first["outcome"].as_str()
        ),
        (
            Some("zenlayer"),
            Some("DescribeSubnets"),
            Some("INTERNAL_SERVER_ERROR")
        )
    );
    assert_eq!(first["keyId"], "zl-test-key");
    assert!(first["requestId"].as_str().unwrap().starts_with('T'));
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    assert!(
        lines.iter().any(
            |l| l["params"]["ipAddresses"] == json!(["10.0.0.77"]) && l["outcome"] == "Success"
        )
    );
    assert!(!text.contains("zl-test-password") && !text.contains("tc-test-secret-key"));
    sim.shutdown().await;
}

/// "Apply the change, then drop the response" on each protocol: the
/// connection closes without an answer, yet the change lands (Tencent: once
/// its task completes) and the audit log records it as done.
#[tokio::test]
async fn dropped_responses_keep_the_change_on_every_protocol() {
    let sim = sim().await;
    let drop_on = |protocol, action: &str| Fault {
        protocol: Some(protocol),
        action: Some(action.into()),
        drop_response: true,
        ..Fault::default()
    };
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();

    sim.set_faults(vec![drop_on(
        Protocol::Zenlayer,
        "BatchAssignNetworkInterfaceIpv4",
    )])
    .unwrap();
    let body = json!({"nicId": "nic-zl-a", "ipAddresses": ["10.0.0.77"]}).to_string();
    let ts = now();
    let host = sim.addr().to_string();
    let sig = zc2::signature(ZL_KEY.1, ts, "application/json", &host, body.as_bytes());
    let sent = http()
        .post(format!("{}/api/v2/zec", sim.base_url()))
        .header("Content-Type", "application/json")
        .header("X-ZC-Action", "BatchAssignNetworkInterfaceIpv4")
        .header("X-ZC-Timestamp", ts.to_string())
        .header("Authorization", zc2::authorization(ZL_KEY.0, &sig))
        .body(body)
        .send()
        .await;
    assert!(sent.is_err(), "the response must be lost: {sent:?}");
    assert_eq!(secondaries(&sim, "nic-zl-a"), [ip("10.0.0.77")]);

    sim.set_faults(vec![drop_on(Protocol::Tencent, "AssignPrivateIpAddresses")])
        .unwrap();
    let sent = tc_request(
        &sim,
        TC_KEY,
        "vpc",
        "AssignPrivateIpAddresses",
        "ap-guangzhou",
        json!({"NetworkInterfaceId": "eni-m6dyj72l", "PrivateIpAddresses": ips(&["172.16.0.60"])}),
        None,
    )
    .send()
    .await;
    assert!(sent.is_err(), "the response must be lost: {sent:?}");
    poll("the Tencent assignment task", || {
        let w = sim.world();
        !w.tencent.tasks.is_empty()
            && w.tencent
                .tasks
                .values()
                .all(|t| t.status == cloudsim::TaskStatus::Success)
    })
    .await;
    assert_eq!(secondaries(&sim, "eni-m6dyj72l"), [ip("172.16.0.60")]);

    sim.set_faults(vec![drop_on(
        Protocol::TencentLegacy,
        "UnassignPrivateIpAddresses",
    )])
    .unwrap();
    let (req, _) = query_request(
        &sim,
        "POST",
        "/v2/index.php",
        TC_KEY,
        &[
            ("Region", "gz"),
            ("Action", "UnassignPrivateIpAddresses"),
            ("vpcId", "vpc-7t9nf3pu"),
            ("networkInterfaceId", "eni-m6dyj72l"),
            ("privateIpAddress.0", "172.16.0.60"),
        ],
        now(),
    );
    let sent = req.send().await;
    assert!(sent.is_err(), "the response must be lost: {sent:?}");
    poll("the legacy unassignment", || {
        secondaries(&sim, "eni-m6dyj72l").is_empty()
    })
    .await;

    let done: Vec<_> = sim
        .audit()
        .into_iter()
        .map(|e| (e.protocol, e.action, e.outcome))
        .collect();
    assert_eq!(
        done,
        [
            (
                Protocol::Zenlayer,
                "BatchAssignNetworkInterfaceIpv4",
                "Success"
            ),
            (Protocol::Tencent, "AssignPrivateIpAddresses", "Success"),
            (
                Protocol::TencentLegacy,
                "UnassignPrivateIpAddresses",
                "Success"
            ),
        ]
        .map(|(p, a, o)| (p, a.to_string(), o.to_string()))
    );
}

/// No secret of any kind (Zenlayer key password and bearer token, Tencent
/// SecretKey and session token, the query signatures of API 3.0 v1 and the
/// legacy API) reaches an answer, the audit log file, the control endpoints
/// or Debug output, whether the request succeeds or is refused.
#[tokio::test]
async fn no_secret_reaches_answers_or_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let world = World::from_yaml(WORLD).unwrap();
    let mut secrets: Vec<String> = [
        "zl-test-password",
        "zl-test-bearer",
        "zl-wrong-bearer",
        "zl-wrong-password",
        "tc-test-secret-key",
        "tc-temp-secret-key",
        "tc-session-token",
        "tc-wrong-session-token",
        "tc-wrong-secret-key",
    ]
    .map(String::from)
    .to_vec();
    let debug = format!("{world:?}");
    let sim =
        cloudsim::start_with_audit_log(world, "127.0.0.1:0".parse().unwrap(), Some(log.clone()))
            .await
            .unwrap();
    let mut answers: Vec<(&str, Value)> = Vec::new();

    for (what, key) in [
        ("zenlayer signed", ZL_KEY),
        ("zenlayer wrong password", (ZL_KEY.0, "zl-wrong-password")),
    ] {
        let r = zl_send(
            &sim,
            ZlReq {
                action: "DescribeSubnets",
                body: "{}".into(),
                key,
                timestamp: now(),
                host: None,
            },
        )
        .await;
        answers.push((what, r.1));
    }
    for (what, token) in [
        ("zenlayer bearer", "zl-test-bearer"),
        ("zenlayer wrong bearer", "zl-wrong-bearer"),
    ] {
        let resp = http()
            .post(format!("{}/api/v2/zec", sim.base_url()))
            .header("Content-Type", "application/json")
            .header("X-ZC-Action", "DescribeSubnets")
            .header("Authorization", format!("Bearer {token}"))
            .body("{}")
            .send()
            .await
            .unwrap();
        answers.push((what, json_of(resp).await.1));
    }

    let temp = TC_TEMP;
    for (what, key, token) in [
        ("tc3 session token", temp, "tc-session-token"),
        ("tc3 wrong token", temp, "tc-wrong-session-token"),
        (
            "tc3 wrong key",
            (temp.0, "tc-wrong-secret-key"),
            "tc-session-token",
        ),
    ] {
        answers.push((what, tc_subnets_as(&sim, key, Some(token)).await));
    }
    let v1 = [
        ("Action", "DescribeSubnets"),
        ("Version", "2017-03-12"),
        ("Region", "ap-guangzhou"),
        ("Token", "tc-session-token"),
    ];
    let legacy_params = [("Action", "DescribeNetworkInterfaces"), ("Region", "gz")];
    for (what, method, path, key, params) in [
        ("v1 GET", "GET", "/", temp, &v1[..]),
        (
            "v1 POST wrong key",
            "POST",
            "/",
            (temp.0, "tc-wrong-secret-key"),
            &v1[..],
        ),
        (
            "legacy GET",
            "GET",
            "/v2/index.php",
            TC_KEY,
            &legacy_params[..],
        ),
        (
            "legacy POST",
            "POST",
            "/v2/index.php",
            TC_KEY,
            &legacy_params[..],
        ),
        (
            "legacy wrong key",
            "GET",
            "/v2/index.php",
            (TC_KEY.0, "tc-wrong-secret-key"),
            &legacy_params[..],
        ),
    ] {
        let (req, sig) = query_request(&sim, method, path, key, params, now());
        secrets.push(sig);
        answers.push((what, json_of(req.send().await.unwrap()).await.1));
    }

    // Each request did what it should, so the checks below saw real traffic.
    let outcome = |v: &Value| -> String {
        let r = v.get("Response").unwrap_or(v);
        [&v["code"], &r["Error"]["Code"], &v["codeDesc"]]
            .iter()
            .find_map(|c| c.as_str().map(String::from))
            .unwrap_or_else(|| "Success".into())
    };
    let got: Vec<(&str, String)> = answers.iter().map(|(w, v)| (*w, outcome(v))).collect();
    assert_eq!(
        got,
        [
            ("zenlayer signed", "Success"),
            ("zenlayer wrong password", "SIMULATOR_AUTH_FAILED"),
            ("zenlayer bearer", "Success"),
            ("zenlayer wrong bearer", "SIMULATOR_AUTH_FAILED"),
            ("tc3 session token", "Success"),
            ("tc3 wrong token", "AuthFailure.TokenFailure"),
            ("tc3 wrong key", "AuthFailure.SignatureFailure"),
            ("v1 GET", "Success"),
            ("v1 POST wrong key", "AuthFailure.SignatureFailure"),
            ("legacy GET", "Success"),
            ("legacy POST", "Success"),
            ("legacy wrong key", "AuthFailure.SignatureFailure"),
        ]
        .map(|(w, c)| (w, c.to_string()))
    );

    let control = |path: &'static str| {
        let url = format!("{}{path}", sim.base_url());
        async move { http().get(url).send().await.unwrap().text().await.unwrap() }
    };
    let audit_file = std::fs::read_to_string(&log).unwrap();
    assert_eq!(audit_file.lines().count(), answers.len());
    let mut places = vec![
        ("the audit log file", audit_file),
        ("/_sim/audit", control("/_sim/audit").await),
        ("/_sim/world", control("/_sim/world").await),
        ("World's Debug", debug),
    ];
    places.extend(answers.iter().map(|(w, v)| (*w, v.to_string())));
    for (place, text) in &places {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{place} shows {secret}: {text}"
            );
        }
    }
    // The log names the key id a request presented instead, refused or not;
    // nothing for an unknown bearer token, which is itself the secret.
    let (zl_key, tc_temp, tc_key) = ("zl-test-key", "AKIDtempkey0001", TC_KEY.0);
    let key_ids: Vec<String> = sim.audit().into_iter().map(|e| e.key_id).collect();
    assert_eq!(
        key_ids,
        [
            zl_key, zl_key, zl_key, "", tc_temp, tc_temp, tc_temp, tc_temp, tc_temp, tc_key,
            tc_key, tc_key
        ]
    );
}

/// Rules that need a world of their own: exhausted IPv6 space, an instance
/// at its NIC limit, an ENI in a transitional state.
#[tokio::test]
async fn small_world_rules() {
    let sim = sim_from(
        r#"
accounts:
  zenlayer: [{keyId: zl-test-key, keyPassword: zl-test-password}]
  tencent: [{secretId: AKIDtestkey0001, secretKey: tc-test-secret-key}]
zenlayer:
  regions: [{id: r1, zones: [r1a]}]
  vpcs: [{id: v1, region: r1}]
  subnets: [{id: s6, vpc: v1, cidr: 10.0.0.0/24, ipv6Cidr: "2001:db8::/96", ipv6MaskLength: 96}]
  instances: [{id: i1, zone: r1a, nicLimit: 1}]
  nics:
    - {id: n1, subnet: s6, instance: i1}
    - {id: n2, subnet: s6}
tencent:
  regions: [{id: ap-guangzhou, zones: [ap-guangzhou-3]}]
  vpcs: [{id: vpc-00000001, region: ap-guangzhou}]
  subnets: [{id: subnet-00000001, vpc: vpc-00000001, zone: ap-guangzhou-3, cidr: 172.16.0.0/24, ipv6Cidr: "2402:4e00::/126"}]
  nics:
    - {id: eni-00000001, subnet: subnet-00000001}
    - {id: eni-00000002, subnet: subnet-00000001, status: ATTACHING}
"#,
    )
    .await;
    // Zenlayer: the subnet holds one IPv6 block.
    zl_ok(&zl(&sim, "AssignNetworkInterfaceIpv6", json!({"nicId": "n1"})).await);
    let r = zl(&sim, "AssignNetworkInterfaceIpv6", json!({"nicId": "n2"})).await;
    zl_err(&r, 409, "INVALID_SUBNET_IPV6_INSUFFICIENT");
    assert!(sim.world().zenlayer.nics["n2"].ipv6.is_empty());
    // Zenlayer: the instance already has its one NIC.
    let r = zl(
        &sim,
        "AttachNetworkInterface",
        json!({"nicId": "n2", "instanceId": "i1"}),
    )
    .await;
    zl_err(&r, 400, "INVALID_INSTANCE_NIC_LIMIT");
    assert_eq!(sim.world().zenlayer.nics["n2"].status, "AVAILABLE");

    // Tencent: a /126 leaves two assignable addresses (`::` and `::1` are reserved).
    let r = tc(
        &sim,
        "AssignIpv6Addresses",
        json!({"NetworkInterfaceId": "eni-00000001", "Ipv6AddressCount": 3}),
    )
    .await;
    assert_eq!(tc_code(&r), "ResourceInsufficient", "{r}");
    assert!(sim.world().tencent.nics["eni-00000001"].ipv6.is_empty());
    // Tencent: an ENI in a transitional state takes no changes.
    let r = tc(
        &sim,
        "AssignPrivateIpAddresses",
        json!({"NetworkInterfaceId": "eni-00000002", "SecondaryPrivateIpAddressCount": 1}),
    )
    .await;
    assert_eq!(tc_code(&r), "UnsupportedOperation.InvalidState", "{r}");
    assert!(secondaries(&sim, "eni-00000002").is_empty());
    // Tencent: a filter must be an object.
    let r = tc(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"Filters": ["vpc-id"]}),
    )
    .await;
    assert_eq!(tc_code(&r), "InvalidParameter.FilterNotDict", "{r}");
}

/// Faults from the world file are active at start; `rate` is a probability
/// (60 tries at 0.5 land far inside 5..=55 unless the rate is ignored).
#[tokio::test]
async fn world_file_faults_fire_at_their_rate() {
    let sim = sim_from(&WORLD.replace(
        "accounts:\n",
        "faults:\n  - {protocol: tencent, action: DescribeSubnets, rate: 0.5, error: InternalError}\n  - {protocol: tencentLegacy, action: DescribeNetworkInterfaces, error: InternalError, times: 1}\naccounts:\n",
    ))
    .await;
    let mut failed = 0;
    for _ in 0..60 {
        let r = tc(&sim, "DescribeSubnets", json!({})).await;
        match tc_code(&r) {
            "InternalError" => failed += 1,
            "" => {}
            other => panic!("unexpected {other}: {r}"),
        }
    }
    assert!(
        (5..=55).contains(&failed),
        "{failed} of 60 failed at rate 0.5"
    );
    // Other actions and protocols are untouched.
    tc_ok(&tc(&sim, "DescribeNetworkInterfaces", json!({})).await);
    let describe = [("Action", "DescribeNetworkInterfaces")];
    let r = legacy(&sim, &describe).await;
    assert_eq!(
        (r["code"].as_i64(), r["codeDesc"].as_str()),
        (Some(6000), Some("InternalError")),
        "{r}"
    );
    assert_eq!(legacy(&sim, &describe).await["code"], 0, "fired once only");
    let listed: Value = sim_get(&sim, "/_sim/faults").await;
    assert_eq!(
        listed,
        json!([{"protocol": "tencent", "action": "DescribeSubnets", "rate": 0.5, "error": "InternalError"}])
    );
}

/// A body over 1 MiB is not read; each protocol answers its own way and the
/// call is audited.
#[tokio::test]
async fn oversized_bodies_get_each_protocols_size_error() {
    let sim = sim().await;
    let big = "x".repeat((1 << 20) + 1);
    let send = |path: &str, action: (&'static str, &'static str)| {
        http()
            .post(format!("{}{path}", sim.base_url()))
            .header(action.0, action.1)
            .body(big.clone())
            .send()
    };
    let r = json_of(
        send("/api/v2/zec", ("X-ZC-Action", "DescribeSubnets"))
            .await
            .unwrap(),
    )
    .await;
    zl_err(&r, 413, "INVALID_PARAMETER");
    let (status, v) = json_of(send("/", ("X-TC-Action", "DescribeSubnets")).await.unwrap()).await;
    assert_eq!(
        (status, v["Response"]["Error"]["Code"].as_str()),
        (200, Some("RequestSizeLimitExceeded")),
        "{v}"
    );
    assert!(v["Response"]["RequestId"].is_string(), "{v}");
    let (status, v) = json_of(send("/v2/index.php", ("X-Unused", "")).await.unwrap()).await;
    assert_eq!(
        (status, v["code"].as_i64(), v["codeDesc"].as_str()),
        (200, Some(4000), Some("RequestSizeLimitExceeded")),
        "{v}"
    );
    let outcomes: Vec<_> = sim.audit().into_iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        [
            "INVALID_PARAMETER",
            "RequestSizeLimitExceeded",
            "RequestSizeLimitExceeded"
        ]
    );
    let r = send("/_sim/faults", ("X-Unused", "")).await.unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn world_file_errors_name_the_entry() {
    let cases = [
        (
            "zenlayer: {regions: [{id: r, zones: [z]}], vpcs: [{id: v, region: r}], subnets: [{id: s, vpc: nope, cidr: 10.0.0.0/24}]}",
            "vpc `nope`",
        ),
        (
            "tencent: {regions: [{id: r, zones: [z]}], vpcs: [{id: bad, region: r}]}",
            "not a Tencent VPC id",
        ),
        (
            "zenlayer: {regions: [{id: r, zones: [z]}], vpcs: [{id: v, region: r}], subnets: [{id: s, vpc: v, cidr: 10.0.0.0/24}], nics: [{id: n, subnet: s, primaryIp: 10.0.0.255}]}",
            "broadcast",
        ),
        (
            "zenlayer: {regions: [{id: r, zones: [z]}], vpcs: [{id: v, region: r}], subnets: [{id: s, vpc: v, cidr: 10.0.0.0/24}], nics: [{id: n, subnet: s, primaryIp: 10.0.0.9}, {id: m, subnet: s, primaryIp: 10.0.0.9}]}",
            "in use",
        ),
        ("faults: [{rate: 0.5}]", "faults[0]"),
        ("colour: red", "colour"),
    ];
    for (yaml, needle) in cases {
        let err = World::from_yaml(yaml).expect_err(yaml).to_string();
        assert!(err.contains(needle), "{yaml}: {err}");
    }
    World::from_yaml(include_str!("../deploy/examples/cloudsim/world.yaml"))
        .expect("the example world loads");
}

#[tokio::test]
async fn a_fleet_sized_world_loads() {
    // 35,000 NICs of 8 nodes each: past the YAML parser's default budget of
    // 250,000 nodes, which a 10,000-claim benchmark world breached. (Primary
    // addresses are given: finding free ones is linear in a subnet's use.)
    let mut yaml = format!(
        "accounts:\n  zenlayer: [{{keyId: {}, keyPassword: {}}}]\nzenlayer:\n  regions: [{{id: r, zones: [z]}}]\n  vpcs: [{{id: v, region: r}}]\n  subnets: [{{id: s, vpc: v, cidr: 10.0.0.0/8}}]\n  nics:\n",
        ZL_KEY.0, ZL_KEY.1
    );
    for i in 0..35_000u32 {
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + i);
        yaml.push_str(&format!(
            "    - {{id: nic-{i}, subnet: s, primaryIp: {ip}, ipQuota: 30}}\n"
        ));
    }
    let sim = sim_from(&yaml).await;
    let (status, body) = zl(
        &sim,
        "DescribeNetworkInterfaces",
        json!({"nicIds": ["nic-34999"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(zl_ok(&(status, body.clone()))["totalCount"], 1, "{body}");
}

// ---------------------------------------------------------------- official SDKs

async fn run_sdk_script(script: &str, sim: &RunningSim) {
    let tools = support::PythonTools::get();
    let path = format!("{}/tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(tools.python())
        .arg(&path)
        .env("CLOUDSIM_ENDPOINT", sim.addr().to_string())
        .output()
        .await
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("ALL CHECKS PASSED"),
        "{script}:\n{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_zenlayer() {
    let sim = sim().await;
    run_sdk_script("zenlayer_sdk.py", &sim).await;
    assert!(!secondaries(&sim, "nic-zl-b").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_tencent() {
    let sim = sim().await;
    run_sdk_script("tencent_sdk.py", &sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_tencent_legacy() {
    let sim = sim().await;
    run_sdk_script("legacy_sdk.py", &sim).await;
}

// ---------------------------------------------------------------- the CLI

/// `nicip cloudsim` logs its address, serves, and exits cleanly on SIGTERM.
#[tokio::test]
async fn cli_serves_until_sigterm() {
    use tokio::io::AsyncBufReadExt;
    let world = format!(
        "{}/deploy/examples/cloudsim/world.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_nicip"))
        .args(["cloudsim", "--listen", "127.0.0.1:0", "--world", &world])
        .arg("--audit-log")
        .arg(&log)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn nicip");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(i) = line.find("http://127.0.0.1:") {
                return line[i..].split_whitespace().next().unwrap().to_string();
            }
        }
        panic!("nicip exited without logging its address");
    })
    .await
    .expect("address logged");
    let w: Value = http()
        .get(format!("{url}/_sim/world"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(w["tencent"]["nics"].as_array().unwrap().len(), 7);
    // An unsigned call is refused, and audited in the file.
    let r = http()
        .post(format!("{url}/api/v2/zec"))
        .header("X-ZC-Action", "DescribeSubnets")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let audit: Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(
        (&audit["provider"], &audit["action"], &audit["outcome"]),
        (
            &json!("zenlayer"),
            &json!("DescribeSubnets"),
            &json!("SIMULATOR_AUTH_FAILED")
        )
    );

    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_nicip"))
        .args(["cloudsim", "--world", "/nonexistent/world.yaml"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/world.yaml"));
}
