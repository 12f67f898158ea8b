//! From the raw record ([`Hit`]) to Meta's server event (`data[i]` of a `/events` request;
//! `docs/forwarding.md#the-server-event`).
//!
//! One pure function, [`to_server_event`], so that the mapping can be checked against
//! hand-written JSON. It also refuses, before anything is sent, the events Meta would reject:
//! Meta rejects a whole batch for one invalid event (`docs/forwarding.md#limits`), so one stale replay or one hit
//! without a user agent must not cost the other 999 events of its batch.
//!
//! Personal data in `hit.user` is already normalised and hashed at the edge (`docs/parameters.md#personal-data`); here it is
//! only placed. The attribute maps are read through `.get` and `.iter` only, so their type can
//! change without touching this file.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Number, Value};

use crate::forward::Reject;
use crate::pii::PiiField;
use crate::record::{Hit, PixelIdError};

/// Meta refuses events older than this (`docs/forwarding.md#limits`: at most 7 days in the past, else the whole request
/// errors).
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How far inside [`MAX_EVENT_AGE`] an event must be when it is converted, so that it is still
/// valid when a batch that waited and was retried reaches Meta.
pub const SEND_MARGIN: Duration = Duration::from_secs(10 * 60);

/// How far in the future a client time may be (clock skew) and still be used, clamped to now.
pub const FUTURE_SKEW: Duration = Duration::from_secs(60);

/// The only `action_source` a pixel hit can honestly claim (`docs/forwarding.md#deduplication`).
pub const ACTION_SOURCE: &str = "website";

/// One server event, as Meta reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerEvent {
    /// Meta name: GA4 names mapped (`docs/forwarding.md#the-server-event`), anything else as sent.
    pub event_name: String,
    /// Unix seconds.
    pub event_time: i64,
    /// The record's event id: Meta's deduplication key with the browser pixel's `eventID`.
    pub event_id: String,
    /// Always [`ACTION_SOURCE`].
    pub action_source: &'static str,
    /// The page URL (required for website events).
    pub event_source_url: String,
    /// The page's own referrer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer_url: Option<String>,
    /// Who did it.
    pub user_data: UserData,
    /// What it was about (value, currency, contents, …); omitted when empty.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub custom_data: Map<String, Value>,
}

/// `user_data`: hashed personal data as arrays (as the SDKs send it), browser ids and the
/// request's IP and user agent as plain strings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserData {
    /// The client address after the trusted-proxy policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip_address: Option<String>,
    /// The raw `User-Agent` (required for website events).
    pub client_user_agent: String,
    /// `_fbp` browser id, never hashed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fbp: Option<String>,
    /// `_fbc` click id, never hashed (case-sensitive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fbc: Option<String>,
    /// `em`, `ph`, `fn`, … → `[sha256hex]`, in key order.
    #[serde(flatten)]
    pub hashed: std::collections::BTreeMap<&'static str, Vec<String>>,
    /// Pass-through ids Meta takes unhashed (`subscription_id`, `lead_id`, …).
    #[serde(flatten)]
    pub ids: std::collections::BTreeMap<&'static str, String>,
}

/// A converted event and the `custom_data` keys that were dropped because their value did not
/// parse (e.g. `value=abc`): not fatal, but worth counting.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// The event.
    pub event: ServerEvent,
    /// `custom_data` keys dropped, from a closed set (see [`typed_key`]).
    pub dropped: Vec<&'static str>,
}

/// The Meta event name for a hit's event name: GA4 names that Meta's own sGTM tag maps
/// (`docs/forwarding.md#the-server-event`) become Meta standard events; everything else (Meta names, custom events) is
/// sent as it is.
pub fn meta_event_name(name: &str) -> &str {
    match name {
        "page_view" | "gtm.dom" => "PageView",
        "view_item" => "ViewContent",
        "add_to_cart" => "AddToCart",
        "add_to_wishlist" => "AddToWishlist",
        "begin_checkout" => "InitiateCheckout",
        "add_payment_info" => "AddPaymentInfo",
        "purchase" => "Purchase",
        "search" => "Search",
        "generate_lead" => "Lead",
        "sign_up" => "CompleteRegistration",
        other => other,
    }
}

/// Builds the server event for `hit` as of `now`, or says why Meta would reject it.
pub fn to_server_event(hit: &Hit, now: SystemTime) -> Result<Converted, Reject> {
    hit.pixel().map_err(|err| match err {
        PixelIdError::Missing => Reject::new("rejected_missing_pixel_id", "the hit has no pixel id"),
        PixelIdError::Invalid => Reject::new("rejected_bad_pixel_id", "the pixel id is not 1-32 digits"),
    })?;
    let event_name = match hit.event.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => meta_event_name(name).to_owned(),
        _ => {
            return Err(Reject::new("rejected_missing_event", "the hit has no event name"));
        }
    };
    let max_age = MAX_EVENT_AGE - SEND_MARGIN;
    let received = hit.received_at.0;
    if now.duration_since(received).is_ok_and(|age| age > max_age) {
        return Err(Reject::new("rejected_too_old", format!("received at {}, more than 7 days ago", humantime::format_rfc3339_millis(received))));
    }
    let user_agent = match hit.user_agent.as_deref() {
        Some(ua) if !ua.trim().is_empty() => ua.to_owned(),
        _ => {
            return Err(Reject::new("rejected_no_user_agent", "no User-Agent: Meta requires client_user_agent for website events"));
        }
    };
    let url = match hit.url.as_deref() {
        None | Some("") => {
            return Err(Reject::new("rejected_no_url", "no page URL: Meta requires event_source_url for website events"));
        }
        Some(url) => url,
    };
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(Reject::new("rejected_bad_url", "the page URL does not start with http:// or https://"));
    }

    let mut dropped = Vec::new();
    let custom_data = custom_data(hit, &mut dropped);
    let event = ServerEvent {
        event_name,
        event_time: event_time(hit.client_ts, received, now),
        event_id: hit.event_id.clone(),
        action_source: ACTION_SOURCE,
        event_source_url: url.to_owned(),
        referrer_url: hit.referrer.clone().filter(|r| !r.is_empty()),
        user_data: user_data(hit, user_agent),
        custom_data,
    };
    Ok(Converted { event, dropped })
}

/// The client's time when it is plausible (within Meta's window, not in the future beyond
/// [`FUTURE_SKEW`], clamped to now), else the time the edge received the hit.
fn event_time(client_ts: Option<i64>, received: SystemTime, now: SystemTime) -> i64 {
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let now_ms = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let oldest_ms = now_ms - (MAX_EVENT_AGE - SEND_MARGIN).as_millis() as i64;
    let latest_ms = now_ms + FUTURE_SKEW.as_millis() as i64;
    match client_ts {
        Some(ts) if (oldest_ms..=latest_ms).contains(&ts) => ts.min(now_ms).div_euclid(1000),
        _ => secs(received),
    }
}

/// `user_data` keys Meta takes unhashed besides the browser ids (`docs/forwarding.md#the-server-event`).
const PASSTHROUGH_IDS: [&str; 10] = ["subscription_id", "fb_login_id", "lead_id", "anon_id", "madid", "page_id", "page_scoped_user_id", "ctwa_clid", "ig_account_id", "ig_sid"];

fn user_data(hit: &Hit, client_user_agent: String) -> UserData {
    let mut data = UserData { client_ip_address: hit.ip.map(|ip| ip.to_string()), client_user_agent, fbp: None, fbc: None, hashed: Default::default(), ids: Default::default() };
    for (key, value) in hit.user.iter() {
        let (key, value) = (key.as_str(), value.as_str());
        if value.is_empty() {
            continue;
        }
        if let Some(field) = PiiField::from_key(key) {
            data.hashed.insert(field.key(), vec![value.to_owned()]);
        } else if key == "fbp" {
            data.fbp = Some(value.to_owned());
        } else if key == "fbc" {
            data.fbc = Some(value.to_owned());
        } else if let Some(id) = PASSTHROUGH_IDS.iter().find(|k| **k == key) {
            data.ids.insert(*id, value.to_owned());
        }
        // Any other user attribute stays in the raw record only: Meta rejects unknown keys.
    }
    data
}

/// `custom_data` keys with a type other than string, as a closed set of labels.
pub fn typed_key(key: &str) -> Option<&'static str> {
    ["value", "predicted_ltv", "net_revenue", "num_items", "content_ids", "contents"].into_iter().find(|k| *k == key)
}

fn custom_data(hit: &Hit, dropped: &mut Vec<&'static str>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, raw) in hit.attrs.iter() {
        let value = match typed_key(key) {
            None => Some(Value::String(raw.clone())),
            Some(label @ ("value" | "predicted_ltv" | "net_revenue")) => number(raw).or_else(|| note(dropped, label)),
            Some(label @ "num_items") => raw.trim().parse::<i64>().ok().map(Value::from).or_else(|| note(dropped, label)),
            Some(label @ "content_ids") => content_ids(raw).or_else(|| note(dropped, label)),
            Some(label) => contents(raw).or_else(|| note(dropped, label)),
        };
        if let Some(value) = value {
            out.insert(key.clone(), value);
        }
    }
    out
}

fn note(dropped: &mut Vec<&'static str>, key: &'static str) -> Option<Value> {
    dropped.push(key);
    None
}

/// A finite decimal as a JSON number.
fn number(raw: &str) -> Option<Value> {
    let x: f64 = raw.trim().parse().ok()?;
    Number::from_f64(x).map(Value::Number)
}

/// `content_ids`: a JSON array (the pixel's encoding; numbers become strings), else a
/// comma-separated list or a single id (`cd[content_ids]=1234`).
fn content_ids(raw: &str) -> Option<Value> {
    let raw = raw.trim();
    if raw.starts_with('[') {
        let items: Vec<Value> = serde_json::from_str(raw).ok()?;
        let ids = items.into_iter().map(|v| match v {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        return ids.collect::<Option<Vec<String>>>().map(Value::from);
    }
    let ids: Vec<String> = raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    (!ids.is_empty()).then(|| Value::from(ids))
}

/// `contents`: a JSON array of objects, passed as it is.
fn contents(raw: &str) -> Option<Value> {
    match serde_json::from_str::<Value>(raw.trim()).ok()? {
        Value::Array(items) if items.iter().all(Value::is_object) => Some(Value::Array(items)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{HitBuilder, ParseSettings, RequestMeta};
    use crate::record::Timestamp;
    use serde_json::json;

    const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0";
    const EM: &str = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn hit_at(received: SystemTime, query: &str, ua: Option<&str>) -> Hit {
        let settings = ParseSettings::default();
        let mut b = HitBuilder::new(&settings, Timestamp(received));
        b.add_encoded(query);
        b.finish(RequestMeta { ip: Some("2001:db8::1".parse().unwrap()), user_agent: ua, referer: None, cookies: None })
    }

    #[test]
    fn a_purchase_maps_to_the_documented_json() {
        let now = at(1_795_000_000);
        let q = format!(
            "id=1234567890&ev=purchase&eid=order-77&dl=https%3A%2F%2Fshop.example%2Fthanks&rl=https%3A%2F%2Fshop.example%2Fcart\
             &ts=1794999990500&cd[value]=19.90&cd[currency]=EUR&cd[content_ids]=%5B%22sku-1%22%2C42%5D\
             &cd[contents]=%5B%7B%22id%22%3A%22sku-1%22%2C%22quantity%22%3A2%7D%5D&cd[num_items]=3&cd[order_id]=77\
             &ud[em]={EM}&fbp=fb.1.1596403881668.1116446470&test_event_code=TEST123"
        );
        let hit = hit_at(now, &q, Some(UA));
        let out = to_server_event(&hit, now).unwrap();
        assert!(out.dropped.is_empty());
        assert_eq!(
            serde_json::to_value(&out.event).unwrap(),
            json!({
                "event_name": "Purchase",
                "event_time": 1_794_999_990,
                "event_id": "order-77",
                "action_source": "website",
                "event_source_url": "https://shop.example/thanks",
                "referrer_url": "https://shop.example/cart",
                "user_data": {
                    "client_ip_address": "2001:db8::1",
                    "client_user_agent": UA,
                    "em": [EM],
                    "fbp": "fb.1.1596403881668.1116446470"
                },
                "custom_data": {
                    "value": 19.9,
                    "currency": "EUR",
                    "content_ids": ["sku-1", "42"],
                    "contents": [{"id": "sku-1", "quantity": 2}],
                    "num_items": 3,
                    "order_id": "77"
                }
            })
        );
    }

    #[test]
    fn a_minimal_page_view_has_no_custom_data() {
        let now = at(1_795_000_000);
        let hit = hit_at(now, "id=1&ev=page_view&eid=e1&dl=http://a.example/", Some(UA));
        let v = serde_json::to_value(to_server_event(&hit, now).unwrap().event).unwrap();
        assert_eq!(
            v,
            json!({
                "event_name": "PageView", "event_time": 1_795_000_000, "event_id": "e1", "action_source": "website",
                "event_source_url": "http://a.example/",
                "user_data": {"client_ip_address": "2001:db8::1", "client_user_agent": UA}
            })
        );
    }

    #[test]
    fn ga4_names_map_and_others_pass_through() {
        for (ga4, meta) in [
            ("page_view", "PageView"),
            ("gtm.dom", "PageView"),
            ("view_item", "ViewContent"),
            ("add_to_cart", "AddToCart"),
            ("add_to_wishlist", "AddToWishlist"),
            ("begin_checkout", "InitiateCheckout"),
            ("add_payment_info", "AddPaymentInfo"),
            ("purchase", "Purchase"),
            ("search", "Search"),
            ("generate_lead", "Lead"),
            ("sign_up", "CompleteRegistration"),
            ("Purchase", "Purchase"),
            ("Lead", "Lead"),
            ("newsletter_open", "newsletter_open"),
        ] {
            assert_eq!(meta_event_name(ga4), meta);
        }
    }

    #[test]
    fn the_client_time_is_used_only_when_plausible() {
        let now = at(1_795_000_000);
        let received = at(1_794_999_999);
        let now_ms = 1_795_000_000_000;
        let day_ms = 86_400_000;
        // Within the window: used, truncated to seconds.
        assert_eq!(event_time(Some(now_ms - 3 * day_ms + 999), received, now), 1_795_000_000 - 3 * 86_400);
        // Slightly ahead (skew): clamped to now.
        assert_eq!(event_time(Some(now_ms + 30_000), received, now), 1_795_000_000);
        // Far in the future, too old, or absent: the receive time.
        assert_eq!(event_time(Some(now_ms + 3_600_000), received, now), 1_794_999_999);
        assert_eq!(event_time(Some(now_ms - 8 * day_ms), received, now), 1_794_999_999);
        assert_eq!(event_time(Some(5), received, now), 1_794_999_999);
        assert_eq!(event_time(None, received, now), 1_794_999_999);
    }

    #[test]
    fn events_meta_would_reject_are_refused_with_a_reason() {
        let now = at(1_795_000_000);
        let reason = |hit: &Hit| to_server_event(hit, now).unwrap_err().reason;
        let ok = "id=1&ev=Lead&dl=https://a.example/";
        assert!(to_server_event(&hit_at(now, ok, Some(UA)), now).is_ok());
        assert_eq!(reason(&hit_at(now, ok, None)), "rejected_no_user_agent");
        assert_eq!(reason(&hit_at(now, ok, Some("  "))), "rejected_no_user_agent");
        assert_eq!(reason(&hit_at(now, "id=1&ev=Lead", Some(UA))), "rejected_no_url");
        assert_eq!(reason(&hit_at(now, "id=1&ev=Lead&dl=javascript:alert(1)", Some(UA))), "rejected_bad_url");
        assert_eq!(reason(&hit_at(now, "ev=Lead&dl=https://a.example/", Some(UA))), "rejected_missing_pixel_id");
        assert_eq!(reason(&hit_at(now, "id=12ab&ev=Lead&dl=https://a.example/", Some(UA))), "rejected_bad_pixel_id");
        assert_eq!(reason(&hit_at(now, "id=1&dl=https://a.example/", Some(UA))), "rejected_missing_event");
        // A replay of an 8-day-old record.
        let old = hit_at(at(1_795_000_000 - 8 * 86_400), ok, Some(UA));
        assert_eq!(reason(&old), "rejected_too_old");
        let recent = hit_at(at(1_795_000_000 - 6 * 86_400), ok, Some(UA));
        assert!(to_server_event(&recent, now).is_ok());
    }

    #[test]
    fn unparseable_numbers_are_dropped_and_noted() {
        let now = at(1_795_000_000);
        let hit = hit_at(
            now,
            "id=1&ev=Purchase&dl=https://a.example/&cd[value]=abc&cd[num_items]=2.5&cd[predicted_ltv]=NaN&cd[contents]=%5B1%5D\
             &cd[content_ids]=%5Bbroken&cd[currency]=USD&cd[status]=true",
            Some(UA),
        );
        let out = to_server_event(&hit, now).unwrap();
        let mut dropped = out.dropped.clone();
        dropped.sort();
        assert_eq!(dropped, vec!["content_ids", "contents", "num_items", "predicted_ltv", "value"]);
        assert_eq!(Value::Object(out.event.custom_data), json!({"currency": "USD", "status": "true"}));
    }

    #[test]
    fn content_ids_accept_a_single_id_or_a_list() {
        assert_eq!(content_ids("1234"), Some(json!(["1234"])));
        assert_eq!(content_ids(" a, b ,"), Some(json!(["a", "b"])));
        assert_eq!(content_ids("[\"a\", 7]"), Some(json!(["a", "7"])));
        assert_eq!(content_ids("[{\"id\":1}]"), None);
        assert_eq!(content_ids(""), None);
    }

    #[test]
    fn user_data_places_hashed_fields_as_arrays_and_ids_as_strings() {
        let now = at(1_795_000_000);
        let ph = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176";
        let q = format!("id=1&ev=Lead&dl=https://a.example/%3Ffbclid%3DAbC&ud[ph]={ph}&ud[external_id]={EM}&usat_lead_id=L9&usat_favourite_colour=blue");
        let hit = hit_at(now, &q, Some(UA));
        let user = serde_json::to_value(to_server_event(&hit, now).unwrap().event.user_data).unwrap();
        assert_eq!(
            user,
            json!({
                "client_ip_address": "2001:db8::1",
                "client_user_agent": UA,
                "fbc": format!("fb.1.{}.AbC", 1_795_000_000_000u64),
                "ph": [ph],
                "external_id": [EM],
                "lead_id": "L9"
            })
        );
    }
}
