//! The Redis store: every multi-step operation is one Lua script, so it is atomic on the
//! server no matter how many core replicas call it at once.
//!
//! Keys are prefixed with the configured `redis_prefix`. The connection manager
//! reconnects by itself after a dropped connection.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use verge_shared::gcra::{self, Decision, Policy};
use verge_shared::ratelimit::Limit;
use verge_shared::ratelimit::window::{Kind, WindowState};

use super::{CacheError, Store};

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

/// The GCRA update of `verge_shared::gcra::decide`, mirrored: reads the TAT, stores the
/// new one if the request fits, and returns the stored TAT before and after (0 = none).
/// ARGV: now_us, emission interval us, capacity us (interval * burst), cost.
const TAKE: &str = r"
local now = tonumber(ARGV[1])
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
local tat = stored
if tat < now then tat = now end
local new_tat = tat + tonumber(ARGV[2]) * tonumber(ARGV[4])
if now < new_tat - tonumber(ARGV[3]) then
  return {stored, 0}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {stored, new_tat}
";

/// `verge_shared::ratelimit::window::decide`, mirrored: a hash of the window index (`w`)
/// and the current (`c`) and previous (`p`) counts. Returns the stored state before (`w`
/// -1 for none) and 1 when the request was counted. The estimate uses the same double
/// arithmetic, in the same order, as the Rust.
/// ARGV: now_us, period_us, limit, cost, 1 for sliding.
const TAKE_WINDOW: &str = r"
local now = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local stored = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local w = tonumber(stored[1])
local c = tonumber(stored[2]) or 0
local p = tonumber(stored[3]) or 0
local elapsed = math.fmod(now, period)
local index = (now - elapsed) / period
local current, previous = 0, 0
if w then
  if w >= index then
    index = w
    current, previous = c, p
  elseif w + 1 == index then
    previous = c
  end
end
local used = current
if ARGV[5] == '1' then used = previous * ((period - elapsed) / period) + current end
if cost > limit or used + cost > limit then return {w or -1, c, p, 0} end
redis.call('HSET', KEYS[1], 'w', string.format('%d', index), 'c', string.format('%d', current + cost),
  'p', string.format('%d', previous))
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil(2 * period / 1000)))
return {w or -1, c, p, 1}
";

pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    increment: Script,
    compare_and_set: Script,
    take: Script,
    take_window: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL (and so any password) is deliberately not kept or printed.
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

fn backend(err: redis::RedisError) -> CacheError {
    CacheError::Backend(err.to_string())
}

impl RedisStore {
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, CacheError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let conn = ConnectionManager::new_with_config(client, fail_fast()).await.map_err(backend)?;
        Ok(RedisStore {
            conn,
            prefix: prefix.to_owned(),
            increment: Script::new(INCREMENT),
            compare_and_set: Script::new(COMPARE_AND_SET),
            take: Script::new(TAKE),
            take_window: Script::new(TAKE_WINDOW),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
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
        if cost > policy.burst.max(1) {
            // Never allowed and never stored: no round trip needed.
            return Ok(gcra::decide(policy, None, now_us, cost).0);
        }
        let interval = policy.emission_interval_us();
        let mut conn = self.conn.clone();
        let (stored, _new_tat): (u64, u64) = self
            .take
            .key(self.key(key))
            .arg(now_us)
            .arg(interval)
            .arg(policy.capacity_us())
            .arg(cost)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        // The script made the same decision atomically; recompute its figures here
        // from the TAT it saw, so the arithmetic stays in one place.
        Ok(gcra::decide(policy, (stored != 0).then_some(stored), now_us, cost).0)
    }

    async fn take_window(&self, key: &str, limit: &Limit, cost: u32, now_us: u64) -> Result<Decision, CacheError> {
        let kind = limit.window().expect("take_window is for window algorithms");
        if cost > limit.limit {
            return Ok(limit.decide_window(None, now_us, cost).0);
        }
        let mut conn = self.conn.clone();
        let (window, current, previous, counted): (i64, u64, u64, u8) = self
            .take_window
            .key(self.key(key))
            .arg(now_us)
            .arg(limit.period_us())
            .arg(limit.limit)
            .arg(cost)
            .arg(if kind == Kind::Sliding { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        let before = u64::try_from(window).ok().map(|window| WindowState { window, current, previous });
        // The script counted (or not) atomically; the figures come from the one Rust
        // function, given the state the script saw.
        let (decision, _) = limit.decide_window(before, now_us, cost);
        Ok(Decision { allowed: counted == 1, ..decision })
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let pong: String = redis::cmd("PING").query_async(&mut self.conn.clone()).await.map_err(backend)?;
        if pong == "PONG" { Ok(()) } else { Err(CacheError::Backend(format!("unexpected PING reply {pong}"))) }
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}
