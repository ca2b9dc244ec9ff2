//! Signing in and out, accepting an invitation, and the two extractors every other page
//! uses: `SignedIn` (a live session, else off to the sign-in page) and `Post` (a signed-in
//! form whose CSRF token matches the session's).
//!
//! The session cookie is HttpOnly, SameSite=Strict, scoped to `/console`, and Secure except
//! on loopback hosts (where `verge dev` serves plain HTTP). The sign-in form, before any
//! session exists, carries a double-submit token of its own.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::Console;
use super::page::{self, CSRF_FIELD, Nav};
use crate::customers::cookies::{self, secure};
use crate::customers::device::Client;
use crate::customers::sessions::random_secret;
use crate::customers::{password, throttle};
use crate::operators::sessions::{self, Session};
use crate::operators::{self, Acceptance};

const SESSION_COOKIE: &str = "verge_console";
const SIGN_IN_CSRF_COOKIE: &str = "verge_console_signin";
const CSRF_HEADER: &str = "x-csrf-token";

fn cookie(headers: &HeaderMap, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let mut text = format!("{name}={value}; Path=/console; SameSite=Strict; HttpOnly");
    if secure(headers) {
        text.push_str("; Secure");
    }
    if let Some(seconds) = max_age {
        text.push_str(&format!("; Max-Age={seconds}"));
    }
    HeaderValue::from_str(&text).expect("cookie values are base64url")
}

/// A request from a signed-in operator.
pub(crate) struct SignedIn(pub(crate) Session);

async fn session_of(console: &Console, headers: &HeaderMap) -> Result<Option<Session>, Response> {
    let Some(token) = cookies::get(headers, SESSION_COOKIE) else { return Ok(None) };
    sessions::find(&console.state.db, token).await.map_err(|err| crate::error::ApiError::from(err).into_response())
}

impl FromRequestParts<Console> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        match session_of(console, &parts.headers).await? {
            Some(session) => Ok(SignedIn(session)),
            None if parts.method == Method::GET => {
                let next = parts.uri.path_and_query().map_or("/console/overview", |p| p.as_str());
                Err(Redirect::to(&format!("/console/sign-in?next={}", super::encode(next))).into_response())
            }
            None => Err(refused(StatusCode::UNAUTHORIZED, "Your session has ended; sign in again.")),
        }
    }
}

fn refused(status: StatusCode, detail: &str) -> Response {
    (status, page::page(None, "Refused", Nav::None, page::problem(detail))).into_response()
}

/// A submitted form of a signed-in operator, its CSRF token checked: the form's `csrf`
/// field, or `X-CSRF-Token` for scripts. Fields keep their order and repeats.
pub(crate) struct Post {
    pub(crate) session: Session,
    pub(crate) fields: Vec<(String, String)>,
}

impl Post {
    /// The first value of `name`, trimmed; empty when absent.
    pub(crate) fn field(&self, name: &str) -> String {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned()).unwrap_or_default()
    }
}

impl FromRequest<Console> for Post {
    type Rejection = Response;

    async fn from_request(req: Request, console: &Console) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let SignedIn(session) = SignedIn::from_request_parts(&mut parts, console).await?;
        let header = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let req = Request::from_parts(parts, body);
        let axum::Form(fields) = axum::Form::<Vec<(String, String)>>::from_request(req, &())
            .await
            .map_err(|_| refused(StatusCode::UNPROCESSABLE_ENTITY, "The form could not be read."))?;
        let sent = header.or_else(|| fields.iter().find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.clone()));
        if !session.csrf_matches(sent.as_deref().unwrap_or_default()) {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "This form is missing its security token (CSRF). Reload the page and try again.",
            ));
        }
        Ok(Post { session, fields })
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

/// Where to go after signing in: only a console path (no open redirect).
fn destination(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with("/console/") && !path.starts_with("/console//") && !path.contains('\\') => {
            path.to_owned()
        }
        _ => "/console/overview".to_owned(),
    }
}

pub(crate) async fn sign_in_page(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(next): Query<Next>,
) -> Response {
    if let Ok(Some(_)) = session_of(&console, &headers).await {
        return Redirect::to(&destination(next.next.as_deref())).into_response();
    }
    sign_in_form(&headers, next.next.as_deref(), "", None, StatusCode::OK)
}

fn sign_in_form(
    headers: &HeaderMap,
    next: Option<&str>,
    email: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let token = random_secret("");
    let body = html! {
        section.narrow {
            h1 { "Sign in to Verge" }
            @if let Some(error) = error { (page::problem(error)) }
            form method="post" action="/console/sign-in" {
                input type="hidden" name=(CSRF_FIELD) value=(token);
                input type="hidden" name="next" value=(destination(next));
                (page::input("Email", "email", "email", email, None))
                (page::input("Password", "password", "password", "", None))
                (page::input("Authenticator code (if you set one up)", "code", "text", "", None))
                button type="submit" { "Sign in" }
            }
        }
    };
    let mut response = (status, page::page(None, "Sign in", Nav::None, body)).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie(headers, SIGN_IN_CSRF_COOKIE, &token, Some(3600)));
    response
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignInForm {
    email: String,
    password: String,
    /// The authenticator app's code, for operators who set one up.
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

pub(crate) async fn sign_in(
    State(console): State<Console>,
    headers: HeaderMap,
    client: ClientOf,
    axum::Form(form): axum::Form<SignInForm>,
) -> Response {
    let expected = cookies::get(&headers, SIGN_IN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return refused(
            StatusCode::FORBIDDEN,
            "The sign-in form expired or came from elsewhere. Reload it and try again.",
        );
    }
    let state = &console.state;
    let counters = match throttle::sign_in_allowed(state, "console", &form.email, &client.0).await {
        Ok(counters) => counters,
        Err(err) => {
            let detail = err.detail().to_owned();
            return sign_in_form(
                &headers,
                form.next.as_deref(),
                &form.email,
                Some(&detail),
                StatusCode::TOO_MANY_REQUESTS,
            );
        }
    };
    let found = match operators::find_for_sign_in(&state.db, &form.email).await {
        Ok(found) => found,
        Err(err) => return crate::error::ApiError::from(err).into_response(),
    };
    let (credentials, stored) = match found {
        Some(credentials) if credentials.operator.disabled_at.is_none() => {
            let hash = credentials.password_hash.clone();
            (Some(credentials), Some(hash))
        }
        _ => (None, None),
    };
    let matches = password::verify(form.password, stored).await.unwrap_or(false);
    let next = form.next.as_deref();
    let Some(credentials) = credentials.filter(|_| matches) else {
        let _ = throttle::sign_in_failed(state, &counters).await;
        let message = "That email and password do not match an operator.";
        return sign_in_form(&headers, next, &form.email, Some(message), StatusCode::UNAUTHORIZED);
    };
    // Only someone who knows the password learns that a code is needed.
    match operators::second_factor_holds(&state.db, &credentials, &form.code).await {
        Ok(true) => {}
        Ok(false) => {
            let _ = throttle::sign_in_failed(state, &counters).await;
            let message = "Enter the current 6-digit code from your authenticator app (each code works once).";
            return sign_in_form(&headers, next, &form.email, Some(message), StatusCode::UNAUTHORIZED);
        }
        Err(err) => return crate::error::ApiError::from(err).into_response(),
    }
    let operator = credentials.operator;
    signed_in(&console, &headers, &operator, &destination(form.next.as_deref())).await
}

async fn signed_in(console: &Console, headers: &HeaderMap, operator: &operators::Operator, to: &str) -> Response {
    match sessions::start(&console.state.db, operator).await {
        Ok(token) => {
            let mut response = Redirect::to(to).into_response();
            let age = sessions::SESSION_TTL_MS / 1000;
            response.headers_mut().append(header::SET_COOKIE, cookie(headers, SESSION_COOKIE, &token, Some(age)));
            response.headers_mut().append(header::SET_COOKIE, cookie(headers, SIGN_IN_CSRF_COOKIE, "", Some(0)));
            response
        }
        Err(err) => crate::error::ApiError::from(err).into_response(),
    }
}

pub(crate) async fn sign_out(State(console): State<Console>, headers: HeaderMap, post: Post) -> Response {
    if let Err(err) = sessions::end_session(&console.state.db, &post.session).await {
        return crate::error::ApiError::from(err).into_response();
    }
    let mut response = Redirect::to("/console/sign-in").into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie(&headers, SESSION_COOKIE, "", Some(0)));
    response
}

pub(crate) async fn invitation_page(State(console): State<Console>, Path(token): Path<String>) -> Response {
    match operators::open_invitation(&console.state.db, &token).await {
        Ok((_, role)) => invitation_form(&token, role, "", "", None, StatusCode::OK),
        Err(err) => refused(err.status(), err.detail()),
    }
}

fn invitation_form(
    token: &str,
    role: operators::Role,
    email: &str,
    name: &str,
    refusal: Option<&crate::error::ApiError>,
    status: StatusCode,
) -> Response {
    let error = |field: &str| {
        refusal.and_then(|err| err.field_errors().iter().find(|e| e.field == field).map(|e| e.message.clone()))
    };
    let body = html! {
        section.narrow {
            h1 { "Join Verge as " (role) }
            p { "Choose the email and password you will sign in with. Passwords need at least "
                (password::MIN_LEN) " characters." }
            @if let Some(err) = refusal.filter(|err| err.field_errors().is_empty()) { (page::problem(err.detail())) }
            form method="post" action=(format!("/console/invite/{token}")) {
                (page::input("Email", "email", "email", email, error("/email").as_deref()))
                (page::input("Name", "name", "text", name, error("/name").as_deref()))
                (page::input("Password", "password", "password", "", error("/password").as_deref()))
                button type="submit" { "Create my account" }
            }
        }
    };
    (status, page::page(None, "Accept invitation", Nav::None, body)).into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct InvitationForm {
    email: String,
    name: String,
    password: String,
}

/// The link itself is the secret a forged cross-site post would lack, so this form needs no
/// separate CSRF token.
pub(crate) async fn accept_invitation(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(token): Path<String>,
    axum::Form(form): axum::Form<InvitationForm>,
) -> Response {
    let role = match operators::open_invitation(&console.state.db, &token).await {
        Ok((_, role)) => role,
        Err(err) => return refused(err.status(), err.detail()),
    };
    let (email, name) = (form.email.clone(), form.name.clone());
    match operators::accept(
        &console.state.db,
        &token,
        Acceptance { email: form.email, name: form.name, password: form.password },
    )
    .await
    {
        Ok(operator) => signed_in(&console, &headers, &operator, "/console/overview").await,
        Err(err) => invitation_form(&token, role, &email, &name, Some(&err), err.status()),
    }
}

/// The client address and agent, for sign-in throttling (extracted with the core's rules,
/// `VERGE_CLIENT_IP_HEADER` included).
pub(crate) struct ClientOf(Client);

impl FromRequestParts<Console> for ClientOf {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Self::Rejection> {
        Ok(ClientOf(Client::from_parts(parts, &console.state.config)))
    }
}
