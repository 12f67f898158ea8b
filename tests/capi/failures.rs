//! When Meta says no: an invalid token stops forwarding until a new one is set, transient
//! errors are retried without duplicates, and what is given up lands in the raw records.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::json;

use crate::common::fake_graph::{Answer, FakeGraph};
use crate::common::metrics::metric;
use crate::helpers::{Site, eventually, failed_records, hit_records, q};

#[tokio::test]
async fn an_invalid_token_stops_forwarding_until_a_new_one_is_set() {
    const PIXEL: &str = "9000190";
    const SENTINEL: &str = "9000191";
    const OLD: &str = "EAAtesttokenRevokedOld4Fj8Lk2Qw6Er9Ty3Ui7";
    const NEW: &str = "EAAtesttokenFreshNew5Gh1Mn8Bv2Cx6Za4Sd9";
    const SENTINEL_TOKEN: &str = "EAAtesttokenSentinel3Jk7Hg1Fd5Sa9Pl2Ok6";
    let site = Site::new();
    site.set_token(PIXEL, OLD);
    site.set_token(SENTINEL, SENTINEL_TOKEN);
    let fake = FakeGraph::start();
    fake.set_token(PIXEL, OLD);
    fake.set_token(SENTINEL, SENTINEL_TOKEN);
    fake.fail_next(1, Answer::InvalidToken);
    let server = site.serve(&fake, &["--token-negative-ttl", "400ms"]);

    for i in 0..3 {
        server.hit(&q(PIXEL, "purchase", &format!("eid=revoked-{i}"))).await;
    }
    fake.wait_for_requests(1, Duration::from_secs(10));
    // The CLI, on the same store while the server runs, sees the token marked invalid.
    let status = eventually!(Duration::from_secs(10), "tokens status to say invalid", {
        let v = site.token_status(PIXEL);
        (v["status"] == "invalid").then_some(v)
    });
    assert_eq!(status["set"], true, "{status}");

    // The given-up events are delivery records with the reason.
    let records = server.wait_for_failed(3, Duration::from_secs(10)).await;
    let failed = failed_records(&records);
    let ids: HashSet<_> = failed.iter().map(|r| r["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, HashSet::from(["revoked-0", "revoked-1", "revoked-2"]), "{failed:#?}");
    for r in &failed {
        assert_eq!(r["reason"], "invalid_token", "{r}");
        assert_eq!(r["code"], 190, "{r}");
        assert_eq!(r["pixel_id"], PIXEL);
    }

    // Further hits make no Graph call, even after the negative TTL sends the cache back to the
    // store (which says invalid). The sentinel pixel's events mark that the batches went by.
    let requests_before = fake.requests().len();
    for round in 0..3 {
        server.hit(&q(PIXEL, "purchase", &format!("eid=muted-{round}"))).await;
        server.hit(&q(SENTINEL, "purchase", &format!("eid=sentinel-{round}"))).await;
        fake.wait_for_events_async(round + 1, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let after: Vec<_> = fake.requests().into_iter().skip(requests_before).collect();
    assert!(after.iter().all(|r| r.pixel_id == SENTINEL), "a Graph call with the invalid token: {after:#?}");
    assert_eq!(site.token_status(PIXEL)["status"], "invalid");
    let m = server.metrics().await;
    assert_eq!(metric(&m, "pixelgate_capi_tokens_invalidated_total", &[]), 1.0, "{m}");
    assert_eq!(metric(&m, "pixelgate_capi_events_total", &[("outcome", "failed"), ("reason", "invalid_token")]), 3.0, "{m}");

    // A new token from the CLI: picked up once the negative TTL runs out.
    site.set_token(PIXEL, NEW);
    fake.set_token(PIXEL, NEW);
    let mut n = 0;
    eventually!(Duration::from_secs(10), "forwarding to resume with the new token", {
        n += 1;
        server.hit(&q(PIXEL, "purchase", &format!("eid=resumed-{n}"))).await;
        fake.events().iter().any(|e| e.pixel_id == PIXEL).then_some(())
    });
    fake.assert_no_violations();
    assert!(fake.requests().iter().filter(|r| r.pixel_id == PIXEL && r.index > 0).all(|r| r.token_ok), "{:#?}", fake.requests());
    assert_eq!(site.token_status(PIXEL)["status"], "active");
    server.finish(&[OLD, NEW, SENTINEL_TOKEN, "testtoken"]).await;
}

#[tokio::test]
async fn transient_errors_are_retried_and_delivered_exactly_once() {
    const PIXEL: &str = "700500";
    const TOKEN: &str = "EAAtesttokenRetries8Qa2Ws4Ed6Rf8Tg0Yh2Uj";
    let (site, fake) = Site::with_token(PIXEL, TOKEN);
    // Server error, rate limit, then a whole-batch code 100 (the batch is split and resent).
    fake.script(vec![Answer::ServerError, Answer::RateLimited, Answer::InvalidParameter]);
    let server = site.serve(&fake, &["--capi-flush-interval", "300ms"]);

    const N: usize = 6;
    for i in 0..N {
        server.hit(&q(PIXEL, "purchase", &format!("eid=retry-{i}&cd[value]={i}.5"))).await;
    }
    let events = fake.wait_for_events_async(N, Duration::from_secs(15)).await;
    fake.assert_no_violations();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        *count.entry(e.event_id().unwrap()).or_default() += 1;
    }
    assert_eq!(count.len(), N, "{count:?}");
    assert!(count.values().all(|&c| c == 1), "an event reached Meta twice: {count:?}");
    let requests = fake.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..3], &[500, 400, 400], "{requests:#?}");
    assert!(statuses[3..].iter().all(|&s| s == 200), "{requests:#?}");

    let m = server.metrics().await;
    assert_eq!(metric(&m, "pixelgate_capi_events_total", &[("outcome", "sent")]), N as f64, "{m}");
    assert_eq!(metric(&m, "pixelgate_capi_events_total", &[("outcome", "failed")]), 0.0, "{m}");
    for result in ["server_error", "rate_limited", "invalid_parameter"] {
        assert_eq!(metric(&m, "pixelgate_capi_requests_total", &[("result", result)]), 1.0, "{result}: {m}");
    }
    let d = server.records();
    assert!(failed_records(&d).is_empty(), "{d:#?}");
    server.finish(&[TOKEN]).await;
}

#[tokio::test]
async fn a_hit_meta_would_reject_is_not_sent_and_recorded_with_the_reason() {
    const PIXEL: &str = "600601";
    const TOKEN: &str = "EAAtesttokenNoAgent2Xc4Vb6Nm8Lk0Jh2Gf4Ds";
    let (site, fake) = Site::with_token(PIXEL, TOKEN);
    let server = site.serve(&fake, &[]);

    // No User-Agent header at all (reqwest sends none unless told); then an ordinary hit in the
    // same batch.
    let bare = reqwest::Client::new();
    let r = bare.get(server.url(&q(PIXEL, "purchase", "eid=no-agent"))).send().await.unwrap();
    assert_eq!(r.status(), 200, "the browser still gets the pixel");
    assert_eq!(r.bytes().await.unwrap().len(), 43);
    server.hit(&q(PIXEL, "purchase", "eid=with-agent")).await;
    // The same kind of hit for a pixel without a token is skipped, not given up: no record.
    let r = bare.get(server.url(&q("600602", "purchase", "eid=no-agent-no-token"))).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let events = fake.wait_for_events_async(1, Duration::from_secs(10)).await;
    fake.assert_no_violations();
    eventually!(Duration::from_secs(10), "the no-token pixel's hit to be skipped", {
        let m = server.metrics().await;
        (metric(&m, "pixelgate_capi_events_total", &[("outcome", "skipped")]) >= 1.0).then_some(())
    });
    let records = server.wait_for_failed(1, Duration::from_secs(10)).await;
    assert_eq!(events.iter().map(|e| e.event_id().unwrap()).collect::<Vec<_>>(), ["with-agent"]);
    let sent_ids: Vec<_> = fake.requests().iter().flat_map(|r| r.body.as_ref().unwrap()["data"].as_array().unwrap().clone()).map(|e| e["event_id"].clone()).collect();
    assert_eq!(sent_ids, [json!("with-agent")], "the hit without a user agent never went to Meta");

    let failed = failed_records(&records);
    assert_eq!(failed.len(), 1, "{failed:#?}");
    let f = failed[0];
    assert_eq!(f["event_id"], "no-agent");
    let reason = f["reason"].as_str().unwrap();
    assert!(reason.contains("user_agent"), "the reason names the user agent: {f}");
    assert_eq!(f["attempts"], 0, "{f}");
    let records = server.records();
    assert_eq!(failed_records(&records).len(), 1, "only the pixel with a token gives the hit up: {records:#?}");
    assert_eq!(hit_records(&records).len(), 3, "every hit has its own record: {records:#?}");
    let m = server.metrics().await;
    assert_eq!(metric(&m, "pixelgate_capi_events_total", &[("outcome", "failed"), ("reason", reason)]), 1.0, "{m}");
    server.finish(&[TOKEN]).await;
}
