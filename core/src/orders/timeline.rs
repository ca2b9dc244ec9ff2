//! The order timeline: every state change of an order or its payment, who made it and
//! what it carried, written in the transaction of the change. It is the one source that
//! server-sent events replay and follow, and that webhooks deliver, so neither can show a
//! change that rolled back or miss one that committed.

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;
use utoipa::ToSchema;

use crate::state::AppState;
use crate::time::{Millis, now_millis};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct TimelineEntry {
    id: String,
    /// 1 for the order's first entry, then one more each (the SSE event id).
    seq: i64,
    /// `order.created`, `stock.reserved`, `payment.authorized`, `order.confirmed`, …
    #[serde(rename = "type")]
    kind: String,
    /// The order's status and payment status just after this change.
    status: String,
    payment_status: String,
    /// Who made it: a key, a customer, or `system` for the saga.
    actor: String,
    data: Value,
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
}

impl TimelineEntry {
    pub(crate) fn seq(&self) -> i64 {
        self.seq
    }

    pub(crate) fn kind(&self) -> &str {
        &self.kind
    }
}

/// Appends `kind` to the order's timeline in the caller's transaction (after the change
/// it reports; the caller holds the order's lock, [`super::lock`]), and enqueues its
/// webhook deliveries there too. Call [`notify`] after commit.
pub(crate) async fn record(
    conn: &mut sqlx::AnyConnection,
    order_id: &str,
    kind: &str,
    actor: &str,
    data: Value,
) -> Result<(), sqlx::Error> {
    let (status, payment_status): (String, String) =
        sqlx::query_as("SELECT status, payment_status FROM orders WHERE id = $1")
            .bind(order_id)
            .fetch_one(&mut *conn)
            .await?;
    let id = crate::ids::new_id("oev");
    let now = now_millis();
    let seq: i64 =
        sqlx::query_scalar("SELECT CAST(COALESCE(MAX(seq), 0) + 1 AS BIGINT) FROM order_events WHERE order_id = $1")
            .bind(order_id)
            .fetch_one(&mut *conn)
            .await?;
    sqlx::query(
        "INSERT INTO order_events (id, order_id, seq, type, status, payment_status, actor, data, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(order_id)
    .bind(seq)
    .bind(kind)
    .bind(&status)
    .bind(&payment_status)
    .bind(actor)
    .bind(data.to_string())
    .bind(now.0)
    .execute(&mut *conn)
    .await?;
    let mut body = json!({ "order_id": order_id, "status": status, "payment_status": payment_status, "actor": actor });
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, data) {
        body.extend(extra);
    }
    let payload = json!({ "type": kind, "timestamp": now, "data": body });
    crate::webhooks::enqueue(conn, &id, kind, &payload).await
}

/// Tells this process's event streams that `order_id` changed; other replicas' streams
/// find the change on their next poll.
pub(crate) fn notify(state: &AppState, order_id: &str) {
    let _ = state.orders_changed.send(order_id.to_owned());
}

/// The order's timeline after entry `after` (0 for all), oldest first, at most 500.
pub(crate) async fn after(
    conn: &mut sqlx::AnyConnection,
    order_id: &str,
    after: i64,
) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    let rows = sqlx::query("SELECT * FROM order_events WHERE order_id = $1 AND seq > $2 ORDER BY seq LIMIT 500")
        .bind(order_id)
        .bind(after)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(TimelineEntry {
                id: row.try_get("id")?,
                seq: row.try_get("seq")?,
                kind: row.try_get("type")?,
                status: row.try_get("status")?,
                payment_status: row.try_get("payment_status")?,
                actor: row.try_get("actor")?,
                data: serde_json::from_str(&row.try_get::<String, _>("data")?).unwrap_or(Value::Null),
                created_at: Millis(row.try_get("created_at")?),
            })
        })
        .collect()
}
