//! `/v1/edge/settings`: validated, audited, and published to edge KV in the format the edge
//! reads, in the same transaction as an outbox row.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::json;
use verge_core::keys::Scope;
use verge_core::publish::{self, EdgeStore, LocalEdgeStore};
use verge_shared::kv::{MANIFEST_KEY, Manifest, versioned_key};
use verge_shared::settings::{DATASET, EdgeSettings, PART};

async fn published(store: &LocalEdgeStore) -> (u64, EdgeSettings) {
    let manifest = Manifest::decode(&store.get(MANIFEST_KEY).await.unwrap().unwrap()).unwrap();
    let version = manifest.get(DATASET).expect("settings in the manifest").version;
    let value = store.get(&versioned_key(DATASET, version, PART)).await.unwrap().unwrap();
    (version, EdgeSettings::decode(&value).unwrap())
}

#[tokio::test]
async fn settings_default_change_with_an_audit_entry_and_reach_the_edge_store() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let reader = app.key(&[Scope::Read]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = LocalEdgeStore::open(&dir.path().join("kv.db")).await.unwrap();
    let db = &app.app.state.db;

    assert_eq!(app.get("/v1/edge/settings", Some(&reader)).await.ok(), &json!({"report_not_found": true}));
    publish::publish_to(db, &verge_core::server::edge_sources(&verge_core::Config::default()), &store, &())
        .await
        .unwrap();
    let (version, first) = published(&store).await;
    assert_eq!((version, first.report_not_found), (1, true), "defaults are published");
    // The visitor-hash salt is a fresh 256-bit secret, published but never shown by the API.
    assert_eq!(first.visitor_salt.len(), 64, "{first:?}");
    assert!(first.visitor_salt.bytes().all(|b| b.is_ascii_hexdigit()));
    let shown = app.get("/v1/edge/settings", Some(&admin)).await.ok().to_string();
    assert!(!shown.contains(&first.visitor_salt), "{shown}");

    let reply =
        app.call(Method::PUT, "/v1/edge/settings", Some(&admin), Some(json!({"report_not_found": false}))).await;
    assert_eq!(reply.ok(), &json!({"report_not_found": false}));
    let outbox: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE dataset = 'edge/settings'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(outbox.0, 1, "the change and its outbox row commit together");
    publish::publish_to(db, &verge_core::server::edge_sources(&verge_core::Config::default()), &store, &())
        .await
        .unwrap();
    let expected = EdgeSettings { report_not_found: false, visitor_salt: first.visitor_salt.clone() };
    assert_eq!(published(&store).await, (2, expected), "the salt stays across publishes");

    let audit = app.get("/v1/audit-log?target_type=edge_settings", Some(&admin)).await;
    let entry = &audit.ok()["items"][0];
    assert_eq!(entry["action"], "edge.settings.update");
    assert_eq!(entry["before"], json!({"report_not_found": true}));
    assert_eq!(entry["after"], json!({"report_not_found": false}));

    // Writing the same settings again changes nothing: no audit entry, no new version.
    app.call(Method::PUT, "/v1/edge/settings", Some(&admin), Some(json!({"report_not_found": false}))).await.ok();
    let audit = app.get("/v1/audit-log?target_type=edge_settings", Some(&admin)).await;
    assert_eq!(audit.ok()["items"].as_array().unwrap().len(), 1);
    publish::publish_to(db, &verge_core::server::edge_sources(&verge_core::Config::default()), &store, &())
        .await
        .unwrap();
    assert_eq!(published(&store).await.0, 2);
    store.close().await;
}

#[tokio::test]
async fn bad_settings_are_refused_and_change_nothing() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    for body in [json!({"report_not_found": "no"}), json!({"report_not_found": true, "extra": 1}), json!({})] {
        let reply = app.call(Method::PUT, "/v1/edge/settings", Some(&admin), Some(body.clone())).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let reader = app.key(&[Scope::Read]).await;
    let reply =
        app.call(Method::PUT, "/v1/edge/settings", Some(&reader), Some(json!({"report_not_found": false}))).await;
    reply.problem(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(app.get("/v1/edge/settings", Some(&admin)).await.ok(), &json!({"report_not_found": true}));
}

#[tokio::test]
async fn concurrent_changes_all_succeed() {
    // Each change reads then writes in one transaction; on SQLite a deferred transaction
    // would fail with `database is locked` when another writer slipped in between.
    let app = std::sync::Arc::new(TestApp::new().await);
    let admin = app.admin().await;
    let changes = (0..24).map(|i| {
        let (app, admin) = (app.clone(), admin.clone());
        tokio::spawn(async move {
            let body = json!({"report_not_found": i % 2 == 0});
            app.call(Method::PUT, "/v1/edge/settings", Some(&admin), Some(body)).await.status
        })
    });
    for status in futures_util::future::join_all(changes).await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
}
