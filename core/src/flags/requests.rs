//! Held changes: change requests for protected environments and scheduled changes.
//!
//! `POST …/environments/{project}/{env}/changes` proposes a list of [`Change`]s, checked
//! against the current set at once. What happens next depends on the environment:
//!
//! | environment | `apply_at` | status | then |
//! |---|---|---|---|
//! | protected | any | `pending` | a different key holder approves (or anyone cancels) |
//! | open | future | `scheduled` | the scheduler applies it at `apply_at` |
//! | open | absent | `applied` | applied in the same transaction, all edits or none |
//!
//! Approval applies the change at once, or schedules it when `apply_at` is still ahead.
//! A request records what the members it touches looked like when proposed (its `base`),
//! and applies only while they still do: a flag edited in between is never overwritten
//! silently (409 `stale_change`). Nor does it apply once a key that proposed or approved
//! it has been revoked (409 `actor_revoked`). Every application also runs the full check
//! again; a scheduled change that no longer applies is marked `failed` with the reason, and
//! one whose environment became protected after it was scheduled without approval fails too.
//! The edits are audited under the author's name; approval, cancellation and failure
//! get entries of their own.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::{IntoParams, ToSchema};

use super::access::{FlagReaders, FlagWriters};
use super::changes::{Change, commit};
use crate::audit::Actor;
use crate::db::Database;
use crate::error::{ApiError, ApiJson, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::pagination::{Cursor, Page, PageParams};
use crate::state::AppState;
use crate::time::{Millis, now_millis};

const MAX_CHANGES: usize = 100;
const MAX_COMMENT: usize = 2000;
/// How far ahead a change may be scheduled.
const MAX_LEAD_MILLIS: i64 = 366 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// Waiting for approval by a key holder other than the author.
    Pending,
    /// Approved, or not needing approval; applies at `apply_at`.
    Scheduled,
    Applied,
    Cancelled,
    /// Could not be applied at its time; `failure` says why.
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Scheduled => "scheduled",
            Status::Applied => "applied",
            Status::Cancelled => "cancelled",
            Status::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<Status> {
        [Status::Pending, Status::Scheduled, Status::Applied, Status::Cancelled, Status::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ChangeRequest {
    /// `fcr_…`
    id: String,
    project: String,
    environment: String,
    status: Status,
    changes: Vec<Change>,
    comment: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    apply_at: Option<Millis>,
    /// Key id (or `cli`) that proposed it.
    author: String,
    /// Who approved or cancelled it.
    reviewer: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    reviewed_at: Option<Millis>,
    #[schema(value_type = Option<String>, format = DateTime)]
    applied_at: Option<Millis>,
    failure: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
    /// The touched members as they were when proposed (pointer → SHA-256, `null` when
    /// absent); the request applies only while they are unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    base: Option<Base>,
}

/// See [`ChangeRequest::base`].
type Base = std::collections::BTreeMap<String, Option<String>>;

impl ChangeRequest {
    fn from_row(row: &AnyRow) -> Result<ChangeRequest, sqlx::Error> {
        let decode = |what: &str, err: String| sqlx::Error::Decode(format!("flag_changes.{what}: {err}").into());
        let status: String = row.try_get("status")?;
        let changes: String = row.try_get("changes")?;
        let millis = |col: &str| row.try_get::<Option<i64>, _>(col).map(|v| v.map(Millis));
        Ok(ChangeRequest {
            id: row.try_get("id")?,
            project: row.try_get("project")?,
            environment: row.try_get("environment")?,
            status: Status::parse(&status).ok_or_else(|| decode("status", status.clone()))?,
            changes: serde_json::from_str(&changes).map_err(|err| decode("changes", err.to_string()))?,
            comment: row.try_get("comment")?,
            apply_at: millis("apply_at")?,
            author: row.try_get("author")?,
            reviewer: row.try_get("reviewer")?,
            reviewed_at: millis("reviewed_at")?,
            applied_at: millis("applied_at")?,
            failure: row.try_get("failure")?,
            created_at: Millis(row.try_get("created_at")?),
            base: match row.try_get::<Option<String>, _>("base")? {
                Some(text) => Some(serde_json::from_str(&text).map_err(|err| decode("base", err.to_string()))?),
                None => None,
            },
        })
    }

    /// Refuses to apply when a touched member changed since the proposal (409
    /// `stale_change`) or when a key that proposed or approved it has since been revoked
    /// or has expired (409 `actor_revoked`).
    async fn still_valid(&self, conn: &mut sqlx::AnyConnection, document: &serde_json::Value) -> Result<(), ApiError> {
        for holder in std::iter::once(&self.author).chain(self.reviewer.as_ref()) {
            if holder.starts_with("key_") && !crate::keys::is_active(conn, holder).await? {
                return Err(ApiError::conflict(
                    "actor_revoked",
                    format!("`{holder}`, which proposed or approved this change, is no longer an active key"),
                ));
            }
            if crate::operators::is_operator_id(holder) && !crate::operators::is_active(conn, holder).await? {
                return Err(ApiError::conflict(
                    "actor_revoked",
                    format!("operator `{holder}`, who proposed or approved this change, has been disabled"),
                ));
            }
        }
        let Some(base) = &self.base else { return Ok(()) };
        let now = super::changes::base_of(document, &self.changes);
        let moved: Vec<&str> =
            base.iter().filter(|(member, digest)| now.get(*member) != Some(*digest)).map(|(m, _)| m.as_str()).collect();
        if moved.is_empty() {
            return Ok(());
        }
        let named = moved.iter().map(|m| if m.is_empty() { "the whole set" } else { m }).collect::<Vec<_>>();
        Err(ApiError::conflict(
            "stale_change",
            format!("changed since this request was proposed: {}; propose it again", named.join(", ")),
        ))
    }

    fn author_actor(&self) -> Actor {
        match self.author.as_str() {
            "cli" => Actor::Cli,
            "system" => Actor::System,
            operator if crate::operators::is_operator_id(operator) => Actor::Operator(operator.to_owned()),
            key => Actor::Key(key.to_owned()),
        }
    }
}

/// The request, its row locked until the transaction ends on PostgreSQL, so approval,
/// cancellation and the scheduler never act on the same request at once. (SQLite's write
/// transactions already exclude each other.)
async fn find(conn: &mut sqlx::AnyConnection, id: &str) -> Result<ChangeRequest, ApiError> {
    let lock = if conn.backend_name() == "PostgreSQL" { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT * FROM flag_changes WHERE id = $1{lock}");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&mut *conn).await?;
    match row {
        Some(row) => Ok(ChangeRequest::from_row(&row)?),
        None => Err(ApiError::not_found(format!("no change request `{id}`"))),
    }
}

/// Writes the request's new state and an audit entry for the transition.
async fn save(
    conn: &mut sqlx::AnyConnection,
    before: Option<&ChangeRequest>,
    after: &ChangeRequest,
    actor: &Actor,
    action: &str,
) -> Result<(), ApiError> {
    let changes = serde_json::to_string(&after.changes).expect("changes serialize");
    let millis = |at: Option<Millis>| at.map(|m| m.0);
    if before.is_none() {
        sqlx::query(
            "INSERT INTO flag_changes (id, project, environment, changes, comment, status, apply_at, author,
                 reviewer, reviewed_at, applied_at, failure, created_at, base)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&after.id)
        .bind(&after.project)
        .bind(&after.environment)
        .bind(changes)
        .bind(&after.comment)
        .bind(after.status.as_str())
        .bind(millis(after.apply_at))
        .bind(&after.author)
        .bind(&after.reviewer)
        .bind(millis(after.reviewed_at))
        .bind(millis(after.applied_at))
        .bind(&after.failure)
        .bind(after.created_at.0)
        .bind(after.base.as_ref().map(|base| serde_json::to_string(base).expect("a base serializes")))
        .execute(&mut *conn)
        .await?;
    } else {
        sqlx::query(
            "UPDATE flag_changes SET status = $1, reviewer = $2, reviewed_at = $3, applied_at = $4, failure = $5
             WHERE id = $6",
        )
        .bind(after.status.as_str())
        .bind(&after.reviewer)
        .bind(millis(after.reviewed_at))
        .bind(millis(after.applied_at))
        .bind(&after.failure)
        .bind(&after.id)
        .execute(&mut *conn)
        .await?;
    }
    // Under the environment's id, so its trail shows proposals and approvals too.
    let target = format!("{}/changes/{}", super::dataset(&after.project, &after.environment), after.id);
    crate::audit::record(conn, actor, action, "flag_change", &target, before, Some(after)).await?;
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewChange {
    /// 1–100 edits, applied in order, all or none.
    changes: Vec<Change>,
    /// Apply at this time instead of now (at most a year ahead).
    #[schema(value_type = Option<String>, format = DateTime)]
    apply_at: Option<Millis>,
    /// Why; shown to the reviewer.
    #[serde(default)]
    comment: String,
}

impl NewChange {
    pub(crate) fn new(changes: Vec<Change>, comment: &str) -> NewChange {
        NewChange { changes, apply_at: None, comment: comment.to_owned() }
    }
}

impl ChangeRequest {
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

/// Propose changes to an environment: applied now, scheduled, or held for approval when
/// the environment is protected.
#[utoipa::path(
    post, path = "/v1/flags/environments/{project}/{name}/changes", tag = "flags",
    params(("project" = String, Path), ("name" = String, Path)),
    request_body = NewChange,
    security(("admin_key" = ["admin", "flags:write"])),
    responses(
        (status = 201, description = "Recorded: `applied`, `scheduled` or `pending`", body = ChangeRequest),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such environment, or an edit names a missing flag or segment", body = Problem),
        (status = 422, description = "The edits would not apply; each problem located", body = Problem),
    )
)]
pub(crate) async fn propose(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path((project, env)): Path<(String, String)>,
    ApiJson(new): ApiJson<NewChange>,
) -> Result<(StatusCode, Json<ChangeRequest>), ApiError> {
    let created = propose_changes(&state.db, (&project, &env), new, &principal.actor()).await?;
    if created.status == Status::Applied {
        state.publisher.wake();
    }
    Ok((StatusCode::CREATED, Json(created)))
}

/// [`propose`], for the API and `verge flags import` into a protected environment.
pub(crate) async fn propose_changes(
    db: &Database,
    (project, env): (&str, &str),
    new: NewChange,
    actor: &Actor,
) -> Result<ChangeRequest, ApiError> {
    let now = now_millis();
    let mut errors = Vec::new();
    if new.changes.is_empty() || new.changes.len() > MAX_CHANGES {
        errors.push(FieldError { field: "changes".into(), message: format!("must hold 1 to {MAX_CHANGES} edits") });
    }
    if new.comment.chars().count() > MAX_COMMENT {
        errors.push(FieldError { field: "comment".into(), message: format!("at most {MAX_COMMENT} characters") });
    }
    if let Some(at) = new.apply_at
        && !(now.0 < at.0 && at.0 <= now.0 + MAX_LEAD_MILLIS)
    {
        errors.push(FieldError {
            field: "apply_at".into(),
            message: "must be in the future, at most a year ahead".into(),
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let mut tx = db.begin_write().await?;
    let (environment, document) = super::load_locked(&mut tx, project, env).await?;
    let base = super::changes::base_of(&document, &new.changes);
    let mut request = ChangeRequest {
        id: crate::ids::new_id("fcr"),
        project: project.to_owned(),
        environment: env.to_owned(),
        status: Status::Pending,
        changes: new.changes,
        comment: new.comment,
        apply_at: new.apply_at,
        author: actor.to_string(),
        reviewer: None,
        reviewed_at: None,
        applied_at: None,
        failure: None,
        created_at: now,
        base: Some(base),
    };
    let apply_now = !environment.protected && request.apply_at.is_none();
    if apply_now {
        commit(&mut tx, (project, env), request.changes.clone(), actor).await?;
        request.status = Status::Applied;
        request.applied_at = Some(now);
    } else {
        // Checked against the current set now, so a request that could never apply is
        // refused at once; the savepoint is rolled back either way.
        let mut trial = sqlx::Connection::begin(&mut *tx).await?;
        commit(&mut trial, (project, env), request.changes.clone(), actor).await?;
        trial.rollback().await?;
        if !environment.protected {
            request.status = Status::Scheduled;
        }
    }
    save(&mut tx, None, &request, actor, "flags.change.propose").await?;
    tx.commit().await?;
    Ok(request)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ChangeFilter {
    /// Only requests in this state.
    #[param(value_type = Option<Status>)]
    status: Option<String>,
}

/// An environment's change requests and scheduled changes, newest first.
#[utoipa::path(
    get, path = "/v1/flags/environments/{project}/{name}/changes", tag = "flags",
    params(("project" = String, Path), ("name" = String, Path), ChangeFilter, PageParams),
    security(("admin_key" = ["admin", "read", "flags:write"])),
    responses(
        (status = 200, description = "A page of requests", body = Page<ChangeRequest>),
        (status = 400, description = "Bad cursor", body = Problem),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such environment", body = Problem),
        (status = 422, description = "Unknown status", body = Problem),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    _: Authorized<FlagReaders>,
    Path((project, env)): Path<(String, String)>,
    ApiQuery(filter): ApiQuery<ChangeFilter>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<ChangeRequest>>, ApiError> {
    let cursor = Cursor::from_params(&page)?;
    let status = match filter.status.as_deref() {
        None => "",
        Some(text) => Status::parse(text).map(Status::as_str).ok_or_else(|| {
            ApiError::validation(vec![FieldError {
                field: "status".into(),
                message: "one of pending, scheduled, applied, cancelled, failed".into(),
            }])
        })?,
    };
    let mut conn = state.db.pool().acquire().await?;
    super::load(&mut conn, &project, &env).await?;
    let rows = sqlx::query(
        "SELECT * FROM flag_changes WHERE project = $1 AND environment = $2 AND ($3 = '' OR id < $3)
           AND ($4 = '' OR status = $4)
         ORDER BY id DESC LIMIT $5",
    )
    .bind(&project)
    .bind(&env)
    .bind(cursor.after())
    .bind(status)
    .bind(cursor.fetch_limit())
    .fetch_all(&mut *conn)
    .await?;
    let items = rows.iter().map(ChangeRequest::from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(cursor.page(items, |request| request.id.clone())))
}

/// One change request.
#[utoipa::path(
    get, path = "/v1/flags/changes/{id}", tag = "flags",
    params(("id" = String, Path, description = "`fcr_…`")),
    security(("admin_key" = ["admin", "read", "flags:write"])),
    responses(
        (status = 200, description = "The request", body = ChangeRequest),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such request", body = Problem),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    _: Authorized<FlagReaders>,
    Path(id): Path<String>,
) -> Result<Json<ChangeRequest>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(find(&mut conn, &id).await?))
}

/// Approve a pending request: it applies now, or at its `apply_at`. The approver must be
/// a key other than the author's.
#[utoipa::path(
    post, path = "/v1/flags/changes/{id}/approve", tag = "flags",
    params(("id" = String, Path, description = "`fcr_…`")),
    security(("admin_key" = ["admin", "flags:write"])),
    responses(
        (status = 200, description = "`applied`, or `scheduled` when its time is ahead", body = ChangeRequest),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "The author cannot approve their own request (`self_approval`)", body = Problem),
        (status = 404, description = "No such request, or an edit names a flag that is gone", body = Problem),
        (status = 409, description = "Not pending (`not_pending`); a flag or segment it touches changed since it \
            was proposed (`stale_change`); its author's key is no longer active (`actor_revoked`). It stays \
            pending", body = Problem),
        (status = 422, description = "No longer applies to the current set; it stays pending", body = Problem),
    )
)]
pub(crate) async fn approve(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path(id): Path<String>,
) -> Result<Json<ChangeRequest>, ApiError> {
    let reviewer = principal.actor();
    let mut tx = state.db.begin_write().await?;
    let before = find(&mut tx, &id).await?;
    if before.status != Status::Pending {
        return Err(ApiError::conflict("not_pending", format!("`{id}` is {}, not pending", before.status.as_str())));
    }
    // Keys are the holders here; the CLI (database access) is not one, so anyone may
    // approve what it proposed, and it can approve nothing.
    if before.author == reviewer.to_string() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "self_approval",
            "a change request must be approved by a key holder other than its author",
        ));
    }
    let now = now_millis();
    let mut after = ChangeRequest { reviewer: Some(reviewer.to_string()), reviewed_at: Some(now), ..before.clone() };
    let env = (before.project.as_str(), before.environment.as_str());
    let (_, document) = super::load_locked(&mut tx, env.0, env.1).await?;
    before.still_valid(&mut tx, &document).await?;
    if before.apply_at.is_some_and(|at| at.0 > now.0) {
        after.status = Status::Scheduled;
    } else {
        commit(&mut tx, env, before.changes.clone(), &before.author_actor()).await?;
        after.status = Status::Applied;
        after.applied_at = Some(now);
    }
    save(&mut tx, Some(&before), &after, &reviewer, "flags.change.approve").await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(Json(after))
}

/// Withdraw a pending request or cancel a scheduled change.
#[utoipa::path(
    post, path = "/v1/flags/changes/{id}/cancel", tag = "flags",
    params(("id" = String, Path, description = "`fcr_…`")),
    security(("admin_key" = ["admin", "flags:write"])),
    responses(
        (status = 200, description = "Cancelled", body = ChangeRequest),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such request", body = Problem),
        (status = 409, description = "Already applied, cancelled or failed (`not_pending`)", body = Problem),
    )
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path(id): Path<String>,
) -> Result<Json<ChangeRequest>, ApiError> {
    let actor = principal.actor();
    let mut tx = state.db.begin_write().await?;
    let before = find(&mut tx, &id).await?;
    if !matches!(before.status, Status::Pending | Status::Scheduled) {
        return Err(ApiError::conflict(
            "not_pending",
            format!("`{id}` is {}; nothing to cancel", before.status.as_str()),
        ));
    }
    let after = ChangeRequest {
        status: Status::Cancelled,
        reviewer: Some(actor.to_string()),
        reviewed_at: Some(now_millis()),
        ..before.clone()
    };
    save(&mut tx, Some(&before), &after, &actor, "flags.change.cancel").await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Applies every scheduled change due at `now`; returns how many were applied. Failures
/// are recorded on the request, not returned. The core runs this every second; tests call
/// it with a time of their choosing.
pub async fn apply_due_changes(db: &Database, now: Millis) -> Result<usize, sqlx::Error> {
    let due =
        sqlx::query("SELECT id FROM flag_changes WHERE status = 'scheduled' AND apply_at <= $1 ORDER BY apply_at, id")
            .bind(now.0)
            .fetch_all(db.pool())
            .await?;
    let mut applied = 0;
    for row in due {
        let id: String = row.try_get("id")?;
        match apply_scheduled(db, &id, now).await {
            Ok(true) => applied += 1,
            Ok(false) => {}
            Err(problem) if problem.status().is_server_error() => {
                tracing::warn!(change = %id, error = %problem, "scheduled flag change not applied; retrying");
            }
            Err(problem) => record_failure(db, &id, &problem.to_string()).await?,
        }
    }
    Ok(applied)
}

/// Applies one scheduled change unless another core got to it first.
async fn apply_scheduled(db: &Database, id: &str, now: Millis) -> Result<bool, ApiError> {
    let mut tx = db.begin_write().await?;
    // Locked: another core's scheduler, or a cancellation, may have got to it first.
    let before = find(&mut tx, id).await?;
    let (environment, document) = super::load_locked(&mut tx, &before.project, &before.environment).await?;
    if before.status != Status::Scheduled {
        return Ok(false);
    }
    before.still_valid(&mut tx, &document).await?;
    if environment.protected && before.reviewer.is_none() {
        return Err(ApiError::conflict(
            "change_request_required",
            "the environment became protected after this change was scheduled; propose it again for approval",
        ));
    }
    let env = (before.project.as_str(), before.environment.as_str());
    commit(&mut tx, env, before.changes.clone(), &before.author_actor()).await?;
    let after = ChangeRequest { status: Status::Applied, applied_at: Some(now), ..before.clone() };
    save(&mut tx, Some(&before), &after, &Actor::System, "flags.change.apply").await?;
    tx.commit().await?;
    Ok(true)
}

async fn record_failure(db: &Database, id: &str, reason: &str) -> Result<(), sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let Ok(before) = find(&mut tx, id).await else { return Ok(()) };
    if before.status != Status::Scheduled {
        return Ok(());
    }
    tracing::warn!(change = %id, reason, "scheduled flag change failed");
    let after = ChangeRequest { status: Status::Failed, failure: Some(reason.to_owned()), ..before.clone() };
    save(&mut tx, Some(&before), &after, &Actor::System, "flags.change.fail")
        .await
        .map_err(|err| sqlx::Error::Protocol(format!("recording the failure of {id}: {err}")))?;
    tx.commit().await
}

/// Applies due scheduled changes every second until `stop` resolves.
pub(crate) async fn run_scheduler(
    db: Database,
    publisher: std::sync::Arc<crate::publish::Publisher>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => match apply_due_changes(&db, now_millis()).await {
                Ok(0) => {}
                Ok(_) => publisher.wake(),
                Err(err) => tracing::warn!(error = %err, "applying scheduled flag changes"),
            },
        }
    }
}
