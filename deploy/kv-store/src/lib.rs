//! The local edge store, read: the SQLite file the core's publisher writes, in Spin's own
//! `spin_key_value(store, key, value)` schema, so the same file also works under `spin up`.
//!
//! Both local edges read it through this crate: the wasmtime host (which hands it to the
//! component as `spin:key-value`) and the native edge node (which calls it directly).
//! SQLite in WAL mode lets the publisher write while every request reads; readers see the
//! last committed state, and the publisher commits the manifest key last, so a request
//! never sees half a publish. Connections are pooled: opening one per request would cost
//! more than the lookup.
//!
//! Reads are served from memory once seen: a watcher asks SQLite every few milliseconds
//! whether another connection committed (`PRAGMA data_version`) and empties the cache when
//! one did, so a publish is visible within [`WATCH_INTERVAL`] and a hot key (the manifest,
//! a popular link, a 404's miss) costs no file locking per request.

pub mod counters;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

/// The only store label the edge application uses, as in Spin.
pub const DEFAULT_STORE: &str = "default";

/// A failed read or write of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "edge store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// How often the watcher looks for commits by other connections.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(5);
/// How much of the store file each reader connection maps.
const MMAP_BYTES: i64 = 1 << 30;
/// Entries the read cache holds before it starts over.
const CACHE_ENTRIES: usize = 16_384;

/// The local edge store: a pool of SQLite connections to one file.
#[derive(Debug)]
pub struct EdgeStore {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    cache: ReadCache,
}

/// Values (and absences) read since the last change, for any store whose readers learn
/// of changes (the SQLite watcher here, the native node's Redis watcher). A generation
/// counter keeps a read that raced a change from being cached after it.
#[derive(Debug, Default)]
pub struct ReadCache(RwLock<Cache>);

#[derive(Debug, Default)]
struct Cache {
    generation: u64,
    entries: HashMap<String, Option<Arc<[u8]>>>,
}

/// What the cache knows of a key.
#[derive(Debug)]
pub enum Cached {
    /// The value (or `None`: known absent).
    Hit(Option<Vec<u8>>),
    /// Not cached: read it, then [`ReadCache::store`] it under this generation.
    Miss(u64),
}

impl ReadCache {
    pub fn lookup(&self, key: &str) -> Cached {
        let cache = self.0.read().expect("cache lock");
        match cache.entries.get(key) {
            Some(value) => Cached::Hit(value.as_deref().map(<[u8]>::to_vec)),
            None => Cached::Miss(cache.generation),
        }
    }

    /// Keeps what was read under `generation`, unless a change came since.
    pub fn store(&self, generation: u64, key: &str, value: Option<&[u8]>) {
        let mut cache = self.0.write().expect("cache lock");
        if cache.generation == generation {
            if cache.entries.len() >= CACHE_ENTRIES {
                cache.entries.clear();
            }
            cache.entries.insert(key.to_owned(), value.map(Arc::from));
        }
    }

    /// Forgets everything: the store changed.
    pub fn forget(&self) {
        let mut cache = self.0.write().expect("cache lock");
        cache.generation += 1;
        cache.entries.clear();
    }
}

impl EdgeStore {
    /// Opens (creating if needed) the store file, ready for the publisher to fill.
    pub fn open(path: &Path) -> rusqlite::Result<Arc<EdgeStore>> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (store, key))",
        )?;
        let store =
            Arc::new(EdgeStore { path: path.to_owned(), idle: Mutex::new(vec![conn]), cache: ReadCache::default() });
        let watcher = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        // Read the starting version here, before any read can be cached: taken on the
        // watcher thread, a commit made before that thread first ran would go unseen and
        // leave a stale entry cached until the next commit.
        let seen = data_version(&watcher);
        let weak = Arc::downgrade(&store);
        std::thread::Builder::new()
            .name("edge-store-watch".into())
            .spawn(move || watch(&watcher, seen, &weak))
            .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?;
        Ok(store)
    }

    fn forget_cached(&self) {
        self.cache.forget();
    }

    fn with_conn<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, StoreError> {
        let pooled = self.idle.lock().expect("pool lock").pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .and_then(|conn| conn.busy_timeout(std::time::Duration::from_secs(2)).map(|()| conn))
            // Reads of a large store (a million links) through the page cache cost a
            // syscall each; mapped, a cold key is a memory read.
            .and_then(|conn| conn.pragma_update(None, "mmap_size", MMAP_BYTES).map(|()| conn))
            .map_err(other)?,
        };
        let result = f(&conn).map_err(other);
        self.idle.lock().expect("pool lock").push(conn);
        result
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let generation = match self.cache.lookup(key) {
            Cached::Hit(value) => return Ok(value),
            Cached::Miss(generation) => generation,
        };
        let value: Option<Vec<u8>> = self.with_conn(|conn| {
            conn.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row((DEFAULT_STORE, key), |row| row.get(0))
                .optional()
        })?;
        self.cache.store(generation, key, value.as_deref());
        Ok(value)
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            conn.prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            )?
            .execute((DEFAULT_STORE, key, value))
            .map(drop)
        })?;
        self.forget_cached();
        Ok(())
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            conn.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .execute((DEFAULT_STORE, key))
                .map(drop)
        })?;
        self.forget_cached();
        Ok(())
    }

    pub fn keys(&self) -> Result<Vec<String>, StoreError> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")?;
            let keys = statement.query_map([DEFAULT_STORE], |row| row.get(0))?;
            keys.collect()
        })
    }
}

fn data_version(conn: &Connection) -> Option<i64> {
    conn.query_row("PRAGMA data_version", [], |row| row.get::<_, i64>(0)).ok()
}

/// Empties the store's cache whenever another connection commits, until the store is gone.
fn watch(conn: &Connection, mut seen: Option<i64>, store: &std::sync::Weak<EdgeStore>) {
    while let Some(store) = store.upgrade() {
        let now = data_version(conn);
        if now != seen {
            store.forget_cached();
            seen = now;
        }
        drop(store);
        std::thread::sleep(WATCH_INTERVAL);
    }
}

fn other(err: rusqlite::Error) -> StoreError {
    StoreError(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generous: this is about correctness, and the suite runs on a loaded machine; the
    /// watcher's usual delay is `WATCH_INTERVAL`.
    fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what} not seen within 5 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn cached_reads_follow_commits_from_another_process() {
        let dir = std::env::temp_dir().join(format!("verge-kv-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kv.db");
        let _ = std::fs::remove_file(&path);
        let store = EdgeStore::open(&path).unwrap();
        // The publisher's connection, as another process would hold it.
        let publisher = Connection::open(&path).unwrap();
        let put = |value: &[u8]| {
            publisher
                .execute(
                    "INSERT INTO spin_key_value (store, key, value) VALUES ('default', 'links/x', ?1)
                     ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
                    [value],
                )
                .unwrap()
        };

        assert_eq!(store.get("links/x").unwrap(), None, "absent, and now cached as absent");
        put(b"one");
        until("a new key", || store.get("links/x").unwrap().as_deref() == Some(b"one".as_slice()));
        put(b"two");
        until("a changed value", || store.get("links/x").unwrap().as_deref() == Some(b"two".as_slice()));
        publisher.execute("DELETE FROM spin_key_value WHERE key = 'links/x'", []).unwrap();
        until("a deletion", || store.get("links/x").unwrap().is_none());
        // And it stays gone: no stale value comes back from a racing read.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(store.get("links/x").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
