//! The local edge host serves the same answers whether each request gets a fresh component
//! instance or instances are reused (the default, up to 128 requests each), and no event
//! sent after a response is lost when an instance is replaced or the host shuts down.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::fresh_config;
use common::process::{http, publish_local, serve_edge, start_core_for_edges, start_until, verge};

/// Enough sequential requests to cross the default reuse limit twice.
const REQUESTS: usize = 300;

#[tokio::test]
async fn fresh_and_reused_instances_answer_alike_and_lose_no_events() {
    let (config, dir) = fresh_config().await;
    let work = dir.path();
    let core = start_core_for_edges(&config, work);
    let store = publish_local(&config, work);

    let (_fresh, fresh_url) = serve_edge(&config, work, &store, &core, &[("VERGE_EDGE_MAX_INSTANCE_REUSE", "1")]);
    let (_reused, reused_url) = serve_edge(&config, work, &store, &core, &[]);

    for (method, path) in [("GET", "/__verge/health"), ("HEAD", "/__verge/health"), ("DELETE", "/__verge/health")] {
        let fresh = http(&fresh_url, method, path, &[], "");
        let reused = http(&reused_url, method, path, &[], "");
        let essence = |reply: &common::process::Reply| {
            let headers: Vec<_> = reply.headers.iter().filter(|(name, _)| name != "date").cloned().collect();
            (reply.status, headers, reply.body.clone())
        };
        assert_eq!(essence(&fresh), essence(&reused), "{method} {path}");
    }

    // Sequential requests on both, then bursts of 16 at once on the reusing host, which
    // share instances; every 404 must come back whole and be reported exactly once.
    for i in 0..REQUESTS {
        for (mode, url) in [("fresh", &fresh_url), ("reused", &reused_url)] {
            let reply = http(url, "GET", &format!("/gone/{mode}/{i}"), &[], "");
            assert_eq!(reply.status, 404, "{mode} request {i}: {}", reply.body);
            assert!(reply.body.contains("\"code\":\"route_not_found\""), "{mode} request {i}: {}", reply.body);
        }
    }
    std::thread::scope(|scope| {
        for worker in 0..16 {
            let url = &reused_url;
            scope.spawn(move || {
                for i in 0..REQUESTS / 16 {
                    assert_eq!(http(url, "GET", &format!("/gone/burst/{worker}-{i}"), &[], "").status, 404);
                }
            });
        }
    });

    let burst = 16 * (REQUESTS / 16);
    let events = common::process::wait_for_events(&config, work, "edge.not_found", Duration::from_secs(30), |data| {
        data.len() >= 2 * REQUESTS + burst
    })
    .await;
    for mode in ["fresh", "reused", "burst"] {
        let expected = if mode == "burst" { burst } else { REQUESTS };
        let reported = events.iter().filter(|data| data.contains(&format!("/gone/{mode}/"))).count();
        assert_eq!(reported, expected, "{mode} events");
    }
}

#[tokio::test]
async fn shutting_down_waits_for_events_still_being_sent() {
    let (config, dir) = fresh_config().await;
    let work = dir.path();
    let store = publish_local(&config, work);

    // A core that takes a second to answer an event batch, and notes whether the edge
    // hung up on it before the answer came.
    let core = TcpListener::bind("127.0.0.1:0").unwrap();
    let core_url = format!("http://{}", core.local_addr().unwrap());
    let (received_tx, received_rx) = std::sync::mpsc::channel();
    let slow_core = std::thread::spawn(move || {
        let (mut conn, _) = core.accept().unwrap();
        let request = read_request(&mut conn);
        received_tx.send(()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let hung_up = match conn.read(&mut [0; 1]) {
            Err(err) => !matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            Ok(read) => read == 0,
        };
        let _ = conn.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        (request, hung_up)
    });

    let mut command = verge(&config, work);
    command
        .args(["edge", "serve", "--listen", "127.0.0.1:0", "--core-url", &core_url, "--store"])
        .arg(&store)
        .env("VERGE_EDGE_INGEST_KEY", "verge_test-ingest-key");
    let (mut edge, lines) = start_until(command, |line| line.starts_with("edge serving"));
    let edge_url =
        lines.last().unwrap().split_whitespace().nth(2).unwrap().trim_end_matches("/__verge/health").to_owned();

    assert_eq!(http(&edge_url, "GET", "/served/just/before/stopping", &[], "").status, 404);
    received_rx.recv_timeout(Duration::from_secs(10)).expect("the edge sent its event batch");
    let stopping = Instant::now();
    let exit = edge.terminate();
    assert!(exit.success(), "exit status {exit}");
    let (request, hung_up) = slow_core.join().unwrap();
    assert!(request.contains("/served/just/before/stopping"), "{request}");
    assert!(!hung_up, "the edge dropped its event batch at shutdown instead of waiting for the core's answer");
    assert!(stopping.elapsed() >= Duration::from_secs(1), "stopped before the core answered");
}

#[tokio::test]
async fn events_of_requests_answered_during_a_post_go_out_together_in_the_next() {
    let (config, dir) = fresh_config().await;
    let work = dir.path();
    let store = publish_local(&config, work);

    // A core that holds its first event post for two seconds and counts each post's events.
    let core = TcpListener::bind("127.0.0.1:0").unwrap();
    let core_url = format!("http://{}", core.local_addr().unwrap());
    let (posts_tx, posts_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (n, conn) in core.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let request = read_request(&mut conn);
            if n == 0 {
                std::thread::sleep(Duration::from_secs(2));
            }
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if posts_tx.send(request.matches("{\"id\":\"evt_").count()).is_err() {
                return;
            }
        }
    });
    let mut command = verge(&config, work);
    command
        .args(["edge", "serve", "--listen", "127.0.0.1:0", "--core-url", &core_url, "--store"])
        .arg(&store)
        .env("VERGE_EDGE_INGEST_KEY", "verge_test-ingest-key");
    let (_edge, lines) = start_until(command, |line| line.starts_with("edge serving"));
    let edge_url =
        lines.last().unwrap().split_whitespace().nth(2).unwrap().trim_end_matches("/__verge/health").to_owned();

    assert_eq!(http(&edge_url, "GET", "/first", &[], "").status, 404);
    let started = Instant::now();
    for i in 0..20 {
        assert_eq!(http(&edge_url, "GET", &format!("/while-posting/{i}"), &[], "").status, 404);
    }
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the requests were not all answered during the first post"
    );
    let first = posts_rx.recv_timeout(Duration::from_secs(10)).expect("the first post");
    let second = posts_rx.recv_timeout(Duration::from_secs(10)).expect("the second post");
    assert_eq!((first, second), (1, 20), "one post for the first request, one for the twenty after it");
    assert!(posts_rx.recv_timeout(Duration::from_millis(500)).is_err(), "no post per request");
}

/// One HTTP/1.1 request, head and body (by Content-Length, or chunked to its last chunk).
fn read_request(conn: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let read = conn.read(&mut buf).unwrap();
        assert!(read > 0, "the request ended early: {}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..read]);
        let text = String::from_utf8_lossy(&raw);
        let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
        let length = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().unwrap())
        });
        let complete = match length {
            Some(length) => body.len() >= length,
            None => body.ends_with("0\r\n\r\n"),
        };
        if complete {
            return text.into_owned();
        }
    }
}

/// Sends `head` and then `body_chunks`, holding the connection open afterwards, and
/// returns the response's status line if one arrives within 5 s.
fn answer_while_still_sending(edge_url: &str, head: &str, body_chunks: &[&[u8]]) -> Option<String> {
    let mut conn = TcpStream::connect(edge_url.trim_start_matches("http://")).unwrap();
    conn.write_all(head.as_bytes()).unwrap();
    for chunk in body_chunks {
        // The edge may answer and close early; later writes failing is the point.
        if conn.write_all(chunk).is_err() {
            break;
        }
    }
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(read) => answer.extend_from_slice(&buf[..read]),
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    text.lines().next().filter(|line| line.starts_with("HTTP/")).map(str::to_owned)
}

#[tokio::test]
async fn oversized_bodies_are_refused_without_waiting_for_them_to_end() {
    let (config, dir) = fresh_config().await;
    let work = dir.path();
    let core = start_core_for_edges(&config, work);
    let store = publish_local(&config, work);
    let (_edge, edge_url) = serve_edge(&config, work, &store, &core, &[]);
    let host = edge_url.trim_start_matches("http://");

    // A declared 100 MB body, of which only 1 KB ever comes: refused from the header.
    let declared = format!("POST /x HTTP/1.1\r\nhost: {host}\r\ncontent-length: 104857600\r\n\r\n");
    let status = answer_while_still_sending(&edge_url, &declared, &[&[b'a'; 1024]]);
    assert_eq!(status.as_deref(), Some("HTTP/1.1 413 Payload Too Large"), "declared length");

    // An undeclared (chunked) body: 128 KB arrives, and then nothing, with the connection
    // open. The edge must stop at the cap and answer, not wait for an end.
    let chunked = format!("POST /x HTTP/1.1\r\nhost: {host}\r\ntransfer-encoding: chunked\r\n\r\n");
    let chunk = [b"4000\r\n".as_slice(), &[b'a'; 0x4000], b"\r\n"].concat();
    let chunks: Vec<&[u8]> = std::iter::repeat_n(chunk.as_slice(), 8).collect();
    let status = answer_while_still_sending(&edge_url, &chunked, &chunks);
    assert_eq!(status.as_deref(), Some("HTTP/1.1 413 Payload Too Large"), "chunked");

    // A body within the cap is read whole and routed as before.
    let small = http(&edge_url, "POST", "/x", &[("content-type", "application/json")], "{}");
    assert_eq!(small.status, 404, "{}", small.body);
}
