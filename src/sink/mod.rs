//! Raw-record sinks: where every hit's NDJSON line ends up (`docs/records.md#files`,
//! `docs/firehose.md`).
//!
//! Each sink is the consumer of one raw-record outlet queue ([`crate::pipeline::RecordOutlet`]).
//! [`file`] (the embedded default) writes hourly-partitioned NDJSON files under
//! `<data-dir>/raw/`; [`firehose`] sends the same lines to Amazon Kinesis Data Firehose,
//! spooling to `<data-dir>/spool/` while it cannot.

pub mod file;
pub mod firehose;

use std::sync::{Arc, Mutex};

use anyhow::Context;

use self::file::{FileSink, FileSinkConfig};
use self::firehose::{FirehoseConfig, FirehoseSink};
use crate::pipeline::RecordOutlet;

/// Which sink, with its settings (`--sink`).
#[derive(Debug, Clone)]
pub enum SinkSettings {
    /// NDJSON files.
    File(FileSinkConfig),
    /// Kinesis Data Firehose.
    Firehose(FirehoseConfig),
}

/// Whether a sink can currently deliver, and if not, why. Read by `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    /// The current problem in words a person can act on; `None` while deliveries succeed.
    problem: Mutex<Option<String>>,
}

impl Health {
    /// Records a successful delivery.
    pub fn ok(&self) {
        let mut p = self.problem.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_some() {
            *p = None;
        }
    }

    /// Records a failed delivery and its reason.
    pub fn fail(&self, reason: String) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    /// The current problem, if any.
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The sink consuming the raw-record outlet, whichever it is.
pub enum RunningSink {
    /// NDJSON files, written on their own thread.
    File(file::FileSink),
    /// Kinesis Data Firehose, on its own thread and runtime.
    Firehose(firehose::FirehoseSink),
}

impl RunningSink {
    /// Starts the sink `settings` name on a fresh outlet queue of `capacity` records.
    pub async fn start(settings: &SinkSettings, capacity: usize, health: Arc<Health>) -> anyhow::Result<(RecordOutlet, RunningSink)> {
        match settings {
            SinkSettings::File(config) => {
                let (outlet, rx) = RecordOutlet::new("file", capacity);
                let sink = FileSink::start(config.clone(), rx, health, outlet.closing())
                    .with_context(|| format!("cannot write records under {} (--data-dir [PIXELGATE_DATA_DIR])", config.dir.display()))?;
                Ok((outlet, RunningSink::File(sink)))
            }
            SinkSettings::Firehose(config) => {
                let (outlet, rx) = RecordOutlet::new("firehose", capacity);
                Ok((outlet, RunningSink::Firehose(FirehoseSink::start(config.clone(), rx, health).await?)))
            }
        }
    }

    /// Shutdown has begun (before the queue's [`crate::pipeline::Job::Shutdown`]): see
    /// [`FirehoseSink::begin_shutdown`].
    pub fn begin_shutdown(&self) {
        if let RunningSink::Firehose(sink) = self {
            sink.begin_shutdown();
        }
    }

    /// Waits for the sink to finish after its queue got a [`crate::pipeline::Job::Shutdown`].
    pub async fn join(self) {
        match self {
            RunningSink::File(sink) => {
                let _ = tokio::task::spawn_blocking(move || sink.join()).await;
            }
            RunningSink::Firehose(sink) => sink.join().await,
        }
    }
}
