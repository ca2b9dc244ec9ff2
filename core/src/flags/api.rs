//! `/v1/flags/…`: environments, their flag sets as flagd JSON (import and export), and
//! OFREP client keys.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::access::{FlagReaders, FlagWriters};
use super::{ClientKey, Environment};
use crate::error::{ApiError, ApiJson, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewEnvironment {
    /// e.g. `web`; 1–50 of a-z, 0-9, `-`, not starting with `-`.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,49}$")]
    project: String,
    /// e.g. `production`; the same rule.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,49}$")]
    name: String,
    /// Changes need a change request approved by a second key holder.
    #[serde(default)]
    protected: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EnvironmentList {
    items: Vec<Environment>,
}

/// Create an environment (with no flags yet).
#[utoipa::path(
    post, path = "/v1/flags/environments", tag = "flags",
    request_body = NewEnvironment,
    security(("admin_key" = ["admin", "flags:write"])),
    responses(
        (status = 201, description = "Created", body = Environment),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 409, description = "The project already has it", body = Problem),
        (status = 422, description = "Bad names", body = Problem),
    )
)]
pub(crate) async fn create_environment(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    ApiJson(new): ApiJson<NewEnvironment>,
) -> Result<(StatusCode, Json<Environment>), ApiError> {
    let created =
        super::create_environment(&state.db, &new.project, &new.name, new.protected, &principal.actor()).await?;
    state.publisher.wake();
    Ok((StatusCode::CREATED, Json(created)))
}

/// List environments by project and name.
#[utoipa::path(
    get, path = "/v1/flags/environments", tag = "flags",
    security(("admin_key" = ["admin", "read", "flags:write"])),
    responses(
        (status = 200, description = "Every environment", body = EnvironmentList),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
    )
)]
pub(crate) async fn list_environments(
    State(state): State<AppState>,
    _: Authorized<FlagReaders>,
) -> Result<Json<EnvironmentList>, ApiError> {
    let rows = sqlx::query("SELECT * FROM flag_environments ORDER BY project, name").fetch_all(state.db.pool()).await?;
    let items = rows.iter().map(|row| Environment::from_row(row).map(|(env, _)| env)).collect::<Result<_, _>>()?;
    Ok(Json(EnvironmentList { items }))
}

/// Export an environment's flags as a flagd flag set.
#[utoipa::path(
    get, path = "/v1/flags/environments/{project}/{name}/flagd", tag = "flags",
    params(("project" = String, Path), ("name" = String, Path)),
    security(("admin_key" = ["admin", "read", "flags:write"])),
    responses(
        (status = 200, description = "The flagd document", body = Object),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such environment", body = Problem),
    )
)]
pub(crate) async fn export_flagd(
    State(state): State<AppState>,
    _: Authorized<FlagReaders>,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(super::load(&mut conn, &project, &name).await?.1))
}

/// Replace an environment's flags with a flagd flag set, checked whole first.
#[utoipa::path(
    put, path = "/v1/flags/environments/{project}/{name}/flagd", tag = "flags",
    params(("project" = String, Path), ("name" = String, Path), ImportOptions),
    request_body = Object,
    security(("admin_key" = ["admin", "flags:write"])),
    responses(
        (status = 200, description = "Stored; edges evaluate it after the next publish", body = Imported),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such environment", body = Problem),
        (status = 409, description = "Protected environment: use a change request", body = Problem),
        (status = 422, description = "Not a valid flag set; each problem located by JSON pointer", body = Problem),
    )
)]
pub(crate) async fn import_flagd(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path((project, name)): Path<(String, String)>,
    ApiQuery(options): ApiQuery<ImportOptions>,
    ApiJson(document): ApiJson<Value>,
) -> Result<Json<Imported>, ApiError> {
    let change = super::changes::Change::Import { document, keep_broken: options.keep_broken };
    let committed =
        super::changes::apply_directly(&state.db, (&project, &name), vec![change], &principal.actor()).await?;
    state.publisher.wake();
    Ok(Json(Imported { environment: committed.environment, broken: committed.broken }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvironmentPatch {
    /// Require change requests. Any writer may turn it on; only an admin key turns it off.
    protected: bool,
}

/// Protect an environment, or lift its protection.
#[utoipa::path(
    patch, path = "/v1/flags/environments/{project}/{name}", tag = "flags",
    params(("project" = String, Path), ("name" = String, Path)),
    request_body = EnvironmentPatch,
    security(("admin_key" = ["admin", "flags:write"])),
    responses(
        (status = 200, description = "Changed", body = Environment),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope (lifting protection takes `admin`)", body = Problem),
        (status = 404, description = "No such environment", body = Problem),
    )
)]
pub(crate) async fn update_environment(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path((project, name)): Path<(String, String)>,
    ApiJson(patch): ApiJson<EnvironmentPatch>,
) -> Result<Json<Environment>, ApiError> {
    if !patch.protected {
        // Lifting protection would let one key holder change what needs two.
        principal.require(&[crate::keys::Scope::Admin])?;
    }
    Ok(Json(super::set_protected(&state.db, &project, &name, patch.protected, &principal.actor()).await?))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImportOptions {
    /// Store a set even when some flags' targeting cannot be used; those flags answer
    /// `PARSE_ERROR`, as in flagd. Without it such a set is refused (422, each located).
    #[serde(default)]
    keep_broken: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Imported {
    environment: Environment,
    /// Flags kept although their targeting cannot be used (only with `keep_broken`).
    broken: Vec<FieldError>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewClientKey {
    /// What uses it, e.g. `web app`.
    #[schema(min_length = 1, max_length = 100)]
    name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedClientKey {
    key: ClientKey,
    /// Shown once: send it as `Authorization: Bearer …` (or `X-API-Key`) to the edge's OFREP.
    token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ClientKeyList {
    items: Vec<ClientKey>,
}

/// Create an OFREP client key for an environment.
#[utoipa::path(
    post, path = "/v1/flags/environments/{project}/{name}/client-keys", tag = "flags",
    params(("project" = String, Path), ("name" = String, Path)),
    request_body = NewClientKey,
    security(("admin_key" = ["admin", "flags:write"])),
    responses(
        (status = 201, description = "Created; the token is shown only now", body = CreatedClientKey),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such environment", body = Problem),
        (status = 422, description = "Bad name", body = Problem),
    )
)]
pub(crate) async fn create_client_key(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path((project, name)): Path<(String, String)>,
    ApiJson(new): ApiJson<NewClientKey>,
) -> Result<(StatusCode, Json<CreatedClientKey>), ApiError> {
    let (key, token) = super::create_client_key(&state.db, &project, &name, &new.name, &principal.actor()).await?;
    state.publisher.wake();
    Ok((StatusCode::CREATED, Json(CreatedClientKey { key, token })))
}

/// List an environment's client keys (never their tokens).
#[utoipa::path(
    get, path = "/v1/flags/environments/{project}/{name}/client-keys", tag = "flags",
    params(("project" = String, Path), ("name" = String, Path)),
    security(("admin_key" = ["admin", "read", "flags:write"])),
    responses(
        (status = 200, description = "Its client keys, newest first", body = ClientKeyList),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such environment", body = Problem),
    )
)]
pub(crate) async fn list_client_keys(
    State(state): State<AppState>,
    _: Authorized<FlagReaders>,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<ClientKeyList>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    super::load(&mut conn, &project, &name).await?;
    drop(conn);
    let rows = sqlx::query("SELECT * FROM flag_client_keys WHERE project = $1 AND environment = $2 ORDER BY id DESC")
        .bind(&project)
        .bind(&name)
        .fetch_all(state.db.pool())
        .await?;
    let items = rows.iter().map(ClientKey::from_row).collect::<Result<_, _>>()?;
    Ok(Json(ClientKeyList { items }))
}

/// Revoke a client key; edges refuse it after the next publish.
#[utoipa::path(
    delete, path = "/v1/flags/client-keys/{id}", tag = "flags",
    params(("id" = String, Path, description = "`fck_…`")),
    security(("admin_key" = ["admin", "flags:write"])),
    responses(
        (status = 200, description = "Revoked", body = ClientKey),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such key", body = Problem),
    )
)]
pub(crate) async fn revoke_client_key(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<FlagWriters>,
    Path(id): Path<String>,
) -> Result<Json<ClientKey>, ApiError> {
    let key = super::revoke_client_key(&state.db, &id, &principal.actor()).await?;
    state.publisher.wake();
    Ok(Json(key))
}
