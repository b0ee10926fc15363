//! The frame codec with message assembly: any bytes, cut into pieces at points taken from the
//! input, must give the same events (or the same error) as the whole stream at once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickwire::ws::{Incoming, Limits, ProtocolError, WsContext};

fn run(pieces: &[&[u8]]) -> (Vec<Incoming>, Option<ProtocolError>) {
    let mut ctx = WsContext::new(Limits {
        max_frame: 1 << 16,
        max_message: 1 << 18,
    });
    let mut events = Vec::new();
    let mut pending = Vec::new();
    for piece in pieces {
        pending.extend_from_slice(piece);
        let mut pos = 0;
        loop {
            match ctx.read(&pending[pos..]) {
                Ok((n, Some(ev))) => {
                    pos += n;
                    events.push(ev);
                }
                Ok((n, None)) => {
                    pos += n;
                    break;
                }
                Err(e) => return (events, Some(e)),
            }
        }
        pending.drain(..pos);
        assert!(pending.len() <= 14, "only a partial header may be kept");
    }
    (events, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let whole = run(&[stream]);
    let at = (cut as usize).min(stream.len());
    let split = run(&[&stream[..at], &stream[at..]]);
    // An error found early in the split run may come with fewer events, never different ones.
    match (&whole.1, &split.1) {
        (None, None) => assert_eq!(whole.0, split.0),
        (Some(a), Some(b)) => {
            assert_eq!(a.code, b.code);
            assert_eq!(whole.0, split.0);
        }
        _ => panic!("whole {:?} vs split {:?}", whole.1, split.1),
    }
});
