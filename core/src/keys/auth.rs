//! Authentication of `/v1` requests: `Authorization: Bearer <key>` → a `Principal`.
//!
//! The middleware runs on every path under `/v1`, so no route can forget it: a request without
//! a valid, active key is answered 401 before any handler runs. Handlers then say which
//! scopes they need by taking an `Authorized<G>` extractor, which answers 403 before the
//! request body is even read (so a key without rights learns nothing about validation).

use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiKey, Scope};
use crate::audit::Actor;
use crate::error::ApiError;
use crate::state::AppState;
use crate::time::now_millis;

/// The key a request authenticated with.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key: ApiKey,
}

impl Principal {
    /// Passes when the key holds `admin` or any of `any_of`.
    pub fn require(&self, any_of: &[Scope]) -> Result<(), ApiError> {
        let scopes = &self.key.scopes;
        if scopes.contains(&Scope::Admin) || any_of.iter().any(|s| scopes.contains(s)) {
            return Ok(());
        }
        let wanted = std::iter::once(Scope::Admin).chain(any_of.iter().copied());
        let wanted = wanted.map(|s| format!("`{s}`")).collect::<Vec<_>>().join(" or ");
        Err(ApiError::forbidden(format!("this key lacks the scope for this operation; it needs {wanted}")))
    }

    pub fn actor(&self) -> Actor {
        // The console acts for operators under their own ids (`operators::Operator::principal`).
        if crate::operators::is_operator_id(&self.key.id) {
            Actor::Operator(self.key.id.clone())
        } else {
            Actor::Key(self.key.id.clone())
        }
    }
}

/// A set of scopes that grants an operation (besides `admin`, which grants every one).
pub trait Grants: Send + Sync + 'static {
    const SCOPES: &'static [Scope];
}

/// Operations only `admin` keys may perform.
#[derive(Debug)]
pub struct AdminOnly;
impl Grants for AdminOnly {
    const SCOPES: &'static [Scope] = &[];
}

/// Reads open to `read` keys.
#[derive(Debug)]
pub struct Readers;
impl Grants for Readers {
    const SCOPES: &'static [Scope] = &[Scope::Read];
}

/// The request's principal, checked to hold one of `G`'s scopes.
#[derive(Debug)]
pub struct Authorized<G: Grants>(pub Principal, pub std::marker::PhantomData<G>);

impl<G: Grants, S: Send + Sync> FromRequestParts<S> for Authorized<G> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        principal.require(G::SCOPES)?;
        Ok(Authorized(principal, std::marker::PhantomData))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Only reachable without the middleware through a routing mistake: fail closed.
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| ApiError::unauthorized("authentication required"))
    }
}

/// `last_used_at` is written at most this often per key, to keep reads from writing.
const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

pub(crate) async fn require_key_under_v1(
    state: State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = req.uri().path();
    if path == "/v1" || path.starts_with("/v1/") {
        authenticate(state, req, next).await
    } else {
        Ok(next.run(req).await)
    }
}

async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let principal = principal_for(&state, req.headers()).await?;
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

/// The key a request's `Authorization: Bearer` names, checked to be active; for routes
/// outside `/v1` that authenticate themselves (envoy's gRPC rate limit service).
pub(crate) async fn principal_for(state: &AppState, headers: &axum::http::HeaderMap) -> Result<Principal, ApiError> {
    let token = bearer_token(headers)?;
    let key = super::find_by_token(&state.db, token)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the API key is not valid"))?;
    let now = now_millis();
    if key.revoked_at.is_some() {
        return Err(ApiError::unauthorized("the API key has been revoked"));
    }
    if !key.is_active(now) {
        return Err(ApiError::unauthorized("the API key has expired"));
    }
    if key.last_used_at.is_none_or(|at| now.0 - at.0 >= LAST_USED_RESOLUTION.as_millis() as i64) {
        // The remembered copy says so too, or every request until it goes stale would write.
        super::note_used(&state.db, token, &key, now);
        let db = state.db.clone();
        let id = key.id.clone();
        // Off the request path: a slow write must not slow every authenticated request.
        tokio::spawn(async move {
            let updated = sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                .bind(now.0)
                .bind(&id)
                .execute(db.pool())
                .await;
            if let Err(err) = updated {
                tracing::warn!(key = %id, error = %err, "could not record key use");
            }
        });
    }
    tracing::Span::current().record("key", tracing::field::display(&key.id));
    Ok(Principal { key })
}

fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("send an admin API key as `Authorization: Bearer <key>`"))?;
    let value = value.to_str().map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized("the Authorization header must use the Bearer scheme"));
    }
    Ok(token.trim())
}
