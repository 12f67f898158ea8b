//! The registry in SQLite: the table `registry` in the token store's file
//! (`<data-dir>/tokens.sqlite3`), so one file holds everything the embedded default keeps and the
//! CLI can change it while a server has it open (WAL, busy timeout), as with the tokens.
//!
//! | column | meaning |
//! |---|---|
//! | `pk` | primary key |
//! | `grp`, `sk` | group and sort key (`NULL` for items only read by key); indexed together |
//! | `doc` | the JSON document |
//! | `rev` | revision |
//!
//! A transaction runs under `BEGIN IMMEDIATE`: it takes the write lock before it reads the
//! conditions, so no other writer can change an item between the check and the write.

use std::path::Path;

use rusqlite::{OptionalExtension, params};

use super::{Cond, Item, TxError, Write};
use crate::tokens::{LocalStore, StoreError};

/// The SQLite registry: the token store's connection, another table.
#[derive(Clone)]
pub struct LocalKv {
    store: LocalStore,
}

impl LocalKv {
    /// Opens (creating if needed) `<data_dir>/tokens.sqlite3` and the registry table in it.
    pub async fn open(data_dir: &Path) -> anyhow::Result<LocalKv> {
        LocalKv::on(LocalStore::open(data_dir).await?).await
    }

    /// The registry table beside the tokens of `store` (created if needed), on its connection.
    pub async fn on(store: LocalStore) -> anyhow::Result<LocalKv> {
        let err = store.unavailable();
        store
            .blocking(move |c| c.execute_batch(SCHEMA).map_err(err))
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the registry table (--data-dir [PIXELGATE_DATA_DIR]): {e}"))?;
        Ok(LocalKv { store })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    async fn call<T: Send + 'static>(&self, f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, TxError> + Send + 'static) -> Result<T, TxError> {
        self.store.blocking(f).await
    }

    fn unavailable(&self) -> impl Fn(rusqlite::Error) -> TxError + use<> {
        let err = self.store.unavailable();
        move |e| TxError::Store(err(e))
    }

    fn flat<T>(r: Result<T, TxError>) -> Result<T, StoreError> {
        r.map_err(|e| match e {
            TxError::Store(e) => e,
            TxError::Conflict(_) => StoreError::Unavailable("unexpected conflict on a read".into()),
        })
    }

    /// The item under `pk`.
    pub async fn get(&self, pk: &str) -> Result<Option<Item>, StoreError> {
        let pk = pk.to_owned();
        let err = self.unavailable();
        Self::flat(self.call(move |c| c.query_row("SELECT pk, grp, sk, doc, rev FROM registry WHERE pk = ?1", [&pk], row).optional().map_err(err)).await)
    }

    /// Applies every write or none.
    pub async fn transact(&self, writes: Vec<Write>) -> Result<(), TxError> {
        let err = self.unavailable();
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(&err)?;
            for (i, w) in writes.iter().enumerate() {
                let cond = match w {
                    Write::Put(_, cond) | Write::Delete(_, cond) | Write::Check(_, cond) => *cond,
                };
                if cond != Cond::Any {
                    let rev: Option<i64> = tx.query_row("SELECT rev FROM registry WHERE pk = ?1", [w.pk()], |r| r.get(0)).optional().map_err(&err)?;
                    let holds = match cond {
                        Cond::Any => true,
                        Cond::Absent => rev.is_none(),
                        Cond::Rev(want) => rev == Some(want as i64),
                    };
                    if !holds {
                        return Err(TxError::Conflict(i));
                    }
                }
                match w {
                    Write::Put(item, _) => {
                        let (grp, sk) = item.group.clone().unzip();
                        tx.execute(
                            "INSERT INTO registry (pk, grp, sk, doc, rev) VALUES (?1, ?2, ?3, ?4, ?5)
                             ON CONFLICT (pk) DO UPDATE SET grp = excluded.grp, sk = excluded.sk, doc = excluded.doc, rev = excluded.rev",
                            params![item.pk, grp, sk, item.doc, item.rev as i64],
                        )
                        .map_err(&err)?;
                    }
                    Write::Delete(pk, _) => {
                        tx.execute("DELETE FROM registry WHERE pk = ?1", [pk]).map_err(&err)?;
                    }
                    Write::Check(..) => {}
                }
            }
            tx.commit().map_err(&err)
        })
        .await
    }

    /// The items of `group` whose sort key starts with `prefix`, in order.
    pub async fn list(&self, group: &str, prefix: &str, newest_first: bool, limit: usize) -> Result<Vec<Item>, StoreError> {
        let (group, prefix) = (group.to_owned(), prefix.to_owned());
        let err = self.unavailable();
        Self::flat(
            self.call(move |c| {
                let order = if newest_first { "DESC" } else { "ASC" };
                // `substr` instead of LIKE: no escaping of `_`/`%` in ids.
                let sql = format!("SELECT pk, grp, sk, doc, rev FROM registry WHERE grp = ?1 AND substr(sk, 1, length(?2)) = ?2 ORDER BY sk {order} LIMIT ?3");
                let mut statement = c.prepare_cached(&sql).map_err(&err)?;
                let rows = statement.query_map(params![group, prefix, limit.min(i64::MAX as usize) as i64], row).map_err(&err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(&err)
            })
            .await,
        )
    }

    /// The sort keys of every item of `group`.
    pub async fn sort_keys(&self, group: &str) -> Result<Vec<String>, StoreError> {
        let group = group.to_owned();
        let err = self.unavailable();
        Self::flat(
            self.call(move |c| {
                let mut statement = c.prepare_cached("SELECT sk FROM registry WHERE grp = ?1").map_err(&err)?;
                let rows = statement.query_map([group], |r| r.get::<_, String>(0)).map_err(&err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(&err)
            })
            .await,
        )
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let grp: Option<String> = r.get(1)?;
    let sk: Option<String> = r.get(2)?;
    Ok(Item { pk: r.get(0)?, group: grp.zip(sk), doc: r.get(3)?, rev: r.get::<_, i64>(4)? as u64 })
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS registry (
        pk  TEXT PRIMARY KEY NOT NULL,
        grp TEXT,
        sk  TEXT,
        doc TEXT NOT NULL,
        rev INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS registry_by_group ON registry (grp, sk);";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_kv_contract() {
        let dir = tempfile::tempdir().unwrap();
        let kv = super::super::Kv::Local(LocalKv::open(dir.path()).await.unwrap());
        super::super::contract::check(&kv).await;
    }
}
