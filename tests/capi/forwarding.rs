//! The happy path: a token set with the CLI, hits in, valid Conversions API events out.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use crate::common::fake_graph::FakeGraph;
use crate::common::metrics::metric;
use crate::common::user_agents::BROWSER_UA;
use crate::helpers::{Site, eventually, hit_records, q, sha256_hex};

const PIXEL: &str = "1234567890";
const NO_TOKEN_PIXEL: &str = "5550001";
const TOKEN: &str = "EAAtesttokenCapiE2E0aZ9xQ7vLmN3pR8sT2uW5yB1cD4fG6hJ";

#[tokio::test]
async fn a_token_set_with_the_cli_forwards_hits_as_valid_events() {
    let (site, fake) = Site::with_token(PIXEL, TOKEN);
    let server = site.serve(&fake, &[]);

    // The pixel without a token first: once it is counted as skipped, its batch is done.
    server.hit(&q(NO_TOKEN_PIXEL, "purchase", "cd[order_id]=none&cd[value]=5")).await;
    server.hit(&q(PIXEL, "purchase", "eid=order-42&cd[order_id]=a&cd[value]=19.99&cd[currency]=EUR&ud[em]=%20Foo%40Example.COM&test_event_code=TEST123")).await;
    server.hit(&q(PIXEL, "page_view", "cd[order_id]=b")).await;
    server.hit(&q(PIXEL, "Lead", "cd[order_id]=c&ud[em]=bar%40example.com&cd[value]=7")).await;

    let events = fake.wait_for_events_async(3, Duration::from_secs(10)).await;
    fake.assert_no_violations();
    assert_eq!(events.len(), 3, "{events:#?}");
    let skipped = eventually!(Duration::from_secs(10), "the no-token hit to be skipped", {
        let m = server.metrics().await;
        let n = metric(&m, "pixelgate_capi_events_total", &[("outcome", "skipped"), ("reason", "no_token")]);
        (n >= 1.0).then_some(n)
    });
    assert_eq!(skipped, 1.0);
    assert!(fake.requests().iter().all(|r| r.pixel_id == PIXEL), "a pixel with no token made a Graph call: {:#?}", fake.requests());

    for r in fake.requests() {
        assert!(r.token_in_body && r.token_ok && !r.token_in_query, "{r:?}");
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v26.0/1234567890/events"), "{r:?}");
    }

    // Pair each event with its hit's raw record through custom_data.order_id.
    let records = eventually!(Duration::from_secs(5), "four raw records", {
        let r = server.records();
        (hit_records(&r).len() >= 4).then_some(r)
    });
    let by_order: HashMap<String, &Value> = hit_records(&records).into_iter().map(|r| (r["attrs"]["order_id"].as_str().unwrap().to_owned(), r)).collect();
    let by_order_event: HashMap<&str, _> = events.iter().map(|e| (e.event["custom_data"]["order_id"].as_str().unwrap(), e)).collect();
    assert_eq!(by_order_event.len(), 3);

    let purchase = by_order_event["a"];
    assert_eq!(purchase.name(), "Purchase");
    assert_eq!(purchase.event_id(), Some("order-42"));
    assert_eq!(by_order["a"]["event_id"], "order-42");
    assert_eq!(purchase.test_event_code.as_deref(), Some("TEST123"));
    let e = &purchase.event;
    assert_eq!(e["custom_data"]["value"].as_f64(), Some(19.99), "value is a number: {e}");
    assert_eq!(e["custom_data"]["currency"], "EUR");
    assert_eq!(e["action_source"], "website");
    assert_eq!(e["event_source_url"], "https://shop.example/p");
    assert_eq!(e["user_data"]["em"], serde_json::json!([sha256_hex("foo@example.com")]), "{e}");
    assert_eq!(e["user_data"]["client_user_agent"], BROWSER_UA);
    assert_eq!(e["user_data"]["client_ip_address"], "127.0.0.1");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - e["event_time"].as_i64().unwrap()).abs() < 60, "{e}");

    let page = by_order_event["b"];
    assert_eq!(page.name(), "PageView");
    assert_eq!(page.test_event_code, None, "only the hit that carried a test code is a test event");
    let generated = by_order["b"]["event_id"].as_str().unwrap();
    assert_eq!(page.event_id(), Some(generated), "the generated event_id of the raw record goes to Meta");
    assert_eq!(generated.len(), 36, "a UUID: {generated}");

    let lead = by_order_event["c"];
    assert_eq!(lead.name(), "Lead");
    assert_eq!(lead.event_id(), by_order["c"]["event_id"].as_str());
    assert_eq!(lead.event["custom_data"]["value"].as_f64(), Some(7.0));
    assert_eq!(lead.event["user_data"]["em"][0], sha256_hex("bar@example.com"));
    for e in &events {
        for v in e.event["user_data"]["em"].as_array().into_iter().flatten() {
            let v = v.as_str().unwrap();
            assert!(v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{v}");
        }
    }
    // The test event travelled in a request of its own, with test_event_code at the top level.
    let test_requests: Vec<_> = fake.requests().into_iter().filter(|r| r.body.as_ref().is_some_and(|b| b["test_event_code"] == "TEST123")).collect();
    assert_eq!(test_requests.len(), 1, "{test_requests:#?}");
    assert_eq!(test_requests[0].body.as_ref().unwrap()["data"].as_array().unwrap().len(), 1);

    let m = server.metrics().await;
    assert_eq!(metric(&m, "pixelgate_capi_events_total", &[("outcome", "sent")]), 3.0, "{m}");
    server.finish(&[TOKEN, "testtokenCapiE2E"]).await;
}

#[tokio::test]
async fn hits_within_the_flush_interval_share_a_request_per_pixel() {
    const PIXELS: [&str; 3] = ["111", "222", "333"];
    const TOKENS: [&str; 3] = ["EAAtesttokenBatch111xxxxxxxxxxxx", "EAAtesttokenBatch222xxxxxxxxxxxx", "EAAtesttokenBatch333xxxxxxxxxxxx"];
    let site = Site::new();
    let fake = FakeGraph::start();
    for (p, t) in PIXELS.iter().zip(TOKENS) {
        site.set_token(p, t);
        fake.set_token(p, t);
    }
    // Long enough that the hits below (a few ms each) land in one interval even on a busy box.
    let server = site.serve(&fake, &["--capi-flush-interval", "1s"]);

    const N: usize = 30;
    for i in 0..N {
        server.hit(&q("111", "purchase", &format!("eid=single-{i}&cd[value]={i}"))).await;
    }
    let events = fake.wait_for_events_async(N, Duration::from_secs(10)).await;
    let requests = fake.requests();
    assert!(requests.len() <= 2, "{N} hits within the interval should take one request (two if it straddled a tick): {requests:#?}");
    assert_eq!(events.len(), N);
    let before = requests.len();

    for i in 0..N {
        for p in PIXELS {
            server.hit(&q(p, "purchase", &format!("eid={p}-{i}"))).await;
        }
    }
    let events = fake.wait_for_events_async(N + 3 * N, Duration::from_secs(10)).await;
    fake.assert_no_violations();
    let requests = fake.requests();
    for p in PIXELS {
        let mine: Vec<_> = requests.iter().filter(|r| r.pixel_id == p && r.index >= before).collect();
        let n = mine.len();
        assert!((1..=2).contains(&n), "pixel {p}: {n} requests for {N} hits: {requests:#?}");
        for r in &mine {
            assert!(r.token_ok, "each pixel's request carries its own token: {r:?}");
            for e in r.body.as_ref().unwrap()["data"].as_array().unwrap() {
                let id = e["event_id"].as_str().unwrap();
                assert!(id.starts_with(&format!("{p}-")), "{id} in a request for {p}");
            }
        }
    }
    let ids: HashSet<_> = events.iter().map(|e| e.event_id().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 4 * N, "every event once");
    server.finish(&TOKENS).await;
}

#[tokio::test]
async fn a_batch_never_exceeds_capi_batch_events() {
    const PIXEL: &str = "444";
    const TOKEN: &str = "EAAtesttokenBatchCap0Zx2Cv4Bn6Mq8Wr1Ty3";
    let (site, fake) = Site::with_token(PIXEL, TOKEN);
    let server = site.serve(&fake, &["--capi-batch-events", "5", "--capi-flush-interval", "1s"]);
    for i in 0..12 {
        server.hit(&q(PIXEL, "purchase", &format!("eid=cap-{i}"))).await;
    }
    let events = fake.wait_for_events_async(12, Duration::from_secs(10)).await;
    fake.assert_no_violations();
    let sizes: Vec<usize> = fake.requests().iter().map(|r| r.body.as_ref().unwrap()["data"].as_array().unwrap().len()).collect();
    assert!(sizes.iter().all(|&n| n <= 5), "{sizes:?}");
    assert_eq!(sizes.iter().filter(|&&n| n == 5).count(), 2, "two full batches leave at once: {sizes:?}");
    assert_eq!(events.iter().map(|e| e.event_id().unwrap()).collect::<HashSet<_>>().len(), 12);
    server.finish(&[TOKEN]).await;
}
