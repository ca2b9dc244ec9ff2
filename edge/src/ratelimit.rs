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
//! it no longer needs. The policy set is read through the manifest at most every
//! [`RECHECK_MS`] per instance, so a policy change takes effect within a second.

use std::cell::RefCell;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, header};
use verge_shared::kv::{MANIFEST_KEY, Manifest, versioned_key};
use verge_shared::ratelimit::window::{self, Kind, WindowState};
use verge_shared::ratelimit::{Decision, Failure, Limit, Mode, PolicySet, Selected, headers, ip_prefix};

use crate::body::Body;
use crate::events::Events;
use crate::host::Host;

/// The domain whose policies the edge enforces.
pub(crate) const DOMAIN: &str = "edge";
const DATASET: &str = "rl/edge";
const PART: &str = "policies";
/// How long an instance trusts the policy set it read before looking at the manifest again.
pub(crate) const RECHECK_MS: u64 = 250;
/// The event each decision reports, from which the core keeps the policy's statistics.
pub(crate) const DECISION_KIND: &str = "ratelimit.decision";

struct Loaded {
    /// The dataset's version and content hash, as the manifest named them.
    version: Option<(u64, String)>,
    checked_at_ms: u64,
    set: Arc<PolicySet>,
}

thread_local! {
    /// Per instance (wasm) or per worker thread (the native node).
    static LOADED: RefCell<Option<Loaded>> = const { RefCell::new(None) };
}

/// The live `edge` policy set; empty when none is published or it cannot be read.
async fn policies<H: Host>(host: &H) -> Arc<PolicySet> {
    let now = host.now_millis();
    let fresh = LOADED.with_borrow(|loaded| {
        loaded.as_ref().filter(|l| now.saturating_sub(l.checked_at_ms) < RECHECK_MS).map(|l| l.set.clone())
    });
    if let Some(set) = fresh {
        return set;
    }
    let version = match host.kv_get(MANIFEST_KEY).await {
        Ok(Some(bytes)) => {
            Manifest::decode(&bytes).ok().and_then(|m| m.get(DATASET).map(|d| (d.version, d.hash.clone())))
        }
        _ => None,
    };
    let known = LOADED.with_borrow(|loaded| {
        loaded.as_ref().filter(|l| l.version.is_some() && l.version == version).map(|l| l.set.clone())
    });
    let set = match (&version, known) {
        (None, _) => Arc::new(PolicySet::default()),
        (Some(_), Some(set)) => set,
        (Some((number, _)), None) => match host.kv_get(&versioned_key(DATASET, *number, PART)).await {
            Ok(Some(bytes)) => Arc::new(PolicySet::from_json(&bytes).unwrap_or_default()),
            _ => Arc::new(PolicySet::default()),
        },
    };
    LOADED.set(Some(Loaded { version, checked_at_ms: now, set: set.clone() }));
    set
}

/// What the edge knows of a request, for filling descriptor entries.
pub(crate) struct Facts<'a> {
    pub(crate) route: &'a str,
    pub(crate) request: &'a Request<Body>,
    pub(crate) host_name: &'a str,
    pub(crate) client_ip: Option<String>,
    pub(crate) country: Option<String>,
    pub(crate) api_key: Option<&'a str>,
}

impl Facts<'_> {
    fn value(&self, key: &str) -> Option<String> {
        let text = |value: &str| (!value.is_empty()).then(|| value.to_owned());
        match key {
            "route" => text(self.route),
            "remote_address" => self.client_ip.clone(),
            "ip_prefix" => self.client_ip.as_deref().and_then(ip_prefix),
            "country" => self.country.clone(),
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
    let set = policies(host).await;
    if set.policies.is_empty() {
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
        let now_us = host.now_millis().saturating_mul(1000);
        let (decision, outcome) = match count(host, &selected, now_us).await {
            Ok(decision) if decision.allowed => (decision, "allowed"),
            Ok(decision) if policy.mode == Mode::Shadow => (decision, "shadow_denied"),
            Ok(decision) => (decision, "denied"),
            Err(_) => {
                let open = policy.failure == Failure::Open;
                let decision = Decision { allowed: open, remaining: 0, retry_after_us: 1_000_000, reset_after_us: 0 };
                (decision, "store_unavailable")
            }
        };
        events.push(host, DECISION_KIND, &[("policy", &policy.id), ("outcome", outcome)]);
        if outcome != "store_unavailable" {
            let fields =
                (headers::policy_field(&policy.id, &selected.limit), headers::state_field(&policy.id, &decision));
            allowed.fields.push(fields);
        }
        if refusal.is_none() {
            refusal = match outcome {
                "denied" => Some(too_many(&policy.id, &decision)),
                "store_unavailable" if !decision.allowed => Some(crate::problem::response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "counter_store_unavailable",
                    &format!("the counters of rate-limit policy `{}` cannot be read, and it fails closed", policy.id),
                )),
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

/// One selected policy per descriptor shape (and tier key) the set holds.
fn select_all<'p>(set: &'p PolicySet, facts: &Facts<'_>) -> Vec<Selected<'p>> {
    let mut shapes: Vec<(Vec<&str>, Option<&str>)> = Vec::new();
    for policy in set.policies.iter().filter(|p| p.domain == DOMAIN) {
        let shape = (policy.shape().collect::<Vec<_>>(), policy.tiers.as_ref().map(|t| t.key.as_str()));
        if !shapes.contains(&shape) {
            shapes.push(shape);
        }
    }
    shapes
        .iter()
        .filter_map(|(keys, tier_key)| {
            let mut values: Vec<(&str, String)> = Vec::with_capacity(keys.len() + 1);
            for key in keys {
                values.push((key, facts.value(key)?));
            }
            if let Some(tier_key) = tier_key
                && let Some(plan) = facts.value(tier_key)
            {
                values.push((tier_key, plan));
            }
            let descriptor: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
            set.select(DOMAIN, &descriptor)
        })
        .collect()
}

/// The platform counter of window `window` (of `period_us`) of the counter whose SHA-256
/// is `hash`: kept until the window after it has ended too.
pub(crate) fn counter_name(hash: &str, window: u64, period_us: u64) -> String {
    let expires_secs = (window + 2).saturating_mul(period_us).div_ceil(1_000_000);
    format!("{expires_secs}:{}:{window}", &hash[..32])
}

/// Counts one request in `selected`'s window and decides it.
async fn count<H: Host>(host: &H, selected: &Selected<'_>, now_us: u64) -> Result<Decision, crate::HostError> {
    let limit: Limit = selected.limit;
    let kind = limit.window().unwrap_or(Kind::Sliding);
    let period_us = limit.period_us().max(1);
    let index = now_us / period_us;
    let hash = verge_shared::sha256_hex(selected.counter.as_bytes());
    let name = |window: u64| counter_name(&hash, window, period_us);
    let current = name(index);
    let after = host.counter_add(&current, 1).await?;
    let previous = match kind {
        Kind::Sliding if index > 0 => host.counter_add(&name(index - 1), 0).await?,
        _ => 0,
    };
    let state = WindowState {
        window: index,
        current: u64::try_from(after - 1).unwrap_or(0),
        previous: u64::try_from(previous).unwrap_or(0),
    };
    let (decision, counted) = window::decide(kind, limit.limit, period_us, Some(state), now_us, 1);
    if counted.is_none() {
        // Not counted when denied; a failed take-back only makes the window stricter.
        let _ = host.counter_add(&current, -1).await;
    }
    Ok(decision)
}

fn too_many(policy: &str, decision: &Decision) -> Response<Body> {
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr};

    use http::Method;
    use serde_json::{Value, json};
    use verge_shared::links::{LinkRecord, link_key};
    use verge_shared::ratelimit::Policy;

    use super::*;
    use crate::host::Client;
    use crate::router::tests::{FakeHost, get, text};

    fn policy(id: &str, document: Value) -> Policy {
        Policy::from_value(id, &document).unwrap_or_else(|errors| panic!("{errors:?}"))
    }

    /// An edge with one link, `/gox` on `go.example`, and `policies` published as `rl/edge`.
    fn edge(policies: &[Policy], version: u64) -> FakeHost {
        let mut manifest = Manifest { snapshot: version, datasets: Vec::new() };
        manifest.set(DATASET, version, &format!("h{version}"));
        let link = LinkRecord {
            id: "lnk_1".into(),
            target: "https://example.com/".into(),
            status: 302,
            expires_at: None,
            expired_url: None,
            exhausted: false,
            password: None,
            forward_query: false,
            ios: None,
            android: None,
            desktop: None,
            countries: Vec::new(),
        };
        let set = PolicySet { policies: policies.to_vec() };
        FakeHost {
            kv: HashMap::from([
                (MANIFEST_KEY.to_owned(), manifest.encode()),
                (versioned_key(DATASET, version, PART), set.to_json()),
                (link_key("go.example", "gox"), link.encode()),
            ]),
            client: Client { ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))), country: Some(*b"NL") },
            ..FakeHost::default()
        }
    }

    fn visit(host: &FakeHost) -> Response<Body> {
        get(host, Method::GET, "http://go.example/gox")
    }

    fn per_client(limit: u32, algorithm: &str) -> Value {
        json!({"name": "redirects per client", "descriptor": [{"key": "route", "value": "links"}, {"key": "remote_address"}],
               "limit": {"algorithm": algorithm, "limit": limit, "period_seconds": 60}})
    }

    fn decisions(host: &FakeHost) -> Vec<(String, String)> {
        host.sent
            .borrow()
            .iter()
            .flat_map(|batch| {
                let batch: Value = serde_json::from_slice(batch).unwrap();
                batch["events"].as_array().unwrap().clone()
            })
            .filter(|event| event["kind"] == DECISION_KIND)
            .map(|event| {
                (event["data"]["policy"].as_str().unwrap().into(), event["data"]["outcome"].as_str().unwrap().into())
            })
            .collect()
    }

    #[test]
    fn redirects_over_the_limit_get_a_429_with_the_ietf_fields_until_the_window_ends() {
        let host = edge(&[policy("rl_links", per_client(3, "fixed_window"))], 1);
        for left in [2, 1, 0] {
            let response = visit(&host);
            assert_eq!(response.status(), StatusCode::FOUND);
            assert_eq!(response.headers()["ratelimit-policy"], "\"rl_links\";q=3;w=60");
            let state = response.headers()["ratelimit"].to_str().unwrap().to_owned();
            assert!(state.starts_with(&format!("\"rl_links\";r={left};t=")), "{state}");
        }
        let refused = visit(&host);
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::CONTENT_TYPE], crate::problem::CONTENT_TYPE);
        assert!(text(&refused).contains("\"code\":\"rate_limited\""), "{}", text(&refused));
        assert_eq!(refused.headers()[header::RETRY_AFTER], "60", "the fixed clock sits on a window start");
        assert!(refused.headers()["ratelimit"].to_str().unwrap().starts_with("\"rl_links\";r=0;"));
        // Denials are not counted, so the count stays at the limit.
        let counted: Vec<i64> = host.counters.borrow().values().copied().collect();
        assert_eq!(counted, [3]);
        assert_eq!(
            decisions(&host),
            ["allowed", "allowed", "allowed", "denied"].map(|o| ("rl_links".to_owned(), o.to_owned()))
        );
        host.elapsed_ms.set(60_000);
        assert_eq!(visit(&host).status(), StatusCode::FOUND, "a new window");
    }

    #[test]
    fn each_client_has_its_own_count_and_other_routes_are_not_counted() {
        let mut host = edge(&[policy("rl_links", per_client(1, "sliding_window"))], 1);
        assert_eq!(visit(&host).status(), StatusCode::FOUND);
        assert_eq!(visit(&host).status(), StatusCode::TOO_MANY_REQUESTS);
        host.client.ip = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!(visit(&host).status(), StatusCode::FOUND, "another client");
        let health = get(&host, Method::GET, "/__verge/health");
        assert!(health.headers().get("ratelimit").is_none(), "health is no limited route");
    }

    #[test]
    fn a_sliding_window_remembers_the_previous_window() {
        let host = edge(&[policy("rl_links", per_client(4, "sliding_window"))], 1);
        for _ in 0..4 {
            assert_eq!(visit(&host).status(), StatusCode::FOUND);
        }
        // A quarter into the next window, three quarters of the last one's 4 still count.
        host.elapsed_ms.set(75_000);
        assert_eq!(visit(&host).status(), StatusCode::FOUND);
        assert_eq!(visit(&host).status(), StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn shadow_policies_block_nothing_but_report_what_they_would_have_done() {
        let mut shadow = per_client(1, "fixed_window");
        shadow["mode"] = json!("shadow");
        let host = edge(&[policy("rl_shadow", shadow)], 1);
        for _ in 0..3 {
            assert_eq!(visit(&host).status(), StatusCode::FOUND);
        }
        let outcomes: Vec<String> = decisions(&host).into_iter().map(|(_, outcome)| outcome).collect();
        assert_eq!(outcomes, ["allowed", "shadow_denied", "shadow_denied"]);
    }

    #[test]
    fn without_counters_each_policy_fails_the_way_it_says() {
        let mut closed = per_client(10, "fixed_window");
        closed["on_store_failure"] = json!("deny");
        let mut host = edge(&[policy("rl_closed", closed)], 1);
        host.counters_down = true;
        let refused = visit(&host);
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(text(&refused).contains("\"code\":\"counter_store_unavailable\""));
        let mut open = edge(&[policy("rl_open", per_client(10, "fixed_window"))], 2);
        open.counters_down = true;
        open.elapsed_ms.set(RECHECK_MS); // the same instance, once it looks again
        let allowed = visit(&open);
        assert_eq!(allowed.status(), StatusCode::FOUND);
        assert!(allowed.headers().get("ratelimit").is_none(), "no figures to report");
        assert_eq!(decisions(&open), [("rl_open".to_owned(), "store_unavailable".to_owned())]);
    }

    #[test]
    fn the_most_specific_policy_of_a_shape_applies_and_every_shape_counts() {
        let mut vip = per_client(100, "fixed_window");
        vip["descriptor"][1]["value"] = json!("203.0.113.0/24");
        let country = json!({"name": "per country", "descriptor": [{"key": "country", "value": "NL"}],
                             "limit": {"algorithm": "fixed_window", "limit": 2, "period_seconds": 60}});
        let host = edge(
            &[policy("rl_any", per_client(1, "fixed_window")), policy("rl_vip", vip), policy("rl_nl", country)],
            1,
        );
        let first = visit(&host);
        assert_eq!(first.status(), StatusCode::FOUND);
        let applied = first.headers()["ratelimit-policy"].to_str().unwrap();
        assert_eq!(applied, "\"rl_vip\";q=100;w=60, \"rl_nl\";q=2;w=60", "the /24 beats any address");
        assert_eq!(visit(&host).status(), StatusCode::FOUND);
        let third = visit(&host);
        assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS, "the country policy is spent");
    }

    #[test]
    fn ofrep_calls_are_counted_per_client_key_and_refusals_carry_cors() {
        let per_key = json!({"name": "evaluations per key", "descriptor": [{"key": "route", "value": "ofrep"}, {"key": "api_key"}],
                             "limit": {"algorithm": "fixed_window", "limit": 1, "period_seconds": 60}});
        let host = edge(&[policy("rl_keys", per_key)], 1);
        let call = |method: Method, key: &str| {
            let request = Request::builder()
                .method(method)
                .uri("/ofrep/v1/evaluate/flags/beta")
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .body(b"{}".to_vec())
                .unwrap();
            futures_executor::block_on(crate::handle(&host, request))
        };
        assert_eq!(call(Method::OPTIONS, "fck_a").status(), StatusCode::NO_CONTENT, "preflights are free");
        assert_ne!(call(Method::POST, "fck_a").status(), StatusCode::TOO_MANY_REQUESTS);
        let refused = call(Method::POST, "fck_a");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_ne!(call(Method::POST, "fck_b").status(), StatusCode::TOO_MANY_REQUESTS, "another key");
        let names: Vec<String> = host.counters.borrow().keys().cloned().collect();
        assert!(names.iter().all(|name| !name.contains("fck_")), "keys never reach the counter store: {names:?}");
    }

    #[test]
    fn a_new_policy_set_applies_once_the_recheck_interval_has_passed() {
        let mut host = edge(&[], 1);
        assert_eq!(visit(&host).headers().get("ratelimit"), None);
        let newer = edge(&[policy("rl_links", per_client(5, "fixed_window"))], 2);
        host.kv = newer.kv;
        host.elapsed_ms.set(RECHECK_MS);
        assert_eq!(visit(&host).headers()["ratelimit-policy"], "\"rl_links\";q=5;w=60");
    }
}
