//! The public listener's routes: the quote board page at `/`, the JavaScript client at
//! `/tickwire.js`, WebSocket subscribers at `/ws` (with the origin allowlist and the
//! `tickwire.v1` subprotocol), 404 and 405 for the rest.

use super::{BrokerWorker, SUBPROTOCOL};
use crate::server::{ConnId, Limits, Request, Response, Route};
use crate::ws::handshake::offered_protocols;

impl BrokerWorker {
    pub(super) fn public_route(&mut self, conn: ConnId, req: &Request<'_>) -> Route {
        let shared = self.shared.clone();
        let metrics = &shared.hub.metrics;
        let answer = |resp: Response| {
            metrics.http_error(resp.status);
            Route::Http(resp)
        };
        match (req.method, req.path()) {
            ("GET", "/") => Route::Http(Response::new(
                200,
                "text/html; charset=utf-8",
                crate::web::INDEX_HTML,
            )),
            ("GET", "/tickwire.js") => Route::Http(tickwire_js(req)),
            ("GET", "/ws") => {
                // With `--jwt-key`, a bad token is answered 401 before the upgrade.
                let refusal = self
                    .check_origin(req)
                    .or_else(|| self.authorize_upgrade(conn, req));
                if let Some(refusal) = refusal {
                    return answer(refusal);
                }
                let protocol = offered_protocols(req)
                    .any(|p| p == SUBPROTOCOL)
                    .then(|| SUBPROTOCOL.to_owned());
                let max = self.shared.config.max_client_message;
                Route::WebSocket {
                    protocol,
                    limits: Some(Limits {
                        max_frame: max as u64,
                        max_message: max,
                    }),
                }
            }
            (_, "/" | "/tickwire.js" | "/ws") => {
                answer(Response::text(405, "only GET is allowed here").with_header("Allow", "GET"))
            }
            (_, path) => answer(Response::text(
                404,
                &format!(
                    "no such path '{path}': the page is at /, the client at /tickwire.js \
                     and WebSockets at /ws"
                ),
            )),
        }
    }

    /// With an allowlist, an upgrade must come from a listed `Origin`: browsers always send
    /// one, so a request without it is not from a page the operator allowed (403).
    fn check_origin(&self, req: &Request<'_>) -> Option<Response> {
        let allowed = &self.shared.config.allowed_origins;
        if allowed.is_empty() {
            return None;
        }
        match req.header("origin") {
            Some(origin) if allowed.iter().any(|a| a == origin) => None,
            Some(origin) => Some(Response::text(
                403,
                &format!("origin '{origin}' is not allowed"),
            )),
            None => Some(Response::text(
                403,
                "an Origin header is required: only listed origins may connect",
            )),
        }
    }
}

/// The JavaScript client, cacheable for an hour and then revalidated: 304 when the browser's
/// copy is this build's (same `ETag`), so a reload costs a header exchange, not the file.
fn tickwire_js(req: &Request<'_>) -> Response {
    let etag = crate::web::TICKWIRE_JS_ETAG.as_str();
    let fresh = req
        .header("if-none-match")
        .is_some_and(|tags| crate::web::etag_matches(tags, etag));
    let (status, body) = if fresh {
        (304, "")
    } else {
        (200, crate::web::TICKWIRE_JS)
    };
    Response::new(status, "text/javascript; charset=utf-8", body)
        .with_header("Cache-Control", crate::web::TICKWIRE_JS_CACHE_CONTROL)
        .with_header("ETag", etag)
}
