//! Read-only pages for the capabilities that have no dedicated pages yet (rate limits,
//! customers, autocomplete, catalog, inventory, orders, jobs, webhooks, API keys): each
//! lists what the API lists, as tables whose columns are the items' plain fields, paged by
//! the API's cursors. Changing these still takes the API (docs/api.md) until their own pages land.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::page::{self, Nav};
use super::{Console, SignedIn, encode};

/// (section, title, [(heading, API listing; `{project}` is the chosen project)]).
type Section = (&'static str, &'static str, &'static [(&'static str, &'static str)]);

const SECTIONS: &[Section] = &[
    ("ratelimit", "Rate limits", &[("Policies", "/v1/ratelimit/policies")]),
    ("customers", "Customers", &[("Customers", "/v1/customers/{project}")]),
    ("autocomplete", "Autocomplete", &[("Indexes", "/v1/autocomplete/{project}/indexes")]),
    (
        "catalog",
        "Catalog",
        &[
            ("Products", "/v1/catalog/products"),
            ("Categories", "/v1/catalog/categories"),
            ("Collections", "/v1/catalog/collections"),
            ("Price lists", "/v1/catalog/price-lists"),
        ],
    ),
    (
        "inventory",
        "Inventory",
        &[("Locations", "/v1/inventory/locations"), ("Adjustments", "/v1/inventory/adjustments")],
    ),
    ("orders", "Orders", &[("Orders", "/v1/orders")]),
    ("jobs", "Jobs", &[("Queue by kind", "/v1/jobs/stats"), ("Jobs", "/v1/jobs")]),
    ("webhooks", "Webhooks", &[("Endpoints", "/v1/webhooks/endpoints")]),
    ("keys", "API keys", &[("Keys", "/v1/keys")]),
];

/// Most columns a table shows.
const COLUMNS: usize = 7;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    #[serde(default)]
    project: String,
    /// Which table the cursor pages (its index).
    #[serde(default)]
    table: usize,
    #[serde(default)]
    cursor: String,
}

pub(crate) async fn page(
    State(console): State<Console>,
    SignedIn(session): SignedIn,
    Path(section): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    let Some(&(slug, title, tables)) = SECTIONS.iter().find(|(slug, ..)| *slug == section) else {
        let body = page::problem("There is no such console page.");
        return (StatusCode::NOT_FOUND, page::page(Some(&session), "Not found", Nav::None, body)).into_response();
    };
    let project = if params.project.is_empty() { "default".to_owned() } else { params.project.clone() };
    let per_project = tables.iter().any(|(_, path)| path.contains("{project}"));
    let mut rendered = Vec::new();
    for (index, (heading, path)) in tables.iter().enumerate() {
        let mut uri = format!("{}?limit=25", path.replace("{project}", &encode(&project)));
        if index == params.table && !params.cursor.is_empty() {
            uri.push_str(&format!("&cursor={}", encode(&params.cursor)));
        }
        let reply = console.get(&session.operator, &uri).await;
        let next = reply.body["next_cursor"].as_str().map(|cursor| {
            format!("/console/{slug}?table={index}&cursor={}&project={}", encode(cursor), encode(&project))
        });
        rendered.push(html! {
            section {
                h2 { (heading) }
                @if reply.ok() { (table(heading, &reply.body)) } @else { (page::problem(&reply.detail().unwrap_or_default())) }
                @if let Some(next) = next { p.pager { a href=(next) rel="next" { "Next page →" } } }
            }
        });
    }
    let body = html! {
        h1 { (title) }
        @if per_project {
            form.inline method="get" action=(format!("/console/{slug}")) {
                (page::input("Project", "project", "text", &project, None))
                button type="submit" { "Show" }
            }
        }
        @for part in rendered { (part) }
        p.muted { "Changes to these are made through the API for now; see docs/api.md." }
    };
    page::page(Some(&session), title, Nav::Section(slug), body).into_response()
}

/// The listing's items as a table of their plain (non-object) fields.
fn table(heading: &str, listing: &Value) -> Markup {
    let items: Vec<&Value> = match listing {
        Value::Array(items) => items.iter().collect(),
        Value::Object(fields) => match fields.get("items").or_else(|| fields.get("kinds")) {
            Some(Value::Array(items)) => items.iter().collect(),
            _ => vec![listing],
        },
        _ => Vec::new(),
    };
    let mut columns: Vec<&str> = Vec::new();
    for item in &items {
        for (name, value) in item.as_object().into_iter().flatten() {
            if columns.len() < COLUMNS && !value.is_object() && !columns.contains(&name.as_str()) {
                columns.push(name);
            }
        }
    }
    html! {
        @if items.is_empty() { p.muted { "None yet." } } @else {
            div.table-wrap tabindex="0" role="region" aria-label=(heading) { table {
                thead { tr { @for column in &columns { th { (column.replace('_', " ")) } } } }
                tbody { @for item in &items { tr { @for column in &columns { td { (page::cell(&item[*column])) } } } } }
            } }
        }
    }
}
