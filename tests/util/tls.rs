//! TLS for tests: a certificate authority made for the test (rcgen), a server certificate for
//! `localhost` and 127.0.0.1 signed by it and written as PEM files, reissued on demand (for
//! reload tests), and clients that trust it: a rustls client under tungstenite, and raw TLS
//! streams.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::Value;
use tungstenite::Message;

/// A test CA and the files of a server certificate it signed.
pub struct Pki {
    pub dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    /// PEM of the CA certificate (for `curl --cacert`).
    pub ca_path: PathBuf,
    /// The server's chain (leaf, then the CA) and its key.
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Pki {
    /// A new CA in a fresh temporary directory, and a leaf certificate named `cn`.
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "tickwire-tls-{name}-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "tickwire test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).expect("write CA");
        let pki = Pki {
            cert_path: dir.join("cert.pem"),
            key_path: dir.join("key.pem"),
            dir,
            ca,
            ca_path,
        };
        pki.issue("first");
        pki
    }

    /// Writes a new leaf certificate (common name `cn`, a new key) over the server's files;
    /// returns its DER, to tell it from others.
    pub fn issue(&self, cn: &str) -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.distinguished_name.push(DnType::CommonName, cn);
        let leaf = params.signed_by(&key, &self.ca).expect("leaf");
        // A chain: leaf first, then the CA (which clients may or may not need).
        let chain = format!("{}{}", leaf.pem(), self.ca.pem());
        std::fs::write(&self.cert_path, chain).expect("write cert");
        std::fs::write(&self.key_path, key.serialize_pem()).expect("write key");
        leaf.der().to_vec()
    }

    pub fn cert(&self) -> String {
        self.cert_path.to_str().expect("utf-8 path").to_owned()
    }

    pub fn key(&self) -> String {
        self.key_path.to_str().expect("utf-8 path").to_owned()
    }

    /// A rustls client trusting this CA, TLS 1.3 and 1.2 (or only `versions`).
    pub fn client(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca.der().to_vec()))
            .expect("CA added");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions = if versions.is_empty() {
            rustls::DEFAULT_VERSIONS
        } else {
            versions
        };
        Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(versions)
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A TLS stream to `addr` for server name `localhost`, handshake done; returns it with the
/// certificate the server showed.
pub fn tls_stream(addr: SocketAddr, config: &Arc<ClientConfig>) -> (TlsStream, Vec<u8>) {
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let name = ServerName::try_from("localhost").expect("name");
    let conn = ClientConnection::new(config.clone(), name).expect("client session");
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("TLS handshake");
    }
    let leaf = stream
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .expect("a server certificate");
    (stream, leaf)
}

/// A WebSocket subscriber over TLS (wss://).
pub struct TlsSub {
    pub ws: tungstenite::WebSocket<TlsStream>,
    /// The server's certificate (DER) seen in the handshake.
    pub leaf: Vec<u8>,
}

impl TlsSub {
    pub fn connect(addr: SocketAddr, path: &str, config: &Arc<ClientConfig>) -> TlsSub {
        let (stream, leaf) = tls_stream(addr, config);
        let url = format!("wss://localhost:{}{path}", addr.port());
        let (ws, _) = tungstenite::client(url, stream).expect("WebSocket handshake over TLS");
        TlsSub { ws, leaf }
    }

    pub fn send(&mut self, v: Value) {
        self.ws.send(Message::Text(v.to_string())).expect("send");
    }

    /// The next JSON text message (pings skipped).
    pub fn next(&mut self) -> Value {
        super::broker::next_json(&mut self.ws)
    }

    pub fn subscribe(&mut self, topics: &[&str]) {
        self.send(serde_json::json!({"op": "subscribe", "topics": topics, "id": 1}));
        let ack = self.next();
        assert_eq!(ack["type"], "subscribed", "{ack}");
        assert_eq!(ack["topics"], serde_json::json!(topics), "{ack}");
        assert_eq!(ack["id"], 1, "{ack}");
    }
}

/// The first bytes a TLS client sends (its ClientHello records), for hostile-client tests.
pub fn client_hello(config: &Arc<ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("localhost").expect("name");
    let mut conn = ClientConnection::new(config.clone(), name).expect("client session");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write to a Vec");
    }
    out
}

/// Reads from a raw socket until the peer closes it (or resets it): what came, and how.
pub fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

/// Writes `bytes` then waits; for hostile clients that stop half-way.
pub fn write_raw(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).expect("write");
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
