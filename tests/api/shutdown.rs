//! SIGTERM stops accepting, answers what is in flight, flushes, exits 0 — and every hit answered
//! before the signal is in the files afterwards, exactly once (`docs/operations.md#guarantees`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::load::load;
use crate::common::process::Launch;
use crate::common::records::{files_below, read_records};
use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_keeps_every_answered_hit() {
    let bin = Launch::new().serve();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = tokio::spawn(load(bin.url(""), "c", 16, usize::MAX, Duration::ZERO, stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut bin = bin;
    let status = tokio::task::spawn_blocking(move || {
        let s = bin.terminate();
        (s, bin)
    });
    let (status, bin) = status.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let answered: HashSet<String> = clients.await.unwrap().0.into_iter().collect();
    assert!(status.success(), "exit status {status:?}: {}", bin.logs());
    assert!(answered.len() > 200, "load too light to mean anything: {}", answered.len());

    let recs = read_records(&bin.data);
    let ids: Vec<String> = recs.iter().map(|r| r["event_id"].as_str().unwrap().to_owned()).collect();
    let written: HashSet<&String> = ids.iter().collect();
    assert_eq!(written.len(), ids.len(), "a hit was written twice");
    let missing: Vec<_> = answered.iter().filter(|id| !written.contains(id)).collect();
    assert!(missing.is_empty(), "{} answered hits missing, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
    let open: Vec<_> = walk_open(&bin.data);
    assert!(open.is_empty(), "files left open after a clean shutdown: {open:?}");
    eprintln!("answered {} hits, wrote {} records", answered.len(), ids.len());
}

fn walk_open(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    files_below(dir).into_iter().filter(|p| p.to_string_lossy().ends_with(".open")).collect()
}

#[tokio::test]
async fn an_in_process_stop_closes_every_file() {
    let app = spawn_app(&[]).await;
    for i in 0..10 {
        app.hit(&format!("/p.gif?pixel_id=1&event=Lead&event_id=s{i}")).await;
    }
    let data = app.stop().await;
    assert!(walk_open(data.path()).is_empty());
    assert_eq!(read_records(data.path()).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_unfinished_after_the_grace_period_is_cut_without_an_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bin = Launch::new().args(["--shutdown-timeout", "1s", "--header-read-timeout", "30s"]).serve();
    let mut slow = tokio::net::TcpStream::connect(bin.addr).await.unwrap();
    slow.write_all(b"POST /tr/?id=1&ev=Lead&eid=late HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nev=Purcha").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let mut bin = bin;
    let (status, bin) = tokio::task::spawn_blocking(move || (bin.terminate(), bin)).await.unwrap();
    assert!(status.success());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), slow.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 204"), "a cut request must not be answered as accepted");
    assert!(read_records(&bin.data).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_hand_at_the_signal_is_answered_and_idle_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bin = Launch::new().args(["--shutdown-timeout", "5s", "--header-read-timeout", "30s"]).serve();
    let mut idle = tokio::net::TcpStream::connect(bin.addr).await.unwrap();
    idle.write_all(b"GET /p.gif?pixel_id=1&event=Lead&event_id=before HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = [0u8; 1024];
    let n = idle.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    let mut posting = tokio::net::TcpStream::connect(bin.addr).await.unwrap();
    posting.write_all(b"POST /tr/?id=1&ev=Lead&eid=in-hand HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\ncd[value]").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut bin = bin;
    let stopping = tokio::task::spawn_blocking(move || (bin.terminate(), bin));
    // The idle keep-alive connection is closed at once, without waiting for the grace period.
    let closed = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut answer)).await.expect("idle connection closed");
    assert_eq!(closed.unwrap_or(0), 0);
    // The POST whose head was in hand still gets its body read and its answer.
    posting.write_all(b"=42").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(4), posting.read_to_end(&mut rest)).await.expect("answered, then closed").unwrap();
    assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 204"), "{}", String::from_utf8_lossy(&rest));
    let (status, bin) = stopping.await.unwrap();
    assert!(status.success());
    let records = read_records(&bin.data);
    let ids: HashSet<String> = records.iter().map(|r| r["event_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, HashSet::from(["before".to_owned(), "in-hand".to_owned()]));
    let in_hand = records.iter().find(|r| r["event_id"] == "in-hand").unwrap();
    assert_eq!((&in_hand["attrs"]["value"], &in_hand["flags"]), (&serde_json::json!("42"), &serde_json::json!([])), "the whole body was read");
}
