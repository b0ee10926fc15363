//! The frame codec with message assembly: any bytes, cut into pieces at points taken from the
//! input, must give the same events (or the same error) as the whole stream at once; with
//! permessage-deflate negotiated or not (the second byte of the input says which and how).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickwire::ws::deflate::DeflateParams;
use tickwire::ws::{Incoming, Limits, ProtocolError, WsContext};

fn run(pieces: &[&[u8]], deflate: Option<DeflateParams>) -> (Vec<Incoming>, Option<ProtocolError>) {
    let mut ctx = WsContext::new(Limits {
        max_frame: 1 << 16,
        max_message: 1 << 18,
    })
    .with_deflate(deflate);
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
    let [cut, mode, stream @ ..] = data else {
        return;
    };
    // Low bit: deflate negotiated; then client_no_context_takeover and a small client window.
    let deflate = (mode & 1 == 1).then(|| DeflateParams {
        server_max_window_bits: None,
        client_max_window_bits: (mode & 4 == 4).then_some(9),
        client_no_context_takeover: mode & 2 == 2,
    });
    let whole = run(&[stream], deflate);
    let at = usize::from(*cut).min(stream.len());
    let split = run(&[&stream[..at], &stream[at..]], deflate);
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
