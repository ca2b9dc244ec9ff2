//! The catalog's admin API on this run's backends: products with variants and prices,
//! the category tree and collections, price lists, search, and what is published for the
//! edge. Every refusal names its field and changes nothing.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::{Value, json};
use verge_core::keys::Scope;
use verge_core::publish::{self, EdgeStore, LocalEdgeStore};
use verge_shared::catalog::{self as edge, Listing, Record};

fn tee(handle: &str, sku: &str) -> Value {
    json!({
        "handle": handle, "title": "Linen Tee", "description": "A shirt of washed linen.",
        "status": "published", "images": ["https://cdn.example/tee.jpg"],
        "options": [{"name": "size", "values": ["S", "M"]}],
        "variants": [
            {"sku": format!("{sku}-S"), "options": {"size": "S"}, "prices": [{"currency": "EUR", "amount": 2500}]},
            {"sku": format!("{sku}-M"), "options": {"size": "M"},
             "prices": [{"currency": "EUR", "amount": 2500, "sale_amount": 2000}, {"currency": "JPY", "amount": 4000}]}
        ]
    })
}

async fn count(app: &TestApp, key: &str) -> usize {
    app.get("/v1/catalog/products?limit=200", Some(key)).await.ok()["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn bad_products_are_refused_at_their_field_and_change_nothing() {
    let app = TestApp::new().await;
    let key = app.key(&[Scope::CatalogWrite]).await;
    let created = app.call(Method::POST, "/v1/catalog/products", Some(&key), Some(tee("tee", "TEE"))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    assert_eq!(created.json["variants"][1]["title"], "M");

    let mut bad = tee("other", "OTHER");
    bad["variants"][0]["prices"][0]["amount"] = json!(-1);
    bad["variants"][1]["prices"][1]["currency"] = json!("XYZ");
    bad["variants"][1]["prices"][0]["sale_amount"] = json!(9999);
    bad["categories"] = json!(["nowhere"]);
    let reply = app.call(Method::POST, "/v1/catalog/products", Some(&key), Some(bad)).await;
    assert_eq!(
        reply.validation_fields(),
        [
            "/variants/0/prices/0/amount",
            "/variants/1/prices/0/sale_amount",
            "/variants/1/prices/1/currency",
            "/categories/0",
        ]
    );
    assert!(reply.text.contains("not an ISO 4217"), "{}", reply.text);

    // A handle or SKU another product has: a conflict naming it.
    let reply = app.call(Method::POST, "/v1/catalog/products", Some(&key), Some(tee("tee", "NEW"))).await;
    assert!(reply.problem(StatusCode::CONFLICT, "handle_exists")["detail"].as_str().unwrap().contains(&id));
    let reply = app.call(Method::POST, "/v1/catalog/products", Some(&key), Some(tee("new", "TEE"))).await;
    assert!(reply.problem(StatusCode::CONFLICT, "sku_exists")["detail"].as_str().unwrap().contains("TEE-S"));
    assert_eq!(count(&app, &key).await, 1, "no refused product was stored");

    // A replacement that fails leaves the product as it was.
    let mut broken = tee("tee", "TEE");
    broken["variants"] = json!([]);
    let reply = app.call(Method::PUT, &format!("/v1/catalog/products/{id}"), Some(&key), Some(broken)).await;
    assert_eq!(reply.validation_fields(), ["/variants"]);
    let stored = app.get(&format!("/v1/catalog/products/{id}"), Some(&key)).await;
    assert_eq!(stored.ok()["variants"].as_array().unwrap().len(), 2);

    // A read-only key cannot write; no key at all is a 401.
    let reader = app.key(&[Scope::Read]).await;
    app.call(Method::POST, "/v1/catalog/products", Some(&reader), Some(tee("x", "X")))
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
    app.get("/v1/catalog/products", None).await.problem(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn categories_form_a_tree_that_never_cycles() {
    let app = TestApp::new().await;
    let key = app.key(&[Scope::CatalogWrite]).await;
    for (handle, parent) in [("clothing", None), ("tops", Some("clothing")), ("tees", Some("tops"))] {
        let body = json!({"handle": handle, "title": handle.to_uppercase(), "parent": parent});
        let reply = app.call(Method::POST, "/v1/catalog/categories", Some(&key), Some(body)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    }
    let reply =
        app.call(Method::PATCH, "/v1/catalog/categories/clothing", Some(&key), Some(json!({"parent": "tees"}))).await;
    assert_eq!(reply.validation_fields(), ["/parent"]);
    assert!(reply.text.contains("clothing → tops → tees → clothing"), "{}", reply.text);
    let reply =
        app.call(Method::PATCH, "/v1/catalog/categories/tops", Some(&key), Some(json!({"parent": "tops"}))).await;
    assert_eq!(reply.validation_fields(), ["/parent"]);
    assert_eq!(app.get("/v1/catalog/categories/clothing", Some(&key)).await.ok()["parent"], Value::Null);

    // Moving to the top is a `null` parent; a category with children cannot be deleted.
    let moved = app.call(Method::PATCH, "/v1/catalog/categories/tees", Some(&key), Some(json!({"parent": null}))).await;
    assert_eq!(moved.ok().get("parent"), None);
    app.call(Method::DELETE, "/v1/catalog/categories/clothing", Some(&key), None)
        .await
        .problem(StatusCode::CONFLICT, "category_has_children");
    let dup = app
        .call(Method::POST, "/v1/catalog/categories", Some(&key), Some(json!({"handle": "tops", "title": "x"})))
        .await;
    dup.problem(StatusCode::CONFLICT, "handle_exists");
    let listed = app.get("/v1/catalog/categories?limit=2", Some(&key)).await;
    let handles: Vec<&str> =
        listed.ok()["items"].as_array().unwrap().iter().map(|c| c["handle"].as_str().unwrap()).collect();
    assert_eq!(handles, ["clothing", "tees"]);
    let cursor = listed.json["next_cursor"].as_str().unwrap();
    let rest = app.get(&format!("/v1/catalog/categories?cursor={cursor}"), Some(&key)).await;
    assert_eq!(rest.ok()["items"][0]["handle"], "tops");

    // The audit trail holds every change.
    let admin = app.admin().await;
    let audit = app.get("/v1/audit-log?target_type=category", Some(&admin)).await;
    let actions: Vec<&str> =
        audit.ok()["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["category.update", "category.create", "category.create", "category.create"],
        "refusals are not audited"
    );
}

#[tokio::test]
async fn search_and_filters_find_products_by_word_status_and_group() {
    let app = TestApp::new().await;
    let key = app.key(&[Scope::CatalogWrite]).await;
    app.call(Method::POST, "/v1/catalog/collections", Some(&key), Some(json!({"handle": "summer", "title": "Summer"})))
        .await
        .ok();
    for (handle, title, description, status, collections) in [
        ("linen-tee", "Linen Tee", "Washed, soft.", "published", json!(["summer"])),
        ("wool-jumper", "Wool Jumper", "Washed merino.", "draft", json!([])),
        ("linen-trousers", "Linen Trousers", "Wide legs.", "archived", json!(["summer"])),
    ] {
        let mut body = tee(handle, &handle.to_uppercase());
        body["title"] = json!(title);
        body["description"] = json!(description);
        body["status"] = json!(status);
        body["collections"] = collections;
        app.call(Method::POST, "/v1/catalog/products", Some(&key), Some(body)).await.ok();
    }
    let handles = |reply: &common::Reply| -> Vec<String> {
        reply.json["items"].as_array().unwrap().iter().map(|p| p["handle"].as_str().unwrap().to_owned()).collect()
    };
    let found = app.get("/v1/catalog/products?q=line", Some(&key)).await;
    assert_eq!(handles(&found), ["linen-tee", "linen-trousers"], "{}", found.text);
    let found = app.get("/v1/catalog/products?q=linen%20trou", Some(&key)).await;
    assert_eq!(handles(&found), ["linen-trousers"]);
    let found = app.get("/v1/catalog/products?q=washed&status=draft", Some(&key)).await;
    assert_eq!(handles(&found), ["wool-jumper"]);
    let found = app.get("/v1/catalog/products?collection=summer&status=published", Some(&key)).await;
    assert_eq!(handles(&found), ["linen-tee"]);
    // Query syntax of either database is plain text here.
    let found = app.get("/v1/catalog/products?q=linen%22%20OR%20*", Some(&key)).await;
    assert!(handles(&found).is_empty(), "{}", found.text);
    app.get("/v1/catalog/products?status=gone", Some(&key)).await.validation_fields();
    assert_eq!(app.get("/v1/catalog/products?q=%26%26", Some(&key)).await.validation_fields(), ["q"]);
}

async fn published(app: &TestApp) -> (tempfile::TempDir, LocalEdgeStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalEdgeStore::open(&dir.path().join("kv.db")).await.unwrap();
    let sources = verge_core::server::edge_sources(&app.app.state.config);
    publish::publish_to(&app.app.state.db, &sources, &store, &()).await.unwrap();
    (dir, store)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

async fn edge_json(store: &LocalEdgeStore, key: &str, at: u64) -> Option<Value> {
    let bytes = store.get(key).await.unwrap()?;
    let segment = Record::decode_at(&bytes, at).unwrap()?;
    Some(serde_json::from_slice(&segment.body).unwrap())
}

#[tokio::test]
async fn only_published_products_reach_the_edge_with_their_listings_and_price_lists() {
    let app = TestApp::new().await;
    let key = app.key(&[Scope::CatalogWrite]).await;
    for body in [
        json!({"handle": "clothing", "title": "Clothing"}),
        json!({"handle": "tops", "title": "Tops", "parent": "clothing"}),
    ] {
        app.call(Method::POST, "/v1/catalog/categories", Some(&key), Some(body)).await.ok();
    }
    let mut shirt = tee("tee", "TEE");
    shirt["categories"] = json!(["tops"]);
    let id = app.call(Method::POST, "/v1/catalog/products", Some(&key), Some(shirt.clone())).await.ok()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut draft = tee("secret", "SECRET");
    draft["status"] = json!("draft");
    draft["categories"] = json!(["tops"]);
    app.call(Method::POST, "/v1/catalog/products", Some(&key), Some(draft)).await.ok();
    let starts = now() + 3_600_000;
    let list = json!({"name": "Summer sale", "starts_at": jiff::Timestamp::from_millisecond(starts as i64).unwrap().to_string(),
        "ends_at": jiff::Timestamp::from_millisecond(starts as i64 + 3_600_000).unwrap().to_string(),
        "prices": [{"sku": "TEE-S", "currency": "EUR", "amount": 1500}]});
    let created = app.call(Method::POST, "/v1/catalog/price-lists", Some(&key), Some(list)).await;
    assert_eq!(created.ok()["state"], "scheduled");
    let refused = app
        .call(Method::POST, "/v1/catalog/price-lists", Some(&key), Some(json!({"name": "x", "starts_at": "2030-01-01T00:00:00Z",
            "prices": [{"sku": "TEE-S", "currency": "USD", "amount": 1}, {"sku": "NOPE", "currency": "EUR", "amount": 1}]})))
        .await;
    assert_eq!(refused.validation_fields(), ["/prices/0/currency", "/prices/1/sku"]);

    let (_dir, store) = published(&app).await;
    let product =
        edge_json(&store, &edge::product_key("tee"), now()).await.expect("the published product is at the edge");
    assert_eq!(product["title"], "Linen Tee");
    assert_eq!(product["categories"], json!([{"handle": "tops", "title": "Tops"}]));
    assert_eq!(
        product["variants"][1]["prices"][0],
        json!({"currency": "EUR", "amount": 2000, "compare_at_amount": 2500})
    );
    assert_eq!(product["price_range"]["EUR"], json!({"min": 2000, "max": 2500}));
    assert_eq!(product["availability"], "out_of_stock", "no stock has been received");
    let during = edge_json(&store, &edge::product_key("tee"), starts + 1).await.unwrap();
    assert_eq!(
        during["variants"][0]["prices"][0],
        json!({"currency": "EUR", "amount": 1500, "compare_at_amount": 2500})
    );
    let after = edge_json(&store, &edge::product_key("tee"), starts + 3_600_000).await.unwrap();
    assert_eq!(after["variants"][0]["prices"][0]["amount"], 2500);
    assert!(store.get(&edge::product_key("secret")).await.unwrap().is_none(), "a draft never reaches the edge");
    for listing in ["tops", "clothing"] {
        let page = edge_json(&store, &edge::page_key(Listing::Category, listing, 1), now()).await.unwrap();
        let handles: Vec<&str> =
            page["products"].as_array().unwrap().iter().map(|p| p["handle"].as_str().unwrap()).collect();
        assert_eq!(handles, ["tee"], "{listing}: {page}");
        assert_eq!(
            (page["page"].as_u64(), page["pages"].as_u64(), page["total"].as_u64()),
            (Some(1), Some(1), Some(1))
        );
    }
    let clothing = edge_json(&store, &edge::page_key(Listing::Category, "clothing", 1), now()).await.unwrap();
    assert_eq!(clothing["listing"]["children"], json!([{"handle": "tops", "title": "Tops"}]));

    // Archived: gone from the edge and from its listings.
    shirt["status"] = json!("archived");
    app.call(Method::PUT, &format!("/v1/catalog/products/{id}"), Some(&key), Some(shirt)).await.ok();
    let (_dir, store) = published(&app).await;
    assert!(store.get(&edge::product_key("tee")).await.unwrap().is_none());
    let page = edge_json(&store, &edge::page_key(Listing::Category, "tops", 1), now()).await.unwrap();
    assert_eq!(page["products"], json!([]));
}

#[tokio::test]
async fn a_listing_is_paged_and_shrinks_without_leaving_pages_behind() {
    let app = TestApp::new().await;
    let key = app.key(&[Scope::CatalogWrite]).await;
    app.call(Method::POST, "/v1/catalog/collections", Some(&key), Some(json!({"handle": "all", "title": "All"})))
        .await
        .ok();
    let total = edge::PAGE_SIZE + 3;
    let mut ids = Vec::new();
    for n in 0..total {
        let mut body = tee(&format!("p{n:03}"), &format!("P{n:03}"));
        body["title"] = json!(format!("Product {n:03}"));
        body["collections"] = json!(["all"]);
        ids.push(
            app.call(Method::POST, "/v1/catalog/products", Some(&key), Some(body)).await.ok()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let store = LocalEdgeStore::open(&dir.path().join("kv.db")).await.unwrap();
    let sources = verge_core::server::edge_sources(&app.app.state.config);
    publish::publish_to(&app.app.state.db, &sources, &store, &()).await.unwrap();
    let second = edge_json(&store, &edge::page_key(Listing::Collection, "all", 2), now()).await.unwrap();
    assert_eq!(second["products"].as_array().unwrap().len(), 3);
    assert_eq!(second["products"][0]["title"], format!("Product {:03}", edge::PAGE_SIZE));
    assert_eq!(second["pages"], 2);
    for id in &ids[..4] {
        app.call(Method::DELETE, &format!("/v1/catalog/products/{id}"), Some(&key), None).await;
    }
    publish::publish_to(&app.app.state.db, &sources, &store, &()).await.unwrap();
    assert!(store.get(&edge::page_key(Listing::Collection, "all", 2)).await.unwrap().is_none(), "page 2 is gone");
    let first = edge_json(&store, &edge::page_key(Listing::Collection, "all", 1), now()).await.unwrap();
    assert_eq!((first["total"].as_u64(), first["pages"].as_u64()), (Some(total as u64 - 4), Some(1)));
}

async fn import(app: &TestApp, key: &str, query: &str, csv: &str) -> common::Reply {
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri(format!("/v1/catalog/products/import{query}"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "text/csv")
        .body(axum::body::Body::from(csv.to_owned()))
        .unwrap();
    app.send(request).await
}

#[tokio::test]
async fn a_csv_import_reports_bad_lines_changes_nothing_and_an_export_imports_back() {
    let app = TestApp::new().await;
    let key = app.key(&[Scope::CatalogWrite]).await;
    app.call(Method::POST, "/v1/catalog/categories", Some(&key), Some(json!({"handle": "tops", "title": "Tops"})))
        .await
        .ok();
    let header =
        "handle,title,description,status,categories,option1_name,option1_value,sku,price:EUR,sale_price:EUR,price:JPY";
    let bad = format!(
        "{header}\n\
         tee,Tee,\"Soft, washed\",published,tops,size,S,TEE-S,2500,,\n\
         tee,,,,,,M,TEE-M,-5,,4000\n\
         mug,Mug,,draft,nowhere,,,MUG,abc,,\n\
         cap,Cap,,published,,,,CAP,900,950,\n"
    );
    let reply = import(&app, &key, "", &bad).await;
    assert_eq!(
        reply.validation_fields(),
        ["line 3 /variants/1/prices/0/amount", "line 4 price:EUR", "line 5 /variants/0/prices/0/sale_amount",]
    );
    assert_eq!(count(&app, &key).await, 0, "a refused file writes nothing");

    let reply = import(&app, &key, "?on_error=skip", &bad).await;
    assert_eq!((reply.ok()["created"].as_u64(), reply.json["errors"].as_array().unwrap().len()), (Some(0), 3));
    let good = format!(
        "{header}\n\
         tee,Tee,\"Soft, washed\",published,tops,size,S,TEE-S,2500,,\n\
         tee,,,,,,M,TEE-M,2500,1999,4000\n\
         mug,=Mug,,draft,,,,MUG,1200,,\n"
    );
    let reply = import(&app, &key, "", &good).await;
    assert_eq!((reply.ok()["created"].as_u64(), reply.json["updated"].as_u64()), (Some(2), Some(0)), "{}", reply.text);
    let listed = app.get("/v1/catalog/products?q=tee", Some(&key)).await;
    let id = listed.ok()["items"][0]["id"].as_str().unwrap().to_owned();
    let tee = app.get(&format!("/v1/catalog/products/{id}"), Some(&key)).await;
    assert_eq!(
        tee.ok()["variants"][1]["prices"],
        json!([
            {"currency": "EUR", "amount": 2500, "sale_amount": 1999}, {"currency": "JPY", "amount": 4000}
        ])
    );
    assert_eq!(tee.json["categories"], json!(["tops"]));

    // Export, import back: nothing changes, and the second export is the first.
    let export = app.get("/v1/catalog/products/export", Some(&key)).await;
    assert_eq!(export.status, StatusCode::OK);
    assert!(export.text.contains("\"'=Mug\""), "formulas are guarded: {}", export.text);
    let again = import(&app, &key, "", &export.text).await;
    assert_eq!((again.ok()["created"].as_u64(), again.json["updated"].as_u64()), (Some(0), Some(2)));
    assert_eq!(app.get("/v1/catalog/products/export", Some(&key)).await.text, export.text);
    let after = app.get(&format!("/v1/catalog/products/{id}"), Some(&key)).await;
    assert_eq!(after.json["variants"], tee.json["variants"], "variants keep their ids and prices");
    assert_eq!(import(&app, &key, "", "handle,colour\n").await.validation_fields(), ["line 1"]);
}
