//! Redis as an edge store: the replicated KV a fleet of native edge nodes reads
//! (`verge edge serve --native` with `VERGE_EDGE_REDIS_URL`).
//!
//! Keys are the edge layout's own under a prefix. After each write the publisher bumps
//! `<prefix>__changes`, which every node polls to forget its cached reads, so a publish is
//! visible on every node within milliseconds. Writes are pipelined per chunk; like the
//! local store, each is committed on return, and the manifest is written after the data it
//! names, so a node never reads half a publish.
//!
//! The counter moves only while it exists. A Redis that came back empty has none, and
//! nodes then keep answering from what they read before, the only whole copy left; the
//! republish that follows refills the store without touching the counter, and creates it
//! only once everything is written ([`EdgeStore::whole`]). Bumping it at the first chunk
//! would make every node drop its cache for a store that still lacks the manifest and
//! most records.

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::store::{EdgeStore, StoreError};

/// The change counter nodes poll (under the prefix); `verge-edge-native` reads the same name.
pub const CHANGES_KEY: &str = "__changes";

/// Increments KEYS[1] only when it exists (see the module docs).
const BUMP_IF_PRESENT: &str = "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCR', KEYS[1]) end";

#[derive(Clone)]
pub struct RedisEdgeStore {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisEdgeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL (and so any password) is deliberately not kept or printed.
        f.debug_struct("RedisEdgeStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisEdgeStore {
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisEdgeStore, StoreError> {
        let fail =
            |err: redis::RedisError| StoreError::Backend { store: format!("redis {prefix}"), message: err.to_string() };
        let conn = ConnectionManager::new(redis::Client::open(url).map_err(fail)?).await.map_err(fail)?;
        Ok(RedisEdgeStore { conn, prefix: prefix.to_owned() })
    }

    fn fail(&self, err: redis::RedisError) -> StoreError {
        StoreError::Backend { store: self.describe(), message: err.to_string() }
    }

    /// Runs `pipe` with the change counter bumped in the same transaction, if it exists.
    async fn changed(&self, pipe: &mut redis::Pipeline) -> Result<(), StoreError> {
        pipe.cmd("EVAL").arg(BUMP_IF_PRESENT).arg(1).arg(format!("{}{CHANGES_KEY}", self.prefix)).ignore();
        pipe.query_async::<()>(&mut self.conn.clone()).await.map_err(|err| self.fail(err))
    }
}

#[async_trait]
impl EdgeStore for RedisEdgeStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn.clone().get(format!("{}{key}", self.prefix)).await.map_err(|err| self.fail(err))
    }

    async fn put_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (key, value) in entries {
            pipe.set(format!("{}{key}", self.prefix), value.as_slice()).ignore();
        }
        self.changed(&mut pipe).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for key in keys {
            pipe.del(format!("{}{key}", self.prefix)).ignore();
        }
        self.changed(&mut pipe).await
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // SCAN's MATCH is a glob: escape its special characters in our literal prefix.
        let literal: String = format!("{}{prefix}", self.prefix)
            .chars()
            .flat_map(|c| if matches!(c, '*' | '?' | '[' | ']' | '\\') { vec!['\\', c] } else { vec![c] })
            .collect();
        let mut conn = self.conn.clone();
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{literal}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|err| self.fail(err))?;
            keys.extend(page.into_iter().filter_map(|key| key.strip_prefix(&self.prefix).map(str::to_owned)));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        Ok(keys)
    }

    /// Creates the counter if it is missing; an existing one has moved with every write.
    async fn whole(&self) -> Result<(), StoreError> {
        redis::cmd("SET")
            .arg(format!("{}{CHANGES_KEY}", self.prefix))
            .arg(1)
            .arg("NX")
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(|err| self.fail(err))
    }

    fn describe(&self) -> String {
        format!("redis edge store `{}`", self.prefix)
    }
}
