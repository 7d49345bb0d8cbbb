//! `stoa [--config FILE] [COMMAND]`: loads the configuration, then serves until
//! SIGTERM/SIGINT (no command), builds a benchmark workspace (`seed`), rebuilds the
//! Elasticsearch index from the database (`reindex`), copies the SQLite database while the
//! server runs (`backup FILE`) or puts a copy back (`restore FILE`), disables or enables an
//! account (`user`), or asks a running node whether it is ready (`healthcheck`). `--help`
//! on any of them says what it takes, and touches nothing.
//!
//! Exit codes: 0 done; 2 a command line that does not parse; 78 (EX_CONFIG) a configuration
//! that cannot work (a service manager should not restart it: `deploy/stoa.service`);
//! 1 anything else (a database that does not answer, a port in use).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use stoa::config::Settings;
use stoa::startup::{Application, StartupError};

/// Stoa: real-time collaboration server (REST, Phoenix Channels, y-websocket).
///
/// Without a command it serves until SIGTERM or SIGINT. Configuration: config/default.toml,
/// then the file given with --config (or STOA_CONFIG), then STOA_<SECTION>__<KEY> variables.
#[derive(Parser)]
#[command(name = "stoa", version)]
struct Cli {
    /// A configuration file, layered over the defaults (STOA_* variables override it).
    #[arg(short, long, value_name = "FILE", env = "STOA_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Build a large workspace for benchmarks (members, documents, comments, a year of events).
    Seed(SeedArgs),
    /// Rebuild the Elasticsearch index (search.elasticsearch_url) from the database.
    Reindex,
    /// Write a consistent copy of the SQLite database, taken while the server runs.
    Backup {
        /// Where the copy goes (it must not exist).
        file: PathBuf,
    },
    /// Put a backup in the database's place (refused while a server uses data_dir).
    Restore {
        /// The backup to restore.
        file: PathBuf,
    },
    /// Compare the blob store with the attachments the database records: bytes missing,
    /// and bytes nothing names (after restoring a backup).
    Blobs {
        #[command(subcommand)]
        action: BlobsAction,
    },
    /// Disable or enable an account.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// API tokens for services (the product's backend).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Exit 0 when the node on server.port answers /readyz with 200.
    Healthcheck {
        /// Ask this URL's /readyz instead (e.g. http://10.0.0.5:8080).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum BlobsAction {
    /// Report attachments whose bytes are missing and blobs no attachment names.
    Check {
        /// Remove the blobs no attachment names.
        #[arg(long)]
        remove_orphans: bool,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// End the account's sessions on every node (its sockets close, its tokens are
    /// refused) and refuse its sign-ins.
    Disable { email: String },
    /// Let a disabled account sign in again.
    Enable { email: String },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token and print it (it is shown this once; only its digest is kept).
    Create {
        /// What the token is for, e.g. the service that holds it.
        #[arg(long)]
        name: String,
        /// A scope: `directory` (PUT/DELETE /api/v1/directory/…). Repeatable.
        #[arg(long = "scope", required = true, value_parser = ["directory"])]
        scopes: Vec<String>,
        /// Days until it expires (none: it lasts until revoked).
        #[arg(long, value_parser = count(1, 3650))]
        expires_in_days: Option<u64>,
    },
}

/// What `stoa seed` builds (`_` may separate digits: 1_000_000).
#[derive(Args)]
struct SeedArgs {
    /// Name of the workspace.
    #[arg(long, default_value = "Seeded")]
    workspace: String,
    /// Members, 1 to 100,000.
    #[arg(long, default_value = "50", value_parser = count(1, 100_000))]
    members: u64,
    /// Documents, up to 10,000,000.
    #[arg(long, default_value = "10000", value_parser = count(0, 10_000_000))]
    documents: u64,
    /// Comments, up to 10,000,000.
    #[arg(long, default_value = "50000", value_parser = count(0, 10_000_000))]
    comments: u64,
    /// Events in the log in all (those of the documents and comments included), up to 100,000,000.
    #[arg(long, default_value = "1000000", value_parser = count(0, 100_000_000))]
    events: u64,
    /// Days the log spans up to now, 1 to 3,650.
    #[arg(long, default_value = "365", value_parser = count(1, 3650))]
    days: u64,
    /// The random seed: the same seed builds the same workspace.
    #[arg(long, default_value = "1", value_parser = count(0, u64::MAX))]
    seed: u64,
}

/// A whole number within `min..=max`, digits optionally grouped with `_`.
fn count(
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |text| {
        let n: u64 = text
            .replace('_', "")
            .parse()
            .map_err(|_| format!("{text:?} is not a whole number"))?;
        if n < min || n > max {
            return Err(format!("must be between {min} and {max}"));
        }
        Ok(n)
    }
}

impl SeedArgs {
    fn plan(self) -> stoa::seed::SeedPlan {
        // The parsers bound every value to its type's range.
        let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        stoa::seed::SeedPlan {
            workspace: self.workspace,
            members: small(self.members),
            documents: small(self.documents),
            comments: small(self.comments),
            events: self.events,
            days: small(self.days),
            seed: self.seed,
        }
    }
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
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stoa: {e}");
            return ExitCode::from(StartupError::CONFIG_EXIT);
        }
    };
    if let Some(Command::Healthcheck { url }) = &cli.command {
        // Quiet and quick: an orchestrator runs it every few seconds.
        return healthcheck(&settings, url.as_deref());
    }
    stoa::telemetry::init(&settings.log);
    if let Some(command) = cli.command {
        return run_command(&settings, command);
    }
    let drain_secs = settings.server.drain_secs;
    let result = actix_web::rt::System::new().block_on(async move {
        // Listen for signals before the port opens, so no signal can arrive unhandled.
        let signals = Signals::listen().map_err(StartupError::Signals)?;
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
        app.run_until_stopped().await.map_err(StartupError::Serve)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "stoa failed");
            eprintln!("stoa: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `seed`, `reindex`, `backup`, `restore` and `user`: one-off work against the configured
/// database.
fn run_command(settings: &Settings, command: Command) -> ExitCode {
    let name = match &command {
        Command::Seed(_) => "seed",
        Command::Reindex => "reindex",
        Command::Backup { .. } => "backup",
        Command::Restore { .. } => "restore",
        Command::Blobs { .. } => "blobs",
        Command::User { .. } => "user",
        Command::Token { .. } => "token",
        Command::Healthcheck { .. } => "healthcheck",
    };
    let result = actix_web::rt::System::new().block_on(async move {
        let done: Result<(), Box<dyn std::error::Error>> = match command {
            Command::Seed(args) => Ok(stoa::seed::run(settings, &args.plan()).await?),
            Command::User { action } => {
                let (disabled, email) = match action {
                    UserAction::Disable { email } => (true, email),
                    UserAction::Enable { email } => (false, email),
                };
                let done = stoa::ops::set_user_disabled(settings, &email, disabled).await?;
                println!("{done}");
                Ok(())
            }
            Command::Token {
                action:
                    TokenAction::Create {
                        name,
                        scopes,
                        expires_in_days,
                    },
            } => {
                let token =
                    stoa::ops::create_api_token(settings, &name, &scopes, expires_in_days).await?;
                println!("{token}");
                Ok(())
            }
            Command::Backup { file } => {
                println!("{}", stoa::ops::backup(settings, &file).await?);
                Ok(())
            }
            Command::Restore { file } => {
                println!("{}", stoa::ops::restore(settings, &file).await?);
                Ok(())
            }
            Command::Blobs {
                action: BlobsAction::Check { remove_orphans },
            } => {
                println!(
                    "{}",
                    stoa::ops::blobs_check(settings, remove_orphans).await?
                );
                Ok(())
            }
            Command::Reindex => Ok(reindex(settings).await?),
            Command::Healthcheck { url } => {
                Ok(stoa::ops::healthcheck(settings, url.as_deref()).await?)
            }
        };
        done
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stoa {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck(settings: &Settings, url: Option<&str>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt
            .block_on(stoa::ops::healthcheck(settings, url))
            .map_err(|e| e.to_string()),
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

async fn reindex(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    use stoa::search::elastic::{reindex, Elastic};
    if settings.search.elasticsearch_url.is_empty() {
        return Err(
            "search.elasticsearch_url is not set; the database's own index is always current"
                .into(),
        );
    }
    let es = Elastic::new(&settings.search).map_err(|e| e.to_string())?;
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
