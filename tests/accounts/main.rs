//! Accounts, keys and pixels (`docs/accounts.md`) end to end: the real `pixelgate` binary — servers over real
//! sockets and the registry CLI — on the embedded store and on DynamoDB (moto in server mode,
//! required: these tests fail, never skip, without it).
//!
//! - [`matrix`]: every role × action × own/other account, and authentication;
//! - [`bad_input`]: malformed requests are refused, naming the field, and change nothing;
//! - [`at_rest`]: no key, token or secrets key in the clear in either store or any file;
//! - [`two_servers`]: revocation and settings reach another instance within the registry TTL;
//! - [`cli`]: `pixelgate accounts|keys|pixels|audit`;
//! - [`last_used`]: a key's last use, shown at once, not written per request.

#[path = "../common/mod.rs"]
pub mod common;
mod helpers;

mod at_rest;
mod bad_input;
mod cli;
mod last_used;
mod matrix;
mod two_servers;
