use serde_json::json;

use super::*;

fn policy(id: &str, body: serde_json::Value) -> Policy {
    Policy::from_value(id, &body).unwrap_or_else(|errors| panic!("{id}: {errors:?}"))
}

fn pointers(body: serde_json::Value) -> Vec<String> {
    Policy::from_value("rl_x", &body).unwrap_err().into_iter().map(|e| e.pointer).collect()
}

#[test]
fn a_policy_reads_back_as_it_was_written() {
    let body = json!({
        "name": "login per IP", "domain": "api",
        "descriptor": [{"key": "remote_address"}, {"key": "path", "value": "/login*"}],
        "limit": {"algorithm": "token_bucket", "limit": 5, "period_seconds": 60, "burst": 2},
        "tiers": {"key": "plan", "limits": {"pro": {"algorithm": "token_bucket", "limit": 50, "period_seconds": 60}}},
        "mode": "shadow", "on_store_failure": "deny",
    });
    let parsed = policy("rl_a", body);
    assert_eq!(parsed.mode, Mode::Shadow);
    assert_eq!(parsed.failure, Failure::Closed);
    assert_eq!(parsed.limit.burst, 2);
    let again = policy("rl_a", parsed.to_value());
    assert_eq!(again, parsed);
    assert_eq!(parsed.to_value()["tiers"]["limits"]["pro"]["burst"], 50, "the burst defaults to the limit");
}

#[test]
fn defaults_are_enforce_fail_open_token_bucket_in_the_edge_domain() {
    let parsed = policy(
        "rl_d",
        json!({"name": "n", "descriptor": [{"key": "route"}], "limit": {"limit": 1, "period_seconds": 1}}),
    );
    assert_eq!(
        (parsed.mode, parsed.failure, parsed.limit.algorithm),
        (Mode::Enforce, Failure::Open, Algorithm::TokenBucket)
    );
    assert_eq!(parsed.domain, "edge");
}

#[test]
fn every_problem_is_located() {
    let got = pointers(json!({
        "name": "",
        "descriptor": [{"key": "remote_address", "value": "10.0.0.1/8"}, {"key": "country", "value": "de"},
                       {"key": "method", "value": "post"}, {"key": "route", "value": "nowhere"},
                       {"key": "Bad Key"}, {"key": "path", "value": "login"}],
        "limit": {"algorithm": "leaky", "limit": 0, "period_seconds": -5},
        "mode": "loud", "extra": 1,
    }));
    for expected in [
        "/name",
        "/descriptor/0/value",
        "/descriptor/1/value",
        "/descriptor/2/value",
        "/descriptor/3/value",
        "/descriptor/4/key",
        "/descriptor/5/value",
        "/limit/algorithm",
        "/limit/limit",
        "/limit/period_seconds",
        "/mode",
        "/extra",
    ] {
        assert!(got.contains(&expected.to_owned()), "{expected} missing from {got:?}");
    }
}

#[test]
fn windows_have_no_burst_and_tiers_do_not_count_their_key() {
    let got = pointers(json!({"name": "n", "descriptor": [{"key": "user"}, {"key": "user"}],
        "limit": {"algorithm": "fixed_window", "limit": 3, "period_seconds": 60, "burst": 9},
        "tiers": {"key": "user", "limits": {}}}));
    assert_eq!(got, ["/descriptor/1/key", "/limit/burst", "/tiers/key", "/tiers/limits"]);
    assert_eq!(
        pointers(json!({"name": "n", "descriptor": [], "limit": {"limit": 1, "period_seconds": 1}})),
        ["/descriptor"]
    );
}

fn set(policies: Vec<Policy>) -> PolicySet {
    PolicySet { policies }
}

#[test]
fn the_most_specific_policy_wins_entry_by_entry() {
    let limit = |n: u32| json!({"limit": n, "period_seconds": 60});
    let set = set(vec![
        policy(
            "rl_any",
            json!({"name": "a", "descriptor": [{"key": "remote_address"}, {"key": "path"}], "limit": limit(100)}),
        ),
        policy(
            "rl_glob",
            json!({"name": "b", "descriptor": [{"key": "remote_address"}, {"key": "path", "value": "/api/*"}], "limit": limit(50)}),
        ),
        policy(
            "rl_exact",
            json!({"name": "c", "descriptor": [{"key": "remote_address"}, {"key": "path", "value": "/api/login"}], "limit": limit(5)}),
        ),
        policy(
            "rl_office",
            json!({"name": "d", "descriptor": [{"key": "remote_address", "value": "10.0.0.0/8"}, {"key": "path"}], "limit": limit(1000)}),
        ),
        policy(
            "rl_other",
            json!({"name": "e", "domain": "other", "descriptor": [{"key": "remote_address"}, {"key": "path"}], "limit": limit(1)}),
        ),
    ]);
    let pick = |ip: &str, path: &str| {
        set.select("edge", &[("remote_address", ip), ("path", path)]).map(|s| s.policy.id.clone())
    };
    assert_eq!(pick("203.0.113.9", "/home").as_deref(), Some("rl_any"));
    assert_eq!(pick("203.0.113.9", "/api/items").as_deref(), Some("rl_glob"));
    assert_eq!(pick("203.0.113.9", "/api/login").as_deref(), Some("rl_exact"));
    assert_eq!(pick("10.1.2.3", "/api/login").as_deref(), Some("rl_office"), "the first entry decides first");
    assert_eq!(set.select("edge", &[("remote_address", "1.2.3.4")]), None, "the shape must match");
    assert_eq!(set.select("edge", &[("path", "/x"), ("remote_address", "1.2.3.4")]), None, "in order");
    assert_eq!(set.select("nowhere", &[("remote_address", "1.2.3.4"), ("path", "/")]), None);
}

#[test]
fn counters_are_per_value_and_tiers_pick_the_limit() {
    let set = set(vec![policy(
        "rl_t",
        json!({"name": "t", "domain": "api", "descriptor": [{"key": "api_key"}],
        "limit": {"limit": 10, "period_seconds": 60},
        "tiers": {"key": "plan", "limits": {"pro": {"limit": 100, "period_seconds": 60}}}}),
    )]);
    let free = set.select("api", &[("api_key", "k1")]).unwrap();
    let pro = set.select("api", &[("api_key", "k1"), ("plan", "pro")]).unwrap();
    let unknown = set.select("api", &[("plan", "gold"), ("api_key", "k1")]).unwrap();
    let other = set.select("api", &[("api_key", "k2")]).unwrap();
    assert_eq!((free.limit.limit, pro.limit.limit, unknown.limit.limit), (10, 100, 10));
    assert_eq!((free.plan, pro.plan), (None, Some("pro")));
    assert_eq!(free.counter, pro.counter, "an upgrade keeps the count");
    assert_ne!(free.counter, other.counter);
}

#[test]
fn a_published_set_round_trips_and_skips_what_it_cannot_read() {
    let one = policy(
        "rl_1",
        json!({"name": "n", "descriptor": [{"key": "host"}], "limit": {"limit": 1, "period_seconds": 1}}),
    );
    let mut array: serde_json::Value = serde_json::from_slice(&set(vec![one.clone()]).to_json()).unwrap();
    array.as_array_mut().unwrap().push(json!({"id": "rl_future", "name": "n", "descriptor": [{"key": "host"}], "limit": {"algorithm": "quantum", "limit": 1, "period_seconds": 1}}));
    let read = PolicySet::from_json(array.to_string().as_bytes()).unwrap();
    assert_eq!(read.policies, [one]);
}

#[test]
fn globs_match_runs_of_anything() {
    for (pattern, value, expected) in [
        ("/api/*", "/api/", true),
        ("/api/*", "/api/x/y", true),
        ("/api/*", "/apix", false),
        ("*.example.com", "a.example.com", true),
        ("*.example.com", "example.com", false),
        ("/a*b*c", "/a--b--c", true),
        ("/a*b*c", "/a--c", false),
        ("/x", "/x", true),
        ("/x", "/xy", false),
    ] {
        assert_eq!(glob_matches(pattern, value), expected, "{pattern} ~ {value}");
    }
}
