//! `/v1/edge/settings`: what every edge does beyond serving capabilities, published as the
//! `edge/settings` dataset.
//!
//! Today one switch: whether edges report requests that match no route (`edge.not_found`
//! events); the published value also carries the links' visitor-hash salt, a secret that
//! the API never shows. A change commits with its audit entry and an outbox row, so every edge store
//! sees it after the next publish (well under a second locally). The KV value is a tiny
//! `name=value` text with a format line, parsed at the edge without serde.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::db::Database;
use crate::error::{ApiError, ApiJson, Problem};
use crate::keys::{AdminOnly, Authorized, Readers};
use crate::publish::{DatasetContent, DatasetSource, enqueue};
use crate::state::AppState;
use crate::time::now_millis;

use verge_shared::settings::{DATASET, PART};

/// The `settings` row holding these.
const ROW: &str = "edge";

/// Edge behaviour the core controls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EdgeSettings {
    /// Report requests that match no route to the core as `edge.not_found` events.
    pub(crate) report_not_found: bool,
}

impl Default for EdgeSettings {
    fn default() -> EdgeSettings {
        let defaults = verge_shared::settings::EdgeSettings::default();
        EdgeSettings { report_not_found: defaults.report_not_found }
    }
}

impl EdgeSettings {
    /// The KV value, in the format `verge_shared::settings` defines for both sides.
    fn to_kv(&self, visitor_salt: String) -> Vec<u8> {
        verge_shared::settings::EdgeSettings { report_not_found: self.report_not_found, visitor_salt }.encode()
    }
}

async fn load(conn: &mut sqlx::AnyConnection) -> Result<EdgeSettings, ApiError> {
    let row = sqlx::query("SELECT value FROM settings WHERE name = $1").bind(ROW).fetch_optional(&mut *conn).await?;
    match row {
        Some(row) => {
            let json: String = row.try_get("value")?;
            serde_json::from_str(&json).map_err(|err| ApiError::internal(format!("stored edge settings: {err}")))
        }
        None => Ok(EdgeSettings::default()),
    }
}

/// The settings every edge applies.
#[utoipa::path(
    get, path = "/v1/edge/settings", tag = "edge",
    security(("admin_key" = ["admin", "read"])),
    responses(
        (status = 200, description = "Current settings", body = EdgeSettings),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
    )
)]
pub(crate) async fn get_settings(
    State(state): State<AppState>,
    _: Authorized<Readers>,
) -> Result<Json<EdgeSettings>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(load(&mut conn).await?))
}

/// Replace the edge settings; edges apply them after the next publish.
#[utoipa::path(
    put, path = "/v1/edge/settings", tag = "edge",
    request_body = EdgeSettings,
    security(("admin_key" = ["admin"])),
    responses(
        (status = 200, description = "Stored; publishing to edges", body = EdgeSettings),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 422, description = "Invalid settings; nothing changed", body = Problem),
    )
)]
pub(crate) async fn put_settings(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<AdminOnly>,
    ApiJson(settings): ApiJson<EdgeSettings>,
) -> Result<Json<EdgeSettings>, ApiError> {
    let actor = principal.actor();
    let mut tx = state.db.begin_write().await?;
    let before = load(&mut tx).await?;
    if before != settings {
        let json = serde_json::to_string(&settings).expect("settings serialize");
        sqlx::query(
            "INSERT INTO settings (name, value, updated_at, updated_by) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at,
             updated_by = excluded.updated_by",
        )
        .bind(ROW)
        .bind(&json)
        .bind(now_millis().0)
        .bind(actor.to_string())
        .execute(&mut *tx)
        .await?;
        crate::audit::record(
            &mut tx,
            &actor,
            "edge.settings.update",
            "edge_settings",
            ROW,
            Some(&before),
            Some(&settings),
        )
        .await?;
        enqueue(&mut tx, DATASET).await?;
    }
    tx.commit().await?;
    state.publisher.wake();
    Ok(Json(settings))
}

/// Publishes the settings, defaults included, so every edge has them from the first publish.
#[derive(Debug)]
pub(crate) struct SettingsSource;

#[async_trait::async_trait]
impl DatasetSource for SettingsSource {
    async fn build(&self, db: &Database) -> Result<Vec<DatasetContent>, sqlx::Error> {
        let mut conn = db.pool().acquire().await?;
        let settings = load(&mut conn).await.map_err(|err| sqlx::Error::Protocol(err.to_string()))?;
        let salt = crate::links::visitor_salt(&mut conn).await?;
        Ok(vec![DatasetContent { name: DATASET.to_owned(), parts: vec![(PART.to_owned(), settings.to_kv(salt))] }])
    }
}
