//! Webhooks against a real receiver: a Python server that verifies every delivery with the
//! Standard Webhooks reference library (`standardwebhooks` from PyPI; scripts/test installs
//! it and names its python in `VERGE_WEBHOOKS_PYTHON`). Order events arrive signed, a
//! failing endpoint is retried until it answers, the delivery log shows every attempt, a
//! subscription filters types, and a redelivery sends the same `webhook-id` again.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::TestApp;
use serde_json::{Value, json};
use verge_core::jobs::Worker;

struct Receiver {
    child: Child,
    port: u16,
    seen: mpsc::Receiver<Value>,
    secret_file: tempfile::NamedTempFile,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(fail_first: u32) -> Receiver {
        let python = std::env::var("VERGE_WEBHOOKS_PYTHON").expect(
            "VERGE_WEBHOOKS_PYTHON must name a python with standardwebhooks (scripts/test installs it and sets it)",
        );
        let script = common::process::workspace_root().join("core/tests/webhooks/receiver.py");
        let secret_file = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(python)
            .arg(script)
            .arg(secret_file.path())
            .arg(fail_first.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the receiver starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines.next().expect("the receiver prints its port").unwrap().trim().parse().unwrap();
        let (tx, seen) = mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                    break;
                }
            }
        });
        Receiver { child, port, seen, secret_file }
    }

    /// Which secret verifies deliveries to each path.
    fn set_secrets(&self, secrets: &Value) {
        std::fs::write(self.secret_file.path(), secrets.to_string()).unwrap();
    }

    /// The next `n` requests the receiver logged.
    fn next(&self, n: usize) -> Vec<Value> {
        (0..n).map(|_| self.seen.recv_timeout(Duration::from_secs(15)).expect("a delivery arrives")).collect()
    }
}

#[tokio::test]
async fn order_events_arrive_signed_retried_until_accepted_logged_and_redeliverable() {
    let app = TestApp::with(|config| config.webhook_retry_backoff_ms = 50).await;
    let key = app.admin().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(Worker::new(app.app.state.clone(), verge_core::server::job_registry()).run(async move {
        let _ = stopped.await;
    }));
    let receiver = Receiver::start(2);
    let receiver_port = receiver.port;
    let url = format!("http://127.0.0.1:{}/hooks", receiver.port);
    let created = app
        .call(Method::POST, "/v1/webhooks/endpoints", Some(&key), Some(json!({"url": url, "description": "shop"})))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let secret = created.json["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    let endpoint = created.json["id"].as_str().unwrap().to_owned();
    assert!(app.get(&format!("/v1/webhooks/endpoints/{endpoint}"), Some(&key)).await.ok().get("secret").is_none());
    let confirmed_url = format!("http://127.0.0.1:{}/confirmed", receiver.port);
    let only_confirmed = json!({"url": confirmed_url, "event_types": ["order.confirmed"]});
    let filtered = app.call(Method::POST, "/v1/webhooks/endpoints", Some(&key), Some(only_confirmed)).await;
    let filtered_id = filtered.json["id"].as_str().unwrap().to_owned();
    receiver.set_secrets(&json!({"/hooks": secret, "/confirmed": filtered.json["secret"]}));
    let bad = json!({"url": "ftp://example.com", "event_types": ["order.shipped"]});
    let refused = app.call(Method::POST, "/v1/webhooks/endpoints", Some(&key), Some(bad)).await;
    let mut fields = refused.validation_fields();
    fields.sort();
    assert_eq!(fields, ["/event_types/0", "/url"]);

    // An order: its events go out; the receiver verifies each with the reference library.
    let product = json!({"handle": "mug", "title": "Mug", "status": "published",
        "variants": [{"sku": "MUG-1", "title": "Mug", "prices": [{"currency": "EUR", "amount": 900}]}]});
    app.call(Method::POST, "/v1/catalog/products", Some(&key), Some(product)).await.ok();
    app.call(
        Method::POST,
        "/v1/inventory/locations",
        Some(&key),
        Some(json!({"handle": "main", "name": "Main", "kind": "warehouse"})),
    )
    .await
    .ok();
    let stock = json!({"sku": "MUG-1", "location": "main", "delta": 5, "reason": "received"});
    app.call(Method::POST, "/v1/inventory/adjustments", Some(&key), Some(stock)).await.ok();
    let order = json!({"currency": "EUR", "email": "ada@example.com", "lines": [{"sku": "MUG-1", "quantity": 1}],
        "shipping_address": {"name": "Ada", "line1": "1 Road", "city": "Town", "postal_code": "1", "country": "GB"},
        "payment": {"method": "4242424242424242"}});
    let request = Request::post("/v1/orders")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", "hook-1")
        .body(Body::from(order.to_string()))
        .unwrap();
    let placed = app.send(request).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text);

    // 4 events to the first endpoint and 1 to the filtered one, the first two attempts
    // refused with 503 and retried: 7 requests, every one verified.
    let seen = tokio::task::spawn_blocking(move || (receiver.next(7), receiver)).await.unwrap();
    let (requests, receiver) = seen;
    assert!(requests.iter().all(|r| r["verified"] == true), "{requests:?}");
    let accepted: Vec<&Value> = requests.iter().filter(|r| r["status"] == 204).collect();
    let mut types: Vec<&str> = accepted.iter().map(|r| r["type"].as_str().unwrap()).collect();
    types.sort();
    assert_eq!(types, ["order.confirmed", "order.confirmed", "order.created", "payment.authorized", "stock.reserved"]);

    // The logs show each message delivered, and every attempt, refused ones with their status.
    let messages = |id: String| {
        let app = &app;
        let key = &key;
        async move {
            app.get(&format!("/v1/webhooks/endpoints/{id}/messages"), Some(key)).await.ok()["items"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let (mut log, mut filtered_log) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        (log, filtered_log) = (messages(endpoint.clone()).await, messages(filtered_id.clone()).await);
        if log.len() == 4
            && filtered_log.len() == 1
            && log.iter().chain(&filtered_log).all(|m| m["status"] == "delivered")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(log.iter().chain(&filtered_log).all(|m| m["status"] == "delivered"), "{log:?} {filtered_log:?}");
    assert_eq!(filtered_log[0]["event_type"], "order.confirmed");
    let attempts: Vec<Value> =
        log.iter().chain(&filtered_log).flat_map(|m| m["attempts"].as_array().unwrap().clone()).collect();
    assert_eq!(attempts.len(), 7, "two refused attempts and five deliveries");
    let codes: Vec<i64> = attempts.iter().map(|a| a["response_code"].as_i64().unwrap()).collect();
    assert_eq!(codes.iter().filter(|c| **c == 503).count(), 2, "{codes:?}");

    // Redelivery sends the same message id again.
    let first = &log[0];
    let redeliver = format!("/v1/webhooks/messages/{}/redeliver", first["id"].as_str().unwrap());
    assert_eq!(app.call(Method::POST, &redeliver, Some(&key), None).await.status, StatusCode::ACCEPTED);
    let (again, _receiver) = tokio::task::spawn_blocking(move || (receiver.next(1), receiver)).await.unwrap();
    assert_eq!(again[0]["id"], first["event_id"]);
    assert_eq!(again[0]["verified"], true);
    // The receiver does verify: a forged signature is refused.
    let base = format!("http://127.0.0.1:{}", receiver_port);
    let now = (verge_core::time::now_millis().0 / 1000).to_string();
    let forged = [
        ("webhook-id", "msg_forged"),
        ("webhook-timestamp", now.as_str()),
        ("webhook-signature", "v1,AAAA"),
        ("content-type", "application/json"),
    ];
    assert_eq!(common::process::http(&base, "POST", "/hooks", &forged, "{}").status, 400);
    let missing = app.call(Method::POST, "/v1/webhooks/messages/msg_missing/redeliver", Some(&key), None).await;
    missing.problem(StatusCode::NOT_FOUND, "not_found");
    let _ = stop.send(());
}
