//! Autocomplete in the core: indexes per project (`indexes`), their terms (`terms`, bulk
//! `import` and export), curation rules (`rules`), and the queries edges report, which
//! become trending (`trending`).
//!
//! Matching and the published format live in `verge_shared::autocomplete`; this module
//! stores what an operator wrote and turns it into an index's dataset, `ac/<project>/<index>`,
//! whenever the outbox names it. Only the indexes named are rebuilt: a large index is not
//! rebuilt because a flag changed.

pub(crate) mod import;
pub(crate) mod indexes;
pub(crate) mod rules;
pub(crate) mod terms;
pub(crate) mod trending;

use std::collections::HashMap;

use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::Row;
use verge_shared::autocomplete::{self as shared, BuildTerm, Curation, Settings};

use crate::db::Database;
use crate::error::{ApiError, FieldError};
use crate::keys::{Grants, Scope};
use crate::publish::{DatasetContent, DatasetSource};
use crate::time::now_millis;

/// Keys that may change indexes, terms and rules.
#[derive(Debug)]
pub(crate) struct IndexWriters;
impl Grants for IndexWriters {
    const SCOPES: &'static [Scope] = &[Scope::AutocompleteWrite];
}

/// Keys that may read them.
#[derive(Debug)]
pub(crate) struct IndexReaders;
impl Grants for IndexReaders {
    const SCOPES: &'static [Scope] = &[Scope::Read, Scope::AutocompleteWrite];
}

/// The key prefix of every index's dataset.
pub(crate) const DATASET_PREFIX: &str = "ac/";

/// A stored index.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    pub(crate) id: String,
    pub(crate) project: String,
    pub(crate) name: String,
    pub(crate) settings: Settings,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

impl Index {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Index, sqlx::Error> {
        let text: String = row.try_get("settings")?;
        let settings = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|value| Settings::from_value(&value).ok())
            .ok_or_else(|| sqlx::Error::Decode("autocomplete_indexes.settings is not valid settings".into()))?;
        Ok(Index {
            id: row.try_get("id")?,
            project: row.try_get("project")?,
            name: row.try_get("name")?,
            settings,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    pub(crate) fn dataset(&self) -> String {
        shared::dataset(&self.project, &self.name)
    }
}

pub(crate) fn settings_error(errors: Vec<shared::Invalid>) -> ApiError {
    ApiError::validation(
        errors.into_iter().map(|e| FieldError { field: format!("/settings{}", e.field), message: e.message }).collect(),
    )
}

/// The index `name` of `project`, or a 404 saying which is missing.
pub(crate) async fn find(conn: &mut sqlx::AnyConnection, project: &str, name: &str) -> Result<Index, ApiError> {
    crate::ids::check_slug(project, "project")?;
    crate::ids::check_slug(name, "index")?;
    let row = sqlx::query("SELECT * FROM autocomplete_indexes WHERE project = $1 AND name = $2")
        .bind(project)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => Ok(Index::from_row(&row)?),
        None => Err(ApiError::not_found(format!("no autocomplete index `{name}` in project `{project}`"))),
    }
}

/// Publishes each index as one dataset, built from its terms, rules and trending queries.
#[derive(Debug)]
pub(crate) struct AutocompleteSource;

#[async_trait::async_trait]
impl DatasetSource for AutocompleteSource {
    async fn build(&self, db: &Database) -> Result<Vec<DatasetContent>, sqlx::Error> {
        let rows =
            sqlx::query("SELECT * FROM autocomplete_indexes ORDER BY project, name").fetch_all(db.pool()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(build_index(db, &Index::from_row(row)?).await?);
        }
        Ok(out)
    }

    fn dataset_prefix(&self) -> Option<&'static str> {
        Some(DATASET_PREFIX)
    }

    async fn build_named(&self, db: &Database, names: &[String]) -> Result<Vec<DatasetContent>, sqlx::Error> {
        let mut out = Vec::new();
        for name in names {
            let Some((project, index)) = name.strip_prefix(DATASET_PREFIX).and_then(|rest| rest.split_once('/')) else {
                continue;
            };
            let row = sqlx::query("SELECT * FROM autocomplete_indexes WHERE project = $1 AND name = $2")
                .bind(project)
                .bind(index)
                .fetch_optional(db.pool())
                .await?;
            if let Some(row) = row {
                out.push(build_index(db, &Index::from_row(&row)?).await?);
            }
        }
        Ok(out)
    }
}

/// One index's dataset: its terms with boosts and trending added, and its curation.
pub(crate) async fn build_index(db: &Database, index: &Index) -> Result<DatasetContent, sqlx::Error> {
    let mut terms = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut rows = sqlx::query(
        "SELECT term_id, text, weight, payload, language FROM autocomplete_terms WHERE index_id = $1 ORDER BY term_id",
    )
    .bind(&index.id)
    .fetch(db.pool());
    while let Some(row) = rows.try_next().await? {
        ids.insert(row.try_get("term_id")?, terms.len());
        terms.push(BuildTerm {
            text: row.try_get("text")?,
            rank: row.try_get::<i64, _>("weight")?.clamp(0, i64::from(u32::MAX)) as u32,
            payload: row.try_get("payload")?,
            language: row.try_get("language")?,
            trending: false,
        });
    }
    drop(rows);
    let mut curation = Curation::default();
    for rule in rules::load_all(db, &index.id).await? {
        match rule {
            rules::Rule::Boost { term, by } => {
                if let Some(&at) = ids.get(&term) {
                    terms[at].rank = terms[at].rank.saturating_add(by);
                }
            }
            rules::Rule::Pin { query, terms: pinned } => {
                let pinned = pinned.iter().filter_map(|id| ids.get(id).copied()).collect();
                curation.pins.push((query, pinned));
            }
            rules::Rule::Block { pattern } => curation.blocks.push(shared::fold_pattern(&pattern)),
            rules::Rule::Synonym { phrases } => {
                curation.synonyms.push(phrases.iter().map(|p| verge_shared::text::fold_words(p).text).collect());
            }
        }
    }
    if index.settings.trending {
        let scores = trending::scores(db, index, now_millis().0).await?;
        trending::mix_in(&mut terms, &scores, &index.settings);
    }
    let settings = index.settings.clone();
    let parts = tokio::task::spawn_blocking(move || shared::build(&terms, &curation, &settings, shared::SHARD_BUDGET))
        .await
        .map_err(|err| sqlx::Error::Protocol(format!("building an autocomplete index failed: {err}")))?;
    Ok(DatasetContent { name: index.dataset(), parts })
}
