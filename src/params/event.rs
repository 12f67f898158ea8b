//! An event sent to an input (`POST /v1/events`, and under Lambda EventBridge and SQS) as the
//! intake takes a pixel request: its parameters as a form body, the end user's address and user
//! agent as the request's, so that it is shaped exactly as a pixel hit with the same parameters
//! (`docs/api.md#events`).

use std::net::IpAddr;

use bytes::Bytes;
use serde_json::Value;

use super::body::{Body, json_text};
use super::names::{Concept, classify};
use super::{Captured, RequestHead, pixel_named};
use crate::record::{PixelId, Source, Timestamp};

/// The capture of one event from `source`, and the pixel it names; else what is wrong with it,
/// naming the field.
pub fn captured(event: Value, source: Source) -> Result<(Captured, PixelId), String> {
    let Value::Object(fields) = event else { return Err("must be a JSON object of parameters".into()) };
    let ip = match fields.get("ip") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.trim().parse::<IpAddr>().map_err(|_| format!("ip: {:?} is not an IPv4 or IPv6 address", clip(s)))?),
        Some(_) => return Err("ip: must be a string".into()),
    };
    let user_agent = match fields.get("user_agent") {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err("user_agent: required: the end user's browser user agent (destinations refuse web events without it)".into());
        }
        Some(_) => return Err("user_agent: must be a string".into()),
    };
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (key, value) in &fields {
        if key == "ip" || key == "user_agent" {
            continue;
        }
        if value.is_array() || value.is_object() {
            return Err(format!("{}: must be a string, number or boolean", clip(key)));
        }
        if let Some(text) = json_text(value) {
            form.append_pair(key, &text);
        }
    }
    if !names_event(&fields) {
        return Err("event: required: the event's name (e.g. \"Purchase\")".into());
    }
    let head = head(user_agent, ip)?;
    let body = Body::Read { content_type: "application/x-www-form-urlencoded".into(), bytes: Bytes::from(form.finish()) };
    let captured = Captured { received_at: Timestamp::now(), source, head, body: Some(Box::new(body)) };
    let pixel = pixel_named(&captured).map_err(|e| format!("pixel_id: {e}"))?;
    Ok((captured, pixel))
}

/// Whether `fields` name the event (under any of a pixel hit's names for it: `event`, `ev`, …).
pub fn names_event(fields: &serde_json::Map<String, Value>) -> bool {
    fields.iter().any(|(key, value)| matches!(classify(key), Concept::Event(_)) && json_text(value).is_some_and(|t| !t.is_empty()))
}

/// A request head as the end user's browser would have sent it.
fn head(user_agent: &str, ip: Option<IpAddr>) -> Result<RequestHead, String> {
    let request =
        http::Request::post("/v1/events").header(http::header::USER_AGENT, user_agent).body(()).map_err(|_| "user_agent: must be text without control characters".to_owned())?;
    Ok(RequestHead::capture(&request.into_parts().0, ip, 0))
}

/// At most 64 characters of what a sender sent, for an error.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{ParseSettings, shape};
    use crate::record::Fields;

    fn shaped(event: Value) -> Result<serde_json::Value, String> {
        let (captured, _) = captured(event, Source::Api)?;
        let hit = shape(&captured, &ParseSettings::default());
        let mut line = Vec::new();
        hit.write_line(&mut line);
        Ok(serde_json::from_slice(&line).unwrap())
    }

    #[test]
    fn an_event_becomes_the_record_a_pixel_hit_would_make() {
        let r = shaped(serde_json::json!({
            "pixel_id": "1234567890", "event": "Purchase", "event_id": "o-1", "evat_value": 9.99, "usat_em": "Jane.Doe@Example.com",
            "url": "https://shop.test/checkout", "ip": "203.0.113.9", "user_agent": "Mozilla/5.0", "cd[currency]": "EUR", "note": null
        }))
        .unwrap();
        assert_eq!(r["source"], "api");
        assert_eq!(
            (&r["pixel_id"], &r["event"], &r["event_id"], &r["ip"], &r["user_agent"]),
            (&"1234567890".into(), &"Purchase".into(), &"o-1".into(), &"203.0.113.9".into(), &"Mozilla/5.0".into())
        );
        assert_eq!(r["attrs"], serde_json::json!({"value": "9.99", "currency": "EUR"}));
        assert_eq!(r["user"]["em"], "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d", "hashed at the edge");
        assert_eq!(r["flags"], serde_json::json!([]));
    }

    #[test]
    fn a_bad_event_says_which_field() {
        for (event, field) in [
            (serde_json::json!([1]), "must be a JSON object"),
            (serde_json::json!({"event": "Lead", "user_agent": "UA"}), "pixel_id:"),
            (serde_json::json!({"pixel_id": "12x", "event": "Lead", "user_agent": "UA"}), "pixel_id:"),
            (serde_json::json!({"pixel_id": "1", "user_agent": "UA"}), "event:"),
            (serde_json::json!({"pixel_id": "1", "event": "", "user_agent": "UA"}), "event:"),
            (serde_json::json!({"pixel_id": "1", "event": "Lead"}), "user_agent:"),
            (serde_json::json!({"pixel_id": "1", "event": "Lead", "user_agent": 7}), "user_agent:"),
            (serde_json::json!({"pixel_id": "1", "event": "Lead", "user_agent": "a\u{1}b"}), "user_agent:"),
            (serde_json::json!({"pixel_id": "1", "event": "Lead", "user_agent": "UA", "ip": "1.2.3"}), "ip:"),
            (serde_json::json!({"pixel_id": "1", "event": "Lead", "user_agent": "UA", "evat_items": [1]}), "evat_items:"),
        ] {
            let error = captured(event.clone(), Source::Api).err().unwrap_or_else(|| panic!("accepted: {event}"));
            assert!(error.starts_with(field), "{event}: {error}");
        }
        let (_, pixel) = captured(serde_json::json!({"id": "42", "ev": "Lead", "user_agent": "UA"}), Source::Api).unwrap();
        assert_eq!(pixel.as_str(), "42", "the pixel's own aliases work");
    }

    #[test]
    fn fields_of_the_draft_come_from_the_event() {
        let (captured, _) = captured(serde_json::json!({"pixel_id": "1", "event": "Lead", "user_agent": "UA", "ip": "2001:db8::1"}), Source::Sqs).unwrap();
        let hit = shape(&captured, &ParseSettings::default());
        assert_eq!((hit.source(), hit.ip(), hit.user_agent()), (Source::Sqs, Some("2001:db8::1".parse().unwrap()), Some("UA")));
    }
}
