//! `/api/v1/auth/*` and `/api/v1/me`: accounts, login, token refresh and logout.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{checked, client_addr, ApiJson, AuthUser, Validation};
use super::views::{TokenResponse, UserView};
use super::AppState;
use crate::auth::{random_token, token_digest};
use crate::domain::{now_ms, DisplayName, Email, Password};
use crate::store::{Rotation, User};

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

fn limit(state: &AppState, key: String) -> Result<(), ApiError> {
    state.login_limiter.check(&key).map_err(|wait| {
        state
            .metrics
            .rate_limited
            .with_label_values(&["login"])
            .inc();
        ApiError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
    })
}

/// Issues an access token and a refresh token; a new login starts a new token family.
async fn issue_tokens(
    state: &AppState,
    user: &User,
    existing: Option<String>,
) -> Result<TokenResponse, ApiError> {
    let now = now_ms();
    let (access_token, _) = state.jwt.issue(user.id, now / 1000);
    let refresh_token = match existing {
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
                )
                .await?;
            token
        }
    };
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: state.jwt.ttl_secs(),
        refresh_token,
        user: UserView::from(user),
    })
}

/// Runs argon2 off the request threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    web::block(f).await.map_err(|_| ApiError::Internal)
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
    limit(
        &state,
        format!("register:{}", client_addr(&req, state.trust_forwarded_for)),
    )?;
    let mut v = Validation::default();
    let email = v.check("email", Email::parse(&body.email));
    let password = v.check("password", Password::parse(&body.password));
    let name = v.check("display_name", DisplayName::parse(&body.display_name));
    v.finish()?;
    let (email, password, name) = (checked(email)?, checked(password)?, checked(name)?);
    let hasher = state.passwords.clone();
    let hash = blocking(move || hasher.hash(password.as_str()))
        .await?
        .map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            ApiError::Internal
        })?;
    let user = state.store.create_user(&email, &name, &hash).await?;
    tracing::info!(user_id = user.id, "account created");
    let tokens = issue_tokens(&state, &user, None).await?;
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
    )
)]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    limit(
        &state,
        format!("ip:{}", client_addr(&req, state.trust_forwarded_for)),
    )?;
    let key = body.email.trim().to_lowercase();
    limit(&state, format!("account:{key}"))?;
    let found = state.store.user_credentials(&key).await?;
    let hasher = state.passwords.clone();
    let hash = found.as_ref().map(|(_, h)| h.clone());
    let password = body.password;
    let ok = blocking(move || hasher.verify(&password, hash.as_deref())).await?;
    let user = match found {
        Some((user, _)) if ok => user,
        _ => {
            return Err(ApiError::unauthorized(
                "invalid_credentials",
                "wrong email or password",
            ))
        }
    };
    if user.disabled {
        return Err(ApiError::Forbidden("this account is disabled".into()));
    }
    Ok(HttpResponse::Ok().json(issue_tokens(&state, &user, None).await?))
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
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let new_token = random_token(32);
    let expires = now_ms() + state.refresh_ttl_secs * 1000;
    let outcome = state
        .store
        .rotate_refresh_token(
            &token_digest(&body.refresh_token),
            &token_digest(&new_token),
            expires,
        )
        .await?;
    match outcome {
        Rotation::Rotated { user_id } => {
            let user = state.store.user(user_id).await?.ok_or_else(|| {
                ApiError::unauthorized("invalid_refresh_token", "the account no longer exists")
            })?;
            let tokens = issue_tokens(&state, &user, Some(new_token)).await?;
            Ok(HttpResponse::Ok().json(tokens))
        }
        Rotation::Reused => {
            tracing::warn!("refresh token reuse detected; token family revoked");
            state.metrics.refresh_reuse.inc();
            Err(ApiError::unauthorized(
                "refresh_token_reused",
                "this refresh token was already used; all sessions from that login are revoked",
            ))
        }
        Rotation::Invalid => Err(ApiError::unauthorized(
            "invalid_refresh_token",
            "the refresh token is unknown or expired",
        )),
    }
}

/// Sign out: revokes the refresh token and every token rotated from the same login.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses((status = 204, description = "Signed out (also for unknown tokens)"))
)]
#[post("/auth/logout")]
pub async fn logout(
    state: web::Data<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    state
        .store
        .revoke_refresh_family(&token_digest(&body.refresh_token))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The signed-in user.
#[utoipa::path(
    tag = "auth",
    responses(
        (status = 200, description = "The caller's account", body = UserView),
        (status = 401, description = "Missing, invalid or expired access token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/me")]
pub async fn me(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    match state.store.user(user.id).await? {
        Some(u) if !u.disabled => Ok(HttpResponse::Ok().json(UserView::from(&u))),
        _ => Err(ApiError::unauthorized(
            "invalid_token",
            "the account no longer exists or is disabled",
        )),
    }
}
