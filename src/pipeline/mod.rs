//! One way from a door to the outlets: door → intake → outlet queues → consumers.
//!
//! * [`intake`](self::intake) — tasks that shape captured requests into hits in batches
//!   ([`crate::params::shape`]) and offer them to the outlets.
//! * `tenancy` — a registered pixel's settings applied to its hits in the intake:
//!   `account_id`, allowed domains, forwarding on/off, test mode.
//! * [`outlet`] — the typed queues: a raw-record outlet takes [`Records`] (record lines), a hit
//!   outlet takes [`QueuedHit`]s it let through its [`Gate`]; both answer the same control
//!   [`Job`]s (barrier, tick, shutdown).
//! * [`dispatcher`] — [`Dispatcher`]: the fan-out, `flush` (everything before it delivered:
//!   graceful shutdown and the Lambda drain rely on it) and `shutdown`.
//! * [`budget`] — the byte budgets: one for what waits for the raw-record outlets, one for
//!   everything the hit outlets hold, so forwarding runs out of room before the raw records do.
//!
//! Nothing here ever makes an answer wait: every offer is a `try_send`, and what does not fit is
//! counted (`pixelgate_records_dropped_total`) and logged.

pub mod budget;
pub mod dispatcher;
mod intake;
pub mod outlet;
mod tenancy;

pub use budget::{Budget, Share};
pub use dispatcher::{DEFAULT_MAX_HIT_BYTES, DEFAULT_MAX_QUEUED_BYTES, Dispatcher, RecordBatch};
pub use outlet::{Gate, HitJobs, HitOutlet, Hits, Job, QueuedHit, RecordJobs, RecordOutlet, Records, Shed};
