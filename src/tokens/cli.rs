//! `pixelgate tokens set|status|delete|create-table`: the owner's tools, straight on the store
//! (no server, no metrics listener), so they work beside a running server. A running server sees
//! the change within its cache TTLs.
//!
//! The token comes from standard input only, never argv, where `ps` and shell history would see
//! it. Output is the status JSON, never the token.

use std::io::Read;

use anyhow::Context;

use super::{DynamoStore, Secret, StoreSettings, TokenStatusView, TokenStore};
use crate::error::ConfigError;
use crate::record::PixelId;

/// `pixelgate tokens …`.
#[derive(Debug, clap::Subcommand)]
pub enum TokensCommand {
    /// Store or replace a pixel's access token, read from standard input (never from the
    /// command line); prints the pixel's token status as JSON.
    Set {
        /// The pixel id (1-32 digits).
        pixel_id: PixelId,
    },
    /// Print a pixel's token status as one JSON object (never the token).
    Status {
        /// The pixel id (1-32 digits).
        pixel_id: PixelId,
    },
    /// Remove a pixel's access token; prints the status afterwards.
    Delete {
        /// The pixel id (1-32 digits).
        pixel_id: PixelId,
    },
    /// Create the --dynamodb-table table (on-demand billing), e.g. in a local emulator;
    /// does nothing if it exists.
    CreateTable,
}

/// Longest token read from standard input (Meta's are a few hundred bytes).
const MAX_TOKEN_BYTES: u64 = 8 * 1024;

/// Runs one `tokens` command, printing its JSON answer on standard output.
pub async fn run(store: &StoreSettings, command: &TokensCommand) -> anyhow::Result<()> {
    if let TokensCommand::CreateTable = command {
        let Some(table) = store.dynamodb_table.as_deref().filter(|t| !t.is_empty()) else {
            return Err(ConfigError("tokens create-table needs --dynamodb-table [PIXELGATE_DYNAMODB_TABLE]".into()).into());
        };
        let created = DynamoStore::from_env(table).await?.create_table().await?;
        println!("{}", serde_json::json!({ "table": table, "created": created }));
        return Ok(());
    }
    store.validate()?;
    let store = TokenStore::open(store).await?;
    let view = match command {
        TokensCommand::Set { pixel_id } => {
            let token = read_token(std::io::stdin().lock())?;
            TokenStatusView::of(pixel_id, Some(&store.set(pixel_id, token).await?))
        }
        TokensCommand::Status { pixel_id } => TokenStatusView::of(pixel_id, store.get(pixel_id).await?.as_ref()),
        TokensCommand::Delete { pixel_id } => {
            store.delete(pixel_id).await?;
            TokenStatusView::of(pixel_id, store.get(pixel_id).await?.as_ref())
        }
        TokensCommand::CreateTable => unreachable!("handled above"),
    };
    println!("{}", serde_json::to_string(&view)?);
    Ok(())
}

/// The token on `input`: one line, surrounding whitespace (the trailing newline) removed.
fn read_token(input: impl Read) -> anyhow::Result<Secret> {
    let mut raw = String::new();
    input.take(MAX_TOKEN_BYTES + 1).read_to_string(&mut raw).context("cannot read the token from standard input (it must be UTF-8 text)")?;
    let usage = |msg: &str| anyhow::Error::from(ConfigError(msg.to_owned()));
    if raw.len() as u64 > MAX_TOKEN_BYTES {
        return Err(usage("the token on standard input is over 8 KiB; pipe in the access token alone"));
    }
    let token = raw.trim();
    if token.is_empty() {
        return Err(usage("no token on standard input; pipe it in, e.g. `pixelgate tokens set PIXEL_ID < token.txt`"));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(usage("the token on standard input must be one line without spaces"));
    }
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_one_trimmed_line() {
        assert_eq!(read_token("EAAB123\n".as_bytes()).unwrap().expose(), "EAAB123");
        assert_eq!(read_token("  EAAB123\r\n".as_bytes()).unwrap().expose(), "EAAB123");
        for bad in ["", "\n", "a b", "a\nb\n"] {
            let err = read_token(bad.as_bytes()).unwrap_err();
            assert!(err.downcast_ref::<ConfigError>().is_some(), "{bad:?}");
            assert!(!err.to_string().contains('\n'));
        }
        assert!(read_token("x".repeat(9000).as_bytes()).is_err());
    }
}
