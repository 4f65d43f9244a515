//! Property-based fuzzing (proptest) through public interfaces:
//!
//! 1. the cloud client's response parsers, for every provider and every call
//!    it makes, against an endpoint serving arbitrary answers;
//! 2. the simulated cloud's request parsing on its three protocols;
//! 3. the in-memory Kubernetes API server's request handling;
//! 4. the controller's validation against the CRD's CEL rules, through
//!    admission in the in-memory API server.
//!
//! Each target runs `NICIP_FUZZ_CASES` cases (128 by default, the CI budget);
//! a long run is `NICIP_FUZZ_CASES=5000 cargo test --release --test fuzz`.
//! A failure prints the smallest input proptest found; `NICIP_FUZZ_TRACE=1`
//! (with `-- --nocapture`) prints every client case before it runs, to find
//! one that hangs.

mod rawhttp;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nicip::api::v1alpha1::NicIpClaimSpec;
use nicip::cloud::{
    CLIENT_CODES, CloudError, Credentials, IdempotencyKey, InstanceId, Ipv4Request, Ipv6Billing,
    NicProvider, NicRef, NicStatus, ObservedNic, Operation, Provider, ProviderSettings, Transport,
    TransportConfig,
};
use nicip::controller::plan::{Inputs, plan};
use nicip::controller::spec::{Owned, OwnedAttachment, Ownership, validate};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rawhttp::{Answer, Behaviour, Endpoint, Framing};
use serde_json::{Map, Value, json};

const SECRET: &str = "fuzz-secret-DO-NOT-LEAK";

fn cases() -> u32 {
    std::env::var("NICIP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

/// Runs `cases()` cases of `strategy` through `check` on one paused or real
/// tokio runtime, set up once by `setup`.
fn fuzz<S, T, Fs, Fut, C, CFut>(paused: bool, strategy: S, setup: Fs, check: C)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
    T: 'static,
    Fs: FnOnce() -> Fut,
    Fut: Future<Output = T>,
    C: Fn(&'static T, S::Value) -> CFut,
    CFut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(paused)
        .build()
        .expect("runtime");
    // Shared by every case for the whole run (the servers live as long).
    let state: &'static T = Box::leak(Box::new(rt.block_on(setup())));
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 512,
        ..Config::default()
    });
    let result = runner.run(&strategy, |case| {
        rt.block_on(check(state, case));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ------------------------------------------------------------ JSON helpers

/// Field names the clients and simulators read, so that arbitrary objects
/// often reach the code behind them.
const FIELD_NAMES: &[&str] = &[
    "Response",
    "RequestId",
    "Error",
    "Code",
    "Message",
    "TotalCount",
    "NetworkInterfaceSet",
    "NetworkInterfaceId",
    "PrivateIpAddressSet",
    "PrivateIpAddress",
    "Primary",
    "State",
    "Ipv6AddressSet",
    "Address",
    "Attachment",
    "InstanceId",
    "SubnetSet",
    "CidrBlock",
    "Status",
    "Output",
    "InstanceSet",
    "InstanceState",
    "Placement",
    "Zone",
    "requestId",
    "response",
    "code",
    "message",
    "dataSet",
    "totalCount",
    "nicId",
    "status",
    "secondaryIpv4s",
    "primaryIpv6",
    "ipv6Cidr",
    "instanceId",
    "subnetId",
    "cidrBlock",
    "gatewayIpAddress",
    "ipAddresses",
    "codeDesc",
    "data",
    "totalNum",
    "networkInterfaceId",
    "privateIpAddressesSet",
    "privateIpAddress",
    "primary",
    "instanceSet",
    "taskId",
    "output",
    "errorCode",
    "metadata",
    "spec",
    "name",
    "namespace",
    "resourceVersion",
    "finalizers",
    "labels",
    "kind",
    "apiVersion",
];

const TRICKY_STRINGS: &[&str] = &[
    "",
    " ",
    "eni-1",
    "nic-1",
    "ins-1",
    "subnet-1",
    "10.0.0.5",
    "10.0.0.300",
    "010.0.0.1",
    "2001:db8::5",
    "2001:db8::zz",
    "2001:db8::/64",
    "10.0.0.0/33",
    "10.0.0.0/24",
    "-1",
    "1e400",
    "RUNNING",
    "FAILED",
    "SUCCESS",
    "PENDING",
    "DELETING",
    "USED",
    "AVAILABLE",
    "ResourceNotFound",
    "QuotaExceeded.x",
    "null",
    "\u{0}",
    "\u{202e}",
    "日本",
];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|i| json!(i)),
        any::<f64>().prop_map(|f| json!(f)),
        proptest::sample::select(TRICKY_STRINGS).prop_map(|s| json!(s)),
        "\\PC{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        3 => proptest::sample::select(FIELD_NAMES).prop_map(str::to_string),
                        1 => "\\PC{0,12}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Counts the nodes of a document (preorder).
fn nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(nodes).sum(),
        Value::Object(m) => m.values().map(nodes).sum(),
        _ => 0,
    }
}

/// Replaces the `n`-th node (preorder) with `new`, or removes it from its
/// parent when `new` is `None`.
fn edit_nth(v: &mut Value, n: &mut usize, new: &Option<Value>) -> bool {
    let children: Vec<&mut Value> = match v {
        Value::Array(a) => a.iter_mut().collect(),
        Value::Object(m) => m.values_mut().collect(),
        _ => return false,
    };
    let mut remove = None;
    for (i, child) in children.into_iter().enumerate() {
        if *n == 0 {
            match new {
                Some(value) => *child = value.clone(),
                None => remove = Some(i),
            }
            break;
        }
        *n -= 1;
        if edit_nth(child, n, new) {
            return true;
        }
    }
    match (remove, v) {
        (Some(i), Value::Array(a)) => {
            a.remove(i);
            true
        }
        (Some(i), Value::Object(m)) => {
            let key = m.keys().nth(i).cloned();
            key.is_some_and(|k| m.remove(&k).is_some())
        }
        _ => false,
    }
}

/// A template with some nodes replaced by arbitrary values or removed.
fn mutated(template: Value) -> impl Strategy<Value = Value> {
    let count = nodes(&template);
    proptest::collection::vec(
        (0..count, proptest::option::weighted(0.85, any_json())),
        0..4,
    )
    .prop_map(move |edits| {
        let mut doc = template.clone();
        for (at, new) in edits {
            let mut n = at;
            // Node 0 is the root: replacing it is an arbitrary document.
            if n == 0 {
                if let Some(v) = new {
                    doc = v;
                }
                continue;
            }
            n -= 1;
            edit_nth(&mut doc, &mut n, &new);
        }
        doc
    })
}

/// `[[[...]]]` or `{"a":{"a":...}}` nested `depth` deep, optionally inside an envelope key.
fn nested(depth: usize, object: bool, envelope: Option<&str>) -> Vec<u8> {
    let (open, close) = if object {
        (r#"{"a":"#, "}")
    } else {
        ("[", "]")
    };
    let mut s = String::new();
    if let Some(key) = envelope {
        s.push_str(&format!(r#"{{"{key}":"#));
    }
    s.push_str(&open.repeat(depth));
    s.push('1');
    s.push_str(&close.repeat(depth));
    if envelope.is_some() {
        s.push('}');
    }
    s.into_bytes()
}

// ---------------------------------------------------- 1. the cloud client

const PROVIDERS: [Provider; 3] = [
    Provider::Zenlayer,
    Provider::Tencent,
    Provider::TencentLegacy,
];

/// One answer of each provider holding every field any of its calls reads,
/// so that mutations reach every parser.
fn success_template(provider: Provider) -> Value {
    match provider {
        Provider::Zenlayer => json!({"requestId": "r", "response": {
            "requestId": "r", "totalCount": 1,
            "dataSet": [{
                "nicId": "eni-1", "status": "USED", "vpcId": "vpc-1", "subnetId": "subnet-1",
                "primaryIpv4": "10.0.0.2", "secondaryIpv4s": ["10.0.0.5", "10.0.0.6"],
                "primaryIpv6": "2001:db8::5", "ipv6Cidr": "2001:db8::/64", "instanceId": "ins-1",
                "zoneId": "z-1", "cidrBlock": "10.0.0.0/24", "gatewayIpAddress": "10.0.0.1"
            }],
            "ipAddresses": ["10.0.0.7"]
        }}),
        Provider::Tencent => json!({"Response": {
            "RequestId": "r", "TotalCount": 1,
            "NetworkInterfaceSet": [{
                "NetworkInterfaceId": "eni-1", "State": "AVAILABLE", "VpcId": "vpc-1",
                "SubnetId": "subnet-1", "Zone": "z-1", "NetworkInterfaceState": "INUSE",
                "PrivateIpAddressSet": [
                    {"PrivateIpAddress": "10.0.0.2", "Primary": true, "State": "AVAILABLE"},
                    {"PrivateIpAddress": "10.0.0.5", "Primary": false, "State": "PENDING"}
                ],
                "Ipv6AddressSet": [{"Address": "2001:db8::5", "State": "AVAILABLE"}],
                "Attachment": {"InstanceId": "ins-1"}
            }],
            "InstanceSet": [{"InstanceId": "ins-1", "InstanceState": "RUNNING", "Placement": {"Zone": "z-1"}}],
            "SubnetSet": [{"SubnetId": "subnet-1", "CidrBlock": "10.0.0.0/24", "Zone": "z-1"}],
            "PrivateIpAddressSet": [{"PrivateIpAddress": "10.0.0.7"}],
            "Ipv6AddressSet": [{"Address": "2001:db8::7"}],
            "Status": "FAILED", "Output": "LimitExceeded: quota"
        }}),
        Provider::TencentLegacy => json!({
            "code": 0, "message": "", "codeDesc": "Success",
            "data": {
                "totalNum": 1, "taskId": 7, "status": 1, "output": {"errorCode": 9003},
                "data": [{
                    "networkInterfaceId": "eni-1", "vpcId": "vpc-1", "subnetId": "subnet-1",
                    "zone": "z-1",
                    "privateIpAddressesSet": [
                        {"privateIpAddress": "10.0.0.2", "primary": true},
                        {"privateIpAddress": "10.0.0.5", "primary": false, "state": "DELETING"}
                    ],
                    "instanceSet": [{"instanceId": "ins-1"}]
                }]
            }
        }),
    }
}

fn error_template(provider: Provider) -> Value {
    match provider {
        Provider::Zenlayer => {
            json!({"requestId": "r", "code": "INVALID_NIC_NOT_FOUND", "message": "no such NIC"})
        }
        Provider::Tencent => {
            json!({"Response": {"Error": {"Code": "ResourceNotFound", "Message": "m"}, "RequestId": "r"}})
        }
        Provider::TencentLegacy => {
            json!({"code": 4000, "message": "m", "codeDesc": "InvalidNetworkInterface.NotFound"})
        }
    }
}

/// An answer's body: a mutated template, an arbitrary document, deep
/// nesting, huge or binary bytes, each optionally truncated.
fn body(provider: Provider) -> impl Strategy<Value = Vec<u8>> {
    let envelope = match provider {
        Provider::Zenlayer => "response",
        Provider::Tencent => "Response",
        Provider::TencentLegacy => "data",
    };
    let json_doc = prop_oneof![
        6 => mutated(success_template(provider)),
        2 => mutated(error_template(provider)),
        1 => any_json(),
    ]
    .prop_map(|v| serde_json::to_vec(&v).unwrap_or_default());
    let doc = prop_oneof![
        12 => json_doc,
        1 => (1usize..4000, any::<bool>(), any::<bool>())
            .prop_map(move |(d, obj, env)| nested(d, obj, env.then_some(envelope))),
        1 => proptest::collection::vec(any::<u8>(), 0..512),
        1 => (60_000usize..70_000).prop_map(|n| {
            let mut v = br#"{"Response":{"RequestId":""#.to_vec();
            v.resize(n, b'x');
            v.extend_from_slice(br#""}}"#);
            v
        }),
    ];
    (
        doc,
        proptest::option::weighted(0.15, any::<prop::sample::Index>()),
    )
        .prop_map(|(mut b, cut)| {
            if let Some(at) = cut {
                b.truncate(at.index(b.len() + 1));
            }
            b
        })
}

fn answer(provider: Provider) -> impl Strategy<Value = Answer> {
    let status = prop_oneof![
        8 => Just(200u16),
        4 => proptest::sample::select(&[400u16, 401, 403, 404, 409, 429, 451, 500, 502, 503, 301, 307][..]),
        1 => 100u16..600,
    ];
    let content_type = proptest::sample::select(
        &[
            "application/json",
            "application/json; charset=gbk",
            "text/html",
            "application/x-www-form-urlencoded",
            "",
        ][..],
    );
    let framing = prop_oneof![
        6 => Just(Framing::Length),
        1 => Just(Framing::Close),
        1 => (1usize..200).prop_map(Framing::Chunked),
        1 => (1usize..200).prop_map(Framing::Short),
    ];
    let behaviour = prop_oneof![
        40 => Just(Behaviour::Answer),
        1 => Just(Behaviour::Silent),
        1 => Just(Behaviour::Endless),
        1 => Just(Behaviour::Drip(Duration::from_secs(1))),
    ];
    let extra = proptest::option::weighted(
        0.2,
        proptest::sample::select(
            &[
                ("cf-mitigated", "challenge"),
                ("retry-after", "3"),
                ("retry-after", "99999999999"),
            ][..],
        ),
    );
    (
        behaviour,
        status,
        content_type,
        body(provider),
        framing,
        extra,
    )
        .prop_map(|(behaviour, status, ct, body, framing, extra)| {
            let mut headers = Vec::new();
            if !ct.is_empty() {
                headers.push(("content-type".to_string(), ct.to_string()));
            }
            if let Some((k, v)) = extra {
                headers.push((k.to_string(), v.to_string()));
            }
            Answer {
                behaviour,
                status,
                headers,
                body,
                framing,
            }
        })
}

/// Every call a provider makes to the cloud, as the controller makes it.
#[derive(Debug, Clone)]
enum Call {
    CheckCredentials,
    DescribeNics(usize),
    DescribeInstance,
    DescribeSubnet,
    Submit(usize),
    Resolve(usize),
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        Just(Call::CheckCredentials),
        (1usize..4).prop_map(Call::DescribeNics),
        Just(Call::DescribeInstance),
        Just(Call::DescribeSubnet),
        (0usize..7).prop_map(Call::Submit),
        (0usize..7).prop_map(Call::Resolve),
    ]
}

fn nic_ref(provider: Provider, n: usize) -> NicRef {
    let r = NicRef::new(format!("eni-{n}"));
    if provider == Provider::TencentLegacy {
        r.in_vpc("vpc-1")
    } else {
        r
    }
}

fn observed() -> ObservedNic {
    ObservedNic {
        id: nicip::cloud::NicId("eni-1".into()),
        status: NicStatus::InUse,
        vpc_id: Some("vpc-1".into()),
        subnet_id: Some("subnet-1".into()),
        primary_ipv4: Some("10.0.0.2".parse().unwrap()),
        secondary_ipv4: ["10.0.0.5".parse().unwrap()].into(),
        ipv6: ["2001:db8::5".parse().unwrap()].into(),
        ipv6_cidr: None,
        instance_id: Some(InstanceId("ins-1".into())),
        addresses_in_flux: BTreeSet::new(),
        zone: None,
    }
}

/// The operations of every action (both IPv4 modes), marked sent.
fn operation(provider: Provider, which: usize) -> Operation {
    let nic = nic_ref(provider, 1);
    let before = observed();
    let key = IdempotencyKey::derive("uid-1", 3, 0);
    let v4: BTreeSet<std::net::Ipv4Addr> = ["10.0.0.5".parse().unwrap()].into();
    let v6: BTreeSet<std::net::Ipv6Addr> = ["2001:db8::5".parse().unwrap()].into();
    let instance = InstanceId("ins-1".into());
    let mut op = match which {
        0 => Operation::assign_ipv4(&nic, Ipv4Request::Count(2), None, &before, &key, 3, 0),
        1 => Operation::assign_ipv4(&nic, Ipv4Request::Addresses(v4), None, &before, &key, 3, 0),
        2 => Operation::unassign_ipv4(&nic, &v4, &before, &key, 3, 0),
        3 => {
            let billing = Ipv6Billing {
                internet_charge_type: Some("ByBandwidth".into()),
                bandwidth: Some(5),
                package_size: None,
                cluster_id: None,
            };
            Operation::assign_ipv6(&nic, 1, Some(billing), &before, &key, 3)
        }
        4 => Operation::unassign_ipv6(&nic, &v6, &before, &key, 3),
        5 => Operation::attach(&nic, &instance, &before, &key, 3),
        _ => Operation::detach(&nic, &instance, &before, &key, 3),
    };
    op.mark_sent();
    op
}

async fn run_call(p: &dyn NicProvider, provider: Provider, call: &Call) -> Result<(), CloudError> {
    match call {
        Call::CheckCredentials => p.check_credentials().await,
        Call::DescribeNics(n) => {
            let nics: Vec<NicRef> = (1..=*n).map(|i| nic_ref(provider, i)).collect();
            p.describe_nics(&nics).await.map(drop)
        }
        Call::DescribeInstance => p
            .describe_instance(&InstanceId("ins-1".into()))
            .await
            .map(drop),
        Call::DescribeSubnet => p.describe_subnet(&observed()).await.map(drop),
        Call::Submit(which) => {
            let submitted = p.submit(&operation(provider, *which)).await?;
            // What the claim's status records must fit it.
            let id = submitted.request_id.unwrap_or_default();
            assert!(
                id.chars().count() <= 128,
                "a request id of {} chars",
                id.len()
            );
            Ok(())
        }
        Call::Resolve(which) => {
            let mut op = operation(provider, *which);
            op.request_id = Some("7".into());
            p.resolve(&op).await.map(drop)
        }
    }
}

/// A classified error: a known client code or the cloud's own, bounded
/// text, and no credentials.
fn assert_classified(err: &CloudError) {
    assert!(!err.code.is_empty(), "{err:?}");
    if err.code.starts_with("Client.") {
        assert!(
            CLIENT_CODES.iter().any(|c| c.code == err.code),
            "an undocumented client code: {err:?}"
        );
    }
    assert!(err.code.chars().count() <= 128, "{err:?}");
    assert!(
        err.message.chars().count() <= 2048,
        "an unbounded message ({} chars): {}",
        err.message.chars().count(),
        err.message.chars().take(300).collect::<String>()
    );
    let text = format!("{err} {err:?}");
    assert!(!text.contains(SECRET), "{text}");
}

fn fuzz_transport() -> TransportConfig {
    TransportConfig {
        timeout: Duration::from_secs(5),
        max_attempts: 2,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_response_bytes: 64 * 1024,
        ..TransportConfig::default()
    }
}

fn client(provider: Provider, endpoint: &str) -> Arc<dyn NicProvider> {
    let settings = ProviderSettings::new(provider, "ap-guangzhou", format!("fuzz-{provider}"))
        .with_endpoint(endpoint);
    nicip::cloud::connect(
        &settings,
        Transport::new(fuzz_transport()).unwrap(),
        Credentials::new("AKIDfuzz0000000000000001", SECRET),
    )
    .expect("provider")
}

/// The most requests one call may make: a batch of NICs split in halves on
/// `ResourceNotFound`, or the page limit, times the attempts.
const MAX_REQUESTS_PER_CALL: usize = 1100;

#[test]
fn cloud_client_parsers_classify_every_answer() {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    // Calls that succeeded: mutations must keep reaching the parsers of
    // valid answers, not only the error paths.
    static SUCCEEDED: AtomicUsize = AtomicUsize::new(0);
    let strategy = (0usize..3).prop_flat_map(|i| {
        let provider = PROVIDERS[i];
        (
            Just(provider),
            call(),
            proptest::collection::vec(answer(provider), 1..4),
        )
    });
    fuzz(
        true,
        strategy,
        || Endpoint::start(Answer::json(200, "")),
        |server, (provider, call, answers)| {
            let url = server.url();
            async move {
                if std::env::var_os("NICIP_FUZZ_TRACE").is_some() {
                    let shape: Vec<_> = answers
                        .iter()
                        .map(|a| {
                            (
                                &a.behaviour,
                                a.status,
                                a.framing,
                                a.body.len(),
                                String::from_utf8_lossy(&a.body[..a.body.len().min(200)])
                                    .into_owned(),
                            )
                        })
                        .collect();
                    eprintln!("{provider} {call:?} {shape:?}");
                }
                server.set_all(answers);
                let p = client(provider, &url);
                // A bound far above any legitimate call on the paused clock
                // (rate limiting, timeouts and backoff all wait on it).
                let result =
                    tokio::time::timeout(Duration::from_secs(3600), run_call(&*p, provider, &call))
                        .await
                        .unwrap_or_else(|_| panic!("{provider} {call:?} hung"));
                match &result {
                    Ok(()) => {
                        SUCCEEDED.fetch_add(1, Relaxed);
                    }
                    Err(e) => assert_classified(e),
                }
                assert!(
                    server.requests() <= MAX_REQUESTS_PER_CALL,
                    "{provider} {call:?} made {} requests",
                    server.requests()
                );
            }
        },
    );
    let ok = SUCCEEDED.load(Relaxed);
    eprintln!("{ok} of {} client calls succeeded", cases());
    assert!(
        ok > 0,
        "no call ever succeeded: the answers never reach the success parsers"
    );
}

/// Regression: a legacy VPC that keeps answering full pages of other NICs
/// under a huge total was paged through without end. Few NICs are then asked
/// for by id, and an answer by id that lists other NICs is refused; many
/// NICs page on, up to the page cap.
#[tokio::test(start_paused = true)]
async fn a_legacy_vpc_of_endless_other_nics_is_not_paged_forever() {
    let page: Vec<Value> = (0..50)
        .map(|i| json!({"networkInterfaceId": format!("eni-other-{i}"), "privateIpAddressesSet": []}))
        .collect();
    let answer = |total: u64| {
        let body = json!({"code": 0, "message": "", "codeDesc": "Success", "data": {"totalNum": total, "data": page}});
        Answer::json(200, serde_json::to_vec(&body).unwrap())
    };
    let describe = |server: &Endpoint, nics: Vec<NicRef>| {
        let p = client(Provider::TencentLegacy, &server.url());
        async move {
            tokio::time::timeout(Duration::from_secs(3600), p.describe_nics(&nics))
                .await
                .expect("ends")
                .expect_err("never finds its NICs")
        }
    };

    let server = Endpoint::start(answer(1_000_000_000)).await;
    let two = (1..=2)
        .map(|n| nic_ref(Provider::TencentLegacy, n))
        .collect();
    let err = describe(&server, two).await;
    assert_eq!(err.code, "Client.BadResponse", "{err}");
    assert!(err.message.contains("eni-other-"), "{err}");
    assert!(
        (2..=3).contains(&server.requests()),
        "{}",
        server.requests()
    );

    // 600 NICs in a VPC said to hold 600 pages: paging is cheaper until the cap.
    let server = Endpoint::start(answer(30_000)).await;
    let many = (1..=600)
        .map(|n| nic_ref(Provider::TencentLegacy, n))
        .collect();
    let err = describe(&server, many).await;
    assert_eq!(err.code, "Client.BadResponse", "{err}");
    assert_eq!(server.requests(), 500);
}

// ---------------------------------------------- 2. the simulated cloud

const SIM_WORLD: &str = r#"
accounts:
  zenlayer: [{keyId: zk, keyPassword: zs}, {keyId: zk-health, keyPassword: zs-health}]
  tencent: [{secretId: AKIDfuzz1, secretKey: ts}, {secretId: AKIDhealth, secretKey: ts-health}]
zenlayer:
  regions: [{id: asia-east-1, zones: [asia-east-1a]}]
  vpcs: [{id: vpc-1, region: asia-east-1}]
  subnets: [{id: subnet-1, vpc: vpc-1, cidr: 10.0.0.0/24, ipv6Cidr: "2001:db8:5::/64"}]
  instances: [{id: ins-1, zone: asia-east-1a}]
  nics: [{id: nic-1, subnet: subnet-1, primaryIp: 10.0.0.10, ipQuota: 60}]
tencent:
  regions: [{id: ap-guangzhou, zones: [ap-guangzhou-3]}]
  vpcs: [{id: vpc-1, region: ap-guangzhou}]
  subnets: [{id: subnet-t, vpc: vpc-1, zone: ap-guangzhou-3, cidr: 10.1.0.0/24, ipv6Cidr: "2402:4e00:1::/64"}]
  instances: [{id: ins-t1, zone: ap-guangzhou-3}]
  nics: [{id: eni-1, subnet: subnet-t, primaryIp: 10.1.0.10, ipQuota: 60, ipv6Quota: 10}]
"#;

const ZENLAYER_ACTIONS: &[&str] = &[
    "BatchAssignNetworkInterfaceIpv4",
    "AssignNetworkInterfaceIpv4",
    "UnassignNetworkInterfaceIpv4",
    "UnAssignNetworkInterfaceIpv4",
    "AssignNetworkInterfaceIpv6",
    "UnassignNetworkInterfaceIpv6",
    "AttachNetworkInterface",
    "DetachNetworkInterface",
    "DescribeNetworkInterfaces",
    "DescribeNetworkInterfaceRegions",
    "DescribeSubnets",
    "DescribeInstances",
    "Nope",
    "",
];

const TENCENT_ACTIONS: &[&str] = &[
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "AssignIpv6Addresses",
    "UnassignIpv6Addresses",
    "AttachNetworkInterface",
    "DetachNetworkInterface",
    "DescribeNetworkInterfaces",
    "DescribeSubnets",
    "DescribeVpcTaskResult",
    "DescribeNetworkInterfaceLimit",
    "DescribeInstances",
    "Nope",
    "",
];

const LEGACY_ACTIONS: &[&str] = &[
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "DescribeVpcTaskResult",
    "DescribeNetworkInterfaces",
    "Nope",
    "",
];

/// Parameters with every name the simulator's actions read.
fn params_template(protocol: usize) -> Value {
    match protocol {
        0 => json!({
            "nicId": "nic-1", "nicIds": ["nic-1"], "ipAddresses": ["10.0.0.20"], "ipAddressCount": 2,
            "ipAddress": "10.0.0.21", "instanceId": "ins-1", "instanceIds": ["ins-1"],
            "internetChargeType": "ByBandwidth", "bandwidth": 5, "packageSize": 0.5, "clusterId": "c",
            "subnetIds": ["subnet-1"], "pageSize": 10, "pageNum": 1
        }),
        _ => json!({
            "NetworkInterfaceId": "eni-1", "NetworkInterfaceIds": ["eni-1"],
            "PrivateIpAddresses": [{"PrivateIpAddress": "10.1.0.20", "Primary": false, "QosLevel": "AU"}],
            "SecondaryPrivateIpAddressCount": 2, "QosLevel": "PT", "ClientToken": "tok",
            "Ipv6AddressCount": 1, "Ipv6Addresses": [{"Address": "2402:4e00:1::5"}],
            "InstanceId": "ins-t1", "InstanceIds": ["ins-t1"], "SubnetIds": ["subnet-t"],
            "TaskId": "1", "Offset": 0, "Limit": 10,
            "Filters": [{"Name": "vpc-id", "Values": ["vpc-1"]}]
        }),
    }
}

/// Flattens JSON into form pairs (`A.0.B=v`), as the legacy API and
/// Tencent's query style send them.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(m) => m.iter().for_each(|(k, v)| flatten(&join(k), v, out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| flatten(&join(&i.to_string()), v, out)),
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[derive(Debug, Clone)]
struct SimRequest {
    /// 0 Zenlayer, 1 Tencent 3.0, 2 legacy, 3 elsewhere.
    protocol: usize,
    method: &'static str,
    path: String,
    action: String,
    params: Value,
    /// Extra form pairs (hostile names) for the form-encoded protocols.
    extra_pairs: Vec<(String, String)>,
    signed: bool,
    timestamp_skew: i64,
    content_type: &'static str,
    /// Replaces the body entirely.
    raw_body: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    service: &'static str,
}

fn sim_request() -> impl Strategy<Value = SimRequest> {
    (0usize..4).prop_flat_map(|protocol| {
        let actions = match protocol {
            0 => ZENLAYER_ACTIONS,
            1 => TENCENT_ACTIONS,
            _ => LEGACY_ACTIONS,
        };
        let path = match protocol {
            0 => Just("/api/v2/zec".to_string()).boxed(),
            1 => Just("/".to_string()).boxed(),
            2 => Just("/v2/index.php".to_string()).boxed(),
            _ => prop_oneof![
                Just("/_sim/world".to_string()),
                Just("/_sim/nope".to_string()),
                "/[a-z0-9%._~-]{0,30}",
            ]
            .boxed(),
        };
        let hostile_name = prop_oneof![
            "[A-Za-z]{1,8}(\\.[0-9]{1,12}){1,4}(\\.[A-Za-z]{1,8})?",
            (1usize..3000).prop_map(|n| vec!["a"; n].join(".")),
            // Found a stack overflow that aborted the simulator.
            (50_000usize..120_000).prop_map(|n| vec!["a"; n].join(".")),
            (1usize..300).prop_map(|n| vec!["A.1000"; n].join(".")),
            "\\PC{0,16}",
        ];
        (
            Just(protocol),
            proptest::sample::select(&["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS"][..]),
            path,
            prop_oneof![
                6 => proptest::sample::select(actions).prop_map(str::to_string),
                1 => "\\PC{0,20}"
            ],
            mutated(params_template(protocol)),
            proptest::collection::vec((hostile_name, "\\PC{0,8}"), 0..3),
            proptest::bool::weighted(0.8),
            prop_oneof![8 => Just(0i64), 1 => -100_000i64..100_000, 1 => Just(i64::MAX)],
            proptest::sample::select(
                &["", "application/json", "application/json; charset=utf-8", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data"][..],
            ),
            proptest::option::weighted(
                0.15,
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..256),
                    (1usize..3000, any::<bool>()).prop_map(|(d, o)| nested(d, o, None)),
                ],
            ),
            proptest::collection::vec(
                (
                    proptest::sample::select(
                        &["authorization", "x-zc-timestamp", "x-tc-timestamp", "x-tc-region", "x-tc-token", "x-zc-version", "x-tc-version", "content-type", "x-zc-signature-method"][..],
                    )
                    .prop_map(str::to_string),
                    prop_oneof![
                        proptest::collection::vec(0x20u8..0x7f, 0..40),
                        proptest::collection::vec(0x80u8..=0xff, 1..8),
                        Just(b"ZC2-HMAC-SHA256 Credential=zk, SignedHeaders=content-type;host, Signature=00".to_vec()),
                        Just(b"TC3-HMAC-SHA256 Credential=AKIDfuzz1/2099-01-01/vpc/tc3_request, SignedHeaders=content-type;host, Signature=00".to_vec()),
                    ],
                ),
                0..3,
            ),
            proptest::sample::select(&["vpc", "vpc", "cvm", "zzz"][..]),
        )
            .prop_map(
                |(protocol, method, path, action, params, extra_pairs, signed, timestamp_skew, content_type, raw_body, headers, service)| {
                    SimRequest {
                        protocol,
                        method,
                        path,
                        action,
                        params,
                        extra_pairs,
                        signed,
                        timestamp_skew,
                        content_type,
                        raw_body,
                        headers,
                        service,
                    }
                },
            )
    })
}

/// Builds the request as a client of that protocol would, signed with the
/// fuzz account when `signed`.
fn build_sim_request(http: &reqwest::Client, addr: SocketAddr, r: &SimRequest) -> reqwest::Request {
    let host = addr.to_string();
    let url = format!("http://{host}{}", r.path);
    let method = reqwest::Method::from_bytes(r.method.as_bytes()).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let timestamp = now.saturating_add(r.timestamp_skew);
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    let body: Vec<u8> = match r.protocol {
        0 => {
            let body = serde_json::to_vec(&r.params).unwrap_or_default();
            let ct = if r.content_type.is_empty() {
                "application/json"
            } else {
                r.content_type
            };
            headers.push(("content-type".into(), ct.into()));
            headers.push(("x-zc-action".into(), r.action.clone().into_bytes()));
            headers.push(("x-zc-version".into(), b"2025-09-01".to_vec()));
            headers.push(("x-zc-timestamp".into(), timestamp.to_string().into_bytes()));
            headers.push(("x-zc-signature-method".into(), b"ZC2-HMAC-SHA256".to_vec()));
            if r.signed {
                let sig = nicip::signing::zc2::signature("zs", timestamp, ct, &host, &body);
                headers.push((
                    "authorization".into(),
                    nicip::signing::zc2::authorization("zk", &sig).into_bytes(),
                ));
            }
            body
        }
        1 => {
            let body = serde_json::to_vec(&r.params).unwrap_or_default();
            let ct = if r.content_type.is_empty() {
                "application/json"
            } else {
                r.content_type
            };
            headers.push(("content-type".into(), ct.into()));
            headers.push(("x-tc-action".into(), r.action.clone().into_bytes()));
            headers.push(("x-tc-version".into(), b"2017-03-12".to_vec()));
            headers.push(("x-tc-timestamp".into(), timestamp.to_string().into_bytes()));
            headers.push(("x-tc-region".into(), b"ap-guangzhou".to_vec()));
            if r.signed {
                let hash = nicip::signing::sha256_hex(&body);
                let signed_headers = [("content-type", ct), ("host", host.as_str())];
                let req = nicip::signing::tc3::Request {
                    method: r.method,
                    canonical_query: "",
                    headers: &signed_headers,
                    payload_hash: &hash,
                    service: r.service,
                    timestamp,
                };
                if let Some(auth) = nicip::signing::tc3::signature("ts", &req)
                    .and_then(|sig| nicip::signing::tc3::authorization("AKIDfuzz1", &req, &sig))
                {
                    headers.push(("authorization".into(), auth.into_bytes()));
                }
            }
            body
        }
        _ => {
            let mut pairs = vec![
                ("Action".to_string(), r.action.clone()),
                ("Nonce".into(), rand::random_range(1..u32::MAX).to_string()),
                ("Timestamp".into(), timestamp.to_string()),
                ("Region".into(), "ap-guangzhou".into()),
                ("SecretId".into(), "AKIDfuzz1".into()),
                ("SignatureMethod".into(), "HmacSHA256".into()),
            ];
            flatten("", &r.params, &mut pairs);
            pairs.retain(|(k, _)| !k.is_empty());
            pairs.extend(r.extra_pairs.iter().cloned());
            if r.signed {
                let to_sign = nicip::signing::query::string_to_sign(
                    r.method,
                    &host,
                    &r.path,
                    pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                );
                let sig = nicip::signing::query::signature(
                    "ts",
                    nicip::signing::query::Method::HmacSha256,
                    &to_sign,
                );
                pairs.push(("Signature".into(), sig));
            }
            let ct = if r.content_type.is_empty() {
                "application/x-www-form-urlencoded"
            } else {
                r.content_type
            };
            headers.push(("content-type".into(), ct.into()));
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
                .into_bytes()
        }
    };
    let mut req = http.request(method, &url);
    for (k, v) in headers.iter().chain(&r.headers) {
        if let Ok(value) = reqwest::header::HeaderValue::from_bytes(v) {
            req = req.header(k.as_str(), value);
        }
    }
    req.body(r.raw_body.clone().unwrap_or(body))
        .build()
        .expect("request")
}

/// The error document of each protocol, as the real clouds shape it.
fn assert_protocol_answer(r: &SimRequest, status: u16, body: &[u8]) {
    let doc: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    match r.protocol {
        0 if status == 200 => assert!(doc.get("response").is_some(), "{doc}"),
        0 => assert!(
            doc.get("code")
                .and_then(Value::as_str)
                .is_some_and(|c| !c.is_empty()),
            "{status} {doc}"
        ),
        1 => {
            let response = doc.get("Response").unwrap_or_else(|| panic!("{doc}"));
            assert!(response.get("RequestId").is_some(), "{doc}");
            if let Some(e) = response.get("Error") {
                assert!(
                    e.get("Code")
                        .and_then(Value::as_str)
                        .is_some_and(|c| !c.is_empty()),
                    "{doc}"
                );
            }
        }
        2 => assert!(
            doc.get("code").is_some_and(|c| c.is_i64() || c.is_u64()),
            "{doc}"
        ),
        _ => assert!(doc.is_object() || doc.is_array(), "{doc}"),
    }
}

#[test]
fn cloudsim_answers_every_request_in_its_protocol() {
    struct State {
        sim: nicip::cloudsim::RunningSim,
        http: reqwest::Client,
        health: Arc<dyn NicProvider>,
    }
    fuzz(
        false,
        sim_request(),
        || async {
            let world = nicip::cloudsim::World::from_yaml(SIM_WORLD).expect("world");
            let sim = nicip::cloudsim::start(world, "127.0.0.1:0".parse().unwrap())
                .await
                .expect("sim");
            let settings = ProviderSettings::new(Provider::Tencent, "ap-guangzhou", "health")
                .with_endpoint(sim.base_url() + "/");
            let health = nicip::cloud::connect(
                &settings,
                Transport::new(TransportConfig::default()).unwrap(),
                Credentials::new("AKIDhealth", "ts-health"),
            )
            .unwrap();
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap();
            State { sim, http, health }
        },
        |s, r| {
            let req = build_sim_request(&s.http, s.sim.addr(), &r);
            async move {
                let resp = s
                    .http
                    .execute(req)
                    .await
                    .unwrap_or_else(|e| panic!("no answer: {e}"));
                let status = resp.status().as_u16();
                let body = resp
                    .bytes()
                    .await
                    .unwrap_or_else(|e| panic!("answer cut: {e}"));
                assert_protocol_answer(&r, status, &body);
                s.health
                    .describe_nics(&[NicRef::new("eni-1")])
                    .await
                    .unwrap_or_else(|e| panic!("the simulator stopped serving: {e}"));
            }
        },
    );
}

// ------------------------------------------------ 3. the in-memory API server

#[derive(Debug, Clone)]
struct KubeRequest {
    method: &'static str,
    path: String,
    query: Vec<(String, String)>,
    content_type: &'static str,
    accept: &'static str,
    body: Vec<u8>,
}

fn kube_body() -> impl Strategy<Value = Vec<u8>> {
    let claim = json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim",
        "metadata": {"name": "c", "namespace": "default", "labels": {"a": "b"}, "finalizers": ["x/y"], "resourceVersion": "1"},
        "spec": {"nicId": "eni-1", "ipv4": {"count": 2}}, "status": {"observedGeneration": 1}});
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "data": {"k": "dmFsdWU="}, "stringData": {"a": "b"}, "type": "Opaque"});
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
        "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15, "renewTime": "2026-01-01T00:00:00.000000Z"}});
    let patch = json!([{"op": "add", "path": "/metadata/labels/x", "value": "y"}, {"op": "test", "path": "/spec", "value": 1}]);
    let delete = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground", "preconditions": {"uid": "u"}});
    prop_oneof![
        3 => mutated(claim).prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => mutated(secret).prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => mutated(lease).prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => mutated(patch).prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => mutated(delete).prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => (1usize..3000, any::<bool>()).prop_map(|(d, o)| nested(d, o, Some("spec"))),
        1 => (1usize..3000).prop_map(|d| {
            // YAML nesting, for apply patches.
            let mut y = String::from("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: ");
            y.push_str(&"[".repeat(d));
            y.push_str(&"]".repeat(d));
            y.into_bytes()
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

fn kube_request() -> impl Strategy<Value = KubeRequest> {
    let path = prop_oneof![
        proptest::sample::select(
            &[
                "/api",
                "/apis",
                "/api/v1",
                "/apis/nicip.io/v1alpha1",
                "/openapi/v2",
                "/version",
                "/api/v1/namespaces",
                "/api/v1/namespaces/default",
                "/api/v1/namespaces/default/secrets",
                "/api/v1/namespaces/default/secrets/s",
                "/api/v1/secrets",
                "/api/v1/namespaces/default/events",
                "/apis/nicip.io/v1alpha1/namespaces/default/nicipclaims",
                "/apis/nicip.io/v1alpha1/namespaces/default/nicipclaims/c",
                "/apis/nicip.io/v1alpha1/namespaces/default/nicipclaims/c/status",
                "/apis/nicip.io/v1alpha1/nicipclaims",
                "/apis/nicip.io/v1alpha1/providerconfigs/p",
                "/apis/nicip.io/v1alpha1/providerconfigs/p/status",
                "/apis/coordination.k8s.io/v1/namespaces/default/leases/l",
                "/apis/events.k8s.io/v1/namespaces/default/events",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            ][..]
        )
        .prop_map(str::to_string),
        "(/[a-zA-Z0-9%._~:-]{0,12}){0,8}",
    ];
    let query_key = proptest::sample::select(
        &[
            "watch",
            "resourceVersion",
            "resourceVersionMatch",
            "labelSelector",
            "fieldSelector",
            "limit",
            "continue",
            "timeoutSeconds",
            "fieldManager",
            "force",
            "dryRun",
            "propagationPolicy",
            "includeObject",
            "allowWatchBookmarks",
            "sendInitialEvents",
            "gracePeriodSeconds",
            "pretty",
            "fieldValidation",
        ][..],
    );
    let query_value = prop_oneof![
        proptest::sample::select(
            &[
                "true",
                "false",
                "1",
                "0",
                "-1",
                "All",
                "NotOlderThan",
                "Exact",
                "a=b",
                "a in (b,c)",
                "!a",
                "metadata.name=c",
                "spec.x=1",
                "999999999999999999999",
                "Object",
                "Strict",
                "",
                "x,y",
            ][..]
        )
        .prop_map(str::to_string),
        "\\PC{0,16}",
    ];
    (
        proptest::sample::select(
            &[
                "GET", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
            ][..],
        ),
        path,
        proptest::collection::vec((query_key.prop_map(str::to_string), query_value), 0..4),
        proptest::sample::select(
            &[
                "application/json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/json-patch+json",
                "application/apply-patch+yaml",
                "application/yaml",
                "application/vnd.kubernetes.protobuf",
                "text/plain",
                "",
            ][..],
        ),
        proptest::sample::select(
            &[
                "",
                "application/json",
                "application/yaml",
                "*/*",
                "application/json;as=Table;v=v1;g=meta.k8s.io",
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
                "application/vnd.kubernetes.protobuf",
                "application/cbor",
                "garbage/;;;",
            ][..],
        ),
        kube_body(),
    )
        .prop_map(
            |(method, path, query, content_type, accept, body)| KubeRequest {
                method,
                path,
                query,
                content_type,
                accept,
                body,
            },
        )
}

#[test]
fn kubesim_answers_every_request_with_an_object_or_a_status() {
    struct State {
        kube: nicip::kubesim::RunningKubeSim,
        http: reqwest::Client,
        client: kube::Client,
    }
    fuzz(
        false,
        kube_request(),
        || async {
            let kube = nicip::kubesim::KubeSim::new(nicip::api::crds())
                .start()
                .await
                .expect("kubesim");
            let client = kube.client().unwrap();
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            State { kube, http, client }
        },
        |s, r| async move {
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&r.query)
                .finish();
            let url = format!("{}{}?{query}", s.kube.url(), r.path);
            let Ok(url) = reqwest::Url::parse(&url) else {
                return;
            };
            let mut req = s
                .http
                .request(
                    reqwest::Method::from_bytes(r.method.as_bytes()).unwrap(),
                    url,
                )
                .body(r.body.clone());
            if !r.content_type.is_empty() {
                req = req.header("content-type", r.content_type);
            }
            if !r.accept.is_empty() {
                req = req.header("accept", r.accept);
            }
            let resp = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("no answer: {e}"));
            let status = resp.status().as_u16();
            let watching = r.query.iter().any(|(k, _)| k == "watch");
            if !(status == 200 && watching) && r.method != "HEAD" {
                let body = tokio::time::timeout(Duration::from_secs(10), resp.bytes())
                    .await
                    .unwrap_or_else(|_| panic!("the body never ended"))
                    .unwrap_or_else(|e| panic!("answer cut: {e}"));
                if status >= 400 {
                    let text = String::from_utf8_lossy(&body);
                    let status_doc = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .is_some_and(|d| d["kind"] == "Status" && d["code"] == status)
                        || text.contains("kind: Status");
                    assert!(status_doc, "{status} without a Status: {text}");
                }
            }
            let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
                kube::Api::all(s.client.clone());
            namespaces
                .get("default")
                .await
                .unwrap_or_else(|e| panic!("kubesim stopped serving: {e}"));
        },
    );
}

// ------------------------------------- 4. validation against the CRD's rules

fn text_near_bounds() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => proptest::sample::select(&["eni-1", "nic-1", "vpc-1", "ins-1", "default", "c-1"][..]).prop_map(str::to_string),
        2 => (60usize..68).prop_map(|n| "a".repeat(n)),
        1 => proptest::sample::select(&["", " ", "\t", " eni-1 ", "é"][..]).prop_map(str::to_string),
        1 => (60usize..68).prop_map(|n| format!(" {} ", "a".repeat(n - 2))),
        1 => (30usize..36).prop_map(|n| "é".repeat(n)),
        1 => (250usize..256).prop_map(|n| "p".repeat(n)),
    ]
}

fn address_near_bounds() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => (1u8..=254).prop_map(|i| format!("10.0.0.{i}")),
        1 => proptest::sample::select(&[
            "0.0.0.0", "127.0.0.1", "169.254.1.1", "224.0.0.1", "255.255.255.255", "10.0.0.256",
            "010.0.0.1", "1.2.3", "::1", "2001:db8::1", "10.0.0.1 ", " 10.0.0.1", "1.1.1.1", "",
            "0.1.2.3", "100.64.0.1", "192.168.000.1", "10.0.0.1/32", "1.2.3.4.5",
        ][..])
        .prop_map(str::to_string),
    ]
}

/// Mostly absent, so that a spec often has no invalid field at all.
fn maybe<T: std::fmt::Debug + Clone>(
    p: f64,
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    proptest::option::weighted(p, s)
}

/// Integers around the rules' bounds, most of them inside.
fn int_near_bounds() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => 1i64..=10,
        1 => proptest::sample::select(&[-1i64, 0, 11, 49, 50, 51, 100_000, 100_001, 4_294_967_296][..]),
    ]
}

/// Specs as JSON, structured, with values around every rule's boundaries.
fn spec_near_bounds() -> impl Strategy<Value = Value> {
    let ipv4 = prop_oneof![
        4 => proptest::collection::vec(address_near_bounds(), 1..6).prop_map(|a| json!({"addresses": a})),
        4 => int_near_bounds().prop_map(|c| json!({"count": c})),
        1 => (
            maybe(0.5, proptest::collection::vec(address_near_bounds(), 0..52)),
            maybe(0.5, int_near_bounds()),
        )
            .prop_map(|(a, c)| {
                let mut m = Map::new();
                if let Some(a) = a {
                    m.insert("addresses".into(), json!(a));
                }
                if let Some(c) = c {
                    m.insert("count".into(), json!(c));
                }
                Value::Object(m)
            }),
    ];
    let ipv4 = (
        ipv4,
        maybe(
            0.2,
            proptest::sample::select(&["PT", "AU", "AG", "DEFAULT", "pt", "X"][..]),
        ),
    )
        .prop_map(|(mut v, qos)| {
            if let (Some(q), Some(m)) = (qos, v.as_object_mut()) {
                m.insert("qosLevel".into(), json!(q));
            }
            v
        });
    let package = prop_oneof![
        3 => (0u32..1_000_001).prop_map(|n| f64::from(n) / 10.0),
        1 => proptest::sample::select(&[-0.1, 0.15, 1.0000001, 100000.1, 1e-7, 2.55][..]),
    ];
    let billing = prop_oneof![
        2 => Just(Map::new()),
        1 => (1i64..=100_000).prop_map(|b| json!({"internetChargeType": "ByBandwidth", "bandwidth": b}).as_object().cloned().unwrap_or_default()),
        1 => (1i64..=100_000, package.clone()).prop_map(|(b, p)| json!({"internetChargeType": "ByTrafficPackage", "bandwidth": b, "packageSize": p}).as_object().cloned().unwrap_or_default()),
        1 => (1i64..=100_000, text_near_bounds()).prop_map(|(b, c)| json!({"internetChargeType": "BandwidthCluster", "bandwidth": b, "clusterId": c}).as_object().cloned().unwrap_or_default()),
        1 => (
            maybe(0.5, proptest::sample::select(&["ByBandwidth", "ByTrafficPackage", "BandwidthCluster", "Other"][..])),
            maybe(0.5, int_near_bounds()),
            maybe(0.5, package),
            maybe(0.5, text_near_bounds()),
        )
            .prop_map(|(charge, bandwidth, package, cluster)| {
                let mut m = Map::new();
                if let Some(c) = charge {
                    m.insert("internetChargeType".into(), json!(c));
                }
                if let Some(b) = bandwidth {
                    m.insert("bandwidth".into(), json!(b));
                }
                if let Some(p) = package {
                    m.insert("packageSize".into(), json!(p));
                }
                if let Some(c) = cluster {
                    m.insert("clusterId".into(), json!(c));
                }
                m
            }),
    ];
    let ipv6 = (int_near_bounds(), billing).prop_map(|(count, mut m)| {
        m.insert("count".into(), json!(count));
        Value::Object(m)
    });
    (
        text_near_bounds(),
        maybe(0.4, text_near_bounds()),
        maybe(0.2, text_near_bounds()),
        maybe(0.8, ipv4),
        maybe(0.3, ipv6),
        maybe(0.3, text_near_bounds()),
        maybe(
            0.2,
            proptest::sample::select(&["Release", "Retain", "Retain", "Delete"][..]),
        ),
        maybe(
            0.2,
            proptest::sample::select(&["Full", "ObserveOnly", "ObserveOnly", "None"][..]),
        ),
    )
        .prop_map(
            |(nic, vpc, pc, ipv4, ipv6, instance, deletion, management)| {
                let mut m = Map::new();
                m.insert("nicId".into(), json!(nic));
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        m.insert(k.into(), v);
                    }
                };
                put("vpcId", vpc.map(Value::String));
                put("providerConfigRef", pc.map(|n| json!({"name": n})));
                put("ipv4", ipv4);
                put("ipv6", ipv6);
                put("attachment", instance.map(|i| json!({"instanceId": i})));
                put("deletionPolicy", deletion.map(|d| json!(d)));
                put("managementPolicy", management.map(|d| json!(d)));
                Value::Object(m)
            },
        )
}

/// Observed NICs and ownerships to plan against.
fn plan_worlds(spec: &nicip::controller::spec::ValidSpec) -> Vec<(Option<ObservedNic>, Ownership)> {
    let mut busy = observed();
    busy.status = NicStatus::Attaching;
    busy.addresses_in_flux = ["10.0.0.5".parse().unwrap()].into();
    let mut full = nicip::controller::plan::empty_nic(spec);
    full.secondary_ipv4 = (2u8..60)
        .map(|i| std::net::Ipv4Addr::new(10, 0, 0, i))
        .collect();
    let since = jiff::Timestamp::UNIX_EPOCH;
    let owned = Ownership {
        ipv4: (2u8..8)
            .map(|i| Owned {
                address: std::net::Ipv4Addr::new(10, 0, 0, i),
                source: nicip::api::v1alpha1::AddressSource::Count,
                since,
            })
            .collect(),
        ipv6: vec![Owned {
            address: "2001:db8::5".parse().unwrap(),
            source: nicip::api::v1alpha1::AddressSource::Count,
            since,
        }],
        attachment: Some(OwnedAttachment {
            instance: InstanceId("ins-2".into()),
            by_claim: true,
        }),
    };
    vec![
        (None, Ownership::default()),
        (None, owned.clone()),
        (
            Some(nicip::controller::plan::empty_nic(spec)),
            Ownership::default(),
        ),
        (Some(observed()), owned.clone()),
        (Some(busy), Ownership::default()),
        (Some(full), owned),
    ]
}

#[test]
fn what_the_crd_rejects_validation_refuses_and_what_it_accepts_plans() {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    // Specs the CRD accepted (and the controller found valid), and rejected:
    // a generator that only ever makes one kind tests nothing.
    static ACCEPTED: AtomicUsize = AtomicUsize::new(0);
    static VALID: AtomicUsize = AtomicUsize::new(0);
    static REJECTED: AtomicUsize = AtomicUsize::new(0);
    struct State {
        kube: nicip::kubesim::RunningKubeSim,
        http: reqwest::Client,
    }
    fuzz(
        false,
        spec_near_bounds(),
        || async {
            let kube = nicip::kubesim::KubeSim::new(nicip::api::crds())
                .start()
                .await
                .expect("kubesim");
            State {
                kube,
                http: reqwest::Client::new(),
            }
        },
        |s, spec| async move {
            let url = format!(
                "{}/apis/nicip.io/v1alpha1/namespaces/default/nicipclaims",
                s.kube.url()
            );
            let claim = json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim",
                "metadata": {"generateName": "c-"}, "spec": spec});
            let resp = s.http.post(&url).json(&claim).send().await.expect("answer");
            let status = resp.status().as_u16();
            let answer: Value = resp.json().await.expect("JSON");
            let caps = |p: Provider| client(p, "http://127.0.0.1:1/").capabilities();
            match status {
                201 => {
                    ACCEPTED.fetch_add(1, Relaxed);
                    let stored: NicIpClaimSpec = serde_json::from_value(answer["spec"].clone())
                        .unwrap_or_else(|e| {
                            panic!(
                                "the CRD accepts a spec the controller cannot read ({e}): {}",
                                answer["spec"]
                            )
                        });
                    for provider in PROVIDERS {
                        let caps = caps(provider);
                        let Ok(valid) = validate(&stored, provider, &caps) else {
                            continue;
                        };
                        VALID.fetch_add(1, Relaxed);
                        for (nic, owned) in plan_worlds(&valid) {
                            for deleting in [false, true] {
                                let rejected = BTreeMap::from([(
                                    "10.0.0.9".parse().unwrap(),
                                    "INVALID_IP_OUT_OF_RANGE".to_string(),
                                )]);
                                let isolate = BTreeSet::new();
                                let _ = plan(&Inputs {
                                    spec: &valid,
                                    owned: &owned,
                                    nic: nic.as_ref(),
                                    instance: None,
                                    caps: &caps,
                                    deleting,
                                    rejected: &rejected,
                                    isolate: &isolate,
                                    now: jiff::Timestamp::now(),
                                });
                            }
                        }
                    }
                    let name = answer["metadata"]["name"].as_str().unwrap_or_default();
                    let _ = s.http.delete(format!("{url}/{name}")).send().await;
                }
                400 | 422 => {
                    REJECTED.fetch_add(1, Relaxed);
                    let Ok(typed) = serde_json::from_value::<NicIpClaimSpec>(spec.clone()) else {
                        return; // the controller cannot even read it
                    };
                    for provider in PROVIDERS {
                        assert!(
                            validate(&typed, provider, &caps(provider)).is_err(),
                            "the CRD rejects ({}) but validation accepts on {provider}: {spec}",
                            answer["message"]
                        );
                    }
                }
                other => panic!("unexpected {other}: {answer}"),
            }
        },
    );
    let (a, v, r) = (
        ACCEPTED.load(Relaxed),
        VALID.load(Relaxed),
        REJECTED.load(Relaxed),
    );
    eprintln!("CRD accepted {a} specs ({v} valid provider checks), rejected {r}");
    assert!(
        a > 0 && v > 0 && r > 0,
        "accepted {a}, valid {v}, rejected {r}"
    );
}
