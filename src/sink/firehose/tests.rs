//! The sink against a scripted Firehose behind the same seam as the SDK client: what moto cannot
//! do (partial failures, throttling, timeouts, outages), driven through the real outlet queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::client::{PutError, PutOutcome, PutRecords, RecordFailure};
use super::{FirehoseConfig, FirehoseSink, MAX_RECORD_BYTES, MAX_RECORDS_PER_REQUEST, MAX_REQUEST_BYTES, encoded_len};
use crate::batch::BatchLimits;
use crate::params::{HitBuilder, ParseSettings};
use crate::pipeline::{Dispatcher, RecordOutlet};
use crate::record::{Hit, Timestamp};
use crate::retry::RetryPolicy;
use crate::sink::Health;

/// What the fake does with each request.
#[derive(Debug, Default, Clone, Copy)]
struct Script {
    /// Percentage of records failed (`ServiceUnavailableException`) in answered requests.
    fail_percent: u64,
    /// Every n-th request is throttled as a whole.
    throttle_every: Option<u64>,
    /// Every n-th request never answers (and is not applied).
    hang_every: Option<u64>,
    /// Answer after this long.
    latency: Duration,
}

/// A scripted Firehose that keeps every record it accepted, in order.
#[derive(Clone, Default)]
struct FakeFirehose(Arc<FakeState>);

#[derive(Default)]
struct FakeState {
    script: Mutex<Script>,
    /// While true, every request fails as unreachable.
    down: AtomicBool,
    calls: AtomicU64,
    /// xorshift state for the record failures, seeded so runs repeat.
    rng: AtomicU64,
    accepted: Mutex<Vec<Bytes>>,
    seen: Mutex<Seen>,
}

#[derive(Default, Debug)]
struct Seen {
    partial: u64,
    throttled: u64,
    hung: u64,
    unreachable: u64,
}

impl FakeFirehose {
    fn new(script: Script) -> Self {
        let fake = FakeFirehose::default();
        *fake.0.script.lock().unwrap() = script;
        fake.0.rng.store(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        fake
    }

    fn accepted(&self) -> Vec<Bytes> {
        self.0.accepted.lock().unwrap().clone()
    }

    fn set_down(&self, down: bool) {
        self.0.down.store(down, Ordering::SeqCst);
    }

    fn roll(&self) -> u64 {
        let mut x = self.0.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.rng.store(x, Ordering::Relaxed);
        x % 100
    }
}

impl PutRecords for FakeFirehose {
    async fn put_record_batch(&self, records: &[Bytes]) -> Result<PutOutcome, PutError> {
        assert!(!records.is_empty() && records.len() <= MAX_RECORDS_PER_REQUEST, "{} records in one request", records.len());
        let bytes: usize = records.iter().map(|r| encoded_len(r.len())).sum();
        assert!(bytes <= MAX_REQUEST_BYTES, "{bytes} bytes in one request");
        for r in records {
            assert!(r.len() <= MAX_RECORD_BYTES && r.ends_with(b"\n") && !r[..r.len() - 1].contains(&b'\n'), "not one line: {r:?}");
        }
        let n = self.0.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let script = *self.0.script.lock().unwrap();
        tokio::time::sleep(script.latency).await;
        if self.0.down.load(Ordering::SeqCst) {
            self.0.seen.lock().unwrap().unreachable += 1;
            return Err(PutError::Unreachable("connection refused".into()));
        }
        if script.throttle_every.is_some_and(|k| n.is_multiple_of(k)) {
            self.0.seen.lock().unwrap().throttled += 1;
            return Err(PutError::Throttled("ThrottlingException (HTTP 400): Rate exceeded".into()));
        }
        if script.hang_every.is_some_and(|k| n.is_multiple_of(k)) {
            self.0.seen.lock().unwrap().hung += 1;
            std::future::pending::<()>().await;
        }
        let mut failures = Vec::with_capacity(records.len());
        let mut accepted = self.0.accepted.lock().unwrap();
        for r in records {
            if self.roll() < script.fail_percent {
                failures.push(Some(RecordFailure { code: "ServiceUnavailableException".into(), message: "Slow down.".into() }));
            } else {
                accepted.push(r.clone());
                failures.push(None);
            }
        }
        if failures.iter().any(Option::is_some) {
            self.0.seen.lock().unwrap().partial += 1;
        }
        Ok(PutOutcome { failures })
    }
}

fn config(spool: &std::path::Path) -> FirehoseConfig {
    FirehoseConfig {
        stream: "test-stream".into(),
        batch: BatchLimits { max_items: MAX_RECORDS_PER_REQUEST, max_bytes: MAX_REQUEST_BYTES, max_age: Duration::from_millis(50) },
        max_in_flight: 4,
        retry: RetryPolicy {
            attempt_timeout: Duration::from_millis(200),
            backoff_initial: Duration::from_millis(5),
            backoff_max: Duration::from_millis(50),
            budget: Duration::from_secs(30),
        },
        spool_dir: spool.to_path_buf(),
        spool_max_bytes: 64 * 1024 * 1024,
        check_in_background: false,
        shutdown_timeout: Duration::from_secs(2),
    }
}

/// A running sink over `fake`, fed through a real dispatcher.
struct Harness {
    dispatcher: Dispatcher,
    sink: FirehoseSink,
    health: Arc<Health>,
}

fn start(fake: &FakeFirehose, config: FirehoseConfig) -> Harness {
    let (queue, rx) = RecordOutlet::new("firehose", 100_000);
    let health = Arc::new(Health::default());
    let sink = FirehoseSink::start_with(fake.clone(), config, rx, health.clone()).unwrap();
    Harness { dispatcher: Dispatcher::new(vec![queue], vec![]), sink, health }
}

impl Harness {
    async fn stop(self) {
        self.dispatcher.shutdown().await;
        self.sink.join().await;
    }
}

fn hit(id: usize) -> Hit {
    let settings = ParseSettings::default();
    let mut b = HitBuilder::new(&settings, Timestamp::now());
    b.add_encoded(&format!("pixel_id=1&event=Purchase&event_id=e{id}&evat_value={id}&usat_em=a%40b.co"));
    b.finish(Default::default())
}

/// The line the file sink writes for `hit`.
fn line(hit: &Hit) -> Bytes {
    let mut out = Vec::new();
    hit.write_line(&mut out);
    out.into()
}

/// Submits hits `ids` and returns their expected lines, in order.
fn submit(h: &Harness, ids: std::ops::Range<usize>) -> Vec<Bytes> {
    ids.map(|i| {
        let hit = hit(i);
        let expected = line(&hit);
        h.dispatcher.submit_record(&hit);
        expected
    })
    .collect()
}

/// Asserts that `accepted` holds every expected line exactly once, and nothing else.
fn assert_exactly_once(accepted: &[Bytes], expected: &[Bytes]) {
    let mut counts: HashMap<&Bytes, i64> = HashMap::new();
    for r in accepted {
        *counts.entry(r).or_default() += 1;
    }
    for r in expected {
        *counts.entry(r).or_default() -= 1;
    }
    let wrong: Vec<_> = counts.iter().filter(|(_, c)| **c != 0).take(3).collect();
    assert!(wrong.is_empty(), "{} accepted for {} expected; e.g. (record, accepted - expected): {wrong:?}", accepted.len(), expected.len());
}

async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failures_throttling_and_timeouts_lose_nothing_and_send_nothing_twice() {
    let spool = tempfile::tempdir().unwrap();
    let fake = FakeFirehose::new(Script { fail_percent: 30, throttle_every: Some(7), hang_every: Some(11), ..Script::default() });
    let h = start(&fake, config(spool.path()));
    let expected = submit(&h, 0..5000);
    h.dispatcher.flush().await;
    // Slots held past the attempt timeout send later batches through the spool; wait for it.
    eventually("everything arrives", Duration::from_secs(10), || fake.accepted().len() >= expected.len()).await;
    assert_exactly_once(&fake.accepted(), &expected);
    {
        let seen = fake.0.seen.lock().unwrap();
        assert!(seen.partial > 10 && seen.throttled > 2 && seen.hung > 2, "the script ran: {seen:?}");
    }
    assert!(h.health.problem().is_none());
    h.stop().await;
    assert_exactly_once(&fake.accepted(), &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_fill_by_count_then_leave_by_age() {
    let spool = tempfile::tempdir().unwrap();
    let fake = FakeFirehose::new(Script::default());
    let mut cfg = config(spool.path());
    cfg.batch.max_age = Duration::from_millis(300);
    let h = start(&fake, cfg);
    let expected = submit(&h, 0..1003);
    eventually("two full batches", Duration::from_secs(5), || fake.accepted().len() == 1000).await;
    assert_eq!(fake.0.calls.load(Ordering::SeqCst), 2, "500 + 500, the rest waits");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.accepted().len(), 1000, "three records are younger than the flush interval");
    eventually("the last batch leaves by age", Duration::from_secs(5), || fake.accepted().len() == 1003).await;
    assert_eq!(fake.accepted(), expected, "one request at a time here, so order holds too");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_hit_travels_as_a_typed_record_within_the_limits() {
    let spool = tempfile::tempdir().unwrap();
    let fake = FakeFirehose::new(Script::default());
    let h = start(&fake, config(spool.path()));
    let settings = ParseSettings::default();
    let mut expected = Vec::new();
    for n in 0..6 {
        let mut b = HitBuilder::new(&settings, Timestamp::now());
        b.add("event_id", &format!("big{n}"));
        for i in 0..200 {
            b.add(&format!("evat_k{i:03}"), &"x".repeat(8000));
        }
        let hit = b.finish(Default::default());
        expected.push(line(&hit));
        h.dispatcher.submit_record(&hit);
    }
    h.dispatcher.flush().await;
    assert_exactly_once(&fake.accepted(), &expected);
    for r in fake.accepted() {
        let v: serde_json::Value = serde_json::from_slice(&r).unwrap();
        assert!(v["oversize"]["original_bytes"].as_u64().unwrap() > MAX_RECORD_BYTES as u64);
    }
    assert!(fake.0.calls.load(Ordering::SeqCst) >= 2, "six ~1 MB records do not fit one 4 MiB request");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_spools_then_replays_everything_in_order() {
    let spool = tempfile::tempdir().unwrap();
    let fake = FakeFirehose::new(Script::default());
    let mut cfg = config(spool.path());
    cfg.max_in_flight = 1;
    cfg.retry.budget = Duration::from_millis(100);
    let h = start(&fake, cfg);
    let mut expected = submit(&h, 0..300);
    h.dispatcher.flush().await;
    assert_eq!(fake.accepted().len(), 300);

    fake.set_down(true);
    expected.extend(submit(&h, 300..2300));
    h.dispatcher.flush().await;
    assert_eq!(fake.accepted().len(), 300, "nothing gets through while down");
    let problem = h.health.problem().expect("degraded while down");
    assert!(problem.contains("test-stream") || problem.contains("not taking records"), "{problem}");
    assert!(spool_files(spool.path()) > 0, "records are on disk");

    fake.set_down(false);
    expected.extend(submit(&h, 2300..2500));
    eventually("the spool is replayed", Duration::from_secs(10), || fake.accepted().len() == 2500).await;
    assert_eq!(fake.accepted(), expected, "replayed oldest first; later hits queue behind the spool");
    eventually("ready again", Duration::from_secs(2), || h.health.problem().is_none()).await;
    eventually("acknowledged segments are deleted", Duration::from_secs(2), || spool_files(spool.path()) == 0).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_slot_is_stuck_retrying_new_batches_go_to_disk_at_once() {
    let spool = tempfile::tempdir().unwrap();
    let fake = FakeFirehose::new(Script::default());
    fake.set_down(true);
    let mut cfg = config(spool.path());
    cfg.max_in_flight = 1;
    cfg.retry.budget = Duration::from_secs(60);
    let h = start(&fake, cfg);
    let mut expected = submit(&h, 0..500);
    tokio::time::sleep(Duration::from_millis(300)).await;
    expected.extend(submit(&h, 500..3000));
    eventually("the queue drains to the spool long before the retry budget", Duration::from_secs(3), || spool_files(spool.path()) > 0).await;
    assert!(h.health.problem().is_some());
    fake.set_down(false);
    eventually("everything arrives", Duration::from_secs(10), || fake.accepted().len() >= 3000).await;
    assert_exactly_once(&fake.accepted(), &expected);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_in_an_outage_spools_within_its_timeout_and_a_restart_delivers() {
    let spool = tempfile::tempdir().unwrap();
    let fake = FakeFirehose::new(Script::default());
    fake.set_down(true);
    let mut cfg = config(spool.path());
    cfg.retry.budget = Duration::from_secs(60);
    cfg.shutdown_timeout = Duration::from_millis(300);
    let h = start(&fake, cfg.clone());
    let expected = submit(&h, 0..1200);
    let started = Instant::now();
    h.stop().await;
    assert!(started.elapsed() < Duration::from_secs(2), "shutdown took {:?}", started.elapsed());
    assert!(fake.accepted().is_empty());
    assert!(spool_files(spool.path()) > 0);

    fake.set_down(false);
    let h = start(&fake, cfg);
    eventually("the restarted sink replays the spool", Duration::from_secs(10), || fake.accepted().len() == 1200).await;
    assert_exactly_once(&fake.accepted(), &expected);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_waits_for_acknowledgement() {
    let spool = tempfile::tempdir().unwrap();
    let fake = FakeFirehose::new(Script { latency: Duration::from_millis(150), ..Script::default() });
    let h = start(&fake, config(spool.path()));
    submit(&h, 0..10);
    let started = Instant::now();
    h.dispatcher.flush().await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(fake.accepted().len(), 10);
    h.stop().await;
}

fn spool_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "ndjson")).count()
}
