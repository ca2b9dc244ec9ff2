//! Rate-limit counters for the local edges: atomic `add` on named integers that expire on
//! their own, kept in process memory and never in the edge store (a publish must never
//! race a count, and counting must not write a file).
//!
//! The edge names every counter `<expires-at unix seconds>:<anything>` (its window's end
//! plus one more window), so a store that can expire keys learns when from the name alone
//! and the `wasi:keyvalue` `increment` the guest calls needs no TTL argument. A name
//! without that prefix is kept until [`Counters::MAX_ENTRIES`] forces a clear.

use std::collections::HashMap;
use std::sync::Mutex;

/// The label the edge opens its counters store under (`wasi:keyvalue` `open`).
pub const COUNTERS_STORE: &str = "verge-counters";

/// When a counter named by the edge's convention may be forgotten.
pub fn expires_at_secs(key: &str) -> Option<u64> {
    key.split_once(':')?.0.parse().ok()
}

/// Process-wide counters; one per host, shared by every instance it runs.
#[derive(Debug, Default)]
pub struct Counters {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    values: HashMap<String, i64>,
    /// Size after the last sweep: the next sweep runs when the map has doubled.
    swept_at: usize,
}

impl Counters {
    /// Counters kept before everything is dropped (a sweep that frees nothing at this
    /// size means keys without an expiry are piling up).
    pub const MAX_ENTRIES: usize = 1 << 20;

    /// Adds `delta` and returns the new value; a missing counter starts at zero.
    pub fn add(&self, key: &str, delta: i64, now_secs: u64) -> i64 {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(value) = inner.values.get_mut(key) {
            *value = value.saturating_add(delta);
            return *value;
        }
        if inner.values.len() >= (inner.swept_at * 2).max(1024) {
            inner.values.retain(|key, _| expires_at_secs(key).is_some_and(|at| at > now_secs));
            if inner.values.len() >= Self::MAX_ENTRIES {
                inner.values.clear();
            }
            inner.swept_at = inner.values.len();
        }
        inner.values.insert(key.to_owned(), delta);
        delta
    }

    pub fn get(&self, key: &str) -> Option<i64> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values.get(key).copied()
    }

    pub fn set(&self, key: &str, value: i64) {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values.insert(key.to_owned(), value);
    }

    pub fn delete(&self, key: &str) {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values.remove(key);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_are_atomic_across_threads() {
        let counters = std::sync::Arc::new(Counters::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let counters = counters.clone();
                std::thread::spawn(move || (0..1000).map(|_| counters.add("100:a", 1, 0)).max().unwrap())
            })
            .collect();
        let highest = threads.into_iter().map(|t| t.join().unwrap()).max().unwrap();
        assert_eq!((highest, counters.get("100:a")), (8000, Some(8000)));
        assert_eq!(counters.add("100:a", -3, 0), 7997);
    }

    #[test]
    fn expired_counters_are_swept_as_the_map_grows() {
        let counters = Counters::default();
        for i in 0..1024 {
            counters.add(&format!("50:{i}"), 1, 10);
        }
        counters.add("500:live", 1, 10);
        assert_eq!(counters.len(), 1025, "nothing has expired at second 10");
        for i in 0..2048 {
            counters.add(&format!("600:{i}"), 1, 100);
        }
        assert_eq!(counters.get("50:3"), None, "expired at second 50, swept at second 100");
        assert_eq!(counters.get("500:live"), Some(1));
    }

    #[test]
    fn the_expiry_is_read_from_the_name() {
        assert_eq!(expires_at_secs("1700000000:rl\u{1f}x:12"), Some(1_700_000_000));
        assert_eq!(expires_at_secs("no-expiry"), None);
        assert_eq!(expires_at_secs("x:1"), None);
    }
}
