//! A fast stand-in for Meta's Graph API, for `bench/capi.sh`: hyper on one thread, so that at
//! 100,000 events per second the fake is never what limits the benchmark (`bench/fake_graph.py`
//! stays for the slow cases).
//!
//! Answers `POST /{version}/{pixel_id}/events` with `{"events_received":N,"fbtrace_id":"bench"}`
//! after `--delay-ms`, and counts requests, events, distinct `(pixel, event_id)` pairs and
//! duplicates. It does not parse the whole body: it finds the `"access_token"` (which must be
//! `--token-prefix` + pixel id, and never in the URL) and each event's `"event_id"` by their keys.
//! A request that breaks one of those rules is a violation: answered 400 (code 100) and counted.
//! `GET /stats` answers the counters as JSON, in the shape `bench/fake_graph.py` uses.
//!
//!     cargo run --release --example fake_graph_fast -- --port 18080 --delay-ms 0 --token-prefix bench-token-

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Default)]
struct Stats {
    requests: u64,
    events: u64,
    min_batch: Option<u64>,
    max_batch: u64,
    /// A 64-bit digest of each `(pixel, event_id)` received, in arrival order; distinct ones and
    /// duplicates are counted when the stats are asked for (sorted then). A digest (foldhash)
    /// instead of the id itself: SipHash over boxed ids was 40 % of the fake's CPU, on the core
    /// wrk measures from. Appended, not inserted into a hash set: the set's growth rehashed up to
    /// a million digests in one go, a 4 ms run (one scheduler tick, `perf sched`) that held wrk
    /// off its core in the middle of the load. Two different ids sharing a digest (odds about 1
    /// in 10^7 at a million events) would show as a duplicate, never hide one.
    seen: Vec<u64>,
    pixels: HashSet<u64>,
    violations: BTreeMap<&'static str, u64>,
    in_flight: u64,
    max_in_flight: u64,
}

struct Fake {
    stats: Mutex<Stats>,
    delay: Duration,
    token_prefix: Option<String>,
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder().status(status).header("content-type", "application/json").body(Full::new(Bytes::from(body))).expect("a static answer")
}

impl Fake {
    fn violation(&self, reason: &'static str) -> Response<Full<Bytes>> {
        *self.stats.lock().unwrap().violations.entry(reason).or_default() += 1;
        let body = format!(r#"{{"error":{{"message":"{reason}","type":"GraphMethodException","code":100,"is_transient":false,"fbtrace_id":"bench"}}}}"#);
        json(StatusCode::BAD_REQUEST, body)
    }

    fn stats(&self) -> Response<Full<Bytes>> {
        let mut s = self.stats.lock().unwrap();
        s.seen.sort_unstable();
        let unique = s.seen.len() - s.seen.windows(2).filter(|w| w[0] == w[1]).count();
        let duplicates = s.seen.len() - unique;
        let mean = if s.requests > 0 { s.events as f64 / s.requests as f64 } else { 0.0 };
        let kinds: Vec<String> = s.violations.iter().map(|(k, v)| format!(r#""{k}":{v}"#)).collect();
        let body = format!(
            r#"{{"requests":{},"events":{},"unique_events":{},"duplicates":{},"events_per_request":{{"mean":{:.2},"min":{},"max":{}}},"pixels":{},"violations":{},"violation_kinds":{{{}}},"max_in_flight":{}}}"#,
            s.requests,
            s.events,
            unique,
            duplicates,
            mean,
            s.min_batch.unwrap_or(0),
            s.max_batch,
            s.pixels.len(),
            s.violations.values().sum::<u64>(),
            kinds.join(","),
            s.max_in_flight
        );
        json(StatusCode::OK, body)
    }

    async fn events(&self, pixel: u64, query: Option<&str>, body: &[u8]) -> Response<Full<Bytes>> {
        if query.is_some_and(|q| q.contains("access_token")) {
            return self.violation("token_in_url");
        }
        let Some(token) = string_after(body, b"\"access_token\":\"") else { return self.violation("no_token_in_body") };
        if let Some(prefix) = &self.token_prefix
            && token != format!("{prefix}{pixel}").as_bytes()
        {
            return self.violation("wrong_token");
        }
        let ids: Vec<&[u8]> = memchr::memmem::find_iter(body, b"\"event_id\":\"").filter_map(|at| string_after(&body[at..], b"\"event_id\":\"")).collect();
        let names = memchr::memmem::find_iter(body, b"\"event_name\":\"").count();
        let agents = memchr::memmem::find_iter(body, b"\"client_user_agent\":\"").count();
        if ids.is_empty() || ids.len() > 1000 {
            return self.violation("bad_data");
        }
        if names != ids.len() || agents != ids.len() {
            return self.violation("event_missing_field");
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let n = ids.len() as u64;
        {
            let mut s = self.stats.lock().unwrap();
            s.requests += 1;
            s.events += n;
            s.min_batch = Some(s.min_batch.map_or(n, |m| m.min(n)));
            s.max_batch = s.max_batch.max(n);
            s.pixels.insert(pixel);
            s.seen.extend(ids.into_iter().map(|id| digest(pixel, id)));
        }
        json(StatusCode::OK, format!(r#"{{"events_received":{n},"fbtrace_id":"bench"}}"#))
    }

    async fn serve(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let (parts, body) = req.into_parts();
        if parts.method == http::Method::GET && parts.uri.path() == "/stats" {
            return Ok(self.stats());
        }
        let segments: Vec<&str> = parts.uri.path().trim_start_matches('/').split('/').collect();
        let pixel = match segments.as_slice() {
            [version, pixel, "events"] if version.starts_with('v') => pixel.parse::<u64>().ok(),
            _ => None,
        };
        let Some(pixel) = pixel else { return Ok(self.violation("bad_path")) };
        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else { return Ok(self.violation("body_unreadable")) };
        {
            let mut s = self.stats.lock().unwrap();
            s.in_flight += 1;
            s.max_in_flight = s.max_in_flight.max(s.in_flight);
        }
        let answer = self.events(pixel, parts.uri.query(), &body).await;
        self.stats.lock().unwrap().in_flight -= 1;
        // A breath after each request, as pixelgate's own background threads take (src/pace.rs):
        // it shares a core with wrk, and the forwarder sends a pixel's batches together, so ten
        // 600 KiB requests arrive at once. Read and checked in one go they kept wrk off the CPU
        // for 2-5 ms at a time, and wrk counted that in the pixel's latency. Sleeping (about
        // 50 us with the kernel's timer slack) lets a waiting wrk run between two requests.
        std::thread::sleep(Duration::from_micros(1));
        Ok(answer)
    }
}

/// The digest of one event's `(pixel, event_id)`, the same in every run.
fn digest(pixel: u64, id: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::quality::FixedState::with_seed(0x5eed).hash_one((pixel, id))
}

/// The JSON string value that follows `key` (no escapes expected in tokens and ids).
fn string_after<'a>(body: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let start = memchr::memmem::find(body, key)? + key.len();
    let len = memchr::memchr(b'"', &body[start..])?;
    Some(&body[start..start + len])
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = arg(&args, "--port").and_then(|p| p.parse().ok()).unwrap_or(0);
    let delay = Duration::from_millis(arg(&args, "--delay-ms").and_then(|d| d.parse().ok()).unwrap_or(0));
    let fake = Arc::new(Fake { stats: Mutex::default(), delay, token_prefix: arg(&args, "--token-prefix") });
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await.expect("bind");
    eprintln!("fake_graph_fast: listening on {}, delay {delay:?}", listener.local_addr().expect("address"));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let fake = fake.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| fake.clone().serve(req));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
            _ = term.recv() => break,
        }
    }
    let stats = fake.stats();
    let body = stats.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    println!("{}", String::from_utf8_lossy(&body));
}
