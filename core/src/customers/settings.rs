//! Per-project session settings: token and session lifetimes and the session cap, read
//! on every sign-in and refresh, changed with `PUT /v1/customers/{project}/settings`.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{CustomerReaders, CustomerWriters, check_project};
use crate::error::{ApiError, ApiJson, FieldError, Problem};
use crate::keys::Authorized;
use crate::state::AppState;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// A project's session settings. Every field may be left out of a `PUT` (its default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AuthSettings {
    /// Access token lifetime, 1–60 minutes (default 10).
    #[schema(minimum = 1, maximum = 60)]
    pub(crate) access_token_minutes: u32,
    /// A remembered session ends after this long unused, 1–365 days (default 14).
    #[schema(minimum = 1, maximum = 365)]
    pub(crate) idle_days: u32,
    /// A remembered session ends this long after sign-in, whatever its use, 1–365 days
    /// (default 90).
    #[schema(minimum = 1, maximum = 365)]
    pub(crate) absolute_days: u32,
    /// A session without "remember me" lasts this long at most, 1–168 hours (default 12);
    /// its cookie is a browser-session cookie.
    #[schema(minimum = 1, maximum = 168)]
    pub(crate) browser_session_hours: u32,
    /// Most sessions per customer, 1–100 (default 10); signing in once more ends the oldest.
    #[schema(minimum = 1, maximum = 100)]
    pub(crate) max_sessions: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            access_token_minutes: 10,
            idle_days: 14,
            absolute_days: 90,
            browser_session_hours: 12,
            max_sessions: 10,
        }
    }
}

impl AuthSettings {
    pub(crate) fn access_ttl_ms(&self) -> i64 {
        i64::from(self.access_token_minutes) * MINUTE_MS
    }

    /// (idle, absolute) lifetimes of a session.
    pub(crate) fn session_ttls_ms(&self, remember: bool) -> (i64, i64) {
        if remember {
            (i64::from(self.idle_days) * DAY_MS, i64::from(self.absolute_days) * DAY_MS)
        } else {
            let life = i64::from(self.browser_session_hours) * HOUR_MS;
            (life, life)
        }
    }

    fn validate(&self) -> Result<(), ApiError> {
        let mut errors = Vec::new();
        let mut within = |field: &str, value: u32, range: std::ops::RangeInclusive<u32>| {
            if !range.contains(&value) {
                errors.push(FieldError {
                    field: format!("/{field}"),
                    message: format!("must be between {} and {}", range.start(), range.end()),
                });
            }
        };
        within("access_token_minutes", self.access_token_minutes, 1..=60);
        within("idle_days", self.idle_days, 1..=365);
        within("absolute_days", self.absolute_days, 1..=365);
        within("browser_session_hours", self.browser_session_hours, 1..=168);
        within("max_sessions", self.max_sessions, 1..=100);
        if self.idle_days > self.absolute_days {
            errors.push(FieldError { field: "/idle_days".into(), message: "must not exceed absolute_days".into() });
        }
        if errors.is_empty() { Ok(()) } else { Err(ApiError::validation(errors)) }
    }
}

/// The settings of `project` (defaults when none were saved).
pub(crate) async fn load(conn: &mut sqlx::AnyConnection, project: &str) -> Result<AuthSettings, ApiError> {
    let document: Option<String> = sqlx::query_scalar("SELECT document FROM customer_auth_settings WHERE project = $1")
        .bind(project)
        .fetch_optional(&mut *conn)
        .await?;
    match document {
        Some(text) => serde_json::from_str(&text).map_err(ApiError::internal),
        None => Ok(AuthSettings::default()),
    }
}

/// A project's session settings.
#[utoipa::path(
    get, path = "/v1/customers/{project}/settings", tag = "customers",
    params(("project" = String, Path)),
    security(("admin_key" = ["admin", "read", "customers:write"])),
    responses(
        (status = 200, body = AuthSettings),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, description = "Not a project name", body = Problem),
    )
)]
pub(crate) async fn get_settings(
    State(state): State<AppState>,
    _: Authorized<CustomerReaders>,
    Path(project): Path<String>,
) -> Result<Json<AuthSettings>, ApiError> {
    check_project(&project)?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(load(&mut conn, &project).await?))
}

/// Replace a project's session settings; new lifetimes apply to sessions signed in or
/// refreshed from now on.
#[utoipa::path(
    put, path = "/v1/customers/{project}/settings", tag = "customers",
    params(("project" = String, Path)), request_body = AuthSettings,
    security(("admin_key" = ["admin", "customers:write"])),
    responses(
        (status = 200, body = AuthSettings),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, description = "A value out of range", body = Problem),
    )
)]
pub(crate) async fn put_settings(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<CustomerWriters>,
    Path(project): Path<String>,
    ApiJson(settings): ApiJson<AuthSettings>,
) -> Result<Json<AuthSettings>, ApiError> {
    check_project(&project)?;
    settings.validate()?;
    let mut tx = state.db.begin_write().await?;
    let before = load(&mut tx, &project).await?;
    let now = crate::time::now_millis().0;
    let document = serde_json::to_string(&settings).expect("settings serialize");
    sqlx::query(
        "INSERT INTO customer_auth_settings (project, document, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (project) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
    )
    .bind(&project)
    .bind(document)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    crate::audit::record(
        &mut tx,
        &principal.actor(),
        "customer_settings.update",
        "customer_settings",
        &project,
        Some(&before),
        Some(&settings),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(settings))
}
