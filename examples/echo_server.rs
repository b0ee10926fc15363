//! A WebSocket echo server on tickwire's engine, for the Autobahn conformance suite.
//!
//! Usage: `cargo run --release --example echo_server -- [ADDR] [MAX_MESSAGE_BYTES] [COMPRESS_MIN|off]`
//! (defaults `127.0.0.1:9001`, 16 MiB and 0). Port 0 picks a free port. permessage-deflate is
//! negotiated with clients that offer it, and every echoed message is sent compressed
//! (COMPRESS_MIN 0, so that the suite's small messages exercise it too; `off` negotiates
//! nothing). An uncompressed echo would be valid too (RSV1 says per message whether it is
//! compressed), but kosoku 0.1.0 reports the 12.* and 13.* cases that get one as errors
//! ("Strings must be encoded before hashing", in the case's own Python). The first line on stdout is `listening on ws://HOST:PORT`. Runs until
//! killed.

use std::io::Write;
use std::net::SocketAddr;

use tickwire::server::{echo::Echo, Limits, Server, ServerConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = match args.next().as_deref().unwrap_or("127.0.0.1:9001").parse() {
        Ok(a) => a,
        Err(e) => exit(&format!("ADDR must be host:port: {e}")),
    };
    let max_message: usize = match args.next().as_deref().unwrap_or("16777216").parse() {
        Ok(n) => n,
        Err(e) => exit(&format!("MAX_MESSAGE_BYTES must be a number: {e}")),
    };
    let compress_min = match args.next().as_deref().unwrap_or("0") {
        "off" => None,
        n => match n.parse::<usize>() {
            Ok(n) => Some(n),
            Err(e) => exit(&format!("COMPRESS_MIN must be a number or off: {e}")),
        },
    };
    let mut config = ServerConfig::default();
    config.compression = compress_min.is_some();
    config.compress_min = compress_min.unwrap_or(0);
    config.limits = Limits {
        max_frame: max_message as u64,
        max_message,
    };
    // An echo server holds a whole message on the way back out.
    config.read_pause_bytes = max_message.max(256 * 1024);
    config.max_outbound_bytes = max_message.saturating_mul(4).max(4 * 1024 * 1024);
    let server = match Server::start(config, &[addr.into()], |_| Echo) {
        Ok(s) => s,
        Err(e) => exit(&format!("cannot listen on {addr}: {e}")),
    };
    println!("listening on ws://{}", server.local_addrs()[0]);
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}

fn exit(msg: &str) -> ! {
    eprintln!("echo_server: {msg}");
    std::process::exit(2);
}
