//! Importing short links from CSV, with progress: the console cuts the file into batches
//! for `POST /v1/links/bulk` and streams the page as each batch is answered, so a long import
//! shows how far it has got (no script needed: the browser renders the page as it arrives),
//! and every refused line is reported with the API's reason.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use super::page::{self, Nav};
use super::{Console, Post, SignedIn};
use crate::operators::sessions::Session;

/// Lines per `POST /v1/links/bulk` (the API takes up to 1,000).
const BATCH: usize = 100;
/// Most lines one import takes.
const MAX_LINES: usize = 10_000;
const COLUMNS: &[&str] = &["url", "alias", "domain", "tags", "expires_at", "max_clicks", "status"];
/// Where the streamed progress goes in the page.
const MARK: &str = "<!--progress-->";

fn form(session: &Session, csv: &str, problem: Option<&str>) -> Markup {
    html! {
        h1 { "Import links" }
        p { "Paste CSV with a header line. Columns: " code { (COLUMNS.join(",")) }
            " (only " code { "url" } " is needed; tags separated by " code { ";" } "). Up to "
            (MAX_LINES) " lines; each is created as " code { "POST /v1/links" } " would, and refused lines are listed." }
        @if let Some(problem) = problem { (page::problem(problem)) }
        form method="post" action="/console/links/import" {
            (page::csrf(session))
            div.field {
                label for="f-csv" { "CSV" }
                textarea id="f-csv" name="csv" spellcheck="false" { (csv) }
            }
            button type="submit" { "Import" }
        }
    }
}

pub(crate) async fn page(SignedIn(session): SignedIn) -> Response {
    page::page(Some(&session), "Import links", Nav::Links, form(&session, "url,alias,tags\n", None)).into_response()
}

/// The CSV's rows as link documents, or why the file cannot be read.
fn parse(csv: &str) -> Result<Vec<Value>, String> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(csv.as_bytes());
    let headers = reader.headers().map_err(|err| format!("the header line cannot be read: {err}"))?.clone();
    if let Some(unknown) = headers.iter().find(|h| !COLUMNS.contains(h)) {
        return Err(format!("unknown column `{unknown}`; the columns are {}", COLUMNS.join(", ")));
    }
    if !headers.iter().any(|h| h == "url") {
        return Err("the header line must name a `url` column".into());
    }
    let mut links = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let record = record.map_err(|err| format!("line {}: {err}", index + 2))?;
        if links.len() == MAX_LINES {
            return Err(format!("more than {MAX_LINES} lines; split the file"));
        }
        let mut link = Map::new();
        for (name, value) in headers.iter().zip(record.iter()).filter(|(_, v)| !v.is_empty()) {
            let value = match name {
                "tags" => json!(value.split(';').map(str::trim).filter(|t| !t.is_empty()).collect::<Vec<_>>()),
                // Numbers as numbers; anything else goes as text for the API to refuse by field.
                "max_clicks" | "status" => value.parse::<i64>().map_or_else(|_| json!(value), |n| json!(n)),
                _ => json!(value),
            };
            link.insert(name.to_owned(), value);
        }
        links.push(Value::Object(link));
    }
    if links.is_empty() {
        return Err("the file has no lines below its header".into());
    }
    Ok(links)
}

pub(crate) async fn import(State(console): State<Console>, post: Post) -> Response {
    let csv = post.field("csv");
    let links = match parse(&csv) {
        Ok(links) => links,
        Err(problem) => {
            let body = form(&post.session, &csv, Some(&problem));
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                page::page(Some(&post.session), "Import links", Nav::Links, body),
            )
                .into_response();
        }
    };
    let total = links.len();
    let shell = page::page(
        Some(&post.session),
        "Import links",
        Nav::Links,
        html! {
            h1 { "Importing " (total) " links" }
            (maud::PreEscaped(MARK))
        },
    )
    .into_string();
    let (head, tail) = shell.split_once(MARK).expect("the page holds the mark");
    let (head, tail) = (head.to_owned(), tail.to_owned());
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(4);
    let operator = post.session.operator.clone();
    tokio::spawn(async move {
        let (mut created, mut refused) = (0usize, 0usize);
        for (batch, chunk) in links.chunks(BATCH).enumerate() {
            let first = batch * BATCH;
            let body = json!({ "links": chunk });
            let reply = console.api(&operator, Method::POST, "/v1/links/bulk", Some(&body)).await;
            let fragment = if reply.ok() {
                let empty = Vec::new();
                let failures: Vec<&Value> =
                    reply.body["results"].as_array().unwrap_or(&empty).iter().filter(|r| r["status"] != 201).collect();
                created += chunk.len() - failures.len();
                refused += failures.len();
                html! {
                    p { progress value=(first + chunk.len()) max=(total) aria-label="Import progress" {}
                        " " (first + chunk.len()) " of " (total) ": " (created) " created, " (refused) " refused" }
                    @if !failures.is_empty() { ul.error { @for failure in failures {
                        // CSV line = header (1) + item index within the file + 1.
                        @let errors = failure["error"]["errors"].as_array().filter(|e| !e.is_empty());
                        li { "line " (first + failure["index"].as_u64().unwrap_or(0) as usize + 2) ": "
                             @if let Some(errors) = errors {
                                 @for error in errors { code { (page::cell(&error["field"])) } " " (page::cell(&error["message"])) " " }
                             } @else { (page::cell(&failure["error"]["detail"])) } }
                    } } }
                }
            } else {
                refused += chunk.len();
                html! { (page::problem(&format!("lines {}–{}: {}", first + 2, first + chunk.len() + 1, reply.detail().unwrap_or_default()))) }
            };
            if tx.send(fragment.into_string()).await.is_err() {
                return; // the browser went away; what was sent is created, the rest not
            }
        }
        let summary = html! {
            div.notice role="status" data-testid="import-done" { "Done: " (created) " created, " (refused) " refused, of " (total) "." }
            p { a href="/console/links" { "Back to links" } }
        };
        let _ = tx.send(summary.into_string()).await;
    });
    let fragments = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|html| (html, rx)) });
    let body = futures_util::stream::iter([head])
        .chain(fragments)
        .chain(futures_util::stream::iter([tail]))
        .map(Ok::<_, Infallible>);
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, "text/html; charset=utf-8".parse().expect("a content type"));
    // Proxies must not hold the page back until the import ends.
    response.headers_mut().insert("x-accel-buffering", "no".parse().expect("a header value"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_link_documents_and_bad_files_say_why() {
        let links =
            parse("url,alias,tags,max_clicks\nhttps://a.example/,a-1,x; y,10\nhttps://b.example/,,,ten\n").unwrap();
        assert_eq!(
            links[0],
            json!({"url": "https://a.example/", "alias": "a-1", "tags": ["x", "y"], "max_clicks": 10})
        );
        assert_eq!(links[1], json!({"url": "https://b.example/", "max_clicks": "ten"}));
        assert!(parse("url,colour\nhttps://a.example/,red\n").unwrap_err().contains("unknown column `colour`"));
        assert!(parse("alias\nx\n").unwrap_err().contains("`url`"));
        assert!(parse("url\n").unwrap_err().contains("no lines"));
    }
}
