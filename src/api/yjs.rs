//! `GET /yjs/{document_id}?token=…`: a document's live content over the y-websocket
//! protocol, for any Yjs binding with the stock `WebsocketProvider`.
//!
//! The upgrade is refused, as an HTTP problem before any WebSocket exists and so before any
//! content is sent, for a foreign `Origin`, a missing, forged or expired token, and a
//! document the caller may not read (404, as for REST: a non-member learns nothing). The
//! socket counts against the same per-user limits as a channel socket. Viewers get a
//! socket that receives the document and awareness; their updates are refused.

use actix_web::{web, HttpRequest, HttpResponse};
use stoa_actors::Denied;

use super::error::ApiError;
use super::socket::{admit, check_origin, switch, verify};
use super::AppState;
use crate::transport::{Accepted, SocketKind};

#[derive(Debug, serde::Deserialize)]
struct YjsQuery {
    token: Option<String>,
}

pub async fn connect(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_origin(&req, &state)?;
    let not_found = || ApiError::NotFound("no such document".into());
    let document: i64 = path
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(not_found)?;
    let query = web::Query::<YjsQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::bad_request("invalid_parameter", e.to_string()))?
        .into_inner();
    let token = query.token.ok_or_else(|| {
        ApiError::unauthorized(
            "missing_token",
            "pass an access token as ?token= (the provider's params)",
        )
    })?;
    let identity = verify(&state, &token).await?;
    // Taken before the check: a removal or role change that lands while it runs is applied
    // when the socket reaches its document.
    let authorized_at = std::time::Instant::now();
    let access = state
        .realtime
        .authorizer()
        .document_access(identity.user_id, document)
        .await
        .map_err(|e| match e {
            Denied::Unavailable => ApiError::Unavailable("the database is unavailable".into()),
            _ => not_found(),
        })?;
    if !state.realtime.may_open_document(document) {
        return Err(ApiError::Busy {
            retry_after_secs: 5,
        });
    }
    let permit = admit(&state, &identity)?;
    switch(
        &req,
        None,
        Accepted {
            permit,
            expires_at: identity.expires_at,
            kind: SocketKind::Yjs {
                document,
                workspace: access.workspace_id,
                writable: access.writable,
                authorized_at,
            },
        },
    )
}
