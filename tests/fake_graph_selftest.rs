//! Tests of the fake Graph API itself (`tests/common/fake_graph.rs`): valid requests pass, each
//! of Meta's rules refuses what breaks it, and the scripted answers, delays and hangs behave.

#[path = "common/mod.rs"]
pub mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::fake_graph::{Answer, FakeGraph, Rule, mask};
use common::user_agents::FIREFOX_UA as UA;
use serde_json::{Value, json};

const PIXEL: &str = "1234567890";
const TOKEN: &str = "EAAGtestTOKEN0123456789abcdefSECRET";
const H_EM: &str = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn event(name: &str) -> Value {
    json!({
        "event_name": name,
        "event_time": now() - 5,
        "event_id": format!("id-{name}"),
        "action_source": "website",
        "event_source_url": "https://shop.example/p/1",
        "user_data": {
            "em": [H_EM],
            "ph": H_EM,
            "client_ip_address": "2001:db8::1",
            "client_user_agent": UA,
            "fbp": "fb.1.1596403881668.1116446470",
            "fbc": "fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890",
        },
        "custom_data": {"value": 12.5, "currency": "EUR"},
    })
}

fn body(events: Vec<Value>) -> Value {
    json!({"data": events, "access_token": TOKEN})
}

fn started() -> FakeGraph {
    let g = FakeGraph::start();
    g.set_token(PIXEL, TOKEN);
    g
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// POSTs `body` to `{url}{path}`; (status, parsed answer).
fn post(g: &FakeGraph, path: &str, body: &Value) -> (u16, Value) {
    let url = format!("{}{path}", g.url());
    let body = body.to_string();
    rt().block_on(async move {
        let r = reqwest::Client::new().post(url).header("content-type", "application/json").body(body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, serde_json::from_slice(&r.bytes().await.unwrap()).unwrap())
    })
}

fn events_path() -> String {
    format!("/v26.0/{PIXEL}/events")
}

/// A case of [`each_rule_refuses_what_breaks_it`]: what it breaks, how, and the error code and
/// rule it must be refused with.
type Breakage = (&'static str, Box<dyn Fn(&mut Value)>, u64, Rule);

/// Asserts a Graph error with `code`, that the fake recorded `rule`, and that no event counted.
fn assert_refused(g: &FakeGraph, (status, answer): (u16, Value), code: u64, rule: Rule) {
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], code, "{answer}");
    assert_eq!(answer["error"]["type"], "OAuthException", "{answer}");
    assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
    assert!(answer["error"]["fbtrace_id"].is_string(), "{answer}");
    let last = g.requests().pop().unwrap();
    assert_eq!(last.rule, Some(rule), "{last:?}");
    assert_eq!(g.count(), 0, "refused requests must not count events");
    assert_eq!(g.violations().len(), g.requests().len());
}

#[test]
fn a_valid_request_is_accepted_and_recorded() {
    let g = started();
    let mut b = body(vec![event("Purchase"), event("PageView")]);
    b["test_event_code"] = json!("TEST123");
    let (status, answer) = post(&g, &events_path(), &b);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["events_received"], 2);
    assert_eq!(answer["messages"], json!([]));
    assert!(answer["fbtrace_id"].as_str().is_some_and(|t| !t.is_empty()));
    g.assert_no_violations();

    let events = g.wait_for_events(2, Duration::from_secs(1));
    assert_eq!(g.count(), 2);
    assert_eq!(events.iter().map(|e| e.name()).collect::<Vec<_>>(), ["Purchase", "PageView"]);
    assert!(events.iter().all(|e| e.pixel_id == PIXEL && e.version == "v26.0" && e.test_event_code.as_deref() == Some("TEST123")));
    assert_eq!(events[0].event_id(), Some("id-Purchase"));

    let reqs = g.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!((r.pixel_id.as_str(), r.version.as_str(), r.status), (PIXEL, "v26.0", 200));
    assert!(r.token_in_body && r.token_ok && !r.token_in_query);
    assert!(r.received_at <= SystemTime::now());
    assert_eq!(r.body.as_ref().unwrap()["data"].as_array().unwrap().len(), 2);
}

#[test]
fn the_token_never_shows_in_what_the_fake_keeps_or_prints() {
    let g = started();
    post(&g, &format!("{}?access_token={TOKEN}", events_path()), &body(vec![event("Lead")]));
    post(&g, &events_path(), &body(vec![event("Lead")]));
    let printed = format!("{:?} {:?} {:?} {:?}", g.requests(), g.events(), g.violations(), g);
    assert!(!printed.contains(TOKEN) && !printed.contains("SECRET"), "{printed}");
    assert_eq!(g.requests()[1].body.as_ref().unwrap()["access_token"], "EAA… (35 chars)");
    assert_eq!(mask("short"), "*** (5 chars)");
}

#[test]
fn each_rule_refuses_what_breaks_it() {
    let path = events_path();
    let stale = now() - 7 * 24 * 3600 - 60;
    let cases: Vec<Breakage> = vec![
        ("hash not hex", Box::new(|b: &mut Value| b["data"][0]["user_data"]["em"] = json!(["john@example.com"])), 100, Rule::Hash),
        ("uppercase hex", Box::new(|b: &mut Value| b["data"][0]["user_data"]["ph"] = json!(H_EM.to_uppercase())), 100, Rule::Hash),
        ("63 hex chars", Box::new(|b: &mut Value| b["data"][0]["user_data"]["country"] = json!(&H_EM[1..])), 100, Rule::Hash),
        ("external_id unhashed", Box::new(|b: &mut Value| b["data"][0]["user_data"]["external_id"] = json!("user-1")), 100, Rule::Hash),
        ("hash as a number", Box::new(|b: &mut Value| b["data"][0]["user_data"]["zp"] = json!(94025)), 100, Rule::Hash),
        ("missing user agent", Box::new(|b: &mut Value| drop(b["data"][0]["user_data"].as_object_mut().unwrap().remove("client_user_agent"))), 100, Rule::UserAgent),
        ("missing event_source_url", Box::new(|b: &mut Value| drop(b["data"][0].as_object_mut().unwrap().remove("event_source_url"))), 100, Rule::EventSourceUrl),
        ("event too old", Box::new(move |b: &mut Value| b["data"][0]["event_time"] = json!(stale)), 100, Rule::EventTooOld),
        ("event in the future", Box::new(|b: &mut Value| b["data"][0]["event_time"] = json!(now() + 3600)), 100, Rule::EventInFuture),
        ("event_time in ms", Box::new(|b: &mut Value| b["data"][0]["event_time"] = json!(now() * 1000)), 100, Rule::EventInFuture),
        ("event_time as string", Box::new(|b: &mut Value| b["data"][0]["event_time"] = json!(now().to_string())), 100, Rule::EventTime),
        ("event_time fractional", Box::new(|b: &mut Value| b["data"][0]["event_time"] = json!(now() as f64 + 0.5)), 100, Rule::EventTime),
        ("no event_name", Box::new(|b: &mut Value| drop(b["data"][0].as_object_mut().unwrap().remove("event_name"))), 100, Rule::EventName),
        ("bad action_source", Box::new(|b: &mut Value| b["data"][0]["action_source"] = json!("web")), 100, Rule::ActionSource),
        ("no user_data", Box::new(|b: &mut Value| drop(b["data"][0].as_object_mut().unwrap().remove("user_data"))), 100, Rule::UserData),
        ("bad ip", Box::new(|b: &mut Value| b["data"][0]["user_data"]["client_ip_address"] = json!("1.2.3.4, 5.6.7.8")), 100, Rule::ClientIp),
        ("hashed fbp", Box::new(|b: &mut Value| b["data"][0]["user_data"]["fbp"] = json!(H_EM)), 100, Rule::Cookie),
        ("value as string", Box::new(|b: &mut Value| b["data"][0]["custom_data"]["value"] = json!("12.50")), 100, Rule::CustomData),
        ("test_event_code number", Box::new(|b: &mut Value| b["test_event_code"] = json!(123)), 100, Rule::TestEventCode),
        ("empty data", Box::new(|b: &mut Value| b["data"] = json!([])), 100, Rule::Data),
        ("data as a string", Box::new(|b: &mut Value| b["data"] = json!("[]")), 100, Rule::Data),
        ("1001 events", Box::new(|b: &mut Value| b["data"] = Value::Array(vec![event("PageView"); 1001])), 100, Rule::Data),
        ("one bad event rejects the batch", Box::new(|b: &mut Value| b["data"][1]["user_data"]["fn"] = json!("Mary")), 100, Rule::Hash),
        ("no token", Box::new(|b: &mut Value| drop(b.as_object_mut().unwrap().remove("access_token"))), 104, Rule::NoToken),
        ("wrong token", Box::new(|b: &mut Value| b["access_token"] = json!("EAAGwrong")), 190, Rule::WrongToken),
    ];
    for (what, change, code, rule) in cases {
        let g = started();
        let mut b = body(vec![event("Purchase"), event("Lead")]);
        change(&mut b);
        let answer = post(&g, &path, &b);
        eprintln!("{what}: {}", answer.1);
        assert_refused(&g, answer, code, rule);
    }
}

#[test]
fn one_thousand_events_are_fine_and_non_website_events_need_no_user_agent() {
    let g = started();
    let (status, answer) = post(&g, &events_path(), &body(vec![event("PageView"); 1000]));
    assert_eq!((status, answer["events_received"].as_u64()), (200, Some(1000)), "{answer}");
    let mut e = event("Lead");
    e["action_source"] = json!("system_generated");
    e["user_data"] = json!({"em": H_EM});
    e.as_object_mut().unwrap().remove("event_source_url");
    let (status, answer) = post(&g, &events_path(), &body(vec![e]));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(g.count(), 1001);
    g.assert_no_violations();
}

#[test]
fn a_token_in_the_url_is_refused_and_recorded_as_a_violation() {
    let g = started();
    let answer = post(&g, &format!("{}?access_token={TOKEN}", events_path()), &body(vec![event("Lead")]));
    assert_refused(&g, answer, 100, Rule::TokenInQuery);
    let r = &g.requests()[0];
    assert!(r.token_in_query);
    assert_eq!(g.violations().len(), 1);
    assert!(g.violations()[0].contains("TokenInQuery"), "{:?}", g.violations());
}

#[test]
fn tokens_are_per_pixel() {
    let g = started();
    g.set_token("999", "EAAGother");
    // A token that is valid, but for another pixel: Meta's "object does not exist" answer.
    let answer = post(&g, "/v26.0/999/events", &body(vec![event("Lead")]));
    assert_refused(&g, answer, 100, Rule::PixelNotAllowed);
    assert_eq!(g.requests()[0].pixel_id, "999");
    // Rotation: a second token for the same pixel works, and so does the first.
    g.add_token(PIXEL, "EAAGsecond");
    let mut b = body(vec![event("Lead")]);
    b["access_token"] = json!("EAAGsecond");
    assert_eq!(post(&g, &events_path(), &b).0, 200);
    assert_eq!(post(&g, &events_path(), &body(vec![event("Lead")])).0, 200);
}

#[test]
fn an_unknown_path_is_refused() {
    let g = started();
    for path in ["/v26.0/abc/events", "/26.0/1/events", "/v26.0/1/event", "/v26.0/1/events/x"] {
        let answer = post(&g, path, &body(vec![event("Lead")]));
        assert_eq!(answer.0, 400, "{path}");
        assert_eq!(g.requests().pop().unwrap().rule, Some(Rule::Path), "{path}");
    }
    let answer = post(&g, &events_path(), &json!([1, 2]));
    assert_eq!((answer.0, g.requests().pop().unwrap().rule), (400, Some(Rule::Json)));
}

#[test]
fn scripted_answers_come_back_in_order_then_normal_processing_resumes() {
    let g = started();
    g.script(vec![Answer::InvalidParameter, Answer::InvalidToken, Answer::RateLimited, Answer::ServerError]);
    g.fail_next(1, Answer::RateLimited);
    let b = body(vec![event("Lead")]);
    let got: Vec<(u16, Value)> = (0..6).map(|_| post(&g, &events_path(), &b)).collect();
    let summary: Vec<(u16, Value)> = got.iter().map(|(s, a)| (*s, a["error"]["code"].clone())).collect();
    assert_eq!(summary, vec![(400, json!(100)), (400, json!(190)), (400, json!(613)), (500, json!(1)), (400, json!(613)), (200, Value::Null)]);
    assert_eq!(got[2].1["error"]["is_transient"], true);
    assert_eq!(got[2].1["error"]["error_subcode"], 1_487_742);
    assert_eq!(got[5].1["events_received"], 1);
    assert_eq!(g.count(), 1, "only the last request counted");
    assert_eq!(g.requests().iter().map(|r| r.status).collect::<Vec<_>>(), [400, 400, 400, 500, 400, 200]);
    assert_eq!(g.requests()[1].error_code, Some(190));
    g.assert_no_violations(); // scripted errors are not the client's fault
}

#[test]
fn a_scripted_accept_still_validates() {
    let g = started();
    g.script(vec![Answer::Accept]);
    let mut b = body(vec![event("Lead")]);
    b["data"][0]["user_data"]["em"] = json!("plain@example.com");
    assert_refused(&g, post(&g, &events_path(), &b), 100, Rule::Hash);
}

#[test]
fn delays_apply_per_answer_and_to_every_request() {
    let g = started();
    let b = body(vec![event("Lead")]);
    g.script(vec![Answer::delay(Duration::from_millis(600), Answer::ServerError)]);
    let t = Instant::now();
    assert_eq!(post(&g, &events_path(), &b).0, 500);
    assert!(t.elapsed() >= Duration::from_millis(600), "{:?}", t.elapsed());

    let t = Instant::now();
    assert_eq!(post(&g, &events_path(), &b).0, 200);
    assert!(t.elapsed() < Duration::from_millis(500), "no delay once the script ran out: {:?}", t.elapsed());

    g.set_delay(Duration::from_millis(250));
    let t = Instant::now();
    assert_eq!(post(&g, &events_path(), &b).0, 200);
    assert!(t.elapsed() >= Duration::from_millis(250), "{:?}", t.elapsed());
}

#[test]
fn a_hang_never_answers_but_the_request_is_recorded() {
    let g = started();
    g.script(vec![Answer::Hang]);
    let url = format!("{}{}", g.url(), events_path());
    let b = body(vec![event("Lead")]).to_string();
    let result = rt().block_on(async move {
        let client = reqwest::Client::builder().timeout(Duration::from_millis(400)).build().unwrap();
        client.post(url).body(b).send().await
    });
    let err = result.expect_err("a hung request times out");
    assert!(err.is_timeout(), "{err}");
    let reqs = g.wait_for_requests(1, Duration::from_secs(1));
    assert_eq!(reqs[0].status, 0);
    // The next request is answered normally, on another connection.
    assert_eq!(post(&g, &events_path(), &body(vec![event("Lead")])).0, 200);
}

#[test]
fn waiting_for_events_from_another_thread_and_from_async_code() {
    let g = std::sync::Arc::new(started());
    let sender = {
        let g = g.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            post(&g, &events_path(), &body(vec![event("A"), event("B")]));
        })
    };
    let events = g.wait_for_events(2, Duration::from_secs(5));
    assert_eq!(events.len(), 2);
    sender.join().unwrap();
    let events = rt().block_on(g.wait_for_events_async(2, Duration::from_secs(1)));
    assert_eq!(events.len(), 2);
}

#[test]
#[should_panic(expected = "wanted 1")]
fn waiting_too_long_panics_with_what_arrived() {
    let g = started();
    g.wait_for_events(1, Duration::from_millis(50));
}
