//! Read framing: the client's (masked) frames for the session actor.
//!
//! [`Incoming`] joins continuation frames and refuses any frame that would take a message
//! over the size limit as soon as its header is read. It holds no buffer while the socket is
//! quiet: one is made for what a read brings, grows only while a large frame arrives, and is
//! let go once every frame in it has been handed over.

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use actix_web::rt::net::TcpStream;
use actix_web::web::BytesMut;
use futures_util::Stream;
use stoa_actors::WireIn;
use stoa_protocol::ws::{close_code, unmask, FrameHeader, HeaderError, Opcode};

/// Bytes read from the socket at a time (on the stack; only what arrived is kept).
const READ: usize = 4096;

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
