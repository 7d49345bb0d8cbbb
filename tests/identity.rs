//! The product's own tokens (`auth.external`), end to end: the example backend of
//! `docs/IDENTITY.md` (`docs/examples/product-backend.mjs`) mints HS256 and
//! RS256 tokens, and the stock `phoenix` and `y-websocket` clients use them against a real
//! server on SQLite and on PostgreSQL (`e2e/identity/product_tokens.mjs`). Needs `node` and
//! `npm ci --prefix e2e`; without them the suite is skipped with a notice, except under
//! `CI=true`, where it fails.

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Backend, TestDb};
use stoa::config::Settings;
use stoa::startup::Application;

const SHARED_SECRET: &str = "product-shared-secret-0123456789abcdef-GHIJKLMNOPQRSTUV";

fn missing(what: &str) {
    let msg = format!("the identity suite needs {what}; run `npm ci --prefix e2e` (.ci/run does)");
    if common::binary::ci() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
}

/// Kills the backend when the test ends, however it ends.
struct ProductBackend(std::process::Child);

impl Drop for ProductBackend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_web::test]
async fn product_tokens_with_the_stock_clients_on_sqlite() {
    run(Backend::Sqlite).await;
}

#[actix_web::test]
async fn product_tokens_with_the_stock_clients_on_postgres() {
    run(Backend::Postgres).await;
}

#[actix_web::test]
async fn mail_links_with_a_real_smtp_server_on_sqlite() {
    mail(Backend::Sqlite).await;
}

#[actix_web::test]
async fn mail_links_with_a_real_smtp_server_on_postgres() {
    mail(Backend::Postgres).await;
}

#[actix_web::test]
async fn single_sign_on_with_a_real_provider_on_sqlite() {
    oidc(Backend::Sqlite).await;
}

#[actix_web::test]
async fn single_sign_on_with_a_real_provider_on_postgres() {
    oidc(Backend::Postgres).await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// OpenID Connect single sign-on: npm `oidc-provider`, run by `e2e/identity/oidc.mjs` as
/// the identity provider, and the suite drives browsers through the whole code flow.
async fn oidc(backend: Backend) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = root.join("e2e");
    if !suite.join("node_modules/oidc-provider").is_dir() {
        return missing("e2e/node_modules");
    }
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    // The provider listens once the suite starts; Stoa asks it for its metadata only at
    // the first sign-in. The redirect URL the provider knows needs Stoa's port up front.
    let provider_port = free_port();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut settings = Settings::load_with_env(None, Vec::new()).expect("default settings");
    settings.server.port = port;
    settings.server.workers = 2;
    settings.server.public_url = url.clone();
    settings.data_dir = db.dir.path().to_path_buf();
    settings.database.url = db.url.clone();
    settings.auth.jwt_secret = "e2e-test-secret-0123456789abcdef-GHIJKLMNOPQRSTUV".into();
    settings.auth.password_hash_memory_kib = 1024;
    settings.auth.password_hash_iterations = 1;
    settings.auth.login_attempts_per_minute = 10_000;
    settings.auth.require_verified_email = "false".into();
    settings.auth.oidc = vec![stoa::config::OidcProviderSettings {
        name: "test".into(),
        display_name: "Test IdP".into(),
        issuer: format!("http://127.0.0.1:{provider_port}"),
        client_id: "stoa".into(),
        client_secret: "stoa-client-secret-0123456789".into(),
        client_auth: "basic".into(),
        scopes: vec!["openid".into(), "email".into(), "profile".into()],
        trust_email: false,
        metadata_refresh_secs: 3600,
        timeout_secs: 10,
    }];
    let app = Application::build(settings).await.expect("server starts");
    let store = app.store();
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    let output = actix_web::rt::task::spawn_blocking(move || {
        Command::new("node")
            .args([
                "--test",
                "--test-concurrency=1",
                "--test-reporter=spec",
                "--test-timeout=60000",
                "--test-force-exit",
                "identity/oidc.mjs",
            ])
            .current_dir(&suite)
            .env("STOA_URL", &url)
            .env("PROVIDER_PORT", provider_port.to_string())
            .output()
    })
    .await
    .expect("node runs")
    .expect("node starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "the single sign-on suite failed");
    // Refused sign-ins left nothing behind: no account for the unverified address.
    use stoa::store::prelude::*;
    let mallory = store
        .user_credentials("mallory@acme.test")
        .await
        .expect("the database answers");
    assert!(
        mallory.is_none(),
        "an account was made for an unverified address"
    );
    handle.stop(true).await;
}

/// Verification, invitations and password reset: Stoa sends to the SMTP server the suite
/// runs (`e2e/identity/mail.mjs`, npm `smtp-server`), and the suite follows the links.
async fn mail(backend: Backend) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = root.join("e2e");
    if !suite.join("node_modules/smtp-server").is_dir() {
        return missing("e2e/node_modules");
    }
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    // A free port for the suite's SMTP server, which listens before any mail is sent.
    let smtp_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut settings = Settings::load_with_env(None, Vec::new()).expect("default settings");
    settings.server.port = 0;
    settings.server.workers = 2;
    settings.server.public_url = "https://stoa.example.com".into();
    settings.data_dir = db.dir.path().to_path_buf();
    settings.database.url = db.url.clone();
    settings.auth.jwt_secret = "e2e-test-secret-0123456789abcdef-GHIJKLMNOPQRSTUV".into();
    settings.auth.password_hash_memory_kib = 1024;
    settings.auth.password_hash_iterations = 1;
    settings.auth.login_attempts_per_minute = 10_000;
    settings.auth.require_verified_email = "true".into();
    settings.smtp.url = format!("smtp://127.0.0.1:{smtp_port}");
    settings.smtp.from = "Stoa <stoa@stoa.example.com>".into();
    // Digests of what stays unread a second, looked for every second.
    settings.smtp.digest_delay_secs = 1;
    settings.smtp.digest_every_secs = 1;
    let app = Application::build(settings).await.expect("server starts");
    let url = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    let output = actix_web::rt::task::spawn_blocking(move || {
        Command::new("node")
            .args([
                "--test",
                "--test-concurrency=1",
                "--test-reporter=spec",
                "--test-timeout=60000",
                "--test-force-exit",
                "identity/mail.mjs",
            ])
            .current_dir(&suite)
            .env("STOA_URL", &url)
            .env("SMTP_PORT", smtp_port.to_string())
            .env("PUBLIC_URL", "https://stoa.example.com")
            .output()
    })
    .await
    .expect("node runs")
    .expect("node starts");
    handle.stop(true).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "the mail suite failed");
}

async fn run(backend: Backend) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = root.join("e2e");
    if !suite.join("node_modules/phoenix").is_dir() {
        return missing("e2e/node_modules");
    }
    if Command::new("node").arg("--version").output().is_err() {
        return missing("node");
    }
    let mut child = Command::new("node")
        .arg(root.join("docs/examples/product-backend.mjs"))
        .env("PORT", "0")
        .env("STOA_SHARED_SECRET", SHARED_SECRET)
        .stdout(Stdio::piped())
        .spawn()
        .expect("node starts the example backend");
    let stdout = child.stdout.take().expect("piped");
    let product_backend = ProductBackend(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the backend says where it listens");
    let product = line
        .trim()
        .rsplit(' ')
        .next()
        .expect("an address")
        .to_string();
    assert!(product.starts_with("http://127.0.0.1:"), "{line}");

    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let mut settings = Settings::load_with_env(None, Vec::new()).expect("default settings");
    settings.server.port = 0;
    settings.server.workers = 2;
    settings.data_dir = db.dir.path().to_path_buf();
    settings.database.url = db.url.clone();
    settings.auth.jwt_secret = "e2e-test-secret-0123456789abcdef-GHIJKLMNOPQRSTUV".into();
    settings.auth.external.issuer = "https://product.example".into();
    settings.auth.external.hs256_secret = SHARED_SECRET.into();
    settings.auth.external.jwks_url = format!("{product}/jwks.json");
    settings.auth.external.roles_claim = "stoa_roles".into();
    settings.http.user_requests_per_sec = 10_000;
    settings.http.user_request_burst = 10_000;
    let app = Application::build(settings.clone())
        .await
        .expect("server starts");
    // The operator's command for the backend's directory token.
    let token =
        stoa::ops::create_api_token(&settings, "product backend", &["directory".into()], None)
            .await
            .expect("token created");
    let token = token["token"].as_str().expect("the token").to_string();
    let url = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());

    let output = actix_web::rt::task::spawn_blocking(move || {
        Command::new("node")
            .args([
                "--test",
                "--test-concurrency=1",
                "--test-reporter=spec",
                "--test-timeout=60000",
                "--test-force-exit",
                "identity/product_tokens.mjs",
            ])
            .current_dir(&suite)
            .env("STOA_URL", &url)
            .env("PRODUCT_URL", &product)
            .env("DIRECTORY_TOKEN", &token)
            .output()
    })
    .await
    .expect("node runs")
    .expect("node starts");
    handle.stop(true).await;
    drop(product_backend);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "the identity suite failed");
}
