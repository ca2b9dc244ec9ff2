//! Rate-limit policies over the API, and the global tier's decisions, on the backends of
//! this run (SQLite and the in-process store, or PostgreSQL and Redis).

mod common;

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use common::TestApp;
use serde_json::{Value, json};
use verge_core::keys::Scope;
use verge_core::publish::{self, EdgeStore, LocalEdgeStore};
use verge_shared::kv::{MANIFEST_KEY, Manifest, versioned_key};
use verge_shared::ratelimit::PolicySet;

const POLICIES: &str = "/v1/ratelimit/policies";

fn per_key(limit: u32, algorithm: &str) -> Value {
    json!({
        "name": "per API key", "domain": "api",
        "descriptor": [{"key": "api_key"}],
        "limit": {"algorithm": algorithm, "limit": limit, "period_seconds": 3600},
    })
}

async fn create(app: &TestApp, key: &str, body: Value) -> Value {
    let reply = app.call(Method::POST, POLICIES, Some(key), Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json
}

async fn check(app: &TestApp, key: &str, domain: &str, descriptors: Value) -> common::Reply {
    app.call(
        Method::POST,
        "/v1/ratelimit/check",
        Some(key),
        Some(json!({"domain": domain, "descriptors": descriptors})),
    )
    .await
}

fn api_key(value: &str) -> Value {
    json!([{"entries": [{"key": "api_key", "value": value}]}])
}

#[tokio::test]
async fn policies_are_created_listed_replaced_deleted_audited_and_published() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::RatelimitWrite]).await;
    let created = create(&app, &writer, per_key(100, "sliding_window")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("rl_"));
    assert_eq!(created["mode"], "enforce");
    assert_eq!(created["on_store_failure"], "allow");
    assert_eq!(app.get(&format!("{POLICIES}/{id}"), Some(&writer)).await.ok()["limit"]["limit"], 100);

    let mut edge = create(&app, &writer, json!({"name": "redirects per IP", "descriptor": [{"key": "route", "value": "links"}, {"key": "remote_address"}], "limit": {"limit": 60, "period_seconds": 60}})).await;
    let reader = app.key(&[Scope::Read]).await;
    let page = app.get(&format!("{POLICIES}?limit=1"), Some(&reader)).await;
    assert_eq!(page.ok()["items"][0]["id"], id.as_str());
    let cursor = page.json["next_cursor"].as_str().expect("a second page").to_owned();
    let second = app.get(&format!("{POLICIES}?limit=1&cursor={cursor}"), Some(&reader)).await;
    assert_eq!(second.ok()["items"][0]["id"], edge["id"]);
    assert!(second.json.get("next_cursor").is_none());
    let only_edge = app.get(&format!("{POLICIES}?domain=edge"), Some(&reader)).await;
    assert_eq!(only_edge.ok()["items"].as_array().unwrap().len(), 1);

    edge["limit"]["limit"] = json!(30);
    edge["mode"] = json!("shadow");
    let edge_id = edge["id"].as_str().unwrap().to_owned();
    let replaced = app.call(Method::PUT, &format!("{POLICIES}/{edge_id}"), Some(&writer), Some(edge.clone())).await;
    assert_eq!((replaced.ok()["limit"]["limit"].clone(), replaced.json["mode"].clone()), (json!(30), json!("shadow")));
    assert_eq!(replaced.json["created_at"], edge["created_at"]);

    // Published: each domain is a dataset holding its policies as the edge reads them.
    let dir = tempfile::tempdir().unwrap();
    let store = LocalEdgeStore::open(&dir.path().join("kv.db")).await.unwrap();
    publish::publish_to(
        &app.app.state.db,
        &verge_core::server::edge_sources(&verge_core::Config::default()),
        &store,
        &(),
    )
    .await
    .unwrap();
    let manifest = Manifest::decode(&store.get(MANIFEST_KEY).await.unwrap().unwrap()).unwrap();
    let version = manifest.get("rl/edge").expect("the edge domain is published").version;
    let bytes = store.get(&versioned_key("rl/edge", version, "policies")).await.unwrap().unwrap();
    let set = PolicySet::from_json(&bytes).unwrap();
    assert_eq!(set.policies.len(), 1);
    assert_eq!((set.policies[0].id.as_str(), set.policies[0].limit.limit), (edge_id.as_str(), 30));
    assert!(manifest.get("rl/api").is_some());

    let deleted = app.call(Method::DELETE, &format!("{POLICIES}/{id}"), Some(&writer), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.get(&format!("{POLICIES}/{id}"), Some(&writer)).await.problem(StatusCode::NOT_FOUND, "not_found");
    publish::publish_to(
        &app.app.state.db,
        &verge_core::server::edge_sources(&verge_core::Config::default()),
        &store,
        &(),
    )
    .await
    .unwrap();
    let manifest = Manifest::decode(&store.get(MANIFEST_KEY).await.unwrap().unwrap()).unwrap();
    assert!(manifest.get("rl/api").is_none(), "a domain without policies leaves the edge");
    store.close().await;

    let admin = app.admin().await;
    let audit = app.get("/v1/audit-log?target_type=ratelimit_policy", Some(&admin)).await;
    let actions: Vec<&str> =
        audit.ok()["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["ratelimit_policy.delete", "ratelimit_policy.update", "ratelimit_policy.create", "ratelimit_policy.create"]
    );
}

#[tokio::test]
async fn bad_policies_are_refused_precisely_and_nothing_is_stored() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::RatelimitWrite]).await;
    let cases = [
        (
            json!({"name": "x", "descriptor": [{"key": "user"}], "limit": {"algorithm": "leaky_bucket", "limit": 1, "period_seconds": 1}}),
            "/limit/algorithm",
        ),
        (
            json!({"name": "x", "descriptor": [{"key": "user"}], "limit": {"limit": 0, "period_seconds": 1}}),
            "/limit/limit",
        ),
        (
            json!({"name": "x", "descriptor": [{"key": "user"}], "limit": {"limit": -5, "period_seconds": 1}}),
            "/limit/limit",
        ),
        (
            json!({"name": "x", "descriptor": [{"key": "user"}], "limit": {"limit": 5, "period_seconds": 0}}),
            "/limit/period_seconds",
        ),
        (
            json!({"name": "x", "descriptor": [{"key": "remote_address", "value": "not-an-ip"}], "limit": {"limit": 1, "period_seconds": 1}}),
            "/descriptor/0/value",
        ),
        (
            json!({"name": "x", "descriptor": [{"key": "path", "value": "/a"}, {"key": "method", "value": "get"}], "limit": {"limit": 1, "period_seconds": 1}}),
            "/descriptor/1/value",
        ),
        (json!({"name": "x", "descriptor": [], "limit": {"limit": 1, "period_seconds": 1}}), "/descriptor"),
        (
            json!({"name": "x", "descriptor": [{"key": "user"}], "limit": {"limit": 1, "period_seconds": 1}, "mode": "block"}),
            "/mode",
        ),
    ];
    for (body, pointer) in cases {
        let reply = app.call(Method::POST, POLICIES, Some(&writer), Some(body.clone())).await;
        assert_eq!(reply.validation_fields(), [pointer], "{body}");
    }
    let none = app.get(POLICIES, Some(&writer)).await;
    assert_eq!(none.ok()["items"], json!([]));
    let admin = app.admin().await;
    assert_eq!(app.get("/v1/audit-log?target_type=ratelimit_policy", Some(&admin)).await.ok()["items"], json!([]));

    // The same descriptor twice in a domain could never be told apart.
    let first = create(&app, &writer, per_key(5, "fixed_window")).await;
    let again = app.call(Method::POST, POLICIES, Some(&writer), Some(per_key(9, "token_bucket"))).await;
    let problem = again.problem(StatusCode::CONFLICT, "policy_exists");
    assert!(problem["detail"].as_str().unwrap().contains(first["id"].as_str().unwrap()));
}

#[tokio::test]
async fn each_scope_does_its_own_job_only() {
    let app = TestApp::new().await;
    let checker = app.key(&[Scope::RatelimitCheck]).await;
    let reader = app.key(&[Scope::Read]).await;
    let flags = app.key(&[Scope::FlagsWrite]).await;
    app.call(Method::POST, POLICIES, Some(&checker), Some(per_key(1, "fixed_window")))
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
    app.call(Method::POST, POLICIES, Some(&flags), Some(per_key(1, "fixed_window")))
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
    app.get(POLICIES, Some(&checker)).await.problem(StatusCode::FORBIDDEN, "forbidden");
    check(&app, &reader, "api", api_key("k")).await.problem(StatusCode::FORBIDDEN, "forbidden");
    check(&app, "vk_wrong", "api", api_key("k")).await.problem(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(check(&app, &checker, "api", api_key("k")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn concurrent_checks_allow_exactly_the_limit_for_every_algorithm() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::RatelimitWrite]).await;
    let checker = app.key(&[Scope::RatelimitCheck]).await;
    for (i, algorithm) in ["fixed_window", "sliding_window", "token_bucket"].into_iter().enumerate() {
        let mut body = per_key(25, algorithm);
        body["domain"] = json!(format!("api{i}"));
        create(&app, &writer, body).await;
        let domain = format!("api{i}");
        let calls = (0..100).map(|_| {
            let (app, checker, domain) = (&app, &checker, &domain);
            async move { check(app, checker, domain, api_key("shared")).await }
        });
        let replies = futures_util::future::join_all(calls).await;
        let allowed = replies.iter().filter(|r| r.status == StatusCode::OK).count();
        let denied = replies.iter().filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS).count();
        assert_eq!((allowed, denied), (25, 75), "{algorithm}");
        // Another key has a count of its own.
        assert_eq!(check(&app, &checker, &domain, api_key("other")).await.status, StatusCode::OK, "{algorithm}");
    }
}

#[tokio::test]
async fn answers_carry_the_ietf_fields_and_denials_say_when_to_retry() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::RatelimitWrite]).await;
    let checker = app.key(&[Scope::RatelimitCheck]).await;
    let id = create(&app, &writer, per_key(2, "fixed_window")).await["id"].as_str().unwrap().to_owned();
    let first = check(&app, &checker, "api", api_key("k")).await;
    assert_eq!(first.ok()["allowed"], true);
    assert_eq!(first.json["results"][0]["policy"], id.as_str());
    assert_eq!(first.json["results"][0]["remaining"], 1);
    assert_eq!(first.headers["ratelimit-policy"], format!("\"{id}\";q=2;w=3600").as_str());
    let state = first.headers["ratelimit"].to_str().unwrap();
    assert!(state.starts_with(&format!("\"{id}\";r=1;t=")), "{state}");
    check(&app, &checker, "api", api_key("k")).await.ok();
    let denied = check(&app, &checker, "api", api_key("k")).await;
    let problem = denied.problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(problem["results"][0]["allowed"], false);
    let retry: u64 = denied.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry));
    assert_eq!(problem["results"][0]["retry_after_seconds"], retry);
    assert!(denied.headers["ratelimit"].to_str().unwrap().contains(";r=0;"));

    // A descriptor no policy covers is allowed and uncounted.
    let free = check(&app, &checker, "api", json!([{"entries": [{"key": "user", "value": "u1"}]}])).await;
    assert_eq!(free.ok()["results"][0]["policy"], Value::Null);
    assert!(free.headers.get("ratelimit").is_none());
}

#[tokio::test]
async fn shadow_policies_never_deny_but_say_they_would_have() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::RatelimitWrite]).await;
    let checker = app.key(&[Scope::RatelimitCheck]).await;
    let mut body = per_key(1, "fixed_window");
    body["mode"] = json!("shadow");
    create(&app, &writer, body).await;
    let first = check(&app, &checker, "api", api_key("k")).await;
    assert_eq!(first.ok()["results"][0]["shadow_denied"], false);
    let second = check(&app, &checker, "api", api_key("k")).await;
    assert_eq!(second.ok()["allowed"], true);
    assert_eq!(second.json["results"][0]["shadow_denied"], true);
}

#[tokio::test]
async fn tiers_give_each_plan_its_limit_and_the_most_specific_policy_wins() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::RatelimitWrite]).await;
    let checker = app.key(&[Scope::RatelimitCheck]).await;
    let mut tiered = per_key(1, "fixed_window");
    tiered["tiers"] =
        json!({"key": "plan", "limits": {"pro": {"algorithm": "fixed_window", "limit": 3, "period_seconds": 3600}}});
    create(&app, &writer, tiered).await;
    let vip = create(&app, &writer, json!({"name": "vip", "domain": "api", "descriptor": [{"key": "api_key", "value": "vip"}], "limit": {"limit": 1000, "period_seconds": 60}})).await;
    let pro = |key: &str| json!([{"entries": [{"key": "api_key", "value": key}, {"key": "plan", "value": "pro"}]}]);
    let mut allowed = 0;
    for _ in 0..5 {
        let reply = check(&app, &checker, "api", pro("p")).await;
        if reply.status == StatusCode::OK {
            assert_eq!(reply.json["results"][0]["plan"], "pro");
            allowed += 1;
        }
    }
    assert_eq!(allowed, 3, "the pro plan's limit");
    assert_eq!(check(&app, &checker, "api", api_key("f")).await.status, StatusCode::OK);
    assert_eq!(
        check(&app, &checker, "api", api_key("f")).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the base limit"
    );
    let special = check(&app, &checker, "api", api_key("vip")).await;
    assert_eq!(special.ok()["results"][0]["policy"], vip["id"]);
}

#[tokio::test]
async fn malformed_checks_are_refused_with_pointers() {
    let app = TestApp::new().await;
    let checker = app.key(&[Scope::RatelimitCheck]).await;
    let too_many: Vec<Value> =
        (0..101).map(|i| json!({"entries": [{"key": "user", "value": format!("u{i}")}]})).collect();
    assert_eq!(check(&app, &checker, "api", json!(too_many)).await.validation_fields(), ["/descriptors"]);
    assert_eq!(check(&app, &checker, "api", json!([])).await.validation_fields(), ["/descriptors"]);
    assert_eq!(check(&app, &checker, "", api_key("k")).await.validation_fields(), ["/domain"]);
    let whole = json!([{"entries": [{"key": "user", "value": "u"}], "cost": 2.0}]);
    assert_eq!(check(&app, &checker, "api", whole).await.status, StatusCode::OK, "2.0 is a whole number");
    let bad = json!([{"entries": []}, {"entries": [{"key": "user", "value": "u"}], "cost": 0}]);
    assert_eq!(
        check(&app, &checker, "api", bad).await.validation_fields(),
        ["/descriptors/0/entries", "/descriptors/1/cost"]
    );
}

/// A check call as bytes, sent with a known length (the route's fast lane takes it when
/// it may) or streamed without one (always the full router's way).
async fn raw_check(app: &TestApp, key: Option<&str>, content_type: &str, body: &str, streamed: bool) -> common::Reply {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/v1/ratelimit/check")
        .header("content-type", content_type)
        .header("x-request-id", "req-fixed");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let bytes = Bytes::from(body.to_owned());
    let body = if streamed {
        Body::from_stream(futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(bytes) }))
    } else {
        Body::from(bytes)
    };
    app.send(request.body(body).unwrap()).await
}

/// What must match between two answers: status, header names, and headers and body with
/// the seconds that tick between two calls (reset and retry times) taken out.
fn comparable(reply: &common::Reply) -> (StatusCode, Vec<String>, Vec<String>, Value) {
    // One policy per answer here, so `t=` (seconds to reset) is a whole parameter.
    let untick = |value: &str| value.split(';').filter(|p| !p.starts_with("t=")).collect::<Vec<_>>().join(";");
    let mut names: Vec<String> = reply.headers.keys().map(|name| name.to_string()).collect();
    names.sort();
    let values = ["content-type", "x-request-id", "ratelimit-policy", "ratelimit"]
        .iter()
        .map(|name| reply.headers.get(*name).map_or("-".into(), |v| untick(v.to_str().unwrap())))
        .collect();
    let mut json = reply.json.clone();
    for result in json["results"].as_array_mut().into_iter().flatten() {
        result["reset_seconds"] = Value::Null;
        result["retry_after_seconds"] = Value::Null;
    }
    (reply.status, names, values, json)
}

#[tokio::test]
async fn the_fast_lane_answers_every_check_exactly_as_the_full_router_does() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::RatelimitWrite]).await;
    let checker = app.key(&[Scope::RatelimitCheck]).await;
    let reader = app.key(&[Scope::Read]).await;
    create(&app, &writer, per_key(1, "fixed_window")).await;
    let mut shadow = per_key(1, "fixed_window");
    shadow["domain"] = json!("shadowed");
    shadow["mode"] = json!("shadow");
    create(&app, &writer, shadow).await;
    let call = |domain: &str, value: &str| {
        json!({"domain": domain, "descriptors": [{"entries": [{"key": "api_key", "value": value}]}]}).to_string()
    };
    check(&app, &checker, "api", api_key("spent")).await.ok();
    check(&app, &checker, "shadowed", api_key("spent")).await.ok();
    let json = "application/json";
    let cases: Vec<(&str, Option<&str>, &str, String)> = vec![
        ("allowed", Some(&checker), json, call("api", "fresh")),
        ("denied", Some(&checker), json, call("api", "spent")),
        ("shadow-denied", Some(&checker), json, call("shadowed", "spent")),
        ("no policy", Some(&checker), json, call("elsewhere", "any")),
        ("invalid descriptors", Some(&checker), json, r#"{"domain": "api", "descriptors": []}"#.into()),
        ("unknown field", Some(&checker), json, r#"{"domain": "api", "descriptors": [], "x": 1}"#.into()),
        ("not an object", Some(&checker), json, r#"["api", []]"#.into()),
        ("not JSON", Some(&checker), json, "{".into()),
        ("wrong media type", Some(&checker), "text/plain", call("api", "fresh")),
        ("no key", None, json, call("api", "fresh")),
        ("wrong scope", Some(&reader), json, call("api", "fresh")),
        ("unknown key", Some("verge_nobody"), json, call("api", "fresh")),
    ];
    for (case, key, content_type, body) in &cases {
        // A fresh counter for each way, so both start from the same state.
        let lane = raw_check(&app, *key, content_type, &body.replace("fresh", "fresh-lane"), false).await;
        let full = raw_check(&app, *key, content_type, &body.replace("fresh", "fresh-full"), true).await;
        assert_eq!(comparable(&lane), comparable(&full), "{case}: lane {} / full {}", lane.text, full.text);
        assert_eq!(lane.headers["x-request-id"], "req-fixed", "{case}");
    }
    // Both ways count in the request metrics under the route.
    let metrics = app.get("/metrics", None).await.text;
    let answered = |status: u16| {
        let series =
            format!(r#"verge_http_requests_total{{method="POST",route="/v1/ratelimit/check",status="{status}"}} "#);
        metrics.lines().find_map(|line| line.strip_prefix(series.as_str())).map(|n| n.parse::<u32>().unwrap())
    };
    assert_eq!(answered(200), Some(2 + 2 * 3), "{metrics}");
    assert_eq!(answered(429), Some(2), "{metrics}");
}

/// A body that says how long it is and then never comes.
struct Stalled(u64);

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0)
    }
}

#[tokio::test]
async fn a_check_whose_body_never_arrives_times_out_like_any_request() {
    let app = TestApp::with(|config| config.request_timeout_ms = 300).await;
    let checker = app.key(&[Scope::RatelimitCheck]).await;
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/ratelimit/check")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {checker}"))
        .body(Body::new(Stalled(64)))
        .unwrap();
    let reply = tokio::time::timeout(std::time::Duration::from_secs(10), app.send(request))
        .await
        .expect("the request was abandoned at its timeout");
    reply.problem(StatusCode::SERVICE_UNAVAILABLE, "request_timeout");
}

const ENVOY: &str = r#"
domain: api
descriptors:
  - key: remote_address
    rate_limit:
      unit: minute
      requests_per_unit: 60
  - key: generic_key
    value: login
    descriptors:
      - key: remote_address
        rate_limit:
          unit: hour
          requests_per_unit: 10
        shadow_mode: true
"#;

async fn put_yaml(app: &TestApp, key: &str, uri: &str, yaml: &str) -> common::Reply {
    let request = axum::http::Request::builder()
        .method(Method::PUT)
        .uri(uri)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/yaml")
        .body(axum::body::Body::from(yaml.to_owned()))
        .unwrap();
    app.send(request).await
}

#[tokio::test]
async fn envoy_configurations_import_and_export_back_to_the_same_tree() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::RatelimitWrite]).await;
    let imported = put_yaml(&app, &writer, "/v1/ratelimit/envoy/api", ENVOY).await;
    assert_eq!(imported.ok()["created"].as_array().unwrap().len(), 2, "{}", imported.text);
    let listed = app.get(&format!("{POLICIES}?domain=api"), Some(&writer)).await;
    let login = listed.ok()["items"].as_array().unwrap().iter().find(|p| p["mode"] == "shadow").unwrap().clone();
    assert_eq!(login["descriptor"], json!([{"key": "generic_key", "value": "login"}, {"key": "remote_address"}]));
    assert_eq!(login["limit"], json!({"algorithm": "fixed_window", "limit": 10, "period_seconds": 3600}));

    let exported = app.get("/v1/ratelimit/envoy/api", Some(&writer)).await;
    assert_eq!(exported.status, StatusCode::OK);
    assert_eq!(exported.headers["content-type"], "application/yaml");
    let tree: Value = serde_norway::from_str(&exported.text).unwrap();
    let original: Value = serde_norway::from_str(ENVOY).unwrap();
    assert_eq!(strip_names(tree), strip_names(original), "{}", exported.text);

    // Importing the export again changes nothing.
    let again = put_yaml(&app, &writer, "/v1/ratelimit/envoy/api", &exported.text).await;
    assert_eq!((again.ok()["created"].clone(), again.json["updated"].clone()), (json!([]), json!([])));
    assert_eq!(again.json["unchanged"].as_array().unwrap().len(), 2);

    // What envoy cannot express is named in a comment, not changed.
    create(&app, &writer, per_key(5, "token_bucket")).await;
    let with_bucket = app.get("/v1/ratelimit/envoy/api", Some(&writer)).await;
    assert!(with_bucket.text.starts_with("# not exported: rl_"), "{}", with_bucket.text);
    assert!(with_bucket.text.contains("token_bucket counts differently"));

    // replace=true removes what the file lacks.
    let replaced = put_yaml(&app, &writer, "/v1/ratelimit/envoy/api?replace=true", ENVOY).await;
    assert_eq!(replaced.ok()["deleted"].as_array().unwrap().len(), 1);
}

/// Export names each policy, and siblings' order means nothing to envoy (policies made
/// in one millisecond have ids in no particular order): compare the trees without either.
fn strip_names(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.remove("name");
        for child in object.values_mut() {
            *child = strip_names(child.take());
        }
    } else if let Some(items) = value.as_array_mut() {
        for item in items.iter_mut() {
            *item = strip_names(item.take());
        }
        items.sort_by_key(|item| (item["key"].to_string(), item["value"].to_string()));
    }
    value
}

#[tokio::test]
async fn malformed_envoy_files_are_refused_with_pointers_and_store_nothing() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::RatelimitWrite]).await;
    let uri = "/v1/ratelimit/envoy/api";
    let cases = [
        ("domain: api\ndescriptors: [unclosed", ""),
        ("domain: other\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1}\n", "/domain"),
        (
            "domain: api\ndescriptors:\n  - key: a\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
            "/descriptors/0/rate_limit/unit",
        ),
        (
            "domain: api\ndescriptors:\n  - key: a\n    descriptors:\n      - key: b\n        rate_limit: {unit: second, requests_per_unit: 0}\n",
            "/descriptors/0/descriptors/0/rate_limit/requests_per_unit",
        ),
        (
            "domain: api\ndescriptors:\n  - key: Not Valid\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
            "/descriptors/0/key",
        ),
        (
            "domain: api\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1}\n  - key: a\n    rate_limit: {unit: minute, requests_per_unit: 1}\n",
            "/descriptors/1",
        ),
    ];
    for (yaml, pointer) in cases {
        assert_eq!(put_yaml(&app, &writer, uri, yaml).await.validation_fields(), [pointer], "{yaml}");
    }
    let json_body = app.call(Method::PUT, uri, Some(&writer), Some(json!({"domain": "api"}))).await;
    json_body.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    assert_eq!(app.get(POLICIES, Some(&writer)).await.ok()["items"], json!([]));
}

#[tokio::test]
async fn with_redis_down_fail_open_allows_fail_closed_denies_and_decisions_resume() {
    let mut redis = common::services::PrivateRedis::start();
    let url = redis.url();
    let app = TestApp::with(|config| {
        config.redis_url = Some(url.into());
        config.redis_prefix = "rl-faults:".into();
    })
    .await;
    let writer = app.key(&[Scope::RatelimitWrite]).await;
    let checker = app.key(&[Scope::RatelimitCheck]).await;
    let open = per_key(100, "token_bucket");
    let closed = json!({"name": "payments", "domain": "api", "descriptor": [{"key": "user"}],
        "limit": {"algorithm": "sliding_window", "limit": 100, "period_seconds": 60}, "on_store_failure": "deny"});
    create(&app, &writer, open).await;
    create(&app, &writer, closed.clone()).await;
    let user = json!([{"entries": [{"key": "user", "value": "u"}]}]);
    assert_eq!(check(&app, &checker, "api", api_key("k")).await.status, StatusCode::OK);
    assert_eq!(check(&app, &checker, "api", user.clone()).await.status, StatusCode::OK);

    redis.crash();
    for _ in 0..3 {
        let allowed = check(&app, &checker, "api", api_key("k")).await;
        assert_eq!(allowed.ok()["results"][0]["store_unavailable"], true, "fail open: {}", allowed.text);
        let denied = check(&app, &checker, "api", user.clone()).await;
        let problem = denied.problem(StatusCode::SERVICE_UNAVAILABLE, "counter_store_unavailable");
        assert_eq!(problem["results"][0]["store_unavailable"], true);
        assert_eq!(denied.headers["retry-after"], "1");
    }
    // Policies are still read from the database meanwhile.
    let listed = app.get(&format!("{POLICIES}?domain=api"), Some(&writer)).await;
    assert_eq!(listed.ok()["items"].as_array().unwrap().len(), 2);

    redis.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while check(&app, &checker, "api", user.clone()).await.status != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "decisions did not resume within 10 s of Redis coming back");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let resumed = check(&app, &checker, "api", api_key("k")).await;
    assert_eq!(resumed.ok()["results"][0]["store_unavailable"], false);
}

#[tokio::test]
async fn the_stats_route_shows_each_policys_decisions_per_minute() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::RatelimitWrite]).await;
    let checker = app.key(&[Scope::RatelimitCheck]).await;
    let enforcing = create(&app, &writer, per_key(2, "fixed_window")).await["id"].as_str().unwrap().to_owned();
    let mut shadow = per_key(1, "fixed_window");
    shadow["domain"] = json!("shadowed");
    shadow["mode"] = json!("shadow");
    let shadowed = create(&app, &writer, shadow).await["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        check(&app, &checker, "api", api_key("k")).await;
        check(&app, &checker, "shadowed", api_key("k")).await;
    }
    let stats = app.get(&format!("{POLICIES}/{enforcing}/stats"), Some(&writer)).await;
    let body = stats.ok();
    assert_eq!(body["totals"], json!({"allowed": 2, "denied": 1, "shadow_denied": 0, "store_unavailable": 0}));
    let timeline = body["timeline"].as_array().unwrap();
    assert!((1..=2).contains(&timeline.len()), "one minute, or two across a boundary: {timeline:?}");
    let shadow_stats = app.get(&format!("{POLICIES}/{shadowed}/stats"), Some(&writer)).await;
    assert_eq!(
        shadow_stats.ok()["totals"],
        json!({"allowed": 1, "denied": 0, "shadow_denied": 2, "store_unavailable": 0})
    );

    let reader = app.key(&[Scope::Read]).await;
    assert_eq!(app.get(&format!("{POLICIES}/{enforcing}/stats"), Some(&reader)).await.status, StatusCode::OK);
    app.get(&format!("{POLICIES}/rl_nothing/stats"), Some(&reader)).await.problem(StatusCode::NOT_FOUND, "not_found");
    let backwards = format!("{POLICIES}/{enforcing}/stats?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z");
    assert_eq!(app.get(&backwards, Some(&reader)).await.validation_fields(), ["from"]);
    let too_long = format!("{POLICIES}/{enforcing}/stats?from=2026-01-01T00:00:00Z&to=2026-01-03T00:00:00Z");
    assert_eq!(app.get(&too_long, Some(&reader)).await.validation_fields(), ["from"]);
}
