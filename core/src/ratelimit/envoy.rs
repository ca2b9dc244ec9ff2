//! envoy ratelimit's YAML configuration, in and out: `/v1/ratelimit/envoy/{domain}`.
//!
//! envoy's file is a tree: each node is a descriptor entry (`key`, optional `value`), and a
//! node with a `rate_limit` limits requests whose descriptor is the path from the root to
//! it. Each such node becomes one Verge policy with that path as its descriptor, counted
//! in fixed windows as envoy counts (`shadow_mode` becomes `mode: shadow`). Export builds
//! the tree back, so a file imported and exported again says the same thing. What envoy
//! cannot say (tiers, periods that are no single unit, other algorithms) is exported as
//! a YAML comment naming the policy, never silently changed.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use verge_shared::ratelimit::{Algorithm, Invalid, Mode, Policy};

use super::{PolicyReaders, PolicyWriters, dataset, descriptor_text, domain_set, validation};
use crate::error::{ApiError, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::state::AppState;

const UNITS: &[(&str, u32)] = &[("second", 1), ("minute", 60), ("hour", 3600), ("day", 86_400), ("week", 604_800)];

/// Policies read from an envoy file, each with where in the file it came from.
fn policies_from(document: &Value, domain: &str) -> Result<Vec<(String, Policy)>, Vec<Invalid>> {
    let mut errors = Vec::new();
    let Some(root) = document.as_object() else {
        return Err(vec![Invalid::new("", "an envoy configuration is a mapping with `domain` and `descriptors`")]);
    };
    for key in root.keys().filter(|k| !["domain", "descriptors"].contains(&k.as_str())) {
        errors.push(Invalid::new(format!("/{key}"), "unknown member; envoy's file has `domain` and `descriptors`"));
    }
    match root.get("domain").and_then(Value::as_str) {
        Some(d) if d == domain => {}
        Some(d) => {
            errors.push(Invalid::new("/domain", format!("the file is for domain `{d}`, the URL names `{domain}`")))
        }
        None => errors.push(Invalid::new("/domain", "is required")),
    }
    let mut found = Vec::new();
    match root.get("descriptors") {
        Some(Value::Array(nodes)) => walk(nodes, "/descriptors", &[], &[], domain, &mut found, &mut errors),
        _ => errors.push(Invalid::new("/descriptors", "is required: a list of descriptor entries")),
    }
    if found.is_empty() && errors.is_empty() {
        errors.push(Invalid::new("/descriptors", "no entry has a `rate_limit`: nothing to import"));
    }
    if errors.is_empty() { Ok(found) } else { Err(errors) }
}

/// Walks the tree below `at`; `path` holds the entries on the way down and `pointers`
/// where each of them is in the file.
fn walk(
    nodes: &[Value],
    at: &str,
    path: &[Value],
    pointers: &[String],
    domain: &str,
    found: &mut Vec<(String, Policy)>,
    errors: &mut Vec<Invalid>,
) {
    for (i, node) in nodes.iter().enumerate() {
        let here = format!("{at}/{i}");
        let Some(object) = node.as_object() else {
            errors.push(Invalid::new(&here, "must be a mapping with `key`"));
            continue;
        };
        let known = ["key", "value", "rate_limit", "shadow_mode", "descriptors", "detailed_metric", "name"];
        for key in object.keys().filter(|k| !known.contains(&k.as_str())) {
            errors.push(Invalid::new(format!("{here}/{key}"), format!("not supported; known: {}", known.join(", "))));
        }
        let mut entry = json!({"key": object.get("key").cloned().unwrap_or(Value::Null)});
        if let Some(value) = object.get("value") {
            entry["value"] = value.clone();
        }
        let mut path = path.to_vec();
        path.push(entry);
        let mut pointers = pointers.to_vec();
        pointers.push(here.clone());
        if let Some(limit) = object.get("rate_limit") {
            if let Some(body) = policy_body(object, limit, &path, domain, &here, errors) {
                match Policy::from_value(&crate::ids::new_id("rl"), &body) {
                    Ok(policy) => found.push((here.clone(), policy)),
                    Err(problems) => errors.extend(problems.into_iter().map(|p| locate(p, &pointers))),
                }
            }
        } else if object.contains_key("shadow_mode") {
            errors.push(Invalid::new(
                format!("{here}/shadow_mode"),
                "applies to a `rate_limit`, and this entry has none",
            ));
        }
        match object.get("descriptors") {
            None => {}
            Some(Value::Array(children)) => {
                walk(children, &format!("{here}/descriptors"), &path, &pointers, domain, found, errors);
            }
            Some(_) => errors.push(Invalid::new(format!("{here}/descriptors"), "must be a list")),
        }
    }
}

/// A Verge policy body for the envoy node at `here`.
fn policy_body(
    node: &serde_json::Map<String, Value>,
    limit: &Value,
    path: &[Value],
    domain: &str,
    here: &str,
    errors: &mut Vec<Invalid>,
) -> Option<Value> {
    let before = errors.len();
    let at = format!("{here}/rate_limit");
    let Some(limit) = limit.as_object() else {
        errors.push(Invalid::new(&at, "must be a mapping with `unit` and `requests_per_unit`"));
        return None;
    };
    for key in limit.keys().filter(|k| !["unit", "requests_per_unit", "unlimited", "name"].contains(&k.as_str())) {
        errors.push(Invalid::new(format!("{at}/{key}"), "unknown member; known: unit, requests_per_unit"));
    }
    if limit.get("unlimited") == Some(&Value::Bool(true)) {
        errors.push(Invalid::new(
            format!("{at}/unlimited"),
            "Verge has no unlimited policies; leave the entry without a rate_limit",
        ));
    }
    let unit = limit.get("unit").and_then(Value::as_str).map(str::to_ascii_lowercase);
    let period = unit.as_deref().and_then(|u| UNITS.iter().find(|(name, _)| *name == u)).map(|(_, secs)| *secs);
    if period.is_none() {
        errors.push(Invalid::new(
            format!("{at}/unit"),
            "must be second, minute, hour, day or week (month and year have no fixed length)",
        ));
    }
    let requests = limit.get("requests_per_unit").cloned().unwrap_or(Value::Null);
    if requests.as_u64().is_none_or(|n| n == 0) {
        errors.push(Invalid::new(format!("{at}/requests_per_unit"), "must be a whole number of at least 1"));
    }
    let shadow = match node.get("shadow_mode") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => {
            errors.push(Invalid::new(format!("{here}/shadow_mode"), "must be true or false"));
            false
        }
    };
    if errors.len() > before {
        return None;
    }
    let described: Vec<String> = path
        .iter()
        .map(|e| match e.get("value").and_then(Value::as_str) {
            Some(v) => format!("{}={v}", e["key"].as_str().unwrap_or_default()),
            None => e["key"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    let name = node.get("name").and_then(Value::as_str).map_or_else(|| described.join(" / "), str::to_owned);
    Some(json!({
        "name": name.chars().take(100).collect::<String>(),
        "domain": domain,
        "descriptor": path,
        "limit": {"algorithm": "fixed_window", "limit": requests, "period_seconds": period},
        "mode": if shadow { "shadow" } else { "enforce" },
    }))
}

/// Moves a policy problem to where it is in the envoy file: descriptor entry `n` is the
/// node at `pointers[n]`, the limit is the last node's `rate_limit`.
fn locate(problem: Invalid, pointers: &[String]) -> Invalid {
    let here = pointers.last().map_or("", String::as_str);
    if let Some(rest) = problem.pointer.strip_prefix("/descriptor/") {
        let (index, member) = rest.split_once('/').unwrap_or((rest, ""));
        if let Some(node) = index.parse::<usize>().ok().and_then(|n| pointers.get(n)) {
            return Invalid::new(format!("{node}/{member}"), problem.message);
        }
    }
    let member = match problem.pointer.as_str() {
        "/limit/limit" => "/rate_limit/requests_per_unit",
        "/limit/period_seconds" => "/rate_limit/unit",
        other => other,
    };
    Invalid::new(format!("{here}{member}"), problem.message)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImportOptions {
    /// Also delete the domain's policies the file does not have (default false: keep them).
    #[serde(default)]
    replace: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImportReport {
    /// Ids of policies created from the file.
    created: Vec<String>,
    /// Ids of existing policies (same descriptor) whose limit or mode the file changed.
    updated: Vec<String>,
    /// Ids of existing policies the file matched as they were.
    unchanged: Vec<String>,
    /// Ids deleted because the file lacks them (`replace=true` only).
    deleted: Vec<String>,
}

/// Import envoy ratelimit's YAML into a domain.
#[utoipa::path(
    put, path = "/v1/ratelimit/envoy/{domain}", tag = "ratelimit",
    params(("domain" = String, Path), ImportOptions),
    request_body(content = EnvoyConfig, content_type = "application/yaml", description = "envoy ratelimit configuration"),
    security(("admin_key" = ["admin", "ratelimit:write"])),
    responses(
        (status = 200, description = "Imported in one transaction", body = ImportReport),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 415, description = "Not sent as YAML", body = Problem),
        (status = 422, description = "Malformed YAML or an entry Verge cannot keep, located by JSON pointer; nothing stored", body = Problem),
    )
)]
pub(crate) async fn import(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<PolicyWriters>,
    Path(domain): Path<String>,
    ApiQuery(options): ApiQuery<ImportOptions>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ImportReport>, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if !["application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"].contains(&essence.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send envoy's configuration as application/yaml",
        ));
    }
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError::validation(vec![FieldError { field: String::new(), message: "not UTF-8 text".into() }])
    })?;
    let document: Value = serde_norway::from_str(text).map_err(|err| {
        ApiError::validation(vec![FieldError { field: String::new(), message: format!("not YAML: {err}") }])
    })?;
    let imported = policies_from(&document, &domain).map_err(|errors| validation(errors, ""))?;
    let mut seen = std::collections::HashSet::new();
    for (at, policy) in &imported {
        if !seen.insert(descriptor_text(policy)) {
            return Err(ApiError::validation(vec![FieldError {
                field: at.clone(),
                message: "the same descriptor appears earlier in the file".into(),
            }]));
        }
    }
    let existing = domain_set(&state.db, &domain).await?;
    let actor = principal.actor();
    let mut report = ImportReport { created: vec![], updated: vec![], unchanged: vec![], deleted: vec![] };
    let mut tx = state.db.begin_write().await?;
    for (_, mut policy) in imported {
        let Some(old) = existing.policies.iter().find(|p| p.descriptor == policy.descriptor) else {
            report.created.push(policy.id.clone());
            super::policies::insert(&mut tx, &actor, policy).await?;
            continue;
        };
        policy.id.clone_from(&old.id);
        // The file says nothing of tiers or failure modes: keep those.
        policy.tiers.clone_from(&old.tiers);
        policy.failure = old.failure;
        if policy == *old {
            report.unchanged.push(policy.id);
            continue;
        }
        super::policies::update(&mut tx, &actor, policy.clone()).await?;
        report.updated.push(policy.id);
    }
    if options.replace {
        let kept: Vec<&String> = report.created.iter().chain(&report.updated).chain(&report.unchanged).collect();
        for old in existing.policies.iter().filter(|p| !kept.contains(&&p.id)) {
            super::policies::remove(&mut tx, &actor, &old.id).await?;
            report.deleted.push(old.id.clone());
        }
    }
    super::super::publish::enqueue(&mut tx, &dataset(&domain)).await?;
    tx.commit().await?;
    super::forget_sets(&state.db);
    state.publisher.wake();
    Ok(Json(report))
}

/// The envoy tree of `policies`, and a comment line for each that envoy cannot express.
fn tree_of(domain: &str, policies: &[Policy]) -> (Value, Vec<String>) {
    #[derive(Default)]
    struct Node {
        limit: Option<Value>,
        shadow: bool,
        name: Option<String>,
        /// In the order policies were created, which is the order an imported file had.
        children: Vec<((String, Option<String>), Node)>,
    }
    fn render(children: &[((String, Option<String>), Node)]) -> Vec<Value> {
        children
            .iter()
            .map(|((key, value), node)| {
                let mut out = serde_json::Map::new();
                out.insert("key".into(), key.clone().into());
                if let Some(value) = value {
                    out.insert("value".into(), value.clone().into());
                }
                if let Some(name) = &node.name {
                    out.insert("name".into(), name.clone().into());
                }
                if let Some(limit) = &node.limit {
                    out.insert("rate_limit".into(), limit.clone());
                }
                if node.shadow {
                    out.insert("shadow_mode".into(), true.into());
                }
                if !node.children.is_empty() {
                    out.insert("descriptors".into(), render(&node.children).into());
                }
                Value::Object(out)
            })
            .collect()
    }
    let mut root = Node::default();
    let mut skipped = Vec::new();
    for policy in policies {
        let unit = UNITS.iter().find(|(_, secs)| *secs == policy.limit.period_secs).map(|(name, _)| *name);
        let why = match (unit, policy.limit.algorithm, &policy.tiers) {
            (None, _, _) => Some(format!("a period of {} s is no single envoy unit", policy.limit.period_secs)),
            (_, algorithm, _) if algorithm != Algorithm::FixedWindow => {
                Some(format!("{} counts differently from envoy's fixed windows", algorithm.as_str()))
            }
            (_, _, Some(_)) => Some("envoy has no tiers".to_owned()),
            _ => None,
        };
        if let Some(why) = why {
            skipped.push(format!("# not exported: {} ({}): {why}", policy.id, policy.name.replace('\n', " ")));
            continue;
        }
        let mut node = &mut root;
        for entry in &policy.descriptor {
            let label = (entry.key.clone(), entry.value.as_ref().map(|v| v.as_str()));
            let at = match node.children.iter().position(|(existing, _)| *existing == label) {
                Some(at) => at,
                None => {
                    node.children.push((label, Node::default()));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[at].1;
        }
        node.limit = Some(json!({"unit": unit, "requests_per_unit": policy.limit.limit}));
        node.shadow = policy.mode == Mode::Shadow;
        node.name = Some(policy.name.clone());
    }
    (json!({"domain": domain, "descriptors": render(&root.children)}), skipped)
}

/// envoy ratelimit's configuration file (sent and answered as YAML).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Documents the shape; the YAML is read and written through serde_json values.
pub(crate) struct EnvoyConfig {
    domain: String,
    /// Nested entries: `key`, `value`, `rate_limit` {`unit`, `requests_per_unit`},
    /// `shadow_mode`, `name`, `descriptors`.
    descriptors: Vec<Value>,
}

/// Export a domain as envoy ratelimit's YAML.
#[utoipa::path(
    get, path = "/v1/ratelimit/envoy/{domain}", tag = "ratelimit",
    params(("domain" = String, Path)),
    security(("admin_key" = ["admin", "read", "ratelimit:write"])),
    responses(
        (status = 200, description = "envoy's configuration; policies it cannot express are listed as comments", content_type = "application/yaml", body = EnvoyConfig),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
    )
)]
pub(crate) async fn export(
    State(state): State<AppState>,
    _: Authorized<PolicyReaders>,
    Path(domain): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let set = domain_set(&state.db, &domain).await?;
    let (tree, skipped) = tree_of(&domain, &set.policies);
    let mut text = String::new();
    for line in skipped {
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str(&serde_norway::to_string(&tree).map_err(ApiError::internal)?);
    Ok(([(header::CONTENT_TYPE, "application/yaml")], text))
}
