//! WebSocket frames as a client sends them (RFC 6455 §5.2), read from their header.
//!
//! A frame's header says how long its payload is before any of the payload has arrived, so
//! every size limit is applied here, to the header: a server that reads a frame first and
//! measures it afterwards has already buffered whatever the client chose to announce. The
//! transport calls [`FrameHeader::parse`] on the bytes it has, refuses the frame if the
//! header breaks a rule or a limit, and only then waits for the payload, which it unmasks
//! with [`unmask`].

/// The kinds of frame (RFC 6455 §5.2, §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// The opcode's four bits.
    pub const fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, ping and pong: at most 125 bytes, never fragmented.
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Longest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: u64 = 125;
/// Longest header a frame can have: 2 bytes, an 8-byte length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// Why a client's frame header is refused. Every one of these ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("client frames must be masked")]
    Unmasked,
    #[error("control frame announces {0} bytes (at most 125)")]
    ControlTooLong(u64),
    #[error("control frames cannot be fragmented")]
    FragmentedControl,
    #[error("frame announces {len} bytes, over the limit of {limit}")]
    TooLarge { len: u64, limit: u64 },
}

impl HeaderError {
    /// The close code the connection ends with: 1009 for a frame over the size limit, 1002
    /// (protocol error) for anything else.
    pub fn close_code(self) -> u16 {
        match self {
            HeaderError::TooLarge { .. } => 1009,
            _ => 1002,
        }
    }
}

/// A client frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: Opcode,
    /// Payload length in bytes, as announced.
    pub len: u64,
    pub mask: [u8; 4],
    /// Bytes the header itself takes.
    pub header_len: usize,
}

impl FrameHeader {
    /// Reads a header from the start of `buf`: `Ok(None)` until all of it has arrived, an
    /// error as soon as the bytes received break a rule. A data frame whose payload would be
    /// over `limit` is refused here, before any of its payload is read.
    pub fn parse(buf: &[u8], limit: u64) -> Result<Option<FrameHeader>, HeaderError> {
        let [first, second, ..] = *buf else {
            return Ok(None);
        };
        if first & 0x70 != 0 {
            return Err(HeaderError::ReservedBits);
        }
        let fin = first & 0x80 != 0;
        let opcode =
            Opcode::from_bits(first & 0x0F).ok_or(HeaderError::UnknownOpcode(first & 0x0F))?;
        if second & 0x80 == 0 {
            return Err(HeaderError::Unmasked);
        }
        let short = u64::from(second & 0x7F);
        if opcode.is_control() {
            if !fin {
                return Err(HeaderError::FragmentedControl);
            }
            if short > MAX_CONTROL_PAYLOAD {
                // 126 and 127 announce an extended length, which a control frame cannot have.
                return Err(HeaderError::ControlTooLong(short));
            }
        }
        let (len, at) = match short {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(b);
                    (u64::from_be_bytes(be), 10)
                }
                None => return Ok(None),
            },
            n => (n, 2),
        };
        if !opcode.is_control() && len > limit {
            return Err(HeaderError::TooLarge { len, limit });
        }
        let Some(m) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        Ok(Some(FrameHeader {
            fin,
            opcode,
            len,
            mask: [m[0], m[1], m[2], m[3]],
            header_len: at + 4,
        }))
    }
}

/// A frame's header as written (RFC 6455 §5.2): the byte of FIN, RSV and opcode bits, the
/// payload length in its shortest form, and the mask key of a client's frame. The server,
/// the load tool and the tests all write headers with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl Header {
    /// A header whose first byte is `first` as given (0x81: a final text frame; tests set
    /// other bits to break the rules), announcing `len` bytes, masked with `mask` if given.
    pub fn new(first: u8, len: u64, mask: Option<[u8; 4]>) -> Header {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        bytes[0] = first;
        let masked = if mask.is_some() { 0x80 } else { 0 };
        let mut at = match len {
            0..=125 => {
                bytes[1] = masked | len as u8;
                2
            }
            126..=0xFFFF => {
                bytes[1] = masked | 126;
                bytes[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            _ => {
                bytes[1] = masked | 127;
                bytes[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(key) = mask {
            bytes[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        Header {
            bytes,
            len: at as u8,
        }
    }

    /// A final frame of `opcode`: unmasked, as a server sends it.
    pub fn server(opcode: Opcode, len: usize) -> Header {
        Header::new(0x80 | opcode.bits(), len as u64, None)
    }

    /// A final frame of `opcode`, masked with `mask`, as a client sends it.
    pub fn client(opcode: Opcode, len: usize, mask: [u8; 4]) -> Header {
        Header::new(0x80 | opcode.bits(), len as u64, Some(mask))
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Unmasks (or masks: the operation is its own inverse) a payload in place.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Why a client's close frame is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    #[error("close frame with a one-byte payload")]
    Truncated,
    #[error("close code {0} may not be sent")]
    Code(u16),
    #[error("close reason is not valid UTF-8")]
    Reason,
}

impl CloseError {
    /// 1007 for a reason that is not UTF-8, 1002 (protocol error) for the rest.
    pub fn close_code(self) -> u16 {
        match self {
            CloseError::Reason => 1007,
            _ => 1002,
        }
    }
}

/// The status code of a client's close frame (RFC 6455 §5.5.1, §7.4): none for an empty
/// payload, otherwise a code an endpoint may send followed by a UTF-8 reason.
pub fn close_code(payload: &[u8]) -> Result<Option<u16>, CloseError> {
    match payload {
        [] => Ok(None),
        [_] => Err(CloseError::Truncated),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            // 1004-1006 and 1015 are reserved or only reported locally; 1016-2999 are
            // for future revisions of the protocol, 5000 and up do not exist.
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(CloseError::Code(code));
            }
            std::str::from_utf8(reason).map_err(|_| CloseError::Reason)?;
            Ok(Some(code))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn close_payloads_are_checked() {
        assert_eq!(close_code(&[]), Ok(None));
        assert_eq!(close_code(&[0x03]), Err(CloseError::Truncated));
        assert_eq!(close_code(&[0x03, 0xE8]), Ok(Some(1000)));
        assert_eq!(close_code(b"\x0f\xa0bye"), Ok(Some(4000)));
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let [hi, lo] = bad.to_be_bytes();
            assert_eq!(close_code(&[hi, lo]), Err(CloseError::Code(bad)), "{bad}");
        }
        assert_eq!(
            close_code(&[0x03, 0xE8, 0xC3, 0x28]),
            Err(CloseError::Reason)
        );
        assert_eq!(CloseError::Reason.close_code(), 1007);
    }

    use super::*;

    const MASK: [u8; 4] = [1, 2, 3, 4];

    /// A masked client frame header announcing `len`.
    fn header(first: u8, len: u64) -> Vec<u8> {
        Header::new(first, len, Some(MASK)).as_slice().to_vec()
    }

    #[test]
    fn headers_are_written_in_the_shortest_form_and_read_back() {
        for (len, short) in [(0usize, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let server = Header::server(Opcode::Binary, len);
            assert_eq!(server.as_slice().len(), short);
            assert_eq!(server.as_slice()[0], 0x82);
            let client = Header::client(Opcode::Text, len, MASK);
            assert_eq!(client.as_slice().len(), short + 4);
            let parsed = FrameHeader::parse(client.as_slice(), u64::MAX)
                .unwrap()
                .unwrap();
            assert_eq!(
                (parsed.len, parsed.opcode, parsed.mask, parsed.fin),
                (len as u64, Opcode::Text, MASK, true)
            );
            assert_eq!(parsed.header_len, short + 4);
        }
        for op in [
            Opcode::Continuation,
            Opcode::Text,
            Opcode::Binary,
            Opcode::Close,
            Opcode::Ping,
            Opcode::Pong,
        ] {
            assert_eq!(Opcode::from_bits(op.bits()), Some(op));
        }
    }

    #[test]
    fn reads_each_length_form() {
        for (len, header_len) in [(0u64, 6), (125, 6), (126, 8), (65_535, 8), (65_536, 14)] {
            let h = header(0x81, len);
            let parsed = FrameHeader::parse(&h, 1 << 20).unwrap().unwrap();
            assert_eq!(parsed.len, len);
            assert_eq!(parsed.header_len, header_len);
            assert_eq!(parsed.opcode, Opcode::Text);
            assert!(parsed.fin);
            assert_eq!(parsed.mask, MASK);
        }
    }

    #[test]
    fn waits_for_every_byte_of_the_header() {
        let h = header(0x81, 70_000);
        for cut in 0..h.len() {
            assert_eq!(
                FrameHeader::parse(&h[..cut], 1 << 20),
                Ok(None),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_length_alone() {
        // The 2^40-byte announcement: refused once the 10 bytes carrying the length are in,
        // before the mask (let alone the payload) has arrived.
        let h = header(0x81, 1 << 40);
        let err = FrameHeader::parse(&h[..10], 65_536).unwrap_err();
        assert_eq!(
            err,
            HeaderError::TooLarge {
                len: 1 << 40,
                limit: 65_536
            }
        );
        assert_eq!(err.close_code(), 1009);
        let cont = header(0x00, 65_537);
        assert!(FrameHeader::parse(&cont, 65_536).is_err());
        assert!(FrameHeader::parse(&header(0x82, 65_536), 65_536)
            .unwrap()
            .is_some());
    }

    #[test]
    fn protocol_violations_are_refused() {
        assert_eq!(
            FrameHeader::parse(&[0xC1, 0x80], 100),
            Err(HeaderError::ReservedBits)
        );
        assert_eq!(
            FrameHeader::parse(&[0x83, 0x80], 100),
            Err(HeaderError::UnknownOpcode(3))
        );
        assert_eq!(
            FrameHeader::parse(&[0x81, 0x05], 100),
            Err(HeaderError::Unmasked)
        );
        assert_eq!(
            FrameHeader::parse(&[0x89, 0x80 | 126], 1 << 20),
            Err(HeaderError::ControlTooLong(126))
        );
        assert_eq!(
            FrameHeader::parse(&[0x09, 0x80], 100),
            Err(HeaderError::FragmentedControl)
        );
        assert_eq!(
            HeaderError::Unmasked.close_code(),
            1002,
            "protocol errors close with 1002"
        );
    }

    #[test]
    fn any_bytes_give_an_answer_without_panicking() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            let n = (state % 15) as usize;
            let _ = FrameHeader::parse(&bytes[..n.min(8)], 1000);
            let mut long = [0u8; 14];
            long[..8].copy_from_slice(&bytes);
            long[8..].copy_from_slice(&bytes[..6]);
            let _ = FrameHeader::parse(&long[..n], 1000);
        }
    }

    #[test]
    fn masking_round_trips() {
        let mut data = *b"hello, world";
        unmask(&mut data, MASK);
        assert_ne!(&data, b"hello, world");
        unmask(&mut data, MASK);
        assert_eq!(&data, b"hello, world");
    }
}
