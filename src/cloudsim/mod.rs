//! `nicip cloudsim`: a simulated Zenlayer ZEC and Tencent VPC (API 3.0 and
//! legacy API 2.0) that behaves like the real clouds on the wire, for local
//! development, tests, the demo and benchmarks.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let world = nicip::cloudsim::World::from_yaml(&std::fs::read_to_string("world.yaml")?)?;
//! let sim = nicip::cloudsim::start(world, "127.0.0.1:0".parse()?).await?;
//! println!("{}", sim.base_url());
//! let nic = sim.world().zenlayer.nics.get("nic-1").cloned();
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod config;
mod conn;
mod faults;
mod legacy;
mod server;
mod tencent;
mod world;
mod zenlayer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;

pub use config::{Settings, World};
pub use faults::{AuditEntry, Fault, Protocol};
pub use world::{
    Cloud, Effect, Instance, IpEntry, IpState, Ipv6Type, Nic, Region, StackType, Subnet, Task,
    TaskStatus, Vendor, Vpc, WorldError, WorldState,
};
pub use zenlayer::AUTH_FAILED as ZENLAYER_AUTH_FAILED;

use server::Sim;

/// A simulator serving on a loopback (or any) address. Dropping it stops the
/// listener; [`RunningSim::shutdown`] also waits for in-flight requests.
pub struct RunningSim {
    addr: SocketAddr,
    sim: Arc<Sim>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Starts the simulator on `addr` (port 0 picks a free port).
pub async fn start(world: World, addr: SocketAddr) -> std::io::Result<RunningSim> {
    start_with_audit_log(world, addr, None).await
}

/// As [`start`], also appending the audit log to `audit_log` (JSON lines).
pub async fn start_with_audit_log(
    world: World,
    addr: SocketAddr,
    audit_log: Option<PathBuf>,
) -> std::io::Result<RunningSim> {
    let audit = faults::Audit::new(audit_log.as_deref())?;
    let sim = Arc::new(Sim::new(world, audit));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(server::serve(listener, sim.clone(), stopped));
    Ok(RunningSim {
        addr,
        sim,
        stop,
        task: Some(task),
    })
}

impl RunningSim {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`, the endpoint to give clients.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A copy of the current world (due async tasks completed first).
    pub fn world(&self) -> WorldState {
        self.sim.with_world(|w| w.clone())
    }

    /// Changes the world in place, e.g. to stop an instance or remove an
    /// address out of band in a test.
    pub fn edit_world<R>(&self, f: impl FnOnce(&mut WorldState) -> R) -> R {
        self.sim.with_world(f)
    }

    /// The world as `/_sim/world` returns it.
    pub fn world_json(&self) -> Value {
        snapshot_json(&self.sim)
    }

    /// Replaces the fault rules.
    pub fn set_faults(&self, faults: Vec<Fault>) -> Result<(), String> {
        for (i, f) in faults.iter().enumerate() {
            f.validate().map_err(|e| format!("faults[{i}]: {e}"))?;
        }
        self.sim.faults.set(faults);
        Ok(())
    }

    pub fn clear_faults(&self) {
        self.sim.faults.set(Vec::new());
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.sim.faults.list()
    }

    /// Holds asynchronous work in flight (`true`) or lets it complete when due
    /// (`false`, the default): tests look at `PENDING`/`ATTACHING`/... states
    /// while held, without racing the simulated latency.
    pub fn hold_async(&self, held: bool) {
        self.sim
            .async_held
            .store(held, std::sync::atomic::Ordering::SeqCst);
    }

    /// The most recent audit entries (up to 10 000), oldest first.
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.sim.audit.recent()
    }

    /// Stops accepting, lets in-flight requests finish, and returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub(crate) fn snapshot_json(sim: &Sim) -> Value {
    sim.with_world(|w| {
        let cloud = |c: &Cloud| {
            json!({
                "regions": c.regions,
                "vpcs": c.vpcs.values().collect::<Vec<_>>(),
                "subnets": c.subnets.values().collect::<Vec<_>>(),
                "instances": c.instances.values().collect::<Vec<_>>(),
                "nics": c.nics.values().collect::<Vec<_>>(),
                "tasks": c.tasks.values().collect::<Vec<_>>(),
            })
        };
        json!({"zenlayer": cloud(&w.zenlayer), "tencent": cloud(&w.tencent)})
    })
}

/// `nicip cloudsim`: serve a world file until Ctrl-C or SIGTERM.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on (loopback by default: the simulator has no
    /// access control of its own on `/_sim/`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The world file (YAML); see docs/cloudsim.md.
    #[arg(long)]
    pub world: PathBuf,
    /// Append an audit log (JSON lines) to this file.
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    use anyhow::Context as _;
    // Handlers go in before the address is logged: a supervisor (or a test) that reads the
    // address and sends SIGTERM at once must get a clean shutdown, not the default action.
    let shutdown = shutdown_signal().context("installing signal handlers")?;
    let text = std::fs::read_to_string(&args.world)
        .with_context(|| format!("reading {}", args.world.display()))?;
    let world =
        World::from_yaml(&text).with_context(|| format!("loading {}", args.world.display()))?;
    let sim = start_with_audit_log(world, args.listen, args.audit_log.clone())
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(address = %sim.addr(), "cloudsim listening on {}", sim.base_url());
    shutdown.await;
    tracing::info!("cloudsim shutting down");
    sim.shutdown().await;
    Ok(())
}

/// Registers the SIGTERM and SIGINT handlers now and returns a future that completes on the
/// first of them.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
