//! Faults in the parts Verge depends on, with the real binaries: PostgreSQL crashing under
//! load, Redis crashing and coming back empty, the core killed with SIGKILL in the middle
//! of a publish. Each test runs its own PostgreSQL or Redis (see `common::services`), so it
//! can crash them without disturbing the rest of the run. (The core stopped while edges
//! keep serving is in `edge_native`.)

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::fresh_config;
use common::process::{Reply, http, serve_native, start_core_for_edges, start_core_for_edges_with, until};
use common::services::{PrivatePostgres, PrivateRedis};
use serde_json::json;
use verge_core::Config;

/// The core's address and an admin key: enough to call it from any thread.
#[derive(Clone)]
struct Api {
    url: String,
    admin: String,
}

impl Api {
    fn call(&self, method: &str, path: &str, body: &serde_json::Value) -> Reply {
        let auth = format!("Bearer {}", self.admin);
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        http(&self.url, method, path, &headers, &body.to_string())
    }

    fn create_link(&self, alias: &str) -> Reply {
        self.call("POST", "/v1/links", &json!({"url": format!("https://example.com/{alias}"), "alias": alias}))
    }
}

fn redirects(edge: &str, alias: &str) -> bool {
    let target = format!("https://example.com/{alias}");
    http(edge, "GET", &format!("/{alias}"), &[], "").header("location") == Some(target.as_str())
}

type Load = std::thread::JoinHandle<(Vec<String>, Vec<Reply>)>;

/// Creates links back to back from `writers` threads until `stop`; each thread returns the
/// aliases the core acknowledged and the replies it refused with.
fn write_load(api: &Api, writers: usize, stop: &Arc<AtomicBool>) -> Vec<Load> {
    (0..writers)
        .map(|writer| {
            let (api, stop) = (api.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut acknowledged, mut refused) = (Vec::new(), Vec::new());
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let alias = format!("load-{writer}-{i}");
                    let reply = api.create_link(&alias);
                    if reply.status == 201 {
                        acknowledged.push(alias);
                    } else {
                        refused.push(reply);
                    }
                    i += 1;
                }
                (acknowledged, refused)
            })
        })
        .collect()
}

fn finish(load: Vec<Load>) -> (Vec<String>, Vec<Reply>) {
    let (mut acknowledged, mut refused) = (Vec::new(), Vec::new());
    for writer in load {
        let (a, r) = writer.join().expect("load thread");
        acknowledged.extend(a);
        refused.extend(r);
    }
    (acknowledged, refused)
}

/// A refusal during an outage is a 503 problem that says to retry, never a 500.
#[track_caller]
fn is_unavailable(reply: &Reply) {
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    assert!(reply.body.contains("\"code\":\"database_unavailable\""), "{}", reply.body);
    assert_eq!(reply.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn postgres_crashing_under_load_loses_no_acknowledged_write_and_publishing_resumes() {
    let postgres = PrivatePostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let config = Config { data_dir: work.join("data"), database_url: Some(postgres.url().into()), ..Config::default() };
    let core = start_core_for_edges(&config, work);
    let api = Api { url: core.url.clone(), admin: core.admin.clone() };
    let (_edge, edge) = serve_native(&config, work, Some(&work.join("verge-data/edge")), &core, &[]);

    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(&api, 2, &stop);
    std::thread::sleep(Duration::from_secs(1));
    // Down for longer than the pool waits for a connection (5 s): a request that finds no
    // live connection to fail on waits that long, then is refused, so the outage is felt
    // whichever way each request meets it.
    postgres.crash_and_restart(Duration::from_secs(6));
    // The same core process, not restarted, takes writes again.
    until("a write after the crash", Duration::from_secs(30), || api.create_link("after-crash").status == 201);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (mut acknowledged, refused) = finish(load);
    acknowledged.push("after-crash".into());

    assert!(acknowledged.len() > 20, "the load got going: {} links", acknowledged.len());
    assert!(!refused.is_empty(), "the crash was felt: nothing was refused while PostgreSQL was down");
    refused.iter().for_each(is_unavailable);
    // Every acknowledged link is stored, and published: the publisher resumed by itself.
    // (The edge's copy comes from the database, so a redirect proves both.)
    for alias in &acknowledged {
        until(&format!("/{alias} at the edge"), Duration::from_secs(10), || redirects(&edge, alias));
    }
    let ready = http(&api.url, "GET", "/readyz", &[], "");
    assert_eq!(ready.status, 200, "{}", ready.body);
}

#[tokio::test]
async fn redis_crashing_empty_loses_nothing_and_the_edge_store_is_filled_again() {
    let mut redis = PrivateRedis::start();
    let (mut config, dir) = fresh_config().await;
    let work = dir.path();
    config.redis_url = Some(redis.url().into());
    config.redis_prefix = "faults:".into();
    let url = redis.url();
    let env = [("VERGE_EDGE_REDIS_URL", url.as_str()), ("VERGE_EDGE_REDIS_PREFIX", "edge:")];
    let core = start_core_for_edges_with(&config, work, &env);
    let api = Api { url: core.url.clone(), admin: core.admin.clone() };
    let (_node, node) = serve_native(&config, work, None, &core, &env);
    assert_eq!(api.create_link("before").status, 201);
    until("/before at the edge", Duration::from_secs(5), || redirects(&node, "before"));
    // A publish after that read: the node's read cache starts over, and `before` is not
    // read again before the outage.
    assert_eq!(api.create_link("since").status, 201);
    until("/since at the edge", Duration::from_secs(5), || redirects(&node, "since"));

    // The node answers from what it had read, while Redis is gone and once it is back
    // empty (before the core has published everything again). Down for longer than the
    // edge keeps the manifest itself, so that is read from the node's store too.
    redis.crash();
    std::thread::sleep(Duration::from_secs(1));
    for alias in ["before", "since"] {
        assert!(redirects(&node, alias), "Redis down: the node forgot /{alias}, which it had served");
    }
    redis.restart();
    for alias in ["before", "since"] {
        assert!(redirects(&node, alias), "Redis back empty: the node forgot /{alias}, which it had served");
    }
    // The core, not restarted, takes writes and ingests events (its quota lives in Redis).
    until("a write after the crash", Duration::from_secs(15), || api.create_link("after").status == 201);
    let auth = format!("Bearer {}", core.ingest_key);
    let ingest = || {
        let event = json!({"id": verge_core::ids::new_id("evt"), "kind": "edge.not_found",
            "at": verge_core::time::now_millis().to_string(), "data": {"path": "/x", "host": "127.0.0.1"}});
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        http(&api.url, "POST", "/v1/events", &headers, &json!({"events": [event]}).to_string())
    };
    until("events ingested after the crash", Duration::from_secs(15), || {
        let reply = ingest();
        if reply.status != 200 {
            // The first call on a connection Redis dropped may fail: as a 503, never a 500.
            assert_eq!(reply.status, 503, "{reply:?}");
            assert!(reply.body.contains("\"code\":\"cache_unavailable\""), "{}", reply.body);
        }
        reply.status == 200
    });
    // The publisher notices the store lost what it held and publishes everything again.
    for alias in ["before", "since", "after"] {
        until(&format!("/{alias} at the edge"), Duration::from_secs(10), || redirects(&node, alias));
    }
}

/// The values a bulk OFREP evaluation at `edge` gives, by flag key; none until the edge
/// knows the client key.
fn bulk_values(edge: &str, auth: &str) -> Vec<String> {
    let headers = [("authorization", auth), ("content-type", "application/json")];
    let reply = http(edge, "POST", "/ofrep/v1/evaluate/flags", &headers, r#"{"context": {}}"#);
    if reply.status == 403 {
        return Vec::new();
    }
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    let flags = answer["flags"].as_array().expect("flags");
    flags.iter().map(|flag| flag["value"].as_str().unwrap_or("?").to_owned()).collect()
}

fn flag_set(flags: usize, value: &str) -> serde_json::Value {
    let flags: serde_json::Map<String, serde_json::Value> = (0..flags)
        .map(|i| {
            let flag = json!({"state": "ENABLED", "variants": {"on": value}, "defaultVariant": "on"});
            (format!("f{i:05}"), flag)
        })
        .collect();
    json!({"flags": flags})
}

#[tokio::test]
async fn a_core_killed_mid_publish_never_shows_the_edge_a_mixed_version() {
    const FLAGS: usize = 5_000;
    let redis = PrivateRedis::start();
    let (config, dir) = fresh_config().await;
    let work = dir.path();
    let url = redis.url();
    let admin_key = format!("vk_test_{}", uuid::Uuid::new_v4().simple());
    let env = [
        ("VERGE_EDGE_REDIS_URL", url.as_str()),
        ("VERGE_EDGE_REDIS_PREFIX", "edge:"),
        ("VERGE_ADMIN_KEY", admin_key.as_str()),
        ("VERGE_BODY_LIMIT_BYTES", "16777216"),
    ];
    let mut core = start_core_for_edges_with(&config, work, &env);
    let api = Api { url: core.url.clone(), admin: core.admin.clone() };
    assert_eq!(api.call("POST", "/v1/flags/environments", &json!({"project": "web", "name": "prod"})).status, 201);
    let old = api.call("PUT", "/v1/flags/environments/web/prod/flagd", &flag_set(FLAGS, "old"));
    assert_eq!(old.status, 200, "{}", old.body);
    let key = api.call("POST", "/v1/flags/environments/web/prod/client-keys", &json!({"name": "app"}));
    let token: serde_json::Value = serde_json::from_str(&key.body).unwrap();
    let auth = format!("Bearer {}", token["token"].as_str().unwrap());
    let (_node, node) = serve_native(&config, work, None, &core, &env);
    until("the old flags at the edge", Duration::from_secs(10), || {
        let values = bulk_values(&node, &auth);
        values.len() == FLAGS && values.iter().all(|v| v == "old")
    });
    let mut commands = redis.connection();
    let live: Vec<String> = redis::cmd("KEYS").arg("edge:flags/web/prod/v*").query(&mut commands).unwrap();
    let live_version =
        live.iter().filter_map(|k| k.split('/').nth(3)?.strip_prefix('v')?.parse::<u64>().ok()).max().unwrap();
    let next_version = format!("\"edge:flags/web/prod/v{}/", live_version + 1);

    // A reader at the edge all along: every answer is wholly old or wholly new.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (node, auth, stop) = (node.clone(), auth.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut answers = 0;
            while !stop.load(Ordering::Relaxed) {
                let values = bulk_values(&node, &auth);
                assert_eq!(values.len(), FLAGS, "the edge answered for every flag");
                let new = values.iter().filter(|v| *v == "new").count();
                assert!(new == 0 || new == FLAGS, "a mixed version: {new} of {FLAGS} flags new");
                answers += 1;
            }
            answers
        })
    };

    let (_monitor, commands_run) = redis.monitor();
    let changed = {
        let api = api.clone();
        std::thread::spawn(move || api.call("PUT", "/v1/flags/environments/web/prod/flagd", &flag_set(FLAGS, "new")))
    };
    // The moment the first part of the new version lands: freeze the store's writes (the
    // core's next chunk blocks), and kill the core there.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line =
            commands_run.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("the publish began");
        if line.contains(&next_version) {
            break;
        }
    }
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(30_000).arg("WRITE").query(&mut commands).unwrap();
    core._process.0.kill().unwrap();
    core._process.0.wait().unwrap();
    assert_eq!(changed.join().unwrap().status, 200, "the change was acknowledged before its publish");
    let _: () = redis::cmd("CLIENT").arg("UNPAUSE").query(&mut commands).unwrap();
    let written: Vec<String> =
        redis::cmd("KEYS").arg(format!("edge:flags/web/prod/v{}/*", live_version + 1)).query(&mut commands).unwrap();
    assert!(
        !written.is_empty() && written.len() < FLAGS,
        "killed midway: {} of {FLAGS} new parts written",
        written.len()
    );
    std::thread::sleep(Duration::from_millis(500));
    let values = bulk_values(&node, &auth);
    assert!(values.len() == FLAGS && values.iter().all(|v| v == "old"), "the edge still answers the old version");

    // Started again on the same database, the core finishes what it acknowledged.
    let _core = start_core_for_edges_with(&config, work, &env);
    until("the new flags at the edge", Duration::from_secs(20), || {
        let values = bulk_values(&node, &auth);
        values.len() == FLAGS && values.iter().all(|v| v == "new")
    });
    stop.store(true, Ordering::Relaxed);
    let answers = reader.join().expect("no mixed version seen");
    assert!(answers > 3, "the reader read throughout: {answers} answers");
}
