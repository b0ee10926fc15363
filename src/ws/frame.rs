//! Frame headers: parsing what clients send and encoding what the server sends (RFC 6455 5.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```

/// What a frame carries (RFC 6455 5.2, "Opcode").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    /// The opcode for a 4-bit value, or `None` for the reserved ones (3-7, 0xB-0xF).
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Control frames (close, ping, pong) "MAY be injected in the middle of a fragmented message".
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1, "the Per-Message Compressed bit" of permessage-deflate (RFC 7692 6): set only on
    /// the first frame of a compressed message, and only once the extension was negotiated.
    pub compressed: bool,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

/// Why a header was refused. Each maps to close code 1002 except `TooBig` (1009).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// RSV1-3 set with no extension negotiated that defines them (RSV2 and RSV3 always).
    ReservedBits,
    /// RSV1 on a control frame, with permessage-deflate negotiated.
    CompressedControl,
    /// RSV1 on a continuation frame, with permessage-deflate negotiated.
    CompressedContinuation,
    /// Opcode 3-7 or 0xB-0xF.
    UnknownOpcode(u8),
    /// "All frames sent from client to server have this bit set to 1."
    Unmasked,
    /// "All control frames MUST have a payload length of 125 bytes or less."
    ControlTooLong,
    /// "Control frames themselves MUST NOT be fragmented."
    ControlFragmented,
    /// The most significant bit of a 64-bit length "MUST be 0".
    LengthHighBit,
    /// The payload is larger than the configured maximum frame size.
    TooBig { len: u64, max: u64 },
}

impl HeaderError {
    pub fn describe(&self) -> &'static str {
        match self {
            HeaderError::ReservedBits => "reserved bits set without a negotiated extension",
            HeaderError::CompressedControl => "compressed (RSV1) control frame",
            HeaderError::CompressedContinuation => "RSV1 set on a continuation frame",
            HeaderError::UnknownOpcode(_) => "unknown opcode",
            HeaderError::Unmasked => "client frame is not masked",
            HeaderError::ControlTooLong => "control frame payload over 125 bytes",
            HeaderError::ControlFragmented => "fragmented control frame",
            HeaderError::LengthHighBit => "64-bit payload length with the high bit set",
            HeaderError::TooBig { .. } => "frame too big",
        }
    }
}

/// The outcome of trying to parse a header from the bytes at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed before anything can be said.
    Partial,
    /// A whole header, and how many bytes it took.
    Complete(FrameHeader, usize),
}

/// Parses a client-to-server frame header from the front of `buf`, with no extension
/// negotiated: any reserved bit fails it. See [`parse_client_header_with`].
pub fn parse_client_header(buf: &[u8], max_frame: u64) -> Result<Parsed, HeaderError> {
    parse_client_header_with(buf, max_frame, false)
}

/// Parses a client-to-server frame header from the front of `buf`; `compression` says whether
/// permessage-deflate was negotiated (RSV1 allowed on the first frame of a data message). Checks
/// that depend only on the header are done here; fragmentation order is the
/// [`super::context`]'s job.
pub fn parse_client_header_with(
    buf: &[u8],
    max_frame: u64,
    compression: bool,
) -> Result<Parsed, HeaderError> {
    if buf.len() < 2 {
        return Ok(Parsed::Partial);
    }
    let (b0, b1) = (buf[0], buf[1]);
    // "MUST be 0 unless an extension is negotiated that defines meanings for non-zero values.
    // If a nonzero value is received and none of the negotiated extensions defines the meaning
    // of such a nonzero value, the receiving endpoint MUST _Fail the WebSocket Connection_."
    // (RFC 6455 5.2) permessage-deflate defines RSV1 only.
    let compressed = b0 & 0x40 != 0;
    if b0 & 0x30 != 0 || (compressed && !compression) {
        return Err(HeaderError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(HeaderError::UnknownOpcode(b0 & 0x0f))?;
    // "An endpoint MUST NOT set the "Per-Message Compressed" bit of control frames and
    // non-first fragments of a data message. An endpoint receiving such a frame MUST _Fail the
    // WebSocket Connection_." (RFC 7692 6.1)
    if compressed && opcode.is_control() {
        return Err(HeaderError::CompressedControl);
    }
    if compressed && opcode == OpCode::Continuation {
        return Err(HeaderError::CompressedContinuation);
    }
    if b1 & 0x80 == 0 {
        return Err(HeaderError::Unmasked);
    }
    let short = b1 & 0x7f;
    if opcode.is_control() {
        if short > 125 {
            return Err(HeaderError::ControlTooLong);
        }
        if !fin {
            return Err(HeaderError::ControlFragmented);
        }
    }
    let (len, len_bytes) = match short {
        126 => {
            if buf.len() < 4 {
                return Ok(Parsed::Partial);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 2)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(Parsed::Partial);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Err(HeaderError::LengthHighBit);
            }
            (len, 8)
        }
        n => (u64::from(n), 0),
    };
    if len > max_frame {
        return Err(HeaderError::TooBig {
            len,
            max: max_frame,
        });
    }
    let mask_at = 2 + len_bytes;
    if buf.len() < mask_at + 4 {
        return Ok(Parsed::Partial);
    }
    let mask = [
        buf[mask_at],
        buf[mask_at + 1],
        buf[mask_at + 2],
        buf[mask_at + 3],
    ];
    Ok(Parsed::Complete(
        FrameHeader {
            fin,
            compressed,
            opcode,
            mask: Some(mask),
            payload_len: len,
        },
        mask_at + 4,
    ))
}

/// The longest header a server frame can have (no mask): 2 + 8 bytes.
pub const MAX_SERVER_HEADER: usize = 10;

/// Writes an unmasked server-to-client header into `out`, returning its length (2, 4 or 10).
pub fn encode_server_header(
    fin: bool,
    opcode: OpCode,
    payload_len: usize,
    out: &mut [u8; MAX_SERVER_HEADER],
) -> usize {
    out[0] = (u8::from(fin) << 7) | opcode.as_u8();
    if payload_len < 126 {
        out[1] = payload_len as u8;
        2
    } else if payload_len <= usize::from(u16::MAX) {
        out[1] = 126;
        out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    }
}

/// The opcode and payload of a whole unmasked server frame (as [`encode_server_frame`] makes
/// them), or `None` if the bytes are not one.
pub fn server_frame_parts(frame: &[u8]) -> Option<(OpCode, &[u8])> {
    let (&b0, &b1) = (frame.first()?, frame.get(1)?);
    let opcode = OpCode::from_u8(b0 & 0x0f)?;
    let (len, at): (usize, usize) = match b1 & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*frame.get(2)?, *frame.get(3)?])),
            4,
        ),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(frame.get(2..10)?);
            (usize::try_from(u64::from_be_bytes(b)).ok()?, 10)
        }
        n => (usize::from(n), 2),
    };
    Some((opcode, frame.get(at..at.checked_add(len)?)?))
}

/// Encodes a whole unfragmented server frame: header then payload, in one buffer.
pub fn encode_server_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut head = [0u8; MAX_SERVER_HEADER];
    let n = encode_server_header(true, opcode, payload.len(), &mut head);
    let mut out = Vec::with_capacity(n + payload.len());
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(payload);
    out
}

/// Encodes a masked client-to-server frame. The server never sends these; tests, fuzzers and
/// the benchmark's load generator do.
pub fn encode_client_frame(fin: bool, opcode: OpCode, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut head = [0u8; MAX_SERVER_HEADER];
    let n = encode_server_header(fin, opcode, payload.len(), &mut head);
    head[1] |= 0x80;
    let mut out = Vec::with_capacity(n + 4 + payload.len());
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    super::mask::apply_mask(&mut out[start..], key, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 40;

    fn parse(buf: &[u8]) -> Result<Parsed, HeaderError> {
        parse_client_header(buf, MAX)
    }

    #[test]
    fn every_length_form_round_trips() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 1 << 20] {
            let payload = vec![0xabu8; len];
            let frame = encode_client_frame(true, OpCode::Binary, &payload, [9, 8, 7, 6]);
            let expect_head = match len {
                0..=125 => 6,
                126..=65535 => 8,
                _ => 14,
            };
            match parse(&frame).unwrap() {
                Parsed::Complete(h, n) => {
                    assert_eq!(n, expect_head, "len {len}");
                    assert_eq!(h.payload_len, len as u64);
                    assert!(h.fin);
                    assert_eq!(h.opcode, OpCode::Binary);
                    assert_eq!(h.mask, Some([9, 8, 7, 6]));
                }
                p => panic!("len {len}: {p:?}"),
            }
            // Every strict prefix of the header is Partial.
            for cut in 0..expect_head {
                assert_eq!(
                    parse(&frame[..cut]),
                    Ok(Parsed::Partial),
                    "len {len} cut {cut}"
                );
            }
        }
    }

    #[test]
    fn server_header_length_forms() {
        let mut h = [0u8; MAX_SERVER_HEADER];
        assert_eq!(encode_server_header(true, OpCode::Text, 125, &mut h), 2);
        assert_eq!(&h[..2], &[0x81, 125]);
        assert_eq!(encode_server_header(true, OpCode::Text, 126, &mut h), 4);
        assert_eq!(&h[..4], &[0x81, 126, 0, 126]);
        assert_eq!(
            encode_server_header(false, OpCode::Binary, 65536, &mut h),
            10
        );
        assert_eq!(&h[..10], &[0x02, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn rejections() {
        // RSV1 set.
        assert_eq!(
            parse(&[0xc1, 0x80, 0, 0, 0, 0]),
            Err(HeaderError::ReservedBits)
        );
        // Reserved opcodes.
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(
                parse(&[0x80 | op, 0x80, 0, 0, 0, 0]),
                Err(HeaderError::UnknownOpcode(op))
            );
        }
        // Unmasked.
        assert_eq!(parse(&[0x81, 0x05]), Err(HeaderError::Unmasked));
        // Control frame with 126-byte payload, and fragmented ping.
        assert_eq!(
            parse(&[0x89, 0xfe, 0, 126]),
            Err(HeaderError::ControlTooLong)
        );
        assert_eq!(parse(&[0x09, 0x80]), Err(HeaderError::ControlFragmented));
        // 64-bit length with the top bit set.
        assert_eq!(
            parse(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
            Err(HeaderError::LengthHighBit)
        );
        // RSV1 with compression negotiated: allowed on a data frame, the first of a message.
        let with = |b: &[u8]| parse_client_header_with(b, MAX, true);
        match with(&[0xc1, 0x80, 0, 0, 0, 0]) {
            Ok(Parsed::Complete(h, 6)) => assert!(h.compressed && h.opcode == OpCode::Text),
            p => panic!("{p:?}"),
        }
        match with(&[0x42, 0x80, 0, 0, 0, 0]) {
            Ok(Parsed::Complete(h, 6)) => assert!(h.compressed && !h.fin),
            p => panic!("{p:?}"),
        }
        match with(&[0x81, 0x80, 0, 0, 0, 0]) {
            Ok(Parsed::Complete(h, 6)) => assert!(!h.compressed),
            p => panic!("{p:?}"),
        }
        // Never on a control frame or a continuation, and RSV2/RSV3 stay reserved.
        for op in [0x8u8, 0x9, 0xa] {
            assert_eq!(
                with(&[0xc0 | op, 0x80, 0, 0, 0, 0]),
                Err(HeaderError::CompressedControl)
            );
        }
        assert_eq!(
            with(&[0xc0, 0x80, 0, 0, 0, 0]),
            Err(HeaderError::CompressedContinuation)
        );
        assert_eq!(
            with(&[0xa1, 0x80, 0, 0, 0, 0]),
            Err(HeaderError::ReservedBits)
        );
        assert_eq!(
            with(&[0x91, 0x80, 0, 0, 0, 0]),
            Err(HeaderError::ReservedBits)
        );
        // Over the configured frame size.
        assert_eq!(
            parse_client_header(&[0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4], 255),
            Err(HeaderError::TooBig { len: 256, max: 255 })
        );
    }
}
