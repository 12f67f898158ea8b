//! Start-up: the stream is checked before the first hit is served.

use std::process::Command;

use crate::helpers::{FAST, aws_env, create_stream, moto, spawn_pixelgate};

#[tokio::test]
async fn a_missing_stream_stops_start_up_with_one_line_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pixelgate"))
        .args(["--sink", "firehose", "--firehose-stream", "no-such-stream", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .envs(aws_env(&moto().endpoint))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("pixelgate: ") && last.contains("no-such-stream") && last.contains("--firehose-stream [PIXELGATE_FIREHOSE_STREAM]"), "{err}");
}

#[tokio::test]
async fn an_existing_stream_is_ready() {
    let stream = create_stream("ready").await;
    let dir = tempfile::tempdir().unwrap();
    let mut pg = spawn_pixelgate(&moto().endpoint, &stream.name, &dir.path().join("data"), FAST);
    assert_eq!(pg.readyz(), (200, r#"{"status":"ready"}"#.to_owned()));
    assert!(pg.terminate().success(), "{}", pg.logs());
}
