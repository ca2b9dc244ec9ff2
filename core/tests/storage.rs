//! The database layer on the backend of this run: migrations, durability across restarts,
//! and the dialect's own settings.

mod common;

use common::{Backend, TestApp, backend, fresh_config};
use sqlx::Row;
use verge_core::App;
use verge_core::db::{Database, Dialect};

#[tokio::test]
async fn uses_the_backend_this_run_is_for() {
    let app = TestApp::new().await;
    let expected = match backend() {
        Backend::Embedded => (Dialect::Sqlite, "memory"),
        Backend::Services { .. } => (Dialect::Postgres, "redis"),
    };
    assert_eq!((app.app.state.db.dialect(), app.app.state.cache.backend()), expected);
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let (config, _dir) = fresh_config().await;
    let db = Database::connect(&config).await.unwrap();
    db.migrate().await.unwrap();
    db.migrate().await.unwrap();
    let row = sqlx::query("SELECT COUNT(*) AS n FROM api_keys").fetch_one(db.pool()).await.unwrap();
    assert_eq!(row.get::<i64, _>("n"), 0);
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_in_the_data_directory() {
    let (config, _dir) = fresh_config().await;
    let db = Database::connect(&config).await.unwrap();
    if db.dialect() == Dialect::Sqlite {
        let row = sqlx::query("PRAGMA journal_mode").fetch_one(db.pool()).await.unwrap();
        assert_eq!(row.get::<String, _>(0), "wal");
        assert!(config.data_dir.join("verge.db").exists(), "created on first run");
    } else {
        let row = sqlx::query("SHOW server_version").fetch_one(db.pool()).await.unwrap();
        assert!(!row.get::<String, _>(0).is_empty());
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_a_restart() {
    let (config, _dir) = fresh_config().await;
    let first = App::build(config.clone()).await.unwrap();
    let created = verge_core::keys::create(
        &first.state.db,
        verge_core::keys::NewKey {
            name: "durable".into(),
            scopes: vec![verge_core::keys::Scope::Admin],
            expires_at: None,
        },
        &verge_core::audit::Actor::System,
    )
    .await
    .unwrap();
    first.state.db.close().await;
    drop(first);

    let second = App::build(config).await.unwrap();
    let key = verge_core::keys::get(&second.state.db, &created.key.id).await.unwrap();
    assert_eq!(key.name, "durable");
}
