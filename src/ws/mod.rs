//! The WebSocket protocol (RFC 6455), sans-IO: nothing in here touches a socket.
//!
//! - [`handshake`]: what RFC 6455 adds to an HTTP/1.1 request (parsed by [`crate::http`]): the
//!   upgrade checks, the `Sec-WebSocket-Accept` key, the 101.
//! - [`frame`]: frame headers (every length form), opcodes, encoding of outgoing frames.
//! - [`mask`]: the XOR masking of client payloads.
//! - [`utf8`]: incremental UTF-8 validation that fails on the first bad byte.
//! - [`close`]: close codes and close-frame payloads.
//! - [`context`]: the per-connection read state machine that turns bytes into messages.
//! - [`extensions`]: the `Sec-WebSocket-Extensions` header's grammar: a client's offers.
//! - [`deflate`]: permessage-deflate (RFC 7692): negotiation, compressing the server's messages,
//!   inflating the client's.
//!
//! Every function here works on byte slices, so every edge case is a unit test with no socket.

pub mod close;
pub mod context;
pub mod deflate;
pub mod extensions;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;

pub use close::CloseCode;
pub use context::{Incoming, Limits, ProtocolError, Violation, WsContext};
pub use frame::{FrameHeader, OpCode};
