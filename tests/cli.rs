//! The `stoa` binary as an operator runs it: configuration errors stop start-up with a
//! message naming the key, and SIGTERM shuts the server down cleanly.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

fn stoa() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stoa"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

#[test]
fn invalid_configuration_names_the_key_and_exits_78() {
    let out = stoa()
        .env("STOA_SERVER__PORT", "eighty")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.port"), "{err}");

    let out = stoa()
        .env("STOA_ENVIRONMENT", "production")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.jwt_secret"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[database]\nurl = \"mysql://nope\"\n").unwrap();
    let out = stoa().arg("--config").arg(&file).output().expect("runs");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("database.url"));

    // TLS takes a certificate and its key together.
    let out = stoa()
        .env("STOA_SERVER__TLS_CERT", "/etc/stoa/cert.pem")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.tls_key"));
    // A certificate that cannot be read stops start-up, naming it.
    let out = stoa()
        .current_dir(dir.path())
        .env("STOA_SERVER__PORT", "0")
        .env("STOA_SERVER__TLS_CERT", &file)
        .env("STOA_SERVER__TLS_KEY", &file)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("server.tls_cert"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = stoa().arg("--bogus").output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn serves_with_defaults_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = stoa()
        .current_dir(dir.path())
        .env("STOA_SERVER__PORT", "0")
        .env("STOA_LOG__FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut port = None;
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["message"] == "stoa listening" {
            port = v["port"].as_u64();
            break;
        }
    }
    let port = port.unwrap_or_else(|| panic!("no listening line in {seen:#?}"));
    assert!(
        seen.iter().any(|l| l.contains("generated JWT secret")),
        "development warns about its secret"
    );

    // The default configuration created the embedded database under data/.
    assert!(dir.path().join("data/stoa.db").exists());
    assert!(dir.path().join("data/jwt_secret").exists());
    // A plain HTTP exchange: the server is up and answering before it is told to stop.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port as u16)).expect("connects");
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit {exit:?}; log: {rest:#?}");
    assert!(rest.iter().any(|l| l.contains("stoa stopped")), "{rest:#?}");
}

#[test]
fn a_kubernetes_style_environment_starts_and_names_what_it_ignores() {
    let dir = tempfile::tempdir().unwrap();
    // What Kubernetes injects into every pod for a Service named `stoa`, plus a typo.
    let mut child = stoa()
        .current_dir(dir.path())
        .env("STOA_SERVER__PORT", "0")
        .env("STOA_LOG__FORMAT", "json")
        .env("STOA_PORT", "tcp://10.0.0.1:8080")
        .env("STOA_PORT_8080_TCP", "tcp://10.0.0.1:8080")
        .env("STOA_PORT_8080_TCP_ADDR", "10.0.0.1")
        .env("STOA_PORT_8080_TCP_PORT", "8080")
        .env("STOA_PORT_8080_TCP_PROTO", "tcp")
        .env("STOA_SERVICE_HOST", "10.0.0.1")
        .env("STOA_SERVICE_PORT", "8080")
        .env("STOA_SERVER_PORT", "9999")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stderr = child.stderr.take().unwrap();
    let mut warned = Vec::new();
    let mut listening = false;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["level"] == "WARN" {
            if let Some(var) = v["variable"].as_str() {
                warned.push((
                    var.to_string(),
                    v["message"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
        if v["message"] == "stoa listening" {
            listening = true;
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(listening, "the server did not start; warnings: {warned:#?}");
    assert_eq!(warned.len(), 8, "{warned:#?}");
    let typo = warned
        .iter()
        .find(|(var, _)| var == "STOA_SERVER_PORT")
        .expect("the typo is named");
    assert!(
        typo.1.contains("did you mean STOA_SERVER__PORT"),
        "{}",
        typo.1
    );

    // A configuration file is written by an operator: an unknown key there still stops.
    let file = dir.path().join("stoa.toml");
    std::fs::write(&file, "[server]\nprot = 8080\n").unwrap();
    let out = stoa().arg("--config").arg(&file).output().expect("runs");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("prot"));
}

/// Starts the binary with `env` in a fresh directory; whether it got as far as listening
/// (it is then stopped), or its exit code and what it said.
fn starts_with(env: &[(&str, &str)]) -> Result<(), (Option<i32>, String)> {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = stoa();
    cmd.current_dir(dir.path())
        .env("STOA_SERVER__PORT", "0")
        .env("STOA_LOG__FORMAT", "json")
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("starts");
    let mut said = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains("stoa listening") {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(());
        }
        said.push_str(&line);
        said.push('\n');
    }
    let status = child.wait().unwrap();
    Err((status.code(), said))
}

/// `openssl rand -hex 32` shows all 16 digits only about three times in four: a secret is
/// judged by the alphabet it is drawn from, so every one of them starts a production node.
#[test]
fn production_takes_any_random_hex_base64_or_passphrase_secret() {
    let production = |secret: &str| {
        starts_with(&[
            ("STOA_ENVIRONMENT", "production"),
            ("STOA_AUTH__JWT_SECRET", secret),
        ])
    };
    // 64 hex digits of which 13, 14 and 15 distinct (as openssl makes now and then).
    for secret in [
        "94b5cbba807c3a021573681930b3642c62cc1299722003c3224538aa32b36405",
        "6224154d9909ab5145d47b5277b2040b5d608c6569d070b2931c3d758584c719",
        "bcc5d406135895e254eb814a542c1a2bb472b0198e603b95d47a620ea0c75d32",
        "base64:q3Jx9Xl0m2C8sZt4pVfA7bN1yE6wK5uHd0gR2iT8oQc=",
        "mosaic thunder lantern quiver saddle orbit pumice velvet walnut harbor ember canyon \
         frost meadow cobalt juniper tundra parsley glimmer anchor",
    ] {
        assert_eq!(production(secret), Ok(()), "{secret}");
    }
    for weak in [
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "correct horse battery staple",
        "9b0a7c13e5d2f4683b9a0c1e5d7f2468",
    ] {
        let (code, said) = production(weak).expect_err(weak);
        assert_eq!(code, Some(78), "{weak}: {said}");
        assert!(said.contains("auth.jwt_secret"), "{said}");
    }
}
