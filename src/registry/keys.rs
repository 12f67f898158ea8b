//! Checking API keys (`docs/accounts.md#keys`): `Authorization: Bearer <key>` to a
//! [`Principal`], with no store write per request and no store scan ever.
//!
//! A key is found by the SHA-256 of what was sent (one point read), and the answer, found or not,
//! is cached for the TTL: revocation reaches every instance within it, and at once the one that
//! revoked. Anything that does not have a key's shape is refused before the store is asked, so
//! garbage costs a hash at most. The time a key was last used is kept in memory and written to
//! the store at most once per key per flush interval (and at shutdown).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::future::Cache;
use sha2::{Digest, Sha256};

use super::ids::{KeyId, key_digest, looks_like_key};
use super::kv::{Cond, Kv, Write};
use super::layout as at;
use super::model::KeyRecord;
use super::principal::Principal;
use crate::secret::Secret;
use crate::tokens::{StoreError, now_ms};

/// Why a request has no principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    #[error("send a key as 'Authorization: Bearer <key>'")]
    Missing,
    /// Not a key, an unknown one or a revoked one: the same answer for all three.
    #[error("the key is not valid (unknown or revoked); send a key as 'Authorization: Bearer <key>'")]
    Invalid,
    /// The store could not be asked.
    #[error("{0}")]
    Unavailable(String),
}

/// The key cache.
pub struct KeyCache {
    kv: Kv,
    /// SHA-256 of `--admin-key`.
    bootstrap: Option<[u8; 32]>,
    cache: Cache<String, Option<Arc<KeyRecord>>>,
    /// Last use per key not yet written to the store.
    unwritten: Mutex<HashMap<KeyId, i64>>,
    /// Last use per key seen by this process, for listings between writes.
    seen: Mutex<HashMap<KeyId, i64>>,
}

impl KeyCache {
    /// Keys in `kv`, cached for `ttl`; `bootstrap` is `--admin-key`.
    pub fn new(kv: Kv, bootstrap: Option<&Secret>, ttl: Duration) -> KeyCache {
        KeyCache {
            kv,
            bootstrap: bootstrap.map(|k| Sha256::digest(k.expose().as_bytes()).into()),
            cache: Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            unwritten: Mutex::default(),
            seen: Mutex::default(),
        }
    }

    /// Whether any key can sign in: the bootstrap key is set, or keys may exist in the store.
    pub fn has_bootstrap(&self) -> bool {
        self.bootstrap.is_some()
    }

    /// The principal for an `Authorization` header value.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let given =
            authorization.and_then(|v| v.trim().split_once(' ')).filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, k)| k.trim()).ok_or(AuthError::Missing)?;
        if let Some(boot) = &self.bootstrap {
            let d: [u8; 32] = Sha256::digest(given.as_bytes()).into();
            if d == *boot {
                return Ok(Principal::bootstrap());
            }
        }
        if !looks_like_key(given) {
            return Err(AuthError::Invalid);
        }
        let digest = key_digest(given);
        let found = self
            .cache
            .try_get_with(digest.clone(), async {
                let item = self.kv.get(&at::key_digest(&digest)).await?;
                item.map(|i| serde_json::from_str::<KeyRecord>(&i.doc).map(Arc::new)).transpose().map_err(|e| StoreError::Malformed(format!("a key document: {e}")))
            })
            .await
            .map_err(|e: Arc<StoreError>| AuthError::Unavailable(e.to_string()))?;
        let key = found.ok_or(AuthError::Invalid)?;
        let now = now_ms();
        self.unwritten.lock().unwrap_or_else(|e| e.into_inner()).insert(key.key_id.clone(), now);
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(key.key_id.clone(), now);
        Ok(Principal::of(&key))
    }

    /// Forgets a revoked key at once in this process.
    pub async fn forget(&self, digest: &str) {
        self.cache.insert(digest.to_owned(), None).await;
    }

    /// When this process last saw the key used.
    pub fn last_used(&self, key: &KeyId) -> Option<i64> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied()
    }

    /// Writes the last-use times gathered since the last flush; how many keys it wrote.
    pub async fn flush_last_used(&self) -> usize {
        let pending: Vec<(KeyId, i64)> = std::mem::take(&mut *self.unwritten.lock().unwrap_or_else(|e| e.into_inner())).into_iter().collect();
        let mut written = 0;
        for (id, used) in pending {
            let Ok(Some(item)) = self.kv.get(&at::key(&id)).await else { continue };
            let Ok(mut record) = serde_json::from_str::<KeyRecord>(&item.doc) else { continue };
            if record.last_used_at.is_some_and(|t| t >= used) {
                continue;
            }
            record.last_used_at = Some(used);
            let sk = format!("{}#{}", at::scope(record.account_id.as_ref()), record.key_id);
            let put = Write::Put(at::item(item.pk.clone(), Some((at::KEYS, sk)), &record, item.rev + 1), Cond::Rev(item.rev));
            // A key revoked or changed meanwhile is left as it is.
            if self.kv.transact(vec![put]).await.is_ok() {
                written += 1;
            }
        }
        written
    }

    /// Flushes last-use times every `every` in the background.
    pub fn spawn_flush(self: &Arc<Self>, every: Duration) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(keys) = me.upgrade() else { return };
                keys.flush_last_used().await;
            }
        });
    }
}
