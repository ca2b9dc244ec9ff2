//! The global tier: `POST /v1/ratelimit/check` decides descriptors exactly across every
//! core replica, with one Redis round trip (one script call) for all of a call's
//! descriptors, or the in-process store.
//!
//! Each descriptor falls under at most one policy of the domain (see
//! `PolicySet::select`) and is decided on its own, as envoy's service does: a descriptor
//! allowed is counted even when another in the same call is denied. The answer is 200
//! when every enforcing policy allows, 429 when one denies, and 503 when a fail-closed
//! policy's counter store cannot answer; each carries the IETF `RateLimit-Policy` and
//! `RateLimit` fields and, on 429/503, a problem document with every result.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use verge_shared::ratelimit::{Decision, Failure, Mode, PolicySet, headers};

use super::{Checkers, domain_set, stats};
use crate::cache::{Cache, Take};
use crate::error::{ApiError, ApiJson, FieldError, PROBLEM_JSON, Problem};
use crate::keys::Authorized;
use crate::state::AppState;

/// The most descriptors one call may carry.
pub(crate) const MAX_DESCRIPTORS: usize = 100;
/// The most a single descriptor may cost.
pub(crate) const MAX_COST: u32 = 1_000_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckRequest {
    /// The policies' domain.
    #[schema(pattern = "^[a-z0-9_.-]{1,64}$")]
    domain: String,
    /// 1 to 100 descriptors, each decided on its own.
    #[schema(min_items = 1, max_items = 100)]
    descriptors: Vec<CheckDescriptor>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckDescriptor {
    /// The request's entries, in the order the policies name them (a tier key may be added).
    #[schema(min_items = 1, max_items = 9)]
    entries: Vec<CheckEntry>,
    /// How many units this request takes (default 1), envoy's `hits_addend`.
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1_000_000)]
    cost: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckEntry {
    #[schema(min_length = 1, max_length = 64)]
    key: String,
    #[schema(min_length = 1, max_length = 512)]
    value: String,
}

/// What one descriptor got.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Outcome {
    /// The policy it fell under; null when none applies (then it is allowed, uncounted).
    pub(super) policy: Option<String>,
    /// Whether the request may go ahead (shadow policies always allow).
    pub(super) allowed: bool,
    /// A shadow policy that would have denied.
    pub(super) shadow_denied: bool,
    /// The plan whose limit applied.
    pub(super) plan: Option<String>,
    pub(super) limit: Option<u32>,
    pub(super) period_seconds: Option<u32>,
    pub(super) remaining: Option<u32>,
    /// Seconds until the quota is whole again.
    pub(super) reset_seconds: Option<u64>,
    /// On a denial: seconds to wait; null when no wait helps (the cost exceeds the policy).
    pub(super) retry_after_seconds: Option<u64>,
    /// The counter store could not answer; the policy's failure mode decided.
    pub(super) store_unavailable: bool,
    #[serde(skip)]
    pub(super) fields: Option<(String, String)>,
    #[serde(skip)]
    pub(super) blocks: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CheckAnswer {
    /// True when no enforcing policy denied.
    allowed: bool,
    results: Vec<Outcome>,
}

/// A whole number in 1..=MAX_COST; JSON writes `3` and `3.0` alike.
fn cost_of(cost: Option<f64>) -> Option<u32> {
    match cost {
        None => Some(1),
        Some(c) if c.fract() == 0.0 && (1.0..=f64::from(MAX_COST)).contains(&c) => Some(c as u32),
        Some(_) => None,
    }
}

fn check_request(request: &CheckRequest) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    let error = |field: String, message: &str| FieldError { field, message: message.to_owned() };
    let domain_ok = (1..=64).contains(&request.domain.len())
        && request.domain.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if !domain_ok {
        errors.push(error("/domain".into(), "must be 1 to 64 of a-z, 0-9, `_`, `-` and `.`"));
    }
    if request.descriptors.is_empty() || request.descriptors.len() > MAX_DESCRIPTORS {
        errors.push(error("/descriptors".into(), "must hold 1 to 100 descriptors"));
    }
    for (i, descriptor) in request.descriptors.iter().enumerate().take(MAX_DESCRIPTORS + 1) {
        if descriptor.entries.is_empty() || descriptor.entries.len() > 9 {
            errors.push(error(format!("/descriptors/{i}/entries"), "must hold 1 to 9 entries"));
        }
        if cost_of(descriptor.cost).is_none() {
            errors.push(error(format!("/descriptors/{i}/cost"), "must be from 1 to 1000000"));
        }
        for (j, entry) in descriptor.entries.iter().enumerate() {
            if !(1..=64).contains(&entry.key.len()) {
                errors.push(error(format!("/descriptors/{i}/entries/{j}/key"), "must be 1 to 64 characters"));
            }
            if !(1..=512).contains(&entry.value.len()) {
                errors.push(error(format!("/descriptors/{i}/entries/{j}/value"), "must be 1 to 512 characters"));
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(ApiError::validation(errors)) }
}

/// A descriptor as `decide` takes it: its entries and its cost.
pub(crate) type Weighed<'a> = (Vec<(&'a str, &'a str)>, u32);

/// Decides descriptors (entries and cost each) against `set`, all counters in one store
/// round trip: the one place the global tier's rules live (the HTTP route and envoy's RLS
/// both call it). A descriptor no policy covers is allowed and not counted.
pub(crate) async fn decide(
    cache: &Cache,
    set: &PolicySet,
    domain: &str,
    descriptors: &[Weighed<'_>],
    now_us: u64,
) -> Vec<Outcome> {
    let selected: Vec<_> = descriptors.iter().map(|(entries, _)| set.select(domain, entries)).collect();
    let counters: Vec<String> = selected.iter().flatten().map(|s| format!("rl:{}", s.counter)).collect();
    let takes: Vec<Take<'_>> = selected
        .iter()
        .zip(descriptors)
        .filter_map(|(selected, (_, cost))| selected.as_ref().map(|s| (s.limit, *cost)))
        .zip(&counters)
        .map(|((limit, cost), key)| Take { key, limit, cost })
        .collect();
    let decided = if takes.is_empty() { Ok(Vec::new()) } else { cache.take_many(&takes, now_us).await };
    if let Err(err) = &decided {
        tracing::warn!(error = %err, "rate-limit counter store unavailable; policies' failure modes decide");
    }
    let mut decisions = decided.as_ref().ok().map(|d| d.iter());
    selected
        .into_iter()
        .map(|selected| {
            let Some(selected) = selected else { return Outcome::uncovered() };
            let policy = selected.policy;
            let (decision, store_unavailable) = match decisions.as_mut().and_then(Iterator::next) {
                Some(decision) => (*decision, false),
                None => {
                    let allowed = policy.failure == Failure::Open;
                    let retry_after_us = if allowed { 0 } else { 1_000_000 };
                    (Decision { allowed, remaining: 0, retry_after_us, reset_after_us: 0 }, true)
                }
            };
            let shadow = policy.mode == Mode::Shadow;
            let fields =
                (headers::policy_field(&policy.id, &selected.limit), headers::state_field(&policy.id, &decision));
            Outcome {
                policy: Some(policy.id.clone()),
                allowed: decision.allowed || shadow,
                shadow_denied: shadow && !decision.allowed,
                plan: selected.plan.map(str::to_owned),
                limit: Some(selected.limit.limit),
                period_seconds: Some(selected.limit.period_secs),
                remaining: Some(decision.remaining),
                reset_seconds: Some(headers::seconds_up(decision.reset_after_us)),
                retry_after_seconds: if decision.allowed { None } else { headers::retry_after(&decision) },
                store_unavailable,
                fields: (!store_unavailable).then_some(fields),
                blocks: !decision.allowed && !shadow,
            }
        })
        .collect()
}

impl Outcome {
    fn outcome(&self) -> stats::Outcome {
        match self {
            Outcome { store_unavailable: true, .. } => stats::Outcome::StoreUnavailable,
            Outcome { shadow_denied: true, .. } => stats::Outcome::ShadowDenied,
            Outcome { blocks: true, .. } => stats::Outcome::Denied,
            _ => stats::Outcome::Allowed,
        }
    }

    fn uncovered() -> Outcome {
        Outcome {
            policy: None,
            allowed: true,
            shadow_denied: false,
            plan: None,
            limit: None,
            period_seconds: None,
            remaining: None,
            reset_seconds: None,
            retry_after_seconds: None,
            store_unavailable: false,
            fields: None,
            blocks: false,
        }
    }
}

/// Decide descriptors against a domain's policies.
#[utoipa::path(
    post, path = "/v1/ratelimit/check", tag = "ratelimit",
    request_body = CheckRequest,
    security(("admin_key" = ["admin", "ratelimit:check", "ratelimit:write"])),
    responses(
        (status = 200, description = "Every enforcing policy allows", body = CheckAnswer,
         headers(("RateLimit-Policy" = String, description = "IETF: each applied policy's quota and window"),
                 ("RateLimit" = String, description = "IETF: remaining and seconds to reset, per policy"))),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 422, description = "Malformed descriptors (too many, empty, bad cost)", body = Problem),
        (status = 429, description = "A policy denies; `results` says which, `Retry-After` when", body = Problem),
        (status = 503, description = "A fail-closed policy's counter store cannot answer", body = Problem),
    )
)]
pub(crate) async fn check(
    State(state): State<AppState>,
    _: Authorized<Checkers>,
    ApiJson(request): ApiJson<CheckRequest>,
) -> Result<Response, ApiError> {
    run(&state, request).await
}

/// The route's work once its request is parsed: shared with the fast lane (`lane`).
pub(super) async fn run(state: &AppState, request: CheckRequest) -> Result<Response, ApiError> {
    check_request(&request)?;
    let set = domain_set(&state.db, &request.domain).await?;
    let now = crate::time::unix_micros();
    let descriptors: Vec<Weighed<'_>> = request
        .descriptors
        .iter()
        .map(|d| (d.entries.iter().map(|e| (e.key.as_str(), e.value.as_str())).collect(), cost_of(d.cost).unwrap_or(1)))
        .collect();
    let results = decide(&state.cache, &set, &request.domain, &descriptors, now).await;
    record(state, &results, now);
    Ok(answer(results))
}

/// Counts decisions made at `now_us` in their policies' statistics and metrics.
pub(crate) fn record(state: &AppState, results: &[Outcome], now_us: u64) {
    for result in results {
        if let Some(policy) = &result.policy {
            let outcome = result.outcome();
            stats::record(&state.tally, policy, (now_us / 1000) as i64, outcome);
            state.metrics.count_decision(policy, outcome.as_str());
        }
    }
}

fn answer(results: Vec<Outcome>) -> Response {
    let mut headers = HeaderMap::new();
    let applied: Vec<&(String, String)> = results.iter().filter_map(|r| r.fields.as_ref()).collect();
    if !applied.is_empty() {
        let join = |pick: fn(&(String, String)) -> &str| applied.iter().map(|f| pick(f)).collect::<Vec<_>>().join(", ");
        for (name, value) in [("ratelimit-policy", join(|f| &f.0)), ("ratelimit", join(|f| &f.1))] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
    let unavailable = results.iter().any(|r| r.blocks && r.store_unavailable);
    let denied = results.iter().any(|r| r.blocks);
    if !denied {
        return (StatusCode::OK, headers, Json(CheckAnswer { allowed: true, results })).into_response();
    }
    let (status, code, title, detail) = if unavailable {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "counter_store_unavailable",
            "Service Unavailable",
            "a fail-closed policy could not reach its counter store; try again shortly",
        )
    } else {
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too Many Requests", "a rate-limit policy denies this request")
    };
    let retry = results.iter().filter(|r| r.blocks).filter_map(|r| r.retry_after_seconds).max();
    if let Some(retry) = retry {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(retry));
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    let body = serde_json::json!({
        "type": format!("urn:verge:problem:{code}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
        "allowed": false,
        "results": results,
    });
    (status, headers, body.to_string()).into_response()
}
