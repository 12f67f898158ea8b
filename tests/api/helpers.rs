//! Starts pixelgate for a test: in-process on port 0 ([`spawn_app`]) or as the real binary
//! ([`spawn_binary`]), each with its own data directory, and reads back the records it wrote.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pixelgate::App;
use pixelgate::config::Cli;
use pixelgate::pipeline::Dispatcher;
use serde_json::Value;
use tokio::sync::oneshot;

/// A browser user agent, so hits are not flagged `bot`.
pub const BROWSER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

/// A running in-process app.
pub struct TestApp {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub data: tempfile::TempDir,
    pub client: reqwest::Client,
    dispatcher: Dispatcher,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Starts the app with `extra` flags on 127.0.0.1:0.
pub async fn spawn_app(extra: &[&str]) -> TestApp {
    spawn_app_on("127.0.0.1:0", extra).await
}

/// Starts the app with `extra` flags on `listen`.
pub async fn spawn_app_on(listen: &str, extra: &[&str]) -> TestApp {
    let data = tempfile::tempdir().expect("temp dir");
    let mut args = vec!["pixelgate", "--listen", listen, "--metrics-listen", "127.0.0.1:0", "--data-dir"];
    let dir = data.path().to_str().expect("utf-8 temp path").to_owned();
    args.push(&dir);
    args.extend_from_slice(extra);
    let cli = Cli::try_parse_args(&args).expect("test flags parse");
    let app = App::build(cli.settings().expect("valid settings")).await.expect("app builds");
    let (addr, metrics_addr, dispatcher) = (app.local_addr(), app.metrics_addr(), app.dispatcher());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder().user_agent(BROWSER_UA).build().expect("client");
    TestApp { addr, metrics_addr, data, client, dispatcher, stop: Some(stop), task: Some(task) }
}

impl TestApp {
    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET with the browser user agent; panics unless the GIF comes back.
    pub async fn hit(&self, path_and_query: &str) {
        let r = self.client.get(self.url(path_and_query)).send().await.expect("request");
        assert_eq!(r.status(), 200, "{path_and_query}");
        assert_eq!(r.bytes().await.unwrap().len(), 43);
    }

    /// Every record written so far (after a flush), in file order.
    pub async fn records(&self) -> Vec<Value> {
        self.dispatcher.flush().await;
        read_records(self.data.path(), true)
    }

    /// The one record written so far.
    pub async fn only_record(&self) -> Value {
        let mut r = self.records().await;
        assert_eq!(r.len(), 1, "expected one record: {r:#?}");
        r.remove(0)
    }

    /// The Prometheus text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics_addr)).await.unwrap().text().await.unwrap()
    }

    /// Stops the app the way a signal would and waits for it to finish.
    pub async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.expect("app task").expect("app run");
        self.data
    }
}

/// Parses every record under `<data>/raw`; with `include_open`, files still being written too.
pub fn read_records(data: &Path, include_open: bool) -> Vec<Value> {
    let mut files: Vec<PathBuf> = files_below(&data.join("raw"))
        .into_iter()
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".ndjson") || (include_open && name.ends_with(".ndjson.open"))
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{} ends mid-line", f.display());
        for line in text.lines() {
            out.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line in {}: {e}: {line}", f.display())));
        }
    }
    out
}

/// The real binary, running.
pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub data: PathBuf,
    pub stderr: PathBuf,
    _dir: tempfile::TempDir,
}

/// A free loopback port (bound then released), for tests that must name an address up front.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `target/.../pixelgate` with `args` on ports it picks itself (read back from its
/// "serving" log line), its own data dir and a log file, and waits for `/healthz` to answer.
pub fn spawn_binary(args: &[&str], env: &[(&str, &str)]) -> Binary {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let stderr = dir.path().join("stderr.log");
    let child = Command::new(env!("CARGO_BIN_EXE_pixelgate"))
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("binary starts");
    let (addr, metrics_addr) = wait_for_serving(&stderr);
    let started = Instant::now();
    while !healthy(addr) {
        assert!(started.elapsed() < Duration::from_secs(10), "no /healthz: {}", std::fs::read_to_string(&stderr).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(20));
    }
    Binary { child, addr, metrics_addr, data, stderr, _dir: dir }
}

/// The addresses of the first "serving" line in a log file.
pub fn wait_for_serving(log: &Path) -> (SocketAddr, SocketAddr) {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("serving")) {
            if line.starts_with('{') {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let field = |name: &str| v[name].as_str().unwrap_or_else(|| panic!("{name} in {line}")).parse().unwrap();
                return (field("listen"), field("metrics"));
            }
            let field = |name: &str| -> SocketAddr {
                let rest = &line[line.find(&format!("{name}=")).unwrap_or_else(|| panic!("{name} in {line}")) + name.len() + 1..];
                rest.split_whitespace().next().unwrap().trim_matches('"').parse().unwrap()
            };
            return (field("listen"), field("metrics"));
        }
        assert!(started.elapsed() < Duration::from_secs(10), "binary did not start serving: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn healthy(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return false };
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

/// The value of one Prometheus sample (`name{labels}`), 0 when absent.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

impl Binary {
    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let log = self.stderr.clone();
        crate::common::terminate(&mut self.child, || std::fs::read_to_string(&log).unwrap_or_default())
    }

    /// What the binary logged.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }

    /// Its Prometheus text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics_addr)).await.unwrap().text().await.unwrap()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends raw bytes on a fresh connection and returns what came back before the server closed
/// the connection or `wait` passed.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    out
}

pub use crate::common::files_below;
