//! Event ingest: edges send clicks, evaluations and limit decisions back in batches.
//!
//! `POST /v1/events` takes up to [`MAX_BATCH`] events, authenticated with an edge ingest
//! key (scope `events:ingest`). Each event carries an id the edge minted, and an event
//! whose id is already stored is counted as a duplicate, not stored again, so a batch the
//! edge retries after a lost response counts once. The batch is committed before the
//! response: an acknowledged event is durable. Later capabilities aggregate by `kind`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::cache::Policy;
use crate::error::{ApiError, ApiJson, FieldError, Problem};
use crate::keys::{Authorized, Grants, Scope};
use crate::state::AppState;
use crate::time::{Millis, now_millis};

/// Largest batch accepted in one request.
pub(crate) const MAX_BATCH: usize = crate::config::EVENT_BATCH_LIMIT;
/// Largest `data` object of one event, serialized.
const MAX_DATA_BYTES: usize = 8 * 1024;
/// How far back an event's `at` may lie: an edge cut off from the core keeps retrying a
/// batch for at most this long. Older (or future) times are refused, so a key cannot
/// backdate analytics or post-date flag evaluations to hide a stale flag.
const MAX_AGE_MILLIS: i64 = 7 * 24 * 3600 * 1000;
/// How far ahead of the core's clock an edge's clock may run.
const MAX_SKEW_MILLIS: i64 = 5 * 60 * 1000;
/// Columns per event row, for building multi-row inserts.
const COLUMNS: usize = 6;

/// Edge ingest keys (and admins) may send events.
#[derive(Debug)]
pub(crate) struct Ingesters;
impl Grants for Ingesters {
    const SCOPES: &'static [Scope] = &[Scope::IngestEvents];
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventBatch {
    /// 1 to 1000 events.
    #[schema(min_items = 1, max_items = 1000)]
    events: Vec<Event>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Event {
    /// Minted by the edge (`evt_…`); the idempotency key of the event.
    #[schema(pattern = "^evt_[0-7][0-9a-hjkmnp-tv-z]{25}$")]
    id: String,
    /// What happened, e.g. `link.click`, `flag.evaluation`.
    #[schema(pattern = "^[a-z0-9._]{1,64}$")]
    kind: String,
    /// When it happened at the edge: within the last 7 days and at most 5 minutes ahead.
    #[schema(value_type = String, format = DateTime)]
    at: Millis,
    /// Kind-specific fields.
    #[serde(default)]
    #[schema(value_type = Object)]
    data: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IngestResult {
    /// Events stored by this request.
    accepted: usize,
    /// Events whose id was already stored (a retried batch); not stored again.
    duplicates: usize,
}

fn validate(batch: &EventBatch, now: Millis) -> Result<Vec<String>, ApiError> {
    if batch.events.is_empty() || batch.events.len() > MAX_BATCH {
        return Err(ApiError::validation(vec![FieldError {
            field: "events".into(),
            message: format!("must hold 1 to {MAX_BATCH} events, not {}", batch.events.len()),
        }]));
    }
    let mut errors = Vec::new();
    let mut data = Vec::with_capacity(batch.events.len());
    let mut seen = std::collections::HashSet::new();
    for (i, event) in batch.events.iter().enumerate() {
        let mut fail = |field: &str, message: String| {
            errors.push(FieldError { field: format!("/events/{i}/{field}"), message });
        };
        if let Err(err) = verge_shared::ids::parse_id("evt", &event.id) {
            fail("id", err.to_string());
        } else if !seen.insert(event.id.as_str()) {
            fail("id", "appears twice in this batch".into());
        }
        let kind_ok = (1..=64).contains(&event.kind.len())
            && event.kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
        if !kind_ok {
            fail("kind", "must be 1 to 64 of a-z, 0-9, `.` and `_`".into());
        }
        if !(now.0 - MAX_AGE_MILLIS..=now.0 + MAX_SKEW_MILLIS).contains(&event.at.0) {
            fail("at", format!("must lie within the last 7 days and at most 5 minutes ahead of {now}"));
        }
        let json = serde_json::to_string(&event.data).expect("JSON values serialize");
        if json.len() > MAX_DATA_BYTES {
            fail("data", format!("is {} bytes; at most {MAX_DATA_BYTES}", json.len()));
        }
        data.push(json);
        if event.kind == crate::links::clicks::KIND {
            errors.extend(crate::links::clicks::check(i, &event.data));
        } else if event.kind == crate::flags::EVALUATION_KIND {
            errors.extend(crate::flags::stale::check(i, &event.data));
        } else if event.kind == crate::ratelimit::stats::EDGE_DECISION_KIND {
            errors.extend(crate::ratelimit::stats::check(i, &event.data));
        } else if event.kind == crate::autocomplete::trending::KIND {
            errors.extend(crate::autocomplete::trending::check(i, &event.data));
        }
    }
    if errors.is_empty() { Ok(data) } else { Err(ApiError::validation(errors)) }
}

/// Ingest a batch of edge events; a retried batch is counted once.
#[utoipa::path(
    post, path = "/v1/events", tag = "events",
    request_body = EventBatch,
    security(("admin_key" = ["admin", "events:ingest"])),
    responses(
        (status = 200, description = "Stored (durably) or recognised as duplicates", body = IngestResult),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 413, description = "Body over the size limit", body = Problem),
        (status = 422, description = "Invalid batch; nothing was stored", body = Problem),
        (status = 429, description = "The key is over its events-per-minute quota; nothing was stored. \
            `Retry-After` says when the batch fits", body = Problem),
    )
)]
pub(crate) async fn ingest(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Ingesters>,
    ApiJson(batch): ApiJson<EventBatch>,
) -> Result<Json<IngestResult>, ApiError> {
    let now = now_millis();
    let data = validate(&batch, now)?;
    take_quota(&state, &principal.key.id, batch.events.len(), now).await?;
    let received_at = now.0;
    let mut tx = state.db.begin_write().await?;
    let mut new_ids = std::collections::HashSet::new();
    // Chunks keep each statement under SQLite's and PostgreSQL's bound-parameter limits.
    for (events, data) in batch.events.chunks(500).zip(data.chunks(500)) {
        let mut sql = String::from("INSERT INTO events (id, kind, at, received_at, source, data) VALUES ");
        for i in 0..events.len() {
            let n = i * COLUMNS;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${}, ${}, ${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4, n + 5, n + 6));
        }
        sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id");
        let mut query = sqlx::query(&sql);
        for (event, json) in events.iter().zip(data) {
            query = query
                .bind(&event.id)
                .bind(&event.kind)
                .bind(event.at.0)
                .bind(received_at)
                .bind(&principal.key.id)
                .bind(json);
        }
        for row in query.fetch_all(&mut *tx).await? {
            new_ids.insert(sqlx::Row::try_get::<String, _>(&row, "id")?);
        }
    }
    let accepted = new_ids.len();
    // Counts must not move when an edge retries a batch: only new events are projected.
    let evaluations: Vec<crate::flags::stale::Evaluation<'_>> = batch
        .events
        .iter()
        .filter(|event| event.kind == crate::flags::EVALUATION_KIND && new_ids.contains(&event.id))
        .map(|event| crate::flags::stale::Evaluation { at: event.at.0, data: &event.data })
        .collect();
    crate::flags::stale::project(&mut tx, &evaluations).await?;
    let clicks: Vec<crate::links::clicks::Click<'_>> = batch
        .events
        .iter()
        .filter(|event| event.kind == crate::links::clicks::KIND)
        .map(|event| crate::links::clicks::Click { event_id: &event.id, at: event.at.0, data: &event.data })
        .collect();
    let republish = crate::links::clicks::project(&mut tx, &clicks).await?;
    let queries: Vec<crate::autocomplete::trending::Reported<'_>> = batch
        .events
        .iter()
        .filter(|event| event.kind == crate::autocomplete::trending::KIND && new_ids.contains(&event.id))
        .map(|event| crate::autocomplete::trending::Reported { at: event.at.0, data: &event.data })
        .collect();
    crate::autocomplete::trending::project(&mut tx, &queries).await?;
    tx.commit().await?;
    if republish {
        state.publisher.wake();
    }
    record_edge_decisions(&state, &batch, &new_ids).await?;
    Ok(Json(IngestResult { accepted, duplicates: batch.events.len() - accepted }))
}

/// Counts new edge rate-limit decisions in their policies' statistics and metrics; a
/// decision naming no stored policy is kept as an event but counted nowhere, so an ingest
/// key cannot grow the metrics' label sets with made-up ids.
async fn record_edge_decisions(
    state: &AppState,
    batch: &EventBatch,
    new_ids: &std::collections::HashSet<String>,
) -> Result<(), sqlx::Error> {
    use crate::ratelimit::stats;
    let text =
        |event: &Event, field: &str| event.data.get(field).and_then(serde_json::Value::as_str).map(str::to_owned);
    let decisions: Vec<(String, stats::Outcome, i64)> = batch
        .events
        .iter()
        .filter(|e| e.kind == stats::EDGE_DECISION_KIND && new_ids.contains(&e.id))
        .filter_map(|e| {
            Some((text(e, "policy")?, text(e, "outcome").as_deref().and_then(stats::Outcome::parse)?, e.at.0))
        })
        .collect();
    if decisions.is_empty() {
        return Ok(());
    }
    let known = crate::ratelimit::policy_ids(&state.db).await?;
    for (policy, outcome, at) in decisions.iter().filter(|(policy, ..)| known.contains(policy)) {
        stats::record(&state.tally, policy, *at, *outcome);
        state.metrics.count_decision(policy, outcome.as_str());
    }
    Ok(())
}

/// Takes `events` from the key's per-minute bucket, or answers 429 with when they fit.
async fn take_quota(state: &AppState, key_id: &str, events: usize, now: Millis) -> Result<(), ApiError> {
    let policy = Policy::per_period(state.config.ingest_events_per_minute, 60_000_000);
    let now_us = now.0.max(0) as u64 * 1000;
    let decision = state.cache.take(&format!("ingest-quota:{key_id}"), policy, events as u32, now_us).await?;
    if decision.allowed {
        return Ok(());
    }
    Err(ApiError::too_many_requests(
        "ingest_quota_exceeded",
        format!("this key may send {} events a minute; the batch was not stored", policy.limit),
        decision.retry_after_us.div_ceil(1_000_000).max(1),
    ))
}
