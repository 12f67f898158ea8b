//! The forwarder against a scripted Meta behind the same seam as the real client, driven through
//! real outlet queues: batching, concurrency, retries, token invalidation, batch splitting, and
//! the Barrier / Shutdown protocol. Failure records are read from the sink's queue.
//!
//! `second_destination` shows that a destination is only what its trait says: a made-up platform
//! with its own limits and error classes, forwarded to by the same machinery.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::meta::client::{EventsRequest, GraphError, Received, SendError, SendEvents};
use super::meta::{MAX_EVENTS_PER_REQUEST, Meta};
use super::{Credentials, Deliveries, ForwardConfig, ForwardStatus, Forwarder, Gate, Wiring};
use crate::params::{HitBuilder, ParseSettings, RequestMeta};
use crate::pipeline::{Budget, Dispatcher, HitOutlet, Job, RecordJobs, RecordOutlet};
use crate::record::{DraftHit, PixelId, Timestamp};
use crate::secret::Secret;
use crate::tokens::UsableToken;

mod second_destination;

const UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) Safari/605.1.15";

/// One scripted answer.
#[derive(Debug, Clone)]
enum Answer {
    Ok,
    Fail(SendError),
    /// Never answers.
    Hang,
}

fn graph(status: u16, code: Option<i64>) -> Answer {
    Answer::Fail(SendError::Graph(GraphError { status, code, message: format!("scripted {status}/{code:?}"), fbtrace_id: Some("F1".into()), ..GraphError::default() }))
}

/// One request as Meta saw it.
#[derive(Debug, Clone)]
struct Call {
    pixel_id: String,
    token: String,
    test_event_code: Option<String>,
    event_ids: Vec<String>,
}

#[derive(Default)]
struct MetaState {
    /// Answers for the next calls, in order; after them, [`Answer::Ok`].
    script: Mutex<VecDeque<Answer>>,
    /// Pixels whose every request gets this answer.
    failing: Mutex<HashMap<String, Answer>>,
    /// Event ids Meta calls invalid: any request carrying one fails with code 100.
    bad_events: Mutex<HashSet<String>>,
    latency: Mutex<Duration>,
    calls: Mutex<Vec<Call>>,
    /// Event ids Meta took, with repeats.
    accepted: Mutex<Vec<String>>,
    now: AtomicUsize,
    max_concurrent: AtomicUsize,
}

/// A scripted Meta.
#[derive(Clone, Default)]
struct FakeMeta(Arc<MetaState>);

impl FakeMeta {
    fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.0.script.lock().unwrap().extend(answers);
    }
    fn calls(&self) -> Vec<Call> {
        self.0.calls.lock().unwrap().clone()
    }
    fn accepted(&self) -> Vec<String> {
        self.0.accepted.lock().unwrap().clone()
    }
    fn fail_pixel(&self, pixel: &str, answer: Answer) {
        self.0.failing.lock().unwrap().insert(pixel.to_owned(), answer);
    }
    fn set_latency(&self, d: Duration) {
        *self.0.latency.lock().unwrap() = d;
    }
}

struct InFlight<'a>(&'a AtomicUsize);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SendEvents for FakeMeta {
    async fn send(&self, request: &EventsRequest<'_>) -> Result<Received, SendError> {
        let body: Value = serde_json::from_slice(&request.events.body.to_vec()).expect("the body is JSON");
        let events = body["data"].as_array().expect("a list of events");
        assert!(!events.is_empty() && events.len() <= MAX_EVENTS_PER_REQUEST && events.len() == request.events.count);
        assert_eq!(body["access_token"], request.token.expose(), "the body carries the token");
        assert_eq!(body["test_event_code"].as_str(), request.test_event_code);
        assert_eq!(request.events.body.len(), request.events.body.pieces().iter().map(|p| p.len()).sum::<usize>());
        let call = Call {
            pixel_id: request.pixel_id.to_owned(),
            token: request.token.expose().to_owned(),
            test_event_code: request.test_event_code.map(str::to_owned),
            event_ids: events.iter().map(|e| e["event_id"].as_str().expect("an event id").to_owned()).collect(),
        };
        let now = self.0.now.fetch_add(1, Ordering::SeqCst) + 1;
        let _guard = InFlight(&self.0.now);
        self.0.max_concurrent.fetch_max(now, Ordering::SeqCst);
        self.0.calls.lock().unwrap().push(call.clone());
        let fixed = self.0.failing.lock().unwrap().get(&call.pixel_id).cloned();
        let answer = fixed.unwrap_or_else(|| self.0.script.lock().unwrap().pop_front().unwrap_or(Answer::Ok));
        let latency = *self.0.latency.lock().unwrap();
        tokio::time::sleep(latency).await;
        let bad = {
            let bad = self.0.bad_events.lock().unwrap();
            call.event_ids.iter().position(|id| bad.contains(id))
        };
        match answer {
            Answer::Hang => std::future::pending().await,
            Answer::Fail(err) => Err(err),
            Answer::Ok if bad.is_some() => {
                Err(SendError::Graph(GraphError { status: 400, code: Some(100), subcode: Some(2804019), message: "Invalid parameter".into(), ..GraphError::default() }))
            }
            Answer::Ok => {
                self.0.accepted.lock().unwrap().extend(call.event_ids.iter().cloned());
                Ok(Received { events_received: Some(call.event_ids.len() as u64), messages: vec![], fbtrace_id: Some(format!("trace-{now}")) })
            }
        }
    }
}

/// An in-memory token store: pixel → (token, version, invalid).
#[derive(Default)]
struct MemTokens {
    tokens: Mutex<HashMap<String, (String, u64, bool)>>,
    marked: Mutex<Vec<(String, u64)>>,
    /// Lookups that fail before the store answers again.
    failures: AtomicUsize,
    lookups: AtomicUsize,
    /// Like a cache elsewhere that has not caught up: `mark_invalid` is recorded but ignored.
    stale: AtomicBool,
}

impl MemTokens {
    fn with(pixels: &[(&str, u64)]) -> Arc<MemTokens> {
        let tokens = MemTokens::default();
        for (pixel, version) in pixels {
            tokens.tokens.lock().unwrap().insert(pixel.to_string(), (format!("token-{pixel}-v{version}"), *version, false));
        }
        Arc::new(tokens)
    }
}

impl Credentials for MemTokens {
    async fn usable(&self, pixel: &PixelId) -> Result<Option<UsableToken>, String> {
        let pixel_id = pixel.as_str();
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err("store unreachable".into());
        }
        let tokens = self.tokens.lock().unwrap();
        Ok(tokens.get(pixel_id).filter(|t| !t.2).map(|(token, version, _)| UsableToken { token: Secret::new(token.clone()), version: *version }))
    }

    fn has(&self, pixel: &PixelId) -> Option<bool> {
        Some(self.tokens.lock().unwrap().get(pixel.as_str()).is_some_and(|t| !t.2))
    }

    async fn mark_invalid(&self, pixel: &PixelId, version: u64) -> bool {
        let pixel_id = pixel.as_str();
        self.marked.lock().unwrap().push((pixel_id.to_owned(), version));
        if self.stale.load(Ordering::SeqCst) {
            return false;
        }
        match self.tokens.lock().unwrap().get_mut(pixel_id).filter(|t| t.1 == version && !t.2) {
            Some(t) => {
                t.2 = true;
                true
            }
            None => false,
        }
    }
}

fn config() -> ForwardConfig {
    ForwardConfig {
        flush_interval: Duration::from_millis(50),
        timeout: Duration::from_millis(300),
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        retry_budget: Duration::from_secs(10),
        shutdown_timeout: Duration::from_millis(500),
        ..ForwardConfig::default()
    }
}

/// A running forwarder over `meta`, fed through a real dispatcher, its delivery records landing
/// in a sink queue the test reads.
struct Harness {
    capi: Dispatcher,
    forwarder: Forwarder,
    sink_rx: RecordJobs,
    deliveries: Arc<Deliveries>,
}

fn start(meta: &FakeMeta, tokens: &Arc<MemTokens>, config: ForwardConfig) -> Harness {
    let Wired { capi, forwarder, sink_rx, deliveries, .. } = wire(Meta::with_client(meta.clone()), tokens, config, 100_000);
    Harness { capi, forwarder, sink_rx, deliveries }
}

/// A forwarder to `destination` behind a gated hit outlet of `capacity`, its delivery records
/// going to a raw-record outlet whose queue is returned.
fn wire<D: super::Destination>(destination: D, tokens: &Arc<MemTokens>, config: ForwardConfig, capacity: usize) -> Wired {
    wire_with_budget(destination, tokens, config, capacity, 64 * 1024 * 1024)
}

/// [`wire`] with a hit budget of `budget_bytes`.
fn wire_with_budget<D: super::Destination>(destination: D, tokens: &Arc<MemTokens>, config: ForwardConfig, capacity: usize, budget_bytes: usize) -> Wired {
    let (capi_queue, capi_rx) = HitOutlet::new("capi", capacity);
    let (sink_queue, sink_rx) = RecordOutlet::new("file", capacity);
    let deliveries = Arc::new(Deliveries::default());
    let gate = Arc::new(Gate::new(tokens.clone()));
    let (budget, status) = (Budget::new(budget_bytes), Arc::new(ForwardStatus::new(destination.name())));
    let capi_queue = capi_queue.with_gate(gate.for_outlet()).with_shed(status.for_outlet());
    let sink = Dispatcher::new(vec![sink_queue], vec![]);
    let wiring =
        Wiring { jobs: capi_rx, closing: capi_queue.closing(), gate, sink, deliveries: deliveries.clone(), budget: budget.clone(), status: status.clone(), notifier: None };
    let forwarder = Forwarder::start(destination, config, wiring).unwrap();
    let closing = capi_queue.closing();
    let capi = Dispatcher::new(vec![], vec![capi_queue]).with_hit_budget(budget.clone());
    Wired { closing, capi, forwarder, sink_rx, deliveries, budget, status }
}

/// What [`wire`] built.
struct Wired {
    capi: Dispatcher,
    forwarder: Forwarder,
    sink_rx: RecordJobs,
    deliveries: Arc<Deliveries>,
    /// The hit outlet's closing flag.
    closing: Arc<AtomicBool>,
    /// The hit outlet's byte budget.
    budget: Arc<Budget>,
    /// Shedding and failures.
    status: Arc<ForwardStatus>,
}

/// Every record line in the queue, parsed.
fn drain_records(rx: &mut RecordJobs) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(job) = rx.try_recv() {
        if let Job::Deliver(records) = job {
            out.extend(records.each_line().map(|line| serde_json::from_slice::<Value>(&line).unwrap()));
        }
    }
    out
}

fn p(id: &str) -> PixelId {
    PixelId::parse(id).unwrap()
}

impl Harness {
    fn submit(&self, pixel: &str, ids: impl IntoIterator<Item = usize>) {
        for i in ids {
            self.capi.submit_draft(hit(pixel, &format!("e{i}"), Some(UA), None));
        }
    }

    /// The delivery records written so far.
    fn records(&mut self) -> Vec<Value> {
        drain_records(&mut self.sink_rx)
    }

    async fn stop(self) -> RecordJobs {
        self.capi.shutdown().await;
        self.forwarder.join().await;
        self.sink_rx
    }
}

fn hit(pixel: &str, event_id: &str, ua: Option<&str>, test_event_code: Option<&str>) -> DraftHit {
    let settings = ParseSettings::default();
    let mut b = HitBuilder::new(&settings, Timestamp::now());
    b.add_encoded(&format!("id={pixel}&ev=Purchase&eid={event_id}&dl=https%3A%2F%2Fshop.example%2F&cd[value]=1.5&cd[currency]=EUR"));
    if let Some(code) = test_event_code {
        b.add("test_event_code", code);
    }
    b.finish_draft(RequestMeta { ip: Some("192.0.2.7".parse().unwrap()), user_agent: ua, referer: None, cookies: None })
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("e{i}")).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn reasons(records: &[Value]) -> Vec<&str> {
    records.iter().map(|r| r["reason"].as_str().expect("a delivery record")).collect()
}

async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_thousand_hits_make_one_request_sent_by_size() {
    let meta = FakeMeta::default();
    let tokens = MemTokens::with(&[("111", 1)]);
    let mut h = start(&meta, &tokens, ForwardConfig { flush_interval: Duration::from_secs(60), ..config() });
    h.submit("111", 0..1000);
    eventually("the full batch", Duration::from_secs(5), || meta.calls().len() == 1).await;
    let call = &meta.calls()[0];
    assert_eq!((call.pixel_id.as_str(), call.token.as_str(), call.event_ids.len()), ("111", "token-111-v1", 1000));
    h.submit("111", 1000..1001);
    h.capi.flush().await;
    let calls = meta.calls();
    assert_eq!(calls.iter().map(|c| c.event_ids.len()).collect::<Vec<_>>(), vec![1000, 1]);
    assert_eq!(sorted(meta.accepted()), sorted(ids(0..1001)));
    assert!(h.records().is_empty());
    let d = h.deliveries.for_pixel(&p("111"));
    assert_eq!(d["deliveries"].as_array().unwrap().len(), 100);
    assert_eq!(d["deliveries"][0]["event_id"], "e1000");
    assert_eq!(d["deliveries"][0]["outcome"], "sent");
    assert_eq!(d["deliveries"][0]["events_received"], 1);
    h.stop().await;
}

#[tokio::test]
async fn a_batch_is_sent_by_age() {
    let meta = FakeMeta::default();
    let tokens = MemTokens::with(&[("111", 1)]);
    let h = start(&meta, &tokens, config());
    let started = Instant::now();
    h.submit("111", 0..3);
    eventually("the aged batch", Duration::from_secs(2), || meta.calls().len() == 1).await;
    assert!(started.elapsed() >= Duration::from_millis(40), "not before its age: {:?}", started.elapsed());
    assert_eq!(meta.calls()[0].event_ids, ids(0..3));
    h.stop().await;
}

#[tokio::test]
async fn three_pixels_are_sent_concurrently() {
    let meta = FakeMeta::default();
    meta.set_latency(Duration::from_millis(200));
    let tokens = MemTokens::with(&[("1", 1), ("2", 1), ("3", 1)]);
    let h = start(&meta, &tokens, config());
    for pixel in ["1", "2", "3"] {
        h.submit(pixel, 0..5);
    }
    h.capi.flush().await;
    let calls = meta.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls.iter().map(|c| c.pixel_id.clone()).collect::<HashSet<_>>(), HashSet::from(["1".into(), "2".into(), "3".into()]));
    assert_eq!(meta.0.max_concurrent.load(Ordering::SeqCst), 3);
    h.stop().await;
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let meta = FakeMeta::default();
    meta.set_latency(Duration::from_millis(50));
    let pixels: Vec<String> = (1..=8).map(|p| p.to_string()).collect();
    let tokens = MemTokens::with(&pixels.iter().map(|p| (p.as_str(), 1)).collect::<Vec<_>>());
    let h = start(&meta, &tokens, ForwardConfig { max_concurrent_requests: 2, ..config() });
    for p in &pixels {
        h.submit(p, 0..2);
    }
    h.capi.flush().await;
    assert_eq!(meta.calls().len(), 8);
    assert_eq!(meta.0.max_concurrent.load(Ordering::SeqCst), 2);
    h.stop().await;
}

#[tokio::test]
async fn a_server_error_then_success_delivers_once() {
    let meta = FakeMeta::default();
    meta.script([graph(500, None)]);
    let tokens = MemTokens::with(&[("111", 1)]);
    let mut h = start(&meta, &tokens, config());
    h.submit("111", 0..10);
    h.capi.flush().await;
    assert_eq!(meta.calls().len(), 2);
    assert_eq!(sorted(meta.accepted()), sorted(ids(0..10)), "each event accepted exactly once");
    assert!(h.records().is_empty());
    assert_eq!(h.deliveries.for_pixel(&p("111"))["deliveries"][0]["attempts"], 2);
    h.stop().await;
}

#[tokio::test]
async fn a_rate_limit_is_retried_with_backoff() {
    let meta = FakeMeta::default();
    meta.script([graph(400, Some(613)), graph(400, Some(17)), graph(400, Some(80004))]);
    let tokens = MemTokens::with(&[("111", 1)]);
    let mut h = start(&meta, &tokens, config());
    h.submit("111", 0..4);
    h.capi.flush().await;
    assert_eq!(meta.calls().len(), 4);
    assert_eq!(sorted(meta.accepted()), sorted(ids(0..4)));
    assert!(h.records().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let meta = FakeMeta::default();
    meta.script([Answer::Hang]);
    let tokens = MemTokens::with(&[("111", 1)]);
    let mut h = start(&meta, &tokens, ForwardConfig { timeout: Duration::from_millis(100), ..config() });
    h.submit("111", 0..3);
    h.capi.flush().await;
    assert_eq!(meta.calls().len(), 2);
    assert_eq!(sorted(meta.accepted()), sorted(ids(0..3)));
    assert!(h.records().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn retries_exhausted_are_given_up_with_records() {
    let meta = FakeMeta::default();
    meta.script(std::iter::repeat_n(graph(503, Some(2)), 1000));
    let tokens = MemTokens::with(&[("111", 1)]);
    let mut h = start(&meta, &tokens, ForwardConfig { retry_budget: Duration::from_millis(200), ..config() });
    h.submit("111", 0..5);
    h.capi.flush().await;
    assert!(meta.calls().len() >= 2);
    let records = h.records();
    assert_eq!(reasons(&records), vec!["retries_exhausted"; 5]);
    let failure = &records[0];
    assert_eq!(failure["code"], 2);
    assert!(failure["attempts"].as_u64().unwrap() >= 2 && failure["detail"].as_str().unwrap().contains("503"), "{failure}");
    assert_eq!(
        (&failure["schema"], &failure["destination"], &failure["outcome"], &failure["pixel_id"]),
        (&json!("pixelgate.delivery/1"), &json!("meta"), &json!("failed"), &json!("111"))
    );
    h.stop().await;
}

#[tokio::test]
async fn an_invalid_token_stops_forwarding_for_that_pixel() {
    let meta = FakeMeta::default();
    meta.script([graph(400, Some(190))]);
    let tokens = MemTokens::with(&[("111", 7), ("222", 1)]);
    let mut h = start(&meta, &tokens, config());
    h.submit("111", 0..10);
    h.capi.flush().await;
    assert_eq!(*tokens.marked.lock().unwrap(), vec![("111".to_owned(), 7)]);
    let records = h.records();
    assert_eq!(reasons(&records), vec!["invalid_token"; 10]);
    assert_eq!(sorted(records.iter().map(|r| r["event_id"].as_str().unwrap().to_owned()).collect()), sorted(ids(0..10)));
    assert_eq!(records[0]["code"], 190);
    let token = tokens.tokens.lock().unwrap()["111"].0.clone();
    assert!(records.iter().all(|r| { !r["detail"].as_str().unwrap().contains(&token) }));
    // Later hits for that pixel are not sent (the store answers None); other pixels still are.
    h.submit("111", 10..20);
    h.submit("222", 0..2);
    h.capi.flush().await;
    let calls = meta.calls();
    assert_eq!(calls.iter().filter(|c| c.pixel_id == "111").count(), 1, "no further request for the pixel");
    assert_eq!(calls.iter().filter(|c| c.pixel_id == "222").count(), 1);
    assert!(h.records().is_empty(), "skipped, not failed");
    let d = h.deliveries.for_pixel(&p("111"));
    assert_eq!(d["deliveries"][0]["reason"], "invalid_token");
    assert_eq!(d["deliveries"][0]["code"], 190);
    h.stop().await;
}

#[tokio::test]
async fn one_invalid_event_among_ten_is_isolated() {
    let meta = FakeMeta::default();
    meta.0.bad_events.lock().unwrap().insert("e6".into());
    let tokens = MemTokens::with(&[("111", 1)]);
    let mut h = start(&meta, &tokens, config());
    h.submit("111", 0..10);
    h.capi.flush().await;
    let mut expected = ids(0..10);
    expected.retain(|id| id != "e6");
    assert_eq!(sorted(meta.accepted()), sorted(expected), "9 delivered, once each");
    let records = h.records();
    assert_eq!(reasons(&records), vec!["invalid_parameter"]);
    assert_eq!(records[0]["event_id"], "e6");
    assert_eq!(records[0]["code"], 100);
    assert!(meta.calls().len() <= 1 + 2 * 4, "bisection, not one request per event: {}", meta.calls().len());
    h.stop().await;
}

#[tokio::test]
async fn metas_event_index_hint_is_checked_not_trusted() {
    let meta = FakeMeta::default();
    meta.0.bad_events.lock().unwrap().insert("e2".into());
    // First answer names the wrong event (index 5 = e5); e5 alone then succeeds, and the rest is
    // bisected as usual.
    meta.script([Answer::Fail(SendError::Graph(GraphError { status: 400, code: Some(100), event_index: Some(5), message: "bad".into(), ..GraphError::default() }))]);
    let tokens = MemTokens::with(&[("111", 1)]);
    let mut h = start(&meta, &tokens, config());
    h.submit("111", 0..8);
    h.capi.flush().await;
    let mut expected = ids(0..8);
    expected.retain(|id| id != "e2");
    assert_eq!(sorted(meta.accepted()), sorted(expected));
    assert_eq!(meta.calls()[1].event_ids, vec!["e5"]);
    let records = h.records();
    assert_eq!((reasons(&records), records[0]["event_id"].as_str().unwrap()), (vec!["invalid_parameter"], "e2"));
    h.stop().await;
}

#[tokio::test]
async fn other_client_errors_are_given_up_without_retry() {
    let meta = FakeMeta::default();
    meta.script([graph(403, Some(200)), graph(400, Some(803))]);
    let tokens = MemTokens::with(&[("1", 1), ("2", 1)]);
    let mut h = start(&meta, &tokens, ForwardConfig { max_concurrent_requests: 1, ..config() });
    h.submit("1", 0..2);
    h.capi.flush().await;
    h.submit("2", 0..1);
    h.capi.flush().await;
    assert_eq!(meta.calls().len(), 2);
    assert_eq!(reasons(&h.records()), vec!["permission_denied", "permission_denied", "rejected_by_meta"]);
    h.stop().await;
}

#[tokio::test]
async fn events_meta_would_reject_are_recorded_and_not_sent() {
    let meta = FakeMeta::default();
    let tokens = MemTokens::with(&[("111", 1)]);
    let mut h = start(&meta, &tokens, config());
    h.capi.submit_draft(hit("111", "no-ua", None, None));
    h.submit("111", 0..2);
    // A pixel without a token: neither sent nor recorded (counted as skipped).
    h.capi.submit_draft(hit("999", "x1", None, None));
    h.capi.submit_draft(hit("999", "x2", Some(UA), None));
    h.capi.flush().await;
    assert_eq!(sorted(meta.accepted()), ids(0..2));
    assert!(meta.calls().iter().all(|c| c.pixel_id == "111"));
    let records = h.records();
    assert_eq!((reasons(&records), records[0]["event_id"].as_str().unwrap()), (vec!["rejected_no_user_agent"], "no-ua"));
    assert_eq!(records[0]["attempts"], 0);
    h.stop().await;
}

#[tokio::test]
async fn test_event_codes_travel_in_their_own_requests() {
    let meta = FakeMeta::default();
    let tokens = MemTokens::with(&[("111", 1)]);
    let h = start(&meta, &tokens, config());
    h.capi.submit_draft(hit("111", "live", Some(UA), None));
    h.capi.submit_draft(hit("111", "test", Some(UA), Some("TEST9")));
    // Test mode: the pixel's code for an event without one; an event's own code wins.
    let test_mode = |event_id: &str, own: Option<&str>| {
        let mut draft = hit("111", event_id, Some(UA), own);
        draft.set_routing(crate::record::Routing { forwarding_off: false, test_event_code: Some("PIXEL7".into()) });
        draft
    };
    h.capi.submit_draft(test_mode("pixel-code", None));
    h.capi.submit_draft(test_mode("own-code", Some("TEST9")));
    h.capi.flush().await;
    let calls: HashMap<Option<String>, Vec<String>> = meta.calls().into_iter().map(|c| (c.test_event_code, c.event_ids)).collect();
    assert_eq!(
        calls,
        HashMap::from([
            (None, vec!["live".to_owned()]),
            (Some("TEST9".to_owned()), vec!["test".to_owned(), "own-code".to_owned()]),
            (Some("PIXEL7".to_owned()), vec!["pixel-code".to_owned()])
        ])
    );
    h.stop().await;
}

#[tokio::test]
async fn a_failing_token_store_is_retried_then_given_up_with_records() {
    let meta = FakeMeta::default();
    let tokens = MemTokens::with(&[("111", 1)]);
    tokens.failures.store(2, Ordering::SeqCst);
    let mut h = start(&meta, &tokens, config());
    h.submit("111", 0..3);
    h.capi.flush().await;
    assert_eq!(sorted(meta.accepted()), ids(0..3), "two failed lookups, then the token");
    assert!(h.records().is_empty());
    tokens.failures.store(usize::MAX / 2, Ordering::SeqCst);
    h.submit("111", 3..5);
    h.capi.flush().await;
    assert_eq!(reasons(&h.records()), vec!["token_store_unavailable"; 2]);
    tokens.failures.store(0, Ordering::SeqCst);
    h.stop().await;
}

#[tokio::test]
async fn a_barrier_waits_for_requests_in_flight() {
    let meta = FakeMeta::default();
    meta.set_latency(Duration::from_millis(300));
    meta.script([graph(500, None)]);
    let tokens = MemTokens::with(&[("111", 1)]);
    let h = start(&meta, &tokens, ForwardConfig { max_batch: 5, ..config() });
    h.submit("111", 0..5);
    eventually("the request to start", Duration::from_secs(2), || meta.calls().len() == 1).await;
    let started = Instant::now();
    h.capi.flush().await;
    assert!(started.elapsed() >= Duration::from_millis(400), "waited for the attempt and its retry: {:?}", started.elapsed());
    assert_eq!(sorted(meta.accepted()), sorted(ids(0..5)));
    h.stop().await;
}

#[tokio::test]
async fn shutdown_gives_up_hanging_requests_within_its_timeout() {
    let meta = FakeMeta::default();
    meta.script([Answer::Hang, Answer::Hang]);
    let tokens = MemTokens::with(&[("1", 1), ("2", 1)]);
    let h = start(&meta, &tokens, ForwardConfig { timeout: Duration::from_secs(30), shutdown_timeout: Duration::from_millis(300), ..config() });
    h.submit("1", 0..3);
    h.submit("2", 0..2);
    eventually("both requests to start", Duration::from_secs(2), || meta.calls().len() == 2).await;
    let started = Instant::now();
    let mut sink_rx = h.stop().await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2), "{took:?}");
    let records = drain_records(&mut sink_rx);
    assert_eq!(reasons(&records), vec!["shutdown"; 5]);
    assert!(records.iter().all(|r| r["attempts"] == 1), "the abandoned request carried them");
}

#[tokio::test]
async fn shutdown_stops_retrying_and_sends_what_is_queued() {
    let meta = FakeMeta::default();
    meta.fail_pixel("1", graph(500, None));
    let tokens = MemTokens::with(&[("1", 1), ("2", 1)]);
    let h =
        start(&meta, &tokens, ForwardConfig { backoff_initial: Duration::from_secs(5), backoff_max: Duration::from_secs(5), retry_budget: Duration::from_secs(60), ..config() });
    h.submit("1", 0..2);
    eventually("the first attempt", Duration::from_secs(2), || !meta.calls().is_empty()).await;
    // Queued while pixel 1 is failing: still sent.
    h.submit("2", 10..13);
    let started = Instant::now();
    let mut sink_rx = h.stop().await;
    assert!(started.elapsed() < Duration::from_secs(2), "the backoff was cut short: {:?}", started.elapsed());
    let records = drain_records(&mut sink_rx);
    assert_eq!(reasons(&records), vec!["shutdown"; 2]);
    assert!(records.iter().all(|r| r["pixel_id"] == "1"));
    assert_eq!(sorted(meta.accepted()), ids(10..13));
}

#[tokio::test]
async fn the_closing_flag_alone_cuts_a_backoff_short() {
    let meta = FakeMeta::default();
    meta.fail_pixel("1", graph(500, None));
    let tokens = MemTokens::with(&[("1", 1)]);
    let cfg = ForwardConfig { backoff_initial: Duration::from_secs(30), backoff_max: Duration::from_secs(30), retry_budget: Duration::from_secs(120), ..config() };
    let Wired { capi, forwarder, mut sink_rx, closing, .. } = wire(Meta::with_client(meta.clone()), &tokens, cfg, 100);
    capi.submit_draft(hit("1", "a", Some(UA), None));
    let flushed = tokio::spawn({
        let capi = capi.clone();
        async move { capi.flush().await }
    });
    eventually("the first attempt", Duration::from_secs(2), || !meta.calls().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    closing.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(2), flushed).await.expect("the barrier answers once the backoff is cut").unwrap();
    assert_eq!(reasons(&drain_records(&mut sink_rx)), ["shutdown"], "a delivery record");
    capi.shutdown().await;
    forwarder.join().await;
}

#[tokio::test]
async fn a_token_called_invalid_is_not_used_again_even_if_the_store_still_hands_it_out() {
    let meta = FakeMeta::default();
    meta.script([graph(401, Some(190))]);
    let tokens = MemTokens::with(&[("111", 7)]);
    tokens.stale.store(true, Ordering::SeqCst);
    let mut h = start(&meta, &tokens, config());
    h.submit("111", 0..2);
    h.capi.flush().await;
    h.submit("111", 2..4);
    h.capi.flush().await;
    assert_eq!(meta.calls().len(), 1);
    assert_eq!(reasons(&h.records()), vec!["invalid_token"; 2], "the later hits are skipped, not failed");
    // A new token (another version) is used at once.
    tokens.tokens.lock().unwrap().insert("111".into(), ("token-111-v8".into(), 8, false));
    h.submit("111", 4..6);
    h.capi.flush().await;
    assert_eq!(meta.calls().len(), 2);
    assert_eq!(meta.calls()[1].token, "token-111-v8");
    assert_eq!(sorted(meta.accepted()), ids(4..6));
    h.stop().await;
}

#[tokio::test]
async fn past_its_byte_budget_forwarding_sheds_and_counts_exactly_what_it_shed() {
    let meta = FakeMeta::default();
    meta.set_latency(Duration::from_millis(200));
    let tokens = MemTokens::with(&[("111", 1)]);
    // Room for about two batches of ten (each takes a first block and a full one for its
    // events); the destination takes 200 ms a request, one at a time.
    let cfg = ForwardConfig { max_batch: 10, max_concurrent_requests: 1, ..config() };
    let Wired { capi, forwarder, budget, status, .. } = wire_with_budget(Meta::with_client(meta.clone()), &tokens, cfg, 100_000, 128 * 1024);
    for i in 0..300 {
        capi.submit_draft(hit("111", &format!("e{i}"), Some(UA), None));
    }
    capi.flush().await;
    let (sent, shed) = (meta.accepted().len() as u64, status.shed_total());
    assert!(sent >= 10 && shed >= 100, "sent {sent}, shed {shed}");
    assert_eq!(sent + shed, 300, "every hit sent or shed, none twice");
    assert_eq!(status.report().unwrap()["meta"]["shedding"]["reason"], "budget");
    assert_eq!(budget.used(), 0, "every byte given back");
    capi.shutdown().await;
    forwarder.join().await;
}
