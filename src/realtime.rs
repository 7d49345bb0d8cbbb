//! The real-time core's ports, implemented over the store and the JWT keys, and the few
//! helpers REST handlers use to tell it about committed changes.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use stoa_actors::{
    Authorizer, Denied, DocAccess, DocError, DocStore, EventLog, Grant, Identity, LiveEvent,
    LogError, Projection, StoredDoc,
};
use stoa_protocol::Topic;

use crate::domain::{EventKind, Role};
use crate::store::{Event, Store, StoreError};
use crate::views::{EventView, NotificationView};

pub use stoa_actors::{Limits, Realtime};

/// Joins: workspace topics for members, document topics for members of the document's
/// workspace, `user:{id}` for that user only.
pub struct StoreAuthorizer {
    pub store: Arc<dyn Store>,
    pub identities: Arc<crate::identity::Identities>,
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

    async fn verify_token(&self, token: &str) -> Result<Identity, Denied> {
        use crate::identity::IdentityError;
        self.identities
            .verify(token)
            .await
            .map(|c| Identity {
                user_id: c.user_id,
                expires_at: c.expires_at,
                issued_at_ms: c.issued_at_ms,
                session: c.session,
            })
            .map_err(|e| match e {
                IdentityError::Token(crate::auth::TokenError::Expired) => Denied::TokenExpired,
                IdentityError::Unavailable(_) => Denied::Unavailable,
                _ => Denied::InvalidToken,
            })
    }
}

/// Documents' Yjs updates, kept by the store.
pub struct StoreDocs {
    pub store: Arc<dyn Store>,
    /// At most one automatic version per this long (`documents.version_interval_secs`).
    pub version_interval_ms: i64,
    pub retention: crate::history::Retention,
}

fn doc_error(e: StoreError) -> DocError {
    DocError {
        permanent: e.is_permanent(),
        message: e.to_string(),
    }
}

#[async_trait]
impl DocStore for StoreDocs {
    async fn load(&self, document: i64, after: i64) -> Result<StoredDoc, DocError> {
        let (updates, last_seq) = self
            .store
            .document_updates(document, after)
            .await
            .map_err(doc_error)?;
        let text = if after == 0 {
            self.store
                .document_text(document)
                .await
                .map_err(doc_error)?
        } else {
            None
        };
        Ok(StoredDoc {
            updates,
            last_seq,
            text_seq: text.as_ref().map_or(0, |t| t.text_seq),
            pending: text.as_ref().and_then(|t| t.pending),
            text: text.map(|t| t.content),
        })
    }

    async fn save_text(
        &self,
        document: i64,
        text: &str,
        through: i64,
    ) -> Result<Projection, DocError> {
        let recorded = self
            .store
            .record_live_edit(document, text, through, self.version_interval_ms)
            .await
            .map_err(doc_error)?;
        if let Some(due) = recorded.version.clone() {
            // Made apart from the document's work: its Yjs side runs on the blocking pool.
            let store = self.store.clone();
            let retention = self.retention;
            actix_web::rt::spawn(async move {
                let of = crate::history::VersionOf {
                    kind: "auto",
                    name: None,
                    authors: due.authors,
                    created_by: None,
                    restored_from: None,
                    through: None,
                };
                match crate::history::make_version(&*store, document, due.updates, of).await {
                    Ok(_) => {
                        let now = crate::history::now();
                        if let Err(e) =
                            crate::history::thin(&*store, document, retention, now).await
                        {
                            tracing::warn!(document, error = %e, "cannot thin the document's versions");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(document, error = %e, "cannot make the document's version")
                    }
                }
            });
        }
        Ok(Projection {
            events: recorded.events.iter().map(live_event).collect(),
            adopt: recorded.adopt,
        })
    }

    async fn text_in_log(&self, document: i64, version: i64, seq: i64) -> Result<(), DocError> {
        self.store
            .text_in_log(document, version, seq)
            .await
            .map_err(doc_error)
    }

    async fn append(
        &self,
        document: i64,
        updates: &[Vec<u8>],
        editors: &[(i64, u32)],
    ) -> Result<i64, DocError> {
        self.store
            .append_document_updates(document, updates, editors)
            .await
            .map_err(doc_error)
    }

    async fn compact(&self, document: i64, snapshot: &[u8], through: i64) -> Result<(), DocError> {
        self.store
            .compact_document_updates(document, snapshot, through)
            .await
            .map_err(doc_error)
    }
}

/// A session end as the real-time core (and the bus) carry it.
pub fn session_end(end: &crate::store::SessionEnd) -> stoa_actors::SessionEnd {
    stoa_actors::SessionEnd {
        id: end.id,
        user: end.user_id,
        session: end.session.clone(),
        before_ms: end.before_ms,
        except: end.except.clone(),
        reason: end.reason.clone(),
    }
}

/// Reads the session ends this node has not heard of (every second, and at start-up all
/// those of the last token lifetime) and applies them: the bus brings them at once, this
/// makes sure a node that missed a message (Redis away, the node starting, an end recorded
/// by `stoa user disable`) refuses the tokens all the same, within a second.
pub async fn follow_session_ends(
    realtime: Realtime,
    store: Arc<dyn Store>,
    lifetime: std::time::Duration,
) {
    let lifetime_ms = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
    loop {
        let since = crate::domain::now_ms().saturating_sub(lifetime_ms);
        match store
            .session_ends_after(realtime.session_ends_read_through(), since)
            .await
        {
            Ok(ends) => realtime.sessions_ended(ends.iter().map(session_end).collect()),
            Err(e) => tracing::debug!(error = %e, "cannot read session ends; trying again"),
        }
        actix_web::rt::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Brings every document whose text, events or rollups are behind its update log up to
/// date (run once at start-up: a node stopped by kill -9 between writing an edit and
/// recording it leaves such documents), a page at a time.
pub async fn catch_up_documents(realtime: &Realtime, store: &dyn Store) {
    const PAGE: u32 = 256;
    let mut after = 0;
    let mut total = 0;
    loop {
        let page = match store.documents_behind(after, PAGE).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for documents to catch up");
                return;
            }
        };
        let Some(last) = page.last() else { break };
        after = last.0;
        total += page.len();
        realtime
            .catch_up_documents(&page, std::time::Duration::from_secs(30))
            .await;
        if page.len() < PAGE as usize {
            break;
        }
    }
    if total > 0 {
        tracing::info!(
            documents = total,
            "caught up documents left behind by the last stop"
        );
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
    let document_id = if e.known_kind().is_some_and(EventKind::is_comment) {
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

/// After a membership changed (over REST, by a token's role claims or by the directory
/// API): the member's channels and documents of the workspace on every node follow it (a
/// removed member's close, a viewer's documents turn read-only), then its event is pushed.
pub async fn membership_changed(
    realtime: &Realtime,
    store: &dyn Store,
    change: &crate::store::MembershipChange,
) {
    match change.role {
        None => realtime.revoke_member(change.workspace_id, change.user_id, "membership_revoked"),
        Some(role) => {
            realtime.role_changed(change.workspace_id, change.user_id, role >= Role::Editor)
        }
    }
    committed(realtime, store, &change.event).await;
}

/// After a change committed: pushes its event, then the notifications it created.
pub async fn committed(realtime: &Realtime, store: &dyn Store, event: &Event) {
    realtime.publish(live_event(event));
    crate::webhooks::events_committed();
    if !event.known_kind().is_some_and(EventKind::notifies) {
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
