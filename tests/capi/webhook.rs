//! Credentials-invalidated notices to the account's webhook, the real binary against a local
//! receiver on a real socket: the receiver checks each POST's signature itself (HMAC-SHA256 of the
//! body under the secret), answers 500 to the first, and gets the notice again; one POST per state
//! change however many events fail; the last outcome on the account; the secret never shown, never
//! stored in plaintext, never logged. Targets that are not public are refused when the URL is set
//! and, for a URL stored while they were allowed, again when the name resolves at delivery.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::fake_graph::{Answer, FakeGraph};
use crate::common::metrics::metric;
use crate::common::webhook_receiver::Receiver;
use crate::helpers::{Site, eventually, failed_records, q};

const PIXEL: &str = "9000310";
const PIXEL_LITERAL: &str = "9000311";
const TOKEN: &str = "EAAtesttokenWebhookFirst4Hq8Zk2Wn5Rt7Yc3Vb";
const TOKEN_2: &str = "EAAtesttokenWebhookSecond9Pd3Lm6Xs2Qa8Ge5";
const SECRET: &str = "whsec-test-2f9c1d7e4b8a6035";

#[tokio::test]
async fn one_signed_post_per_state_change_retried_after_a_500() {
    let receiver = Receiver::start();
    receiver.answer_next(&[500]);
    let site = Site::new();
    let fake = FakeGraph::start();
    fake.set_token(PIXEL, TOKEN);
    fake.set_token(PIXEL, TOKEN_2);
    fake.fail_next(1000, Answer::delay(Duration::from_millis(200), Answer::InvalidToken));
    let server = site.serve_admin(&fake, &["--allow-private-webhooks", "--capi-batch-events", "5"]);

    let (status, a) = server.admin_json("POST", "/v1/accounts", Some(json!({"name": "Hooked", "account_id": "acc_hooked"}))).await;
    assert_eq!(status, 201, "{a}");
    let (status, a) = server.admin_json("PATCH", "/v1/accounts/acc_hooked", Some(json!({"webhook_url": receiver.url("http", "127.0.0.1"), "webhook_secret": SECRET}))).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!((&a["webhook_url"], &a["webhook_secret"], &a["webhook_last_delivery"]), (&receiver.url("http", "127.0.0.1").into(), &json!({"set": true}), &Value::Null), "{a}");
    let (status, p) = server.admin_json("PUT", &format!("/v1/pixels/{PIXEL}"), Some(json!({"account_id": "acc_hooked", "destinations": {"meta": {"access_token": TOKEN}}}))).await;
    assert_eq!(status, 201, "{p}");

    for i in 0..20 {
        server.hit(&q(PIXEL, "Purchase", &format!("eid=hook-{i}"))).await;
    }
    // The first POST is answered 500; the second (0.5 s later) 200.
    eventually!(Duration::from_secs(15), "the notice to be delivered", (receiver.got().len() >= 2).then_some(()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = receiver.got();
    assert_eq!(got.len(), 2, "one notice, sent twice (500, then 200): {got:#?}");
    assert_eq!(got[0].delivery, got[1].delivery, "a retry keeps the delivery id");
    assert_eq!(got[0].body, got[1].body);
    for r in &got {
        r.verify(SECRET);
        assert_eq!(r.event, "pixelgate.destination.invalidated");
    }
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(
        (&body["type"], &body["account_id"], &body["pixel_id"], &body["destination"], &body["code"]),
        (&"pixelgate.destination.invalidated".into(), &"acc_hooked".into(), &PIXEL.into(), &"meta".into(), &190.into()),
        "{body}"
    );
    assert_eq!(body["delivery_id"], got[0].delivery.as_str());
    assert!(body["at"].as_str().is_some_and(|at| at.ends_with('Z')), "{body}");
    let text = String::from_utf8_lossy(&got[0].body);
    assert!(!text.contains(TOKEN) && !text.contains(SECRET), "a secret in the notice: {text}");

    let m = server.metrics().await;
    assert_eq!(metric(&m, "pixelgate_notifications_total", &[("channel", "webhook"), ("outcome", "sent")]), 1.0, "{m}");
    let failed = metric(&m, "pixelgate_capi_events_total", &[("outcome", "failed"), ("reason", "invalid_token")]);
    assert!(failed > 5.0, "several requests were refused ({failed} events), one notice went out");
    // Each refused event is a delivery record in the pixel's account.
    let records = server.wait_for_failed(6, Duration::from_secs(10)).await;
    for r in failed_records(&records) {
        assert_eq!((&r["pixel_id"], &r["account_id"], &r["reason"], &r["code"]), (&json!(PIXEL), &json!("acc_hooked"), &json!("invalid_token"), &json!(190)), "{r}");
    }
    let (_, a) = server.admin_json("GET", "/v1/accounts/acc_hooked", None).await;
    let last = &a["webhook_last_delivery"];
    assert_eq!((&last["outcome"], &last["attempts"], &last["status"], &last["pixel_id"]), (&"delivered".into(), &2.into(), &200.into(), &PIXEL.into()), "{a}");
    assert_eq!(last["delivery_id"], got[0].delivery.as_str());
    assert!(!a.to_string().contains(SECRET), "the secret is write-only: {a}");

    // A new token is a new state; its invalidation is one more notice.
    let (status, p) = server.admin_json("PATCH", &format!("/v1/pixels/{PIXEL}"), Some(json!({"destinations": {"meta": {"access_token": TOKEN_2}}}))).await;
    assert_eq!(status, 200, "{p}");
    for i in 0..10 {
        server.hit(&q(PIXEL, "Purchase", &format!("eid=hook-again-{i}"))).await;
    }
    eventually!(Duration::from_secs(15), "the second notice", (receiver.got().len() >= 3).then_some(()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = receiver.got();
    assert_eq!(got.len(), 3, "{got:#?}");
    got[2].verify(SECRET);
    assert_ne!(got[2].delivery, got[0].delivery);
    server.finish(&[TOKEN, TOKEN_2, SECRET]).await;
}

#[tokio::test]
async fn targets_that_are_not_public_are_refused_when_set_and_at_delivery() {
    let receiver = Receiver::start();
    let site = Site::new();
    let fake = FakeGraph::start();
    fake.set_token(PIXEL, TOKEN);
    fake.set_token(PIXEL_LITERAL, TOKEN);
    fake.fail_next(1000, Answer::InvalidToken);
    let server = site.serve_admin(&fake, &[]);
    let (status, _) = server.admin_json("POST", "/v1/accounts", Some(json!({"name": "Fenced", "account_id": "acc_fenced"}))).await;
    assert_eq!(status, 201);
    let patch = |url: &str| json!({"webhook_url": url, "webhook_secret": SECRET});
    for (url, says) in [
        (receiver.url("http", "127.0.0.1"), "must be https"),
        ("https://127.0.0.1/hook".to_owned(), "127.0.0.1 is not a public address"),
        ("https://169.254.169.254/latest/meta-data/".to_owned(), "169.254.169.254 is not a public address"),
        ("https://10.1.2.3/hook".to_owned(), "10.1.2.3 is not a public address"),
        ("https://[fd00::1]/hook".to_owned(), "fd00::1 is not a public address"),
        ("https://localhost/hook".to_owned(), "loopback name"),
        ("not a url".to_owned(), "not an absolute URL"),
    ] {
        let (status, e) = server.admin_json("PATCH", "/v1/accounts/acc_fenced", Some(patch(&url))).await;
        assert_eq!(status, 400, "{url}: {e}");
        let error = e["error"].as_str().unwrap();
        assert!(error.starts_with("webhook_url: ") && error.contains(says), "{url}: {error}");
    }
    let (status, e) = server.admin_json("PATCH", "/v1/accounts/acc_fenced", Some(json!({"webhook_url": "https://hooks.example.com/pixelgate"}))).await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().starts_with("webhook_secret: "), "{e}");
    let (_, a) = server.admin_json("GET", "/v1/accounts/acc_fenced", None).await;
    assert_eq!((&a["webhook_url"], &a["webhook_secret"]), (&Value::Null, &json!({"set": false})), "nothing half-written: {a}");
    server.finish(&[SECRET]).await;

    // Stored while private targets were allowed, under a name that resolves to loopback.
    let url = receiver.url("https", "localhost");
    let server = site.serve_admin(&fake, &["--allow-private-webhooks"]);
    let (status, a) = server.admin_json("PATCH", "/v1/accounts/acc_fenced", Some(patch(&url))).await;
    assert_eq!(status, 200, "{a}");
    let (status, p) = server.admin_json("PUT", &format!("/v1/pixels/{PIXEL}"), Some(json!({"account_id": "acc_fenced", "destinations": {"meta": {"access_token": TOKEN}}}))).await;
    assert_eq!(status, 201, "{p}");
    let (status, _) = server.admin_json("POST", "/v1/accounts", Some(json!({"name": "Literal", "account_id": "acc_literal"}))).await;
    assert_eq!(status, 201);
    let (status, a) = server.admin_json("PATCH", "/v1/accounts/acc_literal", Some(patch(&receiver.url("https", "127.0.0.1")))).await;
    assert_eq!(status, 200, "{a}");
    let (status, p) =
        server.admin_json("PUT", &format!("/v1/pixels/{PIXEL_LITERAL}"), Some(json!({"account_id": "acc_literal", "destinations": {"meta": {"access_token": TOKEN}}}))).await;
    assert_eq!(status, 201, "{p}");
    server.finish(&[TOKEN, SECRET]).await;

    // A server without the flag resolves the name at delivery and does not connect; an address
    // stored as it is, is refused before any connection.
    let server = site.serve_admin(&fake, &[]);
    server.hit(&q(PIXEL, "Purchase", "eid=fenced-hook")).await;
    server.hit(&q(PIXEL_LITERAL, "Purchase", "eid=fenced-literal")).await;
    let m = eventually!(Duration::from_secs(15), "the notices to be refused", {
        let m = server.metrics().await;
        (metric(&m, "pixelgate_notifications_total", &[("channel", "webhook"), ("outcome", "refused")]) == 2.0).then_some(m)
    });
    assert_eq!(metric(&m, "pixelgate_notifications_total", &[("channel", "webhook"), ("outcome", "sent")]), 0.0);
    assert!(receiver.got().is_empty(), "no request reached the receiver");
    let (_, a) = server.admin_json("GET", "/v1/accounts/acc_fenced", None).await;
    let last = &a["webhook_last_delivery"];
    assert_eq!((&last["outcome"], &last["attempts"], &last["status"]), (&"refused".into(), &1.into(), &Value::Null), "{a}");
    let error = last["error"].as_str().unwrap();
    assert!(error.contains("localhost resolves to an address that is not public") && !error.contains("127.0.0.1"), "{a}");
    let (_, a) = server.admin_json("GET", "/v1/accounts/acc_literal", None).await;
    let last = &a["webhook_last_delivery"];
    assert_eq!((&last["outcome"], &last["attempts"]), (&"refused".into(), &1.into()), "{a}");
    assert!(last["error"].as_str().unwrap().contains("127.0.0.1 is not a public address"), "{a}");
    let logs = server.finish(&[TOKEN, SECRET]).await;
    assert!(logs.contains("could not be delivered to the account's webhook"), "{logs}");
}

/// An answer that will not change by asking again is final: a redirect is not followed, a `400`
/// is not retried; each is one POST, kept as `failed` with its status.
#[tokio::test]
async fn a_redirect_or_a_client_error_is_final() {
    let receiver = Receiver::start();
    receiver.answer_next(&[302, 400]);
    let site = Site::new();
    let fake = FakeGraph::start();
    fake.set_token(PIXEL, TOKEN);
    fake.set_token(PIXEL, TOKEN_2);
    fake.fail_next(1000, Answer::InvalidToken);
    let server = site.serve_admin(&fake, &["--allow-private-webhooks"]);
    let (status, _) = server.admin_json("POST", "/v1/accounts", Some(json!({"name": "Final", "account_id": "acc_final"}))).await;
    assert_eq!(status, 201);
    let (status, a) = server.admin_json("PATCH", "/v1/accounts/acc_final", Some(json!({"webhook_url": receiver.url("http", "127.0.0.1"), "webhook_secret": SECRET}))).await;
    assert_eq!(status, 200, "{a}");
    for (token, answered, says) in [(TOKEN, 302, "redirects are not followed"), (TOKEN_2, 400, "answered 400 Bad Request")] {
        let (status, p) =
            server.admin_json("PUT", &format!("/v1/pixels/{PIXEL}"), Some(json!({"account_id": "acc_final", "destinations": {"meta": {"access_token": token}}}))).await;
        assert!(status == 200 || status == 201, "{p}");
        let before = receiver.got().len();
        server.hit(&q(PIXEL, "Purchase", &format!("eid=final-{answered}"))).await;
        let last = eventually!(Duration::from_secs(15), "the outcome", {
            let (_, a) = server.admin_json("GET", "/v1/accounts/acc_final", None).await;
            (a["webhook_last_delivery"]["status"] == answered).then(|| a["webhook_last_delivery"].clone())
        });
        assert_eq!((&last["outcome"], &last["attempts"]), (&"failed".into(), &1.into()), "{last}");
        assert!(last["error"].as_str().unwrap().contains(says), "{last}");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(receiver.got().len(), before + 1, "not retried");
    }
    let m = server.metrics().await;
    assert_eq!(metric(&m, "pixelgate_notifications_total", &[("channel", "webhook"), ("outcome", "failed")]), 2.0, "{m}");
    server.finish(&[TOKEN, TOKEN_2, SECRET]).await;
}
