//! The load tool as a user runs it. (Its scenarios run against real nodes in the server's
//! `tests/cluster/loadtest.rs`, which uses the binary this test makes cargo build.)

use std::process::Command;

#[test]
fn an_unknown_mode_prints_the_usage_and_fails() {
    let out = Command::new(env!("CARGO_BIN_EXE_stoa-loadtest"))
        .arg("no-such-mode")
        .output()
        .expect("stoa-loadtest runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("usage: stoa-loadtest run SCENARIO"), "{err}");
}
