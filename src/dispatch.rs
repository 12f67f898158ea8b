//! Hands each hit to its outlets without ever making the pixel answer wait.
//!
//! An outlet (the raw-record sink today, the Conversions API forwarder later) owns a bounded FIFO
//! queue of [`Job`]s and a consumer that drains it. [`Dispatcher::submit`] offers the hit to every
//! outlet with a non-blocking `try_send`; a full queue is counted and logged, never silent. Queued
//! hits are bounded twice: by count per queue and by their bytes across all queues, so a stalled
//! outlet cannot take more memory than `--queue-max-bytes` whatever the hits carry.
//! [`Dispatcher::flush`] puts a [`Job::Barrier`] behind everything submitted so far and resolves when
//! every consumer has reached it, i.e. when everything before it has been delivered or accounted
//! for. Graceful shutdown uses it; so does the Lambda drain, per invocation.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::hit::Hit;
use crate::metrics as m;

/// Default cap on the bytes of hits waiting in the queues (`--queue-max-bytes`).
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// A unit of work for an outlet's consumer.
#[derive(Debug)]
pub enum Job {
    /// A hit to deliver (shared by every outlet; derefs to [`Hit`]).
    Hit(Arc<QueuedHit>),
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

/// Whether an outlet wants a hit at all; asked before the hit is queued for it.
pub type Gate = Arc<dyn Fn(&Hit) -> bool + Send + Sync>;

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
}

impl std::fmt::Debug for OutletQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutletQueue").field("name", &self.name).field("gated", &self.gate.is_some()).finish_non_exhaustive()
    }
}

impl OutletQueue {
    /// A queue of `capacity` jobs for the outlet `name`, and its receiving half for the consumer.
    pub fn new(name: &'static str, capacity: usize) -> (OutletQueue, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (OutletQueue { name, tx, closing: Arc::new(AtomicBool::new(false)), gate: None }, rx)
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
}

impl Dispatcher {
    /// A dispatcher over the given outlet queues, drained last to first (see [`Dispatcher::flush`]),
    /// holding at most [`DEFAULT_MAX_QUEUED_BYTES`]
    /// of waiting hits.
    pub fn new(outlets: Vec<OutletQueue>) -> Self {
        Dispatcher {
            outlets: outlets.into(),
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            max_bytes: DEFAULT_MAX_QUEUED_BYTES,
            last_full_warning: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Caps the bytes of waiting hits.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Offers the hit to every outlet. Never waits: a full or closed queue, or a full byte
    /// budget, drops the hit for that outlet, counts it under `pixelgate_records_dropped_total`
    /// and logs a warning.
    pub fn submit(&self, hit: Hit) {
        let bytes = hit.approx_bytes();
        if self.queued_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes > self.max_bytes {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            for outlet in self.outlets.iter() {
                metrics::counter!(m::RECORDS_DROPPED, "outlet" => outlet.name, "reason" => "queue_bytes_full").increment(1);
                self.warn_dropped(outlet.name, "queue_bytes_full");
            }
            return;
        }
        let hit = Arc::new(QueuedHit { hit, bytes, budget: self.queued_bytes.clone() });
        for outlet in self.outlets.iter() {
            if outlet.gate.as_ref().is_some_and(|wants| !wants(&hit)) {
                continue;
            }
            if let Err(err) = outlet.tx.try_send(Job::Hit(hit.clone())) {
                let reason = match err {
                    mpsc::error::TrySendError::Full(_) => "queue_full",
                    mpsc::error::TrySendError::Closed(_) => "outlet_closed",
                };
                metrics::counter!(m::RECORDS_DROPPED, "outlet" => outlet.name, "reason" => reason).increment(1);
                self.warn_dropped(outlet.name, reason);
            }
        }
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
        futures_util::future::join_all(self.outlets.iter().map(|outlet| Self::answered(outlet, Job::Barrier))).await;
        for outlet in self.outlets.iter().rev().skip(1) {
            Self::answered(outlet, Job::Barrier).await;
        }
    }

    /// Delivers what every outlet holds, then stops the consumers, one outlet at a time from the
    /// last to the first (see [`Dispatcher::new`]). Later submissions are counted as dropped
    /// (`outlet_closed`).
    pub async fn shutdown(&self) {
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
