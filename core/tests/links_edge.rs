//! Short links end to end through `verge dev`: created over the API, served by the local
//! edge host from KV without calling the core, clicks counted back in the core.

mod common;

use std::time::{Duration, Instant};

use common::fresh_config;
use common::process::{Reply, field, http, start_dev, verge};
use serde_json::{Value, json};

const BROWSER: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";

struct Api {
    core: String,
    key: String,
}

impl Api {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = format!("Bearer {}", self.key);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let reply =
            http(&self.core, method, path, &[("authorization", &auth), ("content-type", "application/json")], &body);
        (reply.status, serde_json::from_str(&reply.body).unwrap_or(Value::Null))
    }
}

/// Polls the edge until `ready` holds of its answer (publishing takes a moment).
fn edge_until(edge: &str, method: &str, path: &str, headers: &[(&str, &str)], ready: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let reply = http(edge, method, path, headers, "");
        if ready(&reply) {
            return reply;
        }
        assert!(Instant::now() < deadline, "edge never got there on {method} {path}: {} {}", reply.status, reply.body);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn links_redirect_at_the_edge_in_every_case_and_clicks_come_back() {
    let (config, dir) = fresh_config().await;
    let mut command = verge(&config, dir.path());
    // The tests reach the edge as 127.0.0.1, so that is the links' default domain.
    command.env("VERGE_LINKS_DEFAULT_DOMAIN", "127.0.0.1");
    // As if a CDN in front of this PoP reported the client's country.
    command.env("VERGE_EDGE_COUNTRY_HEADER", "x-test-country");
    let (_dev, lines) = start_dev(command);
    let api = Api {
        core: field(&lines, "core API").trim_end_matches("/v1").to_owned(),
        key: field(&lines, "admin key").to_owned(),
    };
    let edge = field(&lines, "edge").trim_end_matches("/__verge/health").to_owned();
    let ua = |agent| [("user-agent", agent)];

    // Bad targets are refused precisely and create nothing.
    for bad in ["javascript:alert(1)", "data:text/html,hi", "file:///etc/passwd", "http://127.0.0.1/loop"] {
        let (status, problem) = api.call("POST", "/v1/links", Some(json!({"url": bad})));
        assert_eq!(status, 422, "{bad}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "url", "{problem}");
    }
    assert_eq!(api.call("GET", "/v1/links", None).1["items"].as_array().unwrap().len(), 0);

    // A generated code redirects at once, with its status and UTM applied.
    let (status, link) = api.call(
        "POST",
        "/v1/links",
        Some(json!({"url": "https://example.com/a", "status": 301, "utm": {"source": "verge"}, "forward_query": true})),
    );
    assert_eq!(status, 201, "{link}");
    let code = link["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 7);
    let reply = edge_until(&edge, "GET", &format!("/{code}?ref=tw"), &ua(BROWSER), |r| r.status == 301);
    assert_eq!(reply.header("location"), Some("https://example.com/a?utm_source=verge&ref=tw"));

    // An alias; the same alias again is a conflict.
    let alias =
        json!({"url": "https://example.com/desk", "alias": "spring-sale", "ios_url": "https://apps.apple.com/x"});
    assert_eq!(api.call("POST", "/v1/links", Some(alias.clone())).0, 201);
    assert_eq!(api.call("POST", "/v1/links", Some(alias)).1["code"], "alias_taken");
    let desktop = edge_until(&edge, "GET", "/spring-sale", &ua(BROWSER), |r| r.status == 302);
    assert_eq!(desktop.header("location"), Some("https://example.com/desk"));
    let phone = http(&edge, "GET", "/spring-sale", &ua(IPHONE), "");
    assert_eq!(phone.header("location"), Some("https://apps.apple.com/x"), "device targeting");

    // Country targeting wins over device targeting; without a country, device decides.
    let (_, intl) = api.call(
        "POST",
        "/v1/links",
        Some(
            json!({"url": "https://example.com/world", "alias": "intl", "country_urls": {"de": "https://example.de/"},
            "ios_url": "https://apps.apple.com/intl"}),
        ),
    );
    assert_eq!(intl["country_urls"], json!({"DE": "https://example.de/"}));
    let german =
        edge_until(&edge, "GET", "/intl", &[("user-agent", IPHONE), ("x-test-country", "de")], |r| r.status == 302);
    assert_eq!(german.header("location"), Some("https://example.de/"));
    let french = http(&edge, "GET", "/intl", &[("user-agent", IPHONE), ("x-test-country", "FR")], "");
    assert_eq!(french.header("location"), Some("https://apps.apple.com/intl"));
    // Only the trusted header counts: the edge's own header from a client is replaced.
    let spoofed = http(&edge, "GET", "/intl", &[("user-agent", BROWSER), ("verge-client-country", "DE")], "");
    assert_eq!(spoofed.header("location"), Some("https://example.com/world"));

    // A branded domain: its links answer only under its host, unknown codes go to its
    // not-found URL, and the default domain does not serve its links.
    let (status, _) = api.call(
        "POST",
        "/v1/links/domains",
        Some(json!({"domain": "go.brand.test", "not_found_url": "https://brand.test/missing"})),
    );
    assert_eq!(status, 201);
    let (status, _) = api.call(
        "POST",
        "/v1/links",
        Some(json!({"url": "https://brand.test/offer", "domain": "go.brand.test", "alias": "offer"})),
    );
    assert_eq!(status, 201);
    let branded = [("user-agent", BROWSER), ("host", "go.brand.test")];
    let offer =
        edge_until(&edge, "GET", "/offer", &branded, |r| r.header("location") == Some("https://brand.test/offer"));
    assert_eq!(offer.status, 302);
    assert_eq!(http(&edge, "GET", "/offer", &ua(BROWSER), "").status, 404, "not on the default domain");
    let missing = http(&edge, "GET", "/nothing-here", &branded, "");
    assert_eq!((missing.status, missing.header("location")), (302, Some("https://brand.test/missing")));

    // Expired: 410, or the expired URL.
    let past = "2020-01-01T00:00:00Z";
    api.call(
        "POST",
        "/v1/links",
        Some(json!({"url": "https://example.com/old", "alias": "old-one", "expires_at": past})),
    );
    edge_until(&edge, "GET", "/old-one", &ua(BROWSER), |r| r.status == 410);
    api.call(
        "POST",
        "/v1/links",
        Some(json!({"url": "https://example.com/old", "alias": "old-two", "expires_at": past, "expired_url": "https://example.com/sorry"})),
    );
    let moved = edge_until(&edge, "GET", "/old-two", &ua(BROWSER), |r| r.status == 302);
    assert_eq!(moved.header("location"), Some("https://example.com/sorry"));

    // Password: an interstitial, a wrong password is refused, the right one redirects.
    let (_, secret) = api.call(
        "POST",
        "/v1/links",
        Some(json!({"url": "https://example.com/secret", "alias": "hidden", "password": "s3cret pw"})),
    );
    assert_eq!(secret["has_password"], true);
    assert!(secret.get("password").is_none() && !secret.to_string().contains("s3cret"));
    let page = edge_until(&edge, "GET", "/hidden", &ua(BROWSER), |r| r.status == 401);
    assert!(page.body.contains("<form method=\"post\">"), "{}", page.body);
    let form = [("user-agent", BROWSER), ("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(http(&edge, "POST", "/hidden", &form, "password=wrong").status, 401);
    let opened = http(&edge, "POST", "/hidden", &form, "password=s3cret+pw");
    assert_eq!((opened.status, opened.header("location")), (303, Some("https://example.com/secret")));
    // Guessing stops after a few wrong passwords, before any hash is run. The count is
    // per instance, and the host may spread requests over a few of them.
    let limited = (0..40).map(|_| http(&edge, "POST", "/hidden", &form, "password=guess")).find(|r| r.status == 429);
    let limited = limited.expect("a client guessing passwords is stopped");
    assert!(limited.body.contains("too_many_attempts"), "{}", limited.body);
    assert!(limited.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s > 0 && s <= 900)));

    // Click limit: after two human clicks the edge answers 410.
    let (_, limited) =
        api.call("POST", "/v1/links", Some(json!({"url": "https://example.com/l", "alias": "twice", "max_clicks": 2})));
    edge_until(&edge, "GET", "/twice", &ua(BROWSER), |r| r.status == 302);
    http(&edge, "GET", "/twice", &ua(BROWSER), "");
    // Every poll is a redirect that counts, so the overshoot is the propagation time over
    // the poll interval: polled every 50 ms, at most 4 means the limit reached the edge
    // within about 100 ms of the second click (20 ms polls made it ~40 ms, which a loaded
    // 2-core machine sometimes missed).
    let deadline = Instant::now() + Duration::from_secs(2);
    while http(&edge, "GET", "/twice", &ua(BROWSER), "").status != 410 {
        assert!(Instant::now() < deadline, "the click limit never reached the edge");
        std::thread::sleep(Duration::from_millis(50));
    }
    let id = limited["id"].as_str().unwrap();
    let clicks = api.call("GET", &format!("/v1/links/{id}"), None).1["clicks"].as_i64().unwrap();
    assert!((2..=4).contains(&clicks), "bounded overshoot: {clicks}");

    // Analytics: bots (a crawler, a HEAD) counted apart, a returning visitor once.
    let first = link["id"].as_str().unwrap();
    http(&edge, "GET", &format!("/{code}"), &ua(BROWSER), "");
    http(&edge, "GET", &format!("/{code}"), &ua("Mozilla/5.0 (compatible; Googlebot/2.1)"), "");
    http(&edge, "HEAD", &format!("/{code}"), &ua(BROWSER), "");
    http(&edge, "GET", &format!("/{code}"), &[("user-agent", IPHONE), ("referer", "https://news.example/story")], "");
    let deadline = Instant::now() + Duration::from_secs(5);
    let figures = loop {
        let (_, figures) =
            api.call("GET", &format!("/v1/links/{first}/analytics?tz=Europe/Berlin&interval=hour"), None);
        if figures["clicks"] == 3 && figures["bot_clicks"] == 2 || Instant::now() > deadline {
            break figures;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((figures["clicks"].as_i64(), figures["bot_clicks"].as_i64()), (Some(3), Some(2)), "{figures}");
    assert_eq!(figures["uniques"], 2, "the desktop visitor came twice: {figures}");
    let devices: Vec<_> =
        figures["devices"].as_array().unwrap().iter().map(|d| (d["value"].clone(), d["clicks"].clone())).collect();
    assert_eq!(devices, [(json!("desktop"), json!(2)), (json!("ios"), json!(1))]);
    assert_eq!(figures["referrers"][1], json!({"value": "news.example", "clicks": 1, "uniques": 1}), "{figures}");
    assert_eq!(api.call("GET", &format!("/v1/links/{first}"), None).1["clicks"], 3, "human clicks only");

    // Deleted links stop being served.
    assert_eq!(api.call("DELETE", &format!("/v1/links/{first}"), None).0, 204);
    edge_until(&edge, "GET", &format!("/{code}"), &ua(BROWSER), |r| r.status == 404);
}
