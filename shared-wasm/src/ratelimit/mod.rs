//! Rate limits: policies, which one a request falls under, each algorithm's decision, and
//! the IETF header fields that report it.
//!
//! The core (the global tier, `POST /v1/ratelimit/check`) and every edge use this module,
//! so a policy selects, counts and answers the same way wherever it is enforced; only
//! where the counters live differs (Redis or process memory in the core, the platform's
//! own counters at the edge). Nothing here reads a clock or a counter: callers pass both.

mod alert;
pub mod headers;
mod limit;
mod net;
pub mod policy;
#[cfg(test)]
mod tests;
pub mod window;

use serde_json::Value;

pub use self::alert::{Alert, MAX_ALERT_MINUTES};
pub use self::limit::{Algorithm, Limit, MAX_LIMIT, MAX_PERIOD_SECS};
pub use self::net::{Network, parse_ip};
pub use self::policy::{Entry, Failure, Mode, Pattern, Policy, Tiers};
pub use crate::gcra::Decision;

/// What became of one request under one policy: the statistics' categories and the
/// `outcome` of the decision events edges report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Denied,
    /// A shadow policy would have denied.
    ShadowDenied,
    /// The counters could not answer; the policy's failure mode decided.
    StoreUnavailable,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Outcome::Allowed, Outcome::Denied, Outcome::ShadowDenied, Outcome::StoreUnavailable];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::ShadowDenied => "shadow_denied",
            Outcome::StoreUnavailable => "store_unavailable",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|outcome| outcome.as_str() == text)
    }
}

/// The event kind an edge reports each decision under: data `{policy, outcome}`.
pub const DECISION_EVENT: &str = "ratelimit.decision";

/// The dataset naming the keys that may use the edge's check route, and its one part: a
/// JSON array of `{"hash": <hex SHA-256 of the token>, "expires_at": <unix ms> | null}`.
/// (No domain's dataset can be named so: `rl/<domain>` always holds a `/`.)
pub const CHECKERS_DATASET: &str = "rl-checkers";
pub const CHECKERS_PART: &str = "keys";

/// The edge routes a policy in the `edge` domain can be scoped to with the `route` key.
pub const ROUTES: &[&str] = &["links", "ofrep", "check"];

/// A problem with a policy, located by JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub pointer: String,
    pub message: String,
}

impl Invalid {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid { pointer: pointer.into(), message: message.into() }
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub(crate) fn glob_matches(pattern: &str, value: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = value.strip_prefix(first) else { return false };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else { return rest.is_empty() };
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A request's descriptor: `(key, value)` entries in order.
pub type Descriptor<'a> = [(&'a str, &'a str)];

/// The policies of one domain, ready to select from.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
}

/// The policy a descriptor falls under, and the counter it counts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected<'p> {
    pub policy: &'p Policy,
    /// The limit after tiers.
    pub limit: Limit,
    /// The plan whose override applies, if any.
    pub plan: Option<&'p str>,
    /// Where the counter lives: the policy, and the values it counts apart.
    pub counter: String,
}

impl PolicySet {
    /// Reads a published set: a JSON array of policies. Policies this build cannot read
    /// (written by a newer core) are skipped rather than failing the whole set.
    pub fn from_json(bytes: &[u8]) -> Result<PolicySet, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|err| format!("policy set: {err}"))?;
        let items = value.as_array().ok_or("policy set: not a JSON array")?;
        let policies = items
            .iter()
            .filter_map(|item| {
                Policy::from_value(item.get("id").and_then(Value::as_str).unwrap_or_default(), item).ok()
            })
            .collect();
        Ok(PolicySet { policies })
    }

    pub fn to_json(&self) -> Vec<u8> {
        Value::Array(self.policies.iter().map(Policy::to_value).collect()).to_string().into_bytes()
    }

    /// The policy `descriptor` falls under in `domain`, envoy's way: the policy's keys
    /// must be the descriptor's keys in the same order (an entry carrying a policy's tier
    /// key is set aside first), each valued entry must match, and among the matches the
    /// most specific wins, entry by entry from the first: an exact value beats a pattern
    /// (IP range, `*`), which beats no value. None when no policy applies.
    pub fn select<'p>(&'p self, domain: &str, descriptor: &Descriptor<'_>) -> Option<Selected<'p>> {
        let mut best: Option<(&Policy, Vec<u8>, Option<&str>)> = None;
        for policy in self.policies.iter().filter(|p| p.domain == domain) {
            let tier_key = policy.tiers.as_ref().map(|t| t.key.as_str());
            let plan = tier_key.and_then(|key| descriptor.iter().find(|(k, _)| *k == key).map(|(_, v)| *v));
            let mut counted = descriptor.iter().filter(|(k, _)| Some(*k) != tier_key);
            let mut ranks = Vec::with_capacity(policy.descriptor.len());
            let mut matched = true;
            for entry in &policy.descriptor {
                match counted.next() {
                    Some((key, value))
                        if *key == entry.key && entry.value.as_ref().is_none_or(|p| p.matches(value)) =>
                    {
                        ranks.push(Pattern::rank(entry.value.as_ref()));
                    }
                    _ => {
                        matched = false;
                        break;
                    }
                }
            }
            if !matched || counted.next().is_some() {
                continue;
            }
            // Equal ranks cannot happen between stored policies (the core refuses a second
            // policy with the same descriptor); the earlier one wins if they do.
            if best.as_ref().is_none_or(|(_, best_ranks, _)| ranks > *best_ranks) {
                best = Some((policy, ranks, plan));
            }
        }
        let (policy, _, plan) = best?;
        let (limit, plan) = policy.limit_for(plan);
        Some(Selected { policy, limit, plan, counter: counter_key(policy, descriptor) })
    }
}

/// `<policy id>` then each counted value, separated by a byte no value holds. The tier
/// plan is left out: a customer who upgrades keeps their count.
fn counter_key(policy: &Policy, descriptor: &Descriptor<'_>) -> String {
    let tier_key = policy.tiers.as_ref().map(|t| t.key.as_str());
    let mut key = String::with_capacity(64);
    key.push_str(&policy.id);
    for (_, value) in descriptor.iter().filter(|(k, _)| Some(*k) != tier_key) {
        key.push('\u{1f}');
        key.push_str(value);
    }
    key
}

/// Checks a set of policies together: no two in one domain with the same descriptor
/// (keys and values), since neither could ever be selected over the other. Returns the
/// index of the later one of each clash.
pub fn clashes(policies: &[Policy]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for (i, a) in policies.iter().enumerate() {
        for (j, b) in policies.iter().enumerate().skip(i + 1) {
            if a.domain == b.domain && a.descriptor == b.descriptor {
                found.push((i, j));
            }
        }
    }
    found
}

/// The `ip_prefix` value of a client address: its /24 (IPv4) or /56 (IPv6) network.
pub fn ip_prefix(address: &str) -> Option<String> {
    let ip = parse_ip(address)?;
    Some(Network::around(ip).to_string())
}
