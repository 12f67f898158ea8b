//! Accounts, keys and pixels (`docs/accounts.md`): who may do what to which pixel, and
//! each registered pixel's settings.
//!
//! * [`ids`], [`model`], [`requests`], [`domains`] — the values: ids, stored documents, the
//!   strict request bodies, allowed domains.
//! * [`principal`] — a verified key as a [`Principal`], and the one function that decides what it
//!   may do ([`Principal::access`]).
//! * [`store`] — [`Registry`]: every read and change, checked against the principal, written with
//!   its audit entry in one transaction.
//! * [`keys`] — [`KeyCache`]: `Authorization` to a principal, cached, no store write per request.
//! * [`directory`] — [`Directory`]: the hot path's view (registered or not, and the settings).
//! * [`webhook`] — what an account's webhook URL and secret may be.
//! * [`kv`] — the storage both backends (SQLite, DynamoDB) implement.

pub mod directory;
pub mod domains;
pub mod error;
pub mod ids;
pub mod keys;
pub mod kv;
pub mod layout;
pub mod model;
pub mod principal;
pub mod requests;
pub mod store;
pub mod webhook;

pub use directory::{Directory, DirectorySettings, Fresh, PixelSettings};
pub use error::RegistryError;
pub use ids::{AccountId, KeyId};
pub use keys::{AuthError, KeyCache};
pub use kv::Kv;
pub use model::{Account, AuditEntry, Forwarding, KeyRecord, PixelRecord, Role, WebhookDelivery};
pub use principal::{Access, Principal, Target};
pub use store::{PixelView, Registry, WebhookTarget};
pub use webhook::WebhookPolicy;
