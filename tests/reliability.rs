//! The fault matrix, rows R1–R14 (`docs/reliability.md`): each test provokes
//! one fault against the real controller, the in-memory API server and the
//! simulated cloud, asserts the row's exact claim from the cloud's audit log
//! and the claim's status, and ends with the invariants I1–I5.

mod controller_support;
use controller_support::*;

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use nicip::api::v1alpha1::{AddressState, NicIpClaim};
use nicip::cloudsim::AuditEntry;
use nicip::controller::Checkpoint;
use serde_json::{Value, json};

const POINTS: [Checkpoint; 3] = [
    Checkpoint::BeforeCall,
    Checkpoint::AfterCall,
    Checkpoint::AfterStatusWrite,
];

/// Audit entries of these actions that name this NIC.
fn calls(env: &Env, actions: &[&str], nic: &str) -> Vec<AuditEntry> {
    env.audit()
        .into_iter()
        .filter(|e| actions.contains(&e.action.as_str()) && e.params.to_string().contains(nic))
        .collect()
}

fn token(e: &AuditEntry) -> Option<String> {
    e.params
        .get("ClientToken")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn assign_action(provider: &str) -> &'static str {
    match provider {
        ZENLAYER => "BatchAssignNetworkInterfaceIpv4",
        _ => "AssignPrivateIpAddresses",
    }
}

fn unassign_action(provider: &str) -> &'static str {
    match provider {
        ZENLAYER => "UnassignNetworkInterfaceIpv4",
        _ => "UnassignPrivateIpAddresses",
    }
}

fn pending(c: &NicIpClaim) -> Option<&nicip::api::v1alpha1::PendingOperation> {
    c.status.as_ref()?.pending_operation.as_ref()
}

/// The notes of the Warning events about a claim.
async fn warning_events(env: &Env, name: &str) -> Vec<String> {
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(env.client.clone(), NS);
    let list = events.list(&Default::default()).await.expect("events");
    list.items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| format!("{:?}: {:?}", e.reason, e.note))
        .collect()
}

/// Re-reconciles a claim without changing its spec (an annotation edit).
async fn poke(env: &Env, name: &str, n: u32) {
    env.claims()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"poke": n.to_string()}}})),
        )
        .await
        .expect("poke");
}

/// Starts a controller that freezes `name` at `point`, applies the claim,
/// waits for the freeze and returns the claim as the frozen controller left
/// it, then kills that controller.
async fn kill_at(env: &mut Env, point: Checkpoint, name: &str, spec: Value) -> NicIpClaim {
    let (hook, mut hit) = freeze_at(point, name);
    let mut settings = env.settings.clone();
    settings.checkpoint = Some(hook);
    env.start_with(settings);
    env.apply(name, spec).await;
    tokio::time::timeout(Duration::from_secs(20), hit.recv())
        .await
        .expect("checkpoint reached")
        .unwrap();
    env.crash().await;
    env.get(name).await.expect("the claim")
}

/// R1–R3: the controller is killed at each point of an assign; after a
/// restart the NIC carries exactly what was asked, through exactly one
/// assign call (a Tencent resend, if any, carries the first call's token,
/// which the cloud answers without acting again), and deleting releases all.
async fn kill_around_an_assign(provider: &str, nic: &str, ipv4: Value) {
    for point in POINTS {
        let mut env = Env::new().await;
        let spec = json!({"providerConfigRef": pc(provider), "nicId": nic, "ipv4": ipv4});
        let frozen = kill_at(&mut env, point, "k", spec).await;
        eprintln!("{provider} {nic}: killed at {point:?}");
        if point != Checkpoint::AfterStatusWrite {
            let recorded = pending(&frozen).expect("the assign was recorded before it was sent");
            assert_eq!(recorded.action.as_str(), "AssignIpv4", "{point:?}");
        }
        if point == Checkpoint::AfterCall {
            let entries = &frozen.status.as_ref().unwrap().ipv4;
            assert!(
                entries.iter().all(|e| e.state == AddressState::Assigning),
                "{provider} {point:?}: killed before the outcome was written: {entries:?}"
            );
        }
        env.start();
        let c = env.wait_ready("k").await;
        let on_nic = env.ipv4(nic);
        match (ipv4.get("count"), ipv4.get("addresses")) {
            (Some(n), _) => assert_eq!(on_nic.len() as u64, n.as_u64().unwrap(), "{point:?}"),
            (_, Some(list)) => {
                let want: Vec<&str> = list
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                assert_eq!(on_nic, set(&want), "{point:?}");
            }
            _ => unreachable!(),
        }
        assert_eq!(owned4(&c), on_nic, "{provider} {point:?}");
        let assigns = calls(&env, &[assign_action(provider)], nic);
        let sent = if provider == ZENLAYER {
            assigns.len()
        } else {
            let tokens: std::collections::BTreeSet<_> = assigns.iter().map(token).collect();
            assert!(tokens.iter().all(Option::is_some), "{assigns:?}");
            tokens.len()
        };
        assert_eq!(
            sent, 1,
            "{provider} {point:?}: one effective assignment: {assigns:#?}"
        );
        env.delete("k").await;
        env.wait_gone("k").await;
        assert!(env.ipv4(nic).is_empty(), "{provider} {point:?}: no leak");
        env.check_invariants().await;
    }
}

#[tokio::test]
async fn r01_kill_around_a_list_assign_never_assigns_twice() {
    let list = json!({"addresses": ["10.0.0.11", "10.0.0.12"]});
    kill_around_an_assign(ZENLAYER, "nic-z1", list).await;
    let list = json!({"addresses": ["10.1.0.11", "10.1.0.12"]});
    kill_around_an_assign(TENCENT, "eni-t1", list).await;
}

#[tokio::test]
async fn r02_kill_around_a_tencent_count_assign_never_assigns_twice() {
    kill_around_an_assign(TENCENT, "eni-t2", json!({"count": 3})).await;
}

#[tokio::test]
async fn r03_kill_around_a_zenlayer_count_assign_never_assigns_twice() {
    kill_around_an_assign(ZENLAYER, "nic-z2", json!({"count": 3})).await;
}

/// R4: the cloud applies an assign and its answer is lost. Tencent repeats
/// the call only with its first token; Zenlayer, without tokens, never
/// repeats it: the NIC shows what the call did. Either way the NIC ends
/// with exactly the count.
#[tokio::test]
async fn r04_a_lost_response_after_the_cloud_applied_is_never_assigned_again() {
    let mut env = Env::new().await;
    env.cloud
        .set_faults(vec![
            fault(json!({"protocol": "tencent", "action": "AssignPrivateIpAddresses", "dropResponse": true, "times": 1})),
            fault(json!({"protocol": "zenlayer", "action": "BatchAssignNetworkInterfaceIpv4", "dropResponse": true, "times": 1})),
        ])
        .unwrap();
    env.start();
    env.apply(
        "t",
        json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t1", "ipv4": {"count": 3}}),
    )
    .await;
    env.apply(
        "z",
        json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z2", "ipv4": {"count": 2}}),
    )
    .await;
    let t = env.wait_ready("t").await;
    assert_eq!(env.ipv4("eni-t1").len(), 3, "never more than asked");
    assert_eq!(owned4(&t), env.ipv4("eni-t1"));
    let z = env.wait_ready("z").await;
    assert_eq!(env.ipv4("nic-z2").len(), 2, "never more than asked");
    assert_eq!(owned4(&z), env.ipv4("nic-z2"));
    // Tencent: the lost call is repeated with its own token, never a new one.
    let tencent = calls(&env, &["AssignPrivateIpAddresses"], "eni-t1");
    let tokens: Vec<_> = tencent.iter().map(token).collect();
    assert!(
        tokens.len() >= 2 && tokens.iter().all(|t| t.is_some() && *t == tokens[0]),
        "{tokens:?}"
    );
    // Zenlayer: the one call, never repeated.
    let zenlayer = calls(&env, &["BatchAssignNetworkInterfaceIpv4"], "nic-z2");
    assert_eq!(zenlayer.len(), 1, "{zenlayer:#?}");
    env.check_invariants().await;
}

/// R5: the controller is killed right after the status recorded the
/// pending asynchronous call with the cloud's task id. The next controller
/// settles that task from the cloud; it sends nothing new.
#[tokio::test]
async fn r05_kill_after_the_pending_task_was_recorded_sends_nothing_new() {
    let rows = [
        (
            TENCENT,
            "eni-t2",
            json!({"ipv4": {"count": 3}}),
            "AssignPrivateIpAddresses",
        ),
        (
            ZENLAYER,
            "nic-zatt",
            json!({"attachment": {"instanceId": "ins-z1"}}),
            "AttachNetworkInterface",
        ),
    ];
    for (provider, nic, extra, action) in rows {
        let mut env = Env::new().await;
        env.cloud.hold_async(true);
        let mut spec = json!({"providerConfigRef": pc(provider), "nicId": nic});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let frozen = kill_at(&mut env, Checkpoint::AfterStatusWrite, "p", spec).await;
        let recorded = pending(&frozen).expect("the call in flight is recorded");
        assert!(
            recorded.request_id.is_some(),
            "{provider}: the task id is recorded: {recorded:?}"
        );
        env.start();
        // While the cloud still works on it, the new controller only waits.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let waiting = env.get("p").await.unwrap();
        assert_eq!(
            pending(&waiting).and_then(|p| p.request_id.clone()),
            recorded.request_id,
            "{provider}: still the same call"
        );
        env.cloud.hold_async(false);
        let c = env.wait_ready("p").await;
        assert_eq!(
            calls(&env, &[action], nic).len(),
            1,
            "{provider}: one call, settled from its task"
        );
        if action == "AssignPrivateIpAddresses" {
            assert_eq!(env.ipv4(nic).len(), 3);
            assert_eq!(owned4(&c), env.ipv4(nic));
        } else {
            assert_eq!(env.instance_of(nic).as_deref(), Some("ins-z1"));
        }
        env.check_invariants().await;
    }
}

/// R6: an asynchronous task ends FAILED. The claim reports it (a condition
/// with the cloud's code, `lastError`, a Warning event), and the retry is a
/// new call with a new token.
#[tokio::test]
async fn r06_a_failed_task_is_reported_and_retried_with_a_new_token() {
    let mut env = Env::new().await;
    env.cloud
        .set_faults(vec![fault(json!({"protocol": "tencent", "action": "AssignPrivateIpAddresses", "failTask": true, "times": 1}))])
        .unwrap();
    env.start();
    env.apply(
        "f",
        json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t2", "ipv4": {"count": 2}}),
    )
    .await;
    let failed = env
        .wait("f", "reporting the failed task", |c| {
            c.status
                .as_ref()
                .and_then(|s| s.last_error.as_ref())
                .is_some_and(|e| e.code == "InternalError")
                && condition(c, "Ready").is_some_and(|r| r.status == "False")
        })
        .await;
    let ready = condition(&failed, "Ready").unwrap();
    assert_eq!(ready.reason, "CloudUnavailable", "{ready:?}");
    assert!(ready.message.contains("InternalError"), "{ready:?}");
    assert!(
        failed
            .status
            .as_ref()
            .unwrap()
            .last_error
            .as_ref()
            .unwrap()
            .retryable,
        "a failed task is retried by itself"
    );
    // The retry waits for its backoff (about 2 s here), even though the
    // status write that reported the failure wakes the claim at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        calls(&env, &["AssignPrivateIpAddresses"], "eni-t2").len(),
        1,
        "no immediate retry"
    );
    let c = env.wait_ready("f").await;
    assert_eq!(owned4(&c), env.ipv4("eni-t2"));
    assert_eq!(env.ipv4("eni-t2").len(), 2);
    let tokens: Vec<_> = calls(&env, &["AssignPrivateIpAddresses"], "eni-t2")
        .iter()
        .map(token)
        .collect();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert_ne!(
        tokens[0], tokens[1],
        "a new call after a failed task has a new token"
    );
    assert!(c.status.unwrap().last_error.is_none(), "cleared once Ready");
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(env.client.clone(), NS);
    let list = events.list(&Default::default()).await.unwrap();
    assert!(
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("CloudError")
                && e.type_.as_deref() == Some("Warning")
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.contains("InternalError"))),
        "{:?}",
        list.items
            .iter()
            .map(|e| (&e.reason, &e.note))
            .collect::<Vec<_>>()
    );
    env.check_invariants().await;
}

/// R7: the cloud keeps a task RUNNING well past the client's timeout and
/// the unknown-outcome window. The claim waits (Reconciling, the same
/// pending call), polls at a growing interval, sends the call once, and
/// converges when the task ends.
#[tokio::test]
async fn r07_a_task_running_past_the_timeout_is_waited_for_not_resent() {
    let mut env = Env::new().await;
    env.cloud.hold_async(true);
    env.start();
    env.apply(
        "t",
        json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t1", "ipv4": {"count": 2}}),
    )
    .await;
    env.apply("a", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-zatt", "attachment": {"instanceId": "ins-z1"}})).await;
    for name in ["t", "a"] {
        env.wait(name, "waiting for its task", |c| {
            pending(c).is_some_and(|p| p.request_id.is_some())
        })
        .await;
    }
    let describes = |env: &Env| env.count(&["DescribeNetworkInterfaces", "DescribeVpcTaskResult"]);
    let before = describes(&env);
    // Past the transport timeout (2 s) times its attempts, and past the
    // in-flight window.
    let held = Duration::from_secs(6);
    tokio::time::sleep(held).await;
    let polls = describes(&env) - before;
    for name in ["t", "a"] {
        let c = env.get(name).await.unwrap();
        let ready = condition(&c, "Ready").unwrap();
        assert_eq!(ready.status, "False", "{name}");
        assert!(
            matches!(ready.reason.as_str(), "Assigning" | "Attaching"),
            "{name}: {ready:?}"
        );
        assert!(
            condition(&c, "Reconciling").is_some_and(|r| r.status == "True"),
            "{name}"
        );
        assert!(pending(&c).is_some(), "{name}: still the same call");
    }
    // A growing interval (from 40 ms, doubling): about 8 polls per claim in
    // 6 s, not one per 40 ms (150).
    assert!(polls <= 30, "{polls} polls while the tasks ran");
    assert_eq!(
        calls(&env, &["AssignPrivateIpAddresses"], "eni-t1").len(),
        1
    );
    assert_eq!(
        calls(&env, &["AttachNetworkInterface"], "nic-zatt").len(),
        1
    );
    env.cloud.hold_async(false);
    let t = env.wait_ready("t").await;
    env.wait_ready("a").await;
    assert_eq!(owned4(&t), env.ipv4("eni-t1"));
    assert_eq!(env.ipv4("eni-t1").len(), 2);
    assert_eq!(env.instance_of("nic-zatt").as_deref(), Some("ins-z1"));
    assert_eq!(
        calls(&env, &["AssignPrivateIpAddresses"], "eni-t1").len(),
        1
    );
    assert_eq!(
        calls(&env, &["AttachNetworkInterface"], "nic-zatt").len(),
        1
    );
    env.check_invariants().await;
}

/// R8: the controller is killed during deletion, at each point of the
/// release (before it, after it but before its status write, after that
/// write). The finalizer holds the claim until a restarted controller
/// completes: the addresses are released by exactly one call, never leaked.
#[tokio::test]
async fn r08_kill_during_deletion_completes_after_restart() {
    for (provider, nic) in [(TENCENT, "eni-t1"), (ZENLAYER, "nic-z1")] {
        for point in POINTS {
            let mut env = Env::new().await;
            env.start();
            env.apply(
                "d",
                json!({"providerConfigRef": pc(provider), "nicId": nic, "ipv4": {"count": 3}}),
            )
            .await;
            env.wait_ready("d").await;
            env.crash().await;
            let (hook, mut hit) = freeze_at(point, "d");
            let mut settings = env.settings.clone();
            settings.checkpoint = Some(hook);
            env.start_with(settings);
            env.delete("d").await;
            tokio::time::timeout(Duration::from_secs(20), hit.recv())
                .await
                .expect("checkpoint")
                .unwrap();
            env.crash().await;
            let frozen = env.get("d").await.expect("the finalizer holds the claim");
            assert!(
                frozen.metadata.deletion_timestamp.is_some()
                    && frozen
                        .finalizers()
                        .contains(&"nicip.io/release".to_string()),
                "{provider} {point:?}"
            );
            env.start();
            env.wait_gone("d").await;
            assert!(env.ipv4(nic).is_empty(), "{provider} {point:?}");
            let releases = calls(&env, &[unassign_action(provider)], nic);
            assert_eq!(releases.len(), 1, "{provider} {point:?}: {releases:#?}");
            env.check_invariants().await;
        }
    }
}

/// R9: the release answers not-found: someone removed an owned address
/// between the controller's observation and its call. What is gone counts
/// as released, the rest is released, and the finalizer goes.
#[tokio::test]
async fn r09_an_unassign_answering_not_found_counts_as_released() {
    // Zenlayer: one of two owned addresses goes; Tencent: the only one.
    for (provider, nic, count) in [(ZENLAYER, "nic-z1", 2), (TENCENT, "eni-t1", 1)] {
        let mut env = Env::new().await;
        env.start();
        env.apply(
            "n",
            json!({"providerConfigRef": pc(provider), "nicId": nic, "ipv4": {"count": count}}),
        )
        .await;
        let owned: Vec<String> = owned4(&env.wait_ready("n").await).into_iter().collect();
        env.crash().await;
        let (hook, mut paused) = pause_once_at(Checkpoint::BeforeCall, "n");
        let mut settings = env.settings.clone();
        settings.checkpoint = Some(hook);
        env.start_with(settings);
        env.delete("n").await;
        paused.wait().await;
        // Out of band, between the observation and the call.
        let gone = owned[0].clone();
        env.cloud.edit_world(|w| {
            let nics = if provider == ZENLAYER {
                &mut w.zenlayer.nics
            } else {
                &mut w.tencent.nics
            };
            let n = nics.get_mut(nic).unwrap();
            n.secondary_ipv4.retain(|e| e.address.to_string() != gone);
        });
        paused.resume();
        env.wait_gone("n").await;
        assert!(env.ipv4(nic).is_empty(), "{provider}");
        let releases = calls(&env, &[unassign_action(provider)], nic);
        assert!(
            releases.iter().any(|e| e.outcome != "Success"),
            "{provider}: the cloud answered not-found: {releases:#?}"
        );
        assert!(releases.len() <= 2, "{provider}: {releases:#?}");
        // A release that finds nothing to release is no error.
        let warnings = warning_events(&env, "n").await;
        assert!(warnings.is_empty(), "{provider}: {warnings:?}");
        env.check_invariants().await;
    }
}

/// R10: the claim is deleted while its assign is in flight (a Tencent task
/// held running; a Zenlayer answer delayed). The call is settled first, then
/// exactly what it assigned is released, then the finalizer goes.
#[tokio::test]
async fn r10_a_claim_deleted_while_its_assign_is_in_flight_releases_what_it_assigned() {
    let mut env = Env::new().await;
    env.cloud.hold_async(true);
    env.cloud
        .set_faults(vec![fault(json!({"protocol": "zenlayer", "action": "BatchAssignNetworkInterfaceIpv4", "latencyMs": 1500, "times": 1}))])
        .unwrap();
    env.start();
    env.apply(
        "t",
        json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t1", "ipv4": {"count": 3}}),
    )
    .await;
    env.apply("z", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z1", "ipv4": {"addresses": ["10.0.0.11", "10.0.0.12"]}})).await;
    env.wait("t", "assigning", |c| {
        pending(c).is_some_and(|p| p.request_id.is_some())
    })
    .await;
    env.wait("z", "assigning", |c| pending(c).is_some()).await;
    env.delete("t").await;
    env.delete("z").await;
    // The Tencent task still runs: nothing is released under it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        env.get("t").await.is_some(),
        "the finalizer holds the claim"
    );
    assert_eq!(
        calls(&env, &["UnassignPrivateIpAddresses"], "eni-t1").len(),
        0
    );
    env.cloud.hold_async(false);
    env.wait_gone("t").await;
    env.wait_gone("z").await;
    assert!(env.ipv4("eni-t1").is_empty());
    assert!(env.ipv4("nic-z1").is_empty());
    for (actions, nic) in [
        (
            ["AssignPrivateIpAddresses", "UnassignPrivateIpAddresses"],
            "eni-t1",
        ),
        (
            [
                "BatchAssignNetworkInterfaceIpv4",
                "UnassignNetworkInterfaceIpv4",
            ],
            "nic-z1",
        ),
    ] {
        let sent: Vec<String> = calls(&env, &actions, nic)
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(sent, actions, "{nic}: one assign, then one release");
    }
    env.check_invariants().await;
}

/// Waits until the claim converged for its current generation, and returns
/// the number of mutating calls made on `nic`.
async fn mutations_on(env: &Env, nic: &str) -> usize {
    calls(env, MUTATIONS, nic).len()
}

/// R11: the spec changes while a call is in flight: a count of 10 becomes
/// 3 (Tencent, task held running), and an explicit list is edited (Zenlayer,
/// answer delayed). Each converges to the new spec with at most 2 calls more
/// than the new spec needs from scratch (one).
#[tokio::test]
async fn r11_a_spec_changed_mid_flight_converges_with_at_most_two_extra_calls() {
    let mut env = Env::new().await;
    env.cloud.hold_async(true);
    env.cloud
        .set_faults(vec![fault(json!({"protocol": "zenlayer", "action": "BatchAssignNetworkInterfaceIpv4", "latencyMs": 1500, "times": 1}))])
        .unwrap();
    env.start();
    env.apply(
        "count",
        json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t1", "ipv4": {"count": 10}}),
    )
    .await;
    env.apply("list", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z1", "ipv4": {"addresses": ["10.0.0.11", "10.0.0.12", "10.0.0.13"]}})).await;
    env.wait("count", "assigning", |c| {
        pending(c).is_some_and(|p| p.request_id.is_some())
    })
    .await;
    env.wait("list", "assigning", |c| pending(c).is_some())
        .await;
    env.apply(
        "count",
        json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t1", "ipv4": {"count": 3}}),
    )
    .await;
    env.apply("list", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z1", "ipv4": {"addresses": ["10.0.0.12", "10.0.0.13", "10.0.0.14"]}})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.cloud.hold_async(false);
    let count = env
        .wait("count", "3 addresses", |c| {
            is_ready(c) && owned4(c).len() == 3
        })
        .await;
    assert_eq!(owned4(&count), env.ipv4("eni-t1"));
    let list = env
        .wait("list", "the edited list", |c| {
            is_ready(c) && owned4(c) == set(&["10.0.0.12", "10.0.0.13", "10.0.0.14"])
        })
        .await;
    assert_eq!(owned4(&list), env.ipv4("nic-z1"));
    for nic in ["eni-t1", "nic-z1"] {
        let n = mutations_on(&env, nic).await;
        assert!(
            n <= 1 + 2,
            "{nic}: {n} calls: {:#?}",
            calls(&env, MUTATIONS, nic)
        );
    }
    env.check_invariants().await;
}

/// R12: two claims on one NIC, and two claims naming one address on two
/// NICs, through one ProviderConfig: the older wins, the younger is
/// Stalled/Conflict naming the winner and makes no cloud call; once the
/// winner is deleted, the younger proceeds.
#[tokio::test]
async fn r12_conflicting_claims_stall_the_younger_without_cloud_calls() {
    let mut env = Env::new().await;
    env.apply("older", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z1", "ipv4": {"addresses": ["10.0.0.11"]}})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // creationTimestamp has second resolution
    env.apply("younger", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z1", "ipv4": {"addresses": ["10.0.0.12"]}})).await;
    env.apply("same-addr", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z3", "ipv4": {"addresses": ["10.0.0.11", "10.0.0.33"]}})).await;
    env.start();
    env.wait_ready("older").await;
    let y = env
        .wait("younger", "Conflict", |c| is_stalled(c, "Conflict"))
        .await;
    assert!(message(&y, "Stalled").contains(&format!("{NS}/older")));
    let s = env
        .wait("same-addr", "Conflict", |c| is_stalled(c, "Conflict"))
        .await;
    assert!(message(&s, "Stalled").contains("10.0.0.11"));
    assert!(message(&s, "Stalled").contains(&format!("{NS}/older")));
    assert_eq!(env.ipv4("nic-z1"), set(&["10.0.0.11"]));
    assert!(env.ipv4("nic-z3").is_empty());
    // Re-reconciles of the losers still make no call.
    poke(&env, "younger", 1).await;
    poke(&env, "same-addr", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = env.count(MUTATIONS);
    assert_eq!(sent, 1, "only the winner's assign: {:#?}", env.audit());
    env.check_invariants().await;
    // The winner goes: the losers converge.
    env.delete("older").await;
    env.wait_gone("older").await;
    let y = env.wait_ready("younger").await;
    assert_eq!(owned4(&y), set(&["10.0.0.12"]));
    let s = env.wait_ready("same-addr").await;
    assert_eq!(owned4(&s), set(&["10.0.0.11", "10.0.0.33"]));
    assert_eq!(env.ipv4("nic-z1"), set(&["10.0.0.12"]));
    env.check_invariants().await;
}

/// R13: an explicit address already in use in the subnet (another NIC's
/// primary on Tencent, another NIC's secondary on Zenlayer). The claim is
/// Stalled/AddressRejected naming it with the cloud's code, its other
/// addresses converge, the address stays where it is, and re-reconciles
/// send nothing again.
#[tokio::test]
async fn r13_an_address_in_use_is_named_and_the_rest_converge() {
    let mut env = Env::new().await;
    env.start();
    // 10.1.0.20 is eni-t2's primary; 10.0.0.42 is on nic-zadopt.
    env.apply("t", json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-t1", "ipv4": {"addresses": ["10.1.0.11", "10.1.0.20"]}})).await;
    env.apply("z", json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-z1", "ipv4": {"addresses": ["10.0.0.11", "10.0.0.42"]}})).await;
    for (name, nic, ok, used, code) in [
        ("t", "eni-t1", "10.1.0.11", "10.1.0.20", "ResourceInUse"),
        (
            "z",
            "nic-z1",
            "10.0.0.11",
            "10.0.0.42",
            "INVALID_SUBNET_PRIVATE_IPV4_IN_USED",
        ),
    ] {
        let c = env
            .wait(name, "AddressRejected", |c| {
                is_stalled(c, "AddressRejected") && owned4(c) == set(&[ok])
            })
            .await;
        let stalled = message(&c, "Stalled");
        assert!(
            stalled.contains(used) && stalled.contains(code),
            "{stalled}"
        );
        assert_eq!(env.ipv4(nic), set(&[ok]));
        let last = c.status.as_ref().unwrap().last_error.clone().unwrap();
        assert_eq!(last.code, code);
        assert!(!last.retryable);
    }
    assert_eq!(env.nic("eni-t2").primary_ipv4.to_string(), "10.1.0.20");
    assert_eq!(env.ipv4("nic-zadopt"), set(&["10.0.0.41", "10.0.0.42"]));
    let before = env.count(MUTATIONS);
    for (n, name) in ["t", "z"].into_iter().enumerate() {
        poke(&env, name, n as u32).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        env.count(MUTATIONS),
        before,
        "a refused address is not sent again"
    );
    env.check_invariants().await;
}

/// R14: an assignment beyond the NIC's quota. The claim reports the cloud's
/// code; every later reconcile describes the NIC again and sends no
/// identical call; a count that fits then converges with one call.
#[tokio::test]
async fn r14_quota_exceeded_re_describes_and_repeats_no_identical_call() {
    let mut env = Env::new().await;
    env.start();
    // eni-tq and nic-zq hold 3 private addresses, the primary included.
    env.apply(
        "t",
        json!({"providerConfigRef": pc(TENCENT), "nicId": "eni-tq", "ipv4": {"count": 5}}),
    )
    .await;
    env.apply(
        "z",
        json!({"providerConfigRef": pc(ZENLAYER), "nicId": "nic-zq", "ipv4": {"count": 5}}),
    )
    .await;
    for (name, nic, action, code) in [
        ("t", "eni-tq", "AssignPrivateIpAddresses", "LimitExceeded"),
        (
            "z",
            "nic-zq",
            "BatchAssignNetworkInterfaceIpv4",
            "OPERATION_DENIED_NIC_ATTACH_LAN_IP_EXCEED_LIMIT",
        ),
    ] {
        let c = env
            .wait(name, "Stalled", |c| is_stalled(c, "CloudRefused"))
            .await;
        assert!(message(&c, "Stalled").contains(code), "{name}");
        assert_eq!(
            c.status.as_ref().unwrap().last_error.as_ref().unwrap().code,
            code
        );
        let describes = |env: &Env| calls(env, &["DescribeNetworkInterfaces"], nic).len();
        for n in 1..=3 {
            let seen = describes(&env);
            poke(&env, name, n).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while describes(&env) == seen {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{name}: a re-reconcile describes the NIC again"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = calls(&env, &[action], nic);
        assert_eq!(sent.len(), 1, "{name}: no identical call again: {sent:#?}");
        assert!(env.ipv4(nic).is_empty(), "{name}");
        // A count that fits.
        let provider = if name == "t" { TENCENT } else { ZENLAYER };
        env.apply(
            name,
            json!({"providerConfigRef": pc(provider), "nicId": nic, "ipv4": {"count": 2}}),
        )
        .await;
        let c = env.wait_ready(name).await;
        assert_eq!(owned4(&c), env.ipv4(nic));
        assert_eq!(env.ipv4(nic).len(), 2);
        assert_eq!(calls(&env, &[action], nic).len(), 2, "{name}");
    }
    env.check_invariants().await;
}
