//! Forwarding under load, against the strict fake Graph API with scripted delays
//! (`docs/forwarding.md#under-load`): past its byte budget forwarding sheds (counted, shown in
//! `/readyz`, the raw record still written); a request's timeout grows with what it carries; the
//! number of requests in flight follows how the destination answers.

use std::time::Duration;

use crate::common::fake_graph::{Answer, FakeGraph, GraphRequest};
use crate::common::metrics::metric;
use crate::helpers::{Site, eventually, failed_records, hit_records, q};

const TOKEN: &str = "EAAtesttokenLoad2Wq4Ty6Ui8Op0As2Df4Gh6";

/// Sites with a token for each of `pixels`, and the fake that knows them.
fn site_with_pixels(pixels: &[String]) -> (Site, FakeGraph) {
    let site = Site::new();
    let fake = FakeGraph::start();
    for p in pixels {
        site.set_token(p, TOKEN);
        fake.set_token(p, TOKEN);
    }
    (site, fake)
}

/// The most requests the fake had in flight at once.
fn max_in_flight(requests: &[GraphRequest]) -> usize {
    let mut edges: Vec<(std::time::Instant, i32)> = Vec::new();
    for r in requests {
        edges.push((r.received, 1));
        if let Some(answered) = r.answered {
            edges.push((answered, -1));
        }
    }
    edges.sort();
    edges
        .iter()
        .scan(0i32, |n, (_, d)| {
            *n += d;
            Some(*n)
        })
        .max()
        .unwrap_or(0) as usize
}

#[tokio::test]
async fn a_destination_slower_than_the_hits_makes_forwarding_shed_never_the_raw_records() {
    let pixels: Vec<String> = vec!["5001".into()];
    let (site, fake) = site_with_pixels(&pixels);
    fake.set_delay(Duration::from_secs(2));
    let mut server = site.serve(&fake, &["--forward-max-bytes", "1048576", "--capi-batch-events", "100", "--capi-max-in-flight", "1"]);
    for i in 0..3000 {
        server.hit(&q("5001", "purchase", &format!("eid=s{i}"))).await;
    }
    // Hits are shed at the queue as they are answered, and also as the forwarder batches what
    // its queue holds: the count is final once two scrapes 300 ms apart agree (the forwarder
    // takes from its queue every few milliseconds and never waits for the destination to do so).
    let shed_in = |m: &str| metric(m, "pixelgate_capi_events_total", &[("outcome", "shed")]);
    let mut metrics = server.metrics().await;
    for settled in 0.. {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again = server.metrics().await;
        if shed_in(&again) == shed_in(&metrics) {
            break;
        }
        assert!(settled < 20, "the shed count still moves after 6 s");
        metrics = again;
    }
    let shed = shed_in(&metrics);
    assert!(shed > 1000.0, "a 1 MiB budget holds far fewer than 3,000 hits: shed {shed}");
    assert_eq!(metric(&metrics, "pixelgate_capi_events_total", &[("outcome", "shed"), ("reason", "budget")]), shed);
    assert_eq!(metric(&metrics, "pixelgate_records_dropped_total", &[]), 0.0, "no raw record lost");
    let (status, body) = server.readyz();
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")), "shedding does not make the instance unready: {body}");
    assert_eq!(ready["forwarding"]["meta"]["shedding"]["reason"], "budget", "{body}");
    // What forwarding held, at its most, stayed near the budget: only a request body being sent
    // (100 events here) is taken beyond it. The scrape above set the gauge.
    let peak = metric(&metrics, "pixelgate_forward_held_bytes", &[("at", "peak")]);
    assert!(peak > 512.0 * 1024.0 && peak <= 1.5 * 1048576.0, "peak held {peak} bytes against a 1 MiB budget");

    server.stop();
    let records = server.records();
    assert_eq!(hit_records(&records).len(), 3000, "every hit recorded");
    let sent = fake.count() as f64;
    let failed = failed_records(&records).len() as f64;
    assert_eq!(sent + shed + failed, 3000.0, "every hit sent, shed or given up (with a record): sent {sent}, shed {shed}, failed {failed}");
    fake.assert_no_violations();
}

#[tokio::test]
async fn a_full_batch_answered_slowly_is_not_timed_out_and_sent_twice() {
    let pixels: Vec<String> = vec!["5002".into()];
    let (site, fake) = site_with_pixels(&pixels);
    fake.set_delay(Duration::from_millis(800));
    // 200 events wait 300 ms + 199 x 5 ms = 1.3 s: more than the fake's 0.8 s.
    let server = site.serve(&fake, &["--capi-timeout", "300ms", "--capi-timeout-per-event", "5ms", "--capi-batch-events", "200", "--capi-flush-interval", "5s"]);
    for i in 0..200 {
        server.hit(&q("5002", "purchase", &format!("eid=t{i}"))).await;
    }
    let events = fake.wait_for_events_async(200, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 200);
    assert_eq!(fake.requests().len(), 1, "one request, not timed out");
    assert_eq!(server.metric("pixelgate_capi_possible_duplicates_total", &[]).await, 0.0);

    // One event alone waits 300 ms only: it times out, is sent again, and that is counted.
    server.hit(&q("5002", "purchase", "eid=alone")).await;
    let metrics = eventually!(Duration::from_secs(10), "the resend after a timeout", {
        let m = server.metrics().await;
        (metric(&m, "pixelgate_capi_requests_total", &[("result", "timeout")]) >= 1.0 && metric(&m, "pixelgate_capi_possible_duplicates_total", &[]) >= 1.0).then_some(m)
    });
    assert!(metric(&metrics, "pixelgate_capi_possible_duplicates_total", &[]) >= 1.0);
    fake.assert_no_violations();
}

#[tokio::test]
async fn fewer_requests_are_in_flight_while_the_destination_throttles_and_more_once_it_recovers() {
    let pixels: Vec<String> = (0..24).map(|i| (6000 + i).to_string()).collect();
    let (site, fake) = site_with_pixels(&pixels);
    fake.set_delay(Duration::from_millis(40));
    let server = site.serve(&fake, &["--capi-max-in-flight", "16", "--capi-batch-events", "5", "--capi-flush-interval", "20ms", "--capi-retry-budget", "60s"]);
    let limit = || async { server.metric("pixelgate_capi_concurrency_limit", &[("destination", "meta")]).await };
    let burst = |tag: &'static str| {
        let server = &server;
        let pixels = &pixels;
        async move {
            let hits = (0..240).map(|i| async move { server.hit(&q(&pixels[i % pixels.len()], "purchase", &format!("eid={tag}{i}"))).await });
            futures_util::future::join_all(hits).await;
        }
    };

    // Healthy answers: the window grows from 4.
    for round in 0..6 {
        burst(["a", "b", "c", "d", "e", "f"][round]).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let grown = limit().await;
    assert!(grown > 4.0, "the window grew while answers were healthy: {grown}");
    let healthy_max = max_in_flight(&fake.requests());
    assert!(healthy_max > 4, "more than the initial 4 requests at once: {healthy_max}");

    // Throttling: the window halves.
    fake.fail_next(40, Answer::RateLimited);
    burst("g").await;
    eventually!(Duration::from_secs(10), "the window to shrink", {
        let l = limit().await;
        (l <= (grown / 2.0).max(1.0)).then_some(())
    });

    // Healthy again: everything arrives, and the window grows back.
    for round in 0..8 {
        burst(["h", "i", "j", "k", "l", "m", "n", "o"][round]).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let events = fake.wait_for_events_async(240 * 15, Duration::from_secs(30)).await;
    let mut ids: Vec<_> = events.iter().filter_map(|e| e.event_id().map(str::to_owned)).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 240 * 15, "every event delivered once the throttling passed");
    let recovered = limit().await;
    assert!(recovered > 2.0, "the window grew again: {recovered}");
    fake.assert_no_violations();
}
