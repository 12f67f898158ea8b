//! The admin API of a running server: tokens set through it apply at once, nothing returns
//! the token, and the deliveries endpoint explains what happened to a pixel's events.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::fake_graph::{Answer, FakeGraph};
use crate::common::metrics::metric;
use crate::helpers::{ADMIN_KEY, Site, eventually, failed_records, q};

const PIXEL: &str = "4242";
const TOKEN: &str = "EAAtesttokenAdminPut7Hq2Kx9Wm4Zr8Tn3Vb6Yc1Pd5";

fn skipped_no_token(metrics: &str) -> f64 {
    metric(metrics, "pixelgate_capi_events_total", &[("outcome", "skipped"), ("reason", "no_token")])
}

#[tokio::test]
async fn a_token_put_through_the_admin_api_applies_at_once_and_is_never_shown() {
    let site = Site::new();
    let fake = FakeGraph::start();
    fake.set_token(PIXEL, TOKEN);
    // The default 30 s negative TTL: forwarding within seconds proves the PUT bypasses it.
    let server = site.serve_admin(&fake, &[]);
    let token_path = format!("/v1/pixels/{PIXEL}/token");

    for key in [None, Some("wrong-key-0123456789"), Some("")] {
        let (status, body) = server.admin("GET", &token_path, key, None).await;
        assert_eq!(status, 401, "{key:?}: {body}");
        assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string(), "{body}");
    }
    let (status, body) = server.admin("PUT", &token_path, Some("wrong-key-0123456789"), Some(json!({"access_token": TOKEN}))).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(site.token_status(PIXEL)["set"], false, "a refused PUT stored nothing");

    let (status, v) = server.admin_json("GET", &token_path, None).await;
    assert_eq!((status, v), (200, json!({"pixel_id": PIXEL, "set": false, "status": null, "updated_at": null})));

    // A hit before the token exists caches "no token".
    server.hit(&q(PIXEL, "purchase", "eid=before")).await;
    eventually!(Duration::from_secs(10), "the hit without a token to be skipped", (skipped_no_token(&server.metrics().await) >= 1.0).then_some(()));

    let (status, body) = server.admin("PUT", &token_path, Some(ADMIN_KEY), Some(json!({"access_token": TOKEN}))).await;
    assert_eq!((status, body.as_str()), (204, ""));
    server.hit(&q(PIXEL, "purchase", "eid=after&cd[value]=3")).await;
    let events = fake.wait_for_events_async(1, Duration::from_secs(5)).await;
    assert_eq!(events.iter().map(|e| e.event_id().unwrap()).collect::<Vec<_>>(), ["after"]);
    fake.assert_no_violations();

    let (status, body) = server.admin("GET", &token_path, Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200);
    assert!(!body.contains(TOKEN) && !body.contains("testtoken"), "the token came back: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 4, "{v}");
    assert_eq!((&v["pixel_id"], &v["set"], &v["status"]), (&json!(PIXEL), &json!(true), &json!("active")), "{v}");
    assert!(v["updated_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
    assert_eq!(site.token_status(PIXEL), v, "the CLI reads what the admin API stored");

    // Deliveries: the successful send, with Meta's answer.
    let deliveries_path = format!("/v1/pixels/{PIXEL}/deliveries");
    let (status, d) = server.admin_json("GET", &deliveries_path, None).await;
    assert_eq!(status, 200);
    let list = d["deliveries"].as_array().unwrap_or_else(|| panic!("{d}"));
    let sent = list.iter().find(|x| x["event_id"] == "after").unwrap_or_else(|| panic!("{d}"));
    let trace = fake.requests()[0].clone();
    assert_eq!((&sent["outcome"], &sent["event_name"], &sent["events_received"]), (&json!("sent"), &json!("Purchase"), &json!(1)), "{d}");
    assert!(sent["fbtrace_id"].as_str().is_some_and(|t| t.starts_with("AFake")), "{d} / {trace:?}");
    assert!(!d.to_string().contains("testtoken"), "{d}");
    assert_eq!(server.admin("GET", &deliveries_path, None, None).await.0, 401);

    // A failed delivery shows with its error: Meta refuses the lone event (code 100).
    fake.fail_next(1, Answer::InvalidParameter);
    server.hit(&q(PIXEL, "purchase", "eid=refused")).await;
    let d = eventually!(Duration::from_secs(10), "the refused event in the deliveries", {
        let (_, d) = server.admin_json("GET", &deliveries_path, None).await;
        d["deliveries"].as_array().unwrap().iter().any(|x| x["event_id"] == "refused").then_some(d)
    });
    let failed = d["deliveries"].as_array().unwrap().iter().find(|x| x["event_id"] == "refused").unwrap().clone();
    assert_eq!((&failed["outcome"], &failed["reason"], &failed["code"]), (&json!("failed"), &json!("invalid_parameter"), &json!(100)), "{d}");
    assert!(failed["message"].as_str().is_some_and(|m| m.contains("Invalid parameter")), "{d}");
    let records = server.wait_for_failed(1, Duration::from_secs(5)).await;
    let f = failed_records(&records);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!((&f[0]["event_id"], &f[0]["reason"]), (&json!("refused"), &json!("invalid_parameter")));
    assert_eq!(
        (&f[0]["pixel_id"], &f[0]["account_id"], &f[0]["code"], &f[0]["attempts"]),
        (&json!(PIXEL), &Value::Null, &json!(100), &json!(1)),
        "an unregistered pixel's: {}",
        f[0]
    );
    assert!(f[0]["at"].as_str().is_some_and(|at| at.ends_with('Z')) && f[0]["detail"].as_str().is_some_and(|d| d.contains("Invalid parameter")), "{}", f[0]);

    // DELETE stops forwarding at once.
    let (status, body) = server.admin("DELETE", &token_path, Some(ADMIN_KEY), None).await;
    assert_eq!((status, body.as_str()), (204, ""));
    assert_eq!(server.admin_json("GET", &token_path, None).await.1["set"], false);
    let requests_before = fake.requests().len();
    let skipped_before = skipped_no_token(&server.metrics().await);
    server.hit(&q(PIXEL, "purchase", "eid=deleted")).await;
    eventually!(Duration::from_secs(10), "the hit after DELETE to be skipped", (skipped_no_token(&server.metrics().await) > skipped_before).then_some(()));
    assert_eq!(fake.requests().len(), requests_before, "no Graph call after DELETE: {:#?}", fake.requests());
    assert_eq!(site.token_status(PIXEL)["set"], false);

    let logs = server.finish(&[TOKEN, "testtokenAdminPut", ADMIN_KEY]).await;
    assert!(!logs.contains(ADMIN_KEY));
}

#[tokio::test]
async fn without_an_admin_key_the_admin_api_does_not_exist() {
    let site = Site::new();
    let fake = FakeGraph::start();
    let server = site.serve(&fake, &[]);
    for (method, path) in [("GET", "/v1/pixels/1/token"), ("PUT", "/v1/pixels/1/token"), ("DELETE", "/v1/pixels/1/token"), ("GET", "/v1/pixels/1/deliveries")] {
        let body = (method == "PUT").then(|| json!({"access_token": TOKEN}));
        let (status, text) = server.admin(method, path, Some(ADMIN_KEY), body).await;
        assert_eq!(status, 404, "{method} {path}: {text}");
        assert!(text.contains("--admin-key"), "{text}");
    }
    assert_eq!(site.token_status("1")["set"], false);
    server.finish(&[TOKEN]).await;
}
