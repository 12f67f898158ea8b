//! The hot path's view of the registry: for a pixel id, whether it is registered and, if so, the
//! settings a hit needs (account, allowed domains, test mode, forwarding), with no store read per
//! hit (`docs/accounts.md#the-hot-path`).
//!
//! * Which pixels are registered is an in-memory set ([`TokenIndex`]'s mechanism), listed from the
//!   store at start and every TTL and changed at once by this process's own changes: a hit for an
//!   unregistered pixel id costs a hash lookup and no store read, whatever a flood sends.
//! * A registered pixel's settings are read through a moka cache: one store read per pixel per
//!   TTL, concurrent misses for one pixel sharing it.
//!
//! Bounds: store reads are one listing per TTL (SQLite: one query; DynamoDB: one `Query` per 1 MB
//! of sort keys) plus one read per registered pixel per TTL; memory about 48 bytes per registered
//! pixel plus the cached settings of the pixels that had hits (at most `capacity`). Until the
//! first listing succeeds, a pixel's settings are read through the cache (at most one read per
//! pixel id per TTL).
//!
//! A reader that keeps settings of its own for speed (the intake's tasks do) asks
//! [`Directory::fresh`], which says until when an answer may be used, and checks
//! [`Directory::generation`]: it changes whenever this process changes a pixel or lists the set, so
//! a kept copy is never staler than the cache it came from.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;

use super::domains::{allowed, host_of};
use super::kv::Kv;
use super::layout as at;
use super::model::{Forwarding, PixelRecord};
use crate::clock;
use crate::metrics as m;
use crate::record::PixelId;
use crate::tokens::{StoreError, TokenIndex};

/// What a hit of a registered pixel needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PixelSettings {
    /// Its account.
    pub account_id: Arc<str>,
    /// Pages allowed to send its hits; empty = any.
    pub allowed_domains: Vec<String>,
    /// Test mode's code.
    pub test_event_code: Option<Arc<str>>,
    /// Whether its hits are forwarded.
    pub forwarding: bool,
}

impl PixelSettings {
    /// The settings in a record.
    pub fn of(record: &PixelRecord) -> PixelSettings {
        PixelSettings {
            account_id: record.account_id.as_str().into(),
            allowed_domains: record.allowed_domains.clone(),
            test_event_code: record.test_event_code.as_deref().map(Into::into),
            forwarding: record.forwarding == Forwarding::On,
        }
    }

    /// Whether a page at `url` may send this pixel's hits (any page when no domains are set; with
    /// domains, a page with no URL may not).
    pub fn allows_page(&self, url: Option<&str>) -> bool {
        self.allowed_domains.is_empty() || url.and_then(host_of).is_some_and(|h| allowed(&self.allowed_domains, h))
    }
}

/// Cache lifetime and size.
#[derive(Debug, Clone, Copy)]
pub struct DirectorySettings {
    /// How long settings and the registered set are kept before they are read again.
    pub ttl: Duration,
    /// Most pixels whose settings are cached.
    pub capacity: u64,
}

impl Default for DirectorySettings {
    fn default() -> Self {
        DirectorySettings { ttl: Duration::from_secs(30), capacity: 100_000 }
    }
}

/// A cached answer: the settings (`None`: not registered) and when they were read
/// ([`clock::now_ms`]).
#[derive(Debug, Clone)]
struct Entry {
    settings: Option<Arc<PixelSettings>>,
    read_ms: u64,
}

impl Entry {
    fn now(settings: Option<Arc<PixelSettings>>) -> Entry {
        Entry { settings, read_ms: clock::now_ms() }
    }
}

/// Settings that may be used until [`Fresh::until_ms`] ([`clock::now_ms`]), while
/// [`Directory::generation`] is still [`Fresh::generation`].
#[derive(Debug, Clone)]
pub struct Fresh {
    /// The settings; `None`: not registered.
    pub settings: Option<Arc<PixelSettings>>,
    /// When they become too old: read time plus the TTL.
    pub until_ms: u64,
    /// The directory's generation when they were handed out.
    pub generation: u64,
}

/// The registered pixels and their settings.
pub struct Directory {
    kv: Kv,
    registered: TokenIndex,
    cache: Cache<PixelId, Entry>,
    settings: DirectorySettings,
    store_reads: AtomicU64,
    /// Bumped by each change this process makes and each listing.
    generation: AtomicU64,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").field("settings", &self.settings).field("generation", &self.generation()).finish_non_exhaustive()
    }
}

impl Directory {
    /// A directory over `kv`.
    pub fn new(kv: Kv, settings: DirectorySettings) -> Directory {
        let cache = Cache::builder().max_capacity(settings.capacity).time_to_live(settings.ttl).build();
        Directory { kv, registered: TokenIndex::default(), cache, settings, store_reads: AtomicU64::new(0), generation: AtomicU64::new(0) }
    }

    /// Store requests made so far (listings and reads).
    pub fn store_reads(&self) -> u64 {
        self.store_reads.load(Ordering::Relaxed)
    }

    /// Changes whenever a kept copy of settings may have become stale here (see the module docs).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether `pixel` is registered, known without a store read; `None` before the first listing.
    pub fn registered(&self, pixel: &PixelId) -> Option<bool> {
        self.registered.loaded().then(|| self.registered.contains(pixel))
    }

    /// The pixel's settings; `None` when it is not registered. A store read only on a cache miss
    /// of a registered pixel (or before the first listing).
    pub async fn settings(&self, pixel: &PixelId) -> Result<Option<Arc<PixelSettings>>, StoreError> {
        if self.registered(pixel) == Some(false) {
            return Ok(None);
        }
        self.cache
            .try_get_with(*pixel, async {
                self.store_reads.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::REGISTRY_STORE_READS).increment(1);
                let item = self.kv.get(&at::pixel(pixel.as_str())).await?;
                let record = item.map(|i| serde_json::from_str::<PixelRecord>(&i.doc)).transpose().map_err(|e| StoreError::Malformed(format!("pixel {pixel}: {e}")))?;
                Ok::<_, StoreError>(Entry::now(record.map(|r| Arc::new(PixelSettings::of(&r)))))
            })
            .await
            .map(|entry| entry.settings)
            .map_err(|e: Arc<StoreError>| (*e).clone())
    }

    /// The settings if cached, never waiting: `Some(None)` = known unregistered.
    pub async fn cached(&self, pixel: &PixelId) -> Option<Option<Arc<PixelSettings>>> {
        if self.registered(pixel) == Some(false) {
            return Some(None);
        }
        self.cache.get(pixel).await.map(|entry| entry.settings)
    }

    /// As [`Directory::cached`], with how long the answer may be kept.
    pub async fn fresh(&self, pixel: &PixelId) -> Option<Fresh> {
        // Read first: a change after this is seen by the caller's next generation check.
        let generation = self.generation();
        let until_ms = |read_ms: u64| read_ms.saturating_add(self.settings.ttl.as_millis() as u64);
        if self.registered(pixel) == Some(false) {
            // Until the next listing or change (which bump the generation), at most a TTL.
            return Some(Fresh { settings: None, until_ms: until_ms(clock::now_ms()), generation });
        }
        let entry = self.cache.get(pixel).await?;
        Some(Fresh { settings: entry.settings, until_ms: until_ms(entry.read_ms), generation })
    }

    /// This process changed the pixel (`None`: unregistered it): in effect here at once.
    pub async fn changed(&self, pixel: PixelId, record: Option<&PixelRecord>) {
        self.registered.changed(pixel, record.is_some());
        self.cache.insert(pixel, Entry::now(record.map(|r| Arc::new(PixelSettings::of(r))))).await;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The first listing is on its way: changes this process makes meanwhile are kept for it.
    pub fn listing_started(&self) {
        self.registered.listing_started();
    }

    /// Lists the registered pixels into the set; how many. A failure keeps the set as it was.
    pub async fn refresh(&self) -> Result<usize, StoreError> {
        self.registered.listing_started();
        match self.kv.sort_keys(at::PIXELS).await {
            Ok((keys, requests)) => {
                self.store_reads.fetch_add(requests, Ordering::Relaxed);
                metrics::counter!(m::REGISTRY_STORE_READS).increment(requests);
                let pixels: Vec<PixelId> = keys.iter().filter_map(|k| at::pixel_of_sort_key(k)).filter_map(|p| PixelId::parse(p).ok()).collect();
                let n = pixels.len();
                self.registered.listed(pixels);
                self.generation.fetch_add(1, Ordering::AcqRel);
                Ok(n)
            }
            Err(e) => {
                self.registered.listing_failed();
                Err(e)
            }
        }
    }

    /// Lists the set again every TTL in the background (after the one [`Directory::refresh`] at
    /// start).
    pub fn spawn_refresh(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let every = self.settings.ttl;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(dir) = me.upgrade() else { return };
                if let Err(e) = dir.refresh().await {
                    tracing::warn!(error = %e, "could not list the registered pixels; keeping the last list");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::kv::{Cond, Write, local::LocalKv};

    #[tokio::test]
    async fn unregistered_pixels_cost_no_read_and_registered_ones_one_per_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Kv::Local(LocalKv::open(dir.path()).await.unwrap());
        let record = PixelRecord {
            pixel_id: "42".into(),
            account_id: crate::registry::ids::AccountId::parse("acc_a").unwrap(),
            name: None,
            allowed_domains: vec!["shop.test".into()],
            test_event_code: Some("TEST1".into()),
            forwarding: Forwarding::On,
            created_at: 0,
            updated_at: 0,
        };
        kv.transact(vec![Write::Put(at::item(at::pixel("42"), Some((at::PIXELS, "acc_a#42".into())), &record, 1), Cond::Absent)]).await.unwrap();
        let d = Directory::new(kv, DirectorySettings::default());
        assert_eq!(d.registered(&"42".parse().unwrap()), None);
        assert_eq!(d.refresh().await.unwrap(), 1);
        let reads = d.store_reads();
        for i in 0..1000u32 {
            assert_eq!(d.settings(&i.to_string().parse().unwrap()).await.unwrap().filter(|_| i != 42), None);
        }
        assert_eq!(d.store_reads(), reads + 1, "only the registered pixel was read, once");
        let s = d.settings(&"42".parse().unwrap()).await.unwrap().unwrap();
        assert_eq!((&*s.account_id, s.test_event_code.as_deref(), s.forwarding), ("acc_a", Some("TEST1"), true));
        assert!(s.allows_page(Some("https://www.shop.test/p")) && !s.allows_page(Some("https://evil.test/")) && !s.allows_page(None));
        d.changed("7".parse().unwrap(), Some(&record)).await;
        assert_eq!(d.registered(&"7".parse().unwrap()), Some(true));
        assert!(d.settings(&"7".parse().unwrap()).await.unwrap().is_some());
        d.changed("42".parse().unwrap(), None).await;
        assert_eq!(d.settings(&"42".parse().unwrap()).await.unwrap(), None);
    }
}
