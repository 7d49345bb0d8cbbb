//! `stoa [--config FILE] [COMMAND]`: loads the configuration, then serves until
//! SIGTERM/SIGINT (no command), builds a benchmark workspace (`seed`), rebuilds the
//! Elasticsearch index from the database (`reindex`), copies the SQLite database while the
//! server runs (`backup FILE`) or puts a copy back (`restore FILE`), or asks a running
//! node whether it is ready (`healthcheck`).

use std::path::PathBuf;
use std::process::ExitCode;

use stoa::config::Settings;
use stoa::startup::Application;

fn usage() -> ExitCode {
    eprintln!(
        "usage: stoa [--config FILE] [seed [OPTIONS] | reindex | backup FILE | restore FILE | user disable|enable EMAIL | healthcheck [--url URL]]"
    );
    eprintln!("  (no command)  serve until SIGTERM or SIGINT");
    eprintln!(
        "  seed          build a large workspace for benchmarks: --events N (1000000) \
         --documents N (10000) --comments N (50000) --members N (50) --days N (365) --seed N \
         --workspace NAME"
    );
    eprintln!("  reindex       rebuild the Elasticsearch index (search.elasticsearch_url) from the database");
    eprintln!(
        "  backup FILE   a consistent copy of the SQLite database, taken while the server runs"
    );
    eprintln!("  restore FILE  put a backup in the database's place (refused while a server uses data_dir)");
    eprintln!(
        "  user disable EMAIL  disable an account: its sessions end on every node (its sockets close, its tokens are refused); user enable EMAIL undoes it"
    );
    eprintln!("  healthcheck   exit 0 when the node on server.port answers /readyz with 200 (or --url URL)");
    eprintln!(
        "configuration: config/default.toml, then FILE, then STOA_<SECTION>__<KEY> variables"
    );
    ExitCode::from(2)
}

/// SIGTERM and SIGINT, registered together.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

fn main() -> ExitCode {
    let mut config_file: Option<PathBuf> = None;
    let mut command: Option<(String, Vec<String>)> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => match args.next() {
                Some(path) => config_file = Some(PathBuf::from(path)),
                None => return usage(),
            },
            "--help" | "-h" => {
                usage();
                return ExitCode::SUCCESS;
            }
            "seed" | "reindex" | "backup" | "restore" | "healthcheck" | "user" => {
                command = Some((arg.clone(), args.by_ref().collect()));
            }
            _ => return usage(),
        }
    }
    let settings = match Settings::load(config_file.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stoa: {e}");
            return ExitCode::from(78);
        }
    };
    if let Some((name, rest)) = &command {
        if name == "healthcheck" {
            // Quiet and quick: an orchestrator runs it every few seconds.
            return healthcheck(&settings, rest);
        }
    }
    stoa::telemetry::init(&settings.log);
    if let Some((name, rest)) = command {
        return run_command(&settings, &name, &rest);
    }
    let drain_secs = settings.server.drain_secs;
    let result = actix_web::rt::System::new().block_on(async move {
        // Listen for signals before the port opens, so no signal can arrive unhandled.
        let signals = Signals::listen().map_err(|e| stoa::startup::StartupError::Bind {
            addr: "signal handler".into(),
            source: e,
        })?;
        let mut signal = Box::pin(signals.recv());
        // A signal during start-up (a database that does not answer, a long migration)
        // stops it there: each migration runs in its own transaction, rolled back when its
        // connection is dropped.
        let app = tokio::select! {
            app = Application::build(settings) => app?,
            name = &mut signal => {
                tracing::info!(signal = name, "stopped during start-up");
                return Ok(());
            }
        };
        let handle = app.handle();
        let realtime = app.realtime();
        let drain = std::time::Duration::from_secs(drain_secs);
        actix_web::rt::spawn(async move {
            let name = signal.await;
            tracing::info!(signal = name, "shutting down; finishing in-flight requests");
            realtime.begin_shutdown();
            realtime.drain(drain).await;
            // The sockets are not the HTTP server's connections: let their close frames
            // go out before the workers stop.
            realtime
                .sockets_closed(std::time::Duration::from_secs(3))
                .await;
            // Every Yjs update applied is written before the process ends.
            realtime
                .documents_written(std::time::Duration::from_secs(5))
                .await;
            handle.stop(true).await;
        });
        app.run_until_stopped()
            .await
            .map_err(|e| stoa::startup::StartupError::Bind {
                addr: "server".into(),
                source: e,
            })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "stoa failed");
            eprintln!("stoa: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `seed`, `reindex`, `backup`, `restore` and `user`: one-off work against the configured
/// database.
fn run_command(settings: &Settings, name: &str, args: &[String]) -> ExitCode {
    let result = actix_web::rt::System::new().block_on(async move {
        match name {
            "seed" => {
                let plan = stoa::seed::SeedPlan::parse(args)?;
                stoa::seed::run(settings, &plan).await
            }
            "user" => {
                let (disabled, email) = match args {
                    [verb, email] if verb == "disable" => (true, email),
                    [verb, email] if verb == "enable" => (false, email),
                    _ => return Err("usage: stoa user disable|enable EMAIL".to_string()),
                };
                let done = stoa::ops::set_user_disabled(settings, email, disabled).await?;
                println!("{done}");
                Ok(())
            }
            "backup" | "restore" => {
                let [file] = args else {
                    return Err(format!("usage: stoa {name} FILE"));
                };
                let path = std::path::Path::new(file);
                let done = if name == "backup" {
                    stoa::ops::backup(settings, path).await?
                } else {
                    stoa::ops::restore(settings, path).await?
                };
                println!("{done}");
                Ok(())
            }
            _ => {
                if !args.is_empty() {
                    return Err("reindex takes no options".to_string());
                }
                reindex(settings).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stoa {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck(settings: &Settings, args: &[String]) -> ExitCode {
    let url = match args {
        [] => None,
        [flag, url] if flag == "--url" => Some(url.as_str()),
        _ => return usage(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(stoa::ops::healthcheck(settings, url)),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stoa healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn reindex(settings: &Settings) -> Result<(), String> {
    use stoa::search::elastic::{reindex, Elastic};
    if settings.search.elasticsearch_url.is_empty() {
        return Err(
            "search.elasticsearch_url is not set; the database's own index is always current"
                .into(),
        );
    }
    let es = Elastic::new(&settings.search)?;
    let store = stoa::store::SqlStore::connect(&settings.database)
        .await
        .map_err(|e| format!("database: {e}"))?;
    let started = std::time::Instant::now();
    let (documents, comments) = reindex(&store, &es, settings.search.elasticsearch_batch)
        .await
        .map_err(|e| e.to_string())?;
    store.close().await;
    println!(
        "{}",
        serde_json::json!({
            "index": es.index(),
            "documents": documents,
            "comments": comments,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}
