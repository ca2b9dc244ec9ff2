//! Notifications: what the core tells the outside world happened, as a durable,
//! ordered log (`GET /v1/notifications`), written in the same transaction as the change
//! that causes it so none is lost or sent for a change that rolled back.
//!
//! Consumers read it like Stripe's events: page forward from the last id they saw, by
//! kind or subject. Delivery channels (webhooks) will read the same rows. The first kinds
//! are `ratelimit.alert.firing` and `ratelimit.alert.resolved`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiQuery, Problem};
use crate::keys::{Authorized, Readers};
use crate::pagination::{Cursor, Page, PageParams};
use crate::state::AppState;
use crate::time::{Millis, now_millis};

/// Adds a notification, in the caller's transaction.
pub(crate) async fn notify(
    conn: &mut sqlx::AnyConnection,
    kind: &str,
    subject: &str,
    data: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO notifications (id, kind, subject, data, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(crate::ids::new_id("ntf"))
        .bind(kind)
        .bind(subject)
        .bind(data.to_string())
        .bind(now_millis().0)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Notification {
    /// `ntf_…`, sorting by creation time.
    id: String,
    /// What happened, e.g. `ratelimit.alert.firing`.
    kind: String,
    /// The id of what it happened to (a policy's id, …).
    subject: String,
    #[schema(value_type = Object)]
    data: Value,
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct NotificationFilter {
    /// Only notifications of this kind.
    kind: Option<String>,
    /// Only notifications about this subject.
    subject: Option<String>,
}

/// List notifications, oldest first; page on with `cursor` to read new ones as they come.
#[utoipa::path(
    get, path = "/v1/notifications", tag = "notifications",
    params(NotificationFilter, PageParams),
    security(("admin_key" = ["admin", "read"])),
    responses(
        (status = 200, description = "A page of notifications", body = inline(Page<Notification>)),
        (status = 400, description = "Invalid cursor", body = Problem),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 422, description = "Invalid limit", body = Problem),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Readers>,
    ApiQuery(filter): ApiQuery<NotificationFilter>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<Notification>>, ApiError> {
    let cursor = Cursor::from_params(&page)?;
    let rows = sqlx::query(
        "SELECT * FROM notifications WHERE id > $1 AND ($2 = '' OR kind = $2) AND ($3 = '' OR subject = $3)
         ORDER BY id LIMIT $4",
    )
    .bind(cursor.after())
    .bind(filter.kind.unwrap_or_default())
    .bind(filter.subject.unwrap_or_default())
    .bind(cursor.fetch_limit())
    .fetch_all(state.db.pool())
    .await?;
    // A `token` in a notification's data (a verification or reset token for a customer)
    // gives power over an account: only keys that may change customers see it.
    let sees_tokens = principal.require(&[crate::keys::Scope::CustomersWrite]).is_ok();
    let items = rows
        .iter()
        .map(|row| {
            let data: String = row.try_get("data")?;
            let mut data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            if !sees_tokens && let Some(map) = data.as_object_mut() {
                map.remove("token");
            }
            Ok(Notification {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                subject: row.try_get("subject")?,
                data,
                created_at: Millis(row.try_get("created_at")?),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(cursor.page(items, |n| n.id.clone())))
}
