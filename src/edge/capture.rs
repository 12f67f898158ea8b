//! What the edge keeps of a pixel request: its head, copied out ([`RequestHead`]), and for a POST
//! its body, read whole within limits of size and time. Either way the result is a
//! [`Captured`] request that the intake shapes after the answer has gone.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http_body::Body as HttpBody;
use http_body_util::{BodyExt, Limited};

use crate::params::{Body, Captured, RequestHead};
use crate::record::Timestamp;

/// Bounds on reading a POST body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body read; a larger one is ignored and flagged `oversize`.
    pub max_bytes: usize,
    /// Longest the client may take to send it; a slower one is ignored and flagged `bad_body`.
    pub timeout: Duration,
}

/// A pixel GET or HEAD, captured from its head alone.
pub fn head_only(parts: &http::request::Parts, peer: Option<IpAddr>, trusted_proxies: usize) -> Captured {
    let received_at = Timestamp::now();
    Captured { received_at, source: crate::record::Source::Pixel, head: RequestHead::capture(parts, peer, trusted_proxies), body: None }
}

/// A pixel POST: its head, then its body, read within `limits`.
pub async fn with_body<B>(parts: &http::request::Parts, body: B, peer: Option<IpAddr>, trusted_proxies: usize, limits: BodyLimits) -> Captured
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let received_at = Timestamp::now();
    let head = RequestHead::capture(parts, peer, trusted_proxies);
    let content_type = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = match tokio::time::timeout(limits.timeout, Limited::new(body, limits.max_bytes).collect()).await {
        Ok(Ok(collected)) => Body::Read { content_type, bytes: collected.to_bytes() },
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => Body::Oversize,
        Ok(Err(_)) | Err(_) => Body::Unreadable,
    };
    Captured { received_at, source: crate::record::Source::Pixel, head, body: Some(Box::new(body)) }
}
