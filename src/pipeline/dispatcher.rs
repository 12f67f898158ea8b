//! [`Dispatcher`]: hands each hit to its outlets without ever making an answer wait.
//!
//! [`Dispatcher::submit_captured`] is the one way in for a door: the request goes to an intake
//! task ([`super::intake`]), which shapes it and offers the result here: its record line to
//! every raw-record outlet, the [`Hit`] to every hit outlet whose gate wants it. Offers use
//! `try_send`: a full queue is counted and logged, never waited for. Waiting hits are bounded
//! twice: by count per queue (records, for a raw-record outlet) and by their bytes, in two
//! budgets: what waits for the raw-record outlets within `--queue-max-bytes`, what the hit
//! outlets hold (queued, batched, in flight) within `--forward-max-bytes`. A slow destination
//! fills the second and its hits are shed for forwarding; the raw records keep their room.
//!
//! [`Dispatcher::flush`] resolves when everything submitted before it has been delivered or
//! accounted for: graceful shutdown uses it, and so does the Lambda drain, per invocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::budget::Budget;
use super::intake::{self, Intake};
use super::outlet::{HitOutlet, Hits, Job, QueuedHit, RecordOutlet, Records, Reservation};
use super::tenancy::Tenancy;
use crate::metrics as m;
use crate::params::{Captured, ParseSettings};
use crate::record::{DraftHit, Fields, Hit, Timestamp};
use crate::registry::Directory;

/// Default cap on the bytes of hits waiting for the raw-record outlets (`--queue-max-bytes`).
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// Default cap on the bytes the hit outlets hold (`--forward-max-bytes`).
pub const DEFAULT_MAX_HIT_BYTES: usize = 32 * 1024 * 1024;

/// What queueing a hit costs beyond its own bytes ([`DraftHit::approx_bytes`]): the shared
/// allocation's two counts, the queue's fields around the hit, and its place
/// in a job's list, counted in the hit outlets' budget with the hit.
const HELD_BYTES: usize = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<QueuedHit>() - std::mem::size_of::<DraftHit>() + std::mem::size_of::<Arc<QueuedHit>>();

/// Most bytes of lines gathered before they are handed on.
const MAX_LINES_BYTES: usize = 1024 * 1024;

/// Hits offered to the hit outlets and not yet handed on (with the [`Lines`] gathered meanwhile):
/// one list per outlet.
#[derive(Debug, Default)]
pub(super) struct Offered {
    lists: Vec<Vec<Arc<QueuedHit>>>,
}

/// Record lines being gathered for the raw-record outlets. The buffer handed on is counted
/// against the budget by its capacity, not its length, and the next one starts at the size the
/// last one filled, so what is held stays within twice what is counted for (a Firehose batch
/// keeps lines alive past their job).
#[derive(Default)]
pub(super) struct Lines {
    pub(super) buf: Vec<u8>,
    pub(super) count: usize,
    pub(super) received_at: Option<Timestamp>,
}

impl Lines {
    /// Drops what a write cut short left after the last whole line.
    pub(super) fn repair(&mut self) {
        let whole = self.buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.buf.truncate(whole);
        if self.count == 0 {
            self.buf.clear();
            self.received_at = None;
        }
    }
}

/// Fans hits out to the outlets. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    /// Raw-record outlets: every hit's line goes to each.
    records: Arc<[RecordOutlet]>,
    /// Hit outlets: a hit goes to those whose gate wants it. Drained before the raw-record
    /// outlets, which they may feed (the forwarder's delivery records).
    hits: Arc<[HitOutlet]>,
    /// Bytes of what waits for the raw-record outlets (captured requests, record lines).
    pub(super) queued_bytes: Arc<AtomicUsize>,
    /// Most bytes of those that may wait.
    max_bytes: usize,
    /// Bytes the hit outlets hold, from the queue to the end of their delivery.
    hit_budget: Arc<Budget>,
    /// Unix second of the last "queue full" warning, so a flood logs once per interval.
    last_full_warning: Arc<AtomicU64>,
    /// The intake tasks' queues, one per runtime worker; empty without an intake.
    intake: Arc<[mpsc::Sender<Intake>]>,
    /// Registered pixels and their settings, which the intake applies to their hits (account,
    /// allowed domains, forwarding, test mode); without it every hit is an unregistered pixel's.
    directory: Option<Arc<Directory>>,
}

impl Dispatcher {
    /// A dispatcher over the given outlets, holding at most [`DEFAULT_MAX_QUEUED_BYTES`] of
    /// waiting hits.
    pub fn new(records: Vec<RecordOutlet>, hits: Vec<HitOutlet>) -> Self {
        // `offer_hit` marks the outlets a hit goes to in one word.
        assert!(hits.len() <= 64, "at most 64 hit outlets");
        Dispatcher {
            records: records.into(),
            hits: hits.into(),
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            max_bytes: DEFAULT_MAX_QUEUED_BYTES,
            hit_budget: Budget::new(DEFAULT_MAX_HIT_BYTES),
            last_full_warning: Arc::new(AtomicU64::new(0)),
            intake: Arc::new([]),
            directory: None,
        }
    }

    /// The registered pixels whose settings the intake applies to their hits
    /// (`docs/records.md#registered-pixels`). Before [`Dispatcher::with_intake`].
    pub fn with_directory(mut self, directory: Arc<Directory>) -> Self {
        assert!(self.intake.is_empty(), "with_directory before with_intake: the intake tasks take it when they start");
        self.directory = Some(directory);
        self
    }

    /// Caps the bytes of what waits for the raw-record outlets.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The budget of what the hit outlets hold (shared with their consumers, which count what
    /// they build from the hits).
    pub fn with_hit_budget(mut self, budget: Arc<Budget>) -> Self {
        self.hit_budget = budget;
        self
    }

    /// Puts an intake in front of the outlets: `tasks` tasks, spawned on the current runtime,
    /// each with a queue of `capacity` captured requests, shape what
    /// [`Dispatcher::submit_captured`] hands them with `settings`. One task per runtime worker
    /// keeps shaping as parallel as the answers. With a [`Dispatcher::with_directory`], each
    /// hit of a registered pixel gets its settings applied before its record is written.
    pub fn with_intake(mut self, tasks: usize, capacity: usize, settings: ParseSettings) -> Self {
        let outlets = self.clone();
        let settings = Arc::new(settings);
        self.intake = (0..tasks.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(capacity.max(1));
                tokio::spawn(intake::run(rx, settings.clone(), outlets.clone(), Tenancy::new(self.directory.clone())));
                tx
            })
            .collect();
        self
    }

    /// Hands a captured pixel request to the intake (see [`Dispatcher::with_intake`]); never
    /// waits. A full queue or byte budget drops it, counted for every outlet and logged.
    pub fn submit_captured(&self, captured: Captured) {
        if let Err(reason) = self.try_submit_captured(captured) {
            self.dropped_everywhere(reason);
        }
    }

    /// As [`Dispatcher::submit_captured`], for a sender that can be told: a request the intake
    /// has no room for is handed back as the reason (`queue_bytes_full`, `queue_full`,
    /// `outlet_closed`), not counted as dropped.
    pub fn try_submit_captured(&self, captured: Captured) -> Result<(), &'static str> {
        thread_local! {
            /// Each thread feeds one intake task, so a worker's hits are shaped together.
            static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        assert!(!self.intake.is_empty(), "submit_captured needs Dispatcher::with_intake");
        let bytes = captured.approx_bytes();
        if !self.reserve(bytes) {
            return Err("queue_bytes_full");
        }
        let mut shard = SHARD.get();
        if shard == usize::MAX {
            shard = NEXT.fetch_add(1, Ordering::Relaxed);
            SHARD.set(shard);
        }
        self.intake[shard % self.intake.len()].try_send(Intake::Captured(captured, bytes)).map_err(|err| {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            send_error(&err)
        })
    }

    /// Offers a hit that was shaped elsewhere (a test's, an input's) as the intake offers its
    /// own: its line to the raw-record outlets, the draft to the hit outlets that want it.
    /// Never waits. No pixel settings are applied: the draft goes as it is.
    pub fn submit_draft(&self, hit: DraftHit) {
        let (mut lines, mut offered) = (Lines::default(), Offered::default());
        self.gather(&mut lines, &mut offered, hit.received_at(), |out| hit.write_line(out));
        self.offer_hit(hit, &mut offered);
        self.hand_on(&mut lines, &mut offered);
    }

    /// Writes a hit's record to the raw-record outlets only (the hit goes to no hit outlet).
    /// Never waits.
    pub fn submit_record(&self, record: &Hit) {
        self.records().write(record.received_at(), |out| record.write_line(out));
    }

    /// Records of that kind written together, handed on as one job per raw-record outlet when
    /// the batch drops. Never waits.
    pub fn records(&self) -> RecordBatch<'_> {
        RecordBatch { dispatcher: self, lines: Lines::default(), offered: Offered::default() }
    }

    /// Takes `bytes` from the budget of waiting hits; false (and nothing taken) if they do not fit.
    fn reserve(&self, bytes: usize) -> bool {
        if self.queued_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes > self.max_bytes {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Counts a hit lost before it reached any outlet as dropped for each of them.
    pub(super) fn dropped_everywhere(&self, reason: &'static str) {
        for outlet in self.records.iter() {
            self.dropped(outlet.queue.name, reason, 1);
        }
        self.dropped_for_hit_outlets(reason);
    }

    /// Counts a hit lost after its record was handed on as dropped for each hit outlet.
    pub(super) fn dropped_for_hit_outlets(&self, reason: &'static str) {
        for outlet in self.hits.iter() {
            self.shed(outlet, reason, 1);
        }
    }

    /// Counts `n` hits a hit outlet wanted but could not take.
    fn shed(&self, outlet: &HitOutlet, reason: &'static str, n: usize) {
        match &outlet.shed {
            Some(shed) => shed(reason, n as u64),
            None => self.dropped(outlet.queue.name, reason, n),
        }
    }

    /// Writes a record's line (received at `at`) into `lines` with `write`, if there is a
    /// raw-record outlet to take it. What was gathered is handed on first (with the hits offered
    /// meanwhile) if the line starts another UTC hour or the buffer is full.
    pub(super) fn gather(&self, lines: &mut Lines, offered: &mut Offered, at: Timestamp, write: impl FnOnce(&mut Vec<u8>)) {
        if self.records.is_empty() {
            return;
        }
        if lines.received_at.is_some_and(|t| t.unix_hour() != at.unix_hour()) || lines.buf.len() >= MAX_LINES_BYTES {
            self.hand_on(lines, offered);
        }
        lines.received_at.get_or_insert(at);
        write(&mut lines.buf);
        lines.count += 1;
    }

    /// Hands the gathered lines to every raw-record outlet, and the hits offered meanwhile to
    /// their hit outlets, leaving both empty.
    pub(super) fn hand_on(&self, lines: &mut Lines, offered: &mut Offered) {
        if let Some(received_at) = lines.received_at.take() {
            let count = std::mem::take(&mut lines.count);
            // The next batch starts at this one's size: the buffer is counted by its capacity,
            // so it is never reserved larger than batches have needed.
            let next = Vec::with_capacity(lines.buf.len());
            let buf = std::mem::replace(&mut lines.buf, next);
            let capacity = buf.capacity();
            self.send_lines(&Bytes::from(buf), capacity, count, received_at);
        }
        self.send_hits(offered);
    }

    /// Sends `count` record lines (in a buffer of `capacity` bytes) to every raw-record outlet.
    fn send_lines(&self, lines: &Bytes, capacity: usize, count: usize, received_at: Timestamp) {
        if self.records.is_empty() {
            return;
        }
        let bytes = capacity + std::mem::size_of::<Records>();
        if !self.reserve(bytes) {
            for outlet in self.records.iter() {
                self.dropped(outlet.queue.name, "queue_bytes_full", count);
            }
            return;
        }
        let reservation = Arc::new(Reservation { bytes, budget: self.queued_bytes.clone() });
        for outlet in self.records.iter() {
            let Some(places) = outlet.places.take(count) else {
                self.dropped(outlet.queue.name, "queue_full", count);
                continue;
            };
            let job = Records { lines: lines.clone(), received_at, _bytes: reservation.clone(), places };
            if let Err(err) = outlet.queue.tx.try_send(Job::Deliver(job)) {
                self.dropped(outlet.queue.name, send_error(&err), count);
            }
        }
    }

    /// Adds the draft to `offered` for every hit outlet whose gate wants it (moved, not copied:
    /// its line is written already, in the lines being gathered); drops it if none does. The
    /// hits reach the outlets when the lines are handed on ([`Dispatcher::hand_on`]).
    pub(super) fn offer_hit(&self, hit: DraftHit, offered: &mut Offered) {
        // Each gate asked once (a gate counts what it turns away); the answers are kept as one
        // bit per outlet.
        let wanted = self.hits.iter().enumerate().fold(0u64, |wanted, (i, o)| wanted | u64::from(o.wants(&hit)) << i);
        if wanted == 0 {
            return;
        }
        let wanted = || self.hits.iter().enumerate().filter(move |(i, _)| wanted >> i & 1 == 1);
        let bytes = hit.approx_bytes() + HELD_BYTES;
        if !self.hit_budget.try_take_waiting(bytes) {
            for (_, outlet) in wanted() {
                self.shed(outlet, "budget", 1);
            }
            return;
        }
        let hit = Arc::new(QueuedHit { hit, bytes, budget: self.hit_budget.clone() });
        if offered.lists.len() < self.hits.len() {
            offered.lists.resize_with(self.hits.len(), Vec::new);
        }
        for (i, _) in wanted() {
            offered.lists[i].push(hit.clone());
        }
    }

    /// Hands the hits in `offered` to their outlets, one job per outlet, leaving it empty. An
    /// outlet without room for them all (its capacity in hits, or its queue) sheds them.
    fn send_hits(&self, offered: &mut Offered) {
        for (outlet, list) in self.hits.iter().zip(offered.lists.iter_mut()) {
            let count = list.len();
            if count == 0 {
                continue;
            }
            let hits = std::mem::take(list);
            let Some(places) = outlet.places.take(count) else {
                self.shed(outlet, "queue_full", count);
                continue;
            };
            // A job that is not queued gives its places back as it drops.
            let job = Hits { hits, _places: places };
            if let Err(err) = outlet.queue.tx.try_send(Job::Deliver(job)) {
                self.shed(outlet, send_error(&err), count);
            }
        }
    }

    /// Counts `n` hits given up for `outlet` and warns (at most every ten seconds).
    fn dropped(&self, outlet: &'static str, reason: &'static str, n: usize) {
        metrics::counter!(m::RECORDS_DROPPED, "outlet" => outlet, "reason" => reason).increment(n as u64);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let last = self.last_full_warning.load(Ordering::Relaxed);
        if now >= last + 10 && self.last_full_warning.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(outlet, reason, "hits dropped: the outlet cannot keep up (see pixelgate_records_dropped_total)");
        }
    }

    /// Resolves when every hit submitted before this call has been delivered by every outlet, or
    /// given up and counted, and so has what the hit outlets fed to the raw-record outlets
    /// meanwhile (the forwarder's delivery records). Returns at once for an outlet whose
    /// consumer has stopped.
    ///
    /// Every outlet flushes at once, so a slow destination does not hold back the raw records
    /// (under Lambda the drain may run out of time); then the raw-record outlets flush again.
    pub async fn flush(&self) {
        self.flush_intake().await;
        let records = self.records.iter().map(|o| o.queue.answered(Job::Barrier));
        let hits = self.hits.iter().map(|o| o.queue.answered(Job::Barrier));
        futures_util::future::join(futures_util::future::join_all(records), futures_util::future::join_all(hits)).await;
        if !self.hits.is_empty() {
            futures_util::future::join_all(self.records.iter().map(|o| o.queue.answered(Job::Barrier))).await;
        }
    }

    /// Sets the gauges of what the hit outlets hold (`pixelgate_forward_held_bytes`), when there
    /// are hit outlets; asked at each scrape.
    pub fn report_held(&self) {
        if !self.hits.is_empty() {
            metrics::gauge!(m::FORWARD_HELD_BYTES, "at" => "now").set(self.hit_budget.used() as f64);
            metrics::gauge!(m::FORWARD_HELD_BYTES, "at" => "peak").set(self.hit_budget.peak() as f64);
        }
    }

    /// Resolves when every request captured before this call has been shaped and offered to the
    /// outlets (not yet delivered): from then on its flags are counted. `/metrics` waits for it.
    pub async fn flush_intake(&self) {
        futures_util::future::join_all(self.intake.iter().map(|tx| intake::answered(tx, Intake::Barrier))).await;
    }

    /// Delivers what every outlet holds, then stops the consumers: the intake first, then the
    /// hit outlets (which may feed the raw-record outlets), then the raw-record outlets. Each
    /// outlet's closing flag is raised just before its shutdown job is queued. Later submissions
    /// are counted as dropped (`outlet_closed`).
    pub async fn shutdown(&self) {
        futures_util::future::join_all(self.intake.iter().map(|tx| intake::answered(tx, Intake::Shutdown))).await;
        for outlet in self.hits.iter() {
            outlet.queue.closing.store(true, Ordering::Relaxed);
            outlet.queue.answered(Job::Shutdown).await;
        }
        for outlet in self.records.iter() {
            outlet.queue.closing.store(true, Ordering::Relaxed);
            outlet.queue.answered(Job::Shutdown).await;
        }
    }

    /// Wakes idle consumers for their time-based work. Returns false once every queue is closed.
    pub fn tick(&self) -> bool {
        let mut open = false;
        for outlet in self.records.iter() {
            open |= outlet.queue.tick();
        }
        for outlet in self.hits.iter() {
            open |= outlet.queue.tick();
        }
        open
    }
}

/// Records that are not hits of their own, written to the raw-record outlets together
/// ([`Dispatcher::records`]): handed on when the batch drops.
pub struct RecordBatch<'a> {
    dispatcher: &'a Dispatcher,
    lines: Lines,
    offered: Offered,
}

impl RecordBatch<'_> {
    /// Adds a record of a hit received at `at`, which `write` appends as its line (newline
    /// included).
    pub fn write(&mut self, at: Timestamp, write: impl FnOnce(&mut Vec<u8>)) {
        self.dispatcher.gather(&mut self.lines, &mut self.offered, at, write);
    }
}

impl Drop for RecordBatch<'_> {
    fn drop(&mut self) {
        self.dispatcher.hand_on(&mut self.lines, &mut self.offered);
    }
}

/// Why a `try_send` failed, as a metric label.
pub(super) fn send_error<T>(err: &mpsc::error::TrySendError<T>) -> &'static str {
    match err {
        mpsc::error::TrySendError::Full(_) => "queue_full",
        mpsc::error::TrySendError::Closed(_) => "outlet_closed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{HitBuilder, RequestMeta};

    #[test]
    fn a_line_cut_short_is_dropped_and_whole_lines_stay() {
        let mut lines = Lines { buf: b"{\"a\":1}\n{\"b\":2}\n{\"c\"".to_vec(), count: 2, received_at: Some(Timestamp::now()) };
        lines.repair();
        assert_eq!(lines.buf, b"{\"a\":1}\n{\"b\":2}\n");
        let mut first = Lines { buf: b"{\"c\"".to_vec(), count: 0, received_at: Some(Timestamp::now()) };
        first.repair();
        assert!(first.buf.is_empty() && first.received_at.is_none());
    }

    #[tokio::test]
    async fn a_raw_record_outlet_holds_at_most_its_capacity_in_records() {
        let (outlet, mut rx) = RecordOutlet::new("test", 5);
        let dispatcher = Dispatcher::new(vec![outlet.clone()], vec![]);
        let parse = ParseSettings::default();
        for n in 0..8 {
            let mut b = HitBuilder::new(&parse, Timestamp::now());
            b.add_encoded(&format!("pixel_id=1&event=E&event_id=e{n}"));
            dispatcher.submit_record(&b.finish(RequestMeta::default()));
        }
        assert_eq!(outlet.places.waiting(), 5);
        let mut taken = 0;
        while let Ok(Job::Deliver(records)) = rx.try_recv() {
            taken += records.count();
        }
        assert_eq!(taken, 5, "three records over the capacity were dropped");
        assert_eq!(outlet.places.waiting(), 0, "taking the records gives their places back");
        assert_eq!(dispatcher.queued_bytes.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_hit_outlet_takes_an_intake_batch_in_one_job_and_holds_at_most_its_capacity_in_hits() {
        let shed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let counted = shed.clone();
        let (outlet, mut rx) = HitOutlet::new("test", 5);
        let outlet = outlet.with_shed(Arc::new(move |reason, n| counted.lock().unwrap().push((reason, n))));
        let dispatcher = Dispatcher::new(vec![], vec![outlet.clone()]);
        hand_on_batch(&dispatcher, 0..3);
        hand_on_batch(&dispatcher, 3..6);
        assert_eq!(outlet.places.waiting(), 3);
        assert_eq!(*shed.lock().unwrap(), [("queue_full", 3)], "a batch that does not fit is shed whole, and counted");
        let Ok(Job::Deliver(hits)) = rx.try_recv() else { panic!("one job for the first batch") };
        assert!(rx.try_recv().is_err(), "one job per batch");
        let taken: Vec<_> = hits.take().collect();
        assert_eq!(outlet.places.waiting(), 0, "taking the hits gives their places back");
        let ids: Vec<&str> = taken.iter().map(|h| h.event_id()).collect();
        assert_eq!(ids, ["e0", "e1", "e2"]);
    }

    /// Shapes the hits `pixel_id=1&event=E&event_id=e{n}` for each `n` of `ids` and hands them on
    /// as one intake batch.
    fn hand_on_batch(dispatcher: &Dispatcher, ids: std::ops::Range<usize>) {
        let parse = ParseSettings::default();
        let (mut lines, mut offered) = (Lines::default(), Offered::default());
        for n in ids {
            let mut b = HitBuilder::new(&parse, Timestamp::now());
            b.add_encoded(&format!("pixel_id=1&event=E&event_id=e{n}"));
            let hit = b.finish_draft(RequestMeta::default());
            dispatcher.gather(&mut lines, &mut offered, hit.received_at(), |out| hit.write_line(out));
            dispatcher.offer_hit(hit, &mut offered);
        }
        dispatcher.hand_on(&mut lines, &mut offered);
    }

    #[tokio::test]
    async fn the_raw_record_outlets_get_every_line_and_a_hit_outlet_the_hits_its_gate_wants() {
        let (records, mut records_rx) = RecordOutlet::new("file", 100);
        let (outlet, mut rx) = HitOutlet::new("test", 100);
        let outlet = outlet.with_gate(Arc::new(|hit: &DraftHit| hit.event_id() == "e7"));
        let dispatcher = Dispatcher::new(vec![records], vec![outlet]);
        hand_on_batch(&dispatcher, 0..10);
        let Ok(Job::Deliver(records)) = records_rx.try_recv() else { panic!("the lines for the raw-record outlet") };
        assert_eq!(records.count(), 10);
        let Ok(Job::Deliver(hits)) = rx.try_recv() else { panic!("the one hit the gate wanted") };
        let ids: Vec<String> = hits.take().map(|h| h.event_id().to_owned()).collect();
        assert_eq!(ids, ["e7"]);
        assert_eq!(dispatcher.hit_budget.used(), 0, "the hit's bytes came back when it dropped");
    }
}
