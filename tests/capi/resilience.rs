//! A slow Meta costs the browser nothing, and shutdown loses no event.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::common::fake_graph::{Answer, FakeGraph};
use crate::common::net::free_port;
use crate::common::records::files_below;
use crate::helpers::{Site, assert_hidden, failed_records, hit_records, q};

#[tokio::test]
async fn pixel_answers_stay_fast_while_meta_takes_a_second() {
    const PIXEL: &str = "8100";
    const TOKEN: &str = "EAAtesttokenSlowMeta6Tr4Ew2Qa8Sd0Fg2Hj4Kl";
    const N: usize = 200;
    let (site, fake) = Site::with_token(PIXEL, TOKEN);
    fake.set_delay(Duration::from_secs(1));
    let server = site.serve(&fake, &[]);
    server.hit(&q(PIXEL, "warmup", "eid=warmup")).await;
    fake.wait_for_requests(1, Duration::from_secs(10));

    // Paced over ~2 s, so the answers overlap many batches that wait on Meta (about ten at once).
    let mut took = Vec::with_capacity(N);
    let mut most_waiting = 0;
    for i in 0..N {
        let started = Instant::now();
        server.hit(&q(PIXEL, "purchase", &format!("eid=slow-{i}&cd[value]=1"))).await;
        took.push(started.elapsed());
        most_waiting = most_waiting.max(fake.requests().iter().filter(|r| r.status == 0).count());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(most_waiting >= 3, "the measurement should overlap several slow Graph requests, saw {most_waiting}");
    took.sort();
    let (p50, p99, max) = (took[N / 2], took[N * 99 / 100 - 1], took[N - 1]);
    eprintln!("pixel latency with Meta at 1 s: p50 {p50:?}, p99 {p99:?}, max {max:?} (up to {most_waiting} Graph requests waiting at once)");
    assert!(max < Duration::from_millis(50), "a pixel answer took {max:?} (p50 {p50:?}, p99 {p99:?})");

    let events = fake.wait_for_events_async(N + 1, Duration::from_secs(20)).await;
    fake.assert_no_violations();
    let ids: HashSet<_> = events.iter().map(|e| e.event_id().unwrap()).collect();
    assert_eq!(ids.len(), N + 1, "every event, once");
    assert!(fake.requests().len() < N / 4, "batched, not one request per hit: {}", fake.requests().len());
    server.finish(&[TOKEN]).await;
}

#[tokio::test]
async fn sigterm_while_meta_is_slow_loses_no_event() {
    const PIXEL: &str = "8200";
    const TOKEN: &str = "EAAtesttokenShutdown3Pl5Ok7Ij9Uh1Yg3Tf5Rd";
    let (site, fake) = Site::with_token(PIXEL, TOKEN);
    // The first request never gets an answer; every other one takes 700 ms.
    fake.script(vec![Answer::Hang]);
    fake.set_delay(Duration::from_millis(700));
    let mut server = site.serve(&fake, &["--capi-flush-interval", "200ms"]);

    let mut ids = Vec::new();
    let mut send = async |group: &str, n: usize| {
        for i in 0..n {
            let id = format!("{group}-{i}");
            server.hit(&q(PIXEL, "purchase", &format!("eid={id}"))).await;
            ids.push(id);
        }
    };
    send("hung", 4).await;
    fake.wait_for_requests(1, Duration::from_secs(10));
    send("slow", 4).await;
    fake.wait_for_requests(2, Duration::from_secs(10));
    // Still in their batch when the signal comes: flushed by the shutdown.
    send("open", 3).await;
    let ids = ids;

    let (stopped_in, logs) = server.stop();
    eprintln!("SIGTERM with Graph requests under way: exited 0 after {stopped_in:?}");

    let delivered: Vec<String> = fake.events().iter().map(|e| e.event_id().unwrap().to_owned()).collect();
    let records = server.records();
    let failed = failed_records(&records);
    for f in &failed {
        assert_eq!(f["reason"], "shutdown", "{f}");
    }
    let given_up: Vec<String> = failed.iter().map(|f| f["event_id"].as_str().unwrap().to_owned()).collect();
    eprintln!("shutdown: {} delivered, {} given up as shutdown, of {}", delivered.len(), given_up.len(), ids.len());

    let delivered_set: HashSet<_> = delivered.iter().cloned().collect();
    let given_up_set: HashSet<_> = given_up.iter().cloned().collect();
    assert_eq!(delivered_set.len(), delivered.len(), "delivered twice: {delivered:?}");
    assert_eq!(given_up_set.len(), given_up.len(), "given up twice: {given_up:?}");
    assert!(delivered_set.is_disjoint(&given_up_set), "both delivered and given up: {delivered:?} / {given_up:?}");
    let accounted: HashSet<_> = delivered_set.union(&given_up_set).cloned().collect();
    let all: HashSet<_> = ids.iter().cloned().collect();
    assert_eq!(accounted, all, "lost: {:?}", all.difference(&accounted).collect::<Vec<_>>());
    // The hung request can only have been given up; the others had time to be delivered.
    assert!(ids.iter().filter(|id| id.starts_with("hung")).all(|id| given_up_set.contains(id)), "{given_up:?}");
    assert!(ids.iter().filter(|id| !id.starts_with("hung")).all(|id| delivered_set.contains(id)), "{delivered:?}");
    assert_eq!(hit_records(&records).len(), ids.len(), "one raw record per hit");
    // After a clean shutdown every raw file is complete.
    assert!(files_below(&server.data.join("raw")).iter().all(|p| !p.to_string_lossy().ends_with(".open")));
    fake.assert_no_violations();
    assert_hidden(&[TOKEN], &logs, "", &server.data);
}

#[tokio::test]
async fn an_unreachable_meta_does_not_hold_up_the_pixel_either() {
    // A Graph URL where nothing listens: requests fail to connect and are retried meanwhile.
    const PIXEL: &str = "8300";
    const TOKEN: &str = "EAAtesttokenNowhere1Az3Sx5Dc7Fv9Gb1Hn3Jm";
    let site = Site::new();
    site.set_token(PIXEL, TOKEN);
    let fake = FakeGraph::start();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let server = site.serve(&fake, &["--graph-url", &dead, "--capi-retry-budget", "1s"]);
    let mut worst = Duration::ZERO;
    for i in 0..50 {
        let started = Instant::now();
        server.hit(&q(PIXEL, "purchase", &format!("eid=nowhere-{i}"))).await;
        worst = worst.max(started.elapsed());
    }
    assert!(worst < Duration::from_millis(50), "{worst:?}");
    let records = server.wait_for_failed(50, Duration::from_secs(15)).await;
    for f in failed_records(&records) {
        assert_eq!(f["reason"], "retries_exhausted", "{f}");
    }
    server.finish(&[TOKEN]).await;
}

#[tokio::test]
async fn sigterm_with_a_hung_meta_gives_up_at_the_shutdown_timeout() {
    // Requests that would wait 30 s for an answer: shutdown gives them up after its own timeout
    // (5 s) instead of waiting, and still exits 0 with every event accounted for.
    const PIXEL: &str = "8400";
    const TOKEN: &str = "EAAtesttokenHungMeta7Yu5Ti3Re1Wq9Pl8Ok6";
    let (site, fake) = Site::with_token(PIXEL, TOKEN);
    fake.fail_next(10, Answer::Hang);
    let mut server = site.serve(&fake, &["--capi-timeout", "30s"]);
    for i in 0..5 {
        server.hit(&q(PIXEL, "purchase", &format!("eid=hang-{i}"))).await;
    }
    fake.wait_for_requests(1, Duration::from_secs(10));
    let (stopped_in, logs) = server.stop();
    eprintln!("SIGTERM with a hung Graph request: exited 0 after {stopped_in:?}");
    assert!(stopped_in < Duration::from_secs(15), "{stopped_in:?}");
    let records = server.records();
    let given_up: HashSet<_> = failed_records(&records)
        .iter()
        .map(|f| {
            assert_eq!(f["reason"], "shutdown", "{f}");
            f["event_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(given_up, (0..5).map(|i| format!("hang-{i}")).collect::<HashSet<_>>());
    assert!(fake.events().is_empty());
    assert_hidden(&[TOKEN], &logs, "", &server.data);
}
