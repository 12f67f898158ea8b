//! The embedded token store: SQLite at `<data-dir>/tokens.sqlite3`.
//!
//! SQLite because `pixelgate tokens set` must work while a server has the same file open: WAL
//! mode lets readers and the one writer proceed together, and a busy timeout makes a writer wait
//! for the other process's lock instead of failing. The file is created owner-only (0600), since
//! it holds tokens in clear. Calls are blocking, so each runs on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Secret, StoreError, StoredToken, TokenStatus, new_version, now_ms};

/// The SQLite token store.
#[derive(Clone)]
pub struct LocalStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

/// How long a call waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl LocalStore {
    /// Opens (creating if needed) `<data_dir>/tokens.sqlite3`.
    pub async fn open(data_dir: &Path) -> anyhow::Result<LocalStore> {
        let data_dir = data_dir.to_owned();
        let path = data_dir.join("tokens.sqlite3");
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_blocking(&data_dir, &p))
            .await?
            .map_err(|e| anyhow::anyhow!("cannot open the token store {} (--data-dir [PIXELGATE_DATA_DIR]): {e}", path.display()))?;
        Ok(LocalStore { conn: Arc::new(Mutex::new(conn)), path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection on tokio's blocking pool; an `rusqlite` error becomes `E` through
    /// `err` (which gets the file's path for its message). The registry's SQLite backend shares
    /// the connection through this.
    pub async fn blocking<T, E>(&self, f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| StoreError::Unavailable("the embedded store's connection was poisoned by a panic".into()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("embedded store task failed: {e}")))?
    }

    /// An `rusqlite` error as the store's, naming the file.
    pub fn unavailable(&self) -> impl Fn(rusqlite::Error) -> StoreError + Send + Sync + use<> {
        let path = self.path.clone();
        move |e| StoreError::Unavailable(format!("{}: {e}", path.display()))
    }

    async fn call<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static) -> Result<T, StoreError> {
        let err = self.unavailable();
        self.blocking(move |c| f(c).map_err(err)).await
    }

    /// The pixel's token, if one is stored.
    pub async fn get(&self, pixel_id: &str) -> Result<Option<StoredToken>, StoreError> {
        let id = pixel_id.to_owned();
        let row = self
            .call(move |c| {
                c.query_row("SELECT access_token, status, updated_at_ms, version FROM tokens WHERE pixel_id = ?1", [&id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
                })
                .optional()
            })
            .await?;
        let Some((token, status, updated_at_ms, version)) = row else {
            return Ok(None);
        };
        let status = TokenStatus::parse(&status).ok_or_else(|| StoreError::Malformed(format!("pixel {pixel_id}: unknown status")))?;
        Ok(Some(StoredToken { token: Secret::new(token), status, updated_at_ms, version: version as u64 }))
    }

    /// Stores or replaces the pixel's token, active, with a fresh version.
    pub async fn set(&self, pixel_id: &str, token: Secret) -> Result<StoredToken, StoreError> {
        let stored = StoredToken { token, status: TokenStatus::Active, updated_at_ms: now_ms(), version: new_version() };
        let (id, row) = (pixel_id.to_owned(), stored.clone());
        self.call(move |c| {
            c.execute(
                "INSERT INTO tokens (pixel_id, access_token, status, updated_at_ms, version) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (pixel_id) DO UPDATE SET access_token = excluded.access_token, status = excluded.status,
                   updated_at_ms = excluded.updated_at_ms, version = excluded.version",
                params![id, row.token.expose(), row.status.as_str(), row.updated_at_ms, row.version as i64],
            )
        })
        .await?;
        Ok(stored)
    }

    /// Removes the pixel's token; `false` if there was none.
    pub async fn delete(&self, pixel_id: &str) -> Result<bool, StoreError> {
        let id = pixel_id.to_owned();
        Ok(self.call(move |c| c.execute("DELETE FROM tokens WHERE pixel_id = ?1", [&id])).await? > 0)
    }

    /// Marks the token invalid if it is still the active one of `version`; `true` if it did.
    pub async fn mark_invalid(&self, pixel_id: &str, version: u64) -> Result<bool, StoreError> {
        let id = pixel_id.to_owned();
        let changed = self
            .call(move |c| {
                c.execute(
                    "UPDATE tokens SET status = 'invalid', updated_at_ms = ?1 WHERE pixel_id = ?2 AND version = ?3 AND status = 'active'",
                    params![now_ms(), id, version as i64],
                )
            })
            .await?;
        Ok(changed > 0)
    }

    /// Every pixel with an active token.
    pub async fn active_pixels(&self) -> Result<Vec<String>, StoreError> {
        self.call(|c| {
            let mut statement = c.prepare("SELECT pixel_id FROM tokens WHERE status = 'active'")?;
            let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
        .await
    }

    /// Can the file be read?
    pub async fn check(&self) -> Result<(), StoreError> {
        self.call(|c| c.query_row("SELECT count(*) FROM tokens WHERE 0", [], |_| Ok(()))).await
    }
}

fn open_blocking(data_dir: &Path, path: &Path) -> anyhow::Result<Connection> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(data_dir)?;
    // Create the file owner-only before SQLite does; SQLite gives its WAL files the same mode.
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // A replaced or deleted row (a Part I plaintext token, a revoked key's digest) is zeroed in
    // the file, not left in a free page.
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS tokens (
            pixel_id      TEXT PRIMARY KEY NOT NULL,
            access_token  TEXT NOT NULL,
            status        TEXT NOT NULL,
            updated_at_ms INTEGER NOT NULL,
            version       INTEGER NOT NULL
        )",
    )?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn set_get_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("nested")).await.unwrap();
        assert_eq!(store.get("1").await.unwrap(), None);
        let a = store.set("1", Secret::new("tok-a")).await.unwrap();
        assert_eq!(store.get("1").await.unwrap(), Some(a.clone()));
        let b = store.set("1", Secret::new("tok-b")).await.unwrap();
        assert_ne!(a.version, b.version);
        assert_eq!(store.get("1").await.unwrap().unwrap().token.expose(), "tok-b");
        assert_eq!(store.get("2").await.unwrap(), None);
        assert!(store.delete("1").await.unwrap());
        assert!(!store.delete("1").await.unwrap());
        assert_eq!(store.get("1").await.unwrap(), None);
        store.check().await.unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(store.path()).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[tokio::test]
    async fn mark_invalid_is_conditional_on_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).await.unwrap();
        assert!(!store.mark_invalid("1", 5).await.unwrap(), "nothing stored");
        let old = store.set("1", Secret::new("old")).await.unwrap();
        let new = store.set("1", Secret::new("new")).await.unwrap();
        assert!(!store.mark_invalid("1", old.version).await.unwrap(), "a newer token is never overwritten");
        assert_eq!(store.get("1").await.unwrap().unwrap().status, TokenStatus::Active);
        assert!(store.mark_invalid("1", new.version).await.unwrap());
        assert!(!store.mark_invalid("1", new.version).await.unwrap(), "already invalid");
        let got = store.get("1").await.unwrap().unwrap();
        assert_eq!((got.status, got.version, got.token.expose()), (TokenStatus::Invalid, new.version, "new"));
    }

    #[tokio::test]
    async fn a_second_process_can_write_while_one_holds_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let server = LocalStore::open(dir.path()).await.unwrap();
        let cli = LocalStore::open(dir.path()).await.unwrap();
        server.set("1", Secret::new("a")).await.unwrap();
        let set = cli.set("1", Secret::new("b")).await.unwrap();
        assert_eq!(server.get("1").await.unwrap(), Some(set));
    }
}
