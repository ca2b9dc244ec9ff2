//! Publishing edge configuration: from the database to every edge KV store.
//!
//! A write commits its row, its audit entry and an outbox row in one transaction
//! ([`enqueue`]). The [`Publisher`] drains the outbox: it rebuilds each dataset, skips
//! those whose content hash matches what the store's manifest already names, writes the
//! changed ones under a new version, and rewrites the manifest last (see
//! `verge_shared::kv`). Outbox rows are deleted only after the manifest is written, so a
//! publish that dies midway is simply done again: publishing is idempotent and resumable.
//!
//! Records the edge looks up one at a time (a link) are not datasets: there may be millions,
//! and each is read alone, so each has its own key. Their sources own a key prefix, enqueue
//! the changed key itself, and the publisher rewrites (or deletes) just those keys; a full
//! publish compares every key with the store and writes only the differences.

mod full;
pub mod redis_store;
pub mod snapshot;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use sqlx::Row;
use tokio::sync::Notify;
use verge_shared::kv;

pub use self::full::{Progress, publish_to};
pub use self::redis_store::RedisEdgeStore;
pub use self::store::{EdgeStore, LocalEdgeStore, StoreError};
use crate::db::{Database, Dialect};
use crate::time::now_millis;

/// One whole-read dataset as it should be at the edge: named parts and their bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetContent {
    /// e.g. `flags/production`; the key prefix of its versions.
    pub name: String,
    pub parts: Vec<(String, Vec<u8>)>,
}

impl DatasetContent {
    /// Hex SHA-256 over the parts in order, each length-prefixed so boundaries count.
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        for (part, bytes) in &self.parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
        hex::encode(hasher.finalize())
    }
}

/// A source of datasets: each capability that publishes to the edge implements this.
#[async_trait]
pub trait DatasetSource: Send + Sync + std::fmt::Debug {
    /// Every dataset this source publishes, built from the database as it is now.
    async fn build(&self, db: &Database) -> Result<Vec<DatasetContent>, sqlx::Error>;

    /// For sources whose datasets are costly to build (an autocomplete index): the prefix
    /// of their dataset names. A publish caused by the outbox then builds only those of
    /// them the outbox names ([`DatasetSource::build_named`]) and leaves the rest as they
    /// are live; a full publish still builds them all.
    fn dataset_prefix(&self) -> Option<&'static str> {
        None
    }

    /// The datasets among `names` (all under the prefix) as they should be; a name
    /// without one (a deleted index) is left out and so removed from the edge.
    async fn build_named(&self, db: &Database, names: &[String]) -> Result<Vec<DatasetContent>, sqlx::Error> {
        let all = self.build(db).await?;
        Ok(all.into_iter().filter(|dataset| names.contains(&dataset.name)).collect())
    }

    /// For sources of individually keyed records: the key prefix they own, wholly (no
    /// dataset lives under it). Outbox rows under it name one changed key each.
    fn keyed_prefix(&self) -> Option<&'static str> {
        None
    }

    /// The current value of each of `keys` (all under the prefix); `None`: must not exist.
    async fn keyed_values(&self, _db: &Database, _keys: &[String]) -> Result<Vec<KeyedValue>, sqlx::Error> {
        Ok(Vec::new())
    }

    /// Every keyed record, for a full publish.
    async fn keyed_all(&self, _db: &Database) -> Result<Vec<(String, Vec<u8>)>, sqlx::Error> {
        Ok(Vec::new())
    }
}

/// One keyed record's key and its value, `None` when it must be deleted.
pub type KeyedValue = (String, Option<Vec<u8>>);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the manifest in {store} is unreadable: {source}")]
    Manifest { store: String, source: kv::ManifestError },
}

/// What one publish did to one store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The snapshot now live (unchanged when nothing changed).
    pub snapshot: u64,
    /// Datasets written under a new version.
    pub written: Vec<String>,
    /// Keys written, manifest included.
    pub keys_written: usize,
    /// Keys of superseded versions removed.
    pub keys_removed: usize,
}

/// Changes waiting to be published: how many, and when the oldest was written (the
/// publish lag an operator sees is its age).
pub async fn backlog(db: &Database) -> Result<(i64, Option<i64>), sqlx::Error> {
    let row = sqlx::query("SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox").fetch_one(db.pool()).await?;
    Ok((row.try_get("n")?, row.try_get("oldest")?))
}

/// Records, inside the caller's transaction, that `dataset` changed and must be published.
pub async fn enqueue(conn: &mut sqlx::AnyConnection, dataset: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO outbox (id, dataset, created_at) VALUES ($1, $2, $3)")
        .bind(crate::ids::new_id("obx"))
        .bind(dataset)
        .bind(now_millis().0)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Writes the current value of each changed keyed record named by the outbox.
async fn publish_keys(
    db: &Database,
    sources: &[Arc<dyn DatasetSource>],
    store: &dyn EdgeStore,
    keys: &[String],
) -> Result<usize, PublishError> {
    let mut written = 0;
    for source in sources {
        let Some(prefix) = source.keyed_prefix() else { continue };
        let mine: Vec<String> = keys.iter().filter(|key| key.starts_with(prefix)).cloned().collect();
        if mine.is_empty() {
            continue;
        }
        let values = source.keyed_values(db, &mine).await?;
        let (puts, deletes): (Vec<_>, Vec<_>) = values.into_iter().partition(|(_, value)| value.is_some());
        let puts: Vec<(String, Vec<u8>)> =
            puts.into_iter().map(|(key, value)| (key, value.unwrap_or_default())).collect();
        let deletes: Vec<String> = deletes.into_iter().map(|(key, _)| key).collect();
        store.put_many(&puts).await?;
        store.delete_many(&deletes).await?;
        written += puts.len() + deletes.len();
    }
    Ok(written)
}

/// Drains the outbox into the configured stores, promptly after each write and on a
/// steady tick (which also picks up writes made by other core replicas).
#[derive(Debug)]
pub struct Publisher {
    db: Database,
    sources: Vec<Arc<dyn DatasetSource>>,
    stores: Vec<Arc<dyn EdgeStore>>,
    wake: Notify,
    /// The newest manifest seen in each store, to notice one that lost what it held.
    seen: std::sync::Mutex<Vec<Option<kv::Manifest>>>,
}

/// How often the publisher looks at the outbox without being woken.
const TICK: Duration = Duration::from_millis(500);
/// Outbox rows one round reads at most, so a backlog is drained in bounded memory.
const OUTBOX_ROUND: i64 = 10_000;
/// Arbitrary constant naming the PostgreSQL advisory lock that elects one publisher.
const PUBLISHER_LOCK: i64 = 0x7665_7267_6570_7562;

impl Publisher {
    pub fn new(db: Database, sources: Vec<Arc<dyn DatasetSource>>, stores: Vec<Arc<dyn EdgeStore>>) -> Arc<Publisher> {
        let seen = std::sync::Mutex::new(vec![None; stores.len()]);
        Arc::new(Publisher { db, sources, stores, wake: Notify::new(), seen })
    }

    /// Asks for a publish soon; call after committing a write that enqueued outbox rows.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Publishes to every store if the outbox holds anything (or `force`), then clears the
    /// rows it covered. Returns the reports, one per store, when it published; `None` when
    /// nothing was pending, or (on PostgreSQL) another replica holds the turn to publish.
    pub async fn run_once(&self, force: bool) -> Result<Option<Vec<Report>>, PublishError> {
        let mut conn = self.db.pool().acquire().await?;
        if self.db.dialect() == Dialect::Postgres {
            // Several core replicas share one outbox; one publishes at a time.
            let locked: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
                .bind(PUBLISHER_LOCK)
                .fetch_one(&mut *conn)
                .await?
                .try_get(0)?;
            if !locked {
                return Ok(None);
            }
        }
        let result = self.publish_pending(force).await;
        if self.db.dialect() == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_unlock($1)").bind(PUBLISHER_LOCK).execute(&mut *conn).await?;
        }
        result
    }

    async fn publish_pending(&self, force: bool) -> Result<Option<Vec<Report>>, PublishError> {
        // Exactly the rows read here are deleted afterwards, never a range: ids are minted
        // before their transaction commits, so a row with a smaller id than one read here
        // can still commit later, and must wait for the next round rather than vanish.
        let rows = sqlx::query("SELECT id, dataset FROM outbox ORDER BY id LIMIT $1")
            .bind(OUTBOX_ROUND)
            .fetch_all(self.db.pool())
            .await?;
        if rows.is_empty() && !force {
            return Ok(None);
        }
        let mut read = Vec::with_capacity(rows.len());
        let mut pending = std::collections::BTreeSet::new();
        for row in &rows {
            read.push(row.try_get::<String, _>(0)?);
            pending.insert(row.try_get::<String, _>(1)?);
        }
        let is_keyed = |name: &String| {
            self.sources.iter().filter_map(|source| source.keyed_prefix()).any(|prefix| name.starts_with(prefix))
        };
        let (keys, datasets): (Vec<String>, Vec<String>) = pending.into_iter().partition(is_keyed);
        let mut reports = Vec::new();
        for (index, store) in self.stores.iter().enumerate() {
            let report = if force {
                let floor = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())[index].clone();
                full::publish_above(&self.db, &self.sources, store.as_ref(), &(), floor.as_ref()).await?
            } else {
                let mut report = if datasets.is_empty() {
                    Report::default()
                } else {
                    full::publish_datasets(&self.db, &self.sources, store.as_ref(), &(), &datasets).await?
                };
                report.keys_written += publish_keys(&self.db, &self.sources, store.as_ref(), &keys).await?;
                report
            };
            reports.push(report);
        }
        for chunk in read.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!("DELETE FROM outbox WHERE id IN ({})", placeholders.join(", "));
            let mut delete = sqlx::query(&sql);
            for id in chunk {
                delete = delete.bind(id);
            }
            delete.execute(self.db.pool()).await?;
        }
        if rows.len() as i64 == OUTBOX_ROUND {
            // More waiting: go again at once instead of after a tick.
            self.wake();
        }
        Ok(Some(reports))
    }

    /// Each store's description and the snapshot its manifest holds now (`Err` with the
    /// reason when it cannot be read), for the console's overview.
    pub async fn snapshots(&self) -> Vec<(String, Result<u64, String>)> {
        let mut out = Vec::new();
        for store in &self.stores {
            let snapshot = match store.get(kv::MANIFEST_KEY).await {
                Ok(Some(bytes)) => kv::Manifest::decode(&bytes).map(|m| m.snapshot).map_err(|err| format!("{err:?}")),
                Ok(None) => Ok(0),
                Err(err) => Err(err.to_string()),
            };
            out.push((store.describe(), snapshot));
        }
        out
    }

    /// Reads each store's manifest; true when one holds an older snapshot than it did (a
    /// Redis restarted empty, a file rolled back), so everything must be published again.
    /// An unreachable store is skipped: its writes fail and are retried anyway.
    async fn a_store_lost_state(&self) -> bool {
        let mut lost = false;
        for (index, store) in self.stores.iter().enumerate() {
            let now = match store.get(kv::MANIFEST_KEY).await {
                Ok(Some(bytes)) => kv::Manifest::decode(&bytes).ok(),
                Ok(None) => None,
                Err(_) => continue,
            };
            let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let snapshot = |manifest: &Option<kv::Manifest>| manifest.as_ref().map_or(0, |m| m.snapshot);
            if snapshot(&now) < snapshot(&seen[index]) {
                tracing::warn!(store = %store.describe(), had = snapshot(&seen[index]), has = snapshot(&now),
                    "edge store lost published state; publishing everything again");
                lost = true;
            } else {
                seen[index] = now;
            }
        }
        lost
    }

    /// Runs until `shutdown` resolves: a full reconcile first, then the outbox as it fills.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut force = true;
        loop {
            match self.run_once(force).await {
                Ok(Some(reports)) => {
                    force = false;
                    for (store, report) in self.stores.iter().zip(reports) {
                        if report.keys_written + report.keys_removed > 0 {
                            tracing::info!(store = %store.describe(), snapshot = report.snapshot, datasets = ?report.written, "published");
                        }
                    }
                }
                // Nothing to publish; or, when forced, another replica holds the turn: the
                // forced reconcile is still owed, so it stays asked for until it runs.
                Ok(None) => {}
                // Left in the outbox; tried again on the next round.
                Err(err) => tracing::warn!(error = %err, "publish failed; will retry"),
            }
            if !force && self.a_store_lost_state().await {
                force = true;
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }
}
