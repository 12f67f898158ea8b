//! `/v1/pixels`: registration and settings.

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{AccountParam, Caller, Strict};
use super::{ApiState, views};
use crate::registry::RegistryError;
use crate::registry::requests::PixelBody;

type Answer = Result<(StatusCode, Json<Value>), ApiError>;

/// `PUT /v1/pixels/{pixel_id}`: `201` registered, `200` updated.
pub async fn put(State(s): State<ApiState>, Caller(who): Caller, Path(id): Path<String>, Strict(body): Strict<PixelBody>) -> Answer {
    let (account, change) = body.check()?;
    let (view, created) = s.registry.put_pixel(&who, &id, account, change).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(views::pixel(&view))))
}

/// `GET /v1/pixels/{pixel_id}`.
pub async fn get(State(s): State<ApiState>, Caller(who): Caller, Path(id): Path<String>) -> Answer {
    Ok((StatusCode::OK, Json(views::pixel(&s.registry.get_pixel(&who, &id).await?))))
}

/// `PATCH /v1/pixels/{pixel_id}`.
pub async fn patch(State(s): State<ApiState>, Caller(who): Caller, Path(id): Path<String>, Strict(body): Strict<PixelBody>) -> Answer {
    let (account, change) = body.check()?;
    if account.is_some() {
        return Err(RegistryError::field("account_id", "a pixel changes account by DELETE, then PUT with the new account_id").into());
    }
    Ok((StatusCode::OK, Json(views::pixel(&s.registry.patch_pixel(&who, &id, change).await?))))
}

/// `DELETE /v1/pixels/{pixel_id}`.
pub async fn delete(State(s): State<ApiState>, Caller(who): Caller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    s.registry.delete_pixel(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/pixels?account_id=`.
pub async fn list(State(s): State<ApiState>, Caller(who): Caller, AccountParam(account): AccountParam) -> Answer {
    let pixels = s.registry.list_pixels(&who, account.as_deref()).await?;
    Ok((StatusCode::OK, Json(json!({ "pixels": pixels.iter().map(views::pixel).collect::<Vec<_>>() }))))
}
