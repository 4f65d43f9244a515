//! `nicip plan` says exactly what the controller then does: for each scenario
//! the preview's operations are compared with the mutating calls the
//! simulated cloud records once the controller acts. The preview itself makes
//! no mutating call and no Kubernetes write.

mod controller_support;

use std::path::PathBuf;

use controller_support::*;
use nicip::cloudsim::AuditEntry;
use nicip::preview::{self, ClaimPlan, Format};
use serde_json::{Value, json};

fn args(files: Vec<PathBuf>, delete: bool) -> preview::Args {
    preview::Args {
        files,
        cluster: false,
        namespace: Some(NS.into()),
        selector: None,
        delete,
        output: Format::Json,
        secrets_namespace: SECRETS_NS.into(),
        kubeconfig: None,
    }
}

fn manifest(dir: &tempfile::TempDir, name: &str, spec: &Value) -> PathBuf {
    let path = dir.path().join(format!("{name}.yaml"));
    let doc = json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim", "metadata": {"name": name, "namespace": NS}, "spec": spec});
    std::fs::write(&path, serde_json::to_string(&doc).unwrap()).unwrap();
    path
}

/// Previews with the controller stopped, checks that the preview wrote
/// nothing, starts the controller again, and returns the plan.
async fn plan_of(
    env: &mut Env,
    dir: &tempfile::TempDir,
    name: &str,
    spec: &Value,
    delete: bool,
) -> ClaimPlan {
    env.stop().await.expect("the controller stops");
    let path = manifest(dir, name, spec);
    let (calls, before) = (env.audit().len(), writes(env));
    let mut plans = preview::preview(&env.client, &args(vec![path], delete))
        .await
        .expect("preview");
    let mutating = env.audit()[calls..]
        .iter()
        .filter(|e| MUTATIONS.contains(&e.action.as_str()))
        .count();
    assert_eq!(mutating, 0, "the preview made a mutating call");
    assert_eq!(writes(env), before, "the preview wrote to Kubernetes");
    assert_eq!(plans.len(), 1);
    env.start();
    plans.remove(0)
}

fn writes(env: &Env) -> usize {
    env.kube
        .requests()
        .iter()
        .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .count()
}

fn mutations_since(env: &Env, from: usize) -> Vec<AuditEntry> {
    let all = env.audit();
    let made: Vec<AuditEntry> = all[from..]
        .iter()
        .filter(|e| MUTATIONS.contains(&e.action.as_str()))
        .cloned()
        .collect();
    assert!(made.iter().all(|e| e.outcome == "Success"), "{made:#?}");
    made
}

/// The preview's calls, in order, are the calls the controller made.
fn assert_matches(plan: &ClaimPlan, made: &[AuditEntry]) {
    let planned: Vec<&str> = plan.operations.iter().map(|o| o.call).collect();
    let actual: Vec<&str> = made.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(planned, actual, "plan {plan:?}\nmade {made:#?}");
    for (o, e) in plan.operations.iter().zip(made) {
        let params = e.params.to_string();
        for a in &o.addresses {
            assert!(
                params.contains(a),
                "{a} planned for {}, sent {params}",
                o.call
            );
        }
    }
}

#[tokio::test]
async fn the_preview_is_what_the_controller_then_does() {
    let mut env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    env.start();

    // Create, in count mode on Tencent: 12 addresses are two calls.
    let spec =
        json!({"providerConfigRef": {"name": TENCENT}, "nicId": "eni-t1", "ipv4": {"count": 12}});
    let p = plan_of(&mut env, &dir, "t", &spec, false).await;
    assert_eq!(p.outcome, "Changes");
    assert_eq!(
        p.operations.iter().map(|o| o.count).collect::<Vec<_>>(),
        vec![Some(10), Some(2)]
    );
    let from = env.audit().len();
    env.apply("t", spec).await;
    env.wait_ready("t").await;
    assert_matches(&p, &mutations_since(&env, from));
    // Converged: nothing to do.
    let spec =
        json!({"providerConfigRef": {"name": TENCENT}, "nicId": "eni-t1", "ipv4": {"count": 12}});
    assert_eq!(
        plan_of(&mut env, &dir, "t", &spec, false).await.outcome,
        "NoChange"
    );

    // Scale down: the two newest are released.
    let spec =
        json!({"providerConfigRef": {"name": TENCENT}, "nicId": "eni-t1", "ipv4": {"count": 10}});
    let p = plan_of(&mut env, &dir, "t", &spec, false).await;
    assert_eq!(p.operations.len(), 1);
    assert_eq!(p.operations[0].op, "release");
    assert_eq!(p.operations[0].addresses.len(), 2);
    let from = env.audit().len();
    env.apply("t", spec).await;
    env.wait("t", "scaled down", |c| is_ready(c) && owned4(c).len() == 10)
        .await;
    assert_matches(&p, &mutations_since(&env, from));

    // Edit the list.
    let spec = json!({"providerConfigRef": {"name": ZENLAYER}, "nicId": "nic-z1", "ipv4": {"addresses": ["10.0.0.11", "10.0.0.12"]}});
    env.apply("z", spec).await;
    env.wait_ready("z").await;
    let spec = json!({"providerConfigRef": {"name": ZENLAYER}, "nicId": "nic-z1", "ipv4": {"addresses": ["10.0.0.12", "10.0.0.13"]}});
    let p = plan_of(&mut env, &dir, "z", &spec, false).await;
    assert_eq!(
        p.operations.iter().map(|o| o.op).collect::<Vec<_>>(),
        vec!["release", "assign"]
    );
    let from = env.audit().len();
    env.apply("z", spec).await;
    env.wait("z", "edited", |c| {
        is_ready(c) && owned4(c) == set(&["10.0.0.12", "10.0.0.13"])
    })
    .await;
    assert_matches(&p, &mutations_since(&env, from));

    // Adoption, and an address left alone.
    let spec = json!({"providerConfigRef": {"name": ZENLAYER}, "nicId": "nic-zadopt", "ipv4": {"addresses": ["10.0.0.41", "10.0.0.43"]}});
    let p = plan_of(&mut env, &dir, "a", &spec, false).await;
    assert_eq!(p.adopt, vec!["10.0.0.41".to_string()]);
    assert_eq!(p.left_alone, vec!["10.0.0.42".to_string()]);
    let from = env.audit().len();
    env.apply("a", spec).await;
    env.wait_ready("a").await;
    assert_matches(&p, &mutations_since(&env, from));

    // A conflict names the older claim; the controller then makes no call.
    let spec =
        json!({"providerConfigRef": {"name": ZENLAYER}, "nicId": "nic-z1", "ipv4": {"count": 1}});
    let p = plan_of(&mut env, &dir, "dup", &spec, false).await;
    assert_eq!(p.outcome, "Refused");
    assert!(
        p.conditions
            .iter()
            .any(|c| c.reason == "Conflict" && c.message.contains(&format!("{NS}/z"))),
        "{p:?}"
    );

    // The subnet's gateway is named before any call.
    let spec = json!({"providerConfigRef": {"name": ZENLAYER}, "nicId": "nic-z3", "ipv4": {"addresses": ["10.0.0.1", "10.0.0.35"]}});
    let p = plan_of(&mut env, &dir, "gw", &spec, false).await;
    assert_eq!(p.outcome, "Refused");
    assert!(
        p.conditions
            .iter()
            .any(|c| c.reason == "AddressRejected" && c.message.contains("10.0.0.1")),
        "{p:?}"
    );

    // Delete: exactly what the claim owns is released.
    let spec =
        json!({"providerConfigRef": {"name": TENCENT}, "nicId": "eni-t1", "ipv4": {"count": 10}});
    let p = plan_of(&mut env, &dir, "t", &spec, true).await;
    assert!(p.operations.iter().all(|o| o.op == "release"));
    let from = env.audit().len();
    env.delete("t").await;
    env.wait_gone("t").await;
    assert_matches(&p, &mutations_since(&env, from));
    assert!(env.ipv4("eni-t1").is_empty());

    // The text output carries a summary line.
    let plans = vec![p];
    let text = preview::render(&plans, &preview::summarize(&plans));
    assert!(
        text.contains("Plan: 1 claims;") && text.contains("- release"),
        "{text}"
    );
}

#[tokio::test]
async fn exit_codes_follow_terraform_detailed_exitcode() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    env.kube.write_kubeconfig(&kubeconfig).unwrap();
    let run = |file: PathBuf| {
        let kubeconfig = kubeconfig.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_nicip"))
                .args(["plan", "--secrets-namespace", SECRETS_NS, "-n", NS, "-f"])
                .arg(file)
                .env("KUBECONFIG", kubeconfig)
                .output()
                .await
                .unwrap()
        }
    };
    let changes = manifest(
        &dir,
        "c",
        &json!({"providerConfigRef": {"name": ZENLAYER}, "nicId": "nic-z2", "ipv4": {"count": 2}}),
    );
    let out = run(changes).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("+ assign 2 IPv4 addresses chosen by the cloud")
    );
    let refused = manifest(
        &dir,
        "r",
        &json!({"providerConfigRef": {"name": "missing"}, "nicId": "nic-z2", "ipv4": {"count": 2}}),
    );
    assert_eq!(run(refused).await.status.code(), Some(1));
    let nothing = manifest(
        &dir,
        "n",
        &json!({"providerConfigRef": {"name": ZENLAYER}, "nicId": "nic-z2"}),
    );
    assert_eq!(run(nothing).await.status.code(), Some(0));
    let garbage = dir.path().join("bad.yaml");
    std::fs::write(
        &garbage,
        "kind: NicIpClaim\napiVersion: nicip.io/v1alpha1\nmetadata: {name: x}\nspec: {ipv4: 5}\n",
    )
    .unwrap();
    let out = run(garbage).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a valid NicIpClaim"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
