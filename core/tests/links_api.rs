//! The links API beyond single writes: bulk create, branded domains, CSV exports, QR codes
//! and click analytics, on whichever backend this run tests.

mod common;

use axum::http::{Method, StatusCode, header};
use common::TestApp;
use serde_json::{Value, json};
use verge_core::keys::Scope;

async fn create(app: &TestApp, key: &str, body: Value) -> Value {
    app.call(Method::POST, "/v1/links", Some(key), Some(body)).await.ok().clone()
}

#[tokio::test]
async fn bulk_creates_the_valid_items_and_reports_each() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let items = json!({"links": [
        {"url": "https://example.com/1"},
        {"url": "javascript:alert(1)"},
        {"url": "https://example.com/2", "alias": "twin"},
        {"url": "https://example.com/3", "alias": "twin"},
        {"url": "https://example.com/4", "unknown": true},
        {"url": "https://example.com/5", "alias": "x", "status": 303},
    ]});
    let reply = app.call(Method::POST, "/v1/links/bulk", Some(&admin), Some(items)).await;
    let result = reply.ok();
    assert_eq!((result["created"].as_u64(), result["failed"].as_u64()), (Some(2), Some(4)), "{result}");
    let statuses: Vec<_> =
        result["results"].as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [201, 422, 201, 409, 422, 422]);
    let results = &result["results"];
    assert_eq!(results[1]["error"]["errors"][0]["field"], "url");
    assert_eq!(results[3]["error"]["code"], "alias_taken");
    // Every field error of an item at once.
    let fields: Vec<_> =
        results[5]["error"]["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["alias", "status"]);
    assert_eq!(results[2]["link"]["code"], "twin");

    let listed = app.get("/v1/links", Some(&admin)).await;
    assert_eq!(listed.ok()["items"].as_array().unwrap().len(), 2);

    // Too many items: refused whole.
    let many: Vec<_> = (0..1001).map(|i| json!({"url": format!("https://example.com/{i}")})).collect();
    let reply = app.call(Method::POST, "/v1/links/bulk", Some(&admin), Some(json!({"links": many}))).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let listed = app.get("/v1/links", Some(&admin)).await;
    assert_eq!(listed.ok()["items"].as_array().unwrap().len(), 2);

    // A full batch of 1,000 goes through, each with its own code.
    let full: Vec<_> = (0..1000).map(|i| json!({"url": format!("https://example.com/n/{i}")})).collect();
    let reply = app.call(Method::POST, "/v1/links/bulk", Some(&admin), Some(json!({"links": full}))).await;
    assert_eq!(reply.ok()["created"], 1000);
    let codes: std::collections::HashSet<_> =
        reply.json["results"].as_array().unwrap().iter().map(|r| r["link"]["code"].as_str().unwrap()).collect();
    assert_eq!(codes.len(), 1000);

    let reader = app.key(&[Scope::Read]).await;
    let reply = app.call(Method::POST, "/v1/links/bulk", Some(&reader), Some(json!({"links": []}))).await;
    reply.problem(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn branded_domains_hold_links_and_guard_against_loops() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let domain = |body: Value| app.call(Method::POST, "/v1/links/domains", Some(&admin), Some(body));

    let reply = domain(json!({"domain": "Go.Example.COM", "not_found_url": "https://example.com/404"})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.json["domain"], "go.example.com");
    domain(json!({"domain": "go.example.com"})).await.problem(StatusCode::CONFLICT, "domain_taken");
    domain(json!({"domain": "localhost"})).await.problem(StatusCode::CONFLICT, "domain_taken");
    for bad in ["go.example.com:8080", "https://x.example.com/", "a b"] {
        domain(json!({"domain": bad})).await.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    // The not-found URL may not loop through our own domains.
    domain(json!({"domain": "b.example.com", "not_found_url": "https://go.example.com/x"}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    // A domain that existing links point at would make them loop.
    create(&app, &admin, json!({"url": "https://later.example.com/page"})).await;
    let refused = domain(json!({"domain": "later.example.com"})).await;
    refused.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    // So would one that any other target points at: every kind of target is checked.
    let main = "https://example.com/main";
    let others = [
        (
            "expired.example.com",
            json!({"url": main, "expires_at": "2099-01-01T00:00:00Z", "expired_url": "https://expired.example.com/"}),
        ),
        ("ios.example.com", json!({"url": main, "ios_url": "https://ios.example.com:8443/app"})),
        ("android.example.com", json!({"url": main, "android_url": "http://android.example.com?x=1"})),
        ("desktop.example.com", json!({"url": main, "desktop_url": "https://desktop.example.com/"})),
        ("country.example.com", json!({"url": main, "country_urls": {"DE": "https://country.example.com/de"}})),
    ];
    for (host, link) in others {
        create(&app, &admin, link).await;
        let refused = domain(json!({"domain": host})).await;
        assert_eq!(refused.validation_fields(), ["domain"], "{host}: {}", refused.text);
    }
    domain(json!({"domain": "c.example.com", "not_found_url": "https://nf.example.com/"})).await.ok();
    let refused = domain(json!({"domain": "nf.example.com"})).await;
    assert_eq!(refused.validation_fields(), ["domain"], "{}", refused.text);
    // A host that only starts alike is no loop.
    create(&app, &admin, json!({"url": "https://similar.example.com.evil/x"})).await;
    assert_eq!(domain(json!({"domain": "similar.example.com"})).await.status, StatusCode::CREATED);

    let listed = app.get("/v1/links/domains", Some(&admin)).await;
    let names: Vec<_> = listed.ok()["items"].as_array().unwrap().iter().map(|d| d["domain"].clone()).collect();
    assert_eq!(
        names,
        [json!("localhost"), json!("c.example.com"), json!("go.example.com"), json!("similar.example.com")]
    );
    assert_eq!(listed.json["items"][0]["default"], true);

    let link = create(&app, &admin, json!({"url": "https://example.com/a", "domain": "go.example.com"})).await;
    assert!(link["short_url"].as_str().unwrap().starts_with("https://go.example.com/"), "{link}");
    let unknown = app
        .call(
            Method::POST,
            "/v1/links",
            Some(&admin),
            Some(json!({"url": "https://example.com/", "domain": "nope.example"})),
        )
        .await;
    assert_eq!(unknown.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")["errors"][0]["field"], "domain");

    let path = "/v1/links/domains/go.example.com";
    let changed = app.call(Method::PATCH, path, Some(&admin), Some(json!({"not_found_url": null}))).await;
    assert_eq!(changed.ok()["not_found_url"], Value::Null);
    app.call(Method::DELETE, path, Some(&admin), None).await.problem(StatusCode::CONFLICT, "domain_in_use");
    let id = link["id"].as_str().unwrap();
    assert_eq!(
        app.call(Method::DELETE, &format!("/v1/links/{id}"), Some(&admin), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.call(Method::DELETE, path, Some(&admin), None).await.status, StatusCode::NO_CONTENT);
    app.call(Method::DELETE, path, Some(&admin), None).await.problem(StatusCode::NOT_FOUND, "not_found");

    let audit = app.get("/v1/audit-log?target_id=go.example.com", Some(&admin)).await;
    let actions: Vec<_> = audit.ok()["items"].as_array().unwrap().iter().map(|e| e["action"].clone()).collect();
    assert_eq!(actions, [json!("link_domain.delete"), json!("link_domain.update"), json!("link_domain.create")]);
    assert_eq!(app.get("/v1/links/domains", None).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn links_export_as_csv_with_filters_and_without_formula_injection() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    create(&app, &admin, json!({"url": "https://example.com/a?x=1,2", "tags": ["=cmd|' /C calc'!A0", "spring"]})).await;
    create(&app, &admin, json!({"url": "https://example.com/b", "tags": ["autumn"]})).await;

    let reply = app.get("/v1/links/export?tag=spring", Some(&admin)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert!(reply.headers[header::CONTENT_DISPOSITION].to_str().unwrap().contains("links.csv"));
    let lines: Vec<_> = reply.text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2, "{}", reply.text);
    assert!(lines[0].starts_with("id,domain,code,short_url,url,status,"));
    assert!(lines[1].contains(",\"https://example.com/a?x=1,2\",302,"), "{}", lines[1]);
    assert!(lines[1].contains(",\"'=cmd|' /C calc'!A0;spring\","), "a formula is defused: {}", lines[1]);

    let all = app.get("/v1/links/export", Some(&admin)).await;
    assert_eq!(all.text.split("\r\n").filter(|l| !l.is_empty()).count(), 3);
    assert_eq!(app.get("/v1/links/export", None).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn qr_codes_encode_the_short_url() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let link = create(&app, &admin, json!({"url": "https://example.com/qr", "alias": "qr-code"})).await;
    let id = link["id"].as_str().unwrap();

    let svg = app.get(&format!("/v1/links/{id}/qr"), Some(&admin)).await;
    assert_eq!(svg.headers[header::CONTENT_TYPE], "image/svg+xml");
    assert!(svg.text.contains("<svg") && svg.text.contains("</svg>"));

    let png = app.get(&format!("/v1/links/{id}/qr?format=png&scale=4"), Some(&admin)).await;
    assert_eq!(png.headers[header::CONTENT_TYPE], "image/png");
    let decoder = png::Decoder::new(std::io::Cursor::new(png.bytes.clone()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let (width, height, line) = (frame.width as usize, frame.height as usize, frame.line_size);
    let luma = |x: usize, y: usize| if pixels[y * line + x / 8] & (0x80 >> (x % 8)) == 0 { 0 } else { 255 };
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, luma);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1);
    let (_, content) = grids[0].decode().unwrap();
    assert_eq!(content, "https://localhost/qr-code");

    app.get(&format!("/v1/links/{id}/qr?format=gif"), Some(&admin))
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_query");
    app.get(&format!("/v1/links/{id}/qr?format=png&scale=0"), Some(&admin))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    app.get("/v1/links/lnk_missing/qr", Some(&admin)).await.problem(StatusCode::NOT_FOUND, "not_found");
}

fn click(link: &str, at: &str, visitor: &str, bot: bool, extra: Value) -> Value {
    let mut data = json!({"link": link, "domain": "localhost", "device": "desktop", "browser": "Chrome",
        "os": "Windows", "visitor": visitor, "bot": bot});
    data.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    json!({"id": verge_core::ids::new_id("evt"), "kind": "link.click", "at": at, "data": data})
}

#[tokio::test]
async fn analytics_separate_bots_count_uniques_and_bucket_in_a_time_zone() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let ingest = app.key(&[Scope::IngestEvents]).await;
    let a = create(&app, &admin, json!({"url": "https://example.com/a"})).await["id"].as_str().unwrap().to_owned();
    let b = create(&app, &admin, json!({"url": "https://example.com/b"})).await["id"].as_str().unwrap().to_owned();

    // Events must be recent, so the days are counted back from today (UTC): d0 is three
    // days ago. Tokyo is UTC+9 all year: 23:30Z on d0 is already d1 there.
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let day = |n: i32| (today - jiff::Span::new().days(3 - n)).to_string();
    let (d0, d1, d2) = (day(0), day(1), day(2));
    let events = json!({"events": [
        click(&a, &format!("{d0}T10:00:00Z"), "v1", false, json!({"country": "DE", "referrer_host": "news.example"})),
        click(&a, &format!("{d0}T23:30:00Z"), "v1", false, json!({"country": "DE"})),
        click(&a, &format!("{d1}T08:00:00Z"), "v2", false, json!({"country": "FR", "device": "ios", "os": "iOS", "browser": "Safari"})),
        click(&a, &format!("{d1}T09:00:00Z"), "bot1", true, json!({"browser": "Googlebot"})),
        click(&b, &format!("{d1}T09:30:00Z"), "v3", false, json!({})),
    ]});
    let stored = app.call(Method::POST, "/v1/events", Some(&ingest), Some(events.clone())).await;
    assert_eq!(stored.ok()["accepted"], 5);
    // A retried batch counts once: no figure below moves.
    assert_eq!(app.call(Method::POST, "/v1/events", Some(&ingest), Some(events)).await.ok()["duplicates"], 5);

    let range = format!("from={d0}T00:00:00Z&to={d2}T00:00:00Z");
    let one = app.get(&format!("/v1/links/{a}/analytics?{range}&tz=Asia/Tokyo"), Some(&admin)).await;
    let one = one.ok();
    assert_eq!(
        (one["clicks"].as_i64(), one["uniques"].as_i64(), one["bot_clicks"].as_i64()),
        (Some(3), Some(2), Some(1))
    );
    let timeline: Vec<_> =
        one["timeline"].as_array().unwrap().iter().map(|b| (b["start"].clone(), b["clicks"].clone())).collect();
    assert_eq!(
        timeline,
        [
            (json!(format!("{d0}T00:00:00+09:00")), json!(1)),
            (json!(format!("{d1}T00:00:00+09:00")), json!(2)),
            (json!(format!("{d2}T00:00:00+09:00")), json!(0)),
        ]
    );
    assert_eq!(
        one["countries"],
        json!([{"value": "DE", "clicks": 2, "uniques": 1}, {"value": "FR", "clicks": 1, "uniques": 1}])
    );
    assert_eq!(one["devices"][0], json!({"value": "desktop", "clicks": 2, "uniques": 1}));
    assert_eq!(one["browsers"].as_array().unwrap().len(), 2, "the bot's browser is not among them");
    assert_eq!(
        one["referrers"],
        json!([{"value": null, "clicks": 2, "uniques": 2}, {"value": "news.example", "clicks": 1, "uniques": 1}])
    );
    assert!(one.get("links").is_none());
    // The link's own counts agree, each event once: human clicks, and every redirect
    // (the bot's too) toward its click limit.
    let link = app.get(&format!("/v1/links/{a}"), Some(&admin)).await;
    assert_eq!((&link.ok()["clicks"], &link.json["redirects"]), (&json!(3), &json!(4)));

    let all = app.get(&format!("/v1/links/analytics?{range}&interval=hour"), Some(&admin)).await;
    let all = all.ok();
    assert_eq!(
        (all["clicks"].as_i64(), all["uniques"].as_i64(), all["bot_clicks"].as_i64()),
        (Some(4), Some(3), Some(1))
    );
    assert_eq!(all["timeline"].as_array().unwrap().len(), 48);
    assert_eq!(all["links"][0], json!({"value": a, "clicks": 3, "uniques": 2}));

    let bad = |query: &str| {
        let uri = format!("/v1/links/analytics?{query}");
        let admin = admin.clone();
        let app = &app;
        async move { app.get(&uri, Some(&admin)).await }
    };
    bad("tz=Mars/Olympus").await.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    bad(&format!("from={d2}T00:00:00Z&to={d1}T00:00:00Z"))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    bad("from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&interval=hour")
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    app.get("/v1/links/lnk_nope/analytics", Some(&admin)).await.problem(StatusCode::NOT_FOUND, "not_found");

    // The click export has every row, bots flagged, oldest first.
    let csv = app.get(&format!("/v1/links/clicks/export?link_id={a}"), Some(&admin)).await;
    let lines: Vec<_> = csv.text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "event_id,at,link_id,domain,country,device,browser,os,referrer_host,bot,visitor");
    assert_eq!(lines.len(), 5, "{}", csv.text);
    assert!(
        lines[1].contains(&format!(",{d0}T10:00:00.000Z,")) && lines[1].ends_with(",news.example,false,v1"),
        "{}",
        lines[1]
    );
    assert!(lines[4].contains(",true,bot1"), "{}", lines[4]);
}

#[tokio::test]
async fn utm_values_are_bounded_and_printable() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let long = "x".repeat(201);
    let body = json!({"url": "https://example.com/", "utm": {"source": "news\nletter", "medium": long,
                      "campaign": "", "term": "spring sale", "content": "ad\u{7f}1"}});
    let refused = app.call(Method::POST, "/v1/links", Some(&admin), Some(body)).await;
    assert_eq!(refused.validation_fields(), ["utm.source", "utm.medium", "utm.campaign", "utm.content"]);
    let listed = app.get("/v1/links", Some(&admin)).await;
    assert_eq!(listed.ok()["items"], json!([]), "nothing was created");

    let fine = json!({"url": "https://example.com/", "utm": {"source": "ß".repeat(200), "term": "spring sale"}});
    let created = app.call(Method::POST, "/v1/links", Some(&admin), Some(fine)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.json["id"].as_str().unwrap();
    let patched =
        app.call(Method::PATCH, &format!("/v1/links/{id}"), Some(&admin), Some(json!({"utm": {"term": "\t"}}))).await;
    assert_eq!(patched.validation_fields(), ["utm.term"]);
}
