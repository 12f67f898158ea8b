//! The normal case: the records of N hits arrive exactly once, newline-delimited, at most 500
//! per `PutRecordBatch`.

use std::time::Duration;

use crate::common::load::hits;
use crate::common::moto::moto;
use crate::common::stream::create_stream;
use crate::helpers::{FAST, assert_exactly_once, spawn_pixelgate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_records_of_n_hits_arrive_exactly_once() {
    let stream = create_stream("exactly-once").await;
    let mut pg = spawn_pixelgate(&moto().endpoint, &stream.name, None, FAST);
    let answered = hits(pg.url(""), "n", 8, 250).await;
    assert_eq!(answered.len(), 2000);

    let delivered = stream.wait_for(answered.len(), Duration::from_secs(20)).await;
    assert_exactly_once(&answered, &delivered);
    let objects = stream.objects().await;
    for object in &objects {
        let records = object.iter().filter(|&&b| b == b'\n').count();
        assert!((1..=500).contains(&records), "{records} records in one PutRecordBatch");
    }
    assert!(objects.len() >= 4, "2000 records need at least 4 requests, got {}", objects.len());
    assert_eq!(pg.metric("pixelgate_records_written_total", &[("sink", "firehose")]).await, 2000.0);
    assert_eq!(pg.metric("pixelgate_firehose_requests_total", &[("outcome", "ok")]).await, objects.len() as f64);
    assert_eq!(pg.metric("pixelgate_sink_batch_records_count", &[("outlet", "firehose")]).await, objects.len() as f64);
    assert_eq!(pg.metric("pixelgate_records_spooled_total", &[]).await, 0.0);
    assert!(pg.terminate().success(), "{}", pg.logs());
    assert_exactly_once(&answered, &stream.delivered_ids().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_the_open_batch_before_exit() {
    let stream = create_stream("sigterm-flush").await;
    let mut pg = spawn_pixelgate(&moto().endpoint, &stream.name, None, &["--firehose-flush-interval", "1h"]);
    let answered = hits(pg.url(""), "t", 3, 10).await;
    assert!(stream.objects().await.is_empty(), "30 records wait for a fuller batch");
    assert!(pg.terminate().success(), "{}", pg.logs());
    assert_exactly_once(&answered, &stream.delivered_ids().await);
    assert_eq!(stream.objects().await.len(), 1, "one request for the open batch");
}
