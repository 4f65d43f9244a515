//! `nicip plan`: what the controller would do for some claims, computed by the
//! controller's own validation and `plan` from read-only cloud calls. Nothing
//! is written, in the cloud or in Kubernetes.
//!
//! Exit codes follow `terraform plan -detailed-exitcode`: 0 nothing would
//! change, 2 changes would be made, 1 a claim would be refused or stalled (or
//! an error).

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde::Serialize;
use serde_json::Value;

use crate::api::v1alpha1::{NicIpClaim, ProviderConfig};
use crate::cloud::{Ipv4Request, NicProvider, Provider, Transport, TransportConfig};
use crate::controller::plan::{self, Note, ReleaseReason, Step, Wait};
use crate::controller::spec::{self, Ownership};
use crate::controller::{Providers, conflict_with};

/// Preview what the controller would do, using read-only cloud calls only.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Claim manifests: a file, a directory of `.yaml` files, or `-` for standard input.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR|-",
        conflicts_with = "cluster"
    )]
    pub files: Vec<PathBuf>,
    /// Every claim in the cluster (or in `--namespace`, matching `--selector`).
    #[arg(long)]
    pub cluster: bool,
    /// With `--cluster`: only this namespace. For manifests without a namespace: their namespace.
    #[arg(long, short = 'n', value_name = "NS")]
    pub namespace: Option<String>,
    /// With `--cluster`: only claims matching this label selector.
    #[arg(long, short = 'l', value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Preview deleting these claims instead (what `kubectl delete` would make the controller release).
    #[arg(long)]
    pub delete: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Namespace of the credential Secrets, as the controller's `--secrets-namespace`.
    #[arg(long, env = "NICIP_SECRETS_NAMESPACE", default_value = "nicip-system")]
    pub secrets_namespace: String,
    /// Kubeconfig file; without it, the usual inference.
    #[arg(long, env = "KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// One operation of a claim's preview (`-o json`: `operations[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedOperation {
    /// `assign`, `release`, `attach` or `detach`.
    pub op: &'static str,
    /// `ipv4`, `ipv6` or `attachment`.
    pub family: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Why a release happens: `ScaleDown`, `ListEdited`, `NoLongerRequested`, `Deletion`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReleaseReason>,
    /// The cloud API action this operation is one call of.
    pub call: &'static str,
}

/// A condition the claim would report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedCondition {
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

/// The preview of one claim (`-o json`: `claims[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimPlan {
    /// `namespace/name`.
    pub claim: String,
    pub provider_config: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    pub nic_id: String,
    pub operations: Vec<PlannedOperation>,
    /// Addresses on the NIC the claim's list asks for, adopted without a call.
    pub adopt: Vec<String>,
    /// Addresses on the NIC the claim does not own, left alone.
    pub left_alone: Vec<String>,
    /// A pending operation the controller would settle first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    pub conditions: Vec<PlannedCondition>,
    /// `NoChange`, `Changes` or `Refused`.
    pub outcome: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    claims: &'a [ClaimPlan],
    summary: &'a Summary,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub claims: usize,
    pub assign: usize,
    pub release: usize,
    pub adopt: usize,
    pub attach: usize,
    pub detach: usize,
    pub refused: usize,
}

/// `nicip plan`; returns the exit code.
pub async fn main(args: Args) -> anyhow::Result<u8> {
    if !args.cluster && args.files.is_empty() {
        bail!("give -f FILE|DIR|- (claim manifests) or --cluster");
    }
    let client = crate::controller::cli::kube_client(args.kubeconfig.as_ref()).await?;
    let plans = preview(&client, &args).await?;
    let summary = summarize(&plans);
    match args.output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&Report {
                claims: &plans,
                summary: &summary
            })?
        ),
        Format::Text => print!("{}", render(&plans, &summary)),
    }
    Ok(if summary.refused > 0 {
        1
    } else if plans.iter().any(|p| p.outcome == "Changes") {
        2
    } else {
        0
    })
}

/// Computes the previews.
pub async fn preview(client: &Client, args: &Args) -> anyhow::Result<Vec<ClaimPlan>> {
    let cluster_claims: Vec<NicIpClaim> = Api::<NicIpClaim>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let wanted: Vec<NicIpClaim> = if args.cluster {
        let mut params = ListParams::default();
        if let Some(s) = &args.selector {
            params = params.labels(s);
        }
        match &args.namespace {
            Some(ns) => {
                Api::<NicIpClaim>::namespaced(client.clone(), ns)
                    .list(&params)
                    .await?
                    .items
            }
            None => {
                Api::<NicIpClaim>::all(client.clone())
                    .list(&params)
                    .await?
                    .items
            }
        }
    } else {
        let mut out = Vec::new();
        for f in &args.files {
            for mut claim in read_claims(f)? {
                if claim.namespace().is_none() {
                    claim.metadata.namespace =
                        Some(args.namespace.clone().unwrap_or_else(|| "default".into()));
                }
                // An update of a claim that exists keeps its identity and status.
                if let Some(existing) = cluster_claims.iter().find(|c| {
                    c.name_any() == claim.name_any() && c.namespace() == claim.namespace()
                }) {
                    let mut merged = existing.clone();
                    merged.spec = claim.spec.clone();
                    claim = merged;
                }
                out.push(claim);
            }
        }
        out
    };

    let configs: Store<ProviderConfig> = store(
        Api::<ProviderConfig>::all(client.clone())
            .list(&ListParams::default())
            .await?
            .items,
    );
    let secrets: Store<Secret> = store(
        Api::<Secret>::namespaced(client.clone(), &args.secrets_namespace)
            .list(&ListParams::default())
            .await
            .with_context(|| format!("reading Secrets in {}", args.secrets_namespace))?
            .items,
    );
    let namespaces: Store<Namespace> = store(
        Api::<Namespace>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default(),
    );
    let providers = Providers::new(
        configs,
        secrets,
        namespaces,
        args.secrets_namespace.clone(),
        Transport::new(TransportConfig::default())?,
    );
    let others: Vec<Arc<NicIpClaim>> = cluster_claims.into_iter().map(Arc::new).collect();

    let mut plans = Vec::new();
    for claim in &wanted {
        plans.push(preview_claim(claim, &providers, &others, args.delete).await);
    }
    Ok(plans)
}

fn store<K>(items: Vec<K>) -> Store<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let mut writer = reflector::store::Writer::<K>::default();
    writer.apply_watcher_event(&watcher::Event::Init);
    for item in items {
        writer.apply_watcher_event(&watcher::Event::InitApply(item));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    writer.as_reader()
}

fn read_claims(path: &std::path::Path) -> anyhow::Result<Vec<NicIpClaim>> {
    let texts: Vec<(String, String)> = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        vec![("-".into(), s)]
    } else if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|f| {
                Ok((
                    f.display().to_string(),
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?,
                ))
            })
            .collect::<anyhow::Result<_>>()?
    } else {
        vec![(
            path.display().to_string(),
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        )]
    };
    let mut claims = Vec::new();
    for (name, text) in texts {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).with_context(|| format!("{name}: not YAML"))?;
        for (i, doc) in docs.into_iter().enumerate() {
            if doc.get("kind").and_then(Value::as_str) != Some("NicIpClaim") {
                continue;
            }
            let claim: NicIpClaim = serde_json::from_value(doc)
                .with_context(|| format!("{name}: document {}: not a valid NicIpClaim", i + 1))?;
            claims.push(claim);
        }
    }
    Ok(claims)
}

async fn preview_claim(
    claim: &NicIpClaim,
    providers: &Providers,
    others: &[Arc<NicIpClaim>],
    delete: bool,
) -> ClaimPlan {
    let deleting = delete || claim.metadata.deletion_timestamp.is_some();
    let mut out = ClaimPlan {
        claim: format!(
            "{}/{}",
            claim.namespace().unwrap_or_default(),
            claim.name_any()
        ),
        provider_config: claim.spec.provider_config_ref.name.clone(),
        provider: None,
        nic_id: claim.spec.nic_id.clone(),
        operations: Vec::new(),
        adopt: Vec::new(),
        left_alone: Vec::new(),
        pending: None,
        conditions: Vec::new(),
        outcome: "NoChange",
    };
    let refuse = |out: &mut ClaimPlan, reason: &str, message: String| {
        out.conditions
            .push(condition("Ready", false, reason, &message));
        out.conditions
            .push(condition("Stalled", true, reason, &message));
        out.outcome = "Refused";
    };
    let namespace = claim.namespace().unwrap_or_default();
    let resolved = match providers.for_claim(&claim.spec.provider_config_ref.name, &namespace) {
        Ok(r) => r,
        Err(p) => {
            refuse(&mut out, p.reason, p.message);
            return out;
        }
    };
    let provider: Arc<dyn NicProvider> = resolved.provider;
    out.provider = Some(provider.provider());
    let caps = provider.capabilities();
    let spec = match spec::validate(&claim.spec, provider.provider(), &caps) {
        Ok(s) => s,
        Err(i) => {
            refuse(&mut out, i.reason, i.message);
            return out;
        }
    };
    if !deleting && let Some(message) = conflict_with(claim, others.iter().cloned()) {
        refuse(&mut out, "Conflict", message);
        return out;
    }
    let nic = match provider
        .describe_nics(std::slice::from_ref(&spec.nic))
        .await
    {
        Ok(found) => found.into_iter().find(|n| n.id == spec.nic.id),
        Err(e) => {
            refuse(
                &mut out,
                "CloudError",
                format!("{} failed with {}: {}", e.action, e.code, e.message),
            );
            return out;
        }
    };
    let instance = match (&spec.instance, &nic) {
        (Some(i), Some(n)) if n.instance_id.as_ref() != Some(i) => {
            provider.describe_instance(i).await.ok().flatten()
        }
        _ => None,
    };
    if let Some(p) = claim
        .status
        .as_ref()
        .and_then(|s| s.pending_operation.as_ref())
    {
        out.pending = Some(format!(
            "{:?} (sequence {}) is settled first",
            p.action, p.sequence
        ));
    }
    let (owned, _) = Ownership::from_status(claim.status.as_ref());
    let p = plan::plan(&plan::Inputs {
        spec: &spec,
        owned: &owned,
        nic: nic.as_ref(),
        instance: instance.as_ref(),
        caps: &caps,
        deleting,
        rejected: &Default::default(),
        isolate: &BTreeSet::new(),
        now: jiff::Timestamp::now(),
    });
    for note in &p.notes {
        match note {
            Note::Adopted(a) => out.adopt = a.iter().map(|x| x.to_string()).collect(),
            Note::Unowned(a) => out.left_alone = a.iter().map(|x| x.to_string()).collect(),
            Note::Drift(_) => {}
        }
    }
    let kind = provider.provider();
    out.operations = p.steps.iter().map(|s| operation(kind, s)).collect();
    // Addresses the subnet shows the cloud will refuse (outside it, its
    // network, broadcast or gateway address).
    let explicit: Vec<std::net::Ipv4Addr> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::AssignIpv4 {
                request: Ipv4Request::Addresses(a),
            } => Some(a.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect();
    let impossible = match (&nic, explicit.is_empty()) {
        (Some(n), false) => match provider.describe_subnet(n).await {
            Ok(Some(subnet)) => plan::bad_in_subnet(&explicit, &subnet),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    if !impossible.is_empty() {
        let list: Vec<String> = impossible.iter().map(|a| a.to_string()).collect();
        let message = format!(
            "{} cannot be assigned: outside subnet {} or its network, broadcast or gateway address",
            list.join(", "),
            nic.as_ref()
                .and_then(|n| n.subnet_id.clone())
                .unwrap_or_default()
        );
        out.conditions
            .push(condition("Ready", false, "AddressRejected", &message));
        out.conditions
            .push(condition("Stalled", true, "AddressRejected", &message));
        out.outcome = "Refused";
    } else if let Some(b) = &p.blocked {
        out.conditions
            .push(condition("Ready", false, b.reason, &b.message));
        out.conditions
            .push(condition("Stalled", true, b.reason, &b.message));
        out.outcome = "Refused";
    } else if let Some(w) = &p.wait {
        let (reason, message) = match w {
            Wait::NicBusy(s) => ("NicBusy", format!("NIC {} is {s}", spec.nic.id)),
            Wait::AddressesInFlux => (
                "WaitingForCloud",
                "the cloud is still changing the NIC's addresses".into(),
            ),
            Wait::InstanceNotRunning { instance, status } => (
                "InstanceNotRunning",
                format!("instance {instance} is {status}"),
            ),
        };
        out.conditions
            .push(condition("Ready", false, reason, &message));
        out.conditions
            .push(condition("Reconciling", true, reason, &message));
        out.outcome = "Changes";
    } else if p.steps.is_empty() && out.adopt.is_empty() {
        out.conditions.push(condition(
            "Ready",
            true,
            "Converged",
            "the cloud matches the spec",
        ));
    } else {
        out.conditions.push(condition(
            "Ready",
            true,
            "Converged",
            "after the operations above",
        ));
        out.outcome = "Changes";
    }
    out
}

fn condition(type_: &'static str, ok: bool, reason: &str, message: &str) -> PlannedCondition {
    PlannedCondition {
        type_,
        status: if ok { "True" } else { "False" },
        reason: reason.to_string(),
        message: message.to_string(),
    }
}

/// The wire action of a step on a provider.
pub fn wire_action(provider: Provider, step: &Step) -> &'static str {
    use crate::cloud::Action;
    let action = match step {
        Step::AssignIpv4 { .. } => Action::AssignIpv4,
        Step::UnassignIpv4 { .. } => Action::UnassignIpv4,
        Step::AssignIpv6 { .. } => Action::AssignIpv6,
        Step::UnassignIpv6 { .. } => Action::UnassignIpv6,
        Step::Attach { .. } => Action::Attach,
        Step::Detach { .. } => Action::Detach,
    };
    crate::cloud::wire_action(provider, action)
}

fn operation(provider: Provider, step: &Step) -> PlannedOperation {
    let call = wire_action(provider, step);
    let base = PlannedOperation {
        op: "assign",
        family: "ipv4",
        addresses: Vec::new(),
        count: None,
        instance_id: None,
        reason: None,
        call,
    };
    let list = |s: &BTreeSet<std::net::Ipv4Addr>| s.iter().map(|a| a.to_string()).collect();
    match step {
        Step::AssignIpv4 {
            request: Ipv4Request::Addresses(a),
        } => PlannedOperation {
            addresses: list(a),
            ..base
        },
        Step::AssignIpv4 {
            request: Ipv4Request::Count(n),
        } => PlannedOperation {
            count: Some(*n),
            ..base
        },
        Step::UnassignIpv4 { addresses, reason } => PlannedOperation {
            op: "release",
            addresses: list(addresses),
            reason: Some(*reason),
            ..base
        },
        Step::AssignIpv6 { count, .. } => PlannedOperation {
            family: "ipv6",
            count: Some(*count),
            ..base
        },
        Step::UnassignIpv6 { addresses, reason } => PlannedOperation {
            op: "release",
            family: "ipv6",
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            reason: Some(*reason),
            ..base
        },
        Step::Attach { instance } => PlannedOperation {
            op: "attach",
            family: "attachment",
            instance_id: Some(instance.0.clone()),
            ..base
        },
        Step::Detach { instance } => PlannedOperation {
            op: "detach",
            family: "attachment",
            instance_id: Some(instance.0.clone()),
            ..base
        },
    }
}

pub fn summarize(plans: &[ClaimPlan]) -> Summary {
    let mut s = Summary {
        claims: plans.len(),
        ..Default::default()
    };
    for p in plans {
        s.adopt += p.adopt.len();
        if p.outcome == "Refused" {
            s.refused += 1;
        }
        for o in &p.operations {
            match o.op {
                "assign" => s.assign += 1,
                "release" => s.release += 1,
                "attach" => s.attach += 1,
                _ => s.detach += 1,
            }
        }
    }
    s
}

fn reason_text(r: ReleaseReason) -> &'static str {
    match r {
        ReleaseReason::ScaleDown => "scale-down, newest first",
        ReleaseReason::ListEdited => "no longer listed",
        ReleaseReason::NoLongerRequested => "no longer requested",
        ReleaseReason::Deletion => "deletion",
    }
}

/// The text output: one block per claim, like a diff, and a summary.
pub fn render(plans: &[ClaimPlan], summary: &Summary) -> String {
    let mut out = String::new();
    for p in plans {
        let provider = p
            .provider
            .map(|x| x.to_string())
            .unwrap_or_else(|| "?".into());
        out.push_str(&format!(
            "{} (NIC {}, {provider} via ProviderConfig {})\n",
            p.claim, p.nic_id, p.provider_config
        ));
        if let Some(pending) = &p.pending {
            out.push_str(&format!("  ~ pending: {pending}\n"));
        }
        for o in &p.operations {
            let what = if !o.addresses.is_empty() {
                o.addresses.join(", ")
            } else if let Some(n) = o.count {
                format!(
                    "{n} {} chosen by the cloud",
                    if o.family == "ipv6" {
                        "IPv6 addresses"
                    } else {
                        "IPv4 addresses"
                    }
                )
            } else {
                o.instance_id.clone().unwrap_or_default()
            };
            let sign = if o.op == "release" || o.op == "detach" {
                '-'
            } else {
                '+'
            };
            let why = o
                .reason
                .map(|r| format!(" ({})", reason_text(r)))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {sign} {} {what}{why}    [{} call]\n",
                o.op, o.call
            ));
        }
        for a in &p.adopt {
            out.push_str(&format!("  = adopt {a}\n"));
        }
        for a in &p.left_alone {
            out.push_str(&format!("    leave {a} (not owned by this claim)\n"));
        }
        for c in &p.conditions {
            out.push_str(&format!(
                "  {} {}={} {}: {}\n",
                if c.status == "True" && c.type_ == "Ready" {
                    '✓'
                } else {
                    '!'
                },
                c.type_,
                c.status,
                c.reason,
                c.message
            ));
        }
        let s = summarize(std::slice::from_ref(p));
        out.push_str(&format!(
            "  {} to assign, {} to release, {} to adopt, {} attach, {} detach\n\n",
            s.assign, s.release, s.adopt, s.attach, s.detach
        ));
    }
    out.push_str(&format!(
        "Plan: {} claims; {} to assign, {} to release, {} to adopt, {} attach, {} detach; {} refused.\n",
        summary.claims, summary.assign, summary.release, summary.adopt, summary.attach, summary.detach, summary.refused
    ));
    out
}
