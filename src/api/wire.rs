//! WebSocket framing for the channel endpoint, straight on the HTTP connection's streams.
//!
//! [`Incoming`] decodes the client's (masked) frames from the request payload into
//! [`WireIn`] items for the session actor, joining continuation frames and refusing any
//! frame that would take a message over the size limit as soon as its header is read. [`Outgoing`] is the response
//! body: at each wake-up it takes everything queued in the connection's outbox and encodes
//! it into one buffer, so the connection's dispatcher makes one `write` per batch, not per
//! frame, and no task or channel sits between the topics and the socket.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use actix_web::web::{self, Bytes, BytesMut};
use futures_util::Stream;
use stoa_actors::{Outbound, OutboxReader, Realtime, Take, WireIn};
use stoa_protocol::ws::{unmask, FrameHeader, HeaderError, Opcode};

/// Bytes encoded per chunk handed to the connection before it is written.
const CHUNK: usize = 64 * 1024;
/// Buffers larger than this are released once empty, so an idle connection keeps little.
const RETAIN: usize = 16 * 1024;

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PONG: u8 = 0xA;

/// Appends a server (unmasked, final) frame header.
fn header(buf: &mut BytesMut, opcode: u8, len: usize) {
    match len {
        0..=125 => buf.extend_from_slice(&[0x80 | opcode, len as u8]),
        126..=0xFFFF => {
            buf.extend_from_slice(&[0x80 | opcode, 126]);
            buf.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            buf.extend_from_slice(&[0x80 | opcode, 127]);
            buf.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

fn encode(item: &Outbound, buf: &mut BytesMut) {
    match item {
        Outbound::Text(text) => {
            buf.reserve(text.len() + 10);
            header(buf, OP_TEXT, text.len());
            buf.extend_from_slice(text.as_bytes());
        }
        Outbound::Push { head, tail } => {
            let len = head.len() + tail.len();
            buf.reserve(len + 10);
            header(buf, OP_TEXT, len);
            buf.extend_from_slice(head.as_bytes());
            buf.extend_from_slice(tail.as_bytes());
        }
        Outbound::Pong(data) => {
            // Control frames carry at most 125 bytes.
            let data = &data[..data.len().min(125)];
            header(buf, OP_PONG, data.len());
            buf.extend_from_slice(data);
        }
    }
}

fn encode_close(code: u16, reason: &str, buf: &mut BytesMut) {
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    header(buf, OP_CLOSE, 2 + reason.len());
    buf.extend_from_slice(&code.to_be_bytes());
    buf.extend_from_slice(reason);
}

/// The response body of a channel socket: the connection's outbox, framed. It lives as long
/// as the connection, so it also counts open sockets.
pub struct Outgoing {
    realtime: Realtime,
    outbox: OutboxReader,
    pending: VecDeque<Outbound>,
    buf: BytesMut,
    done: bool,
}

impl Outgoing {
    pub fn new(realtime: Realtime, outbox: OutboxReader) -> Outgoing {
        realtime.stats().sockets.fetch_add(1, Ordering::Relaxed);
        Outgoing {
            realtime,
            outbox,
            pending: VecDeque::new(),
            buf: BytesMut::new(),
            done: false,
        }
    }

    fn chunk(&mut self) -> Bytes {
        let chunk = self.buf.split().freeze();
        if self.buf.capacity() > RETAIN {
            self.buf = BytesMut::new();
        }
        chunk
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        self.realtime
            .stats()
            .sockets
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Stream for Outgoing {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.pending.is_empty() {
            if this.pending.capacity() > 256 {
                this.pending = VecDeque::new();
            }
            match this.outbox.poll_take(cx, &mut this.pending, CHUNK) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Take::Frames) => {}
                Poll::Ready(Take::Close(reason)) => {
                    encode_close(reason.code, reason.reason, &mut this.buf);
                    this.done = true;
                    return Poll::Ready(Some(Ok(this.chunk())));
                }
            }
        }
        while this.buf.len() < CHUNK {
            let Some(item) = this.pending.pop_front() else {
                break;
            };
            encode(&item, &mut this.buf);
        }
        Poll::Ready(Some(Ok(this.chunk())))
    }
}

/// The client's frames, decoded from the upgraded request's payload.
///
/// Every frame is judged by its header ([`FrameHeader::parse`]) before its payload is read:
/// a data frame, or the next fragment of a message, that would take the message over the
/// size limit ends the connection (1009) at once, so no client can make the server buffer
/// more than one frame of at most the limit.
pub struct Incoming {
    payload: web::Payload,
    buf: BytesMut,
    limit: usize,
    /// A fragmented message being joined: whether it is text, and its bytes so far.
    partial: Option<(bool, BytesMut)>,
    eof: bool,
    failed: bool,
}

impl Incoming {
    pub fn new(payload: web::Payload, limit: usize) -> Incoming {
        Incoming {
            payload,
            buf: BytesMut::new(),
            limit,
            partial: None,
            eof: false,
            failed: false,
        }
    }

    fn fail(&mut self, item: WireIn) -> Option<WireIn> {
        self.failed = true;
        Some(item)
    }

    fn message(&mut self, text: bool, bytes: BytesMut) -> Option<WireIn> {
        if !text {
            return Some(WireIn::Binary);
        }
        match String::from_utf8(Vec::from(bytes.freeze())) {
            Ok(s) => Some(WireIn::Text(s)),
            Err(_) => self.fail(WireIn::Broken("text frame is not valid UTF-8".into())),
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
            Opcode::Close => Some(WireIn::Close),
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
}

impl Stream for Incoming {
    type Item = WireIn;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WireIn>> {
        let this = self.get_mut();
        loop {
            if this.failed {
                return Poll::Ready(None);
            }
            match this.next_frame() {
                Ok(Some((header, data))) => match this.frame(header, data) {
                    Some(item) => return Poll::Ready(Some(item)),
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
            if this.buf.is_empty() && this.buf.capacity() > RETAIN {
                this.buf = BytesMut::new();
            }
            match Pin::new(&mut this.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => this.buf.extend_from_slice(&bytes),
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(this.fail(WireIn::Broken(e.to_string())))
                }
                Poll::Ready(None) => this.eof = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_use_the_shortest_length_form() {
        for (len, expect) in [(5, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let mut buf = BytesMut::new();
            header(&mut buf, OP_TEXT, len);
            assert_eq!(buf.len(), expect, "length {len}");
            assert_eq!(buf[0], 0x81);
        }
    }

    #[test]
    fn a_close_frame_carries_code_and_reason() {
        let mut buf = BytesMut::new();
        encode_close(1008, "slow_consumer", &mut buf);
        assert_eq!(&buf[..4], &[0x88, 15, 0x03, 0xF0]);
        assert_eq!(&buf[4..], b"slow_consumer");
    }
}
