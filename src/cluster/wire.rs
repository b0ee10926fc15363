//! What tickwire keeps in Redis and how it reads it back: key and channel names, the two Lua
//! scripts, and the message format. Pure: no connection here.
//!
//! For a prefix `P` (default `tickwire`):
//!
//! | name | what |
//! |---|---|
//! | channel `P:<topic>` | every publication of the topic, as a message below |
//! | hash `P:seq` | field topic, value its last sequence number |
//! | hash `P:last` | field topic, value its last publication, as a message below |
//! | channel `P: barrier` | shutdown markers (never a topic: topics hold no space) |
//!
//! A message is `tw1 <seq> <topic>\n<payload>`: a format tag, the decimal sequence number, the
//! topic (which holds no whitespace), a newline, then the JSON payload as published. The topic
//! travels in the message as well as in the channel so that the `last` hash needs no other
//! format, and so that a message is checked against the channel it came on.

use std::fmt::Write as _;

use sha1::{Digest, Sha1};

/// The format tag that starts every message; a new format gets a new tag.
const TAG: &[u8] = b"tw1 ";

/// Assigns the next seq of each topic, stores the publication as the topic's last value, and
/// publishes it, for every (topic, payload) pair, in one atomic step: Redis runs a script alone,
/// so every node sees the same seq for the same update, in the same order. `KEYS[1]` is the seq
/// hash, `KEYS[2]` the last-value hash, `ARGV[1]` the channel prefix (`P:`), then topic and
/// payload pairs (checked by the node before). Returns the seqs, in order.
///
/// Redis does not undo a script's writes when a later command in it fails, so a batch first
/// checks that every seq can be incremented (only a foreign write into the seq hash could stop
/// it) and writes nothing otherwise. A single publication needs no such check: its first write
/// is the one that would fail.
pub const PUBLISH_SCRIPT: &str = r#"
if #ARGV > 3 then
  for i = 2, #ARGV, 2 do
    local have = redis.call('HGET', KEYS[1], ARGV[i])
    if have and not string.match(have, '^%d+$') then
      return redis.error_reply('ERR the seq of ' .. ARGV[i] .. ' in ' .. KEYS[1] ..
        ' is not a whole number: nothing of the batch was published')
    end
  end
end
local seqs = {}
for i = 2, #ARGV, 2 do
  local topic, payload = ARGV[i], ARGV[i + 1]
  local seq = redis.call('HINCRBY', KEYS[1], topic, 1)
  local msg = 'tw1 ' .. string.format('%d', seq) .. ' ' .. topic .. '\n' .. payload
  redis.call('HSET', KEYS[2], topic, msg)
  redis.call('PUBLISH', ARGV[1] .. topic, msg)
  seqs[#seqs + 1] = seq
end
return seqs
"#;

/// Raises Redis's seq and last value of each topic to a node's own where Redis has less: after
/// Redis lost its data (a restart without persistence, a failover to a replica that was behind),
/// the nodes give it back what they hold, so seqs keep growing and late nodes still get
/// snapshots. A no-op when Redis kept its data (it is never behind a node, which only learns
/// from it). `KEYS` as for [`PUBLISH_SCRIPT`]; `ARGV` is topic, seq, message triples. Returns
/// how many topics were raised.
pub const RECONCILE_SCRIPT: &str = r#"
local raised = 0
for i = 1, #ARGV, 3 do
  local topic, seq = ARGV[i], tonumber(ARGV[i + 1])
  local have = tonumber(redis.call('HGET', KEYS[1], topic) or '0') or 0
  if have < seq then
    redis.call('HSET', KEYS[1], topic, ARGV[i + 1])
    redis.call('HSET', KEYS[2], topic, ARGV[i + 2])
    raised = raised + 1
  end
end
return raised
"#;

/// The SHA1 of a script as Redis names it (`EVALSHA`), in lowercase hex.
pub fn script_sha(script: &str) -> String {
    let digest = Sha1::digest(script.as_bytes());
    let mut hex = String::with_capacity(40);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// The Redis names of one feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `P:`: a topic's channel is this followed by the topic.
    pub channel_prefix: String,
    /// `P:*`, for `PSUBSCRIBE`.
    pub pattern: String,
    /// `P:seq`
    pub seq: String,
    /// `P:last`
    pub last: String,
    /// `P: barrier`
    pub barrier: String,
    /// `P:epoch`: the feed's epoch, the same for every node (see `subscriber::sync_epoch`).
    pub epoch: String,
}

impl Keys {
    /// Names for `prefix`, which the config has checked holds no glob character.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            channel_prefix: format!("{prefix}:"),
            pattern: format!("{prefix}:*"),
            seq: format!("{prefix}:seq"),
            last: format!("{prefix}:last"),
            barrier: format!("{prefix}: barrier"),
            epoch: format!("{prefix}:epoch"),
        }
    }

    /// The topic a channel carries, if it is one of this feed's.
    pub fn topic_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(&self.channel_prefix)
    }
}

/// One publication as Redis carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub topic: &'a str,
    pub seq: u64,
    pub payload: &'a [u8],
}

/// The message for a publication (what [`PUBLISH_SCRIPT`] builds), for [`RECONCILE_SCRIPT`].
pub fn encode(topic: &str, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TAG.len() + 21 + topic.len() + 1 + payload.len());
    out.extend_from_slice(TAG);
    out.extend_from_slice(seq.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(topic.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// Reads a message. Checks its shape only: the caller checks the topic and payload as it would
/// any publication (anyone who can write to Redis can put bytes on our channels).
pub fn decode(bytes: &[u8]) -> Result<Message<'_>, String> {
    let rest = bytes.strip_prefix(TAG).ok_or_else(|| {
        format!(
            "does not start with \"tw1 \" (got {:?})",
            String::from_utf8_lossy(&bytes[..bytes.len().min(8)])
        )
    })?;
    let newline = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no newline after the topic")?;
    let (head, payload) = (&rest[..newline], &rest[newline + 1..]);
    let head = std::str::from_utf8(head).map_err(|e| format!("head is not UTF-8: {e}"))?;
    let (seq, topic) = head
        .split_once(' ')
        .ok_or("no space between the seq and the topic")?;
    // u64::from_str would take a leading '+'; Redis never writes one.
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("seq '{seq}' is not a decimal number"));
    }
    let seq: u64 = seq
        .parse()
        .map_err(|e| format!("seq '{seq}' is not a sequence number: {e}"))?;
    if seq == 0 {
        return Err("seq 0: sequence numbers start at 1".to_owned());
    }
    Ok(Message {
        topic,
        seq,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips() {
        let bytes = encode("quotes/BRK.B", 42, br#"{"bid":1,"note":"a\nb"}"#);
        assert_eq!(
            bytes,
            b"tw1 42 quotes/BRK.B\n{\"bid\":1,\"note\":\"a\\nb\"}"
        );
        let m = decode(&bytes).expect("decodes");
        assert_eq!(
            m,
            Message {
                topic: "quotes/BRK.B",
                seq: 42,
                payload: br#"{"bid":1,"note":"a\nb"}"#,
            }
        );
    }

    #[test]
    fn the_payload_may_hold_newlines_and_be_empty() {
        let m = decode(b"tw1 7 fx/EURUSD\n{\n\"a\": 1\n}\n").expect("decodes");
        assert_eq!(m.payload, b"{\n\"a\": 1\n}\n");
        assert_eq!(decode(b"tw1 1 t\n").expect("decodes").payload, b"");
    }

    #[test]
    fn the_largest_seq_survives() {
        let bytes = encode("t", u64::MAX, b"1");
        assert_eq!(decode(&bytes).expect("decodes").seq, u64::MAX);
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        let cases: [(&[u8], &str); 10] = [
            (b"", "does not start"),
            (b"tw2 1 t\n1", "does not start"),
            (b"tw1 1 t", "no newline"),
            (b"tw1 1\n1", "no space"),
            (b"tw1 x t\n1", "not a decimal"),
            (b"tw1 +1 t\n1", "not a decimal"),
            (b"tw1  t\n1", "not a decimal"),
            (b"tw1 0 t\n1", "start at 1"),
            (b"tw1 99999999999999999999 t\n1", "not a sequence number"),
            (b"tw1 1 \xff\n1", "not UTF-8"),
        ];
        for (bytes, expected) in cases {
            let err = decode(bytes).expect_err("refused");
            assert!(
                err.contains(expected),
                "{:?}: {err}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
            let mut tagged = TAG.to_vec();
            tagged.extend_from_slice(&bytes);
            let _ = decode(&tagged);
        }

        #[test]
        fn what_is_encoded_decodes_to_itself(
            topic in "[a-zA-Z0-9./_+#-]{1,40}",
            seq in 1u64..,
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let bytes = encode(&topic, seq, &payload);
            let m = decode(&bytes).expect("decodes");
            proptest::prop_assert_eq!(m, Message { topic: &topic, seq, payload: &payload });
        }
    }

    #[test]
    fn keys_and_channels() {
        let k = Keys::new("feed");
        assert_eq!(k.pattern, "feed:*");
        assert_eq!(k.seq, "feed:seq");
        assert_eq!(k.last, "feed:last");
        assert_eq!(k.topic_of("feed:quotes/AAPL"), Some("quotes/AAPL"));
        assert_eq!(k.topic_of("other:quotes/AAPL"), None);
        // The barrier channel matches the pattern but can never be a topic's.
        assert!(
            crate::broker::topic::validate_topic(k.topic_of(&k.barrier).unwrap_or("")).is_err()
        );
    }

    #[test]
    fn script_sha_is_what_redis_computes() {
        // `SCRIPT LOAD "return 1"` answers this in Redis 7.
        assert_eq!(
            script_sha("return 1"),
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
    }
}
