//! Part I's routes, unchanged in shape, now authorised by the pixel's account:
//! `/v1/pixels/{pixel_id}/token` and `/v1/pixels/{pixel_id}/deliveries`. A pixel registered to
//! no account (a token set before accounts existed, or by the host) is the host's.

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::ApiState;
use super::error::ApiError;
use super::extract::{Caller, Strict};
use crate::registry::Access;
use crate::registry::requests::check_token;

/// `PUT …/token`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutToken {
    access_token: String,
}

/// `GET …/token`.
pub async fn status(State(s): State<ApiState>, Caller(who): Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let (pixel, _) = s.registry.pixel_access(&who, &id, Access::Read).await?;
    let view = s.registry.tokens().status(&pixel).await.map_err(crate::registry::RegistryError::from)?;
    Ok(Json(serde_json::to_value(view).unwrap_or_default()))
}

/// `PUT …/token`.
pub async fn set(State(s): State<ApiState>, Caller(who): Caller, Path(id): Path<String>, Strict(body): Strict<PutToken>) -> Result<StatusCode, ApiError> {
    let token = check_token("access_token", &body.access_token)?;
    let (pixel, found) = s.registry.pixel_access(&who, &id, Access::Write).await?;
    let owner = found.map(|(p, _)| p.account_id);
    let entry = s.registry.audit_token_change(&who, &pixel, owner.as_ref(), "pixel.token.set").await?;
    if let Err(e) = s.registry.tokens().set(&pixel, token).await {
        s.registry.retract_audit(entry).await;
        return Err(crate::registry::RegistryError::from(e).into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE …/token`.
pub async fn delete(State(s): State<ApiState>, Caller(who): Caller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let (pixel, found) = s.registry.pixel_access(&who, &id, Access::Write).await?;
    let owner = found.map(|(p, _)| p.account_id);
    let entry = s.registry.audit_token_change(&who, &pixel, owner.as_ref(), "pixel.token.delete").await?;
    if let Err(e) = s.registry.tokens().delete(&pixel).await {
        s.registry.retract_audit(entry).await;
        return Err(crate::registry::RegistryError::from(e).into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET …/deliveries`: the forwarder's log for the pixel.
pub async fn deliveries(State(s): State<ApiState>, Caller(who): Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let (pixel, _) = s.registry.pixel_access(&who, &id, Access::Read).await?;
    Ok(Json(s.deliveries.for_pixel(&pixel)))
}
