//! Black-box tests over real sockets: the in-process app on port 0, or the real binary.

#[path = "../common/mod.rs"]
pub mod common;
mod helpers;

mod client_ip;
mod config;
mod conventions;
mod hostile;
mod lane;
mod operations;
mod personal_data;
mod pixel;
mod shutdown;
mod tenancy;
