//! POST bodies of pixel requests: sendBeacon's `text/plain`, HTML and Meta-pixel form posts
//! (`application/x-www-form-urlencoded`, `multipart/form-data`) and JSON objects.
//!
//! The body is read whole but bounded in size and time; what cannot be read is flagged on the hit
//! and the query parameters still count.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use http_body::Body;
use http_body_util::{BodyExt, Limited};

use crate::hit::Flag;
use crate::params::HitBuilder;

/// Bounds on reading a body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body read; a larger one is ignored and flagged `oversize`.
    pub max_bytes: usize,
    /// Longest the client may take to send it; a slower one is ignored and flagged `bad_body`.
    pub timeout: Duration,
}

/// Reads the body and adds its parameters to `hit`.
pub async fn add_body_params<B>(headers: &HeaderMap, body: B, limits: BodyLimits, hit: &mut HitBuilder<'_>)
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let collected = tokio::time::timeout(limits.timeout, Limited::new(body, limits.max_bytes).collect()).await;
    let bytes = match collected {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => return hit.flags_mut().set(Flag::Oversize),
        Ok(Err(_)) | Err(_) => return hit.flags_mut().set(Flag::BadBody),
    };
    if bytes.is_empty() {
        return;
    }
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" => add_form(&bytes, hit),
        "text/plain" | "" if bytes.trim_ascii_start().starts_with(b"{") => add_json(&bytes, hit),
        "text/plain" | "" => add_form(&bytes, hit),
        "application/json" => add_json(&bytes, hit),
        "multipart/form-data" => add_multipart(content_type, bytes, hit).await,
        _ => hit.flags_mut().set(Flag::UnsupportedBody),
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
    for (k, v) in map {
        let keep_going = match v {
            serde_json::Value::Null => true,
            serde_json::Value::String(s) => hit.add(&k, &s),
            other => hit.add(&k, &other.to_string()),
        };
        if !keep_going {
            break;
        }
    }
}

async fn add_multipart(content_type: &str, bytes: Bytes, hit: &mut HitBuilder<'_>) {
    let Ok(boundary) = multer::parse_boundary(content_type) else {
        return hit.flags_mut().set(Flag::BadBody);
    };
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(bytes) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().map(str::to_owned);
                let is_file = field.file_name().is_some();
                match (name, is_file, field.text().await) {
                    (Some(name), false, Ok(text)) => {
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
