//! Alert rules on rate-limit policies: a rule that holds for its minutes fires one
//! `ratelimit.alert.firing` notification, and one `ratelimit.alert.resolved` when it no
//! longer holds, read in order from `GET /v1/notifications`. Decisions arrive as edge
//! events stamped in past minutes, so the test need not wait for minutes to pass.

mod common;

use std::time::Duration;

use common::fresh_config;
use common::process::{CoreForEdges, http, start_core_for_edges_with, until};
use serde_json::{Value, json};
use verge_shared::ids::format_id;
use verge_shared::time::rfc3339_millis;

const MINUTE_MS: u64 = 60_000;

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Reports decisions of `policy` as an edge would, all stamped at `at_ms`.
fn report(core: &CoreForEdges, policy: &str, at_ms: u64, outcomes: &[(&str, usize)]) {
    let events: Vec<Value> = outcomes
        .iter()
        .flat_map(|(outcome, n)| std::iter::repeat_n(*outcome, *n))
        .map(|outcome| {
            json!({"id": format_id("evt", at_ms, rand_bytes()), "kind": "ratelimit.decision",
                   "at": rfc3339_millis(at_ms), "data": {"policy": policy, "outcome": outcome}})
        })
        .collect();
    let auth = format!("Bearer {}", core.ingest_key);
    let body = json!({"events": events}).to_string();
    let reply =
        http(&core.url, "POST", "/v1/events", &[("authorization", &auth), ("content-type", "application/json")], &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
}

fn rand_bytes() -> [u8; 10] {
    rand::random()
}

fn notifications(core: &CoreForEdges, policy: &str) -> Vec<Value> {
    let (status, page) = core.call("GET", &format!("/v1/notifications?subject={policy}"), &Value::Null);
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_alert_fires_once_while_its_rule_holds_and_resolves_after() {
    // The rule looks at whole minutes before now: start well inside a minute.
    let into_minute = now_ms() % MINUTE_MS;
    if into_minute > 45_000 {
        std::thread::sleep(Duration::from_millis(MINUTE_MS - into_minute + 100));
    }
    let (config, dir) = fresh_config().await;
    let core = start_core_for_edges_with(&config, dir.path(), &[("VERGE_RATELIMIT_ALERT_INTERVAL_MS", "100")]);

    // Bad rules are refused with pointers, and nothing is stored.
    for (alert, pointer) in [
        (json!({"denied_percent": 0, "minutes": 5}), "/alert/denied_percent"),
        (json!({"denied_percent": 10, "minutes": 61}), "/alert/minutes"),
        (json!({"denied_percent": 10, "minutes": 5, "for": 3}), "/alert/for"),
        (json!("10%"), "/alert"),
    ] {
        let body = json!({"name": "bad", "domain": "api", "descriptor": [{"key": "api_key"}],
                          "limit": {"algorithm": "fixed_window", "limit": 10, "period_seconds": 60}, "alert": alert});
        let (status, problem) = core.call("POST", "/v1/ratelimit/policies", &body);
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["errors"][0]["field"], pointer, "{problem}");
    }
    let (_, listed) = core.call("GET", "/v1/ratelimit/policies?domain=api", &Value::Null);
    assert_eq!(listed["items"], json!([]));

    let body = json!({"name": "API calls per key", "domain": "api", "descriptor": [{"key": "api_key"}],
                      "limit": {"algorithm": "fixed_window", "limit": 10, "period_seconds": 60},
                      "alert": {"denied_percent": 50, "minutes": 2}});
    let (status, created) = core.call("POST", "/v1/ratelimit/policies", &body);
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["alert"], json!({"denied_percent": 50, "minutes": 2}));
    let policy = created["id"].as_str().unwrap().to_owned();

    // One bad minute is not enough: the rule wants two in a row.
    let current = now_ms() / MINUTE_MS * MINUTE_MS;
    report(&core, &policy, current - MINUTE_MS + 1, &[("denied", 3), ("allowed", 1)]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(notifications(&core, &policy), Vec::<Value>::new());

    // Two: it fires, once, however often the rule is evaluated.
    report(&core, &policy, current - 2 * MINUTE_MS + 1, &[("denied", 3), ("allowed", 1)]);
    until("the alert fires", Duration::from_secs(5), || !notifications(&core, &policy).is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let fired = notifications(&core, &policy);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["kind"], "ratelimit.alert.firing");
    let data = &fired[0]["data"];
    assert_eq!((data["denied"].as_u64(), data["decided"].as_u64()), (Some(6), Some(8)), "{data}");
    assert_eq!(data["denied_percent"], 75.0);
    assert_eq!(data["rule"], json!({"denied_percent": 50, "minutes": 2}));
    assert_eq!(data["name"], "API calls per key");

    // Enough allowed decisions in the last minute bring it under the rule: resolved.
    report(&core, &policy, current - MINUTE_MS + 2, &[("allowed", 10)]);
    until("the alert resolves", Duration::from_secs(5), || notifications(&core, &policy).len() == 2);
    let kinds: Vec<Value> = notifications(&core, &policy).iter().map(|n| n["kind"].clone()).collect();
    assert_eq!(kinds, [json!("ratelimit.alert.firing"), json!("ratelimit.alert.resolved")]);

    // Decisions naming no stored policy are kept as events but counted nowhere: an ingest
    // key cannot grow the metrics with made-up policy ids.
    report(&core, "rl_made_up", current - MINUTE_MS + 3, &[("denied", 1)]);
    report(&core, &policy, current - MINUTE_MS + 3, &[("allowed", 1)]);
    until("the known policy's decision is counted", Duration::from_secs(5), || {
        http(&core.url, "GET", "/metrics", &[], "").body.contains(&format!("policy=\"{policy}\",outcome=\"allowed\""))
    });
    assert!(!http(&core.url, "GET", "/metrics", &[], "").body.contains("rl_made_up"));

    // Everything a consumer needs to page: kinds filter, and the cursor moves on.
    let (_, firing) = core.call("GET", "/v1/notifications?kind=ratelimit.alert.firing&limit=1", &Value::Null);
    assert_eq!(firing["items"].as_array().unwrap().len(), 1);
    let (status, _) = core.call("GET", "/v1/notifications?cursor=not-a-cursor", &Value::Null);
    assert_eq!(status, 400);
}
