//! The in-process token cache in front of the [`TokenStore`], so forwarding a hit costs no store
//! read in the steady state.
//!
//! A usable token is kept for `--token-ttl` (300 s); "no token" and `invalid` for the shorter
//! `--token-negative-ttl` (30 s), so a token set elsewhere (the CLI, another instance) is picked
//! up soon. Changes made through this cache (the admin API, an invalidation) take effect at once.
//! Concurrent misses for one pixel share one store read (moka's `or_try_insert_with`), so a
//! burst for an uncached pixel cannot stampede the store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

use super::{Secret, StoreError, StoredToken, TokenIndex, TokenStatus, TokenStatusView, TokenStore};
use crate::metrics as m;
use crate::record::PixelId;

/// A token the forwarder may use, with the version to pass to [`TokenCache::mark_invalid`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsableToken {
    /// The access token.
    pub token: Secret,
    /// Its version in the store.
    pub version: u64,
}

/// Cache lifetimes and size.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// How long a usable token is kept.
    pub ttl: Duration,
    /// How long "no token" or an invalid one is kept.
    pub negative_ttl: Duration,
    /// Most pixels kept.
    pub capacity: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings { ttl: Duration::from_secs(300), negative_ttl: Duration::from_secs(30), capacity: 100_000 }
    }
}

/// What the cache holds per pixel.
#[derive(Clone)]
enum Cached {
    Usable(UsableToken),
    /// No token, or an invalid one.
    Unusable,
}

impl Cached {
    fn of(stored: Option<&StoredToken>) -> Cached {
        match stored {
            Some(s) if s.status == TokenStatus::Active => Cached::Usable(UsableToken { token: s.token.clone(), version: s.version }),
            _ => Cached::Unusable,
        }
    }

    fn usable(self) -> Option<UsableToken> {
        match self {
            Cached::Usable(t) => Some(t),
            Cached::Unusable => None,
        }
    }
}

/// Per-entry lifetime: positive or negative TTL, restarted whenever the entry is replaced.
struct TtlByKind(CacheSettings);

impl TtlByKind {
    fn ttl(&self, value: &Cached) -> Option<Duration> {
        Some(match value {
            Cached::Usable(_) => self.0.ttl,
            Cached::Unusable => self.0.negative_ttl,
        })
    }
}

impl Expiry<PixelId, Cached> for TtlByKind {
    fn expire_after_create(&self, _: &PixelId, value: &Cached, _: Instant) -> Option<Duration> {
        self.ttl(value)
    }

    fn expire_after_update(&self, _: &PixelId, value: &Cached, _: Instant, _: Option<Duration>) -> Option<Duration> {
        self.ttl(value)
    }
}

/// The token cache over a [`TokenStore`].
pub struct TokenCache {
    store: TokenStore,
    cache: Cache<PixelId, Cached>,
    store_reads: AtomicU64,
    /// Bumped after every change this process writes to the store (set, delete, invalidate). A
    /// store read that overlapped a change may have cached what the change replaced; the reader
    /// sees the counter moved and drops its entry, so the next lookup reads again.
    changes: AtomicU64,
    /// `pixelgate_token_cache_total{result="hit"|"miss"}`, resolved once: every hit of a pixel
    /// asks the cache, so the registry lookup stays off that path.
    counted: [metrics::Counter; 2],
    /// Which pixels have an active token, without a store read ([`TokenIndex`]).
    index: TokenIndex,
    settings: CacheSettings,
}

impl TokenCache {
    /// A cache over `store`.
    pub fn new(store: TokenStore, settings: CacheSettings) -> TokenCache {
        let cache = Cache::builder().max_capacity(settings.capacity).expire_after(TtlByKind(settings)).build();
        let counted = ["hit", "miss"].map(|result| metrics::counter!(m::TOKEN_CACHE, "result" => result));
        TokenCache { store, cache, store_reads: AtomicU64::new(0), changes: AtomicU64::new(0), counted, index: TokenIndex::default(), settings }
    }

    /// Records that this process changed the pixel's token (bumps `changes`) and, when known,
    /// whether it is usable now.
    fn changed(&self, pixel: &PixelId, usable: Option<bool>) -> u64 {
        let before = self.changes.fetch_add(1, Ordering::SeqCst);
        if let Some(usable) = usable {
            self.index.changed(*pixel, usable);
        }
        before
    }

    /// The index of pixels with an active token.
    pub fn index(&self) -> &TokenIndex {
        &self.index
    }

    /// Lists the pixels with an active token from the store into the index; how many it found.
    /// A failure keeps the index as it was.
    pub async fn refresh_index(&self) -> Result<usize, StoreError> {
        self.index.listing_started();
        match self.store.active_pixels().await {
            Ok((pixels, requests)) => {
                self.store_reads.fetch_add(requests, Ordering::Relaxed);
                metrics::counter!(m::TOKEN_STORE_READS).increment(requests);
                let n = pixels.len();
                self.index.listed(pixels);
                metrics::gauge!(m::TOKEN_INDEX_PIXELS).set(n as f64);
                Ok(n)
            }
            Err(err) => {
                self.index.listing_failed();
                Err(err)
            }
        }
    }

    /// Keeps the index fresh: lists the store every `--token-negative-ttl`, as long as the cache
    /// lives. Spawned on the current runtime.
    pub fn spawn_index_refresh(self: &std::sync::Arc<Self>) {
        let cache = std::sync::Arc::downgrade(self);
        let every = self.settings.negative_ttl.max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(cache) = cache.upgrade() else { return };
                if let Err(err) = cache.refresh_index().await {
                    tracing::warn!(error = %err, "cannot list the pixels with a token; the index keeps its last listing");
                }
            }
        });
    }

    /// The store behind the cache (e.g. for `/readyz`: `tokens.store().check()`).
    pub fn store(&self) -> &TokenStore {
        &self.store
    }

    /// Store reads made by [`TokenCache::usable`] so far (also the metric
    /// `pixelgate_token_store_reads_total`).
    pub fn store_reads(&self) -> u64 {
        self.store_reads.load(Ordering::Relaxed)
    }

    /// The pixel's token if it is set and active. Reads the store on a miss; concurrent misses
    /// for one pixel share that read. A store error is not cached.
    pub async fn usable(&self, pixel: &PixelId) -> Result<Option<UsableToken>, StoreError> {
        if let Some(cached) = self.cache.get(pixel).await {
            self.counted[0].increment(1);
            return Ok(cached.usable());
        }
        let seen = self.changes.load(Ordering::SeqCst);
        let entry = self
            .cache
            .entry_by_ref(pixel)
            .or_try_insert_with(async {
                self.store_reads.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::TOKEN_STORE_READS).increment(1);
                self.store.get(pixel).await.map(|stored| Cached::of(stored.as_ref()))
            })
            .await
            .map_err(|e| StoreError::clone(&e))?;
        self.counted[entry.is_fresh() as usize].increment(1);
        if entry.is_fresh() {
            if self.changes.load(Ordering::SeqCst) != seen {
                self.cache.invalidate(pixel).await;
            } else {
                // A fresh read is newer than the last listing.
                self.index.changed(*pixel, matches!(entry.value(), Cached::Usable(_)));
            }
        }
        Ok(entry.into_value().usable())
    }

    /// Stores or replaces the pixel's token; this cache uses it at once.
    pub async fn set(&self, pixel: &PixelId, token: Secret) -> Result<TokenStatusView, StoreError> {
        let stored = self.store.set(pixel, token).await?;
        self.changed(pixel, Some(true));
        self.cache.insert(*pixel, Cached::of(Some(&stored))).await;
        Ok(TokenStatusView::of(pixel, Some(&stored)))
    }

    /// Removes the pixel's token; `false` if there was none. This cache stops using it at once.
    pub async fn delete(&self, pixel: &PixelId) -> Result<bool, StoreError> {
        let existed = self.store.delete(pixel).await?;
        self.changed(pixel, Some(false));
        self.cache.insert(*pixel, Cached::Unusable).await;
        Ok(existed)
    }

    /// The pixel's token status, read from the store (not the cache).
    pub async fn status(&self, pixel: &PixelId) -> Result<TokenStatusView, StoreError> {
        Ok(TokenStatusView::of(pixel, self.store.get(pixel).await?.as_ref()))
    }

    /// Meta rejected the token of `version`: marks it invalid in the store unless it was
    /// replaced since, and stops using it. `true` if this call flipped it.
    pub async fn mark_invalid(&self, pixel: &PixelId, version: u64) -> Result<bool, StoreError> {
        // A burst of rejections of one token: once the entry no longer holds that version (this
        // cache flipped or replaced it), the others need no store call.
        if let Some(cached) = self.cache.get(pixel).await
            && !matches!(&cached, Cached::Usable(t) if t.version == version)
        {
            return Ok(false);
        }
        let before = self.changes.load(Ordering::SeqCst);
        let flipped = self.store.mark_invalid(pixel, version).await?;
        // Not this call's own bump: a set or delete that landed meanwhile wins over our entry.
        let undisturbed = self.changed(pixel, flipped.then_some(false)) == before;
        if flipped && undisturbed {
            // Counted and logged by the caller (the forwarder), once per rejected version.
            tracing::info!(pixel_id = %pixel, "access token marked invalid in the store");
            self.cache.insert(*pixel, Cached::Unusable).await;
        } else {
            // The store holds something newer (or nothing), or a change landed meanwhile: read
            // it again on next use.
            self.cache.invalidate(pixel).await;
        }
        Ok(flipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::LocalStore;
    use std::sync::Arc;

    fn p(id: &str) -> PixelId {
        PixelId::parse(id).unwrap()
    }

    async fn cache(settings: CacheSettings) -> (tempfile::TempDir, Arc<TokenCache>, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::new(TokenStore::new(super::super::Backend::Local(LocalStore::open(dir.path()).await.unwrap()), crate::seal::Sealer::new(&[3; 32])), settings);
        // A second handle on the same file stands in for the CLI or another instance.
        let other = TokenStore::new(super::super::Backend::Local(LocalStore::open(dir.path()).await.unwrap()), crate::seal::Sealer::new(&[3; 32]));
        (dir, Arc::new(cache), other)
    }

    fn short() -> CacheSettings {
        CacheSettings { ttl: Duration::from_millis(600), negative_ttl: Duration::from_millis(200), capacity: 100 }
    }

    #[tokio::test]
    async fn changes_elsewhere_show_after_the_ttls() {
        let (_dir, cache, other) = cache(short()).await;
        assert_eq!(cache.usable(&p("1")).await.unwrap(), None);
        let first = other.set(&p("1"), Secret::new("a")).await.unwrap();
        assert_eq!(cache.usable(&p("1")).await.unwrap(), None, "'no token' is cached");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let got = cache.usable(&p("1")).await.unwrap().unwrap();
        assert_eq!((got.token.expose(), got.version), ("a", first.version), "after the negative TTL");
        other.set(&p("1"), Secret::new("b")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(cache.usable(&p("1")).await.unwrap().unwrap().token.expose(), "a", "still within the positive TTL");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(cache.usable(&p("1")).await.unwrap().unwrap().token.expose(), "b", "after the positive TTL");
        assert_eq!(cache.store_reads(), 3);
    }

    #[tokio::test]
    async fn own_changes_apply_at_once() {
        let (_dir, cache, other) = cache(CacheSettings::default()).await;
        assert_eq!(cache.usable(&p("1")).await.unwrap(), None);
        let view = cache.set(&p("1"), Secret::new("a")).await.unwrap();
        assert_eq!((view.set, view.status), (true, Some(TokenStatus::Active)));
        let a = cache.usable(&p("1")).await.unwrap().unwrap();
        assert!(cache.delete(&p("1")).await.unwrap());
        assert_eq!(cache.usable(&p("1")).await.unwrap(), None);
        assert!(!cache.status(&p("1")).await.unwrap().set);
        assert_eq!(cache.store_reads(), 1);

        cache.set(&p("1"), Secret::new("b")).await.unwrap();
        let b = cache.usable(&p("1")).await.unwrap().unwrap();
        assert!(!cache.mark_invalid(&p("1"), a.version).await.unwrap(), "an old version never invalidates a newer token");
        assert_eq!(cache.usable(&p("1")).await.unwrap(), Some(b.clone()));
        assert!(cache.mark_invalid(&p("1"), b.version).await.unwrap());
        assert!(!cache.mark_invalid(&p("1"), b.version).await.unwrap());
        assert_eq!(cache.usable(&p("1")).await.unwrap(), None);
        assert_eq!(other.get(&p("1")).await.unwrap().unwrap().status, TokenStatus::Invalid);
        assert_eq!(cache.status(&p("1")).await.unwrap().status, Some(TokenStatus::Invalid));
    }

    #[tokio::test]
    async fn the_index_knows_the_pixels_with_a_token_from_listings_reads_and_own_changes() {
        let (_dir, cache, other) = cache(short()).await;
        other.set(&p("1"), Secret::new("a")).await.unwrap();
        let two = other.set(&p("2"), Secret::new("b")).await.unwrap();
        other.mark_invalid(&p("2"), two.version).await.unwrap();
        assert!(!cache.index().loaded());
        assert_eq!(cache.refresh_index().await.unwrap(), 1, "only active tokens");
        assert!(cache.index().loaded() && cache.index().contains(&p("1")) && !cache.index().contains(&p("2")));
        assert_eq!(cache.store_reads(), 1, "one listing");

        // This process's changes apply at once.
        cache.set(&p("3"), Secret::new("c")).await.unwrap();
        assert!(cache.index().contains(&p("3")));
        cache.delete(&p("1")).await.unwrap();
        assert!(!cache.index().contains(&p("1")));
        let three = cache.usable(&p("3")).await.unwrap().unwrap();
        assert!(cache.mark_invalid(&p("3"), three.version).await.unwrap());
        assert!(!cache.index().contains(&p("3")));

        // A change elsewhere shows at the next listing, or when a read finds it.
        other.set(&p("4"), Secret::new("d")).await.unwrap();
        assert!(!cache.index().contains(&p("4")));
        cache.refresh_index().await.unwrap();
        assert!(cache.index().contains(&p("4")));
        other.set(&p("5"), Secret::new("e")).await.unwrap();
        assert!(cache.usable(&p("5")).await.unwrap().is_some());
        assert!(cache.index().contains(&p("5")), "a fresh read is newer than the listing");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_share_one_store_read() {
        let (_dir, cache, other) = cache(CacheSettings::default()).await;
        let set = other.set(&p("42"), Secret::new("tok")).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(1000));
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let (cache, barrier) = (cache.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    cache.usable(&p("42")).await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().map(|t| t.version), Some(set.version));
        }
        assert_eq!(cache.store_reads(), 1);
    }
}
