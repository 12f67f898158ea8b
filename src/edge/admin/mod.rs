//! The admin API (`docs/api.md`): the host administrator manages pixels' access tokens over HTTP
//! with `Authorization: Bearer <--admin-key>`.
//!
//! Changes go through the server's own [`TokenCache`], so they take effect in this server at
//! once. Without `--admin-key` every admin path answers 404, as if the API did not exist. The key
//! is compared as SHA-256 digests, so the comparison's timing says nothing about the key. Errors
//! are `{"error":"…"}` with a message a person can act on; no answer carries a token.
//!
//! Delivery history (`GET /v1/pixels/{id}/deliveries`) is the Conversions API forwarder's
//! [`Deliveries`] log, read here.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use sha2::{Digest, Sha256};

use super::response::{EdgeBody, json, json_error, method_not_allowed};
use crate::forward::Deliveries;
use crate::record::PixelId;
use crate::secret::Secret;
use crate::tokens::{StoreError, TokenCache};

/// Largest admin request body read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the admin API needs.
pub struct Admin {
    /// SHA-256 of `--admin-key`; `None` = the admin API is off.
    key_digest: Option<[u8; 32]>,
    tokens: Arc<TokenCache>,
    deliveries: Arc<Deliveries>,
    body_timeout: Duration,
}

impl Admin {
    /// The admin API with `key` (`None` = off), over `tokens`; `deliveries` answers
    /// `GET /v1/pixels/{id}/deliveries`; a request body must arrive within `body_timeout`.
    pub fn new(key: Option<&Secret>, tokens: Arc<TokenCache>, deliveries: Arc<Deliveries>, body_timeout: Duration) -> Admin {
        Admin { key_digest: key.map(|k| digest(k.expose().as_bytes())), tokens, deliveries, body_timeout }
    }
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").field("enabled", &self.key_digest.is_some()).finish_non_exhaustive()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Answers one request under `/v1/`.
pub async fn handle<B>(admin: &Admin, req: Request<B>) -> Response<EdgeBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(key_digest) = admin.key_digest else {
        return json_error(StatusCode::NOT_FOUND, "no such endpoint; the admin API is off until the server runs with --admin-key [PIXELGATE_ADMIN_KEY]");
    };
    if !authorized(req.headers(), &key_digest) {
        let mut r = json_error(StatusCode::UNAUTHORIZED, "send the admin key as 'Authorization: Bearer <key>'");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (pixel_id, resource) = match segments.as_slice() {
        ["v1", "pixels", id, resource @ ("token" | "deliveries")] => (*id, *resource),
        _ => {
            return json_error(StatusCode::NOT_FOUND, "no such endpoint; admin endpoints are /v1/pixels/{pixel_id}/token and /v1/pixels/{pixel_id}/deliveries");
        }
    };
    let Ok(pixel) = PixelId::parse(pixel_id) else {
        return json_error(StatusCode::BAD_REQUEST, "the pixel id in the path must be 1-32 digits");
    };
    let tokens = &admin.tokens;
    match (resource, req.method().clone()) {
        ("token", Method::GET) => match tokens.status(&pixel).await {
            Ok(view) => json(StatusCode::OK, serde_json::to_value(view).unwrap_or_default()),
            Err(err) => unavailable(&err),
        },
        ("token", Method::PUT) => {
            let token = match read_token(req.into_body(), admin.body_timeout).await {
                Ok(token) => token,
                Err((status, message)) => return json_error(status, message),
            };
            match tokens.set(&pixel, token).await {
                Ok(_) => no_content(),
                Err(err) => unavailable(&err),
            }
        }
        ("token", Method::DELETE) => match tokens.delete(&pixel).await {
            Ok(_) => no_content(),
            Err(err) => unavailable(&err),
        },
        ("token", _) => method_not_allowed("GET, PUT, DELETE"),
        (_, Method::GET) => json(StatusCode::OK, admin.deliveries.for_pixel(&pixel)),
        _ => method_not_allowed("GET"),
    }
}

/// Is there an `Authorization: Bearer <key>` header with the right key?
fn authorized(headers: &http::HeaderMap, key_digest: &[u8; 32]) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, given)) = value.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && digest(given.trim().as_bytes()) == *key_digest
}

/// The `access_token` of a `{"access_token":"…"}` body, or the status and message explaining
/// what is wrong.
async fn read_token<B>(body: B, timeout: Duration) -> Result<Secret, (StatusCode, &'static str)>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    #[derive(serde::Deserialize)]
    struct Put {
        access_token: Option<serde_json::Value>,
    }
    let bytes = match tokio::time::timeout(timeout, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, "the body is over 64 KiB; send {\"access_token\":\"…\"} alone"));
        }
        Ok(Err(_)) | Err(_) => {
            return Err((StatusCode::BAD_REQUEST, "the request body could not be read in time"));
        }
    };
    let bad = |msg| Err((StatusCode::BAD_REQUEST, msg));
    // The error of a failed parse is not shown: serde's messages can quote the input.
    let Ok(put) = serde_json::from_slice::<Put>(&bytes) else {
        return bad("the body must be a JSON object {\"access_token\":\"…\"}");
    };
    match put.access_token {
        Some(serde_json::Value::String(t)) if t.trim().is_empty() => bad("access_token is empty"),
        Some(serde_json::Value::String(t)) if t.trim().chars().any(|c| c.is_whitespace() || c.is_control()) => bad("access_token must not contain spaces or line breaks"),
        Some(serde_json::Value::String(t)) => Ok(Secret::new(t.trim())),
        Some(_) => bad("access_token must be a string"),
        None => bad("the body has no access_token; send {\"access_token\":\"…\"}"),
    }
}

fn no_content() -> Response<EdgeBody> {
    let mut r = Response::new(Full::default());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn unavailable(err: &StoreError) -> Response<EdgeBody> {
    tracing::warn!(error = %err, "admin API: token store call failed");
    json_error(StatusCode::SERVICE_UNAVAILABLE, &format!("{err}; try again shortly"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::{CacheSettings, LocalStore, TokenStore};

    const KEY: &str = "admin-key-0123456789";

    async fn admin(key: Option<&str>) -> (tempfile::TempDir, Admin) {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::Local(LocalStore::open(dir.path()).await.unwrap());
        let tokens = Arc::new(TokenCache::new(store, CacheSettings::default()));
        (dir, Admin::new(key.map(Secret::new).as_ref(), tokens, Arc::new(Deliveries::default()), Duration::from_secs(1)))
    }

    async fn call(admin: &Admin, method: &str, path: &str, key: Option<&str>, body: &str) -> (StatusCode, http::HeaderMap, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let r = handle(admin, req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await;
        let (parts, body) = r.into_parts();
        let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        (parts.status, parts.headers, body)
    }

    #[tokio::test]
    async fn off_without_a_key_and_closed_without_the_right_one() {
        let (_d, off) = admin(None).await;
        assert_eq!(call(&off, "GET", "/v1/pixels/1/token", Some(KEY), "").await.0, StatusCode::NOT_FOUND);
        let (_d, on) = admin(Some(KEY)).await;
        for key in [None, Some("wrong-key-0123456789"), Some("")] {
            let (status, headers, body) = call(&on, "GET", "/v1/pixels/1/token", key, "").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}");
            assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
            assert!(body.contains("Authorization: Bearer"), "{body}");
        }
        assert_eq!(call(&on, "GET", "/v1/pixels/1/token", Some(KEY), "").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn put_get_delete_a_token() {
        let (_d, a) = admin(Some(KEY)).await;
        let (status, _, body) = call(&a, "GET", "/v1/pixels/123/token", Some(KEY), "").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"pixel_id":"123","set":false,"status":null,"updated_at":null}"#));
        let (status, _, body) = call(&a, "PUT", "/v1/pixels/123/token", Some(KEY), r#"{"access_token":"EAAB-secret-token"}"#).await;
        assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));
        assert_eq!(a.tokens.usable(&"123".parse().unwrap()).await.unwrap().unwrap().token.expose(), "EAAB-secret-token", "in effect at once");
        let (status, _, body) = call(&a, "GET", "/v1/pixels/123/token", Some(KEY), "").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status, &v["set"], &v["status"]), (StatusCode::OK, &serde_json::json!(true), &serde_json::json!("active")));
        assert!(v["updated_at"].as_str().unwrap().ends_with('Z') && !body.contains("EAAB"), "{body}");
        assert_eq!(call(&a, "DELETE", "/v1/pixels/123/token", Some(KEY), "").await.0, StatusCode::NO_CONTENT);
        assert_eq!(a.tokens.usable(&"123".parse().unwrap()).await.unwrap(), None);
        assert!(call(&a, "GET", "/v1/pixels/123/token", Some(KEY), "").await.2.contains(r#""set":false"#));
    }

    #[tokio::test]
    async fn bad_requests_say_what_is_wrong() {
        let (_d, a) = admin(Some(KEY)).await;
        for (method, path, body, want) in [
            ("GET", "/v1/pixels/12x/token", "", StatusCode::BAD_REQUEST),
            ("GET", &format!("/v1/pixels/{}/token", "1".repeat(33)), "", StatusCode::BAD_REQUEST),
            ("PUT", "/v1/pixels/1/token", "not json", StatusCode::BAD_REQUEST),
            ("PUT", "/v1/pixels/1/token", "{}", StatusCode::BAD_REQUEST),
            ("PUT", "/v1/pixels/1/token", r#"{"access_token":""}"#, StatusCode::BAD_REQUEST),
            ("PUT", "/v1/pixels/1/token", r#"{"access_token":"  "}"#, StatusCode::BAD_REQUEST),
            ("PUT", "/v1/pixels/1/token", r#"{"access_token":42}"#, StatusCode::BAD_REQUEST),
            ("PUT", "/v1/pixels/1/token", &format!(r#"{{"access_token":"{}"}}"#, "x".repeat(70_000)), StatusCode::PAYLOAD_TOO_LARGE),
            ("GET", "/v1/pixels/1/other", "", StatusCode::NOT_FOUND),
            ("GET", "/v1/pixels/1/token/x", "", StatusCode::NOT_FOUND),
        ] {
            let (status, headers, body) = call(&a, method, path, Some(KEY), body).await;
            assert_eq!(status, want, "{method} {path}: {body}");
            assert_eq!(headers[header::CONTENT_TYPE], "application/json");
            assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"].as_str().is_some_and(|e| !e.is_empty()));
        }
        assert!(!a.tokens.status(&"1".parse().unwrap()).await.unwrap().set);
        let (status, headers, _) = call(&a, "POST", "/v1/pixels/1/token", Some(KEY), "").await;
        assert_eq!((status, &headers[header::ALLOW]), (StatusCode::METHOD_NOT_ALLOWED, &HeaderValue::from_static("GET, PUT, DELETE")));
        let (status, headers, _) = call(&a, "DELETE", "/v1/pixels/1/deliveries", Some(KEY), "").await;
        assert_eq!((status, &headers[header::ALLOW]), (StatusCode::METHOD_NOT_ALLOWED, &HeaderValue::from_static("GET")));
    }

    #[tokio::test]
    async fn deliveries_come_from_the_forwarders_log() {
        let (_d, a) = admin(Some(KEY)).await;
        let (status, _, body) = call(&a, "GET", "/v1/pixels/77/deliveries", Some(KEY), "").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"deliveries":[],"pixel_id":"77"}"#));
    }

    #[tokio::test]
    async fn a_store_outage_is_503() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).await.unwrap();
        let path = store.path().to_owned();
        let a = Admin::new(
            Some(&Secret::new(KEY)),
            Arc::new(TokenCache::new(TokenStore::Local(store), CacheSettings::default())),
            Arc::new(Deliveries::default()),
            Duration::from_secs(1),
        );
        // Swap the table away under the open connection.
        rusqlite::Connection::open(&path).unwrap().execute_batch("DROP TABLE tokens").unwrap();
        let (status, _, body) = call(&a, "GET", "/v1/pixels/1/token", Some(KEY), "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("token store unavailable"), "{body}");
    }
}
