//! Event ingest from edges: authenticated with an ingest key, bounded, validated as a
//! whole, durable on acknowledgement, and idempotent by event id.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::{Value, json};
use sqlx::Row;
use verge_core::keys::Scope;

fn event(kind: &str) -> Value {
    json!({
        "id": verge_core::ids::new_id("evt"),
        "kind": kind,
        "at": "2026-11-20T10:00:00Z",
        "data": {
            "link": "lnk_x", "domain": "localhost", "country": "DE", "device": "desktop",
            "browser": "Chrome", "os": "Windows", "visitor": "0011", "bot": false,
        },
    })
}

async fn stored(app: &TestApp) -> i64 {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM events").fetch_one(app.app.state.db.pool()).await.unwrap();
    row.get("n")
}

#[tokio::test]
async fn a_retried_batch_counts_once() {
    let app = TestApp::new().await;
    let ingest = app.key(&[Scope::IngestEvents]).await;
    let batch = json!({"events": [event("link.click"), event("link.click"), event("edge.not_found")]});
    let first = app.call(Method::POST, "/v1/events", Some(&ingest), Some(batch.clone())).await;
    assert_eq!(first.ok(), &json!({"accepted": 3, "duplicates": 0}));
    let retry = app.call(Method::POST, "/v1/events", Some(&ingest), Some(batch)).await;
    assert_eq!(retry.ok(), &json!({"accepted": 0, "duplicates": 3}));
    assert_eq!(stored(&app).await, 3);

    // A batch mixing new and already-seen events stores only the new ones.
    let mixed_old = event("link.click");
    app.call(Method::POST, "/v1/events", Some(&ingest), Some(json!({"events": [mixed_old.clone()]}))).await.ok();
    let mixed = app
        .call(Method::POST, "/v1/events", Some(&ingest), Some(json!({"events": [mixed_old, event("link.click")]})))
        .await;
    assert_eq!(mixed.ok(), &json!({"accepted": 1, "duplicates": 1}));
    assert_eq!(stored(&app).await, 5);
}

#[tokio::test]
async fn events_are_stored_with_their_fields_and_source() {
    let app = TestApp::new().await;
    let ingest = app.key(&[Scope::IngestEvents]).await;
    let one = event("link.click");
    app.call(Method::POST, "/v1/events", Some(&ingest), Some(json!({"events": [one.clone()]}))).await.ok();
    let row = sqlx::query("SELECT * FROM events WHERE id = $1")
        .bind(one["id"].as_str().unwrap())
        .fetch_one(app.app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("kind"), "link.click");
    let at: jiff::Timestamp = "2026-11-20T10:00:00Z".parse().unwrap();
    assert_eq!(row.get::<i64, _>("at"), at.as_millisecond());
    assert!(row.get::<String, _>("source").starts_with("key_"));
    let data: Value = serde_json::from_str(&row.get::<String, _>("data")).unwrap();
    assert_eq!(data, one["data"]);
}

#[tokio::test]
async fn a_bad_batch_is_refused_whole_with_every_problem_located() {
    let app = TestApp::new().await;
    let ingest = app.key(&[Scope::IngestEvents]).await;
    let good = event("link.click");
    let bad_id =
        json!({"id": "lnk_00000000000000000000000000", "kind": "edge.not_found", "at": "2026-11-20T10:00:00Z"});
    let bad_kind = json!({"id": verge_core::ids::new_id("evt"), "kind": "Link Click!", "at": "2026-11-20T10:00:00Z"});
    let reply = app
        .call(
            Method::POST,
            "/v1/events",
            Some(&ingest),
            Some(json!({"events": [good.clone(), bad_id, bad_kind, good]})),
        )
        .await;
    let problem = reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["/events/1/id", "/events/2/kind", "/events/3/id"]);

    // A click must carry what analytics group by.
    let mut thin = event("link.click");
    thin["data"] = json!({"link": "lnk_x"});
    let reply = app.call(Method::POST, "/v1/events", Some(&ingest), Some(json!({"events": [thin]}))).await;
    let problem = reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(problem["errors"][0]["field"], "/events/0/data/domain", "{problem}");
    assert_eq!(stored(&app).await, 0, "nothing of a refused batch is stored");

    let empty = app.call(Method::POST, "/v1/events", Some(&ingest), Some(json!({"events": []}))).await;
    empty.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let too_many: Vec<Value> = (0..1001).map(|_| event("link.click")).collect();
    let big = app.call(Method::POST, "/v1/events", Some(&ingest), Some(json!({"events": too_many}))).await;
    big.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(stored(&app).await, 0);
}

#[tokio::test]
async fn a_full_batch_of_1000_is_accepted() {
    let app = TestApp::new().await;
    let ingest = app.key(&[Scope::IngestEvents]).await;
    let events: Vec<Value> = (0..1000).map(|_| event("link.click")).collect();
    let reply = app.call(Method::POST, "/v1/events", Some(&ingest), Some(json!({"events": events}))).await;
    assert_eq!(reply.ok(), &json!({"accepted": 1000, "duplicates": 0}));
    assert_eq!(stored(&app).await, 1000);
}

#[tokio::test]
async fn ingest_keys_can_do_nothing_else() {
    let app = TestApp::new().await;
    let ingest = app.key(&[Scope::IngestEvents]).await;
    app.get("/v1/audit-log", Some(&ingest)).await.problem(StatusCode::FORBIDDEN, "forbidden");
    app.get("/v1/keys", Some(&ingest)).await.problem(StatusCode::FORBIDDEN, "forbidden");
    let reader = app.key(&[Scope::Read]).await;
    let refused = app.call(Method::POST, "/v1/events", Some(&reader), Some(json!({"events": [event("x")]}))).await;
    refused.problem(StatusCode::FORBIDDEN, "forbidden");
}
