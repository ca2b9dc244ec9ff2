//! Placing an order: `POST /v1/orders` (an operator's key) and `POST /auth/{project}/orders`
//! (a signed-in customer, for themselves). Both take an `Idempotency-Key`, price every line
//! from the catalog as it is now, and commit the order, its first timeline entry, its
//! first saga job and the stored response in one transaction; the saga does the rest.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::idempotency::{self, Begun, Claim};
use super::{Address, OrderWriters, tax};
use crate::catalog::{check_currency, is_sku};
use crate::customers::auth::SignedIn;
use crate::error::{ApiError, ApiJson, FieldError, Problem};
use crate::keys::Authorized;
use crate::state::AppState;
use crate::time::now_millis;

const MAX_LINES: usize = 100;
const MAX_QUANTITY: i64 = 1_000;
const MAX_TEXT: usize = 200;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewOrder {
    /// ISO 4217; every line must have a price in it.
    currency: String,
    /// Where the confirmation goes. Required with an operator's key; a customer's order
    /// takes their account's email.
    #[serde(default)]
    email: Option<String>,
    lines: Vec<NewLine>,
    shipping_address: Address,
    /// Absent: the shipping address.
    #[serde(default)]
    billing_address: Option<Address>,
    payment: PaymentInput,
    /// Operators only: the customer the order is for.
    #[serde(default)]
    customer: Option<CustomerRef>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewLine {
    sku: String,
    /// 1 to 1000.
    quantity: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PaymentInput {
    /// The provider's token for the payment method; for the `test` provider, one of its
    /// test card numbers (docs/orders.md).
    method: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CustomerRef {
    project: String,
    id: String,
}

/// Who is buying, as the route established it.
enum Buyer {
    Operator { actor: String },
    Customer { project: String, id: String, email: String },
}

/// Place an order. Lines are priced from the catalog; the response is `pending` and the
/// saga reserves stock, authorises payment and confirms it (follow it on `…/events`).
#[utoipa::path(
    post, path = "/v1/orders", tag = "orders", request_body = NewOrder,
    params(("Idempotency-Key" = String, Header, description = "A unique key per order; a retry with the same key and body gets the first response")),
    security(("admin_key" = ["admin", "orders:write"])),
    responses(
        (status = 201, body = super::Order, description = "The order, pending; a replay carries `Idempotent-Replayed: true`"),
        (status = 400, description = "No or an invalid `Idempotency-Key`", body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, description = "A request with this key is still running", body = Problem),
        (status = 415, body = Problem),
        (status = 422, description = "Invalid lines, addresses or payment method, or the key reused with another body", body = Problem),
    )
)]
pub(crate) async fn create_order(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<OrderWriters>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let actor = principal.actor().to_string();
    let owner = format!("key:{actor}");
    place(&state, &headers, &owner, "/v1/orders", body, Buyer::Operator { actor }).await
}

/// Place an order as the signed-in customer.
#[utoipa::path(
    post, path = "/auth/{project}/orders", tag = "orders", request_body = NewOrder,
    params(("project" = String, Path), ("Idempotency-Key" = String, Header, description = "A unique key per order")),
    security(("customer_token" = [])),
    responses(
        (status = 201, body = super::Order), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, description = "A cookie session without its CSRF token", body = Problem),
        (status = 409, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
    )
)]
pub(crate) async fn create_own_order(
    State(state): State<AppState>,
    Path(project): Path<String>,
    who: SignedIn,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    let (customer, _) = crate::customers::load(&mut conn, &who.project, &who.customer_id).await?;
    drop(conn);
    let owner = format!("customer:{}/{}", who.project, who.customer_id);
    let route = format!("/auth/{project}/orders");
    let buyer = Buyer::Customer { project: who.project, id: who.customer_id, email: customer.email };
    place(&state, &headers, &owner, &route, body, buyer).await
}

async fn place(
    state: &AppState,
    headers: &HeaderMap,
    owner: &str,
    route: &str,
    body: Value,
    buyer: Buyer,
) -> Result<Response, ApiError> {
    let fingerprint = idempotency::fingerprint(route, &body);
    let claim = match idempotency::begin(&state.db, headers, owner, &fingerprint).await? {
        Begun::Fresh(claim) => claim,
        Begun::Replay(reply) => return Ok(reply),
    };
    match place_claimed(state, &claim, route, body, buyer).await {
        Ok(reply) => Ok(reply),
        Err(err) => {
            // Nothing committed (the stored response commits with the order), so the key
            // is free for the corrected request.
            claim.abandon(&state.db).await;
            Err(err)
        }
    }
}

fn field(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), message: message.into() }
}

fn check_text(value: &str, at: &str, required: bool, errors: &mut Vec<FieldError>) {
    if (required && value.trim().is_empty()) || value.chars().count() > MAX_TEXT || value.chars().any(char::is_control)
    {
        errors.push(field(
            at,
            format!("must hold {}–{MAX_TEXT} characters, no control characters", usize::from(required)),
        ));
    }
}

fn check_address(address: &Address, at: &str, errors: &mut Vec<FieldError>) {
    check_text(&address.name, &format!("{at}/name"), true, errors);
    check_text(&address.line1, &format!("{at}/line1"), true, errors);
    check_text(address.line2.as_deref().unwrap_or(""), &format!("{at}/line2"), false, errors);
    check_text(&address.city, &format!("{at}/city"), true, errors);
    check_text(&address.postal_code, &format!("{at}/postal_code"), true, errors);
    if address.country.len() != 2 || !address.country.bytes().all(|b| b.is_ascii_uppercase()) {
        errors.push(field(format!("{at}/country"), "must be an ISO 3166-1 alpha-2 code in upper case (`DE`)"));
    }
    if let Some(region) = &address.region
        && (region.is_empty()
            || region.len() > 3
            || !region.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
    {
        errors.push(field(format!("{at}/region"), "must be an ISO 3166-2 subdivision code without the country (`CA`)"));
    }
}

/// A line as the catalog prices it now.
struct Priced {
    sku: String,
    variant_id: String,
    title: String,
    quantity: i64,
    unit_amount: i64,
    compare_at: Option<i64>,
}

/// Variant id, product title, variant title, product status, price and sale price.
type CatalogRow = (String, String, String, String, Option<i64>, Option<i64>);

/// Prices `sku` in `currency` at `now`: the lowest of its price, its sale price and any
/// running price list's; an error message when it cannot be ordered.
async fn price(
    conn: &mut sqlx::AnyConnection,
    sku: &str,
    currency: &str,
    now: i64,
) -> Result<Result<Priced, String>, sqlx::Error> {
    let row: Option<CatalogRow> = sqlx::query_as(
        "SELECT v.id, p.title, v.title, p.status, pr.amount, pr.sale_amount FROM catalog_variants v
         JOIN catalog_products p ON p.id = v.product_id
         LEFT JOIN catalog_prices pr ON pr.variant_id = v.id AND pr.currency = $2
         WHERE v.sku = $1",
    )
    .bind(sku)
    .bind(currency)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((variant_id, product, variant, status, amount, sale)) = row else {
        return Ok(Err(format!("no variant has the SKU `{sku}`")));
    };
    if status != "published" {
        return Ok(Err(format!("`{sku}` is not for sale (its product is {status})")));
    }
    let Some(amount) = amount else {
        return Ok(Err(format!("`{sku}` has no price in {currency}")));
    };
    let listed: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(pp.amount) FROM catalog_price_list_prices pp JOIN catalog_price_lists pl ON pl.id = pp.price_list_id
         WHERE pp.sku = $1 AND pp.currency = $2 AND pl.starts_at <= $3 AND (pl.ends_at IS NULL OR pl.ends_at > $3)",
    )
    .bind(sku)
    .bind(currency)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let charged = [Some(amount), sale, listed].into_iter().flatten().min().unwrap_or(amount);
    // A product without options has one variant titled `Default`: the product's title says it.
    let title = if variant == product || variant.is_empty() || variant == "Default" {
        product
    } else {
        format!("{product} — {variant}")
    };
    Ok(Ok(Priced {
        sku: sku.to_owned(),
        variant_id,
        title,
        quantity: 0,
        unit_amount: charged,
        compare_at: (charged < amount).then_some(amount),
    }))
}

async fn place_claimed(
    state: &AppState,
    claim: &Claim,
    route: &str,
    body: Value,
    buyer: Buyer,
) -> Result<Response, ApiError> {
    let new: NewOrder = serde_json::from_value(body)
        .map_err(|err| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", format!("the order: {err}")))?;
    let mut errors = Vec::new();
    check_currency(&new.currency, "/currency".into(), &mut errors);
    let email = match (&buyer, &new.email) {
        (Buyer::Customer { email, .. }, None) => email.clone(),
        (Buyer::Customer { .. }, Some(_)) => {
            errors.push(field("/email", "is your account's email; leave it out"));
            String::new()
        }
        (Buyer::Operator { .. }, Some(email)) => email.trim().to_owned(),
        (Buyer::Operator { .. }, None) => {
            errors.push(field("/email", "is required"));
            String::new()
        }
    };
    if !email.is_empty() && (!email.contains('@') || email.len() > 254 || email.chars().any(char::is_whitespace)) {
        errors.push(field("/email", "must be an email address"));
    }
    if matches!(buyer, Buyer::Customer { .. }) && new.customer.is_some() {
        errors.push(field("/customer", "is you; leave it out"));
    }
    if new.lines.is_empty() || new.lines.len() > MAX_LINES {
        errors.push(field("/lines", format!("must hold 1–{MAX_LINES} lines")));
    }
    check_address(&new.shipping_address, "/shipping_address", &mut errors);
    if let Some(billing) = &new.billing_address {
        check_address(billing, "/billing_address", &mut errors);
    }
    if let Err(message) = state.payments.accepts(&new.payment.method) {
        errors.push(field("/payment/method", message));
    }
    let rates = state.config.tax_rates().map_err(ApiError::internal)?;
    let (tax_region, rate) =
        tax::rate_for(&rates, &new.shipping_address.country, new.shipping_address.region.as_deref());
    let now = now_millis().0;
    let mut tx = state.db.begin_write().await?;
    let (project, customer_id) = match (&buyer, &new.customer) {
        (Buyer::Customer { project, id, .. }, _) => (Some(project.clone()), Some(id.clone())),
        (Buyer::Operator { .. }, Some(customer)) => {
            if crate::customers::load(&mut tx, &customer.project, &customer.id).await.is_err() {
                errors.push(field(
                    "/customer",
                    format!("no customer `{}` in project `{}`", customer.id, customer.project),
                ));
            }
            (Some(customer.project.clone()), Some(customer.id.clone()))
        }
        (Buyer::Operator { .. }, None) => (None, None),
    };
    let mut priced = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, line) in new.lines.iter().enumerate() {
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            errors.push(field(format!("/lines/{i}/quantity"), format!("must be 1 to {MAX_QUANTITY}")));
        }
        if !seen.insert(line.sku.clone()) {
            errors.push(field(
                format!("/lines/{i}/sku"),
                format!("`{}` is ordered twice; order it once with the total", line.sku),
            ));
            continue;
        }
        if !is_sku(&line.sku) || errors.iter().any(|e| e.field == "/currency") {
            if !is_sku(&line.sku) {
                errors.push(field(format!("/lines/{i}/sku"), format!("no variant has the SKU `{}`", line.sku)));
            }
            continue;
        }
        match price(&mut tx, &line.sku, &new.currency, now).await? {
            Ok(mut line_price) => {
                line_price.quantity = line.quantity;
                priced.push(line_price);
            }
            Err(message) => errors.push(field(format!("/lines/{i}/sku"), message)),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    // Integer minor units throughout; an overflow is refused, never wrapped.
    let overflow = || ApiError::validation(vec![field("/lines", "the order's total is too large")]);
    let mut subtotal: i64 = 0;
    let mut total_tax: i64 = 0;
    let mut lines = Vec::new();
    for line in &priced {
        let line_subtotal = line.unit_amount.checked_mul(line.quantity).ok_or_else(overflow)?;
        let line_tax = tax::tax_on(line_subtotal, rate);
        subtotal = subtotal.checked_add(line_subtotal).ok_or_else(overflow)?;
        total_tax = total_tax.checked_add(line_tax).ok_or_else(overflow)?;
        lines.push((line, line_subtotal, line_tax));
    }
    let total = subtotal.checked_add(total_tax).ok_or_else(overflow)?;
    let id = crate::ids::new_id("ord");
    let actor = match &buyer {
        Buyer::Operator { actor } => actor.clone(),
        Buyer::Customer { id, .. } => id.clone(),
    };
    let billing = new.billing_address.as_ref().unwrap_or(&new.shipping_address);
    sqlx::query(
        "INSERT INTO orders (id, project, customer_id, email, currency, status, payment_status, subtotal, tax, total,
                             tax_region, tax_rate_bp, shipping_address, billing_address, payment_provider, payment_method,
                             captured, refunded, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', 'pending', $6, $7, $8, $9, $10, $11, $12, $13, $14, 0, 0, $15, $16, $16)",
    )
    .bind(&id)
    .bind(project.as_deref())
    .bind(customer_id.as_deref())
    .bind(&email)
    .bind(&new.currency)
    .bind(subtotal)
    .bind(total_tax)
    .bind(total)
    .bind(&tax_region)
    .bind(rate)
    .bind(serde_json::to_string(&new.shipping_address).map_err(ApiError::internal)?)
    .bind(serde_json::to_string(billing).map_err(ApiError::internal)?)
    .bind(state.payments.name())
    .bind(&new.payment.method)
    .bind(&actor)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for (position, (line, line_subtotal, line_tax)) in lines.iter().enumerate() {
        sqlx::query(
            "INSERT INTO order_lines (order_id, position, sku, variant_id, title, quantity, unit_amount, compare_at, subtotal, tax)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&id)
        .bind(position as i64)
        .bind(&line.sku)
        .bind(&line.variant_id)
        .bind(&line.title)
        .bind(line.quantity)
        .bind(line.unit_amount)
        .bind(line.compare_at)
        .bind(line_subtotal)
        .bind(line_tax)
        .execute(&mut *tx)
        .await?;
    }
    super::timeline::record(&mut tx, &id, "order.created", &actor, json!({ "total": total, "currency": new.currency }))
        .await?;
    super::saga::start(&mut tx, &id).await?;
    let order = super::load(&mut tx, &id).await?.ok_or_else(|| super::not_found(&id))?;
    let body = serde_json::to_string(&order).map_err(ApiError::internal)?;
    claim.finish(&mut tx, StatusCode::CREATED, &body).await?;
    tx.commit().await?;
    crate::jobs::wake(state);
    super::timeline::notify(state, &id);
    let mut reply = (StatusCode::CREATED, Json(order)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("{route}/{id}")) {
        reply.headers_mut().insert(header::LOCATION, location);
    }
    Ok(reply)
}
