//! Start-up: the stream is checked before the first hit is served.

use crate::common::moto::{aws_env, moto};
use crate::common::process::pixelgate;
use crate::common::stream::create_stream;
use crate::helpers::{FAST, spawn_pixelgate};

#[tokio::test]
async fn a_missing_stream_stops_start_up_with_one_line_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let args = ["--sink", "firehose", "--firehose-stream", "no-such-stream", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data-dir", data];
    let run = pixelgate(&args, "", &aws_env(&moto().endpoint));
    let err = run.stderr;
    assert_eq!(run.code, 2, "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("pixelgate: ") && last.contains("no-such-stream") && last.contains("--firehose-stream [PIXELGATE_FIREHOSE_STREAM]"), "{err}");
}

#[tokio::test]
async fn an_existing_stream_is_ready() {
    let stream = create_stream("ready").await;
    let mut pg = spawn_pixelgate(&moto().endpoint, &stream.name, None, FAST);
    assert_eq!(pg.readyz(), (200, r#"{"status":"ready"}"#.to_owned()));
    assert!(pg.terminate().success(), "{}", pg.logs());
}
