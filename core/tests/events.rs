//! Event ingest from edges: authenticated with an ingest key, bounded, validated as a
//! whole, durable on acknowledgement, and idempotent by event id.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::{Value, json};
use sqlx::Row;
use verge_core::keys::Scope;

/// An hour ago, as events carry it: `at` must be recent.
fn an_hour_ago() -> String {
    verge_core::time::Millis(verge_core::time::now_millis().0 - 3_600_000).to_string()
}

fn event(kind: &str) -> Value {
    json!({
        "id": verge_core::ids::new_id("evt"),
        "kind": kind,
        "at": an_hour_ago(),
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
    let at: jiff::Timestamp = one["at"].as_str().unwrap().parse().unwrap();
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
    let bad_id = json!({"id": "lnk_00000000000000000000000000", "kind": "edge.not_found", "at": an_hour_ago()});
    let bad_kind = json!({"id": verge_core::ids::new_id("evt"), "kind": "Link Click!", "at": an_hour_ago()});
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

#[tokio::test]
async fn event_times_must_be_recent_so_a_key_cannot_backdate_or_postdate() {
    let app = TestApp::new().await;
    let ingest = app.key(&[Scope::IngestEvents]).await;
    let at = |offset_millis: i64| verge_core::time::Millis(verge_core::time::now_millis().0 + offset_millis);
    let mut stale = event("edge.not_found");
    stale["at"] = json!(at(-8 * 24 * 3_600_000).to_string());
    let mut future = event("edge.not_found");
    future["at"] = json!(at(3_600_000).to_string());
    let mut far_future = event("edge.not_found");
    far_future["at"] = json!("2999-01-01T00:00:00Z");
    let mut skewed = event("edge.not_found");
    skewed["at"] = json!(at(60_000).to_string());
    let batch = json!({"events": [stale, future, far_future, skewed]});
    let reply = app.call(Method::POST, "/v1/events", Some(&ingest), Some(batch)).await;
    assert_eq!(reply.validation_fields(), ["/events/0/at", "/events/1/at", "/events/2/at"]);
    assert_eq!(stored(&app).await, 0, "nothing of the batch is stored");
}

#[tokio::test]
async fn each_key_has_an_events_per_minute_quota() {
    let app = TestApp::with(|config| config.ingest_events_per_minute = 1500).await;
    let (one, other) = (app.key(&[Scope::IngestEvents]).await, app.key(&[Scope::IngestEvents]).await);
    let batch = |n: usize| json!({"events": (0..n).map(|_| event("edge.not_found")).collect::<Vec<_>>()});
    assert_eq!(app.call(Method::POST, "/v1/events", Some(&one), Some(batch(1000))).await.ok()["accepted"], 1000);
    let over = app.call(Method::POST, "/v1/events", Some(&one), Some(batch(600))).await;
    over.problem(StatusCode::TOO_MANY_REQUESTS, "ingest_quota_exceeded");
    let wait: u64 = over.headers["retry-after"].to_str().unwrap().parse().unwrap();
    // 100 events over a bucket refilling at 25 a second: about 4 s.
    assert!((1..=5).contains(&wait), "{wait}");
    assert_eq!(stored(&app).await, 1000, "the refused batch stored nothing");
    assert_eq!(app.call(Method::POST, "/v1/events", Some(&one), Some(batch(500))).await.ok()["accepted"], 500);
    assert_eq!(app.call(Method::POST, "/v1/events", Some(&other), Some(batch(1000))).await.ok()["accepted"], 1000);
}
