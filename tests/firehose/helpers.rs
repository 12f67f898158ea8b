//! The real `pixelgate` binary with the Firehose sink, pointed at moto (or a proxy in front of
//! it) through the standard AWS environment; a stream behind a proxy; and the check that what it
//! answered arrived once.

use std::collections::HashMap;
use std::path::Path;

use crate::common::moto::{aws_env, moto};
use crate::common::process::{Launch, Server};
use crate::common::proxy::Proxy;
use crate::common::stream::{Stream, create_stream};

/// Flags that make retries, flushes and shutdown quick enough for tests.
pub const FAST: &[&str] = &[
    "--firehose-flush-interval",
    "200ms",
    "--firehose-timeout",
    "500ms",
    "--firehose-backoff",
    "20ms",
    "--firehose-backoff-max",
    "200ms",
    "--firehose-retry-budget",
    "1s",
    "--firehose-shutdown-timeout",
    "1s",
];

/// Starts `pixelgate serve --sink firehose --firehose-stream STREAM` with AWS pointed at
/// `endpoint`, on `data` (a data dir of its own when None), with `extra` flags; waits until it
/// answers `/healthz`.
pub fn spawn_pixelgate(endpoint: &str, stream: &str, data: Option<&Path>, extra: &[&str]) -> Server {
    let launch = Launch::new().args(["serve", "--sink", "firehose", "--firehose-stream", stream]).args(extra).envs(aws_env(endpoint));
    match data {
        Some(data) => launch.data_dir(data).serve(),
        None => launch.serve(),
    }
}

/// A delivery stream of `test`'s own in moto, and a proxy to moto the test can cut.
pub async fn stream_behind_proxy(test: &str) -> (Stream, Proxy) {
    (create_stream(test).await, Proxy::start(&moto().endpoint).await)
}

/// Panics unless every id in `answered` was delivered exactly once.
pub fn assert_exactly_once(answered: &[String], delivered: &HashMap<String, usize>) {
    let missing: Vec<_> = answered.iter().filter(|id| !delivered.contains_key(*id)).take(5).collect();
    let twice: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(missing.is_empty() && twice.is_empty(), "{} answered, {} delivered; missing e.g. {missing:?}; more than once e.g. {twice:?}", answered.len(), delivered.len());
}
