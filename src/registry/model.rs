//! What the registry stores: accounts, keys, pixels and audit entries, as JSON documents
//! (`docs/accounts.md#documents`). Times are milliseconds since the Unix epoch; answers show them
//! as RFC 3339.

use serde::{Deserialize, Serialize};

use super::ids::{AccountId, KeyId};

/// What a key may do within its scope (`docs/accounts.md#roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in its scope.
    Admin,
    /// Changes what is assigned to the key (host: accounts; account: pixels), and reads it.
    Manager,
    /// Reads (host: the assigned accounts; account: every pixel of the account).
    Viewer,
}

impl Role {
    /// The spelling in bodies and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Viewer => "viewer",
        }
    }
}

/// Whether a pixel's hits are forwarded to its destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    /// Forwarded (the default).
    #[default]
    On,
    /// Recorded only.
    Off,
}

/// A business on this instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Its id.
    pub account_id: AccountId,
    /// A name people read.
    pub name: String,
    /// Created.
    pub created_at: i64,
    /// Last changed.
    pub updated_at: i64,
    /// Pixels registered to it: kept on the account so that deleting it can be refused while it
    /// has any, in the same transaction that checks it.
    pub pixel_count: u64,
    /// Where its notices are POSTed (`docs/notifications.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The secret its notices are signed with, sealed (`crate::seal`); write-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// How the last notice to the webhook went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_last_delivery: Option<WebhookDelivery>,
}

/// How a notice to an account's webhook went, after its last attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// The notice's id (the `pixelgate-delivery` header; the same on every attempt).
    pub delivery_id: String,
    /// When the last attempt ended.
    pub at: i64,
    /// `delivered` (a 2xx), `failed` (attempts used up, or an answer not worth retrying) or
    /// `refused` (the target is not a public address).
    pub outcome: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last answer's status, if there was an answer.
    pub status: Option<u16>,
    /// Why it failed; never carries the secret.
    pub error: Option<String>,
    /// The pixel the notice was about.
    pub pixel_id: String,
}

/// A stored API key: everything but the key, which only its digest stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Its id.
    pub key_id: KeyId,
    /// A name people read.
    pub name: Option<String>,
    /// What it may do.
    pub role: Role,
    /// Its account; `None` = a host key.
    pub account_id: Option<AccountId>,
    /// A host manager's or viewer's accounts.
    pub accounts: Vec<AccountId>,
    /// An account manager's pixels.
    pub pixels: Vec<String>,
    /// Created.
    pub created_at: i64,
    /// Last used, as last written (kept in memory between writes: `docs/accounts.md#keys`).
    pub last_used_at: Option<i64>,
    /// SHA-256 of the key, hex.
    pub digest: String,
}

/// A pixel registered to an account, and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PixelRecord {
    /// The pixel id (digits).
    pub pixel_id: String,
    /// Its account.
    pub account_id: AccountId,
    /// A name people read.
    pub name: Option<String>,
    /// Pages allowed to send its hits (a domain allows its subdomains); empty = any.
    pub allowed_domains: Vec<String>,
    /// Test mode: the Meta test-event code for every forwarded event that carries none.
    pub test_event_code: Option<String>,
    /// On or off.
    pub forwarding: Forwarding,
    /// Registered.
    pub created_at: i64,
    /// Last changed.
    pub updated_at: i64,
}

/// One change made through the API or the CLI. Never holds a secret: only which fields changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When.
    pub at: i64,
    /// Who: the key's id (`key_admin` for `--admin-key`, `key_cli` for the CLI).
    pub key_id: KeyId,
    /// What: `account.create`, `pixel.update`, `key.revoke`, …
    pub action: String,
    /// Which resource: `acc_…`, `pixel:123`, `key_…`.
    pub target: String,
    /// The account it belongs to; `None` = the host's.
    pub account_id: Option<AccountId>,
    /// The fields set or cleared (names only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}
