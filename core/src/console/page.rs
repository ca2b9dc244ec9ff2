//! The page shell every console page shares (navigation, the operator, sign-out) and the
//! small pieces pages are built from: labelled inputs that show the API's message for
//! their field, problem banners, CSRF-carrying forms, tables and "next page" links.
//! The stylesheet is embedded; pages work without scripts and at phone width.

use axum::http::header;
use axum::response::IntoResponse;
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use crate::operators::sessions::Session;

/// The form field every signed-in form carries its session's CSRF token in.
pub(crate) const CSRF_FIELD: &str = "csrf";

const STYLESHEET: &str = include_str!("console.css");

pub(crate) async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=300")], STYLESHEET)
}

/// Which navigation entry is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    None,
    Overview,
    Links,
    Flags,
    Section(&'static str),
    Audit,
    Operators,
}

/// Navigation: (entry, label, path).
const ENTRIES: &[(Nav, &str, &str)] = &[
    (Nav::Overview, "Overview", "/console/overview"),
    (Nav::Links, "Links", "/console/links"),
    (Nav::Flags, "Flags", "/console/flags"),
    (Nav::Section("ratelimit"), "Rate limits", "/console/ratelimit"),
    (Nav::Section("customers"), "Customers", "/console/customers"),
    (Nav::Section("autocomplete"), "Autocomplete", "/console/autocomplete"),
    (Nav::Section("catalog"), "Catalog", "/console/catalog"),
    (Nav::Section("inventory"), "Inventory", "/console/inventory"),
    (Nav::Section("orders"), "Orders", "/console/orders"),
    (Nav::Section("jobs"), "Jobs", "/console/jobs"),
    (Nav::Section("webhooks"), "Webhooks", "/console/webhooks"),
    (Nav::Section("keys"), "API keys", "/console/keys"),
    (Nav::Audit, "Audit log", "/console/audit"),
    (Nav::Operators, "Operators", "/console/operators"),
];

pub(crate) fn page(session: Option<&Session>, title: &str, current: Nav, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Verge console" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                header.top {
                    a.brand href="/console/overview" { "Verge" }
                    @if let Some(session) = session {
                        nav aria-label="Sections" {
                            ul {
                                @for (entry, label, path) in ENTRIES {
                                    li {
                                        @if *entry == current {
                                            a href=(path) aria-current="page" { (label) }
                                        } @else {
                                            a href=(path) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        div.who {
                            a href="/console/account" { (session.operator.email) } span { " · " (session.operator.role) }
                            form method="post" action="/console/sign-out" {
                                (csrf(session))
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

pub(crate) fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(session.csrf); }
}

/// A labelled input; `error` is the API's message for it, shown beneath and announced.
pub(crate) fn input(label: &str, name: &str, kind: &str, value: &str, error: Option<&str>) -> Markup {
    let id = format!("f-{name}");
    let hint = format!("{id}-error");
    html! {
        div.field {
            label for=(id) { (label) }
            @if let Some(error) = error {
                input id=(id) name=(name) type=(kind) value=(value) aria-invalid="true" aria-describedby=(hint);
                p.error id=(hint) { (error) }
            } @else {
                input id=(id) name=(name) type=(kind) value=(value);
            }
        }
    }
}

/// A select of `options` (value, label) with `selected` chosen.
pub(crate) fn select(label: &str, name: &str, options: &[(&str, &str)], selected: &str) -> Markup {
    let id = format!("f-{name}");
    html! {
        div.field {
            label for=(id) { (label) }
            select id=(id) name=(name) {
                @for (value, text) in options {
                    option value=(value) selected[*value == selected] { (text) }
                }
            }
        }
    }
}

pub(crate) fn problem(detail: &str) -> Markup {
    html! { div.problem role="alert" { (detail) } }
}

pub(crate) fn notice(text: &str) -> Markup {
    html! { div.notice role="status" { (text) } }
}

/// A JSON value as short text for a table cell.
pub(crate) fn cell(value: &Value) -> String {
    match value {
        Value::Null => "—".into(),
        Value::String(text) => readable_time(text).unwrap_or_else(|| text.clone()),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// `2026-12-05T07:00:48.392Z` → `2026-12-05 07:00:48 UTC`; other text is left alone.
fn readable_time(text: &str) -> Option<String> {
    let at: jiff::Timestamp = text.parse().ok()?;
    (text.len() >= 20 && text.as_bytes()[10] == b'T').then(|| at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// "Next page" for a listing answered with `next_cursor`, keeping the other parameters.
pub(crate) fn next_page(path: &str, query: &[(&str, &str)], reply: &Value) -> Markup {
    let Some(cursor) = reply["next_cursor"].as_str() else { return html! {} };
    let mut url = format!("{path}?cursor={}", super::encode(cursor));
    for (name, value) in query.iter().filter(|(_, v)| !v.is_empty()) {
        url.push_str(&format!("&{name}={}", super::encode(value)));
    }
    html! { p.pager { a href=(url) rel="next" { "Next page →" } } }
}
