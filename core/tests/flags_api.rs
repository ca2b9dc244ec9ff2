//! The flags admin API on whichever backend this run tests: environments, flagd import and
//! export, client keys, scopes and the audit trail.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::{Value, json};
use verge_core::keys::Scope;
use verge_core::publish::{self, EdgeStore, LocalEdgeStore};
use verge_shared::kv::{MANIFEST_KEY, Manifest, versioned_key};

fn flag(default: &str) -> Value {
    json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": default})
}

#[tokio::test]
async fn environments_import_export_and_publish() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::FlagsWrite]).await;
    let reader = app.key(&[Scope::Read]).await;
    let create = |body: Value| app.call(Method::POST, "/v1/flags/environments", Some(&writer), Some(body));

    assert_eq!(create(json!({"project": "web", "name": "production"})).await.status, StatusCode::CREATED);
    create(json!({"project": "web", "name": "production"})).await.problem(StatusCode::CONFLICT, "environment_exists");
    let bad = create(json!({"project": "Web App", "name": "-x"})).await;
    assert_eq!(bad.validation_fields(), ["project", "name"]);
    let reply =
        app.call(Method::POST, "/v1/flags/environments", Some(&reader), Some(json!({"project": "a", "name": "b"})));
    reply.await.problem(StatusCode::FORBIDDEN, "forbidden");

    let path = "/v1/flags/environments/web/production/flagd";
    let document = json!({"flags": {"checkout": flag("off"), "search": flag("on")}, "metadata": {"team": "web"}});
    let imported = app.call(Method::PUT, path, Some(&writer), Some(document.clone())).await;
    assert_eq!(imported.ok()["environment"]["flags"], 2);
    assert_eq!(app.get(path, Some(&reader)).await.ok(), &document, "export gives back what was imported");

    // Broken sets change nothing: the shape, and every unusable rule, located.
    let shape = app.call(
        Method::PUT,
        path,
        Some(&writer),
        Some(json!({"flags": {"x": {"state": "ON", "variants": {"a": 1}}}})),
    );
    assert_eq!(
        shape.await.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")["errors"][0]["field"],
        "/flags/x/state"
    );
    let rules = json!({"flags": {
        "a": {"state": "ENABLED", "variants": {"on": true}, "targeting": {"nope": [1]}},
        "b": {"state": "ENABLED", "variants": {"on": true}, "targeting": {"if": [{"$ref": "missing"}, "on"]}},
    }});
    let refused = app.call(Method::PUT, path, Some(&writer), Some(rules)).await;
    assert_eq!(refused.validation_fields(), ["/flags/a/targeting", "/flags/b/targeting"]);
    assert_eq!(app.get(path, Some(&reader)).await.ok(), &document);
    app.call(Method::PUT, "/v1/flags/environments/web/nope/flagd", Some(&writer), Some(document.clone()))
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");

    // The audit trail keeps both versions.
    let admin = app.admin().await;
    let audit = app.get("/v1/audit-log?target_type=flag_environment", Some(&admin)).await;
    let entry = &audit.ok()["items"][0];
    assert_eq!((&entry["action"], &entry["after"]), (&json!("flags.import"), &document));
    assert_eq!(entry["before"], json!({"flags": {}}));

    // Published: the environment's dataset holds the set the edge evaluates.
    let dir = tempfile::tempdir().unwrap();
    let store = LocalEdgeStore::open(&dir.path().join("kv.db")).await.unwrap();
    publish::publish_to(
        &app.app.state.db,
        &verge_core::server::edge_sources(&verge_core::Config::default()),
        &store,
        &(),
    )
    .await
    .unwrap();
    let manifest = Manifest::decode(&store.get(MANIFEST_KEY).await.unwrap().unwrap()).unwrap();
    let version = manifest.get("flags/web/production").expect("the environment is in the manifest").version;
    let stored = store.get(&versioned_key("flags/web/production", version, "flagd")).await.unwrap().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&stored).unwrap(), document);
    store.close().await;
}

#[tokio::test]
async fn client_keys_are_shown_once_published_hashed_and_revocable() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    app.call(Method::POST, "/v1/flags/environments", Some(&admin), Some(json!({"project": "web", "name": "dev"})))
        .await
        .ok();
    let keys = "/v1/flags/environments/web/dev/client-keys";
    let created = app.call(Method::POST, keys, Some(&admin), Some(json!({"name": "web app"}))).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let token = created.json["token"].as_str().unwrap().to_owned();
    let id = created.json["key"]["id"].as_str().unwrap().to_owned();
    let listed = app.get(keys, Some(&admin)).await;
    assert_eq!(listed.ok()["items"][0]["id"], id.as_str());
    assert!(!listed.text.contains(&token), "tokens are never listed");

    let dir = tempfile::tempdir().unwrap();
    let store = LocalEdgeStore::open(&dir.path().join("kv.db")).await.unwrap();
    let db = &app.app.state.db;
    publish::publish_to(db, &verge_core::server::edge_sources(&verge_core::Config::default()), &store, &())
        .await
        .unwrap();
    let record = format!("flagkeys/{}", verge_shared::flags::client_key_hash(&token));
    assert_eq!(store.get(&record).await.unwrap().as_deref(), Some(&b"flags/web/dev"[..]));

    let revoked = app.call(Method::DELETE, &format!("/v1/flags/client-keys/{id}"), Some(&admin), None).await;
    assert!(revoked.ok()["revoked_at"].is_string());
    publish::publish_to(db, &verge_core::server::edge_sources(&verge_core::Config::default()), &store, &())
        .await
        .unwrap();
    assert_eq!(store.get(&record).await.unwrap(), None, "a revoked key is gone from the edge");
    app.get("/v1/flags/environments/web/nope/client-keys", Some(&admin))
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    app.call(Method::DELETE, "/v1/flags/client-keys/fck_nope", Some(&admin), None)
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    store.close().await;
}

#[tokio::test]
async fn flags_and_segments_change_one_at_a_time_checked_and_audited_with_diffs() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::FlagsWrite]).await;
    let reader = app.key(&[Scope::Read]).await;
    app.call(Method::POST, "/v1/flags/environments", Some(&writer), Some(json!({"project": "web", "name": "prod"})))
        .await
        .ok();
    let base = "/v1/flags/environments/web/prod";
    let put = |path: String, body: Value| {
        let (app, writer) = (&app, writer.clone());
        async move { app.call(Method::PUT, &format!("{base}{path}"), Some(&writer), Some(body)).await }
    };

    let broken =
        json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "targeting": {"if": [{"oops": 1}, "on"]}});
    let refused = put("/flags/beta".into(), broken).await;
    assert_eq!(
        refused.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")["errors"][0]["field"],
        "/flags/beta/targeting/if/0"
    );
    app.get(&format!("{base}/flags/beta"), Some(&reader)).await.problem(StatusCode::NOT_FOUND, "not_found");

    // A segment, a flag rolling out to it and to 10 % of everyone else.
    let segment = put("/segments/staff".into(), json!({"ends_with": [{"var": "email"}, "@verge.dev"]})).await;
    assert_eq!(segment.status, StatusCode::OK, "{}", segment.text);
    put("/segments/bad".into(), json!({"nope": []}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let beta = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
        "targeting": {"if": [{"$ref": "staff"}, "on", {"fractional": [["on", 10], ["off", 90]]}]}});
    assert_eq!(put("/flags/beta".into(), beta.clone()).await.ok(), &beta);
    assert_eq!(app.get(&format!("{base}/flags/beta"), Some(&reader)).await.ok(), &beta);
    // A segment in use cannot go: the flags that need it are named.
    let in_use = app.call(Method::DELETE, &format!("{base}/segments/staff"), Some(&writer), None).await;
    assert_eq!(
        in_use.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")["errors"][0]["field"],
        "/flags/beta/targeting"
    );

    // The kill switch.
    let killed = app.call(Method::POST, &format!("{base}/flags/beta/kill"), Some(&writer), None).await;
    assert_eq!(killed.ok()["state"], "DISABLED");
    let exported = app.get(&format!("{base}/flagd"), Some(&reader)).await;
    let set = verge_shared::flags::FlagSet::from_value(exported.ok()).unwrap();
    let resolved = set.evaluate("beta", None, &json!({"email": "a@verge.dev"}), 0);
    assert_eq!(resolved.reason, verge_shared::flags::Reason::Disabled);

    app.call(Method::POST, &format!("{base}/flags/beta/kill"), Some(&reader), None)
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        app.call(Method::DELETE, &format!("{base}/flags/beta"), Some(&writer), None).await.status,
        StatusCode::NO_CONTENT
    );
    app.call(Method::DELETE, &format!("{base}/flags/beta"), Some(&writer), None)
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");

    // The environment's trail: every change, newest first, with a diff.
    let trail = app.get(&format!("{base}/audit"), Some(&reader)).await;
    let items = trail.ok()["items"].as_array().unwrap();
    let actions: Vec<_> = items.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["flag.delete", "flag.kill", "flag.put", "segment.put", "flags.environment.create"]);
    assert_eq!(items[1]["target_id"], "flags/web/prod/flags/beta");
    assert_eq!(items[1]["changes"], json!([{"path": "/state", "before": "ENABLED", "after": "DISABLED"}]));
    app.get("/v1/flags/environments/web/nope/audit", Some(&reader)).await.problem(StatusCode::NOT_FOUND, "not_found");
}
