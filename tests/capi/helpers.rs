//! Runs the real `pixelgate` binary against the fake Graph API: a [`Site`] is one data directory
//! (shared by the `tokens` CLI and the servers started on it), a [`Server`] one running server
//! with its stdout and stderr captured to files.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::fake_graph::FakeGraph;

/// A browser user agent, so hits are not flagged `bot`.
pub const BROWSER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

/// The admin key of servers started with [`Site::serve_admin`].
pub const ADMIN_KEY: &str = "capi-admin-key-0123456789";

/// Polls `$cond` (an `Option<T>` expression, may `.await`) every 25 ms until it is `Some`, and
/// evaluates to the value; panics with `$what` (a `Display`) after `$timeout`.
macro_rules! eventually {
    ($timeout:expr, $what:expr, $cond:expr) => {{
        let started = std::time::Instant::now();
        let timeout: std::time::Duration = $timeout;
        loop {
            if let Some(v) = $cond {
                break v;
            }
            assert!(started.elapsed() < timeout, "timed out after {:?} waiting for {}", timeout, $what);
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }};
}
pub(crate) use eventually;

/// One data directory, with the logs of everything run on it.
pub struct Site {
    dir: tempfile::TempDir,
    runs: std::cell::Cell<u32>,
    /// Flags every run gets (the token store's).
    args: Vec<String>,
    /// The only environment variables runs see.
    env: Vec<(&'static str, String)>,
}

/// What a `pixelgate tokens …` run printed.
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// The one JSON object printed on standard output (exit 0 required).
    pub fn json(&self) -> Value {
        assert_eq!(self.code, 0, "exit {}; stderr: {}", self.code, self.stderr);
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {:?}", self.stdout))
    }
}

impl Site {
    pub fn new() -> Site {
        Site { dir: tempfile::tempdir().expect("temp dir"), runs: std::cell::Cell::new(0), args: Vec::new(), env: Vec::new() }
    }

    /// A site whose tokens live in DynamoDB `table` on the shared moto server (the table is
    /// created with `pixelgate tokens create-table`).
    pub fn dynamodb(table: &str) -> Site {
        let mut site = Site::new();
        site.args = ["--tokens", "dynamodb", "--dynamodb-table", table].map(String::from).to_vec();
        site.env = crate::common::moto::aws_env(&crate::common::moto::moto().endpoint);
        let created = site.tokens(&["create-table"], "").json();
        assert_eq!(created["table"], table, "{created}");
        site
    }

    /// `<tmp>/data`, the `--data-dir`.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `pixelgate tokens ARGS --data-dir <data>` with `stdin` piped in and a clean environment.
    pub fn tokens(&self, args: &[&str], stdin: &str) -> CliRun {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pixelgate"))
            .arg("tokens")
            .args(args)
            .arg("--data-dir")
            .arg(self.data())
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        CliRun { code: out.status.code().unwrap_or(-1), stdout: String::from_utf8(out.stdout).unwrap(), stderr: String::from_utf8(out.stderr).unwrap() }
    }

    /// `pixelgate tokens set PIXEL` with the token on standard input; returns the status JSON,
    /// after checking the run printed no token.
    pub fn set_token(&self, pixel: &str, token: &str) -> Value {
        let run = self.tokens(&["set", pixel], &format!("{token}\n"));
        assert!(!run.stdout.contains(token) && !run.stderr.contains(token), "tokens set printed the token");
        let v = run.json();
        assert_eq!((&v["set"], &v["status"]), (&Value::Bool(true), &Value::from("active")), "{v}");
        v
    }

    /// `pixelgate tokens status PIXEL` as JSON.
    pub fn token_status(&self, pixel: &str) -> Value {
        self.tokens(&["status", pixel], "").json()
    }

    /// Starts a server on this data dir, pointed at `fake` (unless `extra` names another
    /// `--graph-url`), with `--log-level debug`, a 100 ms CAPI flush interval unless `extra` sets
    /// one, and `extra` flags.
    pub fn serve(&self, fake: &FakeGraph, extra: &[&str]) -> Server {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let stdout = self.dir.path().join(format!("server{n}.stdout.log"));
        let stderr = self.dir.path().join(format!("server{n}.stderr.log"));
        // clap refuses a flag given twice: a default applies only when `extra` does not set it.
        let url = fake.url();
        let mut args = vec!["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--log-level", "debug"];
        for (flag, default) in [("--capi-flush-interval", "100ms"), ("--graph-url", url.as_str())] {
            if !extra.contains(&flag) {
                args.extend([flag, default]);
            }
        }
        let child = Command::new(env!("CARGO_BIN_EXE_pixelgate"))
            .args(&args)
            .arg("--data-dir")
            .arg(self.data())
            .args(&self.args)
            .args(extra)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("the binary starts");
        let mut server = Server {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            metrics_addr: "0.0.0.0:0".parse().unwrap(),
            data: self.data(),
            stdout,
            stderr,
            http: reqwest::Client::builder().user_agent(BROWSER_UA).build().unwrap(),
            bare: reqwest::Client::builder().build().unwrap(),
        };
        (server.addr, server.metrics_addr) = server.wait_for_serving();
        server
    }

    /// [`Site::serve`] with `--admin-key ADMIN_KEY`.
    pub fn serve_admin(&self, fake: &FakeGraph, extra: &[&str]) -> Server {
        let mut args = vec!["--admin-key", ADMIN_KEY];
        args.extend_from_slice(extra);
        self.serve(fake, &args)
    }
}

/// A running server (killed on drop if the test did not stop it).
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub data: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    /// Sends the browser user agent.
    pub http: reqwest::Client,
    /// Sends no User-Agent at all.
    pub bare: reqwest::Client,
}

impl Server {
    fn wait_for_serving(&mut self) -> (SocketAddr, SocketAddr) {
        let started = Instant::now();
        loop {
            let text = self.logs();
            if let Some(line) = text.lines().find(|l| l.contains(" serving") && l.contains("listen=")) {
                let field = |name: &str| -> SocketAddr {
                    let rest = &line[line.find(&format!("{name}=")).unwrap_or_else(|| panic!("{name} in {line}")) + name.len() + 1..];
                    rest.split_whitespace().next().unwrap().trim_matches('"').parse().unwrap()
                };
                return (field("listen"), field("metrics"));
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the server exited ({status}) before serving: {text}");
            }
            assert!(started.elapsed() < Duration::from_secs(20), "the server did not start serving: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET `/tr?{query}` with the browser user agent; panics unless the GIF comes back.
    pub async fn hit(&self, query: &str) {
        let r = self.http.get(self.url(&format!("/tr?{query}"))).send().await.expect("pixel request");
        assert_eq!(r.status(), 200, "{query}");
        assert_eq!(r.bytes().await.unwrap().len(), 43, "{query}");
    }

    /// An admin API call with `key` (None = no Authorization header): status and body.
    pub async fn admin(&self, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> (u16, String) {
        let mut req = self.http.request(method.parse().unwrap(), self.url(path));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.expect("admin request");
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The admin API with the right key; the body parsed as JSON when there is one.
    pub async fn admin_json(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = self.admin(method, path, Some(ADMIN_KEY), body).await;
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")) })
    }

    /// The Prometheus text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics_addr)).await.unwrap().text().await.unwrap()
    }

    /// stdout and stderr so far.
    pub fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!("{}{}", read(&self.stdout), read(&self.stderr))
    }

    /// Every raw record written so far (complete lines only: the file being written may end
    /// mid-batch while the server runs).
    pub fn records(&self) -> Vec<Value> {
        read_records(&self.data)
    }

    /// SIGTERM, then the exit status (panics if it does not exit within 30 s).
    pub fn terminate(&mut self) -> ExitStatus {
        let logs = (self.stdout.clone(), self.stderr.clone());
        crate::common::terminate(&mut self.child, || {
            format!("{}{}", std::fs::read_to_string(&logs.0).unwrap_or_default(), std::fs::read_to_string(&logs.1).unwrap_or_default())
        })
    }

    /// Scrapes `/metrics`, stops the server with SIGTERM (it must exit 0), and checks that none
    /// of `secrets` appears in its logs, its metrics or any raw record. Returns the logs.
    pub async fn finish(mut self, secrets: &[&str]) -> String {
        let metrics = self.metrics().await;
        let status = self.terminate();
        let logs = self.logs();
        assert!(status.success(), "exit {status}: {logs}");
        assert!(logs.contains("shutdown complete"), "{logs}");
        assert!(logs.contains(" DEBUG "), "the leak check needs the debug-level logs: {logs}");
        assert_hidden(secrets, &logs, &metrics, &self.data);
        logs
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Panics if any of `secrets` shows in `logs`, `metrics` or a raw record file under `data`.
pub fn assert_hidden(secrets: &[&str], logs: &str, metrics: &str, data: &Path) {
    let raw: String = files_below(&data.join("raw")).iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect();
    for secret in secrets {
        assert!(!logs.contains(secret), "a token leaked into the logs");
        assert!(!metrics.contains(secret), "a token leaked into /metrics");
        assert!(!raw.contains(secret), "a token leaked into a raw record");
    }
}

pub use crate::common::{files_below, read_records};

/// Raw records flagged `capi_failed`.
pub fn failed_records(records: &[Value]) -> Vec<&Value> {
    records.iter().filter(|r| is_failed(r)).collect()
}

/// Raw records of hits (not the extra `capi_failed` ones).
pub fn hit_records(records: &[Value]) -> Vec<&Value> {
    records.iter().filter(|r| !is_failed(r)).collect()
}

fn is_failed(r: &Value) -> bool {
    r["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "capi_failed"))
}

/// The value of the sample of `name` whose labels include every `labels` pair; 0 when absent.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{' | b' ')))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.trim().parse::<f64>().ok()))
        .sum()
}

/// `sha256(s)` as lowercase hex.
pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A pixel query for `pixel` with event `event` and a page URL; `more` is appended as is.
pub fn q(pixel: &str, event: &str, more: &str) -> String {
    let mut s = format!("id={pixel}&ev={event}&dl=https%3A%2F%2Fshop.example%2Fp");
    if !more.is_empty() {
        s.push('&');
        s.push_str(more);
    }
    s
}
