//! The catalog clock: what must happen at a moment rather than on a write. Each tick it
//! releases reservations past their expiry and republishes the products (and listings)
//! of price lists that started or ended since the last tick, so edge records roll
//! forward. Both are driven by columns in the database, not by timers in memory: a
//! restarted core (the publisher reconciles everything on start) or any other replica
//! picks up exactly where this one left off, and every step is safe to run twice.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::db::Database;
use crate::time::now_millis;

/// Runs until `shutdown` resolves.
pub(crate) async fn run(
    db: Database,
    publisher: std::sync::Arc<crate::publish::Publisher>,
    every: Duration,
    low_stock: i64,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut since = now_millis().0;
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(every) => {}
        }
        match crate::inventory::reservations::expire_due(&db, low_stock).await {
            Ok(0) => {}
            Ok(released) => {
                tracing::info!(released, "expired reservations released");
                publisher.wake();
            }
            Err(err) => tracing::warn!(error = %err, "releasing expired reservations failed; will retry"),
        }
        let now = now_millis().0;
        match republish_moments(&db, since, now).await {
            Ok(touched) => {
                since = now;
                if touched {
                    publisher.wake();
                }
            }
            Err(err) => tracing::warn!(error = %err, "republishing price lists failed; will retry"),
        }
    }
}

/// Enqueues the products of every price list starting or ending in `(since, now]`.
async fn republish_moments(db: &Database, since: i64, now: i64) -> Result<bool, sqlx::Error> {
    let skus: BTreeSet<String> = sqlx::query_scalar(
        "SELECT DISTINCT pp.sku FROM catalog_price_list_prices pp JOIN catalog_price_lists pl ON pl.id = pp.price_list_id
         WHERE (pl.starts_at > $1 AND pl.starts_at <= $2) OR (pl.ends_at > $1 AND pl.ends_at <= $2)",
    )
    .bind(since)
    .bind(now)
    .fetch_all(db.pool())
    .await?
    .into_iter()
    .collect();
    if skus.is_empty() {
        return Ok(false);
    }
    let mut tx = db.begin_write().await?;
    super::storefront::enqueue_skus(&mut tx, &skus).await?;
    tx.commit().await?;
    Ok(true)
}
