//! TLS on the public listener (issue 12) with real clients: a Rust rustls client under
//! tungstenite (TLS 1.3 and 1.2, large and many frames, the closing handshake), curl for the
//! page, `openssl s_client` refused with TLS 1.1, SIGHUP reloading the certificate without
//! dropping connections (and a bad reload keeping the old one), and hostile TLS clients (half a
//! ClientHello, nothing at all, plain HTTP) held to the handshake timeout in bounded memory.

mod util;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use tickwire::Broker;
use tungstenite::Message;
use util::broker::{metric, metric_at, publish, publish_at, start};
use util::child::Tickwire;
use util::tls::{client_hello, read_until_closed, Pki, TlsSub};

fn tls_broker(pki: &Pki) -> Broker {
    let (cert, key) = (pki.cert(), pki.key());
    start(|c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    })
}

#[test]
fn a_rust_client_subscribes_over_wss_with_tls_1_3_and_1_2() {
    let pki = Pki::new("wss");
    let broker = tls_broker(&pki);
    assert!(broker.is_tls());
    for (version, name) in [
        (&rustls::version::TLS13, "TLSv1_3"),
        (&rustls::version::TLS12, "TLSv1_2"),
    ] {
        let client = pki.client(&[version]);
        let mut sub = TlsSub::connect(broker.public_addr(), "/ws?subscribe=quotes/A", &client);
        assert_eq!(
            format!("{:?}", sub.ws.get_ref().conn.protocol_version().unwrap()),
            name
        );
        let ack = sub.next();
        // The epoch (for recovery) comes with every ack; what matters here is the topic list.
        assert_eq!(ack["type"], "subscribed", "{ack}");
        assert_eq!(ack["topics"], json!(["quotes/A"]), "{ack}");
        let (status, _) = publish(&broker, "quotes/A", r#"{"bid":1}"#);
        assert_eq!(status, 202);
        assert_eq!(sub.next()["data"], json!({"bid": 1}));
    }

    // Frames larger than a TLS record, and many small ones in a burst, arrive whole and in order.
    let client = pki.client(&[]);
    let mut sub = TlsSub::connect(broker.public_addr(), "/ws", &client);
    sub.subscribe(&["big", "many"]);
    let big = format!("\"{}\"", "x".repeat(60_000));
    assert_eq!(publish(&broker, "big", &big).0, 202);
    assert_eq!(sub.next()["data"].as_str().map(str::len), Some(60_000));
    let publisher = broker.publisher();
    for i in 0..3000 {
        publisher
            .publish("many", format!("{{\"i\":{i}}}").as_bytes())
            .expect("published");
    }
    for i in 0..3000 {
        let m = sub.next();
        assert_eq!(m["data"]["i"], i, "{m}");
    }
    // The closing handshake over TLS: close 1001 on shutdown.
    broker.shutdown();
    loop {
        match sub.ws.read() {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 1001);
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("no close frame over TLS: {e}"),
        }
    }
}

#[test]
fn curl_gets_the_page_over_https() {
    let pki = Pki::new("curl");
    let broker = tls_broker(&pki);
    let port = broker.public_addr().port();
    let url = format!("https://localhost:{port}/");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let curl = |extra: &[&str]| {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--resolve", &resolve])
            .args(extra)
            .arg(&url)
            .output()
            .expect("curl runs (tests/run_all.sh installs it)")
    };
    let ca = pki.ca_path.to_str().unwrap();
    let out = curl(&["--cacert", ca, "-w", "\n%{http_code} %{http_version}"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.ends_with("\n200 1.1"),
        "{}",
        &text[text.len().saturating_sub(40)..]
    );
    assert!(
        text.contains("<html") && text.contains("wss"),
        "the board page"
    );
    // TLS 1.2 only, too.
    let out = curl(&[
        "--cacert",
        ca,
        "--tlsv1.2",
        "--tls-max",
        "1.2",
        "-o",
        "/dev/null",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the test CA, curl does not trust the certificate (exit 60).
    let out = curl(&["-o", "/dev/null"]);
    assert_eq!(
        out.status.code(),
        Some(60),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain HTTP to the TLS port gets no page.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .expect("curl");
    assert!(!out.status.success());
}

#[test]
fn openssl_s_client_with_tls_1_1_is_refused() {
    let pki = Pki::new("openssl");
    let broker = tls_broker(&pki);
    let connect = broker.public_addr().to_string();
    let s_client = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &connect, "-servername", "localhost"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    // OpenSSL 3 needs security level 0 to offer TLS 1.1 at all: then the ClientHello goes out
    // and it is the server that says no, with an alert (rustls sends handshake_failure).
    for flag in ["-tls1_1", "-tls1"] {
        let (ok, text) = s_client(&[flag, "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert!(!ok, "{flag} was accepted:\n{text}");
        assert!(
            text.contains("SSL alert number 40") && text.contains("no peer certificate"),
            "{flag}: not refused by the server's alert:\n{text}"
        );
    }
    let ca = pki.ca_path.to_str().unwrap();
    for (flag, shows) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (ok, text) = s_client(&[flag, "-CAfile", ca, "-verify_return_error"]);
        assert!(ok, "{flag}:\n{text}");
        assert!(
            text.contains(shows) && text.contains("Verify return code: 0 (ok)"),
            "{text}"
        );
    }
    assert!(metric(&broker, "tickwire_tls_errors_total") >= 2);
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let pki = Pki::new("sighup");
    let first = std::fs::read(&pki.cert_path).unwrap();
    let (cert, key) = (pki.cert(), pki.key());
    let tw = Tickwire::start("tls-sighup", &["--tls-cert", &cert, "--tls-key", &key]);
    let client = pki.client(&[]);
    let mut held = TlsSub::connect(tw.public, "/ws?subscribe=quotes/A", &client);
    assert_eq!(held.next()["type"], "subscribed");
    assert!(
        first.windows(20).count() > 0 && !held.leaf.is_empty(),
        "a certificate was shown"
    );
    let hup = || {
        let status = Command::new("kill")
            .args(["-HUP", &tw.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    let second = pki.issue("second");
    assert_ne!(held.leaf, second);
    hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, leaf) = util::tls::tls_stream(tw.public, &client);
        if leaf == second {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never shown"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The connection made before the reload goes on.
    assert_eq!(publish_at(tw.local, "quotes/A", r#"{"bid":7}"#).0, 202);
    assert_eq!(held.next()["data"], json!({"bid": 7}));

    // A reload from a broken file keeps the certificate in use, and says why.
    std::fs::write(&pki.cert_path, "not a certificate\n").unwrap();
    hup();
    util::eventually(Duration::from_secs(10), "the failed reload logged", || {
        tw.log_text().contains("reload failed")
    });
    let log = tw.log_text();
    assert!(
        log.contains("no certificate in it") && log.contains("previous certificate stays in use"),
        "{log}"
    );
    let (_, leaf) = util::tls::tls_stream(tw.public, &client);
    assert_eq!(leaf, second);
    assert_eq!(publish_at(tw.local, "quotes/A", r#"{"bid":8}"#).0, 202);
    assert_eq!(held.next()["data"], json!({"bid": 8}));
}

#[test]
fn hostile_tls_clients_are_held_to_the_handshake_timeout_in_bounded_memory() {
    const HALF_HELLOS: usize = 300;
    const SILENT: usize = 100;
    const GARBAGE: usize = 20;
    let pki = Pki::new("hostile");
    let (cert, key) = (pki.cert(), pki.key());
    let tw = Tickwire::start(
        "tls-hostile",
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--handshake-timeout",
            "1",
            "--workers",
            "1",
        ],
    );
    let client = pki.client(&[]);
    // Warm up (the worker's buffers, the first session), then measure.
    drop(TlsSub::connect(tw.public, "/ws", &client));
    std::thread::sleep(Duration::from_millis(200));
    let (rss_before, fds_before) = (tw.rss_kib(), tw.fds());

    let hello = client_hello(&client);
    assert!(hello.len() > 100, "a ClientHello of {} bytes", hello.len());
    let started = Instant::now();
    let mut half: Vec<TcpStream> = (0..HALF_HELLOS)
        .map(|_| {
            let mut s = util::raw(tw.public);
            util::tls::write_raw(&mut s, &hello[..hello.len() / 2]);
            s
        })
        .collect();
    let mut silent: Vec<TcpStream> = (0..SILENT).map(|_| util::raw(tw.public)).collect();
    let mut garbage: Vec<TcpStream> = (0..GARBAGE)
        .map(|_| {
            let mut s = util::raw(tw.public);
            util::tls::write_raw(&mut s, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            s
        })
        .collect();
    // Garbage is refused at once, not held until the timeout.
    for s in &mut garbage {
        let (_, closed) = read_until_closed(s);
        assert!(closed, "a plaintext request on the TLS port was not closed");
    }
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // While the half-open ones wait: what each costs.
    std::thread::sleep(Duration::from_millis(300));
    let held_kib = tw.rss_kib().saturating_sub(rss_before);
    let per_conn = held_kib * 1024 / (HALF_HELLOS + SILENT) as u64;
    eprintln!(
        "{} half-open TLS connections: +{held_kib} KiB RSS ({per_conn} B each)",
        HALF_HELLOS + SILENT
    );
    assert!(
        per_conn < 32 * 1024,
        "{per_conn} bytes per half-open TLS connection"
    );
    // Every one is closed at the handshake timeout (1 s, checked every 250 ms).
    for s in half.iter_mut().chain(silent.iter_mut()) {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (_, closed) = read_until_closed(s);
        assert!(
            closed,
            "a half-open TLS connection outlived the handshake timeout"
        );
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    drop((half, silent, garbage));
    util::eventually(
        Duration::from_secs(5),
        "descriptors back to the baseline",
        || tw.fds() <= fds_before + 2,
    );
    assert!(
        metric_at(tw.local, "tickwire_handshake_timeouts_total") >= (HALF_HELLOS + SILENT) as u64
    );
    assert!(metric_at(tw.local, "tickwire_tls_errors_total") >= GARBAGE as u64);
    // And a real client is served as before.
    let mut sub = TlsSub::connect(tw.public, "/ws?subscribe=quotes/A", &client);
    assert_eq!(sub.next()["type"], "subscribed");
}

#[test]
fn bad_certificate_files_stop_the_start_with_a_reason() {
    let pki = Pki::new("badfiles");
    let other = Pki::new("badfiles-other");
    let try_start = |cert: &str, key: &str| {
        Broker::builder()
            .listen("127.0.0.1:0".parse().unwrap())
            .local_listen(None)
            .tls(cert, key)
            .start()
            .err()
            .expect("refused")
            .to_string()
    };
    let err = try_start(&pki.cert(), &other.key());
    assert!(err.contains("do not make a certificate"), "{err}");
    let err = try_start(&pki.key(), &pki.key());
    assert!(err.contains("no certificate in it"), "{err}");
    let err = try_start(&pki.cert(), &pki.cert());
    assert!(err.contains("no PEM private key"), "{err}");
}

#[test]
fn an_oversized_handshake_is_cut_off() {
    let pki = Pki::new("bighello");
    let broker = tls_broker(&pki);
    let mut s = util::raw(broker.public_addr());
    // A ClientHello claiming 60 KB, of which 40 KB are sent: rustls alone would buffer it and
    // wait for the rest (until the 10 s handshake timeout); tickwire stops at 16 KiB and closes.
    let mut bytes = Vec::new();
    let mut body = vec![0x01, 0x00, 0xf0, 0x00];
    body.resize(40 * 1024, 0x42);
    for chunk in body.chunks(16 * 1024) {
        bytes.extend_from_slice(&[0x16, 0x03, 0x01]);
        bytes.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        bytes.extend_from_slice(chunk);
    }
    let started = Instant::now();
    // The server may close while this is still being written.
    let written = std::io::Write::write_all(&mut s, &bytes);
    let mut buf = [0u8; 256];
    let read = std::io::Read::read(&mut s, &mut buf);
    let took = started.elapsed();
    let closed = matches!(read, Ok(0))
        || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
    assert!(
        closed && took < Duration::from_secs(2),
        "an oversized handshake was not cut off: write {written:?}, read {read:?} after {took:?}"
    );
    assert!(metric(&broker, "tickwire_tls_errors_total") >= 1);
}
