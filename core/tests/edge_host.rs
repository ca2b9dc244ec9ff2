//! The local edge host serves the same answers whether each request gets a fresh component
//! instance or instances are reused (the default, up to 128 requests each), and no event
//! sent after a response is lost when an instance is replaced.

mod common;

use std::time::Duration;

use common::fresh_config;
use common::process::{http, serve_edge, start_core_for_edges, verge};

/// Enough sequential requests to cross the default reuse limit twice.
const REQUESTS: usize = 300;

#[tokio::test]
async fn fresh_and_reused_instances_answer_alike_and_lose_no_events() {
    let (config, dir) = fresh_config().await;
    let work = dir.path();
    let core = start_core_for_edges(&config, work);
    let store = work.join("store");
    let published = verge(&config, work).args(["publish", "--target", "local", "--out"]).arg(&store).output().unwrap();
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));

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
