//! Edge stores the publisher writes to.
//!
//! `LocalEdgeStore` is a SQLite file in Spin's own key-value schema (`spin_key_value`,
//! store `default`): the local wasmtime host reads it while the core writes it (WAL), and
//! the same file is what `spin up` reads for its default store, so a `--target spin`
//! snapshot needs no conversion.
//!
//! Commits do not wait for fsync (WAL with `synchronous = NORMAL`): a change reaches the
//! edge without a disk flush in its path, which under a busy disk can take a second on its
//! own. That loses nothing: a power cut rolls the file back to an earlier consistent commit
//! (WAL keeps commit order, and the manifest is written after the data it names), and the
//! publisher's start-up reconcile compares against what the store actually holds and
//! rewrites whatever the cut took.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row};

/// The Spin store name every Verge key lives in.
pub const SPIN_STORE: &str = "default";
/// Rows per INSERT, well under SQLite's bound-parameter limit.
const BATCH: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("edge store {store}: {message}")]
    Backend { store: String, message: String },
}

/// Where published keys go.
#[async_trait]
pub trait EdgeStore: Send + Sync + std::fmt::Debug {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes every entry; each entry is committed on return (not all-or-nothing): readers
    /// see it, and it outlives the writer's process.
    async fn put_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError>;
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError>;
    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Called once a full publish has written everything: the store now holds a whole
    /// state. Stores whose readers learn of changes some other way need do nothing.
    async fn whole(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// For logs and errors.
    fn describe(&self) -> String;
}

#[derive(Debug, Clone)]
pub struct LocalEdgeStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl LocalEdgeStore {
    /// Opens (creating) the store file at `path`.
    pub async fn open(path: &Path) -> Result<LocalEdgeStore, StoreError> {
        let fail = |message: String| StoreError::Backend { store: path.display().to_string(), message };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| fail(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool =
            SqlitePoolOptions::new().max_connections(2).connect_with(options).await.map_err(|e| fail(e.to_string()))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            )",
        )
        .execute(&pool)
        .await
        .map_err(|e| fail(e.to_string()))?;
        Ok(LocalEdgeStore { pool, path: path.to_owned() })
    }

    fn fail(&self, err: sqlx::Error) -> StoreError {
        StoreError::Backend { store: self.describe(), message: err.to_string() }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl EdgeStore for LocalEdgeStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT value FROM spin_key_value WHERE store = ? AND key = ?")
            .bind(SPIN_STORE)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(row.map(|r| r.get::<Vec<u8>, _>(0)))
    }

    async fn put_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        for chunk in entries.chunks(BATCH) {
            let mut query = QueryBuilder::new("INSERT INTO spin_key_value (store, key, value) ");
            query.push_values(chunk, |mut row, (key, value)| {
                row.push_bind(SPIN_STORE).push_bind(key).push_bind(value);
            });
            query.push(" ON CONFLICT (store, key) DO UPDATE SET value = excluded.value");
            query.build().execute(&self.pool).await.map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        for chunk in keys.chunks(BATCH) {
            let mut query = QueryBuilder::new("DELETE FROM spin_key_value WHERE store = ");
            query.push_bind(SPIN_STORE).push(" AND key IN (");
            let mut list = query.separated(", ");
            for key in chunk {
                list.push_bind(key);
            }
            query.push(")");
            query.build().execute(&self.pool).await.map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // A range scan on the primary key rather than LIKE, which would treat `_` and `%`
        // in keys as wildcards.
        let end = format!("{prefix}\u{10FFFF}");
        let rows = sqlx::query("SELECT key FROM spin_key_value WHERE store = ? AND key >= ? AND key < ? ORDER BY key")
            .bind(SPIN_STORE)
            .bind(prefix)
            .bind(end)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn describe(&self) -> String {
        format!("local:{}", self.path.display())
    }
}
