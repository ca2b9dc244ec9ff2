//! Pages for the capabilities without hand-made pages (rate limits, customers, autocomplete,
//! catalog, inventory, orders, jobs, webhooks, API keys), described as data: what each
//! section lists, which columns it shows, where an item lives, what it can do (cancel,
//! fulfil and refund an order; retry or discard a job; publish an index; revoke a key…),
//! and what it creates from a JSON document. Every read and action is the API's own, so the
//! API's checks, scopes and problems apply unchanged, shown next to the form.

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::page::{self, Nav};
use super::{Console, Post, Reply, SignedIn, encode};
use crate::operators::sessions::Session;

/// A form field of an action: (name, label, JSON kind).
type Field = (&'static str, &'static str, Kind);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
}

struct Action {
    label: &'static str,
    method: Method,
    /// Appended to the item's path.
    suffix: &'static str,
    fields: &'static [Field],
    danger: bool,
}

struct Table {
    /// In URLs: `/console/<section>/<slug>/<id>`.
    slug: &'static str,
    heading: &'static str,
    /// The listing (`{project}` is the chosen project).
    list: &'static str,
    /// Where the listing's items are: `items`, or another array member.
    items: &'static str,
    id: &'static str,
    columns: &'static [&'static str],
    /// The item (`{id}`), when it has a page.
    item: Option<&'static str>,
    /// Further reads shown on the item's page: (heading, suffix).
    extras: &'static [(&'static str, &'static str)],
    actions: &'static [Action],
    /// A starting document for creating one (posted to `list`).
    create: Option<&'static str>,
}

struct Section {
    slug: &'static str,
    title: &'static str,
    tables: &'static [Table],
}

const DELETE: Action = Action { label: "Delete", method: Method::DELETE, suffix: "", fields: &[], danger: true };

const fn table(
    slug: &'static str,
    heading: &'static str,
    list: &'static str,
    columns: &'static [&'static str],
) -> Table {
    Table {
        slug,
        heading,
        list,
        items: "items",
        id: "id",
        columns,
        item: None,
        extras: &[],
        actions: &[],
        create: None,
    }
}

const SECTIONS: &[Section] = &[
    Section {
        slug: "ratelimit",
        title: "Rate limits",
        tables: &[Table {
            item: Some("/v1/ratelimit/policies/{id}"),
            extras: &[("Decisions (per minute)", "/stats")],
            actions: &[DELETE],
            create: Some(
                r#"{"id": "api-per-key", "name": "API per key", "domain": "edge", "descriptor": [{"key": "route", "value": "links"}, {"key": "remote_address"}], "limit": {"algorithm": "sliding_window", "limit": 100, "period": "1m"}}"#,
            ),
            ..table(
                "policies",
                "Policies",
                "/v1/ratelimit/policies",
                &["id", "name", "domain", "mode", "on_store_failure", "updated_at"],
            )
        }],
    },
    Section {
        slug: "customers",
        title: "Customers",
        tables: &[Table {
            item: Some("/v1/customers/{project}/{id}"),
            extras: &[("Sessions", "/sessions"), ("History", "/history")],
            actions: &[
                Action {
                    label: "End every session",
                    method: Method::POST,
                    suffix: "/sessions/end",
                    fields: &[],
                    danger: false,
                },
                Action { label: "Erase (GDPR)", method: Method::POST, suffix: "/erase", fields: &[], danger: true },
            ],
            create: Some(r#"{"email": "ada@example.com", "name": "Ada"}"#),
            ..table(
                "customers",
                "Customers",
                "/v1/customers/{project}",
                &["id", "email", "name", "email_verified", "created_at"],
            )
        }],
    },
    Section {
        slug: "autocomplete",
        title: "Autocomplete",
        tables: &[Table {
            id: "name",
            item: Some("/v1/autocomplete/{project}/indexes/{id}"),
            extras: &[("Trending", "/trending"), ("Searches without results", "/no-results")],
            actions: &[
                Action {
                    label: "Publish to the edge",
                    method: Method::POST,
                    suffix: "/publish",
                    fields: &[],
                    danger: false,
                },
                DELETE,
            ],
            create: Some(r#"{"name": "cities"}"#),
            ..table(
                "indexes",
                "Indexes",
                "/v1/autocomplete/{project}/indexes",
                &["name", "terms", "rules", "dataset", "updated_at"],
            )
        }],
    },
    Section {
        slug: "catalog",
        title: "Catalog",
        tables: &[
            Table {
                id: "handle",
                item: Some("/v1/catalog/products/{id}"),
                actions: &[DELETE],
                ..table("products", "Products", "/v1/catalog/products", &["handle", "title", "status", "updated_at"])
            },
            Table {
                id: "handle",
                item: Some("/v1/catalog/categories/{id}"),
                actions: &[DELETE],
                create: Some(r#"{"handle": "tees", "title": "T-shirts"}"#),
                ..table("categories", "Categories", "/v1/catalog/categories", &["handle", "title", "parent"])
            },
            Table {
                id: "handle",
                item: Some("/v1/catalog/collections/{id}"),
                actions: &[DELETE],
                create: Some(r#"{"handle": "summer", "title": "Summer"}"#),
                ..table("collections", "Collections", "/v1/catalog/collections", &["handle", "title"])
            },
            Table {
                item: Some("/v1/catalog/price-lists/{id}"),
                actions: &[DELETE],
                ..table(
                    "price-lists",
                    "Price lists",
                    "/v1/catalog/price-lists",
                    &["id", "name", "state", "starts_at", "ends_at"],
                )
            },
        ],
    },
    Section {
        slug: "inventory",
        title: "Inventory",
        tables: &[
            Table {
                create: Some(r#"{"handle": "main", "name": "Main warehouse", "kind": "warehouse"}"#),
                ..table("locations", "Locations", "/v1/inventory/locations", &["handle", "name", "kind", "created_at"])
            },
            table(
                "adjustments",
                "Adjustments",
                "/v1/inventory/adjustments",
                &["sku", "location", "delta", "reason", "actor", "at"],
            ),
        ],
    },
    Section {
        slug: "orders",
        title: "Orders",
        tables: &[Table {
            item: Some("/v1/orders/{id}"),
            extras: &[("Timeline", "/timeline")],
            actions: &[
                Action {
                    label: "Fulfil (captures the payment)",
                    method: Method::POST,
                    suffix: "/fulfil",
                    fields: &[("tracking", "Tracking reference", Kind::Text)],
                    danger: false,
                },
                Action {
                    label: "Refund",
                    method: Method::POST,
                    suffix: "/refunds",
                    fields: &[("amount", "Amount in minor units", Kind::Integer), ("reason", "Reason", Kind::Text)],
                    danger: false,
                },
                Action {
                    label: "Cancel",
                    method: Method::POST,
                    suffix: "/cancel",
                    fields: &[("reason", "Reason", Kind::Text)],
                    danger: true,
                },
            ],
            ..table("orders", "Orders", "/v1/orders", &["id", "status", "email", "total", "currency", "created_at"])
        }],
    },
    Section {
        slug: "jobs",
        title: "Jobs",
        tables: &[
            Table {
                items: "depths",
                ..table("queue", "Queue by kind and state", "/v1/jobs/stats", &["kind", "state", "jobs"])
            },
            Table {
                item: Some("/v1/jobs/{id}"),
                actions: &[
                    Action { label: "Retry now", method: Method::POST, suffix: "/retry", fields: &[], danger: false },
                    Action { label: "Discard", method: Method::POST, suffix: "/discard", fields: &[], danger: true },
                ],
                ..table(
                    "jobs",
                    "Jobs",
                    "/v1/jobs",
                    &["id", "kind", "state", "attempts", "max_attempts", "last_error", "run_at"],
                )
            },
        ],
    },
    Section {
        slug: "webhooks",
        title: "Webhooks",
        tables: &[Table {
            item: Some("/v1/webhooks/endpoints/{id}"),
            extras: &[("Deliveries", "/messages")],
            actions: &[DELETE],
            create: Some(
                r#"{"url": "https://example.com/hooks/verge", "description": "orders", "event_types": ["order.created"]}"#,
            ),
            ..table(
                "endpoints",
                "Endpoints",
                "/v1/webhooks/endpoints",
                &["id", "url", "description", "event_types", "disabled"],
            )
        }],
    },
    Section {
        slug: "keys",
        title: "API keys",
        tables: &[Table {
            item: Some("/v1/keys/{id}"),
            actions: &[Action { label: "Revoke", method: Method::DELETE, suffix: "", fields: &[], danger: true }],
            create: Some(r#"{"name": "deploy pipeline", "scopes": ["flags:write"]}"#),
            ..table("keys", "Keys", "/v1/keys", &["id", "name", "prefix", "scopes", "last_used_at", "revoked_at"])
        }],
    },
];

fn find(section: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|s| s.slug == section)
}

fn not_found(session: &Session) -> Response {
    let body = page::problem("There is no such console page.");
    (StatusCode::NOT_FOUND, page::page(Some(session), "Not found", Nav::None, body)).into_response()
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    #[serde(default)]
    project: String,
    /// Which table `cursor` pages.
    #[serde(default)]
    table: String,
    #[serde(default)]
    cursor: String,
    /// Shown after an action.
    #[serde(default)]
    said: String,
}

impl Params {
    fn project(&self) -> String {
        if self.project.is_empty() { "default".to_owned() } else { self.project.clone() }
    }
}

fn resolve(path: &str, project: &str, id: &str) -> String {
    path.replace("{project}", &encode(project)).replace("{id}", &encode(id))
}

pub(crate) async fn section(
    State(console): State<Console>,
    SignedIn(session): SignedIn,
    Path(section): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    let Some(section) = find(&section) else { return not_found(&session) };
    render_section(&console, &session, section, &params, None).await
}

/// A refused or accepted create: which table, what was sent, and the API's answer.
struct Created<'a> {
    table: &'a str,
    document: String,
    reply: Reply,
}

async fn render_section(
    console: &Console,
    session: &Session,
    section: &Section,
    params: &Params,
    created: Option<&Created<'_>>,
) -> Response {
    let project = params.project();
    let per_project = section.tables.iter().any(|t| t.list.contains("{project}"));
    let writes = session.operator.role.writes();
    let mut parts = Vec::new();
    for table in section.tables {
        let mut uri = format!("{}?limit=25", resolve(table.list, &project, ""));
        if table.slug == params.table && !params.cursor.is_empty() {
            uri.push_str(&format!("&cursor={}", encode(&params.cursor)));
        }
        let reply = console.get(&session.operator, &uri).await;
        let next = reply.body["next_cursor"].as_str().map(|cursor| {
            format!(
                "/console/{}?table={}&cursor={}&project={}",
                section.slug,
                table.slug,
                encode(cursor),
                encode(&project)
            )
        });
        let mine = created.filter(|c| c.table == table.slug);
        parts.push(html! {
            section {
                h2 { (table.heading) }
                @if reply.ok() { (listing(section, table, &project, &reply.body)) } @else { (page::problem(&reply.detail().unwrap_or_default())) }
                @if let Some(next) = next { p.pager { a href=(next) rel="next" { "Next page →" } } }
                @if let (Some(template), true) = (table.create, writes) {
                    details open[mine.is_some()] {
                        summary { "Create (JSON, as the API takes it)" }
                        @if let Some(created) = mine {
                            @if created.reply.ok() {
                                (page::notice("Created. The API answered (secrets in it are shown only this once):"))
                                pre.secret { (serde_json::to_string_pretty(&created.reply.body).unwrap_or_default()) }
                            } @else {
                                (problem_with_fields(&created.reply))
                            }
                        }
                        form method="post" action=(format!("/console/{}/{}?project={}", section.slug, table.slug, encode(&project))) {
                            (page::csrf(session))
                            @let id = format!("f-{}-json", table.slug);
                            div.field {
                                label for=(id) { "Document" }
                                textarea id=(id) name="json" spellcheck="false" {
                                    (mine.filter(|c| !c.reply.ok()).map_or(template.to_owned(), |c| c.document.clone()))
                                }
                            }
                            button type="submit" { "Create" }
                        }
                    }
                }
            }
        });
    }
    let body = html! {
        h1 { (section.title) }
        @if !params.said.is_empty() { (page::notice(&params.said)) }
        @if per_project {
            form.inline method="get" action=(format!("/console/{}", section.slug)) {
                (page::input("Project", "project", "text", &project, None))
                button type="submit" { "Show" }
            }
        }
        @for part in parts { (part) }
    };
    let status = created.filter(|c| !c.reply.ok()).map_or(StatusCode::OK, |c| c.reply.status);
    (status, page::page(Some(session), section.title, Nav::Section(section.slug), body)).into_response()
}

fn problem_with_fields(reply: &Reply) -> Markup {
    let empty = Vec::new();
    html! {
        (page::problem(&reply.detail().unwrap_or_default()))
        ul.error { @for error in reply.body["errors"].as_array().unwrap_or(&empty) {
            li { code { (page::cell(&error["field"])) } ": " (page::cell(&error["message"])) }
        } }
    }
}

fn listing(section: &Section, table: &Table, project: &str, body: &Value) -> Markup {
    let empty = Vec::new();
    let items = body[table.items].as_array().unwrap_or(&empty);
    html! {
        @if items.is_empty() { p.muted { "None yet." } } @else {
            div.table-wrap tabindex="0" role="region" aria-label=(table.heading) { table {
                thead { tr { @for column in table.columns { th { (column.replace('_', " ")) } } } }
                tbody { @for item in items { tr { @for (i, column) in table.columns.iter().enumerate() {
                    td {
                        @if i == 0 && table.item.is_some() {
                            a href=(format!("/console/{}/{}/{}?project={}", section.slug, table.slug, encode(&page::cell(&item[table.id])), encode(project))) {
                                (page::cell(&item[*column]))
                            }
                        } @else { (page::cell(&item[*column])) }
                    }
                } } } }
            } }
        }
    }
}

pub(crate) async fn create(
    State(console): State<Console>,
    Path((section, slug)): Path<(String, String)>,
    Query(params): Query<Params>,
    post: Post,
) -> Response {
    let Some((section, table)) = find(&section).and_then(|s| Some((s, s.tables.iter().find(|t| t.slug == slug)?)))
    else {
        return not_found(&post.session);
    };
    if table.create.is_none() {
        return not_found(&post.session);
    }
    let document = post.field("json");
    let reply = match serde_json::from_str::<Value>(&document) {
        Ok(json) => {
            let uri = resolve(table.list, &params.project(), "");
            console.api(&post.session.operator, Method::POST, &uri, Some(&json)).await
        }
        Err(err) => Reply::refusal(StatusCode::UNPROCESSABLE_ENTITY, &format!("The document is not JSON: {err}")),
    };
    let created = Created { table: table.slug, document, reply };
    render_section(&console, &post.session, section, &params, Some(&created)).await
}

pub(crate) async fn item(
    State(console): State<Console>,
    SignedIn(session): SignedIn,
    Path((section, slug, id)): Path<(String, String, String)>,
    Query(params): Query<Params>,
) -> Response {
    render_item(&console, &session, (&section, &slug, &id), &params, None).await
}

async fn render_item(
    console: &Console,
    session: &Session,
    (section, slug, id): (&str, &str, &str),
    params: &Params,
    refusal: Option<(&str, &Reply)>,
) -> Response {
    let Some((section, table)) = find(section).and_then(|s| Some((s, s.tables.iter().find(|t| t.slug == slug)?)))
    else {
        return not_found(session);
    };
    let Some(item_path) = table.item else { return not_found(session) };
    let project = params.project();
    let uri = resolve(item_path, &project, id);
    let reply = console.get(&session.operator, &uri).await;
    if !reply.ok() {
        return super::failure(session, &reply);
    }
    let mut extras = Vec::new();
    for (heading, suffix) in table.extras {
        extras.push((*heading, console.get(&session.operator, &format!("{uri}{suffix}")).await));
    }
    let here = format!("/console/{}/{}/{}", section.slug, table.slug, encode(id));
    let body = html! {
        p { a href=(format!("/console/{}?project={}", section.slug, encode(&project))) { "← " (section.title) } }
        h1 { (table.heading) ": " code { (id) } }
        @if !params.said.is_empty() { (page::notice(&params.said)) }
        section { (fields(&reply.body)) }
        @if session.operator.role.writes() && !table.actions.is_empty() {
            section {
                h2 { "Actions" }
                @for (index, action) in table.actions.iter().enumerate() {
                    form.inline method="post" action=(format!("{here}/{index}?project={}", encode(&project))) {
                        (page::csrf(session))
                        @if let Some((label, reply)) = refusal.filter(|(label, _)| *label == action.label) {
                            div { (problem_with_fields(reply)) " " (label) }
                        }
                        @for (name, label, _) in action.fields {
                            (page::input(label, &format!("{}-{name}", index), "text", "", None))
                        }
                        @if action.danger { button.danger type="submit" { (action.label) } } @else { button type="submit" { (action.label) } }
                    }
                }
            }
        }
        @for (heading, extra) in &extras {
            section {
                h2 { (heading) }
                @if extra.ok() { (fields(&extra.body)) } @else { (page::problem(&extra.detail().unwrap_or_default())) }
            }
        }
    };
    let status = refusal.map_or(StatusCode::OK, |(_, r)| r.status);
    (status, page::page(Some(session), table.heading, Nav::Section(section.slug), body)).into_response()
}

/// An object as a two-column table; lists of objects as tables of their own.
fn fields(value: &Value) -> Markup {
    match value {
        Value::Object(members) => html! {
            div.table-wrap tabindex="0" role="region" aria-label="Fields" { table { tbody {
                @for (name, member) in members {
                    tr { th scope="row" { (name.replace('_', " ")) } td { (nested(member)) } }
                }
            } } }
        },
        other => nested(other),
    }
}

fn nested(value: &Value) -> Markup {
    match value {
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
            let mut columns: Vec<&str> = Vec::new();
            for item in items {
                for name in item.as_object().into_iter().flat_map(Map::keys) {
                    if columns.len() < 8 && !columns.contains(&name.as_str()) {
                        columns.push(name);
                    }
                }
            }
            html! {
                table {
                    thead { tr { @for column in &columns { th { (column.replace('_', " ")) } } } }
                    tbody { @for item in items { tr { @for column in &columns { td { (short(&item[*column])) } } } } }
                }
            }
        }
        Value::Object(_) => html! { pre { (serde_json::to_string_pretty(value).unwrap_or_default()) } },
        other => html! { (page::cell(other)) },
    }
}

fn short(value: &Value) -> String {
    match value {
        Value::Object(_) | Value::Array(_) if !value.as_array().is_some_and(|a| a.iter().all(|v| !v.is_object())) => {
            value.to_string()
        }
        other => page::cell(other),
    }
}

pub(crate) async fn act(
    State(console): State<Console>,
    Path((section_slug, slug, id, index)): Path<(String, String, String, usize)>,
    Query(params): Query<Params>,
    post: Post,
) -> Response {
    let Some((section, table)) = find(&section_slug).and_then(|s| Some((s, s.tables.iter().find(|t| t.slug == slug)?)))
    else {
        return not_found(&post.session);
    };
    let (Some(item_path), Some(action)) = (table.item, table.actions.get(index)) else {
        return not_found(&post.session);
    };
    let mut body = Map::new();
    for (name, _, kind) in action.fields {
        let text = post.field(&format!("{index}-{name}"));
        let value = match kind {
            // What is not a number goes as text, so the API names the field.
            Kind::Integer => text.parse::<i64>().map_or_else(|_| json!(text), |n| json!(n)),
            Kind::Text => json!(text),
        };
        body.insert((*name).into(), value);
    }
    let uri = format!("{}{}", resolve(item_path, &params.project(), &id), action.suffix);
    let document = Value::Object(body);
    let sent = (!action.fields.is_empty()).then_some(&document);
    let reply = console.api(&post.session.operator, action.method.clone(), &uri, sent).await;
    if !reply.ok() {
        return render_item(
            &console,
            &post.session,
            (&section_slug, &slug, &id),
            &params,
            Some((action.label, &reply)),
        )
        .await;
    }
    let said = encode(&format!("{}: done.", action.label));
    let back = if action.method == Method::DELETE {
        format!("/console/{}?project={}&said={said}", section.slug, encode(&params.project()))
    } else {
        format!(
            "/console/{}/{}/{}?project={}&said={said}",
            section.slug,
            table.slug,
            encode(&id),
            encode(&params.project())
        )
    };
    Redirect::to(&back).into_response()
}
