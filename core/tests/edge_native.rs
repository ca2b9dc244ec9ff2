//! The native edge node (`verge edge serve --native`): the same edge application compiled
//! natively. Over Redis, a fleet of nodes follows one core, each change visible on every
//! node within a second; a clean stop loses no event; past its connection cap a client
//! waits for a free slot; a stopping node finishes the request in flight. (Its answers are
//! compared with every other platform's in `edge_platforms`.)
//!
//! Redis comes from VERGE_TEST_REDIS_URL when the run has one, else the test starts a
//! `redis-server` of its own on loopback (scripts/test installs it); it is never skipped.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fresh_config;
use common::process::{
    Running, free_port, http, publish_local, serve_native, start_core_for_edges, start_core_for_edges_with, until,
};

/// A Redis URL for this test, and the server when the test had to start one.
fn redis() -> (String, Option<Running>) {
    if let Ok(url) = std::env::var("VERGE_TEST_REDIS_URL") {
        return (url, None);
    }
    let port = free_port();
    let server = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("`redis-server` is needed (scripts/test installs it): {err}"));
    let url = format!("redis://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (url, Some(Running(server)))
}

#[tokio::test]
async fn a_fleet_of_native_nodes_follows_one_core_through_redis() {
    let (config, dir) = fresh_config().await;
    let work = dir.path();
    let (redis_url, _redis) = redis();
    let prefix = format!("edge-test-{}:", uuid::Uuid::new_v4().simple());
    let env = [("VERGE_EDGE_REDIS_URL", redis_url.as_str()), ("VERGE_EDGE_REDIS_PREFIX", prefix.as_str())];
    let core = start_core_for_edges_with(&config, work, &env);
    let (_one, one) = serve_native(&config, work, None, &core, &env);
    let (_two, two) = serve_native(&config, work, None, &core, &env);

    // The core's start-up publish is in Redis: both nodes see its snapshot.
    for node in [&one, &two] {
        until("the first snapshot", Duration::from_secs(5), || {
            http(node, "GET", "/__verge/health", &[], "").body.contains("\"snapshot\":1")
        });
    }
    let (status, link) =
        core.call("POST", "/v1/links", &serde_json::json!({"url": "https://example.com/a", "alias": "fleet"}));
    assert_eq!(status, 201, "{link}");
    let id = link["id"].as_str().unwrap();
    let changed = Instant::now();
    for node in [&one, &two] {
        until("the new link on every node", Duration::from_secs(1), || {
            http(node, "GET", "/fleet", &[], "").header("location") == Some("https://example.com/a")
        });
    }
    core.call("PATCH", &format!("/v1/links/{id}"), &serde_json::json!({"url": "https://example.com/b"}));
    for node in [&one, &two] {
        until("the changed target on every node", Duration::from_secs(1), || {
            http(node, "GET", "/fleet", &[], "").header("location") == Some("https://example.com/b")
        });
    }
    core.call("DELETE", &format!("/v1/links/{id}"), &serde_json::Value::Null);
    for node in [&one, &two] {
        until("the deletion on every node", Duration::from_secs(1), || {
            http(node, "GET", "/fleet", &[], "").status == 404
        });
    }
    assert!(changed.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_clean_stop_sends_every_event_first() {
    let (config, dir) = fresh_config().await;
    let work = dir.path();
    let core = start_core_for_edges(&config, work);
    let store = publish_local(&config, work);
    let (mut node, url) = serve_native(&config, work, Some(&store), &core, &[]);
    const REQUESTS: usize = 500;
    for i in 0..REQUESTS {
        assert_eq!(http(&url, "GET", &format!("/stop/{i}"), &[], "").status, 404);
    }
    // Stopped at once: whatever is still queued must go out before the process ends.
    let exit = node.terminate();
    assert!(exit.success(), "exit status {exit}");
    let events = common::process::wait_for_events(&config, work, "edge.not_found", Duration::from_secs(10), |data| {
        data.len() >= REQUESTS
    })
    .await;
    let reported = events.iter().filter(|data| data.contains("/stop/")).count();
    assert_eq!(reported, REQUESTS, "every request's event, once");
}

#[tokio::test]
async fn edges_keep_serving_links_and_flags_while_the_core_is_down() {
    let (config, dir) = fresh_config().await;
    let work = dir.path();
    let mut core = start_core_for_edges(&config, work);
    // `verge dev` publishes into <data dir>/edge/kv.db; both local edges read it.
    let store = work.join("verge-data/edge");
    let (status, _) =
        core.call("POST", "/v1/links", &serde_json::json!({"url": "https://example.com/k", "alias": "kept"}));
    assert_eq!(status, 201);
    let (status, _) =
        core.call("POST", "/v1/flags/environments", &serde_json::json!({"project": "web", "name": "prod"}));
    assert_eq!(status, 201);
    let set = serde_json::json!({"flags": {"beta": {"state": "ENABLED", "variants": {"on": true, "off": false},
        "defaultVariant": "on"}}});
    assert_eq!(core.call("PUT", "/v1/flags/environments/web/prod/flagd", &set).0, 200);
    let (status, key) =
        core.call("POST", "/v1/flags/environments/web/prod/client-keys", &serde_json::json!({"name": "app"}));
    assert_eq!(status, 201, "{key}");
    let auth = format!("Bearer {}", key["token"].as_str().unwrap());
    let (_wasm, wasm) = common::process::serve_edge(&config, work, &store, &core, &[]);
    let (_native, native) = serve_native(&config, work, Some(&store), &core, &[]);
    let evaluate = |edge: &str| {
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        http(edge, "POST", "/ofrep/v1/evaluate/flags/beta", &headers, r#"{"context": {}}"#)
    };
    for edge in [&wasm, &native] {
        until("the link and the flag at the edge", Duration::from_secs(5), || {
            http(edge, "GET", "/kept", &[], "").status == 302 && evaluate(edge).status == 200
        });
    }

    core._process.terminate();
    assert!(std::net::TcpStream::connect(core.url.trim_start_matches("http://")).is_err(), "the core is down");
    for edge in [&wasm, &native] {
        for _ in 0..20 {
            let redirect = http(edge, "GET", "/kept", &[], "");
            assert_eq!((redirect.status, redirect.header("location")), (302, Some("https://example.com/k")), "{edge}");
            let flag = evaluate(edge);
            assert_eq!(flag.status, 200, "{edge}: {}", flag.body);
            assert!(flag.body.contains("\"value\":true"), "{edge}: {}", flag.body);
        }
    }
}

/// At its connection cap a node stops accepting: a further client waits in the listen
/// backlog, unanswered, until an open connection closes, and is then served.
#[tokio::test]
async fn a_node_at_its_connection_cap_serves_a_new_client_once_one_closes() {
    use std::io::{Read, Write};
    let (config, dir) = fresh_config().await;
    let work = dir.path();
    let core = start_core_for_edges(&config, work);
    let store = publish_local(&config, work);
    let (_node, url) = serve_native(&config, work, Some(&store), &core, &[("VERGE_EDGE_MAX_CONNECTIONS", "2")]);
    let address = url.trim_start_matches("http://").to_owned();
    let request = b"GET /__verge/health HTTP/1.1\r\nHost: edge.test\r\n\r\n";
    let first_read = |stream: &mut std::net::TcpStream| -> std::io::Result<String> {
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.write_all(request).unwrap();
        let answer = first_read(&mut stream).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        open.push(stream);
    }

    let mut waiting = std::net::TcpStream::connect(&address).unwrap();
    waiting.write_all(request).unwrap();
    waiting.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    let early = first_read(&mut waiting);
    assert!(early.is_err(), "a third connection was served past a cap of two: {early:?}");

    drop(open.pop());
    waiting.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let answer = first_read(&mut waiting).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "once a slot was free: {answer}");
    // The connection still open was never disturbed.
    open[0].write_all(request).unwrap();
    assert!(first_read(&mut open[0]).unwrap().starts_with("HTTP/1.1 200"));
}

/// On SIGTERM a node closes its idle connections at once, lets a request still arriving
/// finish and answers it with `connection: close`, and exits once it has.
#[tokio::test]
async fn a_stopping_node_finishes_the_request_in_flight_then_exits() {
    use std::io::{Read, Write};
    let (config, dir) = fresh_config().await;
    let work = dir.path();
    let core = start_core_for_edges(&config, work);
    let store = publish_local(&config, work);
    let (mut node, url) = serve_native(&config, work, Some(&store), &core, &[]);
    let address = url.trim_start_matches("http://").to_owned();
    let read_all = |stream: &mut std::net::TcpStream| {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).map(|_| String::from_utf8_lossy(&answer).into_owned())
    };

    let mut idle = std::net::TcpStream::connect(&address).unwrap();
    idle.write_all(b"GET /__verge/health HTTP/1.1\r\nHost: edge.test\r\n\r\n").unwrap();
    let mut first = [0u8; 4096];
    let n = idle.read(&mut first).unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first[..n]));
    let body = br#"{"context": {"targetingKey": "u1"}}"#;
    let mut busy = std::net::TcpStream::connect(&address).unwrap();
    let head = format!(
        "POST /ofrep/v1/evaluate/flags/missing HTTP/1.1\r\nHost: edge.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    busy.write_all(head.as_bytes()).unwrap();
    busy.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let stopped = Command::new("kill").args(["-TERM", &node.0.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    assert_eq!(read_all(&mut idle).unwrap(), "", "the idle connection is closed without an answer");
    std::thread::sleep(Duration::from_millis(300));
    assert!(node.0.try_wait().unwrap().is_none(), "the node exited with a request in flight");

    busy.write_all(&body[10..]).unwrap();
    let answer = read_all(&mut busy).unwrap();
    // Keyless, so OFREP's 401: answered only once the whole body had arrived.
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{answer}");
    let mut exit = None;
    until("the node exits once its last request is answered", Duration::from_secs(5), || {
        exit = node.0.try_wait().unwrap();
        exit.is_some()
    });
    assert!(exit.is_some_and(|status| status.success()), "exit status {exit:?}");
}
