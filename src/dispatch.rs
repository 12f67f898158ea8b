//! Hands each hit to its outlets without ever making the pixel answer wait.
//!
//! An outlet owns a bounded FIFO queue of [`Job`]s and a consumer that drains it. There are two
//! kinds. A raw-record outlet (the file or Firehose sink, [`OutletQueue::for_records`]) takes
//! each hit's record already written as its NDJSON line, many lines to a [`Records`] job: the
//! line is written once, on the thread that shaped the hit, straight from the builder's buffer,
//! and the sink moves bytes. A hit outlet (the Conversions API forwarder, [`OutletQueue::new`])
//! takes each hit as a shared [`Hit`], built only for the hits its gate lets through.
//! [`Dispatcher::submit`] offers a hit to every outlet with a non-blocking `try_send`; a full queue
//! is counted and logged, never silent. Waiting hits are bounded twice: by count per queue
//! (records, for a raw-record outlet) and by their bytes across all queues, so a stalled outlet
//! cannot take more memory than `--queue-max-bytes` whatever the hits carry.
//! [`Dispatcher::flush`] puts a [`Job::Barrier`] behind everything submitted so far and resolves when
//! every consumer has reached it, i.e. when everything before it has been delivered or accounted
//! for. Graceful shutdown uses it; so does the Lambda drain, per invocation.
//!
//! In front of the outlets sits an optional intake ([`Dispatcher::with_intake`]): the edge hands
//! it a pixel request as captured ([`Captured`]: receipt time and what shaping reads of the
//! request head, copied out so the request itself is released) and answers; intake tasks on the
//! runtime turn what accumulated into hits in batches and offer them to the outlets. Parsing and
//! hashing a run of hits back to back keeps that code and its data in the CPU caches, where
//! interleaving it with the network stack per request did not. Flush and shutdown pass through the intake first, so they still cover every hit
//! answered before them.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::hit::{Fields, Hit, Timestamp};
use crate::metrics as m;
use crate::params::{DraftHit, RequestHead};

/// Default cap on the bytes of hits waiting in the queues (`--queue-max-bytes`).
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// A unit of work for an outlet's consumer.
#[derive(Debug)]
pub enum Job {
    /// A hit to deliver (shared by every hit outlet; derefs to [`Hit`]).
    Hit(Arc<QueuedHit>),
    /// Record lines to deliver, for a raw-record outlet.
    Records(Records),
    /// Answer once everything queued before this job has been delivered or accounted for.
    Barrier(oneshot::Sender<()>),
    /// Nothing to deliver: a chance for time-based work (rotation, batch ageing) while idle.
    Tick,
    /// Deliver everything queued, release resources, answer, and stop. Jobs that race in behind
    /// it are still delivered: the consumer closes its queue and drains it before answering.
    Shutdown(oneshot::Sender<()>),
}

/// A hit while it waits in the queues. Its bytes count against the dispatcher's budget until the
/// last outlet lets go of it.
#[derive(Debug)]
pub struct QueuedHit {
    hit: Hit,
    bytes: usize,
    budget: Arc<AtomicUsize>,
}

impl Deref for QueuedHit {
    type Target = Hit;
    fn deref(&self) -> &Hit {
        &self.hit
    }
}

impl QueuedHit {
    /// The hit's approximate heap bytes, as counted against the queue budget.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for QueuedHit {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Records as their NDJSON lines, newline included, one after another, all received in the same
/// UTC hour (the file sink's partition). Their bytes count against the dispatcher's budget, and
/// their number against the outlet's capacity, until the outlet lets go of them.
#[derive(Debug)]
pub struct Records {
    lines: Bytes,
    count: usize,
    received_at: Timestamp,
    /// Shared by every outlet the lines went to: gives the bytes back when the last lets go.
    _bytes: Arc<Reservation>,
    /// This outlet's count of waiting records.
    waiting: Arc<AtomicUsize>,
}

impl Records {
    /// The lines, each ending in `\n`.
    pub fn lines(&self) -> &Bytes {
        &self.lines
    }

    /// How many records.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Receipt time of the first record; every record is from the same UTC hour.
    pub fn received_at(&self) -> Timestamp {
        self.received_at
    }

    /// Each line as its own buffer (no copy), newline included.
    pub fn each_line(&self) -> impl Iterator<Item = Bytes> + '_ {
        let mut start = 0;
        std::iter::from_fn(move || {
            let rest = &self.lines[start..];
            let end = start + memchr::memchr(b'\n', rest)? + 1;
            let line = self.lines.slice(start..end);
            start = end;
            Some(line)
        })
    }
}

impl Drop for Records {
    fn drop(&mut self) {
        self.waiting.fetch_sub(self.count, Ordering::Relaxed);
    }
}

/// Bytes taken from the dispatcher's budget, given back on drop.
#[derive(Debug)]
struct Reservation {
    bytes: usize,
    budget: Arc<AtomicUsize>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Whether a hit outlet wants the hits of a pixel (given its pixel id, if any); asked before a
/// hit is built and queued for it.
pub type Gate = Arc<dyn Fn(Option<&str>) -> bool + Send + Sync>;

/// The sending half of one outlet's queue.
#[derive(Clone)]
pub struct OutletQueue {
    /// Name used in logs and metric labels.
    name: &'static str,
    /// Bounded so that memory stays bounded whatever the outlet's state.
    tx: mpsc::Sender<Job>,
    /// Set when shutdown begins, before the [`Job::Shutdown`] is queued, so a consumer stuck
    /// retrying (and so not reading its queue) switches to its bounded give-up path.
    closing: Arc<AtomicBool>,
    /// Hits this outlet would only discard (e.g. the forwarder, for a pixel known to have no
    /// token) are not queued for it; the gate counts what it turns away.
    gate: Option<Gate>,
    /// A raw-record outlet: takes [`Job::Records`], not [`Job::Hit`].
    records: bool,
    /// Records waiting in the queue (raw-record outlets), bounded by `capacity`.
    waiting: Arc<AtomicUsize>,
    capacity: usize,
}

impl std::fmt::Debug for OutletQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutletQueue").field("name", &self.name).field("records", &self.records).field("gated", &self.gate.is_some()).finish_non_exhaustive()
    }
}

impl OutletQueue {
    /// A queue of `capacity` hits for the hit outlet `name`, and its receiving half for the
    /// consumer.
    pub fn new(name: &'static str, capacity: usize) -> (OutletQueue, mpsc::Receiver<Job>) {
        Self::with_kind(name, capacity, false)
    }

    /// A queue of `capacity` records for the raw-record outlet `name` (it gets [`Job::Records`]),
    /// and its receiving half for the consumer.
    pub fn for_records(name: &'static str, capacity: usize) -> (OutletQueue, mpsc::Receiver<Job>) {
        Self::with_kind(name, capacity, true)
    }

    fn with_kind(name: &'static str, capacity: usize, records: bool) -> (OutletQueue, mpsc::Receiver<Job>) {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let queue = OutletQueue { name, tx, closing: Arc::new(AtomicBool::new(false)), gate: None, records, waiting: Arc::new(AtomicUsize::new(0)), capacity };
        (queue, rx)
    }

    /// Queues only the hits `gate` lets through.
    pub fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The flag raised when shutdown begins; for the consumer to watch while it retries.
    pub fn closing(&self) -> Arc<AtomicBool> {
        self.closing.clone()
    }
}

/// A pixel request as the edge captured it, for the intake to turn into a hit.
#[derive(Debug)]
pub struct Captured {
    /// When the edge received it.
    pub received_at: Timestamp,
    /// What shaping reads of its head (the query among it), copied out of the request.
    pub head: RequestHead,
}

impl Captured {
    /// Approximate heap bytes, counted against the queue budget while it waits.
    fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Captured>() + self.head.approx_bytes()
    }
}

/// Turns a captured request into its hit (parameters, personal data, client address, flags).
pub type Shaper = Arc<dyn Fn(Captured) -> DraftHit + Send + Sync>;

/// Most bytes of lines an intake task gathers before it hands them on.
const MAX_LINES_BYTES: usize = 1024 * 1024;

/// Record lines being gathered for the raw-record outlets. The buffer handed on is counted
/// against the budget by its capacity, not its length, and the next one starts at the size the
/// last one filled, so what is held stays within twice what is counted for (a Firehose batch
/// keeps lines alive past their job).
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
    count: usize,
    received_at: Option<Timestamp>,
}

impl Lines {
    /// Drops what a write cut short left after the last whole line.
    fn repair(&mut self) {
        let whole = self.buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.buf.truncate(whole);
        if self.count == 0 {
            self.buf.clear();
            self.received_at = None;
        }
    }
}

/// How far an intake task got with a captured request, for counting what a panic cost.
#[derive(Clone, Copy)]
enum Stage {
    Shaping,
    Writing,
    Offering,
}

/// Most captured requests an intake task shapes before it lets other tasks run.
const INTAKE_BATCH: usize = 64;

/// What an intake task is asked to do.
// Nearly every job is a `Captured`: boxing it would add an allocation per hit.
#[allow(clippy::large_enum_variant)]
enum Intake {
    /// Shape this request and offer its hit to the outlets; `bytes` is its share of the budget.
    Captured(Captured, usize),
    /// Answer once everything queued before has been offered to the outlets.
    Barrier(oneshot::Sender<()>),
    /// Shape what is queued, answer, and stop.
    Shutdown(oneshot::Sender<()>),
}

/// Fans hits out to the outlets. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    outlets: Arc<[OutletQueue]>,
    /// Bytes of hits waiting in any queue.
    queued_bytes: Arc<AtomicUsize>,
    /// Most bytes of hits that may wait.
    max_bytes: usize,
    /// Unix second of the last "queue full" warning, so a flood logs once per interval.
    last_full_warning: Arc<AtomicU64>,
    /// The intake tasks' queues, one per runtime worker; empty without an intake.
    intake: Arc<[mpsc::Sender<Intake>]>,
}

impl Dispatcher {
    /// A dispatcher over the given outlet queues, drained last to first (see [`Dispatcher::flush`]),
    /// holding at most [`DEFAULT_MAX_QUEUED_BYTES`]
    /// of waiting hits.
    pub fn new(outlets: Vec<OutletQueue>) -> Self {
        // `offer_hit` marks the outlets a hit goes to in one word.
        assert!(outlets.len() <= 64, "at most 64 outlets");
        Dispatcher {
            outlets: outlets.into(),
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            max_bytes: DEFAULT_MAX_QUEUED_BYTES,
            last_full_warning: Arc::new(AtomicU64::new(0)),
            intake: Arc::new([]),
        }
    }

    /// Puts an intake in front of the outlets: `tasks` tasks, spawned on the current runtime,
    /// each with a queue of `capacity` captured requests, shape what
    /// [`Dispatcher::submit_captured`] hands them with `shaper`. One task per runtime worker
    /// keeps shaping as parallel as the answers.
    pub fn with_intake(mut self, tasks: usize, capacity: usize, shaper: Shaper) -> Self {
        let outlets = self.clone();
        self.intake = (0..tasks.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(capacity.max(1));
                tokio::spawn(run_intake(rx, shaper.clone(), outlets.clone()));
                tx
            })
            .collect();
        self
    }

    /// Hands a captured pixel request to the intake (see [`Dispatcher::with_intake`]); never
    /// waits. Like [`Dispatcher::submit`], a full queue or byte budget drops it, counted for
    /// every outlet and logged.
    pub fn submit_captured(&self, captured: Captured) {
        thread_local! {
            /// Each thread feeds one intake task, so a worker's hits are shaped together.
            static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        assert!(!self.intake.is_empty(), "submit_captured needs Dispatcher::with_intake");
        let bytes = captured.approx_bytes();
        if !self.reserve(bytes) {
            self.dropped_everywhere("queue_bytes_full");
            return;
        }
        let mut shard = SHARD.get();
        if shard == usize::MAX {
            shard = NEXT.fetch_add(1, Ordering::Relaxed);
            SHARD.set(shard);
        }
        if let Err(err) = self.intake[shard % self.intake.len()].try_send(Intake::Captured(captured, bytes)) {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.dropped_everywhere(send_error(&err));
        }
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
    fn dropped_everywhere(&self, reason: &'static str) {
        for outlet in self.outlets.iter() {
            self.dropped(outlet.name, reason, 1);
        }
    }

    /// Caps the bytes of waiting hits.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Offers a pixel hit to every outlet: its record line to the raw-record outlets, the
    /// [`Hit`] (built only if a hit outlet's gate lets it through) to the hit outlets. Never
    /// waits: a full or closed queue, or a full byte budget, drops the hit for that outlet,
    /// counts it under `pixelgate_records_dropped_total` and logs a warning.
    pub fn submit(&self, hit: DraftHit) {
        let mut lines = Lines::default();
        self.gather(&mut lines, &hit, |out| hit.write_line(out));
        self.send_lines(&mut lines);
        self.offer_hit(hit.pixel_id(), || hit.to_hit());
    }

    /// [`Dispatcher::submit`] for a hit that is already a [`Hit`] (e.g. the forwarder's
    /// `capi_failed` records).
    pub fn submit_hit(&self, hit: Hit) {
        let mut lines = Lines::default();
        self.gather(&mut lines, &hit, |out| hit.write_line(out));
        self.send_lines(&mut lines);
        let pixel_id = hit.pixel_id.clone();
        self.offer_hit(pixel_id.as_deref(), || hit);
    }

    /// Adds a record's line (written by `write`) to `lines`, first handing on what `lines`
    /// holds if the record is from another hour or `lines` is full.
    fn gather<F: Fields>(&self, lines: &mut Lines, record: &F, write: impl FnOnce(&mut Vec<u8>)) {
        if !self.outlets.iter().any(|o| o.records) {
            return;
        }
        let at = record.received_at();
        if lines.received_at.is_some_and(|t| t.unix_hour() != at.unix_hour()) || lines.buf.len() >= MAX_LINES_BYTES {
            self.send_lines(lines);
        }
        lines.received_at.get_or_insert(at);
        write(&mut lines.buf);
        lines.count += 1;
    }

    /// Hands the gathered lines to every raw-record outlet, leaving `lines` empty.
    fn send_lines(&self, lines: &mut Lines) {
        let Some(received_at) = lines.received_at.take() else { return };
        let count = std::mem::take(&mut lines.count);
        // The next batch starts at this one's size: the buffer is counted by its capacity,
        // so it is never reserved larger than batches have needed.
        let next = Vec::with_capacity(lines.buf.len());
        let buf = std::mem::replace(&mut lines.buf, next);
        let bytes = buf.capacity() + std::mem::size_of::<Records>();
        let records_outlets = || self.outlets.iter().filter(|o| o.records);
        if !self.reserve(bytes) {
            for outlet in records_outlets() {
                self.dropped(outlet.name, "queue_bytes_full", count);
            }
            return;
        }
        let reservation = Arc::new(Reservation { bytes, budget: self.queued_bytes.clone() });
        let lines = Bytes::from(buf);
        for outlet in records_outlets() {
            if outlet.waiting.fetch_add(count, Ordering::Relaxed) + count > outlet.capacity {
                outlet.waiting.fetch_sub(count, Ordering::Relaxed);
                self.dropped(outlet.name, "queue_full", count);
                continue;
            }
            let job = Records { lines: lines.clone(), count, received_at, _bytes: reservation.clone(), waiting: outlet.waiting.clone() };
            if let Err(err) = outlet.tx.try_send(Job::Records(job)) {
                self.dropped(outlet.name, send_error(&err), count);
            }
        }
    }

    /// Queues the hit `make` builds for every hit outlet whose gate lets `pixel_id`'s hits
    /// through; builds nothing if none does.
    fn offer_hit(&self, pixel_id: Option<&str>, make: impl FnOnce() -> Hit) {
        // Each gate asked once (a gate counts what it turns away); the answers are kept as one
        // bit per outlet, so offering a hit allocates nothing.
        let wanted = self.outlets.iter().enumerate().fold(0u64, |wanted, (i, o)| {
            let wants = !o.records && o.gate.as_ref().is_none_or(|gate| gate(pixel_id));
            wanted | u64::from(wants) << i
        });
        if wanted == 0 {
            return;
        }
        let wanted = || self.outlets.iter().enumerate().filter(move |(i, _)| wanted >> i & 1 == 1).map(|(_, o)| o);
        let hit = make();
        let bytes = hit.approx_bytes();
        if !self.reserve(bytes) {
            for outlet in wanted() {
                self.dropped(outlet.name, "queue_bytes_full", 1);
            }
            return;
        }
        let hit = Arc::new(QueuedHit { hit, bytes, budget: self.queued_bytes.clone() });
        for outlet in wanted() {
            if let Err(err) = outlet.tx.try_send(Job::Hit(hit.clone())) {
                self.dropped(outlet.name, send_error(&err), 1);
            }
        }
    }

    /// Counts `n` hits given up for `outlet` and warns (at most every ten seconds).
    fn dropped(&self, outlet: &'static str, reason: &'static str, n: usize) {
        metrics::counter!(m::RECORDS_DROPPED, "outlet" => outlet, "reason" => reason).increment(n as u64);
        self.warn_dropped(outlet, reason);
    }

    fn warn_dropped(&self, outlet: &str, reason: &str) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let last = self.last_full_warning.load(Ordering::Relaxed);
        if now >= last + 10 && self.last_full_warning.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(outlet, reason, "hits dropped: the outlet cannot keep up (see pixelgate_records_dropped_total)");
        }
    }

    /// Resolves when every hit submitted before this call has been delivered by every outlet, or
    /// given up and counted, and so has what later outlets fed to earlier ones meanwhile (the
    /// forwarder's `capi_failed` records). Returns at once for an outlet whose consumer has stopped.
    ///
    /// Every outlet flushes at once, so a slow Conversions API does not hold back the raw records
    /// (under Lambda the drain may run out of time); then the outlets that others feed flush again.
    pub async fn flush(&self) {
        self.flush_intake().await;
        futures_util::future::join_all(self.outlets.iter().map(|outlet| Self::answered(outlet, Job::Barrier))).await;
        for outlet in self.outlets.iter().rev().skip(1) {
            Self::answered(outlet, Job::Barrier).await;
        }
    }

    /// Resolves when every request captured before this call has been shaped and offered to the
    /// outlets (not yet delivered): from then on its flags are counted. `/metrics` waits for it.
    pub async fn flush_intake(&self) {
        futures_util::future::join_all(self.intake.iter().map(|tx| intake_answered(tx, Intake::Barrier))).await;
    }

    /// Delivers what every outlet holds, then stops the consumers, one outlet at a time from the
    /// last to the first (see [`Dispatcher::new`]). Later submissions are counted as dropped
    /// (`outlet_closed`).
    pub async fn shutdown(&self) {
        futures_util::future::join_all(self.intake.iter().map(|tx| intake_answered(tx, Intake::Shutdown))).await;
        self.to_every_outlet(Job::Shutdown, true).await;
    }

    /// Queues an answerable job behind everything submitted so far on each outlet and waits for
    /// its consumer (if still running) to answer, one outlet at a time from the last to the
    /// first: an outlet may feed the outlets before it (the Conversions API forwarder writes
    /// `capi_failed` records to the raw-record sink), so those are drained after it.
    /// With `closing`, each outlet's closing flag is raised just before its job is queued.
    async fn to_every_outlet(&self, job: fn(oneshot::Sender<()>) -> Job, closing: bool) {
        for outlet in self.outlets.iter().rev() {
            if closing {
                outlet.closing.store(true, Ordering::Relaxed);
            }
            Self::answered(outlet, job).await;
        }
    }

    /// Queues an answerable job on one outlet and waits for its answer (at once if the consumer
    /// has stopped).
    async fn answered(outlet: &OutletQueue, job: fn(oneshot::Sender<()>) -> Job) {
        let (tx, rx) = oneshot::channel();
        if outlet.tx.send(job(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Wakes idle consumers for their time-based work. Returns false once every queue is closed.
    pub fn tick(&self) -> bool {
        let mut open = false;
        for outlet in self.outlets.iter() {
            open |= !matches!(outlet.tx.try_send(Job::Tick), Err(mpsc::error::TrySendError::Closed(_)));
        }
        open
    }
}

/// Queues an answerable job on one intake task and waits for its answer (at once if it stopped).
async fn intake_answered(tx: &mpsc::Sender<Intake>, job: fn(oneshot::Sender<()>) -> Intake) {
    let (ack, answered) = oneshot::channel();
    if tx.send(job(ack)).await.is_ok() {
        let _ = answered.await;
    }
}

/// Why a `try_send` failed, as a metric label.
fn send_error<T>(err: &mpsc::error::TrySendError<T>) -> &'static str {
    match err {
        mpsc::error::TrySendError::Full(_) => "queue_full",
        mpsc::error::TrySendError::Closed(_) => "outlet_closed",
    }
}

/// An intake task: shapes captured requests in batches, hands the batch's record lines to the
/// raw-record outlets together and offers the hits to the hit outlets, until a
/// [`Intake::Shutdown`] (after which what is still queued is shaped too).
async fn run_intake(mut rx: mpsc::Receiver<Intake>, shaper: Shaper, outlets: Dispatcher) {
    let mut batch = Vec::with_capacity(INTAKE_BATCH);
    let mut acks = Vec::new();
    let mut lines = Lines::default();
    while rx.recv_many(&mut batch, INTAKE_BATCH).await > 0 {
        for job in batch.drain(..) {
            match job {
                Intake::Captured(captured, bytes) => {
                    // A bug in shaping one request or writing its line must not stop the task,
                    // and with it every later hit: that hit is counted as dropped instead, for
                    // the outlets it had not reached.
                    let stage = std::cell::Cell::new(Stage::Shaping);
                    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let hit = shaper(captured);
                        stage.set(Stage::Writing);
                        outlets.gather(&mut lines, &hit, |out| hit.write_line(out));
                        stage.set(Stage::Offering);
                        outlets.offer_hit(hit.pixel_id(), || hit.to_hit());
                    }));
                    outlets.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                    if done.is_err() {
                        tracing::error!("shaping a captured pixel request or writing its record panicked; its hit is dropped");
                        match stage.get() {
                            Stage::Shaping => outlets.dropped_everywhere("shaping_failed"),
                            Stage::Writing => {
                                lines.repair();
                                outlets.dropped_everywhere("shaping_failed");
                            }
                            Stage::Offering => {
                                for outlet in outlets.outlets.iter().filter(|o| !o.records) {
                                    outlets.dropped(outlet.name, "shaping_failed", 1);
                                }
                            }
                        }
                    }
                }
                Intake::Barrier(ack) => {
                    outlets.send_lines(&mut lines);
                    let _ = ack.send(());
                }
                Intake::Shutdown(ack) => {
                    rx.close();
                    acks.push(ack);
                }
            }
        }
        outlets.send_lines(&mut lines);
    }
    for ack in acks {
        let _ = ack.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{HitBuilder, ParseSettings, RequestMeta};

    fn captured(n: usize) -> Captured {
        let req = http::Request::get(format!("/p.gif?pixel_id=1&event=E&event_id=e{n}")).body(()).unwrap();
        Captured { received_at: Timestamp::now(), head: RequestHead::capture(&req.into_parts().0, None, 0) }
    }

    fn shaper() -> Shaper {
        let parse = ParseSettings::default();
        Arc::new(move |c: Captured| {
            let mut b = HitBuilder::new(&parse, c.received_at);
            b.add_encoded(c.head.query().unwrap_or(""));
            b.finish_draft(RequestMeta::default())
        })
    }

    type Seen = Arc<std::sync::Mutex<Vec<String>>>;

    /// An outlet consumer that records event ids and answers barriers and shutdown: a hit outlet,
    /// or with `records` a raw-record outlet (event ids read back from the lines).
    fn outlet(capacity: usize, records: bool) -> (OutletQueue, Seen, tokio::task::JoinHandle<()>) {
        let (queue, mut rx) = if records { OutletQueue::for_records("test", capacity) } else { OutletQueue::new("test", capacity) };
        let seen = Seen::default();
        let log = seen.clone();
        let consumer = tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                match job {
                    Job::Hit(hit) => log.lock().unwrap().push(hit.event_id.clone()),
                    Job::Records(records) => {
                        let lines: Vec<_> = records.each_line().collect();
                        assert_eq!(lines.len(), records.count());
                        for line in lines {
                            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
                            log.lock().unwrap().push(v["event_id"].as_str().unwrap().to_owned());
                        }
                    }
                    Job::Barrier(ack) => {
                        let _ = ack.send(());
                    }
                    Job::Tick => {}
                    Job::Shutdown(ack) => {
                        rx.close();
                        let _ = ack.send(());
                    }
                }
            }
        });
        (queue, seen, consumer)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flush_and_shutdown_cover_every_captured_request() {
        let (hits, seen_hits, hit_consumer) = outlet(10_000, false);
        let (records, seen_records, record_consumer) = outlet(10_000, true);
        let dispatcher = Dispatcher::new(vec![records, hits]).with_intake(3, 1000, shaper());
        // Submitted from several threads, so every intake task gets some.
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let d = dispatcher.clone();
                tokio::task::spawn_blocking(move || (0..250).for_each(|i| d.submit_captured(captured(t * 1000 + i))))
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        dispatcher.flush().await;
        for seen in [&seen_hits, &seen_records] {
            assert_eq!(seen.lock().unwrap().len(), 1000, "flush returns once every captured request reached the outlet");
        }
        dispatcher.submit_captured(captured(9999));
        dispatcher.shutdown().await;
        hit_consumer.await.unwrap();
        record_consumer.await.unwrap();
        for seen in [seen_hits, seen_records] {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 1001, "one hit per captured request");
            assert_eq!(seen.iter().collect::<std::collections::HashSet<_>>().len(), 1001);
        }
        assert_eq!(dispatcher.queued_bytes.load(Ordering::Relaxed), 0, "every byte reserved was given back");
    }

    #[tokio::test]
    async fn a_full_byte_budget_drops_captured_requests_before_the_intake() {
        let (queue, seen, consumer) = outlet(10, false);
        let dispatcher = Dispatcher::new(vec![queue]).with_max_bytes(1).with_intake(1, 10, shaper());
        dispatcher.submit_captured(captured(1));
        dispatcher.shutdown().await;
        consumer.await.unwrap();
        assert!(seen.lock().unwrap().is_empty());
        assert_eq!(dispatcher.queued_bytes.load(Ordering::Relaxed), 0);
    }

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
        let (queue, mut rx) = OutletQueue::for_records("test", 5);
        let dispatcher = Dispatcher::new(vec![queue.clone()]);
        let parse = ParseSettings::default();
        for n in 0..8 {
            let mut b = HitBuilder::new(&parse, Timestamp::now());
            b.add_encoded(&format!("pixel_id=1&event=E&event_id=e{n}"));
            dispatcher.submit(b.finish_draft(RequestMeta::default()));
        }
        assert_eq!(queue.waiting.load(Ordering::Relaxed), 5);
        let mut taken = 0;
        while let Ok(Job::Records(records)) = rx.try_recv() {
            taken += records.count();
        }
        assert_eq!(taken, 5, "three records over the capacity were dropped");
        assert_eq!(queue.waiting.load(Ordering::Relaxed), 0, "taking the records gives their places back");
        assert_eq!(dispatcher.queued_bytes.load(Ordering::Relaxed), 0);
    }
}
