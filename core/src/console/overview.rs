//! The overview: is the core healthy, what snapshot does each edge store hold and how far
//! behind is publishing, how busy has this core been over the last hour, and what changed
//! lately.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::audit::entries_table;
use super::page::{self, Nav};
use super::{Console, SignedIn, chart};
use crate::time::{Millis, now_millis};

pub(crate) async fn page(State(console): State<Console>, SignedIn(session): SignedIn) -> Response {
    let who = &session.operator;
    let ready = console.get(who, "/readyz").await;
    let snapshots = console.state.publisher.snapshots().await;
    let backlog = crate::publish::backlog(&console.state.db).await;
    let audit = console.get(who, "/v1/audit-log?limit=10").await;
    let names = crate::operators::emails(&console.state.db).await.unwrap_or_default();
    let hour = console.state.metrics.traffic.last_hour();
    let label = |at: i64| Millis(at).to_string();
    let requests: Vec<(String, i64)> = hour.iter().map(|(at, n, _)| (label(*at), *n as i64)).collect();
    let errors: Vec<(String, i64)> = hour.iter().map(|(at, _, n)| (label(*at), *n as i64)).collect();
    let body = html! {
        h1 { "Overview" }
        div.grid {
            section {
                h2 { "Core" }
                @if ready.ok() {
                    p { span.ok { "Ready" } " — database " (page::cell(&ready.body["database"])) ", cache " (page::cell(&ready.body["cache"])) }
                } @else {
                    p { span.bad { "Not ready" } " — " (ready.detail().unwrap_or_default()) }
                }
                p.muted { "Storage: " (format!("{:?}", console.state.db.dialect())) "; cache: " (console.state.cache.backend()) }
            }
            section {
                h2 { "Publishing" }
                (publishing(&backlog))
                @if snapshots.is_empty() {
                    p.muted { "No edge store is configured; `verge publish` writes snapshots for CI." }
                }
                ul {
                    @for (store, snapshot) in &snapshots {
                        li {
                            (store) ": "
                            @match snapshot {
                                Ok(n) => { "snapshot " strong { (n) } }
                                Err(err) => { span.bad { "unreadable (" (err) ")" } }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Requests per minute, last hour" }
            (chart::timeline("Requests per minute", &requests))
            h2 { "Server errors per minute, last hour" }
            (chart::timeline("Server errors per minute", &errors))
        }
        section {
            h2 { "Recent changes" }
            @if audit.ok() { (entries_table(&audit.body, &names)) } @else { (page::problem(&audit.detail().unwrap_or_default())) }
            p { a href="/console/audit" { "The whole audit log →" } }
        }
    };
    page::page(Some(&session), "Overview", Nav::Overview, body).into_response()
}

fn publishing(backlog: &Result<(i64, Option<i64>), sqlx::Error>) -> Markup {
    match backlog {
        Ok((0, _)) => html! { p { span.ok { "Up to date" } " — nothing waits to be published." } },
        Ok((n, oldest)) => {
            let lag = oldest.map_or(0, |at| (now_millis().0 - at).max(0));
            html! { p { strong { (n) } " changes wait; the oldest for " (lag) " ms." } }
        }
        Err(err) => html! { p.bad { "Cannot read the outbox: " (err) } },
    }
}
