//! Token verification for entitlements (`--jwt-key`): the key and what it accepts, and one JWT
//! turned into an [`Entitlement`] (who, until when, which patterns) or a [`TokenError`] saying
//! why not. Pure: the clock is an argument, nothing here touches a socket or a connection.
//!
//! The signature and the `aud`/`iss` checks are `jsonwebtoken`'s (RustCrypto underneath). What
//! is done here, before it runs, is cheap refusal of what cannot be a token of ours: a size
//! limit, the three-part base64url shape, and the header's `alg` compared with the one algorithm
//! the key is for (so `none`, or HS256 "signed" with an RSA public key as the secret, is refused
//! by name). After it: `exp` (required) and `nbf` read as numbers by our own strict claims type
//! (a string `nbf` is an error, not an absent claim: CVE-2026-25537's class), with the leeway;
//! `topics` required, each a valid pattern, at most [`MAX_GRANTS`].

use std::borrow::Cow;

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::coverage::Grants;

/// The longest token accepted, in bytes: a token of a few dozen grants is well under 2 KiB,
/// and an upgrade request's whole head is at most 8 KiB anyway.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The most patterns one token may grant.
pub const MAX_GRANTS: usize = 256;
/// How deep JSON may nest in a token's header and claims: `topics` is an array in an object,
/// and nothing a token of ours needs goes deeper. Checked before anything is parsed.
pub const MAX_TOKEN_JSON_DEPTH: usize = 16;
/// The most leeway for clock skew a config may set.
pub const MAX_LEEWAY_SECS: u64 = 30;

/// Why a token was refused: the `reason` label of `tickwire_auth_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// Not a JWS in compact form: parts, base64url, header JSON.
    Malformed,
    /// Over [`MAX_TOKEN_BYTES`].
    TooLarge,
    /// Signed with another algorithm than the key's (`none` included).
    WrongAlgorithm,
    /// The signature does not verify with the key.
    BadSignature,
    /// Past `exp` (plus the leeway).
    Expired,
    /// Before `nbf` (minus the leeway).
    NotYetValid,
    /// `aud` missing or not the configured audience, or present when none is configured.
    WrongAudience,
    /// `iss` missing or not the configured issuer.
    WrongIssuer,
    /// Claims of the wrong shape: no `exp` or `topics`, a grant that is not a pattern, too
    /// many grants, JSON nested too deep.
    BadClaims,
}

impl Refusal {
    pub const ALL: [Refusal; 9] = [
        Refusal::Malformed,
        Refusal::TooLarge,
        Refusal::WrongAlgorithm,
        Refusal::BadSignature,
        Refusal::Expired,
        Refusal::NotYetValid,
        Refusal::WrongAudience,
        Refusal::WrongIssuer,
        Refusal::BadClaims,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::TooLarge => "too_large",
            Refusal::WrongAlgorithm => "wrong_algorithm",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::WrongAudience => "wrong_audience",
            Refusal::WrongIssuer => "wrong_issuer",
            Refusal::BadClaims => "bad_claims",
        }
    }
}

/// A refused token: why, and a message for the client (it never quotes the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub refusal: Refusal,
    pub message: String,
}

impl TokenError {
    fn new(refusal: Refusal, message: impl Into<String>) -> Self {
        TokenError {
            refusal,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What an accepted token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    /// The `sub` claim, if any: for logs and the `authenticated` reply.
    pub sub: Option<String>,
    /// The `exp` claim, in Unix seconds.
    pub exp: u64,
    /// The patterns the holder may subscribe to (and whatever they cover).
    pub grants: Grants,
}

/// The claims read from a token. Unknown claims are ignored; these are typed strictly.
#[derive(Deserialize)]
struct Claims {
    exp: NumericDate,
    #[serde(default)]
    nbf: Option<NumericDate>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    topics: Option<Vec<String>>,
    /// Read for their type and presence; `jsonwebtoken` compares their values.
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    iss: Option<String>,
}

/// RFC 7519's `aud`: one string or an array of them.
#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)] // only its shape is checked here
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// RFC 7519's NumericDate: seconds since the epoch, a JSON number (fractions allowed).
#[derive(Clone, Copy)]
struct NumericDate(u64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let secs = f64::deserialize(d)?;
        if !(0.0..1e15).contains(&secs) {
            return Err(serde::de::Error::custom(format!(
                "{secs} is not a time in seconds since 1970"
            )));
        }
        Ok(NumericDate(secs as u64))
    }
}

/// What kind of key `--jwt-key` holds, which decides the one algorithm accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A shared secret: HS256.
    Hmac,
    /// An RSA public key: RS256.
    Rsa,
    /// A P-256 public key: ES256.
    Ec,
}

impl KeyKind {
    pub fn algorithm(self) -> Algorithm {
        match self {
            KeyKind::Hmac => Algorithm::HS256,
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::Ec => Algorithm::ES256,
        }
    }

    fn alg_name(self) -> &'static str {
        match self {
            KeyKind::Hmac => "HS256",
            KeyKind::Rsa => "RS256",
            KeyKind::Ec => "ES256",
        }
    }
}

/// Checks tokens against one key. Built once (at start, and on reload), shared by the workers.
pub struct Verifier {
    key: DecodingKey,
    kind: KeyKind,
    validation: Validation,
    leeway: u64,
    /// `--jwt-audience` / `--jwt-issuer` set: the claim must be there.
    audience_required: bool,
    issuer_required: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("Verifier")
            .field("kind", &self.kind)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

/// The shortest HS256 secret accepted: RFC 7518 3.2 asks for a key at least as long as the hash.
pub const MIN_SECRET_BYTES: usize = 32;

impl Verifier {
    /// Reads the key file: a PEM public key (RSA for RS256, P-256 EC for ES256), or else an
    /// HS256 secret (the file's bytes, a trailing newline dropped, at least 32 bytes).
    pub fn from_file(
        path: &str,
        audience: Option<&str>,
        issuer: Option<&str>,
        leeway: u64,
    ) -> Result<Verifier, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("jwt_key: cannot read {path}: {e}"))?;
        Self::from_key(&bytes, audience, issuer, leeway).map_err(|e| format!("jwt_key {path}: {e}"))
    }

    /// [`Verifier::from_file`] from the file's contents.
    pub fn from_key(
        bytes: &[u8],
        audience: Option<&str>,
        issuer: Option<&str>,
        leeway: u64,
    ) -> Result<Verifier, String> {
        // Should the process have no jsonwebtoken crypto provider yet (another crate's features
        // can leave it undecided), use the one this crate was built with. One already chosen stays.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        if leeway > MAX_LEEWAY_SECS {
            return Err(format!(
                "a leeway of {leeway} s is more than the {MAX_LEEWAY_SECS} s allowed"
            ));
        }
        let (key, kind) = load_key(bytes)?;
        let mut validation = Validation::new(kind.algorithm());
        // exp and nbf are checked on our own typed claims, against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        // Presence is checked on our own claims, in a fixed order (jsonwebtoken's required
        // claims are a hash set: which missing one it names would vary from run to run).
        validation.set_required_spec_claims::<&str>(&[]);
        if let Some(aud) = audience {
            validation.set_audience(&[aud]);
        }
        if let Some(iss) = issuer {
            validation.set_issuer(&[iss]);
        }
        Ok(Verifier {
            key,
            kind,
            validation,
            leeway,
            audience_required: audience.is_some(),
            issuer_required: issuer.is_some(),
        })
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Seconds of clock skew allowed around `exp` and `nbf`.
    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    /// Checks `token` at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Entitlement, TokenError> {
        let (header, claims) = check_shape(token)?;
        let header = decode_part(header, "header", Refusal::Malformed)?;
        decode_part(claims, "claims", Refusal::BadClaims)?;
        self.check_alg(&header)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(refusal_of)?;
        let claims = data.claims;
        if self.audience_required && claims.aud.is_none() {
            return Err(TokenError::new(
                Refusal::WrongAudience,
                "the token has no audience (aud) claim",
            ));
        }
        if self.issuer_required && claims.iss.is_none() {
            return Err(TokenError::new(
                Refusal::WrongIssuer,
                "the token has no issuer (iss) claim",
            ));
        }
        let exp = claims.exp.0;
        if now > exp.saturating_add(self.leeway) {
            return Err(TokenError::new(
                Refusal::Expired,
                format!("the token expired {} s ago", now - exp),
            ));
        }
        if let Some(NumericDate(nbf)) = claims.nbf {
            if nbf > now.saturating_add(self.leeway) {
                return Err(TokenError::new(
                    Refusal::NotYetValid,
                    format!("the token is not valid for another {} s (nbf)", nbf - now),
                ));
            }
        }
        let topics = claims.topics.ok_or_else(|| {
            TokenError::new(
                Refusal::BadClaims,
                "the token has no \"topics\" claim: an array of the patterns it grants",
            )
        })?;
        if topics.len() > MAX_GRANTS {
            return Err(TokenError::new(
                Refusal::BadClaims,
                format!(
                    "the token grants {} patterns; at most {MAX_GRANTS} are accepted",
                    topics.len()
                ),
            ));
        }
        let grants = Grants::new(&topics).map_err(|e| TokenError::new(Refusal::BadClaims, e))?;
        Ok(Entitlement {
            sub: claims.sub,
            exp,
            grants,
        })
    }

    /// The header's `alg` must be the key's: refused here by name, before any crypto.
    fn check_alg(&self, header: &str) -> Result<(), TokenError> {
        #[derive(Deserialize)]
        struct Header<'a> {
            #[serde(borrow, default)]
            alg: Option<Cow<'a, str>>,
        }
        let parsed: Header = serde_json::from_str(header).map_err(|e| {
            TokenError::new(
                Refusal::Malformed,
                format!("the token's header is not a JSON object: {e}"),
            )
        })?;
        let expected = self.kind.alg_name();
        match parsed.alg.as_deref() {
            Some(alg) if alg == expected => Ok(()),
            Some(alg) => Err(TokenError::new(
                Refusal::WrongAlgorithm,
                format!(
                    "the token is signed with '{}'; this server accepts {expected} only",
                    alg.chars()
                        .take(16)
                        .flat_map(char::escape_debug)
                        .collect::<String>()
                ),
            )),
            None => Err(TokenError::new(
                Refusal::Malformed,
                "the token's header has no \"alg\"",
            )),
        }
    }
}

/// A part of the token decoded, as UTF-8 JSON text nested at most [`MAX_TOKEN_JSON_DEPTH`].
fn decode_part(part: &str, what: &str, refusal: Refusal) -> Result<String, TokenError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| {
            TokenError::new(
                Refusal::Malformed,
                format!("the token's {what} is not base64url"),
            )
        })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| TokenError::new(refusal, format!("the token's {what} is not UTF-8 JSON")))?;
    crate::broker::payload::check_depth(&text, MAX_TOKEN_JSON_DEPTH)
        .map_err(|e| TokenError::new(refusal, format!("the token's {what}: {e}")))?;
    Ok(text)
}

/// Size, three non-empty base64url parts: returns the header and claims parts.
fn check_shape(token: &str) -> Result<(&str, &str), TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::new(
            Refusal::TooLarge,
            format!(
                "the token is {} bytes; at most {MAX_TOKEN_BYTES} are accepted",
                token.len()
            ),
        ));
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() == 5 {
        return Err(TokenError::new(
            Refusal::Malformed,
            "encrypted tokens (JWE) are not supported: send a signed JWT",
        ));
    }
    if parts.len() != 3 {
        return Err(TokenError::new(
            Refusal::Malformed,
            "a token is a JWT: three base64url parts separated by '.'",
        ));
    }
    let base64url = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !parts.iter().all(|p| base64url(p)) {
        return Err(TokenError::new(
            Refusal::Malformed,
            "the token's parts must be non-empty base64url (A-Z a-z 0-9 - _, no padding)",
        ));
    }
    Ok((parts[0], parts[1]))
}

/// What `jsonwebtoken` said, as a refusal.
fn refusal_of(e: jsonwebtoken::errors::Error) -> TokenError {
    let (refusal, message) = match e.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => (
            Refusal::BadSignature,
            "the token's signature does not verify".to_owned(),
        ),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => (
            Refusal::WrongAlgorithm,
            "the token is signed with another algorithm than this server's key".to_owned(),
        ),
        ErrorKind::InvalidAudience => (
            Refusal::WrongAudience,
            "the token is for another audience (aud)".to_owned(),
        ),
        ErrorKind::InvalidIssuer => (
            Refusal::WrongIssuer,
            "the token is from another issuer (iss)".to_owned(),
        ),
        ErrorKind::Json(j) => (
            Refusal::BadClaims,
            format!("the token's claims are not as expected: {j}"),
        ),
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => (
            Refusal::Malformed,
            "the token is not a well-formed JWT".to_owned(),
        ),
        other => (
            Refusal::Malformed,
            format!("the token was refused: {other:?}"),
        ),
    };
    TokenError::new(refusal, message)
}

/// The key and its kind, from the key file's bytes.
fn load_key(bytes: &[u8]) -> Result<(DecodingKey, KeyKind), String> {
    let text = std::str::from_utf8(bytes).unwrap_or("");
    let (key, kind) = if text.trim_start().starts_with("-----BEGIN") {
        if text.contains("PRIVATE KEY-----") {
            return Err(
                "this is a private key: give tickwire the public key only (it never \
                        signs; `openssl pkey -in KEY -pubout` prints it)"
                    .to_owned(),
            );
        }
        if text.contains("BEGIN CERTIFICATE") {
            return Err("this is a certificate: give tickwire its public key \
                        (`openssl x509 -in CERT -pubkey -noout` prints it)"
                .to_owned());
        }
        if let Ok(k) = DecodingKey::from_rsa_pem(bytes) {
            (k, KeyKind::Rsa)
        } else if let Ok(k) = DecodingKey::from_ec_pem(bytes) {
            (k, KeyKind::Ec)
        } else {
            return Err("a PEM file that is neither an RSA nor an EC public key".to_owned());
        }
    } else {
        let secret = bytes
            .strip_suffix(b"\r\n")
            .or_else(|| bytes.strip_suffix(b"\n"))
            .unwrap_or(bytes);
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "an HS256 secret of {} bytes: use at least {MIN_SECRET_BYTES} random bytes \
                 (`openssl rand -base64 48`)",
                secret.len()
            ));
        }
        (DecodingKey::from_secret(secret), KeyKind::Hmac)
    };
    // The key is only parsed when first used: use it once now, so that a key that does not
    // parse (or an EC key on a curve other than P-256) stops the start, not every token.
    jsonwebtoken::crypto::verify("AAAA", b"probe", &key, kind.algorithm()).map_err(|e| {
        format!(
            "the {} key does not load: {e}{}",
            kind.alg_name(),
            if kind == KeyKind::Ec {
                " (ES256 needs a P-256 key)"
            } else {
                ""
            }
        )
    })?;
    Ok((key, kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";
    const NOW: u64 = 1_700_000_000;

    fn verifier() -> Verifier {
        Verifier::from_key(SECRET, None, None, 5).expect("a good secret")
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("signs")
    }

    fn refusal(v: &Verifier, t: &str) -> Refusal {
        v.verify(t, NOW).expect_err("refused").refusal
    }

    #[test]
    fn a_good_token_gives_its_grants() {
        let t = token(json!({"sub":"alice","exp":NOW + 60,"topics":["quotes/#","fx/+"]}));
        let e = verifier().verify(&t, NOW).expect("accepted");
        assert_eq!(e.sub.as_deref(), Some("alice"));
        assert_eq!(e.exp, NOW + 60);
        assert_eq!(e.grants.len(), 2);
        assert!(e.grants.covers("quotes/AAPL"));
        assert!(!e.grants.covers("#"));
        // Fractional NumericDates are read too; sub is optional.
        let t = token(json!({"exp":(NOW + 1) as f64 + 0.5,"topics":[]}));
        let e = verifier().verify(&t, NOW).expect("accepted");
        assert_eq!((e.sub, e.exp), (None, NOW + 1));
    }

    #[test]
    fn time_is_checked_with_the_leeway() {
        let v = verifier();
        let t = token(json!({"exp":NOW - 5,"topics":["a"]}));
        assert!(v.verify(&t, NOW).is_ok(), "within the leeway");
        let t = token(json!({"exp":NOW - 6,"topics":["a"]}));
        let e = v.verify(&t, NOW).unwrap_err();
        assert_eq!(e.refusal, Refusal::Expired);
        assert!(e.message.contains("expired 6 s ago"), "{}", e.message);
        let t = token(json!({"exp":NOW + 60,"nbf":NOW + 30,"topics":["a"]}));
        assert_eq!(refusal(&v, &t), Refusal::NotYetValid);
        let t = token(json!({"exp":NOW + 60,"nbf":NOW + 5,"topics":["a"]}));
        assert!(v.verify(&t, NOW).is_ok());
        // Claims of the wrong type are errors, never "absent" (CVE-2026-25537's class).
        let t = token(json!({"exp":NOW + 60,"nbf":"99999999999","topics":["a"]}));
        assert_eq!(refusal(&v, &t), Refusal::BadClaims);
        let t = token(json!({"exp":"never","topics":["a"]}));
        assert_eq!(refusal(&v, &t), Refusal::BadClaims);
        let t = token(json!({"exp":-1,"topics":["a"]}));
        assert_eq!(refusal(&v, &t), Refusal::BadClaims);
        let t = token(json!({"topics":["a"]}));
        let e = v.verify(&t, NOW).unwrap_err();
        assert_eq!(e.refusal, Refusal::BadClaims);
        assert!(e.message.contains("exp"), "{}", e.message);
    }

    #[test]
    fn claims_of_the_wrong_shape_say_what_is_wrong() {
        let v = verifier();
        let msg = |claims| v.verify(&token(claims), NOW).unwrap_err();
        let e = msg(json!({"exp":NOW + 60}));
        assert_eq!(e.refusal, Refusal::BadClaims);
        assert!(e.message.contains("\"topics\""), "{}", e.message);
        let e = msg(json!({"exp":NOW + 60,"topics":["quotes/#","bad/#/x"]}));
        assert!(e.message.contains("'bad/#/x'"), "{}", e.message);
        let e = msg(json!({"exp":NOW + 60,"topics":"quotes/#"}));
        assert_eq!(e.refusal, Refusal::BadClaims);
        let many: Vec<String> = (0..MAX_GRANTS + 1).map(|i| format!("q/{i}")).collect();
        let e = msg(json!({"exp":NOW + 60,"topics":many}));
        assert!(e.message.contains("at most 256"), "{}", e.message);
        // A nesting bomb in an unknown claim: refused by depth before anything parses it.
        let mut bomb = json!(1);
        for _ in 0..300 {
            bomb = json!([bomb]);
        }
        let e = msg(json!({"exp":NOW + 60,"topics":["a"],"x":bomb}));
        assert_eq!(e.refusal, Refusal::BadClaims);
        assert!(e.message.contains("nested deeper than 16"), "{}", e.message);
    }

    #[test]
    fn shapes_sizes_and_algorithms_are_refused_before_any_crypto() {
        let v = verifier();
        assert_eq!(refusal(&v, ""), Refusal::Malformed);
        assert_eq!(refusal(&v, "abc"), Refusal::Malformed);
        assert_eq!(refusal(&v, "a.b.c.d.e"), Refusal::Malformed);
        assert_eq!(refusal(&v, "a.b.c=="), Refusal::Malformed);
        assert_eq!(refusal(&v, "a..c"), Refusal::Malformed);
        assert_eq!(refusal(&v, "!!!.b.c"), Refusal::Malformed);
        assert_eq!(
            refusal(&v, "YQ.YQ.YQ"),
            Refusal::Malformed,
            "header not JSON"
        );
        let big = format!("{}.{}.{}", "a".repeat(40_000), "b".repeat(40_000), "c");
        let e = v.verify(&big, NOW).unwrap_err();
        assert_eq!(e.refusal, Refusal::TooLarge);
        assert!(e.message.contains("at most 8192"), "{}", e.message);
        // alg none, and RS256 for a secret key.
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let claims = b64(&json!({"exp":NOW + 60,"topics":["#"]}).to_string());
        let none = format!("{}.{claims}.sig", b64(r#"{"alg":"none","typ":"JWT"}"#));
        let e = v.verify(&none, NOW).unwrap_err();
        assert_eq!(e.refusal, Refusal::WrongAlgorithm);
        assert!(
            e.message.contains("'none'") && e.message.contains("HS256"),
            "{}",
            e.message
        );
        let rs = format!("{}.{claims}.sig", b64(r#"{"alg":"RS256"}"#));
        assert_eq!(refusal(&v, &rs), Refusal::WrongAlgorithm);
        let no_alg = format!("{}.{claims}.sig", b64(r#"{"typ":"JWT"}"#));
        assert_eq!(refusal(&v, &no_alg), Refusal::Malformed);
        // A header nesting bomb is refused by depth, before any parser sees it.
        let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
        let bomb = format!("{}.{claims}.sig", b64(&deep));
        assert_eq!(refusal(&v, &bomb), Refusal::Malformed);
        // A forged signature.
        let good = token(json!({"exp":NOW + 60,"topics":["#"]}));
        let (head, _) = good.rsplit_once('.').unwrap();
        let forged = format!("{head}.{}", b64("not the signature"));
        assert_eq!(refusal(&v, &forged), Refusal::BadSignature);
        let other = Verifier::from_key(&[b'k'; 40], None, None, 0).unwrap();
        assert_eq!(refusal(&other, &good), Refusal::BadSignature);
    }

    #[test]
    fn audience_and_issuer_when_configured() {
        let v = Verifier::from_key(SECRET, Some("quotes-api"), Some("https://idp"), 0).unwrap();
        let ok =
            token(json!({"exp":NOW + 60,"topics":["a"],"aud":"quotes-api","iss":"https://idp"}));
        assert!(v.verify(&ok, NOW).is_ok());
        let list = token(
            json!({"exp":NOW + 60,"topics":["a"],"aud":["x","quotes-api"],"iss":"https://idp"}),
        );
        assert!(v.verify(&list, NOW).is_ok());
        for (claims, want) in [
            (
                json!({"exp":NOW + 60,"topics":["a"],"iss":"https://idp"}),
                Refusal::WrongAudience,
            ),
            (
                json!({"exp":NOW + 60,"topics":["a"],"aud":"other","iss":"https://idp"}),
                Refusal::WrongAudience,
            ),
            (
                json!({"exp":NOW + 60,"topics":["a"],"aud":7,"iss":"https://idp"}),
                Refusal::BadClaims,
            ),
            (
                json!({"exp":NOW + 60,"topics":["a"]}),
                Refusal::WrongAudience,
            ),
            (
                json!({"exp":NOW + 60,"topics":["a"],"aud":"quotes-api"}),
                Refusal::WrongIssuer,
            ),
            (
                json!({"exp":NOW + 60,"topics":["a"],"aud":"quotes-api","iss":"https://evil"}),
                Refusal::WrongIssuer,
            ),
            (
                json!({"exp":NOW + 60,"topics":["a"],"aud":"quotes-api","iss":5}),
                Refusal::BadClaims,
            ),
        ] {
            assert_eq!(refusal(&v, &token(claims.clone())), want, "{claims}");
        }
        // Without a configured audience, a token meant for some audience is not ours to take.
        let aud = token(json!({"exp":NOW + 60,"topics":["a"],"aud":"elsewhere"}));
        assert_eq!(refusal(&verifier(), &aud), Refusal::WrongAudience);
        let aud = token(json!({"exp":NOW + 60,"topics":["a"],"aud":["elsewhere"]}));
        assert_eq!(refusal(&verifier(), &aud), Refusal::WrongAudience);
        let aud = token(json!({"exp":NOW + 60,"topics":["a"],"aud":7}));
        assert_eq!(refusal(&verifier(), &aud), Refusal::BadClaims);
    }

    #[test]
    fn keys_are_checked_when_loaded() {
        let err = |b: &[u8]| Verifier::from_key(b, None, None, 0).unwrap_err();
        assert!(err(b"short\n").contains("at least 32"));
        assert!(
            err(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .contains("public key only")
        );
        assert!(
            err(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .contains("certificate")
        );
        assert!(
            err(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .contains("neither")
        );
        assert!(Verifier::from_key(SECRET, None, None, 31)
            .unwrap_err()
            .contains("30 s"));
        // A trailing newline is not part of the secret.
        let mut with_newline = SECRET.to_vec();
        with_newline.push(b'\n');
        let v = Verifier::from_key(&with_newline, None, None, 0).unwrap();
        let t = token(json!({"exp":NOW + 60,"topics":["a"]}));
        assert!(v.verify(&t, NOW).is_ok());
        let ec = rcgen::KeyPair::generate().unwrap().public_key_pem();
        assert_eq!(
            Verifier::from_key(ec.as_bytes(), None, None, 0)
                .unwrap()
                .kind(),
            KeyKind::Ec
        );
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let e = Verifier::from_key(p384.public_key_pem().as_bytes(), None, None, 0).unwrap_err();
        assert!(e.contains("P-256"), "{e}");
    }

    #[test]
    fn debug_never_prints_the_key() {
        let text = format!("{:?}", verifier());
        assert!(!text.contains("0123456789abcdef"), "{text}");
    }
}
