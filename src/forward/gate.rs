//! The gate, in one place: which hits are worth forwarding at all.
//!
//! Most pixels never get credentials, and anyone can send hits for pixel ids nobody registered.
//! Their hits should cost nothing past the raw record: no queue slot, no event, no store read.
//! [`Gate::admits`] decides on the intake's thread for every hit, before anything is queued for
//! the forwarder, from the hit itself (its pixel id, the flags `domain_not_allowed` and
//! `settings_unavailable`, its pixel's forwarding switch in its [`Routing`](crate::record::Routing),
//! all set by the intake) and from what [`Credentials::has`] knows without waiting (for the token
//! cache: its [`crate::tokens::TokenIndex`]); what it turns away is counted as skipped, with the
//! reason.
//!
//! [`Credentials`] is what the gate and the deliveries ask; [`TokenCache`] is the real one.

use std::future::Future;
use std::sync::Arc;

use crate::metrics as m;
use crate::pipeline;
use crate::record::{DraftHit, Fields, Flag, PixelId, PixelIdError};
use crate::tokens::{TokenCache, UsableToken};

/// Where the forwarder gets a pixel's credentials.
pub trait Credentials: Send + Sync + 'static {
    /// The credentials to use for `pixel`, if it has usable ones. `Err` when the store cannot be
    /// asked (the message is for logs and never carries a credential).
    fn usable(&self, pixel: &PixelId) -> impl Future<Output = Result<Option<UsableToken>, String>> + Send;

    /// The platform called this version of the pixel's credentials invalid: stop handing it out
    /// until new ones are set. Whether this call changed their state (the first to say so).
    fn mark_invalid(&self, pixel: &PixelId, version: u64) -> impl Future<Output = bool> + Send;

    /// Whether the pixel has usable credentials, known without asking the store (`Some(true)`
    /// also while the first listing of the token index runs: the delivery asks the store); `None`
    /// while that is not known (no listing has succeeded). Never waits; asked for every hit.
    fn has(&self, pixel: &PixelId) -> Option<bool>;
}

/// The gate over a credentials source.
pub struct Gate<S> {
    credentials: Arc<S>,
    /// `pixelgate_capi_events_total{outcome="skipped",reason=…}` for the reasons that may count
    /// every hit of a pixel, resolved once.
    skipped: Skipped,
}

/// The skipped-event counters of the gate's frequent reasons.
struct Skipped {
    no_token: metrics::Counter,
    domain_not_allowed: metrics::Counter,
    forwarding_off: metrics::Counter,
    settings_unavailable: metrics::Counter,
}

impl<S: Credentials> Gate<S> {
    /// A gate asking `credentials`.
    pub fn new(credentials: Arc<S>) -> Self {
        let skipped = |reason: &'static str| metrics::counter!(m::CAPI_EVENTS, "outcome" => "skipped", "reason" => reason);
        let skipped = Skipped {
            no_token: skipped("no_token"),
            domain_not_allowed: skipped("domain_not_allowed"),
            forwarding_off: skipped("forwarding_off"),
            settings_unavailable: skipped("settings_unavailable"),
        };
        Gate { credentials, skipped }
    }

    /// The credentials source.
    pub fn credentials(&self) -> &Arc<S> {
        &self.credentials
    }

    /// Whether `hit` should be queued for the forwarder. Never waits.
    pub fn admits(&self, hit: &DraftHit) -> bool {
        // What the pixel's settings said, in the intake: forwarded nowhere.
        let refused = if hit.flags().contains(Flag::DomainNotAllowed) {
            Some(&self.skipped.domain_not_allowed)
        } else if hit.flags().contains(Flag::SettingsUnavailable) {
            Some(&self.skipped.settings_unavailable)
        } else if hit.routing().forwarding_off {
            Some(&self.skipped.forwarding_off)
        } else {
            None
        };
        if let Some(counter) = refused {
            counter.increment(1);
            return false;
        }
        self.admits_pixel(hit.pixel())
    }

    /// Whether a hit of `pixel` should be queued, as far as its pixel id and credentials say.
    fn admits_pixel(&self, pixel: Result<PixelId, PixelIdError>) -> bool {
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
                    self.skipped.no_token.increment(1);
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
        Arc::new(move |hit| gate.admits(hit))
    }
}

/// The forwarder's view of the token cache: store errors become a message (never carrying a
/// token), and a failed invalidation is logged, since the forwarder also remembers the rejected
/// version.
impl Credentials for TokenCache {
    async fn usable(&self, pixel: &PixelId) -> Result<Option<UsableToken>, String> {
        TokenCache::usable(self, pixel).await.map_err(|e| e.to_string())
    }

    async fn mark_invalid(&self, pixel: &PixelId, version: u64) -> bool {
        match TokenCache::mark_invalid(self, pixel, version).await {
            Ok(flipped) => flipped,
            Err(err) => {
                tracing::warn!(pixel_id = %pixel, error = %err, "could not mark the access token invalid in the store; it stays unused by this process");
                false
            }
        }
    }

    fn has(&self, pixel: &PixelId) -> Option<bool> {
        let index = self.index();
        if index.loaded() {
            Some(index.contains(pixel))
        } else {
            // While the first listing runs (under Lambda it runs after start-up), a hit is let
            // through and its delivery asks the store: the first invocation's event is not lost
            // to the listing's few milliseconds. A listing that failed lets nothing through.
            index.first_listing_pending().then_some(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{HitBuilder, ParseSettings, RequestMeta};
    use crate::record::{Routing, Timestamp};

    /// Every pixel has credentials.
    struct Everyone;

    impl Credentials for Everyone {
        async fn usable(&self, _: &PixelId) -> Result<Option<UsableToken>, String> {
            Ok(None)
        }
        async fn mark_invalid(&self, _: &PixelId, _: u64) -> bool {
            false
        }
        fn has(&self, _: &PixelId) -> Option<bool> {
            Some(true)
        }
    }

    fn draft(query: &str) -> DraftHit {
        let settings = ParseSettings::default();
        let mut b = HitBuilder::new(&settings, Timestamp::now());
        b.add_encoded(query);
        b.finish_draft(RequestMeta::default())
    }

    #[test]
    fn what_the_pixel_s_settings_said_keeps_a_hit_from_every_destination() {
        let gate = Gate::new(Arc::new(Everyone));
        assert!(gate.admits(&draft("pixel_id=1&event=Lead")));
        assert!(!gate.admits(&draft("event=Lead")) && !gate.admits(&draft("pixel_id=x")));
        for flag in [Flag::DomainNotAllowed, Flag::SettingsUnavailable] {
            let mut hit = draft("pixel_id=1&event=Lead");
            hit.flags_mut().set(flag);
            assert!(!gate.admits(&hit), "{flag:?}");
        }
        let mut off = draft("pixel_id=1&event=Lead");
        off.set_routing(Routing { forwarding_off: true, test_event_code: None });
        assert!(!gate.admits(&off));
        let mut test_mode = draft("pixel_id=1&event=Lead");
        test_mode.set_routing(Routing { forwarding_off: false, test_event_code: Some("TEST1".into()) });
        assert!(gate.admits(&test_mode), "test mode is forwarded");
    }
}
