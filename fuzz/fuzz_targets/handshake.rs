//! The HTTP upgrade request parser and validator, on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickwire::ws::handshake::{self, Head};

fuzz_target!(|data: &[u8]| {
    match handshake::parse_request(data) {
        Ok(Head::Complete(req, n)) => {
            assert!(n <= data.len());
            let _ = req.path();
            let _ = req.query();
            let _ = req.offered_protocols().count();
            let _ = req.content_length();
            if let Ok(accept) = handshake::validate_upgrade(&req) {
                assert_eq!(accept.len(), 28);
            }
        }
        Ok(Head::Partial) => assert!(data.len() < handshake::MAX_HEAD),
        Err(e) => {
            let resp = e.response();
            assert!(resp.starts_with(b"HTTP/1.1 4"));
        }
    }
});
