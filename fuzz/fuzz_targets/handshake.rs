//! HTTP request heads (the `http` layer) and the WebSocket upgrade checks, on any bytes: a head
//! parses, asks for more, or is refused with a 4xx; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickwire::http::{self, Status, MAX_HEAD};
use tickwire::ws::{deflate, handshake};

fuzz_target!(|data: &[u8]| {
    match http::parse(data) {
        Ok(Status::Complete(req, n)) => {
            assert!(n <= data.len() && n <= MAX_HEAD);
            let _ = req.path();
            let _ = req.query_param("subscribe");
            let _ = req.keep_alive();
            let _ = handshake::offered_protocols(&req).count();
            // An accepted offer's answer is itself an acceptable offer of the same parameters.
            if let Some(params) = handshake::negotiate_deflate(&req) {
                let answer = params.response();
                assert_eq!(deflate::negotiate([answer.as_str()]), Some(params));
            }
            if let Err(e) = req.body_length() {
                assert!(matches!(e.status(), 400 | 411));
            }
            match handshake::validate_upgrade(&req) {
                Ok(accept) => assert_eq!(accept.len(), 28),
                Err(e) => assert!(e.response().encode(false).starts_with(b"HTTP/1.1 4")),
            }
        }
        Ok(Status::Partial) => assert!(data.len() < MAX_HEAD),
        Err(e) => assert!(e.response().encode(false).starts_with(b"HTTP/1.1 4")),
    }
});
