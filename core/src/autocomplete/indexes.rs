//! `/v1/autocomplete/{project}/indexes`: create, list, read, change settings, delete and
//! republish indexes. Every write is one transaction with its audit entry and the outbox
//! row that publishes (or removes) the index at the edge.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use verge_shared::autocomplete::Settings;

use super::{Index, IndexReaders, IndexWriters, find, settings_error};
use crate::error::{ApiError, ApiJson, ApiQuery, Problem};
use crate::keys::Authorized;
use crate::pagination::{Cursor, Page, PageParams};
use crate::publish::enqueue;
use crate::state::AppState;
use crate::time::{Millis, now_millis};

/// An index as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IndexView {
    project: String,
    name: String,
    /// `typos` (`one_from`, `two_from`: word lengths from which one and two typos are
    /// forgiven, 0 turns them off), `min_prefix`, `default_limit`, and `trending`
    /// (`enabled`, `weight`: rank per decayed query, `half_life_hours`).
    #[schema(value_type = Object)]
    settings: Value,
    /// Terms stored.
    terms: i64,
    /// Curation rules stored.
    rules: i64,
    /// The edge dataset it is published as.
    dataset: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Millis,
}

async fn view(conn: &mut sqlx::AnyConnection, index: &Index) -> Result<IndexView, ApiError> {
    let terms: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM autocomplete_terms WHERE index_id = $1")
        .bind(&index.id)
        .fetch_one(&mut *conn)
        .await?;
    let rules: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM autocomplete_rules WHERE index_id = $1")
        .bind(&index.id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(IndexView {
        project: index.project.clone(),
        name: index.name.clone(),
        settings: index.settings.to_value(),
        terms,
        rules,
        dataset: index.dataset(),
        created_at: Millis(index.created_at),
        updated_at: Millis(index.updated_at),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewIndex {
    /// 1–63 of `a-z`, `0-9`, `-`, `_`; unique in the project.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    name: String,
    /// Members left out take their defaults.
    #[schema(value_type = Object)]
    #[serde(default = "no_settings")]
    settings: Value,
}

fn no_settings() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Create an index.
#[utoipa::path(
    post, path = "/v1/autocomplete/{project}/indexes", tag = "autocomplete",
    params(("project" = String, Path)), request_body = NewIndex,
    security(("admin_key" = ["admin", "autocomplete:write"])),
    responses(
        (status = 201, body = IndexView),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, description = "The project has an index of that name", body = Problem),
        (status = 422, description = "A bad name or setting", body = Problem),
    )
)]
pub(crate) async fn create_index(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<IndexWriters>,
    Path(project): Path<String>,
    ApiJson(new): ApiJson<NewIndex>,
) -> Result<(StatusCode, Json<IndexView>), ApiError> {
    crate::ids::check_slug(&project, "project")?;
    crate::ids::check_slug(&new.name, "/name")?;
    let settings = Settings::from_value(&new.settings).map_err(settings_error)?;
    let now = now_millis().0;
    let index =
        Index { id: crate::ids::new_id("aci"), project, name: new.name, settings, created_at: now, updated_at: now };
    let mut tx = state.db.begin_write().await?;
    let inserted = sqlx::query(
        "INSERT INTO autocomplete_indexes (id, project, name, settings, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (project, name) DO NOTHING",
    )
    .bind(&index.id)
    .bind(&index.project)
    .bind(&index.name)
    .bind(index.settings.to_value().to_string())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::conflict(
            "index_exists",
            format!("project `{}` already has an index `{}`", index.project, index.name),
        ));
    }
    let shown = view(&mut tx, &index).await?;
    crate::audit::record(
        &mut tx,
        &principal.actor(),
        "autocomplete_index.create",
        "autocomplete_index",
        &index.id,
        None,
        Some(&shown),
    )
    .await?;
    enqueue(&mut tx, &index.dataset()).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok((StatusCode::CREATED, Json(shown)))
}

/// A project's indexes, by name.
#[utoipa::path(
    get, path = "/v1/autocomplete/{project}/indexes", tag = "autocomplete",
    params(("project" = String, Path), PageParams),
    security(("admin_key" = ["admin", "read", "autocomplete:write"])),
    responses(
        (status = 200, body = Page<IndexView>),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, description = "Not a project name", body = Problem),
    )
)]
pub(crate) async fn list_indexes(
    State(state): State<AppState>,
    _: Authorized<IndexReaders>,
    Path(project): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<IndexView>>, ApiError> {
    crate::ids::check_slug(&project, "project")?;
    let cursor = Cursor::for_text_keys(&params)?;
    let mut conn = state.db.pool().acquire().await?;
    let rows =
        sqlx::query("SELECT * FROM autocomplete_indexes WHERE project = $1 AND name > $2 ORDER BY name LIMIT $3")
            .bind(&project)
            .bind(cursor.after())
            .bind(cursor.fetch_limit())
            .fetch_all(&mut *conn)
            .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push(view(&mut conn, &Index::from_row(row)?).await?);
    }
    Ok(Json(cursor.page(items, |index| index.name.clone())))
}

/// One index, with its counts.
#[utoipa::path(
    get, path = "/v1/autocomplete/{project}/indexes/{index}", tag = "autocomplete",
    params(("project" = String, Path), ("index" = String, Path)),
    security(("admin_key" = ["admin", "read", "autocomplete:write"])),
    responses(
        (status = 200, body = IndexView),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, description = "Not a project or index name", body = Problem),
    )
)]
pub(crate) async fn get_index(
    State(state): State<AppState>,
    _: Authorized<IndexReaders>,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<IndexView>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    let index = find(&mut conn, &project, &name).await?;
    Ok(Json(view(&mut conn, &index).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IndexChange {
    /// Merged into the current settings: members left out keep their value.
    #[schema(value_type = Object)]
    settings: Value,
}

/// Change an index's settings; the edge answers with them after the next publish.
#[utoipa::path(
    patch, path = "/v1/autocomplete/{project}/indexes/{index}", tag = "autocomplete",
    params(("project" = String, Path), ("index" = String, Path)), request_body = IndexChange,
    security(("admin_key" = ["admin", "autocomplete:write"])),
    responses(
        (status = 200, body = IndexView),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, description = "A bad setting; nothing changed", body = Problem),
    )
)]
pub(crate) async fn update_index(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<IndexWriters>,
    Path((project, name)): Path<(String, String)>,
    ApiJson(change): ApiJson<IndexChange>,
) -> Result<Json<IndexView>, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let mut index = find(&mut tx, &project, &name).await?;
    let before = view(&mut tx, &index).await?;
    let mut merged = index.settings.to_value();
    merge(&mut merged, &change.settings);
    index.settings = Settings::from_value(&merged).map_err(settings_error)?;
    index.updated_at = now_millis().0;
    sqlx::query("UPDATE autocomplete_indexes SET settings = $1, updated_at = $2 WHERE id = $3")
        .bind(index.settings.to_value().to_string())
        .bind(index.updated_at)
        .bind(&index.id)
        .execute(&mut *tx)
        .await?;
    let after = view(&mut tx, &index).await?;
    crate::audit::record(
        &mut tx,
        &principal.actor(),
        "autocomplete_index.update",
        "autocomplete_index",
        &index.id,
        Some(&before),
        Some(&after),
    )
    .await?;
    enqueue(&mut tx, &index.dataset()).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(Json(after))
}

/// Objects merge member by member; anything else replaces.
fn merge(base: &mut Value, change: &Value) {
    match (base, change) {
        (Value::Object(base), Value::Object(change)) => {
            for (key, value) in change {
                match base.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => merge(existing, value),
                    _ => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, change) => *base = change.clone(),
    }
}

/// Delete an index with its terms, rules and query statistics; the edge stops answering
/// for it after the next publish.
#[utoipa::path(
    delete, path = "/v1/autocomplete/{project}/indexes/{index}", tag = "autocomplete",
    params(("project" = String, Path), ("index" = String, Path)),
    security(("admin_key" = ["admin", "autocomplete:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, description = "Not a project or index name", body = Problem),
    )
)]
pub(crate) async fn delete_index(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<IndexWriters>,
    Path((project, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let index = find(&mut tx, &project, &name).await?;
    let before = view(&mut tx, &index).await?;
    for table in ["autocomplete_terms", "autocomplete_rules", "autocomplete_queries"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE index_id = $1")).bind(&index.id).execute(&mut *tx).await?;
    }
    sqlx::query("DELETE FROM autocomplete_indexes WHERE id = $1").bind(&index.id).execute(&mut *tx).await?;
    crate::audit::record(
        &mut tx,
        &principal.actor(),
        "autocomplete_index.delete",
        "autocomplete_index",
        &index.id,
        Some(&before),
        None,
    )
    .await?;
    enqueue(&mut tx, &index.dataset()).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Republish {
    /// The dataset queued for publishing.
    dataset: String,
}

/// Rebuild and publish an index now, with trending as it stands, rather than at the next
/// scheduled trending publish.
#[utoipa::path(
    post, path = "/v1/autocomplete/{project}/indexes/{index}/publish", tag = "autocomplete",
    params(("project" = String, Path), ("index" = String, Path)),
    security(("admin_key" = ["admin", "autocomplete:write"])),
    responses(
        (status = 202, description = "Queued; the edge serves it within seconds", body = Republish),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, description = "Not a project or index name", body = Problem),
    )
)]
pub(crate) async fn publish_index(
    State(state): State<AppState>,
    _: Authorized<IndexWriters>,
    Path((project, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Republish>), ApiError> {
    let mut tx = state.db.begin_write().await?;
    let index = find(&mut tx, &project, &name).await?;
    enqueue(&mut tx, &index.dataset()).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok((StatusCode::ACCEPTED, Json(Republish { dataset: index.dataset() })))
}
