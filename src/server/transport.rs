//! The byte stream under one connection: plain TCP, or TLS over it. The layers above (HTTP,
//! WebSocket, the outbound queue) read and write plaintext through [`Transport`] and never know
//! which it is.
//!
//! TLS is a rustls `ServerConnection`, which does no I/O of its own: reading pulls records from
//! the socket into it until it has plaintext to give (or the socket would block), and writing
//! hands it plaintext to encrypt, then pushes its records to the socket. It holds at most one
//! write's worth of records the socket has not taken (a write is refused with `WouldBlock`
//! until they are out), so a client that stops reading costs a bounded amount here, and the
//! outbound queue's limits and stall detection see the same backpressure as over plain TCP.
//! Before the handshake is done a client may send at most [`MAX_HANDSHAKE_BYTES`] (rustls alone
//! would buffer a handshake message of up to 64 KiB), so a half-open connection costs a few KiB
//! however it is crafted.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use rustls::ServerConnection;

/// What a client may send before its handshake is done. A ClientHello is 200 bytes to 2 KiB
/// (post-quantum key shares included); the rest of a client's handshake is smaller still.
pub(crate) const MAX_HANDSHAKE_BYTES: usize = 16 * 1024;

/// A connection's socket, as the layers above see it.
#[derive(Debug)]
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<Tls>),
}

/// A TLS session over its socket.
#[derive(Debug)]
pub(crate) struct Tls {
    sock: TcpStream,
    session: ServerConnection,
    /// The socket said end-of-file: nothing more will come.
    eof: bool,
    /// Bytes read while the handshake was not done.
    handshake_read: usize,
}

impl Transport {
    pub fn tls(sock: TcpStream, session: ServerConnection) -> Transport {
        Transport::Tls(Box::new(Tls {
            sock,
            session,
            eof: false,
            handshake_read: 0,
        }))
    }

    /// A TLS session whose handshake has not finished.
    pub fn is_handshaking(&self) -> bool {
        matches!(self, Transport::Tls(t) if t.session.is_handshaking())
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// TLS records (handshake or data) are waiting for the socket.
    pub fn wants_write(&self) -> bool {
        matches!(self, Transport::Tls(t) if t.session.wants_write())
    }

    /// Writes the TLS records waiting, as far as the socket takes them: `Ok(true)` when none is
    /// left. Always `Ok(true)` for plain TCP.
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(t) => t.flush_pending(),
        }
    }

    /// Our side is done: TLS says so with close_notify, then TCP with a FIN.
    pub fn shutdown_write(&mut self) {
        match self {
            Transport::Plain(s) => {
                let _ = s.shutdown(Shutdown::Write);
            }
            Transport::Tls(t) => {
                t.session.send_close_notify();
                let _ = t.flush_pending();
                let _ = t.sock.shutdown(Shutdown::Write);
            }
        }
    }
}

impl Tls {
    fn flush_pending(&mut self) -> io::Result<bool> {
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

impl Read for Transport {
    /// Plaintext, as for a socket: `Ok(0)` at the end (close_notify, or the peer's FIN),
    /// `WouldBlock` when nothing more has arrived, `InvalidData` for a TLS error (the alert that
    /// says why is sent first, as far as the socket takes it).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let t = match self {
            Transport::Plain(s) => return s.read(buf),
            Transport::Tls(t) => t,
        };
        loop {
            match t.session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: an end like any other here (no
                // message can be cut short unseen: frames and requests carry their lengths).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if t.eof {
                return Ok(0);
            }
            match t.session.read_tls(&mut t.sock) {
                Ok(0) => t.eof = true,
                Ok(n) if t.session.is_handshaking() => {
                    t.handshake_read += n;
                    if t.handshake_read > MAX_HANDSHAKE_BYTES {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "TLS handshake larger than 16 KiB",
                        ));
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(e) = t.session.process_new_packets() {
                let _ = t.flush_pending();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let t = match self {
            Transport::Plain(s) => return s.write(buf),
            Transport::Tls(t) => t,
        };
        // Records from the last write still waiting: the socket is full, as it would be for
        // plain TCP. Nothing more is taken until they are out.
        if !t.flush_pending()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = t.session.writer().write(buf)?;
        t.flush_pending()?;
        if n == 0 && !buf.is_empty() {
            // rustls's buffer is full (before the handshake is done it keeps plaintext).
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_pending().map(|_| ())
    }
}
