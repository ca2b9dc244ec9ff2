//! Operators: who may use the console, in which role; owners invite (a one-time link,
//! shown once, valid for a week) and disable. Not an API resource: operators exist only
//! for the console, so these pages call the `operators` domain directly, audited alike.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::page::{self, Nav};
use super::{Console, Post, SignedIn};
use crate::customers::cookies::secure;
use crate::operators::sessions::Session;
use crate::operators::{self, Role};

pub(crate) async fn page(State(console): State<Console>, SignedIn(session): SignedIn) -> Response {
    render(&console, &session, None).await
}

async fn render(console: &Console, session: &Session, invitation: Option<(String, Role)>) -> Response {
    let operators = match operators::list(&console.state.db).await {
        Ok(operators) => operators,
        Err(err) => return crate::error::ApiError::from(err).into_response(),
    };
    let owner = session.operator.role == Role::Owner;
    let body = html! {
        h1 { "Operators" }
        @if let Some((link, role)) = &invitation {
            div.notice role="status" {
                "Invitation for a new " (role) " (shown once, valid for 7 days; send it to them): "
                span.secret data-testid="invitation" { (link) }
            }
        }
        section {
            div.table-wrap tabindex="0" role="region" aria-label="Operators" { table {
                thead { tr { th { "Email" } th { "Name" } th { "Role" } th { "Since" } th { "Status" } @if owner { th { span.sr-only { "Actions" } } } } }
                tbody { @for op in &operators {
                    tr {
                        td { (op.email) } td { (op.name) } td { (op.role) } td { (op.created_at) }
                        td { @if op.disabled_at.is_some() { span.bad { "disabled" } } @else { span.ok { "active" } } }
                        @if owner { td {
                            @if op.disabled_at.is_none() && op.id != session.operator.id {
                                form method="post" action=(format!("/console/operators/{}/disable", op.id)) {
                                    (page::csrf(session))
                                    button.danger type="submit" aria-label=(format!("Disable {}", op.email)) { "Disable" }
                                }
                            }
                        } }
                    }
                } }
            } }
        }
        section {
            h2 { "Roles" }
            ul {
                li { strong { "owner" } " — everything, and inviting and disabling operators" }
                li { strong { "admin" } " — everything an admin API key may do" }
                li { strong { "editor" } " — change every capability; no API keys" }
                li { strong { "viewer" } " — read everything, change nothing" }
            }
            @if owner {
                form.inline method="post" action="/console/operators" {
                    (page::csrf(session))
                    (page::select("Role", "role", &[("viewer", "viewer"), ("editor", "editor"), ("admin", "admin"), ("owner", "owner")], "viewer"))
                    button type="submit" { "Invite an operator" }
                }
            }
        }
    };
    page::page(Some(session), "Operators", Nav::Operators, body).into_response()
}

fn only_owners() -> Response {
    let body = page::problem("Only an owner may invite or disable operators.");
    (StatusCode::FORBIDDEN, page::page(None, "Refused", Nav::None, body)).into_response()
}

pub(crate) async fn invite(State(console): State<Console>, headers: HeaderMap, post: Post) -> Response {
    if post.session.operator.role != Role::Owner {
        return only_owners();
    }
    let Some(role) = Role::parse(&post.field("role")) else {
        let body = page::problem("Choose one of the four roles.");
        return (StatusCode::UNPROCESSABLE_ENTITY, page::page(Some(&post.session), "Operators", Nav::Operators, body))
            .into_response();
    };
    let invitation = match operators::invite(&console.state.db, role, &post.session.operator.actor()).await {
        Ok(invitation) => invitation,
        Err(err) => return err.into_response(),
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let scheme = if secure(&headers) { "https" } else { "http" };
    let link = format!("{scheme}://{host}/console/invite/{}", invitation.token);
    render(&console, &post.session, Some((link, role))).await
}

pub(crate) async fn disable(State(console): State<Console>, Path(id): Path<String>, post: Post) -> Response {
    if post.session.operator.role != Role::Owner {
        return only_owners();
    }
    match operators::disable(&console.state.db, &id, &post.session.operator).await {
        Ok(_) => Redirect::to("/console/operators").into_response(),
        Err(err) => {
            let body = page::problem(err.detail());
            (err.status(), page::page(Some(&post.session), "Operators", Nav::Operators, body)).into_response()
        }
    }
}
