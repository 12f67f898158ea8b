//! Hits for pixel ids nobody registered cost no store read: the server knows which pixels have a
//! token (listed when it starts and every `--token-negative-ttl`, changed at once by its own
//! writes), so a flood of random ids is recorded and counted, and nothing else
//! (`docs/forwarding.md#tokens`).

use std::time::Duration;

use crate::common::fake_graph::FakeGraph;
use crate::common::metrics::metric;
use crate::helpers::{Site, eventually, hit_records, q};

const PIXEL: &str = "4242";
const TOKEN: &str = "EAAtesttokenFlood7Ug8Ih9Oj0Kl1Zx2Cv3Bn4";

/// 2,000 hits for random pixel ids and 10 for the pixel with a token: one listing, no lookup of
/// an unknown pixel, every hit recorded, the known pixel's hits forwarded.
async fn flood(site: Site, fake: FakeGraph) {
    let server = site.serve(&fake, &[]);
    let hits = (0..2000u64).map(|i| {
        let server = &server;
        let pixel = 1_000_000_000 + i * 7919 % 9_000_000_000;
        async move { server.hit(&q(&pixel.to_string(), "purchase", &format!("eid=r{i}"))).await }
    });
    futures_util::future::join_all(hits).await;
    for i in 0..10 {
        server.hit(&q(PIXEL, "purchase", &format!("eid=k{i}"))).await;
    }
    let events = fake.wait_for_events_async(10, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 10, "only the known pixel's hits are forwarded");
    let metrics = server.metrics().await;
    assert_eq!(metric(&metrics, "pixelgate_token_store_reads_total", &[]), 2.0, "the listing at start and one lookup of the known pixel's token");
    assert_eq!(metric(&metrics, "pixelgate_capi_events_total", &[("outcome", "skipped"), ("reason", "no_token")]), 2000.0);
    assert_eq!(metric(&metrics, "pixelgate_token_index_pixels", &[]), 1.0);
    let mut server = server;
    server.terminate();
    assert_eq!(hit_records(&server.records()).len(), 2010, "every hit recorded");
    fake.assert_no_violations();
}

#[tokio::test]
async fn a_flood_of_unknown_pixel_ids_reads_no_token_store_embedded() {
    let (site, fake) = Site::with_token(PIXEL, TOKEN);
    flood(site, fake).await;
}

#[tokio::test]
async fn a_flood_of_unknown_pixel_ids_reads_no_token_store_dynamodb() {
    let site = Site::dynamodb(&format!("pixelgate-flood-{}", std::process::id()));
    site.set_token(PIXEL, TOKEN);
    let fake = FakeGraph::start();
    fake.set_token(PIXEL, TOKEN);
    flood(site, fake).await;
}

/// A token set by another process shows at the next listing.
#[tokio::test]
async fn a_token_set_elsewhere_is_forwarded_after_the_next_listing() {
    let site = Site::new();
    let fake = FakeGraph::start();
    fake.set_token(PIXEL, TOKEN);
    let server = site.serve(&fake, &["--token-negative-ttl", "1s"]);
    server.hit(&q(PIXEL, "purchase", "eid=before")).await;
    site.set_token(PIXEL, TOKEN);
    eventually!(Duration::from_secs(5), "the listing after the token was set", {
        server.hit(&q(PIXEL, "purchase", "eid=after")).await;
        (!fake.events().is_empty()).then_some(())
    });
    let metrics = server.metrics().await;
    assert!(metric(&metrics, "pixelgate_capi_events_total", &[("outcome", "skipped"), ("reason", "no_token")]) >= 1.0, "the hit before was skipped");
    assert!(fake.events().iter().all(|e| e.event_id() == Some("after")));
}
