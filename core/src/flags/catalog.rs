//! The project's flag catalog: what each flag key is, across environments.
//!
//! flagd documents say how a flag evaluates in one environment; they have no place for
//! what it is for. The catalog holds that once per project: a description, tags to find
//! it by, and its type, which every environment's variants must share so that a typed
//! OpenFeature call (`getBooleanValue`, …) never meets a variant of another type. A flag
//! enters the catalog the first time any environment stores it, typed by its variants;
//! `PATCH` adds the description and tags, which describe and so need no change request.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::{IntoParams, ToSchema};

use super::access::{FlagReaders, FlagWriters};
use crate::error::{ApiError, ApiJson, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::pagination::{Cursor, Page, PageParams};
use crate::state::AppState;
use crate::time::{Millis, now_millis};

const MAX_TAGS: usize = 20;
const MAX_DESCRIPTION: usize = 2000;

/// The type a flag's variants share, as OpenFeature's typed calls see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FlagType {
    Boolean,
    String,
    Number,
    Object,
}

impl FlagType {
    fn of(value: &Value) -> Option<FlagType> {
        match value {
            Value::Bool(_) => Some(FlagType::Boolean),
            Value::String(_) => Some(FlagType::String),
            Value::Number(_) => Some(FlagType::Number),
            Value::Object(_) | Value::Array(_) => Some(FlagType::Object),
            Value::Null => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            FlagType::Boolean => "boolean",
            FlagType::String => "string",
            FlagType::Number => "number",
            FlagType::Object => "object",
        }
    }

    fn parse(text: &str) -> Option<FlagType> {
        [FlagType::Boolean, FlagType::String, FlagType::Number, FlagType::Object]
            .into_iter()
            .find(|t| t.as_str() == text)
    }
}

/// Every variant of `flag` of type `wanted`, or the type they share; an error names the
/// first variant that disagrees.
fn variants_type(key: &str, flag: &Value, wanted: Option<FlagType>) -> Result<FlagType, FieldError> {
    let mut seen = wanted;
    if let Some(variants) = flag["variants"].as_object() {
        for (name, value) in variants {
            let this = FlagType::of(value);
            match (seen, this) {
                (_, None) => {}
                (None, Some(t)) => seen = Some(t),
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => {
                    let why = if wanted.is_some() { "the flag's catalog type" } else { "its other variants" };
                    return Err(FieldError {
                        field: format!("/flags/{key}/variants/{name}"),
                        message: format!("is a {}, but {why} make it a {} flag", b.as_str(), a.as_str()),
                    });
                }
            }
        }
    }
    Ok(seen.unwrap_or(FlagType::Object))
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct FlagInfo {
    project: String,
    key: String,
    description: String,
    #[serde(rename = "type")]
    flag_type: FlagType,
    tags: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Millis,
}

impl FlagInfo {
    fn from_row(row: &AnyRow) -> Result<FlagInfo, sqlx::Error> {
        let decode = |what: &str, err: String| sqlx::Error::Decode(format!("flags.{what}: {err}").into());
        let flag_type: String = row.try_get("flag_type")?;
        let tags: String = row.try_get("tags")?;
        Ok(FlagInfo {
            project: row.try_get("project")?,
            key: row.try_get("key")?,
            description: row.try_get("description")?,
            flag_type: FlagType::parse(&flag_type).ok_or_else(|| decode("flag_type", flag_type.clone()))?,
            tags: serde_json::from_str(&tags).map_err(|err| decode("tags", err.to_string()))?,
            created_at: Millis(row.try_get("created_at")?),
            updated_at: Millis(row.try_get("updated_at")?),
        })
    }
}

async fn find(conn: &mut sqlx::AnyConnection, project: &str, key: &str) -> Result<Option<FlagInfo>, ApiError> {
    let row = sqlx::query("SELECT * FROM flags WHERE project = $1 AND key = $2")
        .bind(project)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(FlagInfo::from_row).transpose()?)
}

/// Checks the flags `keys` of `document` against the catalog, adding those it lacks typed
/// by their variants. Part of every commit of an environment's flags.
pub(crate) async fn record_flags(
    conn: &mut sqlx::AnyConnection,
    project: &str,
    document: &Value,
    keys: &[String],
) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    let now = now_millis();
    for key in keys {
        let flag = &document["flags"][key.as_str()];
        let known = find(conn, project, key).await?;
        match variants_type(key, flag, known.as_ref().map(|info| info.flag_type)) {
            Err(error) => errors.push(error),
            Ok(flag_type) if known.is_none() => {
                // Another environment's commit may add the same key meanwhile (it holds
                // a different lock); then its type decides, and this flag must match it.
                let inserted = sqlx::query(
                    "INSERT INTO flags (project, key, flag_type, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
                     ON CONFLICT (project, key) DO NOTHING",
                )
                .bind(project)
                .bind(key)
                .bind(flag_type.as_str())
                .bind(now.0)
                .execute(&mut *conn)
                .await?;
                if inserted.rows_affected() == 0 {
                    let winner = find(conn, project, key).await?.map(|info| info.flag_type);
                    if let Err(error) = variants_type(key, flag, winner) {
                        errors.push(error);
                    }
                }
            }
            Ok(_) => {}
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(ApiError::validation(errors)) }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CatalogFilter {
    /// Only flags carrying this tag.
    tag: Option<String>,
    /// Only flags whose key or description contains this text (case-insensitive).
    q: Option<String>,
}

/// The project's flags by key, with their descriptions, types and tags.
#[utoipa::path(
    get, path = "/v1/flags/projects/{project}/flags", tag = "flags",
    params(("project" = String, Path), CatalogFilter, PageParams),
    security(("admin_key" = ["admin", "read", "flags:write"])),
    responses(
        (status = 200, description = "A page of flags, by key", body = Page<FlagInfo>),
        (status = 400, description = "Bad cursor", body = Problem),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
    )
)]
pub(crate) async fn list_flags(
    State(state): State<AppState>,
    _: Authorized<FlagReaders>,
    Path(project): Path<String>,
    ApiQuery(filter): ApiQuery<CatalogFilter>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<FlagInfo>>, ApiError> {
    let cursor = Cursor::from_params(&page)?;
    // Keys may hold any printable character; the cursor carries them hex-encoded.
    let after = match cursor.after() {
        "" => String::new(),
        hex_key => hex::decode(hex_key)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| ApiError::bad_request("invalid_cursor", "the cursor is not one this API returned"))?,
    };
    let mut sql = String::from("SELECT * FROM flags WHERE project = $1 AND key > $2");
    let mut binds = vec![project, after];
    if let Some(tag) = filter.tag {
        binds.push(format!("%{}%", crate::db::like_escape(&serde_json::to_string(&tag).expect("strings serialize"))));
        sql.push_str(&format!(" AND tags LIKE ${} ESCAPE '\\'", binds.len()));
    }
    if let Some(q) = filter.q {
        binds.push(format!("%{}%", crate::db::like_escape(&q.to_lowercase())));
        let n = binds.len();
        sql.push_str(&format!(" AND (LOWER(key) LIKE ${n} ESCAPE '\\' OR LOWER(description) LIKE ${n} ESCAPE '\\')"));
    }
    sql.push_str(&format!(" ORDER BY key LIMIT {}", cursor.fetch_limit()));
    let mut query = sqlx::query(&sql);
    for bind in &binds {
        query = query.bind(bind);
    }
    let rows = query.fetch_all(state.db.pool()).await?;
    let items = rows.iter().map(FlagInfo::from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(cursor.page(items, |info| hex::encode(&info.key))))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FlagDetail {
    #[serde(flatten)]
    info: FlagInfo,
    /// The flag's flagd definition in each environment of the project that holds it.
    #[schema(value_type = Object)]
    environments: serde_json::Map<String, Value>,
    /// Per environment, as the edges reported: `last_evaluated_at` and `evaluations`
    /// (single-flag OFREP requests; bulk requests are in the stale report).
    #[schema(value_type = Object)]
    evaluations: serde_json::Map<String, Value>,
}

/// One flag: its catalog entry and its definition in every environment.
#[utoipa::path(
    get, path = "/v1/flags/projects/{project}/flags/{key}", tag = "flags",
    params(("project" = String, Path), ("key" = String, Path)),
    security(("admin_key" = ["admin", "read", "flags:write"])),
    responses(
        (status = 200, description = "The flag", body = FlagDetail),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such flag in the project", body = Problem),
    )
)]
pub(crate) async fn get_flag(
    State(state): State<AppState>,
    _: Authorized<FlagReaders>,
    Path((project, key)): Path<(String, String)>,
) -> Result<Json<FlagDetail>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(detail(&mut conn, &project, &key).await?))
}

async fn detail(conn: &mut sqlx::AnyConnection, project: &str, key: &str) -> Result<FlagDetail, ApiError> {
    let info = find(conn, project, key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no flag `{key}` in project `{project}`")))?;
    let rows = sqlx::query("SELECT name, document FROM flag_environments WHERE project = $1 ORDER BY name")
        .bind(project)
        .fetch_all(&mut *conn)
        .await?;
    let mut environments = serde_json::Map::new();
    for row in rows {
        let document: Value = serde_json::from_str(&row.try_get::<String, _>("document")?)
            .map_err(|err| ApiError::internal(format!("flag_environments.document: {err}")))?;
        if let Some(flag) = document["flags"].get(key) {
            environments.insert(row.try_get("name")?, flag.clone());
        }
    }
    let rows = sqlx::query(
        "SELECT environment, last_evaluated_at, evaluations FROM flag_evaluations WHERE project = $1 AND flag_key = $2",
    )
    .bind(project)
    .bind(key)
    .fetch_all(&mut *conn)
    .await?;
    let mut evaluations = serde_json::Map::new();
    for row in rows {
        let last = Millis(row.try_get("last_evaluated_at")?);
        let count: i64 = row.try_get("evaluations")?;
        evaluations
            .insert(row.try_get("environment")?, serde_json::json!({"last_evaluated_at": last, "evaluations": count}));
    }
    Ok(FlagDetail { info, environments, evaluations })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlagPatch {
    /// What the flag is for, who owns it, when it can go (at most 2,000 characters).
    #[schema(max_length = 2000)]
    description: Option<String>,
    /// Up to 20 tags of 1–50 of `a-z0-9-_:.`; replaces the list.
    #[schema(schema_with = tags_schema)]
    tags: Option<Vec<String>>,
    /// Allowed only when every environment's variants already have this type.
    #[serde(rename = "type")]
    flag_type: Option<FlagType>,
}

fn tags_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let tag = ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[a-z0-9_:.-]{1,50}$"));
    ArrayBuilder::new().items(tag).max_items(Some(MAX_TAGS)).build()
}

/// Describe, tag or retype a flag.
#[utoipa::path(
    patch, path = "/v1/flags/projects/{project}/flags/{key}", tag = "flags",
    params(("project" = String, Path), ("key" = String, Path)),
    request_body = FlagPatch,
    security(("admin_key" = ["admin", "flags:write"])),
    responses(
        (status = 200, description = "Changed", body = FlagDetail),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such flag in the project", body = Problem),
        (status = 422, description = "Bad fields, or variants in some environment of another type", body = Problem),
    )
)]
pub(crate) async fn patch_flag(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path((project, key)): Path<(String, String)>,
    ApiJson(patch): ApiJson<FlagPatch>,
) -> Result<Json<FlagDetail>, ApiError> {
    let mut errors = Vec::new();
    if patch.description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        errors
            .push(FieldError { field: "description".into(), message: format!("at most {MAX_DESCRIPTION} characters") });
    }
    if let Some(tags) = &patch.tags {
        if tags.len() > MAX_TAGS {
            errors.push(FieldError { field: "tags".into(), message: format!("at most {MAX_TAGS} tags") });
        }
        let tag_ok = |t: &String| {
            (1..=50).contains(&t.len())
                && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_:.".contains(&b))
        };
        for (i, tag) in tags.iter().enumerate().filter(|(_, t)| !tag_ok(t)) {
            errors.push(FieldError {
                field: format!("tags/{i}"),
                message: format!("`{tag}`: must be 1 to 50 of a-z, 0-9, -_:."),
            });
        }
    }
    let mut tx = state.db.begin_write().await?;
    let before = detail(&mut tx, &project, &key).await?;
    if let Some(wanted) = patch.flag_type {
        for (env, flag) in &before.environments {
            if let Err(mut error) = variants_type(&key, flag, Some(wanted)) {
                error.field = format!("/environments/{env}{}", error.field);
                errors.push(error);
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let mut info = before.info.clone();
    if let Some(description) = patch.description {
        info.description = description;
    }
    if let Some(mut tags) = patch.tags {
        tags.sort();
        tags.dedup();
        info.tags = tags;
    }
    info.flag_type = patch.flag_type.unwrap_or(info.flag_type);
    info.updated_at = now_millis();
    sqlx::query(
        "UPDATE flags SET description = $1, tags = $2, flag_type = $3, updated_at = $4 WHERE project = $5 AND key = $6",
    )
    .bind(&info.description)
    .bind(serde_json::to_string(&info.tags).expect("strings serialize"))
    .bind(info.flag_type.as_str())
    .bind(info.updated_at.0)
    .bind(&project)
    .bind(&key)
    .execute(&mut *tx)
    .await?;
    let target = catalog_target(&project, &key);
    crate::audit::record(
        &mut tx,
        &principal.actor(),
        "flag.describe",
        "flag",
        &target,
        Some(&before.info),
        Some(&info),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(FlagDetail { info, ..before }))
}

/// The audit target of a catalog entry; outside `flags/…`, so no environment's trail
/// (`flags/<project>/<env>/…`) picks it up.
fn catalog_target(project: &str, key: &str) -> String {
    format!("flagcatalog/{project}/{key}")
}

/// Every change to one flag: its catalog entry and its definition in each environment,
/// newest first. (Whole-set imports are in each environment's trail.)
#[utoipa::path(
    get, path = "/v1/flags/projects/{project}/flags/{key}/audit", tag = "flags",
    params(("project" = String, Path), ("key" = String, Path), PageParams),
    security(("admin_key" = ["admin", "read"])),
    responses(
        (status = 200, description = "A page of entries", body = Page<crate::audit::AuditEntry>),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such flag in the project", body = Problem),
    )
)]
pub(crate) async fn flag_audit(
    State(state): State<AppState>,
    _: Authorized<crate::keys::Readers>,
    Path((project, key)): Path<(String, String)>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<crate::audit::AuditEntry>>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    find(&mut conn, &project, &key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no flag `{key}` in project `{project}`")))?;
    let names = sqlx::query("SELECT name FROM flag_environments WHERE project = $1")
        .bind(&project)
        .fetch_all(&mut *conn)
        .await?;
    let mut targets = vec![catalog_target(&project, &key)];
    for row in names {
        let env: String = row.try_get("name")?;
        targets.push(format!("{}/flags/{key}", super::dataset(&project, &env)));
    }
    Ok(Json(crate::audit::list_for_targets(&mut conn, &targets, &page).await?))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_flag_is_typed_by_its_variants_and_mixed_variants_are_located() {
        let typed = |variants: Value| variants_type("f", &json!({ "variants": variants }), None);
        assert_eq!(typed(json!({"on": true, "off": false})).unwrap(), FlagType::Boolean);
        assert_eq!(typed(json!({"a": 1, "b": 2.5})).unwrap(), FlagType::Number);
        assert_eq!(typed(json!({"a": {"x": 1}, "b": [1]})).unwrap(), FlagType::Object);
        let mixed = typed(json!({"a": "x", "b": 1})).unwrap_err();
        assert_eq!(mixed.field, "/flags/f/variants/b");
        let declared = variants_type("f", &json!({"variants": {"a": "x"}}), Some(FlagType::Boolean)).unwrap_err();
        assert_eq!(declared.field, "/flags/f/variants/a");
        assert!(declared.message.contains("catalog type"), "{}", declared.message);
    }
}
