//! The cache and counter store: one small trait, two backends.
//!
//! Redis is the production backend (`REDIS_URL`), shared by every core replica. Without
//! it the core uses an in-process store with the same semantics, which is right for a
//! single node (`verge dev`, tests, small installs). Callers hold a `Cache` (an
//! `Arc<dyn Store>`) and never know which one they have; both pass the same tests.

mod memory;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
pub use verge_shared::gcra::{Decision, Policy};
use verge_shared::ratelimit::Limit;

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;
use crate::config::Config;

pub type Cache = Arc<dyn Store>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    #[error("cache backend: {0}")]
    Backend(String),
    #[error("value at `{key}` is not an integer")]
    NotAnInteger { key: String },
}

/// Operations the core needs from a shared, expiring key-value store.
///
/// Every operation is atomic with respect to every other on the same key.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;

    /// Sets `key`, replacing any value and expiry; `ttl` None keeps it until deleted.
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError>;

    /// Removes `key`; true when it existed.
    async fn delete(&self, key: &str) -> Result<bool, CacheError>;

    /// Adds `by` to the integer at `key` and returns the new value. A key that does not
    /// exist starts at 0 and expires `ttl` after this first increment; later increments
    /// keep that expiry (what a fixed window needs).
    async fn increment(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, CacheError>;

    /// Sets `key` to `new` only if it currently holds `expected` (None: only if absent).
    /// Returns whether it was set.
    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, CacheError>;

    /// Takes `cost` units from the GCRA bucket at `key`, atomically; see `verge_shared::gcra`.
    async fn take(&self, key: &str, policy: Policy, cost: u32, now_us: u64) -> Result<Decision, CacheError>;

    /// Counts `cost` in the fixed or sliding window bucket at `key` if it fits, atomically;
    /// see `verge_shared::ratelimit::window`. `limit` must be a window algorithm.
    async fn take_window(&self, key: &str, limit: &Limit, cost: u32, now_us: u64) -> Result<Decision, CacheError>;

    /// Decides several requests, each under its own limit and atomically per key, in one
    /// round trip (one script call on Redis): what a check of many descriptors needs.
    async fn take_many(&self, takes: &[Take<'_>], now_us: u64) -> Result<Vec<Decision>, CacheError>;

    /// Decides under `limit` at once when the backend needs no I/O to do so (the
    /// in-process store), sparing the boxed future of the async methods; `None` means
    /// "ask [`take`](Store::take) or [`take_window`](Store::take_window)".
    fn take_now(&self, _key: &str, _limit: &Limit, _cost: u32, _now_us: u64) -> Option<Decision> {
        None
    }

    /// A round trip to the backend, for readiness checks.
    async fn ping(&self) -> Result<(), CacheError>;

    /// `redis` or `memory`, for diagnostics.
    fn backend(&self) -> &'static str;
}

/// One request for [`Store::take_many`].
#[derive(Debug, Clone, Copy)]
pub struct Take<'a> {
    pub key: &'a str,
    pub limit: Limit,
    pub cost: u32,
}

/// Opens the backend the configuration selects.
pub async fn connect(config: &Config) -> Result<Cache, CacheError> {
    match &config.redis_url {
        Some(url) => Ok(Arc::new(RedisStore::connect(url.expose_secret(), &config.redis_prefix).await?)),
        None => Ok(Arc::new(MemoryStore::new())),
    }
}
