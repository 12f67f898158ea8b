//! SPEC §3.2: health, readiness and metrics; the sink surviving a disk outage.

use std::time::Duration;

use crate::helpers::{BROWSER_UA, spawn_app};

#[tokio::test]
async fn healthz_and_readyz() {
    let app = spawn_app(&[]).await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (200, "ok\n".to_owned()));
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap()).unwrap()["status"], "ready");
}

#[tokio::test]
async fn metrics_live_on_their_own_listener() {
    let app = spawn_app(&[]).await;
    app.hit("/p.gif?pixel_id=1&event=Lead").await;
    reqwest::Client::new().get(app.url("/p.gif?pixel_id=1&event=Lead")).header("user-agent", "curl/8.5.0").send().await.unwrap();
    app.records().await;
    let text = app.metrics().await;
    for needle in [
        "pixelgate_hits_total{method=\"GET\"}",
        "pixelgate_hit_flags_total{flag=\"bot\"}",
        "pixelgate_records_written_total{sink=\"file\"}",
        "pixelgate_queue_depth{outlet=\"file\"}",
        "pixelgate_sink_batch_records_bucket",
        "pixelgate_connections_open",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert_eq!(app.client.get(app.url("/metrics")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_disk_outage_makes_readyz_fail_while_the_pixel_answers_and_loses_nothing() {
    let app = spawn_app(&[]).await;
    let year = pixelgate::hit::Timestamp::now().hour_prefix()[..4].to_owned();
    let blocker = app.data.path().join("raw").join(&year);
    std::fs::write(&blocker, b"not a directory").unwrap();
    for i in 0..20 {
        app.hit(&format!("/p.gif?pixel_id=1&event=Lead&event_id=o{i}")).await;
    }
    let mut reason = String::new();
    for _ in 0..50 {
        let r = app.client.get(app.url("/readyz")).send().await.unwrap();
        if r.status() == 503 {
            reason = r.text().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reason.contains("\"sink\"") && reason.contains("cannot write"), "{reason}");
    let c = reqwest::Client::builder().user_agent(BROWSER_UA).build().unwrap();
    let started = std::time::Instant::now();
    for i in 20..40 {
        assert_eq!(c.get(app.url(&format!("/p.gif?pixel_id=1&event=Lead&event_id=o{i}"))).send().await.unwrap().status(), 200);
    }
    assert!(started.elapsed() < Duration::from_secs(1), "the pixel must not wait for the disk");
    std::fs::remove_file(&blocker).unwrap();
    let recs = app.records().await;
    let mut ids: Vec<String> = recs.iter().map(|r| r["event_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((ids.len(), recs.len()), (40, 40));
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    assert!(app.metrics().await.contains("pixelgate_sink_write_errors_total"));
}
