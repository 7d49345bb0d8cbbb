//! The real-time core's ports, implemented over the store and the JWT keys, and the few
//! helpers REST handlers use to tell it about committed changes.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use stoa_actors::{
    Authorizer, Denied, DocAccess, DocStore, EventLog, Grant, Identity, LiveEvent, LogError,
    StoredDoc,
};
use stoa_protocol::Topic;

use crate::api::views::{EventView, NotificationView};
use crate::auth::JwtKeys;
use crate::domain::Role;
use crate::store::{Event, Store, StoreError};

pub use stoa_actors::{Limits, Realtime};

/// Joins: workspace topics for members, document topics for members of the document's
/// workspace, `user:{id}` for that user only.
pub struct StoreAuthorizer {
    pub store: Arc<dyn Store>,
    pub jwt: JwtKeys,
}

fn unavailable(e: StoreError) -> Denied {
    match e {
        StoreError::NotFound(_) | StoreError::Forbidden(_) => Denied::Unauthorized,
        e => {
            tracing::warn!(error = %e, "join check failed");
            Denied::Unavailable
        }
    }
}

#[async_trait]
impl Authorizer for StoreAuthorizer {
    async fn authorize(&self, user: i64, topic: Topic) -> Result<Grant, Denied> {
        match topic {
            Topic::Workspace(ws) => {
                self.store.role(user, ws).await.map_err(unavailable)?;
                Ok(Grant {
                    workspace_id: Some(ws),
                    ..Grant::default()
                })
            }
            Topic::Document(doc) => {
                let (ws, _) = self
                    .store
                    .document_role(user, doc)
                    .await
                    .map_err(unavailable)?;
                Ok(Grant {
                    workspace_id: Some(ws),
                    ..Grant::default()
                })
            }
            Topic::User(id) if id == user => {
                let unread = self.store.unread_count(user).await.map_err(unavailable)?;
                let mut grant = Grant::default();
                grant.info.insert("unread_count".into(), json!(unread));
                Ok(grant)
            }
            Topic::User(_) => Err(Denied::Unauthorized),
        }
    }

    async fn document_access(&self, user: i64, document: i64) -> Result<DocAccess, Denied> {
        let (ws, role) = self
            .store
            .document_role(user, document)
            .await
            .map_err(unavailable)?;
        Ok(DocAccess {
            workspace_id: ws,
            writable: role >= Role::Editor,
        })
    }

    fn verify_token(&self, token: &str) -> Result<Identity, Denied> {
        let now = crate::domain::now_ms() / 1000;
        self.jwt
            .verify(token, now)
            .map(|c| Identity {
                user_id: c.user_id,
                expires_at: c.expires_at,
            })
            .map_err(|e| match e {
                crate::auth::TokenError::Expired => Denied::TokenExpired,
                _ => Denied::InvalidToken,
            })
    }
}

/// Documents' Yjs updates, kept by the store.
pub struct StoreDocs {
    pub store: Arc<dyn Store>,
}

#[async_trait]
impl DocStore for StoreDocs {
    async fn load(&self, document: i64, after: i64) -> Result<StoredDoc, LogError> {
        let (updates, last_seq) = self
            .store
            .document_updates(document, after)
            .await
            .map_err(|e| LogError(e.to_string()))?;
        let text = if after == 0 {
            self.store
                .document_text(document)
                .await
                .map_err(|e| LogError(e.to_string()))?
        } else {
            None
        };
        Ok(StoredDoc {
            updates,
            last_seq,
            text,
        })
    }

    async fn save_text(
        &self,
        document: i64,
        text: &str,
        editors: &[(i64, u32)],
    ) -> Result<Vec<LiveEvent>, LogError> {
        let events = self
            .store
            .record_live_edit(document, text, editors)
            .await
            .map_err(|e| LogError(e.to_string()))?;
        Ok(events.iter().map(live_event).collect())
    }

    async fn append(&self, document: i64, updates: &[Vec<u8>]) -> Result<i64, LogError> {
        self.store
            .append_document_updates(document, updates)
            .await
            .map_err(|e| LogError(e.to_string()))
    }

    async fn compact(&self, document: i64, snapshot: &[u8], through: i64) -> Result<(), LogError> {
        self.store
            .compact_document_updates(document, snapshot, through)
            .await
            .map_err(|e| LogError(e.to_string()))
    }
}

/// The event log, read by topics for `since` replays and gap repair.
pub struct StoreEventLog {
    pub store: Arc<dyn Store>,
}

#[async_trait]
impl EventLog for StoreEventLog {
    async fn latest_offset(&self, workspace: i64) -> Result<i64, LogError> {
        match self.store.log_head(workspace).await {
            Ok(head) => Ok(head),
            // A deleted workspace has an empty log; its topics are being closed anyway.
            Err(StoreError::NotFound(_)) => Ok(0),
            Err(e) => Err(LogError(e.to_string())),
        }
    }

    async fn events_after(
        &self,
        workspace: i64,
        since: i64,
        limit: u32,
    ) -> Result<Vec<LiveEvent>, LogError> {
        let events = self
            .store
            .log_after(workspace, since, limit)
            .await
            .map_err(|e| LogError(e.to_string()))?;
        Ok(events.iter().map(live_event).collect())
    }
}

/// An event of the log as the real-time core pushes it.
pub fn live_event(e: &Event) -> LiveEvent {
    let document_id = if e.kind.starts_with("comment.") {
        e.data.get("document_id").and_then(Value::as_i64)
    } else {
        None
    };
    let payload = serde_json::to_value(EventView::from(e)).unwrap_or(Value::Null);
    LiveEvent {
        workspace_id: e.workspace_id,
        offset: e.offset,
        document_id,
        payload: Arc::new(payload),
        born: stoa_actors::hist::stamp(),
    }
}

/// After a change committed: pushes its event, then the notifications it created.
pub async fn committed(realtime: &Realtime, store: &dyn Store, event: &Event) {
    realtime.publish(live_event(event));
    let notifies = matches!(
        event.kind.as_str(),
        "comment.created" | "member.added" | "member.role_changed"
    );
    if !notifies {
        return;
    }
    let notifications = match store
        .notifications_of_event(event.workspace_id, event.offset)
        .await
    {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read notifications to push");
            return;
        }
    };
    let users: Vec<i64> = notifications.iter().map(|n| n.user_id).collect();
    let unread = match store.unread_counts(&users).await {
        Ok(counts) => counts,
        Err(e) => {
            tracing::warn!(error = %e, "cannot count unread notifications to push");
            Default::default()
        }
    };
    for n in notifications {
        let unread = unread.get(&n.user_id).copied().unwrap_or_default();
        let mut payload = serde_json::to_value(NotificationView::from(&n)).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut payload {
            map.insert("unread_count".into(), json!(unread));
        }
        realtime.notify_user(n.user_id, payload);
    }
}
