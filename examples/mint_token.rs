//! Mints a token for tickwire's entitlements (`--jwt-key`), for trying it out and for tests:
//!
//! ```text
//! openssl rand -base64 48 > jwt.secret
//! cargo run --example mint_token -- --key jwt.secret --sub alice --topics 'quotes/#,fx/+' --ttl 3600
//! ```
//!
//! prints a JWT whose `topics` claim grants those patterns until `exp` (now + ttl seconds). With
//! an HS256 secret (the file's bytes, a trailing newline dropped, as the broker reads it) it
//! signs HS256; with a PEM private key, RS256 (RSA) or ES256 (P-256), and the broker then takes
//! the matching public key. `--aud` and `--iss` add those claims. A real deployment mints tokens
//! in its own identity service: this is the shape they must have.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

fn main() {
    match run() {
        Ok(token) => println!("{token}"),
        Err(e) => {
            eprintln!("mint_token: {e}");
            eprintln!(
                "usage: mint_token --key FILE --topics 'PATTERN,PATTERN' [--sub NAME] \
                 [--ttl SECONDS (default 3600)] [--aud AUDIENCE] [--iss ISSUER]"
            );
            std::process::exit(2);
        }
    }
}

fn run() -> Result<String, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| -> Option<&str> {
        let at = args.iter().position(|a| a == name)?;
        args.get(at + 1).map(String::as_str)
    };
    if let Some(unknown) = args.iter().step_by(2).find(|a| {
        !matches!(
            a.as_str(),
            "--key" | "--sub" | "--topics" | "--ttl" | "--aud" | "--iss"
        )
    }) {
        return Err(format!("unknown argument '{unknown}'"));
    }
    let path = value("--key").ok_or("--key FILE is required")?;
    let topics: Vec<&str> = value("--topics")
        .ok_or("--topics is required (comma-separated patterns)")?
        .split(',')
        .filter(|t| !t.is_empty())
        .collect();
    let ttl: u64 = value("--ttl")
        .unwrap_or("3600")
        .parse()
        .map_err(|_| "--ttl must be a whole number of seconds")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let mut claims = json!({"topics": topics, "iat": now, "exp": now + ttl});
    for (flag, claim) in [("--sub", "sub"), ("--aud", "aud"), ("--iss", "iss")] {
        if let Some(v) = value(flag) {
            claims[claim] = json!(v);
        }
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let (alg, key) = if bytes.starts_with(b"-----BEGIN") {
        if let Ok(k) = EncodingKey::from_rsa_pem(&bytes) {
            (Algorithm::RS256, k)
        } else {
            let k = EncodingKey::from_ec_pem(&bytes)
                .map_err(|_| format!("{path}: neither an RSA nor a P-256 private key"))?;
            (Algorithm::ES256, k)
        }
    } else {
        let secret = bytes
            .strip_suffix(b"\r\n")
            .or_else(|| bytes.strip_suffix(b"\n"))
            .unwrap_or(&bytes);
        (Algorithm::HS256, EncodingKey::from_secret(secret))
    };
    encode(&Header::new(alg), &claims, &key).map_err(|e| format!("cannot sign: {e}"))
}
