//! Locations (`/v1/inventory/locations`), stock levels per SKU (`/v1/inventory/levels/{sku}`)
//! and adjustments (`/v1/inventory/adjustments`): the only way on-hand stock changes
//! besides a sale, each with a reason, a note and who made it, kept for ever.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::{InventoryReaders, InventoryWriters, Watch, sku_exists};
use crate::catalog::{check_handle, check_sku_path, is_sku};
use crate::error::{ApiError, ApiJson, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::pagination::{Cursor, Page, PageParams};
use crate::state::AppState;
use crate::time::{Millis, now_millis};

/// Largest single adjustment, either way.
const MAX_DELTA: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LocationKind {
    Warehouse,
    Store,
    Kitchen,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewLocation {
    /// 1–120 of a-z, 0-9, `-`; unique.
    handle: String,
    name: String,
    kind: LocationKind,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Location {
    id: String,
    handle: String,
    name: String,
    kind: LocationKind,
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
}

fn location_from_row(row: &sqlx::any::AnyRow) -> Result<Location, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    Ok(Location {
        id: row.try_get("id")?,
        handle: row.try_get("handle")?,
        name: row.try_get("name")?,
        kind: serde_json::from_value(serde_json::Value::String(kind))
            .map_err(|e| sqlx::Error::Decode(e.to_string().into()))?,
        created_at: Millis(row.try_get("created_at")?),
    })
}

/// Create a location stock is kept at.
#[utoipa::path(
    post, path = "/v1/inventory/locations", tag = "inventory", request_body = NewLocation,
    security(("admin_key" = ["admin", "inventory:write"])),
    responses(
        (status = 201, body = Location), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, description = "The handle is taken", body = Problem), (status = 422, body = Problem),
    )
)]
pub(crate) async fn create_location(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<InventoryWriters>,
    ApiJson(new): ApiJson<NewLocation>,
) -> Result<(StatusCode, Json<Location>), ApiError> {
    let mut errors = Vec::new();
    check_handle(&new.handle, "/handle", &mut errors);
    if new.name.trim().is_empty() || new.name.chars().count() > 200 {
        errors.push(FieldError { field: "/name".into(), message: "must hold 1–200 characters".into() });
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let location = Location {
        id: crate::ids::new_id("loc"),
        handle: new.handle,
        name: new.name.trim().to_owned(),
        kind: new.kind,
        created_at: now_millis(),
    };
    let kind = serde_json::to_value(location.kind).expect("kinds serialize");
    let mut tx = state.db.begin_write().await?;
    let inserted = sqlx::query(
        "INSERT INTO inventory_locations (id, handle, name, kind, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (handle) DO NOTHING",
    )
    .bind(&location.id)
    .bind(&location.handle)
    .bind(&location.name)
    .bind(kind.as_str())
    .bind(location.created_at.0)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::conflict(
            "handle_exists",
            format!("a location already has the handle `{}`", location.handle),
        ));
    }
    crate::audit::record(
        &mut tx,
        &principal.actor(),
        "location.create",
        "location",
        &location.id,
        None,
        Some(&location),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(location)))
}

/// Every location, by handle.
#[utoipa::path(
    get, path = "/v1/inventory/locations", tag = "inventory", params(PageParams),
    security(("admin_key" = ["admin", "read", "inventory:write", "catalog:write"])),
    responses(
        (status = 200, body = inline(Page<Location>)),
        (status = 400, description = "A cursor this API did not return", body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem),
    )
)]
pub(crate) async fn list_locations(
    State(state): State<AppState>,
    _: Authorized<InventoryReaders>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<Location>>, ApiError> {
    let cursor = Cursor::for_text_keys(&params)?;
    let rows = sqlx::query("SELECT * FROM inventory_locations WHERE handle > $1 ORDER BY handle LIMIT $2")
        .bind(cursor.after())
        .bind(cursor.fetch_limit())
        .fetch_all(state.db.pool())
        .await?;
    let items = rows.iter().map(location_from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(cursor.page(items, |l| l.handle.clone())))
}

/// The id of the location `handle`, or a field error at `field`.
pub(crate) async fn location_id(
    conn: &mut sqlx::AnyConnection,
    handle: &str,
    field: &str,
) -> Result<Result<String, FieldError>, sqlx::Error> {
    let id: Option<String> = sqlx::query_scalar("SELECT id FROM inventory_locations WHERE handle = $1")
        .bind(handle)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(id.ok_or_else(|| FieldError {
        field: field.to_owned(),
        message: format!("no location has the handle `{handle}`"),
    }))
}

/// One SKU's stock at one location.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LocationLevel {
    location: String,
    on_hand: i64,
    reserved: i64,
    available: i64,
    committed: i64,
}

/// One SKU's stock, in total and per location.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Level {
    sku: String,
    /// Units held, reserved ones included.
    on_hand: i64,
    /// Held for active reservations.
    reserved: i64,
    /// `on_hand − reserved`: what can be reserved now.
    available: i64,
    /// Units sold (reservations committed).
    committed: i64,
    locations: Vec<LocationLevel>,
}

pub(crate) async fn level(conn: &mut sqlx::AnyConnection, sku: &str) -> Result<Level, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT l.handle, v.on_hand, v.reserved, v.committed FROM inventory_levels v
         JOIN inventory_locations l ON l.id = v.location_id WHERE v.sku = $1 ORDER BY l.handle",
    )
    .bind(sku)
    .fetch_all(&mut *conn)
    .await?;
    let mut level =
        Level { sku: sku.to_owned(), on_hand: 0, reserved: 0, available: 0, committed: 0, locations: vec![] };
    for row in rows {
        let (on_hand, reserved, committed): (i64, i64, i64) =
            (row.try_get("on_hand")?, row.try_get("reserved")?, row.try_get("committed")?);
        level.on_hand += on_hand;
        level.reserved += reserved;
        level.committed += committed;
        level.available += on_hand - reserved;
        level.locations.push(LocationLevel {
            location: row.try_get("handle")?,
            on_hand,
            reserved,
            available: on_hand - reserved,
            committed,
        });
    }
    Ok(level)
}

/// A SKU's stock: on hand, reserved, available and committed, in total and per location.
#[utoipa::path(
    get, path = "/v1/inventory/levels/{sku}", tag = "inventory", params(("sku" = String, Path)),
    security(("admin_key" = ["admin", "read", "inventory:write", "catalog:write"])),
    responses((status = 200, body = Level), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, description = "No variant has the SKU", body = Problem))
)]
pub(crate) async fn get_level(
    State(state): State<AppState>,
    _: Authorized<InventoryReaders>,
    Path(sku): Path<String>,
) -> Result<Json<Level>, ApiError> {
    check_sku_path(&sku)?;
    let mut conn = state.db.pool().acquire().await?;
    if !sku_exists(&mut conn, &sku).await? {
        return Err(ApiError::not_found(format!("no variant has the SKU `{sku}`")));
    }
    Ok(Json(level(&mut conn, &sku).await?))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Reason {
    /// Goods arrived (a delivery, a production run).
    Received,
    /// A customer sent goods back into stock.
    Returned,
    Damaged,
    Lost,
    /// A stock count found a difference.
    Count,
    /// Anything else; say what in `note`.
    Correction,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAdjustment {
    sku: String,
    /// A location handle.
    location: String,
    /// Units added (positive) or taken away (negative); never zero.
    delta: i64,
    reason: Reason,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Adjustment {
    id: String,
    sku: String,
    location: String,
    delta: i64,
    reason: Reason,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    actor: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
    /// The SKU's stock after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<Level>,
}

/// Add or remove stock at a location, with a reason; refused if it would leave fewer
/// units on hand than are reserved there.
#[utoipa::path(
    post, path = "/v1/inventory/adjustments", tag = "inventory", request_body = NewAdjustment,
    security(("admin_key" = ["admin", "inventory:write"])),
    responses(
        (status = 201, body = Adjustment), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, description = "It would leave on-hand stock below what is reserved (or below zero)", body = Problem),
        (status = 422, description = "An unknown SKU or location, a zero or huge delta", body = Problem),
    )
)]
pub(crate) async fn adjust(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<InventoryWriters>,
    ApiJson(new): ApiJson<NewAdjustment>,
) -> Result<(StatusCode, Json<Adjustment>), ApiError> {
    let mut errors = Vec::new();
    if new.delta == 0 || new.delta.unsigned_abs() > MAX_DELTA as u64 {
        errors
            .push(FieldError { field: "/delta".into(), message: format!("must be non-zero and within ±{MAX_DELTA}") });
    }
    if new.note.as_ref().is_some_and(|n| n.chars().count() > 1000) {
        errors.push(FieldError { field: "/note".into(), message: "must be at most 1000 characters".into() });
    }
    let mut tx = state.db.begin_write().await?;
    if !is_sku(&new.sku) || !sku_exists(&mut tx, &new.sku).await? {
        errors.push(FieldError { field: "/sku".into(), message: format!("no variant has the SKU `{}`", new.sku) });
    }
    let location = location_id(&mut tx, &new.location, "/location").await?;
    let location = match location {
        Ok(id) => id,
        Err(error) => {
            errors.push(error);
            String::new()
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let watch = Watch::start(&mut tx, vec![new.sku.clone()]).await?;
    let now = now_millis().0;
    sqlx::query(
        "INSERT INTO inventory_levels (sku, location_id, on_hand, reserved, committed, updated_at)
         VALUES ($1, $2, 0, 0, 0, $3) ON CONFLICT (sku, location_id) DO NOTHING",
    )
    .bind(&new.sku)
    .bind(&location)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let changed = sqlx::query(
        "UPDATE inventory_levels SET on_hand = on_hand + $1, updated_at = $2
         WHERE sku = $3 AND location_id = $4 AND on_hand + $1 >= reserved",
    )
    .bind(new.delta)
    .bind(now)
    .bind(&new.sku)
    .bind(&location)
    .execute(&mut *tx)
    .await?;
    if changed.rows_affected() == 0 {
        let (on_hand, reserved): (i64, i64) =
            sqlx::query_as("SELECT on_hand, reserved FROM inventory_levels WHERE sku = $1 AND location_id = $2")
                .bind(&new.sku)
                .bind(&location)
                .fetch_one(&mut *tx)
                .await?;
        return Err(ApiError::conflict(
            "insufficient_stock",
            format!(
                "{} at `{}` has {on_hand} on hand, {reserved} of them reserved; taking {} would leave {}",
                new.sku,
                new.location,
                -new.delta,
                on_hand + new.delta
            ),
        ));
    }
    let id = crate::ids::new_id("adj");
    let actor = principal.actor().to_string();
    sqlx::query(
        "INSERT INTO inventory_adjustments (id, sku, location_id, delta, reason, note, actor, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(&new.sku)
    .bind(&location)
    .bind(new.delta)
    .bind(serde_json::to_value(new.reason).expect("reasons serialize").as_str())
    .bind(&new.note)
    .bind(&actor)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    watch.finish(&mut tx, state.config.low_stock_threshold).await?;
    let level = level(&mut tx, &new.sku).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok((
        StatusCode::CREATED,
        Json(Adjustment {
            id,
            sku: new.sku,
            location: new.location,
            delta: new.delta,
            reason: new.reason,
            note: new.note,
            actor,
            created_at: Millis(now),
            level: Some(level),
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AdjustmentFilter {
    /// Only this SKU's.
    sku: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
}

/// The adjustment trail, oldest first.
#[utoipa::path(
    get, path = "/v1/inventory/adjustments", tag = "inventory", params(AdjustmentFilter),
    security(("admin_key" = ["admin", "read", "inventory:write", "catalog:write"])),
    responses(
        (status = 200, body = inline(Page<Adjustment>)),
        (status = 400, description = "A cursor this API did not return", body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem),
    )
)]
pub(crate) async fn list_adjustments(
    State(state): State<AppState>,
    _: Authorized<InventoryReaders>,
    ApiQuery(filter): ApiQuery<AdjustmentFilter>,
) -> Result<Json<Page<Adjustment>>, ApiError> {
    let cursor = Cursor::from_params(&PageParams { limit: filter.limit, cursor: filter.cursor.clone() })?;
    let by_sku = if filter.sku.is_some() { "AND a.sku = $3" } else { "" };
    let sql = format!(
        "SELECT a.*, l.handle AS location_handle FROM inventory_adjustments a
         JOIN inventory_locations l ON l.id = a.location_id
         WHERE a.id > $1 {by_sku} ORDER BY a.id LIMIT $2"
    );
    let mut query = sqlx::query(&sql).bind(cursor.after()).bind(cursor.fetch_limit());
    if let Some(sku) = &filter.sku {
        query = query.bind(sku);
    }
    let rows = query.fetch_all(state.db.pool()).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let reason: String = row.try_get("reason")?;
        items.push(Adjustment {
            id: row.try_get("id")?,
            sku: row.try_get("sku")?,
            location: row.try_get("location_handle")?,
            delta: row.try_get("delta")?,
            reason: serde_json::from_value(serde_json::Value::String(reason)).map_err(ApiError::internal)?,
            note: row.try_get("note")?,
            actor: row.try_get("actor")?,
            created_at: Millis(row.try_get("created_at")?),
            level: None,
        });
    }
    Ok(Json(cursor.page(items, |a| a.id.clone())))
}
