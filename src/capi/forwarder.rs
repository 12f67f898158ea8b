//! The Conversions API outlet's consumer: drains the outlet queue into batches per
//! (pixel, test-events code), delivers each batch in a task of its own, and accounts for every
//! event: sent, skipped (no usable token: counted only), or given up (a `capi_failed` record in
//! the raw-record sink, counted, and shown in the pixel's deliveries).
//!
//! It runs on the main runtime: a batch's work is one JSON serialisation and one HTTP request,
//! all of it async, so it cannot hold up a pixel answer for long. Concurrency is bounded by a
//! semaphore whose permit a delivery holds from its token lookup to its last retry; when every
//! permit is taken the consumer stops reading its queue, the queue fills and the dispatcher
//! counts the drops: memory stays bounded whatever Meta does.
//!
//! The [`Job`] protocol: `Barrier` sends every open batch and waits for every delivery under
//! way, retries included (the Lambda drain relies on this per invocation); `Tick` sends batches
//! that are old enough; `Shutdown` sends everything, lets deliveries run for
//! `shutdown_timeout`, then gives the rest up as `shutdown`. Deliveries watch the outlet's
//! `closing` flag: once shutdown begins, a failed attempt is given up instead of retried.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::client::{EventsRequest, Received, SendError, SendEvents};
use super::deliveries::{Deliveries, Delivery};
use super::event::{self, Reject, ServerEvent};
use super::retry::{RetryAction, RetryPolicy, classify, request_label};
use super::{CapiConfig, TokenSource, UsableToken};
use crate::batch::{BatchLimits, Batcher};
use crate::dispatch::{Dispatcher, Job, QueuedHit};
use crate::hit::CapiFailure;
use crate::metrics as m;

/// Events of one request share a pixel and a test-events code (a top-level request field).
type Key = (String, Option<String>);

/// Most (approximate) bytes of hits in one batch. Meta documents no request size limit
/// (capi.md §3, UNVERIFIED); this keeps a request of 1,000 large hits within a few MiB.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Longest wait for the token store; beyond it the lookup counts as failed and is retried.
const TOKEN_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a failing token store is retried before the batch is given up.
const TOKEN_RETRY_BUDGET: Duration = Duration::from_secs(5);

/// How often a delivery waiting out a backoff looks at the `closing` flag (an atomic, so it
/// cannot be awaited).
const CLOSING_POLL: Duration = Duration::from_millis(50);

/// Most requests one batch may take to isolate invalid events by splitting; beyond it the rest
/// is given up as `invalid_parameter` (one bad event in 1,000 takes about 21).
const MAX_SPLIT_REQUESTS: u32 = 64;

/// A hit waiting in a batch: its event, or why Meta would reject it. Rejections are only given
/// up (with a record) once the pixel turns out to have a token; otherwise they are skipped.
struct Pending {
    hit: Arc<QueuedHit>,
    event: Result<ServerEvent, Reject>,
}

/// An event being delivered.
struct Ready {
    hit: Arc<QueuedHit>,
    event: ServerEvent,
    /// Requests that carried it so far.
    attempts: u32,
}

/// What every delivery task shares.
/// Most token lookups running ahead of batches at once.
const AHEAD_LOOKUPS: usize = 8;

struct Shared<C, T> {
    client: C,
    tokens: Arc<T>,
    /// Holds only the raw-record sink's outlet: where `capi_failed` records go.
    sink: Dispatcher,
    deliveries: Arc<Deliveries>,
    policy: RetryPolicy,
    closing: Arc<AtomicBool>,
    /// The token version Meta last called invalid, per pixel: a batch whose lookup raced the
    /// store's update (or a cache elsewhere that has not caught up) must not use it again.
    invalid: Mutex<HashMap<String, u64>>,
}

/// The consumer task's state.
pub(super) struct Forwarder<C, T> {
    shared: Arc<Shared<C, T>>,
    config: CapiConfig,
    /// Open batches; a key is removed when its batch leaves, so idle pixels cost nothing.
    batches: HashMap<Key, Batcher<Pending>>,
    /// No later than the earliest deadline of the open batches (may be earlier: then the timer
    /// fires, finds nothing due and recomputes).
    next_deadline: Option<Instant>,
    permits: Arc<Semaphore>,
    in_flight: JoinSet<()>,
    /// The hits of each delivery task, so that a task that dies is still accounted for.
    in_flight_hits: HashMap<tokio::task::Id, Vec<Arc<QueuedHit>>>,
    /// Turned true at the shutdown timeout: deliveries give up what they hold at once.
    stop: Arc<watch::Sender<bool>>,
    shutdown_timer: Option<JoinHandle<()>>,
    /// `pixelgate_capi_events_total{outcome="skipped",reason="no_token"}`, resolved once: it
    /// counts every hit of a pixel without a token.
    skipped_no_token: metrics::Counter,
    /// Token lookups started ahead of a batch for pixels the cache does not know yet.
    lookups: Arc<Semaphore>,
}

impl<C: SendEvents, T: TokenSource> Forwarder<C, T> {
    pub(super) fn new(client: C, config: CapiConfig, tokens: Arc<T>, sink: Dispatcher, deliveries: Arc<Deliveries>, closing: Arc<AtomicBool>) -> Self {
        m::describe_capi();
        Forwarder {
            skipped_no_token: metrics::counter!(m::CAPI_EVENTS, "outcome" => "skipped", "reason" => "no_token"),
            lookups: Arc::new(Semaphore::new(AHEAD_LOOKUPS)),
            shared: Arc::new(Shared { client, tokens, sink, deliveries, policy: config.retry_policy(), closing, invalid: Mutex::new(HashMap::new()) }),
            permits: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            config,
            batches: HashMap::new(),
            next_deadline: None,
            in_flight: JoinSet::new(),
            in_flight_hits: HashMap::new(),
            stop: Arc::new(watch::channel(false).0),
            shutdown_timer: None,
        }
    }

    /// Serves the queue until a [`Job::Shutdown`] (or every sender is gone), then sends what is
    /// open, waits for deliveries within the shutdown timeout, gives up the rest, and answers.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut shutdown_acks = Vec::new();
        loop {
            tokio::select! {
                job = rx.recv() => match job {
                    None => break,
                    Some(Job::Hit(hit)) => self.accept(hit).await,
                    Some(Job::Records(records)) => {
                        // Not sent to a hit outlet's queue; counted if it ever were.
                        tracing::error!(records = records.count(), "record lines reached the Conversions API queue; dropped");
                        metrics::counter!(m::RECORDS_DROPPED, "outlet" => "capi", "reason" => "not_a_hit").increment(records.count() as u64);
                    }
                    Some(Job::Tick) => {
                        self.send_due(Instant::now()).await;
                        metrics::gauge!(m::QUEUE_DEPTH, "outlet" => "capi").set(rx.len() as f64);
                    }
                    Some(Job::Barrier(ack)) => {
                        self.send_all().await;
                        self.wait_in_flight().await;
                        let _ = ack.send(());
                    }
                    Some(Job::Shutdown(ack)) => {
                        // Jobs already queued behind it are still served: the loop ends once the
                        // closed queue is empty.
                        rx.close();
                        self.shared.closing.store(true, Ordering::Relaxed);
                        self.arm_shutdown_timer();
                        shutdown_acks.push(ack);
                    }
                },
                _ = sleep_until(self.next_deadline) => self.send_due(Instant::now()).await,
                Some(done) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => self.reaped(done),
            }
        }
        self.shut_down().await;
        for ack in shutdown_acks {
            let _ = ack.send(());
        }
    }

    /// Puts a hit in its pixel's batch, sending the batch if that fills it.
    async fn accept(&mut self, hit: Arc<QueuedHit>) {
        let pixel_id = match event::pixel_id(hit.pixel_id.as_deref()) {
            Ok(id) => id.to_owned(),
            Err(reject) => {
                // No pixel, no token, no Meta destination: the raw record (flagged
                // missing_pixel_id / bad_pixel_id) is all there is to say.
                metrics::counter!(m::CAPI_EVENTS, "outcome" => "skipped", "reason" => reject.reason).increment(1);
                return;
            }
        };
        // Most pixels never get a token: once the cache knows that, their hits are dropped here
        // from memory before any conversion or batching. This never waits for the store (a slow
        // store or random pixel ids must not stall the queue): the first hits of a pixel the
        // cache does not know yet are batched, and a lookup starts in a task of its own (a few
        // at a time) so the answer is cached within milliseconds, not when the batch leaves.
        match self.shared.tokens.known(&pixel_id).await {
            Some(false) => {
                self.skipped_no_token.increment(1);
                return;
            }
            Some(true) => {}
            None => {
                if let Ok(permit) = self.lookups.clone().try_acquire_owned() {
                    let (tokens, pixel) = (self.shared.tokens.clone(), pixel_id.clone());
                    tokio::spawn(async move {
                        let _ = tokens.usable(&pixel).await;
                        drop(permit);
                    });
                }
            }
        }
        let event = event::to_server_event(&hit, SystemTime::now()).map(|converted| {
            for key in converted.dropped {
                metrics::counter!(m::CAPI_CUSTOM_DATA_DROPPED, "key" => key).increment(1);
            }
            converted.event
        });
        let key = (pixel_id, hit.test_event_code.clone());
        let size = hit.bytes();
        let limits = BatchLimits { max_items: self.config.max_batch, max_bytes: MAX_BATCH_BYTES, max_age: self.config.flush_interval };
        let batcher = self.batches.entry(key.clone()).or_insert_with(|| Batcher::new(limits));
        let full = batcher.push(Pending { hit, event }, size);
        if let Some(deadline) = batcher.deadline() {
            self.next_deadline = Some(self.next_deadline.map_or(deadline, |d| d.min(deadline)));
        }
        if batcher.is_empty() {
            self.batches.remove(&key);
        }
        if let Some(batch) = full {
            self.send(key, batch.items).await;
        }
    }

    /// Sends the batches due by `now` (or within an eighth of the interval of it, so that many
    /// pixels with staggered deadlines wake the consumer a few times per interval, not once
    /// per pixel).
    async fn send_due(&mut self, now: Instant) {
        let horizon = now + self.config.flush_interval / 8;
        let due: Vec<Key> = self.batches.iter().filter(|(_, b)| b.deadline().is_some_and(|d| d <= horizon)).map(|(k, _)| k.clone()).collect();
        for key in due {
            if let Some(batch) = self.batches.remove(&key).and_then(|mut b| b.take()) {
                self.send(key, batch.items).await;
            }
        }
        self.next_deadline = self.batches.values().filter_map(Batcher::deadline).min();
    }

    /// Sends every open batch.
    async fn send_all(&mut self) {
        let keys: Vec<Key> = self.batches.keys().cloned().collect();
        for key in keys {
            if let Some(batch) = self.batches.remove(&key).and_then(|mut b| b.take()) {
                self.send(key, batch.items).await;
            }
        }
        self.next_deadline = None;
    }

    /// Starts a delivery for `items` once a permit is free (reaping finished deliveries meanwhile).
    async fn send(&mut self, key: Key, items: Vec<Pending>) {
        let permit: Option<OwnedSemaphorePermit> = loop {
            tokio::select! {
                permit = self.permits.clone().acquire_owned() => break permit.ok(),
                Some(done) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => self.reaped(done),
            }
        };
        let hits = items.iter().map(|p| p.hit.clone()).collect();
        let (shared, stop) = (self.shared.clone(), self.stop.subscribe());
        let task = self.in_flight.spawn(async move {
            let _permit = permit;
            deliver(&shared, key, items, stop).await;
        });
        self.in_flight_hits.insert(task.id(), hits);
    }

    /// Accounts for a finished delivery; a task that died leaves its events given up as `internal`.
    fn reaped(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        match done {
            Ok((id, ())) => {
                self.in_flight_hits.remove(&id);
            }
            Err(err) => {
                let hits = self.in_flight_hits.remove(&err.id()).unwrap_or_default();
                tracing::error!(events = hits.len(), error = %err, "a Conversions API delivery task failed; its events are given up");
                metrics::counter!(m::CAPI_EVENTS, "outcome" => "failed", "reason" => "internal").increment(hits.len() as u64);
                for hit in hits {
                    let failure = CapiFailure { reason: "internal", detail: format!("the delivery task failed: {err}"), code: None, attempts: 0 };
                    self.shared.sink.submit_hit(hit.capi_failed(failure));
                }
            }
        }
    }

    async fn wait_in_flight(&mut self) {
        while let Some(done) = self.in_flight.join_next_with_id().await {
            self.reaped(done);
        }
    }

    /// From the moment shutdown is asked for, deliveries get `shutdown_timeout`; then they give
    /// up what they hold.
    fn arm_shutdown_timer(&mut self) {
        if self.shutdown_timer.is_some() {
            return;
        }
        let (stop, timeout) = (self.stop.clone(), self.config.shutdown_timeout);
        self.shutdown_timer = Some(tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            tracing::warn!(?timeout, "Conversions API deliveries still under way at the shutdown timeout; giving up the rest");
            stop.send_replace(true);
        }));
    }

    async fn shut_down(&mut self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.arm_shutdown_timer();
        self.send_all().await;
        self.wait_in_flight().await;
        if let Some(timer) = self.shutdown_timer.take() {
            timer.abort();
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// How a backoff wait ended.
enum Woke {
    /// The wait is over: try again.
    Slept,
    /// Shutdown began: give up instead of retrying.
    Closing,
    /// The shutdown timeout passed: give up everything held.
    Stopped,
}

async fn backoff_sleep(wait: Duration, closing: &AtomicBool, stop: &mut watch::Receiver<bool>) -> Woke {
    let until = Instant::now() + wait;
    loop {
        if *stop.borrow() {
            return Woke::Stopped;
        }
        if closing.load(Ordering::Relaxed) {
            return Woke::Closing;
        }
        let now = Instant::now();
        if now >= until {
            return Woke::Slept;
        }
        tokio::select! {
            _ = tokio::time::sleep((until - now).min(CLOSING_POLL)) => {}
            _ = stop.wait_for(|stopped| *stopped) => return Woke::Stopped,
        }
    }
}

/// What the token lookup found.
enum Lookup {
    Token(UsableToken),
    /// No usable token: the events are skipped, for this reason.
    Skip(&'static str),
    /// The store could not be asked within its retry budget.
    Failed(String),
    Stopped,
}

/// Where one delivery's outcomes go.
struct Outcomes<'a, C, T> {
    shared: &'a Shared<C, T>,
    pixel_id: &'a str,
    test: bool,
}

impl<C, T> Outcomes<'_, C, T> {
    fn sent(&self, chunk: &[Ready], received: &Received) {
        metrics::counter!(m::CAPI_EVENTS, "outcome" => "sent", "reason" => "delivered").increment(chunk.len() as u64);
        if received.events_received.is_some_and(|n| n != chunk.len() as u64) {
            tracing::warn!(pixel_id = self.pixel_id, sent = chunk.len(), events_received = ?received.events_received, "Meta counted a different number of events than were sent");
        }
        let at = Delivery::now();
        self.shared.deliveries.record(
            self.pixel_id,
            chunk.iter().map(|r| Delivery {
                event_name: r.event.event_name.clone(),
                event_id: r.event.event_id.clone(),
                at: at.clone(),
                outcome: "sent",
                reason: None,
                events_received: received.events_received,
                fbtrace_id: received.fbtrace_id.clone(),
                code: None,
                message: None,
                attempts: r.attempts,
                test: self.test,
            }),
        );
    }

    fn skipped(&self, n: usize, reason: &'static str) {
        metrics::counter!(m::CAPI_EVENTS, "outcome" => "skipped", "reason" => reason).increment(n as u64);
    }

    /// Gives `hits` (with the requests that carried each) up: a `capi_failed` record each, counted,
    /// logged once, and listed in the pixel's deliveries.
    fn failed(&self, hits: Vec<(Arc<QueuedHit>, u32)>, reason: &'static str, detail: &str, code: Option<i64>) {
        if hits.is_empty() {
            return;
        }
        metrics::counter!(m::CAPI_EVENTS, "outcome" => "failed", "reason" => reason).increment(hits.len() as u64);
        if reason.starts_with("rejected_") {
            tracing::debug!(pixel_id = self.pixel_id, events = hits.len(), reason, detail, "events Meta would reject were not sent");
        } else {
            tracing::warn!(pixel_id = self.pixel_id, events = hits.len(), reason, code = ?code, detail, "Conversions API events given up; written as capi_failed records");
        }
        let at = Delivery::now();
        let mut log = Vec::with_capacity(hits.len());
        for (hit, attempts) in hits {
            log.push(Delivery {
                event_name: event::meta_event_name(hit.event.as_deref().unwrap_or_default()).to_owned(),
                event_id: hit.event_id.clone(),
                at: at.clone(),
                outcome: "failed",
                reason: Some(reason),
                events_received: None,
                fbtrace_id: None,
                code,
                message: Some(detail.to_owned()),
                attempts,
                test: self.test,
            });
            self.shared.sink.submit_hit(hit.capi_failed(CapiFailure { reason, detail: detail.to_owned(), code, attempts }));
        }
        self.shared.deliveries.record(self.pixel_id, log);
    }

    fn failed_ready(&self, chunks: impl IntoIterator<Item = Vec<Ready>>, reason: &'static str, detail: &str, code: Option<i64>) {
        let hits = chunks.into_iter().flatten().map(|r| (r.hit, r.attempts)).collect();
        self.failed(hits, reason, detail, code);
    }
}

/// Delivers one batch: looks the token up, gives up what Meta would reject, sends the rest,
/// retrying, splitting and giving up as [`classify`] says.
async fn deliver<C: SendEvents, T: TokenSource>(shared: &Shared<C, T>, (pixel_id, test_code): Key, items: Vec<Pending>, mut stop: watch::Receiver<bool>) {
    let out = Outcomes { shared, pixel_id: &pixel_id, test: test_code.is_some() };
    let started = Instant::now();
    let token = match lookup(shared, &pixel_id, &mut stop).await {
        Lookup::Token(token) => token,
        Lookup::Skip(reason) => return out.skipped(items.len(), reason),
        Lookup::Failed(detail) => {
            let hits = items.into_iter().map(|p| (p.hit, 0)).collect();
            return out.failed(hits, "token_store_unavailable", &detail, None);
        }
        Lookup::Stopped => return out.failed(items.into_iter().map(|p| (p.hit, 0)).collect(), "shutdown", "shut down before the token lookup finished", None),
    };

    let mut ready = Vec::with_capacity(items.len());
    for Pending { hit, event } in items {
        match event {
            Ok(event) => ready.push(Ready { hit, event, attempts: 0 }),
            Err(reject) => out.failed(vec![(hit, 0)], reject.reason, &reject.detail, None),
        }
    }
    // Chunks still to send, the next one last; whether Meta's event-index hint may be used on it.
    let mut work: Vec<(Vec<Ready>, bool)> = vec![(ready, true)];
    let policy = shared.policy;
    let (mut retry, mut split_requests) = (0u32, 0u32);
    while let Some((mut chunk, trust_hint)) = work.pop() {
        if chunk.is_empty() {
            continue;
        }
        loop {
            for r in &mut chunk {
                r.attempts += 1;
            }
            let result = {
                let events: Vec<&ServerEvent> = chunk.iter().map(|r| &r.event).collect();
                let request = EventsRequest { pixel_id: &pixel_id, token: &token.token, test_event_code: test_code.as_deref(), events: &events };
                let sent_at = Instant::now();
                let result = tokio::select! {
                    r = tokio::time::timeout(policy.attempt_timeout, shared.client.send(&request)) => Some(r.unwrap_or(Err(SendError::Timeout(policy.attempt_timeout)))),
                    _ = stop.wait_for(|stopped| *stopped) => None,
                };
                if let Some(result) = &result {
                    metrics::histogram!(m::CAPI_BATCH_EVENTS).record(events.len() as f64);
                    metrics::histogram!(m::CAPI_REQUEST_SECONDS).record(sent_at.elapsed().as_secs_f64());
                    metrics::counter!(m::CAPI_REQUESTS, "result" => request_label(result.as_ref())).increment(1);
                }
                result
            };
            let Some(result) = result else {
                let rest = std::iter::once(chunk).chain(work.into_iter().map(|(c, _)| c));
                return out.failed_ready(rest, "shutdown", "shut down while a request was under way", None);
            };
            let (detail, code) = match &result {
                Ok(_) => (String::new(), None),
                Err(err) => (err.to_string(), err.code()),
            };
            match classify(result.as_ref()) {
                RetryAction::Done => {
                    out.sent(&chunk, &result.unwrap_or_default());
                    break;
                }
                RetryAction::Retry => {
                    let wait = policy.backoff(retry);
                    retry += 1;
                    if shared.closing.load(Ordering::Relaxed) {
                        out.failed_ready([chunk], "shutdown", &detail, code);
                        break;
                    }
                    if started.elapsed() + wait > policy.budget {
                        out.failed_ready([chunk], "retries_exhausted", &detail, code);
                        break;
                    }
                    tracing::debug!(pixel_id = pixel_id.as_str(), events = chunk.len(), retry, ?wait, %detail, "retrying a Conversions API request");
                    match backoff_sleep(wait, &shared.closing, &mut stop).await {
                        Woke::Slept => continue,
                        Woke::Closing => {
                            out.failed_ready([chunk], "shutdown", &detail, code);
                            break;
                        }
                        Woke::Stopped => {
                            let rest = std::iter::once(chunk).chain(work.into_iter().map(|(c, _)| c));
                            return out.failed_ready(rest, "shutdown", &detail, code);
                        }
                    }
                }
                RetryAction::InvalidToken => {
                    mark_invalid(shared, &pixel_id, token.version).await;
                    let rest = std::iter::once(chunk).chain(work.into_iter().map(|(c, _)| c));
                    return out.failed_ready(rest, "invalid_token", &detail, code);
                }
                RetryAction::Split { hint } => {
                    split_requests += 1;
                    if chunk.len() == 1 {
                        out.failed_ready([chunk], "invalid_parameter", &detail, code);
                        break;
                    }
                    if split_requests >= MAX_SPLIT_REQUESTS {
                        let rest = std::iter::once(chunk).chain(work.into_iter().map(|(c, _)| c));
                        let detail = format!("{detail} (gave up isolating the invalid events after {split_requests} requests)");
                        return out.failed_ready(rest, "invalid_parameter", &detail, code);
                    }
                    match hint.filter(|&i| trust_hint && i < chunk.len()) {
                        // Meta named the event: send it alone first (which confirms it), then the rest.
                        Some(i) => {
                            let suspect = chunk.remove(i);
                            work.push((chunk, false));
                            work.push((vec![suspect], false));
                        }
                        None => {
                            let second = chunk.split_off(chunk.len() / 2);
                            work.push((second, false));
                            work.push((chunk, false));
                        }
                    }
                    break;
                }
                RetryAction::GiveUp { reason } => {
                    out.failed_ready([chunk], reason, &detail, code);
                    break;
                }
            }
        }
    }
}

/// The pixel's usable token, retrying a failing store briefly.
async fn lookup<C, T: TokenSource>(shared: &Shared<C, T>, pixel_id: &str, stop: &mut watch::Receiver<bool>) -> Lookup {
    let started = Instant::now();
    let mut retry = 0;
    loop {
        let answer = tokio::select! {
            r = tokio::time::timeout(TOKEN_LOOKUP_TIMEOUT, shared.tokens.usable(pixel_id)) => r,
            _ = stop.wait_for(|stopped| *stopped) => return Lookup::Stopped,
        };
        let err = match answer {
            Ok(Ok(Some(token))) => {
                let mut invalid = shared.invalid.lock().unwrap_or_else(|e| e.into_inner());
                return match invalid.get(pixel_id) {
                    // Equality, not order: a store's versions need not grow.
                    Some(&bad) if bad == token.version => Lookup::Skip("invalid_token"),
                    Some(_) => {
                        invalid.remove(pixel_id);
                        Lookup::Token(token)
                    }
                    None => Lookup::Token(token),
                };
            }
            Ok(Ok(None)) => return Lookup::Skip("no_token"),
            Ok(Err(err)) => format!("the token store failed: {err}"),
            Err(_) => format!("the token store did not answer within {TOKEN_LOOKUP_TIMEOUT:?}"),
        };
        let wait = shared.policy.backoff(retry);
        retry += 1;
        if started.elapsed() + wait > TOKEN_RETRY_BUDGET.min(shared.policy.budget) {
            return Lookup::Failed(err);
        }
        tracing::debug!(pixel_id, retry, error = %err, "retrying the token lookup");
        match backoff_sleep(wait, &shared.closing, stop).await {
            Woke::Slept => {}
            Woke::Closing => return Lookup::Failed(err),
            Woke::Stopped => return Lookup::Stopped,
        }
    }
}

/// Meta called this version of the pixel's token invalid: remember it here, tell the store, count
/// and log it (never the token).
async fn mark_invalid<C, T: TokenSource>(shared: &Shared<C, T>, pixel_id: &str, version: u64) {
    let first = {
        let mut invalid = shared.invalid.lock().unwrap_or_else(|e| e.into_inner());
        let known = invalid.get(pixel_id) == Some(&version);
        if !known {
            invalid.insert(pixel_id.to_owned(), version);
        }
        !known
    };
    if first {
        metrics::counter!(m::CAPI_TOKENS_INVALIDATED).increment(1);
        tracing::warn!(pixel_id, version, "Meta says the pixel's access token is invalid or expired; forwarding for it stops until a new token is set");
    }
    shared.tokens.mark_invalid(pixel_id, version).await;
}
