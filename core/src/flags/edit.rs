//! One flag or one segment at a time: `/v1/flags/environments/{project}/{name}/flags/{key}`
//! (get, put, delete, and the kill switch) and `…/segments/{name}` (flagd's shared
//! `$evaluators`, used from rules with `{"$ref": name}`), plus the environment's audit
//! trail.
//!
//! Each edit rewrites the environment's document in one transaction and is checked with
//! the edge's evaluator first: an edit that would leave any flag with an unusable rule is
//! refused with where, and problems a set already had (kept with `keep_broken`) do not
//! block edits elsewhere. Audit entries name `flags/<project>/<env>/flags/<key>` or
//! `…/segments/<name>`, so the environment's trail is everything under its id.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;

use super::api::{FlagReaders, FlagWriters};
use super::{check_document, dataset, load};
use crate::audit::{Actor, AuditEntry};
use crate::error::{ApiError, ApiJson, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::pagination::{Page, PageParams};
use crate::publish::enqueue;
use crate::server::AppState;
use crate::time::now_millis;

/// Where in the document an edit applies.
#[derive(Debug, Clone, Copy)]
enum Part {
    Flag,
    Segment,
}

impl Part {
    fn member(self) -> &'static str {
        match self {
            Part::Flag => "flags",
            Part::Segment => "$evaluators",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Part::Flag => "flag",
            Part::Segment => "segment",
        }
    }
}

/// Applies `change` to one member of the document and stores the result; returns the
/// member's new value (`None`: removed).
async fn edit(
    state: &AppState,
    (project, env): (&str, &str),
    (part, name): (Part, &str),
    actor: &Actor,
    action: &str,
    change: impl FnOnce(Option<&Value>) -> Result<Option<Value>, ApiError>,
) -> Result<Option<Value>, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let (_, mut document) = load(&mut tx, project, env).await?;
    let had = check_document(&document)?;
    let before = document[part.member()].get(name).cloned();
    let after = change(before.as_ref())?;
    let members = document
        .as_object_mut()
        .expect("a stored set is an object")
        .entry(part.member())
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    let members = members.as_object_mut().ok_or_else(|| ApiError::internal("stored set: member not an object"))?;
    match &after {
        Some(value) => members.insert(name.to_owned(), value.clone()),
        None => members.remove(name),
    };
    let new_problems: Vec<FieldError> = check_document(&document)?
        .into_iter()
        .filter(|problem| !had.iter().any(|old| old.field == problem.field))
        .collect();
    if !new_problems.is_empty() {
        return Err(ApiError::validation(new_problems));
    }
    sqlx::query("UPDATE flag_environments SET document = $1, updated_at = $2 WHERE project = $3 AND name = $4")
        .bind(document.to_string())
        .bind(now_millis().0)
        .bind(project)
        .bind(env)
        .execute(&mut *tx)
        .await?;
    let target = format!("{}/{}/{name}", dataset(project, env), part.member().trim_start_matches('$'));
    crate::audit::record(&mut tx, actor, action, part.noun(), &target, before.as_ref(), after.as_ref()).await?;
    enqueue(&mut tx, &dataset(project, env)).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(after)
}

fn member(document: &Value, part: Part, name: &str) -> Result<Value, ApiError> {
    document[part.member()]
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no {} `{name}` in this environment", part.noun())))
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
    Ok(Json(member(&document, Part::Flag, &key)?))
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
        (status = 422, description = "Not a valid flag; each problem located by JSON pointer", body = Problem),
    )
)]
pub(crate) async fn put_flag(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path((project, env, key)): Path<(String, String, String)>,
    ApiJson(flag): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    if key.is_empty() || key.len() > 200 || key.chars().any(char::is_control) {
        return Err(ApiError::validation(vec![FieldError {
            field: "key".into(),
            message: "must be 1 to 200 printable characters".into(),
        }]));
    }
    let action = "flag.put";
    let stored =
        edit(&state, (&project, &env), (Part::Flag, &key), &principal.actor(), action, |_| Ok(Some(flag))).await?;
    Ok(Json(stored.unwrap_or(Value::Null)))
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
    )
)]
pub(crate) async fn delete_flag(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path((project, env, key)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    edit(&state, (&project, &env), (Part::Flag, &key), &principal.actor(), "flag.delete", |before| match before {
        Some(_) => Ok(None),
        None => Err(ApiError::not_found(format!("no flag `{key}` in this environment"))),
    })
    .await?;
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
    )
)]
pub(crate) async fn kill_flag(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path((project, env, key)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let killed = edit(&state, (&project, &env), (Part::Flag, &key), &principal.actor(), "flag.kill", |before| {
        let mut flag =
            before.cloned().ok_or_else(|| ApiError::not_found(format!("no flag `{key}` in this environment")))?;
        flag["state"] = Value::String("DISABLED".into());
        Ok(Some(flag))
    })
    .await?;
    Ok(Json(killed.unwrap_or(Value::Null)))
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
        (status = 422, description = "A flag using it would break; located by JSON pointer", body = Problem),
    )
)]
pub(crate) async fn put_segment(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path((project, env, segment)): Path<(String, String, String)>,
    ApiJson(rule): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    verge_shared::flags::check(&rule).map_err(|err| {
        ApiError::validation(vec![FieldError {
            field: format!("/$evaluators/{segment}{}", err.pointer),
            message: err.message,
        }])
    })?;
    let action = "segment.put";
    let stored =
        edit(&state, (&project, &env), (Part::Segment, &segment), &principal.actor(), action, |_| Ok(Some(rule)))
            .await?;
    Ok(Json(stored.unwrap_or(Value::Null)))
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
        (status = 422, description = "Flags still refer to it; they are named", body = Problem),
    )
)]
pub(crate) async fn delete_segment(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path((project, env, segment)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    edit(&state, (&project, &env), (Part::Segment, &segment), &principal.actor(), "segment.delete", |before| {
        match before {
            Some(_) => Ok(None),
            None => Err(ApiError::not_found(format!("no segment `{segment}` in this environment"))),
        }
    })
    .await?;
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
    let filter = crate::audit::AuditFilter {
        target_type: None,
        target_id: None,
        actor: None,
        target_under: Some(dataset(&project, &env)),
    };
    crate::audit::list_entries(State(state), authorized, ApiQuery(filter), ApiQuery(page)).await
}
