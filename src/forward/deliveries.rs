//! The last deliveries per pixel, in memory: what a pixel's owner needs to see why events do or
//! do not show up in the platform's event view (`GET /v1/pixels/{id}/deliveries`,
//! `docs/forwarding.md#deliveries`), without reading logs.
//!
//! Bounded twice: [`PER_PIXEL`] entries per pixel, and [`MAX_PIXELS`] pixels, the least recently
//! updated evicted first. It holds no personal data beyond the event id, and never a token.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::record::PixelId;

/// Deliveries kept per pixel.
pub const PER_PIXEL: usize = 100;

/// Pixels kept.
pub const MAX_PIXELS: usize = 10_000;

/// Longest event name or event id kept in the log, in bytes.
const MAX_FIELD_BYTES: usize = 128;
/// Longest error message kept in the log, in bytes.
const MAX_MESSAGE_BYTES: usize = 512;

/// Cuts `s` to at most `max` bytes at a character boundary, marking the cut with `…`.
fn clip(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

/// One event's delivery outcome. What a request's events share (when, the answer, the error)
/// is shared, not copied per event: a batch of a thousand events makes a thousand entries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// The event name sent (or the hit's, when rejected before sending).
    pub event_name: String,
    /// The deduplication key.
    pub event_id: String,
    /// When the outcome was known (RFC 3339, milliseconds).
    pub at: At,
    /// `sent` or `failed`.
    pub outcome: &'static str,
    /// For `failed`: the reason label (`invalid_token`, `invalid_parameter`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// What the platform answered to the request that carried the event (Meta:
    /// `events_received`, `fbtrace_id`), as its own fields.
    #[serde(flatten)]
    pub answer: Arc<Map<String, Value>>,
    /// The platform's error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// What went wrong, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Arc<str>>,
    /// Requests that carried the event.
    pub attempts: u32,
    /// Whether it went to the platform's test view (Meta's "Test events").
    pub test: bool,
}

/// `text` as a [`Delivery::message`], cut to a length the log keeps; made once per request and
/// shared by its events.
pub fn message(text: &str) -> Arc<str> {
    let mut text = text.to_owned();
    clip(&mut text, MAX_MESSAGE_BYTES);
    text.into()
}

/// When an outcome was known; written as RFC 3339 with milliseconds only when shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At(pub SystemTime);

impl At {
    /// Now.
    pub fn now() -> At {
        At(SystemTime::now())
    }
}

impl Serialize for At {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_millis(self.0))
    }
}

#[derive(Debug, Default)]
struct Log {
    /// Newest at the back.
    entries: VecDeque<Delivery>,
    /// Key in `Inner::order`.
    touched: u64,
}

#[derive(Debug, Default)]
struct Inner {
    pixels: HashMap<PixelId, Log>,
    /// Last-update sequence → pixel, oldest first: the eviction order.
    order: BTreeMap<u64, PixelId>,
    seq: u64,
}

/// The last deliveries per pixel. Shared (`Arc`) between the forwarder and the admin API.
#[derive(Debug)]
pub struct Deliveries {
    inner: Mutex<Inner>,
    per_pixel: usize,
    max_pixels: usize,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries::with_limits(PER_PIXEL, MAX_PIXELS)
    }
}

impl Deliveries {
    /// An empty log keeping `per_pixel` entries for at most `max_pixels` pixels.
    pub fn with_limits(per_pixel: usize, max_pixels: usize) -> Self {
        Deliveries { inner: Mutex::new(Inner::default()), per_pixel: per_pixel.max(1), max_pixels: max_pixels.max(1) }
    }

    /// Adds the outcomes of one request (or one give-up) for `pixel_id`, in order.
    pub fn record(&self, pixel: &PixelId, deliveries: impl IntoIterator<Item = Delivery>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.seq += 1;
        let seq = inner.seq;
        let Inner { pixels, order, .. } = &mut *inner;
        if let Some(log) = pixels.get(pixel) {
            order.remove(&log.touched);
        }
        let log = pixels.entry(*pixel).or_default();
        log.touched = seq;
        order.insert(seq, *pixel);
        for mut d in deliveries {
            // Names and ids come from the page (up to 8 KiB each): keep the log's memory small.
            for field in [&mut d.event_name, &mut d.event_id] {
                clip(field, MAX_FIELD_BYTES);
            }
            if log.entries.len() >= self.per_pixel {
                log.entries.pop_front();
            }
            log.entries.push_back(d);
        }
        while pixels.len() > self.max_pixels {
            let Some((_, oldest)) = order.pop_first() else {
                break;
            };
            pixels.remove(&oldest);
        }
    }

    /// `{"pixel_id":…,"deliveries":[…]}`, newest first (an empty list for an unknown pixel).
    pub fn for_pixel(&self, pixel: &PixelId) -> Value {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let list: Vec<&Delivery> = inner.pixels.get(pixel).map(|log| log.entries.iter().rev().collect()).unwrap_or_default();
        serde_json::json!({ "pixel_id": pixel, "deliveries": list })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: &str) -> PixelId {
        PixelId::parse(id).unwrap()
    }

    fn sent(id: usize) -> Delivery {
        Delivery {
            event_name: "Lead".into(),
            event_id: format!("e{id}"),
            at: At(humantime::parse_rfc3339("2026-11-26T20:02:34.123Z").unwrap()),
            outcome: "sent",
            reason: None,
            answer: Arc::new(serde_json::json!({"events_received": 1, "fbtrace_id": "T"}).as_object().unwrap().clone()),
            code: None,
            message: None,
            attempts: 1,
            test: false,
        }
    }

    #[test]
    fn newest_first_and_bounded_per_pixel() {
        let d = Deliveries::with_limits(3, 10);
        d.record(&p("1"), (0..5).map(sent));
        let v = d.for_pixel(&p("1"));
        assert_eq!(v["pixel_id"], "1");
        let ids: Vec<_> = v["deliveries"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(ids, ["e4", "e3", "e2"]);
        assert_eq!(
            v["deliveries"][0],
            serde_json::json!({"event_name":"Lead","event_id":"e4","at":"2026-11-26T20:02:34.123Z","outcome":"sent","events_received":1,"fbtrace_id":"T","attempts":1,"test":false})
        );
        assert_eq!(d.for_pixel(&p("2")), serde_json::json!({"pixel_id":"2","deliveries":[]}));
    }

    #[test]
    fn the_least_recently_updated_pixel_is_evicted() {
        let d = Deliveries::with_limits(3, 2);
        d.record(&p("1"), [sent(1)]);
        d.record(&p("2"), [sent(2)]);
        d.record(&p("1"), [sent(3)]);
        d.record(&p("3"), [sent(4)]);
        assert_eq!(d.for_pixel(&p("2"))["deliveries"].as_array().unwrap().len(), 0, "2 was the oldest");
        assert_eq!(d.for_pixel(&p("1"))["deliveries"].as_array().unwrap().len(), 2);
        assert_eq!(d.for_pixel(&p("3"))["deliveries"].as_array().unwrap().len(), 1);
    }
}
