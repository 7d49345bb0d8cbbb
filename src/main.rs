//! `stoa [--config FILE]`: loads the configuration, then serves until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use stoa::config::Settings;
use stoa::startup::Application;

fn usage() -> ExitCode {
    eprintln!("usage: stoa [--config FILE]");
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
    stoa::telemetry::init(&settings.log);
    let drain_secs = settings.server.drain_secs;
    let result = actix_web::rt::System::new().block_on(async move {
        // Listen for signals before the port opens, so no signal can arrive unhandled.
        let signals = Signals::listen().map_err(|e| stoa::startup::StartupError::Bind {
            addr: "signal handler".into(),
            source: e,
        })?;
        let app = Application::build(settings).await?;
        let handle = app.handle();
        let realtime = app.realtime();
        let drain = std::time::Duration::from_secs(drain_secs);
        actix_web::rt::spawn(async move {
            let name = signals.recv().await;
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
