//! `/v1/ratelimit/policies`: create, list, read, replace and delete policies.
//!
//! Bodies are parsed by `verge_shared::ratelimit::Policy` itself, not by a serde struct, so
//! a refusal names every offending member by JSON pointer and a policy the core accepts is
//! one every edge reads. Each write is one transaction: the row, its audit entry, and the
//! outbox row that publishes the domain's policies to the edge.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use verge_shared::ratelimit::Policy;

use super::{PolicyReaders, PolicyWriters, Stored, dataset, descriptor_text, load, validation};
use crate::audit::Actor;
use crate::error::{ApiError, ApiJson, ApiQuery, Problem};
use crate::keys::Authorized;
use crate::pagination::{Cursor, Page, PageParams};
use crate::publish::enqueue;
use crate::state::AppState;
use crate::time::now_millis;

/// A rate-limit policy (the schema of bodies and answers; see docs/ratelimit.md).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Documents the shape; bodies are parsed by verge_shared.
pub(crate) struct PolicyBody {
    /// Assigned by Verge (`rl_…`); ignored in bodies.
    #[schema(read_only)]
    id: String,
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// A namespace of policies (envoy's domain). `edge` (the default) is enforced by the
    /// edge on its own routes; any other is for `POST /v1/ratelimit/check`.
    #[schema(pattern = "^[a-z0-9_.-]{1,64}$")]
    domain: Option<String>,
    /// What is counted: entries in the order requests present them.
    #[schema(min_items = 1, max_items = 8)]
    descriptor: Vec<EntryBody>,
    limit: LimitBody,
    /// Per-plan overrides, picked by the value of `key` on the request.
    tiers: Option<TiersBody>,
    /// `enforce` (default) denies over the limit; `shadow` decides and reports only.
    #[schema(pattern = "^(enforce|shadow)$")]
    mode: Option<String>,
    /// When the counter store cannot answer: `allow` (default, fail open) or `deny`
    /// (fail closed, 503).
    #[schema(pattern = "^(allow|deny)$")]
    on_store_failure: Option<String>,
    /// Fire `ratelimit.alert.firing` (a notification) when more than `denied_percent` of
    /// decisions were denials in each of the last `minutes` minutes.
    alert: Option<AlertBody>,
    #[schema(read_only, value_type = String, format = DateTime)]
    created_at: String,
    #[schema(read_only, value_type = String, format = DateTime)]
    updated_at: String,
}

#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(crate) struct AlertBody {
    #[schema(minimum = 1, maximum = 100)]
    denied_percent: u8,
    #[schema(minimum = 1, maximum = 60)]
    minutes: u8,
}

#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(crate) struct EntryBody {
    /// `remote_address`, `ip_prefix`, `country`, `api_key`, `user`, `host`, `path`,
    /// `method`, `route`, `header.<name>`, or any key of your own for the check route.
    #[schema(pattern = "^[a-z0-9_.-]{1,64}$")]
    key: String,
    /// Matches only this value (an IP or CIDR range for addresses, `*` patterns for
    /// paths and hosts); without it every value is counted apart.
    #[schema(min_length = 1, max_length = 512)]
    value: Option<String>,
}

#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(crate) struct LimitBody {
    /// `token_bucket` (default; GCRA), `sliding_window` or `fixed_window`.
    #[schema(pattern = "^(token_bucket|gcra|sliding_window|fixed_window)$")]
    algorithm: Option<String>,
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    limit: u32,
    #[schema(minimum = 1, maximum = 31_622_400)]
    period_seconds: u32,
    /// Token bucket only: the most requests at once (default: `limit`).
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    burst: Option<u32>,
}

#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(crate) struct TiersBody {
    /// The descriptor key naming the plan, e.g. `plan` or `header.x-plan`.
    #[schema(pattern = "^[a-z0-9_.-]{1,64}$")]
    key: String,
    /// Plan name → limit.
    limits: std::collections::BTreeMap<String, LimitBody>,
}

/// Refuses a policy whose descriptor another in its domain already has, naming it.
async fn ensure_unique(conn: &mut sqlx::AnyConnection, policy: &Policy) -> Result<(), ApiError> {
    let existing: Option<String> =
        sqlx::query_scalar("SELECT id FROM ratelimit_policies WHERE domain = $1 AND descriptor = $2 AND id <> $3")
            .bind(&policy.domain)
            .bind(descriptor_text(policy))
            .bind(&policy.id)
            .fetch_optional(&mut *conn)
            .await?;
    match existing {
        Some(id) => Err(ApiError::conflict(
            "policy_exists",
            format!("policy `{id}` already counts this descriptor in domain `{}`; change that one", policy.domain),
        )),
        None => Ok(()),
    }
}

/// Stores a new policy with its audit entry and outbox row, inside `conn`'s transaction.
pub(crate) async fn insert(conn: &mut sqlx::AnyConnection, actor: &Actor, policy: Policy) -> Result<Stored, ApiError> {
    ensure_unique(conn, &policy).await?;
    let now = now_millis().0;
    let stored = Stored { policy, created_at: now, updated_at: now };
    sqlx::query(
        "INSERT INTO ratelimit_policies (id, domain, name, descriptor, document, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&stored.policy.id)
    .bind(&stored.policy.domain)
    .bind(&stored.policy.name)
    .bind(descriptor_text(&stored.policy))
    .bind(stored.policy.to_value().to_string())
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let after = stored.to_value();
    crate::audit::record(
        conn,
        actor,
        "ratelimit_policy.create",
        "ratelimit_policy",
        &stored.policy.id,
        None,
        Some(&after),
    )
    .await?;
    enqueue(conn, &dataset(&stored.policy.domain)).await?;
    Ok(stored)
}

fn parse(id: &str, body: &Value) -> Result<Policy, ApiError> {
    Policy::from_value(id, body).map_err(|errors| validation(errors, ""))
}

/// Create a policy.
#[utoipa::path(
    post, path = "/v1/ratelimit/policies", tag = "ratelimit",
    request_body = PolicyBody,
    security(("admin_key" = ["admin", "ratelimit:write"])),
    responses(
        (status = 201, description = "Created, and on its way to the edge", body = PolicyBody),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 409, description = "Another policy in the domain has this descriptor", body = Problem),
        (status = 422, description = "Invalid; `errors` locates each problem by JSON pointer", body = Problem),
    )
)]
pub(crate) async fn create_policy(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<PolicyWriters>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let policy = parse(&crate::ids::new_id("rl"), &body)?;
    let mut tx = state.db.begin_write().await?;
    let stored = insert(&mut tx, &principal.actor(), policy).await?;
    tx.commit().await?;
    super::forget_sets(&state.db);
    state.publisher.wake();
    Ok((StatusCode::CREATED, Json(stored.to_value())))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PolicyFilter {
    /// Only policies of this domain.
    domain: Option<String>,
}

/// List policies, oldest first.
#[utoipa::path(
    get, path = "/v1/ratelimit/policies", tag = "ratelimit",
    params(PolicyFilter, PageParams),
    security(("admin_key" = ["admin", "read", "ratelimit:write"])),
    responses(
        (status = 200, description = "A page of policies", body = inline(Page<PolicyBody>)),
        (status = 400, description = "Invalid cursor", body = Problem),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 422, description = "Invalid limit", body = Problem),
    )
)]
pub(crate) async fn list_policies(
    State(state): State<AppState>,
    _: Authorized<PolicyReaders>,
    ApiQuery(filter): ApiQuery<PolicyFilter>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<Value>>, ApiError> {
    let cursor = Cursor::from_params(&page)?;
    let rows =
        sqlx::query("SELECT * FROM ratelimit_policies WHERE id > $1 AND ($2 = '' OR domain = $2) ORDER BY id LIMIT $3")
            .bind(cursor.after())
            .bind(filter.domain.unwrap_or_default())
            .bind(cursor.fetch_limit())
            .fetch_all(state.db.pool())
            .await?;
    let items = rows.iter().map(Stored::from_row).collect::<Result<Vec<_>, _>>()?;
    let page = cursor.page(items, |stored| stored.policy.id.clone());
    Ok(Json(Page { items: page.items.iter().map(Stored::to_value).collect(), next_cursor: page.next_cursor }))
}

/// Read a policy.
#[utoipa::path(
    get, path = "/v1/ratelimit/policies/{id}", tag = "ratelimit",
    params(("id" = String, Path)),
    security(("admin_key" = ["admin", "read", "ratelimit:write"])),
    responses(
        (status = 200, description = "The policy", body = PolicyBody),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such policy", body = Problem),
    )
)]
pub(crate) async fn get_policy(
    State(state): State<AppState>,
    _: Authorized<PolicyReaders>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(load(&mut conn, &id).await?.to_value()))
}

/// Replace a policy (its id and creation time stay).
#[utoipa::path(
    put, path = "/v1/ratelimit/policies/{id}", tag = "ratelimit",
    params(("id" = String, Path)),
    request_body = PolicyBody,
    security(("admin_key" = ["admin", "ratelimit:write"])),
    responses(
        (status = 200, description = "Replaced, and on its way to the edge", body = PolicyBody),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such policy", body = Problem),
        (status = 409, description = "Another policy in the domain has this descriptor", body = Problem),
        (status = 422, description = "Invalid; nothing changed", body = Problem),
    )
)]
pub(crate) async fn replace_policy(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<PolicyWriters>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let policy = parse(&id, &body)?;
    let mut tx = state.db.begin_write().await?;
    let after = update(&mut tx, &principal.actor(), policy).await?;
    tx.commit().await?;
    super::forget_sets(&state.db);
    state.publisher.wake();
    Ok(Json(after.to_value()))
}

/// Replaces the stored policy with `policy`'s id, with its audit entry and outbox rows,
/// inside `conn`'s transaction.
pub(crate) async fn update(conn: &mut sqlx::AnyConnection, actor: &Actor, policy: Policy) -> Result<Stored, ApiError> {
    let before = load(conn, &policy.id).await?;
    ensure_unique(conn, &policy).await?;
    let after = Stored { policy, created_at: before.created_at, updated_at: now_millis().0 };
    sqlx::query(
        "UPDATE ratelimit_policies SET domain = $1, name = $2, descriptor = $3, document = $4, updated_at = $5
         WHERE id = $6",
    )
    .bind(&after.policy.domain)
    .bind(&after.policy.name)
    .bind(descriptor_text(&after.policy))
    .bind(after.policy.to_value().to_string())
    .bind(after.updated_at)
    .bind(&after.policy.id)
    .execute(&mut *conn)
    .await?;
    let (old, new) = (before.to_value(), after.to_value());
    crate::audit::record(
        conn,
        actor,
        "ratelimit_policy.update",
        "ratelimit_policy",
        &after.policy.id,
        Some(&old),
        Some(&new),
    )
    .await?;
    enqueue(conn, &dataset(&after.policy.domain)).await?;
    if before.policy.domain != after.policy.domain {
        enqueue(conn, &dataset(&before.policy.domain)).await?;
    }
    Ok(after)
}

/// Deletes policy `id`, with its audit entry and outbox row, inside `conn`'s transaction.
pub(crate) async fn remove(conn: &mut sqlx::AnyConnection, actor: &Actor, id: &str) -> Result<(), ApiError> {
    let before = load(conn, id).await?;
    sqlx::query("DELETE FROM ratelimit_policies WHERE id = $1").bind(id).execute(&mut *conn).await?;
    super::alerts::forget(conn, id).await?;
    let old = before.to_value();
    crate::audit::record(conn, actor, "ratelimit_policy.delete", "ratelimit_policy", id, Some(&old), None).await?;
    enqueue(conn, &dataset(&before.policy.domain)).await?;
    Ok(())
}

/// Delete a policy.
#[utoipa::path(
    delete, path = "/v1/ratelimit/policies/{id}", tag = "ratelimit",
    params(("id" = String, Path)),
    security(("admin_key" = ["admin", "ratelimit:write"])),
    responses(
        (status = 204, description = "Deleted; the edge stops enforcing it"),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such policy", body = Problem),
    )
)]
pub(crate) async fn delete_policy(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<PolicyWriters>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    remove(&mut tx, &principal.actor(), &id).await?;
    tx.commit().await?;
    super::forget_sets(&state.db);
    state.publisher.wake();
    Ok(StatusCode::NO_CONTENT)
}
