//! Every parameter convention pixelgate accepts, turned into one [`Hit`] (SPEC §4).
//!
//! Three families of names describe the same concepts: pixelgate's own (`evat_k`, `usat_k`,
//! `pixel_id`, …), the Meta pixel's `/tr` wire format (`cd[k]`, `ud[k]`, `id`, `ev`, `eid`, `dl`,
//! `rl`) and Meta's server-side GTM tag (`x-fb-cd-k`, `x-fb-ud-k`). [`classify`] maps a name to its
//! concept; [`HitBuilder`] applies the precedence rules (canonical beats alias, first beats later)
//! and the limits, hashes personal data through [`crate::pii`], and flags what was wrong.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::net::IpAddr;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

use crate::hit::{Flag, Flags, Hit, SCHEMA, Timestamp};
use crate::pii::{self, PiiField, PiiRules};

mod decode;
mod head;

pub use head::RequestHead;

/// Bounds on what one request may contribute to a record.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Parameters read per request (query and body together); the rest are ignored.
    pub max_params: usize,
    /// Longest value kept, in bytes; longer values are cut at a character boundary.
    pub max_value_bytes: usize,
    /// Longest parameter name; longer names are ignored.
    pub max_key_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_params: 256, max_value_bytes: 8192, max_key_bytes: 256 }
    }
}

/// What the parser needs besides the parameters themselves.
#[derive(Debug, Clone, Default)]
pub struct ParseSettings {
    /// Size limits.
    pub limits: Limits,
    /// Personal-data normalisation settings.
    pub pii: PiiRules,
}

/// Parameters that are only there to defeat caches.
const CACHE_BUSTERS: [&str; 4] = ["gtmcb", "cb", "rand", "_"];

/// The concept a parameter name stands for. `rank` 0 is the canonical name, 1 an alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concept<'a> {
    PixelId(u8),
    Event(u8),
    EventId(u8),
    Url(u8),
    Referrer(u8),
    Ts,
    TestEventCode,
    Fbp,
    Fbc,
    /// An event attribute named `k`.
    Attr(&'a str),
    /// A user attribute named `k`.
    User(&'a str),
    CacheBuster,
    Extra,
}

/// Maps a parameter name to its concept. Names and prefixes match in any ASCII case; what
/// follows a prefix keeps its case.
pub fn classify(key: &str) -> Concept<'_> {
    if let Some(c) = fixed(key) {
        return c;
    }
    if key.bytes().any(|b| b.is_ascii_uppercase()) {
        if let Some(c) = fixed(&key.to_ascii_lowercase()) {
            return c;
        }
    }
    fn named(k: &str) -> Option<&str> {
        (!k.is_empty()).then_some(k)
    }
    fn prefixed<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
        key.get(..prefix.len()).filter(|p| p.eq_ignore_ascii_case(prefix)).map(|_| &key[prefix.len()..])
    }
    fn bracketed<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
        prefixed(key, prefix)?.strip_suffix(']')
    }
    if let Some(k) = prefixed(key, "evat_").or_else(|| bracketed(key, "cd[")).or_else(|| prefixed(key, "x-fb-cd-")).and_then(named) {
        return Concept::Attr(k);
    }
    if let Some(k) = prefixed(key, "usat_").or_else(|| bracketed(key, "ud[")).or_else(|| prefixed(key, "x-fb-ud-")).and_then(named) {
        return if k.eq_ignore_ascii_case("fbp") {
            Concept::Fbp
        } else if k.eq_ignore_ascii_case("fbc") {
            Concept::Fbc
        } else {
            Concept::User(k)
        };
    }
    bare_contact(key).map_or(Concept::Extra, Concept::User)
}

/// The fixed names, lowercase.
fn fixed(key: &str) -> Option<Concept<'static>> {
    Some(match key {
        "pixel_id" => Concept::PixelId(0),
        "id" | "pid" => Concept::PixelId(1),
        "event" => Concept::Event(0),
        "ev" => Concept::Event(1),
        "event_id" => Concept::EventId(0),
        "eid" => Concept::EventId(1),
        "url" => Concept::Url(0),
        "dl" => Concept::Url(1),
        "ref" => Concept::Referrer(0),
        "rl" => Concept::Referrer(1),
        "ts" => Concept::Ts,
        "test_event_code" => Concept::TestEventCode,
        "fbp" => Concept::Fbp,
        "fbc" => Concept::Fbc,
        k if CACHE_BUSTERS.contains(&k) => Concept::CacheBuster,
        _ => return None,
    })
}

/// A parameter outside every convention whose name says it carries an e-mail address or a phone
/// number (`email=`, `customer_phone=`, …): treated as that user attribute, so it is hashed rather
/// than kept in plaintext under `extra`.
fn bare_contact(key: &str) -> Option<&'static str> {
    let is = |names: &[&str]| names.iter().any(|n| key.eq_ignore_ascii_case(n));
    let ends = |suffix: &str| key.len() > suffix.len() && key.get(key.len() - suffix.len()..).is_some_and(|t| t.eq_ignore_ascii_case(suffix));
    if is(&["em", "email", "e-mail", "mail"]) || ends("_email") || ends("-email") {
        Some("em")
    } else if is(&["ph", "phone", "tel", "telephone", "mobile"]) || ends("_phone") || ends("-phone") {
        Some("ph")
    } else {
        None
    }
}

/// Common names of Meta's user-data keys, mapped to them (`email` → `em`, `zip` → `zp`, …).
fn user_key(key: &str) -> &str {
    match key {
        "email" | "e-mail" => "em",
        "phone" | "tel" | "telephone" | "mobile" => "ph",
        "first_name" | "firstname" | "given_name" => "fn",
        "last_name" | "lastname" | "surname" | "family_name" => "ln",
        "city" => "ct",
        "state" | "region" | "province" => "st",
        "zip" | "zipcode" | "zip_code" | "postal_code" | "postcode" => "zp",
        "gender" | "sex" => "ge",
        "dob" | "birthday" | "birthdate" | "date_of_birth" => "db",
        k => k,
    }
}

/// A single-valued concept while it is being filled: value and the rank of the name it came from.
type Slot = Option<(String, u8)>;

/// Collects parameters for one hit.
pub struct HitBuilder<'s> {
    settings: &'s ParseSettings,
    received_at: Timestamp,
    seen: usize,
    pixel_id: Slot,
    event: Slot,
    event_id: Slot,
    url: Slot,
    referrer: Slot,
    ts: Slot,
    test_event_code: Slot,
    fbp: Slot,
    fbc: Slot,
    attrs: BTreeMap<String, String>,
    user: BTreeMap<String, String>,
    extra: BTreeMap<String, String>,
    flags: Flags,
}

/// What the request carries besides its parameters.
#[derive(Debug, Default)]
pub struct RequestMeta<'a> {
    /// Client address, already resolved by the trusted-proxy policy.
    pub ip: Option<IpAddr>,
    /// `User-Agent`.
    pub user_agent: Option<&'a str>,
    /// `Referer`, the page URL of last resort.
    pub referer: Option<&'a str>,
    /// `Cookie` header values, for `_fbp` / `_fbc`.
    pub cookies: Vec<&'a str>,
}

impl<'s> HitBuilder<'s> {
    /// A builder for a hit received at `received_at`.
    pub fn new(settings: &'s ParseSettings, received_at: Timestamp) -> Self {
        HitBuilder {
            settings,
            received_at,
            seen: 0,
            pixel_id: None,
            event: None,
            event_id: None,
            url: None,
            referrer: None,
            ts: None,
            test_event_code: None,
            fbp: None,
            fbc: None,
            attrs: BTreeMap::new(),
            user: BTreeMap::new(),
            extra: BTreeMap::new(),
            flags: Flags::default(),
        }
    }

    /// Flags collected so far, for callers that detect problems themselves (body, proxies).
    pub fn flags_mut(&mut self) -> &mut Flags {
        &mut self.flags
    }

    /// Adds the pairs of a query string or form body (`application/x-www-form-urlencoded`),
    /// flagging invalid percent-escapes and invalid UTF-8, which are decoded lossily.
    pub fn add_encoded(&mut self, input: &str) {
        for pair in decode::pairs(input) {
            if pair.bad_encoding {
                self.flags.set(Flag::BadEncoding);
            }
            if !self.add(&pair.key, &pair.value) {
                break;
            }
        }
    }

    /// Adds one decoded parameter. Returns false once the parameter limit is reached.
    pub fn add(&mut self, key: &str, value: &str) -> bool {
        let limits = &self.settings.limits;
        if self.seen >= limits.max_params {
            self.flags.set(Flag::TooManyParams);
            return false;
        }
        self.seen += 1;
        if key.len() > limits.max_key_bytes {
            self.flags.set(Flag::Oversize);
            return true;
        }
        let value = self.capped(value);
        match classify(key) {
            Concept::PixelId(rank) => self.fill(Field::PixelId, value, rank),
            Concept::Event(rank) => self.fill(Field::Event, value, rank),
            Concept::EventId(rank) => self.fill(Field::EventId, value, rank),
            Concept::Url(rank) => self.fill(Field::Url, value, rank),
            Concept::Referrer(rank) => self.fill(Field::Referrer, value, rank),
            Concept::Ts => self.fill(Field::Ts, value, 0),
            Concept::TestEventCode => self.fill(Field::TestEventCode, value, 0),
            Concept::Fbp => self.fill(Field::Fbp, value, 0),
            Concept::Fbc => self.fill(Field::Fbc, value, 0),
            Concept::Attr(k) => insert_first(&mut self.attrs, k, value.into_owned(), &mut self.flags),
            Concept::User(k) => self.add_user(k, &value),
            Concept::CacheBuster => {}
            Concept::Extra => insert_first(&mut self.extra, key, value.into_owned(), &mut self.flags),
        }
        true
    }

    fn capped<'v>(&mut self, value: &'v str) -> Cow<'v, str> {
        let max = self.settings.limits.max_value_bytes;
        if value.len() <= max {
            return Cow::Borrowed(value);
        }
        self.flags.set(Flag::Oversize);
        let mut end = max;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        Cow::Borrowed(&value[..end])
    }

    fn add_user(&mut self, key: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        let lower = if key.bytes().any(|b| b.is_ascii_uppercase()) { Cow::Owned(key.to_ascii_lowercase()) } else { Cow::Borrowed(key) };
        let key = user_key(&lower);
        match PiiField::from_key(key) {
            Some(field) => match pii::hash_field(field, value, &self.settings.pii) {
                Ok(hash) => insert_first(&mut self.user, key, hash, &mut self.flags),
                Err(_) => self.flags.set(Flag::InvalidPii(field)),
            },
            None => insert_first(&mut self.user, key, value.to_owned(), &mut self.flags),
        }
    }

    /// Fills a single-valued concept. An empty value counts as absent, so `pixel_id=&id=123`
    /// (an undefined tag variable beside a filled alias) keeps the alias.
    fn fill(&mut self, field: Field, value: Cow<'_, str>, rank: u8) {
        if value.is_empty() {
            return;
        }
        let slot = match field {
            Field::PixelId => &mut self.pixel_id,
            Field::Event => &mut self.event,
            Field::EventId => &mut self.event_id,
            Field::Url => &mut self.url,
            Field::Referrer => &mut self.referrer,
            Field::Ts => &mut self.ts,
            Field::TestEventCode => &mut self.test_event_code,
            Field::Fbp => &mut self.fbp,
            Field::Fbc => &mut self.fbc,
        };
        match slot {
            None => *slot = Some((value.into_owned(), rank)),
            Some((old, old_rank)) => {
                if *old != value {
                    self.flags.set(Flag::DuplicateParam);
                }
                if rank < *old_rank {
                    *slot = Some((value.into_owned(), rank));
                }
            }
        }
    }

    /// Finishes the hit with what the request carries besides its parameters.
    pub fn finish(mut self, meta: RequestMeta<'_>) -> Hit {
        let take = |s: Slot| s.map(|(v, _)| v).filter(|v| !v.is_empty());
        let pixel_id = take(self.pixel_id.take());
        match &pixel_id {
            None => self.flags.set(Flag::MissingPixelId),
            Some(id) if id.len() > 32 || !id.bytes().all(|b| b.is_ascii_digit()) => self.flags.set(Flag::BadPixelId),
            Some(_) => {}
        }
        let event = take(self.event.take());
        if event.is_none() {
            self.flags.set(Flag::MissingEvent);
        }
        let event_id = take(self.event_id.take()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let client_ts = match take(self.ts.take()) {
            None => None,
            Some(raw) => match raw.trim().parse::<i64>() {
                Ok(ts) => Some(ts),
                Err(_) => {
                    self.flags.set(Flag::BadTs);
                    insert_first(&mut self.extra, "ts", raw, &mut self.flags);
                    None
                }
            },
        };
        let url = take(self.url.take()).or_else(|| meta.referer.map(|r| self.capped(r).into_owned()));
        let referrer = take(self.referrer.take());
        let user_agent = meta.user_agent.map(|ua| self.capped(ua).into_owned());
        if user_agent.as_deref().is_some_and(looks_like_bot) {
            self.flags.set(Flag::Bot);
        }

        let cookie = |name: &str| {
            meta.cookies.iter().flat_map(|h| cookie::Cookie::split_parse(*h)).filter_map(Result::ok).find(|c| c.name() == name).map(|c| c.value().to_owned())
        };
        let fbp = take(self.fbp.take()).or_else(|| cookie("_fbp"));
        let fbclid = url.as_deref().and_then(fbclid_of);
        let fbc = take(self.fbc.take()).or_else(|| {
            let from_cookie = cookie("_fbc");
            match (&from_cookie, &fbclid) {
                (Some(c), Some(clid)) if c.rsplit('.').next() != Some(clid.as_str()) => None,
                (Some(_), _) => from_cookie,
                (None, _) => None,
            }
            .or_else(|| fbclid.as_ref().map(|clid| fbc_value(self.received_at, clid)))
        });
        for (k, v) in [("fbp", fbp), ("fbc", fbc)] {
            if let Some(v) = v {
                self.user.insert(k.to_owned(), v);
            }
        }

        Hit {
            schema: SCHEMA,
            received_at: self.received_at,
            pixel_id,
            event,
            event_id,
            ip: meta.ip,
            user_agent,
            url,
            referrer,
            client_ts,
            attrs: self.attrs,
            user: self.user,
            test_event_code: take(self.test_event_code.take()),
            flags: self.flags,
            extra: self.extra,
            capi_failure: None,
        }
    }
}

#[derive(Clone, Copy)]
enum Field {
    PixelId,
    Event,
    EventId,
    Url,
    Referrer,
    Ts,
    TestEventCode,
    Fbp,
    Fbc,
}

/// Inserts unless the key is present; a different later value only raises a flag.
fn insert_first(map: &mut BTreeMap<String, String>, key: &str, value: String, flags: &mut Flags) {
    match map.entry(key.to_owned()) {
        Entry::Vacant(e) => {
            e.insert(value);
        }
        Entry::Occupied(e) => {
            if *e.get() != value {
                flags.set(Flag::DuplicateParam);
            }
        }
    }
}

/// `fb.1.<ms>.<fbclid>`, the `_fbc` value Meta's pixel would have set (capi.md §7).
fn fbc_value(at: Timestamp, fbclid: &str) -> String {
    let mut v = String::with_capacity(20 + fbclid.len());
    v.push_str("fb.1.");
    v.push_str(itoa::Buffer::new().format(at.unix_millis()));
    v.push('.');
    v.push_str(fbclid);
    v
}

/// The `fbclid` query parameter of a page URL, decoded, case preserved.
fn fbclid_of(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    // Most page URLs carry no click id: skip decoding their queries.
    memchr::memmem::find(query.as_bytes(), b"fbclid")?;
    decode::pairs(query).find(|p| p.key == "fbclid" && !p.value.is_empty()).map(|p| p.value.into_owned())
}

/// User-agent fragments of crawlers, monitors, previews and HTTP libraries.
const BOT_MARKERS: &[&str] = &[
    "bot", "crawl", "spider", "slurp", "headless", "lighthouse", "facebookexternalhit", "preview", "monitor", "curl/", "wget/", "python-requests",
    "python-urllib", "aiohttp", "go-http-client", "java/", "okhttp", "axios/", "node-fetch", "libwww", "scrapy", "httpclient", "phantomjs",
];

static BOTS: LazyLock<AhoCorasick> =
    LazyLock::new(|| AhoCorasick::builder().ascii_case_insensitive(true).build(BOT_MARKERS).expect("static patterns build"));

/// Whether a user agent names a crawler or a script rather than a person's browser.
pub fn looks_like_bot(user_agent: &str) -> bool {
    // Traffic repeats a few user agents; remembering the last verdicts per thread skips the
    // automaton for them (a direct-mapped table: a collision just runs the automaton).
    const SLOTS: usize = 64;
    thread_local! {
        static RECENT: std::cell::RefCell<Vec<Option<(Box<str>, bool)>>> = std::cell::RefCell::new(vec![None; SLOTS]);
    }
    let b = user_agent.as_bytes();
    let slot = b.len().wrapping_mul(31).wrapping_add(b.last().map_or(0, |&c| c as usize)).wrapping_add(b.get(b.len() / 2).map_or(0, |&c| c as usize * 7)) % SLOTS;
    RECENT.with_borrow_mut(|recent| match &recent[slot] {
        Some((ua, verdict)) if **ua == *user_agent => *verdict,
        _ => {
            let verdict = BOTS.is_match(user_agent);
            if user_agent.len() <= 512 {
                recent[slot] = Some((user_agent.into(), verdict));
            }
            verdict
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(query: &str) -> Hit {
        let settings = ParseSettings::default();
        let mut b = HitBuilder::new(&settings, Timestamp::now());
        b.add_encoded(query);
        b.finish(RequestMeta::default())
    }

    #[test]
    fn classify_maps_every_convention() {
        assert_eq!(classify("cd[value]"), Concept::Attr("value"));
        assert_eq!(classify("x-fb-cd-currency"), Concept::Attr("currency"));
        assert_eq!(classify("ud[em]"), Concept::User("em"));
        assert_eq!(classify("x-fb-ud-fbp"), Concept::Fbp);
        assert_eq!(classify("cd[]"), Concept::Extra);
        assert_eq!(classify("cd[x"), Concept::Extra);
        assert_eq!(classify("gtmcb"), Concept::CacheBuster);
    }

    #[test]
    fn names_and_prefixes_match_in_any_case() {
        assert_eq!(classify("PIXEL_ID"), Concept::PixelId(0));
        assert_eq!(classify("USAT_em"), Concept::User("em"));
        assert_eq!(classify("X-FB-UD-EM"), Concept::User("EM"));
        assert_eq!(classify("Cd[Value]"), Concept::Attr("Value"));
        assert_eq!(classify("UD[FBP]"), Concept::Fbp);
    }

    #[test]
    fn contact_details_outside_the_conventions_are_hashed_not_kept() {
        let h = hit("pixel_id=1&event=Lead&email=Jane%40Example.com&customer_phone=%2B16505551212&ud%5Bemail%5D=bob%40x.io&usat_zip=94025-1234");
        assert!(h.extra.is_empty(), "{:?}", h.extra);
        assert_eq!(h.user["em"].len(), 64);
        assert_eq!(h.user["ph"].len(), 64);
        assert_eq!(h.user["zp"].len(), 64);
        assert!(h.flags.contains(Flag::DuplicateParam), "two different e-mails");
    }

    #[test]
    fn an_empty_value_is_absent_and_never_beats_a_filled_alias() {
        let h = hit("pixel_id=&id=123&event_id=&eid=abc&event=Lead&usat_em=");
        assert_eq!(h.pixel_id.as_deref(), Some("123"));
        assert_eq!(h.event_id, "abc");
        assert!(h.user.is_empty());
        assert_eq!(h.flags, Flags::default());
    }

    #[test]
    fn canonical_beats_alias_whatever_the_order() {
        let h = hit("id=2&pixel_id=1&ev=A&event=B");
        assert_eq!(h.pixel_id.as_deref(), Some("1"));
        assert_eq!(h.event.as_deref(), Some("B"));
        assert!(h.flags.contains(Flag::DuplicateParam));
    }

    #[test]
    fn bad_escapes_and_utf8_are_flagged_and_decoded_lossily() {
        let h = hit("pixel_id=1&event=a%zz&x=%FF");
        assert_eq!(h.event.as_deref(), Some("a%zz"));
        assert_eq!(h.extra["x"], "\u{FFFD}");
        assert!(h.flags.contains(Flag::BadEncoding));
        assert!(!hit("pixel_id=1&event=%41").flags.contains(Flag::BadEncoding));
        assert!(hit("a=%4").flags.contains(Flag::BadEncoding));
    }

    #[test]
    fn oversize_values_are_cut_on_a_char_boundary() {
        let settings = ParseSettings { limits: Limits { max_value_bytes: 4, ..Limits::default() }, ..Default::default() };
        let mut b = HitBuilder::new(&settings, Timestamp::now());
        b.add("event", "aéé");
        let h = b.finish(RequestMeta::default());
        assert_eq!(h.event.as_deref(), Some("aé"));
        assert!(h.flags.contains(Flag::Oversize));
    }

    #[test]
    fn bots_are_recognised_case_insensitively() {
        assert!(looks_like_bot("Mozilla/5.0 (compatible; Googlebot/2.1)"));
        assert!(looks_like_bot("curl/8.5.0"));
        assert!(!looks_like_bot("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"));
    }
}
