//! The queues in front of the outlets, typed by what each outlet takes.
//!
//! A raw-record outlet (the file or Firehose sink) takes [`Records`]: each hit's record already
//! written as its NDJSON line, many lines to a job, so the line is written once, on the thread
//! that shaped the hit, and the sink only moves bytes. A hit outlet (the forwarder) takes
//! [`Hits`]: each hit as a shared [`QueuedHit`], the draft record itself, moved in after its line
//! was written (no copy), with that line (a slice of the same buffer the sink gets), only for the
//! hits its [`Gate`] lets through, and those of one intake batch in one job. Both get the same
//! control jobs ([`Job`]): a barrier to answer once everything before it is delivered, a tick
//! for time-based work, and shutdown.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::budget::Budget;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::record::{DraftHit, Timestamp};

/// A unit of work for an outlet's consumer, carrying `T` (what the outlet delivers).
#[derive(Debug)]
pub enum Job<T> {
    /// Something to deliver.
    Deliver(T),
    /// Answer once everything queued before this job has been delivered or accounted for.
    Barrier(oneshot::Sender<()>),
    /// Nothing to deliver: a chance for time-based work (rotation, batch ageing) while idle.
    Tick,
    /// Deliver everything queued, release resources, answer, and stop. Jobs that race in behind
    /// it are still delivered: the consumer closes its queue and drains it before answering.
    Shutdown(oneshot::Sender<()>),
}

/// What a raw-record outlet's consumer receives.
pub type RecordJobs = mpsc::Receiver<Job<Records>>;

/// What a hit outlet's consumer receives.
pub type HitJobs = mpsc::Receiver<Job<Hits>>;

/// A hit while it waits in the queues. Its bytes count against the hit outlets' budget until the
/// last outlet lets go of it.
#[derive(Debug)]
pub struct QueuedHit {
    pub(super) hit: DraftHit,
    pub(super) bytes: usize,
    pub(super) budget: Arc<Budget>,
}

impl Deref for QueuedHit {
    type Target = DraftHit;
    fn deref(&self) -> &DraftHit {
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
        self.budget.give_waiting(self.bytes);
    }
}

/// Records as their NDJSON lines, newline included, one after another, all received in the same
/// UTC hour (the file sink's partition). Their bytes count against the dispatcher's budget, and
/// their number against the outlet's capacity, until the outlet lets go of them.
#[derive(Debug)]
pub struct Records {
    pub(super) lines: Bytes,
    pub(super) received_at: Timestamp,
    /// Shared by every outlet the lines went to: gives the bytes back when the last lets go.
    pub(super) _bytes: Arc<Reservation>,
    /// One place in this outlet's queue per record.
    pub(super) places: Held,
}

impl Records {
    /// The lines, each ending in `\n`.
    pub fn lines(&self) -> &Bytes {
        &self.lines
    }

    /// How many records.
    pub fn count(&self) -> usize {
        self.places.count
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

/// Hits for a hit outlet, those of one intake batch together (one queue operation for many
/// hits). Their number counts against the outlet's capacity until its consumer takes them.
#[derive(Debug)]
pub struct Hits {
    pub(super) hits: Vec<Arc<QueuedHit>>,
    /// One place in this outlet's queue per hit, given back when the consumer takes them.
    pub(super) _places: Held,
}

impl Hits {
    /// The hits, in the order they were shaped; their places in the queue are given back.
    pub fn take(self) -> impl Iterator<Item = Arc<QueuedHit>> {
        let Hits { hits, _places } = self;
        drop(_places);
        hits.into_iter()
    }
}

/// The places in an outlet's queue, counted in records or hits rather than jobs (a job carries
/// many), so that its capacity means the same whatever the batching.
#[derive(Debug, Clone)]
pub(super) struct Places {
    waiting: Arc<AtomicUsize>,
    capacity: usize,
}

impl Places {
    fn new(capacity: usize) -> Places {
        Places { waiting: Arc::new(AtomicUsize::new(0)), capacity }
    }

    /// Takes `count` places if they fit; `None` (and nothing taken) if they do not.
    pub(super) fn take(&self, count: usize) -> Option<Held> {
        if self.waiting.fetch_add(count, Ordering::Relaxed) + count > self.capacity {
            self.waiting.fetch_sub(count, Ordering::Relaxed);
            return None;
        }
        Some(Held { count, waiting: self.waiting.clone() })
    }

    /// Places taken and not given back.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// Places a job holds in its outlet's queue, given back when it drops.
#[derive(Debug)]
pub(super) struct Held {
    count: usize,
    waiting: Arc<AtomicUsize>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.waiting.fetch_sub(self.count, Ordering::Relaxed);
    }
}

/// Bytes taken from the dispatcher's budget, given back on drop.
#[derive(Debug)]
pub(super) struct Reservation {
    pub(super) bytes: usize,
    pub(super) budget: Arc<AtomicUsize>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Whether a hit outlet wants a hit (its pixel id or why it has none, its flags, its
/// [`Routing`](crate::record::Routing)); asked once the hit's record line is written, before the
/// hit is queued for the outlet. Never waits. A gate counts what it turns away.
pub type Gate = Arc<dyn Fn(&DraftHit) -> bool + Send + Sync>;

/// What a hit outlet does with the count of hits it wanted but had no room for (the queue or
/// the byte budget full, the outlet closed), given the reason.
pub type Shed = Arc<dyn Fn(&'static str, u64) + Send + Sync>;

/// The sending half of one outlet's queue, and the flag its consumer watches at shutdown.
#[derive(Debug)]
pub(super) struct Queue<T> {
    /// Name used in logs and metric labels.
    pub(super) name: &'static str,
    /// Bounded so that memory stays bounded whatever the outlet's state.
    pub(super) tx: mpsc::Sender<Job<T>>,
    /// Set when shutdown begins, before the [`Job::Shutdown`] is queued, so a consumer stuck
    /// retrying (and so not reading its queue) switches to its bounded give-up path.
    pub(super) closing: Arc<AtomicBool>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue { name: self.name, tx: self.tx.clone(), closing: self.closing.clone() }
    }
}

impl<T> Queue<T> {
    fn new(name: &'static str, capacity: usize) -> (Queue<T>, mpsc::Receiver<Job<T>>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Queue { name, tx, closing: Arc::new(AtomicBool::new(false)) }, rx)
    }

    /// Queues an answerable job and waits for its answer (at once if the consumer has stopped).
    pub(super) async fn answered(&self, job: fn(oneshot::Sender<()>) -> Job<T>) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(job(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Offers a tick; false once the queue is closed.
    pub(super) fn tick(&self) -> bool {
        !matches!(self.tx.try_send(Job::Tick), Err(mpsc::error::TrySendError::Closed(_)))
    }
}

/// A raw-record outlet's queue: holds at most `capacity` records (not jobs).
#[derive(Debug, Clone)]
pub struct RecordOutlet {
    pub(super) queue: Queue<Records>,
    /// Records waiting in the queue.
    pub(super) places: Places,
}

impl RecordOutlet {
    /// A queue of `capacity` records for the raw-record outlet `name`, and its receiving half
    /// for the consumer.
    pub fn new(name: &'static str, capacity: usize) -> (RecordOutlet, RecordJobs) {
        let capacity = capacity.max(1);
        let (queue, rx) = Queue::new(name, capacity);
        (RecordOutlet { queue, places: Places::new(capacity) }, rx)
    }

    /// The flag raised when shutdown begins; for the consumer to watch while it retries.
    pub fn closing(&self) -> Arc<AtomicBool> {
        self.queue.closing.clone()
    }
}

/// A hit outlet's queue (holding at most `capacity` hits, not jobs), with the gate that decides
/// which hits it wants.
#[derive(Clone)]
pub struct HitOutlet {
    pub(super) queue: Queue<Hits>,
    /// Hits waiting in the queue.
    pub(super) places: Places,
    /// Hits this outlet would only discard (e.g. the forwarder, for a pixel known to have no
    /// credentials) are not built or queued for it.
    pub(super) gate: Option<Gate>,
    /// Counts what is shed; without it, shed hits are counted as dropped records of the outlet.
    pub(super) shed: Option<Shed>,
}

impl std::fmt::Debug for HitOutlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HitOutlet").field("name", &self.queue.name).field("gated", &self.gate.is_some()).finish_non_exhaustive()
    }
}

impl HitOutlet {
    /// A queue of `capacity` hits for the hit outlet `name`, and its receiving half for the
    /// consumer.
    pub fn new(name: &'static str, capacity: usize) -> (HitOutlet, HitJobs) {
        let capacity = capacity.max(1);
        let (queue, rx) = Queue::new(name, capacity);
        (HitOutlet { queue, places: Places::new(capacity), gate: None, shed: None }, rx)
    }

    /// Queues only the hits `gate` lets through.
    pub fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Counts what the outlet sheds with `shed`.
    pub fn with_shed(mut self, shed: Shed) -> Self {
        self.shed = Some(shed);
        self
    }

    /// The flag raised when shutdown begins; for the consumer to watch while it retries.
    pub fn closing(&self) -> Arc<AtomicBool> {
        self.queue.closing.clone()
    }

    /// Whether `hit` goes to this outlet.
    pub(super) fn wants(&self, hit: &DraftHit) -> bool {
        self.gate.as_ref().is_none_or(|gate| gate(hit))
    }
}
