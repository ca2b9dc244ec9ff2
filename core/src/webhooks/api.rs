//! `/v1/webhooks/…`: endpoints (URL, the event types they want, a signing secret shown on
//! creation and on request), the delivery log of each (messages and their attempts), and
//! redelivery. Writes need `orders:write` and are audited; `read` keys may look, but only
//! writers see a secret.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use utoipa::ToSchema;

use super::{EVENT_TYPES, delivery, new_secret};
use crate::error::{ApiError, ApiJson, ApiQuery, FieldError, Problem};
use crate::keys::{Authorized, Grants, Scope};
use crate::pagination::{Cursor, Page, PageParams};
use crate::state::AppState;
use crate::time::{Millis, now_millis};

/// Webhooks carry order events, so the order scopes govern them.
#[derive(Debug)]
pub(crate) struct WebhookWriters;
impl Grants for WebhookWriters {
    const SCOPES: &'static [Scope] = &[Scope::OrdersWrite];
}

#[derive(Debug)]
pub(crate) struct WebhookReaders;
impl Grants for WebhookReaders {
    const SCOPES: &'static [Scope] = &[Scope::Read, Scope::OrdersWrite];
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewEndpoint {
    /// Where events are POSTed: an http(s) URL.
    url: String,
    #[serde(default)]
    description: String,
    /// The event types to send; empty or absent for all.
    #[serde(default)]
    event_types: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Endpoint {
    id: String,
    url: String,
    description: String,
    event_types: Vec<String>,
    disabled: bool,
    /// Only in the answer to its creation; later from `…/secret`.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
}

fn endpoint_from(row: &sqlx::any::AnyRow) -> Result<Endpoint, sqlx::Error> {
    Ok(Endpoint {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        event_types: serde_json::from_str(&row.try_get::<String, _>("event_types")?).unwrap_or_default(),
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        secret: None,
        created_at: Millis(row.try_get("created_at")?),
    })
}

async fn load(state: &AppState, id: &str) -> Result<(Endpoint, String), ApiError> {
    let row =
        sqlx::query("SELECT * FROM webhook_endpoints WHERE id = $1").bind(id).fetch_optional(state.db.pool()).await?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("no webhook endpoint `{id}`")))?;
    Ok((endpoint_from(&row)?, row.try_get("secret")?))
}

/// Register an endpoint; the answer carries its signing secret.
#[utoipa::path(
    post, path = "/v1/webhooks/endpoints", tag = "webhooks", request_body = NewEndpoint,
    security(("admin_key" = ["admin", "orders:write"])),
    responses(
        (status = 201, body = Endpoint), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 415, body = Problem), (status = 422, description = "Not an http(s) URL, or an unknown event type", body = Problem),
    )
)]
pub(crate) async fn create_endpoint(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<WebhookWriters>,
    ApiJson(new): ApiJson<NewEndpoint>,
) -> Result<(StatusCode, Json<Endpoint>), ApiError> {
    let mut errors = Vec::new();
    match url::Url::parse(&new.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() && url.username().is_empty() => {}
        _ => errors
            .push(FieldError { field: "/url".into(), message: "must be an http(s) URL without credentials".into() }),
    }
    if new.description.chars().count() > 500 {
        errors.push(FieldError { field: "/description".into(), message: "at most 500 characters".into() });
    }
    for (i, kind) in new.event_types.iter().enumerate() {
        if !EVENT_TYPES.contains(&kind.as_str()) {
            errors.push(FieldError {
                field: format!("/event_types/{i}"),
                message: format!("`{kind}` is not an event type; known: {}", EVENT_TYPES.join(", ")),
            });
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let id = crate::ids::new_id("whe");
    let secret = new_secret();
    let now = now_millis().0;
    let mut tx = state.db.begin_write().await?;
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, description, event_types, secret, disabled, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 0, $6, $6)",
    )
    .bind(&id)
    .bind(&new.url)
    .bind(&new.description)
    .bind(serde_json::to_string(&new.event_types).map_err(ApiError::internal)?)
    .bind(&secret)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let endpoint = Endpoint {
        id: id.clone(),
        url: new.url,
        description: new.description,
        event_types: new.event_types,
        disabled: false,
        secret: None,
        created_at: Millis(now),
    };
    crate::audit::record(
        &mut tx,
        &principal.actor(),
        "webhook_endpoint.create",
        "webhook_endpoint",
        &id,
        None,
        Some(&endpoint),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Endpoint { secret: Some(secret), ..endpoint })))
}

/// Every endpoint, oldest first.
#[utoipa::path(
    get, path = "/v1/webhooks/endpoints", tag = "webhooks", params(PageParams),
    security(("admin_key" = ["admin", "read", "orders:write"])),
    responses((status = 200, body = inline(Page<Endpoint>)), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem))
)]
pub(crate) async fn list_endpoints(
    State(state): State<AppState>,
    _: Authorized<WebhookReaders>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<Endpoint>>, ApiError> {
    let cursor = Cursor::from_params(&params)?;
    let rows = sqlx::query("SELECT * FROM webhook_endpoints WHERE id > $1 ORDER BY id LIMIT $2")
        .bind(cursor.after())
        .bind(cursor.fetch_limit())
        .fetch_all(state.db.pool())
        .await?;
    let endpoints = rows.iter().map(endpoint_from).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(cursor.page(endpoints, |e| e.id.clone())))
}

/// One endpoint.
#[utoipa::path(
    get, path = "/v1/webhooks/endpoints/{id}", tag = "webhooks", params(("id" = String, Path)),
    security(("admin_key" = ["admin", "read", "orders:write"])),
    responses((status = 200, body = Endpoint), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn get_endpoint(
    State(state): State<AppState>,
    _: Authorized<WebhookReaders>,
    Path(id): Path<String>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(load(&state, &id).await?.0))
}

/// Delete an endpoint and its delivery log; undelivered messages are dropped.
#[utoipa::path(
    delete, path = "/v1/webhooks/endpoints/{id}", tag = "webhooks", params(("id" = String, Path)),
    security(("admin_key" = ["admin", "orders:write"])),
    responses((status = 204, description = "Deleted"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn delete_endpoint(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<WebhookWriters>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (endpoint, _) = load(&state, &id).await?;
    let mut tx = state.db.begin_write().await?;
    sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1").bind(&id).execute(&mut *tx).await?;
    crate::audit::record(
        &mut tx,
        &principal.actor(),
        "webhook_endpoint.delete",
        "webhook_endpoint",
        &id,
        Some(&endpoint),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Secret {
    /// `whsec_` and the base64 key the signatures are made with.
    secret: String,
}

/// The endpoint's signing secret.
#[utoipa::path(
    get, path = "/v1/webhooks/endpoints/{id}/secret", tag = "webhooks", params(("id" = String, Path)),
    security(("admin_key" = ["admin", "orders:write"])),
    responses((status = 200, body = Secret), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn get_secret(
    State(state): State<AppState>,
    _: Authorized<WebhookWriters>,
    Path(id): Path<String>,
) -> Result<Json<Secret>, ApiError> {
    Ok(Json(Secret { secret: load(&state, &id).await?.1 }))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Attempt {
    /// The endpoint's HTTP status, absent when it did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    response_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    duration_ms: i64,
    #[schema(value_type = String, format = DateTime)]
    at: Millis,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Message {
    id: String,
    /// The event's id: the `webhook-id` every attempt sends.
    event_id: String,
    event_type: String,
    /// `pending`, `delivered` or `failed`.
    status: String,
    payload: Value,
    attempts: Vec<Attempt>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
}

async fn message_from(state: &AppState, row: &sqlx::any::AnyRow) -> Result<Message, ApiError> {
    let id: String = row.try_get("id")?;
    let attempts = sqlx::query("SELECT * FROM webhook_attempts WHERE message_id = $1 ORDER BY id")
        .bind(&id)
        .fetch_all(state.db.pool())
        .await?
        .iter()
        .map(|a| {
            Ok(Attempt {
                response_code: a.try_get("response_code")?,
                error: a.try_get("error")?,
                duration_ms: a.try_get("duration_ms")?,
                at: Millis(a.try_get("created_at")?),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Message {
        id,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        status: row.try_get("status")?,
        payload: serde_json::from_str(&row.try_get::<String, _>("payload")?).unwrap_or(Value::Null),
        attempts,
        created_at: Millis(row.try_get("created_at")?),
    })
}

/// The endpoint's delivery log: messages oldest first, each with its attempts.
#[utoipa::path(
    get, path = "/v1/webhooks/endpoints/{id}/messages", tag = "webhooks", params(("id" = String, Path), PageParams),
    security(("admin_key" = ["admin", "read", "orders:write"])),
    responses((status = 200, body = inline(Page<Message>)), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem))
)]
pub(crate) async fn list_messages(
    State(state): State<AppState>,
    _: Authorized<WebhookReaders>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<Message>>, ApiError> {
    let cursor = Cursor::from_params(&params)?;
    load(&state, &id).await?;
    let rows = sqlx::query("SELECT * FROM webhook_messages WHERE endpoint_id = $1 AND id > $2 ORDER BY id LIMIT $3")
        .bind(&id)
        .bind(cursor.after())
        .bind(cursor.fetch_limit())
        .fetch_all(state.db.pool())
        .await?;
    let mut messages = Vec::with_capacity(rows.len());
    for row in &rows {
        messages.push(message_from(&state, row).await?);
    }
    Ok(Json(cursor.page(messages, |m| m.id.clone())))
}

/// Send a message again now (say, after fixing the endpoint), whatever its status.
#[utoipa::path(
    post, path = "/v1/webhooks/messages/{id}/redeliver", tag = "webhooks", params(("id" = String, Path)),
    security(("admin_key" = ["admin", "orders:write"])),
    responses((status = 202, body = Message), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<WebhookWriters>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let mut tx = state.db.begin_write().await?;
    let moved = sqlx::query("UPDATE webhook_messages SET status = 'pending', updated_at = $1 WHERE id = $2")
        .bind(now_millis().0)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    if moved.rows_affected() != 1 {
        return Err(ApiError::not_found(format!("no webhook message `{id}`")));
    }
    crate::jobs::enqueue(&mut tx, delivery(&id)).await?;
    crate::audit::record::<Value>(
        &mut tx,
        &principal.actor(),
        "webhook_message.redeliver",
        "webhook_message",
        &id,
        None,
        None,
    )
    .await?;
    tx.commit().await?;
    crate::jobs::wake(&state);
    let row = sqlx::query("SELECT * FROM webhook_messages WHERE id = $1").bind(&id).fetch_one(state.db.pool()).await?;
    Ok((StatusCode::ACCEPTED, Json(message_from(&state, &row).await?)))
}
