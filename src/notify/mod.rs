//! Notices a tenant must act on (`docs/notifications.md`): a destination's credentials became
//! unusable (Meta answered code 190 or 102), once per state change, never per failed event, with
//! nothing secret in it. Sent off the forwarder's way: a bounded queue, a task of its own, each
//! notice to every [`Channel`], retries of what may succeed later, and every notice that cannot be
//! delivered counted and logged.
//!
//! * [`eventbridge`] — `PutEvents` to a bus (`--notify-event-bus`), with per-entry retry of the
//!   retryable error codes.
//! * [`webhook`] — a signed `POST` to the account's webhook, to public addresses only.

pub mod eventbridge;
pub mod webhook;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::metrics as m;
use crate::record::Timestamp;

/// `detail-type` of the notice on EventBridge.
pub const INVALIDATED: &str = "Destination Credentials Invalidated";
/// The notice's type where it names itself (the webhook's body and `pixelgate-event` header).
pub const INVALIDATED_TYPE: &str = "pixelgate.destination.invalidated";

/// Notices queued or being delivered at once; past it, a notice is counted and logged as dropped.
const QUEUE: usize = 1_000;
/// Deliveries in progress at once per channel (a slow webhook holds one while it retries).
const CONCURRENT: usize = 64;

/// A destination's credentials for a pixel are no longer usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invalidated {
    /// The pixel's account; null for a pixel registered to no account.
    pub account_id: Option<String>,
    /// The pixel.
    pub pixel_id: String,
    /// `meta`.
    pub destination: &'static str,
    /// What the platform answered (Meta: 190 or 102).
    pub code: Option<i64>,
    /// When pixelgate learned it: RFC 3339, UTC, milliseconds (as in the records).
    pub at: Timestamp,
}

/// Somewhere notices go. A new channel is a file beside `eventbridge.rs` that implements this.
pub trait Channel: Send + Sync + 'static {
    /// Its name in metrics and logs.
    fn name(&self) -> &'static str;

    /// Delivers `notice`, or gives it up: retries, counting and logging are the channel's.
    fn deliver<'a>(&'a self, notice: &'a Invalidated) -> BoxFuture<'a, ()>;
}

/// Where notices go; cloned into whoever may raise one.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<(u64, Invalidated)>,
    channels: Arc<[&'static str]>,
    pending: Arc<Pending>,
}

/// Notices queued or being delivered, by sequence number, for whoever must wait for them (the
/// Lambda drain, for those raised since its invocation began; shutdown, for all).
#[derive(Default)]
struct Pending {
    /// The last sequence number given.
    raised: AtomicU64,
    open: Mutex<BTreeSet<u64>>,
    changed: Notify,
}

impl Pending {
    fn open(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn done(&self, seq: u64) {
        self.open().remove(&seq);
        self.changed.notify_waiters();
    }

    /// Returns once no notice numbered above `after` is open.
    async fn settled_after(&self, after: u64) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.open().range(after + 1..).next().is_none() {
                return;
            }
            changed.await;
        }
    }
}

/// One notice's channels still delivering it.
struct Settling {
    seq: u64,
    left: AtomicUsize,
    pending: Arc<Pending>,
}

/// Marks one channel done with a notice when dropped: after its delivery, or if it panicked.
struct Done(Arc<Settling>);

impl Drop for Done {
    fn drop(&mut self) {
        if self.0.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.pending.done(self.0.seq);
        }
    }
}

impl Notifier {
    /// Notices to every one of `channels`, sent by tasks on the current runtime; `None` if there
    /// are none.
    pub fn start(channels: Vec<Arc<dyn Channel>>) -> Option<Notifier> {
        if channels.is_empty() {
            return None;
        }
        let names = channels.iter().map(|c| c.name()).collect();
        let (tx, mut rx) = mpsc::channel::<(u64, Invalidated)>(QUEUE);
        // Each channel has its own room: a webhook that never answers (one tenant's) holds only
        // webhook deliveries back, never EventBridge's.
        let channels: Vec<(Arc<dyn Channel>, Arc<Semaphore>)> = channels.into_iter().map(|c| (c, Arc::new(Semaphore::new(CONCURRENT)))).collect();
        let pending = Arc::new(Pending::default());
        let settle = pending.clone();
        tokio::spawn(async move {
            while let Some((seq, notice)) = rx.recv().await {
                let notice = Arc::new(notice);
                // The notice is settled when its last channel is done with it, however that
                // delivery ends (a panic included).
                let left = Arc::new(Settling { seq, left: AtomicUsize::new(channels.len()), pending: settle.clone() });
                for (channel, room) in &channels {
                    let (channel, room, notice, left) = (channel.clone(), room.clone(), notice.clone(), left.clone());
                    tokio::spawn(async move {
                        let _done = Done(left);
                        let _permit = room.acquire_owned().await.expect("a channel's semaphore is never closed");
                        channel.deliver(&notice).await;
                    });
                }
            }
        });
        Some(Notifier { tx, channels: names, pending })
    }

    /// Notices queued or still being delivered.
    pub fn pending(&self) -> usize {
        self.pending.open().len()
    }

    /// The number of the last notice raised: what [`Notifier::settled_after`] takes.
    pub fn raised(&self) -> u64 {
        self.pending.raised.load(Ordering::Acquire)
    }

    /// Returns once every notice raised so far is delivered or given up (each channel's retries
    /// included). The caller bounds the wait.
    pub async fn settled(&self) {
        self.pending.settled_after(0).await
    }

    /// Returns once every notice raised after [`Notifier::raised`] answered `after` is delivered
    /// or given up; earlier ones still retrying are not waited for. The caller bounds the wait.
    pub async fn settled_after(&self, after: u64) {
        self.pending.settled_after(after).await
    }

    /// Queues `notice`; never waits. Past [`QUEUE`] notices queued or being delivered, it is
    /// dropped (counted and logged).
    pub fn invalidated(&self, notice: Invalidated) {
        let seq = self.pending.raised.fetch_add(1, Ordering::AcqRel) + 1;
        let room = {
            let mut open = self.pending.open();
            // The number is new, so it goes in whenever there is room.
            open.len() < QUEUE && open.insert(seq)
        };
        let err = match room {
            false => "the notice queue is full".to_owned(),
            true => match self.tx.try_send((seq, notice)) {
                Ok(()) => return,
                Err(err) => {
                    self.pending.done(seq);
                    err.to_string()
                }
            },
        };
        for channel in self.channels.iter() {
            metrics::counter!(m::NOTIFICATIONS, "channel" => *channel, "outcome" => "dropped").increment(1);
        }
        tracing::error!(error = %err, "a credentials-invalidated notice was dropped: the notice queue is full or closed (see pixelgate_notifications_total)");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A channel whose deliveries wait until released; a pixel id of "panic" panics instead.
    struct Held(Arc<Notify>);

    impl Channel for Held {
        fn name(&self) -> &'static str {
            "held"
        }

        fn deliver<'a>(&'a self, notice: &'a Invalidated) -> BoxFuture<'a, ()> {
            Box::pin(async move {
                assert_ne!(notice.pixel_id, "panic", "a channel that panics");
                self.0.notified().await;
            })
        }
    }

    fn notice(pixel: &str) -> Invalidated {
        Invalidated { account_id: None, pixel_id: pixel.into(), destination: "meta", code: Some(190), at: Timestamp::now() }
    }

    async fn settles(f: impl Future<Output = ()>) -> bool {
        tokio::time::timeout(Duration::from_millis(200), f).await.is_ok()
    }

    #[tokio::test]
    async fn a_drain_waits_for_the_notices_raised_since_it_began_and_a_panic_still_settles() {
        let release = Arc::new(Notify::new());
        let notifier = Notifier::start(vec![Arc::new(Held(release.clone()))]).unwrap();
        notifier.invalidated(notice("1"));
        let before = notifier.raised();
        assert!(settles(notifier.settled_after(before)).await, "nothing raised since");
        notifier.invalidated(notice("2"));
        assert!(!settles(notifier.settled_after(before)).await, "the new notice is still held");
        assert_eq!(notifier.pending(), 2);
        tokio::time::sleep(Duration::from_millis(20)).await;
        release.notify_waiters();
        assert!(settles(notifier.settled()).await, "both delivered");
        assert_eq!(notifier.pending(), 0);

        notifier.invalidated(notice("panic"));
        assert!(settles(notifier.settled()).await, "a delivery that panicked is settled");
    }
}
