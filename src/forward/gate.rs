//! The "no credentials" gate, in one place: which hits are worth forwarding at all.
//!
//! Most pixels never get credentials. Their hits should cost nothing past the raw record: no
//! [`crate::record::Hit`] built, no queue slot, no event conversion. The gate decides twice, with
//! what it knows without waiting:
//!
//! * [`Gate::admits`], on the intake's thread for every hit, before the hit is built: a hit
//!   without a valid pixel id, or of a pixel a store read just found without credentials, is
//!   counted as skipped and goes no further.
//! * [`Gate::batches`], in the forwarder's consumer: what the credentials cache knows (a token
//!   deleted or marked invalid since). A pixel it does not know yet is batched, and a lookup
//!   starts in a task of its own (a few at a time) so the answer is cached within milliseconds,
//!   not when the batch leaves.
//!
//! [`Credentials`] is what the gate and the deliveries ask; [`TokenCache`] is the real one.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::metrics as m;
use crate::pipeline;
use crate::record::{PixelId, PixelIdError};
use crate::tokens::{TokenCache, UsableToken};

/// Most credential lookups running ahead of batches at once.
const AHEAD_LOOKUPS: usize = 8;

/// Where the forwarder gets a pixel's credentials.
pub trait Credentials: Send + Sync + 'static {
    /// The credentials to use for `pixel`, if it has usable ones. `Err` when the store cannot be
    /// asked (the message is for logs and never carries a credential).
    fn usable(&self, pixel: &PixelId) -> impl Future<Output = Result<Option<UsableToken>, String>> + Send;

    /// The platform called this version of the pixel's credentials invalid: stop handing it out
    /// until new ones are set.
    fn mark_invalid(&self, pixel: &PixelId, version: u64) -> impl Future<Output = ()> + Send;

    /// What is known without asking the store: `Some(true)` usable credentials, `Some(false)`
    /// none, `None` not known yet.
    fn known(&self, _pixel: &PixelId) -> impl Future<Output = Option<bool>> + Send {
        std::future::ready(Some(true))
    }

    /// Whether a store read within the negative TTL found no usable credentials. Never waits;
    /// asked for every hit.
    fn known_without(&self, _pixel: &PixelId) -> bool {
        false
    }
}

/// The gate over a credentials source.
pub struct Gate<S> {
    credentials: Arc<S>,
    /// Lookups started ahead of a batch for pixels not known yet.
    lookups: Arc<Semaphore>,
    /// `pixelgate_capi_events_total{outcome="skipped",reason="no_token"}`, resolved once: it
    /// counts every hit of a pixel without credentials.
    skipped_no_token: metrics::Counter,
}

impl<S: Credentials> Gate<S> {
    /// A gate asking `credentials`.
    pub fn new(credentials: Arc<S>) -> Self {
        let skipped_no_token = metrics::counter!(m::CAPI_EVENTS, "outcome" => "skipped", "reason" => "no_token");
        Gate { credentials, lookups: Arc::new(Semaphore::new(AHEAD_LOOKUPS)), skipped_no_token }
    }

    /// The credentials source.
    pub fn credentials(&self) -> &Arc<S> {
        &self.credentials
    }

    /// Whether a hit of `pixel` should be built and queued for the forwarder. Never waits.
    pub fn admits(&self, pixel: Result<PixelId, PixelIdError>) -> bool {
        match pixel {
            // No pixel, no credentials, no destination: the raw record (flagged) is all there is.
            Err(err) => {
                let reason = match err {
                    PixelIdError::Missing => "rejected_missing_pixel_id",
                    PixelIdError::Invalid => "rejected_bad_pixel_id",
                };
                metrics::counter!(m::CAPI_EVENTS, "outcome" => "skipped", "reason" => reason).increment(1);
                false
            }
            Ok(pixel) if self.credentials.known_without(&pixel) => {
                self.skipped_no_token.increment(1);
                false
            }
            Ok(_) => true,
        }
    }

    /// The gate as a hit outlet's [`pipeline::Gate`].
    pub fn for_outlet(self: &Arc<Self>) -> pipeline::Gate {
        let gate = self.clone();
        Arc::new(move |pixel| gate.admits(pixel))
    }

    /// Whether the consumer should batch a hit of `pixel`: not when the cache knows it has no
    /// usable credentials. Never waits for the store.
    pub async fn batches(&self, pixel: &PixelId) -> bool {
        match self.credentials.known(pixel).await {
            Some(false) => {
                self.skipped_no_token.increment(1);
                false
            }
            Some(true) => true,
            None => {
                if let Ok(permit) = self.lookups.clone().try_acquire_owned() {
                    let (credentials, pixel) = (self.credentials.clone(), *pixel);
                    tokio::spawn(async move {
                        let _ = credentials.usable(&pixel).await;
                        drop(permit);
                    });
                }
                true
            }
        }
    }
}

/// The forwarder's view of the token cache: store errors become a message (never carrying a
/// token), and a failed invalidation is logged, since the forwarder also remembers the rejected
/// version.
impl Credentials for TokenCache {
    async fn usable(&self, pixel: &PixelId) -> Result<Option<UsableToken>, String> {
        TokenCache::usable(self, pixel).await.map_err(|e| e.to_string())
    }

    async fn mark_invalid(&self, pixel: &PixelId, version: u64) {
        if let Err(err) = TokenCache::mark_invalid(self, pixel, version).await {
            tracing::warn!(pixel_id = %pixel, error = %err, "could not mark the access token invalid in the store; it stays unused by this process");
        }
    }

    async fn known(&self, pixel: &PixelId) -> Option<bool> {
        TokenCache::known(self, pixel).await
    }

    fn known_without(&self, pixel: &PixelId) -> bool {
        self.known_tokenless(pixel)
    }
}
