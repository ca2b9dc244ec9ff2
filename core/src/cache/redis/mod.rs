//! The Redis store: every multi-step operation is one Lua script, so it is atomic on the
//! server no matter how many core replicas call it at once.
//!
//! Keys are prefixed with the configured `redis_prefix`. The connection manager
//! reconnects by itself after a dropped connection.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use verge_shared::gcra::{Decision, Policy};
use verge_shared::ratelimit::Limit;

use super::{CacheError, Store, Take};
use decide::{Bucket, Decider, Request};

mod decide;

/// Increment, setting the expiry only when the increment created the key.
const INCREMENT: &str = r"
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
";

/// ARGV: expected-present flag, expected value, new value, ttl ms (0 = none).
const COMPARE_AND_SET: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
if ARGV[4] == '0' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
";

pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    increment: Script,
    compare_and_set: Script,
    decider: Decider,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL (and so any password) is deliberately not kept or printed.
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

pub(super) fn backend(err: redis::RedisError) -> CacheError {
    CacheError::Backend(err.to_string())
}

impl RedisStore {
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, CacheError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let conn = ConnectionManager::new_with_config(client, fail_fast()).await.map_err(backend)?;
        Ok(RedisStore {
            decider: Decider::start(conn.clone()),
            conn,
            prefix: prefix.to_owned(),
            increment: Script::new(INCREMENT),
            compare_and_set: Script::new(COMPARE_AND_SET),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    async fn decide_one(&self, key: &str, bucket: Bucket, cost: u32, now_us: u64) -> Result<Decision, CacheError> {
        let request = Request { key: self.key(key), bucket, cost, now_us };
        let mut decided = self.decider.decide(vec![request]).await?;
        decided.pop().ok_or_else(|| CacheError::Backend("the decide script answered nothing".into()))
    }
}

/// Redis down must cost a request milliseconds, not the connection manager's default of
/// six reconnects with jittered backoff of a second and more and no timeout: without
/// retries a rate-limit decision falls back to its policy's failure mode at once, and the
/// next request tries to reconnect again.
fn fail_fast() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(Duration::from_millis(500))
        .set_response_timeout(Duration::from_secs(2))
}

fn millis(ttl: Duration) -> u64 {
    // Redis rejects a zero expiry; the shortest it can express is 1 ms.
    (ttl.as_millis() as u64).max(1)
}

#[async_trait]
impl Store for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.conn.clone().get(self.key(key)).await.map_err(backend)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        match ttl {
            Some(ttl) => conn.pset_ex::<_, _, ()>(self.key(key), value, millis(ttl)).await,
            None => conn.set::<_, _, ()>(self.key(key), value).await,
        }
        .map_err(backend)
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let removed: i64 = self.conn.clone().del(self.key(key)).await.map_err(backend)?;
        Ok(removed > 0)
    }

    async fn increment(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, CacheError> {
        let mut conn = self.conn.clone();
        let result = self.increment.key(self.key(key)).arg(by).arg(millis(ttl)).invoke_async(&mut conn).await;
        result.map_err(|err| match err.kind() {
            redis::ErrorKind::ResponseError | redis::ErrorKind::ExtensionError => {
                CacheError::NotAnInteger { key: key.to_owned() }
            }
            _ => backend(err),
        })
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, CacheError> {
        let mut conn = self.conn.clone();
        let set: i64 = self
            .compare_and_set
            .key(self.key(key))
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(new)
            .arg(ttl.map_or(0, millis))
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(set == 1)
    }

    async fn take(&self, key: &str, policy: Policy, cost: u32, now_us: u64) -> Result<Decision, CacheError> {
        self.decide_one(key, Bucket::Gcra(policy), cost, now_us).await
    }

    async fn take_window(&self, key: &str, limit: &Limit, cost: u32, now_us: u64) -> Result<Decision, CacheError> {
        self.decide_one(key, Bucket::of(limit), cost, now_us).await
    }

    async fn take_many(&self, takes: &[Take<'_>], now_us: u64) -> Result<Vec<Decision>, CacheError> {
        let requests = takes
            .iter()
            .map(|t| Request { key: self.key(t.key), bucket: Bucket::of(&t.limit), cost: t.cost, now_us })
            .collect();
        self.decider.decide(requests).await
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let pong: String = redis::cmd("PING").query_async(&mut self.conn.clone()).await.map_err(backend)?;
        if pong == "PONG" { Ok(()) } else { Err(CacheError::Backend(format!("unexpected PING reply {pong}"))) }
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}
