//! The raw record of one hit, in one room: the owned [`Hit`], the [`DraftHit`] still in its
//! builder's buffer, the [`Fields`] view both give the one JSON encoder, the [`Flags`] that say
//! what was wrong, the [`Timestamp`], the [`PixelId`], and the [`Routing`] the pixel's settings
//! give a hit (not part of the record).
//!
//! The schema (field order and names) is public: see `docs/records.md#schema`. A record is built
//! once, where the request is shaped (in `params`), and then only read by every outlet.

mod delivery;
mod draft;
mod flags;
mod hit;
mod json;
mod pixel_id;
mod timestamp;

use std::net::IpAddr;

use serde::Serialize;

pub use delivery::{DELIVERY_SCHEMA, DeliveryRecord, GivenUp};
pub use draft::{DraftHit, DraftParts, Entry, MapName, Span};
pub use flags::{Flag, Flags};
pub use hit::{Hit, Routing, Truncation};
/// The record encoder's JSON writers, for other encoders of the hot path (a destination's events).
pub use json::{ip_addr as write_json_ip, string as write_json_string};
pub use pixel_id::{PixelId, PixelIdError};
pub use timestamp::Timestamp;

/// Where a record's event came from: its `source` field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A pixel request (`/p.gif`, `/tr`, a beacon).
    #[default]
    Pixel,
    /// `POST /v1/events` from a platform's backend.
    Api,
    /// An EventBridge event, under Lambda.
    EventBridge,
    /// An SQS message, under Lambda.
    Sqs,
}

impl Source {
    /// The field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Pixel => "pixel",
            Source::Api => "api",
            Source::EventBridge => "eventbridge",
            Source::Sqs => "sqs",
        }
    }
}

/// Value of the `schema` field of every record.
pub const SCHEMA: &str = "pixelgate.hit/1";

/// Largest record line, newline included: Firehose's per-record limit (1,000 KiB), applied to
/// every sink so that all of them write the same bytes for the same hit.
pub const MAX_RECORD_BYTES: usize = 1_024_000;

/// Read access to a record's fields, in schema order, so that one encoder writes the line of a
/// [`Hit`] and of a hit still in its builder's buffer ([`DraftHit`]) alike. Map
/// entries come sorted by key, as a `BTreeMap` gives them.
pub trait Fields {
    fn source(&self) -> Source;
    fn received_at(&self) -> Timestamp;
    fn pixel_id(&self) -> Option<&str>;
    fn account_id(&self) -> Option<&str>;
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
