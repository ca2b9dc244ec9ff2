//! Admin API keys over HTTP: creation shown once, listing with pagination, revocation,
//! expiry, last use, and the audit trail each write leaves.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::json;
use verge_core::keys::Scope;

#[tokio::test]
async fn a_created_key_works_and_its_token_is_never_shown_again() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let created = app
        .call(Method::POST, "/v1/keys", Some(&admin), Some(json!({"name": " ci ", "scopes": ["read", "read"]})))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let token = created.json["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("verge_") && token.len() == 46, "{token}");
    let key = &created.json["key"];
    assert_eq!(key["name"], "ci");
    assert_eq!(key["scopes"], json!(["read"]));
    assert_eq!(key["prefix"], &token[..12]);
    let id = key["id"].as_str().unwrap();
    assert!(id.starts_with("key_"));

    app.get("/v1/audit-log", Some(&token)).await.ok();
    let fetched = app.get(&format!("/v1/keys/{id}"), Some(&admin)).await;
    assert!(!fetched.text.contains(&token[12..]), "the secret leaked: {}", fetched.text);
    let listed = app.get("/v1/keys", Some(&admin)).await;
    assert!(!listed.text.contains(&token[12..]));
}

#[tokio::test]
async fn revoked_and_expired_keys_stop_working() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let reader = app.call(Method::POST, "/v1/keys", Some(&admin), Some(json!({"name": "r", "scopes": ["read"]}))).await;
    let (token, id) = (reader.json["token"].as_str().unwrap(), reader.json["key"]["id"].as_str().unwrap());
    app.get("/v1/audit-log", Some(token)).await.ok();

    let revoked = app.call(Method::DELETE, &format!("/v1/keys/{id}"), Some(&admin), None).await;
    assert!(revoked.ok()["revoked_at"].is_string());
    let detail =
        app.get("/v1/audit-log", Some(token)).await.problem(StatusCode::UNAUTHORIZED, "unauthorized")["detail"].clone();
    assert_eq!(detail, "the API key has been revoked");
    // Revoking twice is a no-op that still succeeds.
    app.call(Method::DELETE, &format!("/v1/keys/{id}"), Some(&admin), None).await.ok();
    // Gone from its own address, still in the full list.
    app.get(&format!("/v1/keys/{id}"), Some(&admin)).await.problem(StatusCode::GONE, "key_revoked");
    let all = app.get("/v1/keys?include_inactive=true", Some(&admin)).await;
    assert!(all.ok()["items"].as_array().unwrap().iter().any(|k| k["id"] == id));

    let past = app
        .call(
            Method::POST,
            "/v1/keys",
            Some(&admin),
            Some(json!({"name": "old", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"})),
        )
        .await;
    past.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_millis(300)).to_string();
    let short = app
        .call(
            Method::POST,
            "/v1/keys",
            Some(&admin),
            Some(json!({"name": "s", "scopes": ["read"], "expires_at": soon})),
        )
        .await;
    let short_token = short.json["token"].as_str().unwrap();
    app.get("/v1/audit-log", Some(short_token)).await.ok();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let expired = app.get("/v1/audit-log", Some(short_token)).await;
    assert_eq!(expired.problem(StatusCode::UNAUTHORIZED, "unauthorized")["detail"], "the API key has expired");
}

#[tokio::test]
async fn the_last_admin_key_cannot_be_revoked() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let list = app.get("/v1/keys", Some(&admin)).await;
    let id = list.json["items"][0]["id"].as_str().unwrap().to_owned();
    let refused = app.call(Method::DELETE, &format!("/v1/keys/{id}"), Some(&admin), None).await;
    refused.problem(StatusCode::CONFLICT, "last_admin_key");
    app.get("/v1/keys", Some(&admin)).await.ok();

    let second = app.admin().await;
    app.call(Method::DELETE, &format!("/v1/keys/{id}"), Some(&second), None).await.ok();
    app.get("/v1/keys", Some(&admin)).await.problem(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn unknown_keys_are_404() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    app.get("/v1/keys/key_nope", Some(&admin)).await.problem(StatusCode::NOT_FOUND, "not_found");
    app.call(Method::DELETE, "/v1/keys/key_nope", Some(&admin), None).await.problem(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn lists_page_through_every_key_once_newest_first() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    for i in 0..7 {
        app.call(Method::POST, "/v1/keys", Some(&admin), Some(json!({"name": format!("k{i}"), "scopes": ["read"]})))
            .await
            .ok();
    }
    let mut seen = Vec::new();
    let mut uri = "/v1/keys?limit=3".to_owned();
    loop {
        let page = app.get(&uri, Some(&admin)).await;
        let items = page.ok()["items"].as_array().unwrap().clone();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|k| k["id"].as_str().unwrap().to_owned()));
        match page.json["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/keys?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8, "7 created + the admin key");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no repeats");

    app.get("/v1/keys?limit=0", Some(&admin)).await.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    app.get("/v1/keys?cursor=garbage", Some(&admin)).await.problem(StatusCode::BAD_REQUEST, "invalid_cursor");
    app.get("/v1/keys?limit=abc", Some(&admin)).await.problem(StatusCode::BAD_REQUEST, "invalid_query");
}

#[tokio::test]
async fn revoked_keys_are_listed_only_on_request() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let other = app.call(Method::POST, "/v1/keys", Some(&admin), Some(json!({"name": "o", "scopes": ["read"]}))).await;
    let id = other.json["key"]["id"].as_str().unwrap();
    app.call(Method::DELETE, &format!("/v1/keys/{id}"), Some(&admin), None).await.ok();
    let active = app.get("/v1/keys", Some(&admin)).await;
    assert!(!active.text.contains(id));
    let all = app.get("/v1/keys?include_inactive=true", Some(&admin)).await;
    assert!(all.text.contains(id));
}

#[tokio::test]
async fn writes_leave_an_audit_trail_with_actor_and_diff() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let admin_id = app.get("/v1/keys", Some(&admin)).await.json["items"][0]["id"].as_str().unwrap().to_owned();
    let created =
        app.call(Method::POST, "/v1/keys", Some(&admin), Some(json!({"name": "a", "scopes": ["read"]}))).await;
    let id = created.json["key"]["id"].as_str().unwrap();
    app.call(Method::DELETE, &format!("/v1/keys/{id}"), Some(&admin), None).await.ok();

    let log = app.get(&format!("/v1/audit-log?target_id={id}"), Some(&admin)).await;
    let entries = log.ok()["items"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let (revoke, create) = (&entries[0], &entries[1]);
    assert_eq!(revoke["action"], "key.revoke");
    assert_eq!(revoke["actor"], admin_id);
    assert!(revoke["before"]["revoked_at"].is_null());
    assert!(revoke["after"]["revoked_at"].is_string());
    assert_eq!(create["action"], "key.create");
    assert!(create["before"].is_null());
    assert_eq!(create["after"]["name"], "a");
    assert!(!log.text.contains("secret_hash") && !log.text.contains("token"));

    let by_actor = app.get(&format!("/v1/audit-log?actor={admin_id}"), Some(&admin)).await;
    assert_eq!(by_actor.ok()["items"].as_array().unwrap().len(), 2);

    // A `read` key sees that the key was made and revoked, by whom, but not the key itself.
    let prefix = created.json["key"]["prefix"].as_str().unwrap();
    let reader = app.key(&[Scope::Read]).await;
    let seen = app.get(&format!("/v1/audit-log?target_id={id}"), Some(&reader)).await;
    let entries = seen.ok()["items"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for entry in entries {
        assert_eq!((&entry["before"], &entry["after"], &entry["changes"]), (&json!(null), &json!(null), &json!([])));
        assert_eq!(entry["actor"], admin_id);
    }
    assert!(!seen.text.contains(prefix), "{}", seen.text);
}

#[tokio::test]
async fn last_use_is_recorded() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let reader = app.key(&[Scope::Read]).await;
    app.get("/v1/audit-log", Some(&reader)).await.ok();
    // The write happens off the request path; give it a moment.
    for _ in 0..50 {
        let keys = app.get("/v1/keys", Some(&admin)).await;
        let reader_key =
            keys.json["items"].as_array().unwrap().iter().find(|k| k["scopes"] == json!(["read"])).cloned();
        if reader_key.is_some_and(|k| k["last_used_at"].is_string()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("last_used_at was never set");
}

#[tokio::test]
async fn concurrent_revokes_never_remove_the_last_admin_key() {
    use verge_core::audit::Actor;
    use verge_core::keys::{self, NewKey};
    let app = TestApp::new().await;
    let db = &app.app.state.db;
    let mut survivors: Vec<String> = Vec::new();
    for round in 0..10 {
        let mut pair = Vec::new();
        for name in ["one", "two"] {
            let new = NewKey { name: format!("{name}-{round}"), scopes: vec![Scope::Admin], expires_at: None };
            pair.push(keys::create(db, new, &Actor::System).await.unwrap().key.id);
        }
        // The last round's survivor goes, leaving the pair as the only admin keys (a fresh
        // app has none).
        for id in survivors.drain(..) {
            keys::revoke(db, &id, &Actor::System).await.unwrap();
        }
        let (first, second) =
            tokio::join!(keys::revoke(db, &pair[0], &Actor::System), keys::revoke(db, &pair[1], &Actor::System));
        let refused = [&first, &second].iter().filter(|r| matches!(r, Err(keys::KeyError::LastAdminKey(_)))).count();
        assert_eq!(
            (u8::from(first.is_ok()) + u8::from(second.is_ok()), refused),
            (1, 1),
            "round {round}: {first:?} {second:?}"
        );
        survivors.extend(pair.into_iter().zip([first, second]).filter(|(_, r)| r.is_err()).map(|(id, _)| id));
    }
}

/// Another replica's revocation reaches the database only: this process must stop
/// trusting the key it remembers within a second (core/src/memo.rs).
#[tokio::test]
async fn a_key_revoked_elsewhere_stops_working_within_a_second() {
    let app = TestApp::new().await;
    let reader = app.key(&[Scope::Read]).await;
    assert_eq!(app.get("/v1/audit-log", Some(&reader)).await.status, StatusCode::OK);
    sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE secret_hash = $2")
        .bind(verge_core::time::now_millis().0)
        .bind(verge_shared::sha256_hex(reader.as_bytes()))
        .execute(app.app.state.db.pool())
        .await
        .unwrap();
    let revoked_at = std::time::Instant::now();
    while app.get("/v1/audit-log", Some(&reader)).await.status == StatusCode::OK {
        assert!(revoked_at.elapsed() < std::time::Duration::from_millis(1_500), "still trusted after 1.5 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(app.get("/v1/audit-log", Some(&reader)).await.status, StatusCode::UNAUTHORIZED);
}
