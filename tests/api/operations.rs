//! Health, readiness and metrics (`docs/operations.md#endpoints`); the sink surviving a disk
//! outage.

use std::time::Duration;

use crate::common::metrics::metric;
use crate::common::process::Launch;
use crate::common::user_agents::BOT_UA;
use crate::helpers::spawn_app;

/// The year directory the file sink writes under this hour (`raw/YYYY/MM/DD/HH`, UTC).
fn this_year() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()[..4].to_owned()
}

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
async fn metrics_live_on_their_own_listener_and_count_this_process() {
    let bin = Launch::new().serve();
    let url = |q: &str| format!("http://{}/p.gif?pixel_id=1&event=Lead{q}", bin.addr);
    let browser = &bin.http;
    browser.get(url("")).send().await.unwrap();
    browser.get(url("&usat_ph=abc")).send().await.unwrap();
    reqwest::Client::new().get(url("")).header("user-agent", BOT_UA).send().await.unwrap();
    let mut text = String::new();
    for _ in 0..100 {
        text = bin.metrics().await;
        if metric(&text, "pixelgate_records_written_total", &[("sink", "file")]) == 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (name, label, value) in [
        ("pixelgate_hits_total", ("method", "GET"), 3.0),
        ("pixelgate_hit_flags_total", ("flag", "bot"), 1.0),
        ("pixelgate_hit_flags_total", ("flag", "invalid_ph"), 1.0),
        ("pixelgate_records_written_total", ("sink", "file"), 3.0),
        ("pixelgate_queue_depth", ("outlet", "file"), 0.0),
        ("pixelgate_connections_accepted_total", ("listener", "pixel"), 3.0),
    ] {
        assert_eq!(metric(&text, name, &[label]), value, "{name}{label:?} in:\n{text}");
    }
    assert!(text.contains("pixelgate_sink_batch_records_bucket"), "{text}");
    let r = reqwest::get(format!("http://{}/metrics", bin.addr)).await.unwrap();
    assert_eq!(r.status(), 404, "/metrics must not be served on the pixel port");
}

#[tokio::test]
async fn a_disk_outage_makes_readyz_fail_while_the_pixel_answers_and_loses_nothing() {
    let app = spawn_app(&[]).await;
    let blocker = app.data.path().join("raw").join(this_year());
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
    let started = std::time::Instant::now();
    for i in 20..40 {
        assert_eq!(app.client.get(app.url(&format!("/p.gif?pixel_id=1&event=Lead&event_id=o{i}"))).send().await.unwrap().status(), 200);
    }
    assert!(started.elapsed() < Duration::from_secs(1), "the pixel must not wait for the disk");
    std::fs::remove_file(&blocker).unwrap();
    let recs = app.records().await;
    let mut ids: Vec<String> = recs.iter().map(|r| r["event_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((ids.len(), recs.len()), (40, 40));
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    assert!(app.metrics().await.contains("pixelgate_sink_write_errors_total"), "at least this test's errors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_disk_fails_gives_up_within_bounds_and_says_so() {
    let mut bin = Launch::new().serve();
    std::fs::create_dir_all(bin.data.join("raw")).unwrap();
    std::fs::write(bin.data.join("raw").join(this_year()), b"not a directory").unwrap();
    for _ in 0..3 {
        assert_eq!(bin.http.get(bin.url("/p.gif?pixel_id=1&event=Lead")).send().await.unwrap().status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let (status, bin) = tokio::task::spawn_blocking(move || (bin.terminate(), bin)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert!(status.success());
    let logs = bin.logs();
    let given_up: u32 =
        logs.lines().filter(|l| l.contains("gave up records at shutdown")).filter_map(|l| l.split("records=").nth(1)?.split_whitespace().next()?.parse::<u32>().ok()).sum();
    assert_eq!(given_up, 3, "every queued record is accounted for: {logs}");
}
