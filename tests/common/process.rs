//! The real `pixelgate` binary, driven the one way every test binary drives it:
//! - [`pixelgate`] runs a command to completion (`pixelgate tokens …`, a start-up that must fail,
//!   `--help`) with standard input piped in, and returns what it printed ([`Run`]);
//! - [`Launch`] starts a long-running process: with [`Launch::spawn`] exactly as configured (the
//!   Lambda door, started the way Lambda starts it), with [`Launch::serve`] as a server on free
//!   loopback ports and a data dir of its own, waited for until it serves ([`Server`]).
//!
//! Every process gets a clean environment, only what the test passes, so neither a developer's
//! `PIXELGATE_*` settings nor their AWS profile leak in; its standard output and error go to one
//! log file in a temp dir the [`Process`] owns, and dropping it kills the process.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::metrics::{metric, scrape};
use super::net::{get_gif, http_get};
use super::records::read_records_so_far;
use super::user_agents::BROWSER_UA;

/// How long a server may take from its start to answering `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a process may take to exit after SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The binary under test: `$PIXELGATE_BIN` (e.g. the release build, for `bench/lambda.sh`), else
/// the one cargo built for these tests.
pub fn binary() -> PathBuf {
    std::env::var_os("PIXELGATE_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pixelgate")), PathBuf::from)
}

/// What a run of the binary printed.
#[derive(Debug)]
pub struct Run {
    /// The exit code (-1 if a signal ended it).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The one line of JSON printed on standard output (exit 0 required).
    pub fn json(&self) -> Value {
        assert_eq!(self.code, 0, "exit {}; stderr: {}", self.code, self.stderr);
        assert_eq!(self.stdout.lines().count(), 1, "one line of JSON: {:?}", self.stdout);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", self.stdout))
    }

    /// Panics unless the run failed with `code`, printing nothing on standard output and exactly
    /// one line, `pixelgate: …`, on standard error; returns that line.
    pub fn one_line_error(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "stdout: {} stderr: {}", self.stdout, self.stderr);
        assert_eq!(self.stderr.lines().count(), 1, "one line: {:?}", self.stderr);
        assert!(self.stderr.starts_with("pixelgate: "), "{}", self.stderr);
        assert!(self.stdout.is_empty(), "nothing on stdout: {:?}", self.stdout);
        self.stderr.trim_end()
    }

    /// Panics if `secret` appears in anything the run printed.
    pub fn assert_hides(&self, secret: &str) {
        assert!(!self.stdout.contains(secret) && !self.stderr.contains(secret), "the token leaked: {} {}", self.stdout, self.stderr);
    }
}

/// `pixelgate ARGS` run to completion, with `stdin` piped in and only `env` set.
pub fn pixelgate(args: &[&str], stdin: &str, env: &[(&str, String)]) -> Run {
    let mut child = Command::new(binary())
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Run { code: out.status.code().unwrap_or(-1), stdout: String::from_utf8(out.stdout).unwrap(), stderr: String::from_utf8(out.stderr).unwrap() }
}

/// `pixelgate tokens ARGS --data-dir DATA` run to completion (see [`pixelgate`]).
pub fn tokens(data: &Path, args: &[&str], stdin: &str, env: &[(&str, String)]) -> Run {
    let data = data.to_str().expect("a UTF-8 data dir");
    pixelgate(&[&["tokens"], args, &["--data-dir", data]].concat(), stdin, env)
}

/// Sends the signal `name` (`TERM`, `STOP`, `CONT`) to process `pid` with kill(1); whether it
/// was delivered.
///
/// kill(1), not kill(2), as the harness always has: the fork and exec take a few milliseconds,
/// and without them a Lambda test's SIGTERM can land within a millisecond of the first
/// `invocation/next`, before the binary has installed its SIGTERM handler (it installs it on
/// first poll), and the default action ends it with status 15.
pub fn signal(pid: u32, name: &str) -> bool {
    Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().is_ok_and(|s| s.success())
}

/// How to start the binary as a long-running process.
#[derive(Default)]
pub struct Launch {
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    defaults: Vec<(String, OsString)>,
    data: Option<PathBuf>,
}

impl Launch {
    /// No arguments, an empty environment.
    pub fn new() -> Launch {
        Launch::default()
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Launch {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Launch {
        self.env.push((key.into(), value.as_ref().to_owned()));
        self
    }

    pub fn envs<K: AsRef<OsStr>, V: AsRef<OsStr>>(mut self, env: impl IntoIterator<Item = (K, V)>) -> Launch {
        self.env.extend(env.into_iter().map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())));
        self
    }

    /// Adds `flag value` at start unless the arguments give `flag` or the environment sets its
    /// variable (`--graph-url` → `PIXELGATE_GRAPH_URL`): clap refuses a flag given twice, and a
    /// test of the variable must not have the flag override it.
    pub fn default_flag(mut self, flag: &str, value: impl AsRef<OsStr>) -> Launch {
        self.defaults.push((flag.to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Serves on `dir` instead of a fresh data dir, so that a later process or the `tokens` CLI
    /// can use the same one.
    pub fn data_dir(mut self, dir: &Path) -> Launch {
        self.data = Some(dir.to_owned());
        self
    }

    /// Starts the process with exactly the arguments and environment given.
    pub fn spawn(self) -> Process {
        self.spawn_in(tempfile::tempdir().expect("temp dir"))
    }

    /// Starts it as a server — on `127.0.0.1:0` for the pixel and the metrics, on a fresh data
    /// dir unless [`Launch::data_dir`] named one (each flag unless given) — and waits until it
    /// logs the addresses it serves on and answers `/healthz`.
    pub fn serve(mut self) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = self.data.take().unwrap_or_else(|| dir.path().join("data"));
        let mut process = self.default_flag("--listen", "127.0.0.1:0").default_flag("--metrics-listen", "127.0.0.1:0").default_flag("--data-dir", &data).spawn_in(dir);
        let (addr, metrics_addr) = process.wait_until(serving_addresses, "log the addresses it serves on");
        process.wait_until(|_| http_get(addr, "/healthz").is_some_and(|(status, _)| status == 200).then_some(()), "answer /healthz");
        let http = reqwest::Client::builder().user_agent(BROWSER_UA).build().unwrap();
        Server { process, addr, metrics_addr, data, http }
    }

    /// Starts the process with its log in `dir`, which the [`Process`] then owns.
    fn spawn_in(self, dir: tempfile::TempDir) -> Process {
        let log = dir.path().join("pixelgate.log");
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let mut args = self.args;
        for (flag, value) in self.defaults {
            let variable = format!("PIXELGATE_{}", flag.trim_start_matches('-').replace('-', "_").to_uppercase());
            if !args.iter().any(|a| *a == *flag) && !self.env.iter().any(|(k, _)| *k == *variable) {
                args.extend([flag.into(), value]);
            }
        }
        let spawned_at = Instant::now();
        let child = Command::new(binary()).args(&args).env_clear().envs(self.env).stdin(Stdio::null()).stdout(out).stderr(err).spawn().expect("the binary starts");
        Process { child, spawned_at, log, _dir: dir }
    }
}

/// The addresses of the binary's `serving` log line (text or JSON format), once it is there.
fn serving_addresses(logs: &str) -> Option<(SocketAddr, SocketAddr)> {
    let line = logs.lines().find(|l| l.contains("serving") && (l.contains("listen=") || l.contains("\"listen\"")))?;
    if line.starts_with('{') {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let field = |name: &str| v[name].as_str().unwrap_or_else(|| panic!("{name} in {line}")).parse().unwrap();
        return Some((field("listen"), field("metrics")));
    }
    let field = |name: &str| -> SocketAddr {
        let rest = &line[line.find(&format!("{name}=")).unwrap_or_else(|| panic!("{name} in {line}")) + name.len() + 1..];
        rest.split_whitespace().next().unwrap().trim_matches('"').parse().unwrap()
    };
    Some((field("listen"), field("metrics")))
}

/// A running `pixelgate` process; dropping it kills it.
pub struct Process {
    pub child: Child,
    pub spawned_at: Instant,
    log: PathBuf,
    /// Holds the log and, for a server without [`Launch::data_dir`], the data dir.
    _dir: tempfile::TempDir,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote to standard output and standard error so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status; panics, with the logs, if it does not exit
    /// within 30 s.
    pub fn terminate(&mut self) -> ExitStatus {
        assert!(signal(self.pid(), "TERM"), "SIGTERM to {}", self.pid());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < EXIT_TIMEOUT, "did not exit within {EXIT_TIMEOUT:?} of SIGTERM: {}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `ready` on the logs so far until it gives a value; panics, with the logs, if the
    /// process exits first or [`START_TIMEOUT`] passes.
    fn wait_until<T>(&mut self, mut ready: impl FnMut(&str) -> Option<T>, what: &str) -> T {
        let started = Instant::now();
        loop {
            let logs = self.logs();
            if let Some(found) = ready(&logs) {
                return found;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("pixelgate exited ({status}) before it could {what}: {logs}");
            }
            assert!(started.elapsed() < START_TIMEOUT, "pixelgate did not {what} within {START_TIMEOUT:?}: {logs}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running server: the process, where it listens, its data dir, and a browser to hit it with.
pub struct Server {
    pub process: Process,
    /// The pixel listener.
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub data: PathBuf,
    /// Sends the browser user agent.
    pub http: reqwest::Client,
}

impl Server {
    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET `path_and_query` with the browser user agent; panics unless the GIF comes back.
    pub async fn hit(&self, path_and_query: &str) {
        get_gif(&self.http, &self.url(path_and_query)).await;
    }

    /// A blocking GET on the pixel listener: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path).unwrap_or_else(|| panic!("{path} answers"))
    }

    /// `GET /readyz`: status and body.
    pub fn readyz(&self) -> (u16, String) {
        self.get("/readyz")
    }

    /// Its Prometheus text.
    pub async fn metrics(&self) -> String {
        scrape(self.metrics_addr).await
    }

    /// One scrape's value of `name` summed over the series with `labels` (see [`metric`]).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.metrics().await, name, labels)
    }

    /// Every complete raw record written so far (see [`read_records_so_far`]).
    pub fn records(&self) -> Vec<Value> {
        read_records_so_far(&self.data)
    }

    /// What it logged so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// SIGTERM, then the exit status (see [`Process::terminate`]).
    pub fn terminate(&mut self) -> ExitStatus {
        self.process.terminate()
    }
}
