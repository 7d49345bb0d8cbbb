//! A session as the topics see it: where to put frames for its client, and how to tell the
//! session that something happened to it.
//!
//! Frames for one client go into its [`Outbox`], a queue shared by the session and every
//! topic it joined, bounded in frames and in bytes. The transport drains the whole queue at each wake-up and writes it
//! to the socket as one buffer, so a busy connection costs one wake-up and one `write` per
//! batch rather than per frame. A push shared by many subscribers is queued as two shared
//! pieces (this subscriber's frame head and the topic's encoded tail) and only copied once,
//! into the socket buffer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use actix::prelude::*;

/// How the session wants the transport to close the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// WebSocket close code (1000 normal, 1003 unsupported data, 1008 policy, 1009 too big).
    pub code: u16,
    pub reason: &'static str,
}

/// What goes to the client, in order.
#[derive(Debug)]
pub enum Outbound {
    /// A whole text frame.
    Text(String),
    /// A text frame made of a subscriber's head (`[` and its join_ref) and a push's tail
    /// shared by every subscriber of the topic.
    Push { head: Arc<str>, tail: Arc<str> },
    /// The answer to a client's ping.
    Pong(Vec<u8>),
}

impl Outbound {
    /// Bytes of payload this frame puts on the wire.
    pub fn len(&self) -> usize {
        match self {
            Outbound::Text(t) => t.len(),
            Outbound::Push { head, tail } => head.len() + tail.len(),
            Outbound::Pong(p) => p.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full: the client is not reading fast enough.
    Full,
    /// The connection is closing or gone.
    Closed,
}

/// What the transport takes from an outbox.
#[derive(Debug)]
pub enum Take {
    /// Frames were moved into the caller's buffer.
    Frames,
    /// Nothing more will come: close the socket with this reason.
    Close(CloseReason),
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Outbound>,
    /// Bytes of the frames in `items`.
    bytes: usize,
    waker: Option<Waker>,
    close: Option<CloseReason>,
    /// No more frames are accepted (closing, or the transport is gone).
    shut: bool,
}

/// One connection's bounded outbound queue.
pub struct Outbox {
    queue: Mutex<Queue>,
    capacity: usize,
    max_bytes: usize,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a frame without waiting. The queue is full at `capacity` frames, or when the
    /// frame would take it over `max_bytes` (an empty queue takes any one frame, so a frame
    /// larger than the byte bound can still reach a client that reads).
    pub fn send(&self, item: Outbound) -> Result<(), Refused> {
        let waker = {
            let mut q = self.lock();
            if q.shut {
                return Err(Refused::Closed);
            }
            let size = item.len();
            let over_bytes = !q.items.is_empty() && q.bytes + size > self.max_bytes;
            if q.items.len() >= self.capacity || over_bytes {
                return Err(Refused::Full);
            }
            q.bytes += size;
            q.items.push_back(item);
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Accepts no more frames and has the transport close the socket: after what is queued,
    /// or at once (dropping the queue) when `discard`.
    pub(crate) fn close(&self, reason: CloseReason, discard: bool) {
        let waker = {
            let mut q = self.lock();
            if q.shut {
                return;
            }
            q.shut = true;
            q.close = Some(reason);
            if discard {
                q.items = VecDeque::new();
                q.bytes = 0;
            }
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().items.len()
    }
}

/// The transport's end of an outbox. Dropping it (the socket is gone) refuses further
/// frames and frees what was queued.
pub struct OutboxReader(Arc<Outbox>);

impl OutboxReader {
    /// Moves queued frames into `into` (which the caller has emptied) — as many as fit in
    /// `max_bytes`, at least one — or says the socket is to be closed, or registers the
    /// task to be woken when either happens. What is not taken stays counted against the
    /// outbox's bounds, so frames waiting for a stalled socket cannot exceed them.
    pub fn poll_take(
        &self,
        cx: &mut Context<'_>,
        into: &mut VecDeque<Outbound>,
        max_bytes: usize,
    ) -> Poll<Take> {
        let mut q = self.0.lock();
        if !q.items.is_empty() {
            if q.bytes <= max_bytes {
                std::mem::swap(&mut q.items, into);
                q.bytes = 0;
                return Poll::Ready(Take::Frames);
            }
            let mut taken = 0;
            while let Some(item) = q.items.pop_front() {
                let size = item.len();
                taken += size;
                into.push_back(item);
                if q.items
                    .front()
                    .is_none_or(|next| taken + next.len() > max_bytes)
                {
                    break;
                }
            }
            q.bytes -= taken;
            return Poll::Ready(Take::Frames);
        }
        if let Some(reason) = q.close.take() {
            return Poll::Ready(Take::Close(reason));
        }
        if q.shut {
            // The close was already taken; nothing will come.
            return Poll::Pending;
        }
        if !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            q.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for OutboxReader {
    fn drop(&mut self) {
        let mut q = self.0.lock();
        q.shut = true;
        q.items = VecDeque::new();
        q.bytes = 0;
        q.waker = None;
    }
}

/// A new outbox holding at most `capacity` frames and `max_bytes` bytes, and its transport
/// end.
pub(crate) fn channel(capacity: usize, max_bytes: usize) -> (Arc<Outbox>, OutboxReader) {
    let outbox = Arc::new(Outbox {
        queue: Mutex::new(Queue::default()),
        capacity: capacity.max(1),
        max_bytes,
    });
    (outbox.clone(), OutboxReader(outbox))
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
    /// Fault injection: the session panics, as a bug would.
    Crash,
    /// The node is shutting down: close the socket with 1001, so the client reconnects
    /// (to another node, or to this one once it is back).
    GoAway,
}

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
        Conn {
            id,
            user_id,
            outbox,
            notice,
        }
    }

    /// Queues a frame without waiting. False when the queue is full (the session is told and
    /// will disconnect the client) or the connection is gone; either way the caller should
    /// forget this subscriber.
    pub fn push(&self, frame: String) -> bool {
        self.send(Outbound::Text(frame))
    }

    /// Queues a topic push: this subscriber's `head`, then the shared `tail`.
    pub fn push_shared(&self, head: &Arc<str>, tail: &Arc<str>) -> bool {
        self.send(Outbound::Push {
            head: head.clone(),
            tail: tail.clone(),
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn text(s: &str) -> Outbound {
        Outbound::Text(s.into())
    }

    #[test]
    fn drains_everything_queued_in_one_take_and_wakes_once() {
        let (outbox, reader) = channel(8, 1 << 20);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut got = VecDeque::new();
        assert!(reader.poll_take(&mut cx, &mut got, usize::MAX).is_pending());
        for s in ["a", "b", "c"] {
            outbox.send(text(s)).unwrap();
        }
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "one wake for the batch");
        assert!(matches!(
            reader.poll_take(&mut cx, &mut got, usize::MAX),
            Poll::Ready(Take::Frames)
        ));
        assert_eq!(got.len(), 3);
        assert_eq!(outbox.len(), 0);
    }

    #[test]
    fn a_full_queue_refuses_and_closing_discards_or_keeps() {
        let (outbox, reader) = channel(2, 1 << 20);
        outbox.send(text("a")).unwrap();
        outbox.send(text("b")).unwrap();
        assert_eq!(outbox.send(text("c")), Err(Refused::Full));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut got = VecDeque::new();

        let reason = CloseReason {
            code: 1000,
            reason: "bye",
        };
        outbox.close(reason.clone(), false);
        assert_eq!(outbox.send(text("d")), Err(Refused::Closed));
        assert!(matches!(
            reader.poll_take(&mut cx, &mut got, usize::MAX),
            Poll::Ready(Take::Frames)
        ));
        assert_eq!(got.len(), 2, "a graceful close sends what was queued first");
        got.clear();
        assert!(matches!(
            reader.poll_take(&mut cx, &mut got, usize::MAX),
            Poll::Ready(Take::Close(r)) if r == reason
        ));
        assert!(reader.poll_take(&mut cx, &mut got, usize::MAX).is_pending());

        let (outbox, reader) = channel(2, 1 << 20);
        outbox.send(text("a")).unwrap();
        outbox.close(reason.clone(), true);
        assert!(matches!(
            reader.poll_take(&mut cx, &mut got, usize::MAX),
            Poll::Ready(Take::Close(_))
        ));
        drop(reader);
        assert_eq!(outbox.send(text("b")), Err(Refused::Closed));
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_too() {
        let (outbox, reader) = channel(100, 10);
        // An empty queue takes one frame of any size.
        outbox.send(text("a frame longer than ten bytes")).unwrap();
        assert_eq!(outbox.send(text("x")), Err(Refused::Full));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut got = VecDeque::new();
        assert!(reader.poll_take(&mut cx, &mut got, usize::MAX).is_ready());
        for _ in 0..5 {
            outbox.send(text("ab")).unwrap();
        }
        assert_eq!(
            outbox.send(text("c")),
            Err(Refused::Full),
            "10 bytes queued"
        );
        let head: Arc<str> = "[\"1\"".into();
        let tail: Arc<str> = ",null]".into();
        got.clear();
        assert!(reader.poll_take(&mut cx, &mut got, usize::MAX).is_ready());
        outbox
            .send(Outbound::Push {
                head: head.clone(),
                tail: tail.clone(),
            })
            .unwrap();
        assert_eq!(
            outbox.send(Outbound::Push { head, tail }),
            Err(Refused::Full),
            "shared pieces count as what they put on the wire"
        );
    }

    #[test]
    fn a_take_is_at_most_a_chunk_and_the_rest_stays_counted() {
        let (outbox, reader) = channel(100, 100);
        for _ in 0..10 {
            outbox.send(text("0123456789")).unwrap();
        }
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut got = VecDeque::new();
        assert!(reader.poll_take(&mut cx, &mut got, 35).is_ready());
        assert_eq!(got.len(), 3, "30 bytes fit in 35");
        // 70 bytes still count: 30 more fit, 31 do not.
        outbox.send(text(&"x".repeat(30))).unwrap();
        assert_eq!(outbox.send(text("y")), Err(Refused::Full));
        got.clear();
        // A frame larger than the chunk is still taken, alone.
        let (outbox, reader) = channel(100, 1000);
        outbox.send(text(&"z".repeat(50))).unwrap();
        outbox.send(text("a")).unwrap();
        assert!(reader.poll_take(&mut cx, &mut got, 10).is_ready());
        assert_eq!(got.len(), 1);
    }
}
