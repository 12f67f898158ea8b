//! A second destination, made up for the tests: a platform that takes at most three events per
//! request, answers with a ticket number, and has error codes of its own. Nothing of the
//! forwarder knows it: it implements [`Destination`] and is forwarded to by the same consumer,
//! batching, retry/split loop, gate, outcomes and deliveries log as Meta.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::{MemTokens, UA, Wired, config, drain_records, hit, ids, p, reasons, sorted, wire};
use crate::forward::ForwardConfig;
use crate::forward::{Destination, Labels, Receipt, Reject, Request, Verdict};
use crate::record::{DraftHit, Fields};

/// The platform's error: a code of its own.
#[derive(Debug)]
struct EchoError(i64);

impl std::fmt::Display for EchoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "echo error {}", self.0)
    }
}

/// What the platform saw and how it answers.
#[derive(Default)]
struct Echo {
    /// Codes for the next requests (0 = taken); after them, taken.
    script: Mutex<VecDeque<i64>>,
    /// Each request's event ids and credentials.
    requests: Mutex<Vec<(Vec<String>, String)>>,
}

impl Destination for Arc<Echo> {
    type Answer = u32;
    type Error = EchoError;

    fn name(&self) -> &'static str {
        "echo"
    }

    fn max_events(&self) -> usize {
        3
    }

    fn check(&self, hit: &DraftHit, _now: SystemTime) -> Result<(), Reject> {
        match (hit.event(), hit.user_agent()) {
            (Some(_), Some(_)) => Ok(()),
            _ => Err(Reject::new("rejected_incomplete", "echo wants an event name and a user agent")),
        }
    }

    /// `["<name>","<id>"]`.
    fn encode(&self, hit: &DraftHit, _now: SystemTime, out: &mut Vec<u8>) -> Labels {
        let string = |out: &mut Vec<u8>, s: &str| {
            let start = out.len();
            serde_json::to_writer(&mut *out, s).unwrap();
            (start, out.len())
        };
        out.push(b'[');
        let name = string(out, hit.event().unwrap_or_default());
        out.push(b',');
        let id = string(out, hit.event_id());
        out.push(b']');
        Labels { name, id }
    }

    fn event_name<'h>(&self, hit: &'h DraftHit) -> &'h str {
        hit.event().unwrap_or("")
    }

    async fn send(&self, request: Request<'_>) -> Result<u32, EchoError> {
        let events: Vec<[String; 2]> = serde_json::from_slice(&request.events.body.to_vec()).unwrap();
        assert_eq!(events.len(), request.events.count);
        let mut requests = self.requests.lock().unwrap();
        requests.push((events.into_iter().map(|[_, id]| id).collect(), request.head.credentials.expose().to_owned()));
        match self.script.lock().unwrap().pop_front().unwrap_or(0) {
            0 => Ok(requests.len() as u32),
            code => Err(EchoError(code)),
        }
    }

    fn timed_out(&self, _after: Duration) -> EchoError {
        EchoError(1)
    }

    fn classify(&self, result: Result<&u32, &EchoError>) -> Verdict {
        match result {
            Ok(_) => Verdict::Done,
            Err(EchoError(1)) => Verdict::Retry,
            Err(EchoError(2)) => Verdict::InvalidCredentials,
            Err(EchoError(3)) => Verdict::Split { hint: None },
            Err(_) => Verdict::GiveUp { reason: "rejected_by_echo" },
        }
    }

    fn request_label(&self, result: Result<&u32, &EchoError>) -> &'static str {
        if result.is_ok() { "ok" } else { "client_error" }
    }

    fn error_code(&self, error: &EchoError) -> Option<i64> {
        Some(error.0)
    }

    fn receipt(&self, ticket: &u32) -> Receipt {
        Receipt { counted: None, fields: serde_json::json!({ "ticket": ticket }).as_object().cloned().unwrap_or_default() }
    }
}

#[tokio::test]
async fn a_second_destination_gets_batching_retries_and_outcomes_from_the_same_machinery() {
    let echo = Arc::new(Echo::default());
    echo.script.lock().unwrap().extend([1, 0, 0, 9]);
    let tokens = MemTokens::with(&[("5", 3)]);
    // One request at a time, so the script's answers meet the requests in a known order.
    let Wired { capi, forwarder, mut sink_rx, deliveries, .. } = wire(echo.clone(), &tokens, ForwardConfig { max_concurrent_requests: 1, ..config() }, 1000);
    for i in 0..7 {
        capi.submit_draft(hit("5", &format!("e{i}"), Some(UA), None));
    }
    capi.submit_draft(hit("5", "no-ua", None, None));
    capi.submit_draft(hit("6", "no-token", Some(UA), None));
    capi.flush().await;

    let requests = echo.requests.lock().unwrap().clone();
    assert_eq!(requests.iter().map(|(events, _)| events.len()).collect::<Vec<_>>(), [3, 3, 3, 1], "at most three a request; the first retried");
    assert!(requests.iter().all(|(_, token)| token == "token-5-v3"), "the pixel's credentials");
    assert_eq!(requests[0].0, requests[1].0, "a retry resends the same events");
    let records = drain_records(&mut sink_rx);
    let mut failed: Vec<_> = records.iter().map(|r| (r["event_id"].as_str().unwrap(), r["reason"].as_str().unwrap())).collect();
    failed.sort();
    let last = &requests[3].0[0];
    assert_eq!(failed, [(last.as_str(), "rejected_by_echo"), ("no-ua", "rejected_incomplete")]);
    let delivered: Vec<String> = requests[1..3].iter().flat_map(|(events, _)| events.clone()).collect();
    let mut expected = ids(0..7);
    expected.retain(|id| id != last);
    assert_eq!(sorted(delivered), sorted(expected));

    let log = deliveries.for_pixel(&p("5"));
    let sent: Vec<_> = log["deliveries"].as_array().unwrap().iter().filter(|d| d["outcome"] == "sent").collect();
    assert_eq!(sent.len(), 6);
    assert!(sent.iter().all(|d| d["event_name"] == "Purchase" && d["ticket"].is_u64()), "{log}");
    assert_eq!(log["deliveries"][0]["code"], 9);

    // The platform calls the credentials invalid: the same gate stops the pixel's hits.
    echo.script.lock().unwrap().push_back(2);
    capi.submit_draft(hit("5", "x", Some(UA), None));
    capi.flush().await;
    assert_eq!(*tokens.marked.lock().unwrap(), [("5".to_owned(), 3)]);
    assert_eq!(reasons(&drain_records(&mut sink_rx)), ["invalid_token"]);
    capi.submit_draft(hit("5", "y", Some(UA), None));
    capi.flush().await;
    assert_eq!(echo.requests.lock().unwrap().len(), 5, "no request once the credentials are invalid");
    capi.shutdown().await;
    forwarder.join().await;
}
