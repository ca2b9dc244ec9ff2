//! Short links: search and page through them, create one with every option the API takes,
//! edit, delete, a QR code, and each link's analytics (a timeline chart and the breakdowns)
//! with CSV exports. Forms post to the console, which sends the same JSON a client would.

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::page::{self, Nav};
use super::{Console, Post, Reply, SignedIn, chart, encode};
use crate::operators::sessions::Session;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Search {
    #[serde(default)]
    q: String,
    #[serde(default)]
    tag: String,
    /// The API's `domain` filter (named apart from the new-link form's `domain`).
    #[serde(default)]
    on_domain: String,
    #[serde(default)]
    cursor: String,
    /// Set after a create, to say so.
    #[serde(default)]
    created: String,
}

pub(crate) async fn list(
    State(console): State<Console>,
    SignedIn(session): SignedIn,
    Query(search): Query<Search>,
) -> Response {
    render_list(&console, &session, &search, &[], None).await
}

async fn render_list(
    console: &Console,
    session: &Session,
    search: &Search,
    form: &[(String, String)],
    refusal: Option<&Reply>,
) -> Response {
    let mut uri = "/v1/links?limit=25".to_owned();
    for (name, value) in
        [("q", &search.q), ("tag", &search.tag), ("domain", &search.on_domain), ("cursor", &search.cursor)]
    {
        if !value.is_empty() {
            uri.push_str(&format!("&{name}={}", encode(value)));
        }
    }
    let reply = console.get(&session.operator, &uri).await;
    if !reply.ok() {
        return super::failure(session, &reply);
    }
    let empty = Vec::new();
    let links = reply.body["items"].as_array().unwrap_or(&empty);
    let body = html! {
        h1 { "Links" }
        @if let (Some(reply), false) = (refusal, session.operator.role.writes()) {
            (page::problem(&reply.detail().unwrap_or_default()))
        }
        @if !search.created.is_empty() { (page::notice(&format!("Created {}.", search.created))) }
        form.inline method="get" action="/console/links" role="search" {
            (page::input("Search code or destination", "q", "search", &search.q, None))
            (page::input("Tag", "tag", "text", &search.tag, None))
            (page::input("On domain", "on_domain", "text", &search.on_domain, None))
            button type="submit" { "Search" }
            a href="/console/links/export.csv" download { "Export CSV" }
            @if session.operator.role.writes() { a href="/console/links/import" { "Import CSV" } }
        }
        section {
            @if links.is_empty() {
                p.muted { "No links match." }
            } @else {
                div.table-wrap tabindex="0" role="region" aria-label="Links" {
                    table {
                        thead { tr { th { "Short link" } th { "Destination" } th { "Clicks" } th { "Tags" } th { "Created" } } }
                        tbody {
                            @for link in links {
                                tr {
                                    td { a href=(format!("/console/links/{}", page::cell(&link["id"]))) { (page::cell(&link["short_url"])) } }
                                    td { (page::cell(&link["url"])) }
                                    td { (page::cell(&link["clicks"])) }
                                    td { (page::cell(&link["tags"])) }
                                    td { (page::cell(&link["created_at"])) }
                                }
                            }
                        }
                    }
                }
            }
            (page::next_page("/console/links", &[("q", &search.q), ("tag", &search.tag), ("on_domain", &search.on_domain)], &reply.body))
        }
        @if session.operator.role.writes() {
            section { h2 { "New link" } (link_form(session, "/console/links", form, refusal, "Create link")) }
        }
    };
    let status = refusal.map_or(StatusCode::OK, |reply| reply.status);
    (status, page::page(Some(session), "Links", Nav::Links, body)).into_response()
}

/// The form's inputs: (name = JSON pointer without its slash, label, input type).
const FIELDS: &[(&str, &str, &str)] = &[
    ("url", "Destination URL", "url"),
    ("alias", "Alias (3–50 letters, digits, - or _; else a random code)", "text"),
    ("domain", "Domain (empty for the default)", "text"),
    ("tags", "Tags (comma-separated)", "text"),
    ("expires_at", "Expires at (RFC 3339, e.g. 2027-01-01T00:00:00Z)", "text"),
    ("expired_url", "After expiry, send to", "url"),
    ("max_clicks", "Maximum redirects", "number"),
    ("password", "Password (at least 8 characters)", "password"),
    ("utm/source", "UTM source", "text"),
    ("utm/medium", "UTM medium", "text"),
    ("utm/campaign", "UTM campaign", "text"),
    ("utm/term", "UTM term", "text"),
    ("utm/content", "UTM content", "text"),
    ("ios_url", "iOS destination", "url"),
    ("android_url", "Android destination", "url"),
    ("desktop_url", "Desktop destination", "url"),
    ("country_urls", "Per country (one `DE=https://…` per line or comma)", "text"),
];

fn value_of<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

fn link_form(
    session: &Session,
    action: &str,
    form: &[(String, String)],
    refusal: Option<&Reply>,
    submit: &str,
) -> Markup {
    let error = |name: &str| refusal.and_then(|r| r.field_error(&format!("/{name}")));
    let status = value_of(form, "status");
    html! {
        @if let Some(reply) = refusal { (page::problem(&reply.detail().unwrap_or_default())) }
        form method="post" action=(action) novalidate {
            (page::csrf(session))
            div.grid {
                @for (name, label, kind) in FIELDS {
                    (page::input(label, name, kind, value_of(form, name), error(name).as_deref()))
                }
                (page::select("Redirect status", "status", &[("302", "302 Found"), ("301", "301 Moved Permanently"),
                    ("307", "307 Temporary Redirect"), ("308", "308 Permanent Redirect")], if status.is_empty() { "302" } else { status }))
                div.field {
                    label for="f-forward_query" { "Forward the query string" }
                    select id="f-forward_query" name="forward_query" {
                        option value="false" selected[value_of(form, "forward_query") != "true"] { "No" }
                        option value="true" selected[value_of(form, "forward_query") == "true"] { "Yes" }
                    }
                }
            }
            @if let Some(message) = error("status") { p.error { (message) } }
            button type="submit" { (submit) }
        }
    }
}

/// The API's JSON for the submitted form: empty inputs are left out (or, when `clearing`,
/// sent as `null` so an edit can remove an option).
fn link_json(post: &Post, clearing: bool) -> Value {
    let mut body = Map::new();
    let mut utm = Map::new();
    for (name, _, kind) in FIELDS {
        let text = post.field(name);
        if text.is_empty() {
            if clearing && !matches!(*name, "url" | "alias" | "domain" | "password") && !name.starts_with("utm/") {
                let cleared = match *name {
                    "tags" => json!([]),
                    "country_urls" => json!({}),
                    _ => Value::Null,
                };
                body.insert((*name).into(), cleared);
            }
            continue;
        }
        let value = match (*name, *kind) {
            ("tags", _) => json!(text.split(',').map(str::trim).filter(|t| !t.is_empty()).collect::<Vec<_>>()),
            ("country_urls", _) => Value::Object(
                text.split([',', '\n'])
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(country, url)| (country.trim().to_owned(), json!(url.trim())))
                    .collect(),
            ),
            // A number the API will judge; text that is not one goes as text, refused by field.
            (_, "number") => text.parse::<i64>().map_or_else(|_| json!(text), |n| json!(n)),
            _ => json!(text),
        };
        match name.strip_prefix("utm/") {
            Some(key) => {
                utm.insert(key.into(), value);
            }
            None => {
                body.insert((*name).into(), value);
            }
        }
    }
    if !utm.is_empty() {
        body.insert("utm".into(), Value::Object(utm));
    }
    body.insert("status".into(), json!(post.field("status").parse::<u16>().unwrap_or(302)));
    body.insert("forward_query".into(), json!(post.field("forward_query") == "true"));
    Value::Object(body)
}

pub(crate) async fn create(State(console): State<Console>, post: Post) -> Response {
    let reply = console.api(&post.session.operator, Method::POST, "/v1/links", Some(&link_json(&post, false))).await;
    if reply.ok() {
        let id = page::cell(&reply.body["id"]);
        return Redirect::to(&format!("/console/links/{id}?created=1")).into_response();
    }
    render_list(&console, &post.session, &Search::default(), &post.fields, Some(&reply)).await
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DetailQuery {
    #[serde(default)]
    created: String,
    #[serde(default)]
    saved: String,
}

pub(crate) async fn detail(
    State(console): State<Console>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> Response {
    let link = console.get(&session.operator, &format!("/v1/links/{}", encode(&id))).await;
    if !link.ok() {
        return super::failure(&session, &link);
    }
    render_detail(&console, &session, &id, &link.body, &query, &[], None).await
}

async fn render_detail(
    console: &Console,
    session: &Session,
    id: &str,
    link: &Value,
    query: &DetailQuery,
    form: &[(String, String)],
    refusal: Option<&Reply>,
) -> Response {
    let from = crate::time::Millis(crate::time::now_millis().0 - 48 * 3600 * 1000);
    let uri = format!("/v1/links/{}/analytics?interval=hour&from={}", encode(id), encode(&from.to_string()));
    let analytics = console.get(&session.operator, &uri).await;
    let empty = Vec::new();
    let timeline: Vec<(String, i64)> = analytics.body["timeline"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|b| (page::cell(&b["start"]), b["clicks"].as_i64().unwrap_or(0)))
        .collect();
    let prefilled: Vec<(String, String)> = if form.is_empty() { form_of(link) } else { form.to_vec() };
    let body = html! {
        h1 { "Link " code { (page::cell(&link["code"])) } }
        @if !query.created.is_empty() { (page::notice("The link is created; the edge serves it within a second.")) }
        @if !query.saved.is_empty() { (page::notice("Saved.")) }
        div.grid {
            section {
                h2 { "Short link" }
                p { a href=(page::cell(&link["short_url"])) { (page::cell(&link["short_url"])) } }
                p { "→ " (page::cell(&link["url"])) }
                p.muted { "Status " (page::cell(&link["status"])) "; redirects " (page::cell(&link["redirects"]))
                    "; password " (if link["has_password"] == true { "yes" } else { "no" }) }
            }
            section {
                h2 { "QR code" }
                img src=(format!("/console/links/{}/qr.svg", encode(id))) width="160" height="160"
                    alt=(format!("QR code for {}", page::cell(&link["short_url"])));
            }
        }
        section {
            h2 { "Clicks, last 48 hours" }
            @if analytics.ok() {
                p { span.figure data-testid="clicks" { (page::cell(&analytics.body["clicks"])) } " clicks, "
                    (page::cell(&analytics.body["uniques"])) " unique visitors, "
                    (page::cell(&analytics.body["bot_clicks"])) " from bots" }
                (chart::timeline("Clicks per hour", &timeline))
                div.grid {
                    @for (key, title) in [("countries", "Countries"), ("devices", "Devices"), ("browsers", "Browsers"), ("os", "Operating systems"), ("referrers", "Referrers")] {
                        (breakdown(title, &analytics.body[key]))
                    }
                }
                p { a href=(format!("/console/links/export.csv?link_id={}", encode(id))) download { "Export this link's clicks (CSV)" } }
            } @else {
                (page::problem(&analytics.detail().unwrap_or_default()))
            }
        }
        @if session.operator.role.writes() {
            section {
                h2 { "Edit" }
                (link_form(session, &format!("/console/links/{}", encode(id)), &prefilled, refusal, "Save changes"))
            }
            section {
                h2 { "Delete" }
                form method="post" action=(format!("/console/links/{}/delete", encode(id))) {
                    (page::csrf(session))
                    button.danger type="submit" { "Delete this link" }
                }
            }
        }
    };
    let status = refusal.map_or(StatusCode::OK, |reply| reply.status);
    (status, page::page(Some(session), "Link", Nav::Links, body)).into_response()
}

/// A stored link as the form's fields, for editing.
fn form_of(link: &Value) -> Vec<(String, String)> {
    let mut form = Vec::new();
    for (name, _, _) in FIELDS {
        let value = match *name {
            "tags" => link["tags"].as_array().map(|t| t.iter().map(page::cell).collect::<Vec<_>>().join(", ")),
            "country_urls" => link["country_urls"]
                .as_object()
                .map(|urls| urls.iter().map(|(c, u)| format!("{c}={}", page::cell(u))).collect::<Vec<_>>().join(", ")),
            "password" | "alias" | "domain" => None,
            name => {
                let pointer = format!("/{name}");
                link.pointer(&pointer).filter(|v| !v.is_null()).map(page::cell)
            }
        };
        if let Some(value) = value {
            form.push(((*name).to_owned(), value));
        }
    }
    form.push(("status".into(), page::cell(&link["status"])));
    form.push(("forward_query".into(), page::cell(&link["forward_query"])));
    form
}

fn breakdown(title: &str, shares: &Value) -> Markup {
    let empty = Vec::new();
    let shares = shares.as_array().unwrap_or(&empty);
    html! {
        div {
            h3 { (title) }
            @if shares.is_empty() { p.muted { "None yet." } } @else {
                table {
                    thead { tr { th { "Value" } th { "Clicks" } th { "Unique" } } }
                    tbody { @for share in shares.iter().take(10) {
                        tr { td { (if share["value"].is_null() { "unknown".to_owned() } else { page::cell(&share["value"]) }) }
                             td { (page::cell(&share["clicks"])) } td { (page::cell(&share["uniques"])) } }
                    } }
                }
            }
        }
    }
}

/// Saves an edit (`PATCH`): every option is sent, empty ones as `null` to clear them.
pub(crate) async fn update(State(console): State<Console>, Path(id): Path<String>, post: Post) -> Response {
    let mut body = link_json(&post, true);
    if let Some(fields) = body.as_object_mut() {
        // Code and domain are fixed once made; a password is changed only when one is typed.
        fields.remove("alias");
        fields.remove("domain");
    }
    let uri = format!("/v1/links/{}", encode(&id));
    let reply = console.api(&post.session.operator, Method::PATCH, &uri, Some(&body)).await;
    if reply.ok() {
        return Redirect::to(&format!("/console/links/{}?saved=1", encode(&id))).into_response();
    }
    let link = console.get(&post.session.operator, &uri).await;
    if !link.ok() {
        return super::failure(&post.session, &reply);
    }
    render_detail(&console, &post.session, &id, &link.body, &DetailQuery::default(), &post.fields, Some(&reply)).await
}

pub(crate) async fn delete(State(console): State<Console>, Path(id): Path<String>, post: Post) -> Response {
    let reply = console.api(&post.session.operator, Method::DELETE, &format!("/v1/links/{}", encode(&id)), None).await;
    if !reply.ok() {
        return super::failure(&post.session, &reply);
    }
    Redirect::to("/console/links").into_response()
}

pub(crate) async fn qr(
    State(console): State<Console>,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
) -> Response {
    let reply = console.get(&session.operator, &format!("/v1/links/{}/qr?format=svg", encode(&id))).await;
    passthrough(&session, reply, "image/svg+xml")
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ExportQuery {
    #[serde(default)]
    link_id: String,
}

/// The links as CSV, or one link's clicks when `link_id` is given.
pub(crate) async fn export(
    State(console): State<Console>,
    SignedIn(session): SignedIn,
    Query(query): Query<ExportQuery>,
) -> Response {
    let uri = if query.link_id.is_empty() {
        "/v1/links/export".to_owned()
    } else {
        format!("/v1/links/clicks/export?link_id={}", encode(&query.link_id))
    };
    let reply = console.get(&session.operator, &uri).await;
    passthrough(&session, reply, "text/csv")
}

fn passthrough(session: &Session, reply: Reply, fallback_type: &str) -> Response {
    if !reply.ok() {
        return super::failure(session, &reply);
    }
    let content_type =
        reply.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or(fallback_type).to_owned();
    let mut response = ([(header::CONTENT_TYPE, content_type)], reply.bytes).into_response();
    if let Some(disposition) = reply.headers.get(header::CONTENT_DISPOSITION) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, disposition.clone());
    }
    response
}
