//! WebSocket framing for the channel endpoint, on the TCP connection Stoa owns once the
//! upgrade is answered (see [`super::upgrade`]).
//!
//! [`Incoming`] reads the client's (masked) frames for the session actor, joining
//! continuation frames and refusing any frame that would take a message over the size limit
//! as soon as its header is read. It holds no buffer while the socket is quiet: one is made
//! for what a read brings, grows only while a large frame arrives, and is let go once every
//! frame in it has been handed over.
//!
//! Frames leave through each worker thread's flush task ([`flush`]), which takes what the
//! thread's [`Inbox`] holds, in order: a frame for an idle socket is written at once with
//! one `send` (a frame of a few hundred bytes is copied onto the stack, larger ones go out
//! as vectored sends of their pieces); when several deliveries wait, their frames are
//! queued first and each socket is written once at the end of the pass. A topic reaching
//! thousands of sockets hands each worker one [`Fanout`] and wakes it once, and the worker
//! walks its share of the subscribers as the floor program walks its sockets. [`Writer`],
//! the socket's own task, finishes what a send could not (the socket's buffer was full),
//! resuming mid-frame, and writes the close frame; it keeps no write buffer between
//! bursts.

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix_web::rt::net::TcpStream;
use actix_web::web::BytesMut;
use futures_util::Stream;
use stoa_actors::{
    hist, Delivery, Fanout, Inbox, Outbound, Outbox, OutboxReader, PushHead, Queued, Realtime,
    Take, WireIn,
};
use stoa_protocol::ws::{close_code, unmask, FrameHeader, Header, HeaderError, Opcode};
use tokio::io::Interest;

/// Bytes taken from the outbox per batch.
const CHUNK: usize = 64 * 1024;
/// Bytes read from the socket at a time (on the stack; only what arrived is kept).
const READ: usize = 4096;
/// Slices per vectored write (Linux takes up to 1024).
const MAX_IOV: usize = 256;
/// A batch up to this size is copied onto the stack and sent as one piece (cheaper in the
/// kernel than a vectored send of its pieces).
const SMALL: usize = 2048;
/// Sockets a flush task writes before it lets the thread's other tasks run.
const FLUSH_TURN: usize = 128;
/// How long a closed socket waits for the client's end before it is dropped.
const LINGER: Duration = Duration::from_secs(2);

/// A frame to write: its header and up to two pieces of payload.
struct Frame {
    head: Header,
    item: Outbound,
}

impl Frame {
    fn new(item: Outbound) -> Frame {
        Frame {
            head: Frame::head_of(&item),
            item,
        }
    }

    /// The header of the frame that carries `item`.
    fn head_of(item: &Outbound) -> Header {
        Header::server(
            match item {
                Outbound::Text(_) | Outbound::Push { .. } => Opcode::Text,
                Outbound::Binary(_) => Opcode::Binary,
                Outbound::Pong(_) => Opcode::Pong,
            },
            Frame::payload_len(item),
        )
    }

    /// Bytes of payload the frame carries: control frames carry at most 125 (the session
    /// keeps pings within it).
    fn payload_len(item: &Outbound) -> usize {
        match item {
            Outbound::Pong(p) => p.len().min(125),
            _ => item.len(),
        }
    }

    /// A close frame: the code, then as much of the reason as fits 125 bytes.
    fn close(code: u16, reason: &str) -> Frame {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
        Frame {
            head: Header::server(Opcode::Close, payload.len()),
            item: Outbound::Pong(payload),
        }
    }

    /// The frame's bytes, in order: header, then payload pieces.
    fn pieces(&self) -> [&[u8]; 3] {
        Frame::pieces_of(&self.head, &self.item)
    }

    fn pieces_of<'a>(frame_head: &'a Header, item: &'a Outbound) -> [&'a [u8]; 3] {
        match item {
            Outbound::Text(t) => [frame_head.as_slice(), t.as_bytes(), &[]],
            Outbound::Push { head, tail, .. } => {
                [frame_head.as_slice(), head.as_bytes(), tail.as_bytes()]
            }
            Outbound::Pong(p) => [frame_head.as_slice(), &p[..p.len().min(125)], &[]],
            Outbound::Binary(b) => [frame_head.as_slice(), b, &[]],
        }
    }
}

/// The write side of a channel socket: the session's outbox, framed onto the socket. It
/// lives as long as the connection, so it also counts open sockets.
pub struct Writer {
    io: Rc<TcpStream>,
    realtime: Realtime,
    outbox: OutboxReader,
    taken: VecDeque<Outbound>,
    frames: VecDeque<Frame>,
    /// Bytes of the first frame already written.
    written: usize,
    /// The close frame has been queued: once it is out, the socket is closed.
    closing: bool,
}

impl Writer {
    pub fn new(io: Rc<TcpStream>, realtime: Realtime, outbox: OutboxReader) -> Writer {
        let open = realtime.stats().sockets.fetch_add(1, Ordering::Relaxed) + 1;
        realtime
            .stats()
            .sockets_peak
            .fetch_max(open, Ordering::Relaxed);
        let worker = worker(&realtime);
        outbox.attach(&worker.inbox, io.as_raw_fd());
        Writer {
            io,
            realtime,
            outbox,
            taken: VecDeque::new(),
            frames: VecDeque::new(),
            written: 0,
            closing: false,
        }
    }

    /// Writes the queued frames; ready when all are out (or the socket failed).
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.frames.is_empty() {
            ready!(self.io.poll_write_ready(cx))?;
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            let mut skip = self.written;
            'fill: for frame in &self.frames {
                for piece in frame.pieces() {
                    if skip >= piece.len() {
                        skip -= piece.len();
                        continue;
                    }
                    slices[n] = IoSlice::new(&piece[skip..]);
                    skip = 0;
                    n += 1;
                    if n == MAX_IOV {
                        break 'fill;
                    }
                }
            }
            match send(&self.io, &slices[..n]) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(mut done) => {
                    // Drop the frames written whole; remember how far into the next.
                    done += self.written;
                    while let Some(front) = self.frames.front() {
                        let len = front.pieces().iter().map(|p| p.len()).sum::<usize>();
                        if done < len {
                            break;
                        }
                        done -= len;
                        self.frames.pop_front();
                    }
                    self.written = done;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.written = 0;
        // All written: a socket between bursts keeps no queue (an allocation per burst
        // costs far less than the write it comes with).
        self.frames = VecDeque::new();
        Poll::Ready(Ok(()))
    }

    /// Closes the write side, then waits (a little) for the client to close its side, so
    /// that the close frame is read before the connection goes.
    async fn linger(io: Rc<TcpStream>) {
        let _ = socket2::SockRef::from(&*io).shutdown(std::net::Shutdown::Write);
        let drain = async {
            let mut scratch = [0u8; 512];
            loop {
                if io.readable().await.is_err() {
                    return;
                }
                match io.try_read(&mut scratch) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        };
        let _ = actix_web::rt::time::timeout(LINGER, drain).await;
    }

    /// Runs until the session closes the socket or the socket fails.
    pub async fn run(mut self) {
        let finished = std::future::poll_fn(|cx| self.poll_run(cx)).await;
        if finished {
            Self::linger(self.io.clone()).await;
        }
    }

    /// Ready(true) once the close frame is written, Ready(false) if the socket failed.
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        loop {
            if let Err(e) = ready!(self.poll_flush(cx)) {
                tracing::debug!(error = %e, "socket write failed");
                return Poll::Ready(false);
            }
            if self.closing {
                return Poll::Ready(true);
            }
            let taken = self.outbox.poll_take(cx, &mut self.taken, CHUNK);
            if taken.is_pending() {
                self.taken = VecDeque::new();
            }
            match ready!(taken) {
                Take::Frames { resume } => {
                    self.written = resume;
                    // The socket's own writer serves stalled sockets: observed as taken.
                    let stats = self.realtime.stats();
                    stats.outbound_depth.observe(self.taken.len() as u64);
                    if let Some(us) = oldest_push(&self.taken).and_then(hist::since) {
                        stats.fanout_latency.observe(us);
                    }
                    self.frames.extend(self.taken.drain(..).map(Frame::new));
                }
                Take::Close(reason) => {
                    self.frames
                        .push_back(Frame::close(reason.code, reason.reason));
                    self.closing = true;
                }
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Before the socket can close: the flush task writes to an attached socket by its
        // descriptor.
        self.outbox.detach();
        self.realtime
            .stats()
            .sockets
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sends `slices` as one `sendmsg`, or `WouldBlock` while the socket is not writable
/// (the reactor then waits for it to become writable).
fn send(io: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    io.try_io(Interest::WRITABLE, || {
        socket2::SockRef::from(io).send_vectored(slices)
    })
}

/// Runs `f` on the socket whose descriptor an attached outbox names (see [`Writer::new`]).
fn on_socket<R>(handle: i32, f: impl FnOnce(socket2::SockRef<'_>) -> R) -> R {
    // SAFETY: an outbox names its socket only while it is attached; its `Writer`, which
    // holds the socket open, detaches it before dropping the socket (`Writer::drop`). Both
    // the Writer and the flush task that calls this run on the same thread, and the task
    // does not yield between reading the handle under the outbox's lock and this call, so
    // the descriptor is open, and is this socket's, for as long as `f` runs.
    let fd = unsafe { BorrowedFd::borrow_raw(handle) };
    f(socket2::SockRef::from(&fd))
}

/// What one worker thread shares between its sockets' writers and its flush task.
struct Worker {
    inbox: Arc<Inbox>,
    /// Where the flush task's observations go.
    realtime: Realtime,
}

thread_local! {
    /// Made by the first socket a worker thread serves, which also starts its flush task.
    static WORKER: OnceCell<Rc<Worker>> = const { OnceCell::new() };
}

/// This thread's worker (made, and its flush task started, on first use).
fn worker(realtime: &Realtime) -> Rc<Worker> {
    WORKER.with(|w| {
        w.get_or_init(|| {
            let worker = Rc::new(Worker {
                inbox: realtime.thread_inbox(),
                realtime: realtime.clone(),
            });
            actix_web::rt::spawn(flush(worker.clone()));
            worker
        })
        .clone()
    })
}

/// A worker thread's flush task: delivers what the thread's inbox holds, in order. The
/// last delivery of a pass goes straight to every idle socket; earlier ones (the thread
/// fell behind) are queued, and each socket they reached is written once at the end of the
/// pass with everything it holds (up to a chunk).
async fn flush(worker: Rc<Worker>) {
    let mut inbox: Vec<Delivery> = Vec::new();
    let mut listed: Vec<Arc<Outbox>> = Vec::new();
    let mut again: Vec<Arc<Outbox>> = Vec::new();
    let mut taken = VecDeque::new();
    let mut buf = Vec::with_capacity(SMALL);
    // Observed here, merged into the shared histograms once per turn, so the threads do
    // not contend on them per write.
    let mut obs = Observed::new();
    let mut turn = 0usize;
    loop {
        std::future::poll_fn(|cx| worker.inbox.poll_take(cx, &mut inbox)).await;
        let mut entries = std::mem::take(&mut inbox);
        let last = entries.len().saturating_sub(1);
        for (i, delivery) in entries.drain(..).enumerate() {
            let direct = i == last;
            match delivery {
                Delivery::One(outbox, item) => {
                    if direct {
                        if let Some(handle) = outbox.begin_write() {
                            taken.push_back(item);
                            write_taken(
                                &outbox, handle, &mut taken, &mut buf, &mut obs, &mut again,
                            );
                            turn += 1;
                            continue;
                        }
                    }
                    if outbox.queue(item) == Queued::List {
                        listed.push(outbox);
                    }
                    turn += 1;
                }
                Delivery::Many(fanout) => {
                    let mut done = 0;
                    loop {
                        let to = fan(&fanout, done, direct, &mut buf, &mut obs, &mut listed);
                        turn += to - done;
                        done = to;
                        if done == fanout.targets.len() {
                            break;
                        }
                        turn = 0;
                        obs.merge(&worker.realtime);
                        // Readers on this thread get their turn in a long fan-out.
                        actix_web::rt::task::yield_now().await;
                    }
                }
                Delivery::Close(outbox, reason) => {
                    outbox.close_now(reason, false);
                    turn += 1;
                }
            }
            if turn >= FLUSH_TURN {
                turn = 0;
                obs.merge(&worker.realtime);
                actix_web::rt::task::yield_now().await;
            }
        }
        inbox = entries;
        worker.inbox.delivered();
        // The sockets that had frames queued in this pass (or queued while written): one
        // send each.
        listed.append(&mut again);
        while !listed.is_empty() {
            for outbox in listed.drain(..) {
                let Some(handle) = outbox.flush_take(&mut taken, CHUNK) else {
                    continue;
                };
                write_taken(&outbox, handle, &mut taken, &mut buf, &mut obs, &mut again);
                turn += 1;
                if turn >= FLUSH_TURN {
                    turn = 0;
                    obs.merge(&worker.realtime);
                    actix_web::rt::task::yield_now().await;
                }
            }
            std::mem::swap(&mut listed, &mut again);
        }
        obs.merge(&worker.realtime);
    }
}

/// Writes what `taken` holds (what [`Outbox::begin_write`] or [`Outbox::flush_take`] gave
/// the thread) with one send, and reports to the outbox; lists it in `again` when frames
/// came meanwhile.
fn write_taken(
    outbox: &Arc<Outbox>,
    handle: i32,
    taken: &mut VecDeque<Outbound>,
    buf: &mut Vec<u8>,
    obs: &mut Observed,
    again: &mut Vec<Arc<Outbox>>,
) {
    obs.depth.observe(taken.len() as u64);
    let born = oldest_push(taken);
    let unwritten = on_socket(handle, |socket| flush_one(&socket, taken, buf));
    if unwritten.is_none() {
        if let Some(us) = born.and_then(hist::since) {
            obs.latency.observe(us);
        }
    }
    if outbox.flush_done(unwritten) {
        again.push(outbox.clone());
    }
    taken.clear();
}

/// Delivers a fan-out to its targets from `from` on, at most [`FLUSH_TURN`] of them; where
/// it stopped. `direct`: an idle socket is written at once; otherwise every frame is queued
/// and the outboxes it reached idle are put in `listed`.
fn fan(
    fanout: &Fanout,
    from: usize,
    direct: bool,
    buf: &mut Vec<u8>,
    obs: &mut Observed,
    listed: &mut Vec<Arc<Outbox>>,
) -> usize {
    let targets = &fanout.targets;
    let to = (from + FLUSH_TURN).min(targets.len());
    let mut written = 0;
    for i in from..to {
        // Outboxes are scattered in memory: the one a few places ahead is fetched while
        // this one is written.
        if let Some(next) = targets.get(i + PREFETCH_AHEAD) {
            prefetch(Arc::as_ptr(&next.outbox));
        }
        let Some(t) = targets.get(i) else { break };
        if fanout.skips(t.id) {
            continue;
        }
        // The frame as a queue holds it, made only when it is queued.
        let item = || Outbound::Push {
            head: t.head.clone(),
            tail: fanout.tail.clone(),
            born: fanout.born,
        };
        if direct {
            if let Some(handle) = t.outbox.begin_write() {
                let unwritten = on_socket(handle, |socket| {
                    write_push(&socket, &t.head, &fanout.tail, buf)
                })
                .map(|done| (VecDeque::from([item()]), done));
                written += u64::from(unwritten.is_none());
                if t.outbox.flush_done(unwritten) {
                    listed.push(t.outbox.clone());
                }
                continue;
            }
        }
        if t.outbox.queue(item()) == Queued::List {
            listed.push(t.outbox.clone());
        }
    }
    if written > 0 {
        // One clock reading for the turn's writes, taken after them: the latency of each
        // is at most what is recorded.
        obs.depth.observe_n(1, written);
        if let Some(us) = hist::since(fanout.born) {
            obs.latency.observe_n(us, written);
        }
    }
    to
}

/// Writes one push (`head`, then the shared `tail`) as one frame with one send: `None` when
/// all of it went, else how many bytes did (the frame is then the writer's to finish).
fn write_push(
    socket: &socket2::SockRef<'_>,
    head: &PushHead,
    tail: &str,
    buf: &mut Vec<u8>,
) -> Option<usize> {
    let frame = Header::server(Opcode::Text, head.len() + tail.len());
    let total = frame.as_slice().len() + head.len() + tail.len();
    let sent = if total <= SMALL {
        buf.clear();
        buf.extend_from_slice(frame.as_slice());
        buf.extend_from_slice(head.as_bytes());
        buf.extend_from_slice(tail.as_bytes());
        socket.send(buf)
    } else {
        socket.send_vectored(&[
            IoSlice::new(frame.as_slice()),
            IoSlice::new(head.as_bytes()),
            IoSlice::new(tail.as_bytes()),
        ])
    };
    match sent {
        Ok(n) if n == total => None,
        Ok(n) => Some(n),
        // Not writable (or failing): the writer waits for the socket, or meets the error.
        Err(_) => Some(0),
    }
}

/// What the flush task observed since it last merged into the node's histograms.
struct Observed {
    latency: hist::Local,
    depth: hist::Local,
}

impl Observed {
    fn new() -> Observed {
        Observed {
            latency: hist::Histogram::latency().local(),
            depth: hist::Histogram::depth().local(),
        }
    }

    fn merge(&mut self, realtime: &Realtime) {
        self.latency.merge_into(&realtime.stats().fanout_latency);
        self.depth.merge_into(&realtime.stats().outbound_depth);
    }
}

/// How far ahead of the target being written the flush task asks for the next one's
/// outbox.
const PREFETCH_AHEAD: usize = 4;

/// Asks the processor to bring the start of `*p` into its cache (no effect elsewhere).
#[inline]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it neither reads into the program nor faults, whatever
    // the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            p.cast::<i8>().wrapping_add(64),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// When the oldest push among `taken` was committed or arrived (they are in order).
fn oldest_push(taken: &VecDeque<Outbound>) -> Option<u64> {
    taken.iter().find_map(|item| match item {
        Outbound::Push { born, .. } if *born != 0 => Some(*born),
        _ => None,
    })
}

/// Writes `taken` to the socket with one send; what it did not take (the frames, and the
/// bytes of the first already written) is for the socket's writer to finish.
fn flush_one(
    socket: &socket2::SockRef<'_>,
    taken: &mut VecDeque<Outbound>,
    buf: &mut Vec<u8>,
) -> Option<(VecDeque<Outbound>, usize)> {
    let total: usize = taken
        .iter()
        .map(|item| Frame::head_of(item).as_slice().len() + Frame::payload_len(item))
        .sum();
    let sent = if total <= SMALL {
        buf.clear();
        for item in taken.iter() {
            for piece in Frame::pieces_of(&Frame::head_of(item), item) {
                buf.extend_from_slice(piece);
            }
        }
        // One piece: `send`, which costs the kernel less than a `sendmsg`.
        socket.send(buf)
    } else {
        let heads: Vec<Header> = taken.iter().map(Frame::head_of).collect();
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let mut n = 0;
        'fill: for (head, item) in heads.iter().zip(taken.iter()) {
            for piece in Frame::pieces_of(head, item) {
                if piece.is_empty() {
                    continue;
                }
                slices[n] = IoSlice::new(piece);
                n += 1;
                if n == MAX_IOV {
                    break 'fill;
                }
            }
        }
        socket.send_vectored(&slices[..n])
    };
    match sent {
        Ok(n) if n == total => None,
        Ok(n) => Some((std::mem::take(taken), n)),
        // Not writable (or failing): the writer waits for the socket, or meets the error.
        Err(_) => Some((std::mem::take(taken), 0)),
    }
}

/// The client's frames, read from the socket.
///
/// Every frame is judged by its header ([`FrameHeader::parse`]) before its payload is read:
/// a data frame, or the next fragment of a message, that would take the message over the
/// size limit ends the connection (1009) at once, so no client can make the server buffer
/// more than one frame of at most the limit.
pub struct Incoming {
    io: Rc<TcpStream>,
    buf: BytesMut,
    limit: usize,
    /// A fragmented message being joined: whether it is text, and its bytes so far.
    partial: Option<(bool, BytesMut)>,
    eof: bool,
    failed: bool,
    /// Messages handed over since the task last waited.
    streak: u8,
}

/// Messages a socket hands over before its task yields to the others on the thread.
const STREAK: u8 = 4;

impl Incoming {
    /// `early`: bytes the client sent right behind its upgrade request.
    pub fn new(io: Rc<TcpStream>, early: BytesMut, limit: usize) -> Incoming {
        Incoming {
            io,
            buf: early,
            limit,
            partial: None,
            eof: false,
            failed: false,
            streak: 0,
        }
    }

    fn fail(&mut self, item: WireIn) -> Option<WireIn> {
        self.failed = true;
        Some(item)
    }

    fn message(&mut self, text: bool, bytes: BytesMut) -> Option<WireIn> {
        if !text {
            return Some(WireIn::Binary(Vec::from(bytes.freeze())));
        }
        match String::from_utf8(Vec::from(bytes.freeze())) {
            Ok(s) => Some(WireIn::Text(s)),
            Err(_) => self.fail(WireIn::Invalid("text message is not valid UTF-8".into())),
        }
    }

    /// The next whole frame in the buffer, `Ok(None)` until it has arrived, or what ends
    /// the connection. The header is checked as soon as it is complete: the payload a
    /// frame may announce is what is left of the limit for the message it belongs to.
    fn next_frame(&mut self) -> Result<Option<(FrameHeader, BytesMut)>, WireIn> {
        let room = self.limit - self.partial.as_ref().map_or(0, |(_, b)| b.len());
        let header = match FrameHeader::parse(&self.buf, room as u64) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(None),
            Err(HeaderError::TooLarge { .. }) => return Err(WireIn::TooLarge),
            Err(e) => return Err(WireIn::Broken(e.to_string())),
        };
        // Within the limit (or a control frame of at most 125 bytes), so this fits a usize.
        let len = usize::try_from(header.len).map_err(|_| WireIn::TooLarge)?;
        let total = header.header_len + len;
        if self.buf.len() < total {
            // Room for the rest of this frame, and no more.
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let _ = self.buf.split_to(header.header_len);
        let mut data = self.buf.split_to(len);
        unmask(&mut data, header.mask);
        Ok(Some((header, data)))
    }

    /// What a frame means for the session; `None` while a fragmented message is still
    /// incomplete.
    fn frame(&mut self, header: FrameHeader, data: BytesMut) -> Option<WireIn> {
        match header.opcode {
            Opcode::Ping => Some(WireIn::Ping(data.to_vec())),
            Opcode::Pong => Some(WireIn::Pong),
            Opcode::Close => match close_code(&data) {
                Ok(_) => Some(WireIn::Close),
                Err(e) if e.close_code() == 1007 => self.fail(WireIn::Invalid(e.to_string())),
                Err(e) => self.fail(WireIn::Broken(e.to_string())),
            },
            Opcode::Text | Opcode::Binary if self.partial.is_some() => self.fail(WireIn::Broken(
                "data frame inside a fragmented message".into(),
            )),
            Opcode::Text | Opcode::Binary => {
                let text = header.opcode == Opcode::Text;
                if header.fin {
                    self.message(text, data)
                } else {
                    self.partial = Some((text, data));
                    None
                }
            }
            Opcode::Continuation => {
                let Some((_, so_far)) = self.partial.as_mut() else {
                    return self.fail(WireIn::Broken("continuation without a start".into()));
                };
                so_far.extend_from_slice(&data);
                if !header.fin {
                    return None;
                }
                let (text, bytes) = self.partial.take()?;
                self.message(text, bytes)
            }
        }
    }

    /// Reads what the socket has: `Ready(Ok(true))` with bytes added, `Ready(Ok(false))`
    /// at the end of the stream.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            ready!(self.io.poll_read_ready(cx))?;
            // Straight into the buffer when it has room for the frame being read (see
            // `next_frame`), otherwise through the stack, keeping only what arrived.
            let spare = self.buf.capacity() - self.buf.len();
            let result = if spare >= READ {
                self.io.try_read_buf(&mut self.buf)
            } else {
                let mut chunk = [0u8; READ];
                self.io
                    .try_read(&mut chunk)
                    .inspect(|&n| self.buf.extend_from_slice(&chunk[..n]))
            };
            match result {
                Ok(0) => return Poll::Ready(Ok(false)),
                Ok(_) => return Poll::Ready(Ok(true)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Stream for Incoming {
    type Item = WireIn;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WireIn>> {
        let this = self.get_mut();
        if this.streak >= STREAK {
            // A client that keeps the socket full is served a few messages at a time, so
            // that the tasks woken from other threads (the flush task and the writers,
            // whom topics wake) get their turn on this thread.
            this.streak = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            if this.failed {
                return Poll::Ready(None);
            }
            match this.next_frame() {
                Ok(Some((header, data))) => match this.frame(header, data) {
                    Some(item) => {
                        this.streak += 1;
                        return Poll::Ready(Some(item));
                    }
                    None => continue,
                },
                Ok(None) => {}
                Err(item) => {
                    this.partial = None;
                    this.buf = BytesMut::new();
                    return Poll::Ready(this.fail(item));
                }
            }
            if this.eof {
                return Poll::Ready(None);
            }
            if this.buf.is_empty() && this.buf.capacity() > 0 {
                // Everything read has been handed over: a quiet socket holds no buffer.
                this.buf = BytesMut::new();
            }
            match this.poll_read(cx) {
                Poll::Ready(Ok(true)) => {}
                Poll::Ready(Ok(false)) => this.eof = true,
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(this.fail(WireIn::Broken(e.to_string())))
                }
                Poll::Pending => {
                    this.streak = 0;
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_frame_carries_code_and_reason() {
        let frame = Frame::close(1008, "slow_consumer");
        let bytes: Vec<u8> = frame.pieces().concat();
        assert_eq!(&bytes[..4], &[0x88, 15, 0x03, 0xF0]);
        assert_eq!(&bytes[4..], b"slow_consumer");
    }
}
