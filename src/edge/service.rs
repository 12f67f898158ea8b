//! [`EdgeService`]: the tower `Service` both front doors call, and its routes; CORS on the pixel
//! paths (`docs/parameters.md#cors`).

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;

use super::response::{EdgeBody, GIF, allow_origin, json_error, method_not_allowed, pixel_response, preflight_response, text};
use super::{Edge, capture, ready};
use crate::params::{pixel_in_query, pixel_named};
use crate::record::PixelId;
use crate::registry::{Directory, PixelSettings};

/// Longest a CORS answer waits for a pixel's settings that are not cached; then it goes without
/// CORS headers (the pixel answer itself never waits for them).
const CORS_WAIT: Duration = Duration::from_millis(50);

/// The tower `Service` both front doors call.
#[derive(Clone)]
pub struct EdgeService {
    pub(super) edge: Arc<Edge>,
    /// The connection's peer, for a front door that serves a connection per service.
    pub(super) peer: Option<IpAddr>,
}

impl EdgeService {
    /// A service over `edge`. Requests name their peer with a
    /// [`PeerIp`](crate::params::PeerIp) extension.
    pub fn new(edge: Arc<Edge>) -> Self {
        EdgeService { edge, peer: None }
    }

    /// The same service for one connection from `peer`: its requests need no
    /// [`PeerIp`](crate::params::PeerIp) extension (an allocation per request).
    pub fn for_peer(&self, peer: IpAddr) -> Self {
        EdgeService { edge: self.edge.clone(), peer: Some(peer) }
    }
}

/// What [`EdgeService`] returns: a finished answer for a pixel `GET`/`HEAD` (answered in `call`,
/// no state machine or allocation per request), a boxed future for everything that reads a body
/// or waits (POST, admin, `/readyz`).
pub type EdgeFuture = Either<Ready<Result<Response<EdgeBody>, Infallible>>, Pin<Box<dyn Future<Output = Result<Response<EdgeBody>, Infallible>> + Send>>>;

impl<B> tower_service::Service<Request<B>> for EdgeService
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<EdgeBody>;
    type Error = Infallible;
    type Future = EdgeFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if is_pixel_path(req.uri().path()) && is_read(req.method()) {
            // Answered now; the intake shapes the hit after.
            let head_only = req.method() == Method::HEAD;
            self.edge.hits[head_only as usize].increment(1);
            let captured = capture::head_only(&req.into_parts().0, self.peer, self.edge.trusted_proxies);
            // Only a page's script (fetch, XHR, `<img crossorigin>`) sends an `Origin` with a GET;
            // an image load does not, and is answered here without a future.
            let cors = captured.head.origin().and_then(|origin| Cors::of(origin, query_pixel(captured.head.query())));
            self.edge.dispatcher.submit_captured(captured);
            let answer = if head_only { pixel_response(StatusCode::OK, None, true) } else { pixel_response(StatusCode::OK, Some(GIF), true) };
            return match cors {
                None => Either::Left(std::future::ready(Ok(answer))),
                Some(cors) => {
                    let edge = self.edge.clone();
                    Either::Right(Box::pin(async move { Ok(cors.answer(&edge.directory, answer).await) }))
                }
            };
        }
        let edge = self.edge.clone();
        let peer = self.peer;
        Either::Right(Box::pin(async move { Ok(route(&edge, peer, req).await) }))
    }
}

pub(super) fn is_pixel_path(path: &str) -> bool {
    matches!(path, "/p.gif" | "/tr" | "/tr/")
}

fn is_read(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

async fn route<B>(edge: &Edge, peer: Option<IpAddr>, req: Request<B>) -> Response<EdgeBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // The admin API's and `/readyz`'s futures (store calls) are several times the size of a
    // pixel POST's: boxed apart, so a POST does not allocate and move room for them.
    match req.uri().path() {
        path if is_pixel_path(path) => pixel_post(edge, peer, req).await,
        "/healthz" if is_read(req.method()) => text(StatusCode::OK, "ok\n"),
        "/readyz" if is_read(req.method()) => Box::pin(ready::ready(edge)).await,
        "/healthz" | "/readyz" => method_not_allowed("GET, HEAD"),
        path if path.starts_with("/v1/") => Box::pin(edge.api.handle(req)).await,
        _ => json_error(StatusCode::NOT_FOUND, "no such endpoint; the pixel is at /p.gif, /tr or /tr/, the admin API under /v1/pixels/{pixel_id}/"),
    }
}

/// A pixel request with a body (POST), a CORS preflight (`OPTIONS`), or one with a method the
/// pixel does not take. The body is read before the answer (the client is still sending it),
/// then shaped like a GET's head.
async fn pixel_post<B>(edge: &Edge, peer: Option<IpAddr>, req: Request<B>) -> Response<EdgeBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    if parts.method == Method::OPTIONS {
        return preflight(&edge.directory, &parts).await;
    }
    if parts.method != Method::POST {
        return method_not_allowed("GET, HEAD, POST");
    }
    let captured = capture::with_body(&parts, body, peer, edge.trusted_proxies, edge.body_limits).await;
    // The pixel a JSON beacon names is in its body.
    let cors = captured.head.origin().and_then(|origin| Cors::of(origin, pixel_named(&captured).ok()));
    edge.hits[2].increment(1);
    edge.dispatcher.submit_captured(captured);
    let answer = pixel_response(StatusCode::NO_CONTENT, None, false);
    match cors {
        Some(cors) => cors.answer(&edge.directory, answer).await,
        None => answer,
    }
}

/// The answer to a CORS preflight: `204`, with the preflight's CORS headers when the origin may
/// send hits of the pixel named in the query string (a preflight has no body).
async fn preflight(directory: &Directory, parts: &http::request::Parts) -> Response<EdgeBody> {
    let origin = parts.headers.get(header::ORIGIN).and_then(|value| Some((value, value.to_str().ok()?)));
    let allowed = match origin {
        Some((_, text)) => origin_allowed(directory, text, query_pixel(parts.uri.query())).await,
        None => false,
    };
    let origin = origin.filter(|_| allowed).map(|(value, _)| value.clone());
    preflight_response(origin, parts.headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned())
}

/// A pixel request that came with an `Origin`: whom to answer for, and the pixel it names.
struct Cors {
    origin: HeaderValue,
    pixel: Option<PixelId>,
}

impl Cors {
    /// The CORS question of a request from `origin` (as captured: visible ASCII) for `pixel`.
    fn of(origin: &str, pixel: Option<PixelId>) -> Option<Cors> {
        Some(Cors { origin: HeaderValue::from_str(origin).ok()?, pixel })
    }

    /// `answer`, with the CORS headers if the origin may read it.
    async fn answer(self, directory: &Directory, mut answer: Response<EdgeBody>) -> Response<EdgeBody> {
        if origin_allowed(directory, self.origin.to_str().unwrap_or_default(), self.pixel).await {
            allow_origin(&mut answer, self.origin);
        }
        answer
    }
}

/// The valid pixel id a query string names, if any.
fn query_pixel(query: Option<&str>) -> Option<PixelId> {
    query.and_then(|q| pixel_in_query(q).ok())
}

/// Whether a page at `origin` may read the answers to hits of `pixel`: when the request names no
/// valid pixel, the pixel is not registered or has no allowed domains, or `origin` is on them.
/// Settings not cached are waited for at most [`CORS_WAIT`]; not known by then (or the store
/// failed): no.
async fn origin_allowed(directory: &Directory, origin: &str, pixel: Option<PixelId>) -> bool {
    let Some(pixel) = pixel else { return true };
    let settings = match directory.cached(&pixel).await {
        Some(settings) => settings,
        // Boxed: the read's future is kilobytes, and every answer with an `Origin` would carry
        // room for it.
        None => match Box::pin(tokio::time::timeout(CORS_WAIT, directory.settings(&pixel))).await {
            Ok(Ok(settings)) => settings,
            Ok(Err(_)) | Err(_) => return false,
        },
    };
    allows(settings.as_deref(), origin)
}

/// Whether a pixel with `settings` (`None`: not registered) answers `origin` with CORS headers.
fn allows(settings: Option<&PixelSettings>, origin: &str) -> bool {
    settings.is_none_or(|s| s.allows_page(Some(origin)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::kv::{Kv, local::LocalKv};
    use crate::registry::model::{Forwarding, PixelRecord};
    use crate::registry::{AccountId, DirectorySettings};

    fn record(pixel: &str, domains: &[&str]) -> PixelRecord {
        PixelRecord {
            pixel_id: pixel.into(),
            account_id: AccountId::parse("acc_shop").unwrap(),
            name: None,
            allowed_domains: domains.iter().map(|d| d.to_string()).collect(),
            test_event_code: None,
            forwarding: Forwarding::On,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[tokio::test]
    async fn an_origin_is_allowed_by_the_pixel_the_query_names() {
        let dir = tempfile::tempdir().unwrap();
        let directory = Directory::new(Kv::Local(LocalKv::open(dir.path()).await.unwrap()), DirectorySettings::default());
        directory.refresh().await.unwrap();
        directory.changed("42".parse().unwrap(), Some(&record("42", &["shop.test"]))).await;
        directory.changed("43".parse().unwrap(), Some(&record("43", &[]))).await;
        let allowed = |origin: &'static str, query: &'static str| {
            let directory = &directory;
            async move { origin_allowed(directory, origin, query_pixel(Some(query))).await }
        };
        for (origin, query) in [
            ("https://shop.test", "id=42"),
            ("https://www.shop.test:8443", "pixel_id=42&ev=Lead"),
            ("https://evil.test", "id=43"),
            ("https://evil.test", "id=7"),
            ("https://evil.test", ""),
            ("https://evil.test", "id=not-a-pixel"),
            ("null", "id=7"),
        ] {
            assert!(allowed(origin, query).await, "{origin} {query}");
        }
        for (origin, query) in [("https://evil.test", "id=42"), ("https://shop.test.evil.test", "id=42"), ("null", "pid=42"), ("https://evil.test", "id=7&pixel_id=42")] {
            assert!(!allowed(origin, query).await, "{origin} {query}");
        }
    }

    #[test]
    fn the_decision_for_known_settings() {
        let settings = PixelSettings::of(&record("1", &["shop.test"]));
        assert!(allows(None, "https://evil.test"), "unregistered: any origin");
        assert!(allows(Some(&PixelSettings::of(&record("1", &[]))), "https://evil.test"), "no allowed domains: any origin");
        assert!(allows(Some(&settings), "http://a.b.shop.test"));
        assert!(!allows(Some(&settings), "https://badshop.test") && !allows(Some(&settings), "null"));
    }

    #[test]
    fn a_preflight_answer_has_the_cors_headers_only_when_allowed() {
        let allowed = preflight_response(Some(HeaderValue::from_static("https://shop.test")), Some(HeaderValue::from_static("content-type")));
        assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
        let h = allowed.headers();
        for (name, value) in [
            ("access-control-allow-origin", "https://shop.test"),
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-methods", "GET, HEAD, POST"),
            ("access-control-allow-headers", "content-type"),
            ("access-control-max-age", "600"),
            ("vary", "Origin"),
        ] {
            assert_eq!(h[name], value, "{name}");
        }
        let refused = preflight_response(None, Some(HeaderValue::from_static("content-type")));
        assert_eq!(refused.status(), StatusCode::NO_CONTENT);
        assert!(refused.headers().keys().all(|k| !k.as_str().starts_with("access-control-") && k != header::VARY), "{:?}", refused.headers());
    }
}
