//! Firehose cut off under load: the pixel keeps answering fast, `/readyz` says why it is
//! degraded, records spool to disk and are replayed when Firehose answers again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::load::{hits, load};
use crate::common::moto::moto;
use crate::common::proxy::Link;
use crate::common::stream::create_stream;
use crate::common::timing::quantile;
use crate::helpers::{FAST, assert_exactly_once, spawn_pixelgate, stream_behind_proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_under_load_loses_nothing_and_the_pixel_stays_fast() {
    let (stream, proxy) = stream_behind_proxy("outage").await;
    let mut pg = spawn_pixelgate(&proxy.endpoint, &stream.name, None, FAST);
    let base = pg.url("");
    let mut answered = hits(base.clone(), "before", 4, 100).await;
    stream.wait_for(answered.len(), Duration::from_secs(10)).await;

    proxy.set(Link::Blackhole);
    let stop = Arc::new(AtomicBool::new(false));
    let during = tokio::spawn(load(base, "during", 8, usize::MAX, Duration::from_millis(10), stop.clone()));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, body) = pg.readyz();
    stop.store(true, Ordering::Relaxed);
    let (during, mut latencies) = during.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""status":"degraded""#) && body.contains(&stream.name), "{body}");
    let spooled = pg.metric("pixelgate_records_spooled_total", &[]).await;
    assert!(spooled > 0.0, "records went to the spool during the outage");
    assert!(during.len() > 1000, "load too light to mean anything: {}", during.len());
    let p99 = quantile(&mut latencies, 0.99);
    eprintln!("outage: {} hits answered, p99 {p99:?}, {spooled} records spooled", during.len());
    assert!(p99 < Duration::from_millis(100), "pixel p99 during the outage: {p99:?}");

    proxy.set(Link::Up);
    answered.extend(during);
    let delivered = stream.wait_for(answered.len(), Duration::from_secs(30)).await;
    assert_exactly_once(&answered, &delivered);
    assert_eq!(pg.readyz().0, 200);
    assert_eq!(pg.metric("pixelgate_records_replayed_total", &[]).await, pg.metric("pixelgate_records_spooled_total", &[]).await);
    assert_eq!(pg.metric("pixelgate_records_dropped_total", &[]).await, 0.0);
    assert_eq!(pg.metric("pixelgate_spool_bytes", &[]).await, 0.0);
    assert!(pg.terminate().success(), "{}", pg.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_gives_records_up_counted_and_logged() {
    let (stream, proxy) = stream_behind_proxy("spool-full").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut extra = FAST.to_vec();
    extra.extend(["--spool-max-bytes", "1024000", "--log-format", "json"]);
    let mut pg = spawn_pixelgate(&proxy.endpoint, &stream.name, Some(&data), &extra);
    proxy.set(Link::Refuse);
    let answered = hits(pg.url(""), "full", 8, 500).await;
    assert_eq!(answered.len(), 4000);
    assert!(pg.terminate().success(), "{}", pg.logs());
    let logs = pg.logs();
    assert!(logs.contains("spool is full"), "{logs}");

    proxy.set(Link::Up);
    let mut pg = spawn_pixelgate(&proxy.endpoint, &stream.name, Some(&data), FAST);
    for _ in 0..100 {
        if pg.metric("pixelgate_spool_bytes", &[]).await == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delivered = stream.delivered_ids().await;
    let given_up = answered.len() - delivered.len();
    assert!(delivered.len() > 1000 && given_up > 1000, "{} delivered, {given_up} given up", delivered.len());
    assert!(delivered.values().all(|n| *n == 1), "nothing twice");
    assert!(delivered.keys().all(|id| answered.contains(id)));
    assert!(pg.terminate().success(), "{}", pg.logs());
    let logged: u64 = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"].as_str().is_some_and(|m| m.contains("spool is full")))
        .map(|l| l["records"].as_u64().unwrap())
        .sum();
    assert_eq!(logged as usize, given_up, "every record given up is in the log with its reason");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_then_spooled_and_delivered_once_the_service_heals() {
    let stream = create_stream("server-errors").await;
    stream.remove_bucket().await;
    let mut pg = spawn_pixelgate(&moto().endpoint, &stream.name, None, FAST);
    let answered = hits(pg.url(""), "s", 4, 100).await;
    // Retries run out on their own schedule; a busy machine takes longer, so wait for the spool.
    let started = std::time::Instant::now();
    while pg.metric("pixelgate_records_spooled_total", &[]).await == 0.0 {
        assert!(started.elapsed() < Duration::from_secs(15), "nothing spooled: {}", pg.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pg.metric("pixelgate_firehose_requests_total", &[("outcome", "unavailable")]).await > 1.0, "moto's HTTP 500 is a retried server error: {}", pg.logs());
    let (status, body) = pg.readyz();
    assert!(status == 503 && body.contains("HTTP 500"), "{status} {body}");

    stream.restore_bucket().await;
    let delivered = stream.wait_for(answered.len(), Duration::from_secs(20)).await;
    assert_exactly_once(&answered, &delivered);
    assert!(pg.terminate().success(), "{}", pg.logs());
}
