//! Single sign-on through OpenID Connect (`auth.oidc`): the browser is sent to the provider
//! (`/auth/oidc/<name>/start`), comes back with a code (`/auth/oidc/<name>/callback`), and
//! the console trades the one-time code it is then given for the same access and refresh
//! tokens a password sign-in gets (`/auth/oidc/exchange`). Every step is bound to the
//! browser that began it by a cookie; the `state`, the PKCE verifier and the nonce stay on
//! the server. Workspaces can require a provider for their members' e-mail domain
//! (`/workspaces/<id>/sso`).

use actix_web::http::header;
use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{address, issue_tokens, limit, require_sso};
use super::error::{ApiError, Problem};
use super::extract::{ApiJson, AuthUser};
use super::AppState;
use crate::auth::oidc::OidcError;
use crate::auth::{random_token, token_digest};
use crate::domain::{now_ms, DisplayName, Email, Role};
use crate::store::email_domain;
use crate::store::OidcFlow;
use crate::views::TokenResponse;

/// The cookie binding a sign-in to the browser that began it.
const BROWSER_COOKIE: &str = "stoa_sso";
/// How long the browser has at the provider.
const STATE_TTL_MS: i64 = 10 * 60 * 1000;
/// How long the console has to trade its one-time code.
const HANDOFF_TTL_MS: i64 = 2 * 60 * 1000;
/// Where the console takes the one-time code (or the error) from the URL's fragment.
const CONSOLE_PAGE: &str = "/signin/sso";

#[derive(Debug, Deserialize, IntoParams)]
pub struct StartQuery {
    /// The console's path to return to once signed in (a path of this server only).
    pub next: Option<String>,
    /// Passed on to the provider (the address the person is expected to sign in with).
    pub login_hint: Option<String>,
    /// `true`: the provider checks the person again rather than answering from its own
    /// session (before deleting an account).
    pub reauthenticate: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    /// The provider's refusal (`access_denied` when the person cancelled).
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A path of this server's console: one leading slash, nothing that could leave it.
fn console_path(next: Option<&str>) -> Option<String> {
    let next = next?;
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 512
        && !next
            .chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace());
    ok.then(|| next.to_string())
}

/// The value of the browser cookie on the request, if any.
fn browser_cookie(req: &HttpRequest) -> Option<String> {
    let header = req.headers().get(header::COOKIE)?.to_str().ok()?;
    header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == BROWSER_COOKIE && (20..=100).contains(&value.len())).then(|| value.to_string())
    })
}

fn set_browser_cookie(state: &AppState, value: &str) -> String {
    let secure = if state.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{BROWSER_COOKIE}={value}; Path=/api/v1/auth/oidc; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        STATE_TTL_MS / 1000
    )
}

/// The console page that finishes a sign-in, told the outcome in its URL's fragment.
fn to_console(state: &AppState, fragment: &[(&str, &str)]) -> HttpResponse {
    let mut url = url::Url::parse(&format!("{}{CONSOLE_PAGE}", state.public_url))
        .unwrap_or_else(|_| url::Url::parse("http://localhost/signin/sso").expect("a URL"));
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fragment)
        .finish();
    url.set_fragment(Some(&encoded));
    HttpResponse::Found()
        .insert_header((header::LOCATION, url.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .finish()
}

fn refused(state: &AppState, code: &str, description: &str) -> HttpResponse {
    tracing::info!(code, description, "single sign-on refused");
    to_console(
        state,
        &[("error", code), ("error_description", description)],
    )
}

fn provider_or_404(
    state: &AppState,
    name: &str,
) -> Result<std::sync::Arc<crate::auth::oidc::OidcProvider>, ApiError> {
    state.oidc.get(name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no single sign-on provider is called {name:?} (auth.oidc)"
        ))
    })
}

/// Sign-ins from one client address are held to the login limit.
fn limit_address(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let client = address(state, req);
    limit(state, &state.auth_limits.login_by_address, &client, "login")
}

/// Begin signing in through a provider: the browser is sent there (302) with a fresh
/// `state`, nonce and PKCE challenge, and gets a cookie that ties the sign-in to it.
#[utoipa::path(
    tag = "auth",
    params(("provider" = String, Path, description = "A provider's name (`auth.oidc`)"), StartQuery),
    responses(
        (status = 302, description = "To the provider"),
        (status = 404, description = "No such provider", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many sign-ins from this address", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The provider cannot be reached", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/auth/oidc/{provider}/start")]
pub async fn start(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<StartQuery>,
) -> Result<HttpResponse, ApiError> {
    let provider = provider_or_404(&state, &path)?;
    limit_address(&state, &req)?;
    let auth = provider
        .authorize(
            query.login_hint.as_deref(),
            query.reauthenticate.unwrap_or(false),
        )
        .await
        .map_err(|e| {
            tracing::warn!(provider = provider.name(), error = %e, "cannot begin single sign-on");
            ApiError::Unavailable(format!(
                "{} cannot be reached; try again",
                provider.display_name()
            ))
        })?;
    // One cookie for every sign-in the browser has under way (two tabs), renewed each time.
    let cookie = browser_cookie(&req).unwrap_or_else(|| random_token(32));
    state
        .store
        .insert_oidc_flow(&OidcFlow {
            id: token_digest(&auth.state),
            kind: "state".into(),
            provider: provider.name().to_string(),
            browser: token_digest(&cookie),
            nonce: Some(auth.nonce),
            verifier: Some(auth.verifier),
            next_path: console_path(query.next.as_deref()),
            user_id: None,
            expires_at: now_ms() + STATE_TTL_MS,
        })
        .await?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, auth.url))
        .insert_header((header::SET_COOKIE, set_browser_cookie(&state, &cookie)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// Where the provider sends the browser back. The sign-in is checked (its `state`, taken
/// once; the browser's cookie; the code traded with the PKCE verifier; the ID token's
/// signature, issuer, audience, expiry and nonce; a verified address for a person not
/// yet linked), and the browser is sent to the console's `/signin/sso` page with, in the
/// URL's fragment, a one-time `handoff` code, or an `error` and `error_description`.
#[utoipa::path(
    tag = "auth",
    params(("provider" = String, Path, description = "A provider's name (`auth.oidc`)"), CallbackQuery),
    responses(
        (status = 302, description = "To the console, with `#handoff=…` or `#error=…`"),
        (status = 404, description = "No such provider", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many sign-ins from this address", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/auth/oidc/{provider}/callback")]
pub async fn callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    let provider = provider_or_404(&state, &path)?;
    limit_address(&state, &req)?;
    let now = now_ms();
    let flow = match query.state.as_deref() {
        Some(s) if !s.is_empty() && s.len() <= 200 => {
            state
                .store
                .take_oidc_flow(&token_digest(s), "state", now)
                .await?
        }
        _ => None,
    };
    let Some(flow) = flow.filter(|f| f.provider == provider.name()) else {
        return Ok(refused(
            &state,
            "state_invalid",
            "this sign-in is unknown, already finished or expired; sign in again",
        ));
    };
    let browser = browser_cookie(&req).map(|c| token_digest(&c));
    if browser.as_deref() != Some(flow.browser.as_str()) {
        return Ok(refused(
            &state,
            "browser_mismatch",
            "this sign-in began in another browser; sign in again here",
        ));
    }
    if let Some(error) = query.error.as_deref() {
        let description = query
            .error_description
            .as_deref()
            .unwrap_or("the provider did not sign you in");
        let description: String = description.chars().take(300).collect();
        let code = if error == "access_denied" {
            "access_denied"
        } else {
            "provider_error"
        };
        return Ok(refused(&state, code, &description));
    }
    let Some(code) = query
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 2048)
    else {
        return Ok(refused(
            &state,
            "code_missing",
            "the provider sent no code back",
        ));
    };
    let person = match provider
        .finish(
            code,
            flow.verifier.as_deref().unwrap_or_default(),
            flow.nonce.as_deref().unwrap_or_default(),
        )
        .await
    {
        Ok(person) => person,
        Err(e) => {
            tracing::warn!(provider = provider.name(), error = %e, "single sign-on refused");
            let (code, description) = match e {
                OidcError::Unavailable(_) => (
                    "provider_unavailable",
                    format!("{} cannot be reached; try again", provider.display_name()),
                ),
                OidcError::Refused(_) => (
                    "code_refused",
                    format!(
                        "{} did not accept this sign-in (used already or expired); sign in again",
                        provider.display_name()
                    ),
                ),
                OidcError::InvalidToken(why) => (
                    "id_token_invalid",
                    format!("the sign-in could not be checked: {why}"),
                ),
            };
            return Ok(refused(&state, code, &description));
        }
    };
    // The issuer as configured names the person, whatever spelling of it the token uses.
    let issuer = provider.issuer().to_string();
    let linked = state
        .store
        .external_user_id(&issuer, &person.subject)
        .await?
        .is_some();
    let email = person
        .email
        .as_deref()
        .and_then(|e| Email::parse(e).ok())
        .filter(|_| person.email_verified);
    if !linked && email.is_none() {
        let why = if person.email.is_some() {
            "the provider has not verified your e-mail address; verify it there, then sign in again"
        } else {
            "the provider did not give your e-mail address (ask for the email scope)"
        };
        return Ok(refused(&state, "email_not_verified", why));
    }
    let name = person
        .name
        .as_deref()
        .and_then(|n| DisplayName::parse(n).ok());
    let (user, ended) = state
        .store
        .sso_user(&issuer, &person.subject, email.as_ref(), name.as_ref())
        .await?;
    if let Some(end) = ended {
        tracing::info!(
            user_id = user.id,
            "an account registered with an unverified address was claimed through single sign-on; its password and sessions ended"
        );
        state
            .realtime
            .end_sessions(crate::realtime::session_end(&end));
    }
    if user.disabled {
        return Ok(refused(
            &state,
            "account_disabled",
            "this account is disabled",
        ));
    }
    let method = format!("oidc:{}", provider.name());
    if let Err(ApiError::SsoRequired { display, .. }) =
        require_sso(&state, user.id, Some(&method)).await
    {
        return Ok(refused(
            &state,
            "sso_required",
            &format!("a workspace you belong to requires signing in with {display}"),
        ));
    }
    let handoff = random_token(32);
    state
        .store
        .insert_oidc_flow(&OidcFlow {
            id: token_digest(&handoff),
            kind: "handoff".into(),
            provider: provider.name().to_string(),
            browser: flow.browser,
            nonce: None,
            verifier: None,
            next_path: None,
            user_id: Some(user.id),
            expires_at: now_ms() + HANDOFF_TTL_MS,
        })
        .await?;
    let next = flow.next_path.unwrap_or_else(|| "/".into());
    Ok(to_console(
        &state,
        &[("handoff", &handoff), ("next", &next)],
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    /// The one-time code of the console page's URL fragment (`#handoff=…`).
    pub handoff: String,
}

/// Trade the one-time code a finished single sign-on left in the console's URL for an
/// access token and a refresh token, from the browser that signed in (its cookie), once,
/// within two minutes.
#[utoipa::path(
    tag = "auth",
    request_body = ExchangeRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 400, description = "Unknown, used, expired, or from another browser (`handoff_invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many sign-ins from this address", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/oidc/exchange")]
pub async fn exchange(
    state: web::Data<AppState>,
    req: HttpRequest,
    ApiJson(body): ApiJson<ExchangeRequest>,
) -> Result<HttpResponse, ApiError> {
    limit_address(&state, &req)?;
    let invalid = || {
        ApiError::bad_request(
            "handoff_invalid",
            "this sign-in is unknown, already used, expired or from another browser; sign in again",
        )
    };
    if body.handoff.is_empty() || body.handoff.len() > 200 {
        return Err(invalid());
    }
    let flow = state
        .store
        .take_oidc_flow(&token_digest(&body.handoff), "handoff", now_ms())
        .await?
        .ok_or_else(invalid)?;
    let browser = browser_cookie(&req).map(|c| token_digest(&c));
    if browser.as_deref() != Some(flow.browser.as_str()) {
        return Err(invalid());
    }
    let user = match flow.user_id {
        Some(id) => state.store.user(id).await?,
        None => None,
    }
    .filter(|u| !u.disabled)
    .ok_or_else(invalid)?;
    let method = format!("oidc:{}", flow.provider);
    let tokens = issue_tokens(&state, &user, None, Some(&method)).await?;
    Ok(HttpResponse::Ok().json(tokens))
}

/// A workspace's single sign-on rule.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSsoView {
    /// A provider's name (`auth.oidc`).
    pub provider: String,
    /// Members whose address is in one of these domains sign in through `provider` only.
    pub domains: Vec<String>,
}

async fn require_admin(state: &AppState, user: i64, ws: i64) -> Result<(), ApiError> {
    match state.store.role(user, ws).await? {
        Role::Owner | Role::Admin => Ok(()),
        _ => Err(ApiError::Forbidden(
            "only the workspace's owners and admins set its sign-in rule".into(),
        )),
    }
}

/// A workspace's single sign-on rule as it stands: none is `provider: null`, no domains.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceSsoState {
    pub provider: Option<String>,
    pub domains: Vec<String>,
}

/// The workspace's single sign-on rule (`provider: null` when it has none).
#[utoipa::path(
    tag = "workspaces",
    params(("id" = i64, Path, description = "Workspace id")),
    responses(
        (status = 200, description = "The rule", body = WorkspaceSsoState),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/workspaces/{id}/sso")]
pub async fn get_workspace_sso(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let ws = path.into_inner();
    state.store.role(user.id, ws).await?;
    let rule = state.store.workspace_sso(ws).await?;
    Ok(HttpResponse::Ok().json(match rule {
        Some(rule) => WorkspaceSsoState {
            provider: Some(rule.provider),
            domains: rule.domains,
        },
        None => WorkspaceSsoState {
            provider: None,
            domains: Vec::new(),
        },
    }))
}

/// Require single sign-on through `provider` for the members whose address is in one of
/// `domains`. Their other logins end at once on every node (their sockets close, their
/// refresh tokens stop working), and password and directory sign-ins are refused to them
/// (`sso_required`) while the rule stands. Refused (`sso_lockout`) when it would end the
/// caller's own login: sign in through the provider first.
#[utoipa::path(
    tag = "workspaces",
    params(("id" = i64, Path, description = "Workspace id")),
    request_body = WorkspaceSsoView,
    responses(
        (status = 200, description = "The rule now", body = WorkspaceSsoView),
        (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The rule would sign you out (`sso_lockout`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown provider, or a domain that is not one", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[put("/workspaces/{id}/sso")]
pub async fn put_workspace_sso(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<i64>,
    ApiJson(body): ApiJson<WorkspaceSsoView>,
) -> Result<HttpResponse, ApiError> {
    let ws = path.into_inner();
    require_admin(&state, user.id, ws).await?;
    let Some(provider) = state.oidc.get(&body.provider) else {
        return Err(ApiError::validation(
            "provider",
            format!(
                "no single sign-on provider is called {:?} here (auth.oidc)",
                body.provider
            ),
        ));
    };
    let mut domains = Vec::new();
    for d in &body.domains {
        let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
        let valid = !d.is_empty()
            && d.len() <= 253
            && d.contains('.')
            && d.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(ApiError::validation(
                "domains",
                format!("{d:?} is not a domain name (example.com)"),
            ));
        }
        if !domains.contains(&d) {
            domains.push(d);
        }
    }
    if domains.is_empty() || domains.len() > 50 {
        return Err(ApiError::validation("domains", "1 to 50 domains"));
    }
    let method = format!("oidc:{}", provider.name());
    // The caller's own login must survive the rule.
    if let Some(me) = state.store.user(user.id).await? {
        let mine = email_domain(&me.email).is_some_and(|d| domains.contains(&d));
        if mine {
            let session = match user.session.as_deref() {
                Some(family) => state.store.session_info(family).await?,
                None => None,
            };
            // An API token is not a login: it is not ended by the rule.
            let signed_in = user
                .session
                .as_deref()
                .is_some_and(|s| !s.starts_with("api:"));
            if signed_in && session.and_then(|s| s.method).as_deref() != Some(method.as_str()) {
                return Err(ApiError::Conflict {
                    code: "sso_lockout",
                    detail: format!(
                        "this rule covers your own address and would end this sign-in: sign in with {} first",
                        provider.display_name()
                    ),
                });
            }
        }
    }
    let rule = state
        .store
        .set_workspace_sso(ws, Some((provider.name(), &domains)))
        .await?
        .ok_or(ApiError::Internal)?;
    // Members covered by the rule lose every other login now.
    let mut ended = 0;
    for member in state.store.members_in_domains(ws, &domains).await? {
        for end in state
            .store
            .end_sessions_not_by(member, &method, "sso_required")
            .await?
        {
            state
                .realtime
                .end_sessions(crate::realtime::session_end(&end));
            ended += 1;
        }
    }
    tracing::info!(
        workspace_id = ws,
        provider = provider.name(),
        ended,
        "workspace requires single sign-on"
    );
    Ok(HttpResponse::Ok().json(WorkspaceSsoView {
        provider: rule.provider,
        domains: rule.domains,
    }))
}

/// Lift the workspace's single sign-on rule.
#[utoipa::path(
    tag = "workspaces",
    params(("id" = i64, Path, description = "Workspace id")),
    responses(
        (status = 204, description = "No rule now"),
        (status = 403, description = "Not an owner or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/workspaces/{id}/sso")]
pub async fn delete_workspace_sso(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let ws = path.into_inner();
    require_admin(&state, user.id, ws).await?;
    state.store.set_workspace_sso(ws, None).await?;
    Ok(HttpResponse::NoContent().finish())
}
