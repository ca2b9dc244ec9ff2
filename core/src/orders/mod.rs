//! Orders: a checkout that prices every line from the catalog (never from the client),
//! an order saga on the job queue — reserve stock → authorise payment → confirm, and
//! capture on fulfilment — whose every failure compensates what was done (release the
//! stock, void the authorisation, refund the capture), and a timeline that every change
//! lands in, feeding server-sent events and webhooks.
//!
//! Orders and payments are two explicit state machines ([`OrderStatus`],
//! [`PaymentStatus`]); every move is a conditional update from the state the move starts
//! from, so a cancel racing a saga step resolves whole, and an illegal move is a 409.

pub(crate) mod api;
pub(crate) mod checkout;
pub(crate) mod idempotency;
pub mod payments;
pub(crate) mod saga;
pub(crate) mod stream;
mod stripe;
mod tax;
pub(crate) mod timeline;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use utoipa::ToSchema;

use self::payments::PaymentProvider;
use crate::error::ApiError;
use crate::keys::{Grants, Scope};
use crate::time::Millis;

#[derive(Debug)]
pub(crate) struct OrderWriters;
impl Grants for OrderWriters {
    const SCOPES: &'static [Scope] = &[Scope::OrdersWrite];
}

#[derive(Debug)]
pub(crate) struct OrderReaders;
impl Grants for OrderReaders {
    const SCOPES: &'static [Scope] = &[Scope::Read, Scope::OrdersWrite];
}

/// Where an order is. `pending` while the saga runs; `confirmed` once stock is committed
/// and payment authorised; `fulfilled` once shipped; `cancelled` or `failed` at an end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OrderStatus {
    Pending,
    Confirmed,
    Fulfilled,
    Cancelled,
    Failed,
}

impl OrderStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Fulfilled => "fulfilled",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Failed => "failed",
        }
    }

    /// The states this one may move to.
    pub(crate) fn next(self) -> &'static [OrderStatus] {
        use OrderStatus::*;
        match self {
            Pending => &[Confirmed, Cancelled, Failed],
            Confirmed => &[Fulfilled, Cancelled],
            Fulfilled | Cancelled | Failed => &[],
        }
    }

    fn parse(text: &str) -> Option<OrderStatus> {
        serde_json::from_value(Value::String(text.to_owned())).ok()
    }
}

/// Where the order's money is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PaymentStatus {
    Pending,
    Authorized,
    Captured,
    PartiallyRefunded,
    Refunded,
    Voided,
    Failed,
}

impl PaymentStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Authorized => "authorized",
            PaymentStatus::Captured => "captured",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::Voided => "voided",
            PaymentStatus::Failed => "failed",
        }
    }

    pub(crate) fn next(self) -> &'static [PaymentStatus] {
        use PaymentStatus::*;
        match self {
            Pending => &[Authorized, Failed],
            Authorized => &[Captured, Voided],
            Captured | PartiallyRefunded => &[PartiallyRefunded, Refunded],
            Refunded | Voided | Failed => &[],
        }
    }

    fn parse(text: &str) -> Option<PaymentStatus> {
        serde_json::from_value(Value::String(text.to_owned())).ok()
    }
}

/// The payment provider the configuration names, behind its circuit breaker.
pub(crate) fn payment_provider(config: &crate::config::Config, db: &crate::db::Database) -> Arc<dyn PaymentProvider> {
    let provider: Arc<dyn PaymentProvider> = match (config.payment_provider.as_str(), &config.stripe_secret_key) {
        ("stripe", Some(key)) => Arc::new(stripe::Stripe::new(&config.stripe_api_base, key.clone())),
        _ => Arc::new(payments::TestProvider::new(db.clone())),
    };
    Arc::new(payments::Breaker::new(provider, config.payment_breaker_cooldown()))
}

/// A 409 for a move the state machine does not allow.
pub(crate) fn illegal(what: &str, from: &str, to: &str) -> ApiError {
    ApiError::conflict("illegal_transition", format!("{what} is {from}; it cannot become {to}"))
}

/// A postal address; `country` is ISO 3166-1 alpha-2, `region` a subdivision code.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Address {
    name: String,
    line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    line2: Option<String>,
    city: String,
    postal_code: String,
    /// A subdivision (`CA` in the US), used for its tax rate when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    /// ISO 3166-1 alpha-2, upper case (`DE`).
    country: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct OrderLine {
    sku: String,
    variant_id: String,
    /// Product and variant title when the order was placed.
    title: String,
    quantity: i64,
    /// What one unit was charged: the lowest of its price, sale price and any running price list.
    unit_amount: i64,
    /// The regular price when `unit_amount` is reduced from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    compare_at: Option<i64>,
    subtotal: i64,
    tax: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Payment {
    provider: String,
    status: PaymentStatus,
    /// The payment method as given, masked to its last four characters.
    method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    amount: i64,
    captured: i64,
    refunded: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Refund {
    id: String,
    amount: i64,
    reason: String,
    /// `pending`, `succeeded` or `failed`.
    status: String,
    actor: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Failure {
    /// `insufficient_stock`, `card_declined`, `insufficient_funds`, `payment_unavailable`, `reservation_expired`.
    code: String,
    detail: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Order {
    id: String,
    status: OrderStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_id: Option<String>,
    email: String,
    currency: String,
    lines: Vec<OrderLine>,
    subtotal: i64,
    tax: i64,
    total: i64,
    /// The region whose flat tax rate applied (`DE`, `US-CA`), empty when none did.
    tax_region: String,
    /// That rate in basis points (1900 = 19 %).
    tax_rate_bp: i64,
    shipping_address: Address,
    billing_address: Address,
    payment: Payment,
    refunds: Vec<Refund>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reservation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracking: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<Failure>,
    created_by: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Millis,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Millis,
}

impl Order {
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

/// What the saga reads of an order: its states and the handles of what it holds.
#[derive(Debug, Clone)]
pub(crate) struct SagaView {
    pub(crate) status: OrderStatus,
    pub(crate) payment_status: PaymentStatus,
    pub(crate) total: i64,
    pub(crate) currency: String,
    pub(crate) method: String,
    pub(crate) payment_ref: Option<String>,
    pub(crate) reservation_id: Option<String>,
    pub(crate) captured: i64,
    pub(crate) refunded: i64,
    pub(crate) lines: Vec<(String, i64)>,
}

fn bad_state(column: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("orders.{column} holds an unknown state `{value}`").into())
}

pub(crate) async fn saga_view(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Option<SagaView>, sqlx::Error> {
    let Some(row) = sqlx::query("SELECT * FROM orders WHERE id = $1").bind(id).fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    let status: String = row.try_get("status")?;
    let payment: String = row.try_get("payment_status")?;
    let lines: Vec<(String, i64)> =
        sqlx::query_as("SELECT sku, quantity FROM order_lines WHERE order_id = $1 ORDER BY position")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(Some(SagaView {
        status: OrderStatus::parse(&status).ok_or_else(|| bad_state("status", &status))?,
        payment_status: PaymentStatus::parse(&payment).ok_or_else(|| bad_state("payment_status", &payment))?,
        total: row.try_get("total")?,
        currency: row.try_get("currency")?,
        method: row.try_get("payment_method")?,
        payment_ref: row.try_get("payment_ref")?,
        reservation_id: row.try_get("reservation_id")?,
        captured: row.try_get("captured")?,
        refunded: row.try_get("refunded")?,
        lines,
    }))
}

fn mask(method: &str) -> String {
    let tail: String = method.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("•••• {tail}")
}

pub(crate) async fn load(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Option<Order>, sqlx::Error> {
    let Some(row) = sqlx::query("SELECT * FROM orders WHERE id = $1").bind(id).fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    let lines = sqlx::query("SELECT * FROM order_lines WHERE order_id = $1 ORDER BY position")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            Ok(OrderLine {
                sku: r.try_get("sku")?,
                variant_id: r.try_get("variant_id")?,
                title: r.try_get("title")?,
                quantity: r.try_get("quantity")?,
                unit_amount: r.try_get("unit_amount")?,
                compare_at: r.try_get("compare_at")?,
                subtotal: r.try_get("subtotal")?,
                tax: r.try_get("tax")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let refunds = sqlx::query("SELECT * FROM order_refunds WHERE order_id = $1 ORDER BY id")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            Ok(Refund {
                id: r.try_get("id")?,
                amount: r.try_get("amount")?,
                reason: r.try_get("reason")?,
                status: r.try_get("status")?,
                actor: r.try_get("actor")?,
                created_at: Millis(r.try_get("created_at")?),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let address = |column: &str| -> Result<Address, sqlx::Error> {
        serde_json::from_str(&row.try_get::<String, _>(column)?).map_err(|e| sqlx::Error::Decode(e.into()))
    };
    let status: String = row.try_get("status")?;
    let payment_status: String = row.try_get("payment_status")?;
    let failure = match row.try_get::<Option<String>, _>("failure_code")? {
        Some(code) => {
            Some(Failure { code, detail: row.try_get::<Option<String>, _>("failure_detail")?.unwrap_or_default() })
        }
        None => None,
    };
    Ok(Some(Order {
        id: row.try_get("id")?,
        status: OrderStatus::parse(&status).ok_or_else(|| bad_state("status", &status))?,
        project: row.try_get("project")?,
        customer_id: row.try_get("customer_id")?,
        email: row.try_get("email")?,
        currency: row.try_get("currency")?,
        lines,
        subtotal: row.try_get("subtotal")?,
        tax: row.try_get("tax")?,
        total: row.try_get("total")?,
        tax_region: row.try_get("tax_region")?,
        tax_rate_bp: row.try_get("tax_rate_bp")?,
        shipping_address: address("shipping_address")?,
        billing_address: address("billing_address")?,
        payment: Payment {
            provider: row.try_get("payment_provider")?,
            status: PaymentStatus::parse(&payment_status)
                .ok_or_else(|| bad_state("payment_status", &payment_status))?,
            method: mask(&row.try_get::<String, _>("payment_method")?),
            reference: row.try_get("payment_ref")?,
            amount: row.try_get("total")?,
            captured: row.try_get("captured")?,
            refunded: row.try_get("refunded")?,
        },
        refunds,
        reservation_id: row.try_get("reservation_id")?,
        tracking: row.try_get("tracking")?,
        failure,
        created_by: row.try_get("created_by")?,
        created_at: Millis(row.try_get("created_at")?),
        updated_at: Millis(row.try_get("updated_at")?),
    }))
}

/// Takes the order's row lock for the rest of the transaction (PostgreSQL; SQLite has
/// one writer), so changes to one order — a saga step, a cancel — apply one after another.
pub(crate) async fn lock(
    conn: &mut sqlx::AnyConnection,
    dialect: crate::db::Dialect,
    id: &str,
) -> Result<bool, sqlx::Error> {
    let sql = match dialect {
        crate::db::Dialect::Postgres => "SELECT id FROM orders WHERE id = $1 FOR UPDATE",
        crate::db::Dialect::Sqlite => "SELECT id FROM orders WHERE id = $1",
    };
    let found: Option<String> = sqlx::query_scalar(sql).bind(id).fetch_optional(&mut *conn).await?;
    Ok(found.is_some())
}

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no order `{id}`"))
}
