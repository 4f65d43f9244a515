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
    /// Serve the simulated Zenlayer and Tencent clouds described by a world file.
    #[cfg(feature = "sim")]
    Cloudsim(nicip::cloudsim::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd(args) => crd(args),
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
