//! `/v1/autocomplete/{project}/indexes/{index}/terms`: one term at a time (put, read,
//! delete, list). A term is named by an id of the caller's choosing, or by its folded
//! text when none is given, so importing the same list twice updates rather than
//! duplicates. Bulk import and export are in `import`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};
use verge_shared::autocomplete::MAX_TERM_CHARS;

use super::{IndexReaders, IndexWriters, find};
use crate::error::{ApiError, ApiJson, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::pagination::{Cursor, Page, PageParams};
use crate::publish::enqueue;
use crate::state::AppState;
use crate::time::{Millis, now_millis};

/// Largest payload, serialized.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 1024;
/// Longest term id.
const MAX_ID_CHARS: usize = 200;

/// A term as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Term {
    /// Yours, or the folded text when none was given.
    id: String,
    /// What is suggested, as shown.
    text: String,
    /// Popularity: higher ranks first (0 to 4294967295).
    weight: u32,
    /// Returned with the suggestion as given: an id, a URL, an object.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    payload: Option<Value>,
    /// A BCP 47 tag, e.g. `fr` or `pt-BR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Millis,
}

impl Term {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Term, sqlx::Error> {
        let payload: Option<String> = row.try_get("payload")?;
        Ok(Term {
            id: row.try_get("term_id")?,
            text: row.try_get("text")?,
            weight: row.try_get::<i64, _>("weight")?.clamp(0, i64::from(u32::MAX)) as u32,
            payload: payload.and_then(|p| serde_json::from_str(&p).ok()),
            language: row.try_get("language")?,
            updated_at: Millis(row.try_get("updated_at")?),
        })
    }
}

/// A term as written: every member but `text` may be left out.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // Documents the shape; bodies are read by `TermInput::from_value`.
pub(crate) struct TermBody {
    #[schema(min_length = 1, max_length = 200)]
    id: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    text: String,
    #[schema(minimum = 0, maximum = 4_294_967_295_u64)]
    weight: Option<u64>,
    #[schema(value_type = Object)]
    payload: Option<Value>,
    #[schema(pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")]
    language: Option<String>,
}

/// A validated term, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TermInput {
    pub(crate) id: String,
    pub(crate) text: String,
    pub(crate) weight: u32,
    pub(crate) payload: Option<String>,
    pub(crate) language: Option<String>,
}

impl TermInput {
    /// Reads a term from JSON, naming every bad member (as a JSON pointer).
    pub(crate) fn from_value(value: &Value) -> Result<TermInput, Vec<FieldError>> {
        let Some(object) = value.as_object() else {
            return Err(vec![FieldError {
                field: String::new(),
                message: "must be an object with at least `text`".into(),
            }]);
        };
        let mut errors: Vec<FieldError> = object
            .keys()
            .filter(|k| !["id", "text", "weight", "payload", "language"].contains(&k.as_str()))
            .map(|key| FieldError { field: format!("/{key}"), message: "is not a member of a term".into() })
            .collect();
        let mut fail =
            |field: &str, message: &str| errors.push(FieldError { field: field.into(), message: message.into() });
        let text = match object.get("text") {
            Some(Value::String(text)) if text.chars().count() > MAX_TERM_CHARS => {
                fail("/text", &format!("must be at most {MAX_TERM_CHARS} characters"));
                String::new()
            }
            Some(Value::String(text)) if verge_shared::text::fold_words(text).text.is_empty() => {
                fail("/text", "must hold a letter or digit");
                String::new()
            }
            Some(Value::String(text)) => text.trim().to_owned(),
            Some(_) => {
                fail("/text", "must be a string");
                String::new()
            }
            None => {
                fail("/text", "is required");
                String::new()
            }
        };
        let id = match object.get("id") {
            None | Some(Value::Null) => verge_shared::text::fold_words(&text).text,
            Some(Value::String(id))
                if !id.is_empty() && id.chars().count() <= MAX_ID_CHARS && !id.chars().any(char::is_control) =>
            {
                id.clone()
            }
            Some(_) => {
                fail("/id", &format!("must be 1 to {MAX_ID_CHARS} characters, none a control character"));
                String::new()
            }
        };
        let weight = match object.get("weight") {
            None | Some(Value::Null) => 0,
            Some(value) => match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => n,
                None => {
                    fail("/weight", "must be an integer from 0 to 4294967295");
                    0
                }
            },
        };
        let payload = match object.get("payload") {
            None | Some(Value::Null) => None,
            Some(value) => {
                let json = value.to_string();
                if json.len() > MAX_PAYLOAD_BYTES {
                    fail("/payload", &format!("is {} bytes serialized; at most {MAX_PAYLOAD_BYTES}", json.len()));
                }
                Some(json)
            }
        };
        let language = match object.get("language") {
            None | Some(Value::Null) => None,
            Some(Value::String(tag)) if verge_shared::sessions::is_language_tag(tag) => Some(tag.clone()),
            Some(_) => {
                fail("/language", "must be a BCP 47 language tag such as `fr` or `pt-BR`");
                None
            }
        };
        if errors.is_empty() { Ok(TermInput { id, text, weight, payload, language }) } else { Err(errors) }
    }
}

/// Inserts or replaces `terms` (ids unique among them) in one statement.
pub(crate) async fn upsert(
    conn: &mut sqlx::AnyConnection,
    index_id: &str,
    terms: &[TermInput],
    now: i64,
) -> Result<(), sqlx::Error> {
    const COLUMNS: usize = 7;
    for chunk in terms.chunks(500) {
        let mut sql = String::from(
            "INSERT INTO autocomplete_terms (index_id, term_id, text, weight, payload, language, updated_at) VALUES ",
        );
        for i in 0..chunk.len() {
            let n = i * COLUMNS;
            if i > 0 {
                sql.push_str(", ");
            }
            let placeholders: Vec<String> = (1..=COLUMNS).map(|c| format!("${}", n + c)).collect();
            sql.push_str(&format!("({})", placeholders.join(", ")));
        }
        sql.push_str(
            " ON CONFLICT (index_id, term_id) DO UPDATE SET text = excluded.text, weight = excluded.weight,
              payload = excluded.payload, language = excluded.language, updated_at = excluded.updated_at",
        );
        let mut query = sqlx::query(&sql);
        for term in chunk {
            query = query
                .bind(index_id)
                .bind(&term.id)
                .bind(&term.text)
                .bind(i64::from(term.weight))
                .bind(&term.payload)
                .bind(&term.language)
                .bind(now);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn load(conn: &mut sqlx::AnyConnection, index_id: &str, id: &str) -> Result<Option<Term>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM autocomplete_terms WHERE index_id = $1 AND term_id = $2")
        .bind(index_id)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(Term::from_row).transpose()
}

/// Add or replace one term; the edge suggests it after the next publish (seconds).
#[utoipa::path(
    put, path = "/v1/autocomplete/{project}/indexes/{index}/terms/{id}", tag = "autocomplete",
    params(("project" = String, Path), ("index" = String, Path), ("id" = String, Path)),
    request_body = TermBody,
    security(("admin_key" = ["admin", "autocomplete:write"])),
    responses(
        (status = 200, description = "Replaced", body = Term),
        (status = 201, description = "Added", body = Term),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, description = "A bad member, or an `id` other than the path's", body = Problem),
    )
)]
pub(crate) async fn put_term(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<IndexWriters>,
    Path((project, name, id)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Term>), ApiError> {
    let mut body = body;
    if let Some(object) = body.as_object_mut() {
        match object.get("id") {
            Some(Value::String(given)) if *given != id => {
                return Err(ApiError::validation(vec![FieldError {
                    field: "/id".into(),
                    message: format!("is `{given}`, but the path names `{id}`"),
                }]));
            }
            _ => {
                object.insert("id".into(), Value::String(id.clone()));
            }
        }
    }
    let input = TermInput::from_value(&body).map_err(ApiError::validation)?;
    let mut tx = state.db.begin_write().await?;
    let index = find(&mut tx, &project, &name).await?;
    let before = load(&mut tx, &index.id, &input.id).await?;
    upsert(&mut tx, &index.id, std::slice::from_ref(&input), now_millis().0).await?;
    let after = load(&mut tx, &index.id, &input.id).await?.expect("just written");
    let target = format!("{}/{}", index.id, input.id);
    crate::audit::record(
        &mut tx,
        &principal.actor(),
        "autocomplete_term.put",
        "autocomplete_term",
        &target,
        before.as_ref(),
        Some(&after),
    )
    .await?;
    enqueue(&mut tx, &index.dataset()).await?;
    tx.commit().await?;
    state.publisher.wake();
    let status = if before.is_some() { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(after)))
}

/// One term.
#[utoipa::path(
    get, path = "/v1/autocomplete/{project}/indexes/{index}/terms/{id}", tag = "autocomplete",
    params(("project" = String, Path), ("index" = String, Path), ("id" = String, Path)),
    security(("admin_key" = ["admin", "read", "autocomplete:write"])),
    responses(
        (status = 200, body = Term),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, description = "Not a project or index name", body = Problem),
    )
)]
pub(crate) async fn get_term(
    State(state): State<AppState>,
    _: Authorized<IndexReaders>,
    Path((project, name, id)): Path<(String, String, String)>,
) -> Result<Json<Term>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    let index = find(&mut conn, &project, &name).await?;
    load(&mut conn, &index.id, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no term `{id}` in index `{name}`")))
}

/// Delete one term.
#[utoipa::path(
    delete, path = "/v1/autocomplete/{project}/indexes/{index}/terms/{id}", tag = "autocomplete",
    params(("project" = String, Path), ("index" = String, Path), ("id" = String, Path)),
    security(("admin_key" = ["admin", "autocomplete:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, description = "Not a project or index name", body = Problem),
    )
)]
pub(crate) async fn delete_term(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<IndexWriters>,
    Path((project, name, id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let index = find(&mut tx, &project, &name).await?;
    let before = load(&mut tx, &index.id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no term `{id}` in index `{name}`")))?;
    sqlx::query("DELETE FROM autocomplete_terms WHERE index_id = $1 AND term_id = $2")
        .bind(&index.id)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    let target = format!("{}/{id}", index.id);
    crate::audit::record(
        &mut tx,
        &principal.actor(),
        "autocomplete_term.delete",
        "autocomplete_term",
        &target,
        Some(&before),
        None,
    )
    .await?;
    enqueue(&mut tx, &index.dataset()).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TermList {
    /// Only terms whose id starts with this.
    prefix: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    cursor: Option<String>,
}

/// An index's terms by id.
#[utoipa::path(
    get, path = "/v1/autocomplete/{project}/indexes/{index}/terms", tag = "autocomplete",
    params(("project" = String, Path), ("index" = String, Path), TermList),
    security(("admin_key" = ["admin", "read", "autocomplete:write"])),
    responses(
        (status = 200, body = Page<Term>),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, description = "Not a project or index name, or a bad limit", body = Problem),
    )
)]
pub(crate) async fn list_terms(
    State(state): State<AppState>,
    _: Authorized<IndexReaders>,
    Path((project, name)): Path<(String, String)>,
    ApiQuery(list): ApiQuery<TermList>,
) -> Result<Json<Page<Term>>, ApiError> {
    let cursor = Cursor::for_text_keys(&PageParams { limit: list.limit, cursor: list.cursor })?;
    let mut conn = state.db.pool().acquire().await?;
    let index = find(&mut conn, &project, &name).await?;
    let prefix = list.prefix.unwrap_or_default();
    let after = if cursor.after() > prefix.as_str() { cursor.after().to_owned() } else { String::new() };
    let rows = sqlx::query(
        "SELECT * FROM autocomplete_terms WHERE index_id = $1 AND term_id > $2 AND term_id >= $3
         ORDER BY term_id LIMIT $4",
    )
    .bind(&index.id)
    .bind(&after)
    .bind(&prefix)
    .bind(cursor.fetch_limit())
    .fetch_all(&mut *conn)
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let term = Term::from_row(row)?;
        if !term.id.starts_with(&prefix) {
            break;
        }
        items.push(term);
    }
    Ok(Json(cursor.page(items, |term| term.id.clone())))
}
