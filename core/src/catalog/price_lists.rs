//! `/v1/catalog/price-lists`: promotions that start and end on their own.
//!
//! A price list names amounts for SKUs in currencies they are already priced in, and the
//! stretch of time it runs. While it runs the lowest of the regular, sale and listed
//! amounts is charged and the regular one is shown as `compare_at_amount`. Where lists
//! overlap, the lowest listed amount wins. The edge switches on its own clock (records
//! hold the answers either side of each moment); the catalog clock republishes at each.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::{CatalogReaders, CatalogWriters, check_amount, check_currency, is_sku, storefront};
use crate::error::{ApiError, ApiJson, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::pagination::{Cursor, Page, PageParams};
use crate::state::AppState;
use crate::time::{Millis, now_millis};

const MAX_PRICES: usize = 10_000;

/// One listed amount.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListedPrice {
    sku: String,
    currency: String,
    /// Minor units.
    amount: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewPriceList {
    name: String,
    #[schema(value_type = String, format = DateTime)]
    starts_at: Millis,
    /// Absent: runs until deleted.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    ends_at: Option<Millis>,
    prices: Vec<ListedPrice>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PriceListView {
    id: String,
    name: String,
    #[schema(value_type = String, format = DateTime)]
    starts_at: Millis,
    #[schema(value_type = Option<String>, format = DateTime)]
    ends_at: Option<Millis>,
    /// `scheduled`, `running` or `ended`, as of the answer.
    state: &'static str,
    prices: Vec<ListedPrice>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
}

async fn load(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Option<PriceListView>, sqlx::Error> {
    let Some(row) =
        sqlx::query("SELECT * FROM catalog_price_lists WHERE id = $1").bind(id).fetch_optional(&mut *conn).await?
    else {
        return Ok(None);
    };
    let prices = sqlx::query(
        "SELECT sku, currency, amount FROM catalog_price_list_prices WHERE price_list_id = $1 ORDER BY sku, currency",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|p| Ok(ListedPrice { sku: p.try_get("sku")?, currency: p.try_get("currency")?, amount: p.try_get("amount")? }))
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let starts_at: i64 = row.try_get("starts_at")?;
    let ends_at: Option<i64> = row.try_get("ends_at")?;
    let now = now_millis().0;
    let state = if now < starts_at {
        "scheduled"
    } else if ends_at.is_some_and(|end| now >= end) {
        "ended"
    } else {
        "running"
    };
    Ok(Some(PriceListView {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        starts_at: Millis(starts_at),
        ends_at: ends_at.map(Millis),
        state,
        prices,
        created_at: Millis(row.try_get("created_at")?),
    }))
}

/// Create a price list; it takes effect at `starts_at` and lapses at `ends_at`.
#[utoipa::path(
    post, path = "/v1/catalog/price-lists", tag = "catalog", request_body = NewPriceList,
    security(("admin_key" = ["admin", "catalog:write"])),
    responses(
        (status = 201, body = PriceListView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, description = "Every problem, each at its field (an unknown SKU, a currency the SKU is not priced in, …)", body = Problem),
    )
)]
pub(crate) async fn create_price_list(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<CatalogWriters>,
    ApiJson(new): ApiJson<NewPriceList>,
) -> Result<(StatusCode, Json<PriceListView>), ApiError> {
    let field = |field: String, message: String| FieldError { field, message };
    let mut errors = Vec::new();
    if new.name.trim().is_empty() || new.name.chars().count() > 200 {
        errors.push(field("/name".into(), "must hold 1–200 characters".into()));
    }
    if new.ends_at.is_some_and(|end| end <= new.starts_at) {
        errors.push(field("/ends_at".into(), "must be after `starts_at`".into()));
    }
    if new.prices.is_empty() || new.prices.len() > MAX_PRICES {
        errors.push(field("/prices".into(), format!("must list 1–{MAX_PRICES} prices")));
    }
    let mut tx = state.db.begin_write().await?;
    let mut seen = HashSet::new();
    for (i, price) in new.prices.iter().enumerate() {
        let at = format!("/prices/{i}");
        check_currency(&price.currency, format!("{at}/currency"), &mut errors);
        check_amount(price.amount, format!("{at}/amount"), &mut errors);
        if !is_sku(&price.sku) {
            errors.push(field(format!("{at}/sku"), super::SKU_RULE.into()));
            continue;
        }
        if !seen.insert((&price.sku, &price.currency)) {
            errors.push(field(at.clone(), format!("{} in {} is listed twice", price.sku, price.currency)));
        }
        let priced: Option<i64> = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM catalog_prices p WHERE p.variant_id = v.id AND p.currency = $2)
             FROM catalog_variants v WHERE v.sku = $1",
        )
        .bind(&price.sku)
        .bind(&price.currency)
        .fetch_optional(&mut *tx)
        .await?;
        match priced {
            None => errors.push(field(format!("{at}/sku"), format!("no variant has the SKU `{}`", price.sku))),
            Some(0) if super::is_currency(&price.currency) => errors.push(field(
                format!("{at}/currency"),
                format!(
                    "`{}` has no regular price in {}; a price list only changes existing prices",
                    price.sku, price.currency
                ),
            )),
            Some(_) => {}
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let id = crate::ids::new_id("prl");
    let now = now_millis().0;
    sqlx::query(
        "INSERT INTO catalog_price_lists (id, name, starts_at, ends_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(&id)
    .bind(new.name.trim())
    .bind(new.starts_at.0)
    .bind(new.ends_at.map(|m| m.0))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for price in &new.prices {
        sqlx::query(
            "INSERT INTO catalog_price_list_prices (price_list_id, sku, currency, amount) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(&price.sku)
        .bind(&price.currency)
        .bind(price.amount)
        .execute(&mut *tx)
        .await?;
    }
    let view =
        load(&mut tx, &id).await?.ok_or_else(|| ApiError::internal("a price list vanished inside its transaction"))?;
    crate::audit::record(&mut tx, &principal.actor(), "price_list.create", "price_list", &id, None, Some(&view))
        .await?;
    storefront::enqueue_skus(&mut tx, &new.prices.iter().map(|p| p.sku.clone()).collect()).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok((StatusCode::CREATED, Json(view)))
}

/// Price lists, newest last.
#[utoipa::path(
    get, path = "/v1/catalog/price-lists", tag = "catalog", params(PageParams),
    security(("admin_key" = ["admin", "read", "catalog:write", "inventory:write"])),
    responses(
        (status = 200, body = inline(Page<PriceListView>)),
        (status = 400, description = "A cursor this API did not return", body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem),
    )
)]
pub(crate) async fn list_price_lists(
    State(state): State<AppState>,
    _: Authorized<CatalogReaders>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<PriceListView>>, ApiError> {
    let cursor = Cursor::from_params(&params)?;
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM catalog_price_lists WHERE id > $1 ORDER BY id LIMIT $2")
        .bind(cursor.after())
        .bind(cursor.fetch_limit())
        .fetch_all(state.db.pool())
        .await?;
    let mut conn = state.db.pool().acquire().await?;
    let mut items = Vec::new();
    for id in &ids {
        items.extend(load(&mut conn, id).await?);
    }
    Ok(Json(cursor.page(items, |p| p.id.clone())))
}

/// One price list.
#[utoipa::path(
    get, path = "/v1/catalog/price-lists/{id}", tag = "catalog", params(("id" = String, Path)),
    security(("admin_key" = ["admin", "read", "catalog:write", "inventory:write"])),
    responses((status = 200, body = PriceListView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn get_price_list(
    State(state): State<AppState>,
    _: Authorized<CatalogReaders>,
    Path(id): Path<String>,
) -> Result<Json<PriceListView>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    load(&mut conn, &id).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no price list `{id}`")))
}

/// Delete a price list: its prices stop at once.
#[utoipa::path(
    delete, path = "/v1/catalog/price-lists/{id}", tag = "catalog", params(("id" = String, Path)),
    security(("admin_key" = ["admin", "catalog:write"])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn delete_price_list(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<CatalogWriters>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let before = load(&mut tx, &id).await?.ok_or_else(|| ApiError::not_found(format!("no price list `{id}`")))?;
    sqlx::query("DELETE FROM catalog_price_list_prices WHERE price_list_id = $1").bind(&id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM catalog_price_lists WHERE id = $1").bind(&id).execute(&mut *tx).await?;
    crate::audit::record::<PriceListView>(
        &mut tx,
        &principal.actor(),
        "price_list.delete",
        "price_list",
        &id,
        Some(&before),
        None,
    )
    .await?;
    storefront::enqueue_skus(&mut tx, &before.prices.iter().map(|p| p.sku.clone()).collect()).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(StatusCode::NO_CONTENT)
}
