//! Stale flags: which flags the edges have not evaluated lately, so teams can remove them.
//!
//! Edges send one `flag.evaluation` event per OFREP request that found its environment:
//! `{dataset, flag}` for a single flag, `{dataset, bulk: true}` for a bulk request, which
//! evaluates every flag of the set. Ingest folds new events (never a retried one) into
//! `flag_evaluations`, one row per flag and environment with the last time and a count;
//! bulk requests share the row with the empty key. The report lists flags of an
//! environment that are older than the window and were not evaluated within it.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::access::FlagReaders;
use crate::error::{ApiError, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::state::AppState;
use crate::time::{Millis, now_millis};

pub(crate) const EVALUATION_KIND: &str = "flag.evaluation";
const BULK_KEY: &str = "";
const DAY_MILLIS: i64 = 24 * 3600 * 1000;

/// `flags/<project>/<environment>` → its parts.
fn environment_of(dataset: &str) -> Option<(&str, &str)> {
    let rest = dataset.strip_prefix("flags/")?;
    let (project, env) = rest.split_once('/')?;
    (super::check_name("", project).is_ok() && super::check_name("", env).is_ok()).then_some((project, env))
}

/// Problems with a `flag.evaluation` event's data, located under `/events/{index}`.
pub(crate) fn check(index: usize, data: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut fail = |field: &str, message: &str| {
        errors.push(FieldError { field: format!("/events/{index}/data/{field}"), message: message.into() });
    };
    if data.get("dataset").and_then(Value::as_str).and_then(environment_of).is_none() {
        fail("dataset", "must be `flags/<project>/<environment>`");
    }
    let single = data.get("flag").and_then(Value::as_str).is_some_and(|key| !key.is_empty());
    let bulk = data.get("bulk") == Some(&Value::Bool(true));
    if single == bulk {
        fail("flag", "give either a non-empty `flag` or `bulk: true`");
    }
    errors
}

/// One new `flag.evaluation` event, checked by [`check`].
pub(crate) struct Evaluation<'a> {
    pub(crate) at: i64,
    pub(crate) data: &'a Map<String, Value>,
}

/// Folds new evaluation events into `flag_evaluations`, in the ingest transaction.
pub(crate) async fn project(conn: &mut sqlx::AnyConnection, events: &[Evaluation<'_>]) -> Result<(), sqlx::Error> {
    // Many events name the same flag: fold them first, one upsert per flag.
    let mut folded: HashMap<(&str, &str, &str), (i64, i64)> = HashMap::new();
    for event in events {
        let Some((project, env)) = event.data["dataset"].as_str().and_then(environment_of) else { continue };
        let key = event.data.get("flag").and_then(Value::as_str).unwrap_or(BULK_KEY);
        let entry = folded.entry((project, env, key)).or_insert((i64::MIN, 0));
        entry.0 = entry.0.max(event.at);
        entry.1 += 1;
    }
    for ((project, env, key), (last, count)) in folded {
        sqlx::query(
            "INSERT INTO flag_evaluations (project, environment, flag_key, last_evaluated_at, evaluations)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (project, environment, flag_key) DO UPDATE SET
               last_evaluated_at = CASE WHEN excluded.last_evaluated_at > flag_evaluations.last_evaluated_at
                                        THEN excluded.last_evaluated_at ELSE flag_evaluations.last_evaluated_at END,
               evaluations = flag_evaluations.evaluations + excluded.evaluations",
        )
        .bind(project)
        .bind(env)
        .bind(key)
        .bind(last)
        .bind(count)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StaleParams {
    /// The window: flags not evaluated for this many days (1–3650, default 30).
    #[param(minimum = 1, maximum = 3650)]
    days: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StaleFlag {
    key: String,
    /// When an edge last evaluated it on its own; absent when never.
    #[schema(value_type = Option<String>, format = DateTime)]
    last_evaluated_at: Option<Millis>,
    /// Single-flag evaluations counted so far.
    evaluations: i64,
    /// When the flag entered the project's catalog.
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StaleReport {
    days: i64,
    /// Flags older than the window that no edge evaluated within it, least recent first.
    items: Vec<StaleFlag>,
    /// The last bulk evaluation, which evaluates every flag: while bulk clients are
    /// active no flag is stale, since any of them may be the one a client reads.
    #[schema(value_type = Option<String>, format = DateTime)]
    last_bulk_evaluated_at: Option<Millis>,
}

/// Flags of an environment not evaluated at the edge for `days` days.
#[utoipa::path(
    get, path = "/v1/flags/environments/{project}/{name}/stale", tag = "flags",
    params(("project" = String, Path), ("name" = String, Path), StaleParams),
    security(("admin_key" = ["admin", "read", "flags:write"])),
    responses(
        (status = 200, description = "The report", body = StaleReport),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such environment", body = Problem),
        (status = 422, description = "Bad window", body = Problem),
    )
)]
pub(crate) async fn report(
    State(state): State<AppState>,
    _: Authorized<FlagReaders>,
    Path((project, env)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<StaleParams>,
) -> Result<Json<StaleReport>, ApiError> {
    let days = params.days.unwrap_or(30);
    if !(1..=3650).contains(&days) {
        return Err(ApiError::validation(vec![FieldError {
            field: "days".into(),
            message: "must be between 1 and 3650".into(),
        }]));
    }
    let cutoff = now_millis().0 - days * DAY_MILLIS;
    let mut conn = state.db.pool().acquire().await?;
    let (_, document) = super::load(&mut conn, &project, &env).await?;
    let evaluations = sqlx::query(
        "SELECT flag_key, last_evaluated_at, evaluations FROM flag_evaluations WHERE project = $1 AND environment = $2",
    )
    .bind(&project)
    .bind(&env)
    .fetch_all(&mut *conn)
    .await?;
    let mut last: HashMap<String, (i64, i64)> = HashMap::new();
    for row in evaluations {
        last.insert(row.try_get("flag_key")?, (row.try_get("last_evaluated_at")?, row.try_get("evaluations")?));
    }
    let catalog = sqlx::query("SELECT key, created_at FROM flags WHERE project = $1")
        .bind(&project)
        .fetch_all(&mut *conn)
        .await?;
    let mut created: HashMap<String, i64> = HashMap::new();
    for row in catalog {
        created.insert(row.try_get("key")?, row.try_get("created_at")?);
    }
    let bulk = last.get(BULK_KEY).map(|(at, _)| *at);
    let mut items: Vec<StaleFlag> = document["flags"]
        .as_object()
        .into_iter()
        .flat_map(|flags| flags.keys())
        .filter_map(|key| {
            let created_at = *created.get(key)?;
            let (at, count) = last.get(key).map_or((None, 0), |(at, count)| (Some(*at), *count));
            let recent = |t: Option<i64>| t.is_some_and(|t| t >= cutoff);
            let stale = created_at < cutoff && !recent(at) && !recent(bulk);
            stale.then(|| StaleFlag {
                key: key.clone(),
                last_evaluated_at: at.map(Millis),
                evaluations: count,
                created_at: Millis(created_at),
            })
        })
        .collect();
    items.sort_by(|a, b| a.last_evaluated_at.cmp(&b.last_evaluated_at).then_with(|| a.key.cmp(&b.key)));
    Ok(Json(StaleReport { days, items, last_bulk_evaluated_at: bulk.map(Millis) }))
}
