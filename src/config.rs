//! The one `Settings` struct and how it is assembled.
//!
//! Layers, later ones win: `config/default.toml` (compiled in, so the binary runs from any
//! directory), an optional file named with `--config`, then `STOA_*` environment variables.
//! Everything that can be wrong with a configuration is reported here, naming the key, so
//! that start-up stops before any socket or database is touched.

use std::path::{Path, PathBuf};

use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

/// Why a configuration was refused. The message always names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("configuration key `auth.jwt_secret`: cannot read or create {path}: {source}")]
    Secret {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub environment: Environment,
    pub data_dir: PathBuf,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub smtp: SmtpSettings,
    pub http: HttpSettings,
    pub realtime: RealtimeSettings,
    pub redis: RedisSettings,
    pub bus: BusSettings,
    pub cluster: ClusterSettings,
    pub search: SearchSettings,
    pub documents: DocumentSettings,
    pub webhooks: WebhookSettings,
    pub storage: StorageSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    /// `STOA_*` variables that name no setting: ignored, and reported at start-up.
    #[serde(skip)]
    pub ignored_variables: Vec<IgnoredVariable>,
}

/// An environment variable with the `STOA_` prefix that configures nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredVariable {
    pub name: String,
    /// The variable of the setting whose name is nearest, e.g. `STOA_SERVER__PORT` for
    /// `STOA_SERVER_PORT`.
    pub nearest: String,
}

impl std::fmt::Display for IgnoredVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} names no setting and is ignored; did you mean {}?",
            self.name, self.nearest
        )
    }
}

/// Every setting's dotted path (`server.port`, `environment`), from the compiled-in
/// defaults, which name each of them.
fn setting_paths() -> Vec<String> {
    fn walk(prefix: &str, table: &config::Map<String, config::Value>, out: &mut Vec<String>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value.clone().into_table() {
                Ok(inner) => walk(&path, &inner, out),
                Err(_) => out.push(path),
            }
        }
    }
    let mut out = Vec::new();
    let defaults = config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize::<config::Map<String, config::Value>>());
    if let Ok(table) = defaults {
        walk("", &table, &mut out);
    }
    out
}

/// The variable that sets a dotted path: `server.port` → `STOA_SERVER__PORT`.
fn variable_of(path: &str) -> String {
    format!("STOA_{}", path.to_uppercase().replace('.', "__"))
}

/// Splits the `STOA_*` variables into those that name a setting and those that do not.
/// Orchestrators set variables of their own under an application's prefix (Kubernetes
/// gives every pod `STOA_PORT=tcp://…` and `STOA_SERVICE_HOST` for a Service named
/// `stoa`), so a name that matches no setting is reported, not fatal; a configuration file,
/// which only an operator writes, still may not name an unknown key.
/// The variable that names a configuration file when `--config` is not given.
pub const CONFIG_VARIABLE: &str = "STOA_CONFIG";

fn known_variables(
    env: impl IntoIterator<Item = (String, String)>,
) -> (config::Map<String, String>, Vec<IgnoredVariable>) {
    let paths = setting_paths();
    let names: Vec<String> = paths.iter().map(|p| variable_of(p)).collect();
    let mut known = config::Map::new();
    let mut ignored = Vec::new();
    for (name, value) in env {
        // STOA_CONFIG names the file (the binary's --config); it is no key of its own.
        if !name.starts_with("STOA_") || name == CONFIG_VARIABLE {
            continue;
        }
        if names.contains(&name) {
            known.insert(name, value);
            continue;
        }
        let nearest = names
            .iter()
            .min_by_key(|n| strsim::levenshtein(n, &name))
            .cloned()
            .unwrap_or_default();
        ignored.push(IgnoredVariable { name, nearest });
    }
    ignored.sort_by(|a, b| a.name.cmp(&b.name));
    (known, ignored)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub shutdown_timeout_secs: u64,
    pub drain_secs: u64,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    pub tcp_user_timeout_secs: u64,
    /// PEM certificate chain and private key: with both set, the port speaks HTTPS/WSS.
    pub tls_cert: String,
    pub tls_key: String,
    /// Where people reach Stoa (links in mail); empty: `http://host:port`.
    pub public_url: String,
}

impl ServerSettings {
    /// The address links in mail point at, without a trailing slash.
    pub fn public_url(&self) -> String {
        if !self.public_url.is_empty() {
            return self.public_url.trim_end_matches('/').to_string();
        }
        let host = match self.host.as_str() {
            "0.0.0.0" | "::" | "" => "localhost",
            h => h,
        };
        let scheme = if self.tls_cert.is_empty() {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}:{}", self.port)
    }
    /// The trusted proxies as networks (validated at load, so none is dropped here).
    pub fn trusted_networks(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| parse_network(p))
            .collect()
    }
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a single address.
fn parse_network(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    pub connect_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub jwt_secret: String,
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub login_attempts_per_minute: u32,
    pub account_login_attempts_per_hour: u32,
    pub token_requests_per_minute: u32,
    pub refresh_reuse_interval_secs: u64,
    pub spent_refresh_token_retention_secs: u64,
    pub password_hash_memory_kib: u32,
    pub password_hash_iterations: u32,
    pub password_hash_concurrency: usize,
    pub password_hash_queue: usize,
    pub external: ExternalAuthSettings,
    pub ldap: LdapSettings,
    /// Single sign-on providers (`[[auth.oidc]]`, see `docs/IDENTITY.md`).
    #[serde(default)]
    pub oidc: Vec<OidcProviderSettings>,
    /// `auto`, `true` or `false`: whether only verified addresses match accounts by e-mail.
    pub require_verified_email: String,
    pub invitation_ttl_days: u32,
}

/// Sign-in with a directory (`auth.ldap`, see `docs/IDENTITY.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSettings {
    pub url: String,
    pub starttls: bool,
    pub ca_file: String,
    pub bind_dn: String,
    pub bind_password: String,
    pub base_dn: String,
    pub user_filter: String,
    pub id_attribute: String,
    pub email_attribute: String,
    pub name_attribute: String,
    pub groups_base_dn: String,
    pub group_filter: String,
    pub group_roles: Vec<String>,
    pub timeout_secs: u64,
}

/// One OpenID Connect provider (`[[auth.oidc]]`, see `docs/IDENTITY.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderSettings {
    /// In URLs (`/api/v1/auth/oidc/<name>/start`) and workspace rules: a-z, 0-9 and -.
    pub name: String,
    /// On the console's button ("Sign in with …"); the name when empty.
    #[serde(default)]
    pub display_name: String,
    /// Discovery is at `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// Empty for a public client (PKCE alone).
    #[serde(default)]
    pub client_secret: String,
    /// `basic` (client_secret_basic) or `post` (client_secret_post).
    #[serde(default = "default_client_auth")]
    pub client_auth: String,
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// Take the provider's addresses as verified though it sends no `email_verified`
    /// (Entra ID does not): only for a provider that owns the addresses it gives.
    #[serde(default)]
    pub trust_email: bool,
    #[serde(default = "default_metadata_refresh_secs")]
    pub metadata_refresh_secs: u64,
    #[serde(default = "default_oidc_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_client_auth() -> String {
    "basic".into()
}

fn default_oidc_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

fn default_metadata_refresh_secs() -> u64 {
    3600
}

fn default_oidc_timeout_secs() -> u64 {
    10
}

/// Document history (`[documents]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentSettings {
    /// At most one automatic version per this many seconds of a document's editing.
    pub version_interval_secs: u64,
    /// Automatic versions: every one kept this long…
    pub version_keep_all_hours: u64,
    /// …then the newest of each hour this long, then the newest of each day.
    pub version_keep_hourly_days: u64,
}

/// Attachments and where their bytes are kept (`[storage]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// The directory of blobs (relative to `data_dir` unless absolute), without `s3_bucket`.
    pub dir: PathBuf,
    /// An S3-compatible bucket: when set, blobs go there instead.
    pub s3_bucket: String,
    /// The service's URL (MinIO, R2, …); empty for AWS itself.
    pub s3_endpoint: String,
    pub s3_region: String,
    /// Empty: the `AWS_*` variables (or the instance's role) give the credentials.
    pub s3_access_key_id: String,
    pub s3_secret_access_key: String,
    /// `https://bucket.host/` rather than `https://host/bucket/`.
    pub s3_virtual_hosted: bool,
    /// The largest file (bytes) and what one workspace's files may take together.
    pub max_file_bytes: u64,
    pub workspace_quota_bytes: u64,
    /// Content types (as sniffed from the bytes) an upload may have: `type/subtype`,
    /// `type/*`, or `*` for any.
    pub allowed_types: Vec<String>,
    /// Uploads one node receives at once; more are answered 503 (each holds up to three
    /// parts in memory: 24 MiB on S3, 3 MiB in a directory).
    pub max_concurrent_uploads: u32,
    /// An upload that never finished (its server died) is removed after this long.
    pub upload_grace_secs: u64,
    /// How often each node looks for blobs to remove (besides right after a deletion).
    pub sweep_every_secs: u64,
}

impl StorageSettings {
    /// Whether a sniffed content type is on the allow-list.
    pub fn allows(&self, content_type: &str) -> bool {
        let major = content_type.split('/').next().unwrap_or_default();
        self.allowed_types.iter().any(|a| {
            a == "*"
                || a.eq_ignore_ascii_case(content_type)
                || a.strip_suffix("/*")
                    .is_some_and(|m| m.eq_ignore_ascii_case(major))
        })
    }
}

/// Outgoing webhooks (`[webhooks]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Let endpoints be on private, loopback and link-local addresses (tests, a closed
    /// network).
    pub allow_private_targets: bool,
    /// Private ranges endpoints may reach all the same, as CIDRs (`10.0.5.0/24`).
    pub allowed_targets: Vec<String>,
    pub timeout_secs: u64,
    pub backoff_base_ms: u64,
    pub backoff_max_secs: u64,
    pub pause_after_failures: u32,
    pub lease_secs: u64,
    pub deliveries_kept: u32,
    pub max_per_workspace: u32,
}

impl WebhookSettings {
    /// The deliverer's policy (`allowed_targets` checked at start-up).
    pub fn policy(&self) -> Result<crate::webhooks::WebhookPolicy, ConfigError> {
        let allowed_targets = self
            .allowed_targets
            .iter()
            .map(|c| {
                c.parse::<ipnet::IpNet>()
                    .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        invalid(
                            "webhooks.allowed_targets",
                            format!("{c:?} is not an address or a CIDR range"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(crate::webhooks::WebhookPolicy {
            allow_private_targets: self.allow_private_targets,
            allowed_targets,
            timeout: std::time::Duration::from_secs(self.timeout_secs.clamp(1, 300)),
            backoff_base: std::time::Duration::from_millis(self.backoff_base_ms.max(1)),
            backoff_max: std::time::Duration::from_secs(self.backoff_max_secs.max(1)),
            pause_after_failures: self.pause_after_failures.max(1),
            lease: std::time::Duration::from_secs(self.lease_secs.max(2)),
            deliveries_kept: self.deliveries_kept.max(10),
        })
    }
}

/// Outgoing mail (`[smtp]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub url: String,
    pub from: String,
    /// A notification unread this long goes into its user's next digest.
    pub digest_delay_secs: u64,
    /// How often digests are looked for.
    pub digest_every_secs: u64,
}

/// Tokens minted by the product's own backend (`auth.external`, see `docs/IDENTITY.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalAuthSettings {
    pub issuer: String,
    pub audience: String,
    pub hs256_secret: String,
    pub jwks_url: String,
    pub jwks_refresh_secs: u64,
    pub user_id_claim: String,
    pub email_claim: String,
    pub name_claim: String,
    pub roles_claim: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub max_body_bytes: usize,
    pub cors_allowed_origins: Vec<String>,
    pub user_requests_per_sec: u32,
    pub user_request_burst: u32,
}

/// Limits of the WebSocket endpoint (see `config/default.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealtimeSettings {
    pub max_frame_bytes: usize,
    pub max_broadcast_bytes: usize,
    pub max_sockets_per_user: u32,
    pub max_topics_per_connection: usize,
    pub messages_per_sec: u32,
    pub message_burst: u32,
    pub user_messages_per_sec: u32,
    pub user_message_burst: u32,
    pub topic_broadcasts_per_sec: u32,
    pub topic_broadcast_bytes_per_sec: u32,
    pub presence_updates_per_sec: u32,
    pub max_presence_meta_bytes: usize,
    pub max_presence_metas: usize,
    pub presence_batch_ms: u64,
    pub outbound_queue: usize,
    pub outbound_queue_bytes: usize,
    pub topic_mailbox: usize,
    pub heartbeat_timeout_secs: u64,
    pub longpoll_window_ms: u64,
    pub longpoll_idle_ms: u64,
    pub max_replay_events: i64,
    pub log_check_ms: u64,
    pub max_yjs_message_bytes: usize,
    pub max_open_documents: usize,
    pub max_document_bytes: usize,
    pub document_idle_secs: u64,
}

impl RealtimeSettings {
    pub fn longpoll(&self) -> crate::longpoll::Settings {
        crate::longpoll::Settings {
            window: std::time::Duration::from_millis(self.longpoll_window_ms),
            idle: std::time::Duration::from_millis(self.longpoll_idle_ms),
            ..Default::default()
        }
    }

    pub fn limits(&self) -> stoa_actors::Limits {
        stoa_actors::Limits {
            max_frame_bytes: self.max_frame_bytes,
            max_broadcast_bytes: self.max_broadcast_bytes,
            max_sockets_per_user: self.max_sockets_per_user,
            max_topics_per_connection: self.max_topics_per_connection,
            messages_per_sec: self.messages_per_sec,
            message_burst: self.message_burst,
            user_messages_per_sec: self.user_messages_per_sec,
            user_message_burst: self.user_message_burst,
            topic_broadcasts_per_sec: self.topic_broadcasts_per_sec,
            topic_broadcast_bytes_per_sec: self.topic_broadcast_bytes_per_sec,
            presence_updates_per_sec: self.presence_updates_per_sec,
            max_presence_meta_bytes: self.max_presence_meta_bytes,
            max_presence_metas: self.max_presence_metas,
            presence_batch: std::time::Duration::from_millis(self.presence_batch_ms),
            outbound_queue: self.outbound_queue,
            outbound_queue_bytes: self.outbound_queue_bytes,
            topic_mailbox: self.topic_mailbox,
            heartbeat_timeout: std::time::Duration::from_secs(self.heartbeat_timeout_secs),
            max_replay: self.max_replay_events,
            log_check: std::time::Duration::from_millis(self.log_check_ms.max(10)),
            max_yjs_message_bytes: self.max_yjs_message_bytes,
            max_open_documents: self.max_open_documents,
            max_document_bytes: self.max_document_bytes,
            doc_idle: std::time::Duration::from_secs(self.document_idle_secs),
            ..stoa_actors::Limits::default()
        }
    }
}

/// The bus between nodes; without a URL the node runs alone (in-process bus).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: String,
}

/// The bus between the nodes (`[bus]`): `redis://…` or `amqp://…` (RabbitMQ).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSettings {
    pub url: String,
}

impl Settings {
    /// The cluster's bus: `bus.url`, or `redis.url` (the older name of a Redis bus); empty
    /// for a node on its own.
    pub fn bus_url(&self) -> &str {
        if self.bus.url.is_empty() {
            &self.redis.url
        } else {
            &self.bus.url
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// This node's id among the others; generated when empty.
    pub node_id: String,
    pub heartbeat_ms: u64,
    pub node_expiry_ms: u64,
}

impl ClusterSettings {
    /// The cluster this node joins; its bus key is derived from `secret` (the JWT key,
    /// which every node of a cluster shares).
    pub fn cluster(&self, secret: &[u8]) -> stoa_actors::Cluster {
        let node_id = if self.node_id.is_empty() {
            stoa_actors::Cluster::random_node_id()
        } else {
            self.node_id.clone()
        };
        stoa_actors::Cluster {
            node_id,
            heartbeat: std::time::Duration::from_millis(self.heartbeat_ms),
            node_expiry: std::time::Duration::from_millis(self.node_expiry_ms),
            key: stoa_protocol::bus::ClusterKey::derive(secret),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Where search runs (see `config/default.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSettings {
    /// Empty: the database's own full-text index.
    pub elasticsearch_url: String,
    pub elasticsearch_index: String,
    /// Events per bulk request of the indexer.
    pub elasticsearch_batch: u32,
    pub elasticsearch_timeout_ms: u64,
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// When set, `/metrics` answers only requests with `Authorization: Bearer <token>`.
    pub token: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl DatabaseSettings {
    pub fn kind(&self) -> Option<DatabaseKind> {
        if self.url.starts_with("sqlite:") {
            Some(DatabaseKind::Sqlite)
        } else if self.url.starts_with("postgres://") || self.url.starts_with("postgresql://") {
            Some(DatabaseKind::Postgres)
        } else {
            None
        }
    }
}

impl Settings {
    /// Loads the layered configuration: defaults, then `file` if given, then `STOA_*`
    /// variables from the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`Settings::load`] with an explicit environment (tests use this).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        let (env, ignored) = known_variables(env);
        builder = builder.add_source(
            config::Environment::with_prefix("STOA")
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("http.cors_allowed_origins")
                .with_list_parse_key("server.trusted_proxies")
                .with_list_parse_key("storage.allowed_types")
                .try_parsing(true)
                .source(Some(env)),
        );
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        settings.ignored_variables = ignored;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.database.kind().is_none() {
            return Err(invalid(
                "database.url",
                "must start with sqlite: or postgres://",
            ));
        }
        let rt = &self.realtime;
        if rt.max_frame_bytes < 1024 {
            return Err(invalid("realtime.max_frame_bytes", "must be at least 1024"));
        }
        self.webhooks.policy()?;
        if self.storage.max_file_bytes == 0 {
            return Err(invalid("storage.max_file_bytes", "must be at least 1"));
        }
        if !self.storage.s3_bucket.is_empty()
            && self.storage.s3_access_key_id.is_empty()
                != self.storage.s3_secret_access_key.is_empty()
        {
            return Err(invalid(
                "storage.s3_access_key_id",
                "set both the access key id and the secret, or neither (then the AWS_* variables are used)",
            ));
        }
        if rt.max_broadcast_bytes == 0 || rt.max_broadcast_bytes > rt.max_frame_bytes {
            return Err(invalid(
                "realtime.max_broadcast_bytes",
                "must be between 1 and realtime.max_frame_bytes",
            ));
        }
        for (key, value) in [
            (
                "realtime.max_sockets_per_user",
                u64::from(rt.max_sockets_per_user),
            ),
            (
                "realtime.max_topics_per_connection",
                rt.max_topics_per_connection as u64,
            ),
            ("realtime.messages_per_sec", u64::from(rt.messages_per_sec)),
            ("realtime.message_burst", u64::from(rt.message_burst)),
            (
                "realtime.user_messages_per_sec",
                u64::from(rt.user_messages_per_sec),
            ),
            (
                "realtime.user_message_burst",
                u64::from(rt.user_message_burst),
            ),
            (
                "realtime.topic_broadcasts_per_sec",
                u64::from(rt.topic_broadcasts_per_sec),
            ),
            (
                "realtime.topic_broadcast_bytes_per_sec",
                u64::from(rt.topic_broadcast_bytes_per_sec),
            ),
            (
                "realtime.max_presence_meta_bytes",
                rt.max_presence_meta_bytes as u64,
            ),
            (
                "realtime.outbound_queue_bytes",
                rt.outbound_queue_bytes as u64,
            ),
            ("realtime.topic_mailbox", rt.topic_mailbox as u64),
            (
                "realtime.presence_updates_per_sec",
                u64::from(rt.presence_updates_per_sec),
            ),
            ("realtime.outbound_queue", rt.outbound_queue as u64),
            ("realtime.heartbeat_timeout_secs", rt.heartbeat_timeout_secs),
            ("realtime.longpoll_window_ms", rt.longpoll_window_ms),
            ("realtime.longpoll_idle_ms", rt.longpoll_idle_ms),
            (
                "realtime.max_yjs_message_bytes",
                rt.max_yjs_message_bytes as u64,
            ),
            ("realtime.max_open_documents", rt.max_open_documents as u64),
            ("realtime.max_document_bytes", rt.max_document_bytes as u64),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if rt.max_document_bytes > rt.max_yjs_message_bytes {
            return Err(invalid(
                "realtime.max_document_bytes",
                "must not exceed realtime.max_yjs_message_bytes (an editor reconnecting sends \
                 its whole document in one message)",
            ));
        }
        // A join's presence_state must fit an empty outbox with room to spare, or every
        // joiner of a full topic would be closed as a slow consumer.
        let state = rt
            .max_presence_metas
            .saturating_mul(rt.max_presence_meta_bytes + stoa_actors::PRESENCE_META_OVERHEAD);
        if state.saturating_add(65_536) > rt.outbound_queue_bytes {
            return Err(invalid(
                "realtime.max_presence_metas",
                format!(
                    "max_presence_metas × (max_presence_meta_bytes + {}) = {state} bytes of \
                     presence_state must fit realtime.outbound_queue_bytes ({}) less 64 KiB",
                    stoa_actors::PRESENCE_META_OVERHEAD,
                    rt.outbound_queue_bytes
                ),
            ));
        }
        let url = &self.redis.url;
        if !(url.is_empty() || url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(invalid(
                "redis.url",
                "must start with redis:// (or be empty)",
            ));
        }
        let bus = &self.bus.url;
        if !(bus.is_empty()
            || bus.starts_with("redis://")
            || bus.starts_with("rediss://")
            || bus.starts_with("amqp://")
            || bus.starts_with("amqps://"))
        {
            return Err(invalid(
                "bus.url",
                "must start with redis://, rediss://, amqp:// or amqps:// (or be empty)",
            ));
        }
        if !bus.is_empty() && !url.is_empty() {
            return Err(invalid(
                "bus.url",
                "set bus.url or redis.url (its older name), not both",
            ));
        }
        let c = &self.cluster;
        if c.node_id.len() > 64
            || !c
                .node_id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            return Err(invalid(
                "cluster.node_id",
                "up to 64 letters, digits, - and _ (or empty to generate one)",
            ));
        }
        if c.heartbeat_ms < 100 || c.node_expiry_ms < 2 * c.heartbeat_ms {
            return Err(invalid(
                "cluster.node_expiry_ms",
                "heartbeat_ms must be at least 100 and node_expiry_ms at least twice it",
            ));
        }
        if rt.max_replay_events < 0 {
            return Err(invalid("realtime.max_replay_events", "must be 0 or more"));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        if self.environment == Environment::Production && self.auth.jwt_secret.is_empty() {
            return Err(invalid(
                "auth.jwt_secret",
                "is required when environment = \"production\" (32 random bytes: base64:$(openssl rand -base64 32))",
            ));
        }
        if !self.auth.jwt_secret.is_empty() {
            crate::auth::secret_key(&self.auth.jwt_secret)
                .map_err(|e| invalid("auth.jwt_secret", e))?;
        }
        if self.auth.issuer.is_empty() {
            return Err(invalid("auth.issuer", "must not be empty"));
        }
        if self.auth.audience.is_empty() {
            return Err(invalid("auth.audience", "must not be empty"));
        }
        if !["auto", "true", "false"].contains(&self.auth.require_verified_email.as_str()) {
            return Err(invalid(
                "auth.require_verified_email",
                "must be \"auto\", \"true\" or \"false\"",
            ));
        }
        if !(1..=365).contains(&self.auth.invitation_ttl_days) {
            return Err(invalid(
                "auth.invitation_ttl_days",
                "must be between 1 and 365",
            ));
        }
        if !self.smtp.url.is_empty() {
            crate::mail::SmtpMailer::new(&self.smtp).map_err(|e| invalid("smtp.url", e))?;
        }
        if !self.server.public_url.is_empty()
            && url::Url::parse(&self.server.public_url)
                .map_or(true, |u| !matches!(u.scheme(), "http" | "https"))
        {
            return Err(invalid("server.public_url", "must be an http(s):// URL"));
        }
        crate::auth::ldap::LdapDirectory::new(&self.auth.ldap)
            .map_err(|e| invalid("auth.ldap", e))?;
        crate::auth::oidc::OidcProviders::new(&self.auth.oidc, &self.server.public_url())
            .map_err(|e| invalid("auth.oidc", e))?;
        if self.environment == Environment::Production
            && self.auth.ldap.url.starts_with("ldap://")
            && !self.auth.ldap.starttls
        {
            return Err(invalid(
                "auth.ldap.starttls",
                "must be true in production with an ldap:// URL: passwords would cross the network in clear (or use ldaps://)",
            ));
        }
        let external = &self.auth.external;
        if !external.issuer.is_empty() {
            if external.issuer == self.auth.issuer {
                return Err(invalid(
                    "auth.external.issuer",
                    "must differ from auth.issuer (Stoa's own tokens)",
                ));
            }
            if external.user_id_claim.is_empty() {
                return Err(invalid("auth.external.user_id_claim", "must not be empty"));
            }
            crate::auth::external::ExternalTokens::new(external)
                .map_err(|e| invalid("auth.external", e))?;
        } else if !external.hs256_secret.is_empty() || !external.jwks_url.is_empty() {
            return Err(invalid(
                "auth.external.issuer",
                "is required with hs256_secret or jwks_url (the `iss` the product's tokens carry)",
            ));
        }
        let web = ["https://", "http://"];
        if !external.jwks_url.is_empty() && !web.iter().any(|w| external.jwks_url.starts_with(w)) {
            return Err(invalid(
                "auth.external.jwks_url",
                "must be an http(s):// URL",
            ));
        }
        if self.auth.access_token_ttl_secs == 0 {
            return Err(invalid("auth.access_token_ttl_secs", "must be at least 1"));
        }
        if self.auth.refresh_token_ttl_secs < self.auth.access_token_ttl_secs {
            return Err(invalid(
                "auth.refresh_token_ttl_secs",
                "must not be shorter than auth.access_token_ttl_secs",
            ));
        }
        if self.auth.login_attempts_per_minute == 0 {
            return Err(invalid(
                "auth.login_attempts_per_minute",
                "must be at least 1",
            ));
        }
        for (key, value) in [
            (
                "auth.account_login_attempts_per_hour",
                self.auth.account_login_attempts_per_hour,
            ),
            (
                "http.user_requests_per_sec",
                self.http.user_requests_per_sec,
            ),
            ("http.user_request_burst", self.http.user_request_burst),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.auth.token_requests_per_minute == 0 {
            return Err(invalid(
                "auth.token_requests_per_minute",
                "must be at least 1",
            ));
        }
        if self.server.tls_cert.is_empty() != self.server.tls_key.is_empty() {
            return Err(invalid(
                "server.tls_cert",
                "server.tls_cert and server.tls_key are set together (or neither)",
            ));
        }
        for proxy in &self.server.trusted_proxies {
            if parse_network(proxy).is_none() {
                return Err(invalid(
                    "server.trusted_proxies",
                    format!("{proxy:?} is not an IP address or a CIDR block"),
                ));
            }
        }
        if self.auth.password_hash_memory_kib < 8 || self.auth.password_hash_iterations == 0 {
            return Err(invalid(
                "auth.password_hash_memory_kib",
                "argon2 needs at least 8 KiB and 1 iteration",
            ));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(invalid("http.max_body_bytes", "must be at least 1024"));
        }
        for origin in &self.http.cors_allowed_origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(invalid(
                    "http.cors_allowed_origins",
                    format!("{origin:?} is not \"*\" or an http(s) origin"),
                ));
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid("log.level", "is not a valid log filter"));
        }
        Ok(())
    }

    /// The JWT signing secret: the configured one, or in development a generated one kept in
    /// the data directory so tokens survive restarts. The bool says whether it was generated.
    /// Whether an account's address must be verified before it matches by e-mail (members,
    /// mentions, invitations): `auth.require_verified_email`, where `auto` is on in
    /// production with `smtp.url` set.
    pub fn require_verified_email(&self) -> bool {
        match self.auth.require_verified_email.as_str() {
            "true" => true,
            "false" => false,
            _ => self.environment == Environment::Production && !self.smtp.url.is_empty(),
        }
    }

    pub fn resolve_jwt_secret(&self) -> Result<(Vec<u8>, bool), ConfigError> {
        if !self.auth.jwt_secret.is_empty() {
            let key = crate::auth::secret_key(&self.auth.jwt_secret)
                .map_err(|e| invalid("auth.jwt_secret", e))?;
            return Ok((key, false));
        }
        let path = self.data_dir.join("jwt_secret");
        let secret_err = |source| ConfigError::Secret {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(existing) if crate::auth::secret_key(existing.trim()).is_ok() => {
                return Ok((existing.trim().as_bytes().to_vec(), true))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(secret_err(e)),
        }
        crate::files::private_dir(&self.data_dir).map_err(secret_err)?;
        let secret = crate::auth::random_token(48);
        write_private(&path, secret.as_bytes()).map_err(secret_err)?;
        Ok((secret.into_bytes(), true))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    crate::files::create_private(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_run_with_nothing_installed() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(s.server.host, "127.0.0.1");
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.database.url, "sqlite://data/stoa.db");
        assert_eq!(s.database.kind(), Some(DatabaseKind::Sqlite));
        assert_eq!(s.environment, Environment::Development);
    }

    #[test]
    fn environment_overrides_file_values() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("STOA_SERVER__PORT", "9001"),
                ("STOA_DATABASE__URL", "postgres://u@h/db"),
                (
                    "STOA_HTTP__CORS_ALLOWED_ORIGINS",
                    "https://a.example,https://b.example",
                ),
                ("OTHER_VAR", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.port, 9001);
        assert_eq!(s.database.kind(), Some(DatabaseKind::Postgres));
        assert_eq!(
            s.http.cors_allowed_origins,
            vec!["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn a_config_file_is_layered_between_defaults_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stoa.toml");
        std::fs::write(&file, "[server]\nport = 7000\nhost = \"0.0.0.0\"\n").unwrap();
        let s =
            Settings::load_with_env(Some(&file), env(&[("STOA_SERVER__PORT", "7001")])).unwrap();
        assert_eq!(s.server.host, "0.0.0.0");
        assert_eq!(s.server.port, 7001);
    }

    #[test]
    fn the_bus_is_named_once_by_a_scheme_stoa_speaks() {
        let load = |vars: &[(&str, &str)]| Settings::load_with_env(None, env(vars));
        let s = load(&[("STOA_BUS__URL", "amqp://guest:guest@127.0.0.1:5672/")]).unwrap();
        assert_eq!(s.bus_url(), "amqp://guest:guest@127.0.0.1:5672/");
        let s = load(&[("STOA_BUS__URL", "amqps://rabbit.example/stoa")]).unwrap();
        assert_eq!(s.bus_url(), "amqps://rabbit.example/stoa");
        assert!(load(&[("STOA_BUS__URL", "nats://127.0.0.1")]).is_err());
        let s = load(&[("STOA_REDIS__URL", "redis://127.0.0.1:6379/")]).unwrap();
        assert_eq!(s.bus_url(), "redis://127.0.0.1:6379/");
        let both = load(&[
            ("STOA_BUS__URL", "amqp://127.0.0.1/"),
            ("STOA_REDIS__URL", "redis://127.0.0.1/"),
        ]);
        assert!(both.unwrap_err().to_string().contains("bus.url"));
        let other = load(&[("STOA_BUS__URL", "nats://127.0.0.1:4222")]);
        assert!(other.unwrap_err().to_string().contains("amqp://"));
    }

    #[test]
    fn invalid_values_name_the_key() {
        let err = Settings::load_with_env(None, env(&[("STOA_SERVER__PORT", "not-a-port")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.port"), "{err}");

        let err = Settings::load_with_env(None, env(&[("STOA_DATABASE__URL", "mysql://x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.url"), "{err}");

        let err = Settings::load_with_env(None, env(&[("STOA_ENVIRONMENT", "production")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.jwt_secret"), "{err}");

        let err = Settings::load_with_env(None, env(&[("STOA_AUTH__JWT_SECRET", "short")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.jwt_secret"), "{err}");
    }

    #[test]
    fn unknown_variables_are_ignored_with_the_nearest_setting_named() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("STOA_SERVER_PORT", "9000"),
                ("STOA_SERVER__PROT", "1"),
                ("STOA_PORT", "tcp://10.0.0.1:8080"),
                ("STOA_SERVICE_HOST", "10.0.0.1"),
                ("STOA_PORT_8080_TCP_ADDR", "10.0.0.1"),
                ("STOA_SERVER__HOST", "0.0.0.0"),
                ("STOA_DATA_DIR", "/var/lib/stoa"),
                ("STOA_CONFIG", "/etc/stoa/stoa.toml"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.host, "0.0.0.0");
        assert_eq!(s.server.port, 8080, "a typo configures nothing");
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/stoa"));
        let ignored: Vec<(&str, &str)> = s
            .ignored_variables
            .iter()
            .map(|v| (v.name.as_str(), v.nearest.as_str()))
            .collect();
        assert_eq!(ignored.len(), 5, "{ignored:?}");
        assert!(ignored.contains(&("STOA_SERVER_PORT", "STOA_SERVER__PORT")));
        assert!(ignored.contains(&("STOA_SERVER__PROT", "STOA_SERVER__PORT")));
        let shown = s.ignored_variables[0].to_string();
        assert!(shown.contains("did you mean STOA_"), "{shown}");
    }

    #[test]
    fn unknown_keys_in_a_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stoa.toml");
        std::fs::write(&file, "[server]\nprot = 1\n").unwrap();
        let err = Settings::load_with_env(Some(&file), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("prot"), "{err}");
    }

    #[test]
    fn a_full_presence_state_must_fit_the_outbox() {
        let err =
            Settings::load_with_env(None, env(&[("STOA_REALTIME__MAX_PRESENCE_METAS", "1000")]))
                .unwrap_err()
                .to_string();
        assert!(err.contains("realtime.max_presence_metas"), "{err}");
        assert!(Settings::load_with_env(
            None,
            env(&[
                ("STOA_REALTIME__MAX_PRESENCE_METAS", "1000"),
                ("STOA_REALTIME__OUTBOUND_QUEUE_BYTES", "2097152"),
            ]),
        )
        .is_ok());
    }

    #[test]
    fn every_setting_has_a_variable() {
        let paths = setting_paths();
        assert!(paths.contains(&"environment".to_string()));
        assert!(paths.contains(&"realtime.max_frame_bytes".to_string()));
        assert_eq!(variable_of("server.port"), "STOA_SERVER__PORT");
        assert_eq!(variable_of("data_dir"), "STOA_DATA_DIR");
    }

    #[test]
    fn development_secret_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings::load_with_env(None, env(&[])).unwrap();
        s.data_dir = dir.path().join("data");
        let (first, generated) = s.resolve_jwt_secret().unwrap();
        assert!(generated);
        assert!(first.len() >= 32);
        let (second, _) = s.resolve_jwt_secret().unwrap();
        assert_eq!(first, second);
    }
}
