//! The in-process store: a sharded concurrent map with lazy expiry and a background sweep.
//!
//! Values and GCRA buckets live in separate maps. A bucket is a single `AtomicU64` holding
//! its theoretical arrival time, so taking from it is a compare-and-swap loop under the
//! shard's read lock once the bucket exists; only creating one takes a write lock. Keys
//! hash with foldhash (seeded per process, so keys chosen by clients cannot be aimed at
//! one shard): SipHash was a fifth of a decision's time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use foldhash::fast::RandomState;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use verge_shared::gcra::{self, Decision, Policy};
use verge_shared::ratelimit::Limit;
use verge_shared::ratelimit::window::WindowState;

use super::{CacheError, Store, Take};

#[derive(Debug)]
struct Value {
    data: Vec<u8>,
    expires_at: Option<Instant>,
}

impl Value {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(Debug, Default)]
struct Maps {
    values: DashMap<String, Value, RandomState>,
    /// TAT in microseconds since the Unix epoch; 0 means "never used".
    buckets: DashMap<String, AtomicU64, RandomState>,
    /// Window buckets, each with the instant (µs) after which it says nothing any more.
    windows: DashMap<String, (WindowState, u64), RandomState>,
}

#[derive(Debug, Clone)]
pub struct MemoryStore {
    maps: Arc<Maps>,
}

const SWEEP_EVERY: Duration = Duration::from_secs(5);

impl MemoryStore {
    /// A new empty store. Inside a tokio runtime it also sweeps expired entries in the
    /// background until the store is dropped; reads never see expired entries either way.
    pub fn new() -> MemoryStore {
        let maps = Arc::new(Maps::default());
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(sweep(Arc::downgrade(&maps)));
        }
        MemoryStore { maps }
    }
}

impl MemoryStore {
    fn take_gcra(&self, key: &str, policy: Policy, cost: u32, now_us: u64) -> Decision {
        if let Some(bucket) = self.maps.buckets.get(key) {
            return take_from(&bucket, policy, cost, now_us);
        }
        let bucket = self.maps.buckets.entry(key.to_owned()).or_default();
        take_from(&bucket, policy, cost, now_us)
    }

    fn take_windowed(&self, key: &str, limit: &Limit, cost: u32, now_us: u64) -> Decision {
        // The shard lock held by the guard makes read-decide-write one step; the key is
        // copied only for a bucket's first request.
        let mut entry = match self.maps.windows.get_mut(key) {
            Some(entry) => entry,
            None => self.maps.windows.entry(key.to_owned()).or_insert((WindowState::default(), 0)),
        };
        let (state, until) = &mut *entry;
        let stored = (*until > now_us).then_some(*state);
        let (decision, next) = limit.decide_window(stored, now_us, cost);
        if let Some(next) = next {
            *state = next;
            *until = (next.window + 2).saturating_mul(limit.period_us());
        }
        decision
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

async fn sweep(maps: Weak<Maps>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        let Some(maps) = maps.upgrade() else { return };
        let now = Instant::now();
        maps.values.retain(|_, v| v.live(now));
        let now_us = crate::time::unix_micros();
        // A bucket whose TAT has passed is full again, the same as no bucket. A request
        // racing this removal may update the removed bucket; it then counted against a
        // full bucket, which is the state the new one starts in anyway.
        maps.buckets.retain(|_, tat| tat.load(Ordering::Acquire) > now_us);
        maps.windows.retain(|_, (_, until)| *until > now_us);
    }
}

/// The GCRA step on one bucket: decide from the stored TAT, store the new one if it still
/// is what was decided from, else decide again.
fn take_from(bucket: &AtomicU64, policy: Policy, cost: u32, now_us: u64) -> Decision {
    let mut stored = bucket.load(Ordering::Acquire);
    loop {
        let (decision, new_tat) = gcra::decide(policy, (stored != 0).then_some(stored), now_us, cost);
        let Some(new_tat) = new_tat else { return decision };
        match bucket.compare_exchange_weak(stored, new_tat, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return decision,
            Err(actual) => stored = actual,
        }
    }
}

fn parse_integer(key: &str, data: &[u8]) -> Result<i64, CacheError> {
    std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CacheError::NotAnInteger { key: key.to_owned() })
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let now = Instant::now();
        Ok(self.maps.values.get(key).filter(|v| v.live(now)).map(|v| v.data.clone()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError> {
        let expires_at = ttl.map(|t| Instant::now() + t);
        self.maps.values.insert(key.to_owned(), Value { data: value.to_vec(), expires_at });
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let now = Instant::now();
        Ok(self.maps.values.remove(key).is_some_and(|(_, v)| v.live(now)))
    }

    async fn increment(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, CacheError> {
        let now = Instant::now();
        match self.maps.values.entry(key.to_owned()) {
            MapEntry::Occupied(mut entry) if entry.get().live(now) => {
                let value = entry.get_mut();
                let next = parse_integer(key, &value.data)?.wrapping_add(by);
                value.data = next.to_string().into_bytes();
                Ok(next)
            }
            MapEntry::Occupied(mut entry) => {
                entry.insert(Value { data: by.to_string().into_bytes(), expires_at: Some(now + ttl) });
                Ok(by)
            }
            MapEntry::Vacant(entry) => {
                entry.insert(Value { data: by.to_string().into_bytes(), expires_at: Some(now + ttl) });
                Ok(by)
            }
        }
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, CacheError> {
        let now = Instant::now();
        let replacement = Value { data: new.to_vec(), expires_at: ttl.map(|t| now + t) };
        match self.maps.values.entry(key.to_owned()) {
            MapEntry::Occupied(mut entry) => {
                let current = Some(entry.get()).filter(|v| v.live(now)).map(|v| v.data.as_slice());
                if current != expected {
                    return Ok(false);
                }
                entry.insert(replacement);
                Ok(true)
            }
            MapEntry::Vacant(entry) => {
                if expected.is_some() {
                    return Ok(false);
                }
                entry.insert(replacement);
                Ok(true)
            }
        }
    }

    async fn take(&self, key: &str, policy: Policy, cost: u32, now_us: u64) -> Result<Decision, CacheError> {
        Ok(self.take_gcra(key, policy, cost, now_us))
    }

    async fn take_window(&self, key: &str, limit: &Limit, cost: u32, now_us: u64) -> Result<Decision, CacheError> {
        Ok(self.take_windowed(key, limit, cost, now_us))
    }

    async fn take_many(&self, takes: &[Take<'_>], now_us: u64) -> Result<Vec<Decision>, CacheError> {
        Ok(takes.iter().filter_map(|t| self.take_now(t.key, &t.limit, t.cost, now_us)).collect())
    }

    fn take_now(&self, key: &str, limit: &Limit, cost: u32, now_us: u64) -> Option<Decision> {
        Some(match limit.window() {
            Some(_) => self.take_windowed(key, limit, cost, now_us),
            None => self.take_gcra(key, limit.gcra(), cost, now_us),
        })
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
