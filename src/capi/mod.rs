//! The Conversions API outlet: every hit of a pixel whose owner stored an access token is
//! forwarded to Meta as a server event, off the answer path, batched per pixel.
//!
//! Why it is shaped like this:
//!
//! * [`event`] — one pure function from the raw record to Meta's server event, so the mapping
//!   (names, times, `user_data`, `custom_data`) is unit-testable against hand-checked JSON, and
//!   events Meta would reject for the whole batch are caught before they poison one.
//! * [`client`] — the seam ([`client::SendEvents`]): exactly one `POST …/{pixel}/events`,
//!   answered in our own types, so the retry logic never sees reqwest and tests script Meta.
//!   The token travels in the JSON body, never in the URL.
//! * [`retry`] — the one place that reads an answer: done, retry with backoff, invalid token,
//!   split the batch (code 100 rejects the whole batch for one bad event), or give up.
//! * `forwarder` — the outlet's queue consumer on the main runtime: batches per
//!   (pixel, test code), bounded concurrency, and the [`crate::dispatch::Job`] protocol. What it
//!   gives up becomes a `capi_failed` record in the raw-record sink: never dropped silently.
//! * [`deliveries`] — the last deliveries per pixel, in memory, for the admin API.
//!
//! Token lookup is a trait ([`TokenSource`]) so the forwarder does not know which store (and
//! which cache) stands behind it.

pub mod client;
pub mod deliveries;
pub mod event;
mod forwarder;
pub mod retry;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use self::client::{GraphClient, SendEvents};
pub use self::deliveries::Deliveries;
use crate::dispatch::{Dispatcher, Job};

/// Where the forwarder gets a pixel's access token. The real implementation is a cache over the
/// token store (DynamoDB or the embedded store); it answers `None` while a pixel has no token or
/// its token is marked invalid.
pub trait TokenSource: Send + Sync + 'static {
    /// The token to use for `pixel_id`, if it has a usable one. `Err` when the store cannot be
    /// asked (the message is for logs and must not carry a token).
    fn usable(&self, pixel_id: &str) -> impl Future<Output = Result<Option<UsableToken>, String>> + Send;
    /// Meta answered "invalid token" (code 190 / 102) for this version of the pixel's token:
    /// stop handing it out until a new one is set.
    fn mark_invalid(&self, pixel_id: &str, version: u64) -> impl Future<Output = ()> + Send;
    /// What is already known about the pixel without asking the store: `Some(true)` a usable
    /// token, `Some(false)` none, `None` not known yet. The queue consumer asks this for every
    /// hit and never waits for the store; only lookups in tasks of their own do.
    fn known(&self, _pixel_id: &str) -> impl Future<Output = Option<bool>> + Send {
        std::future::ready(Some(true))
    }
}

pub use crate::tokens::UsableToken;

/// Settings of the Conversions API outlet.
#[derive(Debug, Clone)]
pub struct CapiConfig {
    /// Graph API base URL (`--graph-url`), without a trailing slash.
    pub graph_url: String,
    /// Graph API version (`--graph-version`), e.g. `v26.0`.
    pub graph_version: String,
    /// Most events per request (Meta: "up to 1,000 events in data").
    pub max_batch: usize,
    /// Longest time an event waits for its batch to fill.
    pub flush_interval: Duration,
    /// Batches being delivered at once (their requests and retries), across all pixels.
    pub max_concurrent_requests: usize,
    /// Longest wait for one answer (Meta recommends a 1,500 ms client timeout).
    pub timeout: Duration,
    /// Wait before the first retry; it doubles with each further one (full jitter).
    pub backoff_initial: Duration,
    /// Longest wait between two attempts.
    pub backoff_max: Duration,
    /// How long a batch is retried, from its first attempt, before it is given up.
    pub retry_budget: Duration,
    /// How long shutdown lets deliveries run before it gives the rest up as `shutdown`.
    pub shutdown_timeout: Duration,
}

/// Meta's cap on events per request.
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;

impl Default for CapiConfig {
    fn default() -> Self {
        CapiConfig {
            graph_url: "https://graph.facebook.com".into(),
            graph_version: "v26.0".into(),
            max_batch: MAX_EVENTS_PER_REQUEST,
            flush_interval: Duration::from_secs(1),
            max_concurrent_requests: 32,
            timeout: Duration::from_millis(1500),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            retry_budget: Duration::from_secs(20),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

impl CapiConfig {
    /// Clamps the settings to Meta's limits and to workable values.
    pub fn validate(mut self) -> Self {
        self.max_batch = self.max_batch.clamp(1, MAX_EVENTS_PER_REQUEST);
        self.max_concurrent_requests = self.max_concurrent_requests.max(1);
        self.flush_interval = self.flush_interval.max(Duration::from_millis(1));
        self.backoff_max = self.backoff_max.max(self.backoff_initial);
        while self.graph_url.ends_with('/') {
            self.graph_url.pop();
        }
        self
    }

    /// The retry settings.
    pub fn retry_policy(&self) -> retry::RetryPolicy {
        retry::RetryPolicy {
            attempt_timeout: self.timeout,
            backoff_initial: self.backoff_initial,
            backoff_max: self.backoff_max,
            budget: self.retry_budget,
        }
    }
}

/// The running forwarder: one task on the runtime that started it.
pub struct CapiForwarder {
    task: JoinHandle<()>,
}

impl CapiForwarder {
    /// Starts consuming `rx` with the real Graph API client. `sink` holds only the raw-record
    /// sink's outlet (for `capi_failed` records); `closing` is the outlet queue's
    /// [`crate::dispatch::OutletQueue::closing`] flag. Must be called within a tokio runtime.
    pub fn start<T: TokenSource>(
        config: CapiConfig,
        rx: mpsc::Receiver<Job>,
        tokens: Arc<T>,
        sink: Dispatcher,
        deliveries: Arc<Deliveries>,
        closing: Arc<AtomicBool>,
    ) -> CapiForwarder {
        let config = config.validate();
        let client = GraphClient::new(&config.graph_url, &config.graph_version, config.timeout);
        Self::start_with(client, config, rx, tokens, sink, deliveries, closing)
    }

    /// Starts consuming `rx` over any [`SendEvents`] (a scripted Meta, in tests).
    pub fn start_with<C: SendEvents, T: TokenSource>(
        client: C,
        config: CapiConfig,
        rx: mpsc::Receiver<Job>,
        tokens: Arc<T>,
        sink: Dispatcher,
        deliveries: Arc<Deliveries>,
        closing: Arc<AtomicBool>,
    ) -> CapiForwarder {
        let forwarder = forwarder::Forwarder::new(client, config.validate(), tokens, sink, deliveries, closing);
        CapiForwarder { task: tokio::spawn(forwarder.run(rx)) }
    }

    /// Waits for the forwarder to finish (after a [`Job::Shutdown`] or once every sender is gone).
    pub async fn join(self) {
        if let Err(err) = self.task.await {
            tracing::error!(error = %err, "the Conversions API forwarder task failed");
        }
    }
}
