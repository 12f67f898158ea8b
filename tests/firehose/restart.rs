//! The spool survives a restart: records spooled while Firehose was unreachable, the process
//! stopped (spooling what was still in flight), Firehose back, the process started again on the
//! same data dir: everything arrives, once.

use std::time::Duration;

use crate::common::load::hits;
use crate::common::proxy::Link;
use crate::helpers::{FAST, assert_exactly_once, spawn_pixelgate, stream_behind_proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_spooled_before_a_restart_are_delivered_after_it() {
    let (stream, proxy) = stream_behind_proxy("restart").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut pg = spawn_pixelgate(&proxy.endpoint, &stream.name, Some(&data), FAST);
    proxy.set(Link::Refuse);
    let answered = hits(pg.url(""), "r", 4, 300).await;
    assert_eq!(answered.len(), 1200);
    assert!(pg.terminate().success(), "{}", pg.logs());
    let segments = std::fs::read_dir(data.join("spool")).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "ndjson")).count();
    assert!(segments > 0, "the spool holds the records: {}", pg.logs());
    assert!(stream.objects().await.is_empty());

    proxy.set(Link::Up);
    let mut pg = spawn_pixelgate(&proxy.endpoint, &stream.name, Some(&data), FAST);
    let delivered = stream.wait_for(answered.len(), Duration::from_secs(20)).await;
    assert_exactly_once(&answered, &delivered);
    assert_eq!(pg.metric("pixelgate_records_replayed_total", &[]).await, 1200.0);
    assert!(pg.terminate().success(), "{}", pg.logs());
    let left = std::fs::read_dir(data.join("spool")).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "ndjson")).count();
    assert_eq!(left, 0, "acknowledged segments are deleted");
}
