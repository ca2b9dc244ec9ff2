//! Rate limits on the edge's own routes: the `edge` domain's policies, published by the
//! core as `rl/edge`, counted in the platform's counters (never in edge KV).
//!
//! A request is described once per policy shape (the keys a policy names, in order) from
//! what the edge knows of it: client address and prefix, country, host, path, method,
//! route, API key, headers. Each shape selects at most one policy (the most specific, as in
//! the core) and every selected policy must allow, as envoy applies each of a request's
//! descriptors. Counting is a window over the platform's atomic `increment`: add the cost
//! to this window's counter, read the previous one (sliding), decide with the same
//! `window::decide` the core runs, and take the cost back when denied, so a denied
//! request is not counted there either. Token-bucket policies are enforced at the edge as
//! a sliding window of the same limit and period; only the global tier runs GCRA.
//!
//! Counter names are `<expires-at seconds>:<hash>:<window>` (see
//! `verge_kv_store::counters`): the hash keeps request values (an API key, a header) out
//! of the counter store and bounds the name, and the expiry lets a store forget a window
//! it no longer needs. Policy sets are read as `sets` keeps them, so a policy change
//! takes effect within a second.

pub(crate) mod check;
pub(crate) mod sets;
#[cfg(test)]
mod tests;

use http::{HeaderValue, Request, Response, StatusCode, header};
pub(crate) use verge_shared::ratelimit::Outcome;
use verge_shared::ratelimit::window::{self, Kind, WindowState};
use verge_shared::ratelimit::{Decision, Failure, Limit, Mode, Selected, headers, ip_prefix};

use crate::body::Body;
use crate::events::Events;
use crate::host::Host;

/// The domain whose policies the edge enforces.
pub(crate) const DOMAIN: &str = "edge";
/// The event each decision reports, from which the core keeps the policy's statistics.
pub(crate) use verge_shared::ratelimit::DECISION_EVENT as DECISION_KIND;

/// What the edge knows of a request, for filling descriptor entries.
pub(crate) struct Facts<'a> {
    pub(crate) route: &'a str,
    pub(crate) request: &'a Request<Body>,
    pub(crate) host_name: &'a str,
    /// As the platform reported it; turned into text only if a policy asks.
    pub(crate) client: crate::host::Client,
    pub(crate) api_key: Option<&'a str>,
}

impl<'a> Facts<'a> {
    pub(crate) fn of<H: Host>(host: &H, request: &'a Request<Body>, route: &'a str, api_key: Option<&'a str>) -> Self {
        let host_name = crate::request::request_host(request);
        Facts { route, request, host_name, client: host.client(), api_key }
    }

    fn value(&self, key: &str) -> Option<String> {
        let text = |value: &str| (!value.is_empty()).then(|| value.to_owned());
        match key {
            "route" => text(self.route),
            "remote_address" => self.client.ip.map(|ip| ip.to_string()),
            "ip_prefix" => self.client.ip.and_then(|ip| ip_prefix(&ip.to_string())),
            "country" => self.client.country.map(|c| String::from_utf8_lossy(&c).into_owned()),
            "host" => text(&self.host_name.to_ascii_lowercase()),
            "path" => text(self.request.uri().path()),
            "method" => text(self.request.method().as_str()),
            "api_key" => self.api_key.and_then(text),
            _ => {
                let name = key.strip_prefix("header.")?;
                self.request.headers().get(name).and_then(|v| v.to_str().ok()).and_then(text)
            }
        }
    }
}

/// What the policies said about a request that may go ahead: the IETF fields to add.
#[derive(Debug, Default)]
pub(crate) struct Allowed {
    fields: Vec<(String, String)>,
}

impl Allowed {
    /// Adds `RateLimit-Policy` and `RateLimit` to the response, one item per policy.
    pub(crate) fn annotate(self, response: &mut Response<Body>) {
        annotate(&self.fields, response);
    }
}

fn annotate(fields: &[(String, String)], response: &mut Response<Body>) {
    if fields.is_empty() {
        return;
    }
    let join = |pick: fn(&(String, String)) -> &str| fields.iter().map(pick).collect::<Vec<_>>().join(", ");
    for (name, value) in [("ratelimit-policy", join(|f| &f.0)), ("ratelimit", join(|f| &f.1))] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
}

/// Applies the `edge` policies to a request: `Ok` with the fields to add when it may go
/// ahead, `Err` with the 429 (or 503 for a fail-closed policy whose counters cannot
/// answer) when it may not.
pub(crate) async fn enforce<H: Host>(
    host: &H,
    facts: &Facts<'_>,
    events: &mut Events,
) -> Result<Allowed, Response<Body>> {
    let set = sets::policies(host, DOMAIN).await;
    if set.set.policies.is_empty() || !set.may_apply(facts.route) {
        return Ok(Allowed::default());
    }
    let mut allowed = Allowed::default();
    let mut refusal: Option<Response<Body>> = None;
    let mut seen: Vec<&str> = Vec::new();
    for selected in select_all(&set, facts) {
        if seen.contains(&selected.policy.id.as_str()) {
            continue;
        }
        seen.push(&selected.policy.id);
        let policy = selected.policy;
        let (decision, outcome) = decide(host, &selected, 1).await;
        events.push(host, DECISION_KIND, &[("policy", &policy.id), ("outcome", outcome.as_str())]);
        if let Some(fields) = fields(&selected, &decision, outcome) {
            allowed.fields.push(fields);
        }
        if refusal.is_none() {
            refusal = match outcome {
                Outcome::Denied => Some(too_many(&policy.id, &decision)),
                Outcome::StoreUnavailable if !decision.allowed => Some(unavailable(&policy.id)),
                _ => None,
            };
        }
    }
    match refusal {
        Some(mut response) => {
            annotate(&allowed.fields, &mut response);
            Err(response)
        }
        None => Ok(allowed),
    }
}

/// One selected policy per descriptor shape (and tier key) the set holds; each fact is
/// read from the request once, however many shapes name it.
fn select_all<'p>(policies: &'p sets::Policies, facts: &Facts<'_>) -> Vec<Selected<'p>> {
    let mut known: Vec<(&str, Option<String>)> = Vec::new();
    let mut fact = |key: &'p str| match known.iter().find(|(k, _)| *k == key) {
        Some((_, value)) => value.clone(),
        None => {
            let value = facts.value(key);
            known.push((key, value.clone()));
            value
        }
    };
    let mut selected = Vec::new();
    'shapes: for (keys, tier_key) in &policies.shapes {
        let mut values: Vec<(&str, String)> = Vec::with_capacity(keys.len() + 1);
        for key in keys {
            let Some(value) = fact(key) else { continue 'shapes };
            values.push((key, value));
        }
        // A request without the tier key is held to the policy's base limit.
        if let Some(tier_key) = tier_key
            && let Some(plan) = fact(tier_key)
        {
            values.push((tier_key, plan));
        }
        let descriptor: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        selected.extend(policies.set.select(DOMAIN, &descriptor));
    }
    selected
}

/// The platform counter of window `window` (of `period_us`) of the counter whose SHA-256
/// is `hash`: kept until the window after it has ended too.
pub(crate) fn counter_name(hash: &str, window: u64, period_us: u64) -> String {
    let expires_secs = (window + 2).saturating_mul(period_us).div_ceil(1_000_000);
    format!("{expires_secs}:{}:{window}", &hash[..32])
}

/// Counts a request of `cost` under `selected` now and decides it, the policy's mode and
/// failure mode applied.
pub(crate) async fn decide<H: Host>(host: &H, selected: &Selected<'_>, cost: u32) -> (Decision, Outcome) {
    let policy = selected.policy;
    let now_us = host.now_millis().saturating_mul(1000);
    match count(host, selected, now_us, cost).await {
        Ok(decision) if decision.allowed => (decision, Outcome::Allowed),
        Ok(decision) if policy.mode == Mode::Shadow => (decision, Outcome::ShadowDenied),
        Ok(decision) => (decision, Outcome::Denied),
        Err(_) => {
            let open = policy.failure == Failure::Open;
            let decision = Decision { allowed: open, remaining: 0, retry_after_us: 1_000_000, reset_after_us: 0 };
            (decision, Outcome::StoreUnavailable)
        }
    }
}

/// Counts `cost` in `selected`'s window and decides it.
async fn count<H: Host>(
    host: &H,
    selected: &Selected<'_>,
    now_us: u64,
    cost: u32,
) -> Result<Decision, crate::HostError> {
    let limit: Limit = selected.limit;
    let kind = limit.window().unwrap_or(Kind::Sliding);
    let period_us = limit.period_us().max(1);
    let index = now_us / period_us;
    let hash = counter_hash(&selected.counter);
    let current = counter_name(&hash, index, period_us);
    let after = host.counter_add(&current, i64::from(cost)).await?;
    let previous = match kind {
        Kind::Sliding if index > 0 => previous_count(host, counter_name(&hash, index - 1, period_us)).await?,
        _ => 0,
    };
    let state = WindowState {
        window: index,
        current: u64::try_from(after - i64::from(cost)).unwrap_or(0),
        previous: u64::try_from(previous).unwrap_or(0),
    };
    let (decision, counted) = window::decide(kind, limit.limit, period_us, Some(state), now_us, cost);
    if counted.is_none() {
        // Not counted when denied; a failed take-back only makes the window stricter.
        let _ = host.counter_add(&current, -i64::from(cost)).await;
    }
    Ok(decision)
}

/// Counter hashes this instance has computed: a client's next request names the same
/// counter, and SHA-256 was the largest single cost of an enforced request in the guest.
const HASHES_KEPT: usize = 4096;

thread_local! {
    static HASHES: std::cell::RefCell<std::collections::HashMap<String, std::sync::Arc<str>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

fn counter_hash(counter: &str) -> std::sync::Arc<str> {
    if let Some(hash) = HASHES.with_borrow(|hashes| hashes.get(counter).cloned()) {
        return hash;
    }
    let hash: std::sync::Arc<str> = verge_shared::sha256_hex(counter.as_bytes()).into();
    HASHES.with_borrow_mut(|hashes| {
        if hashes.len() >= HASHES_KEPT {
            hashes.clear();
        }
        hashes.insert(counter.to_owned(), hash.clone());
    });
    hash
}

/// Counts of windows that have ended, as this instance read them: an ended window no
/// longer grows (but for requests that read the clock just before it ended), so a
/// sliding window reads its previous window once per instance, not on every request.
const ENDED_WINDOWS_KEPT: usize = 4096;

thread_local! {
    static ENDED_WINDOWS: std::cell::RefCell<std::collections::HashMap<String, i64>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

async fn previous_count<H: Host>(host: &H, name: String) -> Result<i64, crate::HostError> {
    if let Some(count) = ENDED_WINDOWS.with_borrow(|ended| ended.get(&name).copied()) {
        return Ok(count);
    }
    let count = host.counter_add(&name, 0).await?;
    ENDED_WINDOWS.with_borrow_mut(|ended| {
        if ended.len() >= ENDED_WINDOWS_KEPT {
            ended.clear();
        }
        ended.insert(name, count);
    });
    Ok(count)
}

/// The IETF fields of one decision; none when nothing was counted.
pub(crate) fn fields(selected: &Selected<'_>, decision: &Decision, outcome: Outcome) -> Option<(String, String)> {
    let id = &selected.policy.id;
    (outcome != Outcome::StoreUnavailable)
        .then(|| (headers::policy_field(id, &selected.limit), headers::state_field(id, decision)))
}

/// 503 for a fail-closed policy whose counters cannot answer.
pub(crate) fn unavailable(policy: &str) -> Response<Body> {
    let mut response = crate::problem::response(
        StatusCode::SERVICE_UNAVAILABLE,
        "counter_store_unavailable",
        &format!("the counters of rate-limit policy `{policy}` cannot be read, and it fails closed"),
    );
    response.headers_mut().insert(header::RETRY_AFTER, 1.into());
    response
}

pub(crate) fn too_many(policy: &str, decision: &Decision) -> Response<Body> {
    let mut response = crate::problem::response(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        &format!("rate-limit policy `{policy}` allows no more requests like this one now"),
    );
    if let Some(seconds) = headers::retry_after(decision) {
        response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
