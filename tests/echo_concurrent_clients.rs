//! Several real WebSocket clients (tungstenite) at once against the engine's echo application:
//! messages of every length form come back byte for byte and in order, and everyone closes cleanly.

mod util;

use std::time::Duration;

use tickwire::server::Limits;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

#[test]
fn concurrent_clients_get_their_own_echoes_and_close_cleanly() {
    let server = util::start_echo(|c| {
        c.limits = Limits {
            max_frame: 1 << 20,
            max_message: 1 << 20,
        };
        c.read_pause_bytes = 4 << 20;
        c.max_outbound_bytes = 16 << 20;
    });
    let addr = server.local_addrs()[0];
    let sizes = [0usize, 1, 125, 126, 127, 65535, 65536, 100_000, 1 << 20];
    let threads: Vec<_> = (0..16)
        .map(|client| {
            std::thread::spawn(move || {
                let mut ws = util::connect(addr, "/");
                let mut sent = Vec::new();
                for (i, &size) in sizes.iter().enumerate() {
                    let msg = if (client + i) % 2 == 0 {
                        let text: String = (0..size)
                            .map(|j| char::from(b'a' + ((client + j) % 26) as u8))
                            .collect();
                        Message::Text(text)
                    } else {
                        Message::Binary((0..size).map(|j| (j * 7 + client) as u8).collect())
                    };
                    ws.send(msg.clone()).expect("send");
                    sent.push(msg);
                }
                for want in &sent {
                    let got = loop {
                        match ws.read().expect("echo") {
                            Message::Ping(_) | Message::Pong(_) => continue,
                            m => break m,
                        }
                    };
                    assert_eq!(&got, want, "client {client}: echo differs");
                }
                ws.close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "done".into(),
                }))
                .expect("close");
                // The server answers the close and then closes the TCP connection.
                loop {
                    match ws.read() {
                        Ok(Message::Close(frame)) => {
                            let code = frame.map(|f| f.code);
                            assert_eq!(code, Some(CloseCode::Normal));
                        }
                        Ok(_) => {}
                        Err(tungstenite::Error::ConnectionClosed) => break,
                        Err(e) => panic!("client {client}: unclean close: {e}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    util::eventually(Duration::from_secs(5), "all connections gone", || {
        server.connection_count() == 0
    });
    assert_eq!(server.stats().protocol_errors, 0);
    server.shutdown();
}

#[test]
fn shutdown_sends_going_away_to_open_clients() {
    let server = util::start_echo(|_| {});
    let mut ws = util::connect(server.local_addrs()[0], "/");
    ws.send(Message::Text("hi".into())).expect("send");
    assert_eq!(ws.read().expect("echo"), Message::Text("hi".into()));
    let stopper = std::thread::spawn(move || server.shutdown());
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected close 1001, got {other:?}"),
    }
    // Our close reply lets the server finish at once, well inside its close timeout.
    let _ = ws.flush();
    stopper.join().expect("shutdown returns");
}
