//! Raw-record sinks: where every hit's NDJSON line ends up.
//!
//! Each sink is the consumer of one outlet queue ([`crate::dispatch`]). `file` (the embedded
//! default) writes hourly-partitioned NDJSON files under `<data-dir>/raw/`.

pub mod file;

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
