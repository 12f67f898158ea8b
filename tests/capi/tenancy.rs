//! A registered pixel's settings applied by the forwarder, the real binary against the
//! fake Graph API: test mode (the pixel's `test_event_code` on every event that carries none of
//! its own, in requests of their own), forwarding off, and allowed domains, each refused hit
//! counted as skipped with its reason. The settings also apply after a restart, read from the
//! store rather than from what the process wrote.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::fake_graph::FakeGraph;
use crate::common::metrics::metric;
use crate::helpers::{Site, eventually, hit_records, q};

const TOKEN: &str = "EAAtesttokenTenancy5Hq2Kx9Wm4Zr8Tn3Vb6Yc1Pd5";
/// Test mode on.
const TESTING: &str = "8801";
/// Forwarding off.
const QUIET: &str = "8802";
/// Allowed domains that the `q` helper's page (`shop.example`) is not on.
const FENCED: &str = "8803";

fn skipped(metrics: &str, reason: &str) -> f64 {
    metric(metrics, "pixelgate_capi_events_total", &[("outcome", "skipped"), ("reason", reason)])
}

/// Event ids the fake Graph API received, with the request's test code.
fn received(fake: &FakeGraph) -> Vec<(String, Option<String>)> {
    let mut seen: Vec<(String, Option<String>)> = fake.events().iter().map(|e| (e.event_id().unwrap().to_owned(), e.test_event_code.clone())).collect();
    seen.sort();
    seen
}

#[tokio::test]
async fn test_mode_forwarding_off_and_allowed_domains_apply_to_what_is_forwarded() {
    let site = Site::new();
    let fake = FakeGraph::start();
    for pixel in [TESTING, QUIET, FENCED] {
        fake.set_token(pixel, TOKEN);
    }
    let server = site.serve_admin(&fake, &[]);
    let (status, account) = server.admin_json("POST", "/v1/accounts", Some(json!({"name": "Shop"}))).await;
    assert_eq!(status, 201, "{account}");
    let account = account["account_id"].as_str().unwrap().to_owned();
    let meta = json!({"meta": {"access_token": TOKEN}});
    for (pixel, settings) in [(TESTING, json!({"test_event_code": "TEST55"})), (QUIET, json!({"forwarding": "off"})), (FENCED, json!({"allowed_domains": ["other.test"]}))] {
        let mut body = json!({"account_id": account, "destinations": meta});
        body.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
        let (status, v) = server.admin_json("PUT", &format!("/v1/pixels/{pixel}"), Some(body)).await;
        assert_eq!(status, 201, "{pixel}: {v}");
    }

    server.hit(&q(TESTING, "Lead", "eid=t-pixel-code")).await;
    server.hit(&q(TESTING, "Lead", "eid=t-own-code&test_event_code=MINE")).await;
    server.hit(&q(QUIET, "Lead", "eid=quiet")).await;
    server.hit(&q(FENCED, "Lead", "eid=fenced-out")).await;
    server.hit(&format!("/tr?id={FENCED}&ev=Lead&eid=fenced-in&dl=https%3A%2F%2Fwww.other.test%2Fp")).await;

    fake.wait_for_events_async(3, Duration::from_secs(10)).await;
    let metrics = eventually!(Duration::from_secs(10), "the refused hits to be counted", {
        let m = server.metrics().await;
        (skipped(&m, "forwarding_off") >= 1.0 && skipped(&m, "domain_not_allowed") >= 1.0).then_some(m)
    });
    assert_eq!((skipped(&metrics, "forwarding_off"), skipped(&metrics, "domain_not_allowed")), (1.0, 1.0));
    // A flush interval more: nothing else arrives.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        received(&fake),
        [("fenced-in".into(), None), ("t-own-code".into(), Some("MINE".into())), ("t-pixel-code".into(), Some("TEST55".into()))],
        "test mode applies the pixel's code only to events without one; forwarding off and a page outside the allowed domains reach nothing"
    );
    let requests = fake.requests();
    let codes: Vec<Option<&str>> = requests.iter().filter(|r| r.pixel_id == TESTING).map(|r| r.body.as_ref().and_then(|b| b["test_event_code"].as_str())).collect();
    assert_eq!(codes.len(), 2, "different test codes never share a request: {codes:?}");
    fake.assert_no_violations();

    let records = eventually!(Duration::from_secs(10), "the five hits' records", {
        let r = server.records();
        (hit_records(&r).len() >= 5).then_some(r)
    });
    for r in hit_records(&records) {
        assert_eq!(r["account_id"], json!(account), "{r}");
        let id = r["event_id"].as_str().unwrap();
        let expected = if id == "fenced-out" { json!(["domain_not_allowed"]) } else { json!([]) };
        assert_eq!(r["flags"], expected, "{r}");
        if id == "t-pixel-code" {
            assert_eq!(r["test_event_code"], Value::Null, "the record keeps what the hit sent: {r}");
        }
    }

    // Forwarding on again: the next hit goes.
    let (status, v) = server.admin_json("PATCH", &format!("/v1/pixels/{QUIET}"), Some(json!({"forwarding": "on"}))).await;
    assert_eq!(status, 200, "{v}");
    server.hit(&q(QUIET, "Lead", "eid=quiet-on")).await;
    let events = fake.wait_for_events_async(4, Duration::from_secs(10)).await;
    assert!(events.iter().any(|e| e.event_id() == Some("quiet-on")));
    server.finish(&[TOKEN]).await;

    // A new process reads the settings from the store.
    let server = site.serve_admin(&fake, &[]);
    server.hit(&q(TESTING, "Lead", "eid=after-restart")).await;
    server.hit(&q(FENCED, "Lead", "eid=fenced-after-restart")).await;
    let events = fake.wait_for_events_async(5, Duration::from_secs(10)).await;
    let after = events.iter().find(|e| e.event_id() == Some("after-restart")).expect("forwarded after the restart");
    assert_eq!(after.test_event_code.as_deref(), Some("TEST55"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(fake.events().len(), 5, "the fenced hit stays out after a restart too");
    let fenced = eventually!(Duration::from_secs(10), "the fenced hit's record", server.records().into_iter().find(|r| r["event_id"] == "fenced-after-restart"));
    assert_eq!((&fenced["account_id"], &fenced["flags"]), (&json!(account), &json!(["domain_not_allowed"])));
    server.finish(&[TOKEN]).await;
}
