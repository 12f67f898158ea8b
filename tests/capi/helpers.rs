//! The real `pixelgate` binary against the fake Graph API: a [`Site`] is one data directory,
//! shared by the `tokens` CLI and the servers started on it; a [`Server`] is one running server
//! (the shared harness's, plus the admin API and the end-of-test checks of these tests).

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::fake_graph::FakeGraph;
use crate::common::moto::{aws_env, moto};
use crate::common::process::{self, Launch, Run};
use crate::common::records::files_below;

/// The admin key of servers started with [`Site::serve_admin`].
pub const ADMIN_KEY: &str = "capi-admin-key-0123456789";

/// The `--secrets-key` of DynamoDB sites (every instance on one table shares one).
pub const SECRETS_KEY: &str = "cGl4ZWxnYXRlLXRlc3RzLXNlY3JldHMta2V5LTMyYiE=";

pub(crate) use crate::eventually;

/// One data directory.
pub struct Site {
    dir: tempfile::TempDir,
    /// Flags every run gets (the token store's).
    args: Vec<String>,
    /// The only environment variables runs see.
    pub env: Vec<(&'static str, String)>,
}

impl Site {
    pub fn new() -> Site {
        Site { dir: tempfile::tempdir().expect("temp dir"), args: Vec::new(), env: Vec::new() }
    }

    /// A new site and a fresh fake Graph API that both hold `token` for `pixel`: set with the
    /// `tokens` CLI here, configured as valid there.
    pub fn with_token(pixel: &str, token: &str) -> (Site, FakeGraph) {
        let site = Site::new();
        site.set_token(pixel, token);
        let fake = FakeGraph::start();
        fake.set_token(pixel, token);
        (site, fake)
    }

    /// A site whose tokens live in DynamoDB `table` on the shared moto server (the table is
    /// created with `pixelgate tokens create-table`).
    pub fn dynamodb(table: &str) -> Site {
        let mut site = Site::new();
        site.args = ["--tokens", "dynamodb", "--dynamodb-table", table, "--secrets-key", SECRETS_KEY].map(String::from).to_vec();
        site.env = aws_env(&moto().endpoint);
        let created = site.tokens(&["create-table"], "").json();
        assert_eq!(created["table"], table, "{created}");
        site
    }

    /// `<tmp>/data`, the `--data-dir`.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `pixelgate tokens ARGS --data-dir <data>` with the site's store flags and `stdin`.
    pub fn tokens(&self, args: &[&str], stdin: &str) -> Run {
        let args: Vec<&str> = args.iter().copied().chain(self.args.iter().map(String::as_str)).collect();
        process::tokens(&self.data(), &args, stdin, &self.env)
    }

    /// `pixelgate tokens set PIXEL` with the token on standard input; returns the status JSON,
    /// after checking the run printed no token.
    pub fn set_token(&self, pixel: &str, token: &str) -> Value {
        let run = self.tokens(&["set", pixel], &format!("{token}\n"));
        run.assert_hides(token);
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
        let launch = Launch::new()
            .args(["--log-level", "debug"])
            .args(&self.args)
            .args(extra)
            .envs(self.env.iter().cloned())
            .default_flag("--capi-flush-interval", "100ms")
            .default_flag("--graph-url", fake.url())
            .data_dir(&self.data());
        Server(launch.serve())
    }

    /// [`Site::serve`] with `--admin-key ADMIN_KEY`.
    pub fn serve_admin(&self, fake: &FakeGraph, extra: &[&str]) -> Server {
        let mut args = vec!["--admin-key", ADMIN_KEY];
        args.extend_from_slice(extra);
        self.serve(fake, &args)
    }
}

/// A running server (killed on drop if the test did not stop it).
pub struct Server(process::Server);

impl Deref for Server {
    type Target = process::Server;
    fn deref(&self) -> &process::Server {
        &self.0
    }
}

impl DerefMut for Server {
    fn deref_mut(&mut self) -> &mut process::Server {
        &mut self.0
    }
}

impl Server {
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

    /// Waits (at most `within`) until the raw records hold at least `n` delivery records;
    /// returns every record.
    pub async fn wait_for_failed(&self, n: usize, within: Duration) -> Vec<Value> {
        eventually!(within, format!("{n} delivery record(s)"), {
            let r = self.records();
            (failed_records(&r).len() >= n).then_some(r)
        })
    }

    /// SIGTERM, which it must answer by exiting 0; how long that took, and the logs.
    pub fn stop(&mut self) -> (Duration, String) {
        let started = Instant::now();
        let status = self.terminate();
        let stopped_in = started.elapsed();
        let logs = self.logs();
        assert!(status.success(), "exit {status}: {logs}");
        (stopped_in, logs)
    }

    /// Scrapes `/metrics`, stops the server with SIGTERM (it must exit 0), and checks that none
    /// of `secrets` appears in its logs, its metrics or any raw record. Returns the logs.
    pub async fn finish(mut self, secrets: &[&str]) -> String {
        let metrics = self.metrics().await;
        let (_, logs) = self.stop();
        assert!(logs.contains("shutdown complete"), "{logs}");
        assert!(logs.contains(" DEBUG "), "the leak check needs the debug-level logs: {logs}");
        assert_hidden(secrets, &logs, &metrics, &self.data);
        logs
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

/// The delivery records among the raw records: what a destination gave up, one per event.
/// Each is checked to be a failed delivery to Meta and to carry none of a hit's fields.
pub fn failed_records(records: &[Value]) -> Vec<&Value> {
    let failed: Vec<&Value> = records.iter().filter(|r| r["schema"] == "pixelgate.delivery/1").collect();
    for f in &failed {
        assert_eq!((&f["destination"], &f["outcome"]), (&Value::from("meta"), &Value::from("failed")), "{f}");
        assert!(f["user"].is_null() && f["user_agent"].is_null() && f["ip"].is_null(), "never a copy of the hit: {f}");
    }
    failed
}

/// The raw records of hits (`pixelgate.hit/1`).
pub fn hit_records(records: &[Value]) -> Vec<&Value> {
    records.iter().filter(|r| r["schema"] == "pixelgate.hit/1").collect()
}

/// `sha256(s)` as lowercase hex.
pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The pixel path `/tr?…` of a hit for `pixel` with event `event` and a page URL; `more` is
/// appended to the query as is.
pub fn q(pixel: &str, event: &str, more: &str) -> String {
    let mut s = format!("/tr?id={pixel}&ev={event}&dl=https%3A%2F%2Fshop.example%2Fp");
    if !more.is_empty() {
        s.push('&');
        s.push_str(more);
    }
    s
}
