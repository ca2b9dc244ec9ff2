//! The storefront through `verge dev`: products published through the API are read at the
//! local edge within a second, by handle and in their listings; a scheduled price list
//! appears and disappears on time; unpublishing removes them; an abandoned reservation
//! releases itself; titles are suggested by autocomplete. And stock survives the core
//! being killed in the middle of a checkout rush: nothing is oversold or goes negative.

mod common;

use std::time::{Duration, Instant};

use common::process::{Printed, field, http, printed, start_dev, until, verge};
use serde_json::{Value, json};

struct Dev {
    core: String,
    edge: String,
    key: String,
}

impl Dev {
    fn core(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let auth = format!("Bearer {}", self.key);
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        let body = if body.is_null() { String::new() } else { body.to_string() };
        let reply = http(&self.core, method, path, &headers, &body);
        (reply.status, serde_json::from_str(&reply.body).unwrap_or(Value::Null))
    }

    fn ok(&self, method: &str, path: &str, body: &Value) -> Value {
        let (status, reply) = self.core(method, path, body);
        assert!((200..300).contains(&status), "{method} {path}: {status} {reply}");
        reply
    }

    fn edge(&self, path: &str) -> (u16, Value) {
        let reply = http(&self.edge, "GET", path, &[], "");
        (reply.status, serde_json::from_str(&reply.body).unwrap_or(Value::Null))
    }

    fn handles(&self, path: &str) -> Vec<String> {
        let (status, page) = self.edge(path);
        assert_eq!(status, 200, "{path}: {page}");
        page["products"].as_array().unwrap().iter().map(|p| p["handle"].as_str().unwrap().to_owned()).collect()
    }
}

fn at(offset: Duration) -> String {
    (jiff::Timestamp::now() + offset).to_string()
}

fn shirt(status: &str) -> Value {
    json!({
        "handle": "linen-tee", "title": "Linen Tee", "status": status,
        "categories": ["tops"], "collections": ["summer"],
        "variants": [{"sku": "TEE-1", "prices": [{"currency": "EUR", "amount": 2500}]}]
    })
}

#[tokio::test]
async fn the_storefront_reads_published_products_at_the_edge_on_time() {
    let (config, dir) = common::fresh_config().await;
    let (_dev, lines) = start_dev(verge(&config, dir.path()));
    let Printed { core, edge, key } = printed(&lines);
    let dev = Dev { core, edge, key };
    dev.ok("POST", "/v1/catalog/categories", &json!({"handle": "clothing", "title": "Clothing"}));
    dev.ok("POST", "/v1/catalog/categories", &json!({"handle": "tops", "title": "Tops", "parent": "clothing"}));
    dev.ok("POST", "/v1/catalog/collections", &json!({"handle": "summer", "title": "Summer"}));
    dev.ok("POST", "/v1/inventory/locations", &json!({"handle": "depot", "name": "Depot", "kind": "warehouse"}));

    let created = Instant::now();
    let id = dev.ok("POST", "/v1/catalog/products", &shirt("published"))["id"].as_str().unwrap().to_owned();
    until("the product is readable at the edge", Duration::from_secs(10), || {
        dev.edge("/catalog/v1/products/linen-tee").0 == 200
    });
    let took = created.elapsed();
    assert!(took < Duration::from_secs(1), "published to readable at the edge took {took:?}");
    let (_, product) = dev.edge("/catalog/v1/products/linen-tee");
    assert_eq!(
        product["variants"][0]["prices"][0],
        json!({"currency": "EUR", "amount": 2500, "compare_at_amount": null})
    );
    assert_eq!(product["availability"], "out_of_stock");
    for listing in
        ["/catalog/v1/categories/tops", "/catalog/v1/categories/clothing", "/catalog/v1/collections/summer?page=1"]
    {
        until(listing, Duration::from_secs(5), || dev.handles(listing) == ["linen-tee"]);
    }
    let reply = http(&dev.edge, "GET", "/catalog/v1/products/linen-tee", &[], "");
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    let etag = reply.header("etag").unwrap().to_owned();
    assert_eq!(http(&dev.edge, "GET", "/catalog/v1/products/linen-tee", &[("if-none-match", &etag)], "").status, 304);
    for (path, status, code) in [
        ("/catalog/v1/products/nope", 404, "product_not_found"),
        ("/catalog/v1/products/Not_A_Handle", 404, "product_not_found"),
        ("/catalog/v1/categories/tops?page=0", 400, "invalid_page"),
        ("/catalog/v1/categories/tops?page=2", 404, "page_not_found"),
        ("/catalog/v1/shelves/x", 404, "route_not_found"),
    ] {
        let (got, problem) = dev.edge(path);
        assert_eq!((got, problem["code"].as_str()), (status, Some(code)), "{path}: {problem}");
    }

    // Stock received shows as `low`; an abandoned reservation releases itself.
    dev.ok(
        "POST",
        "/v1/inventory/adjustments",
        &json!({"sku": "TEE-1", "location": "depot", "delta": 2, "reason": "received"}),
    );
    until("received stock shows", Duration::from_secs(5), || {
        dev.edge("/catalog/v1/products/linen-tee").1["availability"] == "low"
    });
    let held = dev.ok(
        "POST",
        "/v1/inventory/reservations",
        &json!({"reference": "cart-9", "expires_in": 1, "lines": [{"sku": "TEE-1", "quantity": 2}]}),
    );
    until("reserved stock shows as sold out", Duration::from_secs(5), || {
        dev.edge("/catalog/v1/products/linen-tee").1["availability"] == "out_of_stock"
    });
    until("the abandoned reservation expires", Duration::from_secs(10), || {
        dev.ok("GET", &format!("/v1/inventory/reservations/{}", held["id"].as_str().unwrap()), &Value::Null)["status"]
            == "expired"
    });
    assert_eq!(dev.ok("GET", "/v1/inventory/levels/TEE-1", &Value::Null)["available"], 2);
    until("released stock shows again", Duration::from_secs(5), || {
        dev.edge("/catalog/v1/products/linen-tee").1["availability"] == "low"
    });

    // A sale from 3 s to 6 s from now, on the edge's own clock.
    let sale = json!({"name": "Flash sale", "starts_at": at(Duration::from_secs(3)), "ends_at": at(Duration::from_secs(6)),
        "prices": [{"sku": "TEE-1", "currency": "EUR", "amount": 1999}]});
    dev.ok("POST", "/v1/catalog/price-lists", &sale);
    let amount = || dev.edge("/catalog/v1/products/linen-tee").1["variants"][0]["prices"][0]["amount"].as_i64();
    assert_eq!(amount(), Some(2500), "not before it starts");
    until("the sale price appears", Duration::from_secs(10), || amount() == Some(1999));
    let (_, product) = dev.edge("/catalog/v1/products/linen-tee");
    assert_eq!(product["variants"][0]["prices"][0]["compare_at_amount"], 2500);
    let (_, listing) = dev.edge("/catalog/v1/categories/tops");
    assert_eq!(listing["products"][0]["price_range"]["EUR"], json!({"min": 1999, "max": 1999}));
    until("the sale price disappears", Duration::from_secs(10), || amount() == Some(2500));
    // The edge switched on its own clock; the core's clock then rolled the record forward
    // (republished without the moments now past).
    let store = verge_core::publish::LocalEdgeStore::open(&dir.path().join("verge-data/edge/kv.db")).await.unwrap();
    let mut segments = 0;
    for _ in 0..50 {
        use verge_core::publish::EdgeStore;
        let bytes = store.get(&verge_shared::catalog::product_key("linen-tee")).await.unwrap().unwrap();
        segments = verge_shared::catalog::Record::decode(&bytes).unwrap().segments.len();
        if segments == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(segments, 1, "the record still holds the sale's moments");
    store.close().await;

    // The title is suggested by the catalog's autocomplete index.
    until("autocomplete suggests the product", Duration::from_secs(10), || {
        let (status, answer) = dev.edge("/autocomplete/v1/catalog/products?q=line");
        status == 200 && answer["suggestions"][0]["text"] == "Linen Tee"
    });

    // Unpublished: gone from the edge and its listings.
    dev.ok("PUT", &format!("/v1/catalog/products/{id}"), &shirt("archived"));
    until("the archived product leaves the edge", Duration::from_secs(5), || {
        dev.edge("/catalog/v1/products/linen-tee").0 == 404
    });
    until("and its listings", Duration::from_secs(5), || dev.handles("/catalog/v1/categories/clothing").is_empty());
    until("and autocomplete", Duration::from_secs(10), || {
        dev.edge("/autocomplete/v1/catalog/products?q=line").1["suggestions"] == json!([])
    });
}

/// Sends `count` one-unit reservations from 8 threads; returns the statuses seen (0 when
/// the connection failed, as it does once the core is killed).
fn rush(core: &str, key: &str, count: usize) -> Vec<u16> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (core, key, next) = (core.to_owned(), key.to_owned(), next.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                    let body = json!({"reference": "rush", "lines": [{"sku": "HOT", "quantity": 1}]}).to_string();
                    let auth = format!("Bearer {key}");
                    let address = core.trim_start_matches("http://");
                    let status = match std::net::TcpStream::connect(address) {
                        Ok(_) => std::panic::catch_unwind(|| {
                            http(
                                &core,
                                "POST",
                                "/v1/inventory/reservations",
                                &[("authorization", &auth), ("content-type", "application/json")],
                                &body,
                            )
                            .status
                        })
                        .unwrap_or(0),
                        Err(_) => 0,
                    };
                    seen.push(status);
                }
                seen
            })
        })
        .collect();
    threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
}

#[tokio::test]
async fn killing_the_core_mid_rush_never_oversells() {
    let (config, dir) = common::fresh_config().await;
    let (mut dev_process, lines) = start_dev(verge(&config, dir.path()));
    let Printed { core, edge, key } = printed(&lines);
    let dev = Dev { core, edge, key: key.clone() };
    dev.ok("POST", "/v1/catalog/products", &json!({"handle": "hot", "title": "Hot", "variants": [{"sku": "HOT"}]}));
    for location in ["a", "b"] {
        dev.ok("POST", "/v1/inventory/locations", &json!({"handle": location, "name": location, "kind": "store"}));
        dev.ok(
            "POST",
            "/v1/inventory/adjustments",
            &json!({"sku": "HOT", "location": location, "delta": 25, "reason": "received"}),
        );
    }
    // Kill the core (SIGKILL: no clean shutdown) while 200 checkouts race for 50 units.
    let rush_core = dev.core.clone();
    let rushing = std::thread::spawn(move || rush(&rush_core, &key, 200));
    until("the rush is under way", Duration::from_secs(30), || {
        dev.ok("GET", "/v1/inventory/levels/HOT", &Value::Null)["reserved"].as_i64() >= Some(10)
    });
    dev_process.0.kill().unwrap();
    dev_process.0.wait().unwrap();
    // A SIGKILLed `verge dev` cannot stop the edge host it started; this test does.
    let edge_listen = format!("--listen {}", dev.edge.trim_start_matches("http://"));
    std::process::Command::new("pkill").args(["-f", "--", &edge_listen]).status().unwrap();
    let before_kill = rushing.join().unwrap();
    let granted_before = before_kill.iter().filter(|&&s| s == 201).count();

    let (_restarted, lines) = start_dev(verge(&config, dir.path()));
    let dev = Dev { core: field(&lines, "core API").trim_end_matches("/v1").to_owned(), edge: dev.edge, key: dev.key };
    let level = dev.ok("GET", "/v1/inventory/levels/HOT", &Value::Null);
    let reserved = level["reserved"].as_i64().unwrap();
    assert!(reserved as usize >= granted_before, "an acknowledged reservation was lost: {level}");
    assert!(reserved <= 50 && level["available"].as_i64() == Some(50 - reserved), "{level}");
    for location in level["locations"].as_array().unwrap() {
        assert!(location["available"].as_i64().unwrap() >= 0 && location["reserved"].as_i64().unwrap() >= 0, "{level}");
    }
    // The rest of the rush, after the restart: exactly what was left is granted.
    let after = rush(&dev.core, &dev.key, 100);
    let granted_after = after.iter().filter(|&&s| s == 201).count() as i64;
    assert_eq!(granted_after, 50 - reserved, "after the restart: {after:?}");
    assert!(after.iter().all(|&s| s == 201 || s == 409), "{after:?}");
    let level = dev.ok("GET", "/v1/inventory/levels/HOT", &Value::Null);
    assert_eq!(
        (level["on_hand"].as_i64(), level["reserved"].as_i64(), level["available"].as_i64()),
        (Some(50), Some(50), Some(0))
    );
}
