//! Reading and moving orders: operators on `/v1/orders/…`, customers on their own under
//! `/auth/{project}/orders/…`. Cancelling, fulfilling and refunding are state-machine
//! moves made under the order's lock, recorded in its timeline under who made them, and
//! handed to the saga for what they owe the outside world (void, capture, refund).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::timeline::{self, TimelineEntry};
use super::{
    Order, OrderReaders, OrderStatus, OrderWriters, PaymentStatus, illegal, load, lock, not_found, saga, saga_view,
};
use crate::customers::auth::SignedIn;
use crate::error::{ApiError, ApiJson, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::pagination::{Cursor, Page, PageParams};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct OrderFilter {
    /// Only orders in this status.
    status: Option<OrderStatus>,
    /// Only this customer's (with `project`).
    customer_id: Option<String>,
    project: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
}

async fn page_of(state: &AppState, filter: &OrderFilter, owner: Option<(&str, &str)>) -> Result<Page<Order>, ApiError> {
    let cursor = Cursor::from_params(&PageParams { limit: filter.limit, cursor: filter.cursor.clone() })?;
    let (project, customer) = match owner {
        Some((project, customer)) => (Some(project.to_owned()), Some(customer.to_owned())),
        None => (filter.project.clone(), filter.customer_id.clone()),
    };
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM orders WHERE id > $1 AND ($2 = '' OR status = $2) AND ($3 = '' OR project = $3)
           AND ($4 = '' OR customer_id = $4) ORDER BY id LIMIT $5",
    )
    .bind(cursor.after())
    .bind(filter.status.map(OrderStatus::as_str).unwrap_or(""))
    .bind(project.unwrap_or_default())
    .bind(customer.unwrap_or_default())
    .bind(cursor.fetch_limit())
    .fetch_all(state.db.pool())
    .await?;
    let mut conn = state.db.pool().acquire().await?;
    let mut orders = Vec::with_capacity(ids.len());
    for id in ids {
        orders.extend(load(&mut conn, &id).await?);
    }
    Ok(cursor.page(orders, |order| order.id().to_owned()))
}

/// Orders, oldest first.
#[utoipa::path(
    get, path = "/v1/orders", tag = "orders", params(OrderFilter),
    security(("admin_key" = ["admin", "read", "orders:write"])),
    responses(
        (status = 200, body = inline(Page<Order>)), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem),
    )
)]
pub(crate) async fn list_orders(
    State(state): State<AppState>,
    _: Authorized<OrderReaders>,
    ApiQuery(filter): ApiQuery<OrderFilter>,
) -> Result<Json<Page<Order>>, ApiError> {
    Ok(Json(page_of(&state, &filter, None).await?))
}

/// The signed-in customer's orders, oldest first.
#[utoipa::path(
    get, path = "/auth/{project}/orders", tag = "orders", params(("project" = String, Path), PageParams),
    security(("customer_token" = [])),
    responses((status = 200, body = inline(Page<Order>)), (status = 400, body = Problem), (status = 401, body = Problem), (status = 422, body = Problem))
)]
pub(crate) async fn list_own_orders(
    State(state): State<AppState>,
    who: SignedIn,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<Order>>, ApiError> {
    let filter =
        OrderFilter { status: None, customer_id: None, project: None, limit: params.limit, cursor: params.cursor };
    Ok(Json(page_of(&state, &filter, Some((&who.project, &who.customer_id))).await?))
}

pub(crate) async fn find(state: &AppState, id: &str) -> Result<Order, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    load(&mut conn, id).await?.ok_or_else(|| not_found(id))
}

/// An order of the signed-in customer's; another's is a 404, as if it did not exist.
pub(crate) async fn find_own(state: &AppState, who: &SignedIn, id: &str) -> Result<Order, ApiError> {
    let order = find(state, id).await?;
    if order.project.as_deref() != Some(&who.project) || order.customer_id.as_deref() != Some(&who.customer_id) {
        return Err(not_found(id));
    }
    Ok(order)
}

/// One order, with its lines, payment and refunds.
#[utoipa::path(
    get, path = "/v1/orders/{id}", tag = "orders", params(("id" = String, Path)),
    security(("admin_key" = ["admin", "read", "orders:write"])),
    responses((status = 200, body = Order), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn get_order(
    State(state): State<AppState>,
    _: Authorized<OrderReaders>,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(find(&state, &id).await?))
}

/// One of the signed-in customer's orders.
#[utoipa::path(
    get, path = "/auth/{project}/orders/{id}", tag = "orders", params(("project" = String, Path), ("id" = String, Path)),
    security(("customer_token" = [])),
    responses((status = 200, body = Order), (status = 401, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn get_own_order(
    State(state): State<AppState>,
    who: SignedIn,
    Path((_project, id)): Path<(String, String)>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(find_own(&state, &who, &id).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Timeline {
    items: Vec<TimelineEntry>,
}

/// Every change of the order and its payment, oldest first, with who made it.
#[utoipa::path(
    get, path = "/v1/orders/{id}/timeline", tag = "orders", params(("id" = String, Path)),
    security(("admin_key" = ["admin", "read", "orders:write"])),
    responses((status = 200, body = Timeline), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn get_timeline(
    State(state): State<AppState>,
    _: Authorized<OrderReaders>,
    Path(id): Path<String>,
) -> Result<Json<Timeline>, ApiError> {
    find(&state, &id).await?;
    let mut conn = state.db.pool().acquire().await?;
    let mut items = Vec::new();
    loop {
        let more = timeline::after(&mut conn, &id, items.last().map_or(0, TimelineEntry::seq)).await?;
        if more.is_empty() {
            break;
        }
        items.extend(more);
    }
    Ok(Json(Timeline { items }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cancellation {
    /// Why, for the timeline (at most 500 characters).
    #[serde(default)]
    reason: Option<String>,
}

async fn cancel(state: &AppState, id: &str, actor: &str, reason: Option<String>) -> Result<Order, ApiError> {
    let reason = reason.unwrap_or_default();
    if reason.chars().count() > 500 {
        return Err(ApiError::validation(vec![FieldError {
            field: "/reason".into(),
            message: "at most 500 characters".into(),
        }]));
    }
    let mut tx = state.db.begin_write().await?;
    if !lock(&mut tx, state.db.dialect(), id).await? {
        return Err(not_found(id));
    }
    let order = saga_view(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
    if !order.status.next().contains(&OrderStatus::Cancelled) {
        return Err(illegal(&format!("order `{id}`"), order.status.as_str(), "cancelled"));
    }
    sqlx::query("UPDATE orders SET status = 'cancelled', updated_at = $1 WHERE id = $2")
        .bind(crate::time::now_millis().0)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    timeline::record(&mut tx, id, "order.cancelled", actor, json!({ "reason": reason })).await?;
    saga::then(&mut tx, saga::COMPENSATE, id).await?;
    let order = load(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
    tx.commit().await?;
    crate::jobs::wake(state);
    timeline::notify(state, id);
    Ok(order)
}

/// Cancel a pending or confirmed order: its stock is released and its authorisation voided.
#[utoipa::path(
    post, path = "/v1/orders/{id}/cancel", tag = "orders", params(("id" = String, Path)), request_body = Cancellation,
    security(("admin_key" = ["admin", "orders:write"])),
    responses(
        (status = 200, body = Order), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "The order is fulfilled, cancelled or failed (`illegal_transition`)", body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem),
    )
)]
pub(crate) async fn cancel_order(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<OrderWriters>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Cancellation>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(cancel(&state, &id, &principal.actor().to_string(), body.reason).await?))
}

/// Cancel one of the signed-in customer's orders before it ships.
#[utoipa::path(
    post, path = "/auth/{project}/orders/{id}/cancel", tag = "orders",
    params(("project" = String, Path), ("id" = String, Path)), request_body = Cancellation,
    security(("customer_token" = [])),
    responses(
        (status = 200, body = Order), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
    )
)]
pub(crate) async fn cancel_own_order(
    State(state): State<AppState>,
    who: SignedIn,
    Path((_project, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<Cancellation>,
) -> Result<Json<Order>, ApiError> {
    find_own(&state, &who, &id).await?;
    Ok(Json(cancel(&state, &id, &who.customer_id, body.reason).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fulfilment {
    /// The carrier's tracking reference (1–200 characters).
    tracking: String,
}

/// Mark a confirmed order shipped; its payment is then captured.
#[utoipa::path(
    post, path = "/v1/orders/{id}/fulfil", tag = "orders", params(("id" = String, Path)), request_body = Fulfilment,
    security(("admin_key" = ["admin", "orders:write"])),
    responses(
        (status = 200, body = Order), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "The order is not confirmed (`illegal_transition`)", body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem),
    )
)]
pub(crate) async fn fulfil_order(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<OrderWriters>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Fulfilment>,
) -> Result<Json<Order>, ApiError> {
    let tracking = body.tracking.trim();
    if tracking.is_empty() || tracking.chars().count() > 200 || tracking.chars().any(char::is_control) {
        return Err(ApiError::validation(vec![FieldError {
            field: "/tracking".into(),
            message: "must hold 1–200 characters, no control characters".into(),
        }]));
    }
    let mut tx = state.db.begin_write().await?;
    if !lock(&mut tx, state.db.dialect(), &id).await? {
        return Err(not_found(&id));
    }
    let order = saga_view(&mut tx, &id).await?.ok_or_else(|| not_found(&id))?;
    if !order.status.next().contains(&OrderStatus::Fulfilled) {
        return Err(illegal(&format!("order `{id}`"), order.status.as_str(), "fulfilled"));
    }
    sqlx::query("UPDATE orders SET status = 'fulfilled', tracking = $1, updated_at = $2 WHERE id = $3")
        .bind(tracking)
        .bind(crate::time::now_millis().0)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    let actor = principal.actor().to_string();
    timeline::record(&mut tx, &id, "order.fulfilled", &actor, json!({ "tracking": tracking })).await?;
    saga::then(&mut tx, saga::CAPTURE, &id).await?;
    let order = load(&mut tx, &id).await?.ok_or_else(|| not_found(&id))?;
    tx.commit().await?;
    crate::jobs::wake(&state);
    timeline::notify(&state, &id);
    Ok(Json(order))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRefund {
    /// Minor units, at most what was captured and not yet refunded (or asked to be).
    amount: i64,
    /// Why (1–500 characters).
    reason: String,
}

/// Refund part or all of a captured payment; the refund is paid by the saga.
#[utoipa::path(
    post, path = "/v1/orders/{id}/refunds", tag = "orders", params(("id" = String, Path)), request_body = NewRefund,
    security(("admin_key" = ["admin", "orders:write"])),
    responses(
        (status = 202, body = Order, description = "The refund is recorded as pending and will be paid"),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "Nothing captured to refund (`illegal_transition`)", body = Problem),
        (status = 415, body = Problem), (status = 422, description = "More than is left to refund, or no reason", body = Problem),
    )
)]
pub(crate) async fn refund_order(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<OrderWriters>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewRefund>,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    let mut errors = Vec::new();
    if body.reason.trim().is_empty() || body.reason.chars().count() > 500 {
        errors.push(FieldError { field: "/reason".into(), message: "must hold 1–500 characters".into() });
    }
    let mut tx = state.db.begin_write().await?;
    if !lock(&mut tx, state.db.dialect(), &id).await? {
        return Err(not_found(&id));
    }
    let order = saga_view(&mut tx, &id).await?.ok_or_else(|| not_found(&id))?;
    if !matches!(order.payment_status, PaymentStatus::Captured | PaymentStatus::PartiallyRefunded) {
        return Err(illegal(&format!("the payment of order `{id}`"), order.payment_status.as_str(), "refunded"));
    }
    let pending: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(amount) AS BIGINT) FROM order_refunds WHERE order_id = $1 AND status = 'pending'",
    )
    .bind(&id)
    .fetch_one(&mut *tx)
    .await?;
    let left = order.captured - order.refunded - pending.unwrap_or(0);
    if body.amount <= 0 || body.amount > left {
        errors.push(FieldError {
            field: "/amount".into(),
            message: format!("must be 1 to {left}, what is left to refund"),
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let refund_id = crate::ids::new_id("rfd");
    let actor = principal.actor().to_string();
    let now = crate::time::now_millis().0;
    sqlx::query(
        "INSERT INTO order_refunds (id, order_id, amount, reason, status, actor, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $6)",
    )
    .bind(&refund_id)
    .bind(&id)
    .bind(body.amount)
    .bind(body.reason.trim())
    .bind(&actor)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let data = json!({ "refund_id": refund_id, "amount": body.amount, "reason": body.reason.trim() });
    timeline::record(&mut tx, &id, "refund.requested", &actor, data).await?;
    saga::refund(&mut tx, &id, &refund_id).await?;
    let order = load(&mut tx, &id).await?.ok_or_else(|| not_found(&id))?;
    tx.commit().await?;
    crate::jobs::wake(&state);
    timeline::notify(&state, &id);
    Ok((StatusCode::ACCEPTED, Json(order)))
}
