//! `POST /v1/catalog/products/import` and `GET /v1/catalog/products/export`: products as
//! CSV, one row per variant, the shape spreadsheets and other platforms' exports take.
//!
//! Columns: `handle`, `title`, `description`, `status`, `categories`, `collections` and
//! `images` (each `|`-separated), `option1_name` … `option3_value`, `sku`, `variant_title`,
//! `manage_inventory`, and a `price:<CUR>` / `sale_price:<CUR>` pair per currency. Rows
//! sharing a handle are one product, whose product columns come from its first row. Each
//! product goes through the same checks and the same write as `PUT`; a refused product is
//! reported at the lines it came from (`line 4 /variants/0/prices/0/amount`). By default
//! one refusal refuses the file and nothing changes; `on_error=skip` writes the rest.
//! An export imports back as it was.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::products::{ProductInput, load, write};
use super::{CatalogReaders, CatalogWriters, storefront};
use crate::error::{ApiError, FieldError, Problem};
use crate::keys::Authorized;
use crate::state::AppState;
use crate::time::now_millis;

const PRODUCT_COLUMNS: [&str; 7] = ["handle", "title", "description", "status", "categories", "collections", "images"];
const VARIANT_COLUMNS: [&str; 3] = ["sku", "variant_title", "manage_inventory"];
const OPTIONS: usize = 3;
/// Errors reported at most, so a wrong file gets a readable answer.
const MAX_REPORTED: usize = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImportParams {
    /// `reject` (default): any refused product refuses the file. `skip`: write the others.
    on_error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImportReport {
    created: usize,
    updated: usize,
    /// Refused products' problems by line (with `on_error=skip`), at most 1,000.
    errors: Vec<FieldError>,
}

/// One product's rows: the line each came from and its fields by column.
struct Group {
    lines: Vec<usize>,
    rows: Vec<BTreeMap<String, String>>,
}

fn split(cell: &str) -> Vec<String> {
    cell.split('|').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// The product `group` describes, as the API's JSON, or the problems with its cells.
fn document(group: &Group, currencies: &[String]) -> Result<Value, Vec<FieldError>> {
    let first = &group.rows[0];
    let cell = |row: &BTreeMap<String, String>, column: &str| row.get(column).cloned().unwrap_or_default();
    let mut errors = Vec::new();
    let mut options: Vec<(String, Vec<String>)> = Vec::new();
    for n in 1..=OPTIONS {
        let name = cell(first, &format!("option{n}_name"));
        if !name.is_empty() {
            options.push((name, Vec::new()));
        }
    }
    let mut variants = Vec::new();
    for (row, &line) in group.rows.iter().zip(&group.lines) {
        let at = |column: &str, message: String| FieldError { field: format!("line {line} {column}"), message };
        let mut chosen = serde_json::Map::new();
        for (n, (name, values)) in options.iter_mut().enumerate() {
            let value = cell(row, &format!("option{}_value", n + 1));
            if !value.is_empty() {
                if !values.contains(&value) {
                    values.push(value.clone());
                }
                chosen.insert(name.clone(), Value::String(value));
            }
        }
        let mut prices = Vec::new();
        for currency in currencies {
            let amount = |column: String| -> Result<Option<i64>, FieldError> {
                let text = cell(row, &column);
                if text.trim().is_empty() {
                    return Ok(None);
                }
                text.trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| at(&column, "must be an integer amount in minor units".into()))
            };
            match (amount(format!("price:{currency}")), amount(format!("sale_price:{currency}"))) {
                (Ok(Some(amount)), Ok(sale)) => {
                    prices.push(json!({"currency": currency, "amount": amount, "sale_amount": sale}));
                }
                (Ok(None), Ok(Some(_))) => {
                    errors.push(at(&format!("sale_price:{currency}"), "needs a regular price beside it".into()));
                }
                (Ok(None), Ok(None)) => {}
                (price, sale) => errors.extend(price.err().into_iter().chain(sale.err())),
            }
        }
        let manage_inventory = match cell(row, "manage_inventory").trim() {
            "" | "true" => true,
            "false" => false,
            _ => {
                errors.push(at("manage_inventory", "must be true or false".into()));
                true
            }
        };
        let title = cell(row, "variant_title");
        variants.push(json!({
            "sku": cell(row, "sku"),
            "title": (!title.is_empty()).then_some(title),
            "options": chosen,
            "prices": prices,
            "manage_inventory": manage_inventory,
        }));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let status = cell(first, "status");
    Ok(json!({
        "handle": cell(first, "handle"),
        "title": cell(first, "title"),
        "description": cell(first, "description"),
        "status": if status.is_empty() { "draft".to_owned() } else { status },
        "categories": split(&cell(first, "categories")),
        "collections": split(&cell(first, "collections")),
        "images": split(&cell(first, "images")),
        "options": options.into_iter().map(|(name, values)| json!({"name": name, "values": values})).collect::<Vec<_>>(),
        "variants": variants,
    }))
}

/// `errors` of a product written from `group`, moved to the lines they concern.
fn at_lines(group: &Group, errors: Vec<FieldError>) -> Vec<FieldError> {
    errors
        .into_iter()
        .map(|error| {
            let variant =
                error.field.strip_prefix("/variants/").and_then(|rest| rest.split('/').next()?.parse::<usize>().ok());
            let line = variant.and_then(|i| group.lines.get(i)).unwrap_or(&group.lines[0]);
            FieldError { field: format!("line {line} {}", error.field), message: error.message }
        })
        .collect()
}

/// Parses the file into products by handle, in the order they first appear.
fn parse(body: &[u8]) -> Result<(Vec<Group>, Vec<String>), ApiError> {
    let refuse = |line: usize, message: String| {
        ApiError::validation(vec![FieldError { field: format!("line {line}"), message }])
    };
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(body);
    let header: Vec<String> =
        reader.headers().map_err(|e| refuse(1, e.to_string()))?.iter().map(|h| h.trim().to_owned()).collect();
    let mut currencies = BTreeSet::new();
    for column in &header {
        let known = PRODUCT_COLUMNS.contains(&column.as_str())
            || VARIANT_COLUMNS.contains(&column.as_str())
            || (1..=OPTIONS).any(|n| *column == format!("option{n}_name") || *column == format!("option{n}_value"));
        let currency = column.strip_prefix("price:").or_else(|| column.strip_prefix("sale_price:"));
        match currency {
            Some(code) if super::is_currency(code) => {
                currencies.insert(code.to_owned());
            }
            Some(code) => return Err(refuse(1, format!("`{column}`: `{code}` is not an ISO 4217 currency code"))),
            None if !known => return Err(refuse(1, format!("unknown column `{column}`; docs/catalog.md lists them"))),
            None => {}
        }
    }
    if !header.iter().any(|h| h == "handle") || !header.iter().any(|h| h == "sku") {
        return Err(refuse(1, "the header must name `handle` and `sku`".into()));
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut by_handle: BTreeMap<String, usize> = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| refuse(e.position().map_or(0, |p| p.line() as usize), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let row: BTreeMap<String, String> =
            header.iter().cloned().zip(record.iter().map(|f| crate::csv::unguard(f).to_owned())).collect();
        let handle = row.get("handle").cloned().unwrap_or_default();
        let at = *by_handle.entry(handle).or_insert_with(|| {
            groups.push(Group { lines: Vec::new(), rows: Vec::new() });
            groups.len() - 1
        });
        groups[at].lines.push(line);
        groups[at].rows.push(row);
    }
    if groups.is_empty() {
        return Err(refuse(2, "the file holds no rows".into()));
    }
    Ok((groups, currencies.into_iter().collect()))
}

/// Create or replace products from CSV, matched by handle.
#[utoipa::path(
    post, path = "/v1/catalog/products/import", tag = "catalog", params(ImportParams),
    request_body(content = String, description = "CSV, one row per variant (docs/catalog.md)", content_type = "text/csv"),
    security(("admin_key" = ["admin", "catalog:write"])),
    responses(
        (status = 200, body = ImportReport),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 413, description = "Larger than VERGE_IMPORT_LIMIT_BYTES", body = Problem),
        (status = 422, description = "Refused products by line; nothing was written", body = Problem),
    )
)]
pub(crate) async fn import_products(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<CatalogWriters>,
    Query(params): Query<ImportParams>,
    body: Body,
) -> Result<Json<ImportReport>, ApiError> {
    let skip = match params.on_error.as_deref() {
        None | Some("reject") => false,
        Some("skip") => true,
        Some(_) => {
            return Err(ApiError::validation(vec![FieldError {
                field: "on_error".into(),
                message: "must be reject or skip".into(),
            }]));
        }
    };
    let limit = state.config.import_limit_bytes;
    let body = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("an import is at most {limit} bytes"),
        )
    })?;
    let (groups, currencies) = parse(&body)?;
    let mut tx = state.db.begin_write().await?;
    let (mut created, mut updated, mut errors) = (0, 0, Vec::new());
    for group in &groups {
        let input = document(group, &currencies).and_then(|value| {
            serde_json::from_value::<ProductInput>(value)
                .map_err(|e| vec![FieldError { field: format!("line {}", group.lines[0]), message: e.to_string() }])
        });
        let input = match input {
            Ok(input) => input,
            Err(problems) => {
                errors.extend(problems);
                continue;
            }
        };
        sqlx::query("SAVEPOINT product").execute(&mut *tx).await?;
        let existing: Option<String> = sqlx::query_scalar("SELECT id FROM catalog_products WHERE handle = $1")
            .bind(&group.rows[0]["handle"])
            .fetch_optional(&mut *tx)
            .await?;
        let before = match &existing {
            Some(id) => load(&mut tx, id).await?,
            None => None,
        };
        let id = existing.unwrap_or_else(|| crate::ids::new_id("prd"));
        let created_at = before.as_ref().map_or(now_millis().0, |b| b.created_at.0);
        match write(&mut tx, &id, &input, created_at).await {
            Ok(()) => {
                sqlx::query("RELEASE SAVEPOINT product").execute(&mut *tx).await?;
                let after =
                    load(&mut tx, &id).await?.ok_or_else(|| ApiError::internal("an imported product vanished"))?;
                crate::audit::record(
                    &mut tx,
                    &principal.actor(),
                    "product.import",
                    "product",
                    &id,
                    before.as_ref(),
                    Some(&after),
                )
                .await?;
                storefront::enqueue_product(
                    &mut tx,
                    before.as_ref().map(|b| b.edge_view()).as_ref(),
                    Some(&after.edge_view()),
                )
                .await?;
                if before.is_some() { updated += 1 } else { created += 1 }
            }
            Err(error) => {
                sqlx::query("ROLLBACK TO SAVEPOINT product").execute(&mut *tx).await?;
                let problems = if error.field_errors().is_empty() {
                    vec![FieldError { field: format!("line {}", group.lines[0]), message: error.detail().to_owned() }]
                } else {
                    at_lines(group, error.field_errors().to_vec())
                };
                errors.extend(problems);
            }
        }
    }
    if !errors.is_empty() && !skip {
        errors.truncate(MAX_REPORTED);
        return Err(ApiError::validation(errors));
    }
    tx.commit().await?;
    state.publisher.wake();
    errors.truncate(MAX_REPORTED);
    Ok(Json(ImportReport { created, updated, errors }))
}

/// Every product as CSV, one row per variant, by id; imports back as it was.
#[utoipa::path(
    get, path = "/v1/catalog/products/export", tag = "catalog",
    security(("admin_key" = ["admin", "read", "catalog:write", "inventory:write"])),
    responses(
        (status = 200, description = "CSV", content_type = "text/csv", body = String),
        (status = 401, body = Problem), (status = 403, body = Problem),
    )
)]
pub(crate) async fn export_products(
    State(state): State<AppState>,
    _: Authorized<CatalogReaders>,
) -> Result<Response, ApiError> {
    let currencies: Vec<String> = sqlx::query_scalar("SELECT DISTINCT currency FROM catalog_prices ORDER BY currency")
        .fetch_all(state.db.pool())
        .await?;
    let mut columns: Vec<String> = PRODUCT_COLUMNS.iter().chain(&VARIANT_COLUMNS).map(|c| (*c).to_owned()).collect();
    for n in 1..=OPTIONS {
        columns.extend([format!("option{n}_name"), format!("option{n}_value")]);
    }
    for currency in &currencies {
        columns.extend([format!("price:{currency}"), format!("sale_price:{currency}")]);
    }
    let mut out = String::new();
    crate::csv::record(&mut out, columns.iter().map(String::as_str));
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM catalog_products ORDER BY id").fetch_all(state.db.pool()).await?;
    let mut conn = state.db.pool().acquire().await?;
    for id in ids {
        let Some(product) = load(&mut conn, &id).await? else { continue };
        let product = serde_json::to_value(&product).map_err(ApiError::internal)?;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let joined =
            |v: &Value| v.as_array().map(|a| a.iter().map(text).collect::<Vec<_>>().join("|")).unwrap_or_default();
        let options: Vec<String> =
            product["options"].as_array().map(|o| o.iter().map(|o| text(&o["name"])).collect()).unwrap_or_default();
        for variant in product["variants"].as_array().into_iter().flatten() {
            let mut row: BTreeMap<String, String> = BTreeMap::new();
            for column in ["handle", "title", "description", "status"] {
                row.insert(column.into(), text(&product[column]));
            }
            for column in ["categories", "collections", "images"] {
                row.insert(column.into(), joined(&product[column]));
            }
            row.insert("sku".into(), text(&variant["sku"]));
            row.insert("variant_title".into(), text(&variant["title"]));
            row.insert("manage_inventory".into(), variant["manage_inventory"].to_string());
            for (n, name) in options.iter().enumerate().take(OPTIONS) {
                row.insert(format!("option{}_name", n + 1), name.clone());
                row.insert(format!("option{}_value", n + 1), text(&variant["options"][name]));
            }
            for price in variant["prices"].as_array().into_iter().flatten() {
                let currency = text(&price["currency"]);
                row.insert(format!("price:{currency}"), price["amount"].to_string());
                if let Some(sale) = price["sale_amount"].as_i64() {
                    row.insert(format!("sale_price:{currency}"), sale.to_string());
                }
            }
            let fields: Vec<String> = columns.iter().map(|c| row.remove(c).unwrap_or_default()).collect();
            crate::csv::record(&mut out, fields.iter().map(String::as_str));
        }
    }
    let mut response = out.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"products.csv\""));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
