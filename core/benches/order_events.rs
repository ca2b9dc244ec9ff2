//! Latency from an order's state change to its server-sent event: with a stream open on
//! `GET /v1/orders/{id}/events` (through the router, no sockets), an operator fulfils the
//! order, and the clock runs from the fulfil request's start, and from its answer (the
//! change committed), to the `order.fulfilled` event's arrival. `ORDERS` (200) rounds;
//! p50/p99 of each.
//!
//! `cargo bench -p verge-core --bench order_events` on SQLite; with `DATABASE_URL` set, on
//! that PostgreSQL. `scripts/bench-orders` runs it.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use verge_core::jobs::Worker;
use verge_core::keys::{self, NewKey, Scope};
use verge_core::{App, Config};

async fn call(
    app: &App,
    key: &str,
    method: &str,
    uri: &str,
    body: Value,
    extra: Option<(&str, String)>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some((name, value)) = extra {
        request = request.header(name, value);
    }
    let response = app.router.clone().oneshot(request.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
#[allow(clippy::print_stdout)] // the figures are the output
async fn main() {
    let rounds: usize = std::env::var("ORDERS").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
    config.database_url = std::env::var("DATABASE_URL").ok().map(Into::into);
    let backend = if config.database_url.is_some() { "PostgreSQL" } else { "SQLite" };
    let app = App::build(config).await.unwrap();
    let new = NewKey { name: "bench".into(), scopes: vec![Scope::Admin], expires_at: None };
    let key = keys::create(&app.state.db, new, &verge_core::audit::Actor::System).await.unwrap().token;
    tokio::spawn(Worker::new(app.state.clone(), verge_core::server::job_registry()).run(std::future::pending()));
    let sku = format!("SSE-{}", std::process::id());
    let product = json!({"handle": sku.to_lowercase(), "title": "Bench", "status": "published",
        "variants": [{"sku": sku, "title": "Bench", "prices": [{"currency": "EUR", "amount": 500}]}]});
    call(&app, &key, "POST", "/v1/catalog/products", product, None).await;
    let location = format!("l{}", std::process::id());
    call(
        &app,
        &key,
        "POST",
        "/v1/inventory/locations",
        json!({"handle": location, "name": "L", "kind": "warehouse"}),
        None,
    )
    .await;
    let stock = json!({"sku": sku, "location": location, "delta": 1_000_000, "reason": "received"});
    call(&app, &key, "POST", "/v1/inventory/adjustments", stock, None).await;

    let (mut from_request, mut from_commit) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = json!({"currency": "EUR", "email": "b@example.com", "lines": [{"sku": sku, "quantity": 1}],
            "shipping_address": {"name": "B", "line1": "1", "city": "C", "postal_code": "1", "country": "FR"},
            "payment": {"method": "4242424242424242"}});
        let (status, placed) = call(
            &app,
            &key,
            "POST",
            "/v1/orders",
            order,
            Some(("idempotency-key", format!("sse-{round}-{}", std::process::id()))),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{placed}");
        let id = placed["id"].as_str().unwrap().to_owned();
        loop {
            let (_, order) = call(&app, &key, "GET", &format!("/v1/orders/{id}"), Value::Null, None).await;
            if order["status"] == "confirmed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Open the stream after the four entries so far; only what follows is read.
        let request = Request::get(format!("/v1/orders/{id}/events"))
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .header("last-event-id", "4")
            .body(Body::empty())
            .unwrap();
        let mut body = app.router.clone().oneshot(request).await.unwrap().into_body();
        let fulfil = {
            let (app, key, id) = (app.router.clone(), key.clone(), id.clone());
            async move {
                let started = Instant::now();
                let request = Request::post(format!("/v1/orders/{id}/fulfil"))
                    .header(header::AUTHORIZATION, format!("Bearer {key}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(r#"{"tracking": "T"}"#))
                    .unwrap();
                let response = app.oneshot(request).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                (started, Instant::now())
            }
        };
        let fulfilled = tokio::spawn(fulfil);
        let mut text = String::new();
        while !text.contains("event: order.fulfilled") {
            let frame = body.frame().await.unwrap().unwrap();
            if let Ok(data) = frame.into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
        let arrived = Instant::now();
        let (started, committed) = fulfilled.await.unwrap();
        from_request.push(arrived - started);
        from_commit.push(arrived.saturating_duration_since(committed));
    }
    from_request.sort();
    from_commit.sort();
    println!(
        "order event latency on {backend}, {rounds} changes: from the fulfil request p50 {:?} p99 {:?}; from its answer (committed) p50 {:?} p99 {:?}",
        percentile(&from_request, 0.5),
        percentile(&from_request, 0.99),
        percentile(&from_commit, 0.5),
        percentile(&from_commit, 0.99),
    );
}
