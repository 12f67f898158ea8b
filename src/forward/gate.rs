//! The "no credentials" gate, in one place: which hits are worth forwarding at all.
//!
//! Most pixels never get credentials, and anyone can send hits for pixel ids nobody registered.
//! Their hits should cost nothing past the raw record: no queue slot, no event, no store read.
//! [`Gate::admits`] decides on the intake's thread for every hit, before anything is queued for
//! the forwarder, from what [`Credentials::has`] knows without waiting (for the token cache: its
//! [`crate::tokens::TokenIndex`]); what it turns away is counted as skipped, with the reason.
//!
//! [`Credentials`] is what the gate and the deliveries ask; [`TokenCache`] is the real one.

use std::future::Future;
use std::sync::Arc;

use crate::metrics as m;
use crate::pipeline;
use crate::record::{PixelId, PixelIdError};
use crate::tokens::{TokenCache, UsableToken};

/// Where the forwarder gets a pixel's credentials.
pub trait Credentials: Send + Sync + 'static {
    /// The credentials to use for `pixel`, if it has usable ones. `Err` when the store cannot be
    /// asked (the message is for logs and never carries a credential).
    fn usable(&self, pixel: &PixelId) -> impl Future<Output = Result<Option<UsableToken>, String>> + Send;

    /// The platform called this version of the pixel's credentials invalid: stop handing it out
    /// until new ones are set.
    fn mark_invalid(&self, pixel: &PixelId, version: u64) -> impl Future<Output = ()> + Send;

    /// Whether the pixel has usable credentials, known without asking the store: `None` while
    /// that is not known (the token index not loaded yet). Never waits; asked for every hit.
    fn has(&self, pixel: &PixelId) -> Option<bool>;
}

/// The gate over a credentials source.
pub struct Gate<S> {
    credentials: Arc<S>,
    /// `pixelgate_capi_events_total{outcome="skipped",reason="no_token"}`, resolved once: it
    /// counts every hit of a pixel without credentials.
    skipped_no_token: metrics::Counter,
}

impl<S: Credentials> Gate<S> {
    /// A gate asking `credentials`.
    pub fn new(credentials: Arc<S>) -> Self {
        let skipped_no_token = metrics::counter!(m::CAPI_EVENTS, "outcome" => "skipped", "reason" => "no_token");
        Gate { credentials, skipped_no_token }
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
            Ok(pixel) => match self.credentials.has(&pixel) {
                Some(true) => true,
                Some(false) => {
                    self.skipped_no_token.increment(1);
                    false
                }
                None => {
                    metrics::counter!(m::CAPI_EVENTS, "outcome" => "skipped", "reason" => "token_index_not_loaded").increment(1);
                    false
                }
            },
        }
    }

    /// The gate as a hit outlet's [`pipeline::Gate`].
    pub fn for_outlet(self: &Arc<Self>) -> pipeline::Gate {
        let gate = self.clone();
        Arc::new(move |pixel| gate.admits(pixel))
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

    fn has(&self, pixel: &PixelId) -> Option<bool> {
        let index = self.index();
        index.loaded().then(|| index.contains(pixel))
    }
}
