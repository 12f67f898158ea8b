//! moto in server mode on loopback, one per test binary, standing in for AWS (Firehose and S3 in
//! `tests/firehose` and `tests/lambda`, DynamoDB in `tests/tokens` and `tests/capi`). It runs on
//! the venv Python `scripts/test` installed the pinned `moto[server]` into (see [`python`]);
//! without it the tests fail, never skip.

use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;

use super::net::free_port;
use super::python::python;

/// The region and the fixed test credentials everything that talks to moto uses.
const REGION: &str = "us-east-1";
const KEY: &str = "test";

/// The moto server shared by every test in this binary.
pub struct Moto {
    pub endpoint: String,
    /// moto exits when this pipe closes, i.e. when the test process ends, however it ends, so no
    /// server outlives the tests.
    _lifeline: Mutex<ChildStdin>,
    _child: Mutex<Child>,
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
    let port = free_port();
    let log = std::env::temp_dir().join(format!("pixelgate-moto-{port}.log"));
    let mut child = Command::new(python("moto in server mode"))
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

/// The environment for a process that talks to AWS at `endpoint` (moto, or a proxy in front of
/// it): fixed test credentials, so no credential provider ever looks beyond the environment.
pub fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    let fixed = [("AWS_REGION", REGION), ("AWS_ACCESS_KEY_ID", KEY), ("AWS_SECRET_ACCESS_KEY", KEY), ("AWS_EC2_METADATA_DISABLED", "true")];
    std::iter::once(("AWS_ENDPOINT_URL", endpoint.to_owned())).chain(fixed.map(|(k, v)| (k, v.to_owned()))).collect()
}

/// The AWS SDK configuration for the test's own clients of moto: same region and credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&moto().endpoint)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_firehose::config::Credentials::new(KEY, KEY, None, None, "tests"))
        .load()
        .await
}
