//! Counts added on a hot path in process and moved into the shared counter store (Redis or
//! the in-process store) once a second, so recording a decision costs a map update, not a
//! round trip. Every replica flushes its own; the store adds them up.
//!
//! Counts not yet flushed are lost if the process dies (at most a second's worth); a flush
//! that fails keeps its counts for the next one. These are statistics, never decisions.

use std::sync::{Arc, Weak};
use std::time::Duration;

use dashmap::DashMap;
use foldhash::fast::RandomState;

use crate::cache::Cache;

const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub(crate) struct Tally {
    counts: Arc<DashMap<String, u64, RandomState>>,
    cache: Cache,
    /// How long a counter lives in the store after its first count there.
    keep_for: Duration,
}

impl Tally {
    /// A tally flushing into `cache`; inside a tokio runtime it flushes in the background
    /// until dropped.
    pub(crate) fn new(cache: Cache, keep_for: Duration) -> Tally {
        let tally = Tally { counts: Arc::default(), cache, keep_for };
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(flush_forever(Arc::downgrade(&tally.counts), tally.cache.clone(), keep_for));
        }
        tally
    }

    pub(crate) fn add(&self, key: String, n: u64) {
        *self.counts.entry(key).or_default() += n;
    }

    /// Moves every count into the store now (a reader wants this process's counts too).
    pub(crate) async fn flush(&self) {
        flush(&self.counts, &self.cache, self.keep_for).await;
    }
}

async fn flush(counts: &DashMap<String, u64, RandomState>, cache: &Cache, keep_for: Duration) {
    let mut drained = Vec::new();
    counts.retain(|key, n| {
        drained.push((key.clone(), *n));
        false
    });
    for (key, n) in drained {
        if let Err(err) = cache.increment(&key, n as i64, keep_for).await {
            tracing::debug!(error = %err, "tally flush failed; keeping the counts for the next one");
            *counts.entry(key).or_default() += n;
        }
    }
}

async fn flush_forever(counts: Weak<DashMap<String, u64, RandomState>>, cache: Cache, keep_for: Duration) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tick.tick().await;
        let Some(counts) = counts.upgrade() else { return };
        flush(&counts, &cache, keep_for).await;
    }
}
