//! What forwarding is going through, for `/readyz` and the metrics: hits shed (wanted by the
//! forwarder but not taken: its byte budget or queue full) and the destination's last failure.
//!
//! Shedding never makes the instance unready: every pixel is still answered and every raw record
//! written, so a load balancer must keep sending hits. `/readyz` shows it beside `"ready"`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::metrics as m;

/// How long after the last shed hit `/readyz` still says forwarding is shedding.
const RECENT_MS: u64 = 10_000;

/// One destination's forwarding state.
#[derive(Debug)]
pub struct ForwardStatus {
    destination: &'static str,
    /// Hits shed since start.
    shed: AtomicU64,
    /// When a hit was last shed (coarse clock, ms), and why.
    last_shed: Mutex<Option<(u64, &'static str)>>,
    /// The last failed request: when (coarse clock, ms) and what.
    last_failure: Mutex<Option<(u64, String)>>,
    /// `pixelgate_capi_events_total{outcome="shed",reason=…}` for the reasons the dispatcher
    /// sheds with, resolved once: a destination that is down has every hit shed, on the
    /// answering thread.
    counted: [(&'static str, metrics::Counter); 3],
}

impl ForwardStatus {
    /// The state of forwarding to `destination`.
    pub fn new(destination: &'static str) -> ForwardStatus {
        let counted = ["budget", "queue_full", "outlet_closed"].map(|reason| (reason, metrics::counter!(m::CAPI_EVENTS, "outcome" => "shed", "reason" => reason)));
        ForwardStatus { destination, shed: AtomicU64::new(0), last_shed: Mutex::new(None), last_failure: Mutex::new(None), counted }
    }

    /// `n` hits shed for `reason` (`budget`, `queue_full`, `outlet_closed`): counted in
    /// `pixelgate_capi_events_total{outcome="shed"}`.
    pub fn shed(&self, reason: &'static str, n: u64) {
        match self.counted.iter().find(|(r, _)| *r == reason) {
            Some((_, counter)) => counter.increment(n),
            None => metrics::counter!(m::CAPI_EVENTS, "outcome" => "shed", "reason" => reason).increment(n),
        }
        self.shed.fetch_add(n, Ordering::Relaxed);
        let now = crate::clock::now_ms();
        let mut last = self.last_shed.lock().unwrap_or_else(|e| e.into_inner());
        let first_in_a_while = last.is_none_or(|(at, _)| now.saturating_sub(at) > RECENT_MS);
        *last = Some((now, reason));
        drop(last);
        if first_in_a_while {
            tracing::warn!(
                destination = self.destination,
                reason,
                "forwarding sheds hits: the destination cannot keep up (raw records are still written; see pixelgate_capi_events_total{{outcome=\"shed\"}})"
            );
        }
    }

    /// A request failed with `what` (the platform's or the transport's words, no credential).
    pub fn failed(&self, what: String) {
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some((crate::clock::now_ms(), what));
    }

    /// Hits shed since start.
    pub fn shed_total(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// What `/readyz` shows of this destination, when there is something to show: shedding in
    /// the last ten seconds, a failure in the last minute.
    pub fn report(&self) -> Option<Value> {
        let now = crate::clock::now_ms();
        let mut report = serde_json::Map::new();
        if let Some((at, reason)) = *self.last_shed.lock().unwrap_or_else(|e| e.into_inner())
            && now.saturating_sub(at) <= RECENT_MS
        {
            report.insert("shedding".into(), json!({ "reason": reason, "shed_total": self.shed_total() }));
        }
        if let Some((at, what)) = &*self.last_failure.lock().unwrap_or_else(|e| e.into_inner())
            && now.saturating_sub(*at) <= 6 * RECENT_MS
        {
            report.insert("last_failure".into(), json!({ "error": what, "seconds_ago": now.saturating_sub(*at) / 1000 }));
        }
        (!report.is_empty()).then(|| json!({ self.destination: report }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_recent_shedding_and_failures_only() {
        let status = ForwardStatus::new("meta");
        assert_eq!(status.report(), None);
        status.shed("budget", 3);
        status.failed("HTTP 503".into());
        let report = status.report().unwrap();
        assert_eq!(report["meta"]["shedding"], json!({"reason": "budget", "shed_total": 3}));
        assert_eq!(report["meta"]["last_failure"]["error"], "HTTP 503");
        *status.last_shed.lock().unwrap() = Some((0, "budget"));
        *status.last_failure.lock().unwrap() = Some((0, "old".into()));
        assert_eq!(status.report(), None, "long ago");
    }
}
