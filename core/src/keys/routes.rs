//! `/v1/keys`: managing admin API keys over HTTP. All of it needs the `admin` scope.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AdminOnly, ApiKey, Authorized, KeyError, NewKey, Scope};
use crate::error::{ApiError, ApiJson, ApiQuery, FieldError, Problem};
use crate::pagination::{Cursor, Page, PageParams};
use crate::state::AppState;
use crate::time::Millis;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_key, list_keys)).routes(routes!(get_key, revoke_key))
}

impl From<KeyError> for ApiError {
    fn from(err: KeyError) -> ApiError {
        match err {
            KeyError::Invalid(msg) => ApiError::validation(vec![FieldError { field: "body".into(), message: msg }]),
            KeyError::NotFound(_) => ApiError::not_found(err.to_string()),
            KeyError::DuplicateToken => ApiError::conflict("duplicate_key", err.to_string()),
            KeyError::LastAdminKey(_) => ApiError::conflict("last_admin_key", err.to_string()),
            KeyError::Database(db) => db.into(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKeyRequest {
    /// What the key is for, e.g. `ci-deploy`: 1 to 100 characters, not all spaces.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    name: String,
    /// At least one.
    #[schema(min_items = 1)]
    scopes: Vec<Scope>,
    /// When the key stops working (in the future); never if absent.
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Millis>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedKeyResponse {
    key: ApiKey,
    /// The secret. It is shown only in this response; store it now.
    token: String,
}

/// Create an admin API key. The token is in this response only.
#[utoipa::path(
    post, path = "/v1/keys", tag = "keys",
    request_body = CreateKeyRequest,
    security(("admin_key" = ["admin"])),
    responses(
        (status = 201, description = "Created", body = CreatedKeyResponse),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 422, description = "Invalid request", body = Problem),
    )
)]
pub(crate) async fn create_key(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<AdminOnly>,
    ApiJson(body): ApiJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKeyResponse>), ApiError> {
    let new = NewKey { name: body.name, scopes: body.scopes, expires_at: body.expires_at };
    let created = super::create(&state.db, new, &principal.actor()).await?;
    Ok((StatusCode::CREATED, Json(CreatedKeyResponse { key: created.key, token: created.token })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListKeysFilter {
    /// Include revoked and expired keys (default false).
    #[serde(default)]
    include_inactive: bool,
}

/// List admin API keys, newest first.
#[utoipa::path(
    get, path = "/v1/keys", tag = "keys",
    params(ListKeysFilter, PageParams),
    security(("admin_key" = ["admin"])),
    responses(
        (status = 200, description = "A page of keys", body = Page<ApiKey>),
        (status = 400, description = "Bad cursor", body = Problem),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
    )
)]
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    _: Authorized<AdminOnly>,
    ApiQuery(filter): ApiQuery<ListKeysFilter>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<ApiKey>>, ApiError> {
    let cursor = Cursor::from_params(&page)?;
    Ok(Json(super::list(&state.db, &cursor, filter.include_inactive).await?))
}

/// Get one admin API key. A revoked key is gone (410); `GET /v1/keys?include_inactive=true`
/// still lists it, and the audit log keeps its history.
#[utoipa::path(
    get, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id (`key_…`)")),
    security(("admin_key" = ["admin"])),
    responses(
        (status = 200, description = "The key", body = ApiKey),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such key", body = Problem),
        (status = 410, description = "The key was revoked", body = Problem),
    )
)]
pub(crate) async fn get_key(
    State(state): State<AppState>,
    _: Authorized<AdminOnly>,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    let key = super::get(&state.db, &id).await?;
    if let Some(at) = key.revoked_at {
        return Err(ApiError::new(
            StatusCode::GONE,
            "key_revoked",
            format!("`{id}` was revoked at {at}; `GET /v1/keys?include_inactive=true` still lists it"),
        ));
    }
    Ok(Json(key))
}

/// Revoke an admin API key. Revoking a revoked key again is a no-op.
#[utoipa::path(
    delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id (`key_…`)")),
    security(("admin_key" = ["admin"])),
    responses(
        (status = 200, description = "The revoked key", body = ApiKey),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such key", body = Problem),
        (status = 409, description = "It is the last active admin key", body = Problem),
    )
)]
pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<AdminOnly>,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    Ok(Json(super::revoke(&state.db, &id, &principal.actor()).await?))
}
