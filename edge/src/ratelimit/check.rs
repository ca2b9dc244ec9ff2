//! `POST /ratelimit/v1/check` at the edge: decisions for other workers and origins, next
//! to them, in the platform's counters, with the same request and answer as the core's
//! `POST /v1/ratelimit/check` (docs/ratelimit.md).
//!
//! Callers authenticate with a core key holding `ratelimit:check`; the core publishes
//! those keys' SHA-256 hashes and expiry (`rl-checkers`), so a revoked key stops working
//! at the edge within the publish and one recheck interval. The `edge` domain's policies
//! with `route` = `check` limit the callers themselves. Any domain published to the edge
//! (`rl/<domain>`) can be checked.

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;
use verge_shared::ratelimit::{Decision, headers};

use super::{DECISION_KIND, Outcome, decide, fields, sets};
use crate::body::Body;
use crate::events::Events;
use crate::host::Host;

pub(crate) const PATH: &str = "/ratelimit/v1/check";
/// The most descriptors one call may carry, as in the core.
const MAX_DESCRIPTORS: usize = 100;
/// The most a single descriptor may cost, as in the core.
const MAX_COST: u64 = 1_000_000;

/// A checked call: each descriptor's entries and cost.
struct Call {
    domain: String,
    descriptors: Vec<(Vec<(String, String)>, u32)>,
}

pub(crate) async fn serve<H: Host>(host: &H, request: &Request<Body>, events: &mut Events) -> Response<Body> {
    if request.method() != Method::POST {
        return crate::problem::method_not_allowed("POST");
    }
    let token = match authorize(host, request).await {
        Ok(token) => token,
        Err(refused) => return refused,
    };
    let facts = super::Facts::of(host, request, "check", Some(token));
    // The caller's own limits; their fields would only muddle the answer's, which
    // describe the descriptors checked.
    if let Err(refused) = super::enforce(host, &facts, events).await {
        return refused;
    }
    let call = match parse(request.body()) {
        Ok(call) => call,
        Err(errors) => return invalid(&errors),
    };
    answer(host, &call, events).await
}

/// The caller's key, if the core published it as a checker and it has not expired.
async fn authorize<'r, H: Host>(host: &H, request: &'r Request<Body>) -> Result<&'r str, Response<Body>> {
    let Some(token) = crate::flags::client_token(request) else {
        let mut response = crate::problem::response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send a key with the `ratelimit:check` scope as `Authorization: Bearer …`",
        );
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"verge\""));
        return Err(response);
    };
    let hash = verge_shared::sha256_hex(token.as_bytes());
    let now = host.now_millis();
    // Every published hash is compared in full, so timing says nothing about which
    // (or how much of one) matched.
    let known = sets::checkers(host).await.iter().fold(false, |found, checker| {
        let same = bool::from(checker.hash.as_bytes().ct_eq(hash.as_bytes()));
        found | (same && checker.expires_at_ms.is_none_or(|at| at > now))
    });
    if known {
        Ok(token)
    } else {
        Err(crate::problem::response(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this key may not check rate limits here (unknown, revoked, expired, or without `ratelimit:check`)",
        ))
    }
}

/// Reads the body as the core does, reporting every problem with its JSON pointer.
fn parse(body: &[u8]) -> Result<Call, Vec<(String, String)>> {
    let fail = |field: &str, message: &str| vec![(field.to_owned(), message.to_owned())];
    let value: Value = serde_json::from_slice(body).map_err(|err| fail("", &format!("not JSON: {err}")))?;
    let object = value.as_object().ok_or_else(|| fail("", "must be an object {domain, descriptors}"))?;
    let mut errors = Vec::new();
    for key in object.keys().filter(|k| !["domain", "descriptors"].contains(&k.as_str())) {
        errors.push((format!("/{key}"), "unknown member; known: domain, descriptors".to_owned()));
    }
    let domain = object.get("domain").and_then(Value::as_str).unwrap_or_default();
    let domain_ok = (1..=64).contains(&domain.len())
        && domain.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if !domain_ok {
        errors.push(("/domain".into(), "must be 1 to 64 of a-z, 0-9, `_`, `-` and `.`".into()));
    }
    let listed = object.get("descriptors").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if listed.is_empty() || listed.len() > MAX_DESCRIPTORS {
        errors.push(("/descriptors".into(), format!("must hold 1 to {MAX_DESCRIPTORS} descriptors")));
    }
    let mut descriptors = Vec::new();
    for (i, descriptor) in listed.iter().enumerate().take(MAX_DESCRIPTORS) {
        descriptors.push(parse_descriptor(i, descriptor, &mut errors));
    }
    if errors.is_empty() { Ok(Call { domain: domain.to_owned(), descriptors }) } else { Err(errors) }
}

fn parse_descriptor(i: usize, descriptor: &Value, errors: &mut Vec<(String, String)>) -> (Vec<(String, String)>, u32) {
    let at = format!("/descriptors/{i}");
    let empty = Map::new();
    let object = descriptor.as_object().unwrap_or(&empty);
    for key in object.keys().filter(|k| !["entries", "cost"].contains(&k.as_str())) {
        errors.push((format!("{at}/{key}"), "unknown member; known: entries, cost".into()));
    }
    let cost = match object.get("cost") {
        None => Some(1),
        Some(cost) => cost.as_u64().filter(|c| (1..=MAX_COST).contains(c)).map(|c| c as u32),
    };
    if cost.is_none() {
        errors.push((format!("{at}/cost"), format!("must be a whole number from 1 to {MAX_COST}")));
    }
    let entries = object.get("entries").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if entries.is_empty() || entries.len() > 9 {
        errors.push((format!("{at}/entries"), "must hold 1 to 9 entries".into()));
    }
    let mut parsed = Vec::new();
    for (j, entry) in entries.iter().enumerate() {
        let text = |name: &str, max: usize| {
            entry.get(name).and_then(Value::as_str).filter(|t| (1..=max).contains(&t.len())).map(str::to_owned)
        };
        match (text("key", 64), text("value", 512)) {
            (Some(key), Some(value)) => parsed.push((key, value)),
            (key, _) => {
                let (field, message) = match key {
                    None => ("key", "must be 1 to 64 characters"),
                    Some(_) => ("value", "must be 1 to 512 characters"),
                };
                errors.push((format!("{at}/entries/{j}/{field}"), message.into()));
            }
        }
    }
    (parsed, cost.unwrap_or(1))
}

fn invalid(errors: &[(String, String)]) -> Response<Body> {
    let detail = errors.iter().map(|(field, message)| format!("{field}: {message}")).collect::<Vec<_>>().join("; ");
    let list: Vec<Value> = errors.iter().map(|(field, message)| json!({"field": field, "message": message})).collect();
    problem_with(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", &detail, "errors", Value::Array(list))
}

/// A problem document with one extension member.
fn problem_with(status: StatusCode, code: &str, detail: &str, name: &str, value: Value) -> Response<Body> {
    let mut response = crate::problem::response(status, code, detail);
    if let Ok(Value::Object(mut document)) = serde_json::from_slice::<Value>(response.body()) {
        document.insert(name.to_owned(), value);
        *response.body_mut() = Value::Object(document).to_string().into_bytes();
    }
    response
}

/// Decides every descriptor against the domain's policies and answers as the core does.
async fn answer<H: Host>(host: &H, call: &Call, events: &mut Events) -> Response<Body> {
    let set = sets::policies(host, &call.domain).await;
    let mut results = Vec::with_capacity(call.descriptors.len());
    let mut applied = Vec::new();
    let (mut denied, mut unavailable, mut wait) = (false, false, None::<u64>);
    for (entries, cost) in &call.descriptors {
        let descriptor: Vec<(&str, &str)> = entries.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let Some(selected) = set.set.select(&call.domain, &descriptor) else {
            results.push(json!({"policy": null, "allowed": true, "shadow_denied": false, "plan": null, "limit": null,
                "period_seconds": null, "remaining": null, "reset_seconds": null, "retry_after_seconds": null,
                "store_unavailable": false}));
            continue;
        };
        let (decision, outcome) = decide(host, &selected, *cost).await;
        events.push(host, DECISION_KIND, &[("policy", &selected.policy.id), ("outcome", outcome.as_str())]);
        applied.extend(fields(&selected, &decision, outcome));
        let blocks = !decision.allowed && outcome != Outcome::ShadowDenied;
        denied |= blocks;
        unavailable |= blocks && outcome == Outcome::StoreUnavailable;
        let retry = if decision.allowed { None } else { headers::retry_after(&decision) };
        if blocks {
            // A cost no wait will ever allow has no Retry-After, as in the core.
            wait = wait.max(retry);
        }
        results.push(result(&selected, &decision, outcome, retry));
    }
    let mut response = if !denied {
        let body = json!({"allowed": true, "results": results}).to_string().into_bytes();
        let mut response = Response::new(body);
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    } else if unavailable {
        let detail = "a fail-closed policy's counters cannot answer";
        problem_with(StatusCode::SERVICE_UNAVAILABLE, "counter_store_unavailable", detail, "results", results.into())
    } else {
        let detail = "a rate-limit policy denies this request";
        problem_with(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail, "results", results.into())
    };
    if let Some(wait) = wait {
        response.headers_mut().insert(header::RETRY_AFTER, wait.into());
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    super::annotate(&applied, &mut response);
    response
}

fn result(
    selected: &verge_shared::ratelimit::Selected<'_>,
    decision: &Decision,
    outcome: Outcome,
    retry: Option<u64>,
) -> Value {
    let store_unavailable = outcome == Outcome::StoreUnavailable;
    json!({
        "policy": selected.policy.id,
        "allowed": decision.allowed || outcome == Outcome::ShadowDenied,
        "shadow_denied": outcome == Outcome::ShadowDenied,
        "plan": selected.plan,
        "limit": selected.limit.limit,
        "period_seconds": selected.limit.period_secs,
        "remaining": decision.remaining,
        "reset_seconds": headers::seconds_up(decision.reset_after_us),
        "retry_after_seconds": retry,
        "store_unavailable": store_unavailable,
    })
}
