//! Customers through the admin API on this run's backends (SQLite or PostgreSQL): CRUD
//! with validation, prefix search, history with actors, export, delete and erase.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::{Value, json};
use verge_core::keys::Scope;

const BASE: &str = "/v1/customers/shop";

async fn create(app: &TestApp, key: &str, body: Value) -> Value {
    let reply = app.call(Method::POST, BASE, Some(key), Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json
}

fn ids(page: &Value) -> Vec<&str> {
    page["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn crud_validates_and_needs_the_scope() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::CustomersWrite]).await;
    let reader = app.key(&[Scope::Read]).await;
    let created = create(
        &app,
        &writer,
        json!({"email": "Ann@Example.com", "name": "Ann Lee", "phone": "+4915112345678", "metadata": {"plan": "pro"}}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("cus_"));
    assert_eq!(created["email_verified"], false);
    assert_eq!(created["has_password"], false);
    assert!(created.get("password_hash").is_none());

    // The same address in another case is the same account; another project may have it.
    app.call(Method::POST, BASE, Some(&writer), Some(json!({"email": "ann@example.COM"})))
        .await
        .problem(StatusCode::CONFLICT, "email_taken");
    let other =
        app.call(Method::POST, "/v1/customers/other", Some(&writer), Some(json!({"email": "ann@example.com"}))).await;
    assert_eq!(other.status, StatusCode::CREATED);

    let bad = app
        .call(
            Method::POST,
            BASE,
            Some(&writer),
            Some(json!({"email": "b@example.com", "phone": "0151", "metadata": [1], "name": " "})),
        )
        .await;
    assert_eq!(bad.validation_fields(), ["/name", "/phone", "/metadata"]);
    app.call(Method::POST, BASE, Some(&writer), Some(json!({"email": "not-an-email"}))).await.validation_fields();
    let weak = app
        .call(Method::POST, BASE, Some(&writer), Some(json!({"email": "c@example.com", "password": "password123"})))
        .await;
    assert!(
        weak.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")["detail"]
            .as_str()
            .unwrap()
            .contains("common")
    );
    app.call(Method::POST, "/v1/customers/Bad%20Project", Some(&writer), Some(json!({"email": "d@example.com"})))
        .await
        .validation_fields();
    app.call(Method::POST, BASE, Some(&reader), Some(json!({"email": "e@example.com"})))
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
    app.call(Method::POST, BASE, None, Some(json!({"email": "e@example.com"})))
        .await
        .problem(StatusCode::UNAUTHORIZED, "unauthorized");

    let url = format!("{BASE}/{id}");
    assert_eq!(app.get(&url, Some(&reader)).await.ok()["name"], "Ann Lee");
    let patched =
        app.call(Method::PATCH, &url, Some(&writer), Some(json!({"name": null, "metadata": {"plan": "free"}}))).await;
    assert_eq!(patched.ok()["name"], Value::Null);
    assert_eq!(patched.json["phone"], "+4915112345678");
    assert_eq!(patched.json["metadata"], json!({"plan": "free"}));
    app.get(&format!("{BASE}/cus_nope"), Some(&reader)).await.problem(StatusCode::NOT_FOUND, "not_found");
    app.get(&format!("/v1/customers/other/{id}"), Some(&reader)).await.problem(StatusCode::NOT_FOUND, "not_found");

    let history = app.get(&format!("{url}/history"), Some(&reader)).await;
    let actions: Vec<&str> =
        history.ok()["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["customer.update", "customer.create"]);
    assert!(history.json["items"][0]["actor"].as_str().unwrap().starts_with("key_"));
    assert!(history.json["items"][0]["changes"].as_array().unwrap().iter().any(|c| c["path"] == "/metadata/plan"));

    assert_eq!(app.call(Method::DELETE, &url, Some(&writer), None).await.status, StatusCode::NO_CONTENT);
    app.get(&url, Some(&reader)).await.problem(StatusCode::NOT_FOUND, "not_found");
    // Delete keeps the trail as it was.
    let history = app.get(&format!("{url}/history"), Some(&reader)).await;
    let items = history.ok()["items"].as_array().unwrap();
    let deleted = items.iter().find(|e| e["action"] == "customer.delete").expect("the deletion is in the history");
    assert_eq!(deleted["before"]["email"], "Ann@Example.com");
}

#[tokio::test]
async fn search_finds_prefixes_of_email_name_phone_and_metadata_without_case_or_accents() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::CustomersWrite]).await;
    let zoe =
        create(&app, &writer, json!({"email": "zoe@example.com", "name": "Zoë Ångström", "phone": "+441234567890"}))
            .await;
    let bob = create(
        &app,
        &writer,
        json!({"email": "bob.stone@example.org", "name": "Bob Stone", "metadata": {"company": "Acme Café"}}),
    )
    .await;
    for n in 0..5 {
        create(&app, &writer, json!({"email": format!("user{n}@example.net"), "name": format!("User {n}")})).await;
    }
    let search =
        |q: &str| format!("{BASE}?q={}", url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>());
    let zoe_id = zoe["id"].as_str().unwrap();
    let bob_id = bob["id"].as_str().unwrap();
    assert_eq!(ids(app.get(&search("ZOE"), Some(&writer)).await.ok()), [zoe_id]);
    assert_eq!(ids(app.get(&search("angs"), Some(&writer)).await.ok()), [zoe_id]);
    assert_eq!(ids(app.get(&search("+44 1234"), Some(&writer)).await.ok()), [zoe_id]);
    assert_eq!(ids(app.get(&search("sto"), Some(&writer)).await.ok()), [bob_id]);
    assert_eq!(ids(app.get(&search("cafe"), Some(&writer)).await.ok()), [bob_id]);
    assert_eq!(ids(app.get(&search("example.org"), Some(&writer)).await.ok()), [bob_id]);
    assert!(ids(app.get(&search("nobody"), Some(&writer)).await.ok()).is_empty());

    // Pages of a search follow the cursor and never repeat.
    let first = app.get(&format!("{}&limit=3", search("user")), Some(&writer)).await;
    assert_eq!(ids(first.ok()).len(), 3);
    let cursor = first.json["next_cursor"].as_str().unwrap();
    let second = app.get(&format!("{}&limit=3&cursor={cursor}", search("user")), Some(&writer)).await;
    assert_eq!(ids(second.ok()).len(), 2);
    assert!(second.json.get("next_cursor").is_none());
    let all = app.get(&format!("{BASE}?limit=200"), Some(&writer)).await;
    assert_eq!(ids(all.ok()).len(), 7);
}

#[tokio::test]
async fn export_holds_everything_and_erase_leaves_only_an_opaque_trail() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let signed_up = app
        .call(
            Method::POST,
            "/auth/shop/sign-up",
            None,
            Some(json!({"email": "eve@example.com", "password": "a long passphrase here", "name": "Eve Adams"})),
        )
        .await;
    assert_eq!(signed_up.status, StatusCode::ACCEPTED, "{}", signed_up.text);
    let sign_in = app
        .call(
            Method::POST,
            "/auth/shop/sign-in",
            None,
            Some(json!({"email": "eve@example.com", "password": "a long passphrase here"})),
        )
        .await;
    sign_in.ok();
    let found = app.get(&format!("{BASE}?q=eve"), Some(&admin)).await;
    let id = ids(found.ok())[0].to_owned();

    let export = app.get(&format!("{BASE}/{id}/export"), Some(&admin)).await;
    let export = export.ok();
    assert_eq!(export["customer"]["name"], "Eve Adams");
    assert_eq!(export["sessions"].as_array().unwrap().len(), 1);
    let actions: Vec<&str> =
        export["history"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"customer.create") && actions.contains(&"customer.sign_in"), "{actions:?}");
    assert_eq!(export["notifications"][0]["kind"], "customer.verification_requested");
    assert!(export["notifications"][0]["data"].get("token").is_none(), "tokens are not customer data");
    assert!(!export.to_string().contains("argon2"), "no password hash in an export");

    let erased = app.call(Method::POST, &format!("{BASE}/{id}/erase"), Some(&admin), None).await;
    assert_eq!(erased.status, StatusCode::NO_CONTENT, "{}", erased.text);
    app.get(&format!("{BASE}/{id}"), Some(&admin)).await.problem(StatusCode::NOT_FOUND, "not_found");
    let history = app.get(&format!("{BASE}/{id}/history"), Some(&admin)).await;
    let text = history.ok().to_string();
    assert!(!text.contains("eve@example.com") && !text.contains("Eve"), "{text}");
    assert!(history.json["items"].as_array().unwrap().iter().any(|e| e["action"] == "customer.erase"));
    let notifications = app.get(&format!("/v1/notifications?subject={id}"), Some(&admin)).await;
    assert!(!notifications.ok().to_string().contains("eve@example.com"));
    // The account is gone: signing in fails like any unknown email.
    let again = app
        .call(
            Method::POST,
            "/auth/shop/sign-in",
            None,
            Some(json!({"email": "eve@example.com", "password": "a long passphrase here"})),
        )
        .await;
    again.problem(StatusCode::UNAUTHORIZED, "unauthorized");
}
