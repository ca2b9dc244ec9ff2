//! The audit log: every change, newest first, by whom (operators by email), with the fields
//! each one changed; filtered by actor and object, paged by cursor.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::page::{self, Nav};
use super::{Console, SignedIn, encode};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filter {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    target_type: String,
    #[serde(default)]
    target_under: String,
    #[serde(default)]
    cursor: String,
}

pub(crate) async fn page(
    State(console): State<Console>,
    SignedIn(session): SignedIn,
    Query(filter): Query<Filter>,
) -> Response {
    let mut uri = "/v1/audit-log?limit=50".to_owned();
    let filters = [
        ("actor", &filter.actor),
        ("target_type", &filter.target_type),
        ("target_under", &filter.target_under),
        ("cursor", &filter.cursor),
    ];
    for (name, value) in filters {
        if !value.is_empty() {
            uri.push_str(&format!("&{name}={}", encode(value)));
        }
    }
    let reply = console.get(&session.operator, &uri).await;
    if !reply.ok() {
        return super::failure(&session, &reply);
    }
    let names = crate::operators::emails(&console.state.db).await.unwrap_or_default();
    let body = html! {
        h1 { "Audit log" }
        form.inline method="get" action="/console/audit" {
            (page::input("Actor (key or operator id)", "actor", "text", &filter.actor, None))
            (page::input("Object type", "target_type", "text", &filter.target_type, None))
            (page::input("Object id or prefix", "target_under", "text", &filter.target_under, None))
            button type="submit" { "Filter" }
        }
        section { (entries_table(&reply.body, &names)) }
        (page::next_page("/console/audit", &[("actor", &filter.actor), ("target_type", &filter.target_type), ("target_under", &filter.target_under)], &reply.body))
    };
    page::page(Some(&session), "Audit log", Nav::Audit, body).into_response()
}

/// A table of an audit listing's entries; operator ids shown as their emails.
pub(crate) fn entries_table(listing: &Value, names: &HashMap<String, String>) -> Markup {
    let empty = Vec::new();
    let items = listing["items"].as_array().unwrap_or(&empty);
    html! {
        @if items.is_empty() {
            p.muted { "No entries." }
        } @else {
            div.table-wrap tabindex="0" role="region" aria-label="Audit entries" {
                table {
                    thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Object" } th { "Changed" } } }
                    tbody {
                        @for entry in items {
                            @let actor = entry["actor"].as_str().unwrap_or_default();
                            tr {
                                td { (page::cell(&entry["at"])) }
                                td { (names.get(actor).map_or(actor, String::as_str)) }
                                td { (page::cell(&entry["action"])) }
                                td { (page::cell(&entry["target_type"])) " " code { (page::cell(&entry["target_id"])) } }
                                td { (changed_fields(&entry["changes"])) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Each changed field as `path: before → after`, values cut to a readable length.
fn changed_fields(changes: &Value) -> Markup {
    let empty = Vec::new();
    let changes = changes.as_array().unwrap_or(&empty);
    let brief = |value: &Value| {
        let text = if value.is_null() { "∅".to_owned() } else { value.to_string() };
        if text.chars().count() > 60 { format!("{}…", text.chars().take(59).collect::<String>()) } else { text }
    };
    html! {
        @if changes.is_empty() { "—" } @else {
            ul.diff { @for change in changes {
                @if change["path"] == "" && change["before"].is_null() { li { ins { "created" } } }
                @else if change["path"] == "" && change["after"].is_null() { li { del { "deleted" } } }
                @else { li { code { (page::cell(&change["path"])) } ": " del { (brief(&change["before"])) } " → " ins { (brief(&change["after"])) } } }
            } }
        }
    }
}
