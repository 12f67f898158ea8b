//! Request validation as Meta validates (`docs/forwarding.md#the-request`,
//! `docs/forwarding.md#the-server-event`, `docs/forwarding.md#limits`,
//! `docs/parameters.md#personal-data`): the path, where the token travels and whom it is for, and
//! the body's rules, each broken rule a [`Rule`] with an error of Graph's shape.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use serde_json::{Value, json};

use super::answer::{Outcome, error};

/// Most events per request (`docs/forwarding.md#limits`).
pub const MAX_EVENTS: usize = 1000;
/// How old an `event_time` may be (`docs/forwarding.md#the-server-event`: 7 days).
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How far ahead of the fake's clock an `event_time` may be (Meta: unverified, "a few minutes").
pub const MAX_FUTURE: Duration = Duration::from_secs(5 * 60);

/// `user_data` keys that must be SHA-256 hex.
pub const HASHED_KEYS: [&str; 11] = ["em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id"];

/// `docs/forwarding.md#the-server-event`.
pub const ACTION_SOURCES: [&str; 9] = ["email", "website", "app", "phone_call", "chat", "physical_store", "system_generated", "business_messaging", "other"];

/// The validation rule a request broke; its `subcode` is this fake's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Not `POST /{vN.M}/{digits}/events`.
    Path,
    /// Body is not a JSON object.
    Json,
    /// `access_token` in the URL query.
    TokenInQuery,
    /// No `access_token` in the body.
    NoToken,
    /// Token configured for no pixel.
    WrongToken,
    /// Token valid only for other pixels.
    PixelNotAllowed,
    /// `data` missing, not an array, empty or longer than [`MAX_EVENTS`].
    Data,
    /// `event_name` missing or not a non-empty string.
    EventName,
    /// `event_time` missing or not an integer.
    EventTime,
    /// `event_time` older than [`MAX_AGE`].
    EventTooOld,
    /// `event_time` more than [`MAX_FUTURE`] ahead.
    EventInFuture,
    /// `action_source` missing or not in [`ACTION_SOURCES`].
    ActionSource,
    /// `user_data` missing, not an object, or without any customer information.
    UserData,
    /// Website event without `user_data.client_user_agent`.
    UserAgent,
    /// Website event without an http(s) `event_source_url`.
    EventSourceUrl,
    /// A hashed key that is not 64 lowercase hex (or not a string / array of strings).
    Hash,
    /// `client_ip_address` does not parse.
    ClientIp,
    /// `fbp`/`fbc` not an unhashed `fb.N.MS.payload` value.
    Cookie,
    /// `custom_data` not an object or `custom_data.value` not a number.
    CustomData,
    /// `test_event_code` not a string.
    TestEventCode,
}

impl Rule {
    pub(super) fn code_and_subcode(self) -> (u16, u32) {
        match self {
            Rule::NoToken => (104, 0),
            Rule::WrongToken => (190, 467),
            Rule::PixelNotAllowed => (100, 33),
            other => (100, 2_804_100 + other as u32),
        }
    }
}

/// How the body's token relates to the configured ones.
#[derive(Clone, Copy)]
pub(super) enum TokenVerdict {
    Ok,
    Missing,
    Unknown,
    OtherPixel,
}

pub(super) fn token_verdict(token: Option<&str>, pixel: &str, tokens: &HashMap<String, Vec<String>>) -> TokenVerdict {
    match token {
        None => TokenVerdict::Missing,
        Some(t) if tokens.get(pixel).is_some_and(|ts| ts.iter().any(|x| x == t)) => TokenVerdict::Ok,
        Some(t) if tokens.values().any(|ts| ts.iter().any(|x| x == t)) => TokenVerdict::OtherPixel,
        Some(_) => TokenVerdict::Unknown,
    }
}

/// `/{vN.M}/{digits}/events` → (version, pixel).
pub(super) fn parse_path(path: &str) -> Option<(String, String)> {
    let mut parts = path.trim_start_matches('/').split('/');
    let (version, pixel, events) = (parts.next()?, parts.next()?, parts.next()?);
    let version_ok = version
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit()));
    let pixel_ok = !pixel.is_empty() && pixel.bytes().all(|c| c.is_ascii_digit());
    (parts.next().is_none() && events == "events" && version_ok && pixel_ok).then(|| (version.to_owned(), pixel.to_owned()))
}

fn reject(rule: Rule, message: String, trace: &str) -> Outcome {
    let (code, subcode) = rule.code_and_subcode();
    let message = match code {
        100 => format!("(#100) {message}"),
        _ => message,
    };
    error(StatusCode::BAD_REQUEST, code, subcode, &message, Some(rule), trace)
}

/// Normal processing of one request, in Meta's order: path, token placement, token, body.
pub(super) fn process(method: &str, version: &str, pixel: &str, token_in_query: bool, token: TokenVerdict, body: Option<&Value>, trace: &str) -> Outcome {
    if method != "POST" || pixel.is_empty() {
        return reject(Rule::Path, format!("Unsupported request: only POST /{{version}}/{{pixel_id}}/events is faked (version {version:?})"), trace);
    }
    if token_in_query {
        return reject(Rule::TokenInQuery, "access_token must travel in the JSON body, not in the URL query (URLs end up in logs)".into(), trace);
    }
    let Some(body) = body.filter(|b| b.is_object()) else {
        return reject(Rule::Json, "The request body must be a JSON object".into(), trace);
    };
    match token {
        TokenVerdict::Ok => {}
        TokenVerdict::Missing => return reject(Rule::NoToken, "An access token is required to request this resource.".into(), trace),
        TokenVerdict::Unknown => return reject(Rule::WrongToken, "Invalid OAuth access token - Cannot parse access token".into(), trace),
        TokenVerdict::OtherPixel => {
            return reject(
                Rule::PixelNotAllowed,
                format!("Unsupported post request. Object with ID '{pixel}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."),
                trace,
            );
        }
    }
    match validate(body, now_secs()) {
        Ok(events) => Outcome {
            status: StatusCode::OK,
            body: json!({"events_received": events.len(), "messages": [], "fbtrace_id": trace}),
            error_code: None,
            rule: None,
            message: None,
            accepted: events,
        },
        Err((rule, message)) => reject(rule, message, trace),
    }
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The body rules (everything but path and token); Ok with the events to record.
fn validate(body: &Value, now: i64) -> Result<Vec<Value>, (Rule, String)> {
    if let Some(code) = body.get("test_event_code")
        && !code.is_string()
    {
        return Err((Rule::TestEventCode, "Param test_event_code must be a string".into()));
    }
    let data = match body.get("data") {
        Some(Value::Array(d)) => d,
        Some(_) => return Err((Rule::Data, "Param data must be an array".into())),
        None => return Err((Rule::Data, "The parameter data is required".into())),
    };
    if data.is_empty() || data.len() > MAX_EVENTS {
        return Err((Rule::Data, format!("Param data must hold 1 to {MAX_EVENTS} events, got {}", data.len())));
    }
    for (i, event) in data.iter().enumerate() {
        validate_event(event, now).map_err(|(rule, m)| (rule, format!("data[{i}]: {m}")))?;
    }
    Ok(data.clone())
}

fn validate_event(e: &Value, now: i64) -> Result<(), (Rule, String)> {
    if !e.is_object() {
        return Err((Rule::Data, "event must be an object".into()));
    }
    if e.get("event_name").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err((Rule::EventName, "The parameter event_name is required".into()));
    }
    let Some(time) = e.get("event_time").and_then(Value::as_i64) else {
        return Err((Rule::EventTime, format!("event_time must be an integer (Unix seconds), got {}", e.get("event_time").unwrap_or(&Value::Null))));
    };
    if time < now - MAX_AGE.as_secs() as i64 {
        return Err((Rule::EventTooOld, format!("event_time {time} is more than 7 days before now ({now})")));
    }
    if time > now + MAX_FUTURE.as_secs() as i64 {
        return Err((Rule::EventInFuture, format!("event_time {time} is more than {} s ahead of now ({now})", MAX_FUTURE.as_secs())));
    }
    let source = e.get("action_source").and_then(Value::as_str);
    if !source.is_some_and(|s| ACTION_SOURCES.contains(&s)) {
        return Err((Rule::ActionSource, format!("action_source must be one of {ACTION_SOURCES:?}, got {}", e.get("action_source").unwrap_or(&Value::Null))));
    }
    let Some(ud) = e.get("user_data").and_then(Value::as_object) else {
        return Err((Rule::UserData, "The parameter user_data is required and must be an object".into()));
    };
    if ud.values().all(|v| v.is_null() || v == "" || v.as_array().is_some_and(Vec::is_empty)) {
        return Err((Rule::UserData, "user_data holds no customer information parameter".into()));
    }
    for key in HASHED_KEYS {
        let Some(v) = ud.get(key) else { continue };
        let values: Vec<&Value> = match v {
            Value::Array(a) if !a.is_empty() => a.iter().collect(),
            Value::String(_) => vec![v],
            _ => return Err((Rule::Hash, format!("user_data.{key} must be a string or a non-empty array of strings"))),
        };
        for v in values {
            let ok = v.as_str().is_some_and(|s| s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
            if !ok {
                // Only the shape is reported: the value could be plaintext personal data.
                return Err((Rule::Hash, format!("user_data.{key} must be a SHA-256 hash: 64 lowercase hex characters")));
            }
        }
    }
    if let Some(ip) = ud.get("client_ip_address")
        && ip.as_str().is_none_or(|s| s.parse::<IpAddr>().is_err())
    {
        return Err((Rule::ClientIp, "user_data.client_ip_address is not a valid IPv4/IPv6 address".into()));
    }
    for key in ["fbp", "fbc"] {
        if let Some(v) = ud.get(key)
            && !v.as_str().is_some_and(cookie_ok)
        {
            return Err((Rule::Cookie, format!("user_data.{key} must be an unhashed fb.N.CREATION_MS.PAYLOAD cookie value")));
        }
    }
    let ua = ud.get("client_user_agent");
    if let Some(ua) = ua
        && !ua.is_string()
    {
        return Err((Rule::UserAgent, "user_data.client_user_agent must be a string".into()));
    }
    if source == Some("website") {
        if ua.and_then(Value::as_str).is_none_or(|s| s.trim().is_empty()) {
            return Err((Rule::UserAgent, "website events require user_data.client_user_agent".into()));
        }
        let url = e.get("event_source_url").and_then(Value::as_str).unwrap_or_default();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err((Rule::EventSourceUrl, "website events require an event_source_url starting with http:// or https://".into()));
        }
    }
    if let Some(cd) = e.get("custom_data") {
        let Some(cd) = cd.as_object() else {
            return Err((Rule::CustomData, "custom_data must be an object".into()));
        };
        if let Some(v) = cd.get("value")
            && !v.is_number()
        {
            return Err((Rule::CustomData, format!("custom_data.value must be a number, got {v}")));
        }
    }
    Ok(())
}

/// `fb.{subdomain index}.{creation ms}.{payload}[.{appendix}]`, payload non-empty, not a hash.
fn cookie_ok(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    (parts.len() == 4 || parts.len() == 5) && parts[0] == "fb" && digits(parts[1]) && digits(parts[2]) && !parts[3].is_empty() && !s.chars().any(char::is_whitespace)
}
