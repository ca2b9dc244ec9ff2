//! The catalog: products with variants and prices (`products`), the category tree and
//! collections they are filed under (`taxonomy`), promotions that start and end on their
//! own (`price_lists`), and what a storefront reads of them at the edge (`storefront`).
//!
//! The core owns every write; published products and listing pages reach edge KV as keyed
//! records (`verge_shared::catalog`), each change enqueueing the keys it touches in the
//! same transaction. Draft and archived products are never rendered, so they cannot leak.
//! Published titles also feed the autocomplete index `catalog/products`, so a storefront's
//! search box suggests products with no work of its own.

pub(crate) mod bulk;
pub(crate) mod clock;
pub(crate) mod price_lists;
pub(crate) mod products;
pub(crate) mod storefront;
pub(crate) mod taxonomy;

use crate::error::{ApiError, FieldError};
use crate::keys::{Grants, Scope};

/// Keys that may change the catalog.
#[derive(Debug)]
pub(crate) struct CatalogWriters;
impl Grants for CatalogWriters {
    const SCOPES: &'static [Scope] = &[Scope::CatalogWrite];
}

/// Keys that may read it.
#[derive(Debug)]
pub(crate) struct CatalogReaders;
impl Grants for CatalogReaders {
    const SCOPES: &'static [Scope] = &[Scope::Read, Scope::CatalogWrite, Scope::InventoryWrite];
}

pub(crate) use verge_shared::catalog::is_handle;

/// A field error unless `handle` is a handle.
pub(crate) fn check_handle(handle: &str, field: &str, errors: &mut Vec<FieldError>) {
    if !is_handle(handle) {
        errors.push(FieldError {
            field: field.to_owned(),
            message: "must be 1–120 of a-z, 0-9 and `-`, neither starting nor ending with `-`".into(),
        });
    }
}

/// A SKU: 1–64 of `A-Z`, `a-z`, `0-9`, `.`, `_`, `-` (it appears in paths).
pub(crate) fn is_sku(sku: &str) -> bool {
    (1..=64).contains(&sku.len()) && sku.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(crate) const SKU_RULE: &str = "must be 1–64 of A-Z, a-z, 0-9, `.`, `_` and `-`";

/// A 404 unless `sku` is well formed (so a bad one is a 404, never a database error).
pub(crate) fn check_sku_path(sku: &str) -> Result<(), ApiError> {
    if is_sku(sku) { Ok(()) } else { Err(ApiError::not_found(format!("no variant has the SKU `{sku}`"))) }
}

/// Whether `code` is an active ISO 4217 currency code, upper case as the standard writes it.
pub(crate) fn is_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) && iso_currency::Currency::from_code(code).is_some()
}

/// The largest amount accepted, in minor units: far above any real price, far below
/// where sums of many lines could overflow.
pub(crate) const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// Field errors for a price amount.
pub(crate) fn check_amount(amount: i64, field: String, errors: &mut Vec<FieldError>) {
    if amount < 0 {
        errors.push(FieldError { field, message: "must not be negative (amounts are in minor units)".into() });
    } else if amount > MAX_AMOUNT {
        errors.push(FieldError { field, message: format!("must be at most {MAX_AMOUNT}") });
    }
}

/// Field errors for a currency code.
pub(crate) fn check_currency(code: &str, field: String, errors: &mut Vec<FieldError>) {
    if !is_currency(code) {
        errors.push(FieldError {
            field,
            message: format!("`{code}` is not an ISO 4217 currency code (e.g. EUR, USD, JPY)"),
        });
    }
}
