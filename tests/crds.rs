//! The CRDs: committed YAML is fresh, the CLI prints them, every CEL rule
//! accepts what it must and rejects what it must, and every rule stays within
//! what a real kube-apiserver accepts.

use std::path::Path;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::{ScopeContext, Validator, WarningKind, analyze_rule, compile_schema};
use nicip::api::{crd_file_name, crd_yaml, crds};
use serde_json::{Value, json};

fn crd(kind: &str) -> CustomResourceDefinition {
    crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"))
}

fn schema(kind: &str) -> Value {
    let crd = crd(kind);
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn committed_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut stale = Vec::new();
    let mut expected_files = Vec::new();
    for crd in crds() {
        let name = crd_file_name(&crd);
        let want = crd_yaml(&crd).unwrap();
        let have = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        if have != want {
            let diff = similar::TextDiff::from_lines(&have, &want);
            stale.push(format!(
                "{name}:\n{}",
                diff.unified_diff()
                    .context_radius(2)
                    .header("committed", "generated")
            ));
        }
        expected_files.push(name);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    expected_files.sort();
    assert!(
        stale.is_empty() && present == expected_files,
        "crds/ is stale; run `cargo run -- crd --output-dir crds` and commit.\n\
         files present {present:?}, expected {expected_files:?}\n{}",
        stale.join("\n")
    );
}

#[test]
fn cli_prints_every_crd() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nicip"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let expected: String = crds().iter().map(|c| crd_yaml(c).unwrap()).collect();
    assert_eq!(text, expected);
    assert!(
        text.contains("name: nicipclaims.nicip.io")
            && text.contains("name: providerconfigs.nicip.io")
    );
}

/// `nicip crd | head` closes the pipe before everything is written: the
/// command stops quietly instead of panicking.
#[test]
fn cli_stops_quietly_when_stdout_is_closed() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nicip"))
        .arg("crd")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{stderr}");
}

#[test]
fn crd_identity() {
    let claim = crd("NicIpClaim");
    assert_eq!(claim.spec.group, "nicip.io");
    assert_eq!(claim.spec.scope, "Namespaced");
    assert_eq!(
        claim.spec.names.short_names,
        Some(vec!["nic".into(), "nicip".into()])
    );
    assert_eq!(claim.spec.names.categories, Some(vec!["nicip".into()]));
    let version = &claim.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<&str> = version
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Ready",
            "Reason",
            "NIC",
            "IPv4",
            "IPv6",
            "Instance",
            "Age",
            "Addresses",
            "Provider"
        ]
    );

    let pc = crd("ProviderConfig");
    assert_eq!(pc.spec.scope, "Cluster");
    assert!(
        pc.spec.versions[0]
            .subresources
            .as_ref()
            .unwrap()
            .status
            .is_some()
    );
}

/// Walks a schema, calling `f` with each node and its path.
fn walk<'a>(node: &'a Value, path: &str, f: &mut dyn FnMut(&str, &'a Value)) {
    f(path, node);
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            walk(child, &format!("{path}.{name}"), f);
        }
    }
    if let Some(items) = node.get("items") {
        walk(items, &format!("{path}[]"), f);
    }
}

#[test]
fn every_list_and_string_is_bounded_and_no_field_is_nullable() {
    for kind in ["NicIpClaim", "ProviderConfig"] {
        let schema = schema(kind);
        let mut problems = Vec::new();
        walk(&schema, kind, &mut |path, node| {
            // A LabelSelector, validated by kube-apiserver's own code, not traversed by any rule.
            if path.contains(".allowedNamespaces") {
                return;
            }
            let bounded = |key: &str| node.get(key).is_some() || node.get("enum").is_some();
            match node.get("type").and_then(Value::as_str) {
                Some("array") if !bounded("maxItems") => {
                    problems.push(format!("{path}: array without maxItems"))
                }
                // Timestamps and k8s-openapi's own Condition/LabelSelector strings are bounded by
                // their formats or by kube-apiserver's own validation of those types.
                Some("string")
                    if !bounded("maxLength")
                        && node.get("format").is_none()
                        && !path.contains(".conditions[]") =>
                {
                    problems.push(format!("{path}: string without maxLength"))
                }
                _ => {}
            }
            if node.get("nullable").is_some() {
                problems.push(format!("{path}: nullable"));
            }
        });
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

/// `kubectl explain` teaches the API from these descriptions: every field of spec and status
/// must have one (array items are described by their array).
#[test]
fn every_field_is_documented_for_kubectl_explain() {
    for kind in ["NicIpClaim", "ProviderConfig"] {
        let schema = schema(kind);
        let mut undocumented = Vec::new();
        for root in ["spec", "status"] {
            walk(
                &schema["properties"][root],
                &format!("{kind}.{root}"),
                &mut |path, node| {
                    let documented = node
                        .get("description")
                        .and_then(Value::as_str)
                        .is_some_and(|d| d.trim().len() > 3);
                    if !path.ends_with("[]") && !documented {
                        undocumented.push(path.to_string());
                    }
                },
            );
        }
        assert!(
            undocumented.is_empty(),
            "fields without a description: {undocumented:#?}"
        );
    }
}

#[test]
fn every_rule_compiles_and_fits_the_cost_budget() {
    let mut rules = 0;
    for kind in ["NicIpClaim", "ProviderConfig"] {
        let schema = schema(kind);
        let compiled = compile_schema(&schema);
        assert!(
            !compiled.has_errors(),
            "{kind}: {:?}",
            compiled.compilation_errors()
        );
        walk(&schema, kind, &mut |path, node| {
            let Some(list) = node
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
            else {
                return;
            };
            let compiled_node = compile_schema(node);
            for rule in list {
                rules += 1;
                let text = rule["rule"].as_str().unwrap();
                assert!(
                    rule["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "{path}: {text} has no message"
                );
                // The scope check does not know comprehension variables (`a` in `self.all(a, ..)`),
                // so only the cost and bounds findings are meaningful here.
                let warnings: Vec<_> =
                    analyze_rule(text, &compiled_node, ScopeContext::CrdValidation)
                        .into_iter()
                        .filter(|w| w.kind != WarningKind::WrongScope)
                        .collect();
                assert!(warnings.is_empty(), "{path}: {text}: {warnings:?}");
            }
        });
    }
    // Every rule below is exercised by the accept/reject tables; a new rule must be added there.
    assert_eq!(
        rules, 16,
        "the number of CEL rules changed: add accept/reject cases for it"
    );
}

fn claim(spec: Value) -> Value {
    json!({
        "apiVersion": "nicip.io/v1alpha1",
        "kind": "NicIpClaim",
        "metadata": {"name": "c", "namespace": "default"},
        "spec": spec,
    })
}

fn provider_config(spec: Value) -> Value {
    json!({
        "apiVersion": "nicip.io/v1alpha1",
        "kind": "ProviderConfig",
        "metadata": {"name": "default"},
        "spec": spec,
    })
}

/// Validates like kube-apiserver's CEL step (defaults applied first) and returns the messages.
fn violations(kind: &str, object: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(&schema(kind), object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| format!("{}: {}", e.field_path, e.message))
            .collect(),
    }
}

fn assert_accepted(kind: &str, object: Value, old: Option<Value>) {
    let v = violations(kind, &object, old.as_ref());
    assert!(v.is_empty(), "expected {object} to be accepted, got {v:?}");
}

fn assert_rejected(kind: &str, object: Value, old: Option<Value>, message: &str) {
    let v = violations(kind, &object, old.as_ref());
    assert!(
        v.iter().any(|m| m.contains(message)),
        "expected {object} to be rejected with {message:?}, got {v:?}"
    );
}

#[test]
fn ipv4_addresses_must_be_unique_unicast_ipv4() {
    let accept = |a: Value| {
        assert_accepted(
            "NicIpClaim",
            claim(json!({"nicId": "eni-1", "ipv4": {"addresses": a}})),
            None,
        )
    };
    let reject = |a: Value, msg: &str| {
        assert_rejected(
            "NicIpClaim",
            claim(json!({"nicId": "eni-1", "ipv4": {"addresses": a}})),
            None,
            msg,
        )
    };
    accept(json!(["10.0.0.5"]));
    accept(json!(["10.0.0.5", "10.0.0.6", "172.16.31.255"]));

    let not_ipv4 = "every address must be an IPv4 address";
    reject(json!(["10.0.0.256"]), not_ipv4);
    reject(json!(["10.0.0.05"]), not_ipv4);
    reject(json!(["fe80::1"]), not_ipv4);
    reject(json!(["10.0.0.5", "eni-1"]), not_ipv4);

    let not_unicast = "addresses must be unicast";
    reject(json!(["127.0.0.1"]), not_unicast);
    reject(json!(["0.0.0.0"]), not_unicast);
    reject(json!(["224.0.0.1"]), not_unicast);
    reject(json!(["169.254.1.1"]), not_unicast);
    reject(json!(["255.255.255.255"]), not_unicast);

    reject(
        json!(["10.0.0.5", "10.0.0.6", "10.0.0.5"]),
        "addresses must be unique",
    );
}

#[test]
fn ipv4_needs_exactly_one_of_addresses_and_count() {
    let msg = "set exactly one of ipv4.addresses and ipv4.count";
    assert_accepted(
        "NicIpClaim",
        claim(json!({"nicId": "eni-1", "ipv4": {"count": 3}})),
        None,
    );
    assert_accepted(
        "NicIpClaim",
        claim(json!({"nicId": "eni-1", "ipv4": {"addresses": ["10.0.0.5"], "qosLevel": "AU"}})),
        None,
    );
    assert_rejected(
        "NicIpClaim",
        claim(json!({"nicId": "eni-1", "ipv4": {"addresses": ["10.0.0.5"], "count": 1}})),
        None,
        msg,
    );
    assert_rejected(
        "NicIpClaim",
        claim(json!({"nicId": "eni-1", "ipv4": {}})),
        None,
        msg,
    );
    assert_rejected(
        "NicIpClaim",
        claim(json!({"nicId": "eni-1", "ipv4": {"qosLevel": "PT"}})),
        None,
        msg,
    );
    // No ipv4 at all is fine: a claim may manage only the attachment or IPv6.
    assert_accepted(
        "NicIpClaim",
        claim(json!({"nicId": "eni-1", "attachment": {"instanceId": "ins-1"}})),
        None,
    );
}

#[test]
fn nic_id_is_immutable() {
    let old = claim(json!({"nicId": "eni-1", "ipv4": {"count": 1}}));
    assert_accepted(
        "NicIpClaim",
        claim(json!({"nicId": "eni-1", "ipv4": {"count": 2}})),
        Some(old.clone()),
    );
    assert_rejected(
        "NicIpClaim",
        claim(json!({"nicId": "eni-2", "ipv4": {"count": 1}})),
        Some(old),
        "nicId is immutable",
    );
}

#[test]
fn ipv6_billing_fields_must_agree() {
    let ipv6 = |v: Value| claim(json!({"nicId": "nic-1", "ipv6": v}));
    let accept = |v: Value| assert_accepted("NicIpClaim", ipv6(v), None);
    let reject = |v: Value, msg: &str| assert_rejected("NicIpClaim", ipv6(v), None, msg);

    accept(json!({}));
    accept(json!({"count": 1, "internetChargeType": "ByBandwidth", "bandwidth": 100}));
    accept(json!({"internetChargeType": "ByTrafficPackage", "bandwidth": 10, "packageSize": 0.3}));
    accept(json!({"internetChargeType": "ByTrafficPackage", "bandwidth": 1, "packageSize": 0}));
    accept(json!({"internetChargeType": "ByTrafficPackage", "bandwidth": 5, "packageSize": 12.7}));
    accept(json!({"internetChargeType": "BandwidthCluster", "clusterId": "bwc-1", "bandwidth": 1}));

    reject(
        json!({"packageSize": 1.0}),
        "packageSize is only valid with internetChargeType ByTrafficPackage",
    );
    reject(
        json!({"internetChargeType": "ByBandwidth", "bandwidth": 1, "packageSize": 1.0}),
        "packageSize is only valid with internetChargeType ByTrafficPackage",
    );
    reject(
        json!({"internetChargeType": "ByTrafficPackage", "bandwidth": 1, "packageSize": 0.25}),
        "packageSize must be 0 or a multiple of 0.1 TB",
    );
    reject(
        json!({"internetChargeType": "ByTrafficPackage", "bandwidth": 1, "packageSize": 1.05}),
        "packageSize must be 0 or a multiple of 0.1 TB",
    );
    reject(
        json!({"internetChargeType": "ByBandwidth", "bandwidth": 1, "clusterId": "bwc-1"}),
        "clusterId is only valid with internetChargeType BandwidthCluster",
    );
    reject(
        json!({"clusterId": "bwc-1"}),
        "clusterId is only valid with internetChargeType BandwidthCluster",
    );
    reject(
        json!({"internetChargeType": "BandwidthCluster", "bandwidth": 1}),
        "internetChargeType BandwidthCluster needs clusterId",
    );
    reject(
        json!({"internetChargeType": "ByTrafficPackage", "bandwidth": 1}),
        "internetChargeType ByTrafficPackage needs packageSize",
    );
    let both_or_neither =
        "a public IPv6 needs both internetChargeType and bandwidth; a private IPv6 takes neither";
    reject(
        json!({"internetChargeType": "ByBandwidth"}),
        both_or_neither,
    );
    reject(json!({"count": 1, "bandwidth": 100}), both_or_neither);
}

#[test]
fn provider_config_rules() {
    let creds = json!({"name": "cloud-credentials"});
    let accept = |spec: Value| assert_accepted("ProviderConfig", provider_config(spec), None);
    let reject = |spec: Value, msg: &str| {
        assert_rejected("ProviderConfig", provider_config(spec), None, msg)
    };

    accept(json!({"provider": "Zenlayer", "credentialsSecretRef": creds}));
    accept(json!({"provider": "Tencent", "region": "ap-guangzhou", "credentialsSecretRef": creds}));
    accept(
        json!({"provider": "TencentLegacy", "region": "gz", "credentialsSecretRef": creds,
                  "endpoint": "https://vpc.api.qcloud.com/v2/index.php"}),
    );
    accept(
        json!({"provider": "Zenlayer", "credentialsSecretRef": creds, "endpoint": "http://127.0.0.1:18080"}),
    );
    accept(
        json!({"provider": "Zenlayer", "credentialsSecretRef": creds, "endpoint": "http://[::1]:18080/"}),
    );
    // `http://localhost` is allowed by kube-apiserver too, but kube-cel 0.8 mistakes a URL with
    // host `localhost` for an absolute path (empty scheme), so it cannot be checked here.

    reject(
        json!({"provider": "Tencent", "credentialsSecretRef": creds}),
        "region is required for the Tencent providers",
    );
    reject(
        json!({"provider": "TencentLegacy", "credentialsSecretRef": creds}),
        "region is required for the Tencent providers",
    );
    reject(
        json!({"provider": "Zenlayer", "credentialsSecretRef": creds, "endpoint": "console.zenlayer.com"}),
        "endpoint must be an absolute http(s) URL",
    );
    reject(
        json!({"provider": "Zenlayer", "credentialsSecretRef": creds, "endpoint": "ftp://console.zenlayer.com/"}),
        "endpoint must be an absolute http(s) URL",
    );
    reject(
        json!({"provider": "Zenlayer", "credentialsSecretRef": creds, "endpoint": "http://console.zenlayer.com/api/v2/zec"}),
        "plain http is only allowed for loopback endpoints",
    );
    accept(
        json!({"provider": "Tencent", "region": "ap-guangzhou", "credentialsSecretRef": creds,
               "cvmEndpoint": "http://127.0.0.1:18081"}),
    );
    reject(
        json!({"provider": "Tencent", "region": "ap-guangzhou", "credentialsSecretRef": creds,
               "cvmEndpoint": "cvm.tencentcloudapi.com"}),
        "cvmEndpoint must be an absolute http(s) URL",
    );
    reject(
        json!({"provider": "Tencent", "region": "ap-guangzhou", "credentialsSecretRef": creds,
               "cvmEndpoint": "http://cvm.tencentcloudapi.com/"}),
        "plain http is only allowed for loopback endpoints",
    );
}

#[test]
fn defaults_are_in_the_schema() {
    let claim = schema("NicIpClaim");
    let spec = &claim["properties"]["spec"]["properties"];
    assert_eq!(spec["deletionPolicy"]["default"], "Release");
    assert_eq!(spec["managementPolicy"]["default"], "Full");
    assert_eq!(
        spec["providerConfigRef"]["default"],
        json!({"name": "default"})
    );
    assert_eq!(spec["ipv6"]["properties"]["count"]["default"], 1);
    let enums = |node: &Value| {
        node["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        enums(&spec["ipv4"]["properties"]["qosLevel"]),
        ["PT", "AU", "AG", "DEFAULT"]
    );
    assert_eq!(enums(&spec["deletionPolicy"]), ["Release", "Retain"]);
    assert_eq!(enums(&spec["managementPolicy"]), ["Full", "ObserveOnly"]);
    assert_eq!(
        enums(&spec["ipv6"]["properties"]["internetChargeType"]),
        ["ByBandwidth", "ByTrafficPackage", "BandwidthCluster"]
    );
    let pc = schema("ProviderConfig");
    let creds = &pc["properties"]["spec"]["properties"]["credentialsSecretRef"]["properties"];
    assert_eq!(creds["accessKeyIdKey"]["default"], "accessKeyId");
    assert_eq!(creds["accessKeySecretKey"]["default"], "accessKeySecret");
}

#[test]
fn examples_pass_admission() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for doc in docs {
            let kind = doc["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: a document without kind", path.display()))
                .to_owned();
            if doc["apiVersion"] == "nicip.io/v1alpha1" {
                assert_accepted(&kind, doc, None);
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 6,
        "expected the example claims and ProviderConfigs, checked {checked}"
    );
}

/// The full admission check of kube-apiserver (pruning, defaults, structural schema, then CEL),
/// as the in-memory API server implements it; returns the error lines.
fn admission_errors(kind: &str, mut object: Value) -> Vec<String> {
    match nicip::kubesim::schema::admit(&schema(kind), &mut object, None) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn schema_enums_and_ranges_reject_at_admission() {
    let claim_errors = |spec: Value| admission_errors("NicIpClaim", claim(spec));
    let accepted = |spec: Value| {
        let errors = claim_errors(spec.clone());
        assert!(errors.is_empty(), "{spec} rejected: {errors:?}");
    };
    let rejected = |spec: Value, field: &str| {
        let errors = claim_errors(spec.clone());
        assert!(
            errors.iter().any(|e| e.starts_with(field)),
            "{spec}: expected an error on {field}, got {errors:?}"
        );
    };
    accepted(json!({"nicId": "eni-1", "ipv4": {"count": 1}}));
    accepted(
        json!({"nicId": "eni-1", "ipv4": {"count": 50, "qosLevel": "DEFAULT"}, "deletionPolicy": "Retain",
                    "managementPolicy": "ObserveOnly", "ipv6": {"count": 10}}),
    );
    rejected(json!({"ipv4": {"count": 1}}), "spec.nicId");
    rejected(json!({"nicId": ""}), "spec.nicId");
    rejected(
        json!({"nicId": "eni-1", "ipv4": {"count": 0}}),
        "spec.ipv4.count",
    );
    rejected(
        json!({"nicId": "eni-1", "ipv4": {"count": 51}}),
        "spec.ipv4.count",
    );
    rejected(
        json!({"nicId": "eni-1", "ipv4": {"count": 1, "qosLevel": "GOLD"}}),
        "spec.ipv4.qosLevel",
    );
    rejected(
        json!({"nicId": "eni-1", "ipv4": {"addresses": []}}),
        "spec.ipv4.addresses",
    );
    let too_many: Vec<String> = (1..=51).map(|i| format!("10.0.0.{i}")).collect();
    rejected(
        json!({"nicId": "eni-1", "ipv4": {"addresses": too_many}}),
        "spec.ipv4.addresses",
    );
    rejected(
        json!({"nicId": "eni-1", "ipv6": {"count": 11}}),
        "spec.ipv6.count",
    );
    rejected(
        json!({"nicId": "eni-1", "ipv6": {"internetChargeType": "Free"}}),
        "spec.ipv6.internetChargeType",
    );
    rejected(
        json!({"nicId": "eni-1", "ipv6": {"bandwidth": 0}}),
        "spec.ipv6.bandwidth",
    );
    rejected(
        json!({"nicId": "eni-1", "ipv6": {"internetChargeType": "ByTrafficPackage", "packageSize": -0.1}}),
        "spec.ipv6.packageSize",
    );
    rejected(
        json!({"nicId": "eni-1", "deletionPolicy": "Delete"}),
        "spec.deletionPolicy",
    );
    rejected(
        json!({"nicId": "eni-1", "managementPolicy": "Partial"}),
        "spec.managementPolicy",
    );
    rejected(
        json!({"nicId": "eni-1", "attachment": {}}),
        "spec.attachment.instanceId",
    );

    let pc_errors = |spec: Value| admission_errors("ProviderConfig", provider_config(spec));
    assert!(
        pc_errors(json!({"provider": "Zenlayer", "credentialsSecretRef": {"name": "s"}}))
            .is_empty()
    );
    let errors = pc_errors(json!({"provider": "Aliyun", "credentialsSecretRef": {"name": "s"}}));
    assert!(
        errors.iter().any(|e| e.starts_with("spec.provider")),
        "{errors:?}"
    );
    let errors = pc_errors(json!({"provider": "Zenlayer"}));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("spec.credentialsSecretRef")),
        "{errors:?}"
    );
    let errors = pc_errors(
        json!({"provider": "Zenlayer", "credentialsSecretRef": {"name": "s"},
                                  "rateLimits": [{"action": "AssignPrivateIpAddresses", "requestsPerSecond": 0}]}),
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("spec.rateLimits[0].requestsPerSecond")),
        "{errors:?}"
    );
}

#[test]
fn admission_applies_the_schema_defaults() {
    let mut object = claim(json!({"nicId": "eni-1", "ipv6": {}}));
    nicip::kubesim::schema::admit(&schema("NicIpClaim"), &mut object, None).unwrap();
    assert_eq!(
        object["spec"],
        json!({"nicId": "eni-1", "ipv6": {"count": 1}, "providerConfigRef": {"name": "default"},
               "deletionPolicy": "Release", "managementPolicy": "Full"})
    );
}

/// `nicip crd --output-dir` creates the directory, and writes what crds/ holds.
#[test]
fn crd_output_dir_is_created_and_matches_the_committed_crds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("new").join("crds");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_nicip"))
        .args(["crd", "--output-dir"])
        .arg(&out)
        .status()
        .expect("runs nicip");
    assert!(status.success());
    let mut written: Vec<_> = std::fs::read_dir(&out)
        .expect("the directory exists")
        .map(|e| e.unwrap().file_name())
        .collect();
    written.sort();
    assert!(!written.is_empty());
    for name in written {
        let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crds")
            .join(&name);
        assert_eq!(
            std::fs::read_to_string(out.join(&name)).unwrap(),
            std::fs::read_to_string(&committed).unwrap(),
            "{name:?} is fresh"
        );
    }
}
