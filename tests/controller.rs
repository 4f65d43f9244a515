//! The real controller against the in-memory API server and the simulated
//! cloud, over HTTP: claims are applied through the Kubernetes API, and each
//! test asserts on the claim's status and on the cloud's own state.

mod controller_support;

use std::time::Duration;

use controller_support::*;
use kube::api::{Patch, PatchParams};
use nicip::controller::Checkpoint;
use serde_json::json;

#[tokio::test]
async fn zenlayer_claims_converge_list_count_ipv6_and_attachment() {
    let mut env = Env::new().await;
    env.start();
    env.apply("list", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z1", "ipv4": {"addresses": ["10.0.0.11", "10.0.0.12"]}})).await;
    env.apply(
        "count",
        json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z2", "ipv4": {"count": 3}}),
    )
    .await;
    env.apply(
        "v6",
        json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z6", "ipv6": {"count": 1}}),
    )
    .await;
    env.apply("public6", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-zpub", "ipv6": {"count": 1, "internetChargeType": "ByBandwidth", "bandwidth": 10}})).await;
    env.apply("attach", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-zatt", "attachment": {"instanceId": "ins-z1"}})).await;

    let list = env.wait_ready("list").await;
    assert_eq!(owned4(&list), set(&["10.0.0.11", "10.0.0.12"]));
    assert_eq!(env.ipv4("nic-z1"), set(&["10.0.0.11", "10.0.0.12"]));
    let count = env.wait_ready("count").await;
    assert_eq!(owned4(&count).len(), 3);
    assert_eq!(owned4(&count), env.ipv4("nic-z2"));
    let v6 = env.wait_ready("v6").await;
    assert_eq!(owned6(&v6), env.ipv6("nic-z6"));
    assert_eq!(owned6(&v6).len(), 1);
    let public6 = env.wait_ready("public6").await;
    assert_eq!(owned6(&public6), env.ipv6("nic-zpub"));
    let attach = env.wait_ready("attach").await;
    assert_eq!(env.instance_of("nic-zatt").as_deref(), Some("ins-z1"));
    let att = attach.status.unwrap().attachment.unwrap();
    assert!(att.attached_by_claim);
    check_invariants(&env).await;
}

#[tokio::test]
async fn tencent_claims_converge_and_chunk_at_ten_addresses() {
    let mut env = Env::new().await;
    env.start();
    let many: Vec<String> = (100..125).map(|i| format!("10.1.0.{i}")).collect();
    env.apply("list", json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t1", "ipv4": {"addresses": many}, "ipv6": {"count": 2}})).await;
    env.apply("count", json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t2", "ipv4": {"count": 12, "qosLevel": "AU"}})).await;
    env.apply("attach", json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-tatt", "attachment": {"instanceId": "ins-t1"}})).await;
    let list = env.wait_ready("list").await;
    assert_eq!(owned4(&list).len(), 25);
    assert_eq!(owned4(&list), env.ipv4("eni-t1"));
    assert_eq!(owned6(&list), env.ipv6("eni-t1"));
    assert_eq!(owned6(&list).len(), 2);
    let count = env.wait_ready("count").await;
    assert_eq!(owned4(&count).len(), 12);
    assert_eq!(owned4(&count), env.ipv4("eni-t2"));
    env.wait_ready("attach").await;
    assert_eq!(env.instance_of("eni-tatt").as_deref(), Some("ins-t1"));
    // At most 10 addresses per call: 25 → 3 calls, 12 → 2 calls.
    let assigns: Vec<_> = env
        .audit()
        .into_iter()
        .filter(|e| e.action == "AssignPrivateIpAddresses")
        .collect();
    assert_eq!(assigns.len(), 5, "{assigns:?}");
    check_invariants(&env).await;
}

#[tokio::test]
async fn legacy_claims_converge_list_and_count() {
    let mut env = Env::new().await;
    env.start();
    env.apply("list", json!({"providerConfigRef": pc(LEGACY), "nicId": "eni-l1", "vpcId": "vpc-t", "ipv4": {"addresses": ["10.1.0.71", "10.1.0.72"]}})).await;
    env.apply("count", json!({"providerConfigRef": pc(LEGACY), "nicId": "eni-l2", "vpcId": "vpc-t", "ipv4": {"count": 2}})).await;
    let list = env.wait_ready("list").await;
    assert_eq!(owned4(&list), env.ipv4("eni-l1"));
    assert_eq!(owned4(&list), set(&["10.1.0.71", "10.1.0.72"]));
    let count = env.wait_ready("count").await;
    assert_eq!(owned4(&count), env.ipv4("eni-l2"));
    assert_eq!(owned4(&count).len(), 2);
    // The legacy API has no IPv6: refused by validation, no call made.
    env.apply("v6", json!({"providerConfigRef": pc(LEGACY), "nicId": "eni-l1", "vpcId": "vpc-t", "ipv6": {"count": 1}})).await;
    let v6 = env
        .wait("v6", "Stalled Unsupported", |c| {
            is_stalled(c, "Unsupported")
        })
        .await;
    assert!(message(&v6, "Stalled").contains("IPv6"));
}

#[tokio::test]
async fn count_changes_release_the_newest_first() {
    let mut env = Env::new().await;
    env.start();
    for (n, provider, nic) in [(1, ZENLAYER, "nic-z2"), (2, TENCENT, "eni-t2")] {
        let name = format!("c{n}");
        env.apply(
            &name,
            json!({"providerConfigRef": pc(provider), "nicId": nic, "ipv4": {"count": 2}}),
        )
        .await;
        let first = owned4(&env.wait_ready(&name).await);
        // `since` has a resolution of one second: make the next ones newer.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        env.apply(
            &name,
            json!({"providerConfigRef": pc(provider), "nicId": nic, "ipv4": {"count": 4}}),
        )
        .await;
        let up = env
            .wait(&name, "4 addresses", |c| {
                is_ready(c) && owned4(c).len() == 4
            })
            .await;
        assert_eq!(owned4(&up), env.ipv4(nic));
        env.apply(
            &name,
            json!({"providerConfigRef": pc(provider), "nicId": nic, "ipv4": {"count": 2}}),
        )
        .await;
        let down = env
            .wait(&name, "2 addresses", |c| {
                is_ready(c) && owned4(c).len() == 2
            })
            .await;
        assert_eq!(
            owned4(&down),
            first,
            "the two newest went first on {provider}"
        );
        assert_eq!(env.ipv4(nic), first);
    }
    env.check_invariants().await;
}

#[tokio::test]
async fn editing_the_list_and_ipv6_and_the_instance() {
    let mut env = Env::new().await;
    env.start();
    env.apply("e", json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t1", "ipv4": {"addresses": ["10.1.0.11", "10.1.0.12"]}})).await;
    env.wait_ready("e").await;
    env.apply("e", json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t1", "ipv4": {"addresses": ["10.1.0.12", "10.1.0.13"]}, "ipv6": {"count": 1}})).await;
    let c = env
        .wait("e", "edited", |c| {
            is_ready(c) && owned4(c) == set(&["10.1.0.12", "10.1.0.13"]) && owned6(c).len() == 1
        })
        .await;
    assert_eq!(env.ipv4("eni-t1"), owned4(&c));
    assert_eq!(env.ipv6("eni-t1"), owned6(&c));
    env.apply("e", json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t1", "ipv4": {"addresses": ["10.1.0.12", "10.1.0.13"]}})).await;
    env.wait("e", "IPv6 removed", |c| is_ready(c) && owned6(c).is_empty())
        .await;
    assert!(env.ipv6("eni-t1").is_empty());

    env.apply("a", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-zatt", "attachment": {"instanceId": "ins-z1"}})).await;
    env.wait_ready("a").await;
    env.apply("a", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-zatt", "attachment": {"instanceId": "ins-z2"}})).await;
    env.wait("a", "moved", |c| {
        is_ready(c)
            && c.status
                .as_ref()
                .and_then(|s| s.attachment.as_ref())
                .is_some_and(|a| a.instance_id == "ins-z2")
    })
    .await;
    assert_eq!(env.instance_of("nic-zatt").as_deref(), Some("ins-z2"));
    env.check_invariants().await;
}

#[tokio::test]
async fn adoption_and_addresses_never_touched() {
    let mut env = Env::new().await;
    env.start();
    // nic-zadopt carries 10.0.0.41 and 10.0.0.42; the claim asks for .41 and .43.
    env.apply("adopt", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-zadopt", "ipv4": {"addresses": ["10.0.0.41", "10.0.0.43"]}})).await;
    let c = env.wait_ready("adopt").await;
    let status = c.status.clone().unwrap();
    let adopted = status
        .ipv4
        .iter()
        .find(|o| o.address == "10.0.0.41")
        .unwrap();
    assert_eq!(adopted.source, nicip::api::v1alpha1::AddressSource::Adopted);
    assert_eq!(
        env.ipv4("nic-zadopt"),
        set(&["10.0.0.41", "10.0.0.42", "10.0.0.43"])
    );
    // Only .41 was adopted; .43 assigned; one call.
    let assigns: Vec<_> = env
        .audit()
        .into_iter()
        .filter(|e| e.action == "BatchAssignNetworkInterfaceIpv4")
        .collect();
    assert_eq!(assigns.len(), 1);
    assert!(
        assigns[0].params.to_string().contains("10.0.0.43")
            && !assigns[0].params.to_string().contains("10.0.0.41")
    );
    // Deleting releases what it owns (adopted included) and never .42.
    env.delete("adopt").await;
    env.wait_gone("adopt").await;
    assert_eq!(env.ipv4("nic-zadopt"), set(&["10.0.0.42"]));
    env.check_invariants().await;
}

#[tokio::test]
async fn deletion_under_release_and_retain() {
    let mut env = Env::new().await;
    env.start();
    env.apply("rel", json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t1", "ipv4": {"count": 3}, "ipv6": {"count": 1}, "attachment": {"instanceId": "ins-t1"}})).await;
    env.apply("ret", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z1", "ipv4": {"count": 2}, "deletionPolicy": "Retain"})).await;
    env.wait_ready("rel").await;
    let ret = env.wait_ready("ret").await;
    env.delete("rel").await;
    env.delete("ret").await;
    env.wait_gone("rel").await;
    env.wait_gone("ret").await;
    assert!(env.ipv4("eni-t1").is_empty());
    assert!(env.ipv6("eni-t1").is_empty());
    assert_eq!(
        env.instance_of("eni-t1"),
        None,
        "the claim's attachment is undone"
    );
    assert_eq!(
        env.ipv4("nic-z1"),
        owned4(&ret),
        "Retain leaves the cloud alone"
    );
    env.check_invariants().await;
}

#[tokio::test]
async fn deletion_with_the_provider_config_gone_is_unblocked_by_retain() {
    let mut env = Env::new().await;
    env.start();
    env.apply(
        "stuck",
        json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z1", "ipv4": {"count": 1}}),
    )
    .await;
    let c = env.wait_ready("stuck").await;
    let api: kube::Api<nicip::api::v1alpha1::ProviderConfig> = kube::Api::all(env.client.clone());
    api.delete(ZENLAYER, &Default::default()).await.unwrap();
    env.delete("stuck").await;
    let waiting = env
        .wait("stuck", "stalled on its ProviderConfig", |c| {
            is_stalled(c, "ProviderConfigNotFound")
        })
        .await;
    assert!(message(&waiting, "Stalled").contains("deletionPolicy: Retain"));
    env.apply("stuck", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z1", "ipv4": {"count": 1}, "deletionPolicy": "Retain"})).await;
    env.wait_gone("stuck").await;
    assert_eq!(env.ipv4("nic-z1"), owned4(&c));
}

/// Each row: a claim the cloud must refuse, and the cloud's own code that
/// must surface in `status.lastError.code`.
#[tokio::test]
async fn cloud_errors_surface_verbatim_and_are_not_retried() {
    let mut env = Env::new().await;
    env.start();
    let rows = [
        (
            "out-of-range",
            json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z1", "ipv4": {"addresses": ["10.9.9.9"]}}),
            "INVALID_IP_OUT_OF_RANGE",
        ),
        (
            "network",
            json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z2", "ipv4": {"addresses": ["10.0.0.0"]}}),
            "INVALID_IP_NETWORK_ADDRESS",
        ),
        (
            "broadcast",
            json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z3", "ipv4": {"addresses": ["10.0.0.255"]}}),
            "INVALID_IP_BROADCAST_ADDRESS",
        ),
        (
            "no-nic",
            json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-nope", "ipv4": {"count": 1}}),
            "",
        ),
        (
            "tc-range",
            json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t3", "ipv4": {"addresses": ["10.200.0.5"]}}),
            "InvalidParameterValue.Range",
        ),
        (
            "tc-quota",
            json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-tq", "ipv4": {"count": 5}}),
            "LimitExceeded",
        ),
        (
            "zl-ipv6-present",
            json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z6has", "ipv6": {"count": 1}}),
            "INVALID_NIC_IPV6_EXISTS",
        ),
        (
            "zl-billing",
            json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-zpub", "ipv6": {"count": 1}}),
            "",
        ),
        (
            "legacy-vpc",
            json!({"providerConfigRef": pc(LEGACY), "nicId": "eni-l1", "vpcId": "vpc-missing", "ipv4": {"count": 1}}),
            "InvalidVpc.NotFound",
        ),
    ];
    for (name, spec, _) in &rows {
        env.apply(name, spec.clone()).await;
    }
    for (name, _, code) in &rows {
        let c = env
            .wait(name, "stalled", |c| {
                condition(c, "Stalled").is_some_and(|s| {
                    s.status == "True" && s.observed_generation == c.metadata.generation
                })
            })
            .await;
        let status = c.status.clone().unwrap();
        if !code.is_empty() {
            let last = status
                .last_error
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: no lastError: {status:?}"));
            assert_eq!(last.code, *code, "{name}");
            assert!(!last.retryable, "{name}");
            assert!(
                message(&c, "Ready").contains(code),
                "{name}: the condition names the code"
            );
        }
    }
    // No retry loop: a re-reconcile (an annotation change) sends nothing new.
    let before = env.count(MUTATIONS);
    let reconciled = reconciles(&env);
    for (name, _, _) in &rows {
        env.claims()
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"poke": "1"}}})),
            )
            .await
            .unwrap();
    }
    wait_for_reconciles(&env, reconciled + rows.len()).await;
    assert_eq!(
        env.count(MUTATIONS),
        before,
        "refused calls are not repeated without a spec change"
    );
    env.check_invariants().await;
}

/// Waits until the controller has finished `total` reconciles since it started.
async fn wait_for_reconciles(env: &Env, total: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while reconciles(env) < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reconciles did not happen:\n{}",
            env.metrics()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills the controller at each checkpoint of the calls the fault matrix
/// does not cover (the IPv4 assigns of Zenlayer and Tencent are its rows
/// R1–R3, `tests/reliability.rs`), restarts it, and checks that every claim
/// converges with nothing assigned twice or leaked.
/// A drift sweep describes every claimed NIC of the account in one call, and
/// the claim it wakes plans from that answer instead of describing its NIC
/// again.
#[tokio::test]
async fn a_claim_woken_by_a_sweep_plans_from_the_sweeps_answer() {
    let mut env = Env::new().await;
    env.settings.resync = Duration::from_secs(1);
    env.start();
    for (name, nic) in [("a", "nic-z1"), ("b", "nic-z2"), ("c", "nic-z3")] {
        env.apply(
            name,
            json!({"providerConfigRef": pc(ZENLAYER), "nicId": nic, "ipv4": {"count": 1}}),
        )
        .await;
    }
    for name in ["a", "b", "c"] {
        env.wait_ready(name).await;
    }
    let lost = owned4(&env.wait_ready("b").await)
        .into_iter()
        .next()
        .unwrap();
    // (The out-of-band helper describes the NIC itself: count from after it.)
    env.zenlayer_unassign_out_of_band("nic-z2", &lost).await;
    let before = env.audit().len();
    wait_until("the drift to be repaired", || env.ipv4("nic-z2").len() == 1).await;
    env.wait("b", "Ready again", |c| is_ready(c) && owned4(c).len() == 1)
        .await;
    let describes: Vec<Vec<String>> = env.audit()[before..]
        .iter()
        .filter(|e| e.action == "DescribeNetworkInterfaces")
        .map(|e| {
            let ids = e.params["nicIds"].as_array().cloned().unwrap_or_default();
            ids.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .collect();
    assert!(!describes.is_empty(), "a sweep described the NICs");
    for ids in &describes {
        assert_eq!(
            ids.len(),
            3,
            "every describe is a sweep of all three NICs: {describes:?}"
        );
    }
    env.check_invariants().await;
}

#[tokio::test]
async fn crash_at_every_step_converges_without_duplicates_or_leaks() {
    let scenarios: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "lg-count",
            json!({"providerConfigRef": pc(LEGACY), "nicId": "eni-l2", "vpcId": "vpc-t", "ipv4": {"count": 2}}),
            "eni-l2",
        ),
        (
            "zl-v6",
            json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z6", "ipv6": {"count": 1}}),
            "nic-z6",
        ),
        (
            "zl-attach",
            json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-zatt", "attachment": {"instanceId": "ins-z1"}}),
            "nic-zatt",
        ),
    ];
    for point in [
        Checkpoint::BeforeCall,
        Checkpoint::AfterCall,
        Checkpoint::AfterStatusWrite,
    ] {
        for (name, spec, nic) in &scenarios {
            let mut env = Env::new().await;
            let (hook, mut hit) = freeze_at(point, name);
            let mut settings = env.settings.clone();
            settings.checkpoint = Some(hook);
            env.start_with(settings);
            env.apply(name, spec.clone()).await;
            tokio::time::timeout(Duration::from_secs(20), hit.recv())
                .await
                .expect("checkpoint reached")
                .unwrap();
            env.crash().await;
            env.start();
            let c = env.wait_ready(name).await;
            let wanted = spec["ipv4"]["count"].as_u64().map(|n| n as usize);
            if let Some(n) = wanted {
                assert_eq!(
                    env.ipv4(nic).len(),
                    n,
                    "{name} at {point:?}: exactly the count, never more"
                );
                assert_eq!(owned4(&c), env.ipv4(nic), "{name} at {point:?}");
            }
            if spec["ipv6"].is_object() {
                assert_eq!(env.ipv6(nic).len(), 1, "{name} at {point:?}");
                assert_eq!(owned6(&c), env.ipv6(nic));
            }
            // Deletion after the crash releases exactly what was assigned.
            env.delete(name).await;
            env.wait_gone(name).await;
            assert!(
                env.ipv4(nic).is_empty(),
                "{name} at {point:?}: nothing leaked"
            );
            assert!(
                env.ipv6(nic).is_empty(),
                "{name} at {point:?}: nothing leaked"
            );
            env.check_invariants().await;
        }
    }
}

#[tokio::test]
async fn a_missing_secret_is_reported_and_a_new_one_takes_effect_without_restart() {
    let mut env = Env::new().await;
    env.provider_config("rotating", "Zenlayer", "rotating-creds", json!({}))
        .await;
    env.start();
    env.apply(
        "r",
        json!({"providerConfigRef": pc("rotating"), "nicId": "nic-z1", "ipv4": {"count": 1}}),
    )
    .await;
    env.wait("r", "SecretNotFound", |c| is_stalled(c, "SecretNotFound"))
        .await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(env.client.clone(), SECRETS_NS);
    let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "rotating-creds"},
        "stringData": {"accessKeyId": ZL_KEY, "accessKeySecret": "wrong-secret"},
    }))
    .unwrap();
    secrets.create(&Default::default(), &s).await.unwrap();
    let bad = env
        .wait("r", "CredentialsRejected", |c| {
            is_stalled(c, "CredentialsRejected")
        })
        .await;
    let text = serde_json::to_string(&bad).unwrap();
    assert!(
        !text.contains("wrong-secret") && !text.contains(ZL_SECRET),
        "no secret in status"
    );
    secrets
        .patch(
            "rotating-creds",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"stringData": {"accessKeySecret": ZL_SECRET}})),
        )
        .await
        .unwrap();
    env.wait_ready("r").await;
    let api: kube::Api<nicip::api::v1alpha1::ProviderConfig> = kube::Api::all(env.client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pc = api.get("rotating").await.unwrap();
        let ready = pc
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        if ready {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ProviderConfig never Ready: {:?}",
            pc.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.check_invariants().await;
}

#[tokio::test]
async fn allowed_namespaces_are_enforced() {
    let mut env = Env::new().await;
    env.provider_config(
        "restricted",
        "Zenlayer",
        "zenlayer-creds",
        json!({"allowedNamespaces": {"matchLabels": {"kubernetes.io/metadata.name": "other"}}}),
    )
    .await;
    env.start();
    env.apply(
        "n",
        json!({"providerConfigRef": pc("restricted"), "nicId": "nic-z1", "ipv4": {"count": 1}}),
    )
    .await;
    env.wait("n", "NamespaceNotAllowed", |c| {
        is_stalled(c, "NamespaceNotAllowed")
    })
    .await;
    assert_eq!(env.count(MUTATIONS), 0);
}

#[tokio::test]
async fn graceful_stop_returns_ok() {
    let mut env = Env::new().await;
    env.start();
    env.apply(
        "g",
        json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z1", "ipv4": {"count": 1}}),
    )
    .await;
    env.wait_ready("g").await;
    env.stop().await.expect("a graceful stop is a clean exit");
}

/// Throttling and 5xx answers back off and converge, without a claim error
/// for throttling and without a burst of calls.
#[tokio::test]
async fn throttling_and_server_errors_back_off() {
    let mut env = Env::new().await;
    env.cloud
        .set_faults(vec![
            fault(json!({"protocol": "tencent", "action": "AssignPrivateIpAddresses", "error": "RequestLimitExceeded", "times": 3})),
            fault(json!({"protocol": "zenlayer", "action": "BatchAssignNetworkInterfaceIpv4", "error": "INTERNAL_SERVER_ERROR", "httpStatus": 500, "times": 3})),
        ])
        .unwrap();
    env.start();
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
    let t = env.wait_ready("t").await;
    let z = env.wait_ready("z").await;
    assert_eq!(owned4(&t).len(), 2);
    assert_eq!(owned4(&z).len(), 2);
    // Three refusals and one success each: no retry storm.
    assert_eq!(env.count(&["AssignPrivateIpAddresses"]), 4);
    assert_eq!(env.count(&["BatchAssignNetworkInterfaceIpv4"]), 4);
    assert!(
        t.status.unwrap().last_error.is_none(),
        "cleared once converged"
    );
    env.check_invariants().await;
}

/// Milestones are Events on the claim, through one reporter.
#[tokio::test]
async fn milestones_are_recorded_as_events() {
    let mut env = Env::new().await;
    env.start();
    env.apply("ev", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-zadopt", "ipv4": {"addresses": ["10.0.0.41", "10.0.0.44"]}})).await;
    env.wait_ready("ev").await;
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(env.client.clone(), NS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = events.list(&Default::default()).await.unwrap();
        let reasons: Vec<String> = list
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("ev"))
            .filter_map(|e| e.reason.clone())
            .collect();
        if reasons.iter().any(|r| r == "Adopted") && reasons.iter().any(|r| r == "Assigned") {
            assert!(
                list.items
                    .iter()
                    .all(|e| e.reporting_controller.as_deref() == Some("nicip-controller"))
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An object that does not decode (here, under a CRD whose spec schema
/// preserves anything) is logged and skipped; the other claims converge.
#[tokio::test]
async fn a_claim_that_does_not_decode_is_skipped() {
    let mut crds = nicip::api::crds();
    let claim_crd = crds
        .iter_mut()
        .find(|c| c.spec.names.kind == "NicIpClaim")
        .unwrap();
    for v in &mut claim_crd.spec.versions {
        let schema = v
            .schema
            .as_mut()
            .unwrap()
            .open_api_v3_schema
            .as_mut()
            .unwrap();
        let spec = schema.properties.as_mut().unwrap().get_mut("spec").unwrap();
        *spec = serde_json::from_value(
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        )
        .unwrap();
    }
    let mut env = Env::with(&world_yaml(), crds).await;
    let raw: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        env.client.clone(),
        NS,
        &kube::api::ApiResource::erase::<nicip::api::v1alpha1::NicIpClaim>(&()),
    );
    let bad: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim", "metadata": {"name": "aaa-bad"},
        "spec": {"nicId": 42, "ipv4": "lots"}
    }))
    .unwrap();
    raw.create(&Default::default(), &bad)
        .await
        .expect("the loose schema takes it");
    env.start();
    env.apply(
        "good",
        json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z1", "ipv4": {"count": 1}}),
    )
    .await;
    let good = env.wait_ready("good").await;
    assert_eq!(owned4(&good), env.ipv4("nic-z1"));
}

/// The invariants checker itself: each kind of violation is named.
#[tokio::test]
async fn the_invariants_checker_names_each_violation() {
    let mut env = Env::new().await;
    env.start();
    env.apply(
        "kept",
        json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z1", "ipv4": {"count": 1}}),
    )
    .await;
    env.apply(
        "gone",
        json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z2", "ipv4": {"count": 1}}),
    )
    .await;
    let kept = env.wait_ready("kept").await;
    let gone = env.wait_ready("gone").await;
    env.check_invariants().await;
    env.delete("gone").await;
    env.wait_gone("gone").await;
    let owned = owned4(&kept).into_iter().next().unwrap();
    let released = owned4(&gone).into_iter().next().unwrap();
    env.crash().await;
    // Out of band: the kept address also on nic-z3, the released one back on
    // nic-z2, and a secret in an annotation.
    env.cloud.edit_world(|w| {
        for (nic, a) in [("nic-z3", &owned), ("nic-z2", &released)] {
            w.zenlayer
                .nics
                .get_mut(nic)
                .unwrap()
                .secondary_ipv4
                .push(nicip::cloudsim::IpEntry {
                    address: a.parse().unwrap(),
                    state: nicip::cloudsim::IpState::Available,
                });
        }
    });
    let annotation = json!({"metadata": {"annotations": {"note": ZL_SECRET}}});
    env.claims()
        .patch("kept", &PatchParams::default(), &Patch::Merge(&annotation))
        .await
        .unwrap();
    let violations = env.invariants.as_ref().unwrap().violations(&env).await;
    let has = |prefix: &str, what: &str| {
        violations
            .iter()
            .any(|v| v.starts_with(prefix) && v.contains(what))
    };
    assert!(has("I2:", &owned), "{violations:#?}");
    assert!(has("I3:", &owned), "{violations:#?}");
    assert!(has("I4:", &released), "{violations:#?}");
    assert!(has("I5:", "nicipclaims"), "{violations:#?}");
    assert!(
        violations.iter().all(|v| !v.contains(ZL_SECRET)),
        "the checker does not print the secret itself"
    );
}
