//! The real parts for the Firehose tests: the real `pixelgate` binary pointed at moto (or the
//! proxy in front of it that stages an outage, `crate::common::proxy`) through the standard AWS
//! environment, and the load the tests put on it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};


/// A browser user agent, so hits are not flagged `bot`.
pub const BROWSER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub use crate::common::moto::{aws_env, moto};
pub use crate::common::proxy::{Link, Proxy};
pub use crate::common::stream::create_stream;

/// The real binary, running with the Firehose sink.
pub struct Pixelgate {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub log: PathBuf,
}

/// Flags that make retries, flushes and shutdown quick enough for tests.
pub const FAST: &[&str] = &[
    "--firehose-flush-interval",
    "200ms",
    "--firehose-timeout",
    "500ms",
    "--firehose-backoff",
    "20ms",
    "--firehose-backoff-max",
    "200ms",
    "--firehose-retry-budget",
    "1s",
    "--firehose-shutdown-timeout",
    "1s",
];

/// Starts `pixelgate --sink firehose --firehose-stream STREAM` with `data` as its data dir and
/// AWS pointed at `endpoint`; waits until it answers `/healthz`.
pub fn spawn_pixelgate(endpoint: &str, stream: &str, data: &Path, extra: &[&str]) -> Pixelgate {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = data.with_extension(format!("{}.log", addr.port()));
    let child = Command::new(env!("CARGO_BIN_EXE_pixelgate"))
        .args(["serve", "--sink", "firehose", "--firehose-stream", stream, "--listen", &addr.to_string(), "--metrics-listen", &metrics_addr.to_string()])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .envs(aws_env(endpoint))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("binary starts");
    let mut pg = Pixelgate { child, addr, metrics_addr, log };
    let started = Instant::now();
    while http_get(pg.addr, "/healthz").is_none_or(|(status, _)| status != 200) {
        if let Some(status) = pg.child.try_wait().unwrap() {
            panic!("pixelgate exited ({status}): {}", pg.logs());
        }
        assert!(started.elapsed() < Duration::from_secs(20), "pixelgate did not answer /healthz: {}", pg.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    pg
}

impl Pixelgate {
    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let log = self.log.clone();
        crate::common::terminate(&mut self.child, || std::fs::read_to_string(&log).unwrap_or_default())
    }

    /// What the binary logged.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The sum of a metric's series whose labels contain every `label="value"` given.
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let (_, text) = http_get(self.metrics_addr, "/metrics").expect("/metrics answers");
        text.lines()
            .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{' | b' ')))
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// `GET /readyz`: status and body.
    pub fn readyz(&self) -> (u16, String) {
        http_get(self.addr, "/readyz").expect("/readyz answers")
    }
}

impl Drop for Pixelgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP/1.0 GET: status and body, `None` if the server cannot be reached.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut reader = BufReader::new(s);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).ok()?;
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut rest = String::new();
    reader.read_to_string(&mut rest).ok()?;
    let body = rest.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_owned());
    Some((status, body))
}

/// Sends pixel hits from `clients` concurrent keep-alive clients, each at most one per `pace`,
/// until `stop` turns true (or `max_each` per client); returns the event ids answered with the
/// GIF and each request's latency.
pub async fn load(base: String, tag: &str, clients: usize, max_each: usize, pace: Duration, stop: Arc<std::sync::atomic::AtomicBool>) -> (Vec<String>, Vec<Duration>) {
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

/// The `q`-quantile (0..=1) of `samples`.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

/// Panics unless every id in `answered` was delivered exactly once.
pub fn assert_exactly_once(answered: &[String], delivered: &HashMap<String, usize>) {
    let missing: Vec<_> = answered.iter().filter(|id| !delivered.contains_key(*id)).take(5).collect();
    let twice: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(missing.is_empty() && twice.is_empty(), "{} answered, {} delivered; missing e.g. {missing:?}; more than once e.g. {twice:?}", answered.len(), delivered.len());
}
