//! Where a delivery's outcomes go, for every destination alike: sent events are counted and
//! listed in the pixel's deliveries; skipped events (no usable credentials) are counted only;
//! given-up events are counted, logged once per batch, listed in the deliveries, and written to
//! the raw-record sink as a `capi_failed` record each (`docs/records.md#failure-records`), so
//! nothing is lost silently.

use std::sync::Arc;

use super::deliver::Chunk;
use super::deliveries::{self, At, Delivery, PER_PIXEL};
use super::destination::Destination;
use super::{Key, Shared};
use crate::metrics as m;
use crate::pipeline::QueuedHit;
use crate::record::{CapiFailure, Fields};

/// One delivery's view of where outcomes go.
pub(super) struct Outcomes<'a, D, S> {
    pub(super) shared: &'a Shared<D, S>,
    pub(super) key: &'a Key,
}

impl<D: Destination, S> Outcomes<'_, D, S> {
    /// Events the platform took with one request.
    pub(super) fn sent(&self, chunk: &Chunk, answer: &D::Answer) {
        let destination = &self.shared.destination;
        let receipt = destination.receipt(answer);
        let n = chunk.hits.len();
        metrics::counter!(m::CAPI_EVENTS, "outcome" => "sent", "reason" => "delivered").increment(n as u64);
        if receipt.counted.is_some_and(|c| c != n as u64) {
            tracing::warn!(destination = destination.name(), pixel_id = %self.key.pixel, sent = n, counted = ?receipt.counted, "the platform counted a different number of events than were sent");
        }
        let (at, answer) = (At::now(), Arc::new(receipt.fields));
        // The log keeps the last entries per pixel: only those are made.
        self.shared.deliveries.record(
            &self.key.pixel,
            chunk.hits[n.saturating_sub(PER_PIXEL)..].iter().map(|hit| Delivery {
                event_name: destination.event_name(hit).to_owned(),
                event_id: hit.event_id().to_owned(),
                at,
                outcome: "sent",
                reason: None,
                answer: answer.clone(),
                code: None,
                message: None,
                attempts: chunk.attempts,
                test: self.key.test_event_code.is_some(),
            }),
        );
    }

    /// Events not sent because the pixel has no usable credentials: counted only.
    pub(super) fn skipped(&self, n: usize, reason: &'static str) {
        metrics::counter!(m::CAPI_EVENTS, "outcome" => "skipped", "reason" => reason).increment(n as u64);
    }

    /// Gives `hits` (with the requests that carried each) up: a `capi_failed` record each,
    /// counted, logged once, and listed in the pixel's deliveries.
    pub(super) fn failed(&self, hits: Vec<(Arc<QueuedHit>, u32)>, reason: &'static str, detail: &str, code: Option<i64>) {
        if hits.is_empty() {
            return;
        }
        let destination = &self.shared.destination;
        metrics::counter!(m::CAPI_EVENTS, "outcome" => "failed", "reason" => reason).increment(hits.len() as u64);
        if reason.starts_with("rejected_") {
            tracing::debug!(destination = destination.name(), pixel_id = %self.key.pixel, events = hits.len(), reason, detail, "events the platform would reject were not sent");
        } else {
            tracing::warn!(destination = destination.name(), pixel_id = %self.key.pixel, events = hits.len(), reason, code = ?code, detail, "events given up; written as capi_failed records");
        }
        let (at, answer, message) = (At::now(), Arc::default(), deliveries::message(detail));
        let mut log = Vec::with_capacity(hits.len());
        for (hit, attempts) in hits {
            log.push(Delivery {
                event_name: destination.event_name(&hit).to_owned(),
                event_id: hit.event_id().to_owned(),
                at,
                outcome: "failed",
                reason: Some(reason),
                answer: Arc::clone(&answer),
                code,
                message: Some(message.clone()),
                attempts,
                test: self.key.test_event_code.is_some(),
            });
            self.shared.sink.submit_record(&hit.to_hit().capi_failed(CapiFailure { reason, detail: detail.to_owned(), code, attempts }));
        }
        self.shared.deliveries.record(&self.key.pixel, log);
    }

    /// [`Outcomes::failed`] for chunks that were encoded (and perhaps sent).
    pub(super) fn failed_chunks(&self, chunks: impl IntoIterator<Item = Chunk>, reason: &'static str, detail: &str, code: Option<i64>) {
        let hits = chunks.into_iter().flat_map(|c| c.hits.into_iter().map(move |hit| (hit, c.attempts))).collect();
        self.failed(hits, reason, detail, code);
    }
}
