//! `spin:key-value@3.0.0` for the local host, over the local edge store.
//!
//! The store is the SQLite file the core's publisher writes, in Spin's own
//! `spin_key_value(store, key, value)` schema, so the same file also works under `spin up`.
//! SQLite in WAL mode lets the publisher write while every request reads; readers see the
//! last committed state, and the publisher commits the manifest key last, so a request
//! never sees half a publish. Connections are pooled: opening one per request would cost
//! more than the lookup.
//!
//! Reads are served from memory once seen: a watcher asks SQLite every few milliseconds
//! whether another connection committed (`PRAGMA data_version`) and empties the cache when
//! one did, so a publish is visible within [`WATCH_INTERVAL`] and a hot key (the manifest,
//! a popular link, a 404's miss) costs no file locking per request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use wasmtime::component::{Access, Accessor, FutureReader, HasData, Resource, ResourceTable, StreamReader};

wasmtime::component::bindgen!({
    inline: "
        package spin:key-value@3.0.0;

        interface key-value {
            resource store {
                open: static async func(label: string) -> result<store, error>;
                get: async func(key: string) -> result<option<list<u8>>, error>;
                set: async func(key: string, value: list<u8>) -> result<_, error>;
                delete: async func(key: string) -> result<_, error>;
                exists: async func(key: string) -> result<bool, error>;
                get-keys: async func() -> tuple<stream<string>, future<result<_, error>>>;
            }

            variant error {
                store-table-full,
                no-such-store,
                access-denied,
                other(string),
            }
        }

        world host {
            import key-value;
        }
    ",
    imports: { default: store | trappable },
    with: { "spin:key-value/key-value.store": OpenStore },
});

use spin::key_value::key_value::{Error, Host, HostStore, HostStoreWithStore};

/// The only store label the edge application uses, as in Spin.
const DEFAULT_STORE: &str = "default";

/// How often the watcher looks for commits by other connections.
const WATCH_INTERVAL: Duration = Duration::from_millis(5);
/// Entries the read cache holds before it starts over.
const CACHE_ENTRIES: usize = 16_384;

/// An opened store handed to the guest; there is one store, so it carries nothing.
/// (`pub` because the generated bindings re-export it.)
#[derive(Debug)]
#[allow(unreachable_pub)]
pub struct OpenStore;

/// The local edge store: a pool of SQLite connections to one file.
#[derive(Debug)]
pub(crate) struct EdgeStore {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    cache: RwLock<Cache>,
}

/// Values (and absences) read since the last change to the file.
#[derive(Debug, Default)]
struct Cache {
    /// Bumped on every change, so a read that started before one is not cached after it.
    generation: u64,
    entries: HashMap<String, Option<Arc<[u8]>>>,
}

impl EdgeStore {
    /// Opens (creating if needed) the store file, ready for the publisher to fill.
    pub(crate) fn open(path: &Path) -> rusqlite::Result<Arc<EdgeStore>> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (store, key))",
        )?;
        let store =
            Arc::new(EdgeStore { path: path.to_owned(), idle: Mutex::new(vec![conn]), cache: RwLock::default() });
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
        let mut cache = self.cache.write().expect("cache lock");
        cache.generation += 1;
        cache.entries.clear();
    }

    fn with_conn<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, Error> {
        let pooled = self.idle.lock().expect("pool lock").pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .and_then(|conn| conn.busy_timeout(std::time::Duration::from_secs(2)).map(|()| conn))
            .map_err(other)?,
        };
        let result = f(&conn).map_err(other);
        self.idle.lock().expect("pool lock").push(conn);
        result
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let generation = {
            let cache = self.cache.read().expect("cache lock");
            if let Some(cached) = cache.entries.get(key) {
                return Ok(cached.as_deref().map(<[u8]>::to_vec));
            }
            cache.generation
        };
        let value: Option<Vec<u8>> = self.with_conn(|conn| {
            conn.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row((DEFAULT_STORE, key), |row| row.get(0))
                .optional()
        })?;
        let mut cache = self.cache.write().expect("cache lock");
        if cache.generation == generation {
            if cache.entries.len() >= CACHE_ENTRIES {
                cache.entries.clear();
            }
            cache.entries.insert(key.to_owned(), value.as_deref().map(Arc::from));
        }
        Ok(value)
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), Error> {
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

    fn delete(&self, key: &str) -> Result<(), Error> {
        self.with_conn(|conn| {
            conn.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .execute((DEFAULT_STORE, key))
                .map(drop)
        })?;
        self.forget_cached();
        Ok(())
    }

    fn keys(&self) -> Result<Vec<String>, Error> {
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

fn other(err: rusqlite::Error) -> Error {
    Error::Other(err.to_string())
}

/// What the key-value functions see of the per-request state.
pub(crate) struct KvView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) store: &'a Arc<EdgeStore>,
}

/// Marker for the key-value part of the host state.
pub(crate) struct Kv;

impl HasData for Kv {
    type Data<'a> = KvView<'a>;
}

impl<T> HostStoreWithStore<T> for Kv {
    fn drop(mut access: Access<'_, T, Self>, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        access.get().table.delete(store)?;
        Ok(())
    }

    async fn open(accessor: &Accessor<T, Self>, label: String) -> wasmtime::Result<Result<Resource<OpenStore>, Error>> {
        if label != DEFAULT_STORE {
            return Ok(Err(Error::NoSuchStore));
        }
        accessor.with(|mut access| Ok(Ok(access.get().table.push(OpenStore)?)))
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        _store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(accessor.with(|mut access| access.get().store.get(&key)))
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        _store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(accessor.with(|mut access| access.get().store.set(&key, &value)))
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        _store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(accessor.with(|mut access| access.get().store.delete(&key)))
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        _store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        Ok(accessor.with(|mut access| access.get().store.get(&key).map(|value| value.is_some())))
    }

    async fn get_keys(
        accessor: &Accessor<T, Self>,
        _store: Resource<OpenStore>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), Error>>)> {
        accessor.with(|mut access| {
            let (keys, result) = match access.get().store.keys() {
                Ok(keys) => (keys, Ok(())),
                Err(err) => (Vec::new(), Err(err)),
            };
            Ok((
                StreamReader::new(&mut access, keys)?,
                FutureReader::new(&mut access, async move { wasmtime::error::Ok(result) })?,
            ))
        })
    }
}

impl HostStore for KvView<'_> {}

impl Host for KvView<'_> {}

pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    spin::key_value::key_value::add_to_linker::<T, Kv>(linker, view)
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
