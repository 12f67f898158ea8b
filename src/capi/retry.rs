//! The one place that decides what a `/events` answer means for the events in the request, and
//! how long to wait before trying again (capi.md §10).
//!
//! Meta rejects a whole batch for one invalid event, so "invalid parameter" is not a verdict on
//! the batch: the forwarder splits it to find the culprit. An invalid token is a verdict on the
//! pixel, not the events: no retry helps until its owner sets a new token.


use super::client::{Received, SendError};

/// What to do after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    /// Meta took the events.
    Done,
    /// A failure that may pass (5xx, timeout, connection, throttling): send the same request again
    /// after a backoff, within the budget.
    Retry,
    /// Code 190 / 102: the token is expired or invalid. Mark it invalid, give the events up.
    InvalidToken,
    /// Code 100: at least one event is invalid and Meta rejected them all. Split the batch to
    /// isolate it (a lone event is given up); `hint` is the position Meta named, if any.
    Split {
        /// Position in the request of the event Meta named.
        hint: Option<usize>,
    },
    /// Meta will not take this request as it is and retrying will not change that.
    GiveUp {
        /// Closed label for metrics and the `capi_failed` record.
        reason: &'static str,
    },
}

/// Graph codes that mean "slow down" or "temporarily down" (capi.md §10).
fn is_transient_code(code: i64) -> bool {
    matches!(code, 1 | 2 | 4 | 17 | 32 | 341 | 368 | 613 | 80000..=80014)
}

/// Classifies the result of one attempt.
pub fn classify(result: Result<&Received, &SendError>) -> RetryAction {
    let err = match result {
        Ok(_) => return RetryAction::Done,
        Err(err) => err,
    };
    let graph = match err {
        SendError::Timeout(_) | SendError::Connect(_) => return RetryAction::Retry,
        SendError::Client(_) => return RetryAction::GiveUp { reason: "client_unavailable" },
        SendError::Graph(graph) => graph,
    };
    match graph.code {
        Some(190 | 102) => RetryAction::InvalidToken,
        // "Object with ID … does not exist, cannot be loaded due to missing permissions": about
        // the pixel, not an event; splitting would only multiply the same answer.
        Some(100) if graph.subcode == Some(33) => RetryAction::GiveUp { reason: "pixel_not_accessible" },
        Some(100) => RetryAction::Split { hint: graph.event_index },
        Some(code) if is_transient_code(code) => RetryAction::Retry,
        Some(10 | 200..=299) => RetryAction::GiveUp { reason: "permission_denied" },
        _ if graph.is_transient == Some(true) => RetryAction::Retry,
        _ if graph.status >= 500 || graph.status == 429 => RetryAction::Retry,
        _ => RetryAction::GiveUp { reason: "rejected_by_meta" },
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

pub use crate::retry::RetryPolicy;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::capi::client::GraphError;

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
            assert_eq!(classify(Err(&err)), RetryAction::Retry, "{err}");
        }
        let transient = SendError::Graph(GraphError { status: 400, code: Some(2804050), is_transient: Some(true), ..GraphError::default() });
        assert_eq!(classify(Err(&transient)), RetryAction::Retry);
    }

    #[test]
    fn token_parameter_and_other_client_errors_are_not_retried() {
        assert_eq!(classify(Err(&graph(400, Some(190)))), RetryAction::InvalidToken);
        assert_eq!(classify(Err(&graph(400, Some(102)))), RetryAction::InvalidToken);
        assert_eq!(classify(Err(&graph(400, Some(100)))), RetryAction::Split { hint: None });
        let hinted = SendError::Graph(GraphError { status: 400, code: Some(100), event_index: Some(3), ..GraphError::default() });
        assert_eq!(classify(Err(&hinted)), RetryAction::Split { hint: Some(3) });
        let no_pixel = SendError::Graph(GraphError { status: 400, code: Some(100), subcode: Some(33), ..GraphError::default() });
        assert_eq!(classify(Err(&no_pixel)), RetryAction::GiveUp { reason: "pixel_not_accessible" });
        assert_eq!(classify(Err(&graph(403, Some(10)))), RetryAction::GiveUp { reason: "permission_denied" });
        assert_eq!(classify(Err(&graph(400, Some(200)))), RetryAction::GiveUp { reason: "permission_denied" });
        assert_eq!(classify(Err(&graph(404, None))), RetryAction::GiveUp { reason: "rejected_by_meta" });
        assert_eq!(classify(Err(&graph(400, Some(803)))), RetryAction::GiveUp { reason: "rejected_by_meta" });
        assert_eq!(classify(Err(&SendError::Client("no tls".into()))), RetryAction::GiveUp { reason: "client_unavailable" });
        assert_eq!(classify(Ok(&Received::default())), RetryAction::Done);
    }

    #[test]
    fn request_labels_are_a_closed_set() {
        assert_eq!(request_label(Err(&graph(400, Some(613)))), "rate_limited");
        assert_eq!(request_label(Err(&graph(502, None))), "server_error");
        assert_eq!(request_label(Err(&graph(400, Some(190)))), "invalid_token");
        assert_eq!(request_label(Ok(&Received::default())), "ok");
    }

    #[test]
    fn backoff_is_full_jitter_below_a_doubling_capped_ceiling() {
        let p = RetryPolicy {
            attempt_timeout: Duration::from_millis(1500),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            budget: Duration::from_secs(10),
        };
        for (retry, ceiling) in [(0, 100), (1, 200), (2, 400), (3, 800), (4, 1000), (40, 1000)] {
            let waits: Vec<u128> = (0..200).map(|_| p.backoff(retry).as_millis()).collect();
            assert!(waits.iter().all(|w| *w <= ceiling), "retry {retry}: {waits:?}");
            assert!(waits.iter().any(|w| *w < ceiling / 2), "full jitter reaches the lower half");
        }
    }
}
