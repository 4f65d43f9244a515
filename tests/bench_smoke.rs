//! The controller benchmark's harness at a tiny size, so that it never rots
//! (`cargo bench --bench controller` runs it at real sizes). Nothing about
//! speed is asserted: only that every scenario completes and reports.
#![cfg(feature = "sim")]

#[path = "../benches/controller/harness.rs"]
mod harness;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_benchmark_runs_every_scenario() {
    let cfg = harness::Config {
        sizes: vec![3],
        bin: env!("CARGO_BIN_EXE_nicip").into(),
        resync: Duration::from_secs(3),
        concurrency: 64,
        log_level: "warn".into(),
        keep: None,
        providers: None,
        together: false,
        ipv6: true,
    };
    let figures = harness::run(&cfg).await.expect("the harness runs");
    // Each provider runs alone, in processes of its own.
    let names: Vec<&str> = figures
        .iter()
        .flat_map(|f| f.providers.keys().map(String::as_str))
        .collect();
    assert_eq!(names, ["tencent", "zenlayer", "legacy"]);
    for f in &figures {
        assert_eq!(f.claims_per_provider, 3);
        assert_eq!(f.providers.len(), 1, "{f:?}");
        check_run(f);
    }
    let json = serde_json::to_value(&figures).expect("JSON");
    assert!(json[0]["providers"]["tencent"]["burst"]["efficiency"].is_f64());
    assert!(json[1]["providers"]["zenlayer"]["ipv6_burst"]["efficiency"].is_f64());
    assert!(json[2]["providers"]["legacy"]["ipv6_burst"].is_null());
}

fn check_run(f: &harness::SizeFigures) {
    for (name, p) in &f.providers {
        assert!(
            p.burst.seconds > 0.0 && p.burst.bound_seconds > 0.0,
            "{name}: {p:?}"
        );
        assert!(p.burst.calls.mutations >= 3, "{name} assigned: {p:?}");
        assert_eq!(p.burst.calls.min_mutations, 3, "{name}");
        assert!(p.burst.calls.describes > 0, "{name} described: {p:?}");
        assert!(
            p.steady.describes > 0,
            "{name}: a resync sweep was seen: {p:?}"
        );
        assert!(
            p.restart.seconds > 0.0 && p.restart.describes > 0,
            "{name}: {p:?}"
        );
        assert!(p.scale_down.calls.mutations >= 3, "{name} released: {p:?}");
        match (name.as_str(), &p.ipv6_burst) {
            // The legacy API has no IPv6: the scenario skips it.
            ("legacy", v6) => assert!(v6.is_none(), "{p:?}"),
            (_, None) => panic!("{name}: no IPv6 burst: {p:?}"),
            (_, Some(v6)) => {
                assert!(v6.seconds > 0.0 && v6.bound_seconds > 0.0, "{name}: {v6:?}");
                assert!(v6.calls.mutations >= 3, "{name} assigned IPv6: {v6:?}");
                assert_eq!(v6.calls.min_mutations, 3, "{name}");
            }
        }
    }
    let c = &f.controller;
    for m in [&c.idle, &c.after_burst, &c.steady] {
        assert!(m.vm_rss_kib > 0 && m.vm_hwm_kib >= m.vm_rss_kib, "{c:?}");
    }
    assert!(c.cpu_seconds_per_claim > 0.0, "{c:?}");
    assert!(f.headroom.cloudsim_requests_per_second > 0.0);
    let table = harness::table(f);
    for (name, p) in &f.providers {
        assert!(table.contains(name.as_str()), "{table}");
        if p.ipv6_burst.is_some() {
            let action = if name == "tencent" {
                "AssignIpv6Addresses"
            } else {
                "AssignNetworkInterfaceIpv6"
            };
            assert!(table.contains(action), "{table}");
        }
    }
}
