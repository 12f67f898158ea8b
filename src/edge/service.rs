//! [`EdgeService`]: the tower `Service` both front doors call, and its routes.

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::Either;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;

use super::response::{EdgeBody, GIF, json_error, method_not_allowed, pixel_response, text};
use super::{Edge, capture, ready};

/// The tower `Service` both front doors call.
#[derive(Clone)]
pub struct EdgeService {
    edge: Arc<Edge>,
    /// The connection's peer, for a front door that serves a connection per service.
    peer: Option<IpAddr>,
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
            self.edge.dispatcher.submit_captured(capture::head_only(&req.into_parts().0, self.peer, self.edge.trusted_proxies));
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

/// A pixel request with a body (POST), or one with a method the pixel does not take. The body is
/// read before the answer (the client is still sending it), then shaped like a GET's head.
async fn pixel_post<B>(edge: &Edge, peer: Option<IpAddr>, req: Request<B>) -> Response<EdgeBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    if parts.method != Method::POST {
        return method_not_allowed("GET, HEAD, POST");
    }
    let captured = capture::with_body(&parts, body, peer, edge.trusted_proxies, edge.body_limits).await;
    edge.hits[2].increment(1);
    edge.dispatcher.submit_captured(captured);
    pixel_response(StatusCode::NO_CONTENT, None, false)
}
