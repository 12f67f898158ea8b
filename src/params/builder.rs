//! [`HitBuilder`]: collects one hit's parameters into one text buffer and finishes a
//! [`DraftHit`] whose fields are ranges of it.

use std::net::IpAddr;

use super::names::{Concept, bare_contact, classify, user_alias};
use super::{ParseSettings, bots, decode};
use crate::pii::{self, PiiField};
use crate::record::{DraftHit, DraftParts, Entry, Flag, Flags, Hit, MapName, PixelId, PixelIdError, Routing, Source, Span, Timestamp};

/// The keys a builder adds to the record itself (personal-data fields in [`PiiField::ALL`] order,
/// then `fbp`, `fbc`, `ts`), at the start of every builder's text: each is a range of it rather
/// than a copy per hit.
const KEYS: &str = "emphfnlngedbctstzpcountryexternal_idf5firstf5lastfidobddobmdobyfbpfbcts";

/// Where each personal-data field's key lies in [`KEYS`].
const PII_KEYS: [Span; PiiField::ALL.len()] = {
    let mut spans = [Span { start: 0, end: 0 }; PiiField::ALL.len()];
    let (mut i, mut at) = (0, 0);
    while i < spans.len() {
        let len = PiiField::ALL[i].key().len() as u32;
        spans[i] = Span { start: at, end: at + len };
        at += len;
        i += 1;
    }
    spans
};

/// Where `fbp`, `fbc` and `ts` lie in [`KEYS`].
const FBP_KEY: Span = Span { start: KEYS.len() as u32 - 8, end: KEYS.len() as u32 - 5 };
const FBC_KEY: Span = Span { start: KEYS.len() as u32 - 5, end: KEYS.len() as u32 - 2 };
const TS_KEY: Span = Span { start: KEYS.len() as u32 - 2, end: KEYS.len() as u32 };

/// A personal-data field's key, in [`KEYS`].
fn pii_key(field: PiiField) -> Span {
    // `ALL` lists the fields in declaration order (a test checks it), so a field's place in it is
    // its discriminant.
    PII_KEYS[field as usize]
}

/// A single-valued concept while it is being filled: value and the rank of the name it came from.
type Slot = Option<(Span, u8)>;

/// Where a parameter goes, by its name.
enum Place {
    Slot(Field, u8),
    Attr(Span),
    User(UserName),
    Extra,
    Nowhere,
}

/// The name of a user attribute: part of the parameter's name (`usat_<name>`), or the field a
/// contact parameter outside the conventions stands for (`email` → `em`).
enum UserName {
    Sent(Span),
    Known(PiiField),
}

fn place(text: &str, key: Span) -> Place {
    match classify(&text[key.range()]) {
        Concept::PixelId(rank) => Place::Slot(Field::PixelId, rank),
        Concept::Event(rank) => Place::Slot(Field::Event, rank),
        Concept::EventId(rank) => Place::Slot(Field::EventId, rank),
        Concept::Url(rank) => Place::Slot(Field::Url, rank),
        Concept::Referrer(rank) => Place::Slot(Field::Referrer, rank),
        Concept::Ts => Place::Slot(Field::Ts, 0),
        Concept::TestEventCode => Place::Slot(Field::TestEventCode, 0),
        Concept::Fbp => Place::Slot(Field::Fbp, 0),
        Concept::Fbc => Place::Slot(Field::Fbc, 0),
        Concept::Attr(name) => Place::Attr(Span::within(text, name).expect("an attribute name is part of the key")),
        Concept::User(name) => Place::User(match Span::within(text, name) {
            Some(span) => UserName::Sent(span),
            None => UserName::Known(bare_contact(&text[key.range()]).and_then(PiiField::from_key).expect("a user name not in the key is a contact's")),
        }),
        Concept::CacheBuster => Place::Nowhere,
        Concept::Extra => Place::Extra,
    }
}

/// Collects parameters for one hit. The encoded input, what of it had to be decoded, and the
/// digests of personal data go one after another into one text buffer; the hit's fields are
/// ranges of it, so shaping a hit allocates that buffer and a list of map entries rather than a
/// string per field, and copies a name or value only if it has to be decoded. The finished
/// [`DraftHit`] writes its record line straight from the buffer.
pub struct HitBuilder<'s> {
    settings: &'s ParseSettings,
    received_at: Timestamp,
    seen: usize,
    /// What the fields below are ranges of: each encoded input as it came, then what had to be
    /// decoded, digests and the head's values. Decoded text of a parameter that is not kept is cut
    /// off again at once; the plaintext of personal data, once hashed, is cut off if it was
    /// decoded and overwritten with `*` in the input's copy if not.
    text: String,
    slots: [Slot; Field::COUNT],
    /// The attrs, user and extra maps, sorted by map then key; the first value of a key stays.
    entries: Vec<Entry>,
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
    /// The `Cookie` header (several lines joined with `; `), for `_fbp` / `_fbc`.
    pub cookies: Option<&'a str>,
}

impl<'s> HitBuilder<'s> {
    /// A builder for a hit received at `received_at`.
    pub fn new(settings: &'s ParseSettings, received_at: Timestamp) -> Self {
        HitBuilder {
            settings,
            received_at,
            seen: 0,
            text: {
                // Room for a typical query string, what decoding and finishing add, and `KEYS`:
                // `add_encoded` then need not grow it.
                let mut text = String::with_capacity(1024);
                text.push_str(KEYS);
                text
            },
            slots: [None; Field::COUNT],
            // A typical hit's attrs and user data without growing.
            entries: Vec::with_capacity(8),
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
        // The input is copied in whole: names and values with nothing to decode (most) are
        // ranges of that copy, and only escaped ones are decoded after it. Room is made for
        // those and for what finishing adds (digests, user agent, cookies' values) in the common
        // case: growing copies it all.
        if !self.fits(2 * input.len()) {
            return;
        }
        self.text.reserve(2 * input.len() + 512);
        let base = self.text.len();
        self.text.push_str(input);
        for pair in decode::marked_pairs(input) {
            let mark = self.text.len();
            let (key, bad_key) = self.decoded(base, input, pair.key, pair.key_escape);
            let (value, bad_value) = self.decoded(base, input, pair.value, pair.value_escape);
            if bad_key || bad_value {
                self.flags.set(Flag::BadEncoding);
            }
            if !self.add_at(mark, key, value, Some(Span::of_copy(base, input, pair.value))) {
                break;
            }
        }
    }

    /// Whether `more` bytes of text still fit the ranges' 32-bit offsets (with room for what
    /// finishing adds); input that does not is ignored and flagged `oversize`. Only a body limit
    /// set to gigabytes gets near it.
    fn fits(&mut self, more: usize) -> bool {
        const MAX_TEXT: usize = u32::MAX as usize - 1024 * 1024;
        let fits = self.text.len().saturating_add(more) <= MAX_TEXT;
        if !fits {
            self.flags.set(Flag::Oversize);
        }
        fits
    }

    /// `raw`, a slice of `input` (copied to the text at `base`) whose first `%` or `+` is at
    /// `escape`, decoded: the range of the copy if it needs no decoding, else appended decoded;
    /// and whether it met invalid input.
    fn decoded(&mut self, base: usize, input: &str, raw: &str, escape: Option<usize>) -> (Span, bool) {
        let Some(first) = escape else {
            return (Span::of_copy(base, input, raw), false);
        };
        let start = self.text.len();
        let bad = decode::decode_escaped_into(raw, first, &mut self.text);
        (Span::to_end(&self.text, start), bad)
    }

    /// Adds one decoded parameter. Returns false once the parameter limit is reached.
    pub fn add(&mut self, key: &str, value: &str) -> bool {
        if !self.fits(key.len() + value.len()) {
            return true;
        }
        let mark = self.text.len();
        self.text.push_str(key);
        let key = Span::to_end(&self.text, mark);
        self.text.push_str(value);
        let value = Span::to_end(&self.text, key.end as usize);
        self.add_at(mark, key, value, None)
    }

    /// Adds the parameter whose name and value are `key` and `value`, decoded text from `mark`
    /// on; `sent` is the value as sent when it is a range of an input's copy (personal data is
    /// overwritten there once hashed).
    fn add_at(&mut self, mark: usize, key: Span, value: Span, sent: Option<Span>) -> bool {
        let limits = &self.settings.limits;
        if self.seen >= limits.max_params {
            self.flags.set(Flag::TooManyParams);
            self.text.truncate(mark);
            return false;
        }
        self.seen += 1;
        if key.len() > limits.max_key_bytes {
            self.flags.set(Flag::Oversize);
            self.text.truncate(mark);
            return true;
        }
        let value = self.capped(value);
        let kept = match place(&self.text, key) {
            Place::Slot(field, rank) => self.fill(field, value, rank),
            Place::Attr(name) => self.insert_first(MapName::Attrs, name, value),
            Place::User(name) => return self.add_user(mark, name, value, sent),
            Place::Extra => self.insert_first(MapName::Extra, key, value),
            Place::Nowhere => false,
        };
        if !kept {
            self.text.truncate(mark);
        }
        true
    }

    /// `value` cut to the value limit at a character boundary (flagged).
    fn capped(&mut self, value: Span) -> Span {
        let max = self.settings.limits.max_value_bytes;
        if value.len() <= max {
            return value;
        }
        self.flags.set(Flag::Oversize);
        let mut end = value.start as usize + max;
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        Span { start: value.start, end: end as u32 }
    }

    /// Appends `s`, cut to the value limit (flagged).
    fn push_capped(&mut self, s: &str) -> Span {
        let start = self.text.len();
        self.text.push_str(s);
        let span = Span::to_end(&self.text, start);
        self.capped(span)
    }

    fn push(&mut self, s: &str) -> Span {
        let start = self.text.len();
        self.text.push_str(s);
        Span::to_end(&self.text, start)
    }

    fn str(&self, span: Span) -> &str {
        &self.text[span.range()]
    }

    /// A user attribute: personal data hashed, any other key kept as sent, under its lowercase
    /// name.
    fn add_user(&mut self, mark: usize, name: UserName, value: Span, sent: Option<Span>) -> bool {
        if value.is_empty() {
            self.text.truncate(mark);
            return true;
        }
        match name {
            UserName::Known(field) => self.add_pii(mark, field, value, sent),
            UserName::Sent(span) => {
                let given = self.str(span);
                let lowered = given.bytes().any(|b| b.is_ascii_uppercase()).then(|| given.to_ascii_lowercase());
                let lower = lowered.as_deref().unwrap_or(given);
                match PiiField::from_key(user_alias(lower).unwrap_or(lower)) {
                    Some(field) => self.add_pii(mark, field, value, sent),
                    None => {
                        let key = match lowered {
                            Some(lower) => self.push(&lower),
                            None => span,
                        };
                        if !self.insert_first(MapName::User, key, value) {
                            self.text.truncate(mark);
                        }
                    }
                }
            }
        }
        true
    }

    /// Personal data: its digest under the field's key. The plaintext leaves the buffer at once:
    /// decoded text (from `mark` on) is cut off, the value as sent (`sent`, a range of the
    /// input's copy) overwritten. An invalid value is dropped with a flag.
    fn add_pii(&mut self, mark: usize, field: PiiField, value: Span, sent: Option<Span>) {
        let digest = pii::hash_field_hex(field, self.str(value), &self.settings.pii);
        self.text.truncate(mark);
        if let Some(sent) = sent {
            self.scrub(sent);
        }
        match digest {
            Ok(hex) => {
                let key = pii_key(field);
                let value = self.push(hex.as_str());
                if !self.insert_first(MapName::User, key, value) {
                    self.text.truncate(mark);
                }
            }
            Err(_) => self.flags.set(Flag::InvalidPii(field)),
        }
    }

    /// Fills a single-valued concept; returns whether `value` is kept. An empty value counts as
    /// absent, so `pixel_id=&id=123` (an undefined tag variable beside a filled alias) keeps the
    /// alias.
    fn fill(&mut self, field: Field, value: Span, rank: u8) -> bool {
        if value.is_empty() {
            return false;
        }
        match self.slots[field as usize] {
            None => {
                self.slots[field as usize] = Some((value, rank));
                true
            }
            Some((old, old_rank)) => {
                if self.str(old) != self.str(value) {
                    self.flags.set(Flag::DuplicateParam);
                }
                let wins = rank < old_rank;
                if wins {
                    self.slots[field as usize] = Some((value, rank));
                }
                wins
            }
        }
    }

    /// Where `key` is or would go in `map`.
    fn find(&self, map: MapName, key: Span) -> Result<usize, usize> {
        let text = self.text.as_bytes();
        let key = &text[key.range()];
        // Keys are a few bytes: comparing them in a loop beats a memcmp call per step. Bytes
        // order as `str` does.
        let cmp = |a: &[u8]| a.iter().zip(key).find(|(a, b)| a != b).map_or(a.len().cmp(&key.len()), |(a, b)| a.cmp(b));
        self.entries.binary_search_by(|e| e.map.cmp(&map).then_with(|| cmp(&text[e.key.range()])))
    }

    /// Inserts unless the key is present (a different later value only raises a flag); returns
    /// whether it was inserted.
    fn insert_first(&mut self, map: MapName, key: Span, value: Span) -> bool {
        match self.find(map, key) {
            Ok(i) => {
                if self.str(self.entries[i].value) != self.str(value) {
                    self.flags.set(Flag::DuplicateParam);
                }
                false
            }
            Err(i) => {
                self.entries.insert(i, Entry { map, key, value });
                true
            }
        }
    }

    /// Sets `key` in `map`, replacing a value already there.
    fn upsert(&mut self, map: MapName, key: Span, value: Span) {
        match self.find(map, key) {
            Ok(i) => self.entries[i].value = value,
            Err(i) => self.entries.insert(i, Entry { map, key, value }),
        }
    }

    /// Overwrites `span` with as many `*` bytes, so the text keeps its length and every other
    /// range stays valid.
    fn scrub(&mut self, span: Span) {
        let range = span.range();
        assert!(self.text.is_char_boundary(range.start) && self.text.is_char_boundary(range.end));
        // SAFETY: both ends are character boundaries and every byte between becomes the ASCII
        // `*`, so the text stays valid UTF-8.
        unsafe { self.text.as_bytes_mut()[range].fill(b'*') };
    }

    /// `fbc` when no parameter sent one: the `_fbc` cookie (`from_cookie`) unless the page URL
    /// carries another click id; else `fb.1.<ms>.<fbclid>`, the value Meta's pixel would have
    /// set (`docs/forwarding.md#fbp-and-fbc`), from the page URL's `fbclid`, built in place at the end of the text.
    /// Nothing is written for a page URL without a click id (most hits).
    fn derived_fbc(&mut self, url: Option<Span>, from_cookie: Option<String>) -> Option<Span> {
        let Some(clid) = url.and_then(|url| fbclid_in(self.str(url))) else {
            return from_cookie.map(|c| self.push(&c));
        };
        let (raw, escape) = (Span::within(&self.text, clid.value).expect("the click id is part of the URL"), clid.value_escape);
        let mark = self.text.len();
        self.text.push_str("fb.1.");
        self.text.push_str(itoa::Buffer::new().format(self.received_at.unix_millis()));
        self.text.push('.');
        let clid_start = self.text.len();
        match escape {
            // SAFETY: `raw` is a `str` slice of the text, so whole characters: appending a copy
            // of it keeps the text UTF-8.
            None => unsafe { self.text.as_mut_vec().extend_from_within(raw.range()) },
            Some(first) => {
                // Rare: an escaped click id. Decoded from a copy, as the text grows meanwhile.
                let value = self.str(raw).to_owned();
                decode::decode_escaped_into(&value, first, &mut self.text);
            }
        }
        let clid = Span::to_end(&self.text, clid_start);
        match from_cookie {
            Some(c) if c.rsplit('.').next() == Some(self.str(clid)) => {
                self.text.truncate(mark);
                Some(self.push(&c))
            }
            _ => Some(Span::to_end(&self.text, mark)),
        }
    }

    /// Finishes the hit with what the request carries besides its parameters.
    pub fn finish(self, meta: RequestMeta<'_>) -> Hit {
        self.finish_draft(meta).to_hit()
    }

    /// Finishes the hit, leaving it in the builder's buffer: [`DraftHit::write_line`] writes its
    /// record from there, [`DraftHit::to_hit`] builds the [`Hit`] an outlet may need.
    pub fn finish_draft(mut self, meta: RequestMeta<'_>) -> DraftHit {
        let slot = |field: Field| self.slots[field as usize].map(|(span, _)| span);
        let (pixel_id, event, ts, url, referrer, fbp, fbc, test_event_code) =
            (slot(Field::PixelId), slot(Field::Event), slot(Field::Ts), slot(Field::Url), slot(Field::Referrer), slot(Field::Fbp), slot(Field::Fbc), slot(Field::TestEventCode));
        let pixel = PixelId::of_field(pixel_id.map(|id| self.str(id)));
        match pixel {
            Ok(_) => {}
            Err(PixelIdError::Missing) => self.flags.set(Flag::MissingPixelId),
            Err(PixelIdError::Invalid) => self.flags.set(Flag::BadPixelId),
        }
        if event.is_none() {
            self.flags.set(Flag::MissingEvent);
        }
        let event_id = match slot(Field::EventId) {
            Some(id) => id,
            None => self.push(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut [0; 36])),
        };
        let client_ts = match ts {
            None => None,
            Some(raw) => match self.str(raw).trim().parse::<i64>() {
                Ok(ts) => Some(ts),
                Err(_) => {
                    self.flags.set(Flag::BadTs);
                    self.insert_first(MapName::Extra, TS_KEY, raw);
                    None
                }
            },
        };
        let url = url.or_else(|| meta.referer.map(|r| self.push_capped(r)));
        let user_agent = meta.user_agent.map(|ua| self.push_capped(ua));
        if user_agent.is_some_and(|ua| bots::looks_like_bot(self.str(ua))) {
            self.flags.set(Flag::Bot);
        }

        let cookie = |name: &str| meta.cookies.into_iter().flat_map(cookie::Cookie::split_parse).filter_map(Result::ok).find(|c| c.name() == name).map(|c| c.value().to_owned());
        let fbp = fbp.or_else(|| cookie("_fbp").map(|v| self.push(&v)));
        let fbc = fbc.or_else(|| self.derived_fbc(url, cookie("_fbc")));
        for (key, value) in [(FBP_KEY, fbp), (FBC_KEY, fbc)] {
            if let Some(value) = value {
                self.upsert(MapName::User, key, value);
            }
        }

        let parts = DraftParts {
            received_at: self.received_at,
            source: Source::Pixel,
            text: self.text,
            pixel_id,
            pixel: pixel.ok(),
            account_id: None,
            event,
            event_id,
            ip: meta.ip,
            user_agent,
            url,
            referrer,
            client_ts,
            test_event_code,
            entries: self.entries,
            flags: self.flags,
            routing: Routing::default(),
        };
        // SAFETY: every span was made from a `str` slice of the text, from what was pushed onto
        // it, or cut with `is_char_boundary` (`capped`): in bounds and on character boundaries.
        // The text only grew after a span was made, and a truncation never cuts below a span
        // still held (it drops what it cuts).
        unsafe { DraftHit::new(parts) }
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

impl Field {
    const COUNT: usize = 9;
}

/// The `fbclid` query parameter of a page URL (the first with a value), as sent.
fn fbclid_in(url: &str) -> Option<decode::RawPair<'_>> {
    // memchr: `str::split_once(char)` walks the URL byte by byte.
    let query = &url[memchr::memchr(b'?', url.as_bytes())? + 1..];
    let query = memchr::memchr(b'#', query.as_bytes()).map_or(query, |end| &query[..end]);
    // Most page URLs carry no click id: skip splitting their queries.
    memchr::memmem::find(query.as_bytes(), b"fbclid")?;
    decode::marked_pairs(query).find(|p| !p.value.is_empty() && decode::decoded(p.key, p.key_escape) == "fbclid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Limits;

    fn hit(query: &str) -> Hit {
        let settings = ParseSettings::default();
        let mut b = HitBuilder::new(&settings, Timestamp::now());
        b.add_encoded(query);
        b.finish(RequestMeta::default())
    }

    #[test]
    fn the_builder_s_own_keys_are_where_their_ranges_say() {
        let key = |span: Span| &KEYS[span.range()];
        for (i, field) in PiiField::ALL.into_iter().enumerate() {
            assert_eq!(key(PII_KEYS[i]), field.key());
            assert_eq!(pii_key(field), PII_KEYS[i]);
        }
        assert_eq!([key(FBP_KEY), key(FBC_KEY), key(TS_KEY)], ["fbp", "fbc", "ts"]);
        assert_eq!(PII_KEYS[PII_KEYS.len() - 1].end, FBP_KEY.start, "nothing else in KEYS");
    }

    #[test]
    fn fbc_comes_from_the_page_url_s_click_id_unless_a_cookie_has_the_same_one() {
        let settings = ParseSettings::default();
        let at = Timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123));
        let fbc = |query: &str, cookies: Option<&str>| {
            let mut b = HitBuilder::new(&settings, at);
            b.add_encoded(query);
            b.finish(RequestMeta { cookies, ..RequestMeta::default() }).user.get("fbc").cloned()
        };
        let url = "url=https%3A%2F%2Fs.example%2Fp%3Fa%3D1%26fbclid%3DAbC%252B1%26fbclid%3Dx%23frag";
        assert_eq!(fbc(url, None).as_deref(), Some("fb.1.1700000000123.AbC+1"), "decoded once more, case kept");
        assert_eq!(fbc("url=https%3A%2F%2Fs.example%2Fp%3Ffbclid%3DAbC", Some("_fbc=fb.1.1.AbC")).as_deref(), Some("fb.1.1.AbC"));
        assert_eq!(fbc("url=https%3A%2F%2Fs.example%2Fp%3Ffbclid%3DNew", Some("_fbc=fb.1.1.Old")).as_deref(), Some("fb.1.1700000000123.New"));
        assert_eq!(fbc("url=https%3A%2F%2Fs.example%2Fp%3Ffbcl%69d%3DK", None).as_deref(), Some("fb.1.1700000000123.K"), "an escaped name");
        assert_eq!(fbc("url=https%3A%2F%2Fs.example%2Fp%3Ffbclid%3D", Some("_fbc=fb.1.1.C")).as_deref(), Some("fb.1.1.C"));
        assert_eq!(fbc("url=https%3A%2F%2Fs.example%2Fp%3Fx%3D1", None), None);
        assert_eq!(fbc("fbc=fb.1.2.P&url=https%3A%2F%2Fs.example%2Fp%3Ffbclid%3DQ", None).as_deref(), Some("fb.1.2.P"), "a parameter wins");
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
    fn no_plaintext_personal_data_stays_in_the_buffer() {
        let settings = ParseSettings::default();
        let mut b = HitBuilder::new(&settings, Timestamp::now());
        // A fixed event id: a generated one is random hex that may hold "650" or "555".
        b.add_encoded("event_id=e1&usat_em=jane%40example.com&email=Bob@Mail.io&ud%5Bph%5D=%2B1+650+555+1212&usat_fn=Zo%C3%AB&usat_ln=not%20valid%21%21&x=keep");
        b.add("usat_ct", "Springfield");
        let draft = b.finish_draft(RequestMeta::default());
        for plain in ["jane", "example", "bob", "mail.io", "650", "555", "zo", "valid", "springfield"] {
            assert!(!draft.text().to_lowercase().contains(plain), "{plain} in {:?}", draft.text());
        }
        assert!(draft.text().contains("keep"));
        assert_eq!(draft.to_hit().user.len(), 5, "em (twice: the first kept), ph, fn, ln, ct hashed");
        assert!(!format!("{draft:?}").contains("****"), "Debug shows fields, not the buffer");
    }
}
