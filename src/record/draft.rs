//! A finished hit still in its builder's text buffer: the fields are ranges of one string, so a
//! hit costs that string and a list of map entries rather than a string per field. The record
//! line is written straight from the buffer; the owned [`Hit`] is built only for an outlet that
//! keeps hits.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

use super::{Fields, Flags, Hit, PixelId, PixelIdError, Routing, SCHEMA, Source, Timestamp, write_line_within_limit};

/// A byte range of a draft's text buffer (32-bit: the builder keeps the text below 4 GiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// `start..text.len()`.
    pub fn to_end(text: &str, start: usize) -> Span {
        Span { start: start as u32, end: text.len() as u32 }
    }

    /// Where `part`, a slice of `input`, lies in the copy of `input` at `base` of a text.
    pub fn of_copy(base: usize, input: &str, part: &str) -> Span {
        let start = base + (part.as_ptr() as usize - input.as_ptr() as usize);
        Span { start: start as u32, end: (start + part.len()) as u32 }
    }

    /// Where `part` lies in `text`, if it is a slice of it.
    pub fn within(text: &str, part: &str) -> Option<Span> {
        let start = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
        (start + part.len() <= text.len()).then_some(Span { start: start as u32, end: (start + part.len()) as u32 })
    }

    /// As a `usize` range.
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    /// Its length in bytes.
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether it is empty.
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// The record map an entry belongs to; entries sort by map, then key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MapName {
    /// `attrs`: event attributes.
    Attrs,
    /// `user`: user attributes (personal data hashed).
    User,
    /// `extra`: every other parameter.
    Extra,
}

/// One key of one of the record's maps.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Which map.
    pub map: MapName,
    /// The key's text.
    pub key: Span,
    /// The value's text.
    pub value: Span,
}

/// A finished hit still in its builder's text buffer. It writes its record line without building
/// the [`Hit`] ([`DraftHit::write_line`]); [`DraftHit::to_hit`] builds that for an outlet that
/// keeps hits. Both give the same record.
pub struct DraftHit {
    parts: DraftParts,
}

/// What a [`DraftHit`] is made of: a text buffer and the ranges of it that are the record's
/// fields. Made by the parameter builder (`params::HitBuilder`), which upholds [`DraftHit::new`]'s contract.
pub struct DraftParts {
    /// When the edge received the request.
    pub received_at: Timestamp,
    /// Where the event came from.
    pub source: Source,
    /// Every field's text lies in here.
    pub text: String,
    /// `pixel_id` as sent.
    pub pixel_id: Option<Span>,
    /// The pixel id, when `pixel_id` is one.
    pub pixel: Option<PixelId>,
    /// `account_id`: the registered pixel's account (the builder leaves it `None`; the intake
    /// sets it from the pixel's settings).
    pub account_id: Option<Arc<str>>,
    /// `event`.
    pub event: Option<Span>,
    /// `event_id` (sent or generated).
    pub event_id: Span,
    /// The client address.
    pub ip: Option<IpAddr>,
    /// `user_agent`.
    pub user_agent: Option<Span>,
    /// `url`.
    pub url: Option<Span>,
    /// `referrer`.
    pub referrer: Option<Span>,
    /// `client_ts`.
    pub client_ts: Option<i64>,
    /// `test_event_code`.
    pub test_event_code: Option<Span>,
    /// The `attrs`, `user` and `extra` maps, sorted by map then key, each key once.
    pub entries: Vec<Entry>,
    /// The flags.
    pub flags: Flags,
    /// What the pixel's settings say about forwarding (not part of the record).
    pub routing: Routing,
}

/// The fields only: the buffer may still hold text of parameters that were not kept.
impl std::fmt::Debug for DraftHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DraftHit")
            .field("pixel_id", &self.pixel_id())
            .field("event", &self.event())
            .field("event_id", &self.event_id())
            .field("flags", &self.parts.flags)
            .finish_non_exhaustive()
    }
}

impl DraftHit {
    /// The draft of `parts`.
    ///
    /// # Safety
    ///
    /// Every span in `parts` (fields and entries) is a range of `parts.text` that lies on
    /// character boundaries: fields are read without re-checking.
    pub unsafe fn new(parts: DraftParts) -> DraftHit {
        debug_assert!(parts.spans().all(|s| parts.text.get(s.range()).is_some()), "every span a range of the text, on character boundaries");
        DraftHit { parts }
    }

    /// The pixel id, when the hit sent one that is valid.
    pub fn pixel(&self) -> Result<PixelId, PixelIdError> {
        match (self.parts.pixel, self.parts.pixel_id) {
            (Some(id), _) => Ok(id),
            (None, Some(_)) => Err(PixelIdError::Invalid),
            (None, None) => Err(PixelIdError::Missing),
        }
    }

    /// Sets `source`, where the event came from.
    pub fn set_source(&mut self, source: Source) {
        self.parts.source = source;
    }

    /// Where the event came from.
    pub fn source(&self) -> Source {
        self.parts.source
    }

    /// Sets `account_id`, the registered pixel's account.
    pub fn set_account_id(&mut self, account_id: Option<Arc<str>>) {
        self.parts.account_id = account_id;
    }

    /// The flags, for what is found after shaping (the pixel's settings).
    pub fn flags_mut(&mut self) -> &mut Flags {
        &mut self.parts.flags
    }

    /// What the pixel's settings say about forwarding the hit.
    pub fn routing(&self) -> &Routing {
        &self.parts.routing
    }

    /// Sets what the pixel's settings say about forwarding the hit.
    pub fn set_routing(&mut self, routing: Routing) {
        self.parts.routing = routing;
    }

    /// The test-events code the hit's forwarded event goes with: its own, else its pixel's test
    /// mode's.
    pub fn forward_test_event_code(&self) -> Option<&str> {
        self.parts.routing.test_event_code(self.opt(self.parts.test_event_code))
    }

    /// Roughly the heap bytes the draft holds, for memory budgets.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<DraftHit>() + self.parts.text.capacity() + self.parts.entries.capacity() * std::mem::size_of::<Entry>()
    }

    /// The text buffer (for tests that check what it still holds).
    #[cfg(test)]
    pub fn text(&self) -> &str {
        &self.parts.text
    }

    /// A field's text. Read for every field of every record written: sliced without the bounds
    /// and boundary checks, which the builder made true when it made the range.
    fn str(&self, span: Span) -> &str {
        let range = span.range();
        debug_assert!(self.parts.text.get(range.clone()).is_some(), "a range of the text, on character boundaries");
        // SAFETY: `DraftHit::new`'s contract: every span it holds is in bounds and on character
        // boundaries, and the text never changes after.
        unsafe { self.parts.text.get_unchecked(range) }
    }

    fn opt(&self, span: Option<Span>) -> Option<&str> {
        span.map(|s| self.str(s))
    }

    fn map(&self, map: MapName) -> impl Iterator<Item = (&str, &str)> {
        self.parts.entries.iter().filter(move |e| e.map == map).map(|e| (self.str(e.key), self.str(e.value)))
    }

    fn owned_map(&self, map: MapName) -> BTreeMap<String, String> {
        self.map(map).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    /// The record as one NDJSON line, newline included, appended to `out`: the same bytes as
    /// `self.to_hit().write_line(out)`, written from the buffer.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        if write_line_within_limit(self, out).is_err() {
            // Over the record limit: the Hit knows how to cut itself to fit.
            self.to_hit().write_line(out);
        }
    }

    /// The hit as an owned [`Hit`].
    pub fn to_hit(&self) -> Hit {
        let owned = |span: Option<Span>| span.map(|s| self.str(s).to_owned());
        Hit {
            schema: SCHEMA,
            source: self.parts.source,
            received_at: self.parts.received_at,
            pixel_id: owned(self.parts.pixel_id),
            pixel: self.parts.pixel,
            account_id: self.parts.account_id.clone(),
            event: owned(self.parts.event),
            event_id: self.str(self.parts.event_id).to_owned(),
            ip: self.parts.ip,
            user_agent: owned(self.parts.user_agent),
            url: owned(self.parts.url),
            referrer: owned(self.parts.referrer),
            client_ts: self.parts.client_ts,
            attrs: self.owned_map(MapName::Attrs),
            user: self.owned_map(MapName::User),
            test_event_code: owned(self.parts.test_event_code),
            flags: self.parts.flags.clone(),
            extra: self.owned_map(MapName::Extra),
            routing: self.parts.routing.clone(),
        }
    }
}

impl Fields for DraftHit {
    fn source(&self) -> Source {
        self.parts.source
    }
    fn received_at(&self) -> Timestamp {
        self.parts.received_at
    }
    fn pixel_id(&self) -> Option<&str> {
        self.opt(self.parts.pixel_id)
    }
    fn account_id(&self) -> Option<&str> {
        self.parts.account_id.as_deref()
    }
    fn event(&self) -> Option<&str> {
        self.opt(self.parts.event)
    }
    fn event_id(&self) -> &str {
        self.str(self.parts.event_id)
    }
    fn ip(&self) -> Option<IpAddr> {
        self.parts.ip
    }
    fn user_agent(&self) -> Option<&str> {
        self.opt(self.parts.user_agent)
    }
    fn url(&self) -> Option<&str> {
        self.opt(self.parts.url)
    }
    fn referrer(&self) -> Option<&str> {
        self.opt(self.parts.referrer)
    }
    fn client_ts(&self) -> Option<i64> {
        self.parts.client_ts
    }
    fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map(MapName::Attrs)
    }
    fn user(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map(MapName::User)
    }
    fn test_event_code(&self) -> Option<&str> {
        self.opt(self.parts.test_event_code)
    }
    fn flags(&self) -> &Flags {
        &self.parts.flags
    }
    fn extra(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map(MapName::Extra)
    }
}

impl DraftParts {
    /// Every span the parts hold.
    fn spans(&self) -> impl Iterator<Item = Span> + '_ {
        let fields = [self.pixel_id, self.event, Some(self.event_id), self.user_agent, self.url, self.referrer, self.test_event_code];
        fields.into_iter().flatten().chain(self.entries.iter().flat_map(|e| [e.key, e.value]))
    }
}
