//! The Conversions API forwarder end to end: the real `pixelgate` binary (server and `tokens`
//! CLI on one data dir) against the strict fake Graph API, over real sockets.

#[path = "../common/mod.rs"]
pub mod common;
mod helpers;
mod load;

mod admin;
mod dynamodb;
mod events;
mod failures;
mod forwarding;
mod notify;
mod resilience;
mod tenancy;
mod unknown_pixels;
mod webhook;
