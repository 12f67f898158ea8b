//! The registry's storage: JSON documents under a key, optionally in a *group* sorted by a sort
//! key, changed only by all-or-nothing transactions whose writes carry conditions.
//!
//! Everything about accounts, keys, pixels and the audit log is written once above this
//! ([`super::store`]); the two backends only say how a document, a group listing and a
//! transaction map onto their store, so both behave the same and are tested the same way:
//!
//! * [`local`] — SQLite, the table `registry` in `<data-dir>/tokens.sqlite3` (one `BEGIN
//!   IMMEDIATE` transaction per write).
//! * [`dynamodb`] — the `--dynamodb-table` the tokens live in, a global secondary index
//!   `by_group` for listings, `TransactWriteItems` for writes (`docs/accounts.md#dynamodb`).
//!
//! Every document has a revision (`rev`), 1 when created and one more on every write; a
//! read-modify-write names the revision it read ([`Cond::Rev`]), so two concurrent changes cannot
//! both win.

pub mod dynamodb;
pub mod local;

use crate::tokens::StoreError;

/// One stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its key, unique in the store (`account#acc_…`, `pixel#123`, …).
    pub pk: String,
    /// The group it is listed in, with its sort key there; `None` for an item only read by key.
    pub group: Option<(String, String)>,
    /// The document, JSON.
    pub doc: String,
    /// Its revision.
    pub rev: u64,
}

/// What must hold of an item for a transaction to go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// Nothing.
    Any,
    /// The item does not exist.
    Absent,
    /// The item exists at this revision.
    Rev(u64),
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Creates or replaces `item` (stored with `item.rev`) if `cond` holds.
    Put(Item, Cond),
    /// Deletes the item if `cond` holds.
    Delete(String, Cond),
    /// Writes nothing; the transaction goes through only if `cond` holds of the item.
    Check(String, Cond),
}

impl Write {
    /// The key the write is about.
    pub fn pk(&self) -> &str {
        match self {
            Write::Put(item, _) => &item.pk,
            Write::Delete(pk, _) | Write::Check(pk, _) => pk,
        }
    }
}

/// Why a transaction did not go through.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TxError {
    /// The condition of the write at this index did not hold; nothing was written.
    #[error("the condition of write {0} did not hold")]
    Conflict(usize),
    /// The store failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Most writes in one transaction (DynamoDB's `TransactWriteItems` limit).
pub const MAX_WRITES: usize = 100;

/// The configured registry storage.
#[derive(Clone)]
pub enum Kv {
    /// SQLite under `<data-dir>`.
    Local(local::LocalKv),
    /// A DynamoDB table.
    Dynamodb(dynamodb::DynamoKv),
}

impl Kv {
    /// The registry beside the tokens: the same SQLite file, or the same DynamoDB table and client.
    pub async fn open(tokens: &crate::tokens::TokenStore) -> anyhow::Result<Kv> {
        Ok(match tokens.backend() {
            crate::tokens::Backend::Local(s) => Kv::Local(local::LocalKv::on(s.clone()).await?),
            crate::tokens::Backend::Dynamodb(s) => Kv::Dynamodb(dynamodb::DynamoKv::new(s.client().clone(), s.table())),
        })
    }

    /// The item under `pk`.
    pub async fn get(&self, pk: &str) -> Result<Option<Item>, StoreError> {
        match self {
            Kv::Local(s) => s.get(pk).await,
            Kv::Dynamodb(s) => s.get(pk).await,
        }
    }

    /// Applies every write or none (at most [`MAX_WRITES`], one per key).
    pub async fn transact(&self, writes: Vec<Write>) -> Result<(), TxError> {
        if writes.len() > MAX_WRITES {
            return Err(TxError::Store(StoreError::Malformed(format!("a registry transaction of {} writes (at most {MAX_WRITES})", writes.len()))));
        }
        let mut keys: Vec<&str> = writes.iter().map(Write::pk).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err(TxError::Store(StoreError::Malformed("a registry transaction writes one item twice".into())));
        }
        match self {
            Kv::Local(s) => s.transact(writes).await,
            Kv::Dynamodb(s) => s.transact(writes).await,
        }
    }

    /// The items of `group` whose sort key starts with `prefix`, in sort-key order (`newest_first`:
    /// descending), at most `limit`.
    pub async fn list(&self, group: &str, prefix: &str, newest_first: bool, limit: usize) -> Result<Vec<Item>, StoreError> {
        match self {
            Kv::Local(s) => s.list(group, prefix, newest_first, limit).await,
            Kv::Dynamodb(s) => s.list(group, prefix, newest_first, limit).await,
        }
    }

    /// The sort keys of every item of `group` (the registered-pixel index's listing), cheaper than
    /// [`Kv::list`]: no documents.
    pub async fn sort_keys(&self, group: &str) -> Result<(Vec<String>, u64), StoreError> {
        match self {
            Kv::Local(s) => Ok((s.sort_keys(group).await?, 1)),
            Kv::Dynamodb(s) => s.sort_keys(group).await,
        }
    }
}

/// The backends' shared contract test, public so the DynamoDB backend's test under `tests/` runs it
/// against moto.
#[doc(hidden)]
pub mod contract;
