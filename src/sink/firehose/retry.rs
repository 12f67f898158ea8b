//! The one place that decides what a `PutRecordBatch` answer means for the records in it, and
//! how long to wait before trying again.

use super::client::{PutError, PutOutcome};

/// What to do after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryAction {
    /// Every record was accepted.
    Done,
    /// `FailedPutCount > 0`: resend only the records at these positions of the request; the
    /// others were accepted and must never be sent again.
    RetryPartial {
        /// Positions in the request, ascending.
        failed: Vec<usize>,
        /// Metric label of the first failure code.
        reason: &'static str,
    },
    /// The whole request failed in a way that may pass later (throttling, 5xx, timeout, an
    /// unreachable endpoint, a missing stream or credentials an operator can fix): resend it.
    Retry(PutError),
    /// The service will never accept this request as it is: give the records up, counted.
    DontRetry(PutError),
}

/// Classifies the result of one attempt.
pub fn classify(result: Result<&PutOutcome, &PutError>) -> RetryAction {
    match result {
        Ok(outcome) => {
            let failed: Vec<usize> = outcome.failures.iter().enumerate().filter(|(_, f)| f.is_some()).map(|(i, _)| i).collect();
            match failed.first() {
                None => RetryAction::Done,
                Some(&first) => {
                    let reason = match outcome.failures[first].as_ref().map(|f| f.code.as_str()) {
                        Some("ServiceUnavailableException") => "record_unavailable",
                        Some("InternalFailure") => "record_internal",
                        _ => "record_other",
                    };
                    RetryAction::RetryPartial { failed, reason }
                }
            }
        }
        Err(err @ PutError::Rejected(_)) => RetryAction::DontRetry(err.clone()),
        Err(err) => RetryAction::Retry(err.clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sink::firehose::client::RecordFailure;

    fn failure(code: &str) -> Option<RecordFailure> {
        Some(RecordFailure { code: code.into(), message: "slow down".into() })
    }

    #[test]
    fn partial_failures_are_matched_by_position() {
        let outcome = PutOutcome { failures: vec![None, failure("ServiceUnavailableException"), None, failure("InternalFailure")] };
        assert_eq!(classify(Ok(&outcome)), RetryAction::RetryPartial { failed: vec![1, 3], reason: "record_unavailable" });
        assert_eq!(classify(Ok(&PutOutcome::all_accepted(3))), RetryAction::Done);
    }

    #[test]
    fn only_an_invalid_request_is_given_up() {
        for err in [
            PutError::Throttled("t".into()),
            PutError::Unavailable("u".into()),
            PutError::Timeout(Duration::from_secs(1)),
            PutError::Unreachable("refused".into()),
            PutError::NotFound("gone".into()),
            PutError::Other("AccessDeniedException".into()),
        ] {
            assert!(matches!(classify(Err(&err)), RetryAction::Retry(_)), "{err}");
        }
        assert!(matches!(classify(Err(&PutError::Rejected("bad".into()))), RetryAction::DontRetry(_)));
    }
}
