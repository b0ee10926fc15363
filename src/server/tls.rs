//! TLS on a listener: the certificate chain and key, read from PEM files into a rustls server
//! configuration (TLS 1.2 and 1.3 only, the `ring` provider), new sessions made from it, and
//! reloading from the same files (SIGHUP): new handshakes get the new certificate, sessions
//! already made keep theirs, and a reload that fails keeps the old one and says why.

use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

/// The TLS settings of one listener, swapped as a whole on reload.
pub struct TlsAcceptor {
    cert_path: String,
    key_path: String,
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Reads the certificate chain (leaf first) and its private key; the message of an error
    /// names the file and what is wrong with it.
    pub fn from_files(cert_path: &str, key_path: &str) -> Result<TlsAcceptor, String> {
        let config = load(cert_path, key_path)?;
        Ok(TlsAcceptor {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads both files again. On success new handshakes use them; on error nothing changes.
    pub fn reload(&self) -> Result<(), String> {
        let config = load(&self.cert_path, &self.key_path)?;
        *self.current.write() = Arc::new(config);
        Ok(())
    }

    /// A server session for a new connection, with the configuration of the moment.
    pub(crate) fn session(&self) -> Result<ServerConnection, rustls::Error> {
        let config = self.current.read().clone();
        ServerConnection::new(config)
    }
}

fn load(cert_path: &str, key_path: &str) -> Result<ServerConfig, String> {
    let cert_pem =
        std::fs::read(cert_path).map_err(|e| format!("tls_cert: cannot read {cert_path}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls_cert {cert_path}: not a PEM certificate chain: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "tls_cert {cert_path}: no certificate in it (expected PEM, \
             -----BEGIN CERTIFICATE-----, leaf first)"
        ));
    }
    let key_pem =
        std::fs::read(key_path).map_err(|e| format!("tls_key: cannot read {key_path}: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!("tls_key {key_path}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {e}")
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!("tls_cert {cert_path} and tls_key {key_path} do not make a certificate: {e}")
        })?;
    // Only HTTP/1.1 is spoken here (WebSocket upgrades included); a client offering ALPN
    // without it is told so in the handshake rather than misunderstood after it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
