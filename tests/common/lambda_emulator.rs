//! A loopback emulator of AWS Lambda's Runtime API (`/2018-06-01/runtime/…`) and Extensions API
//! (`/2020-01-01/extension/…`), as one process sees them through `AWS_LAMBDA_RUNTIME_API`.
//!
//! It keeps Lambda's lifecycle rules and records when each call happened:
//! * **Init** ends with the runtime's first `invocation/next`; extensions must register before it.
//! * An **invocation** is handed to the runtime's pending `next` (with the request-id, deadline,
//!   ARN and trace headers) and, as an `INVOKE` event, to every extension registered for it.
//! * It **ends** only once the runtime has posted a response (or error) and asked for its next
//!   event, and every such extension has asked for its next event: only then may the next
//!   invocation start, as Lambda freezes or reuses the environment only then. An invocation not
//!   ended by its deadline is marked `timed_out` (Lambda would kill the environment).
//!
//! * Between invocations Lambda **freezes** the sandbox; with [`Emulator::freeze_between_invocations`]
//!   the process is stopped (`SIGSTOP`) when an invocation ends and continued (`SIGCONT`) when the
//!   next one is handed out, so work left running after the `next` calls makes no progress.
//!
//! Rule breaks (a runtime `next` before it answered, a registration after Init, an unknown
//! path or extension id) are kept as violations for the test to assert on. Documented in
//! <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html> and
//! <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html>.

use std::convert::Infallible;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::http_server::HttpServer;
use super::process::signal;

/// The function ARN the emulator reports.
pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:pixelgate";

/// The environment Lambda gives a function, for the process under test.
pub fn lambda_env(runtime_api: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", "pixelgate".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/pixelgate".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/23/[$LATEST]0123456789abcdef".into()),
    ]
}

/// One registered extension.
#[derive(Debug, Clone)]
pub struct RegisteredExtension {
    pub id: String,
    pub name: String,
    /// The events it registered for (`INVOKE`, `SHUTDOWN`).
    pub events: Vec<String>,
    /// Invocations handed to it so far.
    seen: usize,
}

/// One invocation and what happened to it.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub payload: Value,
    /// Unix milliseconds, as sent in `Lambda-Runtime-Deadline-Ms` and `deadlineMs`.
    pub deadline_ms: u64,
    pub deadline: Instant,
    pub dispatched_at: Instant,
    /// When the runtime's `next` returned it.
    pub runtime_took_at: Option<Instant>,
    /// When the runtime posted the answer, and the answer (`invocation/{id}/response`).
    pub response_at: Option<Instant>,
    pub response: Option<Value>,
    /// An `invocation/{id}/error` instead.
    pub error: Option<Value>,
    /// The runtime's next `next` after this invocation.
    pub runtime_next_at: Option<Instant>,
    /// Each INVOKE extension's next `event/next` after this invocation: (name, when).
    pub extension_next_at: Vec<(String, Instant)>,
    /// When it ended (response or error, runtime and every INVOKE extension asked for more).
    pub ended_at: Option<Instant>,
    /// Its deadline passed before it ended.
    pub timed_out: bool,
}

impl Invocation {
    /// When the extension `name` asked for its next event after this invocation.
    pub fn extension_next(&self, name: &str) -> Option<Instant> {
        self.extension_next_at.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }
}

#[derive(Default)]
struct State {
    runtime_nexts: Vec<Instant>,
    extensions: Vec<RegisteredExtension>,
    invocations: Vec<Invocation>,
    /// Invocations handed to the runtime so far.
    runtime_seen: usize,
    /// `init/error`, `exit/error` and the like: (path, body).
    errors: Vec<(String, String)>,
    violations: Vec<String>,
    /// The process to stop between invocations, and whether it is stopped now.
    freeze: Option<u32>,
    frozen: bool,
}

impl State {
    fn invoke_extensions(&self) -> impl Iterator<Item = &RegisteredExtension> {
        self.extensions.iter().filter(|e| e.events.iter().any(|ev| ev == "INVOKE"))
    }

    /// Marks invocation `i` ended if everyone is done with it.
    fn maybe_end(&mut self, i: usize) {
        let names: Vec<String> = self.invoke_extensions().map(|e| e.name.clone()).collect();
        let inv = &mut self.invocations[i];
        let answered = inv.response.is_some() || inv.error.is_some();
        if inv.ended_at.is_none() && answered && inv.runtime_next_at.is_some() && names.iter().all(|n| inv.extension_next(n).is_some()) {
            let now = Instant::now();
            inv.ended_at = Some(now);
            inv.timed_out |= now > inv.deadline;
            if let Some(pid) = self.freeze {
                assert!(signal(pid, "STOP"), "SIGSTOP to {pid}");
                self.frozen = true;
            }
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Wakes blocking test-side waiters.
    changed: Condvar,
    /// Wakes the server's long polls.
    version: tokio::sync::watch::Sender<u64>,
    /// The function timeout: each invocation's deadline is this far after its dispatch.
    timeout: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changed.notify_all();
        self.version.send_modify(|v| *v += 1);
    }
}

/// The running emulator; dropping it stops the server.
pub struct Emulator {
    server: HttpServer,
    shared: Arc<Shared>,
}

impl Emulator {
    /// Binds 127.0.0.1:0; invocations get `timeout` as the function timeout.
    pub fn start(timeout: Duration) -> Emulator {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), changed: Condvar::new(), version: tokio::sync::watch::Sender::new(0), timeout });
        let serving = shared.clone();
        let server = HttpServer::start("lambda-emulator", move |req| handle(req, serving.clone()));
        Emulator { server, shared }
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API` (`host:port`).
    pub fn runtime_api(&self) -> String {
        self.server.addr().to_string()
    }

    /// From now on, stops `pid` when an invocation ends and continues it when the next one starts.
    pub fn freeze_between_invocations(&self, pid: u32) {
        self.shared.lock().freeze = Some(pid);
    }

    /// Waits until Init is over (the runtime's first `next`) and returns when that was.
    pub fn wait_init(&self, within: Duration, context: impl Fn() -> String) -> Instant {
        let s = self.wait(within, |s| !s.runtime_nexts.is_empty()).unwrap_or_else(|| panic!("the runtime did not ask for an invocation within {within:?}: {}", context()));
        s.runtime_nexts[0]
    }

    /// Runs one invocation: waits for the previous one to end, hands `payload` out, and returns
    /// once this one has ended or its deadline is 2 s past.
    pub fn invoke(&self, payload: Value) -> Invocation {
        let timeout = self.shared.timeout;
        drop(self.wait(timeout + Duration::from_secs(5), |s| s.invocations.last().is_none_or(|i| i.ended_at.is_some())).expect("the previous invocation ended"));
        let i = {
            let mut s = self.shared.lock();
            if std::mem::take(&mut s.frozen) {
                signal(s.freeze.unwrap(), "CONT");
            }
            let n = s.invocations.len() + 1;
            let now = Instant::now();
            let deadline_ms = (SystemTime::now() + timeout).duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
            s.invocations.push(Invocation {
                request_id: format!("{:08x}-7e57-4c0d-8a1e-{:012x}", n, std::process::id()),
                payload,
                deadline_ms,
                deadline: now + timeout,
                dispatched_at: now,
                runtime_took_at: None,
                response_at: None,
                response: None,
                error: None,
                runtime_next_at: None,
                extension_next_at: Vec::new(),
                ended_at: None,
                timed_out: false,
            });
            n - 1
        };
        self.shared.bump();
        let grace = timeout + Duration::from_secs(2);
        if self.wait(grace, |s| s.invocations[i].ended_at.is_some()).is_none() {
            let mut s = self.shared.lock();
            s.invocations[i].timed_out = true;
        }
        self.shared.lock().invocations[i].clone()
    }

    /// The extensions registered so far.
    pub fn extensions(&self) -> Vec<RegisteredExtension> {
        self.shared.lock().extensions.clone()
    }

    /// Error reports (`init/error`, `exit/error`): (path, body).
    pub fn errors(&self) -> Vec<(String, String)> {
        self.shared.lock().errors.clone()
    }

    /// Lifecycle rules the process broke.
    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    fn wait(&self, within: Duration, ready: impl Fn(&State) -> bool) -> Option<MutexGuard<'_, State>> {
        let until = Instant::now() + within;
        let mut s = self.shared.lock();
        while !ready(&s) {
            let left = until.checked_duration_since(Instant::now())?;
            s = self.shared.changed.wait_timeout(s, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        Some(s)
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

/// Waits (without blocking the server) until `take` finds something in the state.
async fn long_poll<T>(shared: &Shared, mut take: impl FnMut(&mut State) -> Option<T>) -> T {
    let mut rx = shared.version.subscribe();
    loop {
        if let Some(found) = take(&mut shared.lock()) {
            shared.bump();
            return found;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Full<Bytes>>, Infallible> {
    let now = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (extension_name, extension_id) = (header("lambda-extension-name"), header("lambda-extension-identifier"));
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let text = String::from_utf8_lossy(&body).into_owned();

    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let answer = match (method.as_str(), segments.as_slice()) {
        ("POST", ["2020-01-01", "extension", "register"]) => {
            let events: Vec<String> =
                serde_json::from_str::<Value>(&text).ok().and_then(|v| v.get("events").cloned()).and_then(|e| serde_json::from_value(e).ok()).unwrap_or_default();
            let mut s = shared.lock();
            let Some(name) = extension_name else {
                s.violations.push("extension register without Lambda-Extension-Name".into());
                return Ok(reply(StatusCode::BAD_REQUEST, json!({"errorType": "InvalidRequest"})));
            };
            if !s.runtime_nexts.is_empty() {
                s.violations.push(format!("extension {name} registered after Init ended (the runtime's first next)"));
            }
            if s.extensions.iter().any(|e| e.name == name) {
                s.violations.push(format!("extension name {name} registered twice"));
            }
            let id = format!("ext-{}-{}", s.extensions.len() + 1, name);
            s.extensions.push(RegisteredExtension { id: id.clone(), name, events, seen: 0 });
            drop(s);
            shared.bump();
            let mut r = reply(StatusCode::OK, json!({"functionName": "pixelgate", "functionVersion": "$LATEST", "handler": "bootstrap", "accountId": "123456789012"}));
            r.headers_mut().insert("lambda-extension-identifier", id.parse().unwrap());
            return Ok(r);
        }
        ("GET", ["2020-01-01", "extension", "event", "next"]) => {
            let index = {
                let mut s = shared.lock();
                let Some(index) = s.extensions.iter().position(|e| Some(&e.id) == extension_id.as_ref()) else {
                    s.violations.push(format!("event/next with unknown extension id {extension_id:?}"));
                    return Ok(reply(StatusCode::FORBIDDEN, json!({"errorType": "Extension.UnknownExtensionIdentifier"})));
                };
                let ext = s.extensions[index].clone();
                if ext.seen > 0 && ext.events.iter().any(|e| e == "INVOKE") {
                    let inv = &mut s.invocations[ext.seen - 1];
                    if inv.extension_next(&ext.name).is_none() {
                        inv.extension_next_at.push((ext.name.clone(), now));
                    }
                    s.maybe_end(ext.seen - 1);
                }
                index
            };
            shared.bump();
            let event = long_poll(&shared, |s| {
                let ext = &s.extensions[index];
                if !ext.events.iter().any(|e| e == "INVOKE") || s.invocations.len() <= ext.seen {
                    return None;
                }
                let i = ext.seen;
                s.extensions[index].seen += 1;
                let inv = &s.invocations[i];
                Some(json!({
                    "eventType": "INVOKE",
                    "deadlineMs": inv.deadline_ms,
                    "requestId": inv.request_id,
                    "invokedFunctionArn": FUNCTION_ARN,
                    "tracing": {"type": "X-Amzn-Trace-Id", "value": format!("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0")},
                }))
            })
            .await;
            reply(StatusCode::OK, event)
        }
        ("GET", ["2018-06-01", "runtime", "invocation", "next"]) => {
            {
                let mut s = shared.lock();
                s.runtime_nexts.push(now);
                if s.runtime_seen > 0 {
                    let i = s.runtime_seen - 1;
                    let inv = &mut s.invocations[i];
                    if inv.response.is_none() && inv.error.is_none() {
                        let id = inv.request_id.clone();
                        s.violations.push(format!("runtime asked for the next invocation before answering {id}"));
                    }
                    let inv = &mut s.invocations[i];
                    inv.runtime_next_at.get_or_insert(now);
                    s.maybe_end(i);
                }
            }
            shared.bump();
            let (payload, id, deadline) = long_poll(&shared, |s| {
                if s.invocations.len() <= s.runtime_seen {
                    return None;
                }
                let i = s.runtime_seen;
                s.runtime_seen += 1;
                let inv = &mut s.invocations[i];
                inv.runtime_took_at = Some(Instant::now());
                Some((inv.payload.clone(), inv.request_id.clone(), inv.deadline_ms))
            })
            .await;
            let mut r = reply(StatusCode::OK, payload);
            let h = r.headers_mut();
            h.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
            h.insert("lambda-runtime-deadline-ms", deadline.to_string().parse().unwrap());
            h.insert("lambda-runtime-invoked-function-arn", FUNCTION_ARN.parse().unwrap());
            h.insert("lambda-runtime-trace-id", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0".parse().unwrap());
            return Ok(r);
        }
        ("POST", ["2018-06-01", "runtime", "invocation", id, outcome @ ("response" | "error")]) => {
            let mut s = shared.lock();
            let Some(i) = s.invocations.iter().position(|inv| inv.request_id == *id) else {
                s.violations.push(format!("{outcome} for unknown request id {id}"));
                return Ok(reply(StatusCode::BAD_REQUEST, json!({"errorType": "InvalidRequestID"})));
            };
            let value = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text.clone()));
            let inv = &mut s.invocations[i];
            if inv.response.is_some() || inv.error.is_some() {
                s.violations.push(format!("second {outcome} for {id}"));
            } else {
                let inv = &mut s.invocations[i];
                inv.response_at = Some(now);
                if *outcome == "response" {
                    inv.response = Some(value)
                } else {
                    inv.error = Some(value)
                }
                s.maybe_end(i);
            }
            drop(s);
            shared.bump();
            reply(StatusCode::ACCEPTED, json!({"status": "OK"}))
        }
        ("POST", ["2018-06-01", "runtime", "init", "error"]) | ("POST", ["2020-01-01", "extension", "init" | "exit", "error"]) => {
            shared.lock().errors.push((path.clone(), text));
            shared.bump();
            reply(StatusCode::ACCEPTED, json!({"status": "OK"}))
        }
        _ => {
            shared.lock().violations.push(format!("unknown call {method} {path}"));
            shared.bump();
            reply(StatusCode::NOT_FOUND, json!({"errorType": "NotFound"}))
        }
    };
    Ok(answer)
}
