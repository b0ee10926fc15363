//! Close codes (RFC 6455 section 7.4) and the payload of close frames.

use super::utf8;

/// A close status code. The constants are the ones this crate sends; any valid received code
/// is kept as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the server is going away (shutdown).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: no code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1007: a text message that is not UTF-8.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: policy violation (slow consumer, forbidden origin, abuse).
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message or frame bigger than the configured limit.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL: CloseCode = CloseCode(1011);

    /// Whether a peer may send this code in a close frame. 1004, 1005, 1006 and 1015 are reserved
    /// and "MUST NOT be set as a status code in a Close control frame by an endpoint"; 0-999 are
    /// not used; 1016-2999 are reserved for future RFCs; 3000-4999 belong to libraries and
    /// applications.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Why a close frame payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosePayloadError {
    /// A one-byte payload cannot hold a code (1002).
    Truncated,
    /// A code that may not be sent (1002).
    InvalidCode(u16),
    /// A reason that is not UTF-8 (1007).
    InvalidReason,
}

/// Parses a received close payload: empty, or a 2-byte code then a UTF-8 reason.
/// Returns `None` for an empty payload (no status).
pub fn parse_payload(payload: &[u8]) -> Result<Option<(CloseCode, &str)>, ClosePayloadError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ClosePayloadError::Truncated),
        _ => {
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            if !code.is_valid_on_wire() {
                return Err(ClosePayloadError::InvalidCode(code.0));
            }
            let reason =
                std::str::from_utf8(&payload[2..]).map_err(|_| ClosePayloadError::InvalidReason)?;
            debug_assert!(utf8::is_valid(reason.as_bytes()));
            Ok(Some((code, reason)))
        }
    }
}

/// Builds a close payload: the code then the reason, cut to fit a 125-byte control frame on a
/// character boundary.
pub fn build_payload(code: CloseCode, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(2 + end);
    out.extend_from_slice(&code.0.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_codes() {
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(CloseCode(c).is_valid_on_wire(), "{c}");
        }
        for c in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(c).is_valid_on_wire(), "{c}");
        }
    }

    #[test]
    fn payload_parsing() {
        assert_eq!(parse_payload(b""), Ok(None));
        assert_eq!(parse_payload(&[3]), Err(ClosePayloadError::Truncated));
        assert_eq!(
            parse_payload(&[0x03, 0xe8]),
            Ok(Some((CloseCode::NORMAL, "")))
        );
        assert_eq!(
            parse_payload(&[0x03, 0xe8, b'o', b'k']),
            Ok(Some((CloseCode::NORMAL, "ok")))
        );
        assert_eq!(
            parse_payload(&[0x03, 0xed]),
            Err(ClosePayloadError::InvalidCode(1005))
        );
        assert_eq!(
            parse_payload(&[0x03, 0xe8, 0xff]),
            Err(ClosePayloadError::InvalidReason)
        );
    }

    #[test]
    fn built_payload_fits_a_control_frame_and_cuts_on_a_char_boundary() {
        let long = "é".repeat(100);
        let p = build_payload(CloseCode::POLICY, &long);
        assert!(p.len() <= 125);
        assert!(parse_payload(&p).is_ok());
    }
}
