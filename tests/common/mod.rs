//! The one test harness every black-box test binary shares (`tests/api`, `tests/capi`,
//! `tests/firehose`, `tests/lambda`, `tests/tokens`, `tests/fake_graph_selftest.rs`,
//! `tests/hashing_oracle.rs`), pulled in with `#[path = "../common/mod.rs"] pub mod common;`:
//!
//! - [`process`]: the real `pixelgate` binary — one builder ([`process::Launch`]) that starts it
//!   with a clean environment, its own temp data dir and log file; as a server on free ports,
//!   waited for until it serves ([`process::Server`]); and one way to run a command such as
//!   `pixelgate tokens …` to completion, standard input piped in ([`process::pixelgate`]);
//! - [`records`]: the raw NDJSON records a file sink wrote; [`metrics`]: a Prometheus scrape and
//!   its samples; [`load`]: browsers hitting the pixel concurrently; [`net`]: free ports, a bare
//!   blocking HTTP GET and a pixel hit; [`timing`]: quantiles and milliseconds for messages;
//!   [`user_agents`]: the user agents tests send;
//! - [`python`] and [`moto`]: the venv `scripts/test` installs, and moto in server mode from it,
//!   standing in for AWS; [`stream`]: a Firehose delivery stream in moto, read back from S3;
//!   [`proxy`]: proxies in front of moto that cut or slow it;
//! - the fakes: [`http_server`] (the loopback server they run on), [`fake_graph`] (Meta's Graph
//!   API, split by concern), [`lambda_emulator`] (Lambda's Runtime and Extensions APIs) and
//!   [`webhook_receiver`] (an account's webhook, checking signatures).
//!
//! Every test binary compiles all of it and none uses all of it, so each declares it `pub mod
//! common`: the harness is the public surface of the test crate, and rustc does not report a
//! reachable `pub` item as dead code, so an item one binary leaves unused needs no
//! `#[allow(dead_code)]` (there is none in the harness), while private items are still checked.
//! What this cannot see is a `pub` item no binary uses: to look for one, declare `mod common`
//! (private) in every binary and build; an item reported by all seven is dead. There was none
//! when the harness was consolidated.

pub mod fake_graph;
pub mod http_server;
pub mod lambda_emulator;
pub mod load;
pub mod metrics;
pub mod moto;
pub mod net;
pub mod process;
pub mod proxy;
pub mod python;
pub mod records;
pub mod stream;
pub mod timing;
pub mod user_agents;
pub mod webhook_receiver;
