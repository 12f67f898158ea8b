//! Raw-record sinks: where every hit's NDJSON line ends up.
//!
//! Each sink is the consumer of one outlet queue ([`crate::dispatch`]). `file` (the embedded
//! default) writes hourly-partitioned NDJSON files under `<data-dir>/raw/`; `firehose` sends the
//! same lines to Amazon Kinesis Data Firehose, spooling to `<data-dir>/spool/` while it cannot.

pub mod file;
pub mod firehose;

use std::sync::Mutex;

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
    /// Waits for the sink to finish after its queue got a [`crate::dispatch::Job::Shutdown`].
    pub async fn join(self) {
        match self {
            RunningSink::File(sink) => {
                let _ = tokio::task::spawn_blocking(move || sink.join()).await;
            }
            RunningSink::Firehose(sink) => sink.join().await,
        }
    }
}
