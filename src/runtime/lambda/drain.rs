//! The extension's side of each invocation: wait until the invocation's handler has submitted
//! its hit, then flush the outlets, at most until just before the invocation's deadline.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::mpsc;

use super::{DRAIN_MARGIN, METRICS_LOG_INTERVAL, NOTICE_WAIT};
use crate::metrics as m;
use crate::notify::Notifier;
use crate::pipeline::Dispatcher;

/// The extension's side of each invocation.
pub(super) struct Drain {
    dispatcher: Dispatcher,
    /// Notices raised by this invocation's deliveries (a token found invalid), waited for up to
    /// [`NOTICE_WAIT`]; earlier ones still retrying are not.
    notices: Option<Notifier>,
    /// Request ids of invocations whose handler has finished (or failed), in order.
    ends: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    metrics: PrometheusHandle,
    last_metrics_log: Mutex<Option<Instant>>,
}

impl Drain {
    /// The drain over `dispatcher` and `notices`; `ends` says which invocations' handlers are done.
    pub(super) fn new(dispatcher: Dispatcher, notices: Option<Notifier>, ends: mpsc::UnboundedReceiver<String>, metrics: PrometheusHandle) -> Drain {
        Drain { dispatcher, notices, ends: tokio::sync::Mutex::new(ends), metrics, last_metrics_log: Mutex::new(None) }
    }

    /// Waits for the handler of `request_id` to finish, then for its work to be delivered (records,
    /// destinations, then any notice those raised), at
    /// most until [`DRAIN_MARGIN`] before `deadline_ms`. Never fails: an error here would make
    /// the extension report itself failed and end the runtime.
    pub(super) async fn invocation(&self, request_id: &str, deadline_ms: u64) {
        let started = Instant::now();
        let deadline = deadline_instant(deadline_ms);
        // Notices this invocation may raise are numbered after this one.
        let notices_before = self.notices.as_ref().map_or(0, Notifier::raised);
        let handled = tokio::time::timeout_at(deadline.into(), async {
            let mut ends = self.ends.lock().await;
            // Ends of earlier invocations whose drain ran out of time are skipped.
            while let Some(id) = ends.recv().await {
                if id == request_id {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        let work = async {
            self.dispatcher.flush().await;
            if let Some(notices) = &self.notices
                && tokio::time::timeout(NOTICE_WAIT, notices.settled_after(notices_before)).await.is_err()
            {
                tracing::warn!(
                    request_id,
                    notices = notices.pending(),
                    waited = ?NOTICE_WAIT,
                    "notices still being delivered after the drain's wait; they continue when the sandbox next runs"
                );
            }
        };
        let flushed = handled && tokio::time::timeout_at(deadline.into(), work).await.is_ok();
        let elapsed = started.elapsed();
        metrics::histogram!(m::LAMBDA_DRAIN_SECONDS).record(elapsed.as_secs_f64());
        if !flushed {
            metrics::counter!(m::LAMBDA_DRAIN_TIMEOUTS).increment(1);
            tracing::warn!(
                request_id,
                handled,
                waited_ms = elapsed.as_millis() as u64,
                "the invocation's deadline came before its records, Conversions API calls and notices were done; they continue at the next invocation"
            );
        } else {
            tracing::debug!(request_id, drain_ms = elapsed.as_secs_f64() * 1e3, "drained");
        }
        self.maybe_log_metrics();
    }

    fn maybe_log_metrics(&self) {
        let mut last = self.last_metrics_log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= METRICS_LOG_INTERVAL) {
            *last = Some(Instant::now());
            drop(last);
            tracing::info!(metrics = %metrics_summary(&self.metrics), "metrics");
        }
    }
}

/// `deadline_ms` (Unix milliseconds) minus [`DRAIN_MARGIN`], as an `Instant`; now if it has passed.
fn deadline_instant(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms)).saturating_sub(DRAIN_MARGIN);
    Instant::now() + left
}

/// The process's metrics as one JSON object (`name{labels}` → value), histogram buckets left
/// out (their `_sum` and `_count` stay), for a log line.
pub fn metrics_summary(handle: &PrometheusHandle) -> String {
    let text = handle.render();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.contains("_bucket{") {
            continue;
        }
        if let Some((name, value)) = line.rsplit_once(' ')
            && let Ok(v) = value.parse::<f64>()
        {
            out.insert(name.to_owned(), v);
        }
    }
    serde_json::to_string(&out).unwrap_or_default()
}
