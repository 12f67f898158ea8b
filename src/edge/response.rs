//! What a request gets back: the pixel's GIF (or its headers, or a bodiless 204) with headers
//! that forbid caching, and the JSON answers of everything else.

use std::sync::LazyLock;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;

/// The transparent 1×1 GIF89a every pixel request gets (43 bytes), from `static/pixel.gif`.
pub const GIF: &[u8] = include_bytes!("../../static/pixel.gif");

/// Response body type of the edge service.
pub type EdgeBody = Full<Bytes>;

/// Headers of every pixel answer that forbid caching it.
pub(super) const NO_STORE: [(HeaderName, HeaderValue); 3] = [
    (header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate, max-age=0")),
    (header::PRAGMA, HeaderValue::from_static("no-cache")),
    (header::EXPIRES, HeaderValue::from_static("0")),
];

/// The rest of the GIF answer's headers (`docs/parameters.md#the-pixel-answer`).
pub(super) const GIF_HEADERS: [(HeaderName, HeaderValue); 4] = [
    (header::CONTENT_TYPE, HeaderValue::from_static("image/gif")),
    (header::CONTENT_LENGTH, HeaderValue::from_static("43")),
    (HeaderName::from_static("cross-origin-resource-policy"), HeaderValue::from_static("cross-origin")),
    (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
];

/// A pixel answer: the GIF (or, for HEAD, its headers alone) or a bodiless 204.
pub fn pixel_response(status: StatusCode, body: Option<&'static [u8]>, gif_headers: bool) -> Response<EdgeBody> {
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

/// Lets `origin` read a pixel answer, credentials included (`docs/parameters.md#cors`).
pub fn allow_origin(r: &mut Response<EdgeBody>, origin: HeaderValue) {
    let headers = r.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// The answer to an `OPTIONS` request on a pixel path: `204` with `Allow`; for an allowed
/// `origin`, the preflight's CORS headers too (`request_headers` is the preflight's
/// `Access-Control-Request-Headers`, allowed as asked).
pub fn preflight_response(origin: Option<HeaderValue>, request_headers: Option<HeaderValue>) -> Response<EdgeBody> {
    let mut r = pixel_response(StatusCode::NO_CONTENT, None, false);
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST, OPTIONS"));
    let Some(origin) = origin else { return r };
    allow_origin(&mut r, origin);
    let headers = r.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, POST"));
    if let Some(asked) = request_headers {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
    }
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    r
}

/// A plain-text answer.
pub fn text(status: StatusCode, body: &'static str) -> Response<EdgeBody> {
    Response::builder().status(status).header(header::CONTENT_TYPE, "text/plain; charset=utf-8").body(Full::new(Bytes::from_static(body.as_bytes()))).expect("static response")
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

/// `405`, with the methods the path takes.
pub fn method_not_allowed(allow: &'static str) -> Response<EdgeBody> {
    let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, &format!("method not allowed here; use {allow}"));
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}
