//! Entitlements on one worker (`--jwt-key`): which of its connections hold which token's
//! grants and until when, and the broker's side of every rule about them: the token of an
//! upgrade request (401 before the upgrade when it is bad), the `auth` op (new grants replace
//! the old; subscriptions they no longer cover end with `unsubscribed`, reason `forbidden`; a
//! refused token leaves the old grants), the check at the top of each subscribe
//! (`unauthorized`, `forbidden`, `token_expired`), and closing with 1008 "token expired" when a
//! token runs out (a deadline queue ordered by expiry: the loop looks at its first entry only).
//! A subscriber that opened without a token has the handshake timeout to send one; then it is
//! closed with 1008 "no token" (it could do nothing but hold a connection meanwhile).
//!
//! Without a key nothing here runs: every check passes and `auth` is answered "not configured".

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::auth::{self, Entitlement, Refusal, Verifier};
use super::protocol::{self, ClientError, ErrorCode};
use super::{BrokerWorker, Client};
use crate::server::{CloseCode, ConnId, Outbox, Request, Response};

/// A worker's tokens.
#[derive(Debug, Default)]
pub(crate) struct WorkerAuth {
    /// The subscribers (with `--jwt-key`), with their token's grants and when it runs out, or
    /// none yet and until when one may come.
    held: HashMap<ConnId, Held>,
    /// (deadline, connection), earliest first: one entry per connection in `held`.
    expiries: BTreeSet<(Instant, ConnId)>,
    /// The token of the upgrade request being answered, for the `on_open` that follows it.
    upgrade: Option<(ConnId, Entitlement)>,
}

#[derive(Debug)]
struct Held {
    /// `None` until a token is accepted.
    entitlement: Option<Entitlement>,
    /// When the token runs out, or when waiting for one ends.
    deadline: Instant,
}

impl WorkerAuth {
    /// The connection is gone: its token with it.
    pub fn forget(&mut self, conn: ConnId) {
        if let Some(h) = self.held.remove(&conn) {
            self.expiries.remove(&(h.deadline, conn));
        }
    }

    /// When the next token runs out.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first().map(|&(t, _)| t)
    }

    fn hold(&mut self, conn: ConnId, entitlement: Option<Entitlement>, deadline: Instant) {
        self.forget(conn);
        self.expiries.insert((deadline, conn));
        self.held.insert(
            conn,
            Held {
                entitlement,
                deadline,
            },
        );
    }
}

/// Unix time now, in seconds (whole and fractional).
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl BrokerWorker {
    fn verifier(&self) -> Option<Arc<Verifier>> {
        self.shared.verifier.read().clone()
    }

    /// Checks a token, counting the answer.
    fn verify_token(&self, v: &Verifier, token: &str) -> Result<Entitlement, auth::TokenError> {
        let metrics = &self.shared.hub.metrics.auth;
        match v.verify(token, unix_now() as u64) {
            Ok(e) => {
                metrics.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(e)
            }
            Err(e) => {
                metrics.refused(e.refusal);
                Err(e)
            }
        }
    }

    /// The instant a token stops being valid here: its `exp` plus the leeway, on the loop's
    /// clock.
    fn deadline_of(&self, e: &Entitlement, leeway: u64, now: Instant) -> Instant {
        // A century at most: an `exp` millions of years away must not overflow the clock.
        const CENTURY: f64 = 100.0 * 365.25 * 86_400.0;
        let left = ((e.exp + leeway) as f64 - unix_now()).min(CENTURY);
        now + Duration::try_from_secs_f64(left).unwrap_or(Duration::ZERO)
    }

    /// An upgrade to `/ws`: with a key, a token in `?token=` or `Authorization: Bearer` must be
    /// good, or the answer is 401 before the upgrade. No token is fine (the `auth` op may bring
    /// one); a good one is kept for [`BrokerWorker::adopt_upgrade_token`].
    pub(super) fn authorize_upgrade(
        &mut self,
        conn: ConnId,
        req: &Request<'_>,
    ) -> Option<Response> {
        self.auth.upgrade = None;
        let v = self.verifier()?;
        let refuse = |why: &str| {
            Some(
                Response::text(401, &format!("invalid token: {why}")).with_header(
                    "WWW-Authenticate",
                    "Bearer error=\"invalid_token\", error_description=\"see the response body\"",
                ),
            )
        };
        let token = match upgrade_token(req) {
            Ok(Some(t)) => t,
            Ok(None) => return None,
            Err(why) => {
                self.shared.hub.metrics.auth.refused(Refusal::Malformed);
                return refuse(&why);
            }
        };
        match self.verify_token(&v, &token) {
            Ok(e) => {
                self.auth.upgrade = Some((conn, e));
                None
            }
            Err(e) => {
                log::debug!(
                    "worker {}: upgrade refused with 401: {} ({})",
                    self.worker,
                    e.message,
                    e.refusal.label()
                );
                refuse(&e.message)
            }
        }
    }

    /// A subscriber opened: it holds the token checked on its upgrade request, or has the
    /// handshake timeout to send one.
    pub(super) fn adopt_upgrade_token(&mut self, conn: ConnId, now: Instant) {
        let upgrade = self.auth.upgrade.take();
        let Some(v) = self.verifier() else { return };
        match upgrade {
            Some((for_conn, e)) if for_conn == conn => {
                self.log_accepted(conn, &e, "upgrade");
                let deadline = self.deadline_of(&e, v.leeway(), now);
                self.auth.hold(conn, Some(e), deadline);
            }
            _ => {
                let wait = self.shared.config.handshake_timeout;
                self.auth.hold(conn, None, now + wait);
            }
        }
    }

    fn log_accepted(&self, conn: ConnId, e: &Entitlement, how: &str) {
        log::debug!(
            "worker {} connection {}: token accepted ({how}): sub {}, {} grant(s), expires in {} s",
            self.worker,
            conn.0,
            e.sub.as_deref().unwrap_or("(none)"),
            e.grants.len(),
            (e.exp as f64 - unix_now()).max(0.0) as u64
        );
    }

    /// Whether `conn` may subscribe to every one of `patterns` (valid, deduplicated): `Ok` with
    /// the id handed back, or the error for the whole request.
    pub(super) fn check_entitled(
        &self,
        conn: ConnId,
        patterns: &[String],
        id: Option<String>,
    ) -> Result<Option<String>, ClientError> {
        if self.shared.verifier.read().is_none() {
            return Ok(id);
        }
        let Some(entitlement) = self
            .auth
            .held
            .get(&conn)
            .and_then(|h| h.entitlement.as_ref())
        else {
            return Err(ClientError::new(
                ErrorCode::Unauthorized,
                "this server needs a token before a subscribe: send {\"op\":\"auth\",\"token\":..} \
                 or connect with ?token=",
                id,
            ));
        };
        let expired = self
            .auth
            .held
            .get(&conn)
            .is_some_and(|h| Instant::now() >= h.deadline);
        if expired {
            return Err(ClientError::new(
                ErrorCode::TokenExpired,
                "the token has expired: send a new one with the auth op",
                id,
            ));
        }
        for p in patterns {
            if let Some(example) = entitlement.grants.uncovered(p) {
                return Err(ClientError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "'{p}' is not within this token's grants (topic '{example}' is not granted): \
                         nothing in this request was subscribed"
                    ),
                    id,
                ));
            }
        }
        Ok(id)
    }

    /// `{"op":"auth","token":..}`: a good token replaces the connection's grants (ending what
    /// they no longer cover) and its deadline, answered `authenticated`; a bad one is answered
    /// `unauthorized` or `token_expired`, and the grants already held stay.
    pub(super) fn authenticate(
        &mut self,
        conn: ConnId,
        token: &str,
        id: Option<String>,
        out: &mut Outbox<'_>,
    ) -> Result<(), ClientError> {
        let Some(v) = self.verifier() else {
            return Err(ClientError::new(
                ErrorCode::BadRequest,
                "tokens are not configured on this server: subscribe without one",
                id,
            ));
        };
        let e = match self.verify_token(&v, token) {
            Ok(e) => e,
            Err(e) => {
                log::debug!(
                    "worker {} connection {}: auth refused: {} ({})",
                    self.worker,
                    conn.0,
                    e.message,
                    e.refusal.label()
                );
                let code = if e.refusal == Refusal::Expired {
                    ErrorCode::TokenExpired
                } else {
                    ErrorCode::Unauthorized
                };
                return Err(ClientError::new(code, e.message, id));
            }
        };
        self.log_accepted(conn, &e, "auth op");
        let mut ended: Vec<String> = match self.clients.get(conn.0) {
            Some(Some(Client::Subscriber(sub))) => sub
                .patterns
                .iter()
                .filter(|p| !e.grants.covers(p))
                .map(|p| p.to_string())
                .collect(),
            _ => Vec::new(),
        };
        let reply = protocol::authenticated(e.sub.as_deref(), e.exp, id.as_deref());
        let deadline = self.deadline_of(&e, v.leeway(), out.now());
        self.auth.hold(conn, Some(e), deadline);
        if !ended.is_empty() {
            ended.sort();
            self.remove_patterns(conn, &ended);
            self.shared
                .hub
                .metrics
                .auth
                .narrowed
                .fetch_add(ended.len() as u64, Ordering::Relaxed);
            log::debug!(
                "worker {} connection {}: {} subscription(s) ended by the new token's grants",
                self.worker,
                conn.0,
                ended.len()
            );
            out.send_text(conn, &protocol::ended(&ended, ErrorCode::Forbidden));
        }
        out.send_text(conn, &reply);
        Ok(())
    }

    /// Closes with 1008 every connection whose token ran out by `now` ("token expired"), or
    /// that sent none in time ("no token").
    pub(super) fn expire_tokens(&mut self, out: &mut Outbox<'_>) {
        let now = out.now();
        while let Some(&(deadline, conn)) = self.auth.expiries.first() {
            if deadline > now {
                break;
            }
            let had_token = self
                .auth
                .held
                .get(&conn)
                .is_some_and(|h| h.entitlement.is_some());
            self.auth.forget(conn);
            if !out.is_open(conn) {
                continue;
            }
            let metrics = &self.shared.hub.metrics.auth;
            let reason = if had_token {
                metrics.expired_closed.fetch_add(1, Ordering::Relaxed);
                "token expired"
            } else {
                metrics.no_token_closed.fetch_add(1, Ordering::Relaxed);
                "no token"
            };
            log::debug!(
                "worker {} connection {}: {reason}: closing with 1008",
                self.worker,
                conn.0
            );
            out.close(conn, CloseCode::POLICY, reason);
        }
    }
}

/// The token of an upgrade request: `?token=` or `Authorization: Bearer`. `Err` when both are
/// there (which one would count is ambiguous) or the header is a Bearer with nothing after it.
pub fn upgrade_token(req: &Request<'_>) -> Result<Option<String>, String> {
    let from_query = req.query_param("token");
    let from_header = match req.header("authorization") {
        Some(h) => {
            let h = h.trim();
            match h.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
                    Some(rest.trim().to_owned())
                }
                // Another scheme (Basic to a proxy, say) is not ours to read.
                _ if h.eq_ignore_ascii_case("bearer") => Some(String::new()),
                _ => None,
            }
        }
        None => None,
    };
    match (from_query, from_header) {
        (Some(_), Some(_)) => {
            Err("a token both in ?token= and in Authorization: send it in one place".to_owned())
        }
        (Some(t), None) | (None, Some(t)) => Ok(Some(t)),
        (None, None) => Ok(None),
    }
}
