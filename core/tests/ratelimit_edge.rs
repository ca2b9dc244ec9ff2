//! Rate limits enforced by the edge, end to end through `verge dev`: a policy created over
//! the API limits redirects and OFREP calls at the local edge within a second, with the
//! IETF fields and a 429 problem over the limit; a shadow policy blocks nothing but is
//! reported; the edge's decisions reach the policy's statistics.

mod common;

use std::time::{Duration, Instant};

use common::fresh_config;
use common::process::{Printed, Reply, http, printed, start_dev, until, verge};
use serde_json::{Value, json};

struct Dev {
    core: String,
    edge: String,
    key: String,
}

impl Dev {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = format!("Bearer {}", self.key);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let reply =
            http(&self.core, method, path, &[("authorization", &auth), ("content-type", "application/json")], &body);
        (reply.status, serde_json::from_str(&reply.body).unwrap_or(Value::Null))
    }

    fn create_policy(&self, policy: Value) -> String {
        let (status, created) = self.call("POST", "/v1/ratelimit/policies", Some(policy));
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().to_owned()
    }

    fn totals(&self, policy: &str) -> Value {
        let (status, stats) = self.call("GET", &format!("/v1/ratelimit/policies/{policy}/stats"), None);
        assert_eq!(status, 200, "{stats}");
        stats["totals"].clone()
    }
}

/// Waits for the edge to answer `path` with a `RateLimit-Policy` naming `policy`; returns
/// that first limited answer and how long the policy took to arrive.
fn first_limited(dev: &Dev, method: &str, path: &str, headers: &[(&str, &str)], policy: &str) -> (Reply, Duration) {
    let started = Instant::now();
    loop {
        let reply = http(&dev.edge, method, path, headers, "");
        if reply.header("ratelimit-policy").is_some_and(|fields| fields.contains(policy)) {
            let took = started.elapsed();
            // Each edge instance looks for a new policy set every 250 ms: after that, every
            // instance counts, so the counts below are exact.
            std::thread::sleep(Duration::from_millis(300));
            return (reply, took);
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the edge never applied {policy}: {}", reply.status);
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn policies_limit_the_edge_within_a_second_and_its_decisions_reach_the_stats() {
    let (config, dir) = fresh_config().await;
    let mut command = verge(&config, dir.path());
    command.env("VERGE_LINKS_DEFAULT_DOMAIN", "127.0.0.1");
    let (_dev, lines) = start_dev(command);
    let dev = {
        let Printed { core, edge, key } = printed(&lines);
        Dev { core, edge, key }
    };
    let (status, _) = dev.call("POST", "/v1/links", Some(json!({"url": "https://example.com/a", "alias": "limited"})));
    assert_eq!(status, 201);
    until("the link reaches the edge", Duration::from_secs(5), || {
        http(&dev.edge, "GET", "/limited", &[], "").status == 302
    });

    // Shadow: a limit of 1 per tenant header blocks nothing, and says what it would do.
    let shadow = dev.create_policy(json!({"name": "per tenant (trial)", "mode": "shadow",
        "descriptor": [{"key": "route", "value": "links"}, {"key": "header.x-tenant"}],
        "limit": {"algorithm": "fixed_window", "limit": 1, "period_seconds": 3600}}));
    let tenant = [("x-tenant", "acme")];
    let (first, _) = first_limited(&dev, "GET", "/limited", &tenant, &shadow);
    assert_eq!(first.status, 302);
    for _ in 0..3 {
        let reply = http(&dev.edge, "GET", "/limited", &tenant, "");
        assert_eq!(reply.status, 302, "shadow mode blocks nothing");
        assert!(reply.header("ratelimit").unwrap().contains(";r=0;"), "{:?}", reply.header("ratelimit"));
    }

    // Enforced: three redirects a minute per client address, applied within a second.
    let per_client = dev.create_policy(json!({"name": "redirects per client",
        "descriptor": [{"key": "route", "value": "links"}, {"key": "remote_address"}],
        "limit": {"algorithm": "sliding_window", "limit": 3, "period_seconds": 60}}));
    let (first, took) = first_limited(&dev, "GET", "/limited", &[], &per_client);
    assert!(took < Duration::from_secs(1), "the policy took {took:?} to reach the edge");
    assert_eq!(first.status, 302);
    assert_eq!(first.header("ratelimit-policy"), Some(format!("\"{per_client}\";q=3;w=60").as_str()));
    assert!(first.header("ratelimit").unwrap().starts_with(&format!("\"{per_client}\";r=2;t=")));
    assert_eq!(http(&dev.edge, "GET", "/limited", &[], "").status, 302);
    assert_eq!(http(&dev.edge, "GET", "/limited", &[], "").status, 302);
    let refused = http(&dev.edge, "GET", "/limited", &[], "");
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.header("content-type"), Some("application/problem+json"));
    let problem: Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(problem["code"], "rate_limited");
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    // A sliding window frees room only once the last window's count has drained enough.
    assert!((1..=120).contains(&wait), "Retry-After {wait}");
    assert!(refused.header("ratelimit").unwrap().contains(";r=0;"));

    // OFREP: two evaluations an hour per client key, counted before the key is checked (an
    // hour-long fixed window, so the test never straddles its end).
    let per_key = dev.create_policy(json!({"name": "evaluations per client key",
        "descriptor": [{"key": "route", "value": "ofrep"}, {"key": "api_key"}],
        "limit": {"algorithm": "fixed_window", "limit": 2, "period_seconds": 3600}}));
    let ofrep = "/ofrep/v1/evaluate/flags/beta";
    let bearer = [("authorization", "Bearer fck_not_a_real_key"), ("content-type", "application/json")];
    let (first, took) = first_limited(&dev, "POST", ofrep, &bearer, &per_key);
    assert!(took < Duration::from_secs(1), "the policy took {took:?} to reach the edge");
    assert_eq!(first.status, 403, "{}", first.body);
    // The default policy (per key and address) applies beside it: every shape counts.
    let applied = first.header("ratelimit-policy").unwrap();
    assert!(applied.contains("\"rl_default_ofrep_client\";q=6000;w=60"), "{applied}");
    assert_eq!(http(&dev.edge, "POST", ofrep, &bearer, "{}").status, 403);
    let refused = http(&dev.edge, "POST", ofrep, &bearer, "{}");
    assert_eq!((refused.status, refused.header("access-control-allow-origin")), (429, Some("*")));
    let other_key = [("authorization", "Bearer fck_another")];
    assert_eq!(http(&dev.edge, "POST", ofrep, &other_key, "{}").status, 403, "another key has its own count");

    // The edge's decisions come back as events and add up in each policy's statistics.
    until("edge decisions reach the statistics", Duration::from_secs(10), || {
        let shadow_totals = dev.totals(&shadow);
        let client_totals = dev.totals(&per_client);
        shadow_totals["allowed"].as_u64() >= Some(1)
            && shadow_totals["shadow_denied"].as_u64() >= Some(3)
            && client_totals["allowed"] == 3
            && client_totals["denied"] == 1
            && dev.totals(&per_key)["denied"] == 1
    });
    let metrics = http(&dev.core, "GET", "/metrics", &[], "").body;
    let denied = format!("verge_ratelimit_decisions_total{{policy=\"{per_client}\",outcome=\"denied\"}} 1");
    assert!(metrics.contains(&denied), "{metrics}");
}

#[tokio::test]
async fn the_default_policies_are_seeded_once_and_a_deleted_one_stays_deleted() {
    let (config, dir) = fresh_config().await;
    let (mut dev_process, lines) = start_dev(verge(&config, dir.path()));
    let dev = {
        let Printed { core, edge, key } = printed(&lines);
        Dev { core, edge, key }
    };
    let (_, listed) = dev.call("GET", "/v1/ratelimit/policies", None);
    let ids: Vec<&str> = listed["items"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["rl_default_ofrep_client"]);
    let default = &listed["items"][0];
    assert_eq!(
        default["descriptor"],
        json!([{"key": "route", "value": "ofrep"}, {"key": "api_key"}, {"key": "remote_address"}])
    );
    let (status, audit) = dev.call("GET", "/v1/audit-log?target_id=rl_default_ofrep_client", None);
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["items"][0]["actor"], "system", "{audit}");
    assert_eq!(dev.call("DELETE", "/v1/ratelimit/policies/rl_default_ofrep_client", None).0, 204);
    dev_process.terminate();

    let mut again = verge(&config, dir.path());
    again.env("VERGE_ADMIN_KEY", &dev.key);
    let (_dev_again, lines) = start_dev(again);
    let dev = Dev { core: printed(&lines).core, ..dev };
    let (_, listed) = dev.call("GET", "/v1/ratelimit/policies", None);
    assert_eq!(listed["items"], json!([]), "a deleted default is not seeded again");
}

#[tokio::test]
async fn the_edge_check_route_decides_for_check_keys_and_a_revoked_key_stops_working() {
    let (config, dir) = fresh_config().await;
    let (_dev, lines) = start_dev(verge(&config, dir.path()));
    let dev = {
        let Printed { core, edge, key } = printed(&lines);
        Dev { core, edge, key }
    };
    let (status, key) = dev.call("POST", "/v1/keys", Some(json!({"name": "gateway", "scopes": ["ratelimit:check"]})));
    assert_eq!(status, 201, "{key}");
    let token = key["token"].as_str().unwrap().to_owned();
    dev.create_policy(json!({"name": "API calls per key", "domain": "api", "descriptor": [{"key": "api_key"}],
        "limit": {"algorithm": "fixed_window", "limit": 2, "period_seconds": 3600}}));
    let auth = format!("Bearer {token}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let call = r#"{"domain": "api", "descriptors": [{"entries": [{"key": "api_key", "value": "k_1"}]}]}"#;
    let started = Instant::now();
    // Until both the key and the policy have reached the edge, calls are refused or
    // uncovered (and not counted); the first answer the policy covers counts once.
    let (first, answer) = loop {
        let reply = http(&dev.edge, "POST", "/ratelimit/v1/check", &headers, call);
        let answer: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        if reply.status == 200 && !answer["results"][0]["policy"].is_null() {
            break (reply, answer);
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the edge never applied the policy: {}", reply.body);
        std::thread::sleep(Duration::from_millis(20));
    };
    // Every instance has looked again after 250 ms; from then on every call counts.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(answer["results"][0]["remaining"], 1, "{answer}");
    assert!(first.header("ratelimit-policy").unwrap().ends_with(";q=2;w=3600"));
    assert_eq!(http(&dev.edge, "POST", "/ratelimit/v1/check", &headers, call).status, 200);
    let refused = http(&dev.edge, "POST", "/ratelimit/v1/check", &headers, call);
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.header("retry-after").is_some());

    // The admin key itself is no check key at the edge: only `ratelimit:check` keys are published.
    let admin = format!("Bearer {}", dev.key);
    assert_eq!(http(&dev.edge, "POST", "/ratelimit/v1/check", &[("authorization", admin.as_str())], call).status, 403);

    // Revoked at the core, refused at the edge within a second.
    assert_eq!(dev.call("DELETE", &format!("/v1/keys/{}", key["key"]["id"].as_str().unwrap()), None).0, 200);
    let revoked = Instant::now();
    until("the edge refuses the revoked key", Duration::from_secs(5), || {
        http(&dev.edge, "POST", "/ratelimit/v1/check", &headers, call).status == 403
    });
    assert!(revoked.elapsed() < Duration::from_secs(1), "took {:?}", revoked.elapsed());
}
