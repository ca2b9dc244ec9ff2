//! Checkouts survive the core being killed at any moment. 1,000 checkouts from 40 clients,
//! each retrying with its idempotency key whenever it gets no answer, a 409 or a 5xx, then
//! every paid order fulfilled (which captures its payment), while `verge serve` is killed
//! with SIGKILL at random moments and restarted on the same data. Afterwards: every
//! acknowledged order exists exactly once and is the one its key replays; every
//! authorisation belongs to exactly one order, for its total; every shipped order was
//! captured once, for its total; no saga step took effect twice; the stock sums hold; and
//! every saga finished (nothing left pending, no job dead). Runs on this run's database
//! (PostgreSQL in the services pass).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{free_port, verge};
use serde_json::{Value, json};

const ADMIN: &str = "crash-test-admin-key-0123456789abcdef";
const ORDERS: usize = 1_000;
const CLIENTS: usize = 40;
const SKUS: [&str; 3] = ["CRASH-A", "CRASH-B", "CRASH-C"];
const STOCK: i64 = 5_000;
const DECLINED_CARD: &str = "4000000000000002";

/// One request with its own timeouts; `None` when the core did not answer (killed, or
/// restarting), which a client answers by retrying.
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Option<(u16, String)> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer {ADMIN}\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(head.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let status = head.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Some((status, if chunked { common::process::dechunk(rest) } else { rest.to_owned() }))
}

fn start(config: &verge_core::Config, work: &std::path::Path, port: u16) -> Child {
    let child = verge(config, work)
        .arg("serve")
        .env("VERGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("VERGE_ADMIN_KEY", ADMIN)
        .env("VERGE_JOB_POLL_INTERVAL_MS", "100")
        .env("VERGE_DATABASE_MAX_CONNECTIONS", "20")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("verge serve starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while request(port, "GET", "/healthz", &[], "").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "the core did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn admin(port: u16, method: &str, path: &str, body: Value) -> Value {
    let (status, text) =
        request(port, method, path, &[("content-type", "application/json")], &body.to_string()).unwrap();
    assert!((200..300).contains(&status), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A random-ish number from the process's randomness, without a crate for it.
fn random(below: u64) -> u64 {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    u64::from_le_bytes(bytes[..8].try_into().unwrap()) % below
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_core_at_random_moments_loses_and_doubles_nothing() {
    let (config, dir) = common::fresh_config().await;
    let work = dir.path().to_owned();
    let port = free_port();
    let core = Arc::new(Mutex::new(start(&config, &work, port)));
    let prices: Vec<Value> = SKUS
        .iter()
        .map(|sku| json!({"sku": sku, "title": sku, "prices": [{"currency": "EUR", "amount": 1000}]}))
        .collect();
    admin(
        port,
        "POST",
        "/v1/catalog/products",
        json!({"handle": "crash", "title": "Crash", "status": "published", "variants": prices}),
    );
    admin(port, "POST", "/v1/inventory/locations", json!({"handle": "main", "name": "Main", "kind": "warehouse"}));
    for sku in SKUS {
        admin(
            port,
            "POST",
            "/v1/inventory/adjustments",
            json!({"sku": sku, "location": "main", "delta": STOCK, "reason": "received"}),
        );
    }

    // Clients: each order is sent until acknowledged, with the same key and body.
    let next = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(Mutex::new(BTreeMap::<String, (String, bool)>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let retries = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (next, acknowledged, retries) = (next.clone(), acknowledged.clone(), retries.clone());
        clients.push(std::thread::spawn(move || {
            while next.fetch_add(1, Ordering::SeqCst) < ORDERS {
                let key = uuid::Uuid::new_v4().to_string();
                let declined = random(10) == 0;
                let lines: Vec<Value> =
                    (0..=random(2)).map(|i| json!({"sku": SKUS[i as usize], "quantity": 1 + random(3)})).collect();
                let body = json!({"currency": "EUR", "email": "crash@example.com", "lines": lines,
                    "shipping_address": {"name": "C", "line1": "1", "city": "C", "postal_code": "1", "country": "FR"},
                    "payment": {"method": if declined { DECLINED_CARD } else { "4242424242424242" }}})
                .to_string();
                let headers = [("content-type", "application/json"), ("idempotency-key", key.as_str())];
                loop {
                    match request(port, "POST", "/v1/orders", &headers, &body) {
                        Some((201, reply)) => {
                            let order: Value = serde_json::from_str(&reply).expect("an acknowledged order is JSON");
                            let id = order["id"].as_str().unwrap().to_owned();
                            acknowledged.lock().unwrap().insert(key, (id, declined));
                            break;
                        }
                        None | Some((409 | 500..=599, _)) => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(50 + random(100)));
                        }
                        Some((status, reply)) => panic!("unexpected {status}: {reply}"),
                    }
                }
            }
        }));
    }
    // The killer: SIGKILL at a random moment, restart on the same data, again and again.
    let killer = {
        let (core, done, config, work) = (core.clone(), done.clone(), config.clone(), work.clone());
        std::thread::spawn(move || {
            let mut kills = 0;
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(150 + random(600)));
                let mut child = core.lock().unwrap();
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                *child = start(&config, &work, port);
            }
            kills
        })
    };
    for client in clients {
        client.join().expect("a client failed");
    }
    // Then every order that was paid for ships, through more kills: fulfilling captures the
    // payment, so no capture may be lost or doubled either. A fulfil whose answer was lost
    // is retried; its 409 (already fulfilled) is then the answer. A pending order is tried
    // again later, until its saga (perhaps waiting on a dead core's lease) confirms it.
    let to_ship: Vec<String> =
        acknowledged.lock().unwrap().values().filter(|(_, declined)| !declined).map(|(id, _)| id.clone()).collect();
    let to_ship = Arc::new(Mutex::new(to_ship));
    let mut shippers = Vec::new();
    for _ in 0..CLIENTS / 2 {
        let to_ship = to_ship.clone();
        shippers.push(std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                let Some(id) = to_ship.lock().unwrap().pop() else { return };
                let path = format!("/v1/orders/{id}/fulfil");
                let answer =
                    request(port, "POST", &path, &[("content-type", "application/json")], r#"{"tracking": "CRASH-1"}"#);
                match answer {
                    Some((200, _)) => {}
                    Some((409, reply)) if reply.contains("is fulfilled") => {}
                    None | Some((409 | 500..=599, _)) => {
                        assert!(Instant::now() < deadline, "order {id} never became fulfilable");
                        to_ship.lock().unwrap().insert(0, id);
                        std::thread::sleep(Duration::from_millis(50 + random(100)));
                    }
                    Some((status, reply)) => panic!("fulfilling {id}: {status} {reply}"),
                }
            }
        }));
    }
    for shipper in shippers {
        shipper.join().expect("a shipper failed");
    }
    done.store(true, Ordering::SeqCst);
    let kills = killer.join().unwrap();
    assert!(kills >= 5, "the core was killed {kills} times; the test needs several");

    // Let the sagas finish on the last core.
    let db = common::process::core_database(&config, &work).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = 'pending'")
            .fetch_one(db.pool())
            .await
            .unwrap();
        let busy: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running') AND kind LIKE 'order.%'",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        if pending == 0 && busy == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{pending} orders still pending, {busy} saga jobs waiting");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let retried = retries.load(Ordering::Relaxed);
    #[allow(clippy::print_stderr)] // what the run did, for the log
    {
        eprintln!("{ORDERS} checkouts, {kills} kills, {retried} client retries");
    }
    assert_eq!(acknowledged.len(), ORDERS);

    // Every acknowledged order exists once, and is what its key replays.
    let ids: BTreeSet<&String> = acknowledged.values().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), ORDERS, "no two keys got the same order");
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT id, status FROM orders").fetch_all(db.pool()).await.unwrap();
    assert_eq!(stored.len(), ORDERS, "no order beyond the acknowledged ones");
    let statuses: BTreeMap<String, String> = stored.into_iter().collect();
    for (key, (id, declined)) in &acknowledged {
        let response: String = sqlx::query_scalar("SELECT response FROM idempotency_keys WHERE idem_key = $1")
            .bind(key)
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(serde_json::from_str::<Value>(&response).unwrap()["id"], id.as_str());
        let expected = if *declined { "failed" } else { "fulfilled" };
        assert_eq!(statuses[id], expected, "order {id}");
    }

    // Every shipped order was captured exactly once, for its total; nothing else was.
    let captures: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT o.id, COUNT(l.idem_key), CAST(COALESCE(SUM(l.amount), 0) - MIN(o.total) AS BIGINT) FROM orders o
         LEFT JOIN payment_test_ledger l ON l.kind = 'capture' AND l.reference = 'auth:' || o.id
         GROUP BY o.id, o.status",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    for (id, count, surplus) in &captures {
        let fulfilled = statuses[id] == "fulfilled";
        assert_eq!(*count, i64::from(fulfilled), "order {id}: {count} captures");
        assert!(!fulfilled || *surplus == 0, "order {id} captured {surplus} more than its total");
    }
    let captured: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE payment_status = 'captured' AND captured = total")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(captured as usize, statuses.values().filter(|s| *s == "fulfilled").count());

    // Every authorisation belongs to exactly one order, for its total; none twice.
    let authorizations: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT reference, outcome, amount FROM payment_test_ledger WHERE kind = 'authorization'")
            .fetch_all(db.pool())
            .await
            .unwrap();
    let mut per_order = BTreeMap::<String, usize>::new();
    for (order, outcome, amount) in &authorizations {
        *per_order.entry(order.clone()).or_default() += 1;
        let total: i64 = sqlx::query_scalar("SELECT total FROM orders WHERE id = $1")
            .bind(order)
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(*amount, total, "authorised the order's total");
        let declined = acknowledged.values().any(|(id, declined)| id == order && *declined);
        assert_eq!(outcome == "authorized", !declined, "{order}: {outcome}");
    }
    assert_eq!(per_order.len(), ORDERS, "every order asked for payment once");
    assert!(per_order.values().all(|n| *n == 1));

    // No saga step took effect twice: one of each timeline entry per order.
    let doubled: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT order_id, type, COUNT(*) FROM order_events GROUP BY order_id, type HAVING COUNT(*) > 1")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert!(doubled.is_empty(), "{doubled:?}");
    let dead: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'dead'").fetch_one(db.pool()).await.unwrap();
    assert_eq!(dead, 0);

    // Stock: adjustments = on hand + committed, nothing held, and committed is exactly what
    // the confirmed orders bought.
    for sku in SKUS {
        let (on_hand, reserved, committed): (i64, i64, i64) =
            sqlx::query_as("SELECT on_hand, reserved, committed FROM inventory_levels WHERE sku = $1")
                .bind(sku)
                .fetch_one(db.pool())
                .await
                .unwrap();
        let sold: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(SUM(l.quantity) AS BIGINT) FROM order_lines l JOIN orders o ON o.id = l.order_id
             WHERE l.sku = $1 AND o.status IN ('confirmed', 'fulfilled')",
        )
        .bind(sku)
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!((on_hand + committed, reserved, committed), (STOCK, 0, sold.unwrap_or(0)), "{sku}");
    }
    db.close().await;
    let mut child = core.lock().unwrap();
    child.kill().ok();
    child.wait().ok();
}
