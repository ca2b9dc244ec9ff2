//! `/v1/inventory/reservations`: stock held for a cart or an order until it is committed
//! (sold), released, or expires.
//!
//! A reservation is `active` until exactly one of `commit`, `release` or expiry moves it
//! on; each move is a conditional update of its status inside the transaction that moves
//! the stock, so a commit racing the expiry sweep can only ever win or lose whole. Taking
//! stock locks the SKU's level rows (`FOR UPDATE` on PostgreSQL; SQLite has one writer),
//! in SKU order so two multi-line reservations cannot deadlock, then checks and takes.
//! Expiry is durable: the deadline is a column, and the catalog clock on any core replica
//! releases what is past it, after a restart as before.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::levels::location_id;
use super::{InventoryReaders, InventoryWriters, Watch, sku_exists};
use crate::catalog::is_sku;
use crate::db::{Database, Dialect};
use crate::error::{ApiError, ApiJson, FieldError, Problem};
use crate::keys::Authorized;
use crate::state::AppState;
use crate::time::{Millis, now_millis};

const DEFAULT_EXPIRY_SECS: u64 = 15 * 60;
const MAX_EXPIRY_SECS: u64 = 7 * 24 * 3600;
const MAX_LINES: usize = 100;
const MAX_QUANTITY: i64 = 1_000_000;

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineInput {
    sku: String,
    quantity: i64,
    /// A location handle; absent: taken from the locations with most available first,
    /// split across them when one has too few.
    #[serde(default)]
    location: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewReservation {
    /// What holds the stock: a cart or order id of the caller's (1–200 characters).
    reference: String,
    /// Seconds until it releases itself: 1 to 604800 (a week), default 900.
    #[serde(default)]
    expires_in: Option<u64>,
    lines: Vec<LineInput>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Line {
    sku: String,
    location: String,
    quantity: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Reservation {
    id: String,
    reference: String,
    /// `active`, `committed`, `released`, `expired`, or `restocked` (committed, then returned to stock by a cancelled order).
    status: String,
    #[schema(value_type = String, format = DateTime)]
    expires_at: Millis,
    lines: Vec<Line>,
    actor: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Millis,
}

async fn load(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Option<Reservation>, sqlx::Error> {
    let Some(row) =
        sqlx::query("SELECT * FROM inventory_reservations WHERE id = $1").bind(id).fetch_optional(&mut *conn).await?
    else {
        return Ok(None);
    };
    let lines = sqlx::query(
        "SELECT r.sku, l.handle, r.quantity FROM inventory_reservation_lines r
         JOIN inventory_locations l ON l.id = r.location_id WHERE r.reservation_id = $1 ORDER BY r.sku, l.handle",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| Ok(Line { sku: r.try_get(0)?, location: r.try_get(1)?, quantity: r.try_get(2)? }))
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Some(Reservation {
        id: row.try_get("id")?,
        reference: row.try_get("reference")?,
        status: row.try_get("status")?,
        expires_at: Millis(row.try_get("expires_at")?),
        lines,
        actor: row.try_get("actor")?,
        created_at: Millis(row.try_get("created_at")?),
        updated_at: Millis(row.try_get("updated_at")?),
    }))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no reservation `{id}`"))
}

/// Reserve stock for every line, or for none.
#[utoipa::path(
    post, path = "/v1/inventory/reservations", tag = "inventory", request_body = NewReservation,
    security(("admin_key" = ["admin", "inventory:write"])),
    responses(
        (status = 201, body = Reservation), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, description = "Too few units available for a line (`insufficient_stock`); nothing was reserved", body = Problem),
        (status = 422, description = "An unknown SKU or location, a bad quantity or expiry", body = Problem),
    )
)]
pub(crate) async fn reserve(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<InventoryWriters>,
    ApiJson(new): ApiJson<NewReservation>,
) -> Result<(StatusCode, Json<Reservation>), ApiError> {
    let field = |field: String, message: String| FieldError { field, message };
    let mut errors = Vec::new();
    if new.reference.trim().is_empty() || new.reference.chars().count() > 200 {
        errors.push(field("/reference".into(), "must hold 1–200 characters".into()));
    }
    let expires_in = new.expires_in.unwrap_or(DEFAULT_EXPIRY_SECS);
    if !(1..=MAX_EXPIRY_SECS).contains(&expires_in) {
        errors.push(field("/expires_in".into(), format!("must be 1 to {MAX_EXPIRY_SECS} seconds")));
    }
    if new.lines.is_empty() || new.lines.len() > MAX_LINES {
        errors.push(field("/lines".into(), format!("must hold 1–{MAX_LINES} lines")));
    }
    let mut tx = state.db.begin_write().await?;
    // SKU → (quantity, location id if named); one line per SKU and location.
    let mut wanted: BTreeMap<(String, Option<String>), (i64, usize)> = BTreeMap::new();
    for (i, line) in new.lines.iter().enumerate() {
        let at = format!("/lines/{i}");
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            errors.push(field(format!("{at}/quantity"), format!("must be 1 to {MAX_QUANTITY}")));
        }
        if !is_sku(&line.sku) || !sku_exists(&mut tx, &line.sku).await? {
            errors.push(field(format!("{at}/sku"), format!("no variant has the SKU `{}`", line.sku)));
            continue;
        }
        let location = match &line.location {
            None => None,
            Some(handle) => match location_id(&mut tx, handle, &format!("{at}/location")).await? {
                Ok(id) => Some(id),
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            },
        };
        if wanted.insert((line.sku.clone(), location), (line.quantity, i)).is_some() {
            errors.push(field(at, format!("`{}` is asked for twice; ask once with the total", line.sku)));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let expires_at = now_millis().0 + (expires_in * 1000) as i64;
    let holder = Holder { reference: new.reference.trim(), expires_at, actor: &principal.actor().to_string() };
    let lines: Vec<Want> = wanted
        .into_iter()
        .map(|((sku, location), (quantity, line))| Want {
            sku,
            location,
            quantity,
            line,
            handle: new.lines[line].location.clone(),
        })
        .collect();
    let id = take(&mut tx, state.db.dialect(), &holder, &lines, state.config.low_stock_threshold).await?;
    let reservation = load(&mut tx, &id).await?.ok_or_else(|| not_found(&id))?;
    tx.commit().await?;
    state.publisher.wake();
    Ok((StatusCode::CREATED, Json(reservation)))
}

/// Who holds a reservation, and until when.
pub(crate) struct Holder<'a> {
    pub(crate) reference: &'a str,
    pub(crate) expires_at: i64,
    pub(crate) actor: &'a str,
}

/// One line to reserve: a SKU, from one location (its id) or from any, and where it stands
/// in the caller's request (for messages).
pub(crate) struct Want {
    pub(crate) sku: String,
    pub(crate) location: Option<String>,
    pub(crate) quantity: i64,
    pub(crate) line: usize,
    pub(crate) handle: Option<String>,
}

/// Reserves every line inside `tx`, or none: a 409 `insufficient_stock` naming the short
/// line. Returns the reservation's id. The caller commits and wakes the publisher.
pub(crate) async fn take(
    tx: &mut sqlx::AnyConnection,
    dialect: Dialect,
    holder: &Holder<'_>,
    lines: &[Want],
    low_stock: i64,
) -> Result<String, ApiError> {
    let watch = Watch::start(&mut *tx, lines.iter().map(|want| want.sku.clone()).collect()).await?;
    let now = now_millis().0;
    let id = crate::ids::new_id("rsv");
    let mut taken: BTreeMap<(String, String), i64> = BTreeMap::new();
    let lock = if dialect == Dialect::Postgres { " FOR UPDATE" } else { "" };
    for Want { sku, location, quantity, line, handle } in lines {
        let at_location = if location.is_some() { "AND location_id = $2" } else { "" };
        let sql = format!(
            "SELECT location_id, on_hand - reserved AS available FROM inventory_levels
             WHERE sku = $1 {at_location} ORDER BY location_id{lock}"
        );
        let mut query = sqlx::query(&sql).bind(sku);
        if let Some(location) = location {
            query = query.bind(location);
        }
        let rows = query.fetch_all(&mut *tx).await?;
        let mut levels = rows
            .iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        // Earlier lines of this reservation may have taken from the same rows.
        for (location, available) in &mut levels {
            *available -= taken.get(&(sku.clone(), location.clone())).copied().unwrap_or(0);
        }
        levels.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let available: i64 = levels.iter().map(|(_, a)| (*a).max(0)).sum();
        if available < *quantity {
            let place = match handle {
                Some(handle) => format!(" at `{handle}`"),
                None => String::new(),
            };
            return Err(ApiError::conflict(
                "insufficient_stock",
                format!(
                    "line {line}: {quantity} of `{sku}` asked for{place}, {available} available; nothing was reserved"
                ),
            ));
        }
        let mut left = *quantity;
        for (location, available) in levels {
            if left == 0 {
                break;
            }
            let take = left.min(available.max(0));
            if take > 0 {
                *taken.entry((sku.clone(), location)).or_default() += take;
                left -= take;
            }
        }
    }
    for ((sku, location), quantity) in &taken {
        let changed = sqlx::query(
            "UPDATE inventory_levels SET reserved = reserved + $1, updated_at = $2
             WHERE sku = $3 AND location_id = $4 AND on_hand - reserved >= $1",
        )
        .bind(quantity)
        .bind(now)
        .bind(sku)
        .bind(location)
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() != 1 {
            // The rows are locked, so this cannot happen; refuse rather than oversell.
            return Err(ApiError::internal(format!("stock of {sku} changed under a lock")));
        }
    }
    sqlx::query(
        "INSERT INTO inventory_reservations (id, reference, status, expires_at, actor, created_at, updated_at)
         VALUES ($1, $2, 'active', $3, $4, $5, $5)",
    )
    .bind(&id)
    .bind(holder.reference)
    .bind(holder.expires_at)
    .bind(holder.actor)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for ((sku, location), quantity) in &taken {
        sqlx::query(
            "INSERT INTO inventory_reservation_lines (reservation_id, sku, location_id, quantity) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(sku)
        .bind(location)
        .bind(quantity)
        .execute(&mut *tx)
        .await?;
    }
    watch.finish(&mut *tx, low_stock).await?;
    Ok(id)
}

/// One reservation.
#[utoipa::path(
    get, path = "/v1/inventory/reservations/{id}", tag = "inventory", params(("id" = String, Path)),
    security(("admin_key" = ["admin", "read", "inventory:write", "catalog:write"])),
    responses((status = 200, body = Reservation), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn get_reservation(
    State(state): State<AppState>,
    _: Authorized<InventoryReaders>,
    Path(id): Path<String>,
) -> Result<Json<Reservation>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    load(&mut conn, &id).await?.map(Json).ok_or_else(|| not_found(&id))
}

/// Where a reservation goes, and what that does to the stock it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Sold: the units leave on-hand stock for `committed`.
    Commit,
    /// Given back by the caller.
    Release,
    /// Given back by the clock.
    Expire,
    /// A committed reservation whose sale was undone (a cancelled order): its units
    /// return from `committed` to on-hand stock.
    Restock,
}

/// Moves the reservation `id` to `end` with its stock, inside the caller's transaction,
/// republishing the variants whose availability class moved; `false` when it was not in
/// the state `end` moves from (active; committed for a restock) or, for a commit, already
/// past its expiry.
pub(crate) async fn end_in(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    end: End,
    low_stock: i64,
) -> Result<bool, sqlx::Error> {
    let skus: Vec<String> = sqlx::query_scalar("SELECT sku FROM inventory_reservation_lines WHERE reservation_id = $1")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    let watch = Watch::start(&mut *conn, skus).await?;
    if !finish(&mut *conn, id, end, now_millis().0).await? {
        return Ok(false);
    }
    watch.finish(&mut *conn, low_stock).await?;
    Ok(true)
}

/// Moves the reservation `id` to `end` with its stock, inside `tx`; `false` when it was
/// not in the state `end` moves from (or, for a commit, already past its expiry).
async fn finish(conn: &mut sqlx::AnyConnection, id: &str, end: End, now: i64) -> Result<bool, sqlx::Error> {
    let moved = match end {
        End::Commit => sqlx::query(
            "UPDATE inventory_reservations SET status = 'committed', updated_at = $1
             WHERE id = $2 AND status = 'active' AND expires_at > $1",
        ),
        End::Release => sqlx::query(
            "UPDATE inventory_reservations SET status = 'released', updated_at = $1 WHERE id = $2 AND status = 'active'",
        ),
        End::Expire => sqlx::query(
            "UPDATE inventory_reservations SET status = 'expired', updated_at = $1
             WHERE id = $2 AND status = 'active' AND expires_at <= $1",
        ),
        End::Restock => sqlx::query(
            "UPDATE inventory_reservations SET status = 'restocked', updated_at = $1 WHERE id = $2 AND status = 'committed'",
        ),
    }
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if moved.rows_affected() == 0 {
        return Ok(false);
    }
    let lines: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT sku, location_id, quantity FROM inventory_reservation_lines WHERE reservation_id = $1 ORDER BY sku, location_id")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    for (sku, location, quantity) in lines {
        let sql = match end {
            End::Commit => {
                "UPDATE inventory_levels SET on_hand = on_hand - $1, reserved = reserved - $1,
                 committed = committed + $1, updated_at = $2 WHERE sku = $3 AND location_id = $4"
            }
            End::Release | End::Expire => {
                "UPDATE inventory_levels SET reserved = reserved - $1, updated_at = $2 WHERE sku = $3 AND location_id = $4"
            }
            End::Restock => {
                "UPDATE inventory_levels SET on_hand = on_hand + $1, committed = committed - $1, updated_at = $2
                 WHERE sku = $3 AND location_id = $4"
            }
        };
        sqlx::query(sql).bind(quantity).bind(now).bind(&sku).bind(&location).execute(&mut *conn).await?;
    }
    Ok(true)
}

async fn end_reservation(state: AppState, id: String, end: End) -> Result<Json<Reservation>, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let before = load(&mut tx, &id).await?.ok_or_else(|| not_found(&id))?;
    let watch = Watch::start(&mut tx, before.lines.iter().map(|l| l.sku.clone()).collect()).await?;
    let now = now_millis().0;
    if !finish(&mut tx, &id, end, now).await? {
        let (code, detail) = if before.status == "active" {
            (
                "reservation_expired",
                format!("reservation `{id}` expired at {}; its stock is released", before.expires_at),
            )
        } else {
            ("reservation_not_active", format!("reservation `{id}` is already {}", before.status))
        };
        drop(tx);
        if code == "reservation_expired" {
            expire_due(&state.db, state.config.low_stock_threshold).await?;
        }
        return Err(ApiError::conflict(code, detail));
    }
    watch.finish(&mut tx, state.config.low_stock_threshold).await?;
    let after = load(&mut tx, &id).await?.ok_or_else(|| not_found(&id))?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(Json(after))
}

/// Commit a reservation on sale: its units leave stock for good.
#[utoipa::path(
    post, path = "/v1/inventory/reservations/{id}/commit", tag = "inventory", params(("id" = String, Path)),
    security(("admin_key" = ["admin", "inventory:write"])),
    responses(
        (status = 200, body = Reservation), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "Already committed, released or expired", body = Problem),
    )
)]
pub(crate) async fn commit_reservation(
    State(state): State<AppState>,
    _: Authorized<InventoryWriters>,
    Path(id): Path<String>,
) -> Result<Json<Reservation>, ApiError> {
    end_reservation(state, id, End::Commit).await
}

/// Release a reservation: its units are available again.
#[utoipa::path(
    post, path = "/v1/inventory/reservations/{id}/release", tag = "inventory", params(("id" = String, Path)),
    security(("admin_key" = ["admin", "inventory:write"])),
    responses(
        (status = 200, body = Reservation), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "Already committed, released or expired", body = Problem),
    )
)]
pub(crate) async fn release_reservation(
    State(state): State<AppState>,
    _: Authorized<InventoryWriters>,
    Path(id): Path<String>,
) -> Result<Json<Reservation>, ApiError> {
    end_reservation(state, id, End::Release).await
}

/// Releases every active reservation past its expiry, each in its own transaction;
/// returns how many. Safe on every replica at once: each move is conditional.
pub(crate) async fn expire_due(db: &Database, low_stock: i64) -> Result<usize, sqlx::Error> {
    let now = now_millis().0;
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM inventory_reservations WHERE status = 'active' AND expires_at <= $1 ORDER BY expires_at LIMIT 1000",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    let mut expired = 0;
    for id in due {
        let mut tx = db.begin_write().await?;
        let skus: Vec<String> =
            sqlx::query_scalar("SELECT sku FROM inventory_reservation_lines WHERE reservation_id = $1")
                .bind(&id)
                .fetch_all(&mut *tx)
                .await?;
        let watch = Watch::start(&mut tx, skus).await?;
        if finish(&mut tx, &id, End::Expire, now).await? {
            watch.finish(&mut tx, low_stock).await?;
            tx.commit().await?;
            expired += 1;
        }
    }
    Ok(expired)
}
