//! Policies: what a rate limit counts, how, and what it does over the limit.
//!
//! A policy belongs to a domain (envoy's word: a namespace of policies, such as `edge` for
//! the edge's own routes) and names a descriptor: an ordered list of entries, each a key
//! and optionally a value. A request presents descriptors of the same shape (envoy's
//! model, so envoy configurations and RLS calls map one to one). An entry with a value
//! matches only that value (an IP range for addresses, a `*` pattern for paths); an entry
//! without one matches any value and counts each value apart: `[remote_address]` is "per
//! client IP", `[remote_address, path=/login]` is "per client IP, on /login only".
//!
//! The JSON form parsed here is what the API accepts and what the edge reads, so a policy
//! the core stores is one every edge understands. Errors name the offending member by JSON
//! pointer.

use serde_json::{Map, Value, json};

use super::limit::{Limit, allow_only, pointer_escape};
use super::{Alert, Invalid};

/// What a policy does over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deny with 429.
    Enforce,
    /// Decide and report, never deny: to try a policy on real traffic first.
    Shadow,
}

/// What a policy decides when its counter store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Allow: availability over protection (envoy's default).
    Open,
    /// Deny with 503: protection over availability (login, payments).
    Closed,
}

/// One entry of a descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Option<Pattern>,
}

/// What an entry's value matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    /// `*` matches any run of characters (paths, hosts).
    Glob(String),
    /// An address range, for `remote_address`.
    Network(super::Network),
}

impl Pattern {
    pub fn as_str(&self) -> String {
        match self {
            Pattern::Exact(s) | Pattern::Glob(s) => s.clone(),
            Pattern::Network(n) => n.to_string(),
        }
    }

    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(expected) => expected == value,
            Pattern::Glob(pattern) => super::glob_matches(pattern, value),
            Pattern::Network(network) => super::parse_ip(value).is_some_and(|ip| network.contains(ip)),
        }
    }

    /// Exact values beat patterns, which beat any value.
    pub(crate) fn rank(this: Option<&Pattern>) -> u8 {
        match this {
            Some(Pattern::Exact(_)) => 3,
            Some(Pattern::Glob(_) | Pattern::Network(_)) => 2,
            None => 1,
        }
    }
}

/// Per-plan overrides: the value of `key` on the request picks a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tiers {
    /// The descriptor key carrying the plan (say `plan`, or `header.x-plan` at the edge).
    pub key: String,
    pub limits: Vec<(String, Limit)>,
}

/// One rate-limit policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub domain: String,
    pub descriptor: Vec<Entry>,
    pub limit: Limit,
    pub tiers: Option<Tiers>,
    pub mode: Mode,
    pub failure: Failure,
    pub alert: Option<Alert>,
}

/// The most entries a descriptor may have.
pub const MAX_ENTRIES: usize = 8;

impl Policy {
    /// Parses and checks the JSON form, reporting every problem at once. `id` is the
    /// policy's id (assigned by the core, never by the body).
    pub fn from_value(id: &str, value: &Value) -> Result<Policy, Vec<Invalid>> {
        let mut errors = Vec::new();
        let Some(object) = value.as_object() else {
            return Err(vec![Invalid::new("", "a policy must be a JSON object")]);
        };
        allow_only(
            object,
            "",
            &[
                "id",
                "name",
                "domain",
                "descriptor",
                "limit",
                "tiers",
                "mode",
                "on_store_failure",
                "alert",
                "created_at",
                "updated_at",
            ],
            &mut errors,
        );
        let name = text(object.get("name"), "/name", 1, 100, &mut errors).unwrap_or_default();
        let domain = match object.get("domain") {
            None => "edge".to_owned(),
            Some(value) => {
                let domain = text(Some(value), "/domain", 1, 64, &mut errors).unwrap_or_default();
                if !domain.is_empty() && !is_name(&domain) {
                    errors.push(Invalid::new("/domain", "must be of a-z, 0-9, `_`, `-` and `.`"));
                }
                domain
            }
        };
        let descriptor = parse_descriptor(object.get("descriptor"), &mut errors);
        let limit = match object.get("limit") {
            Some(v) => Limit::parse(v, "/limit", &mut errors),
            None => {
                errors.push(Invalid::new("/limit", "is required"));
                None
            }
        };
        let tiers = object.get("tiers").filter(|v| !v.is_null()).and_then(|v| parse_tiers(v, &descriptor, &mut errors));
        let mode = match object.get("mode").map(Value::as_str) {
            None | Some(Some("enforce")) => Mode::Enforce,
            Some(Some("shadow")) => Mode::Shadow,
            _ => {
                errors.push(Invalid::new("/mode", "must be `enforce` or `shadow`"));
                Mode::Enforce
            }
        };
        let failure = match object.get("on_store_failure").map(Value::as_str) {
            None | Some(Some("allow")) => Failure::Open,
            Some(Some("deny")) => Failure::Closed,
            _ => {
                errors.push(Invalid::new("/on_store_failure", "must be `allow` (fail open) or `deny` (fail closed)"));
                Failure::Open
            }
        };
        let alert = object.get("alert").filter(|v| !v.is_null()).and_then(|v| Alert::parse(v, &mut errors));
        match limit {
            Some(limit) if errors.is_empty() => {
                Ok(Policy { id: id.to_owned(), name, domain, descriptor, limit, tiers, mode, failure, alert })
            }
            _ => Err(errors),
        }
    }

    /// The JSON form: what the API returns, the core stores and the edge reads.
    pub fn to_value(&self) -> Value {
        let descriptor: Vec<Value> = self
            .descriptor
            .iter()
            .map(|entry| match &entry.value {
                Some(value) => json!({"key": entry.key, "value": value.as_str()}),
                None => json!({"key": entry.key}),
            })
            .collect();
        let tiers = self.tiers.as_ref().map(|tiers| {
            let limits: Map<String, Value> =
                tiers.limits.iter().map(|(plan, limit)| (plan.clone(), limit.to_value())).collect();
            json!({"key": tiers.key, "limits": limits})
        });
        json!({
            "id": self.id,
            "name": self.name,
            "domain": self.domain,
            "descriptor": descriptor,
            "limit": self.limit.to_value(),
            "tiers": tiers,
            "mode": match self.mode { Mode::Enforce => "enforce", Mode::Shadow => "shadow" },
            "on_store_failure": match self.failure { Failure::Open => "allow", Failure::Closed => "deny" },
            "alert": self.alert.map(Alert::to_value),
        })
    }

    /// The limit for a request whose tier key has `plan` (the base limit for none or an
    /// unknown plan).
    pub fn limit_for(&self, plan: Option<&str>) -> (Limit, Option<&str>) {
        if let (Some(tiers), Some(plan)) = (&self.tiers, plan)
            && let Some((name, limit)) = tiers.limits.iter().find(|(name, _)| name == plan)
        {
            return (*limit, Some(name.as_str()));
        }
        (self.limit, None)
    }

    /// The keys of the descriptor, in order: its shape.
    pub fn shape(&self) -> impl Iterator<Item = &str> {
        self.descriptor.iter().map(|entry| entry.key.as_str())
    }
}

/// A domain, key or plan name: 1–64 of `[a-z0-9_.-]`.
fn is_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.'))
}

fn text(value: Option<&Value>, at: &str, min: usize, max: usize, errors: &mut Vec<Invalid>) -> Option<String> {
    match value {
        Some(Value::String(s)) if (min..=max).contains(&s.chars().count()) => Some(s.clone()),
        Some(Value::String(_)) => {
            errors.push(Invalid::new(at, format!("must be {min} to {max} characters")));
            None
        }
        Some(_) => {
            errors.push(Invalid::new(at, "must be a string"));
            None
        }
        None => {
            errors.push(Invalid::new(at, "is required"));
            None
        }
    }
}

fn parse_descriptor(value: Option<&Value>, errors: &mut Vec<Invalid>) -> Vec<Entry> {
    let Some(items) = value.and_then(Value::as_array) else {
        errors.push(Invalid::new("/descriptor", "is required: a list of {\"key\", \"value\"?} entries"));
        return Vec::new();
    };
    if items.is_empty() || items.len() > MAX_ENTRIES {
        errors.push(Invalid::new("/descriptor", format!("must have 1 to {MAX_ENTRIES} entries")));
        return Vec::new();
    }
    let mut entries: Vec<Entry> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("/descriptor/{i}");
        let Some(object) = item.as_object() else {
            errors.push(Invalid::new(&at, "must be an object with `key` and optionally `value`"));
            continue;
        };
        allow_only(object, &at, &["key", "value"], errors);
        let Some(key) = text(object.get("key"), &format!("{at}/key"), 1, 64, errors) else { continue };
        if !is_key(&key) {
            errors.push(Invalid::new(
                format!("{at}/key"),
                "must be of a-z, 0-9, `_`, `-` and `.` (`header.<name>` for a request header)",
            ));
            continue;
        }
        if entries.iter().any(|e| e.key == key) {
            errors.push(Invalid::new(
                format!("{at}/key"),
                format!("`{key}` appears twice; a request has one value per key"),
            ));
            continue;
        }
        let value = match object.get("value") {
            None | Some(Value::Null) => None,
            Some(Value::String(raw)) => match parse_value(&key, raw) {
                Ok(pattern) => Some(pattern),
                Err(message) => {
                    errors.push(Invalid::new(format!("{at}/value"), message));
                    continue;
                }
            },
            Some(_) => {
                errors.push(Invalid::new(format!("{at}/value"), "must be a string"));
                continue;
            }
        };
        entries.push(Entry { key, value });
    }
    entries
}

fn is_key(key: &str) -> bool {
    match key.strip_prefix("header.") {
        Some(header) => {
            !header.is_empty() && header.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }
        None => is_name(key),
    }
}

/// A value as it will be compared, refusing values the edge can never present (a policy
/// that could never match would silently protect nothing).
fn parse_value(key: &str, raw: &str) -> Result<Pattern, String> {
    if raw.is_empty() || raw.len() > 512 {
        return Err("must be 1 to 512 characters".into());
    }
    match key {
        "remote_address" | "ip_prefix" => super::Network::parse(raw)
            .map(Pattern::Network)
            .ok_or_else(|| format!("`{raw}` is not an IP address or CIDR range such as 203.0.113.0/24")),
        "country" if raw.len() == 2 && raw.bytes().all(|b| b.is_ascii_uppercase()) => Ok(Pattern::Exact(raw.into())),
        "country" => Err(format!("`{raw}` is not an ISO 3166 country code such as DE (upper case)")),
        "method" if raw.bytes().all(|b| b.is_ascii_uppercase()) => Ok(Pattern::Exact(raw.into())),
        "method" => Err(format!("`{raw}` is not an HTTP method in upper case, such as POST")),
        "route" if super::ROUTES.contains(&raw) => Ok(Pattern::Exact(raw.into())),
        "route" => Err(format!("`{raw}` is not an edge route; known: {}", super::ROUTES.join(", "))),
        "path" if !raw.starts_with('/') => Err("a path pattern starts with `/`".into()),
        "host" if raw.bytes().any(|b| b.is_ascii_uppercase()) => Err("host names are compared in lower case".into()),
        _ if raw.contains('*') => Ok(Pattern::Glob(raw.into())),
        _ => Ok(Pattern::Exact(raw.into())),
    }
}

fn parse_tiers(value: &Value, descriptor: &[Entry], errors: &mut Vec<Invalid>) -> Option<Tiers> {
    let Some(object) = value.as_object() else {
        errors.push(Invalid::new("/tiers", "must be an object with `key` and `limits`"));
        return None;
    };
    allow_only(object, "/tiers", &["key", "limits"], errors);
    let key = text(object.get("key"), "/tiers/key", 1, 64, errors)?;
    if !is_key(&key) {
        errors.push(Invalid::new("/tiers/key", "must be a descriptor key such as `plan` or `header.x-plan`"));
    }
    if descriptor.iter().any(|entry| entry.key == key) {
        errors.push(Invalid::new(
            "/tiers/key",
            format!("`{key}` is in the descriptor; a tier key picks a limit, it is not counted"),
        ));
    }
    let Some(limits) = object.get("limits").and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        errors.push(Invalid::new("/tiers/limits", "must name at least one plan: {\"pro\": {\"limit\": …}}"));
        return None;
    };
    let mut parsed = Vec::new();
    for (plan, limit) in limits {
        let at = format!("/tiers/limits/{}", pointer_escape(plan));
        if !is_name(plan) {
            errors.push(Invalid::new(&at, "a plan name is 1 to 64 of a-z, 0-9, `_`, `-` and `.`"));
            continue;
        }
        if let Some(limit) = Limit::parse(limit, &at, errors) {
            parsed.push((plan.clone(), limit));
        }
    }
    Some(Tiers { key, limits: parsed })
}
