//! A registered pixel's settings, applied by the intake to each of its hits before the record is
//! written (`docs/records.md#registered-pixels`): the account (`account_id`), the allowed domains
//! (flag `domain_not_allowed`), forwarding on or off and test mode (the hit's
//! [`Routing`], which the forwarder's gate and batches read).
//!
//! A hit of a pixel id the [`Directory`] knows to be unregistered costs one set lookup here and
//! no store read and no future, whatever a flood sends. A registered pixel's settings come from
//! the directory's cache: a store read once per pixel per TTL. When the store cannot answer, the
//! hit is recorded with flag `settings_unavailable` and forwarded nowhere; after a failure or a
//! read slower than [`SETTINGS_WAIT`], the intake task asks only the cache for [`COOL_DOWN`], so
//! a store that hangs holds up the hits behind a miss at most once per cool-down.
//!
//! Each intake task keeps the settings it used in a map of its own ([`Tenancy::front`]), so a
//! registered pixel's hit costs a hash lookup and no trip through the shared cache; a kept copy
//! is used only while the directory's [`Fresh`] answer allows (its read time plus the TTL, and no
//! change or listing since), so it is never staler than the shared cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock;
use crate::metrics as m;
use crate::params::Captured;
use crate::record::{DraftHit, Fields, Flag, PixelId, Routing, Source};
use crate::registry::{Directory, Fresh, PixelSettings};

/// Longest an intake task waits for a pixel's settings before it records the hit without them.
pub(super) const SETTINGS_WAIT: Duration = Duration::from_secs(1);

/// How long, after the store failed or was slow, an intake task takes settings only from the
/// cache.
pub(super) const COOL_DOWN: Duration = Duration::from_secs(10);

/// How often, at most, an intake task logs that settings could not be read.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Most pixels an intake task keeps settings for; past it the map starts again empty.
const FRONT_CAPACITY: usize = 4096;

/// The settings could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unavailable;

/// One intake task's view of the registry.
pub(super) struct Tenancy {
    directory: Option<Arc<Directory>>,
    /// Until when the store is not asked (after a failure or a slow read).
    cool_down_until: Option<Instant>,
    last_warning: Option<Instant>,
    /// Settings this task used, while still fresh.
    front: foldhash::HashMap<PixelId, Fresh>,
}

impl Tenancy {
    /// Over `directory`; without one, hits are left as shaped.
    pub(super) fn new(directory: Option<Arc<Directory>>) -> Tenancy {
        Tenancy { directory, cool_down_until: None, last_warning: None, front: Default::default() }
    }

    /// The pixel of `hit` when its settings are to be applied: it has a valid pixel id that the
    /// directory does not know to be unregistered. Never waits.
    pub(super) fn registered(&self, hit: &DraftHit) -> Option<PixelId> {
        let directory = self.directory.as_ref()?;
        let pixel = hit.pixel().ok()?;
        (directory.registered(&pixel) != Some(false)).then_some(pixel)
    }

    /// Applies the settings of `pixel` to `hit` if this task kept them and they are still fresh;
    /// whether it did. Never waits.
    pub(super) fn apply_kept(&self, hit: &mut DraftHit, pixel: &PixelId, captured: &Captured) -> bool {
        let Some(directory) = self.directory.as_deref() else { return false };
        let Some(settings) = self.kept(directory, pixel) else { return false };
        flag(hit, Ok(settings.as_deref()), captured);
        true
    }

    /// Applies the settings of `pixel` (`hit`'s, see [`Tenancy::registered`]) to `hit`.
    /// `captured` is the request it was shaped from (its `Origin` header is the page of last
    /// resort).
    pub(super) async fn apply(&mut self, hit: &mut DraftHit, pixel: PixelId, captured: &Captured) {
        let Some(directory) = self.directory.clone() else { return };
        let settings = match self.kept(&directory, &pixel) {
            Some(settings) => Ok(settings),
            None => match directory.fresh(&pixel).await {
                Some(fresh) => {
                    let settings = fresh.settings.clone();
                    if self.front.len() >= FRONT_CAPACITY {
                        self.front.clear();
                    }
                    self.front.insert(pixel, fresh);
                    Ok(settings)
                }
                None => self.read(&directory, &pixel).await,
            },
        };
        flag(hit, settings.as_ref().map(Option::as_deref).map_err(|e| *e), captured);
    }

    /// The settings this task kept for `pixel`, if they are still fresh.
    fn kept(&self, directory: &Directory, pixel: &PixelId) -> Option<Option<Arc<PixelSettings>>> {
        let fresh = self.front.get(pixel)?;
        (fresh.generation == directory.generation() && clock::now_ms() < fresh.until_ms).then(|| fresh.settings.clone())
    }

    /// The pixel's settings read through the directory (a cache miss: once per pixel per TTL),
    /// waiting at most [`SETTINGS_WAIT`], and not at all during a cool-down.
    async fn read(&mut self, directory: &Directory, pixel: &PixelId) -> Result<Option<Arc<PixelSettings>>, Unavailable> {
        if let Some(until) = self.cool_down_until {
            if Instant::now() < until {
                return Err(Unavailable);
            }
            self.cool_down_until = None;
        }
        // Boxed: the read's future is kilobytes, and every hit's way through the intake would
        // carry room for it.
        let error = match Box::pin(tokio::time::timeout(SETTINGS_WAIT, directory.settings(pixel))).await {
            Ok(Ok(settings)) => return Ok(settings),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {SETTINGS_WAIT:?}"),
        };
        let now = Instant::now();
        self.cool_down_until = Some(now + COOL_DOWN);
        if self.last_warning.is_none_or(|at| now >= at + WARN_EVERY) {
            self.last_warning = Some(now);
            tracing::warn!(pixel_id = %pixel, error, cool_down = ?COOL_DOWN, "cannot read a pixel's settings; its hits are recorded with flag settings_unavailable and not forwarded (see pixelgate_hit_flags_total)");
        }
        Err(Unavailable)
    }
}

/// [`settle`]s `hit` and counts the flag it raised, if any.
fn flag(hit: &mut DraftHit, settings: Result<Option<&PixelSettings>, Unavailable>, captured: &Captured) {
    if let Some(flag) = settle(hit, settings, captured.head.origin()) {
        metrics::counter!(m::HIT_FLAGS, "flag" => flag.as_str()).increment(1);
    }
}

/// What the pixel's settings (`None`: not registered) make of `hit`, whose request sent `origin`;
/// the flag raised, if one was.
///
/// * Registered: `account_id` is the account; forwarding off and test mode go to the hit's
///   [`Routing`]; with allowed domains, a hit whose page (`url`, which is already `url`/`dl`
///   else `Referer`; else `origin`) is on none of them is flagged `domain_not_allowed` — a pixel
///   request's only: an input's event was sent with a key that may write to the pixel.
/// * Settings unavailable: flagged `settings_unavailable`, no account.
pub(super) fn settle(hit: &mut DraftHit, settings: Result<Option<&PixelSettings>, Unavailable>, origin: Option<&str>) -> Option<Flag> {
    let settings = match settings {
        Ok(None) => return None,
        Ok(Some(settings)) => settings,
        Err(Unavailable) => {
            hit.flags_mut().set(Flag::SettingsUnavailable);
            return Some(Flag::SettingsUnavailable);
        }
    };
    hit.set_account_id(Some(settings.account_id.clone()));
    hit.set_routing(Routing { forwarding_off: !settings.forwarding, test_event_code: settings.test_event_code.clone() });
    // Allowed domains say which pages may send hits; an event from an input was sent by a key
    // that may write to the pixel, whatever page it names.
    let page = hit.url().or(origin);
    if hit.source() != Source::Pixel || settings.allows_page(page) {
        return None;
    }
    hit.flags_mut().set(Flag::DomainNotAllowed);
    Some(Flag::DomainNotAllowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{HitBuilder, ParseSettings, RequestMeta};
    use crate::record::Timestamp;

    fn draft(query: &str, referer: Option<&str>) -> DraftHit {
        let settings = ParseSettings::default();
        let mut b = HitBuilder::new(&settings, Timestamp::now());
        b.add_encoded("event=Lead");
        b.add_encoded(query);
        b.finish_draft(RequestMeta { referer, ..RequestMeta::default() })
    }

    fn shop(domains: &[&str]) -> PixelSettings {
        PixelSettings { account_id: "acc_shop".into(), allowed_domains: domains.iter().map(|d| d.to_string()).collect(), test_event_code: None, forwarding: true }
    }

    fn line(hit: &DraftHit) -> serde_json::Value {
        let mut out = Vec::new();
        hit.write_line(&mut out);
        assert_eq!(hit.to_hit().account_id.as_deref(), hit.account_id(), "the draft and the hit agree");
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_page_on_an_allowed_domain_gets_the_account_and_no_flag() {
        let settings = shop(&["shop.test"]);
        for (query, referer, origin) in [
            ("pixel_id=1&url=https%3A%2F%2Fwww.shop.test%2Fx", None, None),
            ("pixel_id=1&dl=https%3A%2F%2Fshop.test%2F", None, Some("https://evil.test")),
            ("pixel_id=1", Some("https://shop.test/cart"), None),
            ("pixel_id=1", None, Some("https://a.shop.test:8443")),
        ] {
            let mut hit = draft(query, referer);
            assert_eq!(settle(&mut hit, Ok(Some(&settings)), origin), None, "{query} {referer:?} {origin:?}");
            let v = line(&hit);
            assert_eq!((&v["account_id"], &v["flags"]), (&serde_json::json!("acc_shop"), &serde_json::json!([])), "{query}");
        }
    }

    #[test]
    fn a_page_elsewhere_or_unknown_is_flagged_and_still_gets_the_account() {
        let settings = shop(&["shop.test"]);
        for (query, referer, origin) in [
            ("pixel_id=1&url=https%3A%2F%2Fevil.test%2F", None, Some("https://shop.test")),
            ("pixel_id=1&url=https%3A%2F%2Fbadshop.test%2F", None, None),
            ("pixel_id=1", Some("https://shop.test.evil.test/"), None),
            ("pixel_id=1", None, Some("null")),
            ("pixel_id=1", None, None),
            ("pixel_id=1&url=javascript%3Aalert(1)", None, Some("https://shop.test")),
        ] {
            let mut hit = draft(query, referer);
            assert_eq!(settle(&mut hit, Ok(Some(&settings)), origin), Some(Flag::DomainNotAllowed), "{query} {referer:?} {origin:?}");
            let v = line(&hit);
            assert_eq!((&v["account_id"], &v["flags"]), (&serde_json::json!("acc_shop"), &serde_json::json!(["domain_not_allowed"])), "{query}");
        }
        let mut anywhere = draft("pixel_id=1&url=https%3A%2F%2Fevil.test%2F", None);
        assert_eq!(settle(&mut anywhere, Ok(Some(&shop(&[]))), None), None, "no allowed domains: any page");
    }

    #[test]
    fn forwarding_and_test_mode_go_to_the_routing_and_a_store_failure_to_a_flag() {
        let mut settings = shop(&[]);
        settings.forwarding = false;
        settings.test_event_code = Some("TEST7".into());
        let mut hit = draft("pixel_id=1&url=https%3A%2F%2Fa.test%2F", None);
        settle(&mut hit, Ok(Some(&settings)), None);
        assert_eq!(hit.routing(), &Routing { forwarding_off: true, test_event_code: Some("TEST7".into()) });
        assert_eq!(hit.forward_test_event_code(), Some("TEST7"));
        let mut own = draft("pixel_id=1&test_event_code=MINE", None);
        settle(&mut own, Ok(Some(&settings)), None);
        assert_eq!((own.forward_test_event_code(), own.to_hit().forward_test_event_code()), (Some("MINE"), Some("MINE")), "the hit's own code wins");
        assert_eq!(line(&own)["test_event_code"], "MINE", "the record keeps what the hit sent");

        let mut unregistered = draft("pixel_id=1", None);
        assert_eq!(settle(&mut unregistered, Ok(None), None), None);
        assert_eq!((&line(&unregistered)["account_id"], unregistered.routing()), (&serde_json::Value::Null, &Routing::default()));

        let mut failed = draft("pixel_id=1", None);
        assert_eq!(settle(&mut failed, Err(Unavailable), None), Some(Flag::SettingsUnavailable));
        let v = line(&failed);
        assert_eq!((&v["account_id"], &v["flags"]), (&serde_json::Value::Null, &serde_json::json!(["settings_unavailable"])));
    }

    #[tokio::test]
    async fn a_kept_copy_gives_way_to_a_change_and_to_its_age() {
        use crate::registry::kv::{Kv, local::LocalKv};
        use crate::registry::model::{Forwarding, PixelRecord};
        use crate::registry::{AccountId, DirectorySettings};

        let record = |account: &str| PixelRecord {
            pixel_id: "42".into(),
            account_id: AccountId::parse(account).unwrap(),
            name: None,
            allowed_domains: vec![],
            test_event_code: None,
            forwarding: Forwarding::On,
            created_at: 0,
            updated_at: 0,
        };
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_millis(300);
        let directory = Arc::new(Directory::new(Kv::Local(LocalKv::open(dir.path()).await.unwrap()), DirectorySettings { ttl, capacity: 100 }));
        directory.refresh().await.unwrap();
        directory.changed("42".parse().unwrap(), Some(&record("acc_a"))).await;
        let mut tenancy = Tenancy::new(Some(directory.clone()));
        let captured = Captured {
            received_at: crate::record::Timestamp::now(),
            source: crate::record::Source::Pixel,
            head: crate::params::RequestHead::capture(&http::Request::get("/tr").body(()).unwrap().into_parts().0, None, 0),
            body: None,
        };
        let account = async |tenancy: &mut Tenancy| {
            let mut hit = draft("pixel_id=42", None);
            let pixel = tenancy.registered(&hit).unwrap();
            tenancy.apply(&mut hit, pixel, &captured).await;
            hit.account_id().map(str::to_owned)
        };
        assert_eq!(account(&mut tenancy).await.as_deref(), Some("acc_a"));
        assert_eq!(tenancy.front.len(), 1, "kept");
        directory.changed("42".parse().unwrap(), Some(&record("acc_b"))).await;
        assert_eq!(account(&mut tenancy).await.as_deref(), Some("acc_b"), "a change here applies to the next hit");
        // Past the TTL the kept copy is not used; the shared cache has let its entry go too, so
        // the settings are read from the store (where this pixel was never written).
        let generation = directory.generation();
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        assert_eq!(directory.generation(), generation, "no change, no listing: only age");
        assert!(tenancy.kept(&directory, &"42".parse().unwrap()).is_none(), "aged out");
        assert_eq!(account(&mut tenancy).await, None);
    }
}
