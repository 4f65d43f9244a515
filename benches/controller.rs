//! Convergence of the real controller against the cloud's rate limits
//! (`cargo bench --bench controller`); see docs/performance.md.
//!
//! `NICIP_BENCH_CLAIMS` (default `100,1000`): claims per provider, one run
//! each. `NICIP_BENCH_RESYNC` (default `20s`) and `NICIP_BENCH_CONCURRENCY`
//! (default 64, the controller's own default) are passed to the controller;
//! `NICIP_BIN` overrides the binary. Each provider runs alone, in processes of
//! its own; `NICIP_BENCH_PROVIDERS` (default `tencent,zenlayer,legacy`) picks
//! them and `NICIP_BENCH_TOGETHER=1` runs them in one controller;
//! `NICIP_BENCH_IPV6=0` skips the IPv6 burst. Prints a table per run and
//! writes all of them to `target/bench/controller.json`.

#[path = "controller/harness.rs"]
mod harness;

use std::path::PathBuf;

use anyhow::Context as _;

fn config() -> anyhow::Result<harness::Config> {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let sizes = var("NICIP_BENCH_CLAIMS", "100,1000")
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .context("NICIP_BENCH_CLAIMS: a comma-separated list of numbers")?;
    let resync = humantime::parse_duration(&var("NICIP_BENCH_RESYNC", "20s"))
        .context("NICIP_BENCH_RESYNC")?;
    let concurrency = var("NICIP_BENCH_CONCURRENCY", "64")
        .parse()
        .context("NICIP_BENCH_CONCURRENCY")?;
    let bin = std::env::var_os("NICIP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nicip")));
    Ok(harness::Config {
        sizes,
        bin,
        resync,
        concurrency,
        log_level: var("NICIP_BENCH_LOG", "warn"),
        keep: std::env::var_os("NICIP_BENCH_KEEP").map(PathBuf::from),
        providers: std::env::var("NICIP_BENCH_PROVIDERS")
            .ok()
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
        together: std::env::var("NICIP_BENCH_TOGETHER").is_ok_and(|v| v == "1"),
        ipv6: std::env::var("NICIP_BENCH_IPV6").map_or(true, |v| v != "0"),
    })
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and
    // would run the whole thing: the smoke test covers that path instead.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let cfg = config()?;
    let figures = tokio::runtime::Runtime::new()?.block_on(harness::run(&cfg))?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("controller.json");
    std::fs::write(&path, serde_json::to_string_pretty(&figures)?)?;
    println!("wrote {}", path.display());
    Ok(())
}
