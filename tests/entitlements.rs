//! Entitlements (issue 12) over real sockets: tokens on the upgrade URL, in an `Authorization:
//! Bearer` header or in the `auth` op; `unauthorized`, `forbidden`, `token_expired`; 401 before
//! the upgrade; close 1008 "token expired" at `exp` unless refreshed; a narrower refresh ending
//! what it no longer covers; RS256, ES256 and algorithm confusion; hostile tokens; metrics; the
//! debug log naming the subject and never the token; reloading the key.

mod util;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tickwire::Broker;
use tungstenite::Message;
use util::auth::{self, claims, hs256, KeyDir};
use util::broker::{http, metric, publish, start, Sub};

/// A broker whose subscribers need tokens checked with the test secret, no leeway.
fn with_key(keys: &KeyDir) -> Broker {
    let key = keys.secret();
    start(|c| {
        c.jwt_key = Some(key);
        c.jwt_leeway = Duration::ZERO;
    })
}

/// Connects to `/ws{query}` expecting a refusal: (status, headers, body).
fn refused_upgrade(
    broker: &Broker,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut all = vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    all.extend_from_slice(headers);
    let (status, head, body) = http(broker.public_addr(), "GET", target, &all, b"");
    (status, head, body)
}

/// Sends a request and returns the answer (the first message after it).
fn ask(sub: &mut Sub, request: Value) -> Value {
    sub.send(request);
    sub.next()
}

fn auth_op(sub: &mut Sub, token: &str, id: u64) -> Value {
    ask(sub, json!({"op": "auth", "token": token, "id": id}))
}

fn subscribe(sub: &mut Sub, topics: &[&str], id: u64) -> Value {
    ask(sub, json!({"op": "subscribe", "topics": topics, "id": id}))
}

fn error_code(v: &Value) -> &str {
    assert_eq!(v["type"], "error", "{v}");
    v["code"].as_str().expect("a code")
}

/// Waits for the server's close frame: (code, reason).
fn close_of(sub: &mut Sub, within: Duration) -> (u16, String) {
    sub.ws
        .get_ref()
        .set_read_timeout(Some(within))
        .expect("timeout");
    loop {
        match sub.ws.read() {
            Ok(Message::Close(Some(f))) => return (f.code.into(), f.reason.to_string()),
            Ok(Message::Close(None)) => panic!("a close without a code"),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

#[test]
fn without_a_key_nothing_changes() {
    let broker = start(|_| {});
    // A token on the URL is not even looked at.
    let mut sub = Sub::connect(&broker, "?token=not-a-jwt");
    sub.subscribe(&["quotes/#"]);
    let e = auth_op(&mut sub, "whatever", 5);
    assert_eq!(error_code(&e), "bad_request");
    assert!(
        e["message"].as_str().unwrap().contains("not configured"),
        "{e}"
    );
    assert_eq!(e["id"], 5);
    sub.expect_nothing_before_sentinel(&broker, "quotes/A");
}

#[test]
fn subscribing_needs_a_token_and_the_auth_op_brings_one() {
    let keys = KeyDir::new("auth-op");
    let broker = with_key(&keys);
    let mut sub = Sub::connect(&broker, "");
    let e = subscribe(&mut sub, &["quotes/AAPL"], 1);
    assert_eq!((error_code(&e), &e["id"]), ("unauthorized", &json!(1)));
    assert!(e["message"].as_str().unwrap().contains("auth"), "{e}");

    let e = auth_op(&mut sub, "not.a.token", 2);
    assert_eq!((error_code(&e), &e["id"]), ("unauthorized", &json!(2)));
    let e = auth_op(&mut sub, &hs256(&claims("alice", &["quotes/#"], -10)), 3);
    assert_eq!((error_code(&e), &e["id"]), ("token_expired", &json!(3)));
    // Still nothing granted.
    assert_eq!(
        error_code(&subscribe(&mut sub, &["quotes/AAPL"], 4)),
        "unauthorized"
    );

    let token = hs256(&claims("alice", &["quotes/#", "fx/+"], 3600));
    let ok = auth_op(&mut sub, &token, 5);
    let exp = auth::now() + 3600;
    assert_eq!(ok["type"], "authenticated", "{ok}");
    assert_eq!((&ok["sub"], &ok["id"]), (&json!("alice"), &json!(5)));
    let got = ok["exp"].as_u64().expect("exp in seconds");
    assert!(got.abs_diff(exp) <= 2, "{ok}");

    sub.subscribe(&["quotes/AAPL"]);
    // All or nothing: one pattern outside the grants refuses the whole request.
    let e = subscribe(&mut sub, &["quotes/MSFT", "trades/MSFT"], 6);
    assert_eq!((error_code(&e), &e["id"]), ("forbidden", &json!(6)));
    let m = e["message"].as_str().unwrap();
    assert!(m.contains("'trades/MSFT'") && m.contains("nothing"), "{m}");
    let (status, _) = publish(&broker, "quotes/MSFT", r#"{"bid":1}"#);
    assert_eq!(status, 202);
    sub.expect_nothing_before_sentinel(&broker, "quotes/AAPL");
    let (status, _) = publish(&broker, "quotes/AAPL", r#"{"bid":2}"#);
    assert_eq!(status, 202);
    assert_eq!(sub.next()["data"], json!({"bid": 2}));
}

#[test]
fn coverage_is_exact_mqtt() {
    let keys = KeyDir::new("coverage");
    let broker = with_key(&keys);
    let token = hs256(&claims("bob", &["quotes/#", "fx/+"], 3600));
    let mut sub = Sub::connect(&broker, &format!("?token={token}"));
    for (i, allowed) in [
        "quotes/+",
        "quotes/AAPL",
        "quotes/+/bid",
        "quotes",
        "quotes/#",
        "fx/EURUSD",
        "fx/+",
    ]
    .into_iter()
    .enumerate()
    {
        let ack = subscribe(&mut sub, &[allowed], i as u64);
        assert_eq!(ack["type"], "subscribed", "{allowed}: {ack}");
    }
    for (pattern, example) in [
        ("#", "x"),
        ("+", "x"),
        ("+/AAPL", "x/AAPL"),
        ("fx/#", "fx"),
        ("fx/+/bid", "fx/x/bid"),
        ("trades/A", "trades/A"),
    ] {
        let e = subscribe(&mut sub, &[pattern], 99);
        assert_eq!(error_code(&e), "forbidden", "{pattern}");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains(&format!("topic '{example}'")), "{pattern}: {m}");
    }
}

#[test]
fn the_upgrade_url_and_the_bearer_header_carry_tokens() {
    let keys = KeyDir::new("upgrade");
    let broker = with_key(&keys);
    let good = hs256(&claims("carol", &["quotes/#"], 3600));

    // ?token= with ?subscribe=: subscribed at once.
    let mut sub = Sub::connect(&broker, &format!("?token={good}&subscribe=quotes/A"));
    let ack = sub.next();
    // The epoch (for recovery) comes with every ack; what matters here is the topic list.
    assert_eq!(ack["type"], "subscribed", "{ack}");
    assert_eq!(ack["topics"], json!(["quotes/A"]), "{ack}");
    // The same with a pattern outside the grants: opened, and told why nothing was subscribed.
    let mut sub2 = Sub::connect(&broker, &format!("?token={good}&subscribe=%23"));
    assert_eq!(error_code(&sub2.next()), "forbidden");

    // Authorization: Bearer.
    let stream = std::net::TcpStream::connect(broker.public_addr()).unwrap();
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/ws",
        broker.public_addr()
    ))
    .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {good}").parse().unwrap());
    let (ws, _) = tungstenite::client(req, stream).expect("upgrade with a bearer token");
    let mut bearer = Sub { ws };
    bearer.subscribe(&["quotes/B"]);

    // Bad or expired tokens: 401 before the upgrade, with a body saying why.
    let expired = hs256(&claims("carol", &["quotes/#"], -60));
    // One character of the signature changed (not the last, whose spare bits base64 checks).
    let at = good.len() - 10;
    let swapped = if &good[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{swapped}{}", &good[..at], &good[at + 1..]);
    for (target, header, says) in [
        (format!("/ws?token={expired}"), None, "expired"),
        ("/ws?token=abc".to_owned(), None, "three base64url parts"),
        (format!("/ws?token={forged}"), None, "signature"),
        (
            "/ws".to_owned(),
            Some(format!("Bearer {expired}")),
            "expired",
        ),
        (
            "/ws".to_owned(),
            Some("Bearer".to_owned()),
            "three base64url parts",
        ),
        (
            format!("/ws?token={good}"),
            Some(format!("Bearer {good}")),
            "one place",
        ),
    ] {
        let headers: Vec<(&str, &str)> = header
            .iter()
            .map(|h| ("Authorization", h.as_str()))
            .collect();
        let (status, head, body) = refused_upgrade(&broker, &target, &headers);
        assert_eq!(status, 401, "{target} {header:?}: {body}");
        assert!(body.contains(says), "{target}: {body}");
        assert!(
            head.contains("WWW-Authenticate: Bearer error=\"invalid_token\""),
            "{head}"
        );
        assert!(
            !body.contains(&good[20..]),
            "the token is never echoed: {body}"
        );
    }
    // Another authorization scheme is not ours to read: the upgrade goes through.
    let mut basic = util::raw(broker.public_addr());
    let req =
        util::upgrade_request("/ws").replace("\r\n\r\n", "\r\nAuthorization: Basic dTpw\r\n\r\n");
    std::io::Write::write_all(&mut basic, req.as_bytes()).unwrap();
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut basic, &mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    assert_eq!(
        metric(&broker, "tickwire_http_errors_total{status=\"401\"}"),
        6
    );
}

#[test]
fn a_token_expires_and_closes_the_connection() {
    let keys = KeyDir::new("expiry");
    let broker = with_key(&keys);
    let started = Instant::now();
    // exp is whole seconds: this one runs out 2 to 3 s from now.
    let exp = auth::now() + 3;
    let token = hs256(&json!({"sub": "dave", "topics": ["quotes/#"], "exp": exp}));
    let mut sub = Sub::connect(&broker, &format!("?token={token}"));
    sub.subscribe(&["quotes/A"]);
    let (code, reason) = close_of(&mut sub, Duration::from_secs(6));
    assert_eq!((code, reason.as_str()), (1008, "token expired"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(4500),
        "closed after {took:?}"
    );
    assert_eq!(metric(&broker, "tickwire_token_expired_closed_total"), 1);

    // With the auth op, the same.
    let mut sub = Sub::connect(&broker, "");
    let token = hs256(&json!({"topics": ["quotes/#"], "exp": auth::now() + 2}));
    assert_eq!(auth_op(&mut sub, &token, 1)["sub"], Value::Null);
    let (code, _) = close_of(&mut sub, Duration::from_secs(5));
    assert_eq!(code, 1008);
    assert_eq!(metric(&broker, "tickwire_token_expired_closed_total"), 2);
}

#[test]
fn a_refresh_keeps_the_connection_past_the_old_exp() {
    let keys = KeyDir::new("refresh");
    let broker = with_key(&keys);
    let short = hs256(&claims("erin", &["quotes/#"], 2));
    let mut sub = Sub::connect(&broker, &format!("?token={short}"));
    sub.subscribe(&["quotes/A"]);
    let long = hs256(&claims("erin", &["quotes/#"], 3600));
    assert_eq!(auth_op(&mut sub, &long, 2)["type"], "authenticated");
    // A refused refresh changes nothing (the long token stays).
    assert_eq!(error_code(&auth_op(&mut sub, "x.y.z", 3)), "unauthorized");
    std::thread::sleep(Duration::from_millis(3500));
    sub.sync();
    sub.expect_nothing_before_sentinel(&broker, "quotes/A");
    assert_eq!(metric(&broker, "tickwire_token_expired_closed_total"), 0);
}

#[test]
fn a_narrower_refresh_ends_what_it_no_longer_covers() {
    let keys = KeyDir::new("narrow");
    let broker = with_key(&keys);
    let wide = hs256(&claims("frank", &["quotes/#", "fx/#"], 3600));
    let mut sub = Sub::connect(&broker, &format!("?token={wide}"));
    sub.subscribe(&["quotes/AAPL", "fx/+", "fx/EURUSD"]);
    let narrow = hs256(&claims("frank", &["quotes/#", "fx/EURUSD"], 3600));
    sub.send(json!({"op": "auth", "token": narrow, "id": 7}));
    assert_eq!(
        sub.next(),
        json!({"type": "unsubscribed", "topics": ["fx/+"], "reason": "forbidden"})
    );
    assert_eq!(sub.next()["type"], "authenticated");
    assert_eq!(metric(&broker, "tickwire_subscriptions_forbidden_total"), 1);
    // fx/GBPUSD was only reachable through fx/+: no longer delivered. fx/EURUSD still is.
    assert_eq!(publish(&broker, "fx/GBPUSD", "1").0, 202);
    sub.expect_nothing_before_sentinel(&broker, "fx/EURUSD");
    // A failed refresh never drops grants: quotes/# still subscribes.
    assert_eq!(
        error_code(&auth_op(&mut sub, &hs256(&claims("frank", &[], -5)), 8)),
        "token_expired"
    );
    sub.subscribe(&["quotes/+"]);
    // A refresh granting nothing ends everything.
    let none = hs256(&claims("frank", &[], 3600));
    sub.send(json!({"op": "auth", "token": none, "id": 9}));
    let ended = sub.next();
    assert_eq!(ended["reason"], "forbidden");
    assert_eq!(
        ended["topics"],
        json!(["fx/EURUSD", "quotes/+", "quotes/AAPL"])
    );
    assert_eq!(sub.next()["type"], "authenticated");
    assert_eq!(publish(&broker, "quotes/AAPL", "2").0, 202);
    assert!(sub.next_within(Duration::from_millis(300)).is_none());
}

#[test]
fn rs256_and_es256_keys_and_no_algorithm_confusion() {
    let keys = KeyDir::new("asym");
    let (rsa_private, rsa_public) = keys.rsa();
    let broker = start(|c| c.jwt_key = Some(rsa_public.clone()));
    let c = claims("gina", &["quotes/#"], 600);
    let mut sub = Sub::connect(
        &broker,
        &format!("?token={}", auth::rs256(&c, &rsa_private)),
    );
    sub.subscribe(&["quotes/A"]);
    // HS256 "signed" with the RSA public key's PEM as the secret: the classic confusion.
    let public_pem = std::fs::read(&rsa_public).unwrap();
    let confused = auth::sign(
        &c,
        jsonwebtoken::Algorithm::HS256,
        &jsonwebtoken::EncodingKey::from_secret(&public_pem),
    );
    let none = auth::unsigned(&json!({"alg": "none", "typ": "JWT"}), &c);
    let es = auth::es256(&c, &keys.ec().0);
    for (token, says) in [(confused, "'HS256'"), (none, "'none'"), (es, "'ES256'")] {
        let (status, _, body) = refused_upgrade(&broker, &format!("/ws?token={token}"), &[]);
        assert_eq!(status, 401, "{body}");
        assert!(body.contains(says) && body.contains("RS256 only"), "{body}");
        let e = auth_op(&mut sub, &token, 3);
        assert_eq!(error_code(&e), "unauthorized");
    }
    assert_eq!(
        metric(
            &broker,
            "tickwire_auth_refused_total{reason=\"wrong_algorithm\"}"
        ),
        6
    );
    drop(broker);

    let (ec_private, ec_public) = keys.ec();
    let broker = start(|c| c.jwt_key = Some(ec_public));
    let mut sub = Sub::connect(&broker, "");
    assert_eq!(
        auth_op(&mut sub, &auth::es256(&c, &ec_private), 1)["type"],
        "authenticated"
    );
    sub.subscribe(&["quotes/B"]);
    // A key of the wrong kind stops the start with a clear error.
    let err = Broker::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .local_listen(None)
        .jwt_key(keys.file("private.pem", &ec_private))
        .start()
        .err()
        .expect("a private key is refused");
    assert!(err.to_string().contains("public key only"), "{err}");
}

#[test]
fn hostile_tokens_are_refused_clearly_at_bounded_cost() {
    let keys = KeyDir::new("hostile");
    let key = keys.secret();
    let broker = start(|c| {
        c.jwt_key = Some(key);
        c.max_client_message = 256 * 1024;
    });
    let mut sub = Sub::connect(&broker, "");
    let many: Vec<String> = (0..10_000).map(|i| format!("q/{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let fewer: Vec<String> = (0..300).map(|i| format!("q/{i}")).collect();
    let fewer: Vec<&str> = fewer.iter().map(String::as_str).collect();
    let mut bomb = json!(["topics"]);
    for _ in 0..200 {
        bomb = json!([bomb]);
    }
    let mut deep = claims("h", &["q/#"], 600);
    deep["nested"] = bomb;
    let cases: Vec<(String, &str)> = vec![
        ("a".repeat(64 * 1024), "at most 8192"),
        (hs256(&claims("h", &many, 600)), "at most 8192"),
        (hs256(&claims("h", &fewer, 600)), "at most 256"),
        ("e30.e30.%%%".to_owned(), "base64url"),
        ("eyJhbGciOiJIUzI1NiJ9.e30".to_owned(), "three"),
        ("!!!!.e30.c2ln".to_owned(), "base64url"),
        (hs256(&deep), "nested deeper than 16"),
        (hs256(&claims("h", &["q/#", "bad/#/x"], 600)), "'bad/#/x'"),
        (hs256(&claims("h", &[""], 600)), "granted pattern ''"),
        (
            hs256(&json!({"sub": "h", "exp": auth::now() + 60})),
            "\"topics\"",
        ),
        (hs256(&json!({"sub": "h", "topics": ["q/#"]})), "exp"),
    ];
    for (i, (token, says)) in cases.iter().enumerate() {
        let started = Instant::now();
        let e = auth_op(&mut sub, token, i as u64);
        assert_eq!(error_code(&e), "unauthorized", "case {i}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(says),
            "case {i}: {e}"
        );
        assert_eq!(e["id"], i as u64);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "case {i} took {:?}",
            started.elapsed()
        );
    }
    // The connection is fine, and still holds no grants.
    sub.sync();
    assert_eq!(
        error_code(&subscribe(&mut sub, &["q/1"], 1)),
        "unauthorized"
    );
    // On the upgrade URL a 64 KiB token does not fit the 8 KiB request head.
    let (status, _, _) = refused_upgrade(
        &broker,
        &format!("/ws?token={}", "a".repeat(64 * 1024)),
        &[],
    );
    assert_eq!(status, 431);
    assert_eq!(
        metric(&broker, "tickwire_auth_refused_total{reason=\"too_large\"}"),
        2
    );
    assert_eq!(
        metric(
            &broker,
            "tickwire_auth_refused_total{reason=\"bad_claims\"}"
        ),
        6
    );
    assert_eq!(
        metric(&broker, "tickwire_auth_refused_total{reason=\"malformed\"}"),
        3
    );
}

#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let keys = KeyDir::new("aud");
    let key = keys.secret();
    let broker = start(|c| {
        c.jwt_key = Some(key);
        c.jwt_audience = Some("quotes-api".into());
        c.jwt_issuer = Some("https://idp.example".into());
    });
    let mut c = claims("ivan", &["quotes/#"], 600);
    let (status, _, body) = refused_upgrade(&broker, &format!("/ws?token={}", hs256(&c)), &[]);
    assert_eq!(status, 401);
    assert!(body.contains("audience"), "{body}");
    c["aud"] = json!("quotes-api");
    c["iss"] = json!("https://other.example");
    let (status, _, body) = refused_upgrade(&broker, &format!("/ws?token={}", hs256(&c)), &[]);
    assert_eq!(status, 401);
    assert!(body.contains("issuer"), "{body}");
    c["iss"] = json!("https://idp.example");
    let mut sub = Sub::connect(&broker, &format!("?token={}", hs256(&c)));
    sub.subscribe(&["quotes/A"]);
}

#[test]
fn metrics_count_authentications_and_errors() {
    let keys = KeyDir::new("metrics");
    let broker = with_key(&keys);
    let mut sub = Sub::connect(&broker, "");
    subscribe(&mut sub, &["a"], 1);
    auth_op(&mut sub, &hs256(&claims("j", &["a"], 60)), 2);
    auth_op(&mut sub, &hs256(&claims("j", &["a"], -60)), 3);
    subscribe(&mut sub, &["b"], 4);
    assert_eq!(metric(&broker, "tickwire_auth_accepted_total"), 1);
    assert_eq!(
        metric(&broker, "tickwire_auth_refused_total{reason=\"expired\"}"),
        1
    );
    for code in ["unauthorized", "token_expired", "forbidden"] {
        assert_eq!(
            metric(
                &broker,
                &format!("tickwire_client_errors_total{{code=\"{code}\"}}")
            ),
            1,
            "{code}"
        );
    }
}

#[test]
fn the_debug_log_names_the_subject_never_the_token() {
    let keys = KeyDir::new("log");
    let secret = keys.secret();
    let tw =
        util::child::Tickwire::start("auth-log", &["--jwt-key", &secret, "--log-level", "debug"]);
    let token = hs256(&claims("kate", &["quotes/#", "fx/+"], 600));
    let mut sub = Sub::connect_to(tw.public, &format!("/ws?token={token}"));
    sub.subscribe(&["quotes/A"]);
    let refresh = hs256(&claims("kate", &["quotes/#"], 900));
    sub.send(json!({"op": "auth", "token": refresh, "id": 1}));
    assert_eq!(sub.next()["type"], "authenticated");
    let bad = hs256(&claims("kate", &["quotes/#"], -900));
    sub.send(json!({"op": "auth", "token": bad, "id": 2}));
    assert_eq!(sub.next()["code"], "token_expired");
    sub.sync();
    let log = tw.log_text();
    assert!(log.contains("sub kate, 2 grant(s)"), "{log}");
    assert!(log.contains("sub kate, 1 grant(s)"), "{log}");
    assert!(log.contains("auth refused: the token expired"), "{log}");
    for t in [&token, &refresh, &bad] {
        let signature = t.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token in the log:\n{log}");
    }
    assert!(!log.contains("tickwire-test-secret"), "the key in the log");
}

#[test]
fn reloading_the_key_checks_new_tokens_with_it() {
    let keys = KeyDir::new("reload");
    let path = keys.secret();
    let broker = start(|c| c.jwt_key = Some(path.clone()));
    let mut held = Sub::connect(
        &broker,
        &format!("?token={}", hs256(&claims("l", &["a/#"], 600))),
    );
    held.subscribe(&["a/1"]);
    let other: &[u8] = b"another-secret-of-forty-bytes-0123456789";
    std::fs::write(&path, other).unwrap();
    broker.reload().expect("the new key loads");
    let old = hs256(&claims("l", &["a/#"], 600));
    let (status, _, _) = refused_upgrade(&broker, &format!("/ws?token={old}"), &[]);
    assert_eq!(status, 401, "a token of the old key");
    let new = auth::sign(
        &claims("l", &["a/#"], 600),
        jsonwebtoken::Algorithm::HS256,
        &jsonwebtoken::EncodingKey::from_secret(other),
    );
    Sub::connect(&broker, &format!("?token={new}")).subscribe(&["a/2"]);
    // The connection that held a grant keeps it until its token expires.
    held.subscribe(&["a/3"]);
    // A key file gone bad: the reload says why, and the key in use stays.
    std::fs::write(&path, b"short").unwrap();
    let err = broker.reload().unwrap_err().to_string();
    assert!(
        err.contains("at least 32") && err.contains("stays in use"),
        "{err}"
    );
    Sub::connect(&broker, &format!("?token={new}")).subscribe(&["a/4"]);
}

/// The README's walk-through: `examples/mint_token.rs` mints a token `--jwt-key` accepts (cargo
/// builds the examples before it runs the tests).
#[test]
fn the_mint_token_example_makes_tokens_the_broker_takes() {
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples/mint_token"))
        .expect("target/<profile>/examples");
    if !example.exists() {
        // Run alone (`--test entitlements`), cargo did not build the examples: build this one.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = exe.to_string_lossy().contains("/release/");
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "--quiet", "--example", "mint_token"]);
        if release {
            build.arg("--release");
        }
        let status = build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(
            status.success() && example.exists(),
            "cannot build the example"
        );
    }
    let keys = KeyDir::new("mint");
    let secret = keys.secret();
    let (rsa_private, rsa_public) = keys.rsa();
    let rsa_private = keys.file("rsa-private.pem", &rsa_private);
    for (sign_with, check_with) in [(&secret, &secret), (&rsa_private, &rsa_public)] {
        let out = std::process::Command::new(&example)
            .args([
                "--key",
                sign_with,
                "--sub",
                "alice",
                "--topics",
                "quotes/#,fx/+",
                "--ttl",
                "600",
            ])
            .output()
            .expect("mint_token runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let broker = start(|c| c.jwt_key = Some(check_with.clone()));
        let mut sub = Sub::connect(&broker, "");
        let ok = auth_op(&mut sub, &token, 1);
        assert_eq!(
            (&ok["type"], &ok["sub"]),
            (&json!("authenticated"), &json!("alice"))
        );
        sub.subscribe(&["quotes/+", "fx/EURUSD"]);
        assert_eq!(error_code(&subscribe(&mut sub, &["#"], 2)), "forbidden");
    }
    let out = std::process::Command::new(&example)
        .args(["--key", &secret])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--topics is required"));
}

#[test]
fn a_subscriber_without_a_token_is_closed_after_the_handshake_timeout() {
    let keys = KeyDir::new("no-token");
    let key = keys.secret();
    let broker = start(|c| {
        c.jwt_key = Some(key);
        c.handshake_timeout = Duration::from_secs(1);
    });
    let started = Instant::now();
    let mut idle = Sub::connect(&broker, "");
    let mut late = Sub::connect(&broker, "");
    std::thread::sleep(Duration::from_millis(300));
    let token = hs256(&claims("mia", &["quotes/#"], 600));
    assert_eq!(auth_op(&mut late, &token, 1)["type"], "authenticated");
    let (code, reason) = close_of(&mut idle, Duration::from_secs(4));
    assert_eq!((code, reason.as_str()), (1008, "no token"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // The one that authenticated in time stays.
    std::thread::sleep(Duration::from_millis(1200));
    late.subscribe(&["quotes/A"]);
    assert_eq!(metric(&broker, "tickwire_no_token_closed_total"), 1);
    // Without a key, nobody is waited for.
    let open = start(|c| c.handshake_timeout = Duration::from_millis(200));
    let mut sub = Sub::connect(&open, "");
    std::thread::sleep(Duration::from_millis(600));
    sub.subscribe(&["quotes/A"]);
}

#[test]
fn a_token_expiring_in_a_million_years_is_fine() {
    let keys = KeyDir::new("far");
    let broker = with_key(&keys);
    let far = hs256(&json!({"sub": "n", "topics": ["a"], "exp": 999_999_999_999_999u64}));
    let mut sub = Sub::connect(&broker, &format!("?token={far}"));
    sub.subscribe(&["a"]);
    assert_eq!(auth_op(&mut sub, &far, 2)["exp"], 999_999_999_999_999u64);
    // Past NumericDate's range: refused, not a panic.
    let e = auth_op(&mut sub, &hs256(&json!({"topics": ["a"], "exp": 1e300})), 3);
    assert_eq!(error_code(&e), "unauthorized");
    sub.sync();
}
