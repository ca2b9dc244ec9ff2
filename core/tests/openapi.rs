//! The OpenAPI document and the router agree: every documented `/v1` operation is routed,
//! needs a key, and enforces exactly the scopes its `security` requirement lists; and no
//! route is added outside the documented router.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::{Value, json};
use verge_core::keys::Scope;

fn operations(doc: &Value) -> Vec<(String, Method, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("an HTTP method");
            ops.push((path.clone(), method, op.clone()));
        }
    }
    ops
}

fn concrete(path: &str) -> String {
    // Fill every `{param}` with a well-formed but absent id.
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        out.push_str("x_00000000000000000000000000");
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_schemas_for_every_operation() {
    let app = TestApp::new().await;
    let doc = app.get("/openapi.json", None).await.json;
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = operations(&doc);
    assert!(ops.iter().any(|(p, _, _)| p.starts_with("/v1/")), "no /v1 routes documented");
    for (path, method, op) in &ops {
        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}: no responses"));
        let with_schema = responses
            .values()
            .filter(|r| r["content"].as_object().is_some_and(|c| c.values().any(|m| m["schema"].is_object())))
            .count();
        assert!(with_schema > 0, "{method} {path}: no response schema");
        // Errors are documented as what the server sends: problem documents.
        for (status, response) in responses.iter().filter(|(s, _)| s.starts_with('4') || s.starts_with('5')) {
            let content =
                response["content"].as_object().unwrap_or_else(|| panic!("{method} {path} {status}: no body"));
            let media: Vec<&String> = content.keys().collect();
            assert_eq!(media, ["application/problem+json"], "{method} {path} {status}");
            assert_eq!(content["application/problem+json"]["schema"]["$ref"], "#/components/schemas/Problem");
        }
        if path.starts_with("/v1/") {
            for status in ["400", "401", "403"] {
                assert!(responses.contains_key(status), "{method} {path}: {status} undocumented");
            }
        }
        // Replacements and changes take a body; a POST may be a bodiless action (a kill
        // switch). Whatever takes a body documents its schema: JSON, or a format of its own
        // (envoy's YAML).
        let has_body = op.get("requestBody").is_some();
        assert!(has_body || !(*method == Method::PUT || *method == Method::PATCH), "{method} {path}: no request body");
        if has_body {
            let content = op["requestBody"]["content"].as_object();
            assert!(
                content.is_some_and(|c| c.values().all(|m| m["schema"].is_object()) && !c.is_empty()),
                "{method} {path}: no request schema"
            );
        }
    }
}

#[tokio::test]
async fn every_v1_operation_needs_a_key_and_exactly_its_documented_scopes() {
    let app = TestApp::new().await;
    let doc = app.get("/openapi.json", None).await.json;
    assert!(doc["components"]["securitySchemes"]["admin_key"]["scheme"] == "bearer");
    for (path, method, op) in operations(&doc).into_iter().filter(|(p, _, _)| p.starts_with("/v1")) {
        let uri = concrete(&path);
        let body = matches!(method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
        let what = format!("{method} {path}");

        let anonymous = app.call(method.clone(), &uri, None, body.clone()).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{what} without a key");

        let granted: Vec<Scope> = op["security"][0]["admin_key"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no admin_key security requirement"))
            .iter()
            .map(|s| serde_json::from_value(s.clone()).unwrap_or_else(|_| panic!("{what}: unknown scope {s}")))
            .collect();
        assert!(granted.contains(&Scope::Admin), "{what}: admin must always be enough");
        for scope in Scope::ALL {
            let key = app.key(&[*scope]).await;
            let reply = app.call(method.clone(), &uri, Some(&key), body.clone()).await;
            if granted.contains(scope) {
                assert!(
                    reply.status != StatusCode::UNAUTHORIZED && reply.status != StatusCode::FORBIDDEN,
                    "{what} with `{scope}`: {} {}",
                    reply.status,
                    reply.text
                );
                // Routed: the router's own 404/405 would mean the document lies.
                assert!(
                    reply.json["code"] != "route_not_found" && reply.json["code"] != "method_not_allowed",
                    "{what} is documented but not routed"
                );
            } else {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{what} with `{scope}`: {}", reply.text);
            }
        }
    }
}

/// Routes added with `.route(…)` bypass the document; only the few undocumented
/// infrastructure routes in `server.rs` and the console's HTML pages (all under
/// `/console`, none of them API) may use it.
#[test]
fn no_route_is_added_outside_the_documented_router() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("server.rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                if path.parent().is_some_and(|p| p.ends_with("console")) {
                    let stray: Vec<&str> =
                        text.lines().filter(|l| l.contains(".route(") && !l.contains(".route(\"/console")).collect();
                    assert!(stray.is_empty(), "console routes outside /console: {stray:?}");
                    assert!(!text.contains(".nest("), "the console nests no routers");
                    continue;
                }
                if text.contains(".route(") || text.contains(".nest(") {
                    offenders.push(path.display().to_string());
                }
            }
        }
    }
    assert!(offenders.is_empty(), "routes added outside OpenApiRouter::routes in {offenders:?}");
    let server =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server.rs")).unwrap();
    let server = server.split("#[cfg(test)]").next().unwrap();
    let routes: Vec<&str> = server.lines().filter(|l| l.contains(".route(\"")).collect();
    assert!(
        routes.iter().all(|l| l.contains("\"/metrics\"") || l.contains("\"/openapi.json\"")),
        "undocumented routes in server.rs: {routes:?}"
    );
}
