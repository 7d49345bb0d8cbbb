//! Every scenario of `stoa-loadtest run` against real nodes, briefly: a smoke test of the
//! load generator (its figures are not asserted; `docs/BENCHMARKS.md` holds measured ones).

use std::process::Command;

use crate::harness::Cluster;

/// The workspace's `stoa-loadtest`, built beside this test by `cargo test --workspace`
/// (for the load tool's own integration test, `loadtest/tests/usage.rs`).
fn loadtest() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("stoa-loadtest");
    if bin.exists() {
        return Some(bin);
    }
    let ci = crate::common::binary::ci();
    assert!(
        !ci,
        "stoa-loadtest is not built beside the tests: {}",
        bin.display()
    );
    eprintln!("SKIPPED: build stoa-loadtest (cargo test --workspace does)");
    None
}

#[actix_web::test]
async fn every_load_scenario_runs_and_reports_json() {
    let Some(bin) = loadtest() else { return };
    let Some(c) = Cluster::start(2, &[("STOA_AUTH__LOGIN_ATTEMPTS_PER_MINUTE", "100000")]).await
    else {
        return;
    };
    let urls: Vec<String> = c
        .nodes
        .iter()
        .map(|n| format!("http://127.0.0.1:{}", n.port))
        .collect();
    let scenarios: [&[&str]; 6] = [
        &["connect", "--connections", "40"],
        &[
            "fanout",
            "--subscribers",
            "20",
            "--rate",
            "20",
            "--duration",
            "1",
        ],
        &[
            "presence",
            "--connections",
            "5",
            "--rate",
            "10",
            "--duration",
            "1",
        ],
        &["rest", "--concurrency", "2", "--duration", "1"],
        &[
            "yjs",
            "--docs",
            "2",
            "--editors",
            "2",
            "--rate",
            "5",
            "--duration",
            "1",
        ],
        &[
            "cluster",
            "--subscribers",
            "20",
            "--rate",
            "20",
            "--duration",
            "1",
        ],
    ];
    for args in scenarios {
        let api = if args[0] == "cluster" {
            urls.join(",")
        } else {
            urls[0].clone()
        };
        let out = Command::new(&bin)
            .arg("run")
            .args(args)
            .args(["--api", &api])
            .output()
            .expect("stoa-loadtest runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
        let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("{args:?}: no JSON report ({e}): {stdout}"));
        assert_eq!(report["scenario"], args[0], "{report}");
        assert!(
            report["ops"].as_u64().unwrap_or(0) > 0,
            "{args:?} did nothing: {report}"
        );
        assert_eq!(report["errors"], 0, "{args:?}: {report} {stderr}");
        assert!(report["latency_us"]["p99"].as_u64().is_some(), "{report}");
        // The progress line.
        assert!(
            stderr.contains(&format!("{}:", args[0])),
            "{args:?}: {stderr}"
        );
    }
}
