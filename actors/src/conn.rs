//! A session as the topics see it: where to put frames for its client, and how to tell the
//! session that something happened to it.
//!
//! Frames for one client go into its [`Outbox`], a queue shared by the session and every
//! topic it joined, bounded in frames and in bytes. Whoever drains it takes everything queued
//! and writes it to the socket in one call, so a busy connection costs one write per batch
//! rather than per frame. A push shared by many subscribers is queued as two shared pieces
//! (this subscriber's frame head and the topic's encoded tail) and only copied once, into
//! the socket buffer.
//!
//! Two parties drain an outbox. A transport thread's [`FlushList`] is the usual one: an
//! outbox whose queue was empty is listed there by the frame that arrives, so a topic that
//! reaches ten thousand idle sockets lists each of them and wakes each transport thread
//! once, and the thread writes them one after the other, rather than waking ten thousand
//! writer tasks. The socket's own writer task takes over when a write cannot finish (the
//! socket's buffer is full), and for the close; it hands the queue back once it is empty.

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

/// A subscriber's frame head (`[` and its join_ref): kept inline when short, as every
/// join_ref phoenix.js makes is, so queueing a push copies it rather than touching a
/// shared count that lives elsewhere.
#[derive(Clone)]
pub enum PushHead {
    Inline { len: u8, bytes: [u8; INLINE_HEAD] },
    Shared(Arc<str>),
}

/// Bytes a [`PushHead`] holds inline.
const INLINE_HEAD: usize = 22;

impl PushHead {
    pub fn new(head: &str) -> PushHead {
        if head.len() <= INLINE_HEAD {
            let mut bytes = [0u8; INLINE_HEAD];
            bytes[..head.len()].copy_from_slice(head.as_bytes());
            PushHead::Inline {
                len: head.len() as u8,
                bytes,
            }
        } else {
            PushHead::Shared(head.into())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            PushHead::Inline { len, bytes } => &bytes[..usize::from(*len)],
            PushHead::Shared(s) => s.as_bytes(),
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for PushHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Made from a `&str`, cut nowhere.
        f.write_str(std::str::from_utf8(self.as_bytes()).unwrap_or_default())
    }
}

impl std::fmt::Debug for PushHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// What goes to the client, in order.
#[derive(Debug)]
pub enum Outbound {
    /// A whole text frame.
    Text(String),
    /// A text frame made of a subscriber's head (`[` and its join_ref) and a push's tail
    /// shared by every subscriber of the topic.
    /// `born` is when the message was committed or arrived ([`crate::hist::stamp`], 0 when
    /// not measured), for the fan-out latency histogram.
    Push {
        head: PushHead,
        tail: Arc<str>,
        born: u64,
    },
    /// The answer to a client's ping.
    Pong(Vec<u8>),
    /// A binary frame, its bytes shared by every connection it goes to (Yjs).
    Binary(Arc<[u8]>),
}

impl Outbound {
    /// Bytes of payload this frame puts on the wire.
    pub fn len(&self) -> usize {
        match self {
            Outbound::Text(t) => t.len(),
            Outbound::Push { head, tail, .. } => head.len() + tail.len(),
            Outbound::Pong(p) => p.len(),
            Outbound::Binary(b) => b.len(),
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
    /// Frames were moved into the caller's buffer; the first `resume` bytes of the first
    /// one are already on the wire (a write the flush list began and could not finish).
    Frames { resume: usize },
    /// Nothing more will come: close the socket with this reason.
    Close(CloseReason),
}

/// Who drains an outbox into its socket.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// The socket's writer task, woken when frames arrive: while a write is unfinished, for
    /// the close, and always for an outbox no flush list serves.
    #[default]
    Writer,
    /// Nothing queued and nothing being written: the next frame lists the outbox.
    Parked,
    /// On the flush list, waiting for its thread.
    Listed,
    /// Being written by the flush list's thread.
    Flushing,
}

/// The frames of a queue, in order: the first in place, the rest in a deque, so a socket
/// that is sent one frame at a time (most are) never allocates for its queue, and an idle
/// one holds no buffer.
#[derive(Default)]
struct Frames {
    first: Option<Outbound>,
    rest: VecDeque<Outbound>,
}

impl Frames {
    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn push_back(&mut self, item: Outbound) {
        if self.first.is_none() {
            self.first = Some(item);
        } else {
            self.rest.push_back(item);
        }
    }

    fn pop_front(&mut self) -> Option<Outbound> {
        let item = self.first.take()?;
        self.first = self.rest.pop_front();
        Some(item)
    }

    fn front(&self) -> Option<&Outbound> {
        self.first.as_ref()
    }

    /// Moves every frame to the end of `into`; the deque's buffer goes with them.
    fn drain_into(&mut self, into: &mut VecDeque<Outbound>) {
        if let Some(first) = self.first.take() {
            into.push_back(first);
        }
        let rest = std::mem::take(&mut self.rest);
        if into.is_empty() {
            *into = rest;
        } else {
            into.extend(rest);
        }
    }
}

#[derive(Default)]
struct Queue {
    items: Frames,
    /// Bytes of the frames in `items`.
    bytes: usize,
    waker: Option<Waker>,
    close: Option<CloseReason>,
    /// No more frames are accepted (closing, or the transport is gone).
    shut: bool,
    drain: Drain,
    /// The flush list serving this outbox and the socket's slot there.
    flush: Option<(Arc<FlushList>, u32)>,
    /// Frames the flush list took and could not write whole, and the bytes of the first
    /// already written: the writer task resumes there.
    handoff: Option<(VecDeque<Outbound>, usize)>,
}

impl Queue {
    /// Moves queued frames into `into` (empty): all of them when they fit `max_bytes`, else
    /// as many as fit and at least one.
    fn take(&mut self, into: &mut VecDeque<Outbound>, max_bytes: usize) {
        if self.bytes <= max_bytes {
            // The queue is left without a buffer: an idle socket keeps none.
            self.items.drain_into(into);
            self.bytes = 0;
            return;
        }
        let mut taken = 0;
        while let Some(item) = self.items.pop_front() {
            taken += item.len();
            into.push_back(item);
            if self
                .items
                .front()
                .is_none_or(|next| taken + next.len() > max_bytes)
            {
                break;
            }
        }
        self.bytes -= taken;
    }
}

/// One connection's bounded outbound queue.
pub struct Outbox {
    queue: Mutex<Queue>,
    capacity: usize,
    max_bytes: usize,
    /// The socket's slot on its flush list's thread, readable without the lock (`u32::MAX`
    /// before it is attached): a hint for prefetching, never trusted to find the socket.
    slot_hint: std::sync::atomic::AtomicU32,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The slot its socket was attached at (`u32::MAX` before): a hint, read without the
    /// lock, that may be out of date.
    pub fn slot_hint(&self) -> u32 {
        self.slot_hint.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues a frame without waiting. The queue is full at `capacity` frames, or when the
    /// frame would take it over `max_bytes` (an empty queue takes any one frame, so a frame
    /// larger than the byte bound can still reach a client that reads).
    pub fn send(self: &Arc<Self>, item: Outbound) -> Result<(), Refused> {
        self.send_with(item, None)
    }

    /// [`Outbox::send`], listing the outbox in `batch` (when it is to be listed) rather than
    /// on its flush list at once: one lock and one wake-up per batch for a topic's fan-out.
    pub fn send_with(
        self: &Arc<Self>,
        item: Outbound,
        batch: Option<&mut FlushBatch>,
    ) -> Result<(), Refused> {
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
            match (q.drain, &q.flush) {
                (Drain::Parked, Some((list, _))) => {
                    let waker = match batch {
                        Some(batch) => batch.add(list, self.clone()),
                        None => list.push(self.clone()),
                    };
                    q.drain = Drain::Listed;
                    waker
                }
                (Drain::Listed | Drain::Flushing, _) => None,
                _ => q.waker.take(),
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// For the flush list's thread: takes what is queued (at most `max_bytes`, at least one
    /// frame) and names the socket's slot to write it to. `None` when there is nothing for
    /// the list to write: the outbox is closing or gone, and its writer task is told.
    pub fn flush_take(&self, into: &mut VecDeque<Outbound>, max_bytes: usize) -> Option<u32> {
        let waker = {
            let mut q = self.lock();
            if q.drain != Drain::Listed {
                return None;
            }
            match q.flush.as_ref().map(|(_, slot)| *slot) {
                Some(slot) if !q.shut && !q.items.is_empty() => {
                    q.take(into, max_bytes);
                    q.drain = Drain::Flushing;
                    return Some(slot);
                }
                // The rest, and the close frame, are the writer's.
                _ => {
                    q.drain = Drain::Writer;
                    q.waker.take()
                }
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        None
    }

    /// For the flush list's thread, after writing what [`Outbox::flush_take`] gave it:
    /// `unwritten` is what the socket did not take (the frames, and the bytes of the first
    /// already written), which the writer task then finishes. True when more frames arrived
    /// meanwhile and the outbox is to be listed again.
    pub fn flush_done(self: &Arc<Self>, unwritten: Option<(VecDeque<Outbound>, usize)>) -> bool {
        let waker = {
            let mut q = self.lock();
            if q.drain != Drain::Flushing {
                return false;
            }
            if q.flush.is_none() {
                // The socket is gone.
                q.drain = Drain::Writer;
                return false;
            }
            if unwritten.is_some() || q.shut {
                q.handoff = unwritten;
                q.drain = Drain::Writer;
                q.waker.take()
            } else if !q.items.is_empty() {
                q.drain = Drain::Listed;
                return true;
            } else {
                q.drain = Drain::Parked;
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        false
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
                q.items = Frames::default();
                q.bytes = 0;
            }
            match q.drain {
                // The flush list finds it closing and hands it to the writer.
                Drain::Listed | Drain::Flushing => None,
                Drain::Parked | Drain::Writer => {
                    q.drain = Drain::Writer;
                    q.waker.take()
                }
            }
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
    /// Has a flush list write this outbox's frames from now on, through the socket in
    /// `slot` of that list's thread; the writer task is woken only to finish what a write
    /// left, and for the close.
    pub fn attach(&self, list: &Arc<FlushList>, slot: u32) {
        let mut q = self.0.lock();
        q.flush = Some((list.clone(), slot));
        self.0
            .slot_hint
            .store(slot, std::sync::atomic::Ordering::Relaxed);
    }

    /// Moves queued frames into `into` (which the caller has emptied) — as many as fit in
    /// `max_bytes`, at least one — or says the socket is to be closed, or registers the
    /// task to be woken when either happens. What is not taken stays counted against the
    /// outbox's bounds, so frames waiting for a stalled socket cannot exceed them. With a
    /// flush list attached, an empty queue is handed back to it.
    pub fn poll_take(
        &self,
        cx: &mut Context<'_>,
        into: &mut VecDeque<Outbound>,
        max_bytes: usize,
    ) -> Poll<Take> {
        let mut q = self.0.lock();
        if let Some((items, resume)) = q.handoff.take() {
            *into = items;
            return Poll::Ready(Take::Frames { resume });
        }
        let writer = matches!(q.drain, Drain::Writer | Drain::Parked);
        if writer && !q.items.is_empty() {
            q.take(into, max_bytes);
            q.drain = Drain::Writer;
            return Poll::Ready(Take::Frames { resume: 0 });
        }
        if writer {
            if let Some(reason) = q.close.take() {
                return Poll::Ready(Take::Close(reason));
            }
        }
        if q.shut && writer {
            // The close was already taken; nothing will come.
            return Poll::Pending;
        }
        if !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            q.waker = Some(cx.waker().clone());
        }
        if q.drain == Drain::Writer && q.flush.is_some() {
            q.drain = Drain::Parked;
        }
        Poll::Pending
    }
}

impl Drop for OutboxReader {
    fn drop(&mut self) {
        let mut q = self.0.lock();
        q.shut = true;
        q.items = Frames::default();
        q.bytes = 0;
        q.waker = None;
        q.flush = None;
        q.handoff = None;
    }
}

/// Outboxes listed during one fan-out, put on their flush lists together: the lists are
/// few (one per transport thread), the outboxes many. Whatever is still held is put on its
/// list when the batch is dropped.
#[derive(Default)]
pub struct FlushBatch {
    lists: Vec<(Arc<FlushList>, Vec<Arc<Outbox>>)>,
}

/// Outboxes a batch holds for one list before it hands them over.
const BATCH: usize = 256;

impl FlushBatch {
    fn add(&mut self, list: &Arc<FlushList>, outbox: Arc<Outbox>) -> Option<Waker> {
        let i = match self.lists.iter().position(|(l, _)| Arc::ptr_eq(l, list)) {
            Some(i) => i,
            None => {
                self.lists.push((list.clone(), Vec::with_capacity(BATCH)));
                self.lists.len() - 1
            }
        };
        let (list, held) = &mut self.lists[i];
        held.push(outbox);
        if held.len() < BATCH {
            return None;
        }
        list.push_all(held)
    }

    /// Puts every held outbox on its list now.
    pub fn flush(&mut self) {
        for (list, held) in &mut self.lists {
            if let Some(w) = list.push_all(held) {
                w.wake();
            }
        }
    }
}

impl Drop for FlushBatch {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The outboxes a transport thread is to write: listed by the frame that finds an outbox
/// idle, taken by the thread's flush task in one go.
#[derive(Default)]
pub struct FlushList {
    inner: Mutex<Listed>,
}

#[derive(Default)]
struct Listed {
    ready: Vec<Arc<Outbox>>,
    waker: Option<Waker>,
}

impl FlushList {
    pub fn new() -> Arc<FlushList> {
        Arc::default()
    }

    /// Lists an outbox; the flush task's waker when it is to be woken (the list was empty).
    fn push(&self, outbox: Arc<Outbox>) -> Option<Waker> {
        let mut l = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        l.ready.push(outbox);
        if l.ready.len() == 1 {
            l.waker.take()
        } else {
            None
        }
    }

    /// Lists every outbox in `held` (emptied); the waker as for [`FlushList::push`].
    fn push_all(&self, held: &mut Vec<Arc<Outbox>>) -> Option<Waker> {
        if held.is_empty() {
            return None;
        }
        let mut l = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let was_empty = l.ready.is_empty();
        l.ready.append(held);
        if was_empty {
            l.waker.take()
        } else {
            None
        }
    }

    /// Lists an outbox again (more frames came while it was being written).
    pub fn relist(&self, outbox: Arc<Outbox>) {
        if let Some(w) = self.push(outbox) {
            w.wake();
        }
    }

    /// Moves the listed outboxes into `into` (empty), or registers the task to be woken
    /// when one is listed.
    pub fn poll_ready(&self, cx: &mut Context<'_>, into: &mut Vec<Arc<Outbox>>) -> Poll<()> {
        let mut l = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if l.ready.is_empty() {
            if !l.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                l.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        std::mem::swap(&mut l.ready, into);
        Poll::Ready(())
    }
}

/// A new outbox holding at most `capacity` frames and `max_bytes` bytes, and its transport
/// end.
pub(crate) fn channel(capacity: usize, max_bytes: usize) -> (Arc<Outbox>, OutboxReader) {
    let outbox = Arc::new(Outbox {
        queue: Mutex::new(Queue::default()),
        capacity: capacity.max(1),
        max_bytes,
        slot_hint: std::sync::atomic::AtomicU32::new(u32::MAX),
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

    /// [`Conn::push_shared`] within a fan-out's [`FlushBatch`].
    pub fn push_shared_in(
        &self,
        head: &PushHead,
        tail: &Arc<str>,
        born: u64,
        batch: &mut FlushBatch,
    ) -> bool {
        self.send_with(
            Outbound::Push {
                head: head.clone(),
                tail: tail.clone(),
                born,
            },
            Some(batch),
        )
    }

    fn send(&self, item: Outbound) -> bool {
        self.send_with(item, None)
    }

    fn send_with(&self, item: Outbound, batch: Option<&mut FlushBatch>) -> bool {
        match self.outbox.send_with(item, batch) {
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
            Poll::Ready(Take::Frames { .. })
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
            Poll::Ready(Take::Frames { .. })
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
        let head = PushHead::new("[\"1\"");
        let tail: Arc<str> = ",null]".into();
        got.clear();
        assert!(reader.poll_take(&mut cx, &mut got, usize::MAX).is_ready());
        outbox
            .send(Outbound::Push {
                head: head.clone(),
                tail: tail.clone(),
                born: 0,
            })
            .unwrap();
        assert_eq!(
            outbox.send(Outbound::Push {
                head,
                tail,
                born: 0
            }),
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

    fn push(s: &str) -> Outbound {
        Outbound::Push {
            head: PushHead::new("[\"1\""),
            tail: s.into(),
            born: 0,
        }
    }

    fn ready(list: &FlushList) -> Vec<Arc<Outbox>> {
        let mut got = Vec::new();
        let waker = Waker::noop();
        let _ = list.poll_ready(&mut Context::from_waker(waker), &mut got);
        got
    }

    #[test]
    fn an_idle_outbox_is_listed_once_and_its_frames_written_by_the_list() {
        let list = FlushList::new();
        let (outbox, reader) = channel(8, 1 << 20);
        reader.attach(&list, 7);
        let writer = Arc::new(Count(AtomicUsize::new(0)));
        let writer_waker = Waker::from(writer.clone());
        let mut cx = Context::from_waker(&writer_waker);
        let mut got = VecDeque::new();
        // The writer finds nothing and parks the outbox with the list.
        assert!(reader.poll_take(&mut cx, &mut got, usize::MAX).is_pending());

        let flusher = Arc::new(Count(AtomicUsize::new(0)));
        let flusher_waker = Waker::from(flusher.clone());
        let mut fcx = Context::from_waker(&flusher_waker);
        let mut listed = Vec::new();
        assert!(list.poll_ready(&mut fcx, &mut listed).is_pending());
        let mut batch = FlushBatch::default();
        for s in ["a", "b", "c"] {
            outbox.send_with(push(s), Some(&mut batch)).unwrap();
        }
        assert_eq!(flusher.0.load(Ordering::SeqCst), 0, "held in the batch");
        batch.flush();
        assert_eq!(
            flusher.0.load(Ordering::SeqCst),
            1,
            "one wake for the batch"
        );
        assert_eq!(
            writer.0.load(Ordering::SeqCst),
            0,
            "the writer is not woken"
        );
        let listed = ready(&list);
        assert_eq!(listed.len(), 1, "listed once for three frames");

        let mut taken = VecDeque::new();
        assert_eq!(listed[0].flush_take(&mut taken, usize::MAX), Some(7));
        assert_eq!(taken.len(), 3);
        // A frame that comes while the list writes waits for the next pass.
        outbox.send(push("d")).unwrap();
        assert!(ready(&list).is_empty());
        assert!(listed[0].flush_done(None), "to be listed again");
        list.relist(listed[0].clone());
        let again = ready(&list);
        taken.clear();
        assert_eq!(again[0].flush_take(&mut taken, usize::MAX), Some(7));
        assert_eq!(taken.len(), 1);
        assert!(!again[0].flush_done(None));
        // Parked again: the next frame lists it again.
        outbox.send(push("e")).unwrap();
        assert_eq!(ready(&list).len(), 1);
        assert_eq!(writer.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn an_unfinished_write_is_handed_to_the_writer_and_resumed_in_order() {
        let list = FlushList::new();
        let (outbox, reader) = channel(8, 1 << 20);
        reader.attach(&list, 0);
        let writer = Arc::new(Count(AtomicUsize::new(0)));
        let writer_waker = Waker::from(writer.clone());
        let mut cx = Context::from_waker(&writer_waker);
        let mut got = VecDeque::new();
        assert!(reader.poll_take(&mut cx, &mut got, usize::MAX).is_pending());
        outbox.send(push("a")).unwrap();
        outbox.send(push("b")).unwrap();
        let listed = ready(&list);
        let mut taken = VecDeque::new();
        assert!(listed[0].flush_take(&mut taken, usize::MAX).is_some());
        outbox.send(push("c")).unwrap();
        // The socket took 3 bytes.
        assert!(!listed[0].flush_done(Some((std::mem::take(&mut taken), 3))));
        assert_eq!(writer.0.load(Ordering::SeqCst), 1, "the writer is woken");
        assert!(matches!(
            reader.poll_take(&mut cx, &mut got, usize::MAX),
            Poll::Ready(Take::Frames { resume: 3 })
        ));
        assert_eq!(got.len(), 2, "the unfinished frames first");
        got.clear();
        assert!(matches!(
            reader.poll_take(&mut cx, &mut got, usize::MAX),
            Poll::Ready(Take::Frames { resume: 0 })
        ));
        assert!(matches!(&got[0], Outbound::Push { tail, .. } if &**tail == "c"));
        got.clear();
        // Written out, the writer parks the outbox with the list again.
        assert!(reader.poll_take(&mut cx, &mut got, usize::MAX).is_pending());
        outbox.send(push("d")).unwrap();
        assert_eq!(ready(&list).len(), 1);
        assert_eq!(writer.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_close_while_listed_goes_to_the_writer_after_the_frames() {
        let list = FlushList::new();
        let (outbox, reader) = channel(8, 1 << 20);
        reader.attach(&list, 0);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut got = VecDeque::new();
        assert!(reader.poll_take(&mut cx, &mut got, usize::MAX).is_pending());
        outbox.send(push("a")).unwrap();
        let reason = CloseReason {
            code: 1000,
            reason: "bye",
        };
        outbox.close(reason.clone(), false);
        let listed = ready(&list);
        let mut taken = VecDeque::new();
        assert_eq!(listed[0].flush_take(&mut taken, usize::MAX), None);
        assert!(matches!(
            reader.poll_take(&mut cx, &mut got, usize::MAX),
            Poll::Ready(Take::Frames { resume: 0 })
        ));
        got.clear();
        assert!(matches!(
            reader.poll_take(&mut cx, &mut got, usize::MAX),
            Poll::Ready(Take::Close(r)) if r == reason
        ));
    }

    #[test]
    fn a_listed_outbox_whose_socket_went_is_skipped() {
        let list = FlushList::new();
        let (outbox, reader) = channel(8, 1 << 20);
        reader.attach(&list, 0);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut got = VecDeque::new();
        assert!(reader.poll_take(&mut cx, &mut got, usize::MAX).is_pending());
        outbox.send(push("a")).unwrap();
        drop(reader);
        let listed = ready(&list);
        let mut taken = VecDeque::new();
        assert_eq!(listed[0].flush_take(&mut taken, usize::MAX), None);
        assert!(taken.is_empty());
        assert_eq!(outbox.send(push("b")), Err(Refused::Closed));
    }
}
