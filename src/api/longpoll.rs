//! `GET|POST /socket/longpoll`: Phoenix's LongPoll transport (see [`crate::longpoll`]).
//!
//! phoenix.js reads only the JSON body's `status` of these answers (the HTTP status is
//! always 200, as Phoenix sends it):
//!
//! - `GET` without a session token opens a session for the access token (`?token=`, the
//!   first one that is not a session token, or `X-Phoenix-AuthToken`) and answers
//!   `{"status":410,"token":…}`, which the client takes as "connected";
//! - `GET` with a session token answers `200` and `messages`, or `204`, each with the token
//!   to poll with next; `410` when the session is gone (the client starts a new one);
//! - `POST` with a session token takes newline-delimited frames and answers `200`;
//! - a refused session (a foreign `Origin`, a bad or ended token, too many sockets) answers
//!   `403` with an `error` the client ignores and a person can read; a node that is
//!   draining answers `500`, on which the client retries.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::socket::{admit, check_origin, verify};
use super::AppState;
use crate::longpoll::{lines, Answer, SessionToken, TOKEN_PREFIX};

/// A request's session token and access token.
struct Tokens {
    session: Option<String>,
    access: Option<String>,
}

/// The tokens of a request's query (phoenix.js sends both as `token`: its `params` first,
/// the session's last) and headers; an unsupported `vsn` is refused.
fn tokens(req: &HttpRequest) -> Result<Tokens, String> {
    let mut session = None;
    let mut access = None;
    let mut vsn = None;
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match &*k {
            "token" if v.starts_with(TOKEN_PREFIX) => session = Some(v.into_owned()),
            "token" if v.is_empty() || v == "undefined" || v == "null" => {}
            "token" if access.is_none() => access = Some(v.into_owned()),
            "vsn" => vsn = Some(v.into_owned()),
            _ => {}
        }
    }
    if let Some(vsn) = vsn.as_deref() {
        if vsn != "2.0.0" {
            return Err(format!(
                "serializer version {vsn:?} is not supported; use vsn=2.0.0"
            ));
        }
    }
    let header = req
        .headers()
        .get("x-phoenix-authtoken")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    Ok(Tokens {
        session,
        access: access.or(header),
    })
}

fn answer(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

fn refused(e: &ApiError) -> HttpResponse {
    let status = match e {
        ApiError::Busy { .. } | ApiError::Internal | ApiError::Unavailable(_) => 500,
        _ => 403,
    };
    answer(json!({"status": status, "error": e.code(), "detail": e.to_string()}))
}

fn reply(a: Answer) -> HttpResponse {
    match a {
        Answer::Messages { token, messages } => {
            answer(json!({"status": 200, "token": token, "messages": messages}))
        }
        Answer::Nothing { token } => answer(json!({"status": 204, "token": token})),
        Answer::Sent => answer(json!({"status": 200})),
        Answer::Gone => answer(json!({"status": 410})),
        Answer::Failed => answer(json!({"status": 500})),
    }
}

pub async fn poll(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Tokens { session, access } = match tokens(&req) {
        Ok(t) => t,
        Err(e) => return answer(json!({"status": 403, "error": "unsupported_vsn", "detail": e})),
    };
    if let Some(token) = session {
        let Some(token) = SessionToken::parse(&token) else {
            return reply(Answer::Gone);
        };
        return reply(state.longpolls.poll(&token).await);
    }
    match open(&req, &state, access).await {
        Ok(token) => answer(json!({"status": 410, "token": token, "messages": []})),
        Err(e) => refused(&e),
    }
}

/// A new session for the request's access token.
async fn open(
    req: &HttpRequest,
    state: &AppState,
    access: Option<String>,
) -> Result<String, ApiError> {
    check_origin(req, state)?;
    let token = access.ok_or_else(|| {
        ApiError::unauthorized(
            "missing_token",
            "pass an access token in the socket's params as token, or with the authToken option",
        )
    })?;
    let identity = verify(state, &token).await?;
    let permit = admit(state, &identity)?;
    Ok(state
        .longpolls
        .open(&state.realtime, permit, identity.expires_at))
}

pub async fn send(req: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let session = match tokens(&req) {
        Ok(t) => t.session,
        Err(e) => return answer(json!({"status": 403, "error": "unsupported_vsn", "detail": e})),
    };
    let Some(token) = session.as_deref().and_then(SessionToken::parse) else {
        return reply(Answer::Gone);
    };
    // Checked here, wherever the session is: the whole request is refused.
    if let Err(e) = lines(&body, state.realtime.limits().max_frame_bytes) {
        return answer(json!({"status": 400, "error": "too_many_messages", "detail": e}));
    }
    reply(state.longpolls.send(&token, &body).await)
}
