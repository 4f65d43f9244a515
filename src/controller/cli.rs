//! The `nicip controller` command: flags, then wiring of the Kubernetes
//! client, the admin server, leader election and the controller.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use futures::FutureExt;
use tracing::{error, info};

use crate::ops::{self, Fence, Health, LeaseConfig, LogFormat, Metrics, Role};

use super::{Handles, Settings};

/// Reconcile NicIpClaims against the cloud (what the Helm chart runs).
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Kubeconfig file; without it, the usual inference: KUBECONFIG, ~/.kube/config, in-cluster.
    #[arg(long, env = "KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Watch NicIpClaims only in this namespace (a shard); default: all namespaces.
    #[arg(long, env = "NICIP_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// Only NicIpClaims matching this label selector (a shard), e.g. `shard=a`.
    #[arg(long, env = "NICIP_SELECTOR", value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Claims reconciled at once.
    #[arg(long, env = "NICIP_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Namespace of the credential Secrets that ProviderConfigs name [default: $POD_NAMESPACE, else nicip-system].
    #[arg(long, env = "NICIP_SECRETS_NAMESPACE", value_name = "NS")]
    pub secrets_namespace: Option<String>,
    /// Drift-check period: every claimed NIC is described again this often (jittered).
    #[arg(long, env = "NICIP_RESYNC", default_value = "5m", value_parser = parse_duration)]
    pub resync: Duration,
    /// Log format.
    #[arg(long, env = "NICIP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, in RUST_LOG syntax (e.g. `info`, `nicip=debug`).
    #[arg(long, env = "NICIP_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Address of the admin server: /metrics, /healthz, /readyz.
    #[arg(long, env = "NICIP_METRICS_ADDR", default_value = "0.0.0.0:8080", value_parser = parse_addr)]
    pub metrics_addr: SocketAddr,
    /// Take a coordination.k8s.io Lease before reconciling, so that only one replica acts.
    #[arg(long, env = "NICIP_LEADER_ELECT", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// Name of the Lease (one per shard).
    #[arg(long, env = "NICIP_LEASE_NAME", default_value = "nicip-controller")]
    pub lease_name: String,
    /// Namespace of the Lease [default: $POD_NAMESPACE, else nicip-system].
    #[arg(long, env = "NICIP_LEASE_NAMESPACE", value_name = "NS")]
    pub lease_namespace: Option<String>,
    /// How long a Lease holds without renewal.
    #[arg(long, env = "NICIP_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long stops mutating (shorter than the lease duration).
    #[arg(long, env = "NICIP_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub renew_deadline: Duration,
    /// How often the Lease is renewed or tried.
    #[arg(long, env = "NICIP_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration)]
    pub retry_period: Duration,
    /// This replica's identity: the Lease holder, the Event reporter, and part of the cloud User-Agent [default: $POD_NAME, else the host name].
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration such as 30s or 5m: {e}"))
}

fn default_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "nicip-system".to_string())
}

fn default_identity() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("nicip-{}", std::process::id()))
}

impl Args {
    pub fn settings(&self) -> Settings {
        let mut s = Settings::new(
            self.secrets_namespace
                .clone()
                .unwrap_or_else(default_namespace),
            self.identity.clone().unwrap_or_else(default_identity),
        );
        s.namespace = self.namespace.clone();
        s.selector = self.selector.clone();
        s.concurrency = self.concurrency;
        s.resync = self.resync;
        s
    }
}

/// `host:port`, `localhost:port` included.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    ops::parse_listen_addr(s).map_err(|e| format!("{e:#}"))
}

pub async fn kube_client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("finding a Kubernetes configuration")?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// `nicip controller`.
pub async fn main(args: Args) -> anyhow::Result<()> {
    let shutdown = ops::shutdown_signal();
    ops::init_logging(args.log_format, &args.log_level)?;
    if args.renew_deadline >= args.lease_duration {
        anyhow::bail!("--renew-deadline must be shorter than --lease-duration");
    }
    let settings = args.settings();
    let client = kube_client(args.kubeconfig.as_ref()).await?;
    let metrics = Metrics::new();
    let health = Health::new();
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, admin) = ops::serve_admin(
        args.metrics_addr,
        health.clone(),
        metrics.clone(),
        admin_stopped.map(|_| ()),
    )
    .await?;
    info!(%addr, identity = %settings.identity, "admin server listening");

    let shutdown = shutdown.shared();
    let result = if args.leader_elect {
        health.set_role(Role::Standby);
        let elector = ops::Elector::new(
            client.clone(),
            LeaseConfig {
                namespace: args
                    .lease_namespace
                    .clone()
                    .unwrap_or_else(default_namespace),
                name: args.lease_name.clone(),
                identity: settings.identity.clone(),
                lease_duration: args.lease_duration,
                renew_deadline: args.renew_deadline,
                retry_period: args.retry_period,
            },
            health.clone(),
        );
        let leadership = tokio::select! {
            l = elector.acquire() => Some(l?),
            () = shutdown.clone() => None,
        };
        match leadership {
            None => Ok(()),
            Some(leadership) => {
                health.set_role(Role::Leader);
                info!("leading");
                let handles = Handles {
                    metrics,
                    health: health.clone(),
                    fence: leadership.fence(),
                };
                let lost = leadership.lost();
                let stop = {
                    let shutdown = shutdown.clone();
                    async move {
                        tokio::select! {
                            () = shutdown => {}
                            () = lost => error!("lost the Lease; stopping"),
                        }
                    }
                };
                let r = super::run(client, settings, handles, stop).await;
                let lost_lease = leadership.fence().check().is_err();
                leadership.release().await;
                if lost_lease && r.is_ok() {
                    Err(anyhow::anyhow!("lost the Lease"))
                } else {
                    r
                }
            }
        }
    } else {
        health.set_role(Role::Leader);
        super::run(
            client,
            settings,
            Handles {
                metrics,
                health,
                fence: Fence::always(),
            },
            shutdown,
        )
        .await
    };
    let _ = stop_admin.send(());
    let _ = admin.await;
    result
}
