//! Enforcement on the edge's routes, through `crate::handle` with a fake platform.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use http::Method;
use serde_json::{Value, json};
use verge_shared::kv::{MANIFEST_KEY, Manifest, versioned_key};
use verge_shared::links::{LinkRecord, link_key};
use verge_shared::ratelimit::{Policy, PolicySet};

use super::*;
use crate::host::Client;
use crate::router::tests::{FakeHost, get, text};

fn policy(id: &str, document: Value) -> Policy {
    Policy::from_value(id, &document).unwrap_or_else(|errors| panic!("{errors:?}"))
}

/// An edge with one link, `/gox` on `go.example`, and `policies` published as `rl/edge`.
fn edge(policies: &[Policy], version: u64) -> FakeHost {
    let mut manifest = Manifest { snapshot: version, datasets: Vec::new() };
    manifest.set("rl/edge", version, &format!("h{version}"));
    let link = LinkRecord {
        id: "lnk_1".into(),
        target: "https://example.com/".into(),
        status: 302,
        expires_at: None,
        expired_url: None,
        exhausted: false,
        password: None,
        forward_query: false,
        ios: None,
        android: None,
        desktop: None,
        countries: Vec::new(),
    };
    let set = PolicySet { policies: policies.to_vec() };
    FakeHost {
        kv: HashMap::from([
            (MANIFEST_KEY.to_owned(), manifest.encode()),
            (versioned_key("rl/edge", version, "policies"), set.to_json()),
            (link_key("go.example", "gox"), link.encode()),
        ]),
        client: Client { ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))), country: Some(*b"NL") },
        ..FakeHost::default()
    }
}

fn visit(host: &FakeHost) -> Response<Body> {
    get(host, Method::GET, "http://go.example/gox")
}

fn per_client(limit: u32, algorithm: &str) -> Value {
    json!({"name": "redirects per client", "descriptor": [{"key": "route", "value": "links"}, {"key": "remote_address"}],
           "limit": {"algorithm": algorithm, "limit": limit, "period_seconds": 60}})
}

fn decisions(host: &FakeHost) -> Vec<(String, String)> {
    host.sent
        .borrow()
        .iter()
        .flat_map(|batch| {
            let batch: Value = serde_json::from_slice(batch).unwrap();
            batch["events"].as_array().unwrap().clone()
        })
        .filter(|event| event["kind"] == DECISION_KIND)
        .map(|event| {
            (event["data"]["policy"].as_str().unwrap().into(), event["data"]["outcome"].as_str().unwrap().into())
        })
        .collect()
}

#[test]
fn redirects_over_the_limit_get_a_429_with_the_ietf_fields_until_the_window_ends() {
    let host = edge(&[policy("rl_links", per_client(3, "fixed_window"))], 1);
    for left in [2, 1, 0] {
        let response = visit(&host);
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(response.headers()["ratelimit-policy"], "\"rl_links\";q=3;w=60");
        let state = response.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(state.starts_with(&format!("\"rl_links\";r={left};t=")), "{state}");
    }
    let refused = visit(&host);
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()[header::CONTENT_TYPE], crate::problem::CONTENT_TYPE);
    assert!(text(&refused).contains("\"code\":\"rate_limited\""), "{}", text(&refused));
    assert_eq!(refused.headers()[header::RETRY_AFTER], "60", "the fixed clock sits on a window start");
    assert!(refused.headers()["ratelimit"].to_str().unwrap().starts_with("\"rl_links\";r=0;"));
    // Denials are not counted, so the count stays at the limit.
    let counted: Vec<i64> = host.counters.borrow().values().copied().collect();
    assert_eq!(counted, [3]);
    assert_eq!(
        decisions(&host),
        ["allowed", "allowed", "allowed", "denied"].map(|o| ("rl_links".to_owned(), o.to_owned()))
    );
    host.elapsed_ms.set(60_000);
    assert_eq!(visit(&host).status(), StatusCode::FOUND, "a new window");
}

#[test]
fn each_client_has_its_own_count_and_other_routes_are_not_counted() {
    let mut host = edge(&[policy("rl_links", per_client(1, "sliding_window"))], 1);
    assert_eq!(visit(&host).status(), StatusCode::FOUND);
    assert_eq!(visit(&host).status(), StatusCode::TOO_MANY_REQUESTS);
    host.client.ip = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)));
    assert_eq!(visit(&host).status(), StatusCode::FOUND, "another client");
    let health = get(&host, Method::GET, "/__verge/health");
    assert!(health.headers().get("ratelimit").is_none(), "health is no limited route");
}

fn checks_per_client() -> Policy {
    policy(
        "rl_checks",
        json!({"name": "checks", "descriptor": [{"key": "route", "value": "check"}, {"key": "remote_address"}],
               "limit": {"algorithm": "fixed_window", "limit": 1, "period_seconds": 60}}),
    )
}

#[test]
fn a_route_no_policy_names_is_not_counted() {
    let host = edge(&[checks_per_client()], 1);
    for _ in 0..3 {
        assert_eq!(visit(&host).status(), StatusCode::FOUND);
    }
    assert!(host.counters.borrow().is_empty(), "nothing counted on a route no policy names");
}

#[test]
fn a_policy_naming_no_route_applies_beside_one_that_names_another_route() {
    let everyone = json!({"name": "per client", "descriptor": [{"key": "remote_address"}],
                          "limit": {"algorithm": "fixed_window", "limit": 1, "period_seconds": 60}});
    let host = edge(&[checks_per_client(), policy("rl_all", everyone)], 1);
    assert_eq!(visit(&host).status(), StatusCode::FOUND);
    let refused = visit(&host);
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS, "the policy without a route limits redirects");
    assert!(refused.headers()["ratelimit"].to_str().unwrap().starts_with("\"rl_all\";r=0;"));
}

#[test]
fn a_sliding_window_remembers_the_previous_window() {
    let host = edge(&[policy("rl_links", per_client(4, "sliding_window"))], 1);
    for _ in 0..4 {
        assert_eq!(visit(&host).status(), StatusCode::FOUND);
    }
    // A quarter into the next window, three quarters of the last one's 4 still count.
    host.elapsed_ms.set(75_000);
    assert_eq!(visit(&host).status(), StatusCode::FOUND);
    assert_eq!(visit(&host).status(), StatusCode::TOO_MANY_REQUESTS);
}

#[test]
fn shadow_policies_block_nothing_but_report_what_they_would_have_done() {
    let mut shadow = per_client(1, "fixed_window");
    shadow["mode"] = json!("shadow");
    let host = edge(&[policy("rl_shadow", shadow)], 1);
    for _ in 0..3 {
        assert_eq!(visit(&host).status(), StatusCode::FOUND);
    }
    let outcomes: Vec<String> = decisions(&host).into_iter().map(|(_, outcome)| outcome).collect();
    assert_eq!(outcomes, ["allowed", "shadow_denied", "shadow_denied"]);
}

#[test]
fn without_counters_each_policy_fails_the_way_it_says() {
    let mut closed = per_client(10, "fixed_window");
    closed["on_store_failure"] = json!("deny");
    let mut host = edge(&[policy("rl_closed", closed)], 1);
    host.counters_down = true;
    let refused = visit(&host);
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(text(&refused).contains("\"code\":\"counter_store_unavailable\""));
    let mut open = edge(&[policy("rl_open", per_client(10, "fixed_window"))], 2);
    open.counters_down = true;
    open.elapsed_ms.set(crate::manifest::RECHECK_MS); // the same instance, once it looks again
    let allowed = visit(&open);
    assert_eq!(allowed.status(), StatusCode::FOUND);
    assert!(allowed.headers().get("ratelimit").is_none(), "no figures to report");
    assert_eq!(decisions(&open), [("rl_open".to_owned(), "store_unavailable".to_owned())]);
}

#[test]
fn the_most_specific_policy_of_a_shape_applies_and_every_shape_counts() {
    let mut vip = per_client(100, "fixed_window");
    vip["descriptor"][1]["value"] = json!("203.0.113.0/24");
    let country = json!({"name": "per country", "descriptor": [{"key": "country", "value": "NL"}],
                         "limit": {"algorithm": "fixed_window", "limit": 2, "period_seconds": 60}});
    let host =
        edge(&[policy("rl_any", per_client(1, "fixed_window")), policy("rl_vip", vip), policy("rl_nl", country)], 1);
    let first = visit(&host);
    assert_eq!(first.status(), StatusCode::FOUND);
    let applied = first.headers()["ratelimit-policy"].to_str().unwrap();
    assert_eq!(applied, "\"rl_vip\";q=100;w=60, \"rl_nl\";q=2;w=60", "the /24 beats any address");
    assert_eq!(visit(&host).status(), StatusCode::FOUND);
    let third = visit(&host);
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS, "the country policy is spent");
}

#[test]
fn a_tier_header_picks_the_plan_limit_and_its_absence_the_base_limit() {
    let mut tiered = per_client(1, "fixed_window");
    tiered["tiers"] = json!({"key": "header.x-plan", "limits": {"pro": {"algorithm": "fixed_window", "limit": 3,
                              "period_seconds": 60}}});
    let host = edge(&[policy("rl_tiered", tiered)], 1);
    let visit_as = |plan: Option<&str>| {
        let mut request = Request::builder().uri("http://go.example/gox");
        if let Some(plan) = plan {
            request = request.header("x-plan", plan);
        }
        futures_executor::block_on(crate::handle(&host, request.body(Vec::new()).unwrap()))
    };
    let pro = visit_as(Some("pro"));
    assert_eq!(pro.headers()["ratelimit-policy"], "\"rl_tiered\";q=3;w=60", "the pro plan's limit");
    assert_eq!(visit_as(Some("pro")).status(), StatusCode::FOUND);
    // One count per client whatever the plan: the base limit of 1 is spent already.
    let base = visit_as(None);
    assert_eq!(base.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(base.headers()["ratelimit-policy"].to_str().unwrap().contains("q=1;"), "the base limit without a plan");
    assert_eq!(visit_as(Some("pro")).status(), StatusCode::FOUND, "the third of pro's three");
    assert_eq!(visit_as(Some("pro")).status(), StatusCode::TOO_MANY_REQUESTS);
}

#[test]
fn a_policy_set_that_could_not_be_read_is_read_again_by_the_next_request() {
    let mut host = edge(&[policy("rl_any", per_client(5, "fixed_window"))], 1);
    let part = host.kv.remove(&versioned_key("rl/edge", 1, "policies")).unwrap();
    assert!(!visit(&host).headers().contains_key("ratelimit-policy"), "nothing to enforce without the set");
    // The same version, now readable, within the manifest's recheck interval.
    host.kv.insert(versioned_key("rl/edge", 1, "policies"), part);
    assert_eq!(visit(&host).headers()["ratelimit-policy"], "\"rl_any\";q=5;w=60");
}

#[test]
fn ofrep_calls_are_counted_per_client_key_and_refusals_carry_cors() {
    let per_key = json!({"name": "evaluations per key", "descriptor": [{"key": "route", "value": "ofrep"}, {"key": "api_key"}],
                         "limit": {"algorithm": "fixed_window", "limit": 1, "period_seconds": 60}});
    let host = edge(&[policy("rl_keys", per_key)], 1);
    let call = |method: Method, key: &str| {
        let request = Request::builder()
            .method(method)
            .uri("/ofrep/v1/evaluate/flags/beta")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(b"{}".to_vec())
            .unwrap();
        futures_executor::block_on(crate::handle(&host, request))
    };
    assert_eq!(call(Method::OPTIONS, "fck_a").status(), StatusCode::NO_CONTENT, "preflights are free");
    assert_ne!(call(Method::POST, "fck_a").status(), StatusCode::TOO_MANY_REQUESTS);
    let refused = call(Method::POST, "fck_a");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert_ne!(call(Method::POST, "fck_b").status(), StatusCode::TOO_MANY_REQUESTS, "another key");
    let names: Vec<String> = host.counters.borrow().keys().cloned().collect();
    assert!(names.iter().all(|name| !name.contains("fck_")), "keys never reach the counter store: {names:?}");
}

#[test]
fn a_new_policy_set_applies_once_the_recheck_interval_has_passed() {
    let mut host = edge(&[], 1);
    assert_eq!(visit(&host).headers().get("ratelimit"), None);
    let newer = edge(&[policy("rl_links", per_client(5, "fixed_window"))], 2);
    host.kv = newer.kv;
    host.elapsed_ms.set(crate::manifest::RECHECK_MS);
    assert_eq!(visit(&host).headers()["ratelimit-policy"], "\"rl_links\";q=5;w=60");
}

/// An edge whose `api` domain allows 2 calls a minute per `api_key`, and which accepts the
/// check key `vk_check` (and `vk_expired`, expired at the fixed clock's start).
fn checking_edge() -> FakeHost {
    let per_key = json!({"name": "per key", "domain": "api", "descriptor": [{"key": "api_key"}],
                         "limit": {"algorithm": "fixed_window", "limit": 2, "period_seconds": 60}});
    let set = PolicySet { policies: vec![policy("rl_api", per_key)] };
    let now = 1_800_000_000_000u64;
    let checkers = json!([
        {"hash": verge_shared::sha256_hex(b"vk_check"), "expires_at": null},
        {"hash": verge_shared::sha256_hex(b"vk_expired"), "expires_at": now},
    ]);
    let mut manifest = Manifest { snapshot: 1, datasets: Vec::new() };
    manifest.set("rl/api", 1, "a");
    manifest.set("rl-checkers", 1, "c");
    FakeHost {
        kv: HashMap::from([
            (MANIFEST_KEY.to_owned(), manifest.encode()),
            (versioned_key("rl/api", 1, "policies"), set.to_json()),
            (versioned_key("rl-checkers", 1, "keys"), checkers.to_string().into_bytes()),
        ]),
        ..FakeHost::default()
    }
}

fn check(host: &FakeHost, key: Option<&str>, body: Value) -> Response<Body> {
    let mut request = Request::builder().method(Method::POST).uri(check::PATH);
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    futures_executor::block_on(crate::handle(host, request.body(body.to_string().into_bytes()).unwrap()))
}

fn json_of(response: &Response<Body>) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

#[test]
fn the_check_route_decides_descriptors_for_keys_the_core_published() {
    let host = checking_edge();
    let call = json!({"domain": "api", "descriptors": [
        {"entries": [{"key": "api_key", "value": "k_1"}]},
        {"entries": [{"key": "other", "value": "x"}]},
    ]});
    let first = check(&host, Some("vk_check"), call.clone());
    assert_eq!(first.status(), StatusCode::OK, "{}", text(&first));
    let answer = json_of(&first);
    assert_eq!(answer["allowed"], true);
    assert_eq!(answer["results"][0]["policy"], "rl_api");
    assert_eq!(answer["results"][0]["remaining"], 1);
    assert_eq!(answer["results"][1]["policy"], Value::Null, "a descriptor no policy covers is allowed, uncounted");
    assert_eq!(first.headers()["ratelimit-policy"], "\"rl_api\";q=2;w=60");
    assert_eq!(check(&host, Some("vk_check"), call.clone()).status(), StatusCode::OK);
    let refused = check(&host, Some("vk_check"), call);
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()[header::CONTENT_TYPE], crate::problem::CONTENT_TYPE);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "60");
    let problem = json_of(&refused);
    assert_eq!(
        (problem["code"].as_str(), problem["results"][0]["allowed"].as_bool()),
        (Some("rate_limited"), Some(false))
    );
    // A cost takes that many at once; more than the policy allows at all gets no wait.
    let costly =
        json!({"domain": "api", "descriptors": [{"entries": [{"key": "api_key", "value": "k_2"}], "cost": 3}]});
    let too_big = json_of(&check(&host, Some("vk_check"), costly));
    assert_eq!(too_big["results"][0]["retry_after_seconds"], Value::Null);
}

#[test]
fn the_check_route_wants_a_published_unexpired_key() {
    let host = checking_edge();
    let call = json!({"domain": "api", "descriptors": [{"entries": [{"key": "api_key", "value": "k"}]}]});
    let missing = check(&host, None, call.clone());
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(missing.headers().contains_key(header::WWW_AUTHENTICATE));
    assert_eq!(check(&host, Some("vk_unknown"), call.clone()).status(), StatusCode::FORBIDDEN);
    assert_eq!(check(&host, Some("vk_expired"), call).status(), StatusCode::FORBIDDEN);
    assert!(host.counters.borrow().is_empty(), "nothing was counted for refused callers");
    let get =
        futures_executor::block_on(crate::handle(&host, Request::builder().uri(check::PATH).body(Vec::new()).unwrap()));
    assert_eq!(
        (get.status(), get.headers()[header::ALLOW].to_str().unwrap()),
        (StatusCode::METHOD_NOT_ALLOWED, "POST")
    );
}

#[test]
fn malformed_checks_are_refused_with_pointers_and_count_nothing() {
    let host = checking_edge();
    let cases = [
        (json!({"domain": "API", "descriptors": [{"entries": [{"key": "a", "value": "b"}]}]}), "/domain"),
        (json!({"domain": "api", "descriptors": []}), "/descriptors"),
        (json!({"domain": "api", "descriptors": [{"entries": []}]}), "/descriptors/0/entries"),
        (
            json!({"domain": "api", "descriptors": [{"entries": [{"key": "a", "value": "b"}], "cost": 0}]}),
            "/descriptors/0/cost",
        ),
        (
            json!({"domain": "api", "descriptors": [{"entries": [{"key": "", "value": "b"}]}]}),
            "/descriptors/0/entries/0/key",
        ),
        (json!({"domain": "api", "descriptors": [{"entries": [{"key": "a", "value": "b"}]}], "x": 1}), "/x"),
    ];
    for (body, pointer) in cases {
        let refused = check(&host, Some("vk_check"), body);
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "{pointer}: {}", text(&refused));
        assert_eq!(json_of(&refused)["errors"][0]["field"], pointer, "{}", text(&refused));
    }
    let many: Vec<Value> = (0..101).map(|_| json!({"entries": [{"key": "api_key", "value": "k"}]})).collect();
    let refused = check(&host, Some("vk_check"), json!({"domain": "api", "descriptors": many}));
    assert_eq!(json_of(&refused)["errors"][0]["field"], "/descriptors");
    assert!(host.counters.borrow().is_empty());
}
