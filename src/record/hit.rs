//! The owned record of one hit, as the outlets that keep hits (the forwarder) hold it. Its serde
//! form *is* the NDJSON line (`docs/records.md#schema`); the hand-written encoder
//! ([`super::json`]) writes the same bytes faster.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use super::{Fields, Flag, Flags, MAX_RECORD_BYTES, PixelId, Source, Timestamp, write_line_within_limit};

/// One pixel hit, exactly as it is written to the sink.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// Always [`SCHEMA`], so downstream readers can tell record versions apart.
    pub schema: &'static str,
    /// Where the event came from: a pixel request, the API, EventBridge or SQS.
    pub source: Source,
    /// When the edge received the request (RFC 3339 UTC, milliseconds).
    pub received_at: Timestamp,
    /// Pixel id (`pixel_id` / `id` / `pid`), as sent, valid or not.
    pub pixel_id: Option<String>,
    /// The pixel id when it is one ([`PixelId::parse`]), parsed once where the hit was shaped:
    /// what outlets route by. Not part of the record.
    #[serde(skip)]
    pub pixel: Option<PixelId>,
    /// The account of a registered pixel (from the registry, set by the intake); null for any
    /// other hit.
    #[serde(serialize_with = "opt_str")]
    pub account_id: Option<Arc<str>>,
    /// Event name (`event` / `ev`), as sent.
    pub event: Option<String>,
    /// Deduplication key: the request's `event_id` / `eid`, else a generated UUID.
    pub event_id: String,
    /// Client address after the trusted-proxy policy.
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// Page URL: `url` / `dl`, else the `Referer` header.
    pub url: Option<String>,
    /// The page's own referrer: `ref` / `rl`.
    pub referrer: Option<String>,
    /// Client event time in Unix milliseconds (`ts`), when it parsed as an integer.
    pub client_ts: Option<i64>,
    /// Event attributes (`evat_k` / `cd[k]` / `x-fb-cd-k`), values as received.
    pub attrs: BTreeMap<String, String>,
    /// User attributes (`usat_k` / `ud[k]` / `x-fb-ud-k`): personal data SHA-256 hashed,
    /// `fbp` / `fbc` unhashed.
    pub user: BTreeMap<String, String>,
    /// Meta Events Manager test code, routed to "Test events" downstream.
    pub test_event_code: Option<String>,
    /// What was wrong or notable, each flag once, in the order first seen.
    pub flags: Flags,
    /// Every other parameter, cache-busters excepted.
    pub extra: BTreeMap<String, String>,
    /// What the pixel's settings say about forwarding the hit. Not part of the record.
    #[serde(skip)]
    pub routing: Routing,
}

/// What a registered pixel's settings say about forwarding its hits, set on the hit by the
/// intake (the registry is above this layer): plain values, so a destination needs no lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// The pixel's forwarding is off: the hit goes to no destination.
    pub forwarding_off: bool,
    /// The pixel's test mode: the test-events code of a forwarded event that carries none of its
    /// own.
    pub test_event_code: Option<Arc<str>>,
}

impl Routing {
    /// The test-events code a forwarded event goes with: the hit's own, else the pixel's.
    pub fn test_event_code<'a>(&'a self, own: Option<&'a str>) -> Option<&'a str> {
        own.or(self.test_event_code.as_deref())
    }
}

fn opt_str<S: Serializer>(value: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    value.as_deref().serialize(s)
}

impl Fields for Hit {
    fn source(&self) -> Source {
        self.source
    }
    fn received_at(&self) -> Timestamp {
        self.received_at
    }
    fn pixel_id(&self) -> Option<&str> {
        self.pixel_id.as_deref()
    }
    fn account_id(&self) -> Option<&str> {
        self.account_id.as_deref()
    }
    fn event(&self) -> Option<&str> {
        self.event.as_deref()
    }
    fn event_id(&self) -> &str {
        &self.event_id
    }
    fn ip(&self) -> Option<IpAddr> {
        self.ip
    }
    fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }
    fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }
    fn referrer(&self) -> Option<&str> {
        self.referrer.as_deref()
    }
    fn client_ts(&self) -> Option<i64> {
        self.client_ts
    }
    fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
    fn user(&self) -> impl Iterator<Item = (&str, &str)> {
        self.user.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
    fn test_event_code(&self) -> Option<&str> {
        self.test_event_code.as_deref()
    }
    fn flags(&self) -> &Flags {
        &self.flags
    }
    fn extra(&self) -> impl Iterator<Item = (&str, &str)> {
        self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// What an over-long record lost to fit [`MAX_RECORD_BYTES`].
#[derive(Debug, Clone, Serialize)]
pub struct Truncation {
    /// Length of the full line, newline included.
    pub original_bytes: usize,
    /// The parameters left out, as `attrs.k`, `extra.k` or `user.k`, largest first.
    pub dropped: Vec<String>,
}

impl Hit {
    /// The pixel id, when the hit sent one that is valid.
    pub fn pixel(&self) -> Result<PixelId, super::PixelIdError> {
        match (self.pixel, &self.pixel_id) {
            (Some(id), _) => Ok(id),
            (None, Some(_)) => Err(super::PixelIdError::Invalid),
            (None, None) => Err(super::PixelIdError::Missing),
        }
    }

    /// The test-events code the hit's forwarded event goes with: its own, else its pixel's test
    /// mode's.
    pub fn forward_test_event_code(&self) -> Option<&str> {
        self.routing.test_event_code(self.test_event_code.as_deref())
    }

    /// Roughly the heap bytes this hit holds, for memory budgets.
    pub fn approx_bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let map = |m: &BTreeMap<String, String>| m.iter().map(|(k, v)| k.len() + v.len() + 48).sum::<usize>();
        std::mem::size_of::<Hit>()
            + self.event_id.len()
            + [&self.pixel_id, &self.event, &self.user_agent, &self.url, &self.referrer, &self.test_event_code].into_iter().map(opt).sum::<usize>()
            + map(&self.attrs)
            + map(&self.user)
            + map(&self.extra)
    }

    /// The record as one NDJSON line, newline included, appended to `out`. A line over
    /// [`MAX_RECORD_BYTES`] becomes the same record without its largest parameters, flagged
    /// `oversize` and carrying a [`Truncation`] that says what was dropped and how big it was.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        if let Err(len) = write_line_within_limit(self, out) {
            push_json(out, &self.truncated(len));
        }
    }

    fn truncated(&self, original_bytes: usize) -> TruncatedHit {
        let mut hit = self.clone();
        hit.flags.set(Flag::Oversize);
        let mut entries: Vec<(usize, &'static str, String)> = Vec::new();
        for (map, name) in [(&self.attrs, "attrs"), (&self.extra, "extra"), (&self.user, "user")] {
            entries.extend(map.iter().map(|(k, v)| (k.len() + v.len(), name, k.clone())));
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.0));
        let mut dropped = Vec::new();
        let mut excess = original_bytes.saturating_sub(MAX_RECORD_BYTES) as isize + 4096;
        for (size, map, key) in entries {
            if excess <= 0 {
                break;
            }
            match map {
                "attrs" => hit.attrs.remove(&key),
                "extra" => hit.extra.remove(&key),
                _ => hit.user.remove(&key),
            };
            excess -= size as isize;
            dropped.push(format!("{map}.{key}"));
        }
        for long in [&mut hit.url, &mut hit.referrer, &mut hit.user_agent] {
            if let Some(v) = long.as_mut().filter(|v| v.len() > 8192) {
                let mut end = 8192;
                while !v.is_char_boundary(end) {
                    end -= 1;
                }
                v.truncate(end);
            }
        }
        TruncatedHit { hit, oversize: Truncation { original_bytes, dropped } }
    }
}

/// A hit cut to fit, serialised as the hit's fields plus `oversize`.
#[derive(Serialize)]
struct TruncatedHit {
    #[serde(flatten)]
    hit: Hit,
    oversize: Truncation,
}

fn push_json<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    // Strings, maps and numbers into a Vec: serialising cannot fail.
    serde_json::to_writer(&mut *out, value).expect("a record always serialises");
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SCHEMA;

    #[test]
    fn an_oversize_record_drops_its_largest_parameters_to_fit() {
        let settings = crate::params::ParseSettings::default();
        let mut b = crate::params::HitBuilder::new(&settings, Timestamp::now());
        b.add("event", "Lead");
        for i in 0..200 {
            b.add(&format!("evat_k{i:03}"), &"x".repeat(8000));
        }
        b.add("evat_small", "1");
        let hit = b.finish(Default::default());
        let mut line = Vec::new();
        hit.write_line(&mut line);
        assert!(line.len() <= MAX_RECORD_BYTES && line.ends_with(b"\n"));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["event"], "Lead");
        assert_eq!(v["attrs"]["small"], "1");
        assert!(v["flags"].as_array().unwrap().iter().any(|f| f == "oversize"));
        assert!(v["oversize"]["original_bytes"].as_u64().unwrap() > MAX_RECORD_BYTES as u64);
        let dropped = v["oversize"]["dropped"].as_array().unwrap().len();
        assert!(dropped > 0 && dropped + v["attrs"].as_object().unwrap().len() == 201);
    }
}
