//! `GET /api/v1/cluster`: this node, the bus, and the other nodes it hears.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::AuthUser;
use super::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterView {
    /// This node's id.
    pub node: String,
    pub bus: BusView,
    /// The other live nodes, by their heartbeats.
    pub nodes: Vec<NodeView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BusView {
    /// `redis`, or `local` for a node on its own.
    pub kind: &'static str,
    pub connected: bool,
    /// Why the bus is not connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    pub id: String,
    /// Milliseconds since the node was last heard.
    pub last_heard_ms: u64,
}

/// The cluster as this node sees it.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "This node, its bus and the live nodes", body = ClusterView)),
    security(("bearer" = []))
)]
#[get("/cluster")]
pub async fn cluster(
    state: web::Data<AppState>,
    _user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let bus = match &state.bus {
        Some(health) => BusView {
            kind: "redis",
            connected: health.connected(),
            reason: health.reason(),
        },
        None => BusView {
            kind: "local",
            connected: true,
            reason: None,
        },
    };
    let nodes = state
        .realtime
        .nodes()
        .into_iter()
        .map(|(id, last_heard_ms)| NodeView { id, last_heard_ms })
        .collect();
    Ok(HttpResponse::Ok().json(ClusterView {
        node: state.realtime.node_id().to_string(),
        bus,
        nodes,
    }))
}
