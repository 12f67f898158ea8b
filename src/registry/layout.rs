//! Where each document lives in the [`Kv`](super::kv::Kv): its key, and its group and sort key
//! when it is listed (`docs/accounts.md#documents`).

use super::ids::{AccountId, KeyId};
use super::kv::Item;

/// Group of every account, sorted by id.
pub const ACCOUNTS: &str = "accounts";
/// Group of every key, sorted by `<scope>#<key_id>`.
pub const KEYS: &str = "keys";
/// Group of every registered pixel, sorted by `<account_id>#<pixel_id>`: one account's pixels are a
/// prefix, and the whole group is the registered-pixel index's listing.
pub const PIXELS: &str = "pixels";
/// Group of every audit entry, sorted by `<scope>#<time>#<random>`.
pub const AUDIT: &str = "audit";

/// The scope part of a sort key: an account id, or `host`.
pub fn scope(account: Option<&AccountId>) -> &str {
    account.map_or("host", AccountId::as_str)
}

/// An account's key.
pub fn account(id: &AccountId) -> String {
    format!("account#{id}")
}

/// A key's document, by id (listed).
pub fn key(id: &KeyId) -> String {
    format!("key#{id}")
}

/// A key's document, by the digest of its secret (what a request is checked against).
pub fn key_digest(digest: &str) -> String {
    format!("keyhash#{digest}")
}

/// A registered pixel's key.
pub fn pixel(id: &str) -> String {
    format!("pixel#{id}")
}

/// A document to store.
pub fn item(pk: String, group: Option<(&str, String)>, doc: &impl serde::Serialize, rev: u64) -> Item {
    Item { pk, group: group.map(|(g, s)| (g.to_owned(), s)), doc: serde_json::to_string(doc).expect("registry documents serialise"), rev }
}

/// The pixel id in a sort key of [`PIXELS`].
pub fn pixel_of_sort_key(sk: &str) -> Option<&str> {
    sk.rsplit_once('#').map(|(_, p)| p)
}
