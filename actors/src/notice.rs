//! What a session is told by the topics, the hub and its own outbox.

use std::sync::Arc;

use actix::prelude::*;

/// Told to a session by the topics and the hub.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum SessionNotice {
    /// Its outbound queue was full: the client cannot keep up.
    Overflow,
    /// A topic dropped its subscription (revoked, closed, crashed or overflowed).
    Dropped {
        topic: String,
        join_ref: Option<String>,
    },
    /// Fault injection: the session panics, as a bug would.
    #[cfg(feature = "faults")]
    Crash,
    /// The node is shutting down: close the socket with 1001, so the client reconnects
    /// (to another node, or to this one once it is back).
    GoAway,
    /// A session of this user ended (logout, password change, a disabled account): close
    /// the socket with 1008 if it was opened with a token the end covers.
    Ended(Arc<stoa_protocol::bus::SessionEnd>),
}
