//! permessage-deflate (RFC 7692), sans-IO: which offer to accept and what to answer, how the
//! server compresses a message, and how a client's compressed message is inflated.
//!
//! The server never uses context takeover: every message it sends is compressed on its own, so
//! one compression of a publication serves every subscriber that negotiated the same window
//! ([`compressed_frame`], [`window_bits_for`]). The client may use context takeover (each of its
//! messages may refer back to the ones before); the read side keeps only the bytes that can be
//! referred to ([`InflateContext`]), not an inflater, between messages.
//!
//! The deflate implementation is flate2 on zlib-rs (pure Rust; BENCHMARKS.md, "permessage-deflate:
//! which deflate", has the measurements behind the choice and the level).

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::extensions::{self, Offer};
use super::frame::{encode_server_header, OpCode, MAX_SERVER_HEADER};

/// The extension's registered name.
pub const EXTENSION: &str = "permessage-deflate";

/// The compression level. zlib-rs level 1 (deflate_quick) only has the fixed Huffman codes: on a
/// 548-byte quote it gives 415 bytes in ~4 µs of CPU; level 2 (deflate_fast, codes built per
/// message) gives 336 bytes in ~10 µs, the size level 6 gives, and on larger messages in much
/// less time than level 6. Market data is compressed once and delivered many times: the bytes
/// saved on every delivery are worth the few µs (BENCHMARKS.md, "permessage-deflate: which
/// deflate").
pub const LEVEL: u32 = 2;

/// What a compressed message's data ends with before it is sent, and what the receiver appends
/// back (RFC 7692 7.2.1 and 7.2.2): the `LEN`/`NLEN` of an empty stored block.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The largest window, and the only one the server uses unless a client limits it.
pub const MAX_WINDOW_BITS: u8 = 15;

/// The parameters agreed with one client. The server never uses context takeover: the response
/// always carries `server_no_context_takeover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// `server_max_window_bits` when the client's offer had it (9..=15): the server compresses
    /// with that window. `None`: 15, and the response does not name it.
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits` when the client's offer gave it a value (8..=15): the client
    /// compresses with at most that window. `None`: at most 15.
    pub client_max_window_bits: Option<u8>,
    /// The client offered `client_no_context_takeover`: each of its messages stands alone, and
    /// nothing is kept between them.
    pub client_no_context_takeover: bool,
}

impl DeflateParams {
    /// The window the server compresses with, in bits.
    pub fn server_window_bits(&self) -> u8 {
        self.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS)
    }

    /// The largest window the client may compress with, in bits.
    pub fn client_window_bits(&self) -> u8 {
        self.client_max_window_bits.unwrap_or(MAX_WINDOW_BITS)
    }

    /// The `Sec-WebSocket-Extensions` value of the 101 that accepts the offer.
    pub fn response(&self) -> String {
        // "A server MAY include the "server_no_context_takeover" extension parameter in an
        // extension negotiation response even if the extension negotiation offer being accepted
        // by the extension negotiation response didn't include the "server_no_context_takeover"
        // extension parameter." (7.1.1.1) We always do: every message is compressed alone.
        let mut out = format!("{EXTENSION}; server_no_context_takeover");
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            out.push_str(&format!("; server_max_window_bits={bits}"));
        }
        if let Some(bits) = self.client_max_window_bits {
            out.push_str(&format!("; client_max_window_bits={bits}"));
        }
        out
    }
}

/// Chooses from the `Sec-WebSocket-Extensions` values of a request (every header line, in
/// order): the first permessage-deflate offer this server accepts, or `None` (no compression).
/// Offers of other extensions, broken offers and offers this server declines are skipped.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<DeflateParams> {
    extensions::parse(values)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|o| o.name.eq_ignore_ascii_case(EXTENSION))
        .find_map(|o| accept(&o))
}

/// The parameters for one permessage-deflate offer, or `None` to decline it.
///
/// "A server MUST decline an extension negotiation offer for this extension if any of the
/// following conditions are met: The negotiation offer contains an extension parameter not
/// defined for use in an offer. The negotiation offer has an extension parameter with an invalid
/// value. The negotiation offer has multiple extension parameters with the same name. The server
/// doesn't support the offered configuration." (RFC 7692 7.1)
pub fn accept(offer: &Offer<'_>) -> Option<DeflateParams> {
    let mut server_no_context_takeover = false;
    let mut client_no_context_takeover = false;
    let mut server_max_window_bits: Option<u8> = None;
    let mut client_max_window_bits: Option<Option<u8>> = None;
    for p in &offer.params {
        let value = p.value.as_deref();
        let is = |name: &str| p.name.eq_ignore_ascii_case(name);
        if is("server_no_context_takeover") || is("client_no_context_takeover") {
            // "This extension parameter has no value." (7.1.1.1, 7.1.1.2)
            let seen = if is("server_no_context_takeover") {
                &mut server_no_context_takeover
            } else {
                &mut client_no_context_takeover
            };
            if *seen || value.is_some() {
                return None;
            }
            *seen = true;
        } else if is("server_max_window_bits") {
            // "This parameter has a decimal integer value without leading zeroes between 8 to
            // 15, inclusive" and, unlike client_max_window_bits, it must have one (7.1.2.1).
            if server_max_window_bits.is_some() {
                return None;
            }
            server_max_window_bits = Some(window_bits(value?)?);
        } else if is("client_max_window_bits") {
            // "This parameter has no value or a decimal integer value without leading zeroes
            // between 8 to 15 inclusive" (7.1.2.2).
            if client_max_window_bits.is_some() {
                return None;
            }
            client_max_window_bits = Some(match value {
                None => None,
                Some(v) => Some(window_bits(v)?),
            });
        } else {
            return None;
        }
    }
    // zlib, and zlib-rs after it, cannot compress with a 256-byte window: asked for 8 bits it
    // silently uses 9 (and refuses 8 outright for raw deflate), and a 9-bit stream is not valid
    // for a client that said it keeps only 256 bytes. "A server declines an extension
    // negotiation offer with this parameter if the server doesn't support it." (7.1.2.1) The
    // client's next offer, if any, is tried.
    if server_max_window_bits == Some(8) {
        return None;
    }
    // server_no_context_takeover needs nothing more: the response always has it.
    let _ = server_no_context_takeover;
    Some(DeflateParams {
        server_max_window_bits,
        // With a value, echo it: the client compresses within it anyway ("the client is not
        // going to use an LZ77 sliding window size greater than the size specified by the value
        // in the extension negotiation offer"), and saying so keeps the agreement explicit.
        // Without a value the server "MAY include" one of its choice; it does not: a large
        // window costs little here, as only the bytes the client actually sent are kept between
        // its messages ([`InflateContext`]). Without the parameter the response "MUST NOT
        // include" it, and does not.
        client_max_window_bits: client_max_window_bits.flatten(),
        // "the server may either ignore the parameter or use the parameter to avoid taking over
        // the LZ77 sliding window unnecessarily by including the "client_no_context_takeover"
        // extension parameter in the corresponding extension negotiation response" (7.1.1.2):
        // it is used, so nothing is kept between the client's messages.
        client_no_context_takeover,
    })
}

/// `8` to `15`, "without leading zeroes". A quoted value arrives unquoted.
fn window_bits(value: &str) -> Option<u8> {
    match value {
        "8" => Some(8),
        "9" => Some(9),
        "10" => Some(10),
        "11" => Some(11),
        "12" => Some(12),
        "13" => Some(13),
        "14" => Some(14),
        "15" => Some(15),
        _ => None,
    }
}

/// The window to compress a message of `payload_len` bytes with for a client that agreed
/// `agreed_bits`: 15 whenever the whole message fits in the agreed window, the agreed bits
/// otherwise. A broker building one compressed variant per window can key it by this, so that
/// most clients share the window-15 one.
///
/// This is safe: with no context takeover a message is compressed alone, so a back-reference can
/// only point into the same message, at most `payload_len - 1` bytes back, which is within a
/// window of `2^agreed_bits` bytes when `payload_len <= 2^agreed_bits` (RFC 1951 3.2.5: a
/// distance is counted back in the uncompressed stream; the receiver keeps that many bytes). The
/// bytes are then exactly a valid `agreed_bits` stream, only better compressed (zlib-rs with a
/// window of 2^w keeps matches within 2^w - 262 bytes). The `window_15_is_valid_for_any_window_
/// the_message_fits` test inflates such messages with the small windows.
pub fn window_bits_for(payload_len: usize, agreed_bits: u8) -> u8 {
    let agreed = agreed_bits.min(MAX_WINDOW_BITS);
    if payload_len <= 1usize << agreed {
        MAX_WINDOW_BITS
    } else {
        agreed
    }
}

thread_local! {
    /// One compressor per window size this thread has used (index `bits - 9`), reset before
    /// every message, which makes it the same as a new one: no context takeover. A new one per
    /// message costs ~40% more on a 500-byte quote (allocating and clearing ~250-380 KB).
    static COMPRESSORS: RefCell<[Option<Box<Compress>>; 7]> = const { RefCell::new([None, None, None, None, None, None, None]) };
    /// Where a message is compressed before its frame is built.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Scratch capacity kept between messages; a larger message's buffer is freed after it.
const SCRATCH_KEEP: usize = 256 * 1024;

/// Compresses one message for permessage-deflate with no context takeover and a window of
/// `2^window_bits` bytes (at most; see [`window_bits_for`]): the payload data of its first frame,
/// without the trailing `0x00 0x00 0xff 0xff` (RFC 7692 7.2.1). Window bits above 15 are taken
/// as 15. Below 9, which zlib cannot compress with, a message that fits the window is
/// compressed with 15 (safe, as above) and a larger one is sent as stored blocks (valid for any
/// window, and no smaller).
pub fn compress(payload: &[u8], window_bits: u8) -> Vec<u8> {
    with_compressed(payload, window_bits, <[u8]>::to_vec)
}

/// Compresses `payload` as [`compress`] does and hands the result to `f` from this thread's
/// scratch buffer, so that a frame is built with one copy.
fn with_compressed<R>(payload: &[u8], window_bits: u8, f: impl FnOnce(&[u8]) -> R) -> R {
    let bits = window_bits_for(payload.len(), window_bits);
    if bits < 9 {
        return f(&stored(payload));
    }
    let result = COMPRESSORS.with(|cs| {
        SCRATCH.with(|scratch| {
            let mut cs = cs.borrow_mut();
            let mut scratch = scratch.borrow_mut();
            let slot = &mut cs[usize::from(bits - 9)];
            let c = slot.get_or_insert_with(|| {
                Box::new(Compress::new_with_window_bits(
                    Compression::new(LEVEL),
                    false,
                    bits,
                ))
            });
            c.reset();
            let result = match deflate_sync(c, payload, &mut scratch)
                .and_then(|()| scratch.strip_suffix(&TAIL))
            {
                Some(deflated) => Ok(f(deflated)),
                None => {
                    // The compressor is in an unknown state: the next message gets a new one.
                    *slot = None;
                    Err(f)
                }
            };
            if scratch.capacity() > SCRATCH_KEEP {
                *scratch = Vec::new();
            }
            result
        })
    });
    // Z_SYNC_FLUSH always ends with the empty stored block; if zlib-rs ever failed, stored
    // blocks are still a valid message, never a panic in a worker.
    result.unwrap_or_else(|f| f(&stored(payload)))
}

/// Compresses `payload` and flushes with Z_SYNC_FLUSH into `out` (cleared first). `None` if the
/// compressor reports an error, which zlib-rs does only when misused.
fn deflate_sync(c: &mut Compress, payload: &[u8], out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    // Deflate's worst case (stored blocks) is 5 bytes per 64 KiB, plus the flush marker.
    out.reserve(payload.len() + payload.len() / 8192 + 64);
    let start = c.total_in();
    loop {
        let consumed = usize::try_from(c.total_in() - start).ok()?;
        let rest = payload.get(consumed..)?;
        c.compress_vec(rest, out, FlushCompress::Sync).ok()?;
        let consumed = usize::try_from(c.total_in() - start).ok()?;
        // "If deflate returns with avail_out == 0, this function must be called again with the
        // same value of the flush parameter and more output space ... make sure that avail_out
        // is greater than six to avoid repeated flush markers" (zlib.h).
        if consumed == payload.len() && out.capacity() - out.len() > 6 {
            return Some(());
        }
        out.reserve(out.capacity().max(1024));
    }
}

/// `payload` as stored (uncompressed) DEFLATE blocks (RFC 7692 7.2.3.3 has one), then the
/// header byte of the empty stored block whose `LEN`/`NLEN` are left off: `0x00` alone is an
/// empty message.
fn stored(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload.len() / 65535 * 5 + 6);
    for block in payload.chunks(usize::from(u16::MAX)) {
        let len = block.len() as u16;
        // BFINAL = 0, BTYPE = 00, the rest of the byte padding.
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.push(0x00);
    out
}

/// A whole server frame carrying `payload` compressed, for a client that agreed
/// permessage-deflate with server window `window_bits` ([`DeflateParams::server_window_bits`]).
/// RSV1 is set: "On a WebSocket connection where a PMCE is in use, this bit indicates whether a
/// message is compressed or not" (RFC 7692 6), so a plain frame stays valid for such a client
/// too. The same bytes serve every client with the same window (or any window the message fits,
/// [`window_bits_for`]): the server never uses context takeover. The opcode is the message's.
pub fn compressed_frame(opcode: OpCode, payload: &[u8], window_bits: u8) -> Vec<u8> {
    with_compressed(payload, window_bits, |deflated| {
        encode_compressed(opcode, deflated)
    })
}

fn encode_compressed(opcode: OpCode, deflated: &[u8]) -> Vec<u8> {
    let mut head = [0u8; MAX_SERVER_HEADER];
    let n = encode_server_header(true, opcode, deflated.len(), &mut head);
    head[0] |= 0x40;
    let mut out = Vec::with_capacity(n + deflated.len());
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(deflated);
    out
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past the message limit (1009). Inflation stopped there.
    TooBig,
    /// It is not valid DEFLATE data (or refers back further than the client's window).
    Invalid,
}

/// What the read side keeps of permessage-deflate: the agreed parameters and, with client
/// context takeover, the last bytes of the client's compressed messages (as many as its window,
/// and no more than it has sent), which its next message may refer back to. No inflater is kept
/// between messages: zlib-rs's costs ~47 KB whatever the window, the bytes kept here are usually
/// a few hundred for a subscriber (a new inflater costs about the same CPU as a reset one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InflateContext {
    params: DeflateParams,
    history: Vec<u8>,
}

impl InflateContext {
    pub fn new(params: DeflateParams) -> Self {
        InflateContext {
            params,
            history: Vec::new(),
        }
    }

    pub fn params(&self) -> &DeflateParams {
        &self.params
    }

    /// An inflater for the next compressed message, primed with what it may refer back to.
    pub fn begin(&self) -> Result<Inflater, InflateError> {
        Inflater::new(self.params.client_window_bits(), &self.history)
    }

    /// A compressed message was inflated whole: keep its end for the next one, unless the
    /// client agreed not to refer back ("If the "agreed parameters" contain the
    /// "client_no_context_takeover" extension parameter, the client ... MUST start compressing
    /// each new message with an empty LZ77 sliding window", 7.1.1.2).
    pub fn end(&mut self, message: &[u8]) {
        if self.params.client_no_context_takeover {
            return;
        }
        let window = 1usize << self.params.client_window_bits();
        if message.len() >= window {
            self.history.clear();
            self.history
                .extend_from_slice(&message[message.len() - window..]);
        } else {
            let keep = window - message.len();
            if self.history.len() > keep {
                self.history.drain(..self.history.len() - keep);
            }
            self.history.extend_from_slice(message);
        }
    }

    /// Bytes kept for the client's next message.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }
}

/// Inflates one compressed message as its pieces arrive, never holding more than the limit.
pub struct Inflater {
    d: Decompress,
    /// The DEFLATE stream ended (a block with BFINAL set): what follows is the rest of the
    /// empty block a sender that flushes that way adds (RFC 7692 7.2.3.4), and is ignored.
    ended: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("total_in", &self.d.total_in())
            .field("total_out", &self.d.total_out())
            .field("ended", &self.ended)
            .finish()
    }
}

impl Inflater {
    /// An inflater for a window of `2^window_bits` bytes, which may refer back into
    /// `dictionary` (the client's earlier messages). zlib cannot inflate with a 256-byte window
    /// either; a larger window inflates anything a smaller one can.
    pub fn new(window_bits: u8, dictionary: &[u8]) -> Result<Inflater, InflateError> {
        let mut d = Decompress::new_with_window_bits(false, window_bits.clamp(9, MAX_WINDOW_BITS));
        if !dictionary.is_empty() {
            d.set_dictionary(dictionary)
                .map_err(|_| InflateError::Invalid)?;
        }
        Ok(Inflater { d, ended: false })
    }

    /// Inflates a piece of the message's compressed data, appending to `out`, which never grows
    /// past `limit + 1` bytes: one byte over says the message is too big.
    pub fn inflate(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let cap = limit.saturating_add(1);
        while !self.ended {
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            if out.len() == out.capacity() {
                let want = (out.capacity() * 2).max(1024).min(cap);
                out.reserve_exact(want - out.len());
            }
            let (in_before, out_before) = (self.d.total_in(), out.len());
            let status = self
                .d
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Invalid)?;
            let used = usize::try_from(self.d.total_in() - in_before).unwrap_or(input.len());
            input = input.get(used..).unwrap_or_default();
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            if status == Status::StreamEnd {
                self.ended = true;
            } else if input.is_empty() && out.len() < out.capacity() {
                // Everything taken, and room left over: all the output there is so far is out.
                return Ok(());
            } else if used == 0 && out.len() == out_before && out.len() < out.capacity() {
                // No progress with input and room: not DEFLATE data zlib can go on with.
                return Err(InflateError::Invalid);
            }
        }
        Ok(())
    }

    /// The message's last frame has been inflated: appends the four octets the sender removed
    /// ("Append 4 octets of 0x00 0x00 0xff 0xff to the tail end of the payload of the message.
    /// Decompress the resulting data using DEFLATE.", 7.2.2).
    pub fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        self.inflate(&TAIL, out, limit)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn offer(header: &str) -> Option<DeflateParams> {
        negotiate([header])
    }

    const DEFAULT: DeflateParams = DeflateParams {
        server_max_window_bits: None,
        client_max_window_bits: None,
        client_no_context_takeover: false,
    };

    #[test]
    fn every_parameter_is_honoured() {
        assert_eq!(offer("permessage-deflate"), Some(DEFAULT));
        assert_eq!(
            offer("permessage-deflate; server_no_context_takeover"),
            Some(DEFAULT)
        );
        assert_eq!(
            offer("permessage-deflate; client_no_context_takeover"),
            Some(DeflateParams {
                client_no_context_takeover: true,
                ..DEFAULT
            })
        );
        assert_eq!(
            offer("permessage-deflate; client_max_window_bits"),
            Some(DEFAULT)
        );
        assert_eq!(
            offer("permessage-deflate; client_max_window_bits=8"),
            Some(DeflateParams {
                client_max_window_bits: Some(8),
                ..DEFAULT
            })
        );
        for bits in 9..=15u8 {
            let p = offer(&format!(
                "permessage-deflate; server_max_window_bits={bits}"
            ))
            .expect("accepted");
            assert_eq!(p.server_max_window_bits, Some(bits));
            assert_eq!(p.server_window_bits(), bits);
        }
        assert_eq!(
            offer(r#"Permessage-Deflate; SERVER_MAX_WINDOW_BITS="10"; Client_Max_Window_Bits"#),
            Some(DeflateParams {
                server_max_window_bits: Some(10),
                ..DEFAULT
            })
        );
    }

    #[test]
    fn bad_offers_are_declined() {
        for bad in [
            "permessage-deflate; unknown",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; CLIENT_NO_CONTEXT_TAKEOVER",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"\"",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; server_max_window_bits=\" 9\"",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=x",
            // zlib cannot compress with a 256-byte window.
            "permessage-deflate; server_max_window_bits=8",
            // A broken offer.
            "permessage-deflate; server_max_window_bits=\"10",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(offer(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_first_acceptable_offer_wins() {
        // Autobahn 13.7's offers, then a declined one before an acceptable one, over two lines.
        let p = negotiate([
            "permessage-deflate; client_no_context_takeover; client_max_window_bits; \
             server_no_context_takeover; server_max_window_bits=9, \
             permessage-deflate; server_no_context_takeover, permessage-deflate",
        ]);
        assert_eq!(
            p,
            Some(DeflateParams {
                server_max_window_bits: Some(9),
                client_no_context_takeover: true,
                ..DEFAULT
            })
        );
        let p = negotiate([
            "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; bogus, permessage-deflate; client_max_window_bits=12",
        ]);
        assert_eq!(
            p,
            Some(DeflateParams {
                client_max_window_bits: Some(12),
                ..DEFAULT
            })
        );
        assert_eq!(negotiate(Vec::<&str>::new()), None);
    }

    #[test]
    fn the_response_names_what_was_agreed() {
        assert_eq!(
            DEFAULT.response(),
            "permessage-deflate; server_no_context_takeover"
        );
        let all = DeflateParams {
            server_max_window_bits: Some(10),
            client_max_window_bits: Some(9),
            client_no_context_takeover: true,
        };
        assert_eq!(
            all.response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9"
        );
        // The response is itself a valid offer of the same parameters.
        assert_eq!(negotiate([all.response().as_str()]), Some(all));
    }

    /// Inflates `data` (without the tail) with a fresh inflater of `bits`, as a client would.
    fn inflate_alone(data: &[u8], bits: u8) -> Result<Vec<u8>, InflateError> {
        let mut i = Inflater::new(bits, &[])?;
        let mut out = Vec::new();
        i.inflate(data, &mut out, usize::MAX - 1)?;
        i.finish(&mut out, usize::MAX - 1)?;
        Ok(out)
    }

    fn quote(i: usize) -> String {
        format!(
            r#"{{"type":"msg","topic":"quotes/AAPL","seq":{i},"data":{{"bid":{}.12,"ask":{}.14,"bids":[[189.12,300],[189.11,800]]}}}}"#,
            180 + i % 17,
            181 + i % 13
        )
    }

    #[test]
    fn compress_round_trips_every_window_and_size() {
        let json: String = (0..400).map(quote).collect();
        let noise: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for bits in 9..=15u8 {
            for len in [0usize, 1, 100, 511, 512, 513, 5000, json.len()] {
                let msg = &json.as_bytes()[..len];
                let z = compress(msg, bits);
                assert!(!z.ends_with(&TAIL), "the tail is removed");
                assert_eq!(
                    inflate_alone(&z, bits).unwrap(),
                    msg,
                    "bits {bits} len {len}"
                );
            }
            let z = compress(&noise, bits);
            assert_eq!(inflate_alone(&z, bits).unwrap(), noise);
        }
        // Compression is per message: the same input gives the same bytes every time, whatever
        // came before on this thread.
        let a = compress(json.as_bytes(), 15);
        compress(b"something else entirely", 15);
        assert_eq!(compress(json.as_bytes(), 15), a);
        let mut fresh = Compress::new_with_window_bits(Compression::new(LEVEL), false, 15);
        let mut out = Vec::with_capacity(json.len() + 1024);
        fresh
            .compress_vec(json.as_bytes(), &mut out, FlushCompress::Sync)
            .unwrap();
        assert_eq!(out.strip_suffix(&TAIL), Some(a.as_slice()), "reset = new");
        // A quote shrinks.
        let q = quote(7);
        assert!(compress(q.as_bytes(), 15).len() < q.len());
    }

    #[test]
    fn window_15_is_valid_for_any_window_the_message_fits() {
        // Repetitive data full of long back-references, at every length up to the window.
        for bits in 9..=12u8 {
            let window = 1usize << bits;
            assert_eq!(window_bits_for(window, bits), 15);
            assert_eq!(window_bits_for(window + 1, bits), bits);
            for len in [window / 3, window - 1, window] {
                let msg: Vec<u8> = (0..len)
                    .map(|i| b"abcabcabdx"[i % 10] ^ (i / 97) as u8)
                    .collect();
                let z = compress(&msg, 15);
                assert_eq!(
                    inflate_alone(&z, bits).unwrap(),
                    msg,
                    "bits {bits} len {len}"
                );
            }
        }
        // And a message larger than the window really is compressed within it.
        let msg: Vec<u8> = (0..5000)
            .map(|i| b"0123456789"[(i * 7) % 10] ^ (i / 600) as u8)
            .collect();
        let z = compress(&msg, 9);
        assert_eq!(inflate_alone(&z, 9).unwrap(), msg);
    }

    #[test]
    fn windows_below_9_fall_back_safely() {
        let short = vec![b'a'; 256];
        let long = vec![b'a'; 300];
        // A short message fits the window: compressed.
        assert!(compress(&short, 8).len() < 20);
        // A long one is stored: valid for any window.
        let z = compress(&long, 8);
        assert_eq!(z.len(), 300 + 5 + 1);
        assert_eq!(inflate_alone(&z, 9).unwrap(), long);
        assert_eq!(stored(b""), [0x00]);
        let big = vec![7u8; 70_000];
        assert_eq!(inflate_alone(&stored(&big), 15).unwrap(), big);
    }

    #[test]
    fn compressed_frames_carry_rsv1() {
        let q = quote(1);
        let f = compressed_frame(OpCode::Text, q.as_bytes(), 15);
        assert_eq!(f[0], 0xc1, "FIN, RSV1, text");
        let len = usize::from(f[1]);
        assert_eq!(f.len(), 2 + len);
        assert_eq!(inflate_alone(&f[2..], 15).unwrap(), q.as_bytes());
        // A longer one, with the 16-bit length form.
        let long: Vec<u8> = (0..70_000u64).map(|i| (i * i % 251) as u8).collect();
        let f = compressed_frame(OpCode::Binary, &long, 12);
        assert_eq!(f[0], 0xc2, "FIN, RSV1, binary");
        assert_eq!(f[1], 126);
        let len = usize::from(u16::from_be_bytes([f[2], f[3]]));
        assert_eq!(f.len(), 4 + len);
        assert_eq!(inflate_alone(&f[4..], 12).unwrap(), long);
        // Compressing a few bytes makes them longer, and is still valid.
        let f = compressed_frame(OpCode::Text, b"hi", 15);
        assert_eq!(f[0], 0xc1);
        assert_eq!(inflate_alone(&f[2..], 15).unwrap(), b"hi");
        // The RFC's example: "Hello" compressed is f2 48 cd c9 c9 07 00 (7.2.3.1).
        let mut i = Inflater::new(15, &[]).unwrap();
        let mut out = Vec::new();
        i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        i.finish(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn rfc_examples_inflate() {
        for (data, what) in [
            // 7.2.3.3: "Hello" in a stored block.
            (
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                ][..],
                "stored",
            ),
            // 7.2.3.4: a block with BFINAL set, then the start of the empty block.
            (&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00], "BFINAL"),
            // 7.2.3.5: two blocks, "He" and "llo", flushed in between.
            (
                &[
                    0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
                ],
                "two blocks",
            ),
        ] {
            assert_eq!(inflate_alone(data, 15).unwrap(), b"Hello", "{what}");
        }
        // 7.2.3.2's two messages with context takeover: the second refers back to the first.
        let mut ctx = InflateContext::new(DEFAULT);
        for data in [
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..],
            &[0xf2, 0x00, 0x11, 0x00, 0x00],
        ] {
            let mut i = ctx.begin().unwrap();
            let mut out = Vec::new();
            i.inflate(data, &mut out, 100).unwrap();
            i.finish(&mut out, 100).unwrap();
            assert_eq!(out, b"Hello");
            ctx.end(&out);
        }
        // An empty message: the empty stored block's header byte alone.
        assert_eq!(inflate_alone(&[0x00], 15).unwrap(), b"");
    }

    /// A client's compressor with context takeover: one stream, flushed per message.
    pub(crate) fn client_stream(msgs: &[&[u8]], bits: u8) -> Vec<Vec<u8>> {
        let mut c = Compress::new_with_window_bits(Compression::new(6), false, bits);
        msgs.iter()
            .map(|m| {
                let mut out = Vec::with_capacity(m.len() + 1024);
                c.compress_vec(m, &mut out, FlushCompress::Sync).unwrap();
                out.truncate(out.len() - 4);
                out
            })
            .collect()
    }

    #[test]
    fn client_context_takeover_keeps_only_the_window() {
        let msgs: Vec<String> = (0..50).map(quote).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_bytes()).collect();
        for bits in [9u8, 15] {
            let params = DeflateParams {
                client_max_window_bits: Some(bits),
                ..DEFAULT
            };
            let mut ctx = InflateContext::new(params);
            let wire = client_stream(&refs, bits);
            // Later messages are mostly back-references: much smaller than the first.
            assert!(wire[49].len() * 2 < wire[0].len(), "{}", wire[49].len());
            for (data, expect) in wire.iter().zip(&refs) {
                let mut i = ctx.begin().unwrap();
                let mut out = Vec::new();
                // In pieces, as frames arrive.
                for piece in data.chunks(7) {
                    i.inflate(piece, &mut out, 1 << 20).unwrap();
                }
                i.finish(&mut out, 1 << 20).unwrap();
                assert_eq!(&out, expect);
                ctx.end(&out);
                assert!(ctx.history_len() <= 1 << bits);
            }
        }
        // Without the history, a back-reference is invalid data.
        let wire = client_stream(&refs[..2], 15);
        assert_eq!(inflate_alone(&wire[1], 15), Err(InflateError::Invalid));
        // With client_no_context_takeover nothing is kept.
        let mut ctx = InflateContext::new(DeflateParams {
            client_no_context_takeover: true,
            ..DEFAULT
        });
        ctx.end(b"anything");
        assert_eq!(ctx.history_len(), 0);
    }

    /// `mib` MiB of zeros, compressed: a sync-flushed compression of 1 MiB of zeros refers
    /// back only into itself, so copies of it one after the other inflate to copies of it.
    pub(crate) fn zip_bomb(mib: usize) -> Vec<u8> {
        let mut c = Compress::new_with_window_bits(Compression::new(9), false, 15);
        let mut piece = Vec::with_capacity(1 << 16);
        c.compress_vec(&vec![0u8; 1 << 20], &mut piece, FlushCompress::Sync)
            .unwrap();
        let mut bomb = piece.repeat(mib);
        bomb.truncate(bomb.len() - TAIL.len());
        bomb
    }

    #[test]
    fn a_zip_bomb_stops_at_the_limit() {
        // 64 MiB of zeros in ~64 KB.
        let bomb = zip_bomb(64);
        assert!(bomb.len() < 100_000, "{}", bomb.len());
        for limit in [0usize, 1, 1000, 65_536] {
            let mut i = Inflater::new(15, &[]).unwrap();
            let mut out = Vec::new();
            let err = bomb
                .chunks(4096)
                .try_for_each(|piece| i.inflate(piece, &mut out, limit))
                .and_then(|()| i.finish(&mut out, limit));
            assert_eq!(err, Err(InflateError::TooBig), "limit {limit}");
            // Never allocated past the limit (and the byte that says so).
            assert!(out.capacity() <= limit + 1, "{} > {limit}", out.capacity());
        }
        // Exactly at the limit is fine.
        let z = compress(&[b'x'; 5000], 15);
        let mut i = Inflater::new(15, &[]).unwrap();
        let mut out = Vec::new();
        i.inflate(&z, &mut out, 5000).unwrap();
        i.finish(&mut out, 5000).unwrap();
        assert_eq!(out.len(), 5000);
    }

    #[test]
    fn garbage_is_invalid() {
        // BTYPE = 11 is reserved.
        assert_eq!(
            inflate_alone(&[0xff, 0xff, 0xff], 15),
            Err(InflateError::Invalid)
        );
        // A distance before the start of the data.
        assert_eq!(
            inflate_alone(&[0xf2, 0x00, 0x11, 0x00, 0x00], 15),
            Err(InflateError::Invalid)
        );
    }
}
