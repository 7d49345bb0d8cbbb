//! `GET /socket/websocket?vsn=2.0.0&token=…`: the Phoenix Channels endpoint.
//!
//! The upgrade is refused (as an HTTP problem, before any WebSocket exists) for a foreign
//! `Origin` (neither configured nor the node's own), an unsupported `vsn`, or a missing,
//! forged or expired token. The token comes from the `token` query parameter or, as
//! phoenix.js's `authToken` option sends it, from
//! `Sec-WebSocket-Protocol: phoenix, base64url.bearer.phx.<base64 token>`.
//!
//! This handler only decides: its 101 answer carries an [`Accepted`] for the upgrade
//! service ([`crate::transport::upgrade`]), which writes the answer, takes the connection over and
//! starts a [`stoa_actors::SessionActor`] on it.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use stoa_actors::{Refusal, SocketPermit, Stats};

use super::error::ApiError;
use super::{AppState, SocketOrigins};
use crate::transport::{Accepted, SocketKind};

const AUTH_TOKEN_PREFIX: &str = "base64url.bearer.phx.";

#[derive(Debug, serde::Deserialize)]
struct SocketQuery {
    token: Option<String>,
    vsn: Option<String>,
}

impl SocketOrigins {
    fn allows(&self, origin: &str) -> bool {
        match self {
            SocketOrigins::Any => true,
            SocketOrigins::Only(list) => list.iter().any(|o| o == origin),
        }
    }
}

/// The subprotocols the client offered, and the token among them if any.
fn offered_protocols(req: &HttpRequest) -> (bool, Option<String>) {
    let mut phoenix = false;
    let mut token = None;
    for value in req.headers().get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        let Ok(value) = value.to_str() else { continue };
        for proto in value.split(',').map(str::trim) {
            if proto == "phoenix" {
                phoenix = true;
            } else if let Some(encoded) = proto.strip_prefix(AUTH_TOKEN_PREFIX) {
                let encoded = encoded.trim_end_matches('=');
                token = STANDARD_NO_PAD
                    .decode(encoded)
                    .or_else(|_| URL_SAFE_NO_PAD.decode(encoded))
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
            }
        }
    }
    (phoenix, token)
}

/// Whether `origin` is the node's own: the origin of the console page it served, whose
/// scheme, host and port (the default one of the scheme when none is given) are those the
/// request was sent to. The host and port are the `Host` header's; the scheme is `https`
/// when this node terminates TLS, and either otherwise (no proxy header is trusted for it).
fn same_origin(req: &HttpRequest, origin: &str, tls: bool) -> bool {
    let Ok(origin) = url::Url::parse(origin) else {
        return false;
    };
    let scheme = origin.scheme();
    if !(scheme == "https" || (scheme == "http" && !tls)) {
        return false;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    // An authority alone: nothing that would make the parse below read a path or a user.
    let Some(host) = host.filter(|h| {
        !h.is_empty()
            && !h
                .bytes()
                .any(|b| b"/\\@?#".contains(&b) || b.is_ascii_whitespace() || b.is_ascii_control())
    }) else {
        return false;
    };
    url::Url::parse(&format!("{scheme}://{host}"))
        .is_ok_and(|own| own.origin() == origin.origin() && own.path() == "/")
}

/// Refuses a socket while the node drains, or from a foreign `Origin`: one that is neither
/// in `http.cors_allowed_origins` nor the node's own (the console it serves).
pub(super) fn check_origin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    if state.realtime.is_shutting_down() {
        return Err(ApiError::Busy {
            retry_after_secs: 1,
        });
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let allowed = origin.to_str().is_ok_and(|o| {
            state.socket_origins.allows(o) || same_origin(req, o, state.tls_peers.is_some())
        });
        if !allowed {
            return Err(ApiError::Forbidden(
                "this Origin may not open a socket (see http.cors_allowed_origins)".into(),
            ));
        }
    }
    Ok(())
}

/// The user of a socket's access token, unless its session has ended.
pub(super) async fn verify(
    state: &AppState,
    token: &str,
) -> Result<stoa_actors::Identity, ApiError> {
    let (claims, grant) = state
        .identities
        .verify_grant(token)
        .await
        .map_err(super::extract::token_problem)?;
    // A socket may write and may join any of its user's workspaces: an API token opens one
    // only when its scopes and reach say as much.
    if let Some(grant) = grant {
        if !grant.allows("write") || grant.workspace.is_some() {
            return Err(ApiError::InsufficientScope(
                "a socket needs an API token with the write scope for every workspace".into(),
            ));
        }
    }
    let ended = state.realtime.session_ended(
        claims.user_id,
        claims.session.as_deref(),
        claims.issued_at_ms,
    );
    if let Some(reason) = ended {
        return Err(ApiError::unauthorized(
            "session_ended",
            format!("this token's session has ended ({reason}); sign in again"),
        ));
    }
    Ok(stoa_actors::Identity {
        user_id: claims.user_id,
        expires_at: claims.expires_at,
        issued_at_ms: claims.issued_at_ms,
        session: claims.session,
    })
}

/// A socket slot for the token's user (their socket count and message allowance), which
/// a session end covering the token closes.
pub(super) fn admit(
    state: &AppState,
    identity: &stoa_actors::Identity,
) -> Result<SocketPermit, ApiError> {
    let token = stoa_actors::TokenTag {
        session: identity.session.as_deref().map(std::sync::Arc::from),
        issued_at_ms: identity.issued_at_ms,
    };
    let admitted = state.realtime.admit(identity.user_id);
    admitted
        .map(|p| p.with_token(token))
        .map_err(|refusal| match refusal {
            Refusal::TooManySockets => {
                Stats::add(&state.realtime.stats().sockets_refused, 1);
                ApiError::TooManySockets {
                    limit: state.realtime.limits().max_sockets_per_user,
                }
            }
            Refusal::RateLimited => {
                Stats::add(&state.realtime.stats().user_rate_limited, 1);
                ApiError::RateLimited {
                    retry_after_secs: 1,
                }
            }
        })
}

/// The 101 answer that hands the connection to the transport with `accepted`.
pub(super) fn switch(
    req: &HttpRequest,
    protocol: Option<&'static str>,
    accepted: Accepted,
) -> Result<HttpResponse, ApiError> {
    let mut response = actix_http::ws::handshake(req.head()).map_err(|e| {
        ApiError::bad_request("not_a_websocket", format!("WebSocket upgrade failed: {e}"))
    })?;
    if let Some(protocol) = protocol {
        response.insert_header((
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol),
        ));
    }
    let response = response.message_body(().boxed()).map_err(|e| {
        tracing::error!(error = %e, "cannot build the WebSocket response");
        ApiError::Internal
    })?;
    let mut response: HttpResponse<BoxBody> = HttpResponse::from(response);
    response.extensions_mut().insert(accepted);
    Ok(response)
}

pub async fn connect(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_origin(&req, &state)?;
    let query = web::Query::<SocketQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::bad_request("invalid_parameter", e.to_string()))?
        .into_inner();
    if let Some(vsn) = query.vsn.as_deref() {
        if vsn != "2.0.0" {
            return Err(ApiError::bad_request(
                "unsupported_vsn",
                format!("serializer version {vsn:?} is not supported; use vsn=2.0.0"),
            ));
        }
    }
    let (offers_phoenix, header_token) = offered_protocols(&req);
    let token = query.token.or(header_token).ok_or_else(|| {
        ApiError::unauthorized(
            "missing_token",
            "pass an access token as ?token= or with the authToken option",
        )
    })?;
    let identity = verify(&state, &token).await?;
    let permit = admit(&state, &identity)?;
    switch(
        &req,
        offers_phoenix.then_some("phoenix"),
        Accepted {
            permit,
            expires_at: identity.expires_at,
            kind: SocketKind::Channels,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn same(origin: &str, host: &str, tls: bool) -> bool {
        let req = TestRequest::get()
            .insert_header((header::HOST, host))
            .to_http_request();
        same_origin(&req, origin, tls)
    }

    #[test]
    fn the_nodes_own_origin_is_the_host_it_was_asked_at() {
        assert!(same("http://127.0.0.1:8080", "127.0.0.1:8080", false));
        assert!(same("https://stoa.example", "stoa.example", false));
        assert!(same("https://stoa.example", "STOA.example:443", true));
        assert!(same("http://[::1]:8080", "[::1]:8080", false));
        for (origin, host) in [
            ("http://evil.example", "127.0.0.1:8080"),
            ("http://127.0.0.1:8081", "127.0.0.1:8080"),
            ("http://stoa.example", "stoa.example:8080"),
            ("null", "stoa.example"),
            ("chrome-extension://stoa.example", "stoa.example"),
            ("http://127.0.0.1:8080", "evil.example@127.0.0.1:8080"),
            ("http://127.0.0.1:8080", "127.0.0.1:8080/x"),
            ("http://127.0.0.1:8080", ""),
        ] {
            assert!(!same(origin, host, false), "{origin} at {host}");
        }
        // Behind this node's own TLS, the page was https.
        assert!(!same("http://stoa.example", "stoa.example", true));
    }
}
