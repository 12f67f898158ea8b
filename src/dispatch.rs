//! Hands each hit to its outlets without ever making the pixel answer wait.
//!
//! An outlet (the raw-record sink today, the Conversions API forwarder later) owns a bounded FIFO
//! queue of [`Job`]s and a consumer that drains it. [`Dispatcher::submit`] offers the hit to every
//! outlet with a non-blocking `try_send`; a full queue is counted and logged, never silent.
//! [`Dispatcher::flush`] puts a [`Job::Barrier`] behind everything submitted so far and resolves when
//! every consumer has reached it, i.e. when everything before it has been delivered or accounted
//! for. Graceful shutdown uses it; so does the Lambda drain, per invocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::hit::Hit;
use crate::metrics as m;

/// A unit of work for an outlet's consumer.
#[derive(Debug)]
pub enum Job {
    /// A hit to deliver.
    Hit(Arc<Hit>),
    /// Answer once everything queued before this job has been delivered or accounted for.
    Barrier(oneshot::Sender<()>),
    /// Nothing to deliver: a chance for time-based work (rotation, batch ageing) while idle.
    Tick,
    /// Deliver everything queued, release resources, answer, and stop. Jobs that race in behind
    /// it are still delivered: the consumer closes its queue and drains it before answering.
    Shutdown(oneshot::Sender<()>),
}

/// The sending half of one outlet's queue.
#[derive(Debug, Clone)]
pub struct OutletQueue {
    /// Name used in logs and metric labels.
    name: &'static str,
    /// Bounded so that memory stays bounded whatever the outlet's state.
    tx: mpsc::Sender<Job>,
}

impl OutletQueue {
    /// A queue of `capacity` jobs for the outlet `name`, and its receiving half for the consumer.
    pub fn new(name: &'static str, capacity: usize) -> (OutletQueue, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (OutletQueue { name, tx }, rx)
    }

    /// Jobs waiting in the queue.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// Fans hits out to the outlets. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    outlets: Arc<[OutletQueue]>,
    /// Unix second of the last "queue full" warning, so a flood logs once per interval.
    last_full_warning: Arc<AtomicU64>,
}

impl Dispatcher {
    /// A dispatcher over the given outlet queues.
    pub fn new(outlets: Vec<OutletQueue>) -> Self {
        Dispatcher { outlets: outlets.into(), last_full_warning: Arc::new(AtomicU64::new(0)) }
    }

    /// Offers the hit to every outlet. Never waits: a full or closed queue drops the hit for that
    /// outlet, counts it under `pixelgate_records_dropped_total` and logs a warning.
    pub fn submit(&self, hit: Hit) {
        let hit = Arc::new(hit);
        for outlet in self.outlets.iter() {
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
    /// given up and counted. Returns at once for an outlet whose consumer has stopped.
    pub async fn flush(&self) {
        let mut waits = Vec::with_capacity(self.outlets.len());
        for outlet in self.outlets.iter() {
            let (tx, rx) = oneshot::channel();
            if outlet.tx.send(Job::Barrier(tx)).await.is_ok() {
                waits.push(rx);
            }
        }
        for rx in waits {
            let _ = rx.await;
        }
    }

    /// Delivers what every outlet holds, then stops the consumers. Later submissions are counted
    /// as dropped (`outlet_closed`).
    pub async fn shutdown(&self) {
        let mut waits = Vec::with_capacity(self.outlets.len());
        for outlet in self.outlets.iter() {
            let (tx, rx) = oneshot::channel();
            if outlet.tx.send(Job::Shutdown(tx)).await.is_ok() {
                waits.push(rx);
            }
        }
        for rx in waits {
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

    /// Jobs waiting, per outlet.
    pub fn depths(&self) -> impl Iterator<Item = (&'static str, usize)> + '_ {
        self.outlets.iter().map(|o| (o.name, o.depth()))
    }
}
