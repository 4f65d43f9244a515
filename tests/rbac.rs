//! The chart's RBAC is exactly what the controller uses.
//!
//! The in-memory API server runs with its RBAC authorizer on, holding the
//! ServiceAccount, Roles, ClusterRoles and bindings of `deploy/manifests/`
//! (the chart rendered with default values; `tests/chart.rs` keeps them
//! equal). The real controller runs as that ServiceAccount, under leader
//! election, through scenarios that together do everything it does. Any
//! request refused to it fails the test, and so does any rule the chart
//! grants that no scenario used, unless [`UNUSED`] gives the reason.

mod controller_support;

use std::collections::BTreeSet;
use std::time::Duration;

use controller_support::*;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use nicip::api::v1alpha1::ProviderConfig;
use nicip::kubesim::{Decision, Identity, KubeSim};
use nicip::ops::{Elector, Health, LeaseConfig};
use serde_json::{Value, json};

const RELEASE_NS: &str = "nicip-system";
const SERVICE_ACCOUNT: &str = "nicip";

/// Granted rules (role, verb, resource) that no scenario is expected to use,
/// and why each is granted anyway.
const UNUSED: &[(&str, &str, &str, &str)] = &[(
    "ClusterRole/nicip",
    "get",
    "nicipclaims",
    "read-your-writes: the controller reads a claim from the API server only when its watch cache is older than the claim's last write, which depends on timing",
)];

fn manifest_objects() -> Vec<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/manifests");
    let mut objects = Vec::new();
    for file in ["serviceaccount.yaml", "rbac.yaml"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("deploy/manifests");
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("manifest YAML");
        objects.extend(docs.into_iter().filter(|d| d.is_object()));
    }
    objects
}

/// Creates the chart's ServiceAccount and RBAC objects as an administrator.
async fn install_rbac(client: &kube::Client, objects: &[Value]) {
    let pp = PostParams::default();
    for o in objects {
        let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
        let kind = o["kind"].as_str().unwrap_or_default();
        let created = match kind {
            "ServiceAccount" => Api::<ServiceAccount>::namespaced(client.clone(), ns)
                .create(&pp, &serde_json::from_value(o.clone()).unwrap())
                .await
                .map(drop),
            "Role" => Api::<Role>::namespaced(client.clone(), ns)
                .create(&pp, &serde_json::from_value(o.clone()).unwrap())
                .await
                .map(drop),
            "RoleBinding" => Api::<RoleBinding>::namespaced(client.clone(), ns)
                .create(&pp, &serde_json::from_value(o.clone()).unwrap())
                .await
                .map(drop),
            "ClusterRole" => Api::<ClusterRole>::all(client.clone())
                .create(&pp, &serde_json::from_value(o.clone()).unwrap())
                .await
                .map(drop),
            "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(client.clone())
                .create(&pp, &serde_json::from_value(o.clone()).unwrap())
                .await
                .map(drop),
            other => panic!("unexpected kind {other} in the chart's RBAC"),
        };
        created.unwrap_or_else(|e| panic!("creating {kind} {}: {e}", o["metadata"]["name"]));
    }
}

/// One grant of the chart: (role, verb, API group, resource).
type Granted = (String, String, String, String);

fn granted(objects: &[Value]) -> BTreeSet<Granted> {
    let mut out = BTreeSet::new();
    for o in objects {
        let kind = o["kind"].as_str().unwrap_or_default();
        if kind != "Role" && kind != "ClusterRole" {
            continue;
        }
        let role = format!("{kind}/{}", o["metadata"]["name"].as_str().unwrap());
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        };
        for rule in o["rules"].as_array().into_iter().flatten() {
            for verb in strings(&rule["verbs"]) {
                for group in strings(&rule["apiGroups"]) {
                    for resource in strings(&rule["resources"]) {
                        out.insert((role.clone(), verb.clone(), group.clone(), resource));
                    }
                }
            }
        }
    }
    out
}

fn describe(d: &Decision) -> String {
    let resource = match &d.subresource {
        Some(s) => format!("{}/{s}", d.resource),
        None => d.resource.clone(),
    };
    format!(
        "{} {} (group {:?}) namespace {:?} name {:?}{}",
        d.verb,
        resource,
        d.group,
        d.namespace.as_deref().unwrap_or(""),
        d.name.as_deref().unwrap_or(""),
        d.path
            .as_deref()
            .map(|p| format!(" path {p}"))
            .unwrap_or_default()
    )
}

async fn wait_provider_config(env: &Env, name: &str, ready: &str) {
    let api: Api<ProviderConfig> = Api::all(env.client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pc = api.get(name).await.expect("providerconfig");
        let status = pc
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone());
        if status.as_deref() == Some(ready) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ProviderConfig {name} never Ready={ready}: {:?}",
            pc.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything the controller does, as the ServiceAccount `sa`, under leader election.
async fn scenarios(env: &mut Env, sa: &kube::Client) {
    // Leader election, as the chart runs the controller with more than one replica.
    let elector = Elector::new(sa.clone(), lease_config("replica-a"), Health::new());
    let leadership = elector.acquire().await.expect("replica-a leads");
    let standby = {
        let e = Elector::new(sa.clone(), lease_config("replica-b"), Health::new());
        tokio::spawn(async move { e.acquire().await })
    };
    let mut settings = test_settings();
    settings.resync = Duration::from_secs(1);
    env.start_as(sa.clone(), settings, leadership.fence());

    // Claims on every provider converge: finalizer, status, events.
    env.apply("z", json!({"providerConfigRef": {"name": ZENLAYER}, "nicId": "nic-z1", "ipv4": {"count": 2}, "attachment": {"instanceId": "ins-z1"}})).await;
    env.apply("t", json!({"providerConfigRef": {"name": TENCENT}, "nicId": "eni-t1", "ipv4": {"count": 2}, "ipv6": {"count": 1}})).await;
    env.apply("l", json!({"providerConfigRef": {"name": LEGACY}, "nicId": "eni-l1", "vpcId": "vpc-t", "ipv4": {"count": 1}})).await;
    env.apply("adopt", json!({"providerConfigRef": {"name": ZENLAYER}, "nicId": "nic-zadopt", "ipv4": {"addresses": ["10.0.0.41"]}})).await;
    for name in ["z", "t", "l", "adopt"] {
        env.wait_ready(name).await;
    }
    for name in [ZENLAYER, TENCENT, LEGACY] {
        wait_provider_config(env, name, "True").await;
    }
    // An ObserveOnly claim reports the same thing at every resync.
    env.apply("watch", json!({"providerConfigRef": {"name": TENCENT}, "nicId": "eni-t3", "managementPolicy": "ObserveOnly", "ipv4": {"addresses": ["10.1.0.31"]}})).await;
    env.wait("watch", "ObserveOnly report", |c| {
        is_stalled(c, "ObserveOnly")
    })
    .await;

    // A refusal repeated at every resync is one Event with a series (a patch).
    env.apply(
        "quota",
        json!({"providerConfigRef": {"name": ZENLAYER}, "nicId": "nic-zq", "ipv4": {"count": 5}}),
    )
    .await;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client.clone(), NS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = events.list(&Default::default()).await.expect("events");
        let refused: Vec<_> = list
            .items
            .iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("quota")
                    && e.reason.as_deref() == Some("CloudError")
            })
            .collect();
        if refused
            .iter()
            .any(|e| e.series.as_ref().is_some_and(|s| s.count >= 2))
        {
            assert_eq!(refused.len(), 1, "one Event, counted: {refused:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the repeated refusal never became a series: {refused:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An update, and drift repaired.
    env.apply("z", json!({"providerConfigRef": {"name": ZENLAYER}, "nicId": "nic-z1", "ipv4": {"count": 3}, "attachment": {"instanceId": "ins-z1"}})).await;
    let z = env
        .wait("z", "Ready with 3", |c| is_ready(c) && owned4(c).len() == 3)
        .await;
    let address = owned4(&z).into_iter().next().unwrap();
    env.zenlayer_unassign_out_of_band("nic-z1", &address).await;
    env.wait("z", "repaired", |c| {
        is_ready(c) && env.ipv4("nic-z1").len() == 3
    })
    .await;

    // A Secret rotation takes effect without a restart.
    env.provider_config("rotating", "Zenlayer", "rotating-creds", json!({}))
        .await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), SECRETS_NS);
    let wrong: Secret = serde_json::from_value(json!({"metadata": {"name": "rotating-creds"},
        "stringData": {"accessKeyId": ZL_KEY, "accessKeySecret": "wrong-secret"}}))
    .unwrap();
    secrets
        .create(&PostParams::default(), &wrong)
        .await
        .unwrap();
    env.apply(
        "r",
        json!({"providerConfigRef": {"name": "rotating"}, "nicId": "nic-z2", "ipv4": {"count": 1}}),
    )
    .await;
    env.wait("r", "CredentialsRejected", |c| {
        is_stalled(c, "CredentialsRejected")
    })
    .await;
    wait_provider_config(env, "rotating", "False").await;
    secrets
        .patch(
            "rotating-creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"accessKeySecret": ZL_SECRET}})),
        )
        .await
        .unwrap();
    env.wait_ready("r").await;
    wait_provider_config(env, "rotating", "True").await;

    // Deletion releases what the claims own.
    for name in ["z", "t", "l", "r", "adopt", "watch", "quota"] {
        env.delete(name).await;
    }
    for name in ["z", "t", "l", "r", "adopt", "watch", "quota"] {
        env.wait_gone(name).await;
    }
    assert!(env.ipv4("nic-z1").is_empty() && env.ipv4("eni-t1").is_empty());
    assert!(env.ipv6("eni-t1").is_empty() && env.ipv4("eni-l1").is_empty());
    assert_eq!(env.ipv4("nic-zadopt"), set(&["10.0.0.42"]));
    check_invariants(env).await;

    // The leader steps down; the standby takes the Lease over.
    env.stop().await.expect("controller stops");
    leadership.release().await;
    let taken = tokio::time::timeout(Duration::from_secs(20), standby)
        .await
        .expect("the standby takes over")
        .expect("joins")
        .expect("replica-b leads");
    taken.release().await;
}

fn lease_config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: RELEASE_NS.into(),
        name: "nicip".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(200),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_rbac_grants_exactly_what_the_controller_uses() {
    let mut env = Env::on(&world_yaml(), KubeSim::new(nicip::api::crds()).with_rbac()).await;
    let objects = manifest_objects();
    install_rbac(&env.client, &objects).await;
    let me = Identity::service_account(RELEASE_NS, SERVICE_ACCOUNT);
    let sa = env.kube.client_for(&me).expect("client");

    // Without a binding nothing is granted: the authorizer is on.
    let denied = Api::<Secret>::namespaced(sa.clone(), NS)
        .list(&Default::default())
        .await
        .expect_err("secrets outside the credentials namespace");
    assert!(
        matches!(&denied, kube::Error::Api(s) if s.code == 403),
        "{denied}"
    );
    let before = env.kube.authorizations().len();
    let scenarios = std::panic::AssertUnwindSafe(scenarios(&mut env, &sa));
    if let Err(panic) = futures::FutureExt::catch_unwind(scenarios).await {
        // A scenario that failed because a request was refused says which.
        for d in env.kube.authorizations().iter().skip(before) {
            if d.user == me.user && !d.allowed {
                eprintln!("refused to the controller: {}", describe(d));
            }
        }
        std::panic::resume_unwind(panic);
    }

    let decisions: Vec<Decision> = env.kube.authorizations()[before..]
        .iter()
        .filter(|d| d.user == me.user)
        .cloned()
        .collect();
    let refused: Vec<String> = decisions
        .iter()
        .filter(|d| !d.allowed)
        .map(describe)
        .collect();
    assert!(
        refused.is_empty(),
        "requests of the controller were refused:\n{}",
        refused.join("\n")
    );
    let mut used = BTreeSet::new();
    for d in &decisions {
        let Some(g) = &d.granted_by else { continue };
        let resource = match &d.subresource {
            Some(s) => format!("{}/{s}", d.resource),
            None => d.resource.clone(),
        };
        used.insert((
            format!("{}/{}", g.role_kind, g.role_name),
            d.verb.clone(),
            d.group.clone(),
            resource,
        ));
    }
    let chart = granted(&objects);
    let unused: Vec<&Granted> = chart
        .iter()
        .filter(|g| !used.contains(*g))
        .filter(|(role, verb, _, resource)| {
            !UNUSED
                .iter()
                .any(|(r, v, res, _)| r == role && v == verb && res == resource)
        })
        .collect();
    assert!(
        unused.is_empty(),
        "the chart grants what no scenario used (role, verb, group, resource):\n{unused:#?}\nused:\n{used:#?}"
    );
    // Grants from outside the chart (the bootstrap discovery roles) are all
    // the controller used beside it.
    let outside: Vec<String> = decisions
        .iter()
        .filter(|d| {
            d.granted_by.as_ref().is_some_and(|g| {
                !chart
                    .iter()
                    .any(|(role, ..)| *role == format!("{}/{}", g.role_kind, g.role_name))
                    && !g.role_name.starts_with("system:")
            })
        })
        .map(describe)
        .collect();
    assert!(outside.is_empty(), "granted outside the chart: {outside:?}");
}
