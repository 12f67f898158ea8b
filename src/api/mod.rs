//! The `/v1/` API (`docs/api.md`): accounts, keys, pixels, tokens, deliveries, the audit log
//! and events from a platform's backend, routed by axum on the same hyper stack as the pixel.
//!
//! Handlers take typed extractors ([`extract::Caller`]: the verified key as a
//! [`Principal`](crate::registry::Principal); [`extract::Strict`]: a JSON body checked field by
//! field) and return `Result<…, ApiError>`; [`error::ApiError`] is the only place that picks a
//! status and writes `{"error":…}`. What a key may do is decided by the registry
//! ([`crate::registry::Principal::access`]), never here. The pixel's own paths stay outside the
//! router (the edge): they answer before any of this runs.

pub mod accounts;
pub mod cli;
pub mod error;
pub mod events;
pub mod extract;
pub mod keys;
pub mod pixels;
pub mod tokens;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower_service::Service;

use crate::forward::Deliveries;
use crate::pipeline::Dispatcher;
use crate::registry::Registry;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    /// Accounts, keys, pixels, and the token cache behind them.
    pub registry: Arc<Registry>,
    /// The forwarder's delivery log.
    pub deliveries: Arc<Deliveries>,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    /// Where events sent to the API go: the pixel's own pipeline.
    pub dispatcher: Dispatcher,
}

/// The API: its router, built once.
#[derive(Clone)]
pub struct Api {
    router: Router,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Api")
    }
}

impl Api {
    /// The API over `state`.
    pub fn new(state: ApiState) -> Api {
        let router = Router::new()
            .route("/v1/accounts", get(accounts::list).post(accounts::create))
            .route("/v1/accounts/{account_id}", get(accounts::get).patch(accounts::update).delete(accounts::delete))
            .route("/v1/keys", get(keys::list).post(keys::create))
            .route("/v1/keys/{key_id}", axum::routing::delete(keys::revoke))
            .route("/v1/pixels", get(pixels::list))
            .route("/v1/pixels/{pixel_id}", get(pixels::get).put(pixels::put).patch(pixels::patch).delete(pixels::delete))
            .route("/v1/pixels/{pixel_id}/token", get(tokens::status).put(tokens::set).delete(tokens::delete))
            .route("/v1/pixels/{pixel_id}/deliveries", get(tokens::deliveries))
            .route("/v1/audit", get(accounts::audit))
            .route("/v1/events", axum::routing::post(events::post))
            .fallback(|| async { error::ApiError::Registry(crate::registry::RegistryError::NotFound("no such endpoint; see docs/api.md for the /v1/ routes".into())) })
            .with_state(state);
        Api { router }
    }

    /// Answers one request under `/v1/`.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Only the listings take a query parameter (`?account_id=`); anywhere else one is a typo.
        if let Some(query) = req.uri().query().filter(|q| !q.is_empty())
            && !matches!(req.uri().path(), "/v1/keys" | "/v1/pixels" | "/v1/audit")
        {
            let name = query.split('&').next().and_then(|p| p.split('=').next()).unwrap_or("");
            let e = error::ApiError::Registry(crate::registry::RegistryError::Invalid(format!(
                "unknown query parameter `{}`; this route takes none (only GET /v1/keys, /v1/pixels and /v1/audit take ?account_id=)",
                crate::registry::ids::clip(name)
            )));
            return Self::finish(axum::response::IntoResponse::into_response(e)).await;
        }
        let mut router = self.router.clone();
        let answer = match router.call(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        Self::finish(answer).await
    }

    /// The router's answer as the edge's body type, a bodiless 405 given its JSON error.
    async fn finish(answer: axum::response::Response) -> Response<Full<Bytes>> {
        let (mut parts, body) = answer.into_parts();
        let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        if parts.status == StatusCode::METHOD_NOT_ALLOWED && bytes.is_empty() {
            let allow = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            parts.headers.remove(header::CONTENT_LENGTH);
            return Response::from_parts(parts, Full::new(Bytes::from(serde_json::json!({ "error": format!("method not allowed here; use {allow}") }).to_string())));
        }
        if !parts.headers.contains_key(header::CACHE_CONTROL) {
            parts.headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Response::from_parts(parts, Full::new(bytes))
    }
}
