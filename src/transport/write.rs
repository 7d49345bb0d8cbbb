//! Write framing: frames from an outbox onto the socket.
//!
//! [`Writer`], the socket's own task, finishes what a send from the flush task could not
//! (the socket's buffer was full), resuming mid-frame, and writes the close frame; it keeps
//! no write buffer between bursts. The one-send helpers here ([`write_push`],
//! [`flush_one`]) are what the thread's flush task ([`super::flush`]) writes with: a frame
//! of a few hundred bytes is copied onto the stack, larger ones go out as vectored sends of
//! their pieces.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix_web::rt::net::TcpStream;
use stoa_actors::outbox::{Outbound, OutboxReader, PushHead, SocketHandle, Take};
use stoa_actors::{hist, Realtime};
use stoa_protocol::ws::{Header, Opcode};
use tokio::io::Interest;

use super::flush::worker;

/// Bytes taken from the outbox per batch.
pub(super) const CHUNK: usize = 64 * 1024;
/// Slices per vectored write (Linux takes up to 1024).
const MAX_IOV: usize = 256;
/// A batch up to this size is copied onto the stack and sent as one piece (cheaper in the
/// kernel than a vectored send of its pieces).
pub(super) const SMALL: usize = 2048;
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
        // SAFETY: `io` is an open socket, which this Writer holds until it is dropped, and
        // dropping it detaches the outbox first (`Writer::drop`), on this thread.
        let handle = unsafe { SocketHandle::new(io.as_raw_fd()) };
        outbox.attach(&worker.inbox, handle);
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
pub(super) fn send(io: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    io.try_io(Interest::WRITABLE, || {
        socket2::SockRef::from(io).send_vectored(slices)
    })
}

/// Runs `f` on the socket whose descriptor an attached outbox names (see [`Writer::new`]).
pub(super) fn on_socket<R>(handle: SocketHandle, f: impl FnOnce(socket2::SockRef<'_>) -> R) -> R {
    // SAFETY: a `SocketHandle` is made only by `Writer::new`, whose promise
    // (`SocketHandle::new`) is that the descriptor stays open and this socket's until the
    // outbox is detached on this thread: the `Writer` holds the socket open and detaches
    // the outbox before dropping it (`Writer::drop`). The flush task that calls this runs
    // on that same thread and does not yield between reading the handle under the
    // outbox's lock and this call, so the descriptor is open, and is this socket's, for as
    // long as `f` runs.
    let fd = unsafe { BorrowedFd::borrow_raw(handle.raw()) };
    f(socket2::SockRef::from(&fd))
}

/// Writes one push (`head`, then the shared `tail`) as one frame with one send: `None` when
/// all of it went, else how many bytes did (the frame is then the writer's to finish).
pub(super) fn write_push(
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

/// When the oldest push among `taken` was committed or arrived (they are in order).
pub(super) fn oldest_push(taken: &VecDeque<Outbound>) -> Option<u64> {
    taken.iter().find_map(|item| match item {
        Outbound::Push { born, .. } if *born != 0 => Some(*born),
        _ => None,
    })
}

/// Writes `taken` to the socket with one send; what it did not take (the frames, and the
/// bytes of the first already written) is for the socket's writer to finish.
pub(super) fn flush_one(
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
