//! The `pixelgate tokens` commands as a user runs them (the real binary, the token on standard
//! input), on the embedded store and on DynamoDB — moto in server mode, through the real
//! `aws-sdk-dynamodb` client — with the in-process token cache reading what the CLI wrote.

mod cli;
mod dynamodb;
mod helpers;
#[path = "../common/moto.rs"]
pub mod moto;
