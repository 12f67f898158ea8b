//! Delivering one batch: `PutRecordBatch`, then resend only what failed, with backoff, until
//! every record is acknowledged, the retry budget is spent, or the sink is stopping.

use std::time::Instant;

use bytes::Bytes;
use tokio::sync::watch;

use super::Status;
use super::client::{PutError, PutRecords};
use super::retry::{RetryAction, classify};
use crate::metrics as m;
use crate::retry::RetryPolicy;

/// Records that could not be delivered, handed back for the spool.
#[derive(Debug)]
pub struct Undelivered {
    /// The records not acknowledged, in their original order.
    pub records: Vec<Bytes>,
    /// The last failure, in words for logs and `/readyz`.
    pub reason: String,
}

/// Sends `records` until each one is acknowledged exactly once. Returns the records still
/// unacknowledged when `budget` (measured from the first attempt; `None` = no limit) would be
/// exceeded by the next wait, or when `stop` turns true (checked between attempts: an attempt
/// under way is let finish, so what it got through is not sent again).
///
/// Records the service will never accept are given up here, counted and logged. With `status`,
/// every failed attempt marks the sink degraded (the replay uses this: its records are already
/// safe, so a failure there means Firehose is still not taking records).
pub async fn deliver<C: PutRecords>(
    client: &C,
    mut records: Vec<Bytes>,
    policy: &RetryPolicy,
    budget: Option<std::time::Duration>,
    stop: &mut watch::Receiver<bool>,
    status: Option<&Status>,
) -> Result<(), Undelivered> {
    let started = Instant::now();
    let mut retry = 0;
    loop {
        let result = match tokio::time::timeout(policy.attempt_timeout, client.put_record_batch(&records)).await {
            Ok(result) => result,
            Err(_) => Err(PutError::Timeout(policy.attempt_timeout)),
        };
        metrics::histogram!(m::SINK_BATCH_RECORDS, "outlet" => "firehose").record(records.len() as f64);
        let (label, reason) = match classify(result.as_ref()) {
            RetryAction::Done => {
                metrics::counter!(m::FIREHOSE_REQUESTS, "outcome" => "ok").increment(1);
                metrics::counter!(m::RECORDS_WRITTEN, "sink" => "firehose").increment(records.len() as u64);
                return Ok(());
            }
            RetryAction::RetryPartial { failed, reason } => {
                metrics::counter!(m::FIREHOSE_REQUESTS, "outcome" => "partial").increment(1);
                metrics::counter!(m::RECORDS_WRITTEN, "sink" => "firehose").increment((records.len() - failed.len()) as u64);
                let outcome = result.expect("a partial failure is an answer");
                let why = outcome.failures.iter().flatten().next().map(|f| format!("{}: {}", f.code, f.message)).unwrap_or_default();
                records = keep_positions(records, &failed);
                (reason, format!("{} of the records failed ({why})", failed.len()))
            }
            RetryAction::Retry(err) => {
                metrics::counter!(m::FIREHOSE_REQUESTS, "outcome" => err.label()).increment(1);
                (err.label(), err.to_string())
            }
            RetryAction::DontRetry(err) => {
                metrics::counter!(m::FIREHOSE_REQUESTS, "outcome" => err.label()).increment(1);
                metrics::counter!(m::RECORDS_DROPPED, "outlet" => "firehose", "reason" => "rejected").increment(records.len() as u64);
                tracing::error!(records = records.len(), error = %err, "Firehose rejected a request that can never succeed; its records are given up");
                return Ok(());
            }
        };
        if let Some(status) = status {
            status.degraded(&reason);
        }
        let wait = policy.backoff_at_least_half(retry);
        retry += 1;
        if *stop.borrow() || budget.is_some_and(|b| started.elapsed() + wait > b) {
            return Err(Undelivered { records, reason });
        }
        metrics::counter!(m::FIREHOSE_RETRIES, "reason" => label).increment(records.len() as u64);
        tracing::debug!(records = records.len(), retry, ?wait, %reason, "retrying Firehose records");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stopping| *stopping) => return Err(Undelivered { records, reason }),
        }
    }
}

/// The records at `positions` (ascending), in order.
fn keep_positions(records: Vec<Bytes>, positions: &[usize]) -> Vec<Bytes> {
    let mut wanted = positions.iter().copied().peekable();
    records.into_iter().enumerate().filter(|(i, _)| wanted.next_if_eq(i).is_some()).map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_exactly_the_failed_positions_in_order() {
        let records: Vec<Bytes> = (0..6).map(|i| Bytes::from(format!("{i}\n"))).collect();
        let kept = keep_positions(records, &[0, 2, 5]);
        assert_eq!(kept, vec![Bytes::from("0\n"), Bytes::from("2\n"), Bytes::from("5\n")]);
    }
}
