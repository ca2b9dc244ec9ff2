//! Inventory: stock per SKU per location (`levels`), every change to it with a reason
//! (adjustments), and stock held for carts and orders (`reservations`).
//!
//! The counts obey, per SKU and location, and at every commit:
//! `reserved ≤ on_hand`, `committed ≥ 0`, `available = on_hand − reserved ≥ 0`, the sum of
//! adjustments equals `on_hand + committed`, and `reserved` equals the quantities of the
//! active reservations. The database enforces the first two with a `CHECK`, every change
//! is one transaction, and a reservation takes stock with a conditional update on the
//! locked row, so concurrent checkouts can never take the same unit twice. The edge only
//! ever sees the coarse availability of each variant, republished when it changes class.

pub(crate) mod levels;
pub(crate) mod reservations;

use std::collections::BTreeMap;

use crate::catalog::storefront::units_available;
use crate::keys::{Grants, Scope};

/// Keys that may change stock and reserve it.
#[derive(Debug)]
pub(crate) struct InventoryWriters;
impl Grants for InventoryWriters {
    const SCOPES: &'static [Scope] = &[Scope::InventoryWrite];
}

/// Keys that may read it.
#[derive(Debug)]
pub(crate) struct InventoryReaders;
impl Grants for InventoryReaders {
    const SCOPES: &'static [Scope] = &[Scope::Read, Scope::InventoryWrite, Scope::CatalogWrite];
}

/// Availability of some SKUs before a change, to republish those whose coarse class the
/// change moves (`in_stock` → `low`, …).
#[derive(Debug, Default)]
pub(crate) struct Watch {
    before: BTreeMap<String, i64>,
}

impl Watch {
    pub(crate) async fn start(conn: &mut sqlx::AnyConnection, skus: Vec<String>) -> Result<Watch, sqlx::Error> {
        let mut before = BTreeMap::new();
        for sku in skus {
            if let std::collections::btree_map::Entry::Vacant(entry) = before.entry(sku) {
                let available = units_available(conn, entry.key()).await?;
                entry.insert(available);
            }
        }
        Ok(Watch { before })
    }

    /// Enqueues, in the same transaction, the products whose availability class moved.
    pub(crate) async fn finish(self, conn: &mut sqlx::AnyConnection, low_stock: i64) -> Result<(), sqlx::Error> {
        use crate::catalog::storefront::availability;
        let mut moved = std::collections::BTreeSet::new();
        for (sku, before) in self.before {
            let after = units_available(conn, &sku).await?;
            if availability(before, true, low_stock) != availability(after, true, low_stock) {
                moved.insert(sku);
            }
        }
        if !moved.is_empty() {
            crate::catalog::storefront::enqueue_skus(conn, &moved).await?;
        }
        Ok(())
    }
}

/// Whether a variant has `sku` (stock may be kept only for SKUs the catalog knows).
pub(crate) async fn sku_exists(conn: &mut sqlx::AnyConnection, sku: &str) -> Result<bool, sqlx::Error> {
    let found: Option<String> = sqlx::query_scalar("SELECT id FROM catalog_variants WHERE sku = $1")
        .bind(sku)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found.is_some())
}
