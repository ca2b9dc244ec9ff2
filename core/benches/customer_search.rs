//! Customer search on 100,000 customers, as a console search box types: prefixes of one to
//! four letters and whole addresses, through the router (`oneshot`, no sockets), p50 and
//! p99 over every query. Customers are made through the API, so their search terms are
//! the ones the code derives.
//!
//! `cargo bench -p verge-core --bench customer_search` on SQLite; with `DATABASE_URL` set,
//! on that PostgreSQL (a fresh database is the caller's to provide). `CUSTOMERS` changes
//! the count. Seeding 100,000 takes a few minutes; `scripts/bench-sessions` runs it.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use verge_core::audit::Actor;
use verge_core::keys::{self, NewKey, Scope};
use verge_core::{App, Config};

const FIRST: &[&str] = &[
    "Ada", "Ben", "Chloé", "Dmitri", "Eva", "Farah", "Günther", "Hana", "Ines", "Jonas", "Kenji", "Lena", "Mateo",
    "Nora", "Oskar", "Priya", "Quentin", "Rosa", "Søren", "Tomás", "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zoë",
];
const LAST: &[&str] = &[
    "Andersen",
    "Bianchi",
    "Castillo",
    "Dubois",
    "Eriksson",
    "Fischer",
    "García",
    "Horvath",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "López",
    "Müller",
    "Nakamura",
    "O'Brien",
    "Petrov",
    "Quinn",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Usman",
    "Varga",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zimmermann",
];

async fn call(app: &App, method: Method, uri: &str, key: &str, body: Option<String>) -> (StatusCode, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(uri).header(header::AUTHORIZATION, format!("Bearer {key}"));
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    (status, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[allow(clippy::print_stdout)]
fn main() {
    let count: usize = std::env::var("CUSTOMERS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
        if let Ok(url) = std::env::var("DATABASE_URL") {
            config.database_url = Some(url.into());
        }
        let app = App::build(config).await.expect("the core starts");
        let new = NewKey { name: "bench".into(), scopes: vec![Scope::Admin], expires_at: None };
        let key = keys::create(&app.state.db, new, &Actor::System).await.unwrap().token;

        let started = Instant::now();
        let mut seeding = tokio::task::JoinSet::new();
        for worker in 0..4 {
            let (app, key) = (app.clone(), key.clone());
            seeding.spawn(async move {
                for n in (worker..count).step_by(4) {
                    let (first, last) = (FIRST[n % FIRST.len()], LAST[(n / FIRST.len()) % LAST.len()]);
                    let city = ["Berlin", "Lisbon", "Osaka", "Lima"][n % 4];
                    let body = serde_json::json!({
                        "email": format!("{}.{}{n}@example.com", first.to_lowercase(), last.to_lowercase().replace('\'', "")),
                        "name": format!("{first} {last}"),
                        "phone": format!("+4915{n:09}"),
                        "metadata": {"city": city},
                    });
                    let (status, text) = call(&app, Method::POST, "/v1/customers/bench", &key, Some(body.to_string())).await;
                    assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&text));
                }
            });
        }
        while let Some(done) = seeding.join_next().await {
            done.unwrap();
        }
        println!("seeded {count} customers in {:.0} s", started.elapsed().as_secs_f64());

        let mut queries: Vec<String> = Vec::new();
        for name in FIRST.iter().chain(LAST) {
            let folded = verge_shared::text::fold(name);
            for len in 1..=4.min(folded.chars().count()) {
                queries.push(folded.chars().take(len).collect());
            }
        }
        for n in (0..count).step_by(count / 200) {
            queries.push(format!("+4915{n:09}"));
            queries.push(format!("{}.", FIRST[n % FIRST.len()].to_lowercase()));
        }
        queries.extend(["berlin", "lis", "nobody", "example.com"].map(str::to_owned));
        let mut timings = Vec::new();
        let mut results = 0usize;
        for _round in 0..3 {
            for query in &queries {
                let uri = format!("/v1/customers/bench?q={}", url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>());
                let asked = Instant::now();
                let (status, body) = call(&app, Method::GET, &uri, &key, None).await;
                timings.push(asked.elapsed());
                assert_eq!(status, StatusCode::OK);
                let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
                results += page["items"].as_array().unwrap().len();
            }
        }
        timings.sort();
        println!(
            "{} searches ({} distinct queries, {:.1} results a page): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            timings.len(),
            queries.len(),
            results as f64 / timings.len() as f64,
            percentile(&timings, 0.50).as_secs_f64() * 1000.0,
            percentile(&timings, 0.99).as_secs_f64() * 1000.0,
            timings.last().unwrap().as_secs_f64() * 1000.0,
        );
    });
}
