use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// nicip keeps the secondary IPs and attachments of Zenlayer and Tencent Cloud NICs as
/// declared in NicIpClaim objects.
#[derive(Parser)]
#[command(name = "nicip", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct CrdArgs {
    /// Write one file per CRD into this directory instead of printing them.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Print every CustomResourceDefinition of nicip as YAML (the source of crds/).
    Crd(CrdArgs),
    #[cfg(feature = "sim")]
    /// Run the real controller against a simulated cloud and an in-memory Kubernetes API
    /// server, on the example claims: no cluster and no cloud account needed.
    Demo(nicip::demo::Args),
    /// Serve the in-memory Kubernetes API server alone, with nicip's CRDs.
    #[cfg(feature = "sim")]
    Kubesim(nicip::demo::KubesimArgs),
    /// Preview what the controller would do for claims, with read-only cloud calls
    /// (exit 0: no change, 2: changes, 1: refused or error).
    Plan(Box<nicip::preview::Args>),
    /// Reconcile NicIpClaims against the cloud (what the Helm chart runs).
    Controller(Box<nicip::controller::cli::Args>),
    /// Serve the simulated Zenlayer and Tencent clouds described by a world file.
    #[cfg(feature = "sim")]
    Cloudsim(nicip::cloudsim::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd(args) => crd(args),
        Command::Controller(args) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(nicip::controller::cli::main(*args))),
        #[cfg(feature = "sim")]
        Command::Demo(args) => {
            return match nicip::ops::init_logging(
                nicip::ops::LogFormat::Text,
                &std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .and_then(|()| tokio::runtime::Runtime::new()?.block_on(nicip::demo::run(args)))
            {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("nicip: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Plan(args) => {
            let result = nicip::ops::init_logging(
                nicip::ops::LogFormat::Text,
                &std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .and_then(|()| tokio::runtime::Runtime::new()?.block_on(nicip::preview::main(*args)));
            return match result {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("nicip: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        #[cfg(feature = "sim")]
        Command::Kubesim(args) => nicip::ops::init_logging(nicip::ops::LogFormat::Text, "info")
            .and_then(|()| tokio::runtime::Runtime::new()?.block_on(nicip::demo::kubesim(args))),
        #[cfg(feature = "sim")]
        Command::Cloudsim(args) => init_logging()
            .and_then(|()| tokio::runtime::Runtime::new()?.block_on(nicip::cloudsim::run(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nicip: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Text logs on stderr, level from `RUST_LOG` (default `info`).
#[cfg(feature = "sim")]
fn init_logging() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(|e| anyhow::anyhow!("setting up logging: {e}"))
}

fn crd(args: CrdArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    for crd in nicip::api::crds() {
        let yaml = nicip::api::crd_yaml(&crd)?;
        match &args.output_dir {
            None => match stdout.write_all(yaml.as_bytes()) {
                // `nicip crd | head` closes the pipe early; that is not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                other => other.context("writing to stdout")?,
            },
            Some(dir) => {
                let path = dir.join(nicip::api::crd_file_name(&crd));
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}
