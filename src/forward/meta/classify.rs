//! What a `/events` answer means for the events in the request: Meta's error classes
//! (`docs/forwarding.md#answers-and-retries`).
//!
//! Meta rejects a whole batch for one invalid event, so "invalid parameter" is not a verdict on
//! the batch: the forwarder splits it to find the culprit. An invalid token is a verdict on the
//! pixel, not the events: no retry helps until its owner sets a new token.

use super::client::{Received, SendError};
use crate::forward::Verdict;

/// Graph codes that mean "slow down" or "temporarily down".
fn is_transient_code(code: i64) -> bool {
    matches!(code, 1 | 2 | 4 | 17 | 32 | 341 | 368 | 613 | 80000..=80014)
}

/// Classifies the result of one attempt: transient failures retry; code 190/102 (expired or
/// invalid token) is a verdict on the credentials; code 100 rejects the whole batch for one bad
/// event, so the batch is split to find it; anything else is given up.
pub fn classify(result: Result<&Received, &SendError>) -> Verdict {
    let err = match result {
        Ok(_) => return Verdict::Done,
        Err(err) => err,
    };
    let graph = match err {
        SendError::Timeout(_) | SendError::Connect(_) => return Verdict::Retry,
        SendError::Client(_) => {
            return Verdict::GiveUp { reason: "client_unavailable" };
        }
        SendError::Graph(graph) => graph,
    };
    match graph.code {
        Some(190 | 102) => Verdict::InvalidCredentials,
        // "Object with ID … does not exist, cannot be loaded due to missing permissions": about
        // the pixel, not an event; splitting would only multiply the same answer.
        Some(100) if graph.subcode == Some(33) => Verdict::GiveUp { reason: "pixel_not_accessible" },
        Some(100) => Verdict::Split { hint: graph.event_index },
        Some(code) if is_transient_code(code) => Verdict::Retry,
        Some(10 | 200..=299) => Verdict::GiveUp { reason: "permission_denied" },
        _ if graph.is_transient == Some(true) => Verdict::Retry,
        _ if graph.status >= 500 || graph.status == 429 => Verdict::Retry,
        _ => Verdict::GiveUp { reason: "rejected_by_meta" },
    }
}

/// The `result` label of `pixelgate_capi_requests_total`, from a closed set.
pub fn request_label(result: Result<&Received, &SendError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(SendError::Timeout(_)) => "timeout",
        Err(SendError::Connect(_)) => "unreachable",
        Err(SendError::Client(_)) => "client_unavailable",
        Err(SendError::Graph(g)) => match g.code {
            Some(190 | 102) => "invalid_token",
            Some(100) => "invalid_parameter",
            Some(4 | 17 | 32 | 341 | 613 | 80000..=80014) => "rate_limited",
            Some(10 | 200..=299) => "permission_denied",
            _ if g.status >= 500 => "server_error",
            _ => "client_error",
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::forward::meta::client::GraphError;

    fn graph(status: u16, code: Option<i64>) -> SendError {
        SendError::Graph(GraphError { status, code, message: "m".into(), ..GraphError::default() })
    }

    #[test]
    fn transient_failures_are_retried() {
        for err in [
            SendError::Timeout(Duration::from_millis(1500)),
            SendError::Connect("refused".into()),
            graph(500, None),
            graph(503, Some(2)),
            graph(400, Some(1)),
            graph(400, Some(4)),
            graph(400, Some(17)),
            graph(400, Some(32)),
            graph(400, Some(613)),
            graph(400, Some(341)),
            graph(400, Some(80004)),
            graph(429, None),
        ] {
            assert_eq!(classify(Err(&err)), Verdict::Retry, "{err}");
        }
        let transient = SendError::Graph(GraphError { status: 400, code: Some(2804050), is_transient: Some(true), ..GraphError::default() });
        assert_eq!(classify(Err(&transient)), Verdict::Retry);
    }

    #[test]
    fn token_parameter_and_other_client_errors_are_not_retried() {
        assert_eq!(classify(Err(&graph(400, Some(190)))), Verdict::InvalidCredentials);
        assert_eq!(classify(Err(&graph(400, Some(102)))), Verdict::InvalidCredentials);
        assert_eq!(classify(Err(&graph(400, Some(100)))), Verdict::Split { hint: None });
        let hinted = SendError::Graph(GraphError { status: 400, code: Some(100), event_index: Some(3), ..GraphError::default() });
        assert_eq!(classify(Err(&hinted)), Verdict::Split { hint: Some(3) });
        let no_pixel = SendError::Graph(GraphError { status: 400, code: Some(100), subcode: Some(33), ..GraphError::default() });
        assert_eq!(classify(Err(&no_pixel)), Verdict::GiveUp { reason: "pixel_not_accessible" });
        assert_eq!(classify(Err(&graph(403, Some(10)))), Verdict::GiveUp { reason: "permission_denied" });
        assert_eq!(classify(Err(&graph(400, Some(200)))), Verdict::GiveUp { reason: "permission_denied" });
        assert_eq!(classify(Err(&graph(404, None))), Verdict::GiveUp { reason: "rejected_by_meta" });
        assert_eq!(classify(Err(&graph(400, Some(803)))), Verdict::GiveUp { reason: "rejected_by_meta" });
        assert_eq!(classify(Err(&SendError::Client("no tls".into()))), Verdict::GiveUp { reason: "client_unavailable" });
        assert_eq!(classify(Ok(&Received::default())), Verdict::Done);
    }

    #[test]
    fn request_labels_are_a_closed_set() {
        assert_eq!(request_label(Err(&graph(400, Some(613)))), "rate_limited");
        assert_eq!(request_label(Err(&graph(502, None))), "server_error");
        assert_eq!(request_label(Err(&graph(400, Some(190)))), "invalid_token");
        assert_eq!(request_label(Ok(&Received::default())), "ok");
    }
}
