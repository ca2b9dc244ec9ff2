//! Decision statistics: how many requests each policy allowed, denied, would have denied
//! (shadow mode) or could not decide (counter store down), per minute.
//!
//! The global tier counts into the process's `Tally`, which moves the counts into the
//! shared counter store once a second, so every replica's decisions add up in one place
//! and recording costs no round trip. Edges report each decision as a
//! [`EDGE_DECISION_KIND`] event (batched, after the response); ingest records the new ones
//! the same way. Minutes are kept for [`STATS_KEPT_FOR`].

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{PolicyReaders, load};
use crate::cache::{Cache, CacheError};
use crate::error::{ApiError, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::state::AppState;
use crate::tally::Tally;
use crate::time::{Millis, now_millis};

/// How long a minute's counts are kept: a day, and the hour it may take to look.
pub(crate) const STATS_KEPT_FOR: Duration = Duration::from_secs(25 * 3600);
pub(crate) const MINUTE_MS: i64 = 60_000;
/// The longest timeline one request may ask for.
const MAX_MINUTES: i64 = 24 * 60;

pub(crate) use verge_shared::ratelimit::DECISION_EVENT as EDGE_DECISION_KIND;
pub(crate) use verge_shared::ratelimit::Outcome;

/// Checks an edge decision event's data (event `index` of a batch).
pub(crate) fn check(index: usize, data: &serde_json::Map<String, serde_json::Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut fail = |field: &str, message: &str| {
        errors.push(FieldError { field: format!("/events/{index}/data/{field}"), message: message.into() });
    };
    let policy = data.get("policy").and_then(serde_json::Value::as_str).unwrap_or_default();
    if !(1..=64).contains(&policy.len()) || !policy.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        fail("policy", "must be a policy id");
    }
    if data.get("outcome").and_then(serde_json::Value::as_str).and_then(Outcome::parse).is_none() {
        fail("outcome", "must be `allowed`, `denied`, `shadow_denied` or `store_unavailable`");
    }
    errors
}

fn counter(policy: &str, minute: i64, outcome: Outcome) -> String {
    format!("rlstats:{policy}:{minute}:{}", outcome.as_str())
}

/// Counts one decision of `policy` made at `at_ms`.
pub(crate) fn record(tally: &Tally, policy: &str, at_ms: i64, outcome: Outcome) {
    tally.add(counter(policy, at_ms.div_euclid(MINUTE_MS), outcome), 1);
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatsParams {
    /// Start (inclusive, RFC 3339); default an hour before `to`.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<Millis>,
    /// End (exclusive, RFC 3339); default now.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<Millis>,
}

#[derive(Debug, Default, Clone, Copy, Serialize, ToSchema)]
pub(crate) struct Counts {
    pub(crate) allowed: u64,
    pub(crate) denied: u64,
    pub(crate) shadow_denied: u64,
    pub(crate) store_unavailable: u64,
}

impl Counts {
    fn set(&mut self, outcome: Outcome, n: u64) {
        match outcome {
            Outcome::Allowed => self.allowed = n,
            Outcome::Denied => self.denied = n,
            Outcome::ShadowDenied => self.shadow_denied = n,
            Outcome::StoreUnavailable => self.store_unavailable = n,
        }
    }

    fn add(&mut self, other: Counts) {
        self.allowed += other.allowed;
        self.denied += other.denied;
        self.shadow_denied += other.shadow_denied;
        self.store_unavailable += other.store_unavailable;
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Minute {
    #[schema(value_type = String, format = DateTime)]
    at: Millis,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PolicyStats {
    policy: String,
    #[schema(value_type = String, format = DateTime)]
    from: Millis,
    #[schema(value_type = String, format = DateTime)]
    to: Millis,
    totals: Counts,
    /// One entry per minute with any decision, oldest first.
    timeline: Vec<Minute>,
}

/// One minute's counts of `policy`, as the counter store holds them (flushed tallies).
pub(crate) async fn minute_counts(cache: &Cache, policy: &str, minute: i64) -> Result<Counts, CacheError> {
    let mut counts = Counts::default();
    for outcome in Outcome::ALL {
        let stored = cache.get(&counter(policy, minute, outcome)).await?;
        let n = stored.and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse::<u64>().ok()).unwrap_or(0);
        counts.set(outcome, n);
    }
    Ok(counts)
}

/// Decisions of a policy per minute (the last day is kept).
#[utoipa::path(
    get, path = "/v1/ratelimit/policies/{id}/stats", tag = "ratelimit",
    params(("id" = String, Path), StatsParams),
    security(("admin_key" = ["admin", "read", "ratelimit:write"])),
    responses(
        (status = 200, description = "Totals and a per-minute timeline", body = PolicyStats),
        (status = 400, description = "Malformed time", body = Problem),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such policy", body = Problem),
        (status = 422, description = "`from` not before `to`, or more than a day", body = Problem),
    )
)]
pub(crate) async fn policy_stats(
    State(state): State<AppState>,
    _: Authorized<PolicyReaders>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<StatsParams>,
) -> Result<Json<PolicyStats>, ApiError> {
    let to = params.to.unwrap_or_else(now_millis);
    let from = params.from.unwrap_or(Millis(to.0 - 60 * MINUTE_MS));
    if from >= to || to.0 - from.0 > MAX_MINUTES * MINUTE_MS {
        return Err(ApiError::validation(vec![FieldError {
            field: "from".into(),
            message: "must be before `to`, at most a day earlier".into(),
        }]));
    }
    let mut conn = state.db.pool().acquire().await?;
    load(&mut conn, &id).await?;
    drop(conn);
    state.tally.flush().await;
    let mut totals = Counts::default();
    let mut timeline = Vec::new();
    for minute in from.0.div_euclid(MINUTE_MS)..=(to.0 - 1).div_euclid(MINUTE_MS) {
        let counts = minute_counts(&state.cache, &id, minute).await?;
        let any = counts.allowed + counts.denied + counts.shadow_denied + counts.store_unavailable > 0;
        if any {
            totals.add(counts);
            timeline.push(Minute { at: Millis(minute * MINUTE_MS), counts });
        }
    }
    Ok(Json(PolicyStats { policy: id, from, to, totals, timeline }))
}
