//! tickwire: a WebSocket pub/sub broker for live market data, also shipped as a C library.
//!
//! # Layout
//!
//! - [`ws`]: RFC 6455 without sockets: the upgrade handshake, the frame codec, message assembly,
//!   UTF-8 validation and close codes, all pure functions and state machines over byte slices.
//! - [`server`]: the mio event loop workers that own the sockets: accepting, reading, writing with
//!   `writev`, the closing handshake, timeouts and pings. It calls an application through the
//!   [`server::Handler`] trait and knows nothing of topics.

pub mod server;
pub mod ws;
