//! The raw record of one pixel hit (SPEC §5) and the flags that say what was wrong with it.
//!
//! A [`Hit`] is built once on the request path by [`crate::params`] and then shared, read-only,
//! by every outlet (the raw-record sink today, the Conversions API forwarder later). Its serde
//! form *is* the NDJSON line: field order and names are the public schema.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

mod json;

/// Value of the `schema` field of every record.
pub const SCHEMA: &str = "pixelgate.hit/1";

/// One pixel hit, exactly as it is written to the sink.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// Always [`SCHEMA`], so downstream readers can tell record versions apart.
    pub schema: &'static str,
    /// When the edge received the request (RFC 3339 UTC, milliseconds).
    pub received_at: Timestamp,
    /// Meta pixel id (`pixel_id` / `id` / `pid`).
    pub pixel_id: Option<String>,
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
    /// Only on the second record of a hit whose Conversions API delivery was given up (flag
    /// `capi_failed`): why. Absent from ordinary records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capi_failure: Option<CapiFailure>,
}

/// Read access to a record's fields, in schema order, so that one encoder writes the line of a
/// [`Hit`] and of a hit still in its builder's buffer ([`crate::params::DraftHit`]) alike. Map
/// entries come sorted by key, as a `BTreeMap` gives them.
pub trait Fields {
    fn received_at(&self) -> Timestamp;
    fn pixel_id(&self) -> Option<&str>;
    fn event(&self) -> Option<&str>;
    fn event_id(&self) -> &str;
    fn ip(&self) -> Option<IpAddr>;
    fn user_agent(&self) -> Option<&str>;
    fn url(&self) -> Option<&str>;
    fn referrer(&self) -> Option<&str>;
    fn client_ts(&self) -> Option<i64>;
    fn attrs(&self) -> impl Iterator<Item = (&str, &str)>;
    fn user(&self) -> impl Iterator<Item = (&str, &str)>;
    fn test_event_code(&self) -> Option<&str>;
    fn flags(&self) -> &Flags;
    fn extra(&self) -> impl Iterator<Item = (&str, &str)>;
    fn capi_failure(&self) -> Option<&CapiFailure>;
}

impl Fields for Hit {
    fn received_at(&self) -> Timestamp {
        self.received_at
    }
    fn pixel_id(&self) -> Option<&str> {
        self.pixel_id.as_deref()
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
    fn capi_failure(&self) -> Option<&CapiFailure> {
        self.capi_failure.as_ref()
    }
}

/// Appends `record`'s NDJSON line, newline included, to `out`, unless the line would be over
/// [`MAX_RECORD_BYTES`]: then `out` is left as it was and the error is the line's length (see
/// [`Hit::write_line`], which cuts such a record to fit).
pub fn write_line_within_limit<F: Fields>(record: &F, out: &mut Vec<u8>) -> Result<(), usize> {
    let start = out.len();
    json::write_hit(out, record);
    out.push(b'\n');
    let len = out.len() - start;
    if len > MAX_RECORD_BYTES {
        out.truncate(start);
        return Err(len);
    }
    Ok(())
}

/// Why a hit's Conversions API delivery was given up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapiFailure {
    /// A closed label (also used in metrics), e.g. `invalid_token`, `rejected_no_user_agent`,
    /// `retries_exhausted`, `invalid_parameter`.
    pub reason: &'static str,
    /// What Meta or the transport said, for a person; never carries the token.
    pub detail: String,
    /// Graph API error code, when Meta answered with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// How many requests carried the event (0 when it was never sent).
    pub attempts: u32,
}

/// Wall-clock instant serialised as RFC 3339 UTC with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Timestamp(SystemTime::now())
    }

    /// Milliseconds since the Unix epoch (0 for times before it).
    pub fn unix_millis(self) -> i64 {
        self.since_epoch().as_millis() as i64
    }

    /// Whole hours since the Unix epoch: the file sink's partition key.
    pub fn unix_hour(self) -> u64 {
        self.since_epoch().as_secs() / 3600
    }

    fn since_epoch(self) -> Duration {
        self.0.duration_since(UNIX_EPOCH).unwrap_or_default()
    }

    /// `YYYY/MM/DD/HH` of this instant in UTC, the prefix layout Firehose gives S3.
    pub fn hour_prefix(self) -> String {
        let s = humantime::format_rfc3339_seconds(self.0).to_string();
        // "2026-11-22T20:02:34Z"
        format!("{}/{}/{}/{}", &s[0..4], &s[5..7], &s[8..10], &s[11..13])
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(self.0))
    }
}

/// Something wrong or notable about a hit. The label set is closed so that flags can be metric
/// labels without ever carrying request data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flag {
    /// A value, the parameter list or the body was over its limit and was cut or ignored.
    Oversize,
    /// Invalid percent-encoding or UTF-8, decoded lossily.
    BadEncoding,
    /// More parameters than the limit; the rest were ignored.
    TooManyParams,
    /// The same concept was given twice with different values; the first canonical one won.
    DuplicateParam,
    /// The user agent looks like a crawler or a script.
    Bot,
    /// No pixel id in any convention.
    MissingPixelId,
    /// The pixel id is not 1–32 digits.
    BadPixelId,
    /// No event name.
    MissingEvent,
    /// `ts` is not an integer; kept under `extra`.
    BadTs,
    /// A trusted `X-Forwarded-For` hop was missing or not an IP address.
    BadForwardedFor,
    /// The POST body could not be read or parsed (timeout, malformed multipart, …).
    BadBody,
    /// The POST body has a content type the pixel does not read.
    UnsupportedBody,
    /// A personal-data value failed validation and was dropped; the field is in the label.
    InvalidPii(crate::pii::PiiField),
    /// The Conversions API delivery of this hit was given up; set only on the extra record that
    /// says so (see [`Hit::capi_failure`]).
    CapiFailed,
}

impl Flag {
    /// The flag as written in records and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Oversize => "oversize",
            Flag::BadEncoding => "bad_encoding",
            Flag::TooManyParams => "too_many_params",
            Flag::DuplicateParam => "duplicate_param",
            Flag::Bot => "bot",
            Flag::MissingPixelId => "missing_pixel_id",
            Flag::BadPixelId => "bad_pixel_id",
            Flag::MissingEvent => "missing_event",
            Flag::BadTs => "bad_ts",
            Flag::BadForwardedFor => "bad_forwarded_for",
            Flag::BadBody => "bad_body",
            Flag::UnsupportedBody => "unsupported_body",
            Flag::InvalidPii(field) => field.invalid_flag(),
            Flag::CapiFailed => "capi_failed",
        }
    }
}

/// An ordered set of flags (a hit rarely has more than two, so a `Vec` beats a hash set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags(Vec<Flag>);

impl Flags {
    /// Adds `flag` unless it is already set.
    pub fn set(&mut self, flag: Flag) {
        if !self.0.contains(&flag) {
            self.0.push(flag);
        }
    }

    /// Whether `flag` is set.
    pub fn contains(&self, flag: Flag) -> bool {
        self.0.contains(&flag)
    }

    /// The flags in the order they were first set.
    pub fn iter(&self) -> impl Iterator<Item = Flag> + '_ {
        self.0.iter().copied()
    }
}

impl Serialize for Flags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|f| f.as_str()))
    }
}

/// Largest record line, newline included: Firehose's per-record limit (1,000 KiB), applied to
/// every sink so that all of them write the same bytes for the same hit.
pub const MAX_RECORD_BYTES: usize = 1_024_000;

/// What an over-long record lost to fit [`MAX_RECORD_BYTES`].
#[derive(Debug, Clone, Serialize)]
pub struct Truncation {
    /// Length of the full line, newline included.
    pub original_bytes: usize,
    /// The parameters left out, as `attrs.k`, `extra.k` or `user.k`, largest first.
    pub dropped: Vec<String>,
}

impl Hit {
    /// The record that says this hit's Conversions API delivery was given up: the same fields,
    /// flagged `capi_failed`, with the reason.
    pub fn capi_failed(&self, failure: CapiFailure) -> Hit {
        let mut hit = self.clone();
        hit.flags.set(Flag::CapiFailed);
        hit.capi_failure = Some(failure);
        hit
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
        entries.sort_by(|a, b| b.0.cmp(&a.0));
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

    #[test]
    fn timestamp_formats_with_millis_and_hour_prefix() {
        let t = Timestamp(UNIX_EPOCH + Duration::from_millis(1_795_723_354_123));
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"2026-11-26T20:02:34.123Z\"");
        assert_eq!(t.hour_prefix(), "2026/11/26/20");
        assert_eq!(t.unix_hour(), 1_795_723_354 / 3600);
    }

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

    #[test]
    fn flags_are_a_set_in_first_seen_order() {
        let mut f = Flags::default();
        f.set(Flag::Bot);
        f.set(Flag::Oversize);
        f.set(Flag::Bot);
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"["bot","oversize"]"#);
    }
}
