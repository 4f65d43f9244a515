//! `nicip demo`: the whole product on one machine, with no cluster and no
//! cloud account. The simulated cloud serves `deploy/examples/cloudsim/world.yaml`,
//! the in-memory API server serves the CRDs, the example manifests of
//! `deploy/examples/` are applied, and the real controller (the code path of
//! `nicip controller`) converges them while a table shows each claim.
//!
//! Claims carry their demo script in `demo.nicip.io/` annotations, which the
//! controller ignores: `expect-error` (the cloud code the claim must report),
//! `then-count` (a scale-down after the first convergence), `then-delete`
//! (a deletion that must release the claim's addresses).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::api::v1alpha1::{NicIpClaim, ProviderConfig};
use crate::cloudsim::{self, RunningSim, World};
use crate::controller::{self, Handles, Settings};
use crate::kubesim::{KubeSim, RunningKubeSim};
use crate::ops::{Fence, Health, Metrics};

const CLAIMS: &str = include_str!("../deploy/examples/claims.yaml");
const PROVIDER_CONFIGS: &str = include_str!("../deploy/examples/providerconfigs.yaml");
const CREDENTIALS: &str = include_str!("../deploy/examples/credentials.yaml");
const WORLD: &str = include_str!("../deploy/examples/cloudsim/world.yaml");

const EXPECT_ERROR: &str = "demo.nicip.io/expect-error";
const THEN_COUNT: &str = "demo.nicip.io/then-count";
const THEN_DELETE: &str = "demo.nicip.io/then-delete";
const MANAGER: &str = "nicip-demo";
const SECRETS_NAMESPACE: &str = "nicip-system";

/// Run the controller against a simulated cloud and an in-memory Kubernetes API server.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Leave the simulated cloud, the API server and the controller running, and write a
    /// kubeconfig for kubectl; stop with Ctrl-C.
    #[arg(long)]
    pub serve: bool,
    /// Where `--serve` writes the kubeconfig.
    #[arg(long, default_value = "nicip-demo.kubeconfig", value_name = "FILE")]
    pub kubeconfig: PathBuf,
    /// A directory of manifests to apply instead of the built-in examples.
    #[arg(long, value_name = "DIR")]
    pub examples: Option<PathBuf>,
    /// A simulated world instead of the built-in one (see docs/cloudsim.md).
    #[arg(long, value_name = "FILE")]
    pub world: Option<PathBuf>,
    /// Give up on convergence after this long.
    #[arg(long, default_value = "60s", value_parser = controller::cli::parse_duration)]
    pub timeout: Duration,
}

/// A claim's expected end, read from its annotations.
#[derive(Debug, Clone, Default)]
struct Script {
    expect_error: Option<String>,
    then_count: Option<u32>,
    then_delete: bool,
}

impl Script {
    fn of(claim: &NicIpClaim) -> Script {
        let a = claim.annotations();
        Script {
            expect_error: a.get(EXPECT_ERROR).cloned(),
            then_count: a.get(THEN_COUNT).and_then(|v| v.parse().ok()),
            then_delete: a.get(THEN_DELETE).is_some_and(|v| v == "true"),
        }
    }
}

/// The simulated cloud, the in-memory API server and the controller of one demo run.
struct Playground {
    kube: RunningKubeSim,
    cloud: RunningSim,
    client: Client,
    stop: tokio::sync::oneshot::Sender<()>,
    controller: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub async fn run(args: Args) -> anyhow::Result<bool> {
    let world_text = match &args.world {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => WORLD.to_string(),
    };
    let manifests = match &args.examples {
        Some(dir) => read_dir_manifests(dir)?,
        None => [CREDENTIALS, PROVIDER_CONFIGS, CLAIMS].join("\n---\n"),
    };
    let env = start(&world_text, &manifests, !args.serve).await?;
    if args.serve {
        return serve(env, &args).await.map(|()| true);
    }
    let ok = script(&env, args.timeout).await?;
    let Playground {
        stop, controller, ..
    } = env;
    let _ = stop.send(());
    controller.await.context("joining the controller")??;
    Ok(ok)
}

fn read_dir_manifests(dir: &std::path::Path) -> anyhow::Result<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        out.push(std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?);
    }
    Ok(out.join("\n---\n"))
}

async fn start(world_text: &str, manifests: &str, quick: bool) -> anyhow::Result<Playground> {
    let world = World::from_yaml(world_text).context("the simulated world")?;
    let cloud = cloudsim::start(world, "127.0.0.1:0".parse()?)
        .await
        .context("starting the simulated cloud")?;
    if quick {
        // The quiet profile: short simulated latencies, no injected faults.
        cloud.clear_faults();
        cloud.edit_world(|w| {
            w.zenlayer.async_latency = Duration::from_millis(40);
            w.tencent.async_latency = Duration::from_millis(40);
        });
    }
    let kube = KubeSim::new(crate::api::crds())
        .start()
        .await
        .context("starting the in-memory API server")?;
    let client = kube.client()?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in ["default", SECRETS_NAMESPACE] {
        let body: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        match namespaces.create(&PostParams::default(), &body).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e).context(format!("creating namespace {ns}")),
        }
    }
    apply_manifests(&client, manifests, &cloud.base_url()).await?;

    let mut settings = Settings::new(SECRETS_NAMESPACE, "nicip-demo");
    settings.async_poll = Duration::from_millis(50);
    settings.slow_retry = Duration::from_secs(5);
    let handles = Handles {
        metrics: Metrics::new(),
        health: Health::new(),
        fence: Fence::always(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let c = client.clone();
    let controller = tokio::spawn(async move {
        controller::run(c, settings, handles, async move {
            let _ = stopped.await;
        })
        .await
    });
    Ok(Playground {
        kube,
        cloud,
        client,
        stop,
        controller,
    })
}

/// Applies every document, pointing ProviderConfigs at the simulated cloud.
async fn apply_manifests(client: &Client, text: &str, cloud: &str) -> anyhow::Result<()> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).context("parsing the example manifests")?;
    let params = PatchParams::apply(MANAGER).force();
    for mut doc in docs.into_iter().filter(|d| d.is_object()) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ns = doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        match kind.as_str() {
            "Secret" => {
                Api::<Secret>::namespaced(client.clone(), &ns)
                    .patch(&name, &params, &Patch::Apply(&doc))
                    .await?;
            }
            "ProviderConfig" => {
                let endpoint = match doc["spec"]["provider"].as_str() {
                    Some("Zenlayer") => format!("{cloud}/api/v2/zec"),
                    Some("TencentLegacy") => format!("{cloud}/v2/index.php"),
                    _ => format!("{cloud}/"),
                };
                doc["spec"]["endpoint"] = json!(endpoint);
                Api::<ProviderConfig>::all(client.clone())
                    .patch(&name, &params, &Patch::Apply(&doc))
                    .await?;
            }
            "NicIpClaim" => {
                Api::<NicIpClaim>::namespaced(client.clone(), &ns)
                    .patch(&name, &params, &Patch::Apply(&doc))
                    .await
                    .with_context(|| format!("applying NicIpClaim {ns}/{name}"))?;
            }
            other => bail!(
                "the demo applies Secrets, ProviderConfigs and NicIpClaims, not {other} ({name})"
            ),
        }
    }
    Ok(())
}

async fn serve(env: Playground, args: &Args) -> anyhow::Result<()> {
    env.kube
        .write_kubeconfig(&args.kubeconfig)
        .with_context(|| format!("writing {}", args.kubeconfig.display()))?;
    let shutdown = crate::ops::shutdown_signal();
    println!("nicip demo is serving:");
    println!(
        "  Kubernetes API  {}   (kubeconfig: {})",
        env.kube.url(),
        args.kubeconfig.display()
    );
    println!(
        "  simulated cloud {}   (world: GET {}/_sim/world)",
        env.cloud.base_url(),
        env.cloud.base_url()
    );
    println!();
    println!("  export KUBECONFIG={}", args.kubeconfig.display());
    println!("  kubectl get nicipclaims -w");
    println!("  kubectl apply -f my-claim.yaml");
    println!();
    println!("Ctrl-C stops it.");
    let _ = std::io::stdout().flush();
    shutdown.await;
    let _ = env.stop.send(());
    env.controller.await.context("joining the controller")??;
    Ok(())
}

/// Converges, runs the claims' scripts, converges again, and checks the result.
async fn script(env: &Playground, timeout: Duration) -> anyhow::Result<bool> {
    let api: Api<NicIpClaim> = Api::all(env.client.clone());
    let providers = provider_names(env).await?;
    let mut view = View::new(std::io::stdout().is_terminal());
    let initial = api.list(&Default::default()).await?.items;
    let scripts: BTreeMap<String, Script> =
        initial.iter().map(|c| (key(c), Script::of(c))).collect();
    let started = tokio::time::Instant::now();

    view.heading("converging the example claims");
    converge(&api, &scripts, &providers, &mut view, timeout).await;

    let mut released: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    let mut changed = false;
    for c in &initial {
        let s = &scripts[&key(c)];
        let ns_api: Api<NicIpClaim> =
            Api::namespaced(env.client.clone(), &c.namespace().unwrap_or_default());
        if let Some(n) = s.then_count {
            let patch = json!({"spec": {"ipv4": {"count": n}}});
            ns_api
                .patch(
                    &c.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            view.note(&format!("scaling {} down to {n} addresses", key(c)));
            changed = true;
        }
        if s.then_delete {
            let current = ns_api.get(&c.name_any()).await?;
            released.insert(key(c), (c.spec.nic_id.clone(), owned(&current)));
            ns_api
                .delete(&c.name_any(), &DeleteParams::default())
                .await?;
            view.note(&format!(
                "deleting {} (deletionPolicy {:?})",
                key(c),
                c.spec.deletion_policy
            ));
            changed = true;
        }
    }
    if changed {
        view.heading("after the scale-down and the deletion");
        converge(&api, &scripts, &providers, &mut view, timeout).await;
    }

    // The final table beside the cloud's own view.
    let claims = api.list(&Default::default()).await?.items;
    view.finish(&rows(&claims, &providers));
    let world = env.cloud.world();
    println!();
    println!("The cloud's own view of each NIC:");
    println!(
        "{:<18} {:<12} {:<12} SECONDARY ADDRESSES",
        "NIC", "STATUS", "INSTANCE"
    );
    let mut nics: BTreeSet<String> = initial.iter().map(|c| c.spec.nic_id.clone()).collect();
    nics.extend(released.values().map(|(n, _)| n.clone()));
    for id in &nics {
        let nic = world
            .zenlayer
            .nics
            .get(id)
            .or_else(|| world.tencent.nics.get(id));
        match nic {
            Some(n) => {
                let addrs: Vec<String> = n
                    .secondary_ipv4
                    .iter()
                    .map(|e| e.address.to_string())
                    .chain(n.ipv6.iter().map(|e| e.address.to_string()))
                    .collect();
                println!(
                    "{:<18} {:<14} {:<12} {}",
                    id,
                    n.status,
                    n.instance_id.clone().unwrap_or_else(|| "-".into()),
                    if addrs.is_empty() {
                        "-".to_string()
                    } else {
                        addrs.join(", ")
                    }
                );
            }
            None => println!("{id:<18} (not in the cloud)"),
        }
    }

    // Verdict.
    let mut failures = Vec::new();
    for (k, s) in &scripts {
        let claim = claims.iter().find(|c| key(c) == *k);
        if s.then_delete {
            let (nic, had) = &released[k];
            if claim.is_some() {
                failures.push(format!("{k}: still exists after its deletion"));
            }
            let now = cloud_addresses(&world, nic);
            let left: Vec<&String> = had.iter().filter(|a| now.contains(*a)).collect();
            if !left.is_empty() {
                failures.push(format!("{k}: deleted, but {left:?} are still on {nic}"));
            }
            continue;
        }
        let Some(c) = claim else {
            failures.push(format!("{k}: disappeared"));
            continue;
        };
        match &s.expect_error {
            Some(code) => {
                let got = c
                    .status
                    .as_ref()
                    .and_then(|st| st.last_error.as_ref())
                    .map(|e| e.code.clone());
                if got.as_deref() != Some(code.as_str()) {
                    failures.push(format!(
                        "{k}: expected the cloud's {code}, got {}",
                        got.unwrap_or_else(|| "no error".into())
                    ));
                }
            }
            None => {
                if !is_ready(c) {
                    failures.push(format!("{k}: not Ready ({})", reason(c)));
                    continue;
                }
                let on_nic = cloud_addresses(&world, &c.spec.nic_id);
                let mine = owned(c);
                if !mine.is_subset(&on_nic) {
                    failures.push(format!(
                        "{k}: status owns {mine:?}, the cloud shows {on_nic:?}"
                    ));
                }
                if let Some(n) = s.then_count
                    && c.status.as_ref().map_or(0, |st| st.ipv4.len()) != n as usize
                {
                    failures.push(format!(
                        "{k}: owns {} addresses after scaling to {n}",
                        mine.len()
                    ));
                }
            }
        }
    }
    println!();
    if failures.is_empty() {
        println!(
            "nicip demo: every claim reached its expected state in {:.1} s; status and cloud agree.",
            started.elapsed().as_secs_f64()
        );
        Ok(true)
    } else {
        for f in &failures {
            eprintln!("nicip demo: {f}");
        }
        Ok(false)
    }
}

fn key(c: &NicIpClaim) -> String {
    format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any())
}

fn is_ready(c: &NicIpClaim) -> bool {
    c.status.as_ref().is_some_and(|s| {
        s.pending_operation.is_none()
            && s.conditions.iter().any(|x| {
                x.type_ == "Ready"
                    && x.status == "True"
                    && x.observed_generation == c.metadata.generation
            })
    })
}

fn settled(c: &NicIpClaim, script: Option<&Script>) -> bool {
    let Some(s) = &c.status else { return false };
    let current = |t: &str| {
        s.conditions.iter().any(|x| {
            x.type_ == t && x.status == "True" && x.observed_generation == c.metadata.generation
        })
    };
    match script.and_then(|s| s.expect_error.as_ref()) {
        Some(code) => s.last_error.as_ref().is_some_and(|e| &e.code == code) && current("Stalled"),
        None => is_ready(c),
    }
}

/// The Ready condition's reason, once it speaks of the current generation.
fn reason(c: &NicIpClaim) -> String {
    c.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|x| x.type_ == "Ready"))
        .filter(|x| x.observed_generation == c.metadata.generation)
        .map(|x| x.reason.clone())
        .unwrap_or_else(|| "Pending".into())
}

fn owned(c: &NicIpClaim) -> BTreeSet<String> {
    c.status
        .as_ref()
        .map(|s| {
            s.ipv4
                .iter()
                .chain(s.ipv6.iter())
                .map(|o| o.address.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn cloud_addresses(world: &cloudsim::WorldState, nic: &str) -> BTreeSet<String> {
    world
        .zenlayer
        .nics
        .get(nic)
        .or_else(|| world.tencent.nics.get(nic))
        .map(|n| {
            n.secondary_ipv4
                .iter()
                .map(|e| e.address.to_string())
                .chain(n.ipv6.iter().map(|e| e.address.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

async fn provider_names(env: &Playground) -> anyhow::Result<BTreeMap<String, String>> {
    let pcs: Api<ProviderConfig> = Api::all(env.client.clone());
    Ok(pcs
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .map(|p| (p.name_any(), p.spec.provider.to_string()))
        .collect())
}

async fn converge(
    api: &Api<NicIpClaim>,
    scripts: &BTreeMap<String, Script>,
    providers: &BTreeMap<String, String>,
    view: &mut View,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let claims = match api.list(&Default::default()).await {
            Ok(l) => l.items,
            Err(e) => {
                view.note(&format!("listing claims failed: {e}"));
                Vec::new()
            }
        };
        view.show(&rows(&claims, providers));
        let all = claims
            .iter()
            .all(|c| c.metadata.deletion_timestamp.is_none() && settled(c, scripts.get(&key(c))));
        if all || tokio::time::Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type Row = [String; 5];

fn rows(claims: &[NicIpClaim], providers: &BTreeMap<String, String>) -> Vec<Row> {
    claims
        .iter()
        .map(|c| {
            let phase = if c.metadata.deletion_timestamp.is_some() {
                "Deleting"
            } else if is_ready(c) {
                "Ready"
            } else if c.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|x| x.type_ == "Stalled" && x.status == "True")
            }) {
                "Stalled"
            } else {
                "Reconciling"
            };
            let mut why = reason(c);
            if let Some(e) = c.status.as_ref().and_then(|s| s.last_error.as_ref()) {
                why = format!("{why} ({})", e.code);
            }
            let addrs = owned(c);
            [
                key(c),
                providers
                    .get(&c.spec.provider_config_ref.name)
                    .cloned()
                    .unwrap_or_else(|| "?".into()),
                phase.to_string(),
                if addrs.is_empty() {
                    "-".into()
                } else {
                    addrs.into_iter().collect::<Vec<_>>().join(",")
                },
                why,
            ]
        })
        .collect()
}

/// The progress display: a table redrawn in place on a terminal, one line per
/// change otherwise.
struct View {
    tty: bool,
    drawn: usize,
    last: BTreeMap<String, Row>,
}

const HEADER: [&str; 5] = ["CLAIM", "PROVIDER", "PHASE", "ADDRESSES", "REASON"];

impl View {
    fn new(tty: bool) -> View {
        View {
            tty,
            drawn: 0,
            last: BTreeMap::new(),
        }
    }

    fn heading(&mut self, text: &str) {
        println!("== {text}");
        self.drawn = 0;
    }

    fn note(&mut self, text: &str) {
        println!("-- {text}");
        self.drawn = 0;
    }

    fn show(&mut self, rows: &[Row]) {
        if self.tty {
            let mut out = std::io::stdout().lock();
            if self.drawn > 0 {
                let _ = write!(out, "\x1b[{}A\x1b[J", self.drawn);
            }
            let table = table(rows);
            self.drawn = table.lines().count();
            let _ = write!(out, "{table}");
            let _ = out.flush();
        } else {
            for r in rows {
                if self.last.get(&r[0]) != Some(r) {
                    println!("{}  {}  {}  {}  {}", r[0], r[1], r[2], r[3], r[4]);
                }
            }
        }
        self.last = rows.iter().map(|r| (r[0].clone(), r.clone())).collect();
    }

    fn finish(&mut self, rows: &[Row]) {
        println!();
        println!("Final state of the claims:");
        print!("{}", table(rows));
    }
}

fn table(rows: &[Row]) -> String {
    let mut width = HEADER.map(str::len);
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            width[i] = width[i].max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(HEADER);
    for r in rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    out
}

/// `nicip kubesim`: the in-memory API server alone, with the CRDs.
#[derive(clap::Args, Debug, Clone)]
pub struct KubesimArgs {
    /// Where to listen (loopback by default: the server has no authentication).
    #[arg(long, default_value = "127.0.0.1:0", value_parser = controller::cli::parse_addr)]
    pub listen: std::net::SocketAddr,
    /// Write a kubeconfig for this server here.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: PathBuf,
    /// Authenticate by bearer token and authorize with the stored RBAC
    /// objects, as kube-apiserver does; the kubeconfig is then an
    /// administrator's (group `system:masters`).
    #[arg(long)]
    pub rbac: bool,
}

pub async fn kubesim(args: KubesimArgs) -> anyhow::Result<()> {
    let shutdown = crate::ops::shutdown_signal();
    let addr = args.listen;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the in-memory API server has no authentication; anyone who can reach {addr} can read and write it");
    }
    let mut sim = KubeSim::new(crate::api::crds()).listen(addr);
    if args.rbac {
        sim = sim.with_rbac();
    }
    let sim = sim.start().await?;
    sim.write_kubeconfig(&args.kubeconfig)
        .with_context(|| format!("writing {}", args.kubeconfig.display()))?;
    tracing::info!(url = %sim.url(), kubeconfig = %args.kubeconfig.display(), "in-memory Kubernetes API server listening");
    shutdown.await;
    drop(sim);
    Ok(())
}
