//! The queues between the actors and the transport: where actors put frames for a client,
//! and where the transport takes them from. Actors write into them; only the transport
//! (`src/transport/`) drains them and touches sockets.
//!
//! Frames for one client go into its [`Outbox`], a queue bounded in frames and in bytes.
//! Whoever drains it takes everything queued and writes it to the socket in one call, so a
//! busy connection costs one write per batch rather than per frame. A push shared by many
//! subscribers is queued as two shared pieces (this subscriber's frame head and the topic's
//! encoded tail) and only copied once, into the socket buffer.
//!
//! Once the transport has attached a socket to the thread that serves it, every frame for
//! that socket, from any actor on any thread, goes through that thread's [`Inbox`] in the
//! order it was sent, and only that thread touches the queue: it writes a frame straight to
//! an idle socket, and queues frames for a busy one (or, when several deliveries wait,
//! queues them all and writes each socket once). A topic reaching ten thousand sockets hands
//! each thread one [`Fanout`] (its share of the subscribers, a list the topic keeps per
//! thread and shares), so the topic's own thread does no work per subscriber and no
//! subscriber's state moves between threads. The socket's own writer task takes over when a
//! write cannot finish (the socket's buffer is full), and for the close; it hands the queue
//! back once it is empty.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use actix::prelude::*;

use crate::notice::SessionNotice;

/// The descriptor of an attached socket, as the serving thread writes to it.
///
/// Only the transport makes one, and it vouches for it: [`SocketHandle::new`] is `unsafe`.
/// Safe code cannot name a descriptor to an outbox, so every write through a handle
/// (`BorrowedFd::borrow_raw` in the transport) rests on that one promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketHandle(std::os::fd::RawFd);

impl SocketHandle {
    /// A handle on the socket `fd`.
    ///
    /// # Safety
    /// `fd` must be an open socket, and stay open and this connection's, until the
    /// outbox it is attached to is detached ([`OutboxReader::detach`], or dropping the
    /// reader) on the thread that serves it: the serving thread writes to it meanwhile.
    pub unsafe fn new(fd: std::os::fd::RawFd) -> SocketHandle {
        SocketHandle(fd)
    }

    /// The descriptor.
    pub fn raw(self) -> std::os::fd::RawFd {
        self.0
    }
}

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
    /// The queue is full: the client is not reading fast enough (or, for an attached socket,
    /// its thread's inbox is [`INBOX_BYTES`] behind).
    Full,
    /// The connection is closing or gone.
    Closed,
}

/// What the transport takes from an outbox.
#[derive(Debug)]
pub enum Take {
    /// Frames were moved into the caller's buffer; the first `resume` bytes of the first
    /// one are already on the wire (a write the thread began and could not finish).
    Frames { resume: usize },
    /// Nothing more will come: close the socket with this reason.
    Close(CloseReason),
}

/// Who drains an outbox into its socket.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Drain {
    /// The socket's writer task, woken when frames arrive: while a write is unfinished, for
    /// the close, and always for an outbox no thread's inbox serves.
    #[default]
    Writer,
    /// Nothing queued and nothing being written: the thread writes the next frame at once.
    Parked,
    /// Frames queued during one of the thread's passes, written once at its end.
    Listed,
    /// Being written by the thread.
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

/// What the serving thread reads for every frame comes first, so that it shares the
/// outbox's first cache line with the lock.
#[repr(C)]
struct Queue {
    drain: Drain,
    /// No more frames are queued (closing, or the transport is gone).
    shut: bool,
    /// The session has been told that the queue overflowed.
    overflowed: bool,
    /// The socket, while it is attached.
    handle: Option<SocketHandle>,
    /// Bytes of the frames in `items`.
    bytes: usize,
    items: Frames,
    waker: Option<Waker>,
    close: Option<CloseReason>,
    /// Frames the thread took and could not write whole, and the bytes of the first
    /// already written: the writer task resumes there.
    handoff: Option<(VecDeque<Outbound>, usize)>,
}

impl Default for Queue {
    fn default() -> Queue {
        Queue {
            drain: Drain::Writer,
            shut: false,
            overflowed: false,
            handle: None,
            bytes: 0,
            items: Frames::default(),
            waker: None,
            close: None,
            handoff: None,
        }
    }
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

/// What the serving thread did with a frame it queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Queued behind others, or for the writer task.
    Behind,
    /// Queued in an idle outbox, which the thread now lists and writes at the end of its
    /// pass.
    List,
    /// Not queued: the connection is closing, or its queue is full (its session is told).
    Dropped,
}

/// One connection's bounded outbound queue.
pub struct Outbox {
    queue: Mutex<Queue>,
    capacity: usize,
    max_bytes: usize,
    /// The inbox of the thread serving the socket, once the transport attached it: every
    /// frame goes through it from then on.
    inbox: OnceLock<Arc<Inbox>>,
    /// Closing or gone: senders are refused at once. (Frames sent before a graceful close
    /// still reach the client: the close follows them through the inbox.)
    closed: AtomicBool,
    /// Told when the serving thread finds the queue full.
    notice: OnceLock<Recipient<SessionNotice>>,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The inbox of the thread serving the socket, once attached.
    pub fn inbox(&self) -> Option<&Arc<Inbox>> {
        self.inbox.get()
    }

    /// Who is told when the serving thread finds the queue full (set once, by the session).
    pub(crate) fn tell(&self, notice: Recipient<SessionNotice>) {
        let _ = self.notice.set(notice);
    }

    fn fits(&self, q: &Queue, size: usize) -> bool {
        let over_bytes = !q.items.is_empty() && q.bytes + size > self.max_bytes;
        q.items.len() < self.capacity && !over_bytes
    }

    /// Queues a frame without waiting. The queue is full at `capacity` frames, or when the
    /// frame would take it over `max_bytes` (an empty queue takes any one frame, so a frame
    /// larger than the byte bound can still reach a client that reads). For an attached
    /// socket the frame goes through its thread's inbox and the bounds are checked there: a
    /// frame that does not fit then has the session told ([`SessionNotice::Overflow`]).
    pub fn send(self: &Arc<Self>, item: Outbound) -> Result<(), Refused> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        if let Some(inbox) = self.inbox.get() {
            return inbox
                .deliver(Delivery::One(self.clone(), item))
                .map_err(|_| Refused::Full);
        }
        let waker = {
            let mut q = self.lock();
            if q.shut {
                return Err(Refused::Closed);
            }
            if !self.fits(&q, item.len()) {
                return Err(Refused::Full);
            }
            q.bytes += item.len();
            q.items.push_back(item);
            // Attached meanwhile and idle: the writer takes this one (frames that come
            // through the inbox then queue behind it).
            if q.drain == Drain::Parked {
                q.drain = Drain::Writer;
            }
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Tells the session its queue overflowed (once).
    pub(crate) fn overflow(&self) {
        if let Some(notice) = self.notice.get() {
            notice.do_send(SessionNotice::Overflow);
        }
    }

    /// For the serving thread: when nothing is queued or being written, claims the socket
    /// for a write of the thread's own and names it; the thread then reports with
    /// [`Outbox::flush_done`].
    pub fn begin_write(&self) -> Option<SocketHandle> {
        let mut q = self.lock();
        if q.shut || q.drain != Drain::Parked || !q.items.is_empty() {
            return None;
        }
        let handle = q.handle?;
        q.drain = Drain::Flushing;
        Some(handle)
    }

    /// For the serving thread: queues a frame that arrived through the inbox.
    pub fn queue(&self, item: Outbound) -> Queued {
        let mut overflowed = false;
        let (queued, waker) = {
            let mut q = self.lock();
            if q.shut {
                return Queued::Dropped;
            }
            if !self.fits(&q, item.len()) {
                overflowed = !std::mem::replace(&mut q.overflowed, true);
                (Queued::Dropped, None)
            } else {
                q.bytes += item.len();
                q.items.push_back(item);
                match q.drain {
                    Drain::Parked => {
                        q.drain = Drain::Listed;
                        (Queued::List, None)
                    }
                    Drain::Writer => (Queued::Behind, q.waker.take()),
                    Drain::Listed | Drain::Flushing => (Queued::Behind, None),
                }
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        if overflowed {
            self.overflow();
        }
        queued
    }

    /// For the serving thread: takes what is queued in a listed outbox (at most
    /// `max_bytes`, at least one frame) and names the socket to write it to. `None` when
    /// there is nothing for the thread to write: the outbox is closing or gone, and its
    /// writer task is told.
    pub fn flush_take(
        &self,
        into: &mut VecDeque<Outbound>,
        max_bytes: usize,
    ) -> Option<SocketHandle> {
        let waker = {
            let mut q = self.lock();
            if q.drain != Drain::Listed {
                return None;
            }
            if let (false, Some(handle), false) = (q.shut, q.handle, q.items.is_empty()) {
                q.take(into, max_bytes);
                q.drain = Drain::Flushing;
                return Some(handle);
            }
            // The rest, and the close frame, are the writer's.
            q.drain = Drain::Writer;
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        None
    }

    /// For the serving thread, after a write it began ([`Outbox::begin_write`],
    /// [`Outbox::flush_take`]): `unwritten` is what the socket did not take (the frames, and
    /// the bytes of the first already written), which the writer task then finishes. True
    /// when frames were queued meanwhile and the outbox is to be written again.
    pub fn flush_done(&self, unwritten: Option<(VecDeque<Outbound>, usize)>) -> bool {
        let waker = {
            let mut q = self.lock();
            if q.drain != Drain::Flushing {
                return false;
            }
            if q.handle.is_none() {
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

    /// Accepts no more frames and has the transport close the socket: after what is
    /// queued, or at once (dropping the queue) when `discard`. For an attached socket a
    /// graceful close goes through the inbox, behind every frame sent before it.
    pub(crate) fn close(self: &Arc<Self>, reason: CloseReason, discard: bool) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if !discard {
            if let Some(inbox) = self.inbox.get() {
                // A close is never refused (it weighs nothing).
                let _ = inbox.deliver(Delivery::Close(self.clone(), reason));
                return;
            }
        }
        self.close_now(reason, discard);
    }

    /// Closes as [`Outbox::close`] says, now (the serving thread does this for a close that
    /// came through its inbox).
    pub fn close_now(&self, reason: CloseReason, discard: bool) {
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
                // The thread finds it closing and hands it to the writer.
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
    /// Has the thread behind `inbox` serve this outbox from now on, writing to the socket
    /// named by `handle`; the writer task is woken only to finish what a write
    /// left, and for the close.
    pub fn attach(&self, inbox: &Arc<Inbox>, handle: SocketHandle) {
        self.0.lock().handle = Some(handle);
        let _ = self.0.inbox.set(inbox.clone());
    }

    /// Moves queued frames into `into` (which the caller has emptied) — as many as fit in
    /// `max_bytes`, at least one — or says the socket is to be closed, or registers the
    /// task to be woken when either happens. What is not taken stays counted against the
    /// outbox's bounds, so frames waiting for a stalled socket cannot exceed them. With the
    /// socket attached, an empty queue is handed back to the serving thread.
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
        if q.drain == Drain::Writer && q.handle.is_some() {
            q.drain = Drain::Parked;
        }
        Poll::Pending
    }

    /// The socket is going: nothing more is queued or written, and the serving thread no
    /// longer names the socket (it is detached before it is closed).
    pub fn detach(&self) {
        self.0.closed.store(true, Ordering::Release);
        let mut q = self.0.lock();
        q.shut = true;
        q.items = Frames::default();
        q.bytes = 0;
        q.waker = None;
        q.handle = None;
        q.handoff = None;
    }
}

impl Drop for OutboxReader {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Bytes of frames an inbox holds before it refuses more: its thread is that far behind
/// (a fan-out counts its shared bytes once). A frame refused there is a full queue for its
/// connection; a topic's fan-out refused there makes slow consumers of that thread's
/// subscribers.
pub const INBOX_BYTES: usize = 64 << 20;

/// What an entry costs an inbox beyond the bytes it shares.
const ENTRY_BYTES: usize = std::mem::size_of::<Delivery>();

/// Something for a thread to deliver, in order.
pub enum Delivery {
    /// A frame for one socket.
    One(Arc<Outbox>, Outbound),
    /// A topic's push to its subscribers on this thread.
    Many(Fanout),
    /// A graceful close, after everything sent before it.
    Close(Arc<Outbox>, CloseReason),
}

impl Delivery {
    fn weight(&self) -> usize {
        match self {
            Delivery::One(_, item) => ENTRY_BYTES + item.len(),
            Delivery::Many(f) => {
                ENTRY_BYTES + f.tail.len() + 8 * f.skip.len() + f.targets.version_bytes()
            }
            Delivery::Close(..) => 0,
        }
    }
}

/// A subscriber as a fan-out sees it: its connection, its outbox and its frame head.
#[derive(Clone)]
pub struct Target {
    pub id: u64,
    pub outbox: Arc<Outbox>,
    pub head: PushHead,
}

/// Targets a chunk of a [`Targets`] list holds.
pub const TARGETS_PER_CHUNK: usize = 256;

/// A topic's subscribers on one thread, in chunks of [`TARGETS_PER_CHUNK`] (every chunk full
/// but the last), shared with the fan-outs in flight: a join or a leave while a fan-out
/// still holds the list copies the list of chunks and the one or two chunks it changes,
/// never the whole list.
#[derive(Clone, Default)]
pub struct Targets {
    chunks: Vec<Arc<Vec<Target>>>,
    len: usize,
}

impl Targets {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> Option<&Target> {
        self.chunks
            .get(i / TARGETS_PER_CHUNK)?
            .get(i % TARGETS_PER_CHUNK)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Target> {
        self.chunks.iter().flat_map(|chunk| chunk.iter())
    }

    /// Bytes a list of this length pins beyond the one before it was changed: its list of
    /// chunks and one chunk.
    fn version_bytes(&self) -> usize {
        8 * self.chunks.len() + std::mem::size_of::<Target>() * TARGETS_PER_CHUNK
    }

    /// Appends `target`; its index.
    pub(crate) fn push(&mut self, target: Target) -> usize {
        if self
            .chunks
            .last()
            .is_none_or(|c| c.len() == TARGETS_PER_CHUNK)
        {
            self.chunks
                .push(Arc::new(Vec::with_capacity(TARGETS_PER_CHUNK)));
        }
        if let Some(last) = self.chunks.last_mut() {
            Arc::make_mut(last).push(target);
        }
        self.len += 1;
        self.len - 1
    }

    /// Removes the target at `i`, moving the last one into its place; the id of the one
    /// moved (none when `i` was the last).
    pub(crate) fn swap_remove(&mut self, i: usize) -> Option<u64> {
        if i >= self.len {
            return None;
        }
        let last_chunk = Arc::make_mut(self.chunks.last_mut()?);
        let last = last_chunk.pop()?;
        if last_chunk.is_empty() {
            self.chunks.pop();
        }
        self.len -= 1;
        if i == self.len {
            return None;
        }
        let chunk = Arc::make_mut(self.chunks.get_mut(i / TARGETS_PER_CHUNK)?);
        let slot = chunk.get_mut(i % TARGETS_PER_CHUNK)?;
        *slot = last;
        Some(slot.id)
    }
}

/// One push of a topic to its subscribers served by one thread: each gets its own head, then
/// the shared tail. The targets are the topic's list as it was when the push was made (a
/// list it shares with every fan-out in flight; see [`Targets`]).
pub struct Fanout {
    pub targets: Arc<Targets>,
    /// Connections (sorted ids) the push is not for: its sender, or subscribers still
    /// reading the log.
    pub skip: Vec<u64>,
    pub tail: Arc<str>,
    /// When the message was committed or arrived ([`crate::hist::stamp`]).
    pub born: u64,
}

impl Fanout {
    pub fn skips(&self, id: u64) -> bool {
        !self.skip.is_empty() && self.skip.binary_search(&id).is_ok()
    }
}

/// What one transport thread is to deliver to its sockets, in the order it was sent: taken
/// by the thread's flush task in one go.
pub struct Inbox {
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    entries: Vec<Delivery>,
    bytes: usize,
    /// Bytes of what the thread took and is delivering.
    taken: usize,
    waker: Option<Waker>,
}

impl Inbox {
    pub fn new() -> Arc<Inbox> {
        Arc::new(Inbox {
            pending: Mutex::default(),
        })
    }

    /// Bytes waiting or being delivered (a fan-out's shared bytes once).
    pub fn bytes(&self) -> usize {
        let p = self.lock();
        p.bytes + p.taken
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `delivery` to the thread; refused (and handed back) when the inbox holds
    /// [`INBOX_BYTES`] already.
    pub fn deliver(&self, delivery: Delivery) -> Result<(), Delivery> {
        let weight = delivery.weight();
        let waker = {
            let mut p = self.lock();
            if weight > 0 && p.taken + p.bytes + weight > INBOX_BYTES {
                return Err(delivery);
            }
            p.bytes += weight;
            p.entries.push(delivery);
            if p.entries.len() == 1 {
                p.waker.take()
            } else {
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Moves what waits into `into` (empty), in order, or registers the task to be woken
    /// when something arrives. What was taken stays counted against the bound until the
    /// thread reports it delivered ([`Inbox::delivered`]).
    pub fn poll_take(&self, cx: &mut Context<'_>, into: &mut Vec<Delivery>) -> Poll<()> {
        let mut p = self.lock();
        if p.entries.is_empty() {
            if !p.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                p.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        std::mem::swap(&mut p.entries, into);
        p.taken = std::mem::take(&mut p.bytes);
        Poll::Ready(())
    }

    /// The thread has delivered what it last took.
    pub fn delivered(&self) {
        self.lock().taken = 0;
    }
}

/// A new outbox holding at most `capacity` frames and `max_bytes` bytes, and its transport
/// end.
pub(crate) fn channel(capacity: usize, max_bytes: usize) -> (Arc<Outbox>, OutboxReader) {
    let outbox = Arc::new(Outbox {
        queue: Mutex::new(Queue::default()),
        capacity: capacity.max(1),
        max_bytes,
        inbox: OnceLock::new(),
        closed: AtomicBool::new(false),
        notice: OnceLock::new(),
    });
    (outbox.clone(), OutboxReader(outbox))
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

    /// What the inbox holds, taken as its thread takes it.
    fn pending(inbox: &Inbox) -> Vec<Delivery> {
        let mut got = Vec::new();
        let _ = inbox.poll_take(&mut Context::from_waker(Waker::noop()), &mut got);
        got
    }

    /// A real socket, open for the rest of the test process, that nothing reads.
    fn open_socket() -> SocketHandle {
        static SOCKET: OnceLock<SocketHandle> = OnceLock::new();
        *SOCKET.get_or_init(|| {
            use std::os::fd::IntoRawFd;
            let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socket pair");
            std::mem::forget(theirs);
            // SAFETY: the descriptor is never closed (into_raw_fd gives up its ownership).
            unsafe { SocketHandle::new(ours.into_raw_fd()) }
        })
    }

    /// An attached outbox whose writer task found it empty (so it is the thread's to write),
    /// and a count of the writer's wake-ups.
    fn attached(capacity: usize) -> (Arc<Inbox>, Arc<Outbox>, OutboxReader, Arc<Count>) {
        let inbox = Inbox::new();
        let (outbox, reader) = channel(capacity, 1 << 20);
        reader.attach(&inbox, open_socket());
        let writer = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(writer.clone());
        let mut got = VecDeque::new();
        assert!(reader
            .poll_take(&mut Context::from_waker(&waker), &mut got, usize::MAX)
            .is_pending());
        (inbox, outbox, reader, writer)
    }

    #[test]
    fn frames_for_an_attached_socket_go_through_its_inbox_in_order() {
        let (inbox, outbox, _reader, writer) = attached(8);
        let flusher = Arc::new(Count(AtomicUsize::new(0)));
        let flusher_waker = Waker::from(flusher.clone());
        let mut listed = Vec::new();
        assert!(inbox
            .poll_take(&mut Context::from_waker(&flusher_waker), &mut listed)
            .is_pending());
        for s in ["a", "b", "c"] {
            outbox.send(push(s)).unwrap();
        }
        assert_eq!(
            flusher.0.load(Ordering::SeqCst),
            1,
            "one wake for the three"
        );
        assert_eq!(
            outbox.len(),
            0,
            "nothing is queued before the thread takes it"
        );
        let got = pending(&inbox);
        let tails: Vec<&str> = (got.iter())
            .map(|d| match d {
                Delivery::One(_, Outbound::Push { tail, .. }) => &**tail,
                _ => "?",
            })
            .collect();
        assert_eq!(tails, ["a", "b", "c"]);
        // The thread queues the first two (it writes each socket once at the end of its
        // pass) and would write the last straight away, but the socket is busy now.
        let mut it = got.into_iter();
        for d in it.by_ref().take(2) {
            let Delivery::One(o, item) = d else { panic!() };
            let _ = o.queue(item);
        }
        assert_eq!(outbox.begin_write(), None, "frames wait: not idle");
        let Some(Delivery::One(o, item)) = it.next() else {
            panic!()
        };
        assert_eq!(o.queue(item), Queued::Behind);
        let mut taken = VecDeque::new();
        assert_eq!(
            outbox.flush_take(&mut taken, usize::MAX),
            Some(open_socket())
        );
        assert_eq!(taken.len(), 3, "one send for the pass");
        assert!(!outbox.flush_done(None));
        assert_eq!(
            writer.0.load(Ordering::SeqCst),
            0,
            "the writer is not woken"
        );
        // Idle again: the next frame is written at once.
        assert_eq!(outbox.begin_write(), Some(open_socket()));
        assert!(!outbox.flush_done(None));
    }

    #[test]
    fn an_idle_outbox_is_listed_once_by_the_first_frame_queued() {
        let (_inbox, outbox, _reader, _) = attached(8);
        assert_eq!(outbox.queue(push("a")), Queued::List);
        assert_eq!(outbox.queue(push("b")), Queued::Behind);
        let mut taken = VecDeque::new();
        assert_eq!(
            outbox.flush_take(&mut taken, usize::MAX),
            Some(open_socket())
        );
        // A frame queued while the thread writes has the outbox written again.
        assert_eq!(outbox.queue(push("c")), Queued::Behind);
        assert!(outbox.flush_done(None), "to be written again");
        taken.clear();
        assert_eq!(
            outbox.flush_take(&mut taken, usize::MAX),
            Some(open_socket())
        );
        assert_eq!(taken.len(), 1);
        assert!(!outbox.flush_done(None));
        assert_eq!(outbox.queue(push("d")), Queued::List, "parked again");
    }

    #[test]
    fn an_unfinished_write_is_handed_to_the_writer_and_resumed_in_order() {
        let (_inbox, outbox, reader, writer) = attached(8);
        assert_eq!(outbox.begin_write(), Some(open_socket()));
        // The socket took 3 bytes of "a"; "b" came meanwhile.
        assert_eq!(outbox.queue(push("b")), Queued::Behind);
        assert!(!outbox.flush_done(Some((VecDeque::from([push("a")]), 3))));
        assert_eq!(writer.0.load(Ordering::SeqCst), 1, "the writer is woken");
        let waker = Waker::from(writer.clone());
        let mut cx = Context::from_waker(&waker);
        let mut got = VecDeque::new();
        assert!(matches!(
            reader.poll_take(&mut cx, &mut got, usize::MAX),
            Poll::Ready(Take::Frames { resume: 3 })
        ));
        assert!(matches!(&got[0], Outbound::Push { tail, .. } if &**tail == "a"));
        got.clear();
        assert!(matches!(
            reader.poll_take(&mut cx, &mut got, usize::MAX),
            Poll::Ready(Take::Frames { resume: 0 })
        ));
        assert!(matches!(&got[0], Outbound::Push { tail, .. } if &**tail == "b"));
        got.clear();
        // While the writer has it (busy, so not waiting to be woken), frames are queued
        // for the writer.
        assert_eq!(outbox.queue(push("c")), Queued::Behind);
        assert!(reader.poll_take(&mut cx, &mut got, usize::MAX).is_ready());
        got.clear();
        // Written out, the writer hands the outbox back to the thread.
        assert!(reader.poll_take(&mut cx, &mut got, usize::MAX).is_pending());
        assert_eq!(outbox.begin_write(), Some(open_socket()));
    }

    #[test]
    fn a_graceful_close_follows_the_frames_sent_before_it() {
        let (inbox, outbox, reader, _) = attached(8);
        outbox.send(push("a")).unwrap();
        let reason = CloseReason {
            code: 1000,
            reason: "bye",
        };
        outbox.close(reason.clone(), false);
        assert_eq!(
            outbox.send(push("b")),
            Err(Refused::Closed),
            "refused at once"
        );
        let got = pending(&inbox);
        assert_eq!(got.len(), 2, "the frame, then the close");
        for d in got {
            match d {
                Delivery::One(o, item) => assert_eq!(o.queue(item), Queued::List),
                Delivery::Close(o, r) => o.close_now(r, false),
                Delivery::Many(_) => panic!(),
            }
        }
        // The thread finds it closing and hands the frame and the close to the writer.
        let mut taken = VecDeque::new();
        assert_eq!(outbox.flush_take(&mut taken, usize::MAX), None);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut got = VecDeque::new();
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
    fn a_full_queue_drops_and_tells_once_and_a_gone_socket_takes_nothing() {
        let (_inbox, outbox, reader, _) = attached(2);
        assert_eq!(outbox.queue(push("a")), Queued::List);
        assert_eq!(outbox.queue(push("b")), Queued::Behind);
        assert_eq!(outbox.queue(push("c")), Queued::Dropped);
        assert!(outbox.lock().overflowed);
        assert_eq!(outbox.len(), 2);
        drop(reader);
        let mut taken = VecDeque::new();
        assert_eq!(outbox.flush_take(&mut taken, usize::MAX), None);
        assert!(taken.is_empty());
        assert_eq!(outbox.queue(push("d")), Queued::Dropped);
        assert_eq!(
            outbox.begin_write(),
            None,
            "a detached socket is never named"
        );
        assert_eq!(outbox.send(push("e")), Err(Refused::Closed));
    }

    #[test]
    fn an_inbox_refuses_beyond_its_bound_but_never_a_close() {
        let (inbox, outbox, _reader, _) = attached(8);
        let big: String = "x".repeat(1 << 20);
        let mut sent = 0;
        while outbox.send(Outbound::Text(big.clone())).is_ok() {
            sent += 1;
            assert!(sent <= INBOX_BYTES >> 20, "the bound holds");
        }
        assert_eq!(sent, (INBOX_BYTES >> 20) - 1, "entries weigh a little more");
        assert_eq!(
            outbox.send(Outbound::Text(big.clone())),
            Err(Refused::Full),
            "a frame the thread is too far behind for is a full queue"
        );
        outbox.close(
            CloseReason {
                code: 1000,
                reason: "",
            },
            false,
        );
        let got = pending(&inbox);
        assert!(matches!(got.last(), Some(Delivery::Close(..))));
        // Taken, it still counts while the thread delivers it; delivered, the room is back.
        let again = || inbox.deliver(Delivery::One(outbox.clone(), Outbound::Text(big.clone())));
        assert!(again().is_err());
        assert_eq!(inbox.bytes(), sent * (big.len() + ENTRY_BYTES));
        inbox.delivered();
        assert!(again().is_ok());
    }

    #[test]
    fn a_target_list_changes_by_chunks_and_keeps_what_fanouts_hold() {
        let (outbox, _reader) = channel(8, 1 << 20);
        let target = |id| Target {
            id,
            outbox: outbox.clone(),
            head: PushHead::new("[\"1\""),
        };
        let mut list = Targets::default();
        for id in 0..600 {
            assert_eq!(list.push(target(id)), id as usize);
        }
        let held = Arc::new(list.clone());
        // Removing from the middle moves the last into its place.
        assert_eq!(list.swap_remove(10), Some(599));
        assert_eq!(list.get(10).map(|t| t.id), Some(599));
        assert_eq!(list.swap_remove(598), None, "the last goes without a move");
        assert_eq!(list.len(), 598);
        // The list held by a fan-out in flight is as it was.
        assert_eq!(held.len(), 600);
        assert_eq!(held.get(10).map(|t| t.id), Some(10));
        assert_eq!(held.iter().count(), 600);
        // The untouched chunk is still shared; the changed ones were copied.
        assert!(Arc::ptr_eq(&list.chunks[1], &held.chunks[1]));
        assert!(!Arc::ptr_eq(&list.chunks[0], &held.chunks[0]));
        let ids: Vec<u64> = list.iter().map(|t| t.id).collect();
        assert_eq!(ids.len(), 598);
        assert!(!ids.contains(&10) && !ids.contains(&598));
        while !list.is_empty() {
            list.swap_remove(0);
        }
        assert!(list.chunks.is_empty());
        assert_eq!(list.swap_remove(0), None);
    }

    #[test]
    fn a_fanout_skips_the_ids_it_names() {
        let f = Fanout {
            targets: Arc::default(),
            skip: vec![3, 9, 12],
            tail: "x".into(),
            born: 0,
        };
        assert!(f.skips(9) && !f.skips(4));
        let none = Fanout { skip: vec![], ..f };
        assert!(!none.skips(9));
    }
}
