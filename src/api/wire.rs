//! WebSocket framing for the channel endpoint, straight on the HTTP connection's streams.
//!
//! [`Incoming`] decodes the client's (masked) frames from the request payload into
//! [`WireIn`] items for the session actor, joining continuation frames and refusing any
//! frame over the size limit as soon as its header is read. [`Outgoing`] is the response
//! body: at each wake-up it takes everything queued in the connection's outbox and encodes
//! it into one buffer, so the connection's dispatcher makes one `write` per batch, not per
//! frame, and no task or channel sits between the topics and the socket.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame, Item, ProtocolError};
use actix_web::web::{self, Bytes, BytesMut};
use futures_util::Stream;
use stoa_actors::{Outbound, OutboxReader, Realtime, Take, WireIn};

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
            match this.outbox.poll_take(cx, &mut this.pending) {
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
pub struct Incoming {
    payload: web::Payload,
    buf: BytesMut,
    codec: Codec,
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
            codec: Codec::new().max_size(limit),
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

    fn message(&mut self, text: bool, bytes: Bytes) -> Option<WireIn> {
        if !text {
            return Some(WireIn::Binary);
        }
        match String::from_utf8(Vec::from(bytes)) {
            Ok(s) => Some(WireIn::Text(s)),
            Err(_) => self.fail(WireIn::Broken("text frame is not valid UTF-8".into())),
        }
    }

    /// What a decoded frame means for the session; `None` while a fragmented message is
    /// still incomplete.
    fn frame(&mut self, frame: Frame) -> Option<WireIn> {
        let fragmenting = self.partial.is_some();
        match frame {
            Frame::Text(_) | Frame::Binary(_) if fragmenting => self.fail(WireIn::Broken(
                "data frame inside a fragmented message".into(),
            )),
            Frame::Text(bytes) => self.message(true, bytes),
            Frame::Binary(bytes) => self.message(false, bytes),
            Frame::Ping(data) => Some(WireIn::Ping(data.to_vec())),
            Frame::Pong(_) => Some(WireIn::Pong),
            Frame::Close(_) => Some(WireIn::Close),
            Frame::Continuation(item) => match item {
                Item::FirstText(_) | Item::FirstBinary(_) if fragmenting => {
                    self.fail(WireIn::Broken("fragmented message restarted".into()))
                }
                Item::FirstText(b) => {
                    self.partial = Some((true, BytesMut::from(&b[..])));
                    None
                }
                Item::FirstBinary(b) => {
                    self.partial = Some((false, BytesMut::from(&b[..])));
                    None
                }
                Item::Continue(b) => self.append(b, false),
                Item::Last(b) => self.append(b, true),
            },
        }
    }

    /// Adds a continuation to the fragmented message; the whole message when `last`.
    fn append(&mut self, b: Bytes, last: bool) -> Option<WireIn> {
        let Some((_, so_far)) = self.partial.as_mut() else {
            return self.fail(WireIn::Broken("continuation without a start".into()));
        };
        if so_far.len() + b.len() > self.limit {
            self.partial = None;
            return self.fail(WireIn::TooLarge);
        }
        so_far.extend_from_slice(&b);
        if !last {
            return None;
        }
        let (text, bytes) = self.partial.take()?;
        self.message(text, bytes.freeze())
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
            match this.codec.decode(&mut this.buf) {
                Ok(Some(frame)) => match this.frame(frame) {
                    Some(item) => return Poll::Ready(Some(item)),
                    None => continue,
                },
                Ok(None) => {}
                Err(ProtocolError::Overflow) => return Poll::Ready(this.fail(WireIn::TooLarge)),
                Err(e) => return Poll::Ready(this.fail(WireIn::Broken(e.to_string()))),
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
