//! moto in server mode on loopback, one per test binary, standing in for AWS (Firehose and S3 in
//! `tests/firehose`, DynamoDB in `tests/tokens`). It is started from the Python `scripts/test`
//! installed the pinned `moto[server]` into (`PIXELGATE_PYTHON`, else `.venv`); without it
//! the tests fail, never skip.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The moto server shared by every test in this binary.
pub struct Moto {
    pub endpoint: String,
    /// moto exits when this pipe closes, i.e. when the test process ends, however it ends, so no
    /// server outlives the tests.
    _lifeline: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

/// The Python of the venv `scripts/test` installed moto into (pinned in
/// `tests/requirements.txt`).
fn moto_python() -> PathBuf {
    let from_env = std::env::var_os("PIXELGATE_PYTHON").or_else(|| std::env::var_os("PIXELGATE_MOTO_PYTHON")).map(PathBuf::from);
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    match from_env.or_else(|| venv.exists().then_some(venv)) {
        Some(p) if p.exists() => p,
        other => panic!(
            "moto not found ({}): these tests need moto in server mode; run scripts/test, which installs the pinned moto[server] into .venv",
            other.map_or("PIXELGATE_PYTHON / PIXELGATE_MOTO_PYTHON unset and no .venv/bin/python".into(), |p| format!("{} does not exist", p.display()))
        ),
    }
}

/// `moto_server`, plus a thread that ends the process when standard input closes.
const MOTO_SERVER: &str = r#"
import os, sys, threading
def lifeline():
    sys.stdin.buffer.read()
    os._exit(0)
threading.Thread(target=lifeline, daemon=True).start()
from moto.server import main
main(sys.argv[1:])
"#;

static MOTO: LazyLock<Moto> = LazyLock::new(|| {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::env::temp_dir().join(format!("pixelgate-moto-{port}.log"));
    let mut child = Command::new(moto_python())
        .args(["-c", MOTO_SERVER, "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("moto starts");
    let lifeline = child.stdin.take().unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("moto exited ({status}); run scripts/test to install it: {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        assert!(started.elapsed() < Duration::from_secs(30), "moto did not listen within 30 s: {}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    Moto { endpoint: format!("http://127.0.0.1:{port}"), _lifeline: Mutex::new(lifeline), _child: Mutex::new(child) }
});

/// The shared moto server, started on first use.
pub fn moto() -> &'static Moto {
    &MOTO
}

/// AWS settings for anything that talks to moto: fixed test credentials, so no credential
/// provider ever looks beyond the environment.
pub fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}
