//! The function under test, started as Lambda starts it, and the events of `events/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::lambda_emulator::{Emulator, lambda_env};
pub use crate::common::proxy::SlowProxy;

/// The binary under test: `PIXELGATE_BIN` (e.g. the release build, for `bench/lambda.sh`), else
/// the one cargo built for these tests.
pub fn binary() -> PathBuf {
    std::env::var_os("PIXELGATE_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pixelgate")), PathBuf::from)
}

/// The repository's `events/` directory.
pub fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("events")
}

/// `events/<name>` as JSON.
pub fn event(name: &str) -> Value {
    let path = events_dir().join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// The GTM custom-image event (`events/gtm-custom-image.json`) for pixel `pixel` with event id
/// `event_id` (the rest of the query as in the file), `queryStringParameters` rebuilt to match.
pub fn pixel_event(pixel: &str, event_id: &str) -> Value {
    let mut e = event("gtm-custom-image.json");
    let raw = e["rawQueryString"].as_str().unwrap().to_owned();
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| {
            let v = match &*k {
                "pixel_id" => pixel.to_owned(),
                "event_id" => event_id.to_owned(),
                _ => v.into_owned(),
            };
            (k.into_owned(), v)
        }))
        .finish();
    let mut decoded = serde_json::Map::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        decoded.insert(k.into_owned(), Value::String(v.into_owned()));
    }
    e["rawQueryString"] = Value::String(query);
    e["queryStringParameters"] = Value::Object(decoded);
    e
}

/// The function's process.
pub struct LambdaFn {
    pub child: Child,
    pub log: PathBuf,
    pub spawned_at: Instant,
}

/// Starts the bare binary as Lambda does: no arguments, `AWS_LAMBDA_*` pointing at `emulator`,
/// `PIXELGATE_DATA_DIR=data`, plus `env`.
pub fn spawn(emulator: &Emulator, data: &Path, env: &[(&str, String)]) -> LambdaFn {
    std::fs::create_dir_all(data).unwrap();
    let mut env = env.to_vec();
    env.push(("PIXELGATE_DATA_DIR", data.to_string_lossy().into_owned()));
    start(emulator, data.with_extension("log"), &env)
}

/// [`spawn`] without `PIXELGATE_DATA_DIR`; the log goes to a temp file.
pub fn spawn_without_data_dir(emulator: &Emulator, env: &[(&str, String)]) -> LambdaFn {
    let log = std::env::temp_dir().join(format!("pixelgate-lambda-{}-{}.log", std::process::id(), emulator.runtime_api().replace(':', "-")));
    start(emulator, log, env)
}

fn start(emulator: &Emulator, log: PathBuf, env: &[(&str, String)]) -> LambdaFn {
    let spawned_at = Instant::now();
    let child = Command::new(binary())
        .env_clear()
        .envs(lambda_env(&emulator.runtime_api()))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .spawn()
        .expect("the binary starts");
    emulator.freeze_between_invocations(child.id());
    LambdaFn { child, log, spawned_at }
}

impl LambdaFn {
    /// What the function logged.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Thaws the process and sends SIGTERM (as Lambda does before shutting the environment
    /// down); returns the exit status and how long the process took to exit.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        self.thaw();
        let started = Instant::now();
        let log = self.log.clone();
        let status = crate::common::terminate(&mut self.child, || std::fs::read_to_string(&log).unwrap_or_default());
        (status, started.elapsed())
    }
}

impl LambdaFn {
    fn thaw(&self) {
        let _ = Command::new("kill").arg("-CONT").arg(self.child.id().to_string()).status();
    }

    /// Shutdown as Lambda does it: thaw, SIGTERM, and SIGKILL 500 ms later. Returns the exit
    /// status if the process exited by itself within the 500 ms, and how long it took.
    pub fn terminate_within_500ms(&mut self) -> (Option<ExitStatus>, Duration) {
        self.thaw();
        let started = Instant::now();
        assert!(Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap().success());
        while started.elapsed() < Duration::from_millis(500) {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (Some(status), started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        (None, started.elapsed())
    }
}

impl Drop for LambdaFn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pixelgate tokens ARGS --data-dir DATA` with `stdin`, outside Lambda; its standard output.
pub fn tokens(data: &Path, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(binary())
        .arg("tokens")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "tokens {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The `q`-quantile of `samples` (sorted in place).
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

/// Milliseconds, for messages.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
