//! POST bodies of pixel requests: sendBeacon's `text/plain`, HTML and Meta-pixel form posts
//! (`application/x-www-form-urlencoded`, `multipart/form-data`) and JSON objects
//! (`docs/parameters.md#post-bodies`).
//!
//! The edge reads a body whole, bounded in size and time, and hands it over as a [`Body`]; its
//! parameters are added after the query string's. What cannot be read or parsed is flagged on
//! the hit, and the query parameters still count.

use bytes::Bytes;
use futures_util::FutureExt;

use super::HitBuilder;
use crate::record::Flag;

/// A POST body as the edge read it.
#[derive(Debug)]
pub enum Body {
    /// Read whole, with its `Content-Type` (empty when the request sent none).
    Read {
        /// The `Content-Type` header as sent.
        content_type: String,
        /// The body.
        bytes: Bytes,
    },
    /// Over the size limit: ignored, flagged `oversize`.
    Oversize,
    /// Not read in time, or the connection failed: ignored, flagged `bad_body`.
    Unreadable,
}

impl Body {
    /// Approximate heap bytes, for the queue's byte budget.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Body>()
            + match self {
                Body::Read { content_type, bytes } => content_type.len() + bytes.len(),
                Body::Oversize | Body::Unreadable => 0,
            }
    }
}

/// Adds the body's parameters to `hit`, by its content type.
pub fn add_params(body: &Body, hit: &mut HitBuilder<'_>) {
    let (content_type, bytes) = match body {
        Body::Read { content_type, bytes } => (content_type.as_str(), bytes),
        Body::Oversize => return hit.flags_mut().set(Flag::Oversize),
        Body::Unreadable => return hit.flags_mut().set(Flag::BadBody),
    };
    if bytes.is_empty() {
        return;
    }
    match kind(content_type, bytes) {
        Kind::Form => add_form(bytes, hit),
        Kind::Json => add_json(bytes, hit),
        Kind::Multipart => add_multipart(content_type, bytes.clone(), hit),
        Kind::Unsupported => hit.flags_mut().set(Flag::UnsupportedBody),
    }
}

/// Hands each parameter of a form or JSON body to `visit` as [`add_params`] would add it (a
/// multipart body is not looked into), without a builder: for a caller that needs one name
/// before the hit is shaped (the edge: the pixel id, for CORS).
pub(super) fn names(body: &Body, visit: &mut dyn FnMut(&str, &str)) {
    let Body::Read { content_type, bytes } = body else { return };
    match kind(content_type, bytes) {
        Kind::Form => form_urlencoded::parse(bytes).for_each(|(key, value)| visit(&key, &value)),
        Kind::Json => {
            let Ok(map) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes) else { return };
            for (k, text) in map.iter().filter_map(|(k, v)| Some((k, json_text(v)?))) {
                visit(k, &text);
            }
        }
        Kind::Multipart | Kind::Unsupported => {}
    }
}

/// How a body is read, by its content type (and, for `text/plain` or none, whether it looks
/// like a JSON object): the one decision [`add_params`] and [`names`] share.
enum Kind {
    Form,
    Json,
    Multipart,
    Unsupported,
}

fn kind(content_type: &str, bytes: &[u8]) -> Kind {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" => Kind::Form,
        "text/plain" | "" if bytes.trim_ascii_start().starts_with(b"{") => Kind::Json,
        "text/plain" | "" => Kind::Form,
        "application/json" => Kind::Json,
        "multipart/form-data" => Kind::Multipart,
        _ => Kind::Unsupported,
    }
}

/// A JSON object's value as a parameter value: strings as they are, numbers, booleans and nested
/// values as JSON text; `null` is no value.
pub(super) fn json_text(value: &serde_json::Value) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.into()),
        other => Some(other.to_string().into()),
    }
}

fn add_form(bytes: &[u8], hit: &mut HitBuilder<'_>) {
    let text = String::from_utf8_lossy(bytes);
    if matches!(text, std::borrow::Cow::Owned(_)) {
        hit.flags_mut().set(Flag::BadEncoding);
    }
    hit.add_encoded(&text);
}

/// A flat JSON object: strings as they are, numbers and booleans as text, nested values as JSON.
fn add_json(bytes: &[u8], hit: &mut HitBuilder<'_>) {
    let Ok(map) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes) else {
        return hit.flags_mut().set(Flag::BadBody);
    };
    for (k, text) in map.iter().filter_map(|(k, v)| Some((k, json_text(v)?))) {
        if !hit.add(k, &text) {
            break;
        }
    }
}

/// The fields of a multipart body (files are not read). multer parses a stream; the body is
/// already in memory, so every step is ready at once and is polled to completion here rather
/// than awaited (shaping is synchronous).
fn add_multipart(content_type: &str, bytes: Bytes, hit: &mut HitBuilder<'_>) {
    let Ok(boundary) = multer::parse_boundary(content_type) else {
        return hit.flags_mut().set(Flag::BadBody);
    };
    let stream = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]);
    let mut multipart = multer::Multipart::new(stream, boundary);
    loop {
        // A stream of one ready chunk never makes a step wait; if one ever did, the body is
        // flagged rather than the intake blocked.
        let Some(next) = multipart.next_field().now_or_never() else {
            return hit.flags_mut().set(Flag::BadBody);
        };
        match next {
            Ok(Some(field)) => {
                let name = field.name().map(str::to_owned);
                let is_file = field.file_name().is_some();
                let text = field.text().now_or_never();
                match (name, is_file, text) {
                    (Some(name), false, Some(Ok(text))) => {
                        if !hit.add(&name, &text) {
                            break;
                        }
                    }
                    (_, true, _) => hit.flags_mut().set(Flag::UnsupportedBody),
                    _ => hit.flags_mut().set(Flag::BadBody),
                }
            }
            Ok(None) => break,
            Err(_) => {
                hit.flags_mut().set(Flag::BadBody);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{ParseSettings, RequestMeta};
    use crate::record::{Hit, Timestamp};

    fn shaped(content_type: &str, body: &str) -> Hit {
        let settings = ParseSettings::default();
        let mut hit = HitBuilder::new(&settings, Timestamp::now());
        add_params(&Body::Read { content_type: content_type.into(), bytes: Bytes::from(body.to_owned()) }, &mut hit);
        hit.finish(RequestMeta::default())
    }

    #[test]
    fn a_multipart_body_is_parsed_without_waiting() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"ev\"\r\n\r\nLead\r\n--XyZ\r\nContent-Disposition: form-data; name=\"cd[value]\"\r\n\r\n9.5\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nxx\r\n--XyZ--\r\n";
        let hit = shaped("multipart/form-data; boundary=XyZ", body);
        assert_eq!(hit.event.as_deref(), Some("Lead"));
        assert_eq!(hit.attrs["value"], "9.5");
        assert!(hit.flags.contains(Flag::UnsupportedBody), "a file part is not read");
        assert!(shaped("multipart/form-data; boundary=XyZ", "--XyZ\r\nbroken").flags.contains(Flag::BadBody));
    }

    #[test]
    fn json_and_text_bodies_add_their_parameters() {
        let hit = shaped("text/plain;charset=UTF-8", r#"{"ev":"Purchase","cd[value]":12.5,"n":null}"#);
        assert_eq!((hit.event.as_deref(), hit.attrs["value"].as_str()), (Some("Purchase"), "12.5"));
        let hit = shaped("", "ev=Lead&cd%5Bx%5D=1");
        assert_eq!((hit.event.as_deref(), hit.attrs["x"].as_str()), (Some("Lead"), "1"));
        assert!(shaped("application/json", "[1]").flags.contains(Flag::BadBody));
        assert!(shaped("image/png", "x").flags.contains(Flag::UnsupportedBody));
    }
}
