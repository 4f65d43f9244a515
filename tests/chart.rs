//! The Helm chart and the plain manifests, checked offline with real tools: Helm's own
//! engine (PyPI `helm-python-sdk`, which embeds Helm's Go library) lints and renders
//! the chart, `kubernetes-validate` checks every rendered object against the
//! Kubernetes 1.33 schemas, and kubectl's built-in kustomize builds `deploy/manifests/`.
//!
//! The tests then hold the chart to what the controller needs: the flags it is
//! started with, the restricted Pod security context, and RBAC rules that are exactly
//! the controller's calls, no more.
//!
//! `deploy/manifests/` is the chart rendered with default values; when the chart
//! changes, regenerate it with `NICIP_BLESS=1 cargo test --test chart manifests`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nicip::api::{crd_file_name, crd_yaml, crds};
use serde_json::{Value, json};
use support::PythonTools;

/// The oldest Kubernetes the project supports (README "Supported Kubernetes").
const KUBERNETES_VERSION: &str = "1.33.0";

/// One request to Helm or kubernetes-validate, as JSON on stdin; the answer is JSON
/// on stdout: `{"ok": ...}` or `{"error": {"type": ..., "message": ...}}`.
const TOOLS_PY: &str = r#"
import json, sys
req = json.load(sys.stdin)
def answer(ok=None, error=None):
    json.dump({"ok": ok} if error is None else {"error": error}, sys.stdout)
    sys.exit(0)
op = req["op"]
if op in ("render", "lint"):
    import helm_python as helm
    try:
        if op == "render":
            with helm.Chart.load(req["chart"]) as chart:
                answer(chart.render(values=req.get("values"), name=req["name"],
                                    namespace=req["namespace"], is_install=True))
        else:
            answer(helm.lint(req["chart"], values=req.get("values"), strict=True,
                             namespace=req["namespace"], kube_version="v" + req["kube_version"]))
    except helm.HelmError as e:
        answer(error={"type": type(e).__name__, "message": str(e)})
elif op == "validate":
    import kubernetes_validate as kv
    problems = []
    for obj in req["objects"]:
        try:
            kv.validate(obj, req["kube_version"], strict=True)
            problems.append(None)
        except kv.ValidationError as e:
            problems.append(f"{'/'.join(str(p) for p in e.path)}: {e.message}")
        except kv.SchemaNotFoundError as e:
            problems.append(f"no schema: {e}")
    answer(problems)
"#;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    root().join("deploy/helm/nicip")
}

fn tools(request: Value) -> Result<Value, Value> {
    let python = PythonTools::get().python();
    let mut child = Command::new(&python)
        .args(["-c", TOOLS_PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        request["op"],
        String::from_utf8_lossy(&out.stderr)
    );
    let mut answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    match answer.get_mut("error") {
        Some(error) => Err(error.take()),
        None => Ok(answer["ok"].take()),
    }
}

/// A rendered object with the template it came from.
#[derive(Clone, Debug)]
struct Rendered {
    template: String,
    object: Value,
}

/// Renders the chart as `helm install` would (the schema is enforced), in
/// template order, one entry per object.
fn try_render(values: Value, name: &str, namespace: &str) -> Result<Vec<Rendered>, Value> {
    let manifests = tools(json!({
        "op": "render", "chart": chart_dir(), "values": values,
        "name": name, "namespace": namespace,
    }))?;
    let mut out = Vec::new();
    for (template, text) in manifests.as_object().unwrap() {
        if template.ends_with("/NOTES.txt") {
            assert!(text.as_str().unwrap().contains("kubectl get nicipclaims"));
            continue;
        }
        for object in parse_yaml_stream(text.as_str().unwrap(), template) {
            out.push(Rendered {
                template: template.clone(),
                object,
            });
        }
    }
    Ok(out)
}

fn render(values: Value, name: &str, namespace: &str) -> Vec<Rendered> {
    try_render(values, name, namespace).unwrap_or_else(|e| panic!("rendering failed: {e}"))
}

fn parse_yaml_stream(text: &str, source: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .unwrap_or_else(|e| panic!("{source} is not YAML: {e}\n{text}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Lints with `--strict`: warnings count as errors.
fn lint_problems(values: Value) -> Vec<String> {
    let report = tools(json!({
        "op": "lint", "chart": chart_dir(), "values": values,
        "namespace": "nicip-system", "kube_version": KUBERNETES_VERSION,
    }))
    .unwrap_or_else(|e| panic!("lint did not run: {e}"));
    let mut problems: Vec<String> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    for m in report["messages"].as_array().unwrap() {
        // Severity 1 is informational ("icon is recommended").
        if m["severity"].as_i64().unwrap() >= 2 {
            problems.push(format!("{}: {}", m["path"], m["error"]));
        }
    }
    problems
}

/// Objects whose kinds the Kubernetes schemas do not cover, checked by hand instead.
const NOT_IN_KUBERNETES_SCHEMAS: &[&str] = &["ServiceMonitor"];

fn assert_valid(objects: &[Value]) {
    let checked: Vec<&Value> = objects
        .iter()
        .filter(|o| !NOT_IN_KUBERNETES_SCHEMAS.contains(&o["kind"].as_str().unwrap()))
        .collect();
    let problems = tools(json!({
        "op": "validate", "objects": checked, "kube_version": KUBERNETES_VERSION,
    }))
    .unwrap();
    let invalid: Vec<String> = checked
        .iter()
        .zip(problems.as_array().unwrap())
        .filter(|(_, p)| !p.is_null())
        .map(|(o, p)| format!("{}: {p}", id(o)))
        .collect();
    assert!(
        invalid.is_empty(),
        "invalid against Kubernetes {KUBERNETES_VERSION}:\n{}",
        invalid.join("\n")
    );
}

fn id(o: &Value) -> String {
    format!(
        "{} {}/{}",
        o["kind"].as_str().unwrap_or("?"),
        o["metadata"]["namespace"].as_str().unwrap_or(""),
        o["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn objects(rendered: &[Rendered]) -> Vec<Value> {
    rendered.iter().map(|r| r.object.clone()).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    match find(objects, kind).as_slice() {
        [o] => o,
        other => panic!("expected one {kind}, found {}", other.len()),
    }
}

fn args(objects: &[Value]) -> Vec<String> {
    let container = &one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Where two JSON values differ, as JSON pointers with both sides; empty when equal.
fn json_diff(have: &Value, want: &Value) -> Vec<String> {
    fn walk(have: &Value, want: &Value, path: &str, out: &mut Vec<String>) {
        match (have, want) {
            (Value::Object(h), Value::Object(w)) => {
                for key in h.keys().chain(w.keys()).collect::<BTreeSet<_>>() {
                    let p = format!("{path}/{key}");
                    match (h.get(key), w.get(key)) {
                        (Some(a), Some(b)) => walk(a, b, &p, out),
                        (a, b) => out.push(format!("{p}: {a:?} != {b:?}")),
                    }
                }
            }
            (Value::Array(h), Value::Array(w)) if h.len() == w.len() => {
                for (i, (a, b)) in h.iter().zip(w).enumerate() {
                    walk(a, b, &format!("{path}/{i}"), out);
                }
            }
            // JSON (and Kubernetes) do not tell 50 from 50.0; k8s-openapi writes bounds as f64.
            (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
            (a, b) if a != b => out.push(format!("{path}: {a} != {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(have, want, "", &mut out);
    out
}

#[track_caller]
fn assert_json_eq(have: &Value, want: &Value) {
    let diff = json_diff(have, want);
    assert!(
        diff.is_empty(),
        "rendered != expected:\n{}",
        diff.join("\n")
    );
}

/// The generated CRDs as the chart must install them.
fn expected_crds(keep: bool) -> Vec<Value> {
    crds()
        .iter()
        .map(|crd| {
            let mut v = serde_json::to_value(crd).unwrap();
            if keep {
                v["metadata"]["annotations"] = json!({"helm.sh/resource-policy": "keep"});
            }
            v
        })
        .collect()
}

// ---------------------------------------------------------------------------
// What the controller needs: its flags (controller --help), its security, its RBAC.

/// Checks the Pod against Pod Security "restricted" and the container's probes and env.
fn assert_restricted_pod(objects: &[Value]) {
    let pod = &one(objects, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(pod.get("hostNetwork").is_none() && pod.get("hostPID").is_none());
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{sc}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{sc}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{sc}");
    assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}), "{sc}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{sc}");
    assert!(sc.get("privileged").is_none() && sc.get("runAsUser").is_none());

    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics");
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    let env: BTreeMap<&str, &Value> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                &e["valueFrom"]["fieldRef"]["fieldPath"],
            )
        })
        .collect();
    assert_eq!(env["POD_NAME"], "metadata.name");
    assert_eq!(env["POD_NAMESPACE"], "metadata.namespace");
}

type Rule = (Vec<String>, Vec<String>, Vec<String>);

fn rule(group: &str, resource: &str, verbs: &[&str]) -> Rule {
    (strings(&[group]), strings(&[resource]), strings(verbs))
}

/// What `nicip controller` calls (tests/rbac.rs proves it): nothing else may be granted.
fn controller_cluster_rules() -> Vec<Rule> {
    vec![
        rule(
            "nicip.io",
            "nicipclaims",
            &["get", "list", "watch", "patch"],
        ),
        rule("nicip.io", "nicipclaims/status", &["patch"]),
        rule("nicip.io", "providerconfigs", &["list", "watch"]),
        rule("nicip.io", "providerconfigs/status", &["patch"]),
        rule("events.k8s.io", "events", &["create", "patch"]),
        rule("", "namespaces", &["list", "watch"]),
    ]
}

fn secrets_rules() -> Vec<Rule> {
    vec![rule("", "secrets", &["list", "watch"])]
}

fn lease_rules() -> Vec<Rule> {
    vec![rule(
        "coordination.k8s.io",
        "leases",
        &["get", "create", "update"],
    )]
}

fn rules_of(role: &Value) -> Vec<Rule> {
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            assert_eq!(
                keys,
                BTreeSet::from(["apiGroups", "resources", "verbs"]),
                "{}: a rule with resourceNames or nonResourceURLs is not expected: {r}",
                id(role)
            );
            let rule = (
                list(&r["apiGroups"]),
                list(&r["resources"]),
                list(&r["verbs"]),
            );
            assert!(
                ![&rule.0, &rule.1, &rule.2]
                    .iter()
                    .any(|l| l.iter().any(|s| s.contains('*'))),
                "{}: a wildcard in {r}",
                id(role)
            );
            rule
        })
        .collect()
}

/// The Roles and ClusterRoles must be exactly `expected` (kind, namespace, name, rules),
/// each bound once, to the controller's ServiceAccount and nothing else.
fn assert_rbac(
    objects: &[Value],
    service_account: (&str, &str),
    expected: &[(&str, Option<&str>, &str, Vec<Rule>)],
) {
    let mut have = BTreeMap::new();
    for o in objects {
        let kind = o["kind"].as_str().unwrap();
        if kind == "Role" || kind == "ClusterRole" {
            let ns = o["metadata"]["namespace"].as_str();
            assert_eq!(ns.is_some(), kind == "Role", "{}", id(o));
            assert!(o.get("aggregationRule").is_none(), "{}", id(o));
            let name = o["metadata"]["name"].as_str().unwrap();
            have.insert((kind, ns, name), rules_of(o));
        }
    }
    let want: BTreeMap<_, _> = expected
        .iter()
        .map(|(kind, ns, name, rules)| ((*kind, *ns, *name), rules.clone()))
        .collect();
    assert_eq!(have, want, "the roles differ from what the controller uses");

    let mut bound = BTreeSet::new();
    for b in objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" || o["kind"] == "ClusterRoleBinding")
    {
        let role_kind = if b["kind"] == "RoleBinding" {
            "Role"
        } else {
            "ClusterRole"
        };
        let ns = b["metadata"]["namespace"].as_str();
        assert_eq!(
            b["roleRef"]["apiGroup"],
            "rbac.authorization.k8s.io",
            "{}",
            id(b)
        );
        assert_eq!(b["roleRef"]["kind"], role_kind, "{}", id(b));
        let role = (role_kind, ns, b["roleRef"]["name"].as_str().unwrap());
        assert!(
            have.contains_key(&role),
            "{} binds no role of the chart",
            id(b)
        );
        assert!(bound.insert(role), "{:?} is bound twice", role);
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": service_account.1, "namespace": service_account.0}]),
            "{}",
            id(b)
        );
    }
    assert_eq!(bound.len(), have.len(), "a role is not bound");
}

// ---------------------------------------------------------------------------

#[test]
fn chart_versions_follow_the_crate() {
    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn chart_crd_files_are_the_generated_crds() {
    let dir = chart_dir().join("files/crds");
    let mut want = BTreeMap::new();
    for crd in crds() {
        want.insert(crd_file_name(&crd), crd_yaml(&crd).unwrap());
    }
    let mut have = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        have.insert(name, std::fs::read_to_string(&path).unwrap());
    }
    assert!(
        have == want,
        "deploy/helm/nicip/files/crds/ is stale; run `cargo run -- crd --output-dir deploy/helm/nicip/files/crds`"
    );
}

#[test]
fn default_values_lint_and_render_a_valid_least_privilege_installation() {
    assert_eq!(lint_problems(json!({})), Vec::<String>::new());
    let rendered = render(json!({}), "nicip", "nicip-system");
    let all = objects(&rendered);
    assert_valid(&all);

    // The CRDs are templates (so `helm upgrade` upgrades them), kept on uninstall.
    let crd_objects: Vec<Value> = find(&all, "CustomResourceDefinition")
        .into_iter()
        .cloned()
        .collect();
    assert_json_eq(&json!(crd_objects), &json!(expected_crds(true)));
    assert!(
        rendered
            .iter()
            .filter(|r| r.object["kind"] == "CustomResourceDefinition")
            .all(|r| r.template.ends_with("templates/crds.yaml"))
    );

    let kinds: BTreeSet<&str> = all.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ])
    );
    for o in &all {
        let namespaced = !matches!(
            o["kind"].as_str().unwrap(),
            "ClusterRole" | "ClusterRoleBinding" | "CustomResourceDefinition"
        );
        assert_eq!(
            o["metadata"]["namespace"].as_str(),
            namespaced.then_some("nicip-system"),
            "{}",
            id(o)
        );
    }

    assert_eq!(
        args(&all),
        strings(&[
            "--secrets-namespace=nicip-system",
            "--concurrency=64",
            "--resync=5m",
            "--log-level=info",
            "--log-format=json",
            "--metrics-addr=0.0.0.0:8080",
            "--leader-elect",
            "--lease-name=nicip-controller",
            "--lease-namespace=nicip-system",
            "--lease-duration=15s",
            "--renew-deadline=10s",
            "--retry-period=2s",
        ])
    );
    let deployment = one(&all, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("ghcr.io/nicip/nicip:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_restricted_pod(&all);
    assert_rbac(
        &all,
        ("nicip-system", "nicip"),
        &[
            ("ClusterRole", None, "nicip", controller_cluster_rules()),
            (
                "Role",
                Some("nicip-system"),
                "nicip-secrets",
                secrets_rules(),
            ),
            (
                "Role",
                Some("nicip-system"),
                "nicip-leader-election",
                lease_rules(),
            ),
        ],
    );
}

#[test]
fn non_default_values_shape_the_installation() {
    let values = json!({
        "replicas": 3,
        "image": {"repository": "registry.example.com/nicip", "digest": format!("sha256:{}", "a".repeat(64))},
        "imagePullSecrets": [{"name": "registry"}],
        "fullnameOverride": "nicip-shard-a",
        "crds": {"install": false},
        "controller": {
            "secretsNamespace": "cloud-credentials",
            "namespace": "team-a",
            "selector": "nicip.io/shard=a",
            "concurrency": 4,
            "resync": "30s",
            "logLevel": "nicip=debug,info",
            "logFormat": "text",
            // Forced on by replicas > 1.
            "leaderElection": {"enabled": false, "leaseName": "nicip-shard-a", "leaseDuration": "20s"},
            "extraArgs": ["--identity=shard-a"],
            "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.example.com:3128"}],
        },
        "metrics": {
            "port": 9090,
            "service": {"port": 9100},
            "serviceMonitor": {"enabled": true, "interval": "15s", "labels": {"release": "prometheus"}},
        },
        "podDisruptionBudget": {"enabled": true, "minAvailable": 2},
        "serviceAccount": {"name": "nicip-controller", "annotations": {"example.com/role": "x"}},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "podLabels": {"team": "network"},
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]}]}}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "nicip"}}}],
    });
    assert_eq!(lint_problems(values.clone()), Vec::<String>::new());
    let all = objects(&render(values, "edge", "networking"));
    assert_valid(&all);
    assert!(find(&all, "CustomResourceDefinition").is_empty());

    assert_eq!(
        args(&all),
        strings(&[
            "--secrets-namespace=cloud-credentials",
            "--concurrency=4",
            "--resync=30s",
            "--log-level=nicip=debug,info",
            "--log-format=text",
            "--metrics-addr=0.0.0.0:9090",
            "--namespace=team-a",
            "--selector=nicip.io/shard=a",
            "--leader-elect",
            "--lease-name=nicip-shard-a",
            "--lease-namespace=networking",
            "--lease-duration=20s",
            "--renew-deadline=10s",
            "--retry-period=2s",
            "--identity=shard-a",
        ])
    );
    let deployment = one(&all, "Deployment");
    assert_eq!(deployment["metadata"]["name"], "nicip-shard-a");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert!(
        deployment["spec"].get("strategy").is_none(),
        "rolling updates with a Lease"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        format!("registry.example.com/nicip@sha256:{}", "a".repeat(64))
    );
    assert_eq!(pod["serviceAccountName"], "nicip-controller");
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "registry"}]));
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert_eq!(pod["tolerations"][0]["key"], "CriticalAddonsOnly");
    assert!(pod["affinity"]["nodeAffinity"].is_object());
    assert_eq!(pod["topologySpreadConstraints"][0]["maxSkew"], 1);
    assert_eq!(container["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(container["ports"][0]["containerPort"], 9090);
    assert!(
        container["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "HTTPS_PROXY", "value": "http://proxy.example.com:3128"}))
    );
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(pod_labels["team"], "network");
    assert_restricted_pod(&all);

    // The metrics Service, the ServiceMonitor and the PDB select these Pods.
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    for (k, v) in selector.as_object().unwrap() {
        assert_eq!(&pod_labels[k], v);
    }
    let service = one(&all, "Service");
    assert_eq!(&service["spec"]["selector"], selector);
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}])
    );
    let monitor = one(&all, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["selector"]["matchLabels"], *selector);
    for (k, v) in selector.as_object().unwrap() {
        assert_eq!(&service["metadata"]["labels"][k], v);
    }
    assert_eq!(
        monitor["spec"]["namespaceSelector"],
        json!({"matchNames": ["networking"]})
    );
    assert_eq!(
        monitor["spec"]["endpoints"],
        json!([{"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}])
    );
    let pdb = one(&all, "PodDisruptionBudget");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    assert_eq!(pdb["spec"]["minAvailable"], 2);
    assert!(pdb["spec"].get("maxUnavailable").is_none());

    assert_eq!(
        one(&all, "ServiceAccount")["metadata"]["annotations"],
        json!({"example.com/role": "x"})
    );
    assert_rbac(
        &all,
        ("networking", "nicip-controller"),
        &[
            (
                "ClusterRole",
                None,
                "nicip-shard-a",
                controller_cluster_rules(),
            ),
            (
                "Role",
                Some("cloud-credentials"),
                "nicip-shard-a-secrets",
                secrets_rules(),
            ),
            (
                "Role",
                Some("networking"),
                "nicip-shard-a-leader-election",
                lease_rules(),
            ),
        ],
    );
}

#[test]
fn without_leader_election_there_is_no_lease_access_and_no_overlap() {
    let values = json!({
        "controller": {"leaderElection": {"enabled": false}},
        "crds": {"keep": false},
        "podDisruptionBudget": {"enabled": true},
    });
    let all = objects(&render(values, "nicip", "nicip-system"));
    assert_valid(&all);
    assert!(
        !args(&all)
            .iter()
            .any(|a| a.starts_with("--lease") || a == "--leader-elect")
    );
    assert_eq!(
        one(&all, "Deployment")["spec"]["strategy"],
        json!({"type": "Recreate"})
    );
    assert_eq!(
        one(&all, "PodDisruptionBudget")["spec"]["maxUnavailable"],
        1
    );
    let crd_objects: Vec<Value> = find(&all, "CustomResourceDefinition")
        .into_iter()
        .cloned()
        .collect();
    assert_json_eq(&json!(crd_objects), &json!(expected_crds(false)));
    assert_rbac(
        &all,
        ("nicip-system", "nicip"),
        &[
            ("ClusterRole", None, "nicip", controller_cluster_rules()),
            (
                "Role",
                Some("nicip-system"),
                "nicip-secrets",
                secrets_rules(),
            ),
        ],
    );
}

#[test]
fn values_that_break_the_schema_fail_at_install_and_lint() {
    let cases = [
        (
            json!({"controller": {"logFormat": "xml"}}),
            "/controller/logFormat",
        ),
        (
            json!({"controller": {"concurrency": 0}}),
            "/controller/concurrency",
        ),
        (
            json!({"controller": {"concurrency": "16"}}),
            "/controller/concurrency",
        ),
        (
            json!({"controller": {"resync": "five minutes"}}),
            "/controller/resync",
        ),
        (
            json!({"controller": {"secretsNamespace": "Not_A_Namespace"}}),
            "/controller/secretsNamespace",
        ),
        (
            json!({"controller": {"leaderElection": {"leaseName": "UPPER"}}}),
            "/controller/leaderElection/leaseName",
        ),
        (
            json!({"controller": {"extraArgs": "--oops"}}),
            "/controller/extraArgs",
        ),
        (
            json!({"controller": {"secretNamespace": "typo"}}),
            "secretNamespace",
        ),
        (json!({"replicas": -1}), "/replicas"),
        (json!({"replica": 2}), "replica"),
        (json!({"metrics": {"port": 70000}}), "/metrics/port"),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (json!({"image": {"digest": "latest"}}), "/image/digest"),
        (json!({"tolerations": {"key": "x"}}), "/tolerations"),
        (
            json!({"podDisruptionBudget": {"maxUnavailable": "half"}}),
            "/podDisruptionBudget/maxUnavailable",
        ),
    ];
    for (values, path) in cases {
        let err = try_render(values.clone(), "nicip", "nicip-system")
            .expect_err(&format!("{values} rendered"));
        assert_eq!(err["type"], "HelmValuesError", "{values}: {err}");
        assert!(
            err["message"].as_str().unwrap().contains(path),
            "{values}: the error does not name {path}: {err}"
        );
        let problems = lint_problems(values.clone());
        assert!(
            problems.iter().any(|p| p.contains(path)),
            "{values}: lint did not report {path}: {problems:?}"
        );
    }
}

#[test]
fn a_missing_service_account_name_is_refused() {
    let err = try_render(
        json!({"serviceAccount": {"create": false}}),
        "nicip",
        "nicip-system",
    )
    .expect_err("rendered without a ServiceAccount");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("serviceAccount.name is required"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// deploy/manifests/: the same installation for GitOps.

fn manifests_dir() -> PathBuf {
    root().join("deploy/manifests")
}

const MANIFESTS_HEADER: &str = "# Generated from deploy/helm/nicip with default values (release `nicip`, namespace\n\
    # `nicip-system`); do not edit. Regenerate: NICIP_BLESS=1 cargo test --test chart manifests\n";

/// Labels and annotations that mean something only to Helm.
fn without_helm(mut o: Value) -> Value {
    fn strip(labels: &mut Value) {
        if let Some(map) = labels.as_object_mut() {
            map.remove("helm.sh/chart");
            map.remove("app.kubernetes.io/managed-by");
        }
    }
    if let Some(labels) = o.pointer_mut("/metadata/labels") {
        strip(labels);
    }
    if let Some(labels) = o.pointer_mut("/spec/template/metadata/labels") {
        strip(labels);
    }
    if o["kind"] == "CustomResourceDefinition" {
        // Deleting a CRD deletes every claim: GitOps tools must never prune them.
        o["metadata"]["annotations"] = json!({
            "argocd.argoproj.io/sync-options": "Delete=false",
            "kustomize.toolkit.fluxcd.io/prune": "disabled",
        });
    }
    o
}

/// The files of `deploy/manifests/` (without kustomization.yaml) as they must be.
fn expected_manifests() -> BTreeMap<String, String> {
    let mut files: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    files.insert(
        "namespace.yaml".into(),
        vec![json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "nicip-system", "labels": {
                "app.kubernetes.io/part-of": "nicip",
                "pod-security.kubernetes.io/enforce": "restricted",
            }},
        })],
    );
    for r in render(json!({}), "nicip", "nicip-system") {
        let file = Path::new(&r.template)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        files.entry(file).or_default().push(without_helm(r.object));
    }
    files
        .into_iter()
        .map(|(file, objects)| {
            let body = serde_saphyr::to_string_multiple(&objects).unwrap();
            (file, format!("{MANIFESTS_HEADER}{body}"))
        })
        .collect()
}

#[test]
fn manifests_are_the_chart_with_default_values() {
    let want = expected_manifests();
    let dir = manifests_dir();
    if std::env::var_os("NICIP_BLESS").is_some() {
        for (file, text) in &want {
            std::fs::write(dir.join(file), text).unwrap();
        }
    }
    let mut have = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name != "kustomization.yaml" {
            have.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    let stale: Vec<&String> = want
        .keys()
        .chain(have.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|f| want.get(*f) != have.get(*f))
        .collect();
    assert!(
        stale.is_empty(),
        "deploy/manifests/ differs from the chart in {stale:?}; \
         run `NICIP_BLESS=1 cargo test --test chart manifests`"
    );

    // The kustomize base lists exactly these files, and builds to exactly these objects.
    let kustomization: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    let resources: BTreeSet<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(resources, want.keys().map(|k| k.as_str()).collect());

    let out = Command::new(PythonTools::get().bin("kubectl"))
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = parse_yaml_stream(&String::from_utf8(out.stdout).unwrap(), "kubectl kustomize");
    let mut from_files: Vec<Value> = want
        .iter()
        .flat_map(|(file, text)| parse_yaml_stream(text, file))
        .collect();
    let key = |o: &Value| (o["kind"].to_string(), id(o));
    let mut built_sorted = built.clone();
    built_sorted.sort_by_key(key);
    from_files.sort_by_key(key);
    assert_json_eq(&json!(built_sorted), &json!(from_files));
    assert_valid(&built);
    assert_restricted_pod(&built);
    assert_rbac(
        &built,
        ("nicip-system", "nicip"),
        &[
            ("ClusterRole", None, "nicip", controller_cluster_rules()),
            (
                "Role",
                Some("nicip-system"),
                "nicip-secrets",
                secrets_rules(),
            ),
            (
                "Role",
                Some("nicip-system"),
                "nicip-leader-election",
                lease_rules(),
            ),
        ],
    );
}

// ---------------------------------------------------------------------------
// The container image. No Docker engine here: the Dockerfile is checked as text.

/// The Dockerfile's instructions, (keyword, arguments), continuation lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((keyword.to_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

/// The stages: each FROM with the instructions after it.
fn stages() -> Vec<(String, Vec<(String, String)>)> {
    let mut stages: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (keyword, args) in dockerfile() {
        if keyword == "FROM" {
            stages.push((args, Vec::new()));
        } else if let Some(stage) = stages.last_mut() {
            stage.1.push((keyword, args));
        }
    }
    stages
}

#[test]
fn dockerfile_builds_the_product_binary_into_a_distroless_non_root_image() {
    let stages = stages();
    assert_eq!(stages.len(), 2, "a build stage and the final image");
    let (build_from, build) = &stages[0];
    let (final_from, last) = &stages[1];
    assert!(build_from.starts_with("docker.io/library/rust:") && build_from.ends_with(" AS build"));
    assert!(
        final_from.starts_with("gcr.io/distroless/static-") && final_from.ends_with(":nonroot"),
        "{final_from}"
    );

    // The binary cargo builds, by the name Cargo gives it, without the simulators.
    let bin = Path::new(env!("CARGO_BIN_EXE_nicip"))
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let cargo_builds: Vec<&String> = build
        .iter()
        .filter(|(k, a)| k == "RUN" && a.contains("cargo build"))
        .map(|(_, a)| a)
        .collect();
    let [run] = cargo_builds.as_slice() else {
        panic!("expected one `cargo build`, found {cargo_builds:?}");
    };
    let command = run
        .split("&&")
        .map(str::trim)
        .find(|c| c.starts_with("cargo build"))
        .unwrap();
    let words: Vec<&str> = command.split_whitespace().collect();
    for flag in ["--release", "--locked", "--no-default-features"] {
        assert!(words.contains(&flag), "`{command}` lacks {flag}");
    }
    assert!(
        !words
            .iter()
            .any(|w| w.starts_with("--features") || *w == "--all-features" || *w == "-F"),
        "{command}"
    );
    let after = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1))
            .copied()
            .unwrap_or_else(|| panic!("`{command}` has no {flag}"))
    };
    assert_eq!(after("--bin"), bin);
    let target = after("--target").trim_matches('"');
    assert!(
        run.contains("target=\"$(uname -m)-unknown-linux-musl\"") && target == "$target",
        "a static (musl) target: {run}"
    );
    let built = format!("\"target/{target}/release/{bin}\" /out/{bin}");
    assert!(run.contains(&built), "{run} does not copy out {built}");
    for cache in ["/usr/local/cargo/registry", "/src/target"] {
        assert!(
            run.contains(&format!("--mount=type=cache,target={cache}")),
            "no cache mount for {cache}"
        );
    }
    let copies: Vec<&str> = build
        .iter()
        .filter(|(k, _)| k == "COPY")
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(
        copies,
        ["Cargo.toml Cargo.lock ./", "src ./src", "benches ./benches"]
    );

    // The final image: only the binary, a numeric non-root user, no shell needed.
    let keywords: BTreeSet<&str> = last.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        !keywords.contains("RUN"),
        "the final image runs nothing (it has no shell)"
    );
    let instruction = |keyword: &str| -> Vec<&str> {
        last.iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    assert_eq!(
        instruction("COPY"),
        [format!("--from=build /out/{bin} /usr/local/bin/{bin}")]
    );
    assert_eq!(instruction("ENV"), ["PATH=/usr/local/bin"]);
    assert_eq!(instruction("USER"), ["65532:65532"]);
    let entrypoint: Vec<String> =
        serde_json::from_str(instruction("ENTRYPOINT").first().unwrap()).unwrap();
    assert_eq!(entrypoint, [bin, "controller"]);

    let labels = instruction("LABEL").join(" ");
    for label in [
        "title",
        "description",
        "source",
        "url",
        "documentation",
        "licenses",
        "version",
        "revision",
    ] {
        assert!(
            labels.contains(&format!("org.opencontainers.image.{label}=")),
            "no OCI label {label}"
        );
    }
    assert!(labels.contains(&format!(
        "org.opencontainers.image.licenses=\"{}\"",
        env!("CARGO_PKG_LICENSE")
    )));

    // The build context lets in what the build stage copies, and nothing else.
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let rules: Vec<&str> = ignore
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules,
        ["*", "!Cargo.toml", "!Cargo.lock", "!src/", "!benches/"]
    );
}

#[test]
fn license_is_the_one_cargo_toml_names() {
    assert_eq!(env!("CARGO_PKG_LICENSE"), "Apache-2.0");
    let text = std::fs::read_to_string(root().join("LICENSE")).unwrap();
    assert!(
        text.trim_start()
            .starts_with("Apache License\n                           Version 2.0, January 2004")
    );
    assert!(text.contains("END OF TERMS AND CONDITIONS"));
    assert!(text.contains("9. Accepting Warranty or Additional Liability."));
}

#[test]
fn chart_readme_lists_every_value() {
    fn leaves(v: &Value, path: &str, out: &mut Vec<String>) {
        match v.as_object() {
            Some(map) if !map.is_empty() => {
                for (k, child) in map {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    leaves(child, &p, out);
                }
            }
            _ => out.push(path.to_owned()),
        }
    }
    let values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap())
            .unwrap();
    let mut paths = Vec::new();
    leaves(&values, "", &mut paths);
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    let documented: BTreeSet<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once("` |").map(|(p, _)| p))
        .collect();
    // A map documented as a whole (`resources`) covers its keys.
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| {
            !documented
                .iter()
                .any(|d| *p == d || p.starts_with(&format!("{d}.")))
        })
        .collect();
    assert!(missing.is_empty(), "README.md does not list {missing:?}");
    let stale: Vec<&&str> = documented
        .iter()
        .filter(|d| {
            !paths
                .iter()
                .any(|p| p == *d || p.starts_with(&format!("{d}.")))
        })
        .collect();
    assert!(
        stale.is_empty(),
        "README.md lists values that do not exist: {stale:?}"
    );
}

// ---------------------------------------------------------------------------
// One Kubernetes version story: what the binary is built for, what the chart and
// the README promise, and the kubectl the tests drive.

/// The `N` of k8s-openapi's `v1_N` feature in Cargo.toml.
fn k8s_openapi_minor() -> u32 {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.starts_with("k8s-openapi"))
        .expect("k8s-openapi in Cargo.toml");
    let features: Vec<u32> = line
        .split('"')
        .filter_map(|w| w.strip_prefix("v1_")?.parse().ok())
        .collect();
    match features.as_slice() {
        [minor] => *minor,
        other => panic!("expected one k8s-openapi version feature, found {other:?}"),
    }
}

fn kubectl_minor() -> u32 {
    let out = Command::new(PythonTools::get().bin("kubectl"))
        .args(["version", "--client", "-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["clientVersion"]["minor"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn one_kubernetes_version_story() {
    let minor = k8s_openapi_minor();
    assert_eq!(KUBERNETES_VERSION, format!("1.{minor}.0"));
    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart["kubeVersion"], format!(">=1.{minor}.0-0"));
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    for promise in [
        format!("Kubernetes 1.{minor} and newer"),
        format!("k8s-openapi's `v1_{minor}` feature"),
        format!("the 1.{minor} schemas"),
        format!("The tests' kubectl is 1.{}", kubectl_minor()),
    ] {
        assert!(
            readme.contains(&promise),
            "README.md does not say {promise:?}"
        );
    }
    // kubectl supports servers one minor version either side of its own.
    assert!(
        kubectl_minor() >= minor,
        "the tests' kubectl is older than the oldest supported Kubernetes"
    );
}

#[tokio::test]
async fn the_in_memory_api_server_reports_a_version_the_tests_kubectl_supports() {
    let sim = nicip::kubesim::KubeSim::new(crds()).start().await.unwrap();
    let info = sim.client().unwrap().apiserver_version().await.unwrap();
    let server: u32 = info.minor.trim_end_matches('+').parse().unwrap();
    let kubectl = kubectl_minor();
    assert!(
        server.abs_diff(kubectl) <= 1,
        "the in-memory API server reports 1.{server}, outside the skew of the tests' kubectl 1.{kubectl}"
    );
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let promise = format!("the in-memory API server reports 1.{server}");
    assert!(
        readme.contains(&promise),
        "README.md does not say {promise:?}"
    );
    assert!(server >= k8s_openapi_minor());
}

// ---------------------------------------------------------------------------
// The install and credentials docs: their manifests apply, their policy is their table.

/// The contents of the fenced code blocks of one language in a Markdown file.
fn fenced(markdown: &str, language: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, usize)> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match &mut current {
            None => {
                if let Some(lang) = trimmed.strip_prefix("```")
                    && lang.trim() == language
                {
                    current = Some((String::new(), line.len() - trimmed.len()));
                }
            }
            Some((block, indent)) => {
                if trimmed.starts_with("```") {
                    blocks.push(std::mem::take(block));
                    current = None;
                } else {
                    block.push_str(line.get(*indent..).unwrap_or(line.trim_start()));
                    block.push('\n');
                }
            }
        }
    }
    blocks
}

/// API groups of tools the docs configure (Argo CD, Flux, kustomize) that a bare API
/// server does not serve.
const OTHER_TOOLS: &[&str] = &[
    "argoproj.io",
    "source.toolkit.fluxcd.io",
    "kustomize.toolkit.fluxcd.io",
    "kustomize.config.k8s.io",
];

#[tokio::test]
async fn kubernetes_objects_in_the_install_docs_apply_to_an_api_server() {
    let mut objects = Vec::new();
    let mut skipped = BTreeSet::new();
    for doc in ["docs/install.md", "docs/credentials.md"] {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        for block in fenced(&text, "yaml") {
            for object in parse_yaml_stream(&block, doc) {
                let Some(api_version) = object["apiVersion"].as_str() else {
                    continue; // Helm values, not an object
                };
                let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
                if OTHER_TOOLS.contains(&group) {
                    skipped.insert(object["kind"].as_str().unwrap().to_owned());
                } else {
                    objects.push((doc, object));
                }
            }
        }
    }
    let kinds: BTreeSet<&str> = objects
        .iter()
        .map(|(_, o)| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["NicIpClaim", "ProviderConfig", "Secret"])
    );
    assert_eq!(
        skipped,
        BTreeSet::from([
            "Application".to_owned(),
            "GitRepository".to_owned(),
            "Kustomization".to_owned()
        ])
    );

    let sim = nicip::kubesim::KubeSim::new(crds()).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    sim.write_kubeconfig(&dir.path().join("config")).unwrap();
    let kubectl = |args: Vec<String>| {
        let mut cmd = tokio::process::Command::new(PythonTools::get().bin("kubectl"));
        cmd.arg("--kubeconfig")
            .arg(dir.path().join("config"))
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(args)
            .env("HOME", dir.path())
            .kill_on_drop(true);
        cmd
    };
    let namespace =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "nicip-system"}});
    for (i, (doc, object)) in std::iter::once(("namespace", namespace))
        .chain(objects)
        .enumerate()
    {
        let file = dir.path().join(format!("{i}.json"));
        std::fs::write(&file, object.to_string()).unwrap();
        let out = kubectl(vec![
            "apply".into(),
            "-f".into(),
            file.display().to_string(),
        ])
        .output()
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "{doc}: {} does not apply: {}",
            id(&object),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_tencent_cam_policy_grants_exactly_the_documented_actions() {
    let text = std::fs::read_to_string(root().join("docs/credentials.md")).unwrap();
    let section = text
        .split("### Tencent Cloud, API 3.0")
        .nth(1)
        .and_then(|s| s.split("\n### ").next())
        .expect("a Tencent API 3.0 section");
    let table: BTreeSet<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once('`').map(|(a, _)| a))
        .collect();
    let policies = fenced(section, "json");
    let [policy] = policies.as_slice() else {
        panic!("expected one policy, found {}", policies.len());
    };
    let policy: Value = serde_json::from_str(policy).unwrap();
    let granted: BTreeSet<&str> = policy["statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["action"].as_array().unwrap())
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(granted, table);
    assert!(granted.iter().all(|a| !a.contains('*')));
}
