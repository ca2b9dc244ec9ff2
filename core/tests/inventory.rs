//! Inventory on this run's database: stock per location with an adjustment trail, and
//! reservations that never oversell — 200 at once for the last 50 units grant exactly 50 —
//! with the documented sums holding after every step.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::{Value, json};
use verge_core::keys::Scope;

async fn setup(app: &TestApp, key: &str, skus: &[&str]) {
    let variants: Vec<Value> = skus
        .iter()
        .map(|sku| json!({"sku": sku, "title": sku, "prices": [{"currency": "EUR", "amount": 100}]}))
        .collect();
    let product = json!({"handle": "widget", "title": "Widget", "status": "published", "variants": variants});
    app.call(Method::POST, "/v1/catalog/products", Some(key), Some(product)).await.ok();
    for (handle, kind) in [("north", "warehouse"), ("south", "store")] {
        let body = json!({"handle": handle, "name": handle, "kind": kind});
        app.call(Method::POST, "/v1/inventory/locations", Some(key), Some(body)).await.ok();
    }
}

async fn adjust(app: &TestApp, key: &str, sku: &str, location: &str, delta: i64) -> common::Reply {
    let body = json!({"sku": sku, "location": location, "delta": delta, "reason": "received"});
    app.call(Method::POST, "/v1/inventory/adjustments", Some(key), Some(body)).await
}

async fn level(app: &TestApp, key: &str, sku: &str) -> Value {
    app.get(&format!("/v1/inventory/levels/{sku}"), Some(key)).await.ok().clone()
}

/// The documented sums: adjustments = on hand + committed; reserved = active lines; and
/// nothing negative.
async fn assert_sums(app: &TestApp, key: &str, sku: &str) {
    let level = level(app, key, sku).await;
    let trail = app.get(&format!("/v1/inventory/adjustments?sku={sku}&limit=200"), Some(key)).await;
    let adjusted: i64 = trail.ok()["items"].as_array().unwrap().iter().map(|a| a["delta"].as_i64().unwrap()).sum();
    let (on_hand, reserved, committed, available) = (
        level["on_hand"].as_i64().unwrap(),
        level["reserved"].as_i64().unwrap(),
        level["committed"].as_i64().unwrap(),
        level["available"].as_i64().unwrap(),
    );
    assert_eq!(adjusted, on_hand + committed, "{level}");
    assert_eq!(available, on_hand - reserved, "{level}");
    assert!(on_hand >= 0 && reserved >= 0 && committed >= 0 && available >= 0, "{level}");
    let held: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(l.quantity), 0) AS BIGINT) FROM inventory_reservation_lines l
         JOIN inventory_reservations r ON r.id = l.reservation_id WHERE r.status = 'active' AND l.sku = $1",
    )
    .bind(sku)
    .fetch_one(app.app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(held, reserved, "reserved equals what active reservations hold");
}

#[tokio::test]
async fn two_hundred_concurrent_reservations_for_fifty_units_grant_exactly_fifty() {
    let app = std::sync::Arc::new(TestApp::new().await);
    let key = app.key(&[Scope::CatalogWrite, Scope::InventoryWrite]).await;
    setup(&app, &key, &["HOT"]).await;
    adjust(&app, &key, "HOT", "north", 30).await.ok();
    adjust(&app, &key, "HOT", "south", 20).await.ok();
    let mut tasks = Vec::new();
    for n in 0..200 {
        let (app, key) = (app.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"reference": format!("cart-{n}"), "lines": [{"sku": "HOT", "quantity": 1}]});
            app.call(Method::POST, "/v1/inventory/reservations", Some(&key), Some(body)).await
        }));
    }
    let mut granted = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::CREATED => granted.push(reply.json["id"].as_str().unwrap().to_owned()),
            StatusCode::CONFLICT => {
                reply.problem(StatusCode::CONFLICT, "insufficient_stock");
                refused += 1;
            }
            other => panic!("{other}: {}", reply.text),
        }
    }
    assert_eq!((granted.len(), refused), (50, 150));
    let stock = level(&app, &key, "HOT").await;
    assert_eq!(
        (stock["on_hand"].as_i64(), stock["reserved"].as_i64(), stock["available"].as_i64()),
        (Some(50), Some(50), Some(0))
    );
    assert_sums(&app, &key, "HOT").await;

    // Commit 20 (sold), release 10: 20 back on the shelf, 20 still held.
    for id in &granted[..20] {
        let done = app.call(Method::POST, &format!("/v1/inventory/reservations/{id}/commit"), Some(&key), None).await;
        assert_eq!(done.ok()["status"], "committed");
    }
    for id in &granted[20..30] {
        app.call(Method::POST, &format!("/v1/inventory/reservations/{id}/release"), Some(&key), None).await.ok();
    }
    let stock = level(&app, &key, "HOT").await;
    assert_eq!(
        (
            stock["on_hand"].as_i64(),
            stock["reserved"].as_i64(),
            stock["committed"].as_i64(),
            stock["available"].as_i64()
        ),
        (Some(30), Some(20), Some(20), Some(10))
    );
    assert_sums(&app, &key, "HOT").await;
    // A reservation moves on once: committing a released one, or twice, is a conflict.
    app.call(Method::POST, &format!("/v1/inventory/reservations/{}/commit", granted[25]), Some(&key), None)
        .await
        .problem(StatusCode::CONFLICT, "reservation_not_active");
    app.call(Method::POST, &format!("/v1/inventory/reservations/{}/release", granted[0]), Some(&key), None)
        .await
        .problem(StatusCode::CONFLICT, "reservation_not_active");
    assert_sums(&app, &key, "HOT").await;
}

#[tokio::test]
async fn bad_reservations_and_adjustments_change_nothing() {
    let app = TestApp::new().await;
    let key = app.key(&[Scope::CatalogWrite, Scope::InventoryWrite]).await;
    setup(&app, &key, &["A", "B"]).await;
    adjust(&app, &key, "A", "north", 5).await.ok();
    adjust(&app, &key, "B", "north", 1).await.ok();
    let before = (level(&app, &key, "A").await, level(&app, &key, "B").await);

    // Two lines, the second short: neither is reserved.
    let body = json!({"reference": "cart", "lines": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 2}]});
    let reply = app.call(Method::POST, "/v1/inventory/reservations", Some(&key), Some(body)).await;
    let detail = reply.problem(StatusCode::CONFLICT, "insufficient_stock")["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("2 of `B`") && detail.contains("1 available"), "{detail}");
    let body = json!({"reference": "", "expires_in": 0, "lines": [{"sku": "NOPE", "quantity": 0}, {"sku": "A", "quantity": 1, "location": "east"}]});
    let reply = app.call(Method::POST, "/v1/inventory/reservations", Some(&key), Some(body)).await;
    assert_eq!(
        reply.validation_fields(),
        ["/reference", "/expires_in", "/lines/0/quantity", "/lines/0/sku", "/lines/1/location"]
    );
    // Taking more than is on hand, or below what is reserved.
    let body = json!({"reference": "cart", "lines": [{"sku": "A", "quantity": 4, "location": "north"}]});
    app.call(Method::POST, "/v1/inventory/reservations", Some(&key), Some(body)).await.ok();
    adjust(&app, &key, "A", "north", -2).await.problem(StatusCode::CONFLICT, "insufficient_stock");
    let reply = adjust(&app, &key, "A", "north", 0).await;
    assert_eq!(reply.validation_fields(), ["/delta"]);
    assert_eq!(adjust(&app, &key, "ZZZ", "nowhere", 1).await.validation_fields(), ["/sku", "/location"]);
    let after_a = level(&app, &key, "A").await;
    assert_eq!((after_a["on_hand"].as_i64(), after_a["reserved"].as_i64()), (Some(5), Some(4)));
    assert_eq!(level(&app, &key, "B").await, before.1);
    assert_eq!(before.0["on_hand"], 5);
    assert_sums(&app, &key, "A").await;
    app.get("/v1/inventory/levels/NOPE", Some(&key)).await.problem(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_reservation_splits_across_locations_most_available_first() {
    let app = TestApp::new().await;
    let key = app.key(&[Scope::CatalogWrite, Scope::InventoryWrite]).await;
    setup(&app, &key, &["S"]).await;
    adjust(&app, &key, "S", "north", 3).await.ok();
    adjust(&app, &key, "S", "south", 5).await.ok();
    let body = json!({"reference": "order-1", "lines": [{"sku": "S", "quantity": 7}]});
    let reservation = app.call(Method::POST, "/v1/inventory/reservations", Some(&key), Some(body)).await;
    assert_eq!(
        reservation.ok()["lines"],
        json!([{"sku": "S", "location": "north", "quantity": 2}, {"sku": "S", "location": "south", "quantity": 5}])
    );
    assert_eq!(reservation.json["status"], "active");
    let id = reservation.json["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/v1/inventory/reservations/{id}"), Some(&key)).await.ok()["reference"], "order-1");
    assert_sums(&app, &key, "S").await;
}
