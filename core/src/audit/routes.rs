//! `GET /v1/audit-log`: the trail, filtered and paged, as the key asking may see it. Apart
//! from the recording in `audit` so that recording depends on nothing key-related.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AuditEntry;
use crate::error::{ApiError, ApiQuery};
use crate::keys::{Authorized, Readers, Scope};
use crate::pagination::{Cursor, Page, PageParams};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditFilter {
    /// Only entries about this kind of object (`api_key`, …).
    pub(crate) target_type: Option<String>,
    /// Only entries about this object.
    pub(crate) target_id: Option<String>,
    /// Only entries by this actor.
    pub(crate) actor: Option<String>,
    /// Only entries whose target id is this or lies under it (`flags/web/production`
    /// gives the environment and each of its flags).
    pub(crate) target_under: Option<String>,
}

/// List audit log entries, newest first. Keys without `admin` see API-key entries
/// without the keys' state (`before`, `after`, `changes` empty).
#[utoipa::path(
    get, path = "/v1/audit-log", tag = "audit",
    params(AuditFilter, PageParams),
    security(("admin_key" = ["admin", "read"])),
    responses(
        (status = 200, description = "A page of entries", body = Page<AuditEntry>),
        (status = 400, description = "Bad filter or cursor", body = crate::error::Problem),
        (status = 401, description = "Missing or invalid key", body = crate::error::Problem),
        (status = 403, description = "Key lacks the scope", body = crate::error::Problem),
    )
)]
pub(crate) async fn list_entries(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<Readers>,
    ApiQuery(filter): ApiQuery<AuditFilter>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<axum::Json<Page<AuditEntry>>, ApiError> {
    let cursor = Cursor::from_params(&page)?;
    let rows = sqlx::query(
        "SELECT * FROM audit_log
         WHERE ($1 = '' OR id < $1) AND ($2 = '' OR target_type = $2)
           AND ($3 = '' OR target_id = $3) AND ($4 = '' OR actor = $4)
           AND ($6 = '' OR target_id = $6 OR target_id LIKE $7 ESCAPE '\\')
         ORDER BY id DESC LIMIT $5",
    )
    .bind(cursor.after())
    .bind(filter.target_type.unwrap_or_default())
    .bind(filter.target_id.unwrap_or_default())
    .bind(filter.actor.unwrap_or_default())
    .bind(cursor.fetch_limit())
    .bind(filter.target_under.clone().unwrap_or_default())
    .bind(format!("{}/%", crate::db::like_escape(&filter.target_under.unwrap_or_default())))
    .fetch_all(state.db.pool())
    .await?;
    let mut entries = rows.iter().map(AuditEntry::from_row).collect::<Result<Vec<_>, _>>()?;
    if !principal.key.scopes.contains(&Scope::Admin) {
        entries.iter_mut().for_each(AuditEntry::redact_secret_bearing);
    }
    Ok(axum::Json(cursor.page(entries, |e| e.id.clone())))
}

/// Target types whose recorded state only admins may see: API keys (their token prefix
/// and scopes are what `GET /v1/keys`, an admin route, shows).
const ADMIN_ONLY_TARGETS: &[&str] = &["api_key"];

impl AuditEntry {
    /// Keeps who did what to which object, and drops the object's state.
    fn redact_secret_bearing(&mut self) {
        if ADMIN_ONLY_TARGETS.contains(&self.target_type.as_str()) {
            (self.before, self.after, self.changes) = (None, None, Vec::new());
        }
    }
}
