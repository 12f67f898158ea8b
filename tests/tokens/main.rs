//! The `pixelgate tokens` commands as a user runs them (the real binary, the token on standard
//! input), on the embedded store and on DynamoDB — moto in server mode, through the real
//! `aws-sdk-dynamodb` client — with the in-process token cache reading what the CLI wrote.

#[path = "../common/mod.rs"]
pub mod common;
mod helpers;

mod cli;
mod dynamodb;
mod registry_kv;
