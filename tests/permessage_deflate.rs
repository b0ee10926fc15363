//! permessage-deflate (RFC 7692) over real sockets, against the echo server, with a raw client
//! that sees the wire: what the 101 says, RSV1 on large messages and not on small ones, every
//! compressed message inflating on its own (a fresh inflater each: no server context takeover),
//! the client's context takeover honoured, plain frames for a client without the extension or a
//! server with it off, the zip bomb (1009, memory bounded) and the RSV1 rules (1002, 1007).
//!
//! tungstenite (0.24 here, 0.30 the newest) has no permessage-deflate: it serves as the client
//! that does not offer it.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tickwire::ws::frame::{encode_client_frame, OpCode};
use util::{close_code, connect, raw, start_echo};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Upgrades a raw socket, offering `extensions` if given; returns it after the 101 and the
/// `Sec-WebSocket-Extensions` value of the 101, if any.
fn upgrade(addr: SocketAddr, extensions: Option<&str>) -> (TcpStream, Option<String>) {
    upgrade_to(addr, "/ws", extensions)
}

/// One server frame: its first byte (FIN, RSV, opcode) and payload.
fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).expect("len16");
            usize::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).expect("len64");
            usize::try_from(u64::from_be_bytes(b)).expect("length")
        }
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).expect("payload");
    (h[0], payload)
}

/// A masked client frame, with RSV1 set if `compressed`.
fn client_frame(fin: bool, op: OpCode, payload: &[u8], compressed: bool) -> Vec<u8> {
    let mut f = encode_client_frame(fin, op, payload, KEY);
    if compressed {
        f[0] |= 0x40;
    }
    f
}

/// A client's compressor: with `takeover` its messages may refer back to earlier ones.
struct Deflater(Compress);

impl Deflater {
    fn new() -> Self {
        Deflater(Compress::new_with_window_bits(
            Compression::default(),
            false,
            15,
        ))
    }

    /// One message, flushed, the trailing 00 00 ff ff removed (RFC 7692 7.2.1).
    fn message(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 1024);
        self.0
            .compress_vec(data, &mut out, FlushCompress::Sync)
            .expect("deflate");
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }
}

/// Inflates one server message with a fresh inflater of `2^bits` bytes: it must need nothing
/// from the messages before it.
fn inflate_alone(data: &[u8], bits: u8) -> Vec<u8> {
    let mut d = Decompress::new_with_window_bits(false, bits);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(data.len() * 20 + 1024);
    loop {
        let before = d.total_in();
        d.decompress_vec(
            &input[d.total_in() as usize..],
            &mut out,
            FlushDecompress::Sync,
        )
        .expect("a valid DEFLATE stream on its own");
        if d.total_in() as usize == input.len() {
            return out;
        }
        assert!(d.total_in() > before || out.len() == out.capacity());
        out.reserve(out.capacity());
    }
}

fn quotes(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"topic":"quotes/S{i}","seq":{},"bid":{}.{:02},"ask":{}.{:02}}}"#,
                1000 + i * 7,
                100 + i % 50,
                i % 100,
                101 + i % 50,
                (i * 3) % 100
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// The close code the server answers `wire` with, reading past any other frame.
fn close_after(s: &mut TcpStream, wire: &[u8]) -> u16 {
    // The server may close before taking everything: a write error is part of the test.
    let _ = s.write_all(wire);
    loop {
        let (b0, payload) = read_frame(s);
        if b0 & 0x0f == 0x8 {
            assert_eq!(b0 & 0x70, 0, "a close frame is never compressed");
            return close_code(&payload);
        }
    }
}

#[test]
fn the_101_names_what_was_agreed() {
    let server = start_echo(|_| {});
    let addr = server.local_addrs()[0];
    let cases: &[(&str, Option<&str>)] = &[
        (
            "permessage-deflate; client_max_window_bits",
            Some("permessage-deflate; server_no_context_takeover"),
        ),
        (
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; \
             client_max_window_bits=12",
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=10; client_max_window_bits=12",
            ),
        ),
        // The first acceptable offer: 8 server window bits are declined, so is a bad parameter.
        (
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; x=1, \
             permessage-deflate; server_max_window_bits=\"9\"",
            Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=9"),
        ),
        ("permessage-deflate; server_max_window_bits=16", None),
        ("x-webkit-deflate-frame", None),
    ];
    for (offer, expect) in cases {
        let (_s, got) = upgrade(addr, Some(offer));
        assert_eq!(got.as_deref(), *expect, "offer {offer}");
    }
    let (_s, got) = upgrade(addr, None);
    assert_eq!(got, None);
}

#[test]
fn large_messages_come_back_compressed_each_on_its_own() {
    let server = start_echo(|_| {});
    let (mut s, agreed) = upgrade(server.local_addrs()[0], Some("permessage-deflate"));
    assert!(agreed.is_some());
    let text = quotes(40);
    assert!(text.len() > 1000);
    let mut client = Deflater::new();
    let mut echoed = Vec::new();
    // The same message three ways: plain, compressed, compressed again with the client's
    // context (the second compressed copy is mostly a back-reference to the first).
    let first = client.message(text.as_bytes());
    let second = client.message(text.as_bytes());
    assert!(second.len() * 4 < first.len());
    for (data, compressed) in [
        (text.as_bytes().to_vec(), false),
        (first, true),
        (second, true),
    ] {
        s.write_all(&client_frame(true, OpCode::Text, &data, compressed))
            .expect("write");
        let (b0, payload) = read_frame(&mut s);
        assert_eq!(b0, 0xc1, "FIN, RSV1, text");
        assert!(payload.len() * 3 < text.len(), "{} bytes", payload.len());
        assert_eq!(inflate_alone(&payload, 15), text.as_bytes());
        echoed.push(payload);
    }
    // No server context takeover: the same message is the same bytes every time.
    assert!(echoed.windows(2).all(|w| w[0] == w[1]));
    // A binary one, fragmented, RSV1 on its first frame only.
    let data = quotes(30).into_bytes();
    let z = Deflater::new().message(&data);
    let (a, b) = z.split_at(z.len() / 2);
    s.write_all(&client_frame(false, OpCode::Binary, a, true))
        .expect("write");
    s.write_all(&client_frame(true, OpCode::Continuation, b, false))
        .expect("write");
    let (b0, payload) = read_frame(&mut s);
    assert_eq!(b0, 0xc2, "FIN, RSV1, binary");
    assert_eq!(inflate_alone(&payload, 15), data);
}

#[test]
fn small_messages_go_plain() {
    let server = start_echo(|_| {});
    let (mut s, _) = upgrade(server.local_addrs()[0], Some("permessage-deflate"));
    let small = quotes(2);
    assert!(small.len() < 256);
    s.write_all(&client_frame(true, OpCode::Text, small.as_bytes(), false))
        .expect("write");
    assert_eq!(read_frame(&mut s), (0x81, small.clone().into_bytes()));
    // Even when it came compressed.
    let z = Deflater::new().message(small.as_bytes());
    s.write_all(&client_frame(true, OpCode::Text, &z, true))
        .expect("write");
    assert_eq!(read_frame(&mut s), (0x81, small.into_bytes()));
    // Pongs and closes are never compressed.
    s.write_all(&client_frame(true, OpCode::Ping, b"p", false))
        .expect("write");
    assert_eq!(read_frame(&mut s), (0x8a, b"p".to_vec()));
    assert_eq!(
        close_after(
            &mut s,
            &client_frame(true, OpCode::Close, &[0x03, 0xe8], false)
        ),
        1000
    );
}

#[test]
fn the_threshold_is_the_servers() {
    let server = start_echo(|c| c.compress_min = 10_000);
    let (mut s, _) = upgrade(server.local_addrs()[0], Some("permessage-deflate"));
    let text = quotes(40);
    s.write_all(&client_frame(true, OpCode::Text, text.as_bytes(), false))
        .expect("write");
    assert_eq!(read_frame(&mut s), (0x81, text.into_bytes()));
}

#[test]
fn clients_without_the_extension_get_plain_frames() {
    let server = start_echo(|_| {});
    let addr = server.local_addrs()[0];
    let text = quotes(40);
    let (mut s, agreed) = upgrade(addr, None);
    assert_eq!(agreed, None);
    s.write_all(&client_frame(true, OpCode::Text, text.as_bytes(), false))
        .expect("write");
    assert_eq!(read_frame(&mut s), (0x81, text.clone().into_bytes()));
    // tungstenite offers no extension, and fails on a frame with RSV1 set.
    let mut ws = connect(addr, "/ws");
    ws.send(tungstenite::Message::text(text.clone()))
        .expect("send");
    match ws.read().expect("echo") {
        tungstenite::Message::Text(t) => assert_eq!(t.as_str(), text),
        m => panic!("{m:?}"),
    }
}

#[test]
fn compression_off_negotiates_nothing() {
    let server = start_echo(|c| c.compression = false);
    let (mut s, agreed) = upgrade(server.local_addrs()[0], Some("permessage-deflate"));
    assert_eq!(agreed, None);
    let text = quotes(40);
    s.write_all(&client_frame(true, OpCode::Text, text.as_bytes(), false))
        .expect("write");
    assert_eq!(read_frame(&mut s), (0x81, text.into_bytes()));
    // So RSV1 is a reserved bit again.
    let z = Deflater::new().message(b"hello");
    assert_eq!(
        close_after(&mut s, &client_frame(true, OpCode::Text, &z, true)),
        1002
    );
}

#[test]
fn the_agreed_server_window_is_used() {
    let server = start_echo(|_| {});
    let (mut s, agreed) = upgrade(
        server.local_addrs()[0],
        Some("permessage-deflate; server_max_window_bits=9"),
    );
    assert!(agreed.is_some_and(|a| a.contains("server_max_window_bits=9")));
    // Larger than 512 bytes, with repeats further apart than that.
    let text = quotes(200);
    s.write_all(&client_frame(true, OpCode::Text, text.as_bytes(), false))
        .expect("write");
    let (b0, payload) = read_frame(&mut s);
    assert_eq!(b0, 0xc1);
    assert_eq!(inflate_alone(&payload, 9), text.as_bytes());
}

#[test]
fn the_clients_context_takeover_is_honoured() {
    let server = start_echo(|_| {});
    let (mut s, _) = upgrade(server.local_addrs()[0], Some("permessage-deflate"));
    let mut client = Deflater::new();
    for i in 0..20 {
        let msg = format!(r#"{{"op":"subscribe","topics":["quotes/S{i}","quotes/T{i}"]}}"#);
        s.write_all(&client_frame(
            true,
            OpCode::Text,
            &client.message(msg.as_bytes()),
            true,
        ))
        .expect("write");
        assert_eq!(read_frame(&mut s), (0x81, msg.into_bytes()));
    }
    // After client_no_context_takeover, a back-reference to an earlier message is invalid.
    let (mut s, agreed) = upgrade(
        server.local_addrs()[0],
        Some("permessage-deflate; client_no_context_takeover"),
    );
    assert!(agreed.is_some_and(|a| a.contains("client_no_context_takeover")));
    let mut client = Deflater::new();
    let msg = b"the same words, the same words";
    s.write_all(&client_frame(
        true,
        OpCode::Text,
        &client.message(msg),
        true,
    ))
    .expect("write");
    assert_eq!(read_frame(&mut s), (0x81, msg.to_vec()));
    let again = client.message(msg);
    assert_eq!(
        close_after(&mut s, &client_frame(true, OpCode::Text, &again, true)),
        1007
    );
}

/// The test process's peak resident memory, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// `mib` MiB of zeros compressed: copies of one sync-flushed compression of 1 MiB of zeros
/// (it refers back only into itself, so the copies inflate one after the other).
fn zip_bomb(mib: usize) -> Vec<u8> {
    let mut piece = Deflater::new().message(&vec![0u8; 1 << 20]);
    piece.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut bomb = piece.repeat(mib);
    bomb.truncate(bomb.len() - 4);
    bomb
}

#[test]
fn a_zip_bomb_gets_1009_and_memory_stays_bounded() {
    // The default limits: 64 KiB messages and frames.
    let server = start_echo(|_| {});
    let addr = server.local_addrs()[0];
    let before = peak_rss_kib();
    // 60 MiB of zeros in a ~60 KB frame: within the frame limit, a thousand times over the
    // message limit once inflated.
    let bomb = zip_bomb(60);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    for op in [OpCode::Binary, OpCode::Text] {
        let (mut s, _) = upgrade(addr, Some("permessage-deflate"));
        assert_eq!(
            close_after(&mut s, &client_frame(true, op, &bomb, true)),
            1009
        );
    }
    // The same bomb in 1 KB frames of one fragmented message: each frame small, the message not.
    let (mut s, _) = upgrade(addr, Some("permessage-deflate"));
    let mut wire = Vec::new();
    for (i, piece) in bomb.chunks(1024).enumerate() {
        let op = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        wire.extend(client_frame(false, op, piece, i == 0));
    }
    assert_eq!(close_after(&mut s, &wire), 1009);
    // Inflating the bomb whole would have taken 60 MiB at least, three times.
    let grown = peak_rss_kib().saturating_sub(before);
    eprintln!("peak RSS grew by {grown} KiB");
    assert!(grown < 24 * 1024, "peak RSS grew by {grown} KiB");
    // The server is fine.
    let (mut s, _) = upgrade(addr, Some("permessage-deflate"));
    let text = quotes(40);
    s.write_all(&client_frame(true, OpCode::Text, text.as_bytes(), false))
        .expect("write");
    let (b0, payload) = read_frame(&mut s);
    assert_eq!(b0, 0xc1);
    assert_eq!(inflate_alone(&payload, 15), text.as_bytes());
}

#[test]
fn rsv1_rules_and_bad_data() {
    let server = start_echo(|_| {});
    let addr = server.local_addrs()[0];
    let z = Deflater::new().message(b"hello hello hello");
    let cases: Vec<(Option<&str>, Vec<u8>, u16, &str)> = vec![
        (
            None,
            client_frame(true, OpCode::Text, &z, true),
            1002,
            "RSV1 without negotiation",
        ),
        (
            Some("permessage-deflate"),
            client_frame(true, OpCode::Ping, b"", true),
            1002,
            "RSV1 on a ping",
        ),
        (
            Some("permessage-deflate"),
            [
                client_frame(false, OpCode::Text, &z, true),
                client_frame(true, OpCode::Continuation, &[0x00], true),
            ]
            .concat(),
            1002,
            "RSV1 on a continuation",
        ),
        (
            Some("permessage-deflate"),
            client_frame(true, OpCode::Binary, &[0xff, 0xff, 0xff], true),
            1007,
            "not DEFLATE data",
        ),
        (
            Some("permessage-deflate"),
            client_frame(
                true,
                OpCode::Text,
                &Deflater::new().message(&[b'a', 0xff, b'b']),
                true,
            ),
            1007,
            "not UTF-8 once inflated",
        ),
    ];
    for (offer, wire, code, what) in cases {
        let (mut s, _) = upgrade(addr, offer);
        assert_eq!(close_after(&mut s, &wire), code, "{what}");
    }
}

/// What the broker does with the engine's API: asks each connection for its agreed window and
/// sends it a shared frame compressed for that window (or the plain one).
struct Variants;

impl tickwire::server::Handler for Variants {
    fn on_message(
        &mut self,
        conn: tickwire::server::ConnId,
        msg: tickwire::server::Message,
        out: &mut tickwire::server::Outbox<'_>,
    ) {
        use std::sync::Arc;
        use tickwire::ws::deflate::{compressed_frame, window_bits_for};
        use tickwire::ws::frame::encode_server_frame;
        let tickwire::server::Message::Text(text) = msg else {
            return;
        };
        if text == "info" {
            let info = format!("{:?} {}", out.compression(conn), out.compress_min());
            out.send_text(conn, &info);
            return;
        }
        let frame: tickwire::server::Frame = match out.compression(conn) {
            Some(bits) => Arc::from(compressed_frame(
                OpCode::Text,
                text.as_bytes(),
                window_bits_for(text.len(), bits),
            )),
            None => Arc::from(encode_server_frame(OpCode::Text, text.as_bytes())),
        };
        out.send_frame(conn, &frame);
    }
}

#[test]
fn shared_frames_compressed_per_agreed_window() {
    let mut config = tickwire::server::ServerConfig::default();
    config.workers = 1;
    let server = tickwire::server::Server::start(
        config,
        &["127.0.0.1:0".parse::<SocketAddr>().expect("addr").into()],
        |_| Variants,
    )
    .expect("starts");
    let addr = server.local_addrs()[0];
    let small = quotes(8);
    let large = quotes(60);
    assert!(small.len() <= 1024 && large.len() > 1024);
    for (offer, info, bits) in [
        (None, "None 256", None),
        (Some("permessage-deflate"), "Some(15) 256", Some(15)),
        (
            Some("permessage-deflate; server_max_window_bits=10"),
            "Some(10) 256",
            Some(10),
        ),
    ] {
        let (mut s, _) = upgrade(addr, offer);
        s.write_all(&client_frame(true, OpCode::Text, b"info", false))
            .expect("write");
        assert_eq!(read_frame(&mut s), (0x81, info.as_bytes().to_vec()));
        for text in [&small, &large] {
            s.write_all(&client_frame(true, OpCode::Text, text.as_bytes(), false))
                .expect("write");
            let (b0, payload) = read_frame(&mut s);
            match bits {
                None => assert_eq!((b0, payload), (0x81, text.clone().into_bytes())),
                Some(bits) => {
                    assert_eq!(b0, 0xc1);
                    // Inflated with the window the client agreed to, the small message from
                    // the window-15 compression it shares with everyone.
                    assert_eq!(inflate_alone(&payload, bits), text.as_bytes(), "{bits}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The broker: a publication is compressed once and the same bytes go to every compressing
// subscriber.

/// A broker subscriber on a raw socket offering permessage-deflate (or not), subscribed at
/// connect to `topics`; returns it after the `subscribed` ack.
fn broker_subscriber(broker: &tickwire::Broker, topics: &str, deflate: bool) -> TcpStream {
    let offer = deflate.then_some("permessage-deflate");
    let (mut s, accepted) = upgrade_to(
        broker.public_addr(),
        &format!("/ws?subscribe={topics}"),
        offer,
    );
    assert_eq!(accepted.is_some(), deflate);
    let (first, ack) = read_frame(&mut s);
    assert_eq!(first & 0x40, 0, "a small ack goes plain");
    assert!(String::from_utf8_lossy(&ack).contains("\"subscribed\""));
    s
}

/// [`upgrade`] to `path`.
fn upgrade_to(
    addr: SocketAddr,
    path: &str,
    extensions: Option<&str>,
) -> (TcpStream, Option<String>) {
    let mut s = raw(addr);
    let offer = extensions.map_or(String::new(), |e| {
        format!("Sec-WebSocket-Extensions: {e}\r\n")
    });
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    );
    s.write_all(request.as_bytes()).expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("101 response");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("ASCII head");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let accepted = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
        .map(str::to_owned);
    (s, accepted)
}

/// The JSON of a broker message frame, inflated if RSV1 is set.
fn broker_message(first: u8, payload: &[u8]) -> serde_json::Value {
    let text = if first & 0x40 != 0 {
        inflate_alone(payload, 15)
    } else {
        payload.to_vec()
    };
    serde_json::from_slice(&text).expect("a JSON message")
}

#[test]
fn a_publication_is_compressed_once_for_every_compressing_subscriber() {
    let broker = tickwire::Broker::builder()
        .listen("127.0.0.1:0".parse().expect("addr"))
        .local_listen(None)
        .workers(1)
        .start()
        .expect("broker");
    let big = format!("{{\"pad\":\"{}\",\"n\":1}}", "quote ".repeat(100));
    broker
        .publisher()
        .publish("c/x", big.as_bytes())
        .expect("published");
    let mut a = broker_subscriber(&broker, "c/%23", true);
    let mut b = broker_subscriber(&broker, "c/%23", true);
    let mut plain = broker_subscriber(&broker, "c/%23", false);
    // The snapshot: compressed for the two, the same bytes, plain for the third.
    let (fa, pa) = read_frame(&mut a);
    let (fb, pb) = read_frame(&mut b);
    let (fp, pp) = read_frame(&mut plain);
    assert_eq!((fa & 0x40, fb & 0x40, fp & 0x40), (0x40, 0x40, 0));
    assert_eq!(pa, pb, "identical compressed bytes");
    assert!(pa.len() < pp.len() / 4, "{} against {}", pa.len(), pp.len());
    assert_eq!(broker_message(fa, &pa), broker_message(fp, &pp));
    assert_eq!(broker_message(fa, &pa)["snapshot"], true);
    // A live publication: the same again.
    let big2 = big.replace("\"n\":1", "\"n\":2");
    broker
        .publisher()
        .publish("c/x", big2.as_bytes())
        .expect("published");
    let (fa, pa) = read_frame(&mut a);
    let (fb, pb) = read_frame(&mut b);
    let (fp, pp) = read_frame(&mut plain);
    assert_eq!((fa & 0x40, fb & 0x40, fp & 0x40), (0x40, 0x40, 0));
    assert_eq!(pa, pb);
    assert_eq!(broker_message(fa, &pa)["data"]["n"], 2);
    assert_eq!(broker_message(fp, &pp)["data"]["n"], 2);
    // A small one goes plain to everyone.
    broker
        .publisher()
        .publish("c/y", b"{\"n\":3}")
        .expect("published");
    for s in [&mut a, &mut b, &mut plain] {
        let (f, p) = read_frame(s);
        assert_eq!(f & 0x40, 0);
        assert_eq!(broker_message(f, &p)["data"]["n"], 3);
    }
}

#[test]
fn deltas_and_compression_go_together() {
    let broker = tickwire::Broker::builder()
        .listen("127.0.0.1:0".parse().expect("addr"))
        .local_listen(None)
        .workers(1)
        .configure(|c| c.compress_min = 64)
        .start()
        .expect("broker");
    let record = |n: u64| {
        let mut fields: Vec<String> = (0..20)
            .map(|i| format!("\"field{i:02}\":\"some constant text {i}\""))
            .collect();
        fields.push(format!("\"bid\":{n}"));
        format!("{{{}}}", fields.join(","))
    };
    broker
        .publisher()
        .publish("dz/x", record(1).as_bytes())
        .expect("published");
    let (mut s, accepted) = upgrade_to(broker.public_addr(), "/ws", Some("permessage-deflate"));
    assert!(accepted.is_some());
    let subscribe = r#"{"op":"subscribe","topics":["dz/x"],"delta":true,"id":1}"#;
    s.write_all(&client_frame(
        true,
        OpCode::Text,
        subscribe.as_bytes(),
        false,
    ))
    .expect("subscribe");
    let (f, p) = read_frame(&mut s);
    assert_eq!(broker_message(f, &p)["type"], "subscribed");
    let (f, p) = read_frame(&mut s);
    let snapshot = broker_message(f, &p);
    assert_eq!(f & 0x40, 0x40, "the whole record is compressed");
    assert_eq!(snapshot["data"]["bid"], 1);
    broker
        .publisher()
        .publish("dz/x", record(2).as_bytes())
        .expect("published");
    let (f, p) = read_frame(&mut s);
    let m = broker_message(f, &p);
    assert_eq!(m["delta"], serde_json::json!({"bid": 2}), "{m}");
    assert_eq!(f & 0x40, 0, "the delta is under the threshold: plain");
}
