//! [`ApiError`]: the only place that chooses an error's status and writes its `{"error":…}` body.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{self, HeaderValue};

use crate::registry::{AuthError, RegistryError};

/// Everything a `/v1/` handler can answer instead of what was asked.
#[derive(Debug)]
pub enum ApiError {
    /// From the registry: 400, 403, 404, 409 or 503.
    Registry(RegistryError),
    /// No key, or a key that is not valid: 401.
    Auth(AuthError),
    /// A body over the limit: 413.
    TooLarge(&'static str),
    /// A body that did not arrive in time: 400 (as in Part I).
    Timeout,
    /// The API is off (no `--admin-key` and no key sent): 404, as if it did not exist.
    Off,
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        ApiError::Registry(e)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::Auth(e)
    }
}

impl ApiError {
    /// The status and the message.
    pub fn parts(&self) -> (StatusCode, String) {
        match self {
            ApiError::Registry(e) => (
                match e {
                    RegistryError::Invalid(_) => StatusCode::BAD_REQUEST,
                    RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
                    RegistryError::Forbidden(_) => StatusCode::FORBIDDEN,
                    RegistryError::Conflict(_) => StatusCode::CONFLICT,
                    RegistryError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                },
                e.to_string(),
            ),
            ApiError::Auth(AuthError::Unavailable(m)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{m}; try again shortly")),
            ApiError::Auth(e) => (StatusCode::UNAUTHORIZED, e.to_string()),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, (*m).to_owned()),
            ApiError::Timeout => (StatusCode::BAD_REQUEST, "body: it did not arrive within --header-read-timeout [PIXELGATE_HEADER_READ_TIMEOUT]".to_owned()),
            ApiError::Off => (
                StatusCode::NOT_FOUND,
                "no such endpoint; the admin API is off until the server runs with --admin-key [PIXELGATE_ADMIN_KEY] or is sent a key made by `pixelgate keys create`".to_owned(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Registry(RegistryError::Unavailable(m)) | ApiError::Auth(AuthError::Unavailable(m)) = &self {
            tracing::warn!(error = %m, "admin API: store call failed");
        }
        let (status, message) = self.parts();
        let mut r = (status, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(serde_json::json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}
