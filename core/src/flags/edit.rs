//! One flag or one segment at a time: `/v1/flags/environments/{project}/{name}/flags/{key}`
//! (get, put, delete, and the kill switch) and `…/segments/{name}` (flagd's shared
//! `$evaluators`, used from rules with `{"$ref": name}`), plus the environment's audit
//! trail.
//!
//! Each route is one [`Change`] applied at once (`changes.rs` checks and writes it). A
//! protected environment refuses them with 409 `change_request_required`: there, changes
//! go through `…/changes` and a second key holder. Audit entries name
//! `flags/<project>/<env>/flags/<key>` or `…/evaluators/<name>`, so the environment's
//! trail is everything under its id.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;

use super::access::{FlagReaders, FlagWriters};
use super::changes::{Change, apply_directly};
use super::{dataset, load};
use crate::audit::AuditEntry;
use crate::error::{ApiError, ApiJson, ApiQuery, Problem};
use crate::keys::Authorized;
use crate::pagination::{Page, PageParams};
use crate::state::AppState;

/// Applies one change to an unprotected environment; returns what `member/name` holds after.
async fn edit(
    state: &AppState,
    (project, env): (&str, &str),
    (member, name): (&str, &str),
    actor: &crate::audit::Actor,
    change: Change,
) -> Result<Value, ApiError> {
    let committed = apply_directly(&state.db, (project, env), vec![change], actor).await?;
    state.publisher.wake();
    Ok(committed.document[member].get(name).cloned().unwrap_or(Value::Null))
}

/// One flag as flagd defines it.
#[utoipa::path(
    get, path = "/v1/flags/environments/{project}/{name}/flags/{key}", tag = "flags",
    params(("project" = String, Path), ("name" = String, Path), ("key" = String, Path)),
    security(("admin_key" = ["admin", "read", "flags:write"])),
    responses(
        (status = 200, description = "The flag's flagd definition", body = Object),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such environment or flag", body = Problem),
    )
)]
pub(crate) async fn get_flag(
    State(state): State<AppState>,
    _: Authorized<FlagReaders>,
    Path((project, env, key)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    let (_, document) = load(&mut conn, &project, &env).await?;
    let flag = document["flags"].get(&key).cloned();
    Ok(Json(flag.ok_or_else(|| ApiError::not_found(format!("no flag `{key}` in this environment")))?))
}

/// Create or replace one flag (`state`, `variants`, `defaultVariant`, `targeting`,
/// `metadata`, as flagd defines a flag; percentage rollouts are `fractional` rules).
#[utoipa::path(
    put, path = "/v1/flags/environments/{project}/{name}/flags/{key}", tag = "flags",
    params(("project" = String, Path), ("name" = String, Path), ("key" = String, Path)),
    request_body = Object,
    security(("admin_key" = ["admin", "flags:write"])),
    responses(
        (status = 200, description = "Stored; edges evaluate it after the next publish", body = Object),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such environment", body = Problem),
        (status = 409, description = "Protected environment: use a change request", body = Problem),
        (status = 422, description = "Not a valid flag; each problem located by JSON pointer", body = Problem),
    )
)]
pub(crate) async fn put_flag(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path((project, env, key)): Path<(String, String, String)>,
    ApiJson(flag): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let change = Change::PutFlag { key: key.clone(), flag };
    Ok(Json(edit(&state, (&project, &env), ("flags", &key), &principal.actor(), change).await?))
}

/// Remove one flag.
#[utoipa::path(
    delete, path = "/v1/flags/environments/{project}/{name}/flags/{key}", tag = "flags",
    params(("project" = String, Path), ("name" = String, Path), ("key" = String, Path)),
    security(("admin_key" = ["admin", "flags:write"])),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such environment or flag", body = Problem),
        (status = 409, description = "Protected environment: use a change request", body = Problem),
    )
)]
pub(crate) async fn delete_flag(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path((project, env, key)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let change = Change::DeleteFlag { key: key.clone() };
    edit(&state, (&project, &env), ("flags", &key), &principal.actor(), change).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The kill switch: turn a flag off in this environment (`state` DISABLED, so every
/// client falls back to its code default).
#[utoipa::path(
    post, path = "/v1/flags/environments/{project}/{name}/flags/{key}/kill", tag = "flags",
    params(("project" = String, Path), ("name" = String, Path), ("key" = String, Path)),
    security(("admin_key" = ["admin", "flags:write"])),
    responses(
        (status = 200, description = "Disabled; edges stop serving its variants after the next publish", body = Object),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such environment or flag", body = Problem),
        (status = 409, description = "Protected environment: use a change request", body = Problem),
    )
)]
pub(crate) async fn kill_flag(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path((project, env, key)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let change = Change::KillFlag { key: key.clone() };
    Ok(Json(edit(&state, (&project, &env), ("flags", &key), &principal.actor(), change).await?))
}

/// Create or replace a segment: a JsonLogic rule flags share with `{"$ref": name}`.
#[utoipa::path(
    put, path = "/v1/flags/environments/{project}/{name}/segments/{segment}", tag = "flags",
    params(("project" = String, Path), ("name" = String, Path), ("segment" = String, Path)),
    request_body = Object,
    security(("admin_key" = ["admin", "flags:write"])),
    responses(
        (status = 200, description = "Stored", body = Object),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such environment", body = Problem),
        (status = 409, description = "Protected environment: use a change request", body = Problem),
        (status = 422, description = "A flag using it would break; located by JSON pointer", body = Problem),
    )
)]
pub(crate) async fn put_segment(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path((project, env, segment)): Path<(String, String, String)>,
    ApiJson(rule): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let change = Change::PutSegment { name: segment.clone(), rule };
    Ok(Json(edit(&state, (&project, &env), ("$evaluators", &segment), &principal.actor(), change).await?))
}

/// Remove a segment no flag refers to.
#[utoipa::path(
    delete, path = "/v1/flags/environments/{project}/{name}/segments/{segment}", tag = "flags",
    params(("project" = String, Path), ("name" = String, Path), ("segment" = String, Path)),
    security(("admin_key" = ["admin", "flags:write"])),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such environment or segment", body = Problem),
        (status = 409, description = "Protected environment: use a change request", body = Problem),
        (status = 422, description = "Flags still refer to it; they are named", body = Problem),
    )
)]
pub(crate) async fn delete_segment(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path((project, env, segment)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let change = Change::DeleteSegment { name: segment.clone() };
    edit(&state, (&project, &env), ("$evaluators", &segment), &principal.actor(), change).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every change to the environment and its flags and segments, newest first, each with
/// who, when, and a field-by-field diff.
#[utoipa::path(
    get, path = "/v1/flags/environments/{project}/{name}/audit", tag = "flags",
    params(("project" = String, Path), ("name" = String, Path), PageParams),
    security(("admin_key" = ["admin", "read"])),
    responses(
        (status = 200, description = "A page of entries", body = Page<AuditEntry>),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such environment", body = Problem),
    )
)]
pub(crate) async fn environment_audit(
    State(state): State<AppState>,
    authorized: Authorized<crate::keys::Readers>,
    Path((project, env)): Path<(String, String)>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    load(&mut conn, &project, &env).await?;
    drop(conn);
    let filter = crate::audit::routes::AuditFilter {
        target_type: None,
        target_id: None,
        actor: None,
        target_under: Some(dataset(&project, &env)),
    };
    crate::audit::routes::list_entries(State(state), authorized, ApiQuery(filter), ApiQuery(page)).await
}
