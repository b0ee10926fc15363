//! Helpers shared by the integration tests: servers on free ports, clients with timeouts,
//! polling, raw sockets that write exact bytes.
//!
//! - `broker`: a broker on free ports, JSON subscribers, a small HTTP client, metrics.
//! - `redis`: a real redis-server on a free port.
//! - `child`: the `tickwire` binary as a child process, its banner, its fds and memory.
//! - `http`: a keep-alive HTTP/1.1 client, answers read by `Content-Length`.
//! - `auth`: token keys and minted JWTs; `tls`: a test CA, server certificates, TLS clients.
#![allow(dead_code)]

pub mod auth;
pub mod broker;
pub mod child;
pub mod http;
pub mod redis;
pub mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tickwire::server::{echo::Echo, Server, ServerConfig};

/// An echo server on a free loopback port, two workers, the defaults adjusted by `f`.
pub fn start_echo(f: impl FnOnce(&mut ServerConfig)) -> Server {
    let mut config = ServerConfig::default();
    config.workers = 2;
    f(&mut config);
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
    Server::start(config, &[addr.into()], |_| Echo).expect("echo server starts")
}

pub type Client = tungstenite::WebSocket<TcpStream>;

/// A tungstenite client connected to `ws://addr{path}`, with a read timeout.
pub fn connect(addr: SocketAddr, path: &str) -> Client {
    let stream = TcpStream::connect(addr).expect("tcp connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let (ws, _) = tungstenite::client(format!("ws://{addr}{path}"), stream).expect("handshake");
    ws
}

/// Waits until `check` holds, for at most `limit`.
pub fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A raw TCP connection with a read timeout, for tests that write exact bytes.
pub fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("tcp connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

/// Reads until the peer closes (or the timeout), returning everything read.
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read before close: {e} (got {} bytes)", out.len()),
        }
    }
}

/// A valid upgrade request for `path`.
pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Does the upgrade on a raw socket and returns it positioned after the 101 response.
pub fn raw_websocket(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = raw(addr);
    s.write_all(upgrade_request(path).as_bytes())
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("101 response");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// Reads one unmasked server frame: (opcode, payload).
pub fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).expect("len16");
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).expect("len64");
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).expect("payload");
    (h[0] & 0x0f, payload)
}

/// The close code of a close frame payload.
pub fn close_code(payload: &[u8]) -> u16 {
    assert!(payload.len() >= 2, "close frame without a code");
    u16::from_be_bytes([payload[0], payload[1]])
}
