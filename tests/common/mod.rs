//! Pieces the black-box test binaries (`tests/api`, `tests/capi`, `tests/firehose`) share.

/// A fake of Meta's Graph API (Conversions API endpoint); not every binary uses all of it.
#[allow(dead_code)]
pub mod fake_graph;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

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

#[allow(dead_code)]
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
