//! The Lambda front door end to end: the real `pixelgate` binary started the way Lambda starts
//! it (`AWS_LAMBDA_RUNTIME_API` pointing at a loopback emulator of the Runtime and Extensions
//! APIs), with the file sink or Firehose in moto (behind a proxy that can make it slow) and the
//! strict fake Graph API. Every file in `events/` goes through it; the drain extension is held to
//! its promise: the answer is posted before the invocation's Firehose and Graph API calls
//! complete, and the extension asks for its next event only after them.

#[path = "../common/mod.rs"]
pub mod common;
mod helpers;

mod drain;
mod events;
