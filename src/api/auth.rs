//! `/api/v1/auth/*` and `/api/v1/me`: accounts, login, token refresh and logout.

use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{checked, client_ip, ApiJson, AuthUser, Validation};
use super::AppState;
use crate::auth::{
    address_key, random_token, successor_token, token_digest, KeyedLimiter, PasswordError,
};
use crate::domain::{now_ms, DisplayName, Email, Password};
use crate::store::{Rotation, User};
use crate::views::{AccountView, NotificationPreferences, TokenResponse, UserView};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub email: String,
    /// 8 to 256 characters.
    pub password: String,
    pub display_name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Takes one attempt from `limiter` for `key`, or refuses with 429 and `Retry-After`.
pub(super) fn limit<K: std::hash::Hash + Eq + Clone>(
    state: &AppState,
    limiter: &KeyedLimiter<K>,
    key: &K,
    name: &'static str,
) -> Result<(), ApiError> {
    limiter.check(key).map_err(|wait| {
        state.metrics.rate_limited.with_label_values(&[name]).inc();
        ApiError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
    })
}

/// The rate-limit key of the request's client address.
pub(super) fn address(state: &AppState, req: &HttpRequest) -> std::net::IpAddr {
    address_key(client_ip(
        req,
        &state.trusted_proxies,
        state.tls_peers.as_deref(),
    ))
}

fn hashing_failed(state: &AppState, e: PasswordError) -> ApiError {
    match e {
        PasswordError::Busy => {
            state.metrics.password_busy.inc();
            ApiError::Busy {
                retry_after_secs: 1,
            }
        }
        PasswordError::Failed(e) => {
            tracing::error!(error = %e, "password hashing failed");
            ApiError::Internal
        }
    }
}

/// Issues an access token and a refresh token; a new login starts a new token family,
/// recording how it began (`method`: `None` for a password, `ldap`, `oidc:<provider>`).
/// `existing` is a rotated refresh token and the family (login) it belongs to.
pub(super) async fn issue_tokens(
    state: &AppState,
    user: &User,
    existing: Option<(String, String)>,
    method: Option<&str>,
) -> Result<TokenResponse, ApiError> {
    let now = now_ms();
    let (refresh_token, family) = match existing {
        Some(t) => t,
        None => {
            let token = random_token(32);
            let family = random_token(16);
            state
                .store
                .insert_refresh_token(
                    user.id,
                    &family,
                    &token_digest(&token),
                    now + state.refresh_ttl_secs * 1000,
                    method,
                )
                .await?;
            (token, family)
        }
    };
    let (access_token, _) = state.jwt.issue(user.id, now / 1000, Some(&family));
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: state.jwt.ttl_secs(),
        refresh_token,
        user: UserView::from(user),
    })
}

/// How addresses were keyed before they had to be ASCII: trimmed and lower-cased.
fn legacy_key(email: &str) -> Option<String> {
    let v = email.trim();
    let plausible = v.contains('@') && v.chars().count() <= crate::domain::EMAIL_MAX;
    let clean = !v.chars().any(|c| c.is_control() || c.is_whitespace());
    (plausible && clean).then(|| v.to_lowercase())
}

/// Applies the roles a person's directory groups grant (a membership a group granted and no
/// group grants now is removed), and tells the live side.
async fn apply_directory_roles(
    state: &AppState,
    user: i64,
    issuer: &str,
    person: &crate::auth::ldap::DirectoryUser,
) -> Result<(), ApiError> {
    let changes = state
        .store
        .apply_role_claims(user, issuer, &person.id, &person.roles, now_ms())
        .await?;
    for change in &changes {
        crate::realtime::membership_changed(&state.realtime, &*state.store, change).await;
    }
    Ok(())
}

/// Refuses a login that did not begin through the provider a workspace of the user
/// requires for their address (`method`: how the login began).
pub(super) async fn require_sso(
    state: &AppState,
    user: i64,
    method: Option<&str>,
) -> Result<(), ApiError> {
    let Some(provider) = state.store.sso_requirement(user).await? else {
        return Ok(());
    };
    let Some(configured) = state.oidc.get(&provider) else {
        // A rule naming a provider this server no longer has would lock everyone out.
        tracing::warn!(provider, "a workspace requires a single sign-on provider that is not configured (auth.oidc); the rule is not enforced");
        return Ok(());
    };
    if method.and_then(|m| m.strip_prefix("oidc:")) == Some(provider.as_str()) {
        return Ok(());
    }
    Err(ApiError::SsoRequired {
        display: configured.display_name().to_string(),
        provider,
    })
}

/// A single sign-on provider, for the console's button.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct SsoProviderView {
    /// Begin at `/api/v1/auth/oidc/<name>/start`.
    pub name: String,
    pub display_name: String,
}

/// How people can sign in here.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct SignInMethods {
    /// E-mail and password (`/auth/login`).
    pub password: bool,
    /// A directory account (`/auth/ldap/login`).
    pub ldap: bool,
    /// Single sign-on providers (`/auth/oidc/<name>/start`).
    pub sso: Vec<SsoProviderView>,
}

/// How people can sign in here (the console asks before it draws its sign-in page).
#[utoipa::path(
    tag = "auth",
    responses((status = 200, description = "The sign-in methods", body = SignInMethods))
)]
#[get("/auth/methods")]
pub async fn sign_in_methods(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(SignInMethods {
        password: true,
        ldap: state.ldap.is_some(),
        sso: state
            .oidc
            .list()
            .map(|p| SsoProviderView {
                name: p.name().to_string(),
                display_name: p.display_name().to_string(),
            })
            .collect(),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LdapLoginRequest {
    /// What the directory's `user_filter` looks for: an e-mail, a user name…
    pub login: String,
    pub password: String,
}

/// Sign in with a directory account (`auth.ldap`). The account is made at the first
/// sign-in; the directory's groups grant workspace roles, read again at every refresh.
#[utoipa::path(
    tag = "auth",
    request_body = LdapLoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "Wrong login or password, or not an account of the directory (`invalid_credentials`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Directory sign-in is not configured", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The directory cannot be reached", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/ldap/login")]
pub async fn ldap_login(
    state: web::Data<AppState>,
    req: HttpRequest,
    ApiJson(body): ApiJson<LdapLoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let dir = state.ldap.clone().ok_or_else(|| {
        ApiError::NotFound("directory sign-in is not configured (auth.ldap.url)".into())
    })?;
    let client = address(&state, &req);
    let limits = &state.auth_limits;
    limit(&state, &limits.login_by_address, &client, "login")?;
    let account = format!("ldap:{}", body.login.trim().to_lowercase());
    limit(
        &state,
        &limits.login_by_account,
        &(account, client),
        "login",
    )?;
    let person = match dir.sign_in(body.login.trim(), &body.password).await {
        Ok(person) => person,
        Err(crate::auth::ldap::LdapError::Refused) => {
            return Err(ApiError::unauthorized(
                "invalid_credentials",
                "wrong login or password",
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "directory sign-in failed");
            return Err(ApiError::Unavailable(
                "the directory cannot be reached; try again".into(),
            ));
        }
    };
    let issuer = dir.issuer();
    let email = person.email.as_deref().and_then(|e| Email::parse(e).ok());
    let name = person
        .name
        .as_deref()
        .and_then(|n| DisplayName::parse(n).ok());
    let user = state
        .store
        .external_user(&issuer, &person.id, email.as_ref(), name.as_ref())
        .await?;
    if user.disabled {
        return Err(ApiError::Forbidden("this account is disabled".into()));
    }
    apply_directory_roles(&state, user.id, &issuer, &person).await?;
    require_sso(&state, user.id, Some("ldap")).await?;
    let tokens = issue_tokens(&state, &user, None, Some("ldap")).await?;
    Ok(HttpResponse::Ok().json(tokens))
}

/// How long a verification link works.
const VERIFICATION_TTL_MS: i64 = 48 * 3600 * 1000;
/// How long a password-reset link works.
const RESET_TTL_MS: i64 = 30 * 60 * 1000;

/// A single-use link: its token (for the mail) and that token's digest (for the database).
fn link_token() -> (String, String) {
    let token = random_token(32);
    let digest = token_digest(&token);
    (token, digest)
}

/// Mails `user` a link proving their address.
async fn send_verification_mail(state: &AppState, user: &User) -> Result<(), ApiError> {
    let (token, digest) = link_token();
    state
        .store
        .issue_email_token(
            user.id,
            "verify_email",
            &user.email,
            &digest,
            now_ms() + VERIFICATION_TTL_MS,
        )
        .await?;
    state.mailer.send_later(crate::mail::Mail {
        to: user.email.clone(),
        subject: "Confirm your e-mail address for Stoa".into(),
        text: format!(
            "Hello {name},\n\nConfirm that {email} is your address on Stoa by opening this link \
             within 48 hours:\n\n{url}/verify-email?token={token}\n\nUntil you do, nobody can add \
             you to a workspace by this address. If you did not make an account, ignore this mail.",
            name = user.display_name,
            email = user.email,
            url = state.public_url,
        ),
        unsubscribe: None,
    });
    Ok(())
}

/// Create an account and sign in.
#[utoipa::path(
    tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created; tokens issued", body = TokenResponse),
        (status = 409, description = "Email already registered (`email_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts from this address", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/register")]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let client = address(&state, &req);
    limit(
        &state,
        &state.auth_limits.register_by_address,
        &client,
        "register",
    )?;
    let mut v = Validation::default();
    let email = v.check("email", Email::parse(&body.email));
    let password = v.check("password", Password::parse(&body.password));
    let name = v.check("display_name", DisplayName::parse(&body.display_name));
    v.finish()?;
    let (email, password, name) = (checked(email)?, checked(password)?, checked(name)?);
    let hash = state
        .passwords
        .hash(password.as_str().to_string())
        .await
        .map_err(|e| hashing_failed(&state, e))?;
    let user = state.store.create_user(&email, &name, &hash).await?;
    tracing::info!(user_id = user.id, "account created");
    send_verification_mail(&state, &user).await?;
    let tokens = issue_tokens(&state, &user, None, None).await?;
    Ok(HttpResponse::Created().json(tokens))
}

/// Sign in with email and password.
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "Wrong email or password (`invalid_credentials`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account is disabled (`account_disabled`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Password checks are busy (`busy`); see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let client = address(&state, &req);
    limit(
        &state,
        &state.auth_limits.login_by_address,
        &client,
        "login",
    )?;
    let wrong = || ApiError::unauthorized("invalid_credentials", "wrong email or password");
    // The account key: a parsed address's, or — for accounts created when addresses were
    // allowed beyond ASCII — the address as older versions kept it, if it could be one
    // (254 characters at most, an @ in it). Only such bounded keys are ever stored by the
    // per-account limiter.
    let key = match Email::parse(&body.email) {
        Ok(email) => email.key().to_string(),
        Err(_) => legacy_key(&body.email).ok_or_else(wrong)?,
    };
    let limits = &state.auth_limits;
    limit(
        &state,
        &limits.login_by_account,
        &(key.clone(), client),
        "login",
    )?;
    if !limits.knows(&key, client) {
        limit(&state, &limits.login_by_account_anywhere, &key, "login")?;
    }
    let found = state.store.user_credentials(&key).await?;
    let hash = found.as_ref().map(|(_, h)| h.clone());
    let ok = state
        .passwords
        .verify(body.password, hash)
        .await
        .map_err(|e| hashing_failed(&state, e))?;
    let user = match found {
        Some((user, _)) if ok => user,
        _ => return Err(wrong()),
    };
    if user.disabled {
        return Err(ApiError::Forbidden("this account is disabled".into()));
    }
    limits.signed_in(&key, client);
    require_sso(&state, user.id, None).await?;
    Ok(HttpResponse::Ok().json(issue_tokens(&state, &user, None, None).await?))
}

/// Trade a refresh token for a new access token and a new refresh token.
///
/// Each refresh token works once. Presenting a spent one again means it was stolen or
/// replayed: the whole chain of tokens descended from the same login is revoked.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "Unknown or expired (`invalid_refresh_token`) or reused (`refresh_token_reused`) token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/refresh")]
pub async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let client = address(&state, &req);
    limit(
        &state,
        &state.auth_limits.tokens_by_address,
        &client,
        "token",
    )?;
    // The successor is derived from the token it replaces, so a second presentation within
    // the reuse interval asks for (and gets) the same one.
    let new_token = successor_token(&state.refresh_key, &body.refresh_token);
    let expires = now_ms() + state.refresh_ttl_secs * 1000;
    let outcome = state
        .store
        .rotate_refresh_token(
            &token_digest(&body.refresh_token),
            &token_digest(&new_token),
            expires,
            state.refresh_reuse_ms,
        )
        .await?;
    match outcome {
        Rotation::Rotated { user_id, family_id } => {
            let user = state
                .store
                .user(user_id)
                .await?
                .filter(|u| !u.disabled)
                .ok_or_else(|| {
                    ApiError::unauthorized(
                        "invalid_refresh_token",
                        "the account no longer exists or is disabled",
                    )
                })?;
            // A person of the directory: still there, and in which groups, now.
            if let Some(dir) = &state.ldap {
                let issuer = dir.issuer();
                if let Some(subject) = state.store.external_subject(user.id, &issuer).await? {
                    match dir.lookup(&subject).await {
                        Ok(Some(person)) => {
                            apply_directory_roles(&state, user.id, &issuer, &person).await?;
                        }
                        Ok(None) => {
                            // Gone from the directory (or disabled there): this login
                            // ends, and with it what the groups granted.
                            let gone = crate::auth::ldap::DirectoryUser {
                                dn: String::new(),
                                id: subject,
                                email: None,
                                name: None,
                                roles: Vec::new(),
                            };
                            apply_directory_roles(&state, user.id, &issuer, &gone).await?;
                            if let Some(end) = state
                                .store
                                .revoke_refresh_family(&token_digest(&new_token))
                                .await?
                            {
                                state
                                    .realtime
                                    .end_sessions(crate::realtime::session_end(&end));
                            }
                            return Err(ApiError::unauthorized(
                                "invalid_refresh_token",
                                "the directory no longer has this account",
                            ));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot check a refresh with the directory");
                            return Err(ApiError::Unavailable(
                                "the directory cannot be reached; try again".into(),
                            ));
                        }
                    }
                }
            }
            // A workspace that now requires single sign-on for this person ends a login
            // that did not come from its provider.
            if state.store.sso_requirement(user.id).await?.is_some() {
                let method = state
                    .store
                    .session_info(&family_id)
                    .await?
                    .and_then(|s| s.method);
                if let Err(e) = require_sso(&state, user.id, method.as_deref()).await {
                    if let Some(end) = state
                        .store
                        .revoke_refresh_family(&token_digest(&new_token))
                        .await?
                    {
                        state
                            .realtime
                            .end_sessions(crate::realtime::session_end(&end));
                    }
                    return Err(e);
                }
            }
            let tokens = issue_tokens(&state, &user, Some((new_token, family_id)), None).await?;
            Ok(HttpResponse::Ok().json(tokens))
        }
        Rotation::Reused { ended } => {
            tracing::warn!("refresh token reuse detected; token family revoked");
            // Whoever replayed the token may hold an access token of that login: it ends
            // now too, on every node.
            if let Some(end) = ended {
                state
                    .realtime
                    .end_sessions(crate::realtime::session_end(&end));
            }
            state.metrics.refresh_reuse.inc();
            Err(ApiError::unauthorized(
                "refresh_token_reused",
                "this refresh token was already used; all sessions from that login are revoked",
            ))
        }
        Rotation::Invalid => Err(ApiError::unauthorized(
            "invalid_refresh_token",
            "the refresh token is unknown, expired or revoked",
        )),
    }
}

/// Sign out: revokes the refresh token and every token rotated from the same login, and
/// ends the login's access tokens (refused from now on, their sockets closed with 1008
/// `logged_out`) on every node.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "Signed out (also for unknown tokens)"),
        (status = 429, description = "Too many requests from this address; see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/logout")]
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let client = address(&state, &req);
    limit(
        &state,
        &state.auth_limits.tokens_by_address,
        &client,
        "token",
    )?;
    let ended = state
        .store
        .revoke_refresh_family(&token_digest(&body.refresh_token))
        .await?;
    if let Some(end) = ended {
        state
            .realtime
            .end_sessions(crate::realtime::session_end(&end));
    }
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    /// 8 to 256 characters.
    pub new_password: String,
}

/// Change your password. The current one is required; every other login of the account
/// ends (its refresh tokens revoked, its access tokens refused and their sockets closed
/// with 1008 `password_changed`, on every node). The login that made the change goes on.
#[utoipa::path(
    tag = "auth",
    request_body = ChangePassword,
    responses(
        (status = 204, description = "Changed; every other session ended"),
        (status = 403, description = "The current password is wrong (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Password checks are busy (`busy`); see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/me/password")]
pub async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validation::default();
    let password = v.check("new_password", Password::parse(&body.new_password));
    v.finish()?;
    let password = checked(password)?;
    // Guessing the current password through this endpoint is held to the login limits.
    let client = address(&state, &req);
    let limits = &state.auth_limits;
    limit(&state, &limits.login_by_address, &client, "login")?;
    let account = format!("user:{}", user.id);
    limit(
        &state,
        &limits.login_by_account,
        &(account, client),
        "login",
    )?;
    let hash = state.store.password_hash(user.id).await?;
    let ok = state
        .passwords
        .verify(body.current_password, hash)
        .await
        .map_err(|e| hashing_failed(&state, e))?;
    if !ok {
        return Err(ApiError::Forbidden("the current password is wrong".into()));
    }
    let hash = state
        .passwords
        .hash(password.as_str().to_string())
        .await
        .map_err(|e| hashing_failed(&state, e))?;
    let end = state
        .store
        .change_password(user.id, &hash, user.session.as_deref())
        .await?;
    state
        .realtime
        .end_sessions(crate::realtime::session_end(&end));
    tracing::info!(user_id = user.id, "password changed; other sessions ended");
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkToken {
    /// The `token` of the mailed link.
    pub token: String,
}

fn link_invalid() -> ApiError {
    ApiError::bad_request(
        "link_invalid",
        "this link is unknown, already used or expired; ask for a new one",
    )
}

/// Prove your address: the token of the link mailed at registration (or asked for again).
/// No sign-in needed: having the link is the proof.
#[utoipa::path(
    tag = "auth",
    request_body = LinkToken,
    responses(
        (status = 200, description = "The account, its address proved", body = UserView),
        (status = 400, description = "Unknown, used or expired link (`link_invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/verify-email")]
pub async fn verify_email(
    state: web::Data<AppState>,
    req: HttpRequest,
    ApiJson(body): ApiJson<LinkToken>,
) -> Result<HttpResponse, ApiError> {
    let client = address(&state, &req);
    limit(
        &state,
        &state.auth_limits.tokens_by_address,
        &client,
        "token",
    )?;
    if body.token.len() > 200 {
        return Err(link_invalid());
    }
    let user = state
        .store
        .verify_email(&token_digest(&body.token))
        .await?
        .ok_or_else(link_invalid)?;
    tracing::info!(user_id = user.id, "e-mail address verified");
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

/// Mail the verification link again (at most 5 mails an hour to one address).
#[utoipa::path(
    tag = "auth",
    responses(
        (status = 202, description = "A new link is on its way"),
        (status = 409, description = "The address is already verified (`already_verified`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many mails asked for", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/me/verification-email")]
pub async fn send_verification(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let account = state
        .store
        .user(user.id)
        .await?
        .ok_or(ApiError::NotFound("no such account".into()))?;
    if account.email_verified {
        return Err(ApiError::Conflict {
            code: "already_verified",
            detail: "this address is already verified".into(),
        });
    }
    let client = address(&state, &req);
    let limits = &state.auth_limits;
    limit(&state, &limits.mail_by_address, &client, "mail")?;
    let key = Email::parse(&account.email)
        .map(|e| e.key().to_string())
        .unwrap_or_else(|_| format!("user:{}", account.id));
    limit(&state, &limits.mail_by_recipient, &key, "mail")?;
    send_verification_mail(&state, &account).await?;
    Ok(HttpResponse::Accepted().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    pub email: String,
}

/// Ask for a password-reset link. The answer is the same whether an account has the
/// address or not; a link is mailed only if one does (at most 5 an hour to one address).
#[utoipa::path(
    tag = "auth",
    request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "If an account has this address, a link is on its way"),
        (status = 422, description = "Not an e-mail address", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many asked for, from this client or for this address", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/password-reset")]
pub async fn request_password_reset(
    state: web::Data<AppState>,
    req: HttpRequest,
    ApiJson(body): ApiJson<PasswordResetRequest>,
) -> Result<HttpResponse, ApiError> {
    let email = Email::parse(&body.email).map_err(|m| ApiError::validation("email", m))?;
    let client = address(&state, &req);
    let limits = &state.auth_limits;
    limit(&state, &limits.mail_by_address, &client, "mail")?;
    limit(
        &state,
        &limits.mail_by_recipient,
        &email.key().to_string(),
        "mail",
    )?;
    let account = state.store.user_by_email(email.key()).await?;
    if let Some(account) = account.filter(|a| !a.disabled) {
        // An account of the product's tokens has no password to reset.
        let has_password = state
            .store
            .password_hash(account.id)
            .await?
            .is_some_and(|h| h.starts_with('$'));
        if has_password {
            let (token, digest) = link_token();
            state
                .store
                .issue_email_token(
                    account.id,
                    "reset_password",
                    &account.email,
                    &digest,
                    now_ms() + RESET_TTL_MS,
                )
                .await?;
            state.mailer.send_later(crate::mail::Mail {
                to: account.email.clone(),
                subject: "Reset your Stoa password".into(),
                text: format!(
                    "Hello {name},\n\nSomeone (we hope you) asked to reset the password of your \
                     Stoa account. Choose a new one within 30 minutes here:\n\n\
                     {url}/reset-password?token={token}\n\nThe link works once. Setting a new \
                     password signs you out everywhere. If you did not ask, ignore this mail: \
                     your password stays as it is.",
                    name = account.display_name,
                    url = state.public_url,
                ),
                unsubscribe: None,
            });
        }
    }
    Ok(HttpResponse::Accepted().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirm {
    /// The `token` of the mailed link.
    pub token: String,
    /// 8 to 256 characters.
    pub new_password: String,
}

/// Set a new password with a reset link (once, within 30 minutes of asking). Every login of
/// the account ends, on every node: its sockets close with `password_reset`.
#[utoipa::path(
    tag = "auth",
    request_body = PasswordResetConfirm,
    responses(
        (status = 204, description = "The password is set; every session ended"),
        (status = 400, description = "Unknown, used or expired link (`link_invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The new password is not acceptable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/password-reset/confirm")]
pub async fn confirm_password_reset(
    state: web::Data<AppState>,
    req: HttpRequest,
    ApiJson(body): ApiJson<PasswordResetConfirm>,
) -> Result<HttpResponse, ApiError> {
    let client = address(&state, &req);
    limit(
        &state,
        &state.auth_limits.tokens_by_address,
        &client,
        "token",
    )?;
    let password =
        Password::parse(&body.new_password).map_err(|m| ApiError::validation("new_password", m))?;
    if body.token.len() > 200 {
        return Err(link_invalid());
    }
    let hash = state
        .passwords
        .hash(password.as_str().to_string())
        .await
        .map_err(|e| hashing_failed(&state, e))?;
    let end = state
        .store
        .reset_password(&token_digest(&body.token), &hash)
        .await?
        .ok_or_else(link_invalid)?;
    state
        .realtime
        .end_sessions(crate::realtime::session_end(&end));
    tracing::info!(user_id = end.user_id, "password reset; every session ended");
    Ok(HttpResponse::NoContent().finish())
}

async fn account_view(state: &AppState, caller: &AuthUser) -> Result<AccountView, ApiError> {
    let user = caller.id;
    let account = match state.store.user(user).await? {
        Some(u) if !u.disabled => u,
        _ => {
            return Err(ApiError::unauthorized(
                "invalid_token",
                "the account no longer exists or is disabled",
            ))
        }
    };
    let stored = state.store.notification_preferences(user).await?;
    let preferences = serde_json::from_value(stored).unwrap_or_default();
    let mut view = AccountView::new(&account, preferences);
    view.has_password = state
        .store
        .password_hash(user)
        .await?
        .is_some_and(|h| h.starts_with('$'));
    if let Some(family) = caller.session.as_deref() {
        view.signed_in_with = state
            .store
            .session_info(family)
            .await?
            .map(|s| s.method.unwrap_or_else(|| "password".into()));
    }
    Ok(view)
}

/// The signed-in account.
#[utoipa::path(
    tag = "auth",
    responses(
        (status = 200, description = "The caller's account", body = AccountView),
        (status = 401, description = "Missing, invalid or expired access token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/me")]
pub async fn me(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(account_view(&state, &user).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    pub display_name: Option<String>,
    pub notification_preferences: Option<NotificationPreferences>,
}

/// Change your display name and what you are told of by e-mail.
#[utoipa::path(
    tag = "auth",
    request_body = UpdateAccount,
    responses(
        (status = 200, description = "The account as it is now", body = AccountView),
        (status = 422, description = "Invalid fields, or none given", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[patch("/me")]
pub async fn update_me(
    state: web::Data<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<UpdateAccount>,
) -> Result<HttpResponse, ApiError> {
    if body.display_name.is_none() && body.notification_preferences.is_none() {
        return Err(ApiError::validation(
            "body",
            "give display_name, notification_preferences or both",
        ));
    }
    let name = body
        .display_name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()
        .map_err(|m| ApiError::validation("display_name", m))?;
    let preferences = body
        .notification_preferences
        .as_ref()
        .map(|p| serde_json::to_value(p).unwrap_or_default());
    state
        .store
        .update_profile(user.id, name.as_ref(), preferences.as_ref())
        .await?;
    Ok(HttpResponse::Ok().json(account_view(&state, &user).await?))
}

/// Everything Stoa keeps that you may read about yourself, as one JSON file: the account,
/// memberships, documents you edited, your comments, notifications, events you caused,
/// sign-ins, linked identities, invitations you sent.
#[utoipa::path(
    tag = "auth",
    responses(
        (status = 200, description = "The export (a download)", body = Object),
    ),
    security(("bearer" = []))
)]
#[get("/me/export")]
pub async fn export_me(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    // As costly as a report: it reads much of the database for one person.
    let export = state.store.export_account(user.id).await?;
    Ok(HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            "attachment; filename=\"stoa-account.json\"",
        ))
        .json(export))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccount {
    /// Your password: deleting cannot be undone. An account without one (single sign-on, a
    /// directory) sends none, from a sign-in made within the last 10 minutes.
    #[serde(default)]
    pub password: Option<String>,
}

/// How recent a sign-in must be to delete an account that has no password.
const REAUTH_WINDOW_MS: i64 = 10 * 60 * 1000;

/// Delete your account. Every sign-in ends on every node (sockets close with
/// `account_deleted`), you leave every workspace, and everything personal is erased; what
/// you wrote stays, by "Deleted user". Refused while you are the only owner of a workspace
/// (`sole_owner`, naming them). An account of the product's sign-in is deleted by the
/// product (`DELETE /api/v1/directory/users/{subject}`).
#[utoipa::path(
    tag = "auth",
    request_body = DeleteAccount,
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "The password is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The only owner of a workspace (`sole_owner`), or an account of the product's sign-in (`managed_by_product`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/me")]
pub async fn delete_me(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    ApiJson(body): ApiJson<DeleteAccount>,
) -> Result<HttpResponse, ApiError> {
    let client = address(&state, &req);
    let limits = &state.auth_limits;
    limit(&state, &limits.login_by_address, &client, "login")?;
    limit(
        &state,
        &limits.login_by_account,
        &(format!("user:{}", user.id), client),
        "login",
    )?;
    let hash = state.store.password_hash(user.id).await?;
    if !hash.as_deref().is_some_and(|h| h.starts_with('$')) {
        // No password: the sign-in itself must be a fresh one of single sign-on or of the
        // directory (the console sends the person through their provider again).
        let session = match user.session.as_deref() {
            Some(family) => state.store.session_info(family).await?,
            None => None,
        };
        let Some(session) = session.filter(|s| s.method.is_some()) else {
            return Err(ApiError::Conflict {
                code: "managed_by_product",
                detail: "this account belongs to the product's sign-in; the product deletes it"
                    .into(),
            });
        };
        if session.created_at < now_ms() - REAUTH_WINDOW_MS {
            return Err(ApiError::Forbidden(
                "sign in again (within 10 minutes) to delete this account: it has no password to confirm with"
                    .into(),
            ));
        }
    } else {
        let ok = state
            .passwords
            .verify(body.password.unwrap_or_default(), hash)
            .await
            .map_err(|e| hashing_failed(&state, e))?;
        if !ok {
            return Err(ApiError::Forbidden("the password is wrong".into()));
        }
    }
    delete_account(&state, user.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes an account and tells every node: its sessions end, its memberships close.
pub(super) async fn delete_account(state: &AppState, user: i64) -> Result<(), ApiError> {
    let (end, events) = state.store.delete_account(user).await?;
    state
        .realtime
        .end_sessions(crate::realtime::session_end(&end));
    for event in &events {
        state
            .realtime
            .revoke_member(event.workspace_id, user, "account_deleted");
        crate::realtime::committed(&state.realtime, &*state.store, event).await;
    }
    tracing::info!(user_id = user, "account deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn accounts_from_before_ascii_addresses_keep_their_key() {
        assert_eq!(
            super::legacy_key(" Dé@Exä.com ").as_deref(),
            Some("dé@exä.com")
        );
        for bad in [
            "no at",
            "a b@c.d",
            "a@b\u{0}",
            &format!("{}@x.io", "y".repeat(260)),
        ] {
            assert_eq!(super::legacy_key(bad), None, "{bad:?}");
        }
    }
}
