//! Orders on this run's database, with the job worker running as in `verge serve`: checkout
//! prices from the catalog and is idempotent per key; the saga reserves, authorises and
//! confirms, and captures on fulfilment; declines, short stock and cancellations compensate
//! what was done; refunds never lose a cent; a provider outage makes orders wait, not fail;
//! and each change reaches the order's server-sent event stream.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{Reply, TestApp};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use verge_core::jobs::Worker;
use verge_core::keys::Scope;

const OK_CARD: &str = "4242424242424242";
const DECLINED_CARD: &str = "4000000000000002";

struct Shop {
    app: TestApp,
    key: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Shop {
    /// A catalog of two variants (19.99 and 15.00 EUR, the second on a running price list
    /// at 12.50), ten of each in stock, German VAT at 19 %, and a worker running.
    async fn open(adjust: impl FnOnce(&mut verge_core::Config)) -> Shop {
        let app = TestApp::with(|config| {
            config.tax_rates = "DE=19,US-CA=7.25".into();
            adjust(config);
        })
        .await;
        let key = app.admin().await;
        let product = json!({"handle": "tee", "title": "Tee", "status": "published", "options": [{"name": "size", "values": ["M", "L"]}], "variants": [
            {"sku": "TEE-M", "title": "M", "options": {"size": "M"}, "prices": [{"currency": "EUR", "amount": 1999}]},
            {"sku": "TEE-L", "title": "L", "options": {"size": "L"}, "prices": [{"currency": "EUR", "amount": 1500}]},
        ]});
        app.call(Method::POST, "/v1/catalog/products", Some(&key), Some(product)).await.ok();
        let list = json!({"name": "summer", "starts_at": "2020-01-01T00:00:00Z",
            "prices": [{"sku": "TEE-L", "currency": "EUR", "amount": 1250}]});
        app.call(Method::POST, "/v1/catalog/price-lists", Some(&key), Some(list)).await.ok();
        let location = json!({"handle": "main", "name": "Main", "kind": "warehouse"});
        app.call(Method::POST, "/v1/inventory/locations", Some(&key), Some(location)).await.ok();
        for sku in ["TEE-M", "TEE-L"] {
            let stock = json!({"sku": sku, "location": "main", "delta": 10, "reason": "received"});
            app.call(Method::POST, "/v1/inventory/adjustments", Some(&key), Some(stock)).await.ok();
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = Worker::new(app.app.state.clone(), verge_core::server::job_registry());
        tokio::spawn(worker.run(async move {
            let _ = stopped.await;
        }));
        Shop { app, key, _stop: stop }
    }

    async fn post_order(&self, idempotency_key: Option<&str>, body: &Value) -> Reply {
        let mut request = Request::post("/v1/orders")
            .header(header::AUTHORIZATION, format!("Bearer {}", self.key))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        self.app.send(request.body(Body::from(body.to_string())).unwrap()).await
    }

    async fn order(&self, lines: Value, card: &str) -> Value {
        let body = order_body(lines, card);
        let reply = self.post_order(Some(&uuid::Uuid::new_v4().to_string()), &body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.json
    }

    async fn get(&self, id: &str) -> Value {
        self.app.get(&format!("/v1/orders/{id}"), Some(&self.key)).await.ok().clone()
    }

    /// Waits until the order's status and payment status are as given.
    async fn settles(&self, id: &str, status: &str, payment: &str) -> Value {
        for _ in 0..500 {
            let order = self.get(id).await;
            if order["status"] == status && order["payment"]["status"] == payment {
                return order;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let order = self.get(id).await;
        panic!("order {id} did not become {status}/{payment}: {order}");
    }

    async fn level(&self, sku: &str) -> Value {
        self.app.get(&format!("/v1/inventory/levels/{sku}"), Some(&self.key)).await.ok().clone()
    }

    async fn timeline(&self, id: &str) -> Vec<String> {
        let reply = self.app.get(&format!("/v1/orders/{id}/timeline"), Some(&self.key)).await;
        reply.ok()["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
    }

    async fn authorizations(&self, order_id: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM payment_test_ledger WHERE kind = 'authorization' AND reference = $1")
            .bind(order_id)
            .fetch_one(self.app.app.state.db.pool())
            .await
            .unwrap()
    }
}

fn address(country: &str, region: Option<&str>) -> Value {
    let mut address = json!({"name": "Ada Lovelace", "line1": "Hauptstraße 1", "city": "Berlin", "postal_code": "10115", "country": country});
    if let Some(region) = region {
        address["region"] = json!(region);
    }
    address
}

fn order_body(lines: Value, card: &str) -> Value {
    json!({"currency": "EUR", "email": "ada@example.com", "lines": lines,
           "shipping_address": address("DE", None), "payment": {"method": card}})
}

#[tokio::test]
async fn checkout_prices_from_the_catalog_and_the_saga_confirms_captures_and_refunds_to_the_cent() {
    let shop = Shop::open(|_| {}).await;
    let placed = shop.order(json!([{"sku": "TEE-M", "quantity": 2}, {"sku": "TEE-L", "quantity": 1}]), OK_CARD).await;
    assert_eq!(placed["status"], "pending");
    // 2 × 19.99 and 1 × 12.50 (the running price list beats 15.00), VAT per line rounded
    // half to even: 759.62 → 760 and 237.5 → 238 (even), so 998 on 4,248.
    let lines = placed["lines"].as_array().unwrap();
    assert_eq!((lines[0]["unit_amount"].as_i64(), lines[0]["tax"].as_i64()), (Some(1999), Some(760)));
    assert_eq!(
        (lines[1]["unit_amount"].as_i64(), lines[1]["compare_at"].as_i64(), lines[1]["tax"].as_i64()),
        (Some(1250), Some(1500), Some(238))
    );
    assert_eq!(
        (placed["subtotal"].as_i64(), placed["tax"].as_i64(), placed["total"].as_i64()),
        (Some(5248), Some(998), Some(6246))
    );
    assert_eq!((placed["tax_region"].as_str(), placed["tax_rate_bp"].as_i64()), (Some("DE"), Some(1900)));
    assert_eq!(placed["payment"]["method"], "•••• 4242", "the method is never shown whole");
    let id = placed["id"].as_str().unwrap();

    let confirmed = shop.settles(id, "confirmed", "authorized").await;
    assert!(confirmed["reservation_id"].is_string());
    let level = shop.level("TEE-M").await;
    assert_eq!(
        (level["on_hand"].as_i64(), level["committed"].as_i64(), level["reserved"].as_i64()),
        (Some(8), Some(2), Some(0))
    );
    assert_eq!(shop.timeline(id).await, ["order.created", "stock.reserved", "payment.authorized", "order.confirmed"]);

    // Refunding before capture is an illegal move; fulfilment captures.
    let early = json!({"amount": 100, "reason": "goodwill"});
    let refused = shop.app.call(Method::POST, &format!("/v1/orders/{id}/refunds"), Some(&shop.key), Some(early)).await;
    refused.problem(StatusCode::CONFLICT, "illegal_transition");
    let fulfil = format!("/v1/orders/{id}/fulfil");
    let fulfilled = shop.app.call(Method::POST, &fulfil, Some(&shop.key), Some(json!({"tracking": "DHL 0034"}))).await;
    assert_eq!(fulfilled.ok()["status"], "fulfilled");
    let captured = shop.settles(id, "fulfilled", "captured").await;
    assert_eq!(captured["payment"]["captured"], 6246);
    assert_eq!(captured["tracking"], "DHL 0034");
    let again = shop.app.call(Method::POST, &fulfil, Some(&shop.key), Some(json!({"tracking": "x"}))).await;
    again.problem(StatusCode::CONFLICT, "illegal_transition");

    // A partial refund, then exactly the rest: every cent back, and not one more.
    let refunds = format!("/v1/orders/{id}/refunds");
    let first = shop
        .app
        .call(Method::POST, &refunds, Some(&shop.key), Some(json!({"amount": 1001, "reason": "one tee returned"})))
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    let over = shop
        .app
        .call(Method::POST, &refunds, Some(&shop.key), Some(json!({"amount": 5246, "reason": "too much"})))
        .await;
    let problem = over.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(problem.to_string().contains("must be 1 to 5245"), "{problem}");
    shop.settles(id, "fulfilled", "partially_refunded").await;
    let rest = shop
        .app
        .call(Method::POST, &refunds, Some(&shop.key), Some(json!({"amount": 5245, "reason": "all back"})))
        .await;
    assert_eq!(rest.status, StatusCode::ACCEPTED);
    let refunded = shop.settles(id, "fulfilled", "refunded").await;
    assert_eq!(
        (refunded["payment"]["refunded"].as_i64(), refunded["payment"]["captured"].as_i64()),
        (Some(6246), Some(6246))
    );
    let ledger: i64 = sqlx::query_scalar(
        "SELECT CAST(SUM(amount) AS BIGINT) FROM payment_test_ledger WHERE kind = 'refund' AND reference = $1",
    )
    .bind(format!("auth:{id}"))
    .fetch_one(shop.app.app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(ledger, 6246, "the provider paid back exactly what was captured");
    assert_eq!(shop.authorizations(id).await, 1);
    let timeline = shop.timeline(id).await;
    assert_eq!(timeline.iter().filter(|t| *t == "payment.refunded").count(), 2, "{timeline:?}");
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_misuse() {
    let shop = Shop::open(|_| {}).await;
    let body = order_body(json!([{"sku": "TEE-M", "quantity": 1}]), OK_CARD);
    let missing = shop.post_order(None, &body).await;
    missing.problem(StatusCode::BAD_REQUEST, "idempotency_key_missing");

    let first = shop.post_order(Some("\"order-1\""), &body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert!(first.headers.get("idempotent-replayed").is_none());
    // The same document, keys in another order, bare key: the first answer again.
    let reordered: Value = serde_json::from_str(
        &serde_json::to_string(&json!({
        "payment": body["payment"], "shipping_address": body["shipping_address"], "lines": body["lines"],
        "email": body["email"], "currency": body["currency"]}))
        .unwrap(),
    )
    .unwrap();
    let replay = shop.post_order(Some("order-1"), &reordered).await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.json, first.json, "the stored answer, byte for byte");
    let other = order_body(json!([{"sku": "TEE-M", "quantity": 2}]), OK_CARD);
    shop.post_order(Some("order-1"), &other).await.problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    let orders = shop.app.get("/v1/orders", Some(&shop.key)).await;
    assert_eq!(orders.ok()["items"].as_array().unwrap().len(), 1, "one order however often it was sent");

    // A request still running holds its key.
    let running = "INSERT INTO idempotency_keys (owner, idem_key, fingerprint, state, locked_until, created_at, expires_at)
                   SELECT owner, 'order-2', fingerprint, 'running', $1, created_at, expires_at FROM idempotency_keys WHERE idem_key = 'order-1'";
    let later = verge_core::time::now_millis().0 + 60_000;
    sqlx::query(running).bind(later).execute(shop.app.app.state.db.pool()).await.unwrap();
    shop.post_order(Some("order-2"), &body).await.problem(StatusCode::CONFLICT, "idempotency_key_in_use");

    // A request refused before doing anything frees its key for the corrected one.
    let mut wrong = body.clone();
    wrong["lines"][0]["sku"] = json!("NOPE-1");
    let refused = shop.post_order(Some("order-3"), &wrong).await;
    assert_eq!(refused.validation_fields(), ["/lines/0/sku"]);
    assert_eq!(shop.post_order(Some("order-3"), &body).await.status, StatusCode::CREATED);
    shop.post_order(Some(""), &body).await.problem(StatusCode::BAD_REQUEST, "idempotency_key_invalid");
}

#[tokio::test]
async fn bad_orders_are_refused_whole_with_every_problem_at_its_place() {
    let shop = Shop::open(|_| {}).await;
    let body = json!({"currency": "EURO", "lines": [{"sku": "TEE-M", "quantity": 0}, {"sku": "TEE-M", "quantity": 1}],
        "shipping_address": {"name": "", "line1": "x", "city": "y", "postal_code": "z", "country": "de"},
        "payment": {"method": "4111111111111111"}});
    let refused = shop.post_order(Some("bad"), &body).await;
    let mut fields = refused.validation_fields();
    fields.sort();
    assert_eq!(
        fields,
        [
            "/currency",
            "/email",
            "/lines/0/quantity",
            "/lines/1/sku",
            "/payment/method",
            "/shipping_address/country",
            "/shipping_address/name"
        ]
    );
    let draft = json!({"handle": "hidden", "title": "Hidden", "status": "draft", "variants": [
        {"sku": "HIDDEN-1", "title": "H", "prices": [{"currency": "USD", "amount": 100}]}]});
    shop.app.call(Method::POST, "/v1/catalog/products", Some(&shop.key), Some(draft)).await.ok();
    let hidden =
        shop.post_order(Some("hidden"), &order_body(json!([{"sku": "HIDDEN-1", "quantity": 1}]), OK_CARD)).await;
    let problem = hidden.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(problem.to_string().contains("not for sale (its product is draft)"), "{problem}");
    let unpriced = shop
        .post_order(
            Some("usd"),
            &json!({"currency": "USD", "email": "a@b.c", "lines": [{"sku": "TEE-M", "quantity": 1}],
        "shipping_address": address("US", Some("CA")), "payment": {"method": OK_CARD}}),
        )
        .await;
    assert!(unpriced.text.contains("`TEE-M` has no price in USD"), "{}", unpriced.text);
    assert!(shop.app.get("/v1/orders", Some(&shop.key)).await.ok()["items"].as_array().unwrap().is_empty());
    let reader = shop.app.key(&[Scope::Read]).await;
    let request = Request::post("/v1/orders")
        .header(header::AUTHORIZATION, format!("Bearer {reader}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", "r")
        .body(Body::from(order_body(json!([{"sku": "TEE-M", "quantity": 1}]), OK_CARD).to_string()))
        .unwrap();
    shop.app.send(request).await.problem(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn declines_and_short_stock_fail_the_order_and_give_back_what_it_held() {
    let shop = Shop::open(|_| {}).await;
    let declined = shop.order(json!([{"sku": "TEE-M", "quantity": 3}]), DECLINED_CARD).await;
    let id = declined["id"].as_str().unwrap();
    let failed = shop.settles(id, "failed", "failed").await;
    assert_eq!(failed["failure"]["code"], "card_declined");
    for _ in 0..100 {
        if shop.level("TEE-M").await["available"] == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let level = shop.level("TEE-M").await;
    assert_eq!(
        (level["available"].as_i64(), level["reserved"].as_i64()),
        (Some(10), Some(0)),
        "the stock was released"
    );
    let timeline = shop.timeline(id).await;
    assert_eq!(timeline, ["order.created", "stock.reserved", "payment.failed", "order.failed", "stock.released"]);

    let greedy = shop.order(json!([{"sku": "TEE-L", "quantity": 11}]), OK_CARD).await;
    let id = greedy["id"].as_str().unwrap();
    let failed = shop.settles(id, "failed", "pending").await;
    assert_eq!(failed["failure"]["code"], "insufficient_stock");
    assert_eq!(shop.authorizations(id).await, 0, "no payment is attempted for stock that is not there");
}

#[tokio::test]
async fn cancelling_voids_the_authorisation_and_returns_the_stock_and_customers_see_only_their_own() {
    let shop = Shop::open(|_| {}).await;
    let placed = shop.order(json!([{"sku": "TEE-M", "quantity": 4}]), OK_CARD).await;
    let id = placed["id"].as_str().unwrap();
    shop.settles(id, "confirmed", "authorized").await;
    let cancel = format!("/v1/orders/{id}/cancel");
    let cancelled =
        shop.app.call(Method::POST, &cancel, Some(&shop.key), Some(json!({"reason": "customer called"}))).await;
    assert_eq!(cancelled.ok()["status"], "cancelled");
    shop.settles(id, "cancelled", "voided").await;
    let mut restocked = Value::Null;
    for _ in 0..100 {
        restocked = shop.level("TEE-M").await;
        if restocked["on_hand"] == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((restocked["on_hand"].as_i64(), restocked["committed"].as_i64()), (Some(10), Some(0)), "{restocked}");
    let again = shop.app.call(Method::POST, &cancel, Some(&shop.key), Some(json!({}))).await;
    let problem = again.problem(StatusCode::CONFLICT, "illegal_transition");
    assert!(problem["detail"].as_str().unwrap().contains("is cancelled; it cannot become cancelled"));
    let timeline = shop.app.get(&format!("/v1/orders/{id}/timeline"), Some(&shop.key)).await;
    let cancel_entry =
        timeline.ok()["items"].as_array().unwrap().iter().find(|e| e["type"] == "order.cancelled").unwrap().clone();
    assert!(cancel_entry["actor"].as_str().unwrap().starts_with("key_"), "who cancelled: {cancel_entry}");
    assert_eq!(cancel_entry["data"]["reason"], "customer called");

    // Customers order for themselves and see only their own.
    let mut tokens = Vec::new();
    for email in ["ada@example.com", "bo@example.com"] {
        let credentials = json!({"email": email, "password": "a long passphrase here"});
        shop.app.call(Method::POST, "/auth/shop/sign-up", None, Some(credentials.clone())).await;
        let signed_in = shop.app.call(Method::POST, "/auth/shop/sign-in", None, Some(credentials)).await;
        tokens.push(signed_in.ok()["access_token"].as_str().unwrap().to_owned());
    }
    let own = json!({"currency": "EUR", "lines": [{"sku": "TEE-L", "quantity": 1}],
        "shipping_address": address("DE", None), "payment": {"method": OK_CARD}});
    let request = Request::post("/auth/shop/orders")
        .header(header::AUTHORIZATION, format!("Bearer {}", tokens[0]))
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", "mine-1")
        .body(Body::from(own.to_string()))
        .unwrap();
    let mine = shop.app.send(request).await;
    assert_eq!(mine.status, StatusCode::CREATED, "{}", mine.text);
    assert_eq!((mine.json["email"].as_str(), mine.json["project"].as_str()), (Some("ada@example.com"), Some("shop")));
    let own_id = mine.json["id"].as_str().unwrap();
    let listed = shop.app.get("/auth/shop/orders", Some(&tokens[0])).await;
    assert_eq!(listed.ok()["items"].as_array().unwrap().len(), 1);
    assert!(shop.app.get("/auth/shop/orders", Some(&tokens[1])).await.ok()["items"].as_array().unwrap().is_empty());
    let peek = shop.app.get(&format!("/auth/shop/orders/{own_id}"), Some(&tokens[1])).await;
    peek.problem(StatusCode::NOT_FOUND, "not_found");
    let theirs =
        shop.app.call(Method::POST, &format!("/auth/shop/orders/{id}/cancel"), Some(&tokens[0]), Some(json!({}))).await;
    theirs.problem(StatusCode::NOT_FOUND, "not_found");
    let path = format!("/auth/shop/orders/{own_id}/cancel");
    let cancelled =
        shop.app.call(Method::POST, &path, Some(&tokens[0]), Some(json!({"reason": "changed my mind"}))).await;
    assert_eq!(cancelled.ok()["status"], "cancelled");
}

#[tokio::test]
async fn during_a_provider_outage_orders_wait_and_complete_when_it_returns() {
    let shop = Shop::open(|config| config.payment_breaker_cooldown_ms = 200).await;
    let db = shop.app.app.state.db.clone();
    verge_core::orders::payments::TestProvider::outage(&db, Duration::from_secs(60)).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..6 {
        let placed = shop.order(json!([{"sku": "TEE-L", "quantity": 1}]), OK_CARD).await;
        ids.push(placed["id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for id in &ids {
        let order = shop.get(id).await;
        assert_eq!(
            (order["status"].as_str(), order["payment"]["status"].as_str()),
            (Some("pending"), Some("pending")),
            "{order}"
        );
    }
    let stats = shop.app.get("/v1/jobs?kind=order.authorize&state=dead", Some(&shop.key)).await;
    assert!(stats.ok()["items"].as_array().unwrap().is_empty(), "no order gave up");
    verge_core::orders::payments::TestProvider::recover(&db).await.unwrap();
    for id in &ids {
        shop.settles(id, "confirmed", "authorized").await;
        assert_eq!(shop.authorizations(id).await, 1);
    }
}

/// Reads SSE frames from `body` until `until` appears or time runs out; returns the text.
async fn read_events(body: &mut Body, until: &str) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains(until) {
        let frame = tokio::time::timeout_at(deadline, body.frame()).await.expect("the event arrives in time");
        let frame = frame.expect("the stream stays open").unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    text
}

#[tokio::test]
async fn each_change_reaches_the_orders_event_stream_and_a_reconnect_resumes_after_the_last_id() {
    let shop = Shop::open(|_| {}).await;
    let placed = shop.order(json!([{"sku": "TEE-M", "quantity": 1}]), OK_CARD).await;
    let id = placed["id"].as_str().unwrap();
    let open = |last: Option<&str>| {
        let mut request = Request::get(format!("/v1/orders/{id}/events"))
            .header(header::AUTHORIZATION, format!("Bearer {}", shop.key));
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        shop.app.app.router.clone().oneshot(request.body(Body::empty()).unwrap())
    };
    let response = open(None).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = response.into_body();
    let text = read_events(&mut body, "event: order.confirmed").await;
    let kinds: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(kinds, ["order.created", "stock.reserved", "payment.authorized", "order.confirmed"]);
    let ids: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
    assert_eq!(ids, ["1", "2", "3", "4"]);
    // A change made now arrives on the open stream.
    let fulfil = format!("/v1/orders/{id}/fulfil");
    shop.app.call(Method::POST, &fulfil, Some(&shop.key), Some(json!({"tracking": "T1"}))).await.ok();
    let text = read_events(&mut body, "event: payment.captured").await;
    assert!(text.contains("event: order.fulfilled") && text.contains("\"tracking\":\"T1\""), "{text}");
    // Reconnecting after id 4 replays from 5 on.
    let mut resumed = open(Some("4")).await.unwrap().into_body();
    let text = read_events(&mut resumed, "event: payment.captured").await;
    let ids: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
    assert_eq!(ids, ["5", "6"]);
    let missing = shop.app.get("/v1/orders/ord_missing/events", Some(&shop.key)).await;
    missing.problem(StatusCode::NOT_FOUND, "not_found");
}

/// localstripe (a stateful Stripe test server from PyPI; scripts/test installs it and names
/// it in `VERGE_LOCALSTRIPE`) on a free loopback port, stopped on drop.
struct LocalStripe {
    child: std::process::Child,
    base: String,
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LocalStripe {
    fn start() -> LocalStripe {
        let program = std::env::var("VERGE_LOCALSTRIPE")
            .expect("VERGE_LOCALSTRIPE must name the localstripe command (scripts/test installs it and sets it)");
        let port = common::process::free_port();
        let child = std::process::Command::new(program)
            .args(["--port", &port.to_string(), "--from-scratch"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("localstripe starts");
        let base = format!("http://127.0.0.1:{port}");
        common::process::until("localstripe answers", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        LocalStripe { child, base }
    }

    fn get(&self, path: &str) -> Value {
        let reply = common::process::http(&self.base, "GET", path, &[("authorization", "Bearer sk_test_verge")], "");
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        serde_json::from_str(&reply.body).unwrap()
    }
}

#[tokio::test]
async fn the_stripe_provider_authorises_captures_voids_and_refunds_payment_intents_on_localstripe() {
    let stripe = LocalStripe::start();
    let base = stripe.base.clone();
    let shop = Shop::open(move |config| {
        config.payment_provider = "stripe".into();
        config.stripe_api_base = base;
        config.stripe_secret_key = Some("sk_test_verge".to_owned().into());
    })
    .await;
    let refused = shop.post_order(Some("card"), &order_body(json!([{"sku": "TEE-M", "quantity": 1}]), OK_CARD)).await;
    assert_eq!(refused.validation_fields(), ["/payment/method"], "Stripe takes PaymentMethod ids, never card numbers");

    let placed = shop.order(json!([{"sku": "TEE-M", "quantity": 1}]), "pm_card_visa").await;
    let id = placed["id"].as_str().unwrap();
    let confirmed = shop.settles(id, "confirmed", "authorized").await;
    let intent_id = confirmed["payment"]["reference"].as_str().unwrap().to_owned();
    assert!(intent_id.starts_with("pi_"), "{confirmed}");
    let intent = stripe.get(&format!("/v1/payment_intents/{intent_id}"));
    assert_eq!(
        (intent["status"].as_str(), intent["capture_method"].as_str()),
        (Some("requires_capture"), Some("manual"))
    );
    assert_eq!((intent["amount"].as_i64(), intent["currency"].as_str()), (Some(2379), Some("eur")), "19.99 + 19 % VAT");
    assert_eq!(intent["metadata"]["order_id"], id);

    let fulfil = format!("/v1/orders/{id}/fulfil");
    shop.app.call(Method::POST, &fulfil, Some(&shop.key), Some(json!({"tracking": "UPS 1"}))).await.ok();
    shop.settles(id, "fulfilled", "captured").await;
    assert_eq!(stripe.get(&format!("/v1/payment_intents/{intent_id}"))["status"], "succeeded");
    let refund = json!({"amount": 379, "reason": "VAT exempt"});
    shop.app.call(Method::POST, &format!("/v1/orders/{id}/refunds"), Some(&shop.key), Some(refund)).await;
    shop.settles(id, "fulfilled", "partially_refunded").await;
    let refunds = stripe.get(&format!("/v1/refunds?payment_intent={intent_id}"));
    let amounts: Vec<i64> = refunds["data"].as_array().unwrap().iter().map(|r| r["amount"].as_i64().unwrap()).collect();
    assert_eq!(amounts, [379]);

    let declined = shop.order(json!([{"sku": "TEE-L", "quantity": 1}]), "pm_card_chargeCustomerFail").await;
    let failed = shop.settles(declined["id"].as_str().unwrap(), "failed", "failed").await;
    assert_eq!(failed["failure"]["code"], "card_declined");

    let kept = shop.order(json!([{"sku": "TEE-L", "quantity": 1}]), "pm_card_visa").await;
    let kept_id = kept["id"].as_str().unwrap();
    let authorised = shop.settles(kept_id, "confirmed", "authorized").await;
    let cancel = format!("/v1/orders/{kept_id}/cancel");
    shop.app.call(Method::POST, &cancel, Some(&shop.key), Some(json!({}))).await.ok();
    shop.settles(kept_id, "cancelled", "voided").await;
    let voided = stripe.get(&format!("/v1/payment_intents/{}", authorised["payment"]["reference"].as_str().unwrap()));
    assert_eq!(voided["status"], "canceled");
}
