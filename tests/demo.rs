//! `nicip demo` as a newcomer runs it: the binary, its exit code and output.

mod support;

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use nicip::api::v1alpha1::NicIpClaim;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

#[tokio::test]
async fn the_demo_converges_and_its_table_agrees_with_the_cloud() {
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_nicip"))
            .arg("demo")
            .output(),
    )
    .await
    .expect("the demo finishes")
    .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    // Not a terminal: plain lines, no cursor movement.
    assert!(
        !stdout.contains('\x1b'),
        "escape codes in non-TTY output:\n{stdout}"
    );
    let final_table = stdout
        .split("Final state of the claims:")
        .nth(1)
        .expect("a final table");
    let (claims, cloud) = final_table
        .split_once("The cloud's own view of each NIC:")
        .expect("the cloud's view");
    let row = |name: &str| {
        claims
            .lines()
            .find(|l| l.starts_with(&format!("default/{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{claims}"))
            .to_string()
    };
    for name in [
        "web-frontend",
        "cache-pool",
        "ingress-pool",
        "api-gateway",
        "batch-workers",
    ] {
        assert!(row(name).contains(" Ready "), "{}", row(name));
    }
    assert!(
        row("bad-gateway").contains("INVALID_IP_FIRST_ADDRESS"),
        "{}",
        row("bad-gateway")
    );
    assert!(
        row("broken-nic").contains("INVALID_NIC_STATUS"),
        "{}",
        row("broken-nic")
    );
    assert!(
        !claims.contains("default/scratch "),
        "the deleted claim is gone"
    );
    // The addresses a Ready claim shows are the ones the cloud shows on its NIC.
    let cloud_line = |nic: &str| {
        cloud
            .lines()
            .find(|l| l.starts_with(nic))
            .unwrap_or_else(|| panic!("no NIC {nic}:\n{cloud}"))
            .to_string()
    };
    for (claim, nic) in [
        ("web-frontend", "nic-web-frontend"),
        ("cache-pool", "nic-cache"),
        ("ingress-pool", "eni-ingress01"),
    ] {
        let addrs = row(claim).split_whitespace().nth(3).unwrap().to_string();
        for a in addrs.split(',') {
            assert!(
                cloud_line(nic).contains(a),
                "{a} of {claim} not on {nic}: {}",
                cloud_line(nic)
            );
        }
    }
    assert_eq!(
        row("cache-pool")
            .split_whitespace()
            .nth(3)
            .unwrap()
            .split(',')
            .count(),
        2,
        "scaled down to 2"
    );
    assert!(
        cloud_line("eni-scratch1").ends_with(" -"),
        "the deletion released: {}",
        cloud_line("eni-scratch1")
    );
    assert!(cloud_line("nic-web-frontend").contains("ins-web-1"));
    assert!(
        stdout.contains("every claim reached its expected state"),
        "{stdout}"
    );
}

#[tokio::test]
async fn demo_serve_takes_claims_from_kubectl_and_kube_rs() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_nicip"))
        .args(["demo", "--serve", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.contains("Ctrl-C stops it") {
                return;
            }
        }
        panic!("demo --serve exited early");
    })
    .await
    .expect("serving");
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let claims: Api<NicIpClaim> = Api::namespaced(client, "default");
    let claim = json!({"apiVersion": "nicip.io/v1alpha1", "kind": "NicIpClaim", "metadata": {"name": "mine"},
        "spec": {"nicId": "nic-demo-3", "ipv4": {"count": 2}}});
    claims
        .patch("mine", &PatchParams::apply("test"), &Patch::Apply(&claim))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let c = claims.get("mine").await.unwrap();
        let ready = c.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|x| x.type_ == "Ready" && x.status == "True")
        });
        if ready {
            assert_eq!(c.status.unwrap().ipv4.len(), 2);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never Ready: {:?}",
            c.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // kubectl from the test tools sees the same.
    let tools = support::PythonTools::get();
    let out = tokio::process::Command::new(tools.bin("kubectl"))
        .args(["get", "nicipclaims", "mine", "--no-headers"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("mine") && text.contains("True"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Ctrl-C (SIGINT) stops it cleanly.
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success(), "{status}");
}
