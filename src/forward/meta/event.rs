//! From the raw record to Meta's server event (`data[i]` of a `/events` request;
//! `docs/forwarding.md#the-server-event`), written straight as JSON.
//!
//! Two functions: [`check`] refuses, when a hit is batched, what Meta would reject (Meta rejects
//! a whole batch for one invalid event, `docs/forwarding.md#limits`, so one stale replay or one
//! hit without a user agent must not cost the other 999 events of its batch); [`write`] appends
//! the event's JSON to the request body when the batch is sent. Written by hand from the record's
//! fields (any [`Fields`]: the draft the intake built, or an owned hit), with the record encoder's
//! string writer: it runs once per forwarded hit, and building a tree of owned values and
//! serialising it cost more than the pixel's own answer.
//!
//! Personal data in the user map is already normalised and hashed at the edge
//! (`docs/parameters.md#personal-data`); here it is only placed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Number, Value};

use crate::forward::{Labels, Reject};
use crate::record::{Fields, write_json_ip, write_json_string};

/// Meta refuses events older than this (`docs/forwarding.md#limits`: at most 7 days in the past,
/// else the whole request errors).
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How far inside [`MAX_EVENT_AGE`] an event must be when it is converted, so that it is still
/// valid when a batch that waited and was retried reaches Meta.
pub const SEND_MARGIN: Duration = Duration::from_secs(10 * 60);

/// How far in the future a client time may be (clock skew) and still be used, clamped to now.
pub const FUTURE_SKEW: Duration = Duration::from_secs(60);

/// The only `action_source` a pixel hit can honestly claim (`docs/forwarding.md#deduplication`).
pub const ACTION_SOURCE: &str = "website";

/// The Meta event name for a hit's event name: GA4 names that Meta's own sGTM tag maps
/// (`docs/forwarding.md#the-server-event`) become Meta standard events; everything else (Meta
/// names, custom events) is sent as it is.
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

/// Whether `s` is empty or only white space (what `trim` would leave empty, without looking at
/// both ends of every value).
fn blank(s: &str) -> bool {
    s.chars().all(char::is_whitespace)
}

/// Whether Meta would take `hit` as a website event as of `now`, or why not.
pub fn check<F: Fields>(hit: &F, now: SystemTime) -> Result<(), Reject> {
    if hit.event().is_none_or(blank) {
        return Err(Reject::new("rejected_missing_event", "the hit has no event name"));
    }
    let received = hit.received_at().0;
    if now.duration_since(received).is_ok_and(|age| age > MAX_EVENT_AGE - SEND_MARGIN) {
        return Err(Reject::new("rejected_too_old", format!("received at {}, more than 7 days ago", humantime::format_rfc3339_millis(received))));
    }
    if hit.user_agent().is_none_or(blank) {
        return Err(Reject::new("rejected_no_user_agent", "no User-Agent: Meta requires client_user_agent for website events"));
    }
    let Some(url) = hit.url().filter(|url| !url.is_empty()) else {
        return Err(Reject::new("rejected_no_url", "no page URL: Meta requires event_source_url for website events"));
    };
    let starts = |prefix: &str| url.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix));
    if !(starts("http://") || starts("https://")) {
        return Err(Reject::new("rejected_bad_url", "the page URL does not start with http:// or https://"));
    }
    Ok(())
}

/// Appends `hit`'s server event, as of `now`, to `out` as one JSON object; returns where its
/// name and id are in `out`, and the `custom_data` keys dropped because their value did not
/// parse (from a closed set, see [`typed_key`]). `hit` must have passed [`check`].
pub fn write<F: Fields>(hit: &F, now: SystemTime, out: &mut Vec<u8>) -> (Labels, Vec<&'static str>) {
    out.extend_from_slice(b"{\"event_name\":");
    let name_start = out.len();
    write_json_string(out, meta_event_name(hit.event().unwrap_or_default().trim()));
    let name = (name_start, out.len());
    out.extend_from_slice(b",\"event_time\":");
    out.extend_from_slice(itoa::Buffer::new().format(event_time(hit.client_ts(), hit.received_at().0, now)).as_bytes());
    out.extend_from_slice(b",\"event_id\":");
    let id_start = out.len();
    write_json_string(out, hit.event_id());
    let id = (id_start, out.len());
    out.extend_from_slice(b",\"action_source\":\"website\",\"event_source_url\":");
    write_json_string(out, hit.url().unwrap_or_default());
    if let Some(referrer) = hit.referrer().filter(|r| !r.is_empty()) {
        out.extend_from_slice(b",\"referrer_url\":");
        write_json_string(out, referrer);
    }
    out.extend_from_slice(b",\"user_data\":{");
    if let Some(ip) = hit.ip() {
        out.extend_from_slice(b"\"client_ip_address\":");
        write_json_ip(out, ip);
        out.push(b',');
    }
    out.extend_from_slice(b"\"client_user_agent\":");
    write_json_string(out, hit.user_agent().unwrap_or_default());
    user_data(hit, out);
    out.push(b'}');
    let mut dropped = Vec::new();
    custom_data(hit, out, &mut dropped);
    out.push(b'}');
    (Labels { name, id }, dropped)
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

/// How a user attribute goes into `user_data`.
enum UserKey {
    /// Personal data Meta wants hashed (`docs/parameters.md#personal-data`): already a SHA-256
    /// digest here, sent as a one-element array, as the SDKs send it.
    Hashed,
    /// Sent as it is: the browser ids `fbp` and `fbc`, and the ids Meta takes unhashed
    /// (`docs/forwarding.md#the-server-event`).
    Plain,
}

/// How `key` goes into `user_data`; `None` for a key Meta does not take (it would reject the
/// event), which stays in the raw record only.
fn user_key(key: &str) -> Option<UserKey> {
    Some(match key {
        "em" | "ph" | "fn" | "ln" | "ge" | "db" | "ct" | "st" | "zp" | "country" | "external_id" | "f5first" | "f5last" | "fi" | "dobd" | "dobm" | "doby" => UserKey::Hashed,
        "fbp" | "fbc" | "subscription_id" | "fb_login_id" | "lead_id" | "anon_id" | "madid" | "page_id" | "page_scoped_user_id" | "ctwa_clid" | "ig_account_id" | "ig_sid" => {
            UserKey::Plain
        }
        _ => return None,
    })
}

/// The rest of `user_data`, after the user agent, in one pass over the user attributes (in key
/// order).
fn user_data<F: Fields>(hit: &F, out: &mut Vec<u8>) {
    for (key, value) in hit.user() {
        let Some(kind) = user_key(key).filter(|_| !value.is_empty()) else { continue };
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        match kind {
            UserKey::Hashed => {
                out.push(b'[');
                write_json_string(out, value);
                out.push(b']');
            }
            UserKey::Plain => write_json_string(out, value),
        }
    }
}

/// `custom_data` keys with a type other than string, as a closed set of labels.
pub fn typed_key(key: &str) -> Option<&'static str> {
    ["value", "predicted_ltv", "net_revenue", "num_items", "content_ids", "contents"].into_iter().find(|k| *k == key)
}

/// `,"custom_data":{…}` from the event attributes, keys in order, typed values parsed (a value
/// that does not parse is dropped and noted); nothing when no attribute is left.
fn custom_data<F: Fields>(hit: &F, out: &mut Vec<u8>, dropped: &mut Vec<&'static str>) {
    let mut first = true;
    for (key, raw) in hit.attrs() {
        let start = out.len();
        out.extend_from_slice(if first { b",\"custom_data\":{" } else { b"," });
        write_json_string(out, key);
        out.push(b':');
        let written = match typed_key(key) {
            None => {
                write_json_string(out, raw);
                true
            }
            Some(label @ ("value" | "predicted_ltv" | "net_revenue")) => json_number(out, raw) || note(dropped, label),
            Some(label @ "num_items") => json_value(out, raw.trim().parse::<i64>().ok().map(Value::from)) || note(dropped, label),
            Some(label @ "content_ids") => json_value(out, content_ids(raw)) || note(dropped, label),
            Some(label) => json_value(out, contents(raw)) || note(dropped, label),
        };
        if written {
            first = false;
        } else {
            out.truncate(start);
        }
    }
    if !first {
        out.push(b'}');
    }
}

/// Writes `raw` as a JSON number if it is a finite decimal; whether it did. A value already
/// written as a JSON number (most: `19.99`) is copied as it is; others (`+5`, `.5`, `5.`) go
/// through `f64`.
fn json_number(out: &mut Vec<u8>, raw: &str) -> bool {
    let raw = raw.trim();
    // Without an exponent, a number needs more than 300 digits to pass f64's range.
    let finite = |raw: &str| (raw.len() <= 300 && !raw.contains(['e', 'E'])) || raw.parse::<f64>().is_ok_and(f64::is_finite);
    if is_json_number(raw) && finite(raw) {
        out.extend_from_slice(raw.as_bytes());
        return true;
    }
    json_value(out, number(raw))
}

/// Whether `s` is a number as JSON writes one: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[int_start] == b'0') {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Writes `value` (if any) as JSON; whether it did.
fn json_value(out: &mut Vec<u8>, value: Option<Value>) -> bool {
    // Numbers and arrays of strings or objects into a Vec: serialising cannot fail.
    value.is_some_and(|v| serde_json::to_writer(&mut *out, &v).is_ok())
}

fn note(dropped: &mut Vec<&'static str>, key: &'static str) -> bool {
    dropped.push(key);
    false
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
    use crate::record::{Hit, Timestamp};
    use serde_json::json;

    /// The event as JSON, and the keys dropped; `check` must pass first.
    fn event(hit: &Hit, now: SystemTime) -> (Value, Vec<&'static str>) {
        check(hit, now).expect("Meta would take it");
        let mut out = Vec::new();
        let (_, dropped) = write(hit, now, &mut out);
        (serde_json::from_slice(&out).expect("one JSON object"), dropped)
    }

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
        let (event, dropped) = event(&hit, now);
        assert!(dropped.is_empty());
        assert_eq!(
            event,
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
        let v = event(&hit, now).0;
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
        let reason = |hit: &Hit| check(hit, now).unwrap_err().reason;
        let ok = "id=1&ev=Lead&dl=https://a.example/";
        assert!(check(&hit_at(now, ok, Some(UA)), now).is_ok());
        assert_eq!(reason(&hit_at(now, ok, None)), "rejected_no_user_agent");
        assert_eq!(reason(&hit_at(now, ok, Some("  "))), "rejected_no_user_agent");
        assert_eq!(reason(&hit_at(now, "id=1&ev=Lead", Some(UA))), "rejected_no_url");
        assert_eq!(reason(&hit_at(now, "id=1&ev=Lead&dl=javascript:alert(1)", Some(UA))), "rejected_bad_url");
        assert_eq!(reason(&hit_at(now, "id=1&dl=https://a.example/", Some(UA))), "rejected_missing_event");
        // A replay of an 8-day-old record.
        let old = hit_at(at(1_795_000_000 - 8 * 86_400), ok, Some(UA));
        assert_eq!(reason(&old), "rejected_too_old");
        let recent = hit_at(at(1_795_000_000 - 6 * 86_400), ok, Some(UA));
        assert!(check(&recent, now).is_ok());
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
        let (written, mut dropped) = event(&hit, now);
        dropped.sort();
        assert_eq!(dropped, vec!["content_ids", "contents", "num_items", "predicted_ltv", "value"]);
        assert_eq!(written["custom_data"], json!({"currency": "USD", "status": "true"}));
        let only_bad = hit_at(now, "id=1&ev=Purchase&dl=https://a.example/&cd[value]=abc", Some(UA));
        assert!(event(&only_bad, now).0.get("custom_data").is_none(), "no empty custom_data");
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
        let user = event(&hit, now).0["user_data"].clone();
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

    #[test]
    fn strings_are_escaped_and_the_draft_writes_what_the_hit_writes() {
        let now = at(1_795_000_000);
        let q = "id=1&ev=Say%20%22hi%22&eid=a%5Cb&dl=https%3A%2F%2Fa.example%2F%3Fq%3D%0A&cd[note]=tab%09end&ud[em]=jane%40example.com";
        let settings = ParseSettings::default();
        let mut b = HitBuilder::new(&settings, Timestamp(now));
        b.add_encoded(q);
        let draft = b.finish_draft(RequestMeta { ip: Some("192.0.2.5".parse().unwrap()), user_agent: Some(UA), referer: None, cookies: None });
        let (mut from_draft, mut from_hit) = (b"[".to_vec(), Vec::new());
        let (labels, _) = write(&draft, now, &mut from_draft);
        write(&draft.to_hit(), now, &mut from_hit);
        assert_eq!(from_draft[1..], from_hit);
        let v: Value = serde_json::from_slice(&from_draft[1..]).unwrap();
        assert_eq!((v["event_name"].as_str(), v["event_id"].as_str()), (Some("Say \"hi\""), Some("a\\b")));
        let label = |(start, end): (usize, usize)| serde_json::from_slice::<String>(&from_draft[start..end]).unwrap();
        assert_eq!((label(labels.name), label(labels.id)), ("Say \"hi\"".to_owned(), "a\\b".to_owned()), "the labels are where the name and id were written");
        assert_eq!(v["event_source_url"], "https://a.example/?q=\n");
        assert_eq!(v["custom_data"]["note"], "tab\tend");
        assert_eq!(v["user_data"]["client_ip_address"], "192.0.2.5");
        assert_eq!(v["user_data"]["em"].as_array().unwrap()[0].as_str().unwrap().len(), 64);
    }

    #[test]
    fn numbers_written_as_json_numbers_are_copied_and_others_converted() {
        for ok in ["0", "19.99", "-3", "1e3", "2.5E-2", "10"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for not in ["", "-", "01", "1.", ".5", "+5", "1e", "0x1", "NaN", "1 2", "١"] {
            assert!(!is_json_number(not), "{not}");
        }
        let mut out = Vec::new();
        assert!(json_number(&mut out, " 19.90 "));
        assert!(json_number(&mut out, "+5"));
        assert!(!json_number(&mut out, "1e999"), "not finite");
        assert_eq!(out, b"19.905.0");
    }

    #[test]
    fn user_keys_are_the_ones_meta_takes() {
        for field in crate::pii::PiiField::ALL {
            assert!(matches!(user_key(field.key()), Some(UserKey::Hashed)), "{}", field.key());
        }
        assert!(matches!(user_key("fbc"), Some(UserKey::Plain)) && matches!(user_key("lead_id"), Some(UserKey::Plain)));
        assert!(user_key("favourite_colour").is_none());
    }
}
