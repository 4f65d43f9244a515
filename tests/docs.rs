//! Every Kubernetes object the documentation shows is one the API server
//! accepts: each fenced `yaml` block of `README.md` and `docs/*.md` that holds
//! objects (documents with `apiVersion` and `kind`) is applied, by server-side
//! apply as `kubectl apply --server-side` does, to the in-memory API server
//! with nicip's CRDs, so their schemas and CEL rules judge it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Discovery, Scope};
use nicip::kubesim::{KubeSim, RunningKubeSim};
use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Parser, Tag, TagEnd};
use serde_json::Value;

/// Kinds the documentation shows that the in-memory API server does not
/// serve, and why they are not checked here.
const SKIPPED: &[(&str, &str, &str)] = &[
    (
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        "a Prometheus Operator CRD, which the in-memory API server does not have",
    ),
    (
        "kustomize.config.k8s.io/v1beta1",
        "Kustomization",
        "a kustomize build file: read by kustomize, never sent to an API server",
    ),
    (
        "argoproj.io/v1alpha1",
        "Application",
        "an Argo CD CRD, which the in-memory API server does not have",
    ),
    (
        "source.toolkit.fluxcd.io/v1",
        "GitRepository",
        "a Flux CRD, which the in-memory API server does not have",
    ),
    (
        "kustomize.toolkit.fluxcd.io/v1",
        "Kustomization",
        "a Flux CRD, which the in-memory API server does not have",
    ),
];

/// The server's namespaces from the start; any other is created first.
const BUILTIN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

const FIELD_MANAGER: &str = "nicip-docs-test";

/// One fenced `yaml` block: its number among the file's yaml blocks (from 1),
/// the line its fence is on, and its text.
struct Block {
    number: usize,
    line: usize,
    text: String,
}

fn yaml_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (event, range) in Parser::new(markdown).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info)))
                if info.split_whitespace().next() == Some("yaml") =>
            {
                current = Some(Block {
                    number: blocks.len() + 1,
                    line: markdown[..range.start].matches('\n').count() + 1,
                    text: String::new(),
                });
            }
            Event::Text(text) => {
                if let Some(block) = current.as_mut() {
                    block.text.push_str(&text);
                }
            }
            Event::End(TagEnd::CodeBlock) => blocks.extend(current.take()),
            _ => {}
        }
    }
    blocks
}

/// What checking some markdown found.
#[derive(Default, Debug)]
struct Report {
    /// `file block N (line L): Kind name`, for every object the server accepted.
    applied: Vec<String>,
    /// `file block N: apiVersion/Kind`, for every object of a skipped kind.
    skipped: Vec<String>,
    failures: Vec<String>,
}

struct Checker {
    sim: RunningKubeSim,
    client: kube::Client,
    discovery: Discovery,
    namespaces: BTreeSet<String>,
}

impl Checker {
    async fn start() -> Checker {
        let sim = KubeSim::new(nicip::api::crds())
            .start()
            .await
            .expect("the in-memory API server starts");
        let client = sim.client().expect("a client");
        let discovery = Discovery::new(client.clone())
            .run()
            .await
            .expect("discovery");
        Checker {
            sim,
            client,
            discovery,
            namespaces: BUILTIN_NAMESPACES.iter().map(|s| s.to_string()).collect(),
        }
    }

    async fn ensure_namespace(&mut self, ns: &str) -> Result<(), String> {
        if self.namespaces.contains(ns) {
            return Ok(());
        }
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))
            .map_err(|e| e.to_string())?;
        match api.create(&PostParams::default(), &namespace).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(format!("creating namespace {ns}: {e}")),
        }
        self.namespaces.insert(ns.to_string());
        Ok(())
    }

    /// Applies the objects of every yaml block of `markdown`; `file` names it
    /// in the report. The objects of a block are deleted after it, so that
    /// blocks showing one object in several versions are each checked as a
    /// first apply.
    async fn check(&mut self, file: &str, markdown: &str) -> Report {
        let mut report = Report::default();
        for block in yaml_blocks(markdown) {
            let at = format!("{file} block {} (line {})", block.number, block.line);
            let documents: Vec<Value> = match serde_saphyr::from_multiple(&block.text) {
                Ok(d) => d,
                Err(e) => {
                    report.failures.push(format!("{at}: not YAML: {e}"));
                    continue;
                }
            };
            let mut created = Vec::new();
            for (index, doc) in documents.into_iter().enumerate() {
                let at = format!("{at}, document {}", index + 1);
                match self.apply(&at, doc, &mut report).await {
                    Ok(Some(object)) => created.push(object),
                    Ok(None) => {}
                    Err(e) => report.failures.push(format!("{at}: {e}")),
                }
            }
            for (resource, namespace, name) in created {
                let api = self.api(&resource, namespace.as_deref());
                if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
                    report
                        .failures
                        .push(format!("{at}: deleting {} {name}: {e}", resource.kind));
                }
            }
        }
        report
    }

    fn api(&self, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
            None => Api::all_with(self.client.clone(), resource),
        }
    }

    /// Applies one document if it is an object of a served kind; returns what
    /// to delete afterwards (nothing for namespaces, which later blocks use).
    #[allow(clippy::type_complexity)]
    async fn apply(
        &mut self,
        at: &str,
        doc: Value,
        report: &mut Report,
    ) -> Result<Option<(ApiResource, Option<String>, String)>, String> {
        let (api_version, kind) = match (doc.get("apiVersion"), doc.get("kind")) {
            (None, None) => return Ok(None),
            (Some(Value::String(v)), Some(Value::String(k))) => (v.clone(), k.clone()),
            _ => {
                return Err(
                    "has only one of apiVersion and kind, or one is not a string".to_string(),
                );
            }
        };
        if SKIPPED
            .iter()
            .any(|(v, k, _)| *v == api_version && *k == kind)
        {
            report.skipped.push(format!("{at}: {api_version}/{kind}"));
            return Ok(None);
        }
        let (group, version) = api_version
            .split_once('/')
            .unwrap_or(("", api_version.as_str()));
        let gvk = GroupVersionKind::gvk(group, version, &kind);
        let Some((resource, caps)) = self.discovery.resolve_gvk(&gvk) else {
            return Err(format!(
                "{api_version} {kind} is not served by the in-memory API server; \
                 list it in SKIPPED with the reason if the docs must show it"
            ));
        };
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{kind} without metadata.name"))?
            .to_string();
        let given_namespace = doc.pointer("/metadata/namespace").and_then(Value::as_str);
        let namespace = match (&caps.scope, given_namespace) {
            (Scope::Cluster, Some(ns)) => {
                return Err(format!(
                    "{kind} {name} is cluster-scoped but names namespace {ns}"
                ));
            }
            (Scope::Cluster, None) => None,
            (Scope::Namespaced, ns) => Some(ns.unwrap_or("default").to_string()),
        };
        if let Some(ns) = &namespace {
            self.ensure_namespace(ns).await?;
        }
        let api = self.api(&resource, namespace.as_deref());
        let params = PatchParams::apply(FIELD_MANAGER).validation_strict();
        api.patch(&name, &params, &Patch::Apply(&doc))
            .await
            .map_err(|e| format!("{kind} {name} refused: {e}"))?;
        report.applied.push(format!("{at}: {kind} {name}"));
        if kind == "Namespace" {
            self.namespaces.insert(name);
            return Ok(None);
        }
        Ok(Some((resource, namespace, name)))
    }
}

fn documentation() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("a docs/ entry").path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to
/// hyphens.
fn anchor(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut heading: Option<String> = None;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::Heading { level, .. }) if level <= HeadingLevel::H4 => {
                heading = Some(String::new())
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => found.extend(heading.take().map(|h| anchor(&h))),
            _ => {}
        }
    }
    found
}

/// Relative links of `markdown` (in `file`) that lead nowhere: a missing
/// file, or a heading anchor the target page lacks.
fn broken_links(root: &Path, file: &Path, markdown: &str) -> Vec<String> {
    let mut broken = Vec::new();
    let here = file.strip_prefix(root).unwrap_or(file).display();
    for event in Parser::new(markdown) {
        let Event::Start(Tag::Link { dest_url, .. }) = event else {
            continue;
        };
        if dest_url.contains("://") || dest_url.starts_with("mailto:") {
            continue;
        }
        let (path, fragment) = match dest_url.split_once('#') {
            Some((p, f)) => (p, Some(f)),
            None => (dest_url.as_ref(), None),
        };
        let target = if path.is_empty() {
            file.to_path_buf()
        } else {
            file.parent().unwrap_or(root).join(path)
        };
        let shown = target.strip_prefix(root).unwrap_or(&target).display();
        if !target.exists() {
            broken.push(format!("{here}: {dest_url}: no {shown}"));
            continue;
        }
        if let Some(fragment) = fragment
            && target.extension().and_then(|e| e.to_str()) == Some("md")
        {
            let text = std::fs::read_to_string(&target).unwrap_or_default();
            if !anchors(&text).contains(fragment) {
                broken.push(format!(
                    "{here}: {dest_url}: no heading #{fragment} in {shown}"
                ));
            }
        }
    }
    broken
}

#[test]
fn links_between_the_docs_lead_somewhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut broken = Vec::new();
    let mut checked = 0;
    for path in documentation() {
        let text = std::fs::read_to_string(&path).expect("readable docs");
        checked += Parser::new(&text)
            .filter(|e| matches!(e, Event::Start(Tag::Link { .. })))
            .count();
        broken.extend(broken_links(root, &path, &text));
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked > 20, "only {checked} links found");
    assert_eq!(
        anchor("`nicip plan`: preview before you apply"),
        "nicip-plan-preview-before-you-apply"
    );
    assert_eq!(
        anchor("Leader election, replicas and shards"),
        "leader-election-replicas-and-shards"
    );
}

#[tokio::test]
async fn every_object_in_the_docs_passes_admission() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checker = Checker::start().await;
    let mut all = Report::default();
    for path in documentation() {
        let text = std::fs::read_to_string(&path).expect("readable docs");
        let name = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let report = checker.check(&name, &text).await;
        all.applied.extend(report.applied);
        all.skipped.extend(report.skipped);
        all.failures.extend(report.failures);
    }
    for skipped in &all.skipped {
        println!("skipped {skipped}");
    }
    assert!(
        all.failures.is_empty(),
        "documented objects the API server refuses:\n{}",
        all.failures.join("\n")
    );
    // The guides are made of complete objects; if none were found, the
    // extraction is broken, not the docs perfect.
    for file in ["README.md", "docs/user-guide.md", "docs/troubleshooting.md"] {
        assert!(
            all.applied.iter().any(|a| a.starts_with(file)),
            "no object applied from {file}: {:#?}",
            all.applied
        );
    }
    assert!(
        all.skipped
            .iter()
            .any(|s| s.starts_with("docs/operations.md") && s.ends_with("PrometheusRule")),
        "the operations guide's PrometheusRule was not found: {:#?}",
        all.skipped
    );
    drop(checker.sim);
}

/// The check fails on what it must: a misspelt field, a CEL rule, a kind
/// nobody serves; and names the block.
#[tokio::test]
async fn invalid_snippets_fail_with_their_block() {
    let markdown = r#"
# A page

```yaml
apiVersion: nicip.io/v1alpha1
kind: NicIpClaim
metadata: {name: fine, namespace: team-x}
spec:
  nicId: nic-1
  ipv4: {count: 2}
```

```sh
kubectl apply -f -
```

```yaml
apiVersion: nicip.io/v1alpha1
kind: NicIpClaim
metadata: {name: typo}
spec:
  nicId: nic-2
  ipv4: {count: 2}
  deletionPolcy: Retain
```

- a list item with an indented block:

  ```yaml
  apiVersion: nicip.io/v1alpha1
  kind: NicIpClaim
  metadata: {name: both}
  spec:
    nicId: nic-3
    ipv4: {count: 2, addresses: ["10.0.0.5"]}
  ```

```yaml
# values.yaml: not an object
replicas: 2
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: r}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
```

```yaml
apiVersion: nicip.io/v1alpha1
kind: NicIpClaim
metadata: {name: fine, namespace: team-x}
spec:
  nicId: nic-other
  ipv4: {addresses: ["10.0.0.6"]}
```
"#;
    let mut checker = Checker::start().await;
    let report = checker.check("page.md", markdown).await;
    let failures = report.failures.join("\n");
    assert_eq!(report.failures.len(), 3, "{failures}");
    assert!(
        report.failures[0].starts_with("page.md block 2 (line 17), document 1: NicIpClaim typo")
            && report.failures[0].contains("deletionPolcy"),
        "{failures}"
    );
    assert!(
        report.failures[1].starts_with("page.md block 3 (line 29), document 1: NicIpClaim both")
            && report.failures[1].contains("exactly one of ipv4.addresses and ipv4.count"),
        "{failures}"
    );
    assert!(
        report.failures[2].starts_with("page.md block 4 (line 38), document 3:")
            && report.failures[2].contains("Widget is not served"),
        "{failures}"
    );
    assert_eq!(
        report.skipped,
        ["page.md block 4 (line 38), document 2: monitoring.coreos.com/v1/PrometheusRule"]
    );
    // The first block's claim was deleted after its block, so the last block
    // is a first apply too (nicId is immutable), in a namespace created for it.
    assert_eq!(
        report.applied,
        [
            "page.md block 1 (line 4), document 1: NicIpClaim fine",
            "page.md block 5 (line 51), document 1: NicIpClaim fine",
        ]
    );
}
