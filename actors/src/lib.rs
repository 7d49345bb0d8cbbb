//! Stoa's live state, owned by actix actors.
//!
//! - a [`SessionActor`] per WebSocket connection: decodes frames, enforces the connection's
//!   limits and routes each message to the topic it names;
//! - a [`TopicActor`] per active topic on the node: subscribers, presence, fan-out, and the
//!   gap-free hand-off from the event log to live events;
//! - the notification hub ([`Realtime::notify_user`]): a user's `user:{id}` topic fans a
//!   notification out to every session of that user.
//!
//! Live actors are found through concurrent maps ([`dashmap`]). A topic actor that panics
//! dies alone: its supervisor puts a fresh actor in its place, and its subscribers receive
//! `phx_error` and rejoin. A session that panics closes its socket (1011) and leaves its
//! topics. Every queue is bounded: outboxes in frames and bytes, topic mailboxes by the
//! tickets client messages take, and client messages by rates per connection, per user and
//! per topic.
//! What the actors need from outside (the event log, authorisation) are the traits in
//! [`ports`]; the server implements them.

pub mod bus;
mod clock;
mod conn;
mod ended;
mod env;
pub mod hist;
mod limit;
mod limits;
mod liveness;
mod notice;
pub mod outbox;
pub mod ports;
mod registry;
mod session;
mod stats;
mod topic;
mod yjs;

pub use bus::{Bus, BusInbox, Cluster, LocalBus, LocalHub};
pub use conn::Conn;
pub use ended::TokenTag;
pub use limits::Limits;
pub use notice::SessionNotice;
pub use ports::{
    Authorizer, Denied, DocAccess, DocError, DocStore, EventLog, Grant, Identity, LiveEvent,
    LogError, Projection, StoredDoc,
};
pub use registry::{PublishRefused, Realtime, Refusal, SocketPermit};
pub use session::{SessionActor, WireIn, PRESENCE_META_OVERHEAD};
pub use stats::{Out, Stats, FRAMES_IN, FRAMES_OUT, TOPIC_KINDS};
pub use stoa_protocol::bus::SessionEnd;
pub use topic::TopicActor;
pub use yjs::text as doc_text;
pub use yjs::YjsSession;
