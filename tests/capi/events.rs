//! `POST /v1/events` end to end: the real binary, a key of one account, a thousand events of
//! mixed validity. The valid ones are recorded (`"source":"api"`, personal data hashed, the
//! pixel's account) and reach the fake Graph API once each; the others are listed by index with
//! the field to fix; events for another account's pixel are refused for those events only.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::metrics::metric;
use crate::helpers::{Site, eventually, hit_records, sha256_hex};

const TOKEN: &str = "EAAtesttokenEvents7Qm2Wx5Rt8Yp1Zk4Vn6Bc9Df3";
/// Account A's pixel, with a token.
const OURS: &str = "7701";
/// Account B's pixel.
const THEIRS: &str = "7702";
/// Registered to no account: the host's.
const UNOWNED: &str = "7703";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0 Safari/537.36";

/// The event at `i` and, if it must be refused, the start of its error.
fn event(i: usize) -> (Value, Option<&'static str>) {
    let good = |pixel: &str| {
        json!({
            "pixel_id": pixel, "event": "ViewContent", "event_id": format!("api-{i}"), "url": "https://links.example/jane",
            "usat_em": format!("Fan{i}@Example.com"), "evat_value": i, "ip": "203.0.113.7", "user_agent": UA
        })
    };
    match i % 10 {
        0 => (json!("not an object"), Some("must be a JSON object")),
        1 => {
            let mut e = good(OURS);
            e.as_object_mut().unwrap().remove("user_agent");
            (e, Some("user_agent:"))
        }
        2 => {
            let mut e = good(OURS);
            e["ip"] = json!("not-an-ip");
            (e, Some("ip:"))
        }
        3 => {
            let mut e = good(OURS);
            e["evat_items"] = json!([{"id": 1}]);
            (e, Some("evat_items:"))
        }
        4 => (good(THEIRS), Some("pixel_id: no such pixel")),
        5 => (good(UNOWNED), Some("pixel_id: no such pixel")),
        6 => {
            let mut e = good(OURS);
            e.as_object_mut().unwrap().remove("event");
            (e, Some("event:"))
        }
        _ => (good(OURS), None),
    }
}

#[tokio::test]
async fn a_thousand_events_of_mixed_validity() {
    let site = Site::new();
    let (fake, server) = {
        let fake = crate::common::fake_graph::FakeGraph::start();
        fake.set_token(OURS, TOKEN);
        let server = site.serve_admin(&fake, &[]);
        (fake, server)
    };
    let mut accounts = Vec::new();
    for name in ["A", "B"] {
        let (status, v) = server.admin_json("POST", "/v1/accounts", Some(json!({"name": name}))).await;
        assert_eq!(status, 201, "{v}");
        accounts.push(v["account_id"].as_str().unwrap().to_owned());
    }
    let (a, b) = (&accounts[0], &accounts[1]);
    let (status, v) = server.admin_json("PUT", &format!("/v1/pixels/{OURS}"), Some(json!({"account_id": a, "destinations": {"meta": {"access_token": TOKEN}}}))).await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = server.admin_json("PUT", &format!("/v1/pixels/{THEIRS}"), Some(json!({"account_id": b}))).await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = server.admin_json("POST", "/v1/keys", Some(json!({"role": "manager", "account_id": a, "pixels": [OURS]}))).await;
    assert_eq!(status, 201, "{v}");
    let key = v["key"].as_str().unwrap().to_owned();

    let (events, expected): (Vec<Value>, Vec<Option<&str>>) = (0..1000).map(event).unzip();
    let (status, text) = server.admin("POST", "/v1/events", Some(&key), Some(Value::Array(events))).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    let want_accepted = expected.iter().filter(|e| e.is_none()).count();
    assert_eq!(answer["accepted"], want_accepted, "{answer}");
    let rejected: BTreeMap<usize, String> =
        answer["rejected"].as_array().unwrap().iter().map(|r| (r["index"].as_u64().unwrap() as usize, r["error"].as_str().unwrap().to_owned())).collect();
    for (i, want) in expected.iter().enumerate() {
        match (want, rejected.get(&i)) {
            (None, None) => {}
            (Some(prefix), Some(error)) => assert!(error.starts_with(prefix), "event {i}: {error:?}, wanted {prefix:?}"),
            (want, got) => panic!("event {i}: wanted {want:?}, got {got:?}"),
        }
    }
    // Another account's pixel and the host's unowned one answer alike: nothing tells them apart.
    assert_eq!(rejected[&4], rejected[&5]);

    // The accepted events, recorded once each as a pixel hit would be, and forwarded once each.
    let records = eventually!(Duration::from_secs(20), format!("{want_accepted} records"), {
        let r = server.records();
        (hit_records(&r).len() >= want_accepted).then_some(r)
    });
    let records = hit_records(&records);
    assert_eq!(records.len(), want_accepted);
    for r in &records {
        let i: usize = r["event_id"].as_str().unwrap().trim_start_matches("api-").parse().unwrap();
        assert!(expected[i].is_none(), "event {i} was refused yet recorded: {r}");
        assert_eq!((&r["source"], &r["pixel_id"], &r["account_id"]), (&json!("api"), &json!(OURS), &json!(a)), "{r}");
        assert_eq!((&r["ip"], &r["user_agent"], &r["attrs"]["value"]), (&json!("203.0.113.7"), &json!(UA), &json!(i.to_string())), "{r}");
        assert_eq!(r["user"]["em"], sha256_hex(&format!("fan{i}@example.com")), "hashed at the edge: {r}");
        assert_eq!(r["flags"], json!([]), "{r}");
    }
    let sent = fake.wait_for_events_async(want_accepted, Duration::from_secs(20)).await;
    let mut ids: Vec<&str> = sent.iter().filter_map(|e| e.event_id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((sent.len(), ids.len()), (want_accepted, want_accepted), "each accepted event forwarded once");
    assert!(sent.iter().all(|e| e.pixel_id == OURS));
    fake.assert_no_violations();

    let metrics = server.metrics().await;
    assert_eq!(metric(&metrics, "pixelgate_input_events_total", &[("source", "api"), ("outcome", "accepted")]), want_accepted as f64);
    assert_eq!(metric(&metrics, "pixelgate_input_events_total", &[("source", "api"), ("outcome", "rejected")]), (1000 - want_accepted) as f64);
    let raw = serde_json::to_string(&records).unwrap();
    assert!(!raw.contains("@Example.com") && !raw.contains("@example.com"), "plaintext e-mail in a record");
    server.finish(&[TOKEN, &key]).await;
}

#[tokio::test]
async fn what_is_refused_as_a_whole() {
    let site = Site::new();
    let fake = crate::common::fake_graph::FakeGraph::start();
    let server = site.serve_admin(&fake, &[]);
    let one = json!({"pixel_id": UNOWNED, "event": "Lead", "user_agent": UA});
    let (status, v) = server.admin_json("POST", "/v1/events", Some(json!({"events": [one]}))).await;
    assert_eq!((status, v["error"].as_str().unwrap_or_default().starts_with("body:")), (400, true), "{v}");
    let (status, v) = server.admin_json("POST", "/v1/events", Some(Value::Array(vec![one.clone(); 1001]))).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("at most 1000"), "{v}");
    let (status, text) = server.admin("POST", "/v1/events", Some("pgk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), Some(json!([one]))).await;
    assert_eq!(status, 401, "{text}");
    // The host's own key may send events for a pixel registered to no account.
    let (status, v) = server.admin_json("POST", "/v1/events", Some(json!([one]))).await;
    assert_eq!((status, &v["accepted"]), (200, &json!(1)), "{v}");
    let records = eventually!(Duration::from_secs(10), "the record", {
        let r = server.records();
        (!r.is_empty()).then_some(r)
    });
    assert_eq!((&records[0]["source"], &records[0]["account_id"]), (&json!("api"), &Value::Null));
    server.finish(&[]).await;
}
