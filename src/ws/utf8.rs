//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! RFC 6455 8.1: "When an endpoint is to interpret a byte stream as UTF-8 but finds that the byte
//! stream is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket
//! Connection_." We check every piece as it arrives (even the middle of one frame), so a bad byte is
//! caught at once, not after a 16 MiB message has been buffered. A code point split across pieces is
//! carried (at most 3 bytes) to the next piece.

/// The result of feeding bytes to the validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Utf8Error {
    /// The bytes can never be valid UTF-8, whatever follows.
    Invalid,
}

/// Validates a stream of bytes as UTF-8, piece by piece.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// The start of a code point cut off at the end of the last piece.
    carry: [u8; 4],
    carry_len: u8,
}

impl Utf8Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next piece. Fails on the first byte that cannot start or continue valid UTF-8,
    /// including a truncated sequence that is already known to be wrong.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), Utf8Error> {
        if self.carry_len > 0 {
            // Complete the pending code point with as many bytes as it needs.
            let have = self.carry_len as usize;
            let need = sequence_len(self.carry[0]).ok_or(Utf8Error::Invalid)?;
            let take = (need - have).min(input.len());
            self.carry[have..have + take].copy_from_slice(&input[..take]);
            let filled = have + take;
            match std::str::from_utf8(&self.carry[..filled]) {
                Ok(_) => {}
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix, still incomplete: input was exhausted.
                    self.carry_len = filled as u8;
                    return Ok(());
                }
                Err(_) => return Err(Utf8Error::Invalid),
            }
            self.carry_len = 0;
            input = &input[take..];
        }
        match std::str::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(Utf8Error::Invalid),
                None => {
                    // A valid prefix of a code point at the very end: keep it for the next piece.
                    let tail = &input[e.valid_up_to()..];
                    self.carry[..tail.len()].copy_from_slice(tail);
                    self.carry_len = tail.len() as u8;
                    Ok(())
                }
            },
        }
    }

    /// True when the bytes so far end on a code point boundary (the message may end here).
    pub fn is_complete(&self) -> bool {
        self.carry_len == 0
    }

    pub fn reset(&mut self) {
        self.carry_len = 0;
    }
}

/// How many bytes a sequence starting with `lead` has, or `None` if it cannot start one.
fn sequence_len(lead: u8) -> Option<usize> {
    match lead {
        0x00..=0x7f => Some(1),
        0xc2..=0xdf => Some(2),
        0xe0..=0xef => Some(3),
        0xf0..=0xf4 => Some(4),
        _ => None,
    }
}

/// Validates a whole buffer at once (close reasons, control payloads).
pub fn is_valid(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(bytes: &[u8], at: &[usize]) -> Result<bool, Utf8Error> {
        let mut v = Utf8Validator::new();
        let mut prev = 0;
        for &i in at.iter().chain(std::iter::once(&bytes.len())) {
            v.feed(&bytes[prev..i])?;
            prev = i;
        }
        Ok(v.is_complete())
    }

    #[test]
    fn valid_text_split_at_every_point_and_every_pair_of_points() {
        let text = "κόσμε 𝄞 €uro ascii \u{10FFFF}".as_bytes();
        for i in 0..=text.len() {
            assert_eq!(feed_split(text, &[i]), Ok(true), "split at {i}");
            for j in i..=text.len() {
                assert_eq!(feed_split(text, &[i, j]), Ok(true), "split at {i},{j}");
            }
        }
    }

    #[test]
    fn byte_by_byte_four_byte_sequence() {
        let mut v = Utf8Validator::new();
        for b in "𝄞".as_bytes() {
            assert!(v.feed(&[*b]).is_ok());
        }
        assert!(v.is_complete());
    }

    #[test]
    fn incomplete_at_end_is_not_complete() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(&[0xce, 0xba, 0xe1]).is_ok());
        assert!(!v.is_complete());
    }

    #[test]
    fn fails_fast_on_the_first_bad_byte() {
        // Autobahn 6.4.x: "κόσμε" then an invalid byte, with valid-looking data after it.
        let mut v = Utf8Validator::new();
        assert!(v.feed("κόσμε".as_bytes()).is_ok());
        assert_eq!(v.feed(&[0xf4, 0x90]), Err(Utf8Error::Invalid)); // > U+10FFFF
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xed]), Ok(()));
        assert_eq!(v.feed(&[0xa0]), Err(Utf8Error::Invalid)); // surrogate, caught mid-sequence
    }

    #[test]
    fn rejects_overlongs_surrogates_and_stray_bytes() {
        for bad in [
            &[0xc0, 0xaf][..],
            &[0xe0, 0x80, 0xaf],
            &[0xed, 0xa0, 0x80],
            &[0xf8, 0x88, 0x80, 0x80, 0x80],
            &[0x80],
            &[0xfe],
            &[0xff],
            &[0xf4, 0x90, 0x80, 0x80],
        ] {
            for i in 0..=bad.len() {
                assert_eq!(
                    feed_split(bad, &[i]),
                    Err(Utf8Error::Invalid),
                    "{bad:x?} at {i}"
                );
            }
        }
    }
}
