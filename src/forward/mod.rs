//! Forwarding: every hit of a pixel with credentials goes, off the answer path, to the pixel's
//! destination as a server event (`docs/forwarding.md`).
//!
//! Everything that is not particular to one platform is written here, once:
//!
//! * [`gate`] — the "no credentials" gate ([`Gate`]), the one place that decides which hits are
//!   worth forwarding, and [`Credentials`], where credentials come from.
//! * `consumer` — the hit outlet's queue consumer: batches per [`Key`] (pixel and test-events
//!   code) by count, bytes and age, a bounded number of deliveries in flight, the
//!   barrier/tick/shutdown protocol.
//! * `open` — a batch being written: each hit's event encoded into the request body as the hit
//!   arrives, the hit let go at once, its event id and account kept for a delivery record.
//! * `blocks` — the fixed-size blocks events are written into, reused from a pool,
//!   and the request [`Body`] made of them.
//! * `deliver` — one batch's way: credentials lookup, the retry/split loop driven by the
//!   destination's [`Verdict`]s.
//! * `outcomes` — sent, skipped, given up: metrics, the deliveries log, and a delivery
//!   record in the raw-record sink for every event given up.
//! * [`deliveries`] — the last deliveries per pixel, for the admin API.
//! * [`status`] — what forwarding goes through (shedding, the last failure), for `/readyz`.
//! * [`window`] — how many requests may be in flight: a congestion window that grows while the
//!   destination answers well and halves when it is overloaded.
//! * [`destination`] — the [`Destination`] trait: what a platform is (event mapping, one request,
//!   answer classification). [`meta`] is Meta's Conversions API.

mod blocks;
mod consumer;
mod deliver;
pub mod deliveries;
pub mod destination;
pub mod gate;
pub mod meta;
mod open;
mod outcomes;
mod priority;
pub mod status;
#[cfg(test)]
mod tests;
pub mod window;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use self::deliveries::{Deliveries, Delivery};
pub use self::destination::{Body, Destination, Events, Head, Labels, Receipt, Reject, Request, Verdict};
pub use self::gate::{Credentials, Gate};
pub use self::status::ForwardStatus;
use crate::notify::Notifier;
use crate::pipeline::{Budget, Dispatcher, HitJobs, Shed};
use crate::record::PixelId;
use crate::retry::RetryPolicy;

/// Most (approximate) bytes of hits in one batch. Platforms document event counts, not request
/// sizes; this keeps a request of 1,000 large hits within a few MiB.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Settings of forwarding, whatever the destination.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// Most events per request (clamped to the destination's limit).
    pub max_batch: usize,
    /// Longest time an event waits for its batch to fill.
    pub flush_interval: Duration,
    /// Most batches being delivered at once (their requests and retries), across all pixels: the
    /// ceiling of the congestion window.
    pub max_concurrent_requests: usize,
    /// Longest wait for the answer to a request of one event.
    pub timeout: Duration,
    /// How much longer the wait is for each further event of a request, so a healthy destination
    /// answering a full batch slowly is not timed out and sent it again.
    pub timeout_per_event: Duration,
    /// Wait before the first retry; it doubles with each further one (full jitter).
    pub backoff_initial: Duration,
    /// Longest wait between two attempts.
    pub backoff_max: Duration,
    /// How long a batch is retried, from its first attempt, before it is given up.
    pub retry_budget: Duration,
    /// How long shutdown lets deliveries run before it gives the rest up as `shutdown`.
    pub shutdown_timeout: Duration,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            max_batch: 1000,
            flush_interval: Duration::from_secs(1),
            max_concurrent_requests: 32,
            // Meta recommends a 1,500 ms client timeout.
            timeout: Duration::from_millis(1500),
            timeout_per_event: Duration::from_millis(1),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            retry_budget: Duration::from_secs(20),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

impl ForwardConfig {
    /// Clamps the settings to the destination's limit and to workable values.
    pub fn validate(mut self, max_events: usize) -> Self {
        self.max_batch = self.max_batch.clamp(1, max_events.max(1));
        self.max_concurrent_requests = self.max_concurrent_requests.max(1);
        self.flush_interval = self.flush_interval.max(Duration::from_millis(1));
        self.backoff_max = self.backoff_max.max(self.backoff_initial);
        self
    }

    /// The retry settings.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy { attempt_timeout: self.timeout, backoff_initial: self.backoff_initial, backoff_max: self.backoff_max, budget: self.retry_budget }
    }
}

/// What the events of one request share: the pixel, and the test-events code (a request-level
/// field on the platforms that have one).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The pixel.
    pub pixel: PixelId,
    /// The hit's test-events code.
    pub test_event_code: Option<String>,
}

/// What the consumer and every delivery task share.
struct Shared<D, S> {
    destination: D,
    gate: Arc<Gate<S>>,
    /// Holds only the raw-record outlets: where delivery records go.
    sink: Dispatcher,
    deliveries: Arc<Deliveries>,
    policy: RetryPolicy,
    /// The outlet's flag, raised when shutdown begins.
    closing: Arc<AtomicBool>,
    /// The hit outlets' byte budget: request bodies being built and sent count in it.
    budget: Arc<Budget>,
    /// Failures, for `/readyz`.
    status: Arc<ForwardStatus>,
    /// How many deliveries may be under way; told how each answer went.
    window: Arc<window::Window>,
    /// Extra wait per event of a request.
    timeout_per_event: Duration,
    /// The credentials version the platform last called invalid, per pixel: a batch whose
    /// lookup raced the store's update (or a cache elsewhere that has not caught up) must not
    /// use it again.
    invalid: Mutex<HashMap<PixelId, u64>>,
    /// Where a credentials-invalidated notice goes, if anywhere.
    notifier: Option<Notifier>,
}

/// The running forwarder of one destination: its consumer on a thread of its own, with a
/// single-threaded runtime and a lower scheduling priority, so that converting hits, encoding
/// batches, TLS and HTTP never run where they could delay a pixel answer, and on a saturated
/// CPU the answers come first (forwarding sheds, `docs/forwarding.md#under-load`).
pub struct Forwarder {
    thread: std::thread::JoinHandle<()>,
}

/// What a forwarder consumes and where its outcomes go.
pub struct Wiring<S> {
    /// The hit outlet's receiving half.
    pub jobs: HitJobs,
    /// The outlet's shutdown flag ([`crate::pipeline::HitOutlet::closing`]).
    pub closing: Arc<AtomicBool>,
    /// The gate the outlet was built with.
    pub gate: Arc<Gate<S>>,
    /// A dispatcher holding only the raw-record outlets, for delivery records.
    pub sink: Dispatcher,
    /// The deliveries log the admin API reads.
    pub deliveries: Arc<Deliveries>,
    /// The hit outlets' byte budget ([`crate::pipeline::Dispatcher::with_hit_budget`]).
    pub budget: Arc<Budget>,
    /// Shedding and failures, for `/readyz`.
    pub status: Arc<ForwardStatus>,
    /// Where a credentials-invalidated notice goes (`--notify-event-bus`), if anywhere.
    pub notifier: Option<Notifier>,
}

impl ForwardStatus {
    /// Counts what a hit outlet sheds ([`crate::pipeline::HitOutlet::with_shed`]).
    pub fn for_outlet(self: &Arc<Self>) -> Shed {
        let status = self.clone();
        Arc::new(move |reason, n| status.shed(reason, n))
    }
}

impl Forwarder {
    /// Starts forwarding to `destination` on a thread of its own.
    pub fn start<D: Destination, S: Credentials>(destination: D, config: ForwardConfig, wiring: Wiring<S>) -> std::io::Result<Forwarder> {
        crate::metrics::describe_capi();
        let config = config.validate(destination.max_events());
        let Wiring { jobs, closing, gate, sink, deliveries, budget, status, notifier } = wiring;
        let name = destination.name();
        let window = window::Window::new(config.max_concurrent_requests, name);
        let timeout_per_event = config.timeout_per_event;
        let shared = Arc::new(Shared {
            destination,
            gate,
            sink,
            deliveries,
            policy: config.retry_policy(),
            closing,
            budget,
            status,
            window,
            timeout_per_event,
            invalid: Mutex::new(HashMap::new()),
            notifier,
        });
        let consumer = consumer::Consumer::new(shared, config);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread = std::thread::Builder::new().name(format!("pixelgate-{name}")).spawn(move || {
            priority::forwarder_thread();
            runtime.block_on(consumer.run(jobs));
        })?;
        Ok(Forwarder { thread })
    }

    /// Waits for the forwarder to finish (after a [`crate::pipeline::Job::Shutdown`] or once
    /// every sender is gone).
    pub async fn join(self) {
        let thread = self.thread;
        if !matches!(tokio::task::spawn_blocking(move || thread.join()).await, Ok(Ok(()))) {
            tracing::error!("the forwarder thread failed");
        }
    }
}
