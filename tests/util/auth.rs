//! Tokens for tests: an HS256 secret written to a file, RSA and EC key pairs, and JWTs minted
//! with them (jsonwebtoken, the crate the broker verifies with).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// The HS256 secret of the tests (40 bytes).
pub const SECRET: &[u8] = b"tickwire-test-secret-0123456789abcdefghij";

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A directory for key files, removed when dropped.
pub struct KeyDir(pub PathBuf);

impl KeyDir {
    pub fn new(name: &str) -> KeyDir {
        let dir = std::env::temp_dir().join(format!(
            "tickwire-keys-{name}-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).expect("key dir");
        KeyDir(dir)
    }

    /// Writes `bytes` to `name` in the directory; returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).expect("write key file");
        path.to_str().expect("utf-8").to_owned()
    }

    /// The test secret, with a trailing newline as an editor would leave it.
    pub fn secret(&self) -> String {
        let mut bytes = SECRET.to_vec();
        bytes.push(b'\n');
        self.file("jwt.secret", &bytes)
    }

    /// An RSA key pair made with openssl: (private PEM, public key path).
    pub fn rsa(&self) -> (Vec<u8>, String) {
        let private = self.0.join("rsa.key");
        run(Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&private));
        let public = self.0.join("rsa.pub");
        run(Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public));
        (
            std::fs::read(&private).expect("rsa key"),
            public.to_str().expect("utf-8").to_owned(),
        )
    }

    /// A P-256 key pair: (private PKCS#8 PEM, public key path).
    pub fn ec(&self) -> (Vec<u8>, String) {
        let key = rcgen::KeyPair::generate().expect("EC key");
        let public = self.file("ec.pub", key.public_key_pem().as_bytes());
        (key.serialize_pem().into_bytes(), public)
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .expect("openssl runs (tests/run_all.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Claims for `sub`, granting `topics`, expiring `ttl` seconds from now (negative: past).
pub fn claims(sub: &str, topics: &[&str], ttl: i64) -> Value {
    json!({"sub": sub, "topics": topics, "exp": (now() as i64 + ttl), "iat": now()})
}

/// An HS256 token signed with [`SECRET`].
pub fn hs256(claims: &Value) -> String {
    sign(claims, Algorithm::HS256, &EncodingKey::from_secret(SECRET))
}

pub fn sign(claims: &Value, alg: Algorithm, key: &EncodingKey) -> String {
    encode(&Header::new(alg), claims, key).expect("token signs")
}

pub fn rs256(claims: &Value, private_pem: &[u8]) -> String {
    let key = EncodingKey::from_rsa_pem(private_pem).expect("RSA key");
    sign(claims, Algorithm::RS256, &key)
}

pub fn es256(claims: &Value, private_pem: &[u8]) -> String {
    let key = EncodingKey::from_ec_pem(private_pem).expect("EC key");
    sign(claims, Algorithm::ES256, &key)
}

/// A token with any header and claims and a junk signature (for alg confusion and `none`).
pub fn unsigned(header: &Value, claims: &Value) -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.c2lnbmF0dXJl", b64(header), b64(claims))
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
