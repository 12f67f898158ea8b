//! One batch's delivery, for any destination: look the pixel's credentials up, give up what the
//! platform would reject, send the rest, and act on each answer as the destination classifies
//! it: done, retry after a backoff within the budget, credentials invalid, split the request to
//! isolate a bad event, or give up. Every event ends accounted for ([`super::outcomes`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use super::blocks::{BLOCK_BYTES, Blocks, Body};
use super::destination::{Destination, Events, Head, Request, Verdict};
use super::gate::Credentials;
use super::open::{Event, Open, Records};
use super::outcomes::{Given, Outcomes};
use super::window::Signal;
use super::{Key, Shared};
use crate::metrics as m;
use crate::notify::Invalidated;
use crate::pipeline::{Budget, Share};
use crate::record::{PixelId, Timestamp};
use crate::tokens::UsableToken;

/// Longest wait for the credentials store; beyond it the lookup counts as failed and is retried.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a failing credentials store is retried before the batch is given up.
const LOOKUP_RETRY_BUDGET: Duration = Duration::from_secs(5);

/// How often a delivery waiting out a backoff looks at the `closing` flag (an atomic, so it
/// cannot be awaited).
const CLOSING_POLL: Duration = Duration::from_millis(50);

/// Most requests one batch may take to isolate invalid events by splitting; beyond it the rest
/// is given up as `invalid_parameter` (one bad event in 1,000 takes about 21).
const MAX_SPLIT_REQUESTS: u32 = 64;

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

/// What the credentials lookup found.
enum Lookup {
    Found(UsableToken),
    /// No usable credentials: the events are skipped, for this reason.
    Skip(&'static str),
    /// The store could not be asked within its retry budget.
    Failed(String),
    Stopped,
}

/// Events on their way in one request: the request's body with their JSON, and where each one
/// is and what else it has ([`Event`]).
pub(super) struct Chunk {
    /// The request body; shared (not copied) by every attempt. An event's block is its piece.
    body: Body,
    /// The events, in the body's order.
    pub(super) events: Vec<Event>,
    /// Requests that carried these events so far.
    pub(super) attempts: u32,
    /// The body's bytes, counted in the hit outlets' budget while the chunk lives.
    _bytes: Share,
}

/// A batch's events before their request's body is finished: the credentials that end it are
/// looked up when the batch is sent.
pub(super) struct Unsent {
    /// The events, in blocks.
    body: Blocks,
    events: Vec<Event>,
    /// The blocks' bytes and the events', counted in the hit outlets' budget.
    bytes: Share,
}

impl Unsent {
    /// The request: the body started and finished for `head` around the blocks.
    fn seal<D: Destination>(self, destination: &D, head: &Head<'_>) -> Chunk {
        let Unsent { body, mut events, mut bytes } = self;
        let (mut start, mut end) = (Vec::new(), Vec::new());
        destination.body_start(&mut start);
        destination.body_end(head, &mut end);
        bytes.add(start.capacity() + end.capacity());
        let mut pieces = Vec::with_capacity(body.len() / BLOCK_BYTES + 4);
        pieces.push(Bytes::from(start));
        pieces.extend(body.into_bytes());
        pieces.push(Bytes::from(end));
        // The blocks come after the start.
        for event in &mut events {
            event.block += 1;
        }
        Chunk { body: Body::new(pieces), events, attempts: 0, _bytes: bytes }
    }

    /// The events as they are, to be given up unsent.
    fn into_unsealed(self) -> Chunk {
        let Unsent { body, events, bytes } = self;
        Chunk { body: Body::new(body.into_bytes()), events, attempts: 0, _bytes: bytes }
    }
}

impl Chunk {
    fn len(&self) -> usize {
        self.events.len()
    }

    /// The bytes of event `i`.
    fn event(&self, i: usize) -> &[u8] {
        let Event { block, start, end, .. } = self.events[i];
        &self.body.pieces()[block as usize][start as usize..end as usize]
    }

    /// The name and id of event `i`, as text.
    pub(super) fn labels(&self, i: usize) -> (String, String) {
        let (event, Event { name, id, .. }) = (self.event(i), self.events[i]);
        let text = |(start, end): (u32, u32)| json_text(&event[start as usize..end as usize]);
        (text(name), text(id))
    }

    /// A chunk of the events at `indices` of this one (their JSON copied, not encoded again).
    fn part<D: Destination>(&self, destination: &D, head: &Head<'_>, indices: impl IntoIterator<Item = usize>, budget: &Arc<Budget>) -> Chunk {
        let mut body = Vec::new();
        destination.body_start(&mut body);
        let mut events = Vec::new();
        for i in indices {
            if !events.is_empty() {
                body.push(b',');
            }
            let start = body.len() as u32;
            body.extend_from_slice(self.event(i));
            events.push(Event { block: 0, start, end: body.len() as u32, ..self.events[i] });
        }
        destination.body_end(head, &mut body);
        let bytes = budget.take(body.capacity() + events.capacity() * std::mem::size_of::<Event>());
        Chunk { body: Body::new(vec![Bytes::from(body)]), events, attempts: self.attempts, _bytes: bytes }
    }

    /// The chunk's events, for a request.
    fn events(&self) -> Events<'_> {
        Events { count: self.events.len(), body: &self.body }
    }
}

/// The text of a JSON string (quotes included) that an encoder wrote.
fn json_text(token: &[u8]) -> String {
    match token {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => String::from_utf8_lossy(inner).into_owned(),
        _ => serde_json::from_slice(token).unwrap_or_else(|_| String::from_utf8_lossy(token).into_owned()),
    }
}

/// Delivers one batch: looks the credentials up, gives up what the platform would reject, sends
/// the rest, retrying, splitting and giving up as the destination's [`Destination::classify`]
/// says. `records` are what the batch's hits' delivery records need.
pub(super) async fn deliver<D: Destination, S: Credentials>(shared: &Shared<D, S>, key: Key, batch: Open, records: Arc<Records>, mut stop: watch::Receiver<bool>) {
    let out = Outcomes { shared, key: &key, records: &records };
    let started = Instant::now();
    let Open { body, events, rejected, share, .. } = batch;
    let (reason, detail) = match lookup(shared, &key.pixel, &mut stop).await {
        Lookup::Found(credentials) => {
            for reject in &rejected {
                out.failed(vec![Given::rejected(reject)], reject.reject.reason, &reject.reject.detail, None);
            }
            return send(shared, &out, &key, credentials, Unsent { body, events, bytes: share }, &mut stop, started).await;
        }
        Lookup::Skip(reason) => return out.skipped(events.len() + rejected.len(), reason),
        Lookup::Failed(detail) => ("token_store_unavailable", detail),
        Lookup::Stopped => ("shutdown", "shut down before the token lookup finished".to_owned()),
    };
    out.failed(rejected.iter().map(Given::rejected).collect(), reason, &detail, None);
    out.failed_chunks([Unsent { body, events, bytes: share }.into_unsealed()], reason, &detail, None);
}

/// Sends a batch's events (`unsent`, its body not yet finished) with `credentials`.
async fn send<D: Destination, S: Credentials>(
    shared: &Shared<D, S>,
    out: &Outcomes<'_, D, S>,
    key: &Key,
    credentials: UsableToken,
    unsent: Unsent,
    stop: &mut watch::Receiver<bool>,
    started: Instant,
) {
    let destination = &shared.destination;
    // Chunks still to send, the next one last; whether the platform's event-index hint may be
    // used on it.
    let head = Head { pixel: &key.pixel, credentials: &credentials.token, test_event_code: key.test_event_code.as_deref() };
    let mut work: Vec<(Chunk, bool)> = vec![(unsent.seal(destination, &head), true)];
    let policy = shared.policy;
    let (mut retry, mut split_requests) = (0u32, 0u32);
    // The events of a request that timed out may have arrived: sending them again may count
    // them twice (the platform deduplicates by event id, but it is counted here).
    let mut timed_out = false;
    while let Some((mut chunk, trust_hint)) = work.pop() {
        if chunk.len() == 0 {
            continue;
        }
        loop {
            chunk.attempts += 1;
            if std::mem::take(&mut timed_out) {
                metrics::counter!(m::CAPI_POSSIBLE_DUPLICATES).increment(chunk.len() as u64);
            }
            let result = {
                let request = Request { head, events: chunk.events() };
                // A request's wait grows with what it carries.
                let timeout = policy.attempt_timeout + shared.timeout_per_event.saturating_mul(chunk.len().saturating_sub(1) as u32);
                let sent_at = Instant::now();
                let mut waited_out = false;
                let result = tokio::select! {
                    r = tokio::time::timeout(timeout, destination.send(request)) => Some(r.unwrap_or_else(|_| {
                        waited_out = true;
                        Err(destination.timed_out(timeout))
                    })),
                    _ = stop.wait_for(|stopped| *stopped) => None,
                };
                if let Some(result) = &result {
                    let verdict = destination.classify(result.as_ref());
                    let signal = if matches!(verdict, Verdict::Retry) { Signal::Overloaded } else { Signal::Answered };
                    shared.window.observe(signal, sent_at.elapsed());
                    metrics::histogram!(m::CAPI_BATCH_EVENTS).record(chunk.len() as f64);
                    metrics::histogram!(m::CAPI_REQUEST_SECONDS).record(sent_at.elapsed().as_secs_f64());
                    metrics::counter!(m::CAPI_REQUESTS, "result" => destination.request_label(result.as_ref())).increment(1);
                }
                timed_out = waited_out;
                result
            };
            let Some(result) = result else {
                let rest = std::iter::once(chunk).chain(work.into_iter().map(|(c, _)| c));
                return out.failed_chunks(rest, "shutdown", "shut down while a request was under way", None);
            };
            let (detail, code) = match &result {
                Ok(_) => (String::new(), None),
                Err(err) => {
                    shared.status.failed(err.to_string());
                    (err.to_string(), destination.error_code(err))
                }
            };
            match destination.classify(result.as_ref()) {
                Verdict::Done => {
                    if let Ok(answer) = &result {
                        out.sent(&chunk, answer);
                    }
                    break;
                }
                Verdict::Retry => {
                    let wait = policy.backoff(retry);
                    retry += 1;
                    if shared.closing.load(Ordering::Relaxed) {
                        out.failed_chunks([chunk], "shutdown", &detail, code);
                        break;
                    }
                    if started.elapsed() + wait > policy.budget {
                        out.failed_chunks([chunk], "retries_exhausted", &detail, code);
                        break;
                    }
                    tracing::debug!(destination = destination.name(), pixel_id = %key.pixel, events = chunk.len(), retry, ?wait, %detail, "retrying a request");
                    match backoff_sleep(wait, &shared.closing, stop).await {
                        Woke::Slept => continue,
                        Woke::Closing => {
                            out.failed_chunks([chunk], "shutdown", &detail, code);
                            break;
                        }
                        Woke::Stopped => {
                            let rest = std::iter::once(chunk).chain(work.into_iter().map(|(c, _)| c));
                            return out.failed_chunks(rest, "shutdown", &detail, code);
                        }
                    }
                }
                Verdict::InvalidCredentials => {
                    let account = chunk.events.first().and_then(|e| out.records.account_id(e.record)).map(str::to_owned);
                    mark_invalid(shared, &key.pixel, credentials.version, account, code).await;
                    let rest = std::iter::once(chunk).chain(work.into_iter().map(|(c, _)| c));
                    return out.failed_chunks(rest, "invalid_token", &detail, code);
                }
                Verdict::Split { hint } => {
                    split_requests += 1;
                    let n = chunk.len();
                    if n == 1 {
                        out.failed_chunks([chunk], "invalid_parameter", &detail, code);
                        break;
                    }
                    if split_requests >= MAX_SPLIT_REQUESTS {
                        let rest = std::iter::once(chunk).chain(work.into_iter().map(|(c, _)| c));
                        let detail = format!("{detail} (gave up isolating the invalid events after {split_requests} requests)");
                        return out.failed_chunks(rest, "invalid_parameter", &detail, code);
                    }
                    match hint.filter(|&i| trust_hint && i < n) {
                        // The platform named the event: send it alone first (which confirms
                        // it), then the rest.
                        Some(i) => {
                            work.push((chunk.part(destination, &head, (0..i).chain(i + 1..n), &shared.budget), false));
                            work.push((chunk.part(destination, &head, i..i + 1, &shared.budget), false));
                        }
                        None => {
                            work.push((chunk.part(destination, &head, n / 2..n, &shared.budget), false));
                            work.push((chunk.part(destination, &head, 0..n / 2, &shared.budget), false));
                        }
                    }
                    break;
                }
                Verdict::GiveUp { reason } => {
                    out.failed_chunks([chunk], reason, &detail, code);
                    break;
                }
            }
        }
    }
}

/// The pixel's usable credentials, retrying a failing store briefly.
async fn lookup<D, S: Credentials>(shared: &Shared<D, S>, pixel: &PixelId, stop: &mut watch::Receiver<bool>) -> Lookup {
    let started = Instant::now();
    let mut retry = 0;
    loop {
        let answer = tokio::select! {
            r = tokio::time::timeout(LOOKUP_TIMEOUT, shared.gate.credentials().usable(pixel)) => r,
            _ = stop.wait_for(|stopped| *stopped) => return Lookup::Stopped,
        };
        let err = match answer {
            Ok(Ok(Some(found))) => {
                let mut invalid = shared.invalid.lock().unwrap_or_else(|e| e.into_inner());
                return match invalid.get(pixel) {
                    // Equality, not order: a store's versions need not grow.
                    Some(&bad) if bad == found.version => Lookup::Skip("invalid_token"),
                    Some(_) => {
                        invalid.remove(pixel);
                        Lookup::Found(found)
                    }
                    None => Lookup::Found(found),
                };
            }
            Ok(Ok(None)) => return Lookup::Skip("no_token"),
            Ok(Err(err)) => format!("the token store failed: {err}"),
            Err(_) => format!("the token store did not answer within {LOOKUP_TIMEOUT:?}"),
        };
        let wait = shared.policy.backoff(retry);
        retry += 1;
        if started.elapsed() + wait > LOOKUP_RETRY_BUDGET.min(shared.policy.budget) {
            return Lookup::Failed(err);
        }
        tracing::debug!(pixel_id = %pixel, retry, error = %err, "retrying the token lookup");
        match backoff_sleep(wait, &shared.closing, stop).await {
            Woke::Slept => {}
            Woke::Closing => return Lookup::Failed(err),
            Woke::Stopped => return Lookup::Stopped,
        }
    }
}

/// The platform called this version of the pixel's credentials invalid: remember it here, tell
/// the store, count and log it (never the credentials).
async fn mark_invalid<D: Destination, S: Credentials>(shared: &Shared<D, S>, pixel: &PixelId, version: u64, account_id: Option<String>, code: Option<i64>) {
    let first = {
        let mut invalid = shared.invalid.lock().unwrap_or_else(|e| e.into_inner());
        let known = invalid.get(pixel) == Some(&version);
        if !known {
            invalid.insert(*pixel, version);
        }
        !known
    };
    if first {
        metrics::counter!(m::CAPI_TOKENS_INVALIDATED).increment(1);
        tracing::warn!(destination = shared.destination.name(), pixel_id = %pixel, version, "the platform says the pixel's access token is invalid or expired; forwarding for it stops until a new token is set");
    }
    // Once per state change: the call that flipped the stored token tells the tenant.
    if shared.gate.credentials().mark_invalid(pixel, version).await
        && let Some(notifier) = &shared.notifier
    {
        notifier.invalidated(Invalidated { account_id, pixel_id: pixel.as_str().to_owned(), destination: shared.destination.name(), code, at: Timestamp::now() });
    }
}
