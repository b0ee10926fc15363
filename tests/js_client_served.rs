//! The public listener serves the JavaScript client at `GET /tickwire.js`: the file in
//! clients/js, as JavaScript, cacheable, revalidated with its ETag (304 on a match, over the
//! same kept connection); and the quote board imports it from there.

mod util;
use util::broker as b;
use util::http::KeepAlive;

const CLIENT: &str = include_str!("../clients/js/tickwire.js");

#[test]
fn the_client_is_served_with_cache_headers_and_revalidated_with_its_etag() {
    let broker = b::start(|_| {});
    let mut c = KeepAlive::connect(broker.public_addr());

    let first = c.call("GET", "/tickwire.js", &[], b"");
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), CLIENT, "the file in clients/js, as it is");
    assert_eq!(
        first.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(first.header("cache-control"), Some("public, max-age=3600"));
    let etag = first.header("etag").expect("an ETag").to_owned();
    assert!(
        etag.starts_with(&format!("\"{}-", env!("CARGO_PKG_VERSION"))) && etag.ends_with('"'),
        "a quoted tag naming the version: {etag}"
    );
    assert!(first.keeps());

    // The browser's copy is this build's: 304, no body, the same validators; the connection
    // stays usable, so the answer was framed right.
    let again = c.call("GET", "/tickwire.js", &[("If-None-Match", &etag)], b"");
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("content-length"), None);
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(again.header("cache-control"), Some("public, max-age=3600"));
    assert!(again.keeps());

    // A list with a weak form of the tag matches too; another build's tag does not.
    let listed = format!("\"0.0.0-0000000000000000\", W/{etag}");
    let weak = c.call("GET", "/tickwire.js", &[("If-None-Match", &listed)], b"");
    assert_eq!(weak.status, 304);
    let stale = c.call(
        "GET",
        "/tickwire.js",
        &[("If-None-Match", "\"0.0.0-0000000000000000\"")],
        b"",
    );
    assert_eq!((stale.status, stale.text().as_str()), (200, CLIENT));

    let post = c.call("POST", "/tickwire.js", &[], b"");
    assert_eq!((post.status, post.header("allow")), (405, Some("GET")));
    broker.shutdown();
}

#[test]
fn the_board_imports_the_served_client() {
    let broker = b::start(|_| {});
    let (status, _, page) = b::http(broker.public_addr(), "GET", "/", &[], b"");
    assert_eq!(status, 200);
    assert!(
        page.contains(r#"from "/tickwire.js""#),
        "the page uses the served client, not a copy of its own"
    );
    broker.shutdown();
}
