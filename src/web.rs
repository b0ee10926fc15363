//! The quote board page, embedded into the binary and served at `GET /` on the public listener.

/// `web/index.html`: plain HTML, CSS and JavaScript, no build step.
pub const INDEX_HTML: &str = include_str!("../web/index.html");
