//! Pieces the test binaries share; each pulls them all in with
//! `#[path = "../common/mod.rs"] pub mod common;`.
//!
//! Each binary declares the shared modules `pub mod`: they are the public surface of the test
//! crate, and rustc does not report a reachable `pub` item as dead code, so what one binary
//! leaves unused needs no `#[allow(dead_code)]`, while private items are still checked.

/// A fake of Meta's Graph API (Conversions API endpoint).
pub mod fake_graph;
/// The loopback HTTP server the fakes run on.
pub mod http_server;
/// An emulator of Lambda's Runtime and Extensions APIs.
pub mod lambda_emulator;
/// moto in server mode, standing in for AWS.
pub mod moto;
/// Proxies in front of moto that cut it or slow it down.
pub mod proxy;
/// The venv Python `scripts/test` installs.
pub mod python;
/// A Firehose delivery stream in moto, read back from S3.
pub mod stream;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Sends SIGTERM to `child` and waits (at most 30 s) for its exit status; `context` is printed if
/// it does not exit.
pub fn terminate(child: &mut Child, context: impl Fn() -> String) -> ExitStatus {
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "did not exit after SIGTERM: {}", context());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every file below `dir`.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Every complete record line under `<data>/raw` (`*.ndjson` and `*.ndjson.open`), in file order.
pub fn read_records(data: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = files_below(&data.join("raw"))
        .into_iter()
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".ndjson") || name.ends_with(".ndjson.open")
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        for line in complete.lines() {
            out.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line in {}: {e}: {line}", f.display())));
        }
    }
    out
}
