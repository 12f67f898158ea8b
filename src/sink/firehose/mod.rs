//! The Amazon Kinesis Data Firehose sink: every hit's record line, byte-identical to the file
//! sink's, as one Firehose record, sent with `PutRecordBatch`.
//!
//! * [`client`] — the seam: one `PutRecordBatch` call, answered in our own types
//!   ([`client::PutRecords`]); [`client::SdkFirehose`] is the real thing.
//! * [`retry`] — the one place that classifies answers (done / resend the failed records /
//!   resend the request / give up) and computes backoff with jitter.
//! * `deliver` — one batch's journey: send, resend only what failed, until acknowledged or the
//!   retry budget is spent.
//! * [`spool`] — bounded, crash-safe segment files under `<data-dir>/spool` for what Firehose
//!   cannot take, replayed oldest first.
//! * `consumer` — the outlet's queue consumer, on a thread of its own: batches by count, bytes
//!   and age ([`crate::batch`]), keeps a bounded number of deliveries in flight, spools, replays,
//!   and honours the [`crate::pipeline::Job`] protocol.

pub mod client;
mod consumer;
mod deliver;
pub mod retry;
pub mod spool;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use self::client::{PutRecords, SdkFirehose, StreamCheck};
use super::Health;
use crate::batch::BatchLimits;
use crate::error::ConfigError;
use crate::pipeline::RecordJobs;
use crate::retry::RetryPolicy;

/// Most records in one `PutRecordBatch` request. "Each PutRecordBatch request supports up to 500
/// records" — <https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html>.
pub const MAX_RECORDS_PER_REQUEST: usize = 500;

/// Most bytes in one request: "up to a limit of 4 MB for the entire request" (same page; the
/// quota page says 4 MiB). We count each record as it travels, base64 plus its JSON framing
/// ([`encoded_len`]), so a full batch is within the limit however it is read.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Largest record: "Each record in the request can be as large as 1,000 KB (before base64
/// encoding)" (same page). The shared encoder already caps every line at this size, cutting an
/// over-long hit to a typed `oversize` record.
pub const MAX_RECORD_BYTES: usize = crate::record::MAX_RECORD_BYTES;

/// The size a record of `len` bytes adds to a request: base64 of the data plus the
/// `{"Data":""},` around it.
pub const fn encoded_len(len: usize) -> usize {
    len.div_ceil(3) * 4 + 12
}

/// Settings of the Firehose sink.
#[derive(Debug, Clone)]
pub struct FirehoseConfig {
    /// Delivery stream name.
    pub stream: String,
    /// When a batch is sent: records (≤ [`MAX_RECORDS_PER_REQUEST`]), encoded bytes
    /// (≤ [`MAX_REQUEST_BYTES`]) and age (the flush interval).
    pub batch: BatchLimits,
    /// Requests under way at once; bounds memory while Firehose is slow.
    pub max_in_flight: usize,
    /// Attempt timeout, backoff and retry budget.
    pub retry: RetryPolicy,
    /// `<data-dir>/spool`.
    pub spool_dir: PathBuf,
    /// Most bytes the spool may hold; beyond it, records are given up and counted.
    pub spool_max_bytes: u64,
    /// How long shutdown lets deliveries run before it spools what is left.
    pub shutdown_timeout: Duration,
    /// Check the stream after start-up rather than before (under Lambda, where the check would
    /// delay the first invocation): a missing stream is then logged as an error and shown in
    /// `/readyz`, and its records spool, instead of stopping start-up.
    pub check_in_background: bool,
}

impl FirehoseConfig {
    /// Clamps the settings to the service's limits.
    pub fn validate(mut self) -> Self {
        self.batch.max_items = self.batch.max_items.clamp(1, MAX_RECORDS_PER_REQUEST);
        self.batch.max_bytes = self.batch.max_bytes.clamp(encoded_len(MAX_RECORD_BYTES), MAX_REQUEST_BYTES);
        self.max_in_flight = self.max_in_flight.max(1);
        self
    }
}

/// The sink's side of `/readyz`: one wording for "degraded", whichever part noticed.
#[derive(Debug)]
pub(crate) struct Status {
    health: Arc<Health>,
    stream: String,
}

impl Status {
    /// Firehose is not taking records, for `reason`; they wait in the spool.
    fn degraded(&self, reason: &str) {
        self.health.fail(format!("Firehose stream '{}' is not taking records ({reason}); records wait in the disk spool", self.stream));
    }

    /// Firehose took records.
    fn ok(&self) {
        self.health.ok();
    }
}

/// The running sink: its consumer on a thread of its own with a single-threaded runtime, so that
/// encoding records and building, signing and parsing multi-megabyte requests never holds up a
/// pixel answer on the server's runtime (cooperative scheduling would let it), as the file
/// sink's writer thread does for disk writes.
pub struct FirehoseSink {
    thread: std::thread::JoinHandle<()>,
    /// Turned true to stop the deliveries' retries: what they hold goes to the spool.
    stop_deliveries: Arc<watch::Sender<bool>>,
    shutdown_timeout: Duration,
}

impl FirehoseSink {
    /// Opens the spool, then on the sink's thread connects to Firehose from the standard AWS
    /// environment, checks the stream and starts consuming `rx`. A missing stream is a
    /// [`ConfigError`]; a stream that cannot be checked (unreachable, no
    /// `firehose:DescribeDeliveryStream` permission) starts the sink degraded: records spool
    /// until Firehose takes them.
    pub async fn start(config: FirehoseConfig, rx: RecordJobs, health: Arc<Health>) -> anyhow::Result<FirehoseSink> {
        let config = config.validate();
        let spool = open_spool(&config)?;
        let (started_tx, started) = oneshot::channel();
        let stop_deliveries = Arc::new(watch::channel(false).0);
        let (stop, shutdown_timeout) = (stop_deliveries.clone(), config.shutdown_timeout);
        // The client is built on the sink's runtime so that its connections are driven there too.
        let thread = spawn(async move {
            match connect(&config, &health).await {
                Ok(client) => {
                    let _ = started_tx.send(Ok(()));
                    consumer::Consumer::new(client, config, health, spool, stop).run(rx).await;
                }
                Err(err) => {
                    let _ = started_tx.send(Err(err));
                }
            }
        })?;
        started.await.unwrap_or_else(|_| Err(anyhow::anyhow!("the Firehose sink stopped during start-up")))?;
        Ok(FirehoseSink { thread, stop_deliveries, shutdown_timeout })
    }

    /// Starts the sink over a ready [`PutRecords`] (a fake, in tests).
    pub fn start_with<C: PutRecords>(client: C, config: FirehoseConfig, rx: RecordJobs, health: Arc<Health>) -> std::io::Result<FirehoseSink> {
        let config = config.validate();
        let spool = open_spool(&config)?;
        let stop_deliveries = Arc::new(watch::channel(false).0);
        let shutdown_timeout = config.shutdown_timeout;
        let consumer = consumer::Consumer::new(client, config, health, spool, stop_deliveries.clone());
        Ok(FirehoseSink { thread: spawn(consumer.run(rx))?, stop_deliveries, shutdown_timeout })
    }

    /// Shutdown has begun: after the shutdown timeout the deliveries stop retrying and what they
    /// hold goes to the spool, even if the consumer is still waiting on them (for a barrier, under
    /// Lambda, while Firehose refuses every batch) and has not yet seen the shutdown in its queue.
    pub fn begin_shutdown(&self) {
        let (stop, timeout) = (self.stop_deliveries.clone(), self.shutdown_timeout);
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            stop.send_replace(true);
        });
    }

    /// Waits for the consumer to finish (after a [`crate::pipeline::Job::Shutdown`]).
    pub async fn join(self) {
        let thread = self.thread;
        if !matches!(tokio::task::spawn_blocking(move || thread.join()).await, Ok(Ok(()))) {
            tracing::error!("the Firehose sink thread failed");
        }
    }
}

/// Runs `future` on a thread of its own with a single-threaded runtime.
fn spawn(future: impl Future<Output = ()> + Send + 'static) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("pixelgate-firehose".into()).spawn(move || runtime.block_on(future))
}

fn open_spool(config: &FirehoseConfig) -> std::io::Result<spool::Spool> {
    spool::Spool::open(&config.spool_dir, config.spool_max_bytes)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot open the spool in {} (--data-dir [PIXELGATE_DATA_DIR]): {e}", config.spool_dir.display())))
}

/// The SDK client, once the stream has been checked.
async fn connect(config: &FirehoseConfig, health: &Arc<Health>) -> anyhow::Result<SdkFirehose> {
    let connect_timeout = config.retry.attempt_timeout.min(Duration::from_secs(3));
    let client = SdkFirehose::from_env(&config.stream, connect_timeout).await.map_err(ConfigError)?;
    if config.check_in_background {
        // On the sink's own runtime, beside the consumer: start-up does not wait for it.
        let (checker, config, health) = (client.clone(), config.clone(), health.clone());
        tokio::spawn(async move {
            if let Err(err) = check(&checker, &config, &health).await {
                tracing::error!(error = %err, "the Firehose delivery stream cannot take records; they spool until it can (see /readyz)");
                health.fail(err.to_string());
            }
        });
        return Ok(client);
    }
    check(&client, config, health).await?;
    Ok(client)
}

/// `DescribeDeliveryStream`: an error if the stream is missing; an unknown answer is logged and
/// marks the sink unhealthy.
async fn check(client: &SdkFirehose, config: &FirehoseConfig, health: &Health) -> anyhow::Result<()> {
    let check = tokio::time::timeout(config.retry.attempt_timeout, client.check_stream())
        .await
        .unwrap_or_else(|_| StreamCheck::Unknown(format!("no answer from Firehose within {:?}", config.retry.attempt_timeout)));
    match check {
        StreamCheck::Active => {
            tracing::info!(stream = %config.stream, region = client.region(), "Firehose delivery stream is active")
        }
        StreamCheck::Missing(what) => {
            return Err(ConfigError(format!("{what} (--firehose-stream [PIXELGATE_FIREHOSE_STREAM])")).into());
        }
        StreamCheck::Unknown(why) => {
            tracing::warn!(stream = %config.stream, reason = %why, "cannot confirm the Firehose delivery stream; starting anyway, records spool until it takes them");
            health.fail(why);
        }
    }
    Ok(())
}
