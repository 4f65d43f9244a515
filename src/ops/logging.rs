//! Log set-up and the shutdown signal.

use std::future::Future;
use std::io::IsTerminal as _;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object per line, with the span fields (claim namespace and
    /// name, cloud action) on every event.
    Json,
}

/// Installs the global `tracing` subscriber writing to stderr. `level` is a
/// filter in `RUST_LOG` syntax (`info`, `nicip=debug,kube=warn`). Colours only
/// when stderr is a terminal, so files and log collectors get plain text.
pub fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(level).with_context(|| format!("log level {level:?} is not valid"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

/// Resolves on the first SIGTERM (what the kubelet sends) or SIGINT (Ctrl-C).
///
/// The handlers are installed when this is called, not when the future is
/// first polled, so a signal that arrives in between is not lost (and does
/// not kill the process with the default action). Call it inside a Tokio
/// runtime.
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match handlers {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
                _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot install the SIGTERM handler; only Ctrl-C stops the process cleanly");
                ctrl_c().await;
            }
        }
    }
}

#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    ctrl_c()
}

async fn ctrl_c() {
    match tokio::signal::ctrl_c().await {
        Ok(()) => tracing::info!("interrupted, shutting down"),
        Err(e) => {
            tracing::error!(error = %e, "waiting for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum as _;

    #[test]
    fn log_format_values_match_the_flag() {
        let names: Vec<String> = LogFormat::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|v| v.get_name().to_string())
            .collect();
        assert_eq!(names, ["text", "json"]);
        assert_eq!(LogFormat::from_str("json", false), Ok(LogFormat::Json));
    }

    #[test]
    fn a_bad_level_is_an_error_not_a_silent_default() {
        let err = init_logging(LogFormat::Json, "nicip=loudest").expect_err("invalid filter");
        assert!(format!("{err:#}").contains("nicip=loudest"), "{err:#}");
    }
}
