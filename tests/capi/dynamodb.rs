//! The same forwarding with the tokens in DynamoDB (moto in server mode, required: the test
//! fails, never skips, without it): the CLI and the server share the table.

use std::time::Duration;

use serde_json::json;

use crate::common::fake_graph::{Answer, FakeGraph};
use crate::common::metrics::metric;
use crate::helpers::{ADMIN_KEY, Site, eventually, failed_records, q};

const PIXEL: &str = "31337";
const TOKEN: &str = "EAAtesttokenDynamo9Lk7Jh5Gf3Ds1Az2Sx4Dc6";
const REPLACED: &str = "EAAtesttokenDynamoNew2Qw4Er6Ty8Ui0Op1As3";

#[tokio::test]
async fn tokens_in_dynamodb_forward_get_invalidated_and_are_replaced_through_the_admin_api() {
    let site = Site::dynamodb(&format!("pixelgate-capi-{}", std::process::id()));
    site.set_token(PIXEL, TOKEN);
    let fake = FakeGraph::start();
    fake.set_token(PIXEL, TOKEN);
    let server = site.serve_admin(&fake, &[]);

    server.hit(&q(PIXEL, "add_to_cart", "eid=dynamo-1&cd[value]=2.5")).await;
    let events = fake.wait_for_events_async(1, Duration::from_secs(10)).await;
    assert_eq!((events[0].name(), events[0].event_id()), ("AddToCart", Some("dynamo-1")));

    // Meta revokes the token: the table says invalid, as the CLI shows while the server runs.
    fake.fail_next(1, Answer::InvalidToken);
    server.hit(&q(PIXEL, "purchase", "eid=dynamo-2")).await;
    eventually!(Duration::from_secs(10), "the token to be marked invalid in DynamoDB", (site.token_status(PIXEL)["status"] == "invalid").then_some(()));
    let records = server.wait_for_failed(1, Duration::from_secs(10)).await;
    let failed = failed_records(&records);
    assert_eq!((&failed[0]["event_id"], &failed[0]["reason"]), (&json!("dynamo-2"), &json!("invalid_token")));

    // A new token through the admin API applies at once (the default negative TTL is 30 s).
    fake.set_token(PIXEL, REPLACED);
    let (status, body) = server.admin("PUT", &format!("/v1/pixels/{PIXEL}/token"), Some(ADMIN_KEY), Some(json!({"access_token": REPLACED}))).await;
    assert_eq!(status, 204, "{body}");
    server.hit(&q(PIXEL, "purchase", "eid=dynamo-3")).await;
    let events = fake.wait_for_events_async(2, Duration::from_secs(5)).await;
    assert_eq!(events[1].event_id(), Some("dynamo-3"));
    assert_eq!(site.token_status(PIXEL)["status"], "active");
    fake.assert_no_violations();
    server.finish(&[TOKEN, REPLACED, "testtokenDynamo"]).await;
}

/// A burst of 1,000 concurrent hits for a pixel the server has not looked up yet (its token was
/// set by the CLI, another process): besides the listing of the pixels with a token at start,
/// DynamoDB is read once, and every hit is forwarded.
#[tokio::test]
async fn a_burst_for_an_uncached_pixel_reads_the_table_once() {
    const BURST_PIXEL: &str = "31338";
    const BURST_TOKEN: &str = "EAAtesttokenBurst5Tg7Yh9Uj1Ik3Ol5Pa7Sd9";
    let site = Site::dynamodb(&format!("pixelgate-burst-{}", std::process::id()));
    site.set_token(BURST_PIXEL, BURST_TOKEN);
    let fake = FakeGraph::start();
    fake.set_token(BURST_PIXEL, BURST_TOKEN);
    let server = site.serve(&fake, &[]);

    let hits = (0..1000).map(|i| {
        let server = &server;
        async move { server.hit(&q(BURST_PIXEL, "purchase", &format!("eid=burst-{i}"))).await }
    });
    futures_util::future::join_all(hits).await;

    let events = fake.wait_for_events_async(1000, Duration::from_secs(20)).await;
    let mut ids: Vec<_> = events.iter().filter_map(|e| e.event_id().map(str::to_owned)).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "every hit forwarded exactly once");
    let metrics = server.metrics().await;
    assert_eq!(metric(&metrics, "pixelgate_token_store_reads_total", &[]), 2.0, "one Scan page at start, one GetItem for the burst");
    fake.assert_no_violations();
    server.finish(&[BURST_TOKEN, "testtokenBurst"]).await;
}
