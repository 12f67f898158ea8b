//! [`Destination`]: what is particular to one platform (an ad platform's server-side events
//! API) — how a hit becomes its event, how one request is sent, what an answer means. The rest
//! of forwarding (queue, batching per key, concurrency, retries and splits, what is given up, the
//! deliveries log, the credentials gate) is written once, in [`crate::forward`], for every
//! destination. A new destination is a folder beside `meta/` that implements this trait.

use std::future::Future;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

pub use super::blocks::{Body, BodyStream};
use crate::record::{DraftHit, PixelId};
use crate::secret::Secret;

/// One platform's events API.
pub trait Destination: Send + Sync + 'static {
    /// The platform's answer to a request it took.
    type Answer: Send + 'static;
    /// Why a request got no success answer. Its text is for logs and the deliveries log and
    /// never carries a credential.
    type Error: std::fmt::Display + Send + 'static;

    /// The platform's name in logs and records (`meta`).
    fn name(&self) -> &'static str;

    /// Most events one request may carry (the forwarder's `--…-batch-events` is clamped to it).
    fn max_events(&self) -> usize;

    /// Whether the platform would take `hit` as of `now`, or why not: asked when the hit is
    /// batched, since a platform may reject a whole request for one bad event.
    fn check(&self, hit: &DraftHit, now: SystemTime) -> Result<(), Reject>;

    /// Appends `hit`'s event, as of `now`, to `out` (empty): one JSON value of the request's
    /// list, and says where in `out` its name and id are (the deliveries log shows them). Only for a hit
    /// that passed [`Destination::check`]; runs on the forwarder's thread, when the hit is
    /// batched, so that the hit can be let go at once.
    fn encode(&self, hit: &DraftHit, now: SystemTime, out: &mut Vec<u8>) -> Labels;

    /// The name the hit's event goes under, for an event not encoded (one the platform would
    /// reject).
    fn event_name<'h>(&self, hit: &'h DraftHit) -> &'h str;

    /// Writes what a request's body has before its events (by default `[`: the body is the list
    /// of events). The same for every request: events are written after it as their hits
    /// arrive, before the credentials are looked up. The forwarder sends this, the blocks its
    /// events were written into and [`Destination::body_end`] one after another, so the body is
    /// sent (and resent) without being joined or copied.
    fn body_start(&self, out: &mut Vec<u8>) {
        out.push(b'[');
    }

    /// Writes what a request's body has after its events (by default `]`).
    fn body_end(&self, head: &Head<'_>, out: &mut Vec<u8>) {
        let _ = head;
        out.push(b']');
    }

    /// Sends one request: exactly one call, no retries (the forwarder decides those, from
    /// [`Destination::classify`]).
    fn send(&self, request: Request<'_>) -> impl Future<Output = Result<Self::Answer, Self::Error>> + Send;

    /// The error of a request that had no answer within `after` (the forwarder times requests).
    fn timed_out(&self, after: Duration) -> Self::Error;

    /// What one attempt's result means for the events it carried.
    fn classify(&self, result: Result<&Self::Answer, &Self::Error>) -> Verdict;

    /// A label from a closed set for the requests metric (`ok`, `timeout`, `rate_limited`, …).
    fn request_label(&self, result: Result<&Self::Answer, &Self::Error>) -> &'static str;

    /// The platform's error code in a failure, if it gave one.
    fn error_code(&self, error: &Self::Error) -> Option<i64>;

    /// What the deliveries log shows of a success, per event of the request.
    fn receipt(&self, answer: &Self::Answer) -> Receipt;
}

/// Where an encoded event's name and id are in the buffer it was written to: each a JSON string,
/// quotes included, as `start..end` byte positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Labels {
    /// The event's name.
    pub name: (usize, usize),
    /// The event's id (the platform's deduplication key).
    pub id: (usize, usize),
}

/// Who a request is for: one pixel, its credentials, one test-events code.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// The pixel the events are for.
    pub pixel: &'a PixelId,
    /// The pixel's credentials for the platform.
    pub credentials: &'a Secret,
    /// Routes the events to the platform's test view ("Test events").
    pub test_event_code: Option<&'a str>,
}

/// One request: events of one pixel that share a test-events code.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Who it is for.
    pub head: Head<'a>,
    /// At most [`Destination::max_events`] events, as [`Destination::encode`] wrote them.
    pub events: Events<'a>,
}

/// Encoded events, in the request body around them.
#[derive(Debug, Clone, Copy)]
pub struct Events<'a> {
    /// How many.
    pub count: usize,
    /// The whole body: [`Destination::body_start`], the events (each one JSON value, separated by
    /// commas), [`Destination::body_end`], in pieces. Cloning it shares them.
    pub body: &'a Body,
}

/// What to do after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The platform took the events.
    Done,
    /// A failure that may pass (5xx, timeout, connection, throttling): send the same request
    /// again after a backoff, within the retry budget.
    Retry,
    /// The credentials are expired or invalid: mark them invalid, give the events up.
    InvalidCredentials,
    /// At least one event is invalid and the platform rejected them all: split the request to
    /// isolate it (a lone event is given up). `hint` is the position the platform named, if any.
    Split {
        /// Position in the request of the event the platform named.
        hint: Option<usize>,
    },
    /// The platform will not take this request as it is, and retrying will not change that.
    GiveUp {
        /// A closed label for metrics and the delivery record.
        reason: &'static str,
    },
}

/// Why an event is not sent: the platform would reject it (and perhaps its whole request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// A closed label (metrics, a delivery record's `reason`), `rejected_…`.
    pub reason: &'static str,
    /// For a person.
    pub detail: String,
}

impl Reject {
    /// A rejection with its closed `reason` and a `detail` for a person.
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Reject { reason, detail: detail.into() }
    }
}

/// What the deliveries log shows of a successful request (Meta: `events_received`,
/// `fbtrace_id`), and how many events the platform says it took, when it says.
#[derive(Debug, Clone, Default)]
pub struct Receipt {
    /// Events the platform counted; a mismatch with what was sent is logged.
    pub counted: Option<u64>,
    /// The platform's own fields, shown as they are (no personal data, no credentials).
    pub fields: Map<String, Value>,
}
