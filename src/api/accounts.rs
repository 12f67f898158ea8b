//! `/v1/accounts` and `/v1/audit`.

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{AccountParam, Caller, Strict};
use super::{ApiState, views};
use crate::registry::requests::{AccountPatch, NewAccount};

type Answer = Result<(StatusCode, Json<Value>), ApiError>;

/// `POST /v1/accounts`.
pub async fn create(State(s): State<ApiState>, Caller(who): Caller, Strict(body): Strict<NewAccount>) -> Answer {
    let a = s.registry.create_account(&who, body).await?;
    Ok((StatusCode::CREATED, Json(views::account(&a))))
}

/// `GET /v1/accounts`.
pub async fn list(State(s): State<ApiState>, Caller(who): Caller) -> Answer {
    let list = s.registry.list_accounts(&who).await?;
    Ok((StatusCode::OK, Json(json!({ "accounts": list.iter().map(views::account).collect::<Vec<_>>() }))))
}

/// `GET /v1/accounts/{account_id}`.
pub async fn get(State(s): State<ApiState>, Caller(who): Caller, Path(id): Path<String>) -> Answer {
    Ok((StatusCode::OK, Json(views::account(&s.registry.get_account(&who, &id).await?))))
}

/// `PATCH /v1/accounts/{account_id}`.
pub async fn update(State(s): State<ApiState>, Caller(who): Caller, Path(id): Path<String>, Strict(body): Strict<AccountPatch>) -> Answer {
    Ok((StatusCode::OK, Json(views::account(&s.registry.update_account(&who, &id, body).await?))))
}

/// `DELETE /v1/accounts/{account_id}`.
pub async fn delete(State(s): State<ApiState>, Caller(who): Caller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    s.registry.delete_account(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/audit?account_id=`.
pub async fn audit(State(s): State<ApiState>, Caller(who): Caller, AccountParam(account): AccountParam) -> Answer {
    let entries = s.registry.audit_log(&who, account.as_deref()).await?;
    Ok((StatusCode::OK, Json(json!({ "entries": entries.iter().map(views::audit).collect::<Vec<_>>() }))))
}
