//! `/v1/keys`.

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{AccountParam, Caller, Strict};
use super::{ApiState, views};
use crate::registry::requests::NewKey;

/// `POST /v1/keys`: the only answer that shows the key.
pub async fn create(State(s): State<ApiState>, Caller(who): Caller, Strict(body): Strict<NewKey>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (record, key) = s.registry.create_key(&who, body).await?;
    let mut view = views::key(&record);
    view["key"] = Value::String(key.expose().to_owned());
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/keys?account_id=`.
pub async fn list(State(s): State<ApiState>, Caller(who): Caller, AccountParam(account): AccountParam) -> Result<Json<Value>, ApiError> {
    let keys = s.registry.list_keys(&who, account.as_deref()).await?;
    Ok(Json(json!({ "keys": keys.iter().map(views::key).collect::<Vec<_>>() })))
}

/// `DELETE /v1/keys/{key_id}`.
pub async fn revoke(State(s): State<ApiState>, Caller(who): Caller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    s.registry.revoke_key(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
