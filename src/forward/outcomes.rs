//! Where a delivery's outcomes go, for every destination alike: sent events are counted and
//! listed in the pixel's deliveries; skipped events (no usable credentials) are counted only;
//! given-up events are counted, logged once per batch, listed in the deliveries, and written to
//! the raw-record sink as a delivery record each (`docs/records.md#delivery-records`), so
//! nothing is lost silently.

use std::sync::Arc;

use super::deliver::Chunk;
use super::deliveries::{self, At, Delivery, PER_PIXEL};
use super::destination::Destination;
use super::open::{Records, Rejected};
use super::{Key, Shared};
use crate::metrics as m;
use crate::record::{GivenUp, Timestamp};

/// One delivery's view of where outcomes go.
pub(super) struct Outcomes<'a, D, S> {
    pub(super) shared: &'a Shared<D, S>,
    pub(super) key: &'a Key,
    /// The batch's records, which its events and rejected hits point into.
    pub(super) records: &'a Records,
}

/// An event given up: its record, the requests that carried it, and its name and id.
pub(super) struct Given<'c> {
    record: u32,
    attempts: u32,
    labels: Labels<'c>,
}

/// Where a given-up event's name and id are read from (only for the entries the deliveries log
/// keeps).
enum Labels<'c> {
    /// Event `i` of an encoded chunk.
    Encoded(&'c Chunk, usize),
    /// A rejected hit's name, kept as text (its id is in the batch's records).
    Known(&'c str),
}

impl<'c> Given<'c> {
    /// A hit the platform would reject, never sent.
    pub(super) fn rejected(hit: &'c Rejected) -> Self {
        Given { record: hit.record, attempts: 0, labels: Labels::Known(&hit.name) }
    }

    fn labels(&self, records: &Records) -> (String, String) {
        match self.labels {
            Labels::Encoded(chunk, i) => chunk.labels(i),
            Labels::Known(name) => (name.to_owned(), records.event_id(self.record).to_owned()),
        }
    }
}

impl<D: Destination, S> Outcomes<'_, D, S> {
    /// Events the platform took with one request.
    pub(super) fn sent(&self, chunk: &Chunk, answer: &D::Answer) {
        let destination = &self.shared.destination;
        let receipt = destination.receipt(answer);
        let n = chunk.events.len();
        metrics::counter!(m::CAPI_EVENTS, "outcome" => "sent", "reason" => "delivered").increment(n as u64);
        if receipt.counted.is_some_and(|c| c != n as u64) {
            tracing::warn!(destination = destination.name(), pixel_id = %self.key.pixel, sent = n, counted = ?receipt.counted, "the platform counted a different number of events than were sent");
        }
        let (at, answer) = (At::now(), Arc::new(receipt.fields));
        // The log keeps the last entries per pixel: only those are made.
        self.shared.deliveries.record(
            &self.key.pixel,
            (n.saturating_sub(PER_PIXEL)..n).map(|i| {
                let (event_name, event_id) = chunk.labels(i);
                Delivery {
                    event_name,
                    event_id,
                    at,
                    outcome: "sent",
                    reason: None,
                    answer: answer.clone(),
                    code: None,
                    message: None,
                    attempts: chunk.attempts,
                    test: self.key.test_event_code.is_some(),
                }
            }),
        );
    }

    /// Events not sent because the pixel has no usable credentials: counted only.
    pub(super) fn skipped(&self, n: usize, reason: &'static str) {
        metrics::counter!(m::CAPI_EVENTS, "outcome" => "skipped", "reason" => reason).increment(n as u64);
    }

    /// Gives events up: a delivery record each, counted, logged once, and listed in the
    /// pixel's deliveries.
    pub(super) fn failed(&self, given: Vec<Given<'_>>, reason: &'static str, detail: &str, code: Option<i64>) {
        if given.is_empty() {
            return;
        }
        let destination = &self.shared.destination;
        let n = given.len();
        metrics::counter!(m::CAPI_EVENTS, "outcome" => "failed", "reason" => reason).increment(n as u64);
        if reason.starts_with("rejected_") {
            tracing::debug!(destination = destination.name(), pixel_id = %self.key.pixel, events = n, reason, detail, "events the platform would reject were not sent");
        } else {
            tracing::warn!(destination = destination.name(), pixel_id = %self.key.pixel, events = n, reason, code = ?code, detail, "events given up; written as delivery records");
        }
        let mut records = self.shared.sink.records();
        let mut given_up = GivenUp { reason, detail: detail.to_owned(), code, attempts: 0 };
        let now = Timestamp::now();
        for event in &given {
            given_up.attempts = event.attempts;
            self.records.write_failed(event.record, destination.name(), &given_up, now, &mut records);
        }
        drop(records);
        let (at, answer, message) = (At::now(), Arc::default(), deliveries::message(detail));
        // The log keeps the last entries per pixel: only those are made.
        let log = given[n.saturating_sub(PER_PIXEL)..].iter().map(|event| {
            let (event_name, event_id) = event.labels(self.records);
            Delivery {
                event_name,
                event_id,
                at,
                outcome: "failed",
                reason: Some(reason),
                answer: Arc::clone(&answer),
                code,
                message: Some(message.clone()),
                attempts: event.attempts,
                test: self.key.test_event_code.is_some(),
            }
        });
        self.shared.deliveries.record(&self.key.pixel, log);
    }

    /// [`Outcomes::failed`] for chunks that were encoded (and perhaps sent).
    pub(super) fn failed_chunks(&self, chunks: impl IntoIterator<Item = Chunk>, reason: &'static str, detail: &str, code: Option<i64>) {
        let chunks: Vec<Chunk> = chunks.into_iter().collect();
        let given =
            chunks.iter().flat_map(|c| c.events.iter().enumerate().map(move |(i, e)| Given { record: e.record, attempts: c.attempts, labels: Labels::Encoded(c, i) })).collect();
        self.failed(given, reason, detail, code);
    }
}
