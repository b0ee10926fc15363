//! The read side of one WebSocket connection: bytes in, whole messages out.
//!
//! A [`WsContext`] is a state machine over byte slices (the tungstenite "context" split): the
//! event loop owns the socket and hands whatever bytes arrived to [`WsContext::read`], which takes
//! what it can and says how much it took. Payload bytes are consumed as they arrive, even in the
//! middle of a frame, so the only bytes a caller ever has to keep are an incomplete frame header
//! (at most 14 bytes), and invalid UTF-8 is caught on the first bad byte.
//!
//! With permessage-deflate negotiated ([`WsContext::with_deflate`]), a compressed message (RSV1
//! on its first frame) is inflated as its bytes arrive, into at most the message limit, and its
//! text checked as UTF-8 as it inflates.

use super::close::{self, CloseCode, ClosePayloadError};
use super::deflate::{DeflateParams, InflateContext, InflateError, Inflater};
use super::frame::{self, FrameHeader, HeaderError, OpCode, Parsed};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;

/// Size limits for what a peer may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of a single frame.
    pub max_frame: u64,
    /// Largest message, all fragments together; for a compressed message, inflated.
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: 64 * 1024,
            max_message: 64 * 1024,
        }
    }
}

/// Something whole that the peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A text message, already checked to be UTF-8.
    Text(String),
    Binary(Vec<u8>),
    /// A ping; the engine must answer with a pong carrying the same payload.
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame with its code and reason, or `None` when it had no payload.
    Close(Option<(CloseCode, String)>),
}

/// What a peer did that fails the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// A frame header broke a rule on its own (reserved bits, opcode, masking, lengths).
    Header(HeaderError),
    /// "new data frame while a fragmented message is unfinished" (RFC 6455 5.4).
    DataFrameInsideMessage,
    /// A continuation frame with no message to continue.
    ContinuationWithoutMessage,
    /// A message over the size limit, all fragments together, or inflating past it (1009).
    MessageTooBig,
    /// A compressed message that is not valid DEFLATE data (1007).
    InvalidCompressedData,
    /// A text message or close reason that is not UTF-8 (1007).
    InvalidUtf8,
    /// A close payload of one byte: a code needs two.
    CloseTruncated,
    /// A close code a peer may not send (RFC 6455 7.4).
    InvalidCloseCode,
}

impl Violation {
    /// The close code it is answered with (RFC 6455 7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            Violation::Header(HeaderError::TooBig { .. }) | Violation::MessageTooBig => {
                CloseCode::TOO_BIG
            }
            // "data within a message that was not consistent with the type of the message"
            // (RFC 6455 7.4.1): compressed data that does not inflate is that too.
            Violation::InvalidUtf8 | Violation::InvalidCompressedData => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::PROTOCOL,
        }
    }

    /// The reason sent in the close frame.
    pub fn describe(&self) -> &'static str {
        match self {
            Violation::Header(h) => h.describe(),
            Violation::DataFrameInsideMessage => {
                "new data frame while a fragmented message is unfinished"
            }
            Violation::ContinuationWithoutMessage => {
                "continuation frame with no message to continue"
            }
            Violation::MessageTooBig => "message too big",
            Violation::InvalidCompressedData => "compressed message is not valid DEFLATE data",
            Violation::InvalidUtf8 => "text is not valid UTF-8",
            Violation::CloseTruncated => "close payload of one byte",
            Violation::InvalidCloseCode => "invalid close code",
        }
    }
}

/// A violation that fails the connection, with the close code to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: CloseCode,
    pub violation: Violation,
}

impl ProtocolError {
    pub fn new(violation: Violation) -> Self {
        ProtocolError {
            code: violation.close_code(),
            violation,
        }
    }

    /// The reason sent in the close frame.
    pub fn reason(&self) -> &'static str {
        self.violation.describe()
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (close code {})", self.reason(), self.code.0)
    }
}

impl std::error::Error for ProtocolError {}

impl From<HeaderError> for ProtocolError {
    fn from(e: HeaderError) -> Self {
        ProtocolError::new(Violation::Header(e))
    }
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct FrameInProgress {
    header: FrameHeader,
    remaining: u64,
    /// Position in the payload, for the mask phase.
    offset: usize,
}

/// A data message whose fragments are being gathered.
#[derive(Debug, Default)]
struct MessageInProgress {
    is_text: bool,
    /// The message as the handler will get it (inflated, if it is compressed).
    data: Vec<u8>,
    utf8: Utf8Validator,
    /// Set for a compressed message: its frames' payloads are inflated into `data`.
    inflater: Option<Inflater>,
    /// Payload bytes of its frames so far, as sent (compressed, if it is).
    wire: u64,
}

/// The read state of one connection. Idle, it holds no heap memory (but, with client context
/// takeover, the end of the client's last compressed messages).
#[derive(Debug, Default)]
pub struct WsContext {
    limits: Limits,
    frame: Option<FrameInProgress>,
    message: Option<Box<MessageInProgress>>,
    /// Payload of the control frame being read (at most 125 bytes). Boxed, like the rarely
    /// used parts below, so that an idle connection carries a null pointer, not a `Vec`.
    #[allow(clippy::box_collection)]
    control: Option<Box<Vec<u8>>>,
    close_received: bool,
    /// permessage-deflate, when it was negotiated at the upgrade.
    deflate: Option<Box<InflateContext>>,
}

impl WsContext {
    pub fn new(limits: Limits) -> Self {
        WsContext {
            limits,
            ..Default::default()
        }
    }

    /// With permessage-deflate agreed at the upgrade (`None`: not negotiated, as [`Self::new`]).
    pub fn with_deflate(mut self, params: Option<DeflateParams>) -> Self {
        self.deflate = params.map(|p| Box::new(InflateContext::new(p)));
        self
    }

    /// The permessage-deflate parameters agreed at the upgrade, if any. The server's side of
    /// them ([`DeflateParams::server_window_bits`]) says how to compress what is sent to it.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.deflate.as_deref().map(InflateContext::params)
    }

    /// True once a close frame has been read; nothing after it is read.
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    /// Reads from `input`. Returns how many bytes were taken and, when a message or control frame
    /// was completed, that event: call again with the rest of the input. `(n, None)` means every
    /// byte that could be taken was taken; the untaken tail (an incomplete header) must be passed
    /// again, with more bytes behind it, on the next call.
    pub fn read(&mut self, input: &[u8]) -> Result<(usize, Option<Incoming>), ProtocolError> {
        if self.close_received {
            // "The application MUST NOT send any more data frames after sending a Close frame"
            // and we read nothing after the peer's: drop it.
            return Ok((input.len(), None));
        }
        let mut pos = 0;
        loop {
            let mut frame = match self.frame {
                Some(f) => f,
                None => match frame::parse_client_header_with(
                    &input[pos..],
                    self.limits.max_frame,
                    self.deflate.is_some(),
                )? {
                    Parsed::Partial => return Ok((pos, None)),
                    Parsed::Complete(header, n) => {
                        pos += n;
                        self.begin_frame(header)?
                    }
                },
            };
            let avail =
                (input.len() - pos).min(usize::try_from(frame.remaining).unwrap_or(usize::MAX));
            self.take_payload(&mut frame, &input[pos..pos + avail])?;
            pos += avail;
            if frame.remaining > 0 {
                self.frame = Some(frame);
                return Ok((pos, None));
            }
            self.frame = None;
            if let Some(event) = self.finish_frame(frame.header)? {
                return Ok((pos, Some(event)));
            }
        }
    }

    /// Checks a new header against the fragmentation state (RFC 6455 5.4) and the message limit.
    fn begin_frame(&mut self, header: FrameHeader) -> Result<FrameInProgress, ProtocolError> {
        match header.opcode {
            OpCode::Text | OpCode::Binary => {
                if self.message.is_some() {
                    return Err(ProtocolError::new(Violation::DataFrameInsideMessage));
                }
                // The frame parser lets RSV1 through only with permessage-deflate negotiated.
                let inflater = match (&self.deflate, header.compressed) {
                    (Some(d), true) => Some(d.begin().map_err(inflate_error)?),
                    (None, true) => return Err(HeaderError::ReservedBits.into()),
                    (_, false) => None,
                };
                self.check_message_size(inflater.is_some(), 0, header.payload_len)?;
                self.message = Some(Box::new(MessageInProgress {
                    is_text: header.opcode == OpCode::Text,
                    inflater,
                    ..Default::default()
                }));
            }
            OpCode::Continuation => {
                let (compressed, so_far) = match &self.message {
                    Some(m) => (m.inflater.is_some(), m.wire),
                    None => return Err(ProtocolError::new(Violation::ContinuationWithoutMessage)),
                };
                self.check_message_size(compressed, so_far, header.payload_len)?;
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                self.control.get_or_insert_with(Default::default).clear()
            }
        }
        Ok(FrameInProgress {
            header,
            remaining: header.payload_len,
            offset: 0,
        })
    }

    /// Checks the message's bytes on the wire, with `more` to come, against the limit. For a
    /// compressed message the limit is on its inflated size (checked as it inflates), but its
    /// wire bytes are bounded too, or empty DEFLATE blocks (5 bytes that inflate to nothing)
    /// could keep one message going forever: by the limit plus an eighth, which covers the most
    /// a deflate encoder adds to data it cannot compress (fixed Huffman codes on random bytes,
    /// 9 bits for 8; stored blocks add 5 bytes per 64 KiB).
    fn check_message_size(
        &self,
        compressed: bool,
        so_far: u64,
        more: u64,
    ) -> Result<(), ProtocolError> {
        let max = self.limits.max_message as u64;
        let max = if compressed {
            max.saturating_add(max / 8 + 64)
        } else {
            max
        };
        if so_far.saturating_add(more) > max {
            return Err(ProtocolError::new(Violation::MessageTooBig));
        }
        Ok(())
    }

    /// The payload of the control frame just read; nothing is kept for the next one.
    fn take_control(&mut self) -> Vec<u8> {
        self.control.take().map(|b| *b).unwrap_or_default()
    }

    /// Unmasks a piece of payload into the control buffer or the message (inflating it, if it
    /// is compressed).
    fn take_payload(
        &mut self,
        frame: &mut FrameInProgress,
        piece: &[u8],
    ) -> Result<(), ProtocolError> {
        let key = frame.header.mask.unwrap_or([0; 4]);
        frame.remaining -= piece.len() as u64;
        if frame.header.opcode.is_control() {
            let control = self.control.get_or_insert_with(Default::default);
            let start = control.len();
            control.extend_from_slice(piece);
            frame.offset = apply_mask(&mut control[start..], key, frame.offset);
            return Ok(());
        }
        let Some(m) = self.message.as_deref_mut() else {
            return Err(ProtocolError::new(Violation::ContinuationWithoutMessage));
        };
        m.wire += piece.len() as u64;
        let start = m.data.len();
        match m.inflater.as_mut() {
            None => {
                m.data.extend_from_slice(piece);
                frame.offset = apply_mask(&mut m.data[start..], key, frame.offset);
            }
            Some(inflater) => {
                // Unmasked a stack buffer at a time: the compressed bytes are never kept.
                let mut buf = [0u8; 4096];
                for part in piece.chunks(buf.len()) {
                    let buf = &mut buf[..part.len()];
                    buf.copy_from_slice(part);
                    frame.offset = apply_mask(buf, key, frame.offset);
                    inflater
                        .inflate(buf, &mut m.data, self.limits.max_message)
                        .map_err(inflate_error)?;
                }
            }
        }
        if m.is_text && m.utf8.feed(&m.data[start..]).is_err() {
            return Err(invalid_utf8());
        }
        Ok(())
    }

    /// Turns a fully read frame into an event, if it completes one.
    fn finish_frame(&mut self, header: FrameHeader) -> Result<Option<Incoming>, ProtocolError> {
        match header.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                if !header.fin {
                    return Ok(None);
                }
                let Some(m) = self.message.take() else {
                    return Err(ProtocolError::new(Violation::ContinuationWithoutMessage));
                };
                let mut m = *m;
                if let Some(mut inflater) = m.inflater.take() {
                    let start = m.data.len();
                    inflater
                        .finish(&mut m.data, self.limits.max_message)
                        .map_err(inflate_error)?;
                    if m.is_text && m.utf8.feed(&m.data[start..]).is_err() {
                        return Err(invalid_utf8());
                    }
                    if let Some(d) = self.deflate.as_mut() {
                        d.end(&m.data);
                    }
                }
                if !m.is_text {
                    return Ok(Some(Incoming::Binary(m.data)));
                }
                if !m.utf8.is_complete() {
                    return Err(invalid_utf8());
                }
                String::from_utf8(m.data)
                    .map(|s| Some(Incoming::Text(s)))
                    .map_err(|_| invalid_utf8())
            }
            OpCode::Ping => Ok(Some(Incoming::Ping(self.take_control()))),
            OpCode::Pong => Ok(Some(Incoming::Pong(self.take_control()))),
            OpCode::Close => {
                self.close_received = true;
                let payload = self.take_control();
                match close::parse_payload(&payload) {
                    Ok(None) => Ok(Some(Incoming::Close(None))),
                    Ok(Some((code, reason))) => {
                        Ok(Some(Incoming::Close(Some((code, reason.to_owned())))))
                    }
                    Err(ClosePayloadError::InvalidReason) => Err(invalid_utf8()),
                    Err(ClosePayloadError::Truncated) => {
                        Err(ProtocolError::new(Violation::CloseTruncated))
                    }
                    Err(ClosePayloadError::InvalidCode(_)) => {
                        Err(ProtocolError::new(Violation::InvalidCloseCode))
                    }
                }
            }
        }
    }
}

fn invalid_utf8() -> ProtocolError {
    ProtocolError::new(Violation::InvalidUtf8)
}

fn inflate_error(e: InflateError) -> ProtocolError {
    ProtocolError::new(match e {
        InflateError::TooBig => Violation::MessageTooBig,
        InflateError::Invalid => Violation::InvalidCompressedData,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::encode_client_frame;

    const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    fn ctx() -> WsContext {
        WsContext::new(Limits {
            max_frame: 1 << 20,
            max_message: 1 << 20,
        })
    }

    /// Feeds `pieces` one after the other, keeping untaken bytes like the event loop does.
    fn feed(ctx: &mut WsContext, pieces: &[&[u8]]) -> Result<Vec<Incoming>, ProtocolError> {
        let mut events = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        for piece in pieces {
            pending.extend_from_slice(piece);
            let mut pos = 0;
            loop {
                let (n, ev) = ctx.read(&pending[pos..])?;
                pos += n;
                match ev {
                    Some(ev) => events.push(ev),
                    None => break,
                }
            }
            pending.drain(..pos);
        }
        assert!(
            pending.len() <= 14,
            "only a partial header may be left over"
        );
        Ok(events)
    }

    fn text(s: &str) -> Incoming {
        Incoming::Text(s.to_owned())
    }

    #[test]
    fn single_frames_of_every_kind() {
        let mut c = ctx();
        let mut wire = encode_client_frame(true, OpCode::Text, b"hi", KEY);
        wire.extend(encode_client_frame(true, OpCode::Binary, &[0, 1, 2], KEY));
        wire.extend(encode_client_frame(true, OpCode::Ping, b"p", KEY));
        wire.extend(encode_client_frame(true, OpCode::Pong, b"", KEY));
        wire.extend(encode_client_frame(true, OpCode::Text, b"", KEY));
        wire.extend(encode_client_frame(
            true,
            OpCode::Close,
            &[0x03, 0xe8, b'b'],
            KEY,
        ));
        wire.extend(encode_client_frame(true, OpCode::Text, b"after close", KEY));
        let events = feed(&mut c, &[&wire]).unwrap();
        assert_eq!(
            events,
            vec![
                text("hi"),
                Incoming::Binary(vec![0, 1, 2]),
                Incoming::Ping(b"p".to_vec()),
                Incoming::Pong(vec![]),
                text(""),
                Incoming::Close(Some((CloseCode::NORMAL, "b".into()))),
            ]
        );
        assert!(c.close_received());
    }

    /// A fragmented text message with a ping between fragments, a multi-byte character cut by
    /// a fragment boundary, then a binary message.
    fn fragmented_wire() -> (Vec<u8>, Vec<Incoming>) {
        let msg = "héllo wörld, κόσμε 𝄞!";
        let bytes = msg.as_bytes();
        let mut wire = encode_client_frame(false, OpCode::Text, &bytes[..2], KEY); // "h" + half of é
        wire.extend(encode_client_frame(true, OpCode::Ping, b"in between", KEY));
        wire.extend(encode_client_frame(
            false,
            OpCode::Continuation,
            &bytes[2..20],
            KEY,
        ));
        wire.extend(encode_client_frame(false, OpCode::Continuation, &[], KEY));
        wire.extend(encode_client_frame(
            true,
            OpCode::Continuation,
            &bytes[20..],
            KEY,
        ));
        wire.extend(encode_client_frame(true, OpCode::Binary, &[7; 300], KEY));
        let expect = vec![
            Incoming::Ping(b"in between".to_vec()),
            text(msg),
            Incoming::Binary(vec![7; 300]),
        ];
        (wire, expect)
    }

    #[test]
    fn message_split_at_every_byte_boundary() {
        let (wire, expect) = fragmented_wire();
        for i in 0..=wire.len() {
            let mut c = ctx();
            assert_eq!(
                feed(&mut c, &[&wire[..i], &wire[i..]]).unwrap(),
                expect,
                "split {i}"
            );
        }
    }

    #[test]
    fn message_fed_one_byte_at_a_time() {
        let (wire, expect) = fragmented_wire();
        let mut c = ctx();
        let pieces: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(feed(&mut c, &pieces).unwrap(), expect);
    }

    fn code_of(wire: &[u8], c: &mut WsContext) -> u16 {
        feed(c, &[wire]).expect_err("should fail").code.0
    }

    #[test]
    fn fragmentation_errors_are_1002() {
        let mut wire = encode_client_frame(true, OpCode::Continuation, b"x", KEY);
        assert_eq!(code_of(&wire, &mut ctx()), 1002);
        wire = encode_client_frame(false, OpCode::Text, b"a", KEY);
        wire.extend(encode_client_frame(true, OpCode::Text, b"b", KEY));
        assert_eq!(code_of(&wire, &mut ctx()), 1002);
    }

    #[test]
    fn header_rejections_carry_their_close_codes() {
        let mut unmasked = encode_client_frame(true, OpCode::Text, b"x", KEY);
        unmasked[1] &= 0x7f;
        assert_eq!(code_of(&unmasked, &mut ctx()), 1002);
        let mut rsv = encode_client_frame(true, OpCode::Text, b"x", KEY);
        rsv[0] |= 0x40;
        assert_eq!(code_of(&rsv, &mut ctx()), 1002);
        let mut op = encode_client_frame(true, OpCode::Text, b"x", KEY);
        op[0] = 0x83;
        assert_eq!(code_of(&op, &mut ctx()), 1002);
        let big_ping = encode_client_frame(true, OpCode::Ping, &[0; 126], KEY);
        assert_eq!(code_of(&big_ping, &mut ctx()), 1002);
        let frag_ping = encode_client_frame(false, OpCode::Ping, b"", KEY);
        assert_eq!(code_of(&frag_ping, &mut ctx()), 1002);
    }

    #[test]
    fn size_limits_are_1009() {
        let limits = Limits {
            max_frame: 100,
            max_message: 150,
        };
        let big_frame = encode_client_frame(true, OpCode::Binary, &[0; 101], KEY);
        assert_eq!(code_of(&big_frame, &mut WsContext::new(limits)), 1009);
        let mut big_msg = encode_client_frame(false, OpCode::Binary, &[0; 100], KEY);
        big_msg.extend(encode_client_frame(
            true,
            OpCode::Continuation,
            &[0; 51],
            KEY,
        ));
        assert_eq!(code_of(&big_msg, &mut WsContext::new(limits)), 1009);
        // Exactly at the limit is fine.
        let mut ok = encode_client_frame(false, OpCode::Binary, &[0; 100], KEY);
        ok.extend(encode_client_frame(
            true,
            OpCode::Continuation,
            &[0; 50],
            KEY,
        ));
        assert_eq!(feed(&mut WsContext::new(limits), &[&ok]).unwrap().len(), 1);
    }

    #[test]
    fn invalid_utf8_fails_fast_mid_frame_with_1007() {
        // The frame claims 1000 bytes but only the first few, with a bad byte, have arrived.
        let payload: Vec<u8> = [b"ok".as_slice(), &[0xff], &[b'a'; 997]].concat();
        let wire = encode_client_frame(true, OpCode::Text, &payload, KEY);
        let mut c = ctx();
        let err = c
            .read(&wire[..8 + 3])
            .expect_err("bad byte seen before the frame ends");
        assert_eq!(err.code, CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn utf8_split_mid_sequence_across_fragments() {
        let euro = "€".as_bytes(); // e2 82 ac
        let mut wire = encode_client_frame(false, OpCode::Text, &euro[..1], KEY);
        wire.extend(encode_client_frame(
            false,
            OpCode::Continuation,
            &euro[1..2],
            KEY,
        ));
        wire.extend(encode_client_frame(
            true,
            OpCode::Continuation,
            &euro[2..],
            KEY,
        ));
        assert_eq!(feed(&mut ctx(), &[&wire]).unwrap(), vec![text("€")]);
        // A message that ends in the middle of a code point is invalid.
        let cut = encode_client_frame(true, OpCode::Text, &euro[..2], KEY);
        assert_eq!(code_of(&cut, &mut ctx()), 1007);
        // A bad continuation byte in the next fragment is caught.
        let mut bad = encode_client_frame(false, OpCode::Text, &euro[..1], KEY);
        bad.extend(encode_client_frame(true, OpCode::Continuation, b"x", KEY));
        assert_eq!(code_of(&bad, &mut ctx()), 1007);
    }

    #[test]
    fn close_payload_checks() {
        let one_byte = encode_client_frame(true, OpCode::Close, &[3], KEY);
        assert_eq!(code_of(&one_byte, &mut ctx()), 1002);
        let bad_code = encode_client_frame(true, OpCode::Close, &[0x03, 0xed], KEY);
        assert_eq!(code_of(&bad_code, &mut ctx()), 1002);
        let bad_reason = encode_client_frame(true, OpCode::Close, &[0x03, 0xe8, 0xc0], KEY);
        assert_eq!(code_of(&bad_reason, &mut ctx()), 1007);
        let empty = encode_client_frame(true, OpCode::Close, &[], KEY);
        assert_eq!(
            feed(&mut ctx(), &[&empty]).unwrap(),
            vec![Incoming::Close(None)]
        );
    }

    mod deflate {
        use super::*;
        use crate::ws::deflate::tests::client_stream;
        use crate::ws::deflate::{compress, DeflateParams};

        const AGREED: DeflateParams = DeflateParams {
            server_max_window_bits: None,
            client_max_window_bits: None,
            client_no_context_takeover: false,
        };

        fn dctx(max_message: usize) -> WsContext {
            WsContext::new(Limits {
                max_frame: 1 << 20,
                max_message,
            })
            .with_deflate(Some(AGREED))
        }

        /// A client frame with RSV1 set.
        fn compressed(fin: bool, op: OpCode, data: &[u8]) -> Vec<u8> {
            let mut f = encode_client_frame(fin, op, data, KEY);
            f[0] |= 0x40;
            f
        }

        #[test]
        fn compressed_messages_inflate_whole_fragmented_and_split_anywhere() {
            let text = "κόσμε, quotes/AAPL 189.12 ".repeat(40);
            let z = compress(text.as_bytes(), 15);
            let mut wire = compressed(true, OpCode::Text, &z);
            // Fragmented: RSV1 on the first frame only, a ping in between.
            let (a, b) = z.split_at(z.len() / 3);
            wire.extend(compressed(false, OpCode::Text, a));
            wire.extend(encode_client_frame(true, OpCode::Ping, b"p", KEY));
            wire.extend(encode_client_frame(false, OpCode::Continuation, b, KEY));
            wire.extend(encode_client_frame(true, OpCode::Continuation, &[], KEY));
            // An empty compressed message (zlib flushes nothing for one right after a flush).
            wire.extend(compressed(true, OpCode::Text, &[]));
            // A plain message between compressed ones, and a compressed binary one.
            wire.extend(encode_client_frame(true, OpCode::Text, b"plain", KEY));
            wire.extend(compressed(true, OpCode::Binary, &compress(&[1, 2, 3], 15)));
            let expect = vec![
                text.clone().into_bytes(),
                b"p".to_vec(),
                text.into_bytes(),
                Vec::new(),
                b"plain".to_vec(),
                vec![1, 2, 3],
            ];
            let payloads = |events: Vec<Incoming>| -> Vec<Vec<u8>> {
                events
                    .into_iter()
                    .map(|e| match e {
                        Incoming::Text(t) => t.into_bytes(),
                        Incoming::Binary(b) | Incoming::Ping(b) => b,
                        e => panic!("{e:?}"),
                    })
                    .collect()
            };
            assert_eq!(
                payloads(feed(&mut dctx(1 << 20), &[&wire]).unwrap()),
                expect
            );
            for i in (0..wire.len()).step_by(7) {
                let got = feed(&mut dctx(1 << 20), &[&wire[..i], &wire[i..]]).unwrap();
                assert_eq!(payloads(got), expect, "split {i}");
            }
        }

        #[test]
        fn client_context_takeover_is_honoured() {
            let msgs: Vec<String> = (0..20)
                .map(|i| format!(r#"{{"op":"subscribe","topics":["quotes/S{i}"],"id":{i}}}"#))
                .collect();
            let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_bytes()).collect();
            let mut wire = Vec::new();
            for z in client_stream(&refs, 15) {
                wire.extend(compressed(true, OpCode::Text, &z));
            }
            let mut c = dctx(1 << 20);
            let got = feed(&mut c, &[&wire]).unwrap();
            assert_eq!(got, msgs.iter().map(|m| text(m)).collect::<Vec<_>>());
            // With client_no_context_takeover agreed nothing is kept, so the second message's
            // back-references are invalid data.
            let mut c = WsContext::new(Limits::default()).with_deflate(Some(DeflateParams {
                client_no_context_takeover: true,
                ..AGREED
            }));
            assert_eq!(code_of(&wire, &mut c), 1007);
        }

        #[test]
        fn rsv1_rules() {
            let z = compress(b"hello hello hello", 15);
            // Without negotiation: 1002, as any reserved bit.
            assert_eq!(
                code_of(&compressed(true, OpCode::Text, &z), &mut ctx()),
                1002
            );
            // On a control frame, or on a continuation: 1002.
            let ping = compressed(true, OpCode::Ping, b"");
            assert_eq!(code_of(&ping, &mut dctx(1000)), 1002);
            let mut cont = compressed(false, OpCode::Text, &z);
            cont.extend(compressed(true, OpCode::Continuation, &[0x00]));
            assert_eq!(code_of(&cont, &mut dctx(1000)), 1002);
            // Compressed data that does not inflate: 1007.
            let bad = compressed(true, OpCode::Binary, &[0xff, 0xff, 0xff]);
            assert_eq!(code_of(&bad, &mut dctx(1000)), 1007);
            // Text is checked as UTF-8 once inflated.
            let latin1 = compressed(true, OpCode::Text, &compress(&[b'a', 0xe9, b'b'], 15));
            assert_eq!(code_of(&latin1, &mut dctx(1000)), 1007);
            // A multi-byte character cut at the end of the message.
            let cut = compressed(true, OpCode::Text, &compress(&"€".as_bytes()[..2], 15));
            assert_eq!(code_of(&cut, &mut dctx(1000)), 1007);
        }

        #[test]
        fn a_zip_bomb_gets_1009_within_the_limit() {
            // 16 MiB of zeros in ~16 KB, against a 64 KiB limit.
            let bomb = crate::ws::deflate::tests::zip_bomb(16);
            assert!(bomb.len() < 64 * 1024);
            let wire = compressed(true, OpCode::Binary, &bomb);
            let mut c = dctx(64 * 1024);
            let err = c.read(&wire).expect_err("too big");
            assert_eq!(err.code, CloseCode::TOO_BIG);
            let m = c.message.as_ref().expect("the message being read");
            assert!(m.data.capacity() <= 64 * 1024 + 1, "{}", m.data.capacity());
            // Exactly the limit, inflated, is fine.
            let wire = compressed(true, OpCode::Binary, &compress(&[0; 1000], 15));
            assert_eq!(
                feed(&mut dctx(1000), &[&wire]).unwrap(),
                vec![Incoming::Binary(vec![0; 1000])]
            );
            assert_eq!(code_of(&wire, &mut dctx(999)), 1009);
        }

        #[test]
        fn compressed_bytes_on_the_wire_are_bounded_too() {
            // Empty stored blocks inflate to nothing; past the limit and an eighth: 1009.
            let empty_blocks = [0x00, 0x00, 0x00, 0xff, 0xff].repeat(40);
            let mut wire = compressed(false, OpCode::Binary, &empty_blocks);
            for _ in 0..10 {
                wire.extend(encode_client_frame(
                    false,
                    OpCode::Continuation,
                    &empty_blocks,
                    KEY,
                ));
            }
            // 11 frames of 200 bytes: 2200 > 1000 + 125 + 64.
            assert_eq!(code_of(&wire, &mut dctx(1000)), 1009);
            let few = &wire[..3 * (empty_blocks.len() + 8)];
            assert!(feed(&mut dctx(1000), &[few]).unwrap().is_empty());
        }

        #[test]
        fn nothing_is_kept_between_messages_but_the_window() {
            let mut c = dctx(1 << 20);
            let big = "x".repeat(100_000);
            let wire = compressed(true, OpCode::Text, &compress(big.as_bytes(), 15));
            feed(&mut c, &[&wire]).unwrap();
            assert!(c.message.is_none());
            assert_eq!(c.deflate.as_ref().map(|d| d.history_len()), Some(32 * 1024));
            assert_eq!(c.deflate(), Some(&AGREED));
            assert_eq!(ctx().deflate(), None);
        }
    }

    #[test]
    fn binary_is_not_utf8_checked() {
        let wire = encode_client_frame(true, OpCode::Binary, &[0xff, 0xfe], KEY);
        assert_eq!(
            feed(&mut ctx(), &[&wire]).unwrap(),
            vec![Incoming::Binary(vec![0xff, 0xfe])]
        );
    }
}
