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

use super::{CacheError, Store, Take};

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

/// Rate-limit decisions, several per call: `verge_shared::gcra::decide` and
/// `verge_shared::ratelimit::window::decide`, mirrored step for step (doubles in the same
/// order, so the estimate agrees bit for bit). KEYS are the buckets; ARGV[1] is now (µs),
/// then five values per key: kind (0 token bucket, 1 fixed window, 2 sliding window), then
/// for a token bucket the emission interval and capacity (µs), for a window the period (µs)
/// and limit, then an unused slot, then the cost. Returns four numbers per key: the state
/// it found (a token bucket's stored TAT, 0 = none; a window's index, -1 = none, and its
/// current and previous counts) and 1 when the request was counted. A token bucket is a
/// string, a window a hash of `w`, `c`, `p`.
const DECIDE: &str = r"
local now = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local at = 2 + (i - 1) * 5
  local kind = ARGV[at]
  local cost = tonumber(ARGV[at + 4])
  if kind == '0' then
    local interval, capacity = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
    local stored = tonumber(redis.call('GET', key) or '0')
    local tat = stored
    if tat < now then tat = now end
    local new_tat = tat + interval * cost
    local counted = 0
    if now >= new_tat - capacity then
      redis.call('SET', key, string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
      counted = 1
    end
    table.insert(out, stored); table.insert(out, 0); table.insert(out, 0); table.insert(out, counted)
  else
    local period, limit = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
    local stored = redis.call('HMGET', key, 'w', 'c', 'p')
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
    if kind == '2' then used = previous * ((period - elapsed) / period) + current end
    local counted = 0
    if cost <= limit and used + cost <= limit then
      redis.call('HSET', KEYS[i], 'w', string.format('%d', index), 'c', string.format('%d', current + cost),
        'p', string.format('%d', previous))
      redis.call('PEXPIRE', KEYS[i], string.format('%d', math.ceil(2 * period / 1000)))
      counted = 1
    end
    table.insert(out, w or -1); table.insert(out, c); table.insert(out, p); table.insert(out, counted)
  end
end
return out
";

pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    increment: Script,
    compare_and_set: Script,
    decide: Script,
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
            decide: Script::new(DECIDE),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    /// Every request in one script call: `(key, bucket, cost)`. The script counted (or
    /// not) atomically; the figures each decision reports come from the one Rust function,
    /// given the state the script saw.
    async fn decide_many(&self, requests: &[(&str, Bucket, u32)], now_us: u64) -> Result<Vec<Decision>, CacheError> {
        let mut invocation = self.decide.prepare_invoke();
        invocation.arg(now_us);
        for (key, bucket, cost) in requests {
            invocation.key(self.key(key));
            match bucket {
                Bucket::Gcra(policy) => {
                    invocation.arg("0").arg(policy.emission_interval_us()).arg(policy.capacity_us()).arg(0).arg(cost);
                }
                Bucket::Window(limit, kind) => {
                    let kind = if *kind == Kind::Sliding { "2" } else { "1" };
                    invocation.arg(kind).arg(limit.period_us()).arg(limit.limit).arg(0).arg(cost);
                }
            }
        }
        let found: Vec<i64> = invocation.invoke_async(&mut self.conn.clone()).await.map_err(backend)?;
        if found.len() != 4 * requests.len() {
            return Err(CacheError::Backend(format!("decide script answered {} numbers", found.len())));
        }
        Ok(requests
            .iter()
            .zip(found.chunks(4))
            .map(|((_, bucket, cost), state)| {
                let decision = match bucket {
                    Bucket::Gcra(policy) => {
                        let stored = state[0] as u64;
                        gcra::decide(*policy, (stored != 0).then_some(stored), now_us, *cost).0
                    }
                    Bucket::Window(limit, _) => {
                        let before = u64::try_from(state[0]).ok().map(|window| WindowState {
                            window,
                            current: state[1] as u64,
                            previous: state[2] as u64,
                        });
                        limit.decide_window(before, now_us, *cost).0
                    }
                };
                Decision { allowed: state[3] == 1, ..decision }
            })
            .collect())
    }
}

/// What the decide script counts in, by algorithm.
#[derive(Debug, Clone, Copy)]
enum Bucket {
    Gcra(Policy),
    Window(Limit, Kind),
}

impl Bucket {
    fn of(limit: &Limit) -> Bucket {
        match limit.window() {
            Some(kind) => Bucket::Window(*limit, kind),
            None => Bucket::Gcra(limit.gcra()),
        }
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
        Ok(self.decide_many(&[(key, Bucket::Gcra(policy), cost)], now_us).await?.remove(0))
    }

    async fn take_window(&self, key: &str, limit: &Limit, cost: u32, now_us: u64) -> Result<Decision, CacheError> {
        Ok(self.decide_many(&[(key, Bucket::of(limit), cost)], now_us).await?.remove(0))
    }

    async fn take_many(&self, takes: &[Take<'_>], now_us: u64) -> Result<Vec<Decision>, CacheError> {
        let requests: Vec<_> = takes.iter().map(|t| (t.key, Bucket::of(&t.limit), t.cost)).collect();
        self.decide_many(&requests, now_us).await
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let pong: String = redis::cmd("PING").query_async(&mut self.conn.clone()).await.map_err(backend)?;
        if pong == "PONG" { Ok(()) } else { Err(CacheError::Backend(format!("unexpected PING reply {pong}"))) }
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}
