//! The public routes customers use, per project, with no admin key: `/auth/{project}/…`.
//!
//! Answers never tell whether an email has an account: sign-up always answers 202 (an
//! existing account is told by a notification instead), sign-in answers one 401 for a
//! wrong password and an unknown email (after the same Argon2id work), and a reset request
//! always answers 202. Failed sign-ins are throttled per account and per client address in
//! the same counter store as the global rate-limit tier, before any password is hashed.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::device::Client;
use super::sessions::{self, Session, Tokens};
use super::tokens::{self, Purpose};
use super::{Customer, check_project, cookies, fold_email, password, throttle};
use crate::audit::Actor;
use crate::error::{ApiError, ApiJson, Problem};
use crate::state::AppState;
use crate::time::now_millis;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignUp {
    email: String,
    /// At least 10 characters, not a common password, not containing the email.
    password: String,
    name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    email: String,
    password: String,
    /// Keep the session for the project's idle/absolute lifetimes (default false: a
    /// browser-session length).
    #[serde(default)]
    remember: bool,
    /// `bearer` (default): tokens in the body, for apps. `cookie`: tokens in HttpOnly
    /// cookies and a CSRF token in the body, for browsers.
    #[serde(default)]
    session: Delivery,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Delivery {
    #[default]
    Bearer,
    Cookie,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Refresh {
    /// The refresh token; leave out to use the `verge_refresh` cookie.
    refresh_token: Option<String>,
}

/// What a browser (cookie) sign-in or refresh answers; the tokens are in cookies.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CookieSession {
    session_id: String,
    /// Echo in `X-CSRF-Token` on writes authenticated by these cookies.
    csrf_token: String,
    #[schema(value_type = String, format = DateTime)]
    access_token_expires_at: crate::time::Millis,
}

fn reply(headers: &HeaderMap, project: &str, tokens: Tokens, delivery: Delivery) -> Response {
    match delivery {
        Delivery::Bearer => {
            let mut response = Json(tokens).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
            response
        }
        Delivery::Cookie => {
            let (set, csrf_token) = cookies::set(headers, project, &tokens, now_millis().0);
            let body = CookieSession {
                session_id: tokens.session_id.clone(),
                csrf_token,
                access_token_expires_at: tokens.access_token_expires_at,
            };
            let mut response = Json(body).into_response();
            for value in set {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
            response
        }
    }
}

/// Sign up: creates the account (unverified) and asks for a verification email.
#[utoipa::path(
    post, path = "/auth/{project}/sign-up", tag = "sessions",
    params(("project" = String, Path)), request_body = SignUp,
    responses(
        (status = 202, description = "Accepted; the same answer whether or not the email already had an account"),
        (status = 422, description = "Invalid email, or a password refused with the reason", body = Problem),
        (status = 429, description = "Over 20 sign-ups an hour from this address", body = Problem),
    )
)]
pub(crate) async fn sign_up(
    State(state): State<AppState>,
    Path(project): Path<String>,
    client: Client,
    ApiJson(body): ApiJson<SignUp>,
) -> Result<Response, ApiError> {
    check_project(&project)?;
    super::check_email(&body.email, "/email")?;
    password::check(&body.password, &body.email, "/password")?;
    // Before the Argon2id work, which is what a flood of sign-ups would spend.
    throttle::spend(&state, "sign_up_throttled", &[throttle::per_address("signup", &client, 20)]).await?;
    let hash = password::hash(body.password).await?;
    let mut tx = state.db.begin_write().await?;
    let existing: Option<String> =
        sqlx::query_scalar("SELECT id FROM customers WHERE project = $1 AND email_folded = $2")
            .bind(&project)
            .bind(fold_email(&body.email))
            .fetch_optional(&mut *tx)
            .await?;
    match existing {
        Some(id) => {
            // Tell the owner of the address, not the caller.
            let data = json!({ "project": project, "customer_id": id, "email": body.email.trim() });
            crate::notifications::notify(&mut tx, "customer.sign_up_attempted", &id, &data).await?;
        }
        None => {
            let fields = super::api::NewCustomer {
                email: body.email.trim().to_owned(),
                name: body.name,
                phone: None,
                metadata: Value::Object(Default::default()),
                password_hash: Some(hash),
            };
            let customer = super::api::insert(&mut tx, &project, fields, None).await?;
            tokens::issue(&mut tx, &customer, Purpose::VerifyEmail).await?;
        }
    }
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "status": "accepted", "detail": "check your email to verify the address" })),
    )
        .into_response())
}

/// Sign in with email and password.
#[utoipa::path(
    post, path = "/auth/{project}/sign-in", tag = "sessions",
    params(("project" = String, Path)), request_body = SignIn,
    responses(
        (status = 200, description = "Signed in: tokens (bearer) or cookies and a CSRF token (cookie)", body = Tokens),
        (status = 401, description = "Wrong email or password (one answer for both)", body = Problem),
        (status = 429, description = "Too many failures for the account or the address", body = Problem),
    )
)]
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    Path(project): Path<String>,
    client: Client,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    check_project(&project)?;
    let counters = throttle::sign_in_allowed(&state, &project, &body.email, &client).await?;
    let row = sqlx::query("SELECT * FROM customers WHERE project = $1 AND email_folded = $2")
        .bind(&project)
        .bind(fold_email(&body.email))
        .fetch_optional(state.db.pool())
        .await?;
    let stored =
        row.as_ref().map(|r| sqlx::Row::try_get::<Option<String>, _>(r, "password_hash")).transpose()?.flatten();
    if !password::verify(body.password, stored).await? {
        throttle::sign_in_failed(&state, &counters).await?;
        if let Some(row) = &row {
            let customer = Customer::from_row(row)?;
            let mut tx = state.db.begin_write().await?;
            let detail = json!({ "browser": client.browser, "os": client.os, "place": client.place });
            crate::audit::record(
                &mut tx,
                &Actor::System,
                "customer.sign_in_failed",
                "customer",
                &customer.id,
                None,
                Some(&detail),
            )
            .await?;
            tx.commit().await?;
        }
        return Err(ApiError::unauthorized("the email or password is wrong"));
    }
    let customer = Customer::from_row(row.as_ref().expect("a verified password has an account"))?;
    let key = super::signing::current(&state.db).await?;
    let mut tx = state.db.begin_write().await?;
    let tokens = sessions::start(&key, &mut tx, &customer, body.remember, &client).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(reply(&headers, &project, tokens, body.session))
}

/// Trade a refresh token for new tokens; the old refresh token is spent.
#[utoipa::path(
    post, path = "/auth/{project}/refresh", tag = "sessions",
    params(("project" = String, Path)), request_body = Refresh,
    responses(
        (status = 200, description = "New tokens (in cookies when the refresh token came in one)", body = Tokens),
        (status = 401, description = "Unknown, spent (the session then ends) or ended", body = Problem),
        (status = 403, description = "Cookie refresh without the CSRF header", body = Problem),
    )
)]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    check_project(&project)?;
    // A cookie refresh may send no body at all.
    let body: Refresh = if body.iter().all(u8::is_ascii_whitespace) {
        Refresh::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("the body is not a refresh request: {err}"),
            )
        })?
    };
    let (token, delivery) = match body.refresh_token {
        Some(token) => (token, Delivery::Bearer),
        None => {
            let token = cookies::get(&headers, cookies::REFRESH)
                .ok_or_else(|| ApiError::unauthorized("no refresh token: send `refresh_token` or the cookie"))?;
            cookies::check_csrf(&headers)?;
            (token.to_owned(), Delivery::Cookie)
        }
    };
    let result = sessions::refresh(&state.db, &project, &token).await;
    state.publisher.wake();
    Ok(reply(&headers, &project, result?, delivery))
}

/// The signed-in customer of a request: a valid access token (bearer or cookie) of this
/// project whose session is still active. A cookie-authenticated write must pass the CSRF
/// check.
#[derive(Debug)]
pub(crate) struct SignedIn {
    pub(crate) project: String,
    pub(crate) customer_id: String,
    pub(crate) session_id: String,
    pub(crate) by_cookie: bool,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(params): Path<std::collections::HashMap<String, String>> =
            Path::from_request_parts(parts, state).await.map_err(|_| ApiError::not_found("no such route"))?;
        let project = params.get("project").cloned().unwrap_or_default();
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let (token, by_cookie) = match bearer {
            Some(token) => (token, false),
            None => match cookies::get(&parts.headers, cookies::ACCESS) {
                Some(token) => (token.to_owned(), true),
                None => return Err(refusal(verge_shared::sessions::Refusal::Missing)),
            },
        };
        let keys = super::signing::published(&state.db).await?;
        let now = now_millis().0;
        let verified = verge_shared::sessions::verify(&keys, &token).map_err(refusal)?;
        verified.check_time(now).map_err(refusal)?;
        let claims = verified.claims;
        if claims.project != project {
            return Err(ApiError::unauthorized("the token belongs to another project"));
        }
        let session = sqlx::query("SELECT * FROM customer_sessions WHERE id = $1")
            .bind(&claims.session_id)
            .fetch_optional(state.db.pool())
            .await?
            .map(|row| Session::from_row(&row))
            .transpose()?;
        if !session.is_some_and(|s| s.is_active(now) && s.customer_id == claims.subject) {
            return Err(refusal(verge_shared::sessions::Refusal::Revoked));
        }
        if by_cookie && parts.method != Method::GET && parts.method != Method::HEAD {
            cookies::check_csrf(&parts.headers)?;
        }
        Ok(SignedIn { project, customer_id: claims.subject, session_id: claims.session_id, by_cookie })
    }
}

fn refusal(refusal: verge_shared::sessions::Refusal) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, refusal.code(), refusal.detail())
}

/// The signed-in customer's own record.
#[utoipa::path(
    get, path = "/auth/{project}/me", tag = "sessions",
    params(("project" = String, Path)),
    security(("customer_token" = [])),
    responses((status = 200, body = Customer), (status = 401, description = "No valid session", body = Problem))
)]
pub(crate) async fn me(State(state): State<AppState>, who: SignedIn) -> Result<Json<Customer>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    let (customer, _) = super::load(&mut conn, &who.project, &who.customer_id).await?;
    Ok(Json(customer))
}

/// Sign out: ends this session here and at the edge.
#[utoipa::path(
    post, path = "/auth/{project}/sign-out", tag = "sessions",
    params(("project" = String, Path)),
    security(("customer_token" = [])),
    responses((status = 204, description = "Signed out"), (status = 401, body = Problem), (status = 403, body = Problem))
)]
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    who: SignedIn,
) -> Result<Response, ApiError> {
    let mut tx = state.db.begin_write().await?;
    sessions::end(&mut tx, &who.session_id, "sign_out", &Actor::Customer(who.customer_id.clone()), now_millis().0)
        .await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(signed_out(&headers, &who))
}

fn signed_out(headers: &HeaderMap, who: &SignedIn) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if who.by_cookie {
        for value in cookies::clear(headers, &who.project) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Sign out everywhere: ends every session of the customer and voids every access token
/// issued so far, at the edge within a second.
#[utoipa::path(
    post, path = "/auth/{project}/sign-out-everywhere", tag = "sessions",
    params(("project" = String, Path)),
    security(("customer_token" = [])),
    responses((status = 204, description = "Every session ended"), (status = 401, body = Problem), (status = 403, body = Problem))
)]
pub(crate) async fn sign_out_everywhere(
    State(state): State<AppState>,
    headers: HeaderMap,
    who: SignedIn,
) -> Result<Response, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let actor = Actor::Customer(who.customer_id.clone());
    sessions::end_all(&mut tx, &who.project, &who.customer_id, "sign_out_everywhere", &actor).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(signed_out(&headers, &who))
}

/// The signed-in customer's sessions (devices), newest first; `current` marks this one.
#[utoipa::path(
    get, path = "/auth/{project}/sessions", tag = "sessions",
    params(("project" = String, Path)),
    security(("customer_token" = [])),
    responses((status = 200, body = Vec<Session>), (status = 401, body = Problem))
)]
pub(crate) async fn my_sessions(State(state): State<AppState>, who: SignedIn) -> Result<Json<Value>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    let now = now_millis().0;
    let mut list = sessions::list(&mut conn, &who.customer_id).await?;
    list.retain(|s| s.is_active(now));
    for session in &mut list {
        session.current = session.id == who.session_id;
    }
    Ok(Json(json!({ "items": list })))
}

/// End one of the signed-in customer's sessions (a lost phone, say).
#[utoipa::path(
    delete, path = "/auth/{project}/sessions/{session_id}", tag = "sessions",
    params(("project" = String, Path), ("session_id" = String, Path)),
    security(("customer_token" = [])),
    responses((status = 204, description = "Ended"), (status = 401, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn end_my_session(
    State(state): State<AppState>,
    who: SignedIn,
    Path((_project, session_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let owner: Option<String> = sqlx::query_scalar("SELECT customer_id FROM customer_sessions WHERE id = $1")
        .bind(&session_id)
        .fetch_optional(&mut *tx)
        .await?;
    if owner.as_deref() != Some(who.customer_id.as_str()) {
        return Err(ApiError::not_found(format!("no session `{session_id}` of yours")));
    }
    sessions::end(&mut tx, &session_id, "revoked", &Actor::Customer(who.customer_id.clone()), now_millis().0).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(StatusCode::NO_CONTENT)
}
