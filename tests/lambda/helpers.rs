//! The function under test, started as Lambda starts it, and the events of `events/`.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::lambda_emulator::{Emulator, lambda_env};
use crate::common::process::{Launch, Process, signal};

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

/// The function's process, frozen by the emulator between invocations.
pub struct LambdaFn {
    pub process: Process,
}

/// Starts the bare binary as Lambda does: no arguments, `AWS_LAMBDA_*` pointing at `emulator`,
/// `PIXELGATE_DATA_DIR=data`, plus `env`.
pub fn spawn(emulator: &Emulator, data: &Path, env: &[(&str, String)]) -> LambdaFn {
    std::fs::create_dir_all(data).unwrap();
    start(emulator, as_lambda(emulator, env).env("PIXELGATE_DATA_DIR", data))
}

/// [`spawn`] without `PIXELGATE_DATA_DIR`.
pub fn spawn_without_data_dir(emulator: &Emulator, env: &[(&str, String)]) -> LambdaFn {
    start(emulator, as_lambda(emulator, env))
}

/// The binary with Lambda's environment for `emulator`, then `env`.
fn as_lambda(emulator: &Emulator, env: &[(&str, String)]) -> Launch {
    Launch::new().envs(lambda_env(&emulator.runtime_api())).envs(env.iter().cloned())
}

fn start(emulator: &Emulator, launch: Launch) -> LambdaFn {
    let process = launch.spawn();
    emulator.freeze_between_invocations(process.pid());
    LambdaFn { process }
}

impl LambdaFn {
    /// What the function logged.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// When the process was started.
    pub fn spawned_at(&self) -> Instant {
        self.process.spawned_at
    }

    fn thaw(&self) {
        signal(self.process.pid(), "CONT");
    }

    /// Thaws the process and sends SIGTERM (as Lambda does before shutting the environment
    /// down); returns the exit status and how long the process took to exit.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        self.thaw();
        let started = Instant::now();
        let status = self.process.terminate();
        (status, started.elapsed())
    }

    /// Shutdown as Lambda does it: thaw, SIGTERM, and SIGKILL 500 ms later. Returns the exit
    /// status if the process exited by itself within the 500 ms, and how long it took.
    pub fn terminate_within_500ms(&mut self) -> (Option<ExitStatus>, Duration) {
        self.thaw();
        let started = Instant::now();
        assert!(signal(self.process.pid(), "TERM"), "SIGTERM to the function");
        let child = &mut self.process.child;
        while started.elapsed() < Duration::from_millis(500) {
            if let Some(status) = child.try_wait().unwrap() {
                return (Some(status), started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        (None, started.elapsed())
    }
}
