//! A session as the topics see it: where to put frames for its client, and how to tell the
//! session that something happened to it.

use actix::prelude::*;
use tokio::sync::mpsc::{self, error::TrySendError};

/// What a session's writer sends to the socket, in order.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    Pong(Vec<u8>),
}

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
}

/// A cheap, cloneable handle on one connection.
#[derive(Clone)]
pub struct Conn {
    pub id: u64,
    pub user_id: i64,
    tx: mpsc::Sender<Outbound>,
    notice: Recipient<SessionNotice>,
}

impl Conn {
    pub fn new(
        id: u64,
        user_id: i64,
        tx: mpsc::Sender<Outbound>,
        notice: Recipient<SessionNotice>,
    ) -> Conn {
        Conn {
            id,
            user_id,
            tx,
            notice,
        }
    }

    /// Queues a frame without waiting. False when the queue is full (the session is told and
    /// will disconnect the client) or the connection is gone; either way the caller should
    /// forget this subscriber.
    pub fn push(&self, frame: String) -> bool {
        match self.tx.try_send(Outbound::Text(frame)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.notice.do_send(SessionNotice::Overflow);
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    pub(crate) fn pong(&self, data: Vec<u8>) -> bool {
        self.tx.try_send(Outbound::Pong(data)).is_ok()
    }

    pub fn notify(&self, notice: SessionNotice) {
        self.notice.do_send(notice);
    }
}
