//! Recorded calls: every request the fake received ([`GraphRequest`]) and every event it accepted
//! ([`GraphEvent`]), kept with the access token masked ([`mask`]), and the state they live in.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::answer::Answer;
use super::validation::Rule;

/// One request the fake received.
#[derive(Clone)]
pub struct GraphRequest {
    /// Order of arrival, from 0.
    pub index: usize,
    pub method: String,
    pub path: String,
    /// `{pixel_id}` from the path ("" when the path did not match).
    pub pixel_id: String,
    /// `{version}` from the path, e.g. "v26.0".
    pub version: String,
    /// The JSON body with `access_token` masked; None when it did not parse.
    pub body: Option<Value>,
    /// Whether the URL query carried `access_token` (a violation).
    pub token_in_query: bool,
    /// Whether the body carried a non-empty `access_token`.
    pub token_in_body: bool,
    /// Whether the body's token is one configured for this pixel.
    pub token_ok: bool,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    pub received_at: SystemTime,
    pub received: Instant,
    /// When the answer was ready (after any delay); None while delayed or for [`Answer::Hang`].
    pub answered: Option<Instant>,
    /// HTTP status answered; 0 while delayed or for [`Answer::Hang`].
    pub status: u16,
    /// The Graph error code answered, if any.
    pub error_code: Option<u16>,
    /// The validation rule broken (not set for scripted errors).
    pub rule: Option<Rule>,
    /// The error message answered (never contains a token).
    pub message: Option<String>,
}

impl fmt::Debug for GraphRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut body = self.body.as_ref().map(Value::to_string).unwrap_or_else(|| "<not JSON>".into());
        if body.len() > 600 {
            let mut cut = 600;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body = format!("{}… ({} bytes)", &body[..cut], body.len());
        }
        write!(
            f,
            "#{} {} {} → {} {:?} {:?} token_in_query={} token_in_body={} token_ok={} content_type={:?} user_agent={:?} body={}",
            self.index,
            self.method,
            self.path,
            self.status,
            self.rule,
            self.message,
            self.token_in_query,
            self.token_in_body,
            self.token_ok,
            self.content_type,
            self.user_agent,
            body
        )
    }
}

/// One event the fake accepted (answered 200 for).
#[derive(Clone, Debug)]
pub struct GraphEvent {
    pub pixel_id: String,
    pub version: String,
    pub test_event_code: Option<String>,
    /// Index of the request it came in.
    pub request: usize,
    /// The event object as sent.
    pub event: Value,
}

impl GraphEvent {
    pub fn name(&self) -> &str {
        self.event["event_name"].as_str().unwrap_or_default()
    }

    pub fn event_id(&self) -> Option<&str> {
        self.event["event_id"].as_str()
    }
}

/// `abc… (40 chars)` for long tokens, `*** (n chars)` for short ones: enough to tell tokens apart
/// in a failure message, far too little to use one.
pub fn mask(token: &str) -> String {
    let n = token.chars().count();
    if n >= 16 {
        let head: String = token.chars().take(3).collect();
        format!("{head}… ({n} chars)")
    } else {
        format!("*** ({n} chars)")
    }
}

/// What the fake holds: its configuration (tokens, script, delay) and what it recorded.
#[derive(Default)]
pub(super) struct State {
    /// Valid tokens by pixel.
    pub tokens: HashMap<String, Vec<String>>,
    pub script: VecDeque<Answer>,
    pub delay: Duration,
    pub requests: Vec<GraphRequest>,
    pub events: Vec<GraphEvent>,
    /// The last `fbtrace_id` number handed out.
    pub trace: u64,
}

/// The state and the condition the test side waits on.
pub(super) struct Shared {
    pub state: Mutex<State>,
    pub changed: Condvar,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide what the fake saw behind a PoisonError.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
