//! The edge service: one tower `Service` behind both front doors (hyper server, Lambda).
//!
//! It routes and answers the pixel at once: a GET/HEAD inside `Service::call`, handing the captured
//! request to the [`Dispatcher`]'s intake, which builds the [`crate::hit::Hit`] with [`shaper`]; a
//! POST after reading its body, handing over the finished hit. The answer never waits on an
//! outlet. It serves the health endpoints too. The front door supplies the client's address: the
//! hyper server per connection ([`EdgeService::for_peer`]), the Lambda door per request as a
//! [`PeerIp`](crate::client_ip::PeerIp) extension.

pub mod body;

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use metrics::Counter;

use crate::admin::{self, Admin};
use crate::dispatch::{Captured, Dispatcher, Shaper};
use crate::hit::{Fields, Timestamp};
use crate::metrics as m;
use crate::params::{DraftHit, HitBuilder, ParseSettings, RequestHead};
use crate::sink::Health;
use crate::tokens::TokenCache;
use body::BodyLimits;

/// The transparent 1×1 GIF89a every pixel request gets (43 bytes), from `static/pixel.gif`.
pub const GIF: &[u8] = include_bytes!("../../static/pixel.gif");

/// Response body type of the edge service.
pub type EdgeBody = Full<Bytes>;

/// Everything the edge service shares across requests.
pub struct Edge {
    /// Parameter limits and personal-data rules.
    pub parse: ParseSettings,
    /// How many `X-Forwarded-For` hops to trust.
    pub trusted_proxies: usize,
    /// Bounds on POST bodies.
    pub body_limits: BodyLimits,
    /// Where hits go.
    pub dispatcher: Dispatcher,
    /// The raw-record sink's state, for `/readyz`.
    pub sink_health: Arc<Health>,
    /// The access-token store behind its cache, for `/readyz`.
    pub tokens: Arc<TokenCache>,
    /// The admin API under `/v1/`.
    pub admin: Admin,
    /// Hit counters by method, resolved once so the hot path skips the registry lookup.
    hits: [Counter; 3],
}

impl Edge {
    /// Shared state for the edge service.
    pub fn new(parse: ParseSettings, trusted_proxies: usize, body_limits: BodyLimits, dispatcher: Dispatcher, sink_health: Arc<Health>, tokens: Arc<TokenCache>, admin: Admin) -> Self {
        let hits = ["GET", "HEAD", "POST"].map(|method| metrics::counter!(m::HITS, "method" => method));
        Edge { parse, trusted_proxies, body_limits, dispatcher, sink_health, tokens, admin, hits }
    }
}

/// The tower `Service` both front doors call.
#[derive(Clone)]
pub struct EdgeService {
    edge: Arc<Edge>,
    /// The connection's peer, for a front door that serves a connection per service.
    peer: Option<IpAddr>,
}

impl EdgeService {
    /// A service over `edge`. Requests name their peer with a [`PeerIp`](crate::client_ip::PeerIp) extension.
    pub fn new(edge: Arc<Edge>) -> Self {
        EdgeService { edge, peer: None }
    }

    /// The same service for one connection from `peer`: its requests need no [`PeerIp`](crate::client_ip::PeerIp)
    /// extension (an allocation per request).
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
            // Answered now; the hit is shaped by the dispatcher's intake (see `shaper`).
            let received_at = Timestamp::now();
            let head_only = req.method() == Method::HEAD;
            self.edge.hits[head_only as usize].increment(1);
            let head = RequestHead::capture(&req.into_parts().0, self.peer, self.edge.trusted_proxies);
            self.edge.dispatcher.submit_captured(Captured { received_at, head });
            let answer = if head_only { pixel_response(StatusCode::OK, None, true) } else { pixel_response(StatusCode::OK, Some(GIF), true) };
            return Either::Left(std::future::ready(Ok(answer)));
        }
        let edge = self.edge.clone();
        let peer = self.peer;
        Either::Right(Box::pin(async move { Ok(route(&edge, peer, req).await) }))
    }
}

fn is_pixel_path(path: &str) -> bool {
    matches!(path, "/p.gif" | "/tr" | "/tr/")
}

async fn route<B>(edge: &Edge, peer: Option<IpAddr>, req: Request<B>) -> Response<EdgeBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // The admin API's and `/readyz`'s futures (store calls) are several times the size of a
    // pixel POST's: boxed apart, so a POST does not allocate and move room for them.
    match req.uri().path() {
        path if is_pixel_path(path) => pixel_post(edge, peer, req).await,
        "/healthz" if is_read(req.method()) => text(StatusCode::OK, "ok\n"),
        "/readyz" if is_read(req.method()) => Box::pin(ready(edge)).await,
        "/healthz" | "/readyz" => method_not_allowed("GET, HEAD"),
        path if path.starts_with("/v1/") => Box::pin(admin::handle(&edge.admin, req)).await,
        _ => json_error(StatusCode::NOT_FOUND, "no such endpoint; the pixel is at /p.gif, /tr or /tr/, the admin API under /v1/pixels/{pixel_id}/"),
    }
}

fn is_read(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

/// A pixel request with a body (POST), or one with a method the pixel does not take.
async fn pixel_post<B>(edge: &Edge, peer: Option<IpAddr>, req: Request<B>) -> Response<EdgeBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    if parts.method != Method::POST {
        return method_not_allowed("GET, HEAD, POST");
    }
    let head = RequestHead::capture(&parts, peer, edge.trusted_proxies);
    let mut params = query_params(&edge.parse, Timestamp::now(), &head);
    body::add_body_params(&parts.headers, body, edge.body_limits, &mut params).await;
    edge.hits[2].increment(1);
    edge.dispatcher.submit(shape(&head, params));
    pixel_response(StatusCode::NO_CONTENT, None, false)
}

/// How the dispatcher's intake turns a pixel GET/HEAD the edge answered into its hit.
pub fn shaper(parse: ParseSettings) -> Shaper {
    Arc::new(move |captured: Captured| {
        let params = query_params(&parse, captured.received_at, &captured.head);
        shape(&captured.head, params)
    })
}

/// A hit received at `received_at`, with the parameters of the request's query string.
fn query_params<'s>(parse: &'s ParseSettings, received_at: Timestamp, head: &RequestHead) -> HitBuilder<'s> {
    let mut params = HitBuilder::new(parse, received_at);
    if let Some(q) = head.query() {
        params.add_encoded(q);
    }
    params
}

/// Finishes a pixel request's hit from its parameters (query string, then body) and its head:
/// client address, user agent, page URL fallback, cookies; counts its flags.
fn shape(head: &RequestHead, mut hit: HitBuilder<'_>) -> DraftHit {
    let ip = head.client_ip(hit.flags_mut());
    let hit = hit.finish_draft(head.meta(ip));
    for flag in hit.flags().iter() {
        metrics::counter!(m::HIT_FLAGS, "flag" => flag.as_str()).increment(1);
    }
    tracing::debug!(method = head.method(), path = head.path(), pixel_id = hit.pixel_id(), event = hit.event(), event_id = hit.event_id(), flags = ?hit.flags(), "hit");
    hit
}

/// Headers of every pixel answer that forbid caching it.
const NO_STORE: [(HeaderName, HeaderValue); 3] = [
    (header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate, max-age=0")),
    (header::PRAGMA, HeaderValue::from_static("no-cache")),
    (header::EXPIRES, HeaderValue::from_static("0")),
];

/// The rest of the GIF answer's headers (SPEC §3.1).
const GIF_HEADERS: [(HeaderName, HeaderValue); 4] = [
    (header::CONTENT_TYPE, HeaderValue::from_static("image/gif")),
    (header::CONTENT_LENGTH, HeaderValue::from_static("43")),
    (HeaderName::from_static("cross-origin-resource-policy"), HeaderValue::from_static("cross-origin")),
    (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
];

/// A pixel answer: the GIF (or, for HEAD, its headers alone) or a bodiless 204.
fn pixel_response(status: StatusCode, body: Option<&'static [u8]>, gif_headers: bool) -> Response<EdgeBody> {
    // Built once: cloning a finished map is cheaper than hashing seven names per answer.
    static HEADERS: LazyLock<[HeaderMap; 2]> = LazyLock::new(|| {
        let no_store: HeaderMap = NO_STORE.iter().cloned().collect();
        let gif: HeaderMap = NO_STORE.iter().chain(&GIF_HEADERS).cloned().collect();
        [no_store, gif]
    });
    let mut r = Response::new(body.map_or_else(Full::default, |b| Full::new(Bytes::from_static(b))));
    *r.status_mut() = status;
    *r.headers_mut() = HEADERS[gif_headers as usize].clone();
    r
}

/// How long `/readyz` waits for the token store to answer.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `/readyz`: 200 while the sink delivers and the token store answers, else 503 `degraded` with
/// the reasons.
async fn ready(edge: &Edge) -> Response<EdgeBody> {
    let mut reasons = serde_json::Map::new();
    if let Some(reason) = edge.sink_health.problem() {
        reasons.insert("sink".into(), reason.into());
    }
    match tokio::time::timeout(STORE_CHECK_TIMEOUT, edge.tokens.store().check()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            reasons.insert("token_store".into(), err.to_string().into());
        }
        Err(_) => {
            reasons.insert("token_store".into(), format!("no answer within {}s", STORE_CHECK_TIMEOUT.as_secs()).into());
        }
    }
    if reasons.is_empty() {
        json(StatusCode::OK, serde_json::json!({ "status": "ready" }))
    } else {
        json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({ "status": "degraded", "reasons": reasons }))
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<EdgeBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("static response")
}

/// A JSON answer.
pub fn json(status: StatusCode, value: serde_json::Value) -> Response<EdgeBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("static response")
}

/// A JSON error `{"error": "…"}`.
pub fn json_error(status: StatusCode, message: &str) -> Response<EdgeBody> {
    json(status, serde_json::json!({ "error": message }))
}

fn method_not_allowed(allow: &'static str) -> Response<EdgeBody> {
    let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, &format!("method not allowed here; use {allow}"));
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}
