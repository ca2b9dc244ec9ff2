//! `/v1/customers/{project}`: the operator's view of customers — create, search, read,
//! change, delete, history, export and erase, and their sessions.
//!
//! Delete and erase both end every session (at the edge too). Delete keeps the audit
//! trail as it was; erase, for a GDPR request, also strips every audit entry about the
//! customer down to its action, time and the opaque customer id.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::sessions::{self, Session};
use super::{Customer, CustomerReaders, CustomerWriters, check_project, fold_email, index, load, password, prefix_end};
use crate::audit::{Actor, AuditEntry};
use crate::error::{ApiError, ApiJson, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::pagination::{Cursor, Page, PageParams};
use crate::state::AppState;
use crate::time::now_millis;

const MAX_METADATA_BYTES: usize = 16 * 1024;

/// The fields of a new customer, validated.
#[derive(Debug)]
pub(crate) struct NewCustomer {
    pub(crate) email: String,
    pub(crate) name: Option<String>,
    pub(crate) phone: Option<String>,
    pub(crate) metadata: Value,
    pub(crate) password_hash: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateCustomer {
    email: String,
    #[schema(max_length = 200)]
    name: Option<String>,
    /// E.164: `+` and 8 to 15 digits.
    #[schema(pattern = "^\\+[0-9]{8,15}$")]
    phone: Option<String>,
    /// A JSON object of your own, at most 16 KiB.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// Lets the customer sign in with it; same rules as sign-up.
    password: Option<String>,
}

/// A partial update: members left out keep their value; `null` clears `name` or `phone`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateCustomer {
    email: Option<String>,
    #[serde(default, with = "crate::error::null_or_absent")]
    #[schema(value_type = Option<String>)]
    name: Option<Option<String>>,
    #[serde(default, with = "crate::error::null_or_absent")]
    #[schema(value_type = Option<String>)]
    phone: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    email_verified: Option<bool>,
}

fn check_fields(name: Option<&str>, phone: Option<&str>, metadata: Option<&Value>) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if name.is_some_and(|n| n.trim().is_empty() || n.chars().count() > 200) {
        errors.push(FieldError { field: "/name".into(), message: "must be 1 to 200 characters".into() });
    }
    if let Some(phone) = phone {
        let digits = phone.strip_prefix('+').unwrap_or("");
        if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            errors.push(FieldError { field: "/phone".into(), message: "must be E.164: `+` and 8 to 15 digits".into() });
        }
    }
    if let Some(metadata) = metadata {
        if !metadata.is_object() {
            errors.push(FieldError { field: "/metadata".into(), message: "must be a JSON object".into() });
        } else if metadata.to_string().len() > MAX_METADATA_BYTES {
            errors.push(FieldError { field: "/metadata".into(), message: "must be at most 16 KiB as JSON".into() });
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(ApiError::validation(errors)) }
}

fn email_taken(email: &str) -> ApiError {
    ApiError::conflict("email_taken", format!("another customer of this project has the email `{email}`"))
}

/// Stores a customer with its search terms and audit entry, inside `tx`. `actor` None:
/// the customer signed up themselves.
pub(crate) async fn insert(
    tx: &mut sqlx::AnyConnection,
    project: &str,
    fields: NewCustomer,
    actor: Option<&Actor>,
) -> Result<Customer, ApiError> {
    let now = now_millis().0;
    let id = crate::ids::new_id("cus");
    let inserted = sqlx::query(
        "INSERT INTO customers (id, project, email, email_folded, name, phone, metadata, password_hash, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(&id)
    .bind(project)
    .bind(&fields.email)
    .bind(fold_email(&fields.email))
    .bind(&fields.name)
    .bind(&fields.phone)
    .bind(fields.metadata.to_string())
    .bind(&fields.password_hash)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(err) if crate::db::is_unique_violation(&err) => return Err(email_taken(&fields.email)),
        other => other?,
    };
    let (customer, _) = load(tx, project, &id).await?;
    index(tx, &customer).await?;
    let actor = actor.cloned().unwrap_or_else(|| Actor::Customer(id.clone()));
    crate::audit::record(tx, &actor, "customer.create", "customer", &id, None, Some(&customer.audit_value())).await?;
    Ok(customer)
}

/// Create a customer.
#[utoipa::path(
    post, path = "/v1/customers/{project}", tag = "customers",
    params(("project" = String, Path)), request_body = CreateCustomer,
    security(("admin_key" = ["admin", "customers:write"])),
    responses(
        (status = 201, body = Customer),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, description = "The email belongs to another customer of the project", body = Problem),
        (status = 422, body = Problem),
    )
)]
pub(crate) async fn create_customer(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<CustomerWriters>,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<CreateCustomer>,
) -> Result<(StatusCode, Json<Customer>), ApiError> {
    check_project(&project)?;
    super::check_email(&body.email, "/email")?;
    check_fields(body.name.as_deref(), body.phone.as_deref(), body.metadata.as_ref())?;
    let password_hash = match body.password {
        Some(password) => {
            password::check(&password, &body.email, "/password")?;
            Some(password::hash(password).await?)
        }
        None => None,
    };
    let fields = NewCustomer {
        email: body.email.trim().to_owned(),
        name: body.name.map(|n| n.trim().to_owned()),
        phone: body.phone,
        metadata: body.metadata.unwrap_or_else(|| Value::Object(Map::new())),
        password_hash,
    };
    let mut tx = state.db.begin_write().await?;
    let customer = insert(&mut tx, &project, fields, Some(&principal.actor())).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(customer)))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Search {
    /// Prefix of an email, a word of the name, the phone's digits or a metadata value;
    /// case and accents do not matter.
    q: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    cursor: Option<String>,
}

/// List customers, oldest first, or search them.
#[utoipa::path(
    get, path = "/v1/customers/{project}", tag = "customers",
    params(("project" = String, Path), Search),
    security(("admin_key" = ["admin", "read", "customers:write"])),
    responses((status = 200, body = Page<Customer>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem))
)]
pub(crate) async fn list_customers(
    State(state): State<AppState>,
    _: Authorized<CustomerReaders>,
    Path(project): Path<String>,
    ApiQuery(search): ApiQuery<Search>,
) -> Result<Json<Page<Customer>>, ApiError> {
    check_project(&project)?;
    let cursor = Cursor::from_params(&PageParams { limit: search.limit, cursor: search.cursor })?;
    let query = search.q.as_deref().map(verge_shared::text::fold).unwrap_or_default();
    let query = query.trim();
    let rows = if query.is_empty() {
        sqlx::query("SELECT * FROM customers WHERE project = $1 AND id > $2 ORDER BY id LIMIT $3")
            .bind(&project)
            .bind(cursor.after())
            .bind(cursor.fetch_limit())
            .fetch_all(state.db.pool())
            .await?
    } else {
        // Phone searches may be typed with spaces or a `+`: match on digits alone.
        let digits: String = query.chars().filter(char::is_ascii_digit).collect();
        let term = if !digits.is_empty() && query.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c)) {
            digits
        } else {
            query.to_owned()
        };
        sqlx::query(
            "SELECT * FROM customers WHERE id IN (
               SELECT customer_id FROM customer_terms
               WHERE project = $1 AND term >= $2 AND term < $3 AND customer_id > $4)
             ORDER BY id LIMIT $5",
        )
        .bind(&project)
        .bind(&term)
        .bind(prefix_end(&term))
        .bind(cursor.after())
        .bind(cursor.fetch_limit())
        .fetch_all(state.db.pool())
        .await?
    };
    let items = rows.iter().map(Customer::from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(cursor.page(items, |c| c.id.clone())))
}

/// One customer.
#[utoipa::path(
    get, path = "/v1/customers/{project}/{id}", tag = "customers",
    params(("project" = String, Path), ("id" = String, Path)),
    security(("admin_key" = ["admin", "read", "customers:write"])),
    responses((status = 200, body = Customer), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn get_customer(
    State(state): State<AppState>,
    _: Authorized<CustomerReaders>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Json<Customer>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(load(&mut conn, &project, &id).await?.0))
}

/// Change a customer. Changing the email makes it unverified again.
#[utoipa::path(
    patch, path = "/v1/customers/{project}/{id}", tag = "customers",
    params(("project" = String, Path), ("id" = String, Path)), request_body = UpdateCustomer,
    security(("admin_key" = ["admin", "customers:write"])),
    responses(
        (status = 200, body = Customer),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem),
    )
)]
pub(crate) async fn update_customer(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<CustomerWriters>,
    Path((project, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateCustomer>,
) -> Result<Json<Customer>, ApiError> {
    if let Some(email) = &body.email {
        super::check_email(email, "/email")?;
    }
    check_fields(
        body.name.as_ref().and_then(Option::as_deref),
        body.phone.as_ref().and_then(Option::as_deref),
        body.metadata.as_ref(),
    )?;
    let mut tx = state.db.begin_write().await?;
    let (before, row) = load(&mut tx, &project, &id).await?;
    let email = body.email.as_deref().map(str::trim).unwrap_or(&before.email).to_owned();
    let name = body.name.map_or(before.name.clone(), |n| n.map(|n| n.trim().to_owned()));
    let phone = body.phone.unwrap_or(before.phone.clone());
    let metadata = body.metadata.unwrap_or(before.metadata.clone());
    let now = now_millis().0;
    let was_verified_at: Option<i64> = sqlx::Row::try_get(&row, "email_verified_at")?;
    let verified_at = match body.email_verified {
        Some(true) => was_verified_at.or(Some(now)),
        Some(false) => None,
        None if fold_email(&email) != fold_email(&before.email) => None,
        None => was_verified_at,
    };
    let updated = sqlx::query(
        "UPDATE customers SET email = $1, email_folded = $2, name = $3, phone = $4, metadata = $5,
           email_verified_at = $6, updated_at = $7 WHERE id = $8",
    )
    .bind(&email)
    .bind(fold_email(&email))
    .bind(&name)
    .bind(&phone)
    .bind(metadata.to_string())
    .bind(verified_at)
    .bind(now)
    .bind(&id)
    .execute(&mut *tx)
    .await;
    match updated {
        Err(err) if crate::db::is_unique_violation(&err) => return Err(email_taken(&email)),
        other => other?,
    };
    let (after, _) = load(&mut tx, &project, &id).await?;
    index(&mut tx, &after).await?;
    crate::audit::record(
        &mut tx,
        &principal.actor(),
        "customer.update",
        "customer",
        &id,
        Some(&before.audit_value()),
        Some(&after.audit_value()),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Removes a customer and ends their sessions, inside `tx`.
async fn remove(tx: &mut sqlx::AnyConnection, customer: &Customer, actor: &Actor) -> Result<(), ApiError> {
    sessions::end_all(tx, &customer.project, &customer.id, "deleted", actor).await?;
    for sql in [
        "DELETE FROM customer_terms WHERE customer_id = $1",
        "DELETE FROM customer_tokens WHERE customer_id = $1",
        "DELETE FROM customer_refresh_used WHERE session_id IN (SELECT id FROM customer_sessions WHERE customer_id = $1)",
        "DELETE FROM customer_sessions WHERE customer_id = $1",
        "DELETE FROM customers WHERE id = $1",
    ] {
        sqlx::query(sql).bind(&customer.id).execute(&mut *tx).await?;
    }
    Ok(())
}

/// Delete a customer: the record and sessions go; the audit trail stays as it was.
#[utoipa::path(
    delete, path = "/v1/customers/{project}/{id}", tag = "customers",
    params(("project" = String, Path), ("id" = String, Path)),
    security(("admin_key" = ["admin", "customers:write"])),
    responses((status = 204, description = "Deleted; sessions end at the edge within a second"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn delete_customer(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<CustomerWriters>,
    Path((project, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let (customer, _) = load(&mut tx, &project, &id).await?;
    remove(&mut tx, &customer, &principal.actor()).await?;
    crate::audit::record(
        &mut tx,
        &principal.actor(),
        "customer.delete",
        "customer",
        &id,
        Some(&customer.audit_value()),
        None,
    )
    .await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(StatusCode::NO_CONTENT)
}

/// Erase a customer (GDPR): the record, sessions and tokens go, and every audit entry
/// and notification about them keeps only its action, time and the opaque customer id.
#[utoipa::path(
    post, path = "/v1/customers/{project}/{id}/erase", tag = "customers",
    params(("project" = String, Path), ("id" = String, Path)),
    security(("admin_key" = ["admin", "customers:write"])),
    responses((status = 204, description = "Erased"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn erase_customer(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<CustomerWriters>,
    Path((project, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let (customer, _) = load(&mut tx, &project, &id).await?;
    remove(&mut tx, &customer, &principal.actor()).await?;
    sqlx::query(
        "UPDATE audit_log SET before_json = NULL, after_json = NULL WHERE target_type = 'customer' AND target_id = $1",
    )
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE notifications SET data = $1 WHERE subject = $2")
        .bind(json!({ "erased": true }).to_string())
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    crate::audit::record::<Value>(&mut tx, &principal.actor(), "customer.erase", "customer", &id, None, None).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(StatusCode::NO_CONTENT)
}

/// A customer's history: every change, sign-in, failed sign-in and session ending, newest
/// first, with actor (`key_…`, the customer's own id, or `system`) and time.
#[utoipa::path(
    get, path = "/v1/customers/{project}/{id}/history", tag = "customers",
    params(("project" = String, Path), ("id" = String, Path), PageParams),
    security(("admin_key" = ["admin", "read", "customers:write"])),
    responses((status = 200, body = Page<AuditEntry>), (status = 401, body = Problem), (status = 403, body = Problem))
)]
pub(crate) async fn customer_history(
    State(state): State<AppState>,
    _: Authorized<CustomerReaders>,
    Path((project, id)): Path<(String, String)>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    check_project(&project)?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(crate::audit::list_for_targets(&mut conn, &[id], &page).await?))
}

/// Everything held about one customer as one JSON document (GDPR access request).
#[utoipa::path(
    get, path = "/v1/customers/{project}/{id}/export", tag = "customers",
    params(("project" = String, Path), ("id" = String, Path)),
    security(("admin_key" = ["admin", "customers:write"])),
    responses((status = 200, description = "The record, sessions, history and notifications"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn export_customer(
    State(state): State<AppState>,
    _: Authorized<CustomerWriters>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    let (customer, _) = load(&mut conn, &project, &id).await?;
    let sessions = sessions::list(&mut conn, &id).await?;
    let mut history = Vec::new();
    let mut page = PageParams { limit: Some(200), cursor: None };
    loop {
        let next = crate::audit::list_for_targets(&mut conn, std::slice::from_ref(&id), &page).await?;
        history.extend(next.items);
        match next.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    let notifications: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT kind, data, created_at FROM notifications WHERE subject = $1 ORDER BY id")
            .bind(&id)
            .fetch_all(&mut *conn)
            .await?;
    let notifications: Vec<Value> = notifications
        .into_iter()
        .map(|(kind, data, at)| {
            let mut data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            // Tokens are secrets of their own, not data about the customer.
            if let Some(map) = data.as_object_mut() {
                map.remove("token");
            }
            json!({ "kind": kind, "at": crate::time::Millis(at).to_string(), "data": data })
        })
        .collect();
    Ok(Json(json!({
        "exported_at": now_millis().to_string(),
        "customer": customer,
        "sessions": sessions,
        "history": history,
        "notifications": notifications,
    })))
}

/// A customer's sessions, newest first, active and ended.
#[utoipa::path(
    get, path = "/v1/customers/{project}/{id}/sessions", tag = "customers",
    params(("project" = String, Path), ("id" = String, Path)),
    security(("admin_key" = ["admin", "read", "customers:write"])),
    responses((status = 200, body = Vec<Session>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn customer_sessions(
    State(state): State<AppState>,
    _: Authorized<CustomerReaders>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    load(&mut conn, &project, &id).await?;
    Ok(Json(json!({ "items": sessions::list(&mut conn, &id).await? })))
}

/// Force a customer out: every session ends, every access token stops validating at the
/// edge within a second.
#[utoipa::path(
    post, path = "/v1/customers/{project}/{id}/sessions/end", tag = "customers",
    params(("project" = String, Path), ("id" = String, Path)),
    security(("admin_key" = ["admin", "customers:write"])),
    responses((status = 200, description = "`{\"sessions_ended\": n}`"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn end_customer_sessions(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<CustomerWriters>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let mut tx = state.db.begin_write().await?;
    load(&mut tx, &project, &id).await?;
    let ended = sessions::end_all(&mut tx, &project, &id, "operator", &principal.actor()).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(Json(json!({ "sessions_ended": ended })))
}
