//! Runs the real binary with a clean environment: only what a test passes, so neither the
//! developer's `PIXELGATE_*` settings nor their AWS profile leak in.

use std::io::Write;
use std::process::{Command, Stdio};

/// What a run of the binary printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The one JSON object printed on standard output.
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.code, 0, "exit {}; stderr: {}", self.code, self.stderr);
        assert_eq!(self.stdout.lines().count(), 1, "one line of JSON: {:?}", self.stdout);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", self.stdout))
    }

    /// Panics unless the run failed with `code` and exactly one line on standard error.
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

/// `pixelgate ARGS` with `stdin` piped in and only `env` set.
pub fn pixelgate(args: &[&str], stdin: &str, env: &[(&str, String)]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pixelgate"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Run { code: out.status.code().unwrap_or(-1), stdout: String::from_utf8(out.stdout).unwrap(), stderr: String::from_utf8(out.stderr).unwrap() }
}
