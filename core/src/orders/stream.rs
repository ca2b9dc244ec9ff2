//! Live order status as server-sent events: `GET /v1/orders/{id}/events` for operators and
//! `GET /auth/{project}/orders/{id}/events` for the customer who placed it.
//!
//! A stream replays the order's timeline after `Last-Event-ID` (from the start without
//! one), then follows it: a change committed by this process wakes the stream at once,
//! and a poll every second finds changes other replicas made. Each event's id is the
//! entry's sequence number, so a reconnecting client (every `EventSource` does) misses
//! nothing and sees nothing twice.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast;

use super::OrderReaders;
use super::api::{find, find_own};
use super::timeline::{self, TimelineEntry};
use crate::customers::auth::SignedIn;
use crate::error::{ApiError, Problem};
use crate::keys::Authorized;
use crate::state::AppState;

/// How often a stream looks for changes made by other replicas.
const POLL: Duration = Duration::from_secs(1);

fn last_event_id(headers: &HeaderMap) -> i64 {
    headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).unwrap_or(0).max(0)
}

struct Follow {
    state: AppState,
    order_id: String,
    last: i64,
    pending: VecDeque<TimelineEntry>,
    changes: broadcast::Receiver<String>,
}

fn follow(state: AppState, order_id: String, last: i64) -> impl Stream<Item = Result<Event, Infallible>> {
    let changes = state.orders_changed.subscribe();
    let start = Follow { state, order_id, last, pending: VecDeque::new(), changes };
    futures_util::stream::unfold(start, |mut follow| async move {
        loop {
            if let Some(entry) = follow.pending.pop_front() {
                follow.last = entry.seq();
                let event = Event::default()
                    .id(entry.seq().to_string())
                    .event(entry.kind())
                    .json_data(&entry)
                    .unwrap_or_else(|_| Event::default().comment("unencodable entry"));
                return Some((Ok(event), follow));
            }
            let fetched = async {
                let mut conn = follow.state.db.pool().acquire().await?;
                timeline::after(&mut conn, &follow.order_id, follow.last).await
            };
            match fetched.await {
                Ok(entries) if !entries.is_empty() => {
                    follow.pending.extend(entries);
                    continue;
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "reading an order's timeline for its event stream failed"),
            }
            let poll = tokio::time::sleep(POLL);
            tokio::pin!(poll);
            loop {
                tokio::select! {
                    () = &mut poll => break,
                    changed = follow.changes.recv() => match changed {
                        Ok(id) if id == follow.order_id => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                }
            }
        }
    })
}

/// The order's changes as server-sent events: its timeline so far (after `Last-Event-ID`),
/// then each change as it happens.
#[utoipa::path(
    get, path = "/v1/orders/{id}/events", tag = "orders",
    params(("id" = String, Path), ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event")),
    security(("admin_key" = ["admin", "read", "orders:write"])),
    responses(
        (status = 200, content_type = "text/event-stream", description = "Timeline entries as events: `id` its sequence number, `event` its type, `data` the entry"),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
    )
)]
pub(crate) async fn order_events(
    State(state): State<AppState>,
    _: Authorized<OrderReaders>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    find(&state, &id).await?;
    Ok(Sse::new(follow(state, id, last_event_id(&headers))).keep_alive(KeepAlive::default()))
}

/// The signed-in customer's order's changes as server-sent events.
#[utoipa::path(
    get, path = "/auth/{project}/orders/{id}/events", tag = "orders",
    params(("project" = String, Path), ("id" = String, Path), ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event")),
    security(("customer_token" = [])),
    responses(
        (status = 200, content_type = "text/event-stream", description = "Timeline entries as events"),
        (status = 401, body = Problem), (status = 404, body = Problem),
    )
)]
pub(crate) async fn own_order_events(
    State(state): State<AppState>,
    who: SignedIn,
    Path((_project, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    find_own(&state, &who, &id).await?;
    Ok(Sse::new(follow(state, id, last_event_id(&headers))).keep_alive(KeepAlive::default()))
}
