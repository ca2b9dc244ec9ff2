//! Remembering hot reads for a moment: the API key behind a token and a domain's
//! rate-limit policies are read on every request of the global tier, and two SQLite or
//! PostgreSQL queries per decision were most of its cost.
//!
//! An entry is trusted for at most [`FRESH_FOR`], so a write (a revoked key, an edited
//! policy) is seen everywhere within that bound; the process that makes the write also
//! forgets the entry at once, so its own next request sees it unless a read that started
//! before the write puts the old row back (then that bound again). It lives with the `Database`
//! because every write goes through that handle. Entries are bounded by what they cache
//! (keys, domains), not by what clients send: misses are never remembered.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use foldhash::fast::RandomState;

/// How long another replica's write may go unseen.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(1);

type Entry = (Instant, Arc<dyn Any + Send + Sync>);

#[derive(Debug, Clone, Default)]
pub(crate) struct Memo {
    entries: Arc<DashMap<String, Entry, RandomState>>,
}

impl Memo {
    /// The value remembered under `key`, if it is fresh and of type `T`.
    pub(crate) fn get<T: Any + Send + Sync>(&self, key: &str) -> Option<Arc<T>> {
        let entry = self.entries.get(key)?;
        let (at, value) = &*entry;
        if at.elapsed() > FRESH_FOR {
            return None;
        }
        Arc::clone(value).downcast::<T>().ok()
    }

    pub(crate) fn put<T: Any + Send + Sync>(&self, key: String, value: Arc<T>) {
        self.entries.insert(key, (Instant::now(), value));
    }

    /// Forgets every entry whose key starts with `prefix`: call after a write.
    pub(crate) fn forget(&self, prefix: &str) {
        self.entries.retain(|key, _| !key.starts_with(prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_typed_forgotten_by_prefix_and_go_stale() {
        let memo = Memo::default();
        memo.put("key:a".into(), Arc::new(1u32));
        memo.put("policy:x".into(), Arc::new("set"));
        assert_eq!(memo.get::<u32>("key:a").as_deref(), Some(&1));
        assert!(memo.get::<String>("key:a").is_none(), "a value is only ever read as its own type");
        memo.forget("key:");
        assert!(memo.get::<u32>("key:a").is_none());
        assert!(memo.get::<&str>("policy:x").is_some());
        memo.entries.insert("old".into(), (Instant::now() - FRESH_FOR - Duration::from_millis(1), Arc::new(2u32)));
        assert!(memo.get::<u32>("old").is_none(), "stale entries are not trusted");
    }
}
