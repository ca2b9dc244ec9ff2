//! Curation rules, `…/indexes/{index}/rules`: boosts (a term ranks higher), pins (terms
//! first for a query), blocks (a term or pattern never suggested) and synonyms (phrases
//! that find each other's terms). Rules apply when the index is next built; a block
//! applies to trending suggestions as much as to imported terms.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;
use utoipa::ToSchema;
use verge_shared::text::fold_words;

use super::{IndexReaders, IndexWriters, find};
use crate::db::Database;
use crate::error::{ApiError, ApiJson, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::pagination::{Cursor, Page, PageParams};
use crate::publish::enqueue;
use crate::state::AppState;
use crate::time::{Millis, now_millis};

/// A rule as stored and built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rule {
    Boost {
        term: String,
        by: u32,
    },
    /// `query` folded.
    Pin {
        query: String,
        terms: Vec<String>,
    },
    Block {
        pattern: String,
    },
    Synonym {
        phrases: Vec<String>,
    },
}

impl Rule {
    fn kind(&self) -> &'static str {
        match self {
            Rule::Boost { .. } => "boost",
            Rule::Pin { .. } => "pin",
            Rule::Block { .. } => "block",
            Rule::Synonym { .. } => "synonym",
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Rule::Boost { term, by } => json!({"kind": "boost", "term": term, "by": by}),
            Rule::Pin { query, terms } => json!({"kind": "pin", "query": query, "terms": terms}),
            Rule::Block { pattern } => json!({"kind": "block", "pattern": pattern}),
            Rule::Synonym { phrases } => json!({"kind": "synonym", "phrases": phrases}),
        }
    }

    /// Reads a rule, naming every bad member.
    fn from_value(value: &Value) -> Result<Rule, Vec<FieldError>> {
        let error = |field: &str, message: &str| vec![FieldError { field: field.into(), message: message.into() }];
        let text = |field: &str, max: usize| -> Result<String, Vec<FieldError>> {
            match value.get(field) {
                Some(Value::String(s)) if !fold_words(s).text.is_empty() && s.chars().count() <= max => Ok(s.clone()),
                _ => Err(error(&format!("/{field}"), &format!("must be 1 to {max} characters with a letter or digit"))),
            }
        };
        let strings = |field: &str, min: usize, max: usize| -> Result<Vec<String>, Vec<FieldError>> {
            let bad = || error(&format!("/{field}"), &format!("must be {min} to {max} non-empty strings"));
            let items = value.get(field).and_then(Value::as_array).ok_or_else(bad)?;
            let strings: Vec<String> = items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect();
            let fine = strings.len() == items.len()
                && (min..=max).contains(&strings.len())
                && strings.iter().all(|s| !fold_words(s).text.is_empty() && s.chars().count() <= 200);
            if fine { Ok(strings) } else { Err(bad()) }
        };
        let members: &[&str] = match value.get("kind").and_then(Value::as_str) {
            Some("boost") => &["kind", "term", "by"],
            Some("pin") => &["kind", "query", "terms"],
            Some("block") => &["kind", "pattern"],
            Some("synonym") => &["kind", "phrases"],
            _ => return Err(error("/kind", "must be `boost`, `pin`, `block` or `synonym`")),
        };
        if let Some(extra) = value.as_object().and_then(|o| o.keys().find(|k| !members.contains(&k.as_str()))) {
            return Err(error(&format!("/{extra}"), "is not a member of this kind of rule"));
        }
        match value["kind"].as_str() {
            Some("boost") => {
                let term = match value.get("term") {
                    Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= 200 => s.clone(),
                    _ => return Err(error("/term", "must be a term id")),
                };
                let by = value.get("by").and_then(Value::as_u64).filter(|n| (1..=1_000_000_000).contains(n));
                let by = by.ok_or_else(|| error("/by", "must be an integer from 1 to 1000000000"))? as u32;
                Ok(Rule::Boost { term, by })
            }
            Some("pin") => {
                let query = fold_words(&text("query", 200)?).text;
                let terms = value.get("terms").and_then(Value::as_array).map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
                        .collect::<Vec<_>>()
                });
                match terms {
                    Some(terms)
                        if (1..=20).contains(&terms.len())
                            && terms.len() == value["terms"].as_array().map_or(0, Vec::len) =>
                    {
                        Ok(Rule::Pin { query, terms })
                    }
                    _ => Err(error("/terms", "must be 1 to 20 term ids, in the order they come first")),
                }
            }
            Some("block") => {
                let pattern = text("pattern", 200)?;
                Ok(Rule::Block { pattern })
            }
            _ => Ok(Rule::Synonym { phrases: strings("phrases", 2, 20)? }),
        }
    }
}

/// Every rule of an index, oldest first.
pub(crate) async fn load_all(db: &Database, index_id: &str) -> Result<Vec<Rule>, sqlx::Error> {
    let rows = sqlx::query("SELECT document FROM autocomplete_rules WHERE index_id = $1 ORDER BY id")
        .bind(index_id)
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|row| {
            let text: String = row.try_get("document")?;
            let value: Value = serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(e.into()))?;
            Rule::from_value(&value)
                .map_err(|_| sqlx::Error::Decode("autocomplete_rules.document is not a rule".into()))
        })
        .collect()
}

/// A rule as the API shows it: its members, `id` and `created_at`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RuleView {
    id: String,
    /// `boost` (`term`, `by`), `pin` (`query`, `terms`), `block` (`pattern`, `*` for any
    /// run of characters; without one the whole folded text must match) or `synonym`
    /// (`phrases`).
    kind: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    members: Value,
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
}

fn view(row: &sqlx::any::AnyRow) -> Result<RuleView, sqlx::Error> {
    let text: String = row.try_get("document")?;
    let mut members: Value = serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(e.into()))?;
    if let Some(object) = members.as_object_mut() {
        object.remove("kind");
    }
    Ok(RuleView {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        members,
        created_at: Millis(row.try_get("created_at")?),
    })
}

/// Add a curation rule; it applies from the next publish, seconds later.
#[utoipa::path(
    post, path = "/v1/autocomplete/{project}/indexes/{index}/rules", tag = "autocomplete",
    params(("project" = String, Path), ("index" = String, Path)),
    request_body(content = Object, description = "`{\"kind\": \"pin\", \"query\": \"par\", \"terms\": [\"paris\"]}` and the like"),
    security(("admin_key" = ["admin", "autocomplete:write"])),
    responses(
        (status = 201, body = RuleView),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, description = "A bad member, or a term that does not exist", body = Problem),
    )
)]
pub(crate) async fn create_rule(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<IndexWriters>,
    Path((project, name)): Path<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<RuleView>), ApiError> {
    let rule = Rule::from_value(&body).map_err(ApiError::validation)?;
    let mut tx = state.db.begin_write().await?;
    let index = find(&mut tx, &project, &name).await?;
    let named: Vec<(String, String)> = match &rule {
        Rule::Boost { term, .. } => vec![("/term".into(), term.clone())],
        Rule::Pin { terms, .. } => terms.iter().enumerate().map(|(i, t)| (format!("/terms/{i}"), t.clone())).collect(),
        _ => Vec::new(),
    };
    let mut missing = Vec::new();
    for (field, term) in named {
        let found: Option<String> =
            sqlx::query_scalar("SELECT term_id FROM autocomplete_terms WHERE index_id = $1 AND term_id = $2")
                .bind(&index.id)
                .bind(&term)
                .fetch_optional(&mut *tx)
                .await?;
        if found.is_none() {
            missing.push(FieldError { field, message: format!("no term `{term}` in index `{name}`") });
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::validation(missing));
    }
    let id = crate::ids::new_id("acr");
    let now = now_millis().0;
    sqlx::query(
        "INSERT INTO autocomplete_rules (id, index_id, kind, document, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(&index.id)
    .bind(rule.kind())
    .bind(rule.to_value().to_string())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query("SELECT * FROM autocomplete_rules WHERE id = $1").bind(&id).fetch_one(&mut *tx).await?;
    let shown = view(&row)?;
    crate::audit::record(
        &mut tx,
        &principal.actor(),
        "autocomplete_rule.create",
        "autocomplete_rule",
        &id,
        None,
        Some(&shown),
    )
    .await?;
    enqueue(&mut tx, &index.dataset()).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok((StatusCode::CREATED, Json(shown)))
}

/// An index's rules, oldest first.
#[utoipa::path(
    get, path = "/v1/autocomplete/{project}/indexes/{index}/rules", tag = "autocomplete",
    params(("project" = String, Path), ("index" = String, Path), PageParams),
    security(("admin_key" = ["admin", "read", "autocomplete:write"])),
    responses(
        (status = 200, body = Page<RuleView>),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, description = "Not a project or index name, or a bad limit", body = Problem),
    )
)]
pub(crate) async fn list_rules(
    State(state): State<AppState>,
    _: Authorized<IndexReaders>,
    Path((project, name)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<RuleView>>, ApiError> {
    let cursor = Cursor::from_params(&params)?;
    let mut conn = state.db.pool().acquire().await?;
    let index = find(&mut conn, &project, &name).await?;
    let rows = sqlx::query("SELECT * FROM autocomplete_rules WHERE index_id = $1 AND id > $2 ORDER BY id LIMIT $3")
        .bind(&index.id)
        .bind(cursor.after())
        .bind(cursor.fetch_limit())
        .fetch_all(&mut *conn)
        .await?;
    let items = rows.iter().map(view).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(cursor.page(items, |rule| rule.id.clone())))
}

/// Delete a rule.
#[utoipa::path(
    delete, path = "/v1/autocomplete/{project}/indexes/{index}/rules/{id}", tag = "autocomplete",
    params(("project" = String, Path), ("index" = String, Path), ("id" = String, Path)),
    security(("admin_key" = ["admin", "autocomplete:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, description = "Not a project or index name", body = Problem),
    )
)]
pub(crate) async fn delete_rule(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<IndexWriters>,
    Path((project, name, id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let index = find(&mut tx, &project, &name).await?;
    let row = sqlx::query("SELECT * FROM autocomplete_rules WHERE id = $1 AND index_id = $2")
        .bind(&id)
        .bind(&index.id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no rule `{id}` in index `{name}`")))?;
    let before = view(&row)?;
    sqlx::query("DELETE FROM autocomplete_rules WHERE id = $1").bind(&id).execute(&mut *tx).await?;
    crate::audit::record(
        &mut tx,
        &principal.actor(),
        "autocomplete_rule.delete",
        "autocomplete_rule",
        &id,
        Some(&before),
        None,
    )
    .await?;
    enqueue(&mut tx, &index.dataset()).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(StatusCode::NO_CONTENT)
}
