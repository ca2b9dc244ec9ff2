//! Trending: the queries edges report (`autocomplete.query` events), counted per hour and
//! decayed by each index's half-life, mixed into what the index publishes, and listed for
//! curation (`…/trending`, `…/no-results`).
//!
//! A query's score is the sum over its hours of `searches × 0.5^(age / half-life)`, the
//! age measured from the middle of the hour. A score of [`MIN_SCORE`] or more makes it
//! trending: terms whose folded text is the query gain `score × weight` rank (see
//! [`mix_in`]).
//! Counting is additive (`searches = searches + n`), so replicas ingesting at once never
//! lose a count; decay happens when read.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};
use verge_shared::autocomplete::{BuildTerm, Settings};
use verge_shared::text::fold_words;

use super::{Index, IndexReaders, find};
use crate::db::Database;
use crate::error::{ApiError, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::state::AppState;

/// The event kind edges report queries as.
pub(crate) const KIND: &str = "autocomplete.query";
/// Decayed searches from which a query is trending.
pub(crate) const MIN_SCORE: f64 = 3.0;
/// Hours kept: older counts weigh under 0.1% at any half-life they could still matter for.
const KEEP_HALF_LIVES: i64 = 10;
const HOUR_MS: i64 = 3_600_000;

/// Refusals for one reported query's data.
pub(crate) fn check(index: usize, data: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut fail = |field: &str, message: &str| {
        errors.push(FieldError { field: format!("/events/{index}/data/{field}"), message: message.into() });
    };
    for field in ["project", "index"] {
        if data.get(field).and_then(Value::as_str).is_none_or(|name| crate::ids::check_slug(name, field).is_err()) {
            fail(field, "must be a project or index name");
        }
    }
    let query = data.get("query").and_then(Value::as_str).unwrap_or_default();
    if query.is_empty() || query.chars().count() > verge_shared::autocomplete::MAX_QUERY_CHARS {
        fail("query", "must be 1 to 200 characters (edges report the folded query cut to that)");
    }
    if data.get("empty").is_some_and(|v| !v.is_boolean()) {
        fail("empty", "must be a boolean");
    }
    errors
}

/// One reported query.
#[derive(Debug)]
pub(crate) struct Reported<'a> {
    pub(crate) at: i64,
    pub(crate) data: &'a Map<String, Value>,
}

/// Adds newly ingested queries to their hours, inside the ingest transaction. Queries of
/// an index that does not exist are not counted (the events stay stored).
pub(crate) async fn project(conn: &mut sqlx::AnyConnection, reported: &[Reported<'_>]) -> Result<(), sqlx::Error> {
    let mut counts: HashMap<(String, String, String, i64), (i64, i64)> = HashMap::new();
    for query in reported {
        let text = |field: &str| query.data.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
        let folded = fold_words(&text("query")).text;
        if folded.is_empty() {
            continue;
        }
        let hour = query.at.div_euclid(HOUR_MS) * HOUR_MS;
        let empty = query.data.get("empty").and_then(Value::as_bool).unwrap_or(false);
        let entry = counts.entry((text("project"), text("index"), folded, hour)).or_default();
        entry.0 += 1;
        entry.1 += i64::from(empty);
    }
    let mut ids: HashMap<(String, String), Option<String>> = HashMap::new();
    for ((project, index, query, hour), (searches, empty)) in counts {
        let key = (project, index);
        if !ids.contains_key(&key) {
            let id: Option<String> =
                sqlx::query_scalar("SELECT id FROM autocomplete_indexes WHERE project = $1 AND name = $2")
                    .bind(&key.0)
                    .bind(&key.1)
                    .fetch_optional(&mut *conn)
                    .await?;
            ids.insert(key.clone(), id);
        }
        let Some(Some(index_id)) = ids.get(&key) else { continue };
        sqlx::query(
            "INSERT INTO autocomplete_queries (index_id, query, hour, searches, empty) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (index_id, query, hour) DO UPDATE SET searches = autocomplete_queries.searches + excluded.searches,
               empty = autocomplete_queries.empty + excluded.empty",
        )
        .bind(index_id)
        .bind(&query)
        .bind(hour)
        .bind(searches)
        .bind(empty)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A query's decayed standing.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct Score {
    /// Folded, as matched.
    pub(crate) query: String,
    /// Decayed searches.
    pub(crate) score: f64,
    /// Searches counted, undecayed.
    pub(crate) searches: i64,
    /// Of those, how many found no suggestion.
    pub(crate) empty: i64,
}

/// Every query of `index` with its score at `now`, best first.
pub(crate) async fn scores(db: &Database, index: &Index, now: i64) -> Result<Vec<Score>, sqlx::Error> {
    let half_life = i64::from(index.settings.trending_half_life_hours) * HOUR_MS;
    let rows =
        sqlx::query("SELECT query, hour, searches, empty FROM autocomplete_queries WHERE index_id = $1 AND hour >= $2")
            .bind(&index.id)
            .bind(now - KEEP_HALF_LIVES * half_life)
            .fetch_all(db.pool())
            .await?;
    let mut by_query: HashMap<String, Score> = HashMap::new();
    for row in &rows {
        let query: String = row.try_get("query")?;
        let hour: i64 = row.try_get("hour")?;
        let searches: i64 = row.try_get("searches")?;
        let empty: i64 = row.try_get("empty")?;
        let age = (now - (hour + HOUR_MS / 2)).max(0) as f64;
        let entry = by_query.entry(query.clone()).or_insert(Score { query, score: 0.0, searches: 0, empty: 0 });
        entry.score += searches as f64 * 0.5f64.powf(age / half_life as f64);
        entry.searches += searches;
        entry.empty += empty;
    }
    let mut scores: Vec<Score> = by_query.into_values().collect();
    scores.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.query.cmp(&b.query)));
    Ok(scores)
}

/// Drops the keystrokes on the way to a query: `pa` and `par` when `paris` was typed
/// after them at least half as often. Every keystroke is reported, so without this the
/// prefixes of popular queries would trend themselves.
pub(crate) fn collapse_keystrokes(scores: &mut Vec<Score>) {
    let mut sorted: Vec<&Score> = scores.iter().collect();
    sorted.sort_by(|a, b| a.query.cmp(&b.query));
    let mut keystrokes = std::collections::HashSet::new();
    for (at, score) in sorted.iter().enumerate() {
        let typed_on = sorted[at + 1..]
            .iter()
            .take_while(|later| later.query.starts_with(&score.query))
            .any(|later| later.score * 2.0 >= score.score);
        if typed_on {
            keystrokes.insert(score.query.clone());
        }
    }
    scores.retain(|score| !keystrokes.contains(&score.query));
}

/// Raises the terms trending queries name in full (folded, so `zurich` names `Zürich`).
///
/// A query is only ever mixed in as a term it names: every keystroke is reported, and a
/// query that names no term is either the prefix of one (`par`, on the way to `paris`)
/// or finds nothing, and is listed by the no-results report for an operator to add.
pub(crate) fn mix_in(terms: &mut [BuildTerm], scores: &[Score], settings: &Settings) {
    let trending: HashMap<&str, &Score> =
        scores.iter().filter(|s| s.score >= MIN_SCORE).map(|s| (s.query.as_str(), s)).collect();
    if trending.is_empty() {
        return;
    }
    let bonus =
        |score: &Score| (score.score * f64::from(settings.trending_weight)).round().min(f64::from(u32::MAX)) as u32;
    for term in terms.iter_mut() {
        if let Some(score) = trending.get(fold_words(&term.text).text.as_str()) {
            term.rank = term.rank.saturating_add(bonus(score));
            term.trending = true;
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReportParams {
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueryReport {
    /// The half-life scores are decayed by, in hours.
    half_life_hours: u32,
    /// The score from which a query is trending.
    min_score: f64,
    queries: Vec<Score>,
}

async fn report(
    state: &AppState,
    project: &str,
    name: &str,
    limit: Option<u32>,
    keep: impl Fn(&Score) -> bool,
) -> Result<Json<QueryReport>, ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::validation(vec![FieldError {
            field: "limit".into(),
            message: "must be between 1 and 200".into(),
        }]));
    }
    let index = {
        let mut conn = state.db.pool().acquire().await?;
        find(&mut conn, project, name).await?
    };
    let mut queries = scores(&state.db, &index, crate::time::now_millis().0).await?;
    collapse_keystrokes(&mut queries);
    queries.retain(|score| keep(score));
    queries.truncate(limit as usize);
    Ok(Json(QueryReport { half_life_hours: index.settings.trending_half_life_hours, min_score: MIN_SCORE, queries }))
}

/// The most searched queries of an index, decayed: what trending mixes in.
#[utoipa::path(
    get, path = "/v1/autocomplete/{project}/indexes/{index}/trending", tag = "autocomplete",
    params(("project" = String, Path), ("index" = String, Path), ReportParams),
    security(("admin_key" = ["admin", "read", "autocomplete:write"])),
    responses(
        (status = 200, body = QueryReport),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, description = "A bad name or limit", body = Problem),
    )
)]
pub(crate) async fn trending(
    State(state): State<AppState>,
    _: Authorized<IndexReaders>,
    Path((project, name)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<ReportParams>,
) -> Result<Json<QueryReport>, ApiError> {
    report(&state, &project, &name, params.limit, |_| true).await
}

/// Popular queries that mostly found nothing: terms, synonyms or fixes to add.
#[utoipa::path(
    get, path = "/v1/autocomplete/{project}/indexes/{index}/no-results", tag = "autocomplete",
    params(("project" = String, Path), ("index" = String, Path), ReportParams),
    security(("admin_key" = ["admin", "read", "autocomplete:write"])),
    responses(
        (status = 200, body = QueryReport),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, description = "A bad name or limit", body = Problem),
    )
)]
pub(crate) async fn no_results(
    State(state): State<AppState>,
    _: Authorized<IndexReaders>,
    Path((project, name)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<ReportParams>,
) -> Result<Json<QueryReport>, ApiError> {
    report(&state, &project, &name, params.limit, |score| score.empty * 2 >= score.searches).await
}

/// Republishes, every `interval`, each trending index that received queries since the
/// last round, and forgets hours too old to count. Runs until `stop` resolves.
pub(crate) async fn run(state: AppState, interval: Duration, stop: impl Future<Output = ()>) {
    let mut stop = std::pin::pin!(stop);
    let mut since = crate::time::now_millis().0;
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(interval) => {}
        }
        let now = crate::time::now_millis().0;
        match republish_round(&state, since.div_euclid(HOUR_MS) * HOUR_MS, now).await {
            Ok(()) => since = now,
            Err(err) => tracing::warn!(error = %err, "trending republish failed; will retry"),
        }
    }
}

async fn republish_round(state: &AppState, from_hour: i64, now: i64) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT * FROM autocomplete_indexes WHERE id IN (SELECT DISTINCT index_id FROM autocomplete_queries WHERE hour >= $1)",
    )
    .bind(from_hour)
    .fetch_all(state.db.pool())
    .await?;
    let mut tx = state.db.begin_write().await?;
    for row in &rows {
        let index = Index::from_row(row)?;
        if index.settings.trending {
            crate::publish::enqueue(&mut tx, &index.dataset()).await?;
        }
        let half_life = i64::from(index.settings.trending_half_life_hours) * HOUR_MS;
        sqlx::query("DELETE FROM autocomplete_queries WHERE index_id = $1 AND hour < $2")
            .bind(&index.id)
            .bind(now - KEEP_HALF_LIVES * half_life)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    if !rows.is_empty() {
        state.publisher.wake();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trending_raises_the_terms_queries_name_in_full() {
        let mut terms = vec![
            BuildTerm { text: "Bordeaux".into(), rank: 10, ..BuildTerm::default() },
            BuildTerm { text: "Bordeaux Wine".into(), rank: 5, ..BuildTerm::default() },
            BuildTerm { text: "Zürich".into(), rank: 7, ..BuildTerm::default() },
        ];
        let scores = [
            Score { query: "bordeaux wine".into(), score: 20.4, searches: 25, empty: 0 },
            Score { query: "zurich".into(), score: 3.0, searches: 3, empty: 0 },
            Score { query: "bord".into(), score: 40.0, searches: 40, empty: 0 },
            Score { query: "bordeaux".into(), score: 2.9, searches: 3, empty: 0 },
        ];
        let settings = Settings { trending_weight: 2, ..Settings::default() };
        mix_in(&mut terms, &scores, &settings);
        let ranks: Vec<(&str, u32, bool)> = terms.iter().map(|t| (t.text.as_str(), t.rank, t.trending)).collect();
        // `bord` names no term; `bordeaux` is under the trending score.
        assert_eq!(ranks, [("Bordeaux", 10, false), ("Bordeaux Wine", 46, true), ("Zürich", 13, true)]);
    }

    #[test]
    fn keystrokes_on_the_way_to_a_query_do_not_trend() {
        let score = |query: &str, score: f64| Score { query: query.into(), score, searches: score as i64, empty: 0 };
        let mut scores =
            vec![score("pa", 30.0), score("par", 21.0), score("pari", 10.0), score("paris", 10.0), score("parma", 4.0)];
        collapse_keystrokes(&mut scores);
        let left: Vec<&str> = scores.iter().map(|s| s.query.as_str()).collect();
        // `pa` was typed on the way to `par` (21 ≥ 15); `par` is mostly its own query
        // (10 < 10.5), `pari` always became `paris`.
        assert_eq!(left, ["par", "paris", "parma"]);
    }
}
