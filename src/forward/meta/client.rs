//! The seam between the forwarder and Meta: [`SendEvents`] does exactly one
//! `POST {graph_url}/{version}/{pixel_id}/events` and answers in our own types, so that the retry
//! logic never sees reqwest and a scripted Meta can stand in for it in tests.
//!
//! The access token travels in the JSON body (`docs/forwarding.md#the-request`), never in the URL, so it
//! cannot land in access logs, proxies or the URL that reqwest errors carry. Error texts are our
//! own, and any echo of the token in an answer is redacted before it leaves this module.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use crate::forward::{Body, Events};
use crate::record::write_json_string;
use crate::secret::Secret;

/// One request: the events of one pixel (and one test-events code).
#[derive(Debug, Clone, Copy)]
pub struct EventsRequest<'a> {
    /// Path segment: the pixel (dataset) id, digits only.
    pub pixel_id: &'a str,
    /// The pixel's access token.
    pub token: &'a Secret,
    /// Routes the events to Events Manager "Test events".
    pub test_event_code: Option<&'a str>,
    /// At most 1,000 events, each already a JSON object ([`super::event::write`]), in their
    /// body ([`body_start`], [`body_end`]).
    pub events: Events<'a>,
}

/// What a request body has before its events.
pub fn body_start(out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"data\":[");
}

/// What a request body has after its events: the token and the test-events code.
pub fn body_end(token: &Secret, test_event_code: Option<&str>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"],\"access_token\":");
    write_json_string(out, token.expose());
    if let Some(code) = test_event_code {
        out.extend_from_slice(b",\"test_event_code\":");
        write_json_string(out, code);
    }
    out.push(b'}');
}

/// A whole request body, `{"data":[…],"access_token":"…","test_event_code":…}`, around `events`
/// (comma-separated JSON objects), in three pieces as the forwarder sends it.
pub fn body(events: &[u8], token: &Secret, test_event_code: Option<&str>) -> Body {
    let (mut start, mut end) = (Vec::new(), Vec::new());
    body_start(&mut start);
    body_end(token, test_event_code, &mut end);
    Body::new(vec![start.into(), Bytes::copy_from_slice(events), end.into()])
}

/// One `/events` call. Implementations do not retry: the forwarder decides, from [`super::classify`].
pub trait SendEvents: Send + Sync + 'static {
    /// Sends the request and reads Meta's answer.
    fn send(&self, request: &EventsRequest<'_>) -> impl Future<Output = Result<Received, SendError>> + Send;
}

/// Meta's answer to a request it accepted (HTTP 2xx).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Received {
    /// How many events Meta took; `None` when a 2xx answer could not be read.
    #[serde(default)]
    pub events_received: Option<u64>,
    /// Meta's warnings, if any.
    #[serde(default)]
    pub messages: Vec<String>,
    /// Meta's request id, for support.
    #[serde(default)]
    pub fbtrace_id: Option<String>,
}

/// A Graph API error answer (`{"error":{…}}`) and its HTTP status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphError {
    /// HTTP status.
    pub status: u16,
    /// `error.code` (190 invalid token, 100 invalid parameter, 4/17/32/613 throttling, …).
    pub code: Option<i64>,
    /// `error.error_subcode`.
    pub subcode: Option<i64>,
    /// `error.message` (or the start of a body that was not Graph JSON).
    pub message: String,
    /// `error.error_user_msg`, the longer explanation Meta gives for code 100.
    pub user_message: Option<String>,
    /// `error.fbtrace_id`.
    pub fbtrace_id: Option<String>,
    /// `error.is_transient`, when Meta says.
    pub is_transient: Option<bool>,
    /// For code 100: the position in `data` of the event Meta complains about, when the error
    /// text names one (`data[3]`, `event 3`, `index 3`). A hint only: the forwarder confirms it by
    /// sending that event alone.
    pub event_index: Option<usize>,
}

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(code) = self.code {
            write!(f, ", code {code}")?;
        }
        if let Some(sub) = self.subcode {
            write!(f, "/{sub}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(msg) = &self.user_message {
            write!(f, " ({msg})")?;
        }
        if let Some(trace) = &self.fbtrace_id {
            write!(f, " [fbtrace_id {trace}]")?;
        }
        Ok(())
    }
}

/// Why a request got no success answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Meta could not be reached or hung up (refused, reset, DNS, TLS).
    #[error("unreachable: {0}")]
    Connect(String),
    /// Meta answered with an error status.
    #[error("{0}")]
    Graph(GraphError),
    /// The client cannot send at all (it could not be built): no retry helps.
    #[error("client unavailable: {0}")]
    Client(String),
}

impl SendError {
    /// The Graph error code, if Meta answered with one.
    pub fn code(&self) -> Option<i64> {
        match self {
            SendError::Graph(g) => g.code,
            _ => None,
        }
    }
}

/// The real client over reqwest (rustls).
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: Result<reqwest::Client, String>,
    /// `{graph_url}/{graph_version}`.
    base: String,
    timeout: Duration,
}

impl GraphClient {
    /// A client for `{graph_url}/{graph_version}`, connecting within `timeout` (the forwarder
    /// times whole requests, longer for more events). Redirects are not followed (a redirected POST would lose its body). If the HTTP client cannot be built
    /// (no TLS backend), every request fails with [`SendError::Client`] and the events are given
    /// up with a record, rather than the process failing to start.
    pub fn new(graph_url: &str, graph_version: &str, timeout: Duration) -> Self {
        // No total timeout here: the forwarder times each request by what it carries.
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pixelgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", crate::telemetry::error_chain(&e)));
        if let Err(err) = &http {
            tracing::error!(error = %err, "the Conversions API client is unavailable; events will be given up");
        }
        GraphClient { http, base: format!("{}/{}", graph_url.trim_end_matches('/'), graph_version.trim_matches('/')), timeout }
    }

    /// The URL events for `pixel_id` are posted to (no token in it).
    pub fn url(&self, pixel_id: &str) -> String {
        format!("{}/{pixel_id}/events", self.base)
    }
}

impl SendEvents for GraphClient {
    async fn send(&self, request: &EventsRequest<'_>) -> Result<Received, SendError> {
        let http = self.http.as_ref().map_err(|e| SendError::Client(e.clone()))?;
        let response = http
            .post(self.url(request.pixel_id))
            .header(http::header::CONTENT_TYPE, "application/json")
            // The body's pieces are sent as they are, with their total as `Content-Length`.
            .body(reqwest::Body::wrap(request.events.body.stream()))
            .send()
            .await
            .map_err(|e| self.transport(&e))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| self.transport(&e))?;
        let token = request.token.expose();
        if (200..300).contains(&status) {
            // A 2xx means Meta took the events; an unreadable body does not change that.
            return Ok(serde_json::from_slice(&body).unwrap_or_default());
        }
        Err(SendError::Graph(parse_error(status, &body, token)))
    }
}

impl GraphClient {
    fn transport(&self, err: &reqwest::Error) -> SendError {
        if err.is_timeout() {
            SendError::Timeout(self.timeout)
        } else {
            // The URL holds no token, but keep reqwest's text out of it anyway: our words only.
            let kind = if err.is_connect() {
                "cannot connect"
            } else if err.is_body() || err.is_decode() {
                "the answer was cut off"
            } else {
                "the request failed"
            };
            SendError::Connect(format!("{kind}: {}", cause(err)))
        }
    }
}

/// What went wrong underneath a reqwest error: its sources, which (unlike its own text) never
/// carry the URL.
fn cause(err: &reqwest::Error) -> String {
    use std::error::Error;
    err.source().map_or_else(|| "no details".to_owned(), crate::telemetry::error_chain)
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorFields,
}

#[derive(Deserialize)]
struct ErrorFields {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    error_subcode: Option<i64>,
    #[serde(default)]
    error_user_msg: Option<String>,
    #[serde(default)]
    error_user_title: Option<String>,
    #[serde(default)]
    fbtrace_id: Option<String>,
    #[serde(default)]
    is_transient: Option<bool>,
}

/// Reads a Graph error answer; a body that is not Graph JSON (a proxy's HTML page) keeps its
/// first 200 characters as the message. Any echo of `token` is redacted.
pub fn parse_error(status: u16, body: &[u8], token: &str) -> GraphError {
    let redact = |s: String| {
        if token.is_empty() { s } else { s.replace(token, "[redacted]") }
    };
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error: e }) => {
            let message = redact(e.message.unwrap_or_default());
            let user_message = match (e.error_user_title, e.error_user_msg) {
                (Some(t), Some(m)) => Some(format!("{t}: {m}")),
                (t, m) => m.or(t),
            }
            .map(redact);
            let event_index = if e.code == Some(100) { [user_message.as_deref(), Some(message.as_str())].into_iter().flatten().find_map(event_index) } else { None };
            GraphError { status, code: e.code, subcode: e.error_subcode, message, user_message, fbtrace_id: e.fbtrace_id, is_transient: e.is_transient, event_index }
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let mut message: String = text.chars().take(200).collect();
            if message.trim().is_empty() {
                message = "no error details".into();
            }
            GraphError { status, message: redact(message), ..GraphError::default() }
        }
    }
}

/// The event position named in an error text: `data[N]`, `event N` or `index N` (Meta does not
/// document a format; these are hints the forwarder verifies).
fn event_index(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    for marker in ["data[", "event ", "index "] {
        let mut rest = lower.as_str();
        while let Some(at) = rest.find(marker) {
            rest = &rest[at + marker.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse() {
                return Some(n);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    use super::*;

    const TOKEN: &str = "EAAG-very-secret-token-1234567890";

    /// `ids` as the events of a request.
    fn events(ids: &[&str]) -> Vec<u8> {
        let json: Vec<String> = ids
            .iter()
            .map(|id| format!(r#"{{"event_name":"Lead","event_time":1795000000,"event_id":"{id}","action_source":"website","event_source_url":"https://a.example/","user_data":{{"client_user_agent":"UA"}}}}"#))
            .collect();
        json.join(",").into_bytes()
    }

    /// What the local server saw of one request.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        uri: String,
        content_type: Option<String>,
        body: serde_json::Value,
        raw: String,
    }

    /// Sends one event for pixel 1 with [`TOKEN`] to `base`.
    async fn send_one(base: &str) -> Result<Received, SendError> {
        let client = GraphClient::new(base, "v26.0", Duration::from_millis(1500));
        let token = Secret::new(TOKEN);
        let json = events(&["e1"]);
        client.send(&EventsRequest { pixel_id: "1", token: &token, test_event_code: None, events: Events { count: 1, body: &body(&json, &token, None) } }).await
    }

    /// A one-route HTTP server on 127.0.0.1:0 answering every request with `status` and `answer`
    /// (or never, with `hang`), recording what it received.
    async fn server(status: u16, answer: &'static str, hang: bool) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let method = req.method().to_string();
                            let uri = req.uri().to_string();
                            let content_type = req.headers().get("content-type").map(|v| v.to_str().unwrap_or_default().to_owned());
                            let bytes = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let raw = String::from_utf8_lossy(&bytes).into_owned();
                            let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
                            log.lock().unwrap().push(Seen { method, uri, content_type, body, raw });
                            if hang {
                                std::future::pending::<()>().await;
                            }
                            Ok::<_, Infallible>(hyper::Response::builder().status(status).body(Full::new(Bytes::from_static(answer.as_bytes()))).unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn the_token_travels_in_the_json_body_never_in_the_url() {
        let (addr, seen) = server(200, r#"{"events_received":2,"messages":[],"fbtrace_id":"AbC123"}"#, false).await;
        let client = GraphClient::new(&format!("http://{addr}/"), "v26.0", Duration::from_millis(1500));
        let token = Secret::new(TOKEN);
        let json = events(&["e1", "e2"]);
        let got = client
            .send(&EventsRequest {
                pixel_id: "1234567890",
                token: &token,
                test_event_code: Some("TEST42"),
                events: Events { count: 2, body: &body(&json, &token, Some("TEST42")) },
            })
            .await
            .unwrap();
        assert_eq!(got, Received { events_received: Some(2), messages: vec![], fbtrace_id: Some("AbC123".into()) });
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        let req = &seen[0];
        assert_eq!(req.method, "POST");
        assert_eq!(req.uri, "/v26.0/1234567890/events");
        assert!(!req.uri.contains(TOKEN) && !req.uri.contains("access_token") && !req.uri.contains('?'));
        assert_eq!(req.content_type.as_deref(), Some("application/json"));
        assert_eq!(req.body["access_token"], TOKEN);
        assert_eq!(req.body["test_event_code"], "TEST42");
        let ids: Vec<_> = req.body["data"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["e1", "e2"]);
        assert_eq!(req.body["data"][0]["action_source"], "website");
        assert_eq!(req.raw.matches(TOKEN).count(), 1);
    }

    #[tokio::test]
    async fn graph_errors_are_parsed_and_never_echo_the_token() {
        let (addr, _) = server(
            400,
            r#"{"error":{"message":"Invalid OAuth access token - Cannot parse access token EAAG-very-secret-token-1234567890","type":"OAuthException","code":190,"error_subcode":467,"fbtrace_id":"Xy9"}}"#,
            false,
        )
        .await;
        let err = send_one(&format!("http://{addr}")).await.unwrap_err();
        let SendError::Graph(g) = &err else { panic!("{err:?}") };
        assert_eq!((g.status, g.code, g.subcode, g.fbtrace_id.as_deref()), (400, Some(190), Some(467), Some("Xy9")));
        assert!(!err.to_string().contains(TOKEN) && !format!("{err:?}").contains(TOKEN), "{err}");
        assert!(g.message.contains("[redacted]"));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_left_to_the_caller_s_timeout() {
        // The forwarder times each request by what it carries; the client sets no total timeout
        // of its own that would cut a large batch short.
        let (addr, seen) = server(200, "{}", true).await;
        let client = GraphClient::new(&format!("http://{addr}"), "v26.0", Duration::from_millis(300));
        let token = Secret::new(TOKEN);
        let json = events(&["e1"]);
        let started = Instant::now();
        let framed = body(&json, &token, None);
        let request = EventsRequest { pixel_id: "1", token: &token, test_event_code: None, events: Events { count: 1, body: &framed } };
        let waited = tokio::time::timeout(Duration::from_millis(1000), client.send(&request)).await;
        assert!(waited.is_err(), "still waiting after three times the connect timeout: {waited:?}");
        assert!(started.elapsed() >= Duration::from_millis(950));
        assert_eq!(seen.lock().unwrap().len(), 1, "the request reached the server");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = send_one(&format!("http://{addr}")).await.unwrap_err();
        assert!(matches!(&err, SendError::Connect(_)), "{err:?}");
        assert!(!err.to_string().contains(TOKEN));
    }

    #[test]
    fn error_bodies_are_read_leniently() {
        let g = parse_error(
            400,
            br#"{"error":{"message":"Invalid parameter","code":100,"error_subcode":2804008,"error_user_title":"Event time too old","error_user_msg":"The event at data[7] is older than 7 days","fbtrace_id":"T"}}"#,
            TOKEN,
        );
        assert_eq!((g.code, g.subcode, g.event_index), (Some(100), Some(2804008), Some(7)));
        assert_eq!(g.user_message.as_deref(), Some("Event time too old: The event at data[7] is older than 7 days"));
        let g = parse_error(502, b"<html>Bad Gateway</html>", TOKEN);
        assert_eq!((g.status, g.code, g.message.as_str()), (502, None, "<html>Bad Gateway</html>"));
        let g = parse_error(400, br#"{"error":{"message":"(#100) Invalid parameter","code":100}}"#, TOKEN);
        assert_eq!(g.event_index, None);
        assert_eq!(event_index("problem in event 12: bad"), Some(12));
    }
}
