//! The Firehose sink end to end: the real binary and the real `aws-sdk-firehose` client against
//! moto in server mode (started here, on loopback), with a cuttable proxy in between for
//! outages. Each `PutRecordBatch` lands in moto's S3 destination as one object, which the tests
//! read back. The retry cases moto cannot stage (partial failures, throttling) are unit tests
//! beside the sink, against a scripted fake behind the same client seam.

#[path = "../common/mod.rs"]
pub mod common;
mod helpers;

mod delivery;
mod outage;
mod restart;
mod startup;
