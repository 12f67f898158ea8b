//! Conversions API access tokens: one per pixel, stored by the pixel's owner (`pixelgate tokens
//! set`, the admin API) and read by the CAPI forwarder.
//!
//! [`TokenStore`] is the durable copy, embedded ([`local`], SQLite under `<data-dir>`) or shared
//! between instances ([`dynamodb`]); [`cache::TokenCache`] sits in front of it so the hot path
//! reads the store at most once per pixel per TTL. Every token is a [`Secret`]: no `Debug`, log
//! line, metric, error or answer carries one.
//!
//! Each `set` gives the token a fresh random `version`. The forwarder remembers the version it
//! sent with; when Meta rejects the token, [`TokenStore::mark_invalid`] flips it to `invalid`
//! only if the stored version is still that one, so a token replaced in the meantime is never
//! marked invalid by a failure of its predecessor.

pub mod cache;
pub mod cli;
pub mod dynamodb;
pub mod index;
pub mod local;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use std::path::PathBuf;

use crate::error::ConfigError;
use crate::record::PixelId;
pub use crate::seal::Sealer;
pub use crate::secret::Secret;
pub use cache::{CacheSettings, TokenCache, UsableToken};
pub use dynamodb::DynamoStore;
pub use index::TokenIndex;
pub use local::LocalStore;

/// Whether a stored token may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    /// Usable.
    Active,
    /// Rejected by Meta; stays unused until its owner sets a new one.
    Invalid,
}

impl TokenStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::Invalid => "invalid",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<TokenStatus> {
        match s {
            "active" => Some(TokenStatus::Active),
            "invalid" => Some(TokenStatus::Invalid),
            _ => None,
        }
    }
}

/// A pixel's token as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The access token.
    pub token: Secret,
    /// Active or invalid.
    pub status: TokenStatus,
    /// Last change, in milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
    /// Changes on every `set`; [`TokenStore::mark_invalid`] is conditional on it.
    pub version: u64,
}

/// What `tokens status` and `GET /v1/pixels/{id}/token` show: everything but the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenStatusView {
    /// The pixel.
    pub pixel_id: String,
    /// Whether a token is stored.
    pub set: bool,
    /// Its status, `null` when none is stored.
    pub status: Option<TokenStatus>,
    /// Its last change (RFC 3339, UTC), `null` when none is stored.
    pub updated_at: Option<String>,
}

impl TokenStatusView {
    /// The view of `stored` for `pixel_id`.
    pub fn of(pixel: &PixelId, stored: Option<&StoredToken>) -> TokenStatusView {
        TokenStatusView { pixel_id: pixel.to_string(), set: stored.is_some(), status: stored.map(|s| s.status), updated_at: stored.map(|s| rfc3339_ms(s.updated_at_ms)) }
    }
}

fn rfc3339_ms(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A fresh version: random, below 2^63 so it fits SQLite's signed integers and compares exactly
/// as a DynamoDB number.
pub(crate) fn new_version() -> u64 {
    rand::random::<u64>() >> 1
}

/// A token store failure. Messages name the store and what went wrong, never a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or refused the call; worth retrying later.
    #[error("token store unavailable: {0}")]
    Unavailable(String),
    /// The store holds something pixelgate did not write.
    #[error("token store holds a malformed entry: {0}")]
    Malformed(String),
}

/// Which store holds the tokens (`--tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// Embedded store under <data-dir>.
    Local,
    /// Amazon DynamoDB.
    Dynamodb,
}

/// Where the token store lives.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `--tokens`.
    pub kind: StoreKind,
    /// `--data-dir`: the embedded store's home.
    pub data_dir: PathBuf,
    /// `--dynamodb-table`.
    pub dynamodb_table: Option<String>,
    /// `--secrets-key`: base64 of 32 bytes; `None` = the key file under `--data-dir` (embedded
    /// store only).
    pub secrets_key: Option<Secret>,
}

impl StoreSettings {
    /// Checks what the kind needs: a table for DynamoDB.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.kind {
            StoreKind::Local => Ok(()),
            StoreKind::Dynamodb => {
                self.table()?;
                if self.secrets_key.is_none() {
                    return Err(ConfigError(
                        "--tokens dynamodb needs --secrets-key [PIXELGATE_SECRETS_KEY] (32 bytes, base64; the same for every instance on the table, from the deployment's secret store)".into(),
                    ));
                }
                Ok(())
            }
        }?;
        if let Some(key) = &self.secrets_key {
            Sealer::from_base64(key.expose()).map_err(ConfigError)?;
        }
        Ok(())
    }

    /// The sealer for tokens and other secrets at rest: `--secrets-key`, else (embedded store) the
    /// key file under `--data-dir`, created on first start.
    pub fn sealer(&self) -> anyhow::Result<Sealer> {
        match (&self.secrets_key, self.kind) {
            (Some(key), _) => Sealer::from_base64(key.expose()).map_err(|e| anyhow::anyhow!(e)),
            (None, StoreKind::Local) => Sealer::from_key_file(&self.data_dir),
            (None, StoreKind::Dynamodb) => Err(anyhow::anyhow!("--tokens dynamodb needs --secrets-key [PIXELGATE_SECRETS_KEY]")),
        }
    }

    /// The DynamoDB table, or the error that names the flag.
    pub fn table(&self) -> Result<&str, ConfigError> {
        self.dynamodb_table.as_deref().filter(|t| !t.is_empty()).ok_or_else(|| ConfigError("--tokens dynamodb needs --dynamodb-table [PIXELGATE_DYNAMODB_TABLE]".into()))
    }
}

/// Where the tokens are kept (`--tokens`).
pub enum Backend {
    /// SQLite under `<data-dir>`.
    Local(LocalStore),
    /// A DynamoDB table.
    Dynamodb(DynamoStore),
}

/// The configured token store: a [`Backend`], and the [`Sealer`] every token passes through on
/// its way in and out (`docs/accounts.md#secrets-at-rest`): the store only ever holds sealed
/// tokens, bound to their pixel. A plaintext token written before sealing existed is still read,
/// and sealed when next written.
pub struct TokenStore {
    backend: Backend,
    sealer: Sealer,
}

/// Where a pixel's Meta token is sealed to.
fn place(pixel: &PixelId) -> String {
    format!("meta_token:{pixel}")
}

impl TokenStore {
    /// A store over `backend`, sealing with `sealer`.
    pub fn new(backend: Backend, sealer: Sealer) -> TokenStore {
        TokenStore { backend, sealer }
    }

    /// Opens the store the settings name, with its secrets key. Errors are one line naming the
    /// flag and env var.
    pub async fn open(settings: &StoreSettings) -> anyhow::Result<TokenStore> {
        let sealer = settings.sealer()?;
        let backend = match settings.kind {
            StoreKind::Local => Backend::Local(LocalStore::open(&settings.data_dir).await?),
            StoreKind::Dynamodb => Backend::Dynamodb(DynamoStore::from_env(settings.table()?).await?),
        };
        Ok(TokenStore { backend, sealer })
    }

    /// What seals secrets at rest: tokens here, and the registry's other secrets.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The pixel's token, if one is stored.
    pub async fn get(&self, pixel: &PixelId) -> Result<Option<StoredToken>, StoreError> {
        let stored = match &self.backend {
            Backend::Local(s) => s.get(pixel.as_str()).await?,
            Backend::Dynamodb(s) => s.get(pixel.as_str()).await?,
        };
        let Some(mut stored) = stored else { return Ok(None) };
        stored.token = self.sealer.open(&place(pixel), stored.token.expose()).map_err(|e| StoreError::Malformed(format!("pixel {pixel}: {e}")))?;
        Ok(Some(stored))
    }

    /// Stores or replaces the pixel's token (sealed), active, with a fresh version.
    pub async fn set(&self, pixel: &PixelId, token: Secret) -> Result<StoredToken, StoreError> {
        let sealed = Secret::new(self.sealer.seal(&place(pixel), &token));
        let mut stored = match &self.backend {
            Backend::Local(s) => s.set(pixel.as_str(), sealed).await?,
            Backend::Dynamodb(s) => s.set(pixel.as_str(), sealed).await?,
        };
        stored.token = token;
        Ok(stored)
    }

    /// Removes the pixel's token; `false` if there was none.
    pub async fn delete(&self, pixel: &PixelId) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Local(s) => s.delete(pixel.as_str()).await,
            Backend::Dynamodb(s) => s.delete(pixel.as_str()).await,
        }
    }

    /// Marks the token invalid if it is still the active one of `version`; `true` if it did.
    pub async fn mark_invalid(&self, pixel: &PixelId, version: u64) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Local(s) => s.mark_invalid(pixel.as_str(), version).await,
            Backend::Dynamodb(s) => s.mark_invalid(pixel.as_str(), version).await,
        }
    }

    /// Every pixel with an active token (a listing: see [`index`]), and the store requests it
    /// took. An entry whose key is not a pixel id is skipped.
    pub async fn active_pixels(&self) -> Result<(Vec<PixelId>, u64), StoreError> {
        let (ids, requests) = match &self.backend {
            Backend::Local(s) => (s.active_pixels().await?, 1),
            Backend::Dynamodb(s) => {
                let mut pages = 0;
                let ids = s.active_pixels(&mut pages).await;
                (ids?, pages)
            }
        };
        Ok((ids.iter().filter_map(|id| PixelId::parse(id).ok()).collect(), requests))
    }

    /// Is the store reachable (for `/readyz`)?
    pub async fn check(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Local(s) => s.check().await,
            Backend::Dynamodb(s) => s.check().await,
        }
    }
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Local(_) => f.write_str("TokenStore::Local"),
            Backend::Dynamodb(s) => write!(f, "TokenStore::Dynamodb({})", s.table()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_view_serialises_as_the_spec_says() {
        let none = serde_json::to_string(&TokenStatusView::of(&"123".parse().unwrap(), None)).unwrap();
        assert_eq!(none, r#"{"pixel_id":"123","set":false,"status":null,"updated_at":null}"#);
        let t = StoredToken { token: Secret::new("EAAB-secret"), status: TokenStatus::Invalid, updated_at_ms: 1_700_000_000_123, version: 7 };
        let some = serde_json::to_string(&TokenStatusView::of(&"123".parse().unwrap(), Some(&t))).unwrap();
        assert_eq!(some, r#"{"pixel_id":"123","set":true,"status":"invalid","updated_at":"2023-11-14T22:13:20.123Z"}"#);
        assert!(!format!("{t:?}").contains("EAAB"));
    }
}
