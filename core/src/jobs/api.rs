//! `/v1/jobs`: what the queue holds, and the two things an operator does with a job that
//! gave up: retry it or discard it. Both are audited; `read` keys may look, `jobs:write`
//! keys may act.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use crate::db::Database;
use crate::error::{ApiError, ApiQuery, FieldError, Problem};
use crate::keys::{Authorized, Grants, Scope};
use crate::pagination::{Cursor, Page, PageParams};
use crate::state::AppState;
use crate::time::{Millis, now_millis};

#[derive(Debug)]
pub(crate) struct JobReaders;
impl Grants for JobReaders {
    const SCOPES: &'static [Scope] = &[Scope::Read, Scope::JobsWrite];
}

#[derive(Debug)]
pub(crate) struct JobWriters;
impl Grants for JobWriters {
    const SCOPES: &'static [Scope] = &[Scope::JobsWrite];
}

const STATES: &[&str] = &["queued", "running", "succeeded", "dead", "discarded"];

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Job {
    id: String,
    kind: String,
    /// `queued`, `running`, `succeeded`, `dead` (its last attempt failed) or `discarded`.
    state: String,
    payload: Value,
    /// Higher runs first among due jobs.
    priority: i64,
    /// Attempts begun so far.
    attempts: i64,
    max_attempts: i64,
    timeout_ms: i64,
    /// When it is (or was) next due.
    #[schema(value_type = String, format = DateTime)]
    run_at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    unique_key: Option<String>,
    /// While running: when its lease runs out and another worker may take it up.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    locked_until: Option<Millis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    /// The latest failures, oldest first: `{attempt, at, error}`.
    errors: Vec<Value>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    finished_at: Option<Millis>,
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Job, sqlx::Error> {
    let text = |column: &str| -> Result<Value, sqlx::Error> {
        Ok(serde_json::from_str(&row.try_get::<String, _>(column)?).unwrap_or(Value::Null))
    };
    let errors = match text("errors")? {
        Value::Array(errors) => errors,
        _ => Vec::new(),
    };
    Ok(Job {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        state: row.try_get("state")?,
        payload: text("payload")?,
        priority: row.try_get("priority")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        timeout_ms: row.try_get("timeout_ms")?,
        run_at: Millis(row.try_get("run_at")?),
        unique_key: row.try_get("unique_key")?,
        locked_until: row.try_get::<Option<i64>, _>("locked_until")?.map(Millis),
        last_error: row.try_get("last_error")?,
        errors,
        created_at: Millis(row.try_get("created_at")?),
        updated_at: Millis(row.try_get("updated_at")?),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(Millis),
    })
}

async fn load(db: &Database, id: &str) -> Result<Job, ApiError> {
    let row = sqlx::query("SELECT * FROM jobs WHERE id = $1").bind(id).fetch_optional(db.pool()).await?;
    match row {
        Some(row) => Ok(from_row(&row)?),
        None => Err(ApiError::not_found(format!("no job `{id}`"))),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct JobFilter {
    /// Only jobs in this state: `queued`, `running`, `succeeded`, `dead` or `discarded`.
    state: Option<String>,
    /// Only jobs of this kind.
    kind: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
}

/// Jobs, oldest first, by state and kind.
#[utoipa::path(
    get, path = "/v1/jobs", tag = "jobs", params(JobFilter),
    security(("admin_key" = ["admin", "read", "jobs:write"])),
    responses(
        (status = 200, body = inline(Page<Job>)),
        (status = 400, description = "A cursor this API did not return", body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, description = "An unknown state or a bad limit", body = Problem),
    )
)]
pub(crate) async fn list_jobs(
    State(state): State<AppState>,
    _: Authorized<JobReaders>,
    ApiQuery(filter): ApiQuery<JobFilter>,
) -> Result<Json<Page<Job>>, ApiError> {
    let cursor = Cursor::from_params(&PageParams { limit: filter.limit, cursor: filter.cursor.clone() })?;
    if let Some(wanted) = &filter.state
        && !STATES.contains(&wanted.as_str())
    {
        return Err(ApiError::validation(vec![FieldError {
            field: "state".into(),
            message: format!("must be one of {}", STATES.join(", ")),
        }]));
    }
    let mut sql = String::from("SELECT * FROM jobs WHERE id > $1");
    let mut next = 3;
    for (column, value) in [("state", &filter.state), ("kind", &filter.kind)] {
        if value.is_some() {
            sql.push_str(&format!(" AND {column} = ${next}"));
            next += 1;
        }
    }
    sql.push_str(" ORDER BY id LIMIT $2");
    let mut query = sqlx::query(&sql).bind(cursor.after()).bind(cursor.fetch_limit());
    for value in [&filter.state, &filter.kind].into_iter().flatten() {
        query = query.bind(value);
    }
    let rows = query.fetch_all(state.db.pool()).await?;
    let jobs = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(cursor.page(jobs, |job| job.id.clone())))
}

/// How many jobs of a kind are in a state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Depth {
    pub(crate) kind: String,
    pub(crate) state: String,
    pub(crate) jobs: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueStats {
    /// Jobs queued, running and dead, per kind (finished ones are not counted).
    depths: Vec<Depth>,
    /// Seconds the longest-waiting due job has waited; 0 when none is waiting.
    oldest_due_age_seconds: f64,
}

pub(crate) async fn depths(db: &Database) -> Result<(Vec<Depth>, f64), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT kind, state, COUNT(*) AS jobs FROM jobs WHERE state IN ('queued', 'running', 'dead')
         GROUP BY kind, state ORDER BY kind, state",
    )
    .fetch_all(db.pool())
    .await?;
    let depths = rows
        .iter()
        .map(|row| Ok(Depth { kind: row.try_get(0)?, state: row.try_get(1)?, jobs: row.try_get(2)? }))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let now = now_millis().0;
    let oldest: Option<i64> =
        sqlx::query_scalar("SELECT MIN(run_at) FROM jobs WHERE state = 'queued' AND run_at <= $1")
            .bind(now)
            .fetch_one(db.pool())
            .await?;
    let age = oldest.map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
    Ok((depths, age))
}

/// The queue's depth per kind and state, and how long the oldest due job has waited.
#[utoipa::path(
    get, path = "/v1/jobs/stats", tag = "jobs",
    security(("admin_key" = ["admin", "read", "jobs:write"])),
    responses((status = 200, body = QueueStats), (status = 401, body = Problem), (status = 403, body = Problem))
)]
pub(crate) async fn queue_stats(
    State(state): State<AppState>,
    _: Authorized<JobReaders>,
) -> Result<Json<QueueStats>, ApiError> {
    let (depths, oldest_due_age_seconds) = depths(&state.db).await?;
    Ok(Json(QueueStats { depths, oldest_due_age_seconds }))
}

/// One job, with its attempts and latest errors.
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    security(("admin_key" = ["admin", "read", "jobs:write"])),
    responses((status = 200, body = Job), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn get_job(
    State(state): State<AppState>,
    _: Authorized<JobReaders>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(load(&state.db, &id).await?))
}

/// Moves a job from one of `from` to `to` and audits it; a 409 naming its state otherwise.
async fn transition(
    state: &AppState,
    principal: &crate::keys::Principal,
    id: &str,
    from: &[&str],
    action: &str,
    set: &str,
) -> Result<Job, ApiError> {
    let before = load(&state.db, id).await?;
    let mut tx = state.db.begin_write().await?;
    let allowed = from.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
    let sql = format!("UPDATE jobs SET {set}, updated_at = $1 WHERE id = $2 AND state IN ({allowed})");
    let moved = sqlx::query(&sql).bind(now_millis().0).bind(id).execute(&mut *tx).await?;
    if moved.rows_affected() != 1 {
        drop(tx);
        let now = load(&state.db, id).await?;
        return Err(ApiError::conflict(
            "job_state",
            format!("job `{id}` is {}; only a job that is {} can be {action}", now.state, from.join(" or ")),
        ));
    }
    let after = {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
        from_row(&row)?
    };
    let summary = |job: &Job| serde_json::json!({ "state": job.state, "attempts": job.attempts, "kind": job.kind });
    crate::audit::record(
        &mut tx,
        &principal.actor(),
        &format!("job.{action}"),
        "job",
        id,
        Some(&summary(&before)),
        Some(&summary(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Runs a dead or discarded job again now, with its attempts counted afresh.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/retry", tag = "jobs", params(("id" = String, Path)),
    security(("admin_key" = ["admin", "jobs:write"])),
    responses(
        (status = 200, body = Job), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "The job is queued, running or succeeded (`job_state`)", body = Problem),
    )
)]
pub(crate) async fn retry_job(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<JobWriters>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = transition(
        &state,
        &principal,
        &id,
        &["dead", "discarded"],
        "retried",
        "state = 'queued', attempts = 0, run_at = $1, finished_at = NULL",
    )
    .await?;
    super::wake(&state);
    Ok(Json(job))
}

/// Gives up on a queued or dead job for good; it stays listed until retention removes it.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/discard", tag = "jobs", params(("id" = String, Path)),
    security(("admin_key" = ["admin", "jobs:write"])),
    responses(
        (status = 200, body = Job), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "The job is running, succeeded or already discarded (`job_state`)", body = Problem),
    )
)]
pub(crate) async fn discard_job(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<JobWriters>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job =
        transition(&state, &principal, &id, &["queued", "dead"], "discarded", "state = 'discarded', finished_at = $1")
            .await?;
    Ok(Json(job))
}
