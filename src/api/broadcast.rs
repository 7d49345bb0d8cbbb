//! The server-side publish API: a backend service pushes an ephemeral message to the live
//! clients of a workspace's topic, on every node, without a socket of its own. Editors and
//! above (an API token needs `write`); the size and rate limits of client broadcasts.

use actix_web::{post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use stoa_actors::PublishRefused;
use stoa_protocol::Topic;
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{ApiJson, AuthUser};
use super::AppState;
use crate::domain::Role;

/// What to push, and where.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBroadcast {
    /// `workspace:{id}` of this workspace, or `document:{id}` of one of its documents.
    #[schema(
        example = "workspace:1",
        pattern = r"^(workspace|document):[1-9][0-9]{0,17}$"
    )]
    pub topic: String,
    /// The event the clients receive (`channel.on(event, …)`): 1 to 64 letters, digits,
    /// `_`, `.`, `:` or `-`; not `phx_*`, `event`, `presence_state`, `presence_diff` or
    /// `notification`. Default `broadcast`, as a client's own broadcasts arrive.
    #[serde(default)]
    #[schema(example = "deal.updated", pattern = r"^[A-Za-z0-9_.:-]{1,64}$")]
    pub event: Option<String>,
    /// A JSON object; the server sets its `from` (the caller's user id).
    #[schema(value_type = Object)]
    pub payload: Map<String, Value>,
}

/// The push was handed to every node (subscribers who are connected receive it; nothing is
/// stored for those who are not).
#[derive(Debug, Serialize, ToSchema)]
pub struct Published {
    pub topic: String,
    pub event: String,
}

/// Push an ephemeral message to the live subscribers of a topic of the workspace on every
/// node (editors and above; an API token needs `write`). Nothing is stored: a client that
/// is not connected never sees it. The payload is limited like a client's broadcast
/// (`realtime.max_broadcast_bytes`, with `from`), and each topic takes at most
/// `realtime.topic_broadcasts_per_sec` (and `topic_broadcast_bytes_per_sec`) from the
/// API on each node, with the same bursts; beyond it 429.
#[utoipa::path(
    tag = "realtime",
    params(("id" = i64, Path, description = "Workspace id")),
    request_body = PublishBroadcast,
    responses(
        (status = 202, description = "Handed to every node", body = Published),
        (status = 403, description = "Viewers cannot publish", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workspace, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The payload is over the broadcast limit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid topic or event; a topic not of this workspace (another's, a document it does not hold)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The topic's budget is spent", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/workspaces/{id}/broadcast")]
pub async fn publish(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    body: ApiJson<PublishBroadcast>,
) -> Result<HttpResponse, ApiError> {
    let ws = *id;
    let body = body.0;
    let role = state.store.role(user.id, ws).await?;
    if role < Role::Editor {
        return Err(ApiError::Forbidden("viewers cannot publish".into()));
    }
    let invalid_topic = || {
        ApiError::validation(
            "topic",
            "give workspace:{id} of this workspace or document:{id} of one of its documents",
        )
    };
    let topic = Topic::parse(&body.topic).map_err(|_| invalid_topic())?;
    match topic {
        Topic::Workspace(w) if w == ws => {}
        Topic::Document(doc) => match state.store.document_role(user.id, doc).await {
            Ok((w, _)) if w == ws => {}
            Ok(_) | Err(crate::store::StoreError::NotFound(_)) => return Err(invalid_topic()),
            Err(e) => return Err(e.into()),
        },
        _ => return Err(invalid_topic()),
    }
    let event = body.event.unwrap_or_else(|| "broadcast".into());
    match state
        .realtime
        .publish_broadcast(topic, &event, body.payload, user.id)
    {
        Ok(()) => Ok(HttpResponse::Accepted().json(Published {
            topic: topic.to_string(),
            event,
        })),
        Err(PublishRefused::TooLarge { limit, .. }) => Err(ApiError::PayloadTooLarge { limit }),
        Err(e @ PublishRefused::Event) => Err(ApiError::validation("event", e.to_string())),
        Err(PublishRefused::RateLimited) => Err(ApiError::RateLimited {
            retry_after_secs: 1,
        }),
    }
}
