//! `pixelgate accounts|keys|pixels|audit …`: the API's calls straight on the store, for a
//! platform to script without HTTP (`docs/accounts.md#cli`). Bodies are the API's JSON, read from
//! standard input (so secrets never reach argv); answers are the API's JSON on standard output.
//! Changes are audited as `key_cli`, a host administrator. A running server sees them within
//! `--registry-ttl` (keys, settings) and its token TTLs.

use std::io::Read;
use std::sync::Arc;

use anyhow::Context;
use serde_json::{Value, json};

use super::views;
use crate::error::ConfigError;
use crate::registry::requests::{AccountPatch, NewAccount, NewKey, PixelBody, parse};
use crate::registry::{Directory, DirectorySettings, KeyCache, Kv, Principal, Registry, RegistryError, WebhookPolicy};
use crate::tokens::{CacheSettings, StoreSettings, TokenCache, TokenStore};

/// Largest body read from standard input.
const MAX_BODY_BYTES: u64 = 64 * 1024;

/// `pixelgate accounts …`.
#[derive(Debug, clap::Subcommand)]
pub enum AccountsCommand {
    /// Create an account; body on stdin: {"name":"Shop A"} (optional "account_id").
    Create,
    /// List every account.
    List,
    /// Show one account.
    Get {
        /// acc_…
        account_id: String,
    },
    /// Change an account; body on stdin: {"name"?, "webhook_url"?, "webhook_secret"?} (null clears one).
    Update {
        /// acc_…
        account_id: String,
    },
    /// Delete an account without pixels (its keys are revoked with it).
    Delete {
        /// acc_…
        account_id: String,
    },
}

/// `pixelgate keys …`.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (the only time it is shown); body on stdin:
    /// {"role":"admin"|"manager"|"viewer", "account_id"?, "accounts"?, "pixels"?, "name"?}.
    Create,
    /// List the keys of an account, or the host keys.
    List {
        /// acc_…; without it, the host keys.
        #[arg(long)]
        account_id: Option<String>,
    },
    /// Revoke a key (every server refuses it within --registry-ttl).
    Revoke {
        /// key_…
        key_id: String,
    },
}

/// `pixelgate pixels …`.
#[derive(Debug, clap::Subcommand)]
pub enum PixelsCommand {
    /// Register a pixel to an account or update it there; body on stdin:
    /// {"account_id":"acc_…", …settings} (destinations' secrets only here, never in argv).
    Put {
        /// The pixel id (digits).
        pixel_id: String,
    },
    /// Show a pixel and its settings (secrets only as set/unset).
    Get {
        /// The pixel id.
        pixel_id: String,
    },
    /// Change settings; body on stdin, as PATCH /v1/pixels/{pixel_id}.
    Update {
        /// The pixel id.
        pixel_id: String,
    },
    /// Unregister a pixel and remove its credentials.
    Delete {
        /// The pixel id.
        pixel_id: String,
    },
    /// List an account's pixels.
    List {
        /// acc_…
        #[arg(long)]
        account_id: String,
    },
}

/// What the registry commands run.
#[derive(Debug)]
pub enum RegistryCommand<'a> {
    /// `accounts …`.
    Accounts(&'a AccountsCommand),
    /// `keys …`.
    Keys(&'a KeysCommand),
    /// `pixels …`.
    Pixels(&'a PixelsCommand),
    /// `audit [--account-id]`.
    Audit(Option<&'a str>),
}

/// Opens the registry the settings name, as the CLI uses it.
async fn open(store: &StoreSettings, webhooks: WebhookPolicy) -> anyhow::Result<Registry> {
    store.validate()?;
    let tokens = TokenStore::open(store).await?;
    let kv = Kv::open(&tokens).await?;
    let tokens = Arc::new(TokenCache::new(tokens, CacheSettings::default()));
    let directory = Arc::new(Directory::new(kv.clone(), DirectorySettings::default()));
    let keys = Arc::new(KeyCache::new(kv.clone(), None, std::time::Duration::from_secs(1)));
    Ok(Registry::new(kv, tokens, directory, keys).with_webhook_policy(webhooks))
}

/// Runs one command, printing its JSON answer on standard output.
pub async fn run(store: &StoreSettings, webhooks: WebhookPolicy, command: RegistryCommand<'_>) -> anyhow::Result<()> {
    let registry = open(store, webhooks).await?;
    let who = Principal::cli();
    let answer = answer(&registry, &who, command).await.map_err(|e| anyhow::anyhow!(ConfigError(e.to_string())))?;
    if let Some(answer) = answer {
        println!("{answer}");
    }
    Ok(())
}

fn body<T: for<'de> serde::Deserialize<'de>>() -> Result<T, RegistryError> {
    let mut raw = Vec::new();
    std::io::stdin().lock().take(MAX_BODY_BYTES + 1).read_to_end(&mut raw).context("reading standard input").map_err(|e| RegistryError::Invalid(e.to_string()))?;
    if raw.len() as u64 > MAX_BODY_BYTES {
        return Err(RegistryError::Invalid("the body on standard input is over 64 KiB".into()));
    }
    parse(&raw)
}

async fn answer(r: &Registry, who: &Principal, command: RegistryCommand<'_>) -> Result<Option<Value>, RegistryError> {
    use AccountsCommand as A;
    use KeysCommand as K;
    use PixelsCommand as P;
    Ok(match command {
        RegistryCommand::Accounts(A::Create) => Some(views::account(&r.create_account(who, body::<NewAccount>()?).await?)),
        RegistryCommand::Accounts(A::List) => Some(json!({ "accounts": r.list_accounts(who).await?.iter().map(views::account).collect::<Vec<_>>() })),
        RegistryCommand::Accounts(A::Get { account_id }) => Some(views::account(&r.get_account(who, account_id).await?)),
        RegistryCommand::Accounts(A::Update { account_id }) => Some(views::account(&r.update_account(who, account_id, body::<AccountPatch>()?).await?)),
        RegistryCommand::Accounts(A::Delete { account_id }) => {
            r.delete_account(who, account_id).await?;
            None
        }
        RegistryCommand::Keys(K::Create) => {
            let (record, key) = r.create_key(who, body::<NewKey>()?).await?;
            let mut view = views::key(&record);
            view["key"] = Value::String(key.expose().to_owned());
            Some(view)
        }
        RegistryCommand::Keys(K::List { account_id }) => Some(json!({ "keys": r.list_keys(who, account_id.as_deref()).await?.iter().map(views::key).collect::<Vec<_>>() })),
        RegistryCommand::Keys(K::Revoke { key_id }) => {
            r.revoke_key(who, key_id).await?;
            None
        }
        RegistryCommand::Pixels(P::Put { pixel_id }) => {
            let (account, change) = body::<PixelBody>()?.check()?;
            Some(views::pixel(&r.put_pixel(who, pixel_id, account, change).await?.0))
        }
        RegistryCommand::Pixels(P::Get { pixel_id }) => Some(views::pixel(&r.get_pixel(who, pixel_id).await?)),
        RegistryCommand::Pixels(P::Update { pixel_id }) => {
            let (account, change) = body::<PixelBody>()?.check()?;
            if account.is_some() {
                return Err(RegistryError::field("account_id", "a pixel changes account by delete, then put with the new account_id"));
            }
            Some(views::pixel(&r.patch_pixel(who, pixel_id, change).await?))
        }
        RegistryCommand::Pixels(P::Delete { pixel_id }) => {
            r.delete_pixel(who, pixel_id).await?;
            None
        }
        RegistryCommand::Pixels(P::List { account_id }) => Some(json!({ "pixels": r.list_pixels(who, Some(account_id)).await?.iter().map(views::pixel).collect::<Vec<_>>() })),
        RegistryCommand::Audit(account) => Some(json!({ "entries": r.audit_log(who, account).await?.iter().map(views::audit).collect::<Vec<_>>() })),
    })
}
