//! Which pixels have a usable token, known without a store read (`docs/forwarding.md#tokens`).
//!
//! Any page, bot or misconfigured tag can send hits for pixel ids nobody registered; a store read
//! per unknown pixel would let a flood of random ids cost one read per hit. The index holds the
//! set of pixel ids with an active token in memory instead: listed from the store when the server
//! starts and again every refresh interval (`--token-negative-ttl`), and changed at once by what
//! this process writes (a token set, deleted or marked invalid). A hit for a pixel outside the
//! set costs a hash lookup and nothing else.
//!
//! Its bounds: store reads are one listing per refresh interval whatever the hits are (SQLite: one
//! query; DynamoDB: one `Scan` request per 1 MB page of the table), and memory is about 48 bytes
//! per pixel with a token. A change made elsewhere (the CLI, another instance) shows within one
//! refresh interval, as a cached "no token" does. Until the first listing succeeds the index is
//! not loaded and nothing is forwarded (without the store there is no token to forward with);
//! a later listing that fails keeps the last set and is retried at the next interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

use crate::record::PixelId;

/// The set of pixels with an active token.
#[derive(Default)]
pub struct TokenIndex {
    /// The pixels; replaced whole by each listing.
    pixels: RwLock<foldhash::HashSet<PixelId>>,
    /// Whether a listing has succeeded since start.
    loaded: AtomicBool,
    /// Changes this process made while a listing ran (a listing that started before a change may
    /// not include it): applied over the listing's result. `None` while no listing runs.
    during_listing: Mutex<Option<Vec<(PixelId, bool)>>>,
}

impl TokenIndex {
    /// Whether a listing has succeeded since start.
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Whether `pixel` has an active token. Never waits on the store; asked for every hit.
    pub fn contains(&self, pixel: &PixelId) -> bool {
        self.pixels.read().unwrap_or_else(|e| e.into_inner()).contains(pixel)
    }

    /// How many pixels have an active token.
    pub fn len(&self) -> usize {
        self.pixels.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no pixel has an active token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// This process set (`true`) or removed (`false`) the pixel's usable token.
    pub fn changed(&self, pixel: PixelId, usable: bool) {
        if let Some(changes) = self.during_listing.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            changes.push((pixel, usable));
        }
        let mut pixels = self.pixels.write().unwrap_or_else(|e| e.into_inner());
        if usable {
            pixels.insert(pixel);
        } else {
            pixels.remove(&pixel);
        }
    }

    /// A listing starts: changes from now on are kept to be applied over its result. Saying so
    /// twice before the result keeps the changes made in between.
    pub fn listing_started(&self) {
        self.during_listing.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(Vec::new);
    }

    /// Whether the first listing is under way (none has succeeded yet).
    pub fn first_listing_pending(&self) -> bool {
        !self.loaded() && self.during_listing.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// A listing's result: the set becomes `listed`, with the changes made meanwhile applied.
    pub fn listed(&self, listed: impl IntoIterator<Item = PixelId>) {
        let mut fresh: foldhash::HashSet<PixelId> = listed.into_iter().collect();
        let mut during = self.during_listing.lock().unwrap_or_else(|e| e.into_inner());
        for (pixel, usable) in during.take().unwrap_or_default() {
            if usable {
                fresh.insert(pixel);
            } else {
                fresh.remove(&pixel);
            }
        }
        *self.pixels.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        self.loaded.store(true, Ordering::Release);
    }

    /// A listing failed: the set stays as it was.
    pub fn listing_failed(&self) {
        *self.during_listing.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: &str) -> PixelId {
        PixelId::parse(id).unwrap()
    }

    #[test]
    fn a_listing_replaces_the_set_but_keeps_changes_made_while_it_ran() {
        let index = TokenIndex::default();
        assert!(!index.loaded() && !index.contains(&p("1")));
        index.listing_started();
        index.listed([p("1"), p("2")]);
        assert!(index.loaded() && index.contains(&p("1")) && index.contains(&p("2")) && index.len() == 2);

        index.listing_started();
        index.changed(p("3"), true);
        index.changed(p("1"), false);
        // The listing read the store before those changes.
        index.listed([p("1"), p("2")]);
        assert!(!index.contains(&p("1")) && index.contains(&p("2")) && index.contains(&p("3")));

        index.listing_started();
        index.listing_failed();
        index.changed(p("4"), true);
        assert!(index.contains(&p("4")) && index.len() == 3, "a failed listing keeps the set");
    }
}
