//! Builds the whole application from [`Settings`]: storage, auth material, metrics and the
//! HTTP server bound to its port (port 0 in tests), ready to run.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_http::HttpService;
use actix_server::{Server, ServerHandle};
use actix_service::{map_config, IntoServiceFactory};
use actix_web::dev::AppConfig;
use actix_web::http::header;
use actix_web::middleware::from_fn;
use actix_web::web;

use crate::api::{self, AppState, SocketOrigins, REQUEST_ID};
use crate::auth::{AuthLimits, JwtKeys, PasswordHasher, PasswordParams, PasswordWork};
use crate::bus::RedisBus;
use crate::config::{ConfigError, Environment, Settings};
use crate::metrics::Metrics;
use crate::realtime::{Realtime, StoreAuthorizer, StoreDocs, StoreEventLog};
use crate::store::{SqlStore, StoreError};
use crate::transport::upgrade;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database ({url}): {source}")]
    Store { url: String, source: StoreError },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("configuration key `auth.password_hash_memory_kib`: {0}")]
    Password(crate::auth::PasswordError),
    #[error("data directory: {0}")]
    DataDir(crate::ops::OpsError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen for SIGTERM and SIGINT: {0}")]
    Signals(std::io::Error),
    #[error("server: {0}")]
    Serve(std::io::Error),
}

impl StartupError {
    /// The exit code of a configuration that cannot work (EX_CONFIG of sysexits.h): a
    /// service manager that restarts a failed node should not restart this one
    /// (`RestartPreventExitStatus=78` in `deploy/stoa.service`).
    pub const CONFIG_EXIT: u8 = 78;

    /// [`Self::CONFIG_EXIT`] for what only a change of configuration mends (a bad key, a
    /// secret or TLS file that cannot be read, password hashing parameters, a Redis or
    /// Elasticsearch URL that cannot be used); 1 for what may pass (a database that does not
    /// answer yet, a port in use, a data directory held by another server).
    pub fn exit_code(&self) -> u8 {
        match self {
            StartupError::Config(_) | StartupError::Password(_) | StartupError::Tls(_) => {
                Self::CONFIG_EXIT
            }
            StartupError::Store { source, .. } if source.is_configuration() => Self::CONFIG_EXIT,
            _ => 1,
        }
    }
}

pub struct Application {
    port: u16,
    server: Server,
    store: Arc<SqlStore>,
    realtime: Realtime,
    search: Arc<dyn crate::search::SearchBackend>,
    upkeep: actix_web::rt::task::JoinHandle<()>,
    /// Held while the server runs: `stoa restore` refuses meanwhile.
    _data_dir: crate::ops::DataDirLock,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        tune_allocator();
        tracing::info!(
            database = %redact(&settings.database.url),
            "stoa starting: connecting to the database and applying migrations"
        );
        let data_dir =
            crate::ops::hold_data_dir(&settings.data_dir).map_err(StartupError::DataDir)?;
        for ignored in &settings.ignored_variables {
            tracing::warn!(
                variable = %ignored.name,
                nearest = %ignored.nearest,
                "{ignored}"
            );
        }
        let (secret, generated) = settings.resolve_jwt_secret()?;
        if generated {
            tracing::warn!(
                path = %settings.data_dir.join("jwt_secret").display(),
                "using a generated JWT secret (development only); set auth.jwt_secret in production"
            );
        }
        let store = SqlStore::connect(&settings.database)
            .await
            .map_err(|source| StartupError::Store {
                url: redact(&settings.database.url),
                source,
            })?;
        let store = Arc::new(store);
        let passwords = PasswordHasher::new(PasswordParams {
            memory_kib: settings.auth.password_hash_memory_kib,
            iterations: settings.auth.password_hash_iterations,
        })
        .map_err(StartupError::Password)?;
        let hash_slots = match settings.auth.password_hash_concurrency {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let passwords = PasswordWork::new(passwords, hash_slots, settings.auth.password_hash_queue);
        let refresh_key = secret.clone();
        let unsubscribe_key = secret.clone();
        let cluster = settings.cluster.cluster(&secret);
        let jwt = JwtKeys::new(
            secret,
            &settings.auth.issuer,
            &settings.auth.audience,
            settings.auth.access_token_ttl_secs,
        );
        let external = crate::auth::external::ExternalTokens::new(&settings.auth.external)
            .map_err(|e| {
                StartupError::Config(ConfigError::Invalid {
                    key: "auth.external",
                    message: e,
                })
            })?;
        if let Some(external) = &external {
            tracing::info!(
                issuer = external.issuer(),
                "accepting the product's own tokens"
            );
        }
        let identities = Arc::new(crate::identity::Identities::new(
            jwt.clone(),
            external,
            store.clone(),
        ));
        let realtime = Realtime::in_cluster(
            Arc::new(StoreAuthorizer {
                store: store.clone(),
                identities: identities.clone(),
            }),
            Arc::new(StoreEventLog {
                store: store.clone(),
            }),
            stoa_actors::Limits {
                // A session end is kept as long as the tokens it names can live.
                token_lifetime: Duration::from_secs(settings.auth.access_token_ttl_secs + 5),
                ..settings.realtime.limits()
            },
            cluster,
        );
        identities.attach(realtime.clone());
        realtime.set_doc_store(Arc::new(StoreDocs {
            store: store.clone(),
            version_interval_ms: (settings.documents.version_interval_secs * 1000) as i64,
            retention: crate::history::retention_of(
                settings.documents.version_keep_all_hours,
                settings.documents.version_keep_hourly_days,
            ),
        }));
        let bus_url = settings.bus_url();
        let bus_key = if settings.bus.url.is_empty() {
            "redis.url"
        } else {
            "bus.url"
        };
        let bus = if bus_url.is_empty() {
            None
        } else if bus_url.starts_with("amqp://") || bus_url.starts_with("amqps://") {
            let bus = crate::amqp::RabbitBus::start(bus_url, realtime.inbox()).map_err(|e| {
                StartupError::Config(ConfigError::Invalid {
                    key: bus_key,
                    message: e,
                })
            })?;
            let health = bus.health.clone();
            realtime.connect_bus(Arc::new(bus));
            tracing::info!(
                node = realtime.node_id(),
                "joined the cluster through RabbitMQ"
            );
            Some(health)
        } else {
            let bus = RedisBus::start(bus_url, realtime.inbox()).map_err(|e| {
                StartupError::Config(ConfigError::Invalid {
                    key: bus_key,
                    message: e.to_string(),
                })
            })?;
            let health = bus.health.clone();
            realtime.connect_bus(Arc::new(bus));
            tracing::info!(
                node = realtime.node_id(),
                "joined the cluster through Redis"
            );
            Some(health)
        };
        let search: Arc<dyn crate::search::SearchBackend> =
            if settings.search.elasticsearch_url.is_empty() {
                Arc::new(crate::search::SqlSearch(store.clone()))
            } else {
                use crate::search::elastic::{Elastic, ElasticSearch, Indexer};
                let es = Elastic::new(&settings.search).map_err(|e| {
                    StartupError::Config(ConfigError::Invalid {
                        key: "search.elasticsearch_url",
                        message: e.to_string(),
                    })
                })?;
                let es = Arc::new(es);
                let indexer = Indexer::start(
                    store.clone(),
                    es.clone(),
                    settings.search.elasticsearch_batch,
                );
                tracing::info!(index = es.index(), "search runs on Elasticsearch");
                Arc::new(ElasticSearch { es, indexer })
            };
        let webhook_policy = settings.webhooks.policy()?;
        let webhooks = crate::webhooks::WebhookApi::new(
            webhook_policy.clone(),
            settings.webhooks.max_per_workspace,
        )
        .map_err(|e| {
            StartupError::Config(ConfigError::Invalid {
                key: "webhooks",
                message: e.to_string(),
            })
        })?;
        crate::webhooks::start(store.clone(), webhook_policy, realtime.clone()).map_err(|e| {
            StartupError::Config(ConfigError::Invalid {
                key: "webhooks",
                message: e.to_string(),
            })
        })?;
        let metrics = Metrics::new(realtime.node_id());
        metrics.observe_realtime(realtime.clone());
        metrics.observe_database(store.clone());
        metrics.observe_process();
        if let Some(health) = &bus {
            metrics.observe_bus(health.clone());
        }
        let mailer = crate::mail::Mailer::new(&settings.smtp, metrics.mail_failures.clone())
            .map_err(|e| {
                StartupError::Config(ConfigError::Invalid {
                    key: "smtp.url",
                    message: e,
                })
            })?;
        let ldap = crate::auth::ldap::LdapDirectory::new(&settings.auth.ldap)
            .map_err(|e| {
                StartupError::Config(ConfigError::Invalid {
                    key: "auth.ldap",
                    message: e,
                })
            })?
            .map(Arc::new);
        let oidc = crate::auth::oidc::OidcProviders::new(
            &settings.auth.oidc,
            &settings.server.public_url(),
        )
        .map_err(|e| {
            StartupError::Config(ConfigError::Invalid {
                key: "auth.oidc",
                message: e,
            })
        })?;
        if !mailer.sends() {
            tracing::info!(
                "smtp.url is not set: no mail is sent (e-mail digests are off); the links it would carry are logged"
            );
        } else {
            let digests = crate::digest::Digests {
                store: store.clone(),
                mailer: mailer.clone(),
                delay: std::time::Duration::from_secs(settings.smtp.digest_delay_secs),
                every: std::time::Duration::from_secs(settings.smtp.digest_every_secs.max(1)),
                public_url: settings.server.public_url(),
                key: unsubscribe_key.clone(),
                realtime: realtime.clone(),
            };
            tokio::spawn(digests.run());
        }
        let blobs =
            crate::blobs::Blobs::open(&settings.storage, &settings.data_dir).map_err(|e| {
                StartupError::Config(ConfigError::Invalid {
                    key: "storage",
                    message: e,
                })
            })?;
        tracing::info!(store = %blobs.description, "attachments are kept in the {}", blobs.description);
        let sweeper = crate::blobs::Sweeper::new(
            store.clone(),
            blobs.clone(),
            std::time::Duration::from_secs(settings.storage.sweep_every_secs.max(1)),
            metrics.clone(),
        );
        tokio::spawn(sweeper.clone().run());
        crate::store::Accounts::require_verified_email(&*store, settings.require_verified_email());
        let tls = if settings.server.tls_cert.is_empty() {
            None
        } else {
            let config = crate::tls::server_config(
                std::path::Path::new(&settings.server.tls_cert),
                std::path::Path::new(&settings.server.tls_key),
            )
            .map_err(StartupError::Tls)?;
            Some((config, Arc::new(crate::tls::TlsPeers::default())))
        };
        let longpolls = crate::longpoll::LongPolls::new(
            realtime.node_id(),
            crate::longpoll::Settings {
                unknown_node_grace: std::time::Duration::from_millis(
                    settings.cluster.heartbeat_ms.saturating_mul(2),
                ),
                ..settings.realtime.longpoll()
            },
            metrics.longpoll_sessions.clone(),
        );
        longpolls.spawn_reaper();
        longpolls.attach(&realtime);
        let state = web::Data::new(AppState {
            store: store.clone(),
            jwt,
            identities,
            passwords,
            auth_limits: AuthLimits::new(
                settings.auth.login_attempts_per_minute,
                settings.auth.account_login_attempts_per_hour,
                settings.auth.token_requests_per_minute,
            ),
            user_requests: crate::auth::KeyedLimiter::per_second(
                settings.http.user_requests_per_sec,
                settings.http.user_request_burst,
            ),
            refresh_ttl_secs: i64::try_from(settings.auth.refresh_token_ttl_secs)
                .unwrap_or(i64::MAX / 2000),
            refresh_reuse_ms: i64::try_from(settings.auth.refresh_reuse_interval_secs)
                .unwrap_or(i64::MAX / 2000)
                .saturating_mul(1000),
            refresh_key,
            trusted_proxies: settings.server.trusted_networks(),
            max_body_bytes: settings.http.max_body_bytes,
            metrics,
            realtime: realtime.clone(),
            socket_origins: socket_origins(&settings),
            search: search.clone(),
            bus,
            tls_peers: tls.as_ref().map(|(_, peers)| peers.clone()),
            metrics_token: Some(settings.metrics.token.clone()).filter(|t| !t.is_empty()),
            mailer,
            public_url: settings.server.public_url(),
            invitation_ttl_ms: i64::from(settings.auth.invitation_ttl_days) * 86_400_000,
            ldap,
            oidc: Arc::new(oidc),
            webhooks,
            unsubscribe_key,
            blobs,
            storage: settings.storage.clone(),
            sweeper,
            uploads: Arc::new(tokio::sync::Semaphore::new(
                settings.storage.max_concurrent_uploads.max(1) as usize,
            )),
            longpolls: longpolls.clone(),
        });

        let addr = format!("{}:{}", settings.server.host, settings.server.port);
        let bind = |addr: &str| {
            listen(addr).map_err(|source| StartupError::Bind {
                addr: addr.to_string(),
                source,
            })
        };
        let public = bind(&addr)?;
        let port = public
            .local_addr()
            .map_err(|source| StartupError::Bind {
                addr: addr.clone(),
                source,
            })?
            .port();
        // With TLS the server listens on loopback and the terminator on the address.
        let listener = match &tls {
            None => public,
            Some((config, peers)) => {
                let inner = bind("127.0.0.1:0")?;
                let inner_addr = inner.local_addr().map_err(|source| StartupError::Bind {
                    addr: "127.0.0.1:0".into(),
                    source,
                })?;
                crate::tls::start(public, inner_addr, config.clone(), peers.clone()).map_err(
                    |source| StartupError::Bind {
                        addr: addr.clone(),
                        source,
                    },
                )?;
                tracing::info!(%addr, "TLS on; HTTPS and WSS only");
                inner
            }
        };
        // Inherited by every accepted socket.
        if settings.server.tcp_user_timeout_secs > 0 {
            let timeout = Duration::from_secs(settings.server.tcp_user_timeout_secs);
            if let Err(e) = socket2::SockRef::from(&listener).set_tcp_user_timeout(Some(timeout)) {
                tracing::warn!(error = %e, "cannot set TCP_USER_TIMEOUT; using the system default");
            }
        }
        let retention_ms = i64::try_from(settings.auth.spent_refresh_token_retention_secs)
            .unwrap_or(i64::MAX / 2000)
            .saturating_mul(1000);
        let upkeep = actix_web::rt::spawn(upkeep(state.clone(), retention_ms));
        actix_web::rt::spawn(return_memory(realtime.clone()));
        actix_web::rt::spawn(crate::realtime::follow_session_ends(
            realtime.clone(),
            store.clone(),
            realtime.limits().token_lifetime,
        ));
        // What the last stop left behind (edits written but not recorded, a REST write not
        // in the update log) is brought up to date without waiting for a client.
        {
            let (realtime, store) = (realtime.clone(), store.clone());
            actix_web::rt::spawn(async move {
                crate::realtime::catch_up_documents(&realtime, &*store).await;
            });
        }
        let cors_settings = settings.clone();
        let realtime_for_upgrades = realtime.clone();
        let app = move || {
            upgrade::boxed(map_config(
                api::app(state.clone())
                    .wrap(cors(&cors_settings))
                    .wrap(from_fn(api::observe))
                    .into_factory(),
                |_| AppConfig::default(),
            ))
        };
        let mut server = Server::build()
            .shutdown_timeout(settings.server.shutdown_timeout_secs)
            // Signals are the binary's business (see main.rs), so that tests and embedders
            // decide for themselves when the server stops.
            .disable_signals();
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = server
            .listen("stoa", listener, move || {
                HttpService::build()
                    // A frame goes out when it is written: with Nagle's algorithm an event
                    // sent shortly after another frame waits for the client's delayed ACK
                    // (40 ms on Linux).
                    .tcp_nodelay(true)
                    .client_request_timeout(Duration::from_secs(10))
                    .client_disconnect_timeout(Duration::from_secs(1))
                    // WebSocket upgrades are answered by the app, then the socket is Stoa's.
                    .upgrade(upgrade::service(app(), realtime_for_upgrades.clone()))
                    .finish(app())
                    .tcp()
            })
            .map_err(|source| StartupError::Bind {
                addr: addr.clone(),
                source,
            })?
            .run();
        tracing::info!(%addr, port, database = ?store.kind(), "stoa listening");
        let host = match settings.server.host.as_str() {
            "0.0.0.0" | "::" => "127.0.0.1".to_string(),
            host if host.contains(':') => format!("[{host}]"),
            host => host.to_string(),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{host}:{port}");
        tracing::info!(
            "next: create an account with POST {base}/api/v1/auth/register; the API is \
             described at {base}/api/openapi.json; channels at {base}/socket/websocket, \
             Yjs documents at {base}/yjs/{{document_id}}; health {base}/readyz, metrics \
             {base}/metrics"
        );
        Ok(Application {
            port,
            server,
            store,
            realtime,
            search,
            upkeep,
            _data_dir: data_dir,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The store, bypassing the API (tests write through it to simulate a writer that
    /// stopped between commit and live publication).
    pub fn store(&self) -> Arc<SqlStore> {
        self.store.clone()
    }

    /// Where searches go.
    pub fn search(&self) -> Arc<dyn crate::search::SearchBackend> {
        self.search.clone()
    }

    /// The real-time core (tests inject faults and read counters through it).
    pub fn realtime(&self) -> Realtime {
        self.realtime.clone()
    }

    /// A handle to stop the server gracefully from elsewhere.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped through [`Application::handle`], lets in-flight requests finish,
    /// then closes the database pools.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.upkeep.abort();
        self.realtime.begin_shutdown();
        self.realtime.shutdown();
        self.store.close().await;
        tracing::info!("stoa stopped");
        result
    }
}

/// Periodic housekeeping: rate-limit keys whose allowance is whole again are forgotten
/// every minute; expired and long-spent refresh tokens are deleted every hour (and at start).
async fn upkeep(state: web::Data<AppState>, retention_ms: i64) {
    let mut tick = actix_web::rt::time::interval(Duration::from_secs(60));
    for minute in 0u64.. {
        tick.tick().await;
        state.auth_limits.sweep();
        state.user_requests.sweep();
        state.realtime.sweep();
        let keys = i64::try_from(state.auth_limits.keys()).unwrap_or(i64::MAX);
        state.metrics.auth_limiter_keys.set(keys);
        if minute % 60 != 0 {
            continue;
        }
        let now = crate::domain::now_ms();
        match state
            .store
            .prune_refresh_tokens(now, now.saturating_sub(retention_ms))
            .await
        {
            Ok(n) => {
                state.metrics.refresh_tokens_pruned.inc_by(n);
                if n > 0 {
                    tracing::info!(deleted = n, "pruned expired and spent refresh tokens");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot prune refresh tokens"),
        }
        // Session ends outlive no token they name (a day's margin over any lifetime).
        let lifetime = state.realtime.limits().token_lifetime;
        let keep_ms = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX / 2) + 86_400_000;
        if let Err(e) = state
            .store
            .prune_session_ends(now.saturating_sub(keep_ms))
            .await
        {
            tracing::warn!(error = %e, "cannot prune session ends");
        }
    }
}

/// Sockets that must have closed since the last peak before freed memory is handed back.
const TRIM_AFTER_CLOSED: i64 = 256;

/// glibc's allocator keeps what a crowd of connections freed (their buffers, queues and
/// sessions) for reuse, so after a reconnect storm or a crowd leaving the process would
/// stay at its peak. When the open sockets have fallen by [`TRIM_AFTER_CLOSED`] since their
/// last peak, the free memory is handed back to the system (`malloc_trim`, off the event
/// loop; a few milliseconds at most, at most every 5 s).
async fn return_memory(realtime: Realtime) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut tick = actix_web::rt::time::interval(Duration::from_secs(5));
    let stats = realtime.stats();
    loop {
        tick.tick().await;
        let open = stats.sockets.load(Relaxed);
        // The transport raises the peak as sockets open, however briefly they stay.
        let peak = stats.sockets_peak.swap(open, Relaxed);
        if open + TRIM_AFTER_CLOSED <= peak {
            let _ = actix_web::rt::task::spawn_blocking(trim).await;
            tracing::debug!(open, peak, "returned free memory to the system");
        } else {
            stats.sockets_peak.fetch_max(peak, Relaxed);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// Allocations from this size up are mapped on their own and unmapped when freed.
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Keeps glibc's allocator from holding large freed blocks. By default its threshold for
/// mapping an allocation on its own moves up to the size of the largest mapped block freed
/// so far (up to 32 MiB), and the trim threshold to twice that: after the first password
/// hash (argon2 takes a 19 MiB block, on a blocking thread) every later one came from an
/// arena, and each arena kept the block when it was freed. The node's idle memory grew by
/// tens of megabytes with each round of a mixed load (`loadtest/soak.sh`: 91, 168, 246 MB
/// after three two-minute rounds) while its live heap stayed under 10 MB (heaptrack).
/// Setting the threshold fixes it, so large blocks are mapped and returned at once: 31, 34,
/// 34 MB (docs/BENCHMARKS.md, "Idle memory after mixed load"). Once per process.
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(set_mmap_threshold);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_mmap_threshold() {
    // SAFETY: mallopt only changes the allocator's parameters; it is called once, and the
    // allocator applies it under its own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_mmap_threshold() {
    let _ = MMAP_THRESHOLD;
}

/// Browser apps on other origins: the configured origins, or in development with none
/// configured, any origin. Tokens travel in headers, never cookies, so no credentials mode.
fn cors(settings: &Settings) -> Cors {
    let origins = &settings.http.cors_allowed_origins;
    let any = origins.iter().any(|o| o == "*")
        || (origins.is_empty() && settings.environment == Environment::Development);
    let mut cors = Cors::default()
        .allowed_methods(["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::ACCEPT,
            REQUEST_ID,
            // phoenix.js's LongPoll sends the authToken option here.
            header::HeaderName::from_static("x-phoenix-authtoken"),
        ])
        .expose_headers([header::ETAG, header::RETRY_AFTER, REQUEST_ID])
        .max_age(3600);
    if any {
        cors = cors.allow_any_origin();
    } else {
        for origin in origins {
            cors = cors.allowed_origin(origin);
        }
    }
    cors
}

/// The origins the WebSocket upgrade accepts: the same rule as CORS.
fn socket_origins(settings: &Settings) -> SocketOrigins {
    let origins = &settings.http.cors_allowed_origins;
    if origins.iter().any(|o| o == "*")
        || (origins.is_empty() && settings.environment == Environment::Development)
    {
        SocketOrigins::Any
    } else {
        SocketOrigins::Only(origins.clone())
    }
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Connections the kernel may hold for `accept` (it caps this at `net.core.somaxconn`). The
/// standard library's 128 overflows in a reconnect storm, and every SYN dropped then costs
/// its client a one-second retransmission.
const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: &str) -> std::io::Result<TcpListener> {
    use std::net::ToSocketAddrs;
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address"))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
