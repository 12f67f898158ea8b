//! A local fake of Meta's Graph API `POST /{version}/{pixel_id}/events` (the Conversions API) for
//! black-box tests: a real HTTP/1 server on `127.0.0.1:0`, on its own thread with its own Tokio
//! runtime, so both async and blocking tests can use it.
//!
//! It is at least as strict as Meta (`docs/forwarding.md#the-request`,
//! `docs/forwarding.md#the-server-event`, `docs/forwarding.md#limits`,
//! `docs/parameters.md#personal-data`, `docs/forwarding.md#answers-and-retries`), and stricter
//! where pixelgate has chosen to be (the token travels in the JSON body only, `external_id` is
//! hashed):
//! - JSON body, `data` an array of 1..=1000 events, `access_token` in the body; a token in the
//!   URL query is refused (HTTP 400, code 100) and recorded as a violation;
//! - every event has `event_name`, an integer `event_time` within the last 7 days and at most
//!   [`MAX_FUTURE`] ahead, an `action_source` from Meta's enum and a `user_data` object with at
//!   least one customer-information key; website events also `user_data.client_user_agent` and an
//!   http(s) `event_source_url`;
//! - every hashed `user_data` key (em ph fn ln ge db ct st zp country external_id, string or array
//!   of strings) is 64 lowercase hex; `client_ip_address` parses as an IP; `fbp`/`fbc` are
//!   unhashed cookie values `fb.{n}.{ms}.{payload}`; `custom_data.value` is a number;
//!   `test_event_code` a string.
//!
//! As at Meta, one invalid event rejects the whole request. Errors have Graph's shape
//! `{"error":{"message","type":"OAuthException","code","error_subcode","fbtrace_id"}}`; the
//! `error_subcode`s for validation failures are this fake's own (see [`Rule`]), so assert on
//! `code` or on [`FakeGraph::violations`], not on Meta's subcode numbers. Token checks: no token
//! → code 104; a token configured for no pixel → code 190 (subcode 467, HTTP 400, with Graph's
//! `WWW-Authenticate` header); a token configured only for another pixel → code 100 subcode 33
//! ("object does not exist … missing permissions"), which is what Meta answers for a pixel the
//! token's system user cannot reach. Success: `{"events_received":N,"messages":[],"fbtrace_id"}`.
//!
//! Tests steer it with [`FakeGraph::script`] / [`FakeGraph::fail_next`] ([`Answer`]s consumed one
//! per request, then back to normal validation) and [`FakeGraph::set_delay`], and inspect
//! [`FakeGraph::requests`] / [`FakeGraph::events`]. Access tokens never appear in anything it
//! prints or returns: bodies are stored with `access_token` masked.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::http_server::HttpServer;

/// Most events per request (`docs/forwarding.md#limits`).
pub const MAX_EVENTS: usize = 1000;
/// How old an `event_time` may be (`docs/forwarding.md#the-server-event`: 7 days).
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How far ahead of the fake's clock an `event_time` may be (Meta: unverified, "a few minutes").
pub const MAX_FUTURE: Duration = Duration::from_secs(5 * 60);

/// `user_data` keys that must be SHA-256 hex.
pub const HASHED_KEYS: [&str; 11] = ["em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id"];

/// `docs/forwarding.md#the-server-event`.
pub const ACTION_SOURCES: [&str; 9] =
    ["email", "website", "app", "phone_call", "chat", "physical_store", "system_generated", "business_messaging", "other"];

/// What the fake answers to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Normal processing: validate, then 200 with `events_received` (or the validation error).
    Accept,
    /// HTTP 400, code 100 "Invalid parameter" (subcode 2804019), events not recorded.
    InvalidParameter,
    /// HTTP 400, code 190 "Invalid OAuth access token" (subcode 467), events not recorded.
    InvalidToken,
    /// HTTP 400, code 613 rate limit (subcode 1487742, `is_transient: true`).
    RateLimited,
    /// HTTP 500, code 1 "An unknown error occurred" (`is_transient: true`).
    ServerError,
    /// Wait, then give the inner answer.
    Delay(Duration, Box<Answer>),
    /// Never answer (the connection stays open until the fake is dropped).
    Hang,
}

impl Answer {
    /// `Answer::Delay(d, Box::new(then))`.
    pub fn delay(d: Duration, then: Answer) -> Answer {
        Answer::Delay(d, Box::new(then))
    }
}

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
    fn code_and_subcode(self) -> (u16, u32) {
        match self {
            Rule::NoToken => (104, 0),
            Rule::WrongToken => (190, 467),
            Rule::PixelNotAllowed => (100, 33),
            other => (100, 2_804_100 + other as u32),
        }
    }
}

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
            "#{} {} {} → {} {:?} {:?} token_in_query={} token_in_body={} token_ok={} body={}",
            self.index,
            self.method,
            self.path,
            self.status,
            self.rule,
            self.message,
            self.token_in_query,
            self.token_in_body,
            self.token_ok,
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

#[derive(Default)]
struct State {
    tokens: HashMap<String, Vec<String>>,
    script: VecDeque<Answer>,
    delay: Duration,
    requests: Vec<GraphRequest>,
    events: Vec<GraphEvent>,
    trace: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide what the fake saw behind a PoisonError.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The running fake. Dropping it stops the server.
pub struct FakeGraph {
    server: HttpServer,
    shared: Arc<Shared>,
}

impl FakeGraph {
    /// Binds 127.0.0.1:0 and serves on a new thread. No pixel has a token yet: see
    /// [`FakeGraph::set_token`].
    pub fn start() -> FakeGraph {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), changed: Condvar::new() });
        let serving = shared.clone();
        let server = HttpServer::start("fake-graph", move |req| handle(req, serving.clone()));
        FakeGraph { server, shared }
    }

    /// Base URL, e.g. `http://127.0.0.1:43121` (pass as `--graph-url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Makes `token` the only valid token for `pixel`.
    pub fn set_token(&self, pixel: &str, token: &str) {
        self.shared.lock().tokens.insert(pixel.to_owned(), vec![token.to_owned()]);
    }

    /// Adds `token` as another valid token for `pixel` (token rotation).
    pub fn add_token(&self, pixel: &str, token: &str) {
        self.shared.lock().tokens.entry(pixel.to_owned()).or_default().push(token.to_owned());
    }

    /// Appends answers for the next requests, one per request, in order; after the script runs
    /// out, requests get [`Answer::Accept`].
    pub fn script(&self, answers: Vec<Answer>) {
        self.shared.lock().script.extend(answers);
    }

    /// Appends `n` times `answer` to the script.
    pub fn fail_next(&self, n: usize, answer: Answer) {
        self.shared.lock().script.extend(std::iter::repeat_n(answer, n));
    }

    /// Waits `delay` before answering every request (on top of any [`Answer::Delay`]).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().delay = delay;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<GraphRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every accepted event so far, flattened, in arrival order.
    pub fn events(&self) -> Vec<GraphEvent> {
        self.shared.lock().events.clone()
    }

    /// Number of accepted events.
    pub fn count(&self) -> usize {
        self.shared.lock().events.len()
    }

    /// Every request refused by a validation rule (not by a scripted answer), as a line that
    /// names the rule and the message; a correct client produces none.
    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().requests.iter().filter(|r| r.rule.is_some()).map(|r| format!("{r:?}")).collect()
    }

    /// Panics, listing them, if any request broke a rule.
    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(v.is_empty(), "the fake Graph API refused {} request(s):\n{}", v.len(), v.join("\n"));
    }

    /// Blocks until at least `n` events were accepted, then returns all events; panics after
    /// `timeout` with what arrived. Blocking: from an async test whose runtime also runs the code
    /// under test, use [`FakeGraph::wait_for_events_async`].
    pub fn wait_for_events(&self, n: usize, timeout: Duration) -> Vec<GraphEvent> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.events.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(state);
                self.timed_out(n, timeout);
            }
            state = self.shared.changed.wait_timeout(state, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        state.events.clone()
    }

    /// [`FakeGraph::wait_for_events`] without blocking the calling runtime.
    pub async fn wait_for_events_async(&self, n: usize, timeout: Duration) -> Vec<GraphEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let state = self.shared.lock();
                if state.events.len() >= n {
                    return state.events.clone();
                }
            }
            if Instant::now() >= deadline {
                self.timed_out(n, timeout);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Blocks until at least `n` requests arrived (whatever the answer); panics after `timeout`.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<GraphRequest> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "fake graph: {} request(s) within {timeout:?}, wanted {n}:\n{:#?}", state.requests.len(), state.requests);
            state = self.shared.changed.wait_timeout(state, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        state.requests.clone()
    }

    fn timed_out(&self, n: usize, timeout: Duration) -> ! {
        let state = self.shared.lock();
        panic!(
            "fake graph: {} event(s) accepted within {timeout:?}, wanted {n}; requests:\n{:#?}",
            state.events.len(),
            state.requests
        )
    }
}

impl fmt::Debug for FakeGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.shared.lock();
        f.debug_struct("FakeGraph")
            .field("addr", &self.server.addr())
            .field("pixels", &s.tokens.keys().collect::<Vec<_>>())
            .field("requests", &s.requests)
            .field("events", &s.events.len())
            .finish()
    }
}

/// What validation (or the script) decided for one request.
struct Outcome {
    status: StatusCode,
    body: Value,
    error_code: Option<u16>,
    rule: Option<Rule>,
    message: Option<String>,
    accepted: Vec<Value>,
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (content_type, user_agent) = (header("content-type"), header("user-agent"));
    let raw = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();

    let token_in_query = form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "access_token");
    let (version, pixel_id) = parse_path(&path).unwrap_or_default();
    let mut body: Option<Value> = serde_json::from_slice(&raw).ok();
    let token = body.as_ref().and_then(|b| b.get("access_token")).and_then(Value::as_str).map(str::to_owned).filter(|t| !t.is_empty());
    if let Some(Value::Object(o)) = &mut body
        && let Some(t) = o.get_mut("access_token")
    {
        *t = Value::String(mask(t.as_str().unwrap_or_default()));
    }

    let (index, answer, delay, trace) = {
        let mut s = shared.lock();
        s.trace += 1;
        let index = s.requests.len();
        let token_ok = token.as_ref().is_some_and(|t| s.tokens.get(&pixel_id).is_some_and(|ts| ts.contains(t)));
        s.requests.push(GraphRequest {
            index,
            method: method.clone(),
            path: path.clone(),
            pixel_id: pixel_id.clone(),
            version: version.clone(),
            body: body.clone(),
            token_in_query,
            token_in_body: token.is_some(),
            token_ok,
            content_type,
            user_agent,
            received_at: SystemTime::now(),
            received: Instant::now(),
            answered: None,
            status: 0,
            error_code: None,
            rule: None,
            message: None,
        });
        let answer = s.script.pop_front().unwrap_or(Answer::Accept);
        (index, answer, s.delay, format!("AFake{:07}", s.trace))
    };
    shared.changed.notify_all();

    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut answer = answer;
    while let Answer::Delay(d, then) = answer {
        tokio::time::sleep(d).await;
        answer = *then;
    }

    let outcome = match answer {
        Answer::Hang => std::future::pending::<Outcome>().await,
        Answer::Delay(..) => unreachable!(),
        Answer::Accept => {
            let verdict = token_verdict(token.as_deref(), &pixel_id, &shared.lock().tokens);
            process(&method, &version, &pixel_id, token_in_query, verdict, body.as_ref(), &trace)
        }
        Answer::InvalidParameter => error(StatusCode::BAD_REQUEST, 100, 2_804_019, "(#100) Invalid parameter", None, &trace),
        Answer::InvalidToken => error(StatusCode::BAD_REQUEST, 190, 467, "Invalid OAuth access token - Cannot parse access token", None, &trace),
        Answer::RateLimited => {
            let mut o = error(StatusCode::BAD_REQUEST, 613, 1_487_742, "(#613) Calls to this api have exceeded the rate limit.", None, &trace);
            o.body["error"]["is_transient"] = json!(true);
            o
        }
        Answer::ServerError => {
            let mut o = error(StatusCode::INTERNAL_SERVER_ERROR, 1, 99, "An unknown error occurred", None, &trace);
            o.body["error"]["is_transient"] = json!(true);
            o
        }
    };

    let response = {
        let mut s = shared.lock();
        let test_event_code = body.as_ref().and_then(|b| b.get("test_event_code")).and_then(Value::as_str).map(str::to_owned);
        for event in &outcome.accepted {
            s.events.push(GraphEvent {
                pixel_id: pixel_id.clone(),
                version: version.clone(),
                test_event_code: test_event_code.clone(),
                request: index,
                event: event.clone(),
            });
        }
        let r = &mut s.requests[index];
        r.status = outcome.status.as_u16();
        r.answered = Some(Instant::now());
        r.error_code = outcome.error_code;
        r.rule = outcome.rule;
        r.message = outcome.message;
        let mut resp = Response::new(Full::new(Bytes::from(outcome.body.to_string())));
        *resp.status_mut() = outcome.status;
        let h = resp.headers_mut();
        h.insert("content-type", "application/json; charset=UTF-8".parse().unwrap());
        h.insert("x-fb-trace-id", trace.parse().unwrap());
        if outcome.error_code == Some(190) {
            h.insert(
                "www-authenticate",
                "OAuth \"Facebook Platform\" \"invalid_token\" \"Invalid OAuth access token - Cannot parse access token\"".parse().unwrap(),
            );
        }
        resp
    };
    shared.changed.notify_all();
    Ok(response)
}

/// How the body's token relates to the configured ones.
#[derive(Clone, Copy)]
enum TokenVerdict {
    Ok,
    Missing,
    Unknown,
    OtherPixel,
}

fn token_verdict(token: Option<&str>, pixel: &str, tokens: &HashMap<String, Vec<String>>) -> TokenVerdict {
    match token {
        None => TokenVerdict::Missing,
        Some(t) if tokens.get(pixel).is_some_and(|ts| ts.iter().any(|x| x == t)) => TokenVerdict::Ok,
        Some(t) if tokens.values().any(|ts| ts.iter().any(|x| x == t)) => TokenVerdict::OtherPixel,
        Some(_) => TokenVerdict::Unknown,
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

/// `/{vN.M}/{digits}/events` → (version, pixel).
fn parse_path(path: &str) -> Option<(String, String)> {
    let mut parts = path.trim_start_matches('/').split('/');
    let (version, pixel, events) = (parts.next()?, parts.next()?, parts.next()?);
    let version_ok = version.strip_prefix('v').and_then(|v| v.split_once('.')).is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit())
    });
    let pixel_ok = !pixel.is_empty() && pixel.bytes().all(|c| c.is_ascii_digit());
    (parts.next().is_none() && events == "events" && version_ok && pixel_ok).then(|| (version.to_owned(), pixel.to_owned()))
}

fn error(status: StatusCode, code: u16, subcode: u32, message: &str, rule: Option<Rule>, trace: &str) -> Outcome {
    let mut e = json!({"message": message, "type": "OAuthException", "code": code, "fbtrace_id": trace});
    if subcode != 0 {
        e["error_subcode"] = json!(subcode);
    }
    Outcome {
        status,
        body: json!({ "error": e }),
        error_code: Some(code),
        rule,
        message: Some(message.to_owned()),
        accepted: Vec::new(),
    }
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
fn process(
    method: &str,
    version: &str,
    pixel: &str,
    token_in_query: bool,
    token: TokenVerdict,
    body: Option<&Value>,
    trace: &str,
) -> Outcome {
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
pub fn validate(body: &Value, now: i64) -> Result<Vec<Value>, (Rule, String)> {
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
    (parts.len() == 4 || parts.len() == 5)
        && parts[0] == "fb"
        && digits(parts[1])
        && digits(parts[2])
        && !parts[3].is_empty()
        && !s.chars().any(char::is_whitespace)
}
