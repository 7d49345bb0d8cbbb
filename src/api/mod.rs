//! The HTTP API: REST resources under `/api/v1`, operations endpoints (`/healthz`,
//! `/readyz`, `/metrics`) and the OpenAPI document at `/api/openapi.json`, which is
//! collected from the same handler registrations that serve the routes, so it cannot miss one.
//! Other GETs and HEADs, outside `/api`, the sockets and those endpoints, are the web
//! console's ([`crate::console`]), which the document does not describe.

mod attachments;
mod auth;
mod broadcast;
mod cluster;
mod comments;
pub mod directory;
mod documents;
pub mod error;
mod events;
mod extract;
mod invitations;
mod longpoll;
mod notifications;
mod observe;
pub mod openapi;
mod reports;
mod search;
pub mod socket;
mod sso;
mod tokens;
mod versions;
mod webhooks;
mod workspaces;
mod yjs;

use std::sync::Arc;

use actix_web::{get, web, HttpRequest, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::{scope, AppExt};

use crate::auth::{AuthLimits, JwtKeys, PasswordWork};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::views::Health;
use error::{ApiError, Problem};
pub use observe::{observe, REQUEST_ID};

/// Everything a request handler may use, shared by all workers.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub jwt: JwtKeys,
    /// Who a token stands for (Stoa's own tokens and the product's).
    pub identities: Arc<crate::identity::Identities>,
    pub passwords: PasswordWork,
    pub auth_limits: AuthLimits,
    /// Each signed-in user's allowance of requests (`http.user_requests_per_sec`).
    pub user_requests: crate::auth::KeyedLimiter<crate::domain::UserId>,
    pub refresh_ttl_secs: i64,
    /// How long a spent refresh token still gets its successor again (milliseconds).
    pub refresh_reuse_ms: i64,
    /// Derives each refresh token's successor (see [`crate::auth::successor_token`]).
    pub refresh_key: Vec<u8>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub max_body_bytes: usize,
    pub metrics: Metrics,
    pub realtime: crate::realtime::Realtime,
    /// Origins a browser may open the socket from (`*` for any).
    pub socket_origins: SocketOrigins,
    /// Where searches go (the database's index, or Elasticsearch).
    pub search: Arc<dyn crate::search::SearchBackend>,
    /// The Redis bus's health, when the node is in a cluster.
    pub bus: Option<Arc<crate::bus::BusHealth>>,
    /// The clients behind the TLS terminator's loopback connections (`server.tls_cert`).
    pub tls_peers: Option<Arc<crate::tls::TlsPeers>>,
    /// The bearer token `/metrics` requires (`metrics.token`), if any.
    pub metrics_token: Option<String>,
    /// Outgoing mail (or the log, without `smtp.url`).
    pub mailer: crate::mail::Mailer,
    /// Where links in mail point (`server.public_url`).
    pub public_url: String,
    /// How long an invitation's link works (ms).
    pub invitation_ttl_ms: i64,
    /// Sign-in with a directory (`auth.ldap`), when configured.
    pub ldap: Option<Arc<crate::auth::ldap::LdapDirectory>>,
    /// Single sign-on providers (`auth.oidc`), possibly none.
    pub oidc: Arc<crate::auth::oidc::OidcProviders>,
    /// Outgoing webhooks: the guard and client of registrations and redeliveries.
    pub webhooks: crate::webhooks::WebhookApi,
    /// Signs the unsubscribe links of e-mail digests.
    pub unsubscribe_key: Vec<u8>,
    /// Where attachments' bytes are, their limits, and what removes deleted ones.
    pub blobs: crate::blobs::Blobs,
    pub storage: crate::config::StorageSettings,
    pub sweeper: crate::blobs::Sweeper,
    /// Uploads being received on this node (`storage.max_concurrent_uploads` permits).
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// This node's LongPoll sessions (`/socket/longpoll`).
    pub longpolls: Arc<crate::longpoll::LongPolls>,
}

/// Which `Origin` headers the WebSocket upgrade accepts (the CORS origins).
#[derive(Debug, Clone)]
pub enum SocketOrigins {
    Any,
    Only(Vec<String>),
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stoa API",
        description = "REST API of Stoa, the real-time collaboration server. Errors are \
                       application/problem+json with a stable `code`. Lists are cursor \
                       paginated. Authenticate with `Authorization: Bearer <access token>` \
                       from /api/v1/auth/login."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "workspaces", description = "Workspaces"),
        (name = "members", description = "Workspace members and roles"),
        (name = "invitations", description = "Invitations by e-mail to addresses without a verified account"),
        (name = "documents", description = "Documents"),
        (name = "comments", description = "Comments and threads"),
        (name = "attachments", description = "Files on documents and comments"),
        (name = "events", description = "The workspace event log"),
        (name = "webhooks", description = "Outgoing webhooks: the event log POSTed, signed, to endpoints of a workspace"),
        (name = "realtime", description = "Pushing to live clients from a backend service, without a socket"),
        (name = "notifications", description = "The caller's notifications"),
        (name = "search", description = "Full-text search over documents and comments"),
        (name = "reports", description = "Workspace activity reports (admins), JSON or CSV"),
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "directory", description = "The product's users, workspaces and memberships, mirrored by its backend with an API token"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The served OpenAPI document, rendered once per worker.
struct OpenApiJson(String);

/// Liveness: the process answers.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "Alive", body = Health))
)]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        reason: None,
    })
}

/// Readiness: the database answers.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Ready (`ok`), or ready for local work with the bus to the other nodes away (`degraded`, with a reason)", body = Health),
        (status = 503, description = "Database unreachable", body = Health),
    )
)]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.ping().await {
        // Without the bus the node still serves its own clients: ready, but degraded.
        Ok(()) => match state.bus.as_ref().and_then(|b| b.reason()) {
            Some(reason) => HttpResponse::Ok().json(Health {
                status: "degraded",
                reason: Some(format!("bus: {reason}")),
            }),
            None => HttpResponse::Ok().json(Health {
                status: "ok",
                reason: None,
            }),
        },
        Err(e) => HttpResponse::ServiceUnavailable().json(Health {
            status: "unavailable",
            reason: Some(format!("database: {e}")),
        }),
    }
}

/// Prometheus metrics in the text exposition format. With `metrics.token` set, only for
/// `Authorization: Bearer <token>`.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Metrics", body = String, content_type = "text/plain"),
        (status = 401, description = "`metrics.token` is set and the request does not carry it", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/metrics")]
async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if let Some(expected) = &state.metrics_token {
        let given = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !crate::auth::same_secret(given.as_bytes(), expected.as_bytes()) {
            return Err(ApiError::unauthorized(
                "invalid_token",
                "/metrics needs the bearer token configured as metrics.token",
            ));
        }
    }
    let keys = i64::try_from(state.auth_limits.keys()).unwrap_or(i64::MAX);
    state.metrics.auth_limiter_keys.set(keys);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render()))
}

/// This document.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document", body = Object))
)]
#[get("/api/openapi.json")]
async fn openapi_json(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}

/// No route: the console for a GET or HEAD of a path of its own (see [`crate::console`]),
/// and 405 with `Allow: GET, HEAD` for other methods there; else 405 with `Allow` when the
/// path exists under other methods, else 404.
async fn not_found(
    req: HttpRequest,
    routes: web::Data<openapi::Routes>,
) -> Result<HttpResponse, ApiError> {
    if let Some(console) = crate::console::respond(&req) {
        return Ok(console);
    }
    if crate::console::owns(req.path()) {
        return Err(ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            allow: "GET, HEAD".into(),
        });
    }
    if let Some(allow) = routes.allowed(req.path()) {
        return Err(ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            allow,
        });
    }
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

/// Registers every route, collecting the OpenAPI document as it goes.
pub fn app(
    state: web::Data<AppState>,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    // A LongPoll request carries at most 100 frames, each with its line break.
    let longpoll_body = web::PayloadConfig::new(
        crate::longpoll::MAX_BATCH * (state.realtime.limits().max_frame_bytes + 2),
    );
    let (app, doc) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .app_data(state)
        .app_data(web::PathConfig::default().error_handler(|err, _| {
            ApiError::bad_request("invalid_parameter", err.to_string()).into()
        }))
        .app_data(web::QueryConfig::default().error_handler(|err, _| {
            ApiError::bad_request("invalid_parameter", err.to_string()).into()
        }))
        .service(healthz)
        .service(readyz)
        .service(metrics)
        .service(openapi_json)
        .service(
            scope::scope("/api/v1")
                .service(auth::register)
                .service(auth::login)
                .service(auth::refresh)
                .service(auth::logout)
                .service(auth::me)
                .service(auth::update_me)
                .service(auth::export_me)
                .service(auth::delete_me)
                .service(tokens::create_api_token)
                .service(tokens::list_api_tokens)
                .service(tokens::revoke_api_token)
                .service(auth::change_password)
                .service(auth::verify_email)
                .service(auth::ldap_login)
                .service(broadcast::publish)
                .service(notifications::unsubscribe_page_get)
                .service(notifications::unsubscribe)
                .service(webhooks::create_webhook)
                .service(webhooks::list_webhooks)
                .service(webhooks::get_webhook)
                .service(webhooks::update_webhook)
                .service(webhooks::delete_webhook)
                .service(webhooks::list_deliveries)
                .service(webhooks::redeliver)
                .service(attachments::upload_attachment)
                .service(attachments::list_attachments)
                .service(attachments::get_attachment)
                .service(attachments::download_attachment)
                .service(attachments::delete_attachment)
                .service(attachments::attachment_usage)
                .service(versions::list_versions)
                .service(versions::create_version)
                .service(versions::get_version)
                .service(versions::diff_version)
                .service(versions::restore_version)
                .service(sso::start)
                .service(sso::callback)
                .service(sso::exchange)
                .service(sso::get_workspace_sso)
                .service(sso::put_workspace_sso)
                .service(sso::delete_workspace_sso)
                .service(auth::sign_in_methods)
                .service(auth::send_verification)
                .service(auth::request_password_reset)
                .service(auth::confirm_password_reset)
                .service(invitations::list_invitations)
                .service(invitations::resend_invitation)
                .service(invitations::revoke_invitation)
                .service(invitations::accept_invitation)
                .service(workspaces::create_workspace)
                .service(workspaces::list_workspaces)
                .service(workspaces::get_workspace)
                .service(workspaces::update_workspace)
                .service(workspaces::delete_workspace)
                .service(workspaces::list_members)
                .service(workspaces::add_member)
                .service(workspaces::get_member)
                .service(workspaces::change_role)
                .service(workspaces::remove_member)
                .service(documents::create_document)
                .service(documents::list_documents)
                .service(documents::get_document)
                .service(documents::update_document)
                .service(documents::delete_document)
                .service(comments::create_comment)
                .service(comments::list_comments)
                .service(comments::get_comment)
                .service(comments::update_comment)
                .service(comments::delete_comment)
                .service(events::list_events)
                .service(search::search_workspace)
                .service(search::search_all)
                .service(reports::activity_report)
                .service(reports::member_report)
                .service(reports::document_report)
                .service(reports::overview_report)
                .service(notifications::list_notifications)
                .service(notifications::get_unread_count)
                .service(notifications::mark_read)
                .service(notifications::mark_all_read)
                .service(cluster::cluster)
                .service(directory::put_user)
                .service(directory::put_workspace)
                .service(directory::put_membership)
                .service(directory::delete_membership)
                .service(directory::delete_user),
        )
        .split_for_parts();
    let doc = openapi::finish(&doc);
    let routes = openapi::Routes::from_document(
        &doc,
        &[
            ("/socket/websocket", "get"),
            ("/socket/longpoll", "get"),
            ("/socket/longpoll", "post"),
            ("/yjs/{document_id}", "get"),
        ],
    );

    app.app_data(web::Data::new(OpenApiJson(doc.to_string())))
        .app_data(web::Data::new(routes))
        .service(web::resource("/socket/websocket").route(web::get().to(socket::connect)))
        .service(
            web::resource("/socket/longpoll")
                .app_data(longpoll_body)
                .route(web::get().to(longpoll::poll))
                .route(web::post().to(longpoll::send)),
        )
        .service(web::resource("/yjs/{document_id}").route(web::get().to(yjs::connect)))
        .default_service(web::to(not_found))
}
