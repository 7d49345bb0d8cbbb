//! The console in real Chromium (`web/browser/`, driven by `playwright-core`) against the
//! real `stoa` binary, which the suite starts, kills and restarts itself. Needs
//! `npm ci --prefix web` and Debian's `chromium`; without them the suite is skipped with a
//! notice, except under `CI=true`, where it fails. Screenshots of each page and the measured
//! figures (`figures.json`) are left in `target/console-screenshots/`.

#[path = "common/binary.rs"]
mod binary;

use std::path::Path;
use std::process::Command;

#[test]
fn console_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let web = root.join("web");
    if !web.join("node_modules/playwright-core").is_dir() {
        binary::missing(
            "the console suite needs web/node_modules: run `npm ci --prefix web` (.ci/run does)",
        );
        return;
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        binary::missing(&format!(
            "the console suite needs Chromium at {chromium}: `apt-get install chromium` (.ci/run does)"
        ));
        return;
    }
    let shots = root.join("target/console-screenshots");
    let status = Command::new("node")
        .args([
            "--test",
            "--test-concurrency=1",
            "--test-reporter=spec",
            // Node 20 applies it to the whole file as well as to each test: the suite's ten
            // tests take about two minutes together. A hung step fails sooner, at its own
            // deadline (Playwright's 30 s, the suite's `until`).
            "--test-timeout=600000",
            "--test-force-exit",
            "browser/",
        ])
        .current_dir(&web)
        .env("STOA_BIN", env!("CARGO_BIN_EXE_stoa"))
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", &shots)
        .status()
        .expect("node starts");
    assert!(status.success(), "the console's browser suite failed");
}
