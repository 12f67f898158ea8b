//! Black-box tests over real sockets: the in-process app on port 0, or the real binary.

mod client_ip;
#[path = "../common/mod.rs"]
mod common;
mod config;
mod conventions;
mod helpers;
mod hostile;
mod operations;
mod personal_data;
mod pixel;
mod shutdown;
