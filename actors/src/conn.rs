//! A session as the topics see it: a cheap handle ([`Conn`]) that queues frames for its
//! client in the session's [`Outbox`] and tells the session what happened to it
//! ([`SessionNotice`]).

use std::sync::Arc;

use actix::prelude::*;

use crate::notice::SessionNotice;
use crate::outbox::{Inbox, Outbound, Outbox, PushHead, Refused, Target};

/// A cheap, cloneable handle on one connection.
#[derive(Clone)]
pub struct Conn {
    pub id: u64,
    pub user_id: i64,
    outbox: Arc<Outbox>,
    notice: Recipient<SessionNotice>,
}

impl Conn {
    pub(crate) fn new(
        id: u64,
        user_id: i64,
        outbox: Arc<Outbox>,
        notice: Recipient<SessionNotice>,
    ) -> Conn {
        outbox.tell(notice.clone());
        Conn {
            id,
            user_id,
            outbox,
            notice,
        }
    }

    /// The inbox of the thread serving the socket, once the transport attached it.
    pub(crate) fn inbox(&self) -> Option<&Arc<Inbox>> {
        self.outbox.inbox()
    }

    /// This connection as a fan-out's target, with its frame head.
    pub(crate) fn target(&self, head: PushHead) -> Target {
        Target {
            id: self.id,
            outbox: self.outbox.clone(),
            head,
        }
    }

    /// Queues a frame without waiting. False when the queue is full (the session is told and
    /// will disconnect the client) or the connection is gone; either way the caller should
    /// forget this subscriber.
    pub fn push(&self, frame: String) -> bool {
        self.send(Outbound::Text(frame))
    }

    /// Queues a topic push: this subscriber's `head`, then the shared `tail`.
    pub fn push_shared(&self, head: &PushHead, tail: &Arc<str>, born: u64) -> bool {
        self.send(Outbound::Push {
            head: head.clone(),
            tail: tail.clone(),
            born,
        })
    }

    /// Queues a binary frame whose bytes other connections may share.
    pub fn push_binary(&self, bytes: &Arc<[u8]>) -> bool {
        self.send(Outbound::Binary(bytes.clone()))
    }

    fn send(&self, item: Outbound) -> bool {
        match self.outbox.send(item) {
            Ok(()) => true,
            Err(Refused::Full) => {
                self.notice.do_send(SessionNotice::Overflow);
                false
            }
            Err(Refused::Closed) => false,
        }
    }

    pub fn notify(&self, notice: SessionNotice) {
        self.notice.do_send(notice);
    }
}
