//! The in-process rate-limit decision, against the `governor` crate's GCRA in the same run.
//!
//! `decide` is what the in-process store does per decision, called as the core calls it
//! (`Store::take_many`, as the check route calls it: find the bucket, one compare-and-swap),
//! clock read included;
//! `check_path` adds picking the policy for a descriptor and naming its counter, which is
//! what `POST /v1/ratelimit/check` does per descriptor. Both sides count
//! per key over 1,000 keys with limits that never deny, so the figures are the decision
//! itself and not the denial path.

use std::num::NonZeroU32;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use governor::{Quota, RateLimiter};
use serde_json::json;
use verge_core::cache::{Cache, MemoryStore, Take};
use verge_shared::ratelimit::{Algorithm, Limit, PolicySet};

const KEYS: usize = 1_000;

/// The clock the check route reads per call.
fn now_us() -> u64 {
    verge_core::time::unix_micros()
}

fn decisions(c: &mut Criterion) {
    let keys: Vec<String> = (0..KEYS).map(|i| format!("client-{i}")).collect();
    let mut group = c.benchmark_group("ratelimit_decision");

    let governor = RateLimiter::keyed(Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap()));
    let mut i = 0;
    group.bench_function("governor/check_key", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            governor.check_key(&keys[i]).is_ok()
        })
    });

    let store: Cache = std::sync::Arc::new(MemoryStore::new());
    for algorithm in [Algorithm::TokenBucket, Algorithm::SlidingWindow, Algorithm::FixedWindow] {
        let limit = Limit { algorithm, limit: 1_000_000_000, period_secs: 1, burst: 1_000_000_000 };
        group.bench_function(format!("verge/decide/{}", algorithm.as_str()), |b| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                let take = [Take { key: &keys[i], limit, cost: 1 }];
                store.take_many(&take, now_us()).now_or_never().unwrap().unwrap()[0].allowed
            })
        });
    }

    let set = PolicySet::from_json(
        json!([{"id": "rl_bench", "name": "per client", "domain": "api", "descriptor": [{"key": "api_key"}],
                "limit": {"limit": 1_000_000, "period_seconds": 1}}])
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    group.bench_function("verge/check_path", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            let selected = set.select("api", &[("api_key", keys[i].as_str())]).unwrap();
            let take = [Take { key: &selected.counter, limit: selected.limit, cost: 1 }];
            store.take_many(&take, now_us()).now_or_never().unwrap().unwrap()[0].allowed
        })
    });
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
