//! The policies a new installation starts with, so the edge's public surfaces are limited
//! before anyone writes a policy: OFREP evaluations per client key and client address.
//! (Link passwords have their own fixed bound at the edge, `edge/src/attempts.rs`.)
//!
//! They are ordinary policies, listed, edited and deleted through the API like any other.
//! `verge dev` and `verge serve` seed them once per database, recorded in `settings`, so
//! one an operator deleted stays deleted across restarts.

use serde_json::{Value, json};
use verge_shared::ratelimit::Policy;

use super::policies::insert;
use crate::audit::Actor;
use crate::db::Database;
use crate::error::ApiError;

/// The `settings` row saying the defaults were seeded (its value lists them).
const SEEDED: &str = "ratelimit.defaults";

/// The default policies, with their fixed ids.
pub(crate) fn policies() -> Vec<Policy> {
    let ofrep: Value = json!({
        "name": "OFREP evaluations per client key and address (default)",
        "domain": "edge",
        "descriptor": [{"key": "route", "value": "ofrep"}, {"key": "api_key"}, {"key": "remote_address"}],
        "limit": {"algorithm": "sliding_window", "limit": 6000, "period_seconds": 60},
        "mode": "enforce",
        "on_store_failure": "allow",
    });
    vec![Policy::from_value("rl_default_ofrep_client", &ofrep).expect("the default policy is valid")]
}

/// Seeds the defaults unless this database already had them (even if since deleted).
/// A default whose descriptor an operator already uses is left out.
pub(crate) async fn seed(db: &Database) -> Result<(), ApiError> {
    let mut tx = db.begin_write().await?;
    let seeded = sqlx::query("SELECT name FROM settings WHERE name = $1").bind(SEEDED).fetch_optional(&mut *tx).await?;
    if seeded.is_some() {
        return Ok(());
    }
    let mut ids = Vec::new();
    for policy in policies() {
        let id = policy.id.clone();
        match insert(&mut tx, &Actor::System, policy).await {
            Ok(_) => ids.push(id),
            Err(err) if err.status() == axum::http::StatusCode::CONFLICT => {}
            Err(err) => return Err(err),
        }
    }
    sqlx::query("INSERT INTO settings (name, value, updated_at, updated_by) VALUES ($1, $2, $3, 'system')")
        .bind(SEEDED)
        .bind(json!(ids).to_string())
        .bind(crate::time::now_millis().0)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    super::forget_sets(db);
    Ok(())
}
