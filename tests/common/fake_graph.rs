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
//!   five minutes ahead, an `action_source` from Meta's enum and a `user_data` object with at
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
//!
//! Split by concern: [`server`] serves and routes, [`validation`] checks requests as Meta does,
//! [`answer`] scripts failures, [`record`] keeps what was received; this file is the handle
//! tests hold.

mod answer;
mod record;
mod server;
mod validation;

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use answer::Answer;
pub use record::{GraphEvent, GraphRequest, mask};
pub use validation::Rule;

use super::http_server::HttpServer;
use record::{Shared, State};

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
        let server = HttpServer::start("fake-graph", move |req| server::handle(req, serving.clone()));
        FakeGraph { server, shared }
    }

    /// Base URL, e.g. `http://127.0.0.1:43121` (pass as `--graph-url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
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
        panic!("fake graph: {} event(s) accepted within {timeout:?}, wanted {n}; requests:\n{:#?}", state.events.len(), state.requests)
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
