//! The `stoa` binary as an operator runs it: configuration errors stop start-up with a
//! message naming the key, and SIGTERM shuts the server down cleanly.

use std::process::{Command, Stdio};

#[path = "common/binary.rs"]
mod binary;
#[path = "common/http.rs"]
mod http;

fn stoa() -> Command {
    binary::bare()
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
    assert_eq!(out.status.code(), Some(78));
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
    let mut lines = binary::Lines::of(&mut child);
    let (_, seen) = lines.until(|l| l.contains("stoa listening"));
    let port = seen
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "stoa listening")
        .and_then(|v| v["port"].as_u64())
        .unwrap_or_else(|| panic!("no listening line in {seen:#?}"));
    assert!(
        seen.iter().any(|l| l.contains("generated JWT secret")),
        "development warns about its secret"
    );

    // The default configuration created the embedded database under data/.
    assert!(dir.path().join("data/stoa.db").exists());
    assert!(dir.path().join("data/jwt_secret").exists());
    // A plain HTTP exchange: the server is up and answering before it is told to stop.
    let answer = http::send(port as u16, "GET", "/healthz", &[], b"");
    assert_eq!(answer.status, 200, "{}", answer.text());

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest = lines.rest();
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
    let mut warned = Vec::new();
    let mut listening = false;
    let (_, lines) = binary::Lines::of(&mut child).until(|l| l.contains("stoa listening"));
    for line in lines {
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
    let (listening, said) = binary::Lines::of(&mut child).until(|l| l.contains("stoa listening"));
    if listening {
        let _ = child.kill();
        let _ = child.wait();
        return Ok(());
    }
    let status = child.wait().unwrap();
    Err((status.code(), said.join("\n")))
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

/// `--help` on the binary and on every command says what it takes, exits 0 and touches
/// nothing (no data directory, no lock, no database); a value that does not parse is
/// refused with exit code 2 and its flag named, never replaced by a default.
#[test]
fn every_command_takes_help_and_a_bad_value_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for command in [
        &[][..],
        &["seed"],
        &["reindex"],
        &["backup"],
        &["restore"],
        &["user"],
        &["user", "disable"],
        &["token"],
        &["token", "create"],
        &["healthcheck"],
    ] {
        let out = stoa()
            .current_dir(dir.path())
            .args(command)
            .arg("--help")
            .output()
            .expect("runs");
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{command:?}: {said}");
        assert!(said.contains("Usage: stoa"), "{command:?}: {said}");
        assert!(said.contains("--config"), "{command:?}: {said}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "--help left {left:?}");

    for (args, named) in [
        (&["seed", "--members", "lots"][..], "--members"),
        (&["seed", "--members", "0"], "--members"),
        (&["seed", "--days", "4000"], "--days"),
        (&["seed", "--documents"], "--documents"),
        (&["seed", "--colour", "red"], "--colour"),
        (&["backup"], "FILE"),
        (&["user", "delete", "a@b.c"], "delete"),
        (&["healthcheck", "--url"], "--url"),
        (
            &["token", "create", "--name", "x", "--scope", "root"],
            "--scope",
        ),
        (&["token", "create", "--name", "x"], "--scope"),
    ] {
        let out = stoa()
            .current_dir(dir.path())
            .args(args)
            .output()
            .expect("runs");
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains(named), "{args:?}: {said}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "a refused command left {left:?}");
}

/// `stoa token create` prints a token once, in a form recognisable in a leak (`stoa_…`);
/// the database keeps only its digest.
#[test]
fn token_create_prints_the_token_once_and_keeps_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let out = stoa()
        .current_dir(dir.path())
        .args([
            "token",
            "create",
            "--name",
            "backend",
            "--scope",
            "directory",
        ])
        .output()
        .expect("runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let made: serde_json::Value = serde_json::from_str(said.trim()).expect("JSON");
    let token = made["token"].as_str().expect("the token");
    assert!(token.starts_with("stoa_") && token.len() > 40, "{token}");
    assert_eq!(made["scopes"], serde_json::json!(["directory"]));
    let db = std::fs::read(dir.path().join("data/stoa.db")).expect("the database");
    let raw = String::from_utf8_lossy(&db);
    assert!(!raw.contains(token), "the token is stored in clear");
    assert!(
        raw.contains(&stoa::auth::token_digest(token)),
        "its digest is kept"
    );
}

/// What only a change of configuration mends exits 78, found while loading or while
/// starting (so `RestartPreventExitStatus=78` stops the restart loop); a database that does
/// not answer exits 1 (it may come back), after `database.connect_timeout_secs`.
#[test]
fn configuration_that_cannot_work_exits_78_wherever_it_is_found() {
    for env in [
        &[("STOA_REDIS__URL", "redis://127.0.0.1:notaport/")][..],
        &[("STOA_SEARCH__ELASTICSEARCH_URL", "http://")],
        &[
            ("STOA_SERVER__TLS_CERT", "/nonexistent/cert.pem"),
            ("STOA_SERVER__TLS_KEY", "/nonexistent/key.pem"),
        ],
        &[("STOA_AUTH__JWT_SECRET", "base64:$(openssl rand -base64 32)")],
    ] {
        let (code, said) = starts_with(env).expect_err("refused");
        assert_eq!(code, Some(78), "{env:?}: {said}");
    }
    // The generated development secret's file cannot be read (here: it is a directory).
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data/jwt_secret")).unwrap();
    let out = stoa()
        .current_dir(dir.path())
        .env("STOA_SERVER__PORT", "0")
        .output()
        .expect("runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{said}");
    assert!(said.contains("jwt_secret"), "{said}");

    // A PostgreSQL that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("postgres://stoa@{}/stoa", silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    let (code, said) = starts_with(&[
        ("STOA_DATABASE__URL", &url),
        ("STOA_DATABASE__CONNECT_TIMEOUT_SECS", "1"),
    ])
    .expect_err("no database");
    let waited = started.elapsed();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("database.connect_timeout_secs"), "{said}");
    assert!(
        waited < std::time::Duration::from_secs(10),
        "start-up waited {waited:?} for a 1 s connect timeout"
    );
}

/// Logs written to a pipe (a file, journald) carry no terminal colour codes, and start-up
/// says where to go next.
#[test]
fn logs_to_a_pipe_are_plain_and_say_where_to_go_next() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = stoa()
        .current_dir(dir.path())
        .env("STOA_SERVER__PORT", "0")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let (_, seen) = binary::Lines::of(&mut child).until(|l| l.contains("next:"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter().any(|l| l.contains("stoa listening")),
        "{seen:#?}"
    );
    assert!(
        seen.iter().all(|l| !l.contains('\u{1b}')),
        "colour codes in a pipe: {seen:#?}"
    );
    let next = seen.last().unwrap();
    assert!(next.contains("/api/v1/auth/register"), "{next}");
    assert!(next.contains("/api/openapi.json"), "{next}");
}

/// `STOA_CONFIG` names the configuration file for every command, as `--config` does: the
/// image's health check and `docker exec … stoa backup` then read the file the server reads.
#[test]
fn stoa_config_names_the_file_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let file = dir.path().join("stoa.toml");
    std::fs::write(
        &file,
        format!(
            "data_dir = \"{0}/elsewhere\"\n[server]\nport = {port}\n[database]\nurl = \"sqlite://{0}/elsewhere/stoa.db\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = stoa()
        .current_dir(dir.path())
        .env("STOA_CONFIG", &file)
        .env("STOA_LOG__FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let (listening, _) = binary::Lines::of(&mut child).until(|l| l.contains("stoa listening"));
    assert!(listening, "the server did not start");
    let health = |env: Option<&std::path::Path>| {
        let mut cmd = stoa();
        cmd.current_dir(dir.path());
        if let Some(file) = env {
            cmd.env("STOA_CONFIG", file);
        }
        cmd.arg("healthcheck").output().expect("runs")
    };
    let out = health(Some(&file));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The backup reads the database the file names, not the default one.
    let copy = dir.path().join("copy.db");
    let out = stoa()
        .current_dir(dir.path())
        .env("STOA_CONFIG", &file)
        .arg("backup")
        .arg(&copy)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(copy.exists());
    assert!(
        !dir.path().join("data").exists(),
        "the default data_dir was used"
    );
    let _ = child.kill();
    let _ = child.wait();
    // With the server gone the same check fails.
    assert_ne!(health(Some(&file)).status.code(), Some(0));
}

/// The image builds from what the Dockerfile copies: everything compiled into the binary
/// (each folder `build.rs` watches: the migrations, the console's bundle) is copied before
/// the release build, or the image would fail to build or ship without it.
#[test]
fn the_image_copies_everything_the_binary_embeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let build = std::fs::read_to_string(root.join("build.rs")).expect("build.rs");
    let docker = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    let watched: Vec<&str> = build
        .lines()
        .filter_map(|l| l.split("cargo:rerun-if-changed=").nth(1))
        .map(|rest| rest.trim_end_matches([')', ';', '"']))
        .collect();
    assert!(watched.contains(&"web/dist"), "{watched:?}");
    for path in watched {
        assert!(
            docker
                .lines()
                .any(|l| l.trim() == format!("COPY {path} {path}")),
            "the Dockerfile does not copy {path}"
        );
    }
}
