//! `/v1/catalog/products`: products with their options, variants and prices.
//!
//! A product is written whole (`POST` creates, `PUT` replaces): the body is the product as
//! it should be, so a client never patches half a variant list. Variants keep their ids
//! across replacements by SKU. Every write checks the whole document first and answers
//! with every problem at once, then commits the rows, the audit entry and the edge keys it
//! touches (the product's old and new handles, every listing it was or is in) together.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::{CatalogReaders, CatalogWriters, check_amount, check_currency, check_handle, is_sku, storefront};
use crate::error::{ApiError, ApiJson, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::pagination::{Cursor, Page, PageParams};
use crate::state::AppState;
use crate::time::{Millis, now_millis};

const MAX_VARIANTS: usize = 100;
const MAX_OPTIONS: usize = 10;
const MAX_IMAGES: usize = 50;
const MAX_TITLE_CHARS: usize = 500;
const MAX_DESCRIPTION_CHARS: usize = 50_000;
const MAX_METADATA_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ProductStatus {
    /// Being written; never at the edge.
    Draft,
    /// On sale: readable at the edge.
    Published,
    /// Withdrawn; kept for records, never at the edge.
    Archived,
}

impl ProductStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ProductStatus::Draft => "draft",
            ProductStatus::Published => "published",
            ProductStatus::Archived => "archived",
        }
    }

    fn parse(text: &str) -> Option<ProductStatus> {
        [ProductStatus::Draft, ProductStatus::Published, ProductStatus::Archived]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One option a product's variants differ by, such as size, and the values it takes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProductOption {
    name: String,
    values: Vec<String>,
}

/// A price in one currency, in its minor units (cents; yen have none).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Price {
    /// ISO 4217, e.g. `EUR`.
    pub(crate) currency: String,
    pub(crate) amount: i64,
    /// Charged instead of `amount` while set; must be below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sale_amount: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VariantInput {
    /// Unique across the catalog; stock is kept per SKU.
    sku: String,
    /// Defaults to the option values joined, e.g. `M / Blue`.
    #[serde(default)]
    title: Option<String>,
    /// A value for each of the product's options.
    #[serde(default)]
    #[schema(value_type = Object)]
    options: BTreeMap<String, String>,
    #[serde(default)]
    prices: Vec<Price>,
    /// False for goods never out of stock (a digital good, a dish cooked to order).
    #[serde(default = "yes")]
    manage_inventory: bool,
}

fn yes() -> bool {
    true
}

/// A product as written.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProductInput {
    /// The URL slug storefronts read it by; unique.
    handle: String,
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default = "draft")]
    status: ProductStatus,
    /// `http(s)` URLs, first is the main image.
    #[serde(default)]
    images: Vec<String>,
    /// Handles of categories it is filed under.
    #[serde(default)]
    categories: Vec<String>,
    /// Handles of collections it belongs to.
    #[serde(default)]
    collections: Vec<String>,
    #[serde(default)]
    options: Vec<ProductOption>,
    /// At least one.
    variants: Vec<VariantInput>,
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
}

fn draft() -> ProductStatus {
    ProductStatus::Draft
}

/// A variant as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct VariantView {
    id: String,
    sku: String,
    title: String,
    #[schema(value_type = Object)]
    options: BTreeMap<String, String>,
    prices: Vec<Price>,
    manage_inventory: bool,
}

/// A product as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ProductView {
    id: String,
    handle: String,
    title: String,
    description: String,
    status: ProductStatus,
    images: Vec<String>,
    categories: Vec<String>,
    collections: Vec<String>,
    options: Vec<ProductOption>,
    variants: Vec<VariantView>,
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
    #[schema(value_type = String, format = DateTime)]
    pub(super) created_at: Millis,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Millis,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), message: message.into() }
}

/// Every problem with `input` that needs no database.
fn validate(input: &ProductInput) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check_handle(&input.handle, "/handle", &mut errors);
    let title_chars = input.title.trim().chars().count();
    if title_chars == 0 || title_chars > MAX_TITLE_CHARS {
        errors.push(err("/title", format!("must hold 1–{MAX_TITLE_CHARS} characters")));
    }
    if input.description.chars().count() > MAX_DESCRIPTION_CHARS {
        errors.push(err("/description", format!("must be at most {MAX_DESCRIPTION_CHARS} characters")));
    }
    if input.images.len() > MAX_IMAGES {
        errors.push(err("/images", format!("at most {MAX_IMAGES} images")));
    }
    for (i, image) in input.images.iter().enumerate() {
        let ok = url::Url::parse(image).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok || image.len() > 2048 {
            errors.push(err(format!("/images/{i}"), "must be an http or https URL of at most 2048 bytes"));
        }
    }
    for (list, name) in [(&input.categories, "categories"), (&input.collections, "collections")] {
        let mut seen = HashSet::new();
        for (i, handle) in list.iter().enumerate() {
            check_handle(handle, &format!("/{name}/{i}"), &mut errors);
            if !seen.insert(handle) {
                errors.push(err(format!("/{name}/{i}"), format!("`{handle}` is named twice")));
            }
        }
    }
    if input.options.len() > MAX_OPTIONS {
        errors.push(err("/options", format!("at most {MAX_OPTIONS} options")));
    }
    let mut names = HashSet::new();
    for (i, option) in input.options.iter().enumerate() {
        if option.name.trim().is_empty() || option.name.chars().count() > 100 {
            errors.push(err(format!("/options/{i}/name"), "must hold 1–100 characters"));
        }
        if !names.insert(option.name.as_str()) {
            errors.push(err(format!("/options/{i}/name"), format!("option `{}` is named twice", option.name)));
        }
        let mut values = HashSet::new();
        if option.values.is_empty() {
            errors.push(err(format!("/options/{i}/values"), "must list at least one value"));
        }
        for (j, value) in option.values.iter().enumerate() {
            if value.trim().is_empty() || value.chars().count() > 100 || !values.insert(value.as_str()) {
                errors.push(err(format!("/options/{i}/values/{j}"), "must be a distinct value of 1–100 characters"));
            }
        }
    }
    if input.variants.is_empty() || input.variants.len() > MAX_VARIANTS {
        errors.push(err("/variants", format!("must hold 1–{MAX_VARIANTS} variants")));
    }
    let mut skus = HashSet::new();
    let mut combinations = HashSet::new();
    for (i, variant) in input.variants.iter().enumerate() {
        let at = format!("/variants/{i}");
        if !is_sku(&variant.sku) {
            errors.push(err(format!("{at}/sku"), super::SKU_RULE));
        } else if !skus.insert(variant.sku.as_str()) {
            errors.push(err(format!("{at}/sku"), format!("SKU `{}` is used by two variants", variant.sku)));
        }
        if variant.title.as_ref().is_some_and(|t| t.trim().is_empty() || t.chars().count() > MAX_TITLE_CHARS) {
            errors.push(err(format!("{at}/title"), format!("must hold 1–{MAX_TITLE_CHARS} characters")));
        }
        for (name, value) in &variant.options {
            match input.options.iter().find(|o| &o.name == name) {
                None => errors.push(err(format!("{at}/options/{name}"), format!("the product has no option `{name}`"))),
                Some(option) if !option.values.contains(value) => errors.push(err(
                    format!("{at}/options/{name}"),
                    format!("`{value}` is not one of the values of `{name}`"),
                )),
                Some(_) => {}
            }
        }
        for option in &input.options {
            if !variant.options.contains_key(&option.name) {
                errors.push(err(format!("{at}/options"), format!("needs a value for `{}`", option.name)));
            }
        }
        if !input.options.is_empty() && !combinations.insert(&variant.options) {
            errors.push(err(format!("{at}/options"), "another variant has the same option values"));
        }
        let mut currencies = HashSet::new();
        for (j, price) in variant.prices.iter().enumerate() {
            let at = format!("{at}/prices/{j}");
            check_currency(&price.currency, format!("{at}/currency"), &mut errors);
            if !currencies.insert(price.currency.as_str()) {
                errors.push(err(format!("{at}/currency"), format!("{} is priced twice", price.currency)));
            }
            check_amount(price.amount, format!("{at}/amount"), &mut errors);
            if let Some(sale) = price.sale_amount {
                check_amount(sale, format!("{at}/sale_amount"), &mut errors);
                if sale >= price.amount && price.amount >= 0 {
                    errors.push(err(format!("{at}/sale_amount"), "must be below `amount`"));
                }
            }
        }
    }
    if serde_json::to_vec(&input.metadata).map_or(0, |bytes| bytes.len()) > MAX_METADATA_BYTES {
        errors.push(err("/metadata", format!("must serialize to at most {MAX_METADATA_BYTES} bytes")));
    }
    errors
}

fn variant_title(variant: &VariantInput, options: &[ProductOption]) -> String {
    if let Some(title) = &variant.title {
        return title.trim().to_owned();
    }
    let values: Vec<&str> = options.iter().filter_map(|o| variant.options.get(&o.name).map(String::as_str)).collect();
    if values.is_empty() { "Default".to_owned() } else { values.join(" / ") }
}

/// Ids of the categories or collections named by `handles`, or a field error per unknown one.
async fn resolve(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    handles: &[String],
    field: &str,
    noun: &str,
    errors: &mut Vec<FieldError>,
) -> Result<Vec<String>, sqlx::Error> {
    let mut ids = Vec::with_capacity(handles.len());
    for (i, handle) in handles.iter().enumerate() {
        let id: Option<String> = sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE handle = $1"))
            .bind(handle)
            .fetch_optional(&mut *conn)
            .await?;
        match id {
            Some(id) => ids.push(id),
            None => errors.push(err(format!("/{field}/{i}"), format!("no {noun} has the handle `{handle}`"))),
        }
    }
    Ok(ids)
}

/// Loads the product `id` as the API shows it.
pub(crate) async fn load(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Option<ProductView>, sqlx::Error> {
    let Some(row) =
        sqlx::query("SELECT * FROM catalog_products WHERE id = $1").bind(id).fetch_optional(&mut *conn).await?
    else {
        return Ok(None);
    };
    let json = |column: &str| -> Result<Value, sqlx::Error> {
        let text: String = row.try_get(column)?;
        serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(format!("catalog_products.{column}: {e}").into()))
    };
    let status: String = row.try_get("status")?;
    let decode = |e: serde_json::Error| sqlx::Error::Decode(e.to_string().into());
    let mut variants = Vec::new();
    for v in sqlx::query("SELECT * FROM catalog_variants WHERE product_id = $1 ORDER BY position")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
    {
        let variant_id: String = v.try_get("id")?;
        let prices = sqlx::query(
            "SELECT currency, amount, sale_amount FROM catalog_prices WHERE variant_id = $1 ORDER BY currency",
        )
        .bind(&variant_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|p| {
            Ok(Price {
                currency: p.try_get("currency")?,
                amount: p.try_get("amount")?,
                sale_amount: p.try_get("sale_amount")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let options: String = v.try_get("options")?;
        variants.push(VariantView {
            id: variant_id,
            sku: v.try_get("sku")?,
            title: v.try_get("title")?,
            options: serde_json::from_str(&options).map_err(decode)?,
            prices,
            manage_inventory: v.try_get::<i64, _>("manage_inventory")? != 0,
        });
    }
    let categories = sqlx::query_scalar(
        "SELECT c.handle FROM catalog_product_categories pc JOIN catalog_categories c ON c.id = pc.category_id
         WHERE pc.product_id = $1 ORDER BY c.handle",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let collections = sqlx::query_scalar(
        "SELECT c.handle FROM catalog_product_collections pc JOIN catalog_collections c ON c.id = pc.collection_id
         WHERE pc.product_id = $1 ORDER BY c.handle",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(ProductView {
        id: row.try_get("id")?,
        handle: row.try_get("handle")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        status: ProductStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown product status `{status}`").into()))?,
        images: serde_json::from_value(json("images")?).map_err(decode)?,
        categories,
        collections,
        options: serde_json::from_value(json("options")?).map_err(decode)?,
        variants,
        metadata: serde_json::from_value(json("metadata")?).map_err(decode)?,
        created_at: Millis(row.try_get("created_at")?),
        updated_at: Millis(row.try_get("updated_at")?),
    }))
}

async fn load_or_404(conn: &mut sqlx::AnyConnection, id: &str) -> Result<ProductView, ApiError> {
    load(conn, id).await?.ok_or_else(|| ApiError::not_found(format!("no product `{id}`")))
}

/// Checks what needs the database, then writes `input` as product `id` (new or replaced).
pub(super) async fn write(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    input: &ProductInput,
    created_at: i64,
) -> Result<(), ApiError> {
    let mut errors = validate(input);
    let categories =
        resolve(conn, "catalog_categories", &input.categories, "categories", "category", &mut errors).await?;
    let collections =
        resolve(conn, "catalog_collections", &input.collections, "collections", "collection", &mut errors).await?;
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let taken: Option<String> = sqlx::query_scalar("SELECT id FROM catalog_products WHERE handle = $1 AND id <> $2")
        .bind(&input.handle)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(other) = taken {
        return Err(ApiError::conflict(
            "handle_exists",
            format!("product `{other}` already has the handle `{}`", input.handle),
        ));
    }
    for variant in &input.variants {
        let owner: Option<String> =
            sqlx::query_scalar("SELECT product_id FROM catalog_variants WHERE sku = $1 AND product_id <> $2")
                .bind(&variant.sku)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(other) = owner {
            return Err(ApiError::conflict(
                "sku_exists",
                format!("SKU `{}` belongs to product `{other}`", variant.sku),
            ));
        }
    }
    let now = now_millis().0.max(created_at);
    let inserted = sqlx::query(
        "INSERT INTO catalog_products (id, handle, title, description, status, images, options, metadata, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (id) DO UPDATE SET handle = excluded.handle, title = excluded.title,
           description = excluded.description, status = excluded.status, images = excluded.images,
           options = excluded.options, metadata = excluded.metadata, updated_at = excluded.updated_at",
    )
    .bind(id)
    .bind(&input.handle)
    .bind(input.title.trim())
    .bind(&input.description)
    .bind(input.status.as_str())
    .bind(to_json(&input.images))
    .bind(to_json(&input.options))
    .bind(to_json(&input.metadata))
    .bind(created_at)
    .bind(now)
    .execute(&mut *conn)
    .await;
    inserted.map_err(unique_conflict)?;
    // Variants keep their ids by SKU; the rest go (their prices with them).
    let existing: Vec<(String, String)> = sqlx::query("SELECT id, sku FROM catalog_variants WHERE product_id = $1")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("sku")?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let wanted: BTreeSet<&str> = input.variants.iter().map(|v| v.sku.as_str()).collect();
    for (variant_id, sku) in &existing {
        if !wanted.contains(sku.as_str()) {
            sqlx::query("DELETE FROM catalog_variants WHERE id = $1").bind(variant_id).execute(&mut *conn).await?;
        }
    }
    for (position, variant) in input.variants.iter().enumerate() {
        let variant_id = existing
            .iter()
            .find(|(_, sku)| sku == &variant.sku)
            .map_or_else(|| crate::ids::new_id("var"), |(id, _)| id.clone());
        sqlx::query(
            "INSERT INTO catalog_variants (id, product_id, sku, title, options, position, manage_inventory)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET title = excluded.title, options = excluded.options,
               position = excluded.position, manage_inventory = excluded.manage_inventory",
        )
        .bind(&variant_id)
        .bind(id)
        .bind(&variant.sku)
        .bind(variant_title(variant, &input.options))
        .bind(to_json(&variant.options))
        .bind(position as i64)
        .bind(i64::from(variant.manage_inventory))
        .execute(&mut *conn)
        .await
        .map_err(unique_conflict)?;
        sqlx::query("DELETE FROM catalog_prices WHERE variant_id = $1").bind(&variant_id).execute(&mut *conn).await?;
        for price in &variant.prices {
            sqlx::query(
                "INSERT INTO catalog_prices (variant_id, currency, amount, sale_amount) VALUES ($1, $2, $3, $4)",
            )
            .bind(&variant_id)
            .bind(&price.currency)
            .bind(price.amount)
            .bind(price.sale_amount)
            .execute(&mut *conn)
            .await?;
        }
    }
    sqlx::query("DELETE FROM catalog_product_categories WHERE product_id = $1").bind(id).execute(&mut *conn).await?;
    for category in &categories {
        sqlx::query("INSERT INTO catalog_product_categories (product_id, category_id) VALUES ($1, $2)")
            .bind(id)
            .bind(category)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("DELETE FROM catalog_product_collections WHERE product_id = $1").bind(id).execute(&mut *conn).await?;
    for collection in &collections {
        sqlx::query("INSERT INTO catalog_product_collections (product_id, collection_id) VALUES ($1, $2)")
            .bind(id)
            .bind(collection)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// JSON text of a value the schema already typed (which cannot fail to serialize).
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("typed values serialize")
}

/// A unique violation that slipped past the checks (a concurrent write) is a conflict.
fn unique_conflict(error: sqlx::Error) -> ApiError {
    if crate::db::is_unique_violation(&error) {
        ApiError::conflict("product_conflict", "another write took this handle or SKU at the same moment; try again")
    } else {
        error.into()
    }
}

/// Create a product (a draft unless `status` says otherwise).
#[utoipa::path(
    post, path = "/v1/catalog/products", tag = "catalog", request_body = ProductInput,
    security(("admin_key" = ["admin", "catalog:write"])),
    responses(
        (status = 201, body = ProductView),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, description = "The handle or a SKU is taken", body = Problem),
        (status = 422, description = "Every problem with the document, each at its field", body = Problem),
    )
)]
pub(crate) async fn create_product(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<CatalogWriters>,
    ApiJson(input): ApiJson<ProductInput>,
) -> Result<(StatusCode, Json<ProductView>), ApiError> {
    let id = crate::ids::new_id("prd");
    let mut tx = state.db.begin_write().await?;
    write(&mut tx, &id, &input, now_millis().0).await?;
    let after = load_or_404(&mut tx, &id).await?;
    crate::audit::record(&mut tx, &principal.actor(), "product.create", "product", &id, None, Some(&after)).await?;
    storefront::enqueue_product(&mut tx, None, Some(&after.edge_view())).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok((StatusCode::CREATED, Json(after)))
}

/// Replace a product wholly; variants keep their ids by SKU.
#[utoipa::path(
    put, path = "/v1/catalog/products/{id}", tag = "catalog", params(("id" = String, Path)),
    request_body = ProductInput, security(("admin_key" = ["admin", "catalog:write"])),
    responses(
        (status = 200, body = ProductView),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "The handle or a SKU is taken", body = Problem),
        (status = 422, description = "Every problem with the document, each at its field", body = Problem),
    )
)]
pub(crate) async fn replace_product(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<CatalogWriters>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ProductInput>,
) -> Result<Json<ProductView>, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let before = load_or_404(&mut tx, &id).await?;
    write(&mut tx, &id, &input, before.created_at.0).await?;
    let after = load_or_404(&mut tx, &id).await?;
    crate::audit::record(&mut tx, &principal.actor(), "product.update", "product", &id, Some(&before), Some(&after))
        .await?;
    storefront::enqueue_product(&mut tx, Some(&before.edge_view()), Some(&after.edge_view())).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(Json(after))
}

/// One product.
#[utoipa::path(
    get, path = "/v1/catalog/products/{id}", tag = "catalog", params(("id" = String, Path)),
    security(("admin_key" = ["admin", "read", "catalog:write", "inventory:write"])),
    responses((status = 200, body = ProductView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn get_product(
    State(state): State<AppState>,
    _: Authorized<CatalogReaders>,
    Path(id): Path<String>,
) -> Result<Json<ProductView>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(load_or_404(&mut conn, &id).await?))
}

/// Delete a product; it leaves the edge with the next publish. Archive it instead to keep it.
#[utoipa::path(
    delete, path = "/v1/catalog/products/{id}", tag = "catalog", params(("id" = String, Path)),
    security(("admin_key" = ["admin", "catalog:write"])),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn delete_product(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<CatalogWriters>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let before = load_or_404(&mut tx, &id).await?;
    sqlx::query("DELETE FROM catalog_products WHERE id = $1").bind(&id).execute(&mut *tx).await?;
    crate::audit::record::<ProductView>(
        &mut tx,
        &principal.actor(),
        "product.delete",
        "product",
        &id,
        Some(&before),
        None,
    )
    .await?;
    storefront::enqueue_product(&mut tx, Some(&before.edge_view()), None).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(StatusCode::NO_CONTENT)
}

impl ProductView {
    /// What decides where the product shows at the edge.
    pub(crate) fn edge_view(&self) -> storefront::Placement {
        storefront::Placement {
            handle: self.handle.clone(),
            title: self.title.clone(),
            published: self.status == ProductStatus::Published,
            categories: self.categories.clone(),
            collections: self.collections.clone(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ProductFilter {
    /// Words that must all appear in the title or description (prefixes match).
    q: Option<String>,
    /// `draft`, `published` or `archived`.
    status: Option<String>,
    /// A category handle (the category itself, not its children).
    category: Option<String>,
    /// A collection handle.
    collection: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
}

/// A product in a list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProductSummary {
    id: String,
    handle: String,
    title: String,
    status: ProductStatus,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Millis,
}

/// Products by id (creation order), filtered and searched.
#[utoipa::path(
    get, path = "/v1/catalog/products", tag = "catalog", params(ProductFilter),
    security(("admin_key" = ["admin", "read", "catalog:write", "inventory:write"])),
    responses(
        (status = 200, body = inline(Page<ProductSummary>)),
        (status = 400, description = "A cursor this API did not return", body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, description = "A bad filter", body = Problem),
    )
)]
pub(crate) async fn list_products(
    State(state): State<AppState>,
    _: Authorized<CatalogReaders>,
    ApiQuery(filter): ApiQuery<ProductFilter>,
) -> Result<Json<Page<ProductSummary>>, ApiError> {
    let cursor = Cursor::from_params(&PageParams { limit: filter.limit, cursor: filter.cursor.clone() })?;
    let mut clauses = vec!["p.id > $1".to_owned()];
    let mut binds: Vec<String> = vec![cursor.after().to_owned()];
    let mut errors = Vec::new();
    if let Some(status) = &filter.status {
        if ProductStatus::parse(status).is_none() {
            errors.push(err("status", "must be draft, published or archived"));
        }
        binds.push(status.clone());
        clauses.push(format!("p.status = ${}", binds.len()));
    }
    for (value, table, column, name) in [
        (&filter.category, "catalog_product_categories", "category_id", "category"),
        (&filter.collection, "catalog_product_collections", "collection_id", "collection"),
    ] {
        if let Some(handle) = value {
            binds.push(handle.clone());
            let parent = if name == "category" { "catalog_categories" } else { "catalog_collections" };
            clauses.push(format!(
                "p.id IN (SELECT l.product_id FROM {table} l JOIN {parent} t ON t.id = l.{column} WHERE t.handle = ${})",
                binds.len()
            ));
        }
    }
    if let Some(q) = &filter.q {
        let words = search_words(q);
        if words.is_empty() {
            errors.push(err("q", "must hold a letter or digit"));
        } else {
            binds.push(match state.db.dialect() {
                crate::db::Dialect::Postgres => words.iter().map(|w| format!("{w}:*")).collect::<Vec<_>>().join(" & "),
                crate::db::Dialect::Sqlite => words.iter().map(|w| format!("\"{w}\"*")).collect::<Vec<_>>().join(" "),
            });
            clauses.push(match state.db.dialect() {
                crate::db::Dialect::Postgres => format!(
                    "to_tsvector('simple', p.title || ' ' || p.description) @@ to_tsquery('simple', ${})",
                    binds.len()
                ),
                crate::db::Dialect::Sqlite => format!(
                    "p.rowid IN (SELECT rowid FROM catalog_products_fts WHERE catalog_products_fts MATCH ${})",
                    binds.len()
                ),
            });
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let sql = format!(
        "SELECT p.id, p.handle, p.title, p.status, p.updated_at FROM catalog_products p WHERE {} ORDER BY p.id LIMIT {}",
        clauses.join(" AND "),
        cursor.fetch_limit()
    );
    let mut query = sqlx::query(&sql);
    for bind in &binds {
        query = query.bind(bind);
    }
    let rows = query.fetch_all(state.db.pool()).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let status: String = row.try_get("status")?;
        items.push(ProductSummary {
            id: row.try_get("id")?,
            handle: row.try_get("handle")?,
            title: row.try_get("title")?,
            status: ProductStatus::parse(&status).unwrap_or(ProductStatus::Draft),
            updated_at: Millis(row.try_get("updated_at")?),
        });
    }
    Ok(Json(cursor.page(items, |p| p.id.clone())))
}

/// The words of a search, lower case, letters and digits only (so neither database's
/// query syntax can be injected), at most ten.
fn search_words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).take(10).map(str::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(value: Value) -> ProductInput {
        serde_json::from_value(value).unwrap()
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn every_problem_is_named_at_its_field() {
        let bad = input(serde_json::json!({
            "handle": "Bad Handle", "title": " ",
            "options": [{"name": "size", "values": ["S", "M"]}],
            "variants": [
                {"sku": "A-1", "options": {"size": "XL"}, "prices": [{"currency": "EUR", "amount": -1}]},
                {"sku": "A-1", "options": {"size": "S"}, "prices": [{"currency": "ZZZ", "amount": 100, "sale_amount": 150}]},
                {"sku": "A-3", "options": {}, "prices": [{"currency": "eur", "amount": 1}, {"currency": "eur", "amount": 2}]}
            ]
        }));
        let errors = validate(&bad);
        assert_eq!(
            fields(&errors),
            [
                "/handle",
                "/title",
                "/variants/0/options/size",
                "/variants/0/prices/0/amount",
                "/variants/1/sku",
                "/variants/1/prices/0/currency",
                "/variants/1/prices/0/sale_amount",
                "/variants/2/options",
                "/variants/2/prices/0/currency",
                "/variants/2/prices/1/currency",
                "/variants/2/prices/1/currency",
            ]
        );
        assert!(errors[3].message.contains("negative"), "{}", errors[3].message);
    }

    #[test]
    fn a_sound_product_passes_and_titles_its_variants() {
        let good = input(serde_json::json!({
            "handle": "tee", "title": "Tee", "images": ["https://cdn.example/tee.jpg"],
            "options": [{"name": "size", "values": ["S", "M"]}, {"name": "colour", "values": ["red"]}],
            "variants": [
                {"sku": "TEE-S", "options": {"size": "S", "colour": "red"}, "prices": [{"currency": "JPY", "amount": 1500, "sale_amount": 1200}]},
                {"sku": "TEE-M", "options": {"size": "M", "colour": "red"}}
            ]
        }));
        assert!(validate(&good).is_empty(), "{:?}", validate(&good));
        assert_eq!(variant_title(&good.variants[0], &good.options), "S / red");
    }

    #[test]
    fn search_words_cannot_carry_query_syntax() {
        assert_eq!(search_words("Red  \"shoe\" & ) OR *"), ["red", "shoe", "or"]);
        assert!(search_words("&|!").is_empty());
    }
}
