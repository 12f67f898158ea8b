//! The extractors every handler takes: [`Caller`] (the verified key; a handler cannot forget to
//! ask for it, since every route needs one), [`Strict`] (a JSON body checked field by field) and
//! [`AccountParam`] (`?account_id=`).

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::header;
use http::request::Parts;
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;

use super::ApiState;
use super::error::ApiError;
use crate::registry::requests::parse;
use crate::registry::{Principal, RegistryError};

/// Largest request body read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The principal of the request's key.
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller
where
    ApiState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let state = ApiState::from_ref(state);
        let given = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let keys = state.registry.keys();
        // Without --admin-key the API keeps Part I's answer to strangers: it is not there. A key
        // made by `pixelgate keys create` still signs in.
        if !keys.has_bootstrap() && !given.and_then(|v| v.trim().split_once(' ')).is_some_and(|(_, k)| k.trim().starts_with(crate::registry::ids::KEY_PREFIX)) {
            return Err(ApiError::Off);
        }
        Ok(Caller(keys.authenticate(given).await?))
    }
}

/// A JSON body parsed strictly into `T`: unknown fields, wrong types and missing fields are a
/// `400` naming the field; over [`MAX_BODY_BYTES`] is `413`.
pub struct Strict<T>(pub T);

impl<S: Send + Sync, T: for<'de> Deserialize<'de>> FromRequest<S> for Strict<T>
where
    ApiState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let timeout = ApiState::from_ref(state).body_timeout;
        let bytes = read_body(req.into_body(), MAX_BODY_BYTES, "the body is over 64 KiB", timeout).await?;
        Ok(Strict(parse(&bytes)?))
    }
}

/// `?account_id=` (the only query parameter the API takes).
pub struct AccountParam(pub Option<String>);

/// A request body read whole: at most `limit` bytes (else `413` saying `too_large`), within
/// `timeout` (else `400`).
pub async fn read_body(body: axum::body::Body, limit: usize, too_large: &'static str, timeout: std::time::Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::TooLarge(too_large)),
        Ok(Err(_)) | Err(_) => Err(ApiError::Timeout),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AccountParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut account = None;
        for (k, v) in form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()) {
            match &*k {
                "account_id" => account = Some(v.into_owned()),
                other => return Err(RegistryError::Invalid(format!("unknown query parameter `{}`; the only one is account_id", crate::registry::ids::clip(other))).into()),
            }
        }
        Ok(AccountParam(account))
    }
}
