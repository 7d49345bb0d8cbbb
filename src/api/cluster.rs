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
    /// Every live node, this one first, then the others by their heartbeats, each with
    /// its load.
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
    /// Milliseconds since the node was last heard (0 for the node answering).
    pub last_heard_ms: u64,
    /// Phoenix channel sessions open on it, as of its last heartbeat.
    pub sessions: u64,
    /// y-websocket connections open on it.
    pub yjs_connections: u64,
    /// Documents loaded on it.
    pub documents: u64,
}

impl NodeView {
    fn new(id: String, last_heard_ms: u64, load: stoa_protocol::bus::NodeLoad) -> Self {
        Self {
            id,
            last_heard_ms,
            sessions: load.sessions,
            yjs_connections: load.yjs_connections,
            documents: load.documents,
        }
    }
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
    let own = NodeView::new(
        state.realtime.node_id().to_string(),
        0,
        state.realtime.load(),
    );
    let nodes = std::iter::once(own)
        .chain(
            state
                .realtime
                .nodes()
                .into_iter()
                .map(|n| NodeView::new(n.id, n.last_heard_ms, n.load)),
        )
        .collect();
    Ok(HttpResponse::Ok().json(ClusterView {
        node: state.realtime.node_id().to_string(),
        bus,
        nodes,
    }))
}
