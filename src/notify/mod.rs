//! Notices a tenant must act on (`docs/notifications.md`): a destination's credentials became
//! unusable (Meta answered code 190 or 102), once per state change, never per failed event, with
//! nothing secret in it. Sent to an EventBridge bus (`--notify-event-bus`) off the forwarder's
//! way: a bounded queue, a task of its own, retries of what may succeed later, and every notice
//! that cannot be delivered counted and logged.
//!
//! * [`eventbridge`] — `PutEvents`, with per-entry retry of the retryable error codes.

pub mod eventbridge;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::metrics as m;
use crate::record::Timestamp;

/// `detail-type` of the notice.
pub const INVALIDATED: &str = "Destination Credentials Invalidated";

/// Notices that may wait for the sender; past it, a notice is counted and logged as dropped.
const QUEUE: usize = 1_000;

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

/// Where notices go; cloned into whoever may raise one.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Invalidated>,
}

impl Notifier {
    /// Notices to EventBridge bus `bus`, sent by a task on the current runtime.
    pub async fn eventbridge(bus: String) -> Notifier {
        let sender = eventbridge::Sender::from_env(bus).await;
        let (tx, mut rx) = mpsc::channel::<Invalidated>(QUEUE);
        tokio::spawn(async move {
            while let Some(notice) = rx.recv().await {
                sender.send(&notice).await;
            }
        });
        Notifier { tx }
    }

    /// Queues `notice`; never waits.
    pub fn invalidated(&self, notice: Invalidated) {
        if let Err(err) = self.tx.try_send(notice) {
            metrics::counter!(m::NOTIFICATIONS, "channel" => "eventbridge", "outcome" => "dropped").increment(1);
            tracing::error!(error = %err, "a credentials-invalidated notice was dropped: the notice queue is full or closed (see pixelgate_notifications_total)");
        }
    }
}
