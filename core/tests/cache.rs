//! The cache/counter store contract, run against the backend of this test run (the
//! in-process store, or Redis): every caller relies on these semantics being identical.

mod common;

use std::time::Duration;

use common::fresh_cache;
use verge_core::cache::Take;
use verge_core::cache::{CacheError, Policy, RedisStore, Store};
use verge_shared::gcra;
use verge_shared::ratelimit::{Algorithm, Limit};

const SECOND_US: u64 = 1_000_000;

#[tokio::test]
async fn get_set_delete_and_expiry() {
    let cache = fresh_cache().await;
    assert_eq!(cache.get("a").await.unwrap(), None);
    cache.set("a", b"one", None).await.unwrap();
    assert_eq!(cache.get("a").await.unwrap().as_deref(), Some(&b"one"[..]));
    cache.set("a", b"two", Some(Duration::from_millis(60))).await.unwrap();
    assert_eq!(cache.get("a").await.unwrap().as_deref(), Some(&b"two"[..]));
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(cache.get("a").await.unwrap(), None, "expired values are gone");
    cache.set("b", b"x", None).await.unwrap();
    assert!(cache.delete("b").await.unwrap());
    assert!(!cache.delete("b").await.unwrap());
    assert_eq!(cache.get("b").await.unwrap(), None);
}

#[tokio::test]
async fn increment_starts_a_window_and_keeps_its_expiry() {
    let cache = fresh_cache().await;
    let ttl = Duration::from_millis(300);
    assert_eq!(cache.increment("n", 1, ttl).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    // A later increment does not push the expiry out: the window is fixed.
    assert_eq!(cache.increment("n", 5, ttl).await.unwrap(), 6);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(cache.get("n").await.unwrap(), None);
    assert_eq!(cache.increment("n", -2, ttl).await.unwrap(), -2, "a new window starts from zero");

    cache.set("text", b"hello", None).await.unwrap();
    assert!(matches!(cache.increment("text", 1, ttl).await, Err(CacheError::NotAnInteger { .. })));
}

#[tokio::test]
async fn increments_from_many_tasks_are_all_counted() {
    let cache = fresh_cache().await;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.increment("hits", 1, Duration::from_secs(60)).await.unwrap() })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results.sort();
    assert_eq!(results, (1..=200).collect::<Vec<i64>>(), "each increment saw a distinct count");
}

#[tokio::test]
async fn compare_and_set_only_replaces_what_was_expected() {
    let cache = fresh_cache().await;
    assert!(cache.compare_and_set("c", None, b"v1", None).await.unwrap(), "absent → set");
    assert!(!cache.compare_and_set("c", None, b"v2", None).await.unwrap(), "present, expected absent");
    assert!(!cache.compare_and_set("c", Some(b"nope"), b"v2", None).await.unwrap());
    assert!(cache.compare_and_set("c", Some(b"v1"), b"v2", Some(Duration::from_millis(60))).await.unwrap());
    assert_eq!(cache.get("c").await.unwrap().as_deref(), Some(&b"v2"[..]));
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(!cache.compare_and_set("c", Some(b"v2"), b"v3", None).await.unwrap(), "expired is absent");
    assert!(cache.compare_and_set("c", None, b"v3", None).await.unwrap());
}

#[tokio::test]
async fn take_follows_the_shared_gcra_decision() {
    let cache = fresh_cache().await;
    let policy = Policy::per_period(3, 3 * SECOND_US);
    let t0 = 1_900_000_000 * SECOND_US;
    let schedule = [t0, t0, t0, t0, t0 + SECOND_US, t0 + SECOND_US, t0 + 10 * SECOND_US];
    let mut tat = None;
    for now in schedule {
        let (expected, new_tat) = gcra::decide(policy, tat, now, 1);
        tat = new_tat.or(tat);
        let got = cache.take("bucket", policy, 1, now).await.unwrap();
        assert_eq!(got, expected, "at +{} us", now - t0);
    }
    let too_big = cache.take("bucket", policy, 4, t0).await.unwrap();
    assert!(!too_big.allowed && too_big.retry_after_us == u64::MAX);
}

#[tokio::test]
async fn concurrent_takes_never_exceed_the_limit() {
    let cache = fresh_cache().await;
    let policy = Policy::per_period(10, 60 * SECOND_US);
    let now = 1_900_000_000 * SECOND_US;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.take("shared", policy, 1, now).await.unwrap().allowed })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += usize::from(task.await.unwrap());
    }
    assert_eq!(allowed, 10);
}

fn window(algorithm: Algorithm, limit: u32, period_secs: u32) -> Limit {
    Limit { algorithm, limit, period_secs, burst: limit }
}

#[tokio::test]
async fn window_takes_follow_the_shared_decision() {
    let cache = fresh_cache().await;
    for algorithm in [Algorithm::FixedWindow, Algorithm::SlidingWindow] {
        let limit = window(algorithm, 4, 10);
        let key = algorithm.as_str();
        // Within a window, across the boundary, and halfway into the next.
        let t0 = 1_900_000_000 * SECOND_US + 7 * SECOND_US;
        let mut schedule = vec![t0; 5];
        schedule.extend([t0 + 3 * SECOND_US; 3]);
        schedule.extend([t0 + 8 * SECOND_US; 5]);
        schedule.push(t0 + 40 * SECOND_US);
        let mut state = None;
        for (i, now) in schedule.into_iter().enumerate() {
            let (expected, next) = limit.decide_window(state, now, 1);
            state = next.or(state);
            let got = cache.take_window(key, &limit, 1, now).await.unwrap();
            assert_eq!(got, expected, "{key}, request {i} at +{} us", now - t0);
        }
        let too_big = cache.take_window(key, &limit, 5, t0 + 40 * SECOND_US).await.unwrap();
        assert!(!too_big.allowed && too_big.retry_after_us == u64::MAX, "{key}");
    }
}

#[tokio::test]
async fn concurrent_window_takes_allow_exactly_the_limit() {
    let cache = fresh_cache().await;
    for algorithm in [Algorithm::FixedWindow, Algorithm::SlidingWindow] {
        let limit = window(algorithm, 10, 60);
        let now = 1_900_000_000 * SECOND_US;
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(
                    async move { cache.take_window(algorithm.as_str(), &limit, 1, now).await.unwrap().allowed },
                )
            })
            .collect();
        let mut allowed = 0;
        for task in tasks {
            allowed += usize::from(task.await.unwrap());
        }
        assert_eq!(allowed, 10, "{}", algorithm.as_str());
    }
}

#[tokio::test]
async fn take_many_decides_each_request_as_alone_in_one_call() {
    let cache = fresh_cache().await;
    let now = 1_900_000_000 * SECOND_US + 5 * SECOND_US;
    let bucket = Limit { algorithm: Algorithm::TokenBucket, limit: 2, period_secs: 10, burst: 2 };
    let (fixed, sliding) = (window(Algorithm::FixedWindow, 2, 10), window(Algorithm::SlidingWindow, 2, 10));
    // Three rounds over the same three keys, plus a cost no limit allows.
    let mut states = (None, None, None);
    for round in 0..3 {
        let takes = [
            Take { key: "many:bucket", limit: bucket, cost: 1 },
            Take { key: "many:fixed", limit: fixed, cost: 1 },
            Take { key: "many:sliding", limit: sliding, cost: 1 },
            Take { key: "many:huge", limit: fixed, cost: 3 },
        ];
        let got = cache.take_many(&takes, now).await.unwrap();
        let (b, nb) = gcra::decide(bucket.gcra(), states.0, now, 1);
        let (f, nf) = fixed.decide_window(states.1, now, 1);
        let (s, ns) = sliding.decide_window(states.2, now, 1);
        states = (nb.or(states.0), nf.or(states.1), ns.or(states.2));
        let (huge, _) = fixed.decide_window(None, now, 3);
        assert_eq!(got, [b, f, s, huge], "round {round}");
        assert_eq!(got[0].allowed, round < 2);
    }
    assert_eq!(cache.take_many(&[], now).await.unwrap(), []);
}

/// The Redis store coalesces: decisions from requests in flight together share script calls
/// (group commit), stay exact on a shared key, and each keeps its own clock. On a Redis of
/// its own, whatever this run's backend, so its call count is this test's alone.
#[tokio::test]
async fn concurrent_redis_decisions_share_script_calls_and_keep_their_own_clock() {
    let redis = common::services::PrivateRedis::start();
    let store = std::sync::Arc::new(RedisStore::connect(&redis.url(), "coalesce:").await.expect("reach Redis"));
    let limit = window(Algorithm::FixedWindow, 10, 60);
    let t0 = 1_900_000_000 * SECOND_US;
    let shared: Vec<_> = (0..100)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take_window("shared", &limit, 1, t0).await.unwrap().allowed })
        })
        .collect();
    // Each alone on its key, at a now of its own: the answer it would get if decided alone.
    let own: Vec<_> = (0..100u64)
        .map(|i| {
            let store = store.clone();
            let now = t0 + i * 7 * SECOND_US + i * 1_013;
            tokio::spawn(async move {
                let got = store.take_window(&format!("own:{i}"), &limit, 1, now).await.unwrap();
                (got, limit.decide_window(None, now, 1).0)
            })
        })
        .collect();
    let mut allowed = 0;
    for task in shared {
        allowed += usize::from(task.await.unwrap());
    }
    assert_eq!(allowed, 10);
    for (i, task) in own.into_iter().enumerate() {
        let (got, alone) = task.await.unwrap();
        assert_eq!(got, alone, "decision {i}");
    }
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stats: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.unwrap();
    let calls: u64 = stats
        .lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| line.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum();
    assert!((1..=10).contains(&calls), "200 decisions in flight together took {calls} script calls:\n{stats}");
}

#[tokio::test]
async fn ping_answers() {
    fresh_cache().await.ping().await.unwrap();
}
