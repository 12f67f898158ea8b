//! `/readyz`: whether the raw-record sink delivers and the token store answers
//! (`docs/operations.md#endpoints`). Forwarding's trouble (hits shed, a destination failing) is
//! shown beside the status but never makes the instance unready: every pixel is still answered
//! and every raw record written.

use std::time::Duration;

use http::{Response, StatusCode};

use super::Edge;
use super::response::{EdgeBody, json};

/// How long `/readyz` waits for the token store to answer.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `/readyz`: 200 while the sink delivers and the token store answers, else 503 `degraded` with
/// the reasons.
pub async fn ready(edge: &Edge) -> Response<EdgeBody> {
    let mut reasons = serde_json::Map::new();
    if let Some(reason) = edge.sink_health.problem() {
        reasons.insert("sink".into(), reason.into());
    }
    match tokio::time::timeout(STORE_CHECK_TIMEOUT, edge.tokens.store().check()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            reasons.insert("token_store".into(), err.to_string().into());
        }
        Err(_) => {
            reasons.insert("token_store".into(), format!("no answer within {}s", STORE_CHECK_TIMEOUT.as_secs()).into());
        }
    }
    let mut forwarding = serde_json::Map::new();
    for report in edge.forwarding.iter().filter_map(|status| status.report()) {
        if let serde_json::Value::Object(destination) = report {
            forwarding.extend(destination);
        }
    }
    let mut answer = if reasons.is_empty() { serde_json::json!({ "status": "ready" }) } else { serde_json::json!({ "status": "degraded", "reasons": reasons }) };
    if !forwarding.is_empty() {
        answer["forwarding"] = forwarding.into();
    }
    json(if reasons.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, answer)
}
