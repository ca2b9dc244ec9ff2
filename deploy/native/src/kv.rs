//! Where the native node reads edge KV: the local edge store, or Redis as the replicated
//! KV a fleet of nodes shares.
//!
//! The local store is `verge_kv_store` (the very reader the wasm host uses). Redis holds
//! the same keys under a prefix, written by the core's publisher, which bumps a change
//! counter after every write; each node polls that counter every few milliseconds and
//! forgets its cached reads when it moves, so a publish is visible at once on every node
//! and a hot key costs no round trip per request.
//!
//! Beside that cache, a node keeps the last value it read of every key (up to
//! [`LAST_KNOWN_ENTRIES`]), across changes. It answers from them while Redis is unreachable,
//! and while Redis holds no counter: it came back empty and the core's republish has not
//! finished (the core creates the counter last). The cache alone was not enough: it holds
//! only what was read since the last change, and the edge keeps some reads of its own (the
//! manifest, for a quarter second), so a key read before a change and needed again during
//! an outage was not in it.
//!
//! Rate-limit counters sit beside KV, never in it: in process memory over the local store
//! (one node counts alone), in Redis under `<prefix>__counters:` with the expiry their
//! names carry (a fleet counts together, exactly).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use verge_edge::HostError;
use verge_kv_store::counters::{Counters, expires_at_secs};
use verge_kv_store::{Cached, EdgeStore, ReadCache};

/// The key, under the prefix, the core's publisher increments after each write.
pub(crate) const CHANGES_KEY: &str = "__changes";
/// How often a node looks at the change counter.
const WATCH_INTERVAL: Duration = Duration::from_millis(5);
/// Keys whose last value a node keeps for outages; later keys are not kept.
const LAST_KNOWN_ENTRIES: usize = 65_536;

#[derive(Debug, Clone)]
pub(crate) enum Kv {
    Local(Arc<EdgeStore>, Arc<Counters>),
    Redis(Arc<RedisKv>),
}

impl Kv {
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        match self {
            Kv::Local(store, _) => store.get(key).map_err(|err| HostError(err.to_string())),
            Kv::Redis(redis) => redis.get(key).await,
        }
    }

    pub(crate) async fn counter_add(&self, key: &str, delta: i64) -> Result<i64, HostError> {
        match self {
            Kv::Local(_, counters) => Ok(counters.add(key, delta, unix_secs())),
            Kv::Redis(redis) => redis.counter_add(key, delta).await,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Kv::Local(..) => "local edge store".into(),
            Kv::Redis(redis) => format!("redis (prefix `{}`)", redis.prefix),
        }
    }
}

pub(crate) struct RedisKv {
    conn: ConnectionManager,
    prefix: String,
    cache: ReadCache,
    last_known: RwLock<HashMap<String, Option<Arc<[u8]>>>>,
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKv").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisKv {
    /// Connects, and starts the watcher that empties the cache when the core publishes.
    pub(crate) async fn connect(url: &str, prefix: &str) -> Result<Arc<RedisKv>, redis::RedisError> {
        // Redis down must cost a read milliseconds (it then falls back on what was read
        // before), not the connection manager's default of six reconnects with backoff of
        // a second and more, which every waiting read shares: requests hung for 30 s.
        let fail_fast = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Duration::from_millis(250))
            .set_response_timeout(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(redis::Client::open(url)?, fail_fast).await?;
        let kv = Arc::new(RedisKv {
            conn,
            prefix: prefix.to_owned(),
            cache: ReadCache::default(),
            last_known: RwLock::default(),
        });
        let weak = Arc::downgrade(&kv);
        tokio::spawn(async move {
            let mut seen: Option<i64> = None;
            while let Some(kv) = weak.upgrade() {
                let mut conn = kv.conn.clone();
                let now: Result<Option<i64>, _> = conn.get(format!("{}{CHANGES_KEY}", kv.prefix)).await;
                match now {
                    Ok(Some(now)) if Some(now) != seen => {
                        kv.forget_cached();
                        seen = Some(now);
                    }
                    Ok(Some(_)) => {}
                    // No counter: Redis came back empty, and reads fall back on what was
                    // read before (see `get`) until the core's republish has written
                    // everything, which it marks by creating the counter
                    // (`RedisEdgeStore::whole` in the core). The cache empties then. This
                    // holds whether or not this loop saw the outage: the connection may
                    // reconnect inside one call.
                    Ok(None) => seen = None,
                    // Unreachable: reads fall back on what was read before the outage (the
                    // edge's job is to outlive its store); the cache empties at the first
                    // counter after it.
                    Err(_) => seen = None,
                }
                drop(kv);
                tokio::time::sleep(WATCH_INTERVAL).await;
            }
        });
        Ok(kv)
    }

    fn forget_cached(&self) {
        self.cache.forget();
    }

    /// `INCRBY` and, for a name that carries its expiry, `EXPIREAT`, in one round trip.
    async fn counter_add(&self, key: &str, delta: i64) -> Result<i64, HostError> {
        let name = format!("{}__counters:{key}", self.prefix);
        let mut pipe = redis::pipe();
        pipe.atomic().incr(&name, delta);
        if let Some(at) = expires_at_secs(key) {
            pipe.cmd("EXPIREAT").arg(&name).arg(at).ignore();
        }
        let mut conn = self.conn.clone();
        let (value,): (i64,) =
            pipe.query_async(&mut conn).await.map_err(|err| HostError(format!("redis counter `{key}`: {err}")))?;
        Ok(value)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        let generation = match self.cache.lookup(key) {
            Cached::Hit(value) => return Ok(value),
            Cached::Miss(generation) => generation,
        };
        // The counter rides along in the same round trip: without it, Redis holds no
        // whole state, and what this node read before is the better answer.
        let mut conn = self.conn.clone();
        let read: Result<(Option<Vec<u8>>, Option<i64>), _> = redis::cmd("MGET")
            .arg(format!("{}{key}", self.prefix))
            .arg(format!("{}{CHANGES_KEY}", self.prefix))
            .query_async(&mut conn)
            .await;
        match read {
            Ok((value, Some(_))) => {
                self.cache.store(generation, key, value.as_deref());
                self.remember(key, value.as_deref());
                Ok(value)
            }
            Ok((value, None)) => Ok(self.recall(key).unwrap_or(value)),
            Err(err) => self.recall(key).ok_or_else(|| HostError(format!("redis get `{key}`: {err}"))),
        }
    }

    fn remember(&self, key: &str, value: Option<&[u8]>) {
        let mut known = self.last_known.write().unwrap_or_else(PoisonError::into_inner);
        if known.len() < LAST_KNOWN_ENTRIES || known.contains_key(key) {
            known.insert(key.to_owned(), value.map(Arc::from));
        }
    }

    /// The last value read of `key` (`Some(None)`: it was absent), if any was.
    fn recall(&self, key: &str) -> Option<Option<Vec<u8>>> {
        let known = self.last_known.read().unwrap_or_else(PoisonError::into_inner);
        known.get(key).map(|value| value.as_deref().map(<[u8]>::to_vec))
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
