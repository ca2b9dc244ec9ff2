//! Two core replicas (`verge serve`) on one PostgreSQL and one Redis, as in production:
//! one publisher at a time, each scheduled change applied once, each event counted once,
//! and the edge ending up with every write made through either replica.
//!
//! The replicas get a PostgreSQL and a Redis of their own (`common::services`): two
//! replicas on one SQLite file is not a deployment Verge supports.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::{CoreForEdges, Reply, Running, free_port, http, serve_native, until, verge, wait_for_http};
use common::services::{PrivatePostgres, PrivateRedis};
use serde_json::{Value, json};
use verge_core::Config;

#[derive(Clone)]
struct Replica {
    url: String,
    admin: String,
}

impl Replica {
    fn start(config: &Config, work: &Path, name: &str, env: &[(&str, &str)]) -> (Running, Replica) {
        let url = format!("http://127.0.0.1:{}", free_port());
        let mut command: Command = verge(config, work);
        command
            .arg("serve")
            .env("VERGE_LISTEN", url.trim_start_matches("http://"))
            .env("VERGE_DATA_DIR", work.join(name))
            .envs(env.iter().copied())
            .stdout(Stdio::null());
        let process = Running(command.spawn().expect("start verge serve"));
        wait_for_http(&url, "/healthz", Duration::from_secs(60));
        let admin = env.iter().find(|(n, _)| *n == "VERGE_ADMIN_KEY").expect("an admin key").1.to_owned();
        (process, Replica { url, admin })
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> Reply {
        let auth = format!("Bearer {}", self.admin);
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        http(&self.url, method, path, &headers, &body.to_string())
    }

    #[track_caller]
    fn ok(&self, method: &str, path: &str, body: &Value) -> Value {
        let reply = self.call(method, path, body);
        assert!((200..300).contains(&reply.status), "{method} {path}: {} {}", reply.status, reply.body);
        serde_json::from_str(&reply.body).unwrap_or(Value::Null)
    }
}

fn flag(value: usize) -> Value {
    json!({"state": "ENABLED", "variants": {"v": value}, "defaultVariant": "v"})
}

fn edge_value(edge: &str, auth: &str) -> Option<i64> {
    let headers = [("authorization", auth), ("content-type", "application/json")];
    let reply = http(edge, "POST", "/ofrep/v1/evaluate/flags/f", &headers, r#"{"context": {}}"#);
    let answer: Value = serde_json::from_str(&reply.body).ok()?;
    answer["value"].as_i64()
}

/// What replicas share: a PostgreSQL and a Redis of their own, a work directory, the
/// configuration naming both, and the admin key every replica is started with.
struct Shared {
    postgres: PrivatePostgres,
    redis: PrivateRedis,
    dir: tempfile::TempDir,
    config: Config,
    admin_key: String,
}

impl Shared {
    fn start() -> Shared {
        let (postgres, redis) = (PrivatePostgres::start(), PrivateRedis::start());
        let config = Config {
            database_url: Some(postgres.url().into()),
            redis_url: Some(redis.url().into()),
            ..Config::default()
        };
        let admin_key = format!("vk_test_{}", uuid::Uuid::new_v4().simple());
        Shared { postgres, redis, dir: tempfile::tempdir().unwrap(), config, admin_key }
    }
}

#[tokio::test]
async fn two_replicas_share_the_work_without_doing_any_of_it_twice() {
    let Shared { postgres: _postgres, redis, dir, config, admin_key } = Shared::start();
    let work = dir.path();
    let redis_url = redis.url();
    let env = [
        ("VERGE_ADMIN_KEY", admin_key.as_str()),
        ("VERGE_EDGE_REDIS_URL", redis_url.as_str()),
        ("VERGE_EDGE_REDIS_PREFIX", "edge:"),
        ("VERGE_LINKS_DEFAULT_DOMAIN", "127.0.0.1"),
    ];
    let (_a, a) = Replica::start(&config, work, "a", &env);
    let (_b, b) = Replica::start(&config, work, "b", &env);
    let ingest = a.ok("POST", "/v1/keys", &json!({"name": "edge", "scopes": ["events:ingest"]}))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let for_edges = CoreForEdges {
        _process: Running(Command::new("true").spawn().unwrap()),
        url: a.url.clone(),
        admin: admin_key.clone(),
        ingest_key: ingest.clone(),
    };
    let (_edge, edge) = serve_native(&config, work, None, &for_edges, &env);

    // One publisher at a time: each replica edits two environments of its own, both at once;
    // two publishers racing on the manifest would lose one's datasets, or write one snapshot
    // twice.
    let environments = ["e0", "e1", "e2", "e3"];
    let mut keys = Vec::new();
    for (i, name) in environments.iter().enumerate() {
        let replica = if i < 2 { &a } else { &b };
        replica.ok("POST", "/v1/flags/environments", &json!({"project": "web", "name": name}));
        let key =
            replica.ok("POST", &format!("/v1/flags/environments/web/{name}/client-keys"), &json!({"name": "app"}));
        keys.push(format!("Bearer {}", key["token"].as_str().unwrap()));
    }
    let (_monitor, commands_run) = redis.monitor();
    const EDITS: usize = 15;
    let writers: Vec<_> = [(a.clone(), ["e0", "e1"]), (b.clone(), ["e2", "e3"])]
        .into_iter()
        .map(|(replica, mine)| {
            std::thread::spawn(move || {
                for value in 0..EDITS {
                    for name in mine {
                        replica.ok("PUT", &format!("/v1/flags/environments/web/{name}/flags/f"), &flag(value));
                    }
                }
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().expect("writer"));
    for (name, auth) in environments.iter().zip(&keys) {
        until(&format!("{name}'s last edit at the edge"), Duration::from_secs(10), || {
            edge_value(&edge, auth) == Some(EDITS as i64 - 1)
        });
    }
    let snapshots: Vec<u64> = commands_run
        .try_iter()
        .filter(|line| line.contains("\"edge:meta/manifest\""))
        .filter_map(|line| line.split("snapshot ").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect();
    assert!(snapshots.len() >= 2, "manifests written: {snapshots:?}");
    assert!(snapshots.windows(2).all(|w| w[1] == w[0] + 1), "each snapshot written once, in order: {snapshots:?}");

    // Each scheduled change applied once, though both replicas run the scheduler.
    let apply_at = verge_core::time::Millis(verge_core::time::now_millis().0 + 2_000).to_string();
    let mut scheduled = Vec::new();
    for (i, replica) in [&a, &b, &a, &b].into_iter().enumerate() {
        let change =
            json!({"changes": [{"op": "put_flag", "key": format!("s{i}"), "flag": flag(i)}], "apply_at": apply_at});
        let proposed = replica.ok("POST", "/v1/flags/environments/web/e0/changes", &change);
        assert_eq!(proposed["status"], "scheduled", "{proposed}");
        scheduled.push(proposed["id"].as_str().unwrap().to_owned());
    }
    for id in &scheduled {
        until(&format!("{id} applied"), Duration::from_secs(15), || {
            a.ok("GET", &format!("/v1/flags/changes/{id}"), &Value::Null)["status"] == "applied"
        });
        let audit = b.ok("GET", &format!("/v1/audit-log?target_id=flags/web/e0/changes/{id}"), &Value::Null);
        let actions: Vec<&str> =
            audit["items"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
        assert_eq!(actions.iter().filter(|a| **a == "flags.change.apply").count(), 1, "{id}: {actions:?}");
        assert!(!actions.contains(&"flags.change.fail"), "{id}: {actions:?}");
    }

    // Each event counted once: the same batch sent to both replicas at once, twice.
    let link = a.ok("POST", "/v1/links", &json!({"url": "https://example.com/counted", "alias": "counted"}));
    let link_id = link["id"].as_str().unwrap().to_owned();
    let at = verge_core::time::now_millis().to_string();
    let events: Vec<Value> = (0..40)
        .map(|i| {
            json!({"id": verge_core::ids::new_id("evt"), "kind": "link.click", "at": at, "data": {"link": link_id,
                "domain": "127.0.0.1", "device": "desktop", "browser": "Chrome", "os": "Windows",
                "visitor": format!("v{i}"), "bot": false}})
        })
        .collect();
    let batch = json!({"events": events}).to_string();
    let senders: Vec<_> = [&a, &b, &a, &b]
        .into_iter()
        .map(|replica| {
            let (url, batch, auth) = (replica.url.clone(), batch.clone(), format!("Bearer {ingest}"));
            std::thread::spawn(move || {
                let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
                let reply = http(&url, "POST", "/v1/events", &headers, &batch);
                assert_eq!(reply.status, 200, "{}", reply.body);
                serde_json::from_str::<Value>(&reply.body).unwrap()["accepted"].as_u64().unwrap()
            })
        })
        .collect();
    let accepted: u64 = senders.into_iter().map(|s| s.join().expect("sender")).sum();
    assert_eq!(accepted, 40, "the batch was accepted once in all");
    for replica in [&a, &b] {
        let analytics = replica.ok("GET", &format!("/v1/links/{link_id}/analytics"), &Value::Null);
        assert_eq!((analytics["clicks"].as_i64(), analytics["uniques"].as_i64()), (Some(40), Some(40)), "{analytics}");
    }
}

/// The global rate-limit tier counts across replicas: 100 concurrent checks spread over
/// two `verge serve` sharing Redis allow exactly the limit, for each algorithm.
#[tokio::test]
async fn two_replicas_allow_exactly_the_limit_between_them() {
    let Shared { postgres: _postgres, redis: _redis, dir, config, admin_key } = Shared::start();
    let work = dir.path();
    let env = [("VERGE_ADMIN_KEY", admin_key.as_str())];
    let (_a, a) = Replica::start(&config, work, "a", &env);
    let (_b, b) = Replica::start(&config, work, "b", &env);
    for (i, algorithm) in ["fixed_window", "sliding_window", "token_bucket"].into_iter().enumerate() {
        let domain = format!("api{i}");
        let policy = json!({"name": "per key", "domain": domain, "descriptor": [{"key": "api_key"}],
            "limit": {"algorithm": algorithm, "limit": 30, "period_seconds": 3600}});
        a.ok("POST", "/v1/ratelimit/policies", &policy);
        let body = json!({"domain": domain, "descriptors": [{"entries": [{"key": "api_key", "value": "shared"}]}]});
        let callers: Vec<_> = (0..100)
            .map(|n| {
                let (replica, body) = (if n % 2 == 0 { a.clone() } else { b.clone() }, body.clone());
                std::thread::spawn(move || replica.call("POST", "/v1/ratelimit/check", &body).status)
            })
            .collect();
        let statuses: Vec<u16> = callers.into_iter().map(|c| c.join().expect("caller")).collect();
        let allowed = statuses.iter().filter(|s| **s == 200).count();
        let denied = statuses.iter().filter(|s| **s == 429).count();
        assert_eq!((allowed, denied), (30, 70), "{algorithm}: {statuses:?}");
    }
    // Both replicas' decisions add up in the stats (each flushes its tally every second).
    let policies = a.ok("GET", "/v1/ratelimit/policies?domain=api0", &Value::Null);
    let id = policies["items"][0]["id"].as_str().unwrap().to_owned();
    until("both replicas' decisions in the stats", Duration::from_secs(5), || {
        let stats = b.ok("GET", &format!("/v1/ratelimit/policies/{id}/stats"), &Value::Null);
        stats["totals"]["allowed"] == 30 && stats["totals"]["denied"] == 70
    });
}
