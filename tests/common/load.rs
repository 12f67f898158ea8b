//! Load for tests that stop or cut something under way: browsers hitting the pixel concurrently,
//! each hit with an event id of its own, so what was answered can be checked against what was
//! delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::user_agents::BROWSER_UA;

/// Sends pixel hits to `base` (`http://host:port`) from `clients` concurrent keep-alive browsers,
/// each at most one per `pace`, until `stop` turns true (or `max_each` per client). Returns the
/// event ids (`{tag}-{client}-{n}`) answered with the GIF, and every request's latency.
pub async fn load(base: String, tag: &str, clients: usize, max_each: usize, pace: Duration, stop: Arc<AtomicBool>) -> (Vec<String>, Vec<Duration>) {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (base, stop, tag) = (base.clone(), stop.clone(), tag.to_owned());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().user_agent(BROWSER_UA).timeout(Duration::from_secs(5)).build().unwrap();
            let (mut answered, mut latencies) = (Vec::new(), Vec::new());
            let mut every = tokio::time::interval(pace.max(Duration::from_micros(1)));
            for i in 0..max_each {
                every.tick().await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let id = format!("{tag}-{c}-{i}");
                let started = Instant::now();
                let r = http.get(format!("{base}/p.gif?pixel_id=1&event=PageView&event_id={id}&evat_n={i}")).send().await;
                let ok = match r {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok_and(|b| b.len() == 43),
                    Err(_) => false,
                };
                latencies.push(started.elapsed());
                if ok {
                    answered.push(id);
                }
            }
            (answered, latencies)
        }));
    }
    let (mut answered, mut latencies) = (Vec::new(), Vec::new());
    for t in tasks {
        let (a, l) = t.await.unwrap();
        answered.extend(a);
        latencies.extend(l);
    }
    (answered, latencies)
}

/// [`load`] of `each` hits per client, back to back: the ids answered.
pub async fn hits(base: String, tag: &str, clients: usize, each: usize) -> Vec<String> {
    load(base, tag, clients, each, Duration::ZERO, Arc::new(AtomicBool::new(false))).await.0
}
