//! Request extractors: strict JSON bodies, the authenticated caller, page parameters and
//! the client address. Each turns bad input into an [`ApiError`] naming what was wrong.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::StreamExt;
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::AppState;
use crate::domain::{FieldError, Invalid, UserId};

fn state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or(ApiError::Internal)
}

/// A JSON request body: `Content-Type` must be JSON, the size is capped at
/// `http.max_body_bytes`, syntax errors are 400 and wrong or missing fields are 422 naming
/// the field (request types deny unknown fields).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = state(req).map(|s| s.max_body_bytes).unwrap_or(1 << 20);
        let is_json = req
            .mime_type()
            .ok()
            .flatten()
            .is_some_and(|m| m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"));
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|len| len > limit) {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            if !is_json {
                return Err(ApiError::UnsupportedMediaType);
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|_| {
                    ApiError::bad_request("invalid_body", "the request body could not be read")
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::PayloadTooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            parse_json(&body).map(ApiJson)
        })
    }
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(de);
    match parsed {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            use serde_json::error::Category;
            match inner.classify() {
                Category::Data => {
                    let message = strip_position(&inner.to_string());
                    let field = if path == "." {
                        missing_field(&message).unwrap_or_else(|| "body".to_string())
                    } else {
                        path
                    };
                    Err(ApiError::Validation(vec![FieldError::new(field, message)]))
                }
                _ => Err(ApiError::bad_request(
                    "invalid_json",
                    format!("the request body is not valid JSON: {inner}"),
                )),
            }
        }
    }
}

/// serde reports missing and unknown fields at the parent's path; name the field itself.
fn missing_field(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    Some(rest.split('`').next()?.to_string())
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// An optional integer field as JSON Schema sees one: `5` and `5.0` alike (a number with
/// no fraction is an integer there), anything fractional or out of range refused.
pub fn integral<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(de)? else {
        return Ok(None);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (-9.2e18..=9.2e18).contains(&f) => Ok(Some(f as i64)),
        _ => Err(D::Error::custom(format!("expected an integer, got {n}"))),
    }
}

/// The caller, authenticated by a `Bearer` access token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: UserId,
    /// The login the token belongs to (its refresh family).
    pub session: Option<String>,
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<AuthUser, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req).await })
    }
}

/// What a request costs of its user's allowance (`http.user_requests_per_sec`): searches
/// and reports read far more of the database than anything else a user can ask for.
pub const EXPENSIVE_REQUEST_COST: u32 = 10;

fn request_cost(req: &HttpRequest) -> u32 {
    let path = req.path();
    if path.ends_with("/search") || path.contains("/reports/") {
        EXPENSIVE_REQUEST_COST
    } else {
        1
    }
}

/// The bearer token of a request, if it has an `Authorization: Bearer` header.
pub fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing_token", "an access token is required"))?;
    value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::unauthorized("invalid_token", "use Authorization: Bearer <access token>")
        })
}

/// The problem a refused token gets.
pub fn token_problem(e: crate::identity::IdentityError) -> ApiError {
    use crate::identity::IdentityError;
    match e {
        IdentityError::Token(crate::auth::TokenError::Expired) => {
            ApiError::unauthorized("token_expired", "the access token has expired; refresh it")
        }
        IdentityError::Token(e) => ApiError::unauthorized("invalid_token", e.to_string()),
        IdentityError::Disabled => {
            ApiError::unauthorized("account_disabled", "this account is disabled")
        }
        IdentityError::Unavailable(e) => e.into(),
    }
}

async fn authenticate(req: &HttpRequest) -> Result<AuthUser, ApiError> {
    let state = state(req)?;
    let token = bearer(req)?;
    let (claims, grant) = state
        .identities
        .verify_grant(token)
        .await
        .map_err(token_problem)?;
    if let Some(grant) = &grant {
        check_grant(state, req, claims.user_id, grant).await?;
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
    // An API token has its own allowance, apart from its owner's: keyed below every user id.
    let key = grant.as_ref().map_or(claims.user_id, |g| -g.id);
    state
        .user_requests
        .check_n(&key, request_cost(req))
        .map_err(|wait| {
            state
                .metrics
                .rate_limited
                .with_label_values(&["user_requests"])
                .inc();
            ApiError::RateLimited {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        })?;
    Ok(AuthUser {
        id: claims.user_id,
        session: claims.session,
    })
}

/// The scope a REST request needs of an API token: reading needs `read`; changing needs
/// `write`; members, invitations, reports and the workspace's own settings need `admin`;
/// the account itself (password, tokens, deletion) is never an API token's business.
pub fn needed_scope(method: &actix_web::http::Method, path: &str) -> Option<&'static str> {
    let read = method == actix_web::http::Method::GET || method == actix_web::http::Method::HEAD;
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    Some(match segments.as_slice() {
        ["me"] | ["me", "export"] if read => "read",
        ["me", ..] => return None,
        ["workspaces", _, "invitations", ..] | ["invitations", ..] => "admin",
        ["workspaces", _, "reports", ..] => "admin",
        ["workspaces", _, "members", ..] if !read => "admin",
        ["workspaces", _] if !read => "admin",
        ["workspaces", _, "sso"] if !read => "admin",
        ["workspaces", _, "webhooks", ..] => "admin",
        _ if read => "read",
        _ => "write",
    })
}

/// Refuses what an API token's scopes or workspace do not cover.
async fn check_grant(
    state: &AppState,
    req: &HttpRequest,
    user: UserId,
    grant: &crate::identity::TokenGrant,
) -> Result<(), ApiError> {
    let Some(need) = needed_scope(req.method(), req.path()) else {
        return Err(ApiError::InsufficientScope(
            "an API token cannot manage its account (password, tokens, profile, deletion): sign in"
                .into(),
        ));
    };
    if !grant.allows(need) {
        return Err(ApiError::InsufficientScope(format!(
            "this API token has the scopes {:?}; this request needs {need:?}",
            grant.scopes
        )));
    }
    let Some(only) = grant.workspace else {
        return Ok(());
    };
    let path = req.path().strip_prefix("/api/v1").unwrap_or(req.path());
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let id = |s: &str| s.parse::<i64>().ok();
    let target = match segments.as_slice() {
        ["me"] | ["me", "export"] => return Ok(()),
        ["workspaces", ws, ..] => id(ws),
        ["documents", doc, ..] => match id(doc) {
            Some(doc) => match state.store.document_role(user, doc).await {
                Ok((ws, _)) => Some(ws),
                // Not theirs, or gone: the handler says so.
                Err(crate::store::StoreError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            },
            None => return Ok(()),
        },
        ["attachments", attachment, ..] => match id(attachment) {
            Some(attachment) => match state.store.attachment(user, attachment).await {
                Ok(a) => Some(a.workspace_id),
                Err(crate::store::StoreError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            },
            None => return Ok(()),
        },
        ["comments", comment, ..] => match id(comment) {
            Some(comment) => match state.store.comment(user, comment).await {
                Ok(c) => Some(c.workspace_id),
                Err(crate::store::StoreError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            },
            None => return Ok(()),
        },
        _ => None,
    };
    if target != Some(only) {
        return Err(ApiError::InsufficientScope(format!(
            "this API token is for workspace {only} only"
        )));
    }
    Ok(())
}

/// `?limit=&cursor=` on every list. Other query parameters (a cache buster such as `?_=1`)
/// are ignored.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page; empty is the same as none.
    #[param(pattern = "^([0-9]{1,18})?$")]
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn to_request(&self) -> Result<crate::store::PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(ApiError::validation("limit", "must be between 1 and 200"));
        }
        let after = match self.cursor.as_deref() {
            Some(c) => decode_cursor(c)?,
            None => None,
        };
        Ok(crate::store::PageRequest { after, limit })
    }
}

/// A cursor as [`crate::views::encode_cursor`] writes it: up to 18 digits.
pub fn decode_cursor(cursor: &str) -> Result<Option<i64>, ApiError> {
    if cursor.is_empty() {
        return Ok(None);
    }
    let digits = cursor.len() <= 18 && cursor.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| cursor.parse().ok())
        .flatten()
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("invalid_cursor", "the cursor is not valid"))
}

/// The client's address, for rate limits and logs: the peer's, unless the peer is one of
/// `server.trusted_proxies`. Then `X-Forwarded-For` is read from the right — the entry the
/// nearest proxy appended first — skipping entries that are themselves trusted proxies;
/// the first address that is not is the client. Entries further left were written by the
/// client (or proxies nobody vouches for) and are never believed.
///
/// Behind the in-process TLS terminator, the peer is the terminator's loopback connection;
/// the client it stands for is the peer.
pub fn client_ip(
    req: &HttpRequest,
    trusted: &[IpNet],
    tls: Option<&crate::tls::TlsPeers>,
) -> IpAddr {
    let peer = req
        .peer_addr()
        .map(|a| tls.and_then(|t| t.client_of(a)).unwrap_or(a).ip())
        .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
    let chain = req
        .headers()
        .get_all("x-forwarded-for")
        .map(|v| v.as_bytes());
    forwarded_client(peer, chain, trusted)
}

/// Works on the header's bytes: a client may put anything left of what the proxies append
/// (bytes that are not text included), and that must not hide the entries to its right.
fn forwarded_client<'a>(
    peer: IpAddr,
    headers: impl Iterator<Item = &'a [u8]>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // Several headers are one list, in order.
    let entries: Vec<&[u8]> = headers.flat_map(|h| h.split(|b| *b == b',')).collect();
    let mut client = peer;
    for entry in entries.iter().rev().take(32) {
        let text = std::str::from_utf8(entry).unwrap_or("");
        let Some(ip) = parse_forwarded_ip(text.trim()) else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `::1` or `[::1]:80`.
fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// Collects field errors so a request reports all of its invalid fields at once.
#[derive(Default)]
pub struct Validation(Vec<FieldError>);

impl Validation {
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, Invalid>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(Invalid(message)) => {
                self.0.push(FieldError::new(field, message));
                None
            }
        }
    }

    pub fn fail(&mut self, field: &str, message: &str) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

/// A value [`Validation::check`] accepted; only reached after `finish()` succeeded.
pub fn checked<T>(value: Option<T>) -> Result<T, ApiError> {
    value.ok_or(ApiError::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u32,
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::Validation(errs) => errs[0].field.clone(),
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"name":"a"}"#).unwrap_err()),
            "count"
        );
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"name":1,"count":1}"#).unwrap_err()),
            "name"
        );
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"name":"a","count":1,"x":1}"#).unwrap_err()),
            "x"
        );
        assert!(matches!(
            parse_json::<Body>(b"{not json").unwrap_err(),
            ApiError::BadRequest {
                code: "invalid_json",
                ..
            }
        ));
        assert!(matches!(
            parse_json::<Body>(b"").unwrap_err(),
            ApiError::BadRequest {
                code: "invalid_json",
                ..
            }
        ));
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(
            decode_cursor(&crate::views::encode_cursor(42)).unwrap(),
            Some(42)
        );
        assert_eq!(decode_cursor("").unwrap(), None);
        for bad in ["!!", "-1", "1x", "9999999999999999999"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_forwarded_client_is_read_from_the_right_past_trusted_proxies() {
        let trusted: Vec<IpNet> = ["10.0.0.0/8", "192.168.1.1/32"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let client = |peer: &str, headers: &[&str]| {
            forwarded_client(ip(peer), headers.iter().map(|h| h.as_bytes()), &trusted)
        };
        // An untrusted peer is the client, whatever it writes.
        assert_eq!(client("203.0.113.9", &["1.1.1.1"]), ip("203.0.113.9"));
        // Behind one trusted proxy, the rightmost entry; the client-written left part
        // (a forged 127.0.0.1) is ignored.
        assert_eq!(
            client("10.0.0.5", &["127.0.0.1, 198.51.100.7"]),
            ip("198.51.100.7")
        );
        // Two trusted hops, over two headers.
        assert_eq!(
            client("10.0.0.5", &["6.6.6.6, 198.51.100.7", "192.168.1.1"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            client("10.0.0.5", &["[2001:db8::1]:443, 10.1.1.1:80"]),
            ip("2001:db8::1")
        );
        // Garbage stops the walk at the last address known good.
        assert_eq!(client("10.0.0.5", &["junk, 10.2.2.2"]), ip("10.2.2.2"));
        assert_eq!(client("10.0.0.5", &[]), ip("10.0.0.5"));
        // Bytes that are not text, left of the proxy's entry, change nothing.
        let raw: &[&[u8]] = &[b"\xc3\xa9\xff, 198.51.100.7"];
        assert_eq!(
            forwarded_client(ip("10.0.0.5"), raw.iter().copied(), &trusted),
            ip("198.51.100.7")
        );
    }
}
