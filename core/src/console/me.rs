//! The signed-in operator's own account: turning the TOTP second factor on (scan a QR code
//! or type the secret into an authenticator app, then prove it with a code) and off.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{PreEscaped, html};

use super::page::{self, Nav};
use super::{Console, Post, SignedIn};
use crate::error::ApiError;
use crate::operators::sessions::Session;
use crate::operators::{self, totp};

pub(crate) async fn page(State(console): State<Console>, SignedIn(session): SignedIn) -> Response {
    render(&console, &session, None, StatusCode::OK).await
}

async fn render(console: &Console, session: &Session, refusal: Option<&ApiError>, status: StatusCode) -> Response {
    let who = &session.operator;
    let pending = match operators::pending_totp(&console.state.db, who).await {
        Ok(pending) => pending.filter(|_| !who.totp),
        Err(err) => return ApiError::from(err).into_response(),
    };
    let code_error = refusal.and_then(|err| err.field_errors().first().map(|e| e.message.clone()));
    let body = html! {
        h1 { "Your account" }
        section {
            p { (who.name) " · " (who.email) " · " (who.role) }
        }
        section {
            h2 { "Second factor" }
            @if who.totp {
                p { span.ok { "On" } " — signing in takes a code from your authenticator app." }
                form.inline method="post" action="/console/account/totp" {
                    (page::csrf(session))
                    input type="hidden" name="action" value="remove";
                    (page::input("Current code", "code", "text", "", code_error.as_deref()))
                    button.danger type="submit" { "Turn off" }
                }
            } @else if let Some(secret) = pending {
                @let uri = totp::uri(&secret, &who.email);
                p { "Scan this with your authenticator app, or type the secret, then enter the code it shows." }
                div.qr role="img" aria-label="QR code of the authenticator secret" { (PreEscaped(qr(&uri))) }
                p { "Secret: " span.secret data-testid="totp-secret" { (secret) } }
                form.inline method="post" action="/console/account/totp" {
                    (page::csrf(session))
                    input type="hidden" name="action" value="confirm";
                    (page::input("Code", "code", "text", "", code_error.as_deref()))
                    button type="submit" { "Turn on" }
                }
            } @else {
                p { span.bad { "Off" } " — a password alone signs you in." }
                form method="post" action="/console/account/totp" {
                    (page::csrf(session))
                    input type="hidden" name="action" value="begin";
                    button type="submit" { "Set up an authenticator app" }
                }
            }
        }
    };
    (status, page::page(Some(session), "Your account", Nav::None, body)).into_response()
}

fn qr(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(192, 192).build(),
        Err(_) => String::new(),
    }
}

pub(crate) async fn totp(State(console): State<Console>, post: Post) -> Response {
    let db = &console.state.db;
    let who = &post.session.operator;
    let done = match post.field("action").as_str() {
        "begin" => operators::begin_totp(db, who).await.map(drop).map_err(ApiError::from),
        "confirm" => operators::confirm_totp(db, who, &post.field("code")).await,
        "remove" => operators::remove_totp(db, who, &post.field("code")).await,
        _ => Err(ApiError::bad_request("unknown_action", "unknown action")),
    };
    match done {
        Ok(()) => Redirect::to("/console/account").into_response(),
        Err(err) => {
            // The session's operator predates the change; read them again.
            let mut session = post.session.clone();
            if let Ok(Some(operator)) = operators::find(db, &who.id).await {
                session.operator = operator;
            }
            render(&console, &session, Some(&err), err.status()).await
        }
    }
}
