//! The core's HTTP behaviour as a client sees it: health, authentication, error shapes,
//! limits, request ids and metrics.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::TestApp;
use serde_json::json;
use verge_core::keys::Scope;

#[tokio::test]
async fn healthz_and_readyz_answer_when_dependencies_are_up() {
    let app = TestApp::new().await;
    let health = app.get("/healthz", None).await;
    assert_eq!(health.ok()["status"], "ok");
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.ok()["database"], "ok");
    assert_eq!(ready.json["cache"], "ok");
}

#[tokio::test]
async fn readyz_names_the_dependency_that_failed() {
    let app = TestApp::new().await;
    app.app.state.db.close().await;
    let ready = app.get("/readyz", None).await;
    let problem = ready.problem(StatusCode::SERVICE_UNAVAILABLE, "not_ready");
    // A stable answer: the driver's own words (here "pool closed") stay in the log.
    assert_eq!(problem["detail"], "database: unavailable");
    assert!(!ready.text.to_lowercase().contains("pool"), "{}", ready.text);
}

#[tokio::test]
async fn v1_requires_a_valid_bearer_key() {
    let app = TestApp::new().await;
    let missing = app.get("/v1/keys", None).await;
    missing.problem(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(missing.headers[header::WWW_AUTHENTICATE], "Bearer realm=\"verge\"");

    app.get("/v1/keys", Some("verge_not-a-real-key")).await.problem(StatusCode::UNAUTHORIZED, "unauthorized");
    // Unknown paths under /v1 do not tell strangers what exists.
    app.get("/v1/no-such-thing", None).await.problem(StatusCode::UNAUTHORIZED, "unauthorized");

    let basic = Request::get("/v1/keys").header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz").body(Body::empty());
    app.send(basic.unwrap()).await.problem(StatusCode::UNAUTHORIZED, "unauthorized");

    let admin = app.admin().await;
    app.get("/v1/keys", Some(&admin)).await.ok();
    // With a key, an unknown route is a plain 404.
    app.get("/v1/no-such-thing", Some(&admin)).await.problem(StatusCode::NOT_FOUND, "route_not_found");
}

#[tokio::test]
async fn a_key_without_the_scope_is_forbidden() {
    let app = TestApp::new().await;
    let reader = app.key(&[Scope::Read]).await;
    let reply = app.get("/v1/keys", Some(&reader)).await;
    let problem = reply.problem(StatusCode::FORBIDDEN, "forbidden");
    assert!(problem["detail"].as_str().unwrap().contains("`admin`"));
    // `read` is enough for the audit log.
    app.get("/v1/audit-log", Some(&reader)).await.ok();
}

#[tokio::test]
async fn router_errors_are_problem_documents() {
    let app = TestApp::new().await;
    app.get("/nowhere", None).await.problem(StatusCode::NOT_FOUND, "route_not_found");
    let reply = app.call(Method::POST, "/healthz", None, None).await;
    reply.problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert!(reply.headers.contains_key(header::ALLOW));
}

#[tokio::test]
async fn bad_bodies_get_precise_problems_and_change_nothing() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let before = app.get("/v1/keys", Some(&admin)).await.ok()["items"].as_array().unwrap().len();

    let syntax = Request::post("/v1/keys")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"name\": "))
        .unwrap();
    app.send(syntax).await.problem(StatusCode::BAD_REQUEST, "invalid_json");

    let missing_field = app.call(Method::POST, "/v1/keys", Some(&admin), Some(json!({"name": "x"}))).await;
    let detail = missing_field.problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")["detail"].clone();
    assert!(detail.as_str().unwrap().contains("scopes"), "{detail}");

    let unknown_scope =
        app.call(Method::POST, "/v1/keys", Some(&admin), Some(json!({"name": "x", "scopes": ["root"]}))).await;
    unknown_scope.problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");

    let no_scopes = app.call(Method::POST, "/v1/keys", Some(&admin), Some(json!({"name": "x", "scopes": []}))).await;
    no_scopes.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

    let not_json = Request::post("/v1/keys")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("hello"))
        .unwrap();
    app.send(not_json).await.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    let after = app.get("/v1/keys", Some(&admin)).await.ok()["items"].as_array().unwrap().len();
    assert_eq!(before, after, "a rejected request created a key");
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413() {
    let app = TestApp::with(|c| c.body_limit_bytes = 64).await;
    let admin = app.admin().await;
    let big = json!({"name": "x".repeat(200), "scopes": ["read"]});
    let declared = app.call(Method::POST, "/v1/keys", Some(&admin), Some(big.clone())).await;
    declared.problem(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");

    // Without Content-Length the limit applies while reading.
    let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(big.to_string().into_bytes())]);
    let chunked = Request::post("/v1/keys")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap();
    app.send(chunked).await.problem(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_callers() {
    let app = TestApp::new().await;
    let generated = app.get("/healthz", None).await;
    let id = generated.headers["x-request-id"].to_str().unwrap();
    // A UUID v4: 8-4-4-4-12 lowercase hex digits, version 4, variant 1; a new one each time.
    assert_eq!(id.len(), 36, "{id}");
    for (i, c) in id.char_indices() {
        let ok = if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_digit() || ('a'..='f').contains(&c) };
        assert!(ok, "{id}");
    }
    assert_eq!(&id[14..15], "4", "{id}");
    assert!("89ab".contains(&id[19..20]), "{id}");
    let again = app.get("/healthz", None).await;
    assert_ne!(again.headers["x-request-id"].to_str().unwrap(), id);
    let given = Request::get("/nowhere").header("x-request-id", "trace-me-42").body(Body::empty()).unwrap();
    assert_eq!(app.send(given).await.headers["x-request-id"], "trace-me-42");
}

#[tokio::test]
async fn metrics_count_requests_by_route_pattern_and_status() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    app.get("/healthz", None).await.ok();
    app.get("/v1/keys/key_00000000000000000000000000", Some(&admin)).await;
    app.get("/v1/keys/key_00000000000000000000000001", Some(&admin)).await;
    let metrics = app.get("/metrics", None).await;
    assert!(metrics.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = &metrics.text;
    assert!(text.contains(r#"verge_http_requests_total{method="GET",route="/healthz",status="200"} 1"#), "{text}");
    assert!(text.contains(r#"verge_http_requests_total{method="GET",route="/v1/keys/{id}",status="404"} 2"#), "{text}");
    assert!(text.contains("verge_http_request_duration_seconds_bucket{"), "{text}");
    assert!(!text.contains("key_0000"), "raw paths must not become labels");
}

#[tokio::test]
async fn unknown_methods_share_one_metrics_label() {
    let app = TestApp::new().await;
    for method in ["BREW", "PROPFIND", "X-RANDOM-1", "X-RANDOM-2"] {
        let request = Request::builder().method(method).uri("/healthz").body(Body::empty()).unwrap();
        app.send(request).await;
    }
    let text = app.get("/metrics", None).await.text;
    assert!(text.contains(r#"method="other",route="/healthz",status="405"} 4"#), "{text}");
    for method in ["BREW", "PROPFIND", "X-RANDOM"] {
        assert!(!text.contains(method), "{method} became a label: {text}");
    }
}

#[tokio::test]
async fn metrics_can_require_a_bearer_token() {
    let app = TestApp::with(|config| config.metrics_token = Some("scrape-secret-0123456789".into())).await;
    app.get("/metrics", None).await.problem(StatusCode::UNAUTHORIZED, "unauthorized");
    app.get("/metrics", Some("scrape-secret-wrong-56789")).await.problem(StatusCode::UNAUTHORIZED, "unauthorized");
    let admin = app.admin().await;
    app.get("/metrics", Some(&admin)).await.problem(StatusCode::UNAUTHORIZED, "unauthorized");
    let scraped = app.get("/metrics", Some("scrape-secret-0123456789")).await;
    assert_eq!(scraped.status, StatusCode::OK);
    assert!(scraped.text.contains("verge_http_requests_total"), "{}", scraped.text);
}

#[tokio::test]
async fn openapi_document_is_served() {
    let app = TestApp::new().await;
    let doc = app.get("/openapi.json", None).await;
    assert_eq!(doc.ok()["openapi"], "3.1.0");
    assert!(doc.json["paths"]["/v1/keys"]["post"].is_object());
}

#[tokio::test]
async fn metrics_can_move_to_their_own_listener() {
    use tower::ServiceExt;
    let app = TestApp::with(|config| config.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    app.get("/metrics", None).await.problem(StatusCode::NOT_FOUND, "route_not_found");
    let request = Request::get("/metrics").body(Body::empty()).unwrap();
    let response = app.app.metrics.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
