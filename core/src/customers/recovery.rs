//! Email verification and password reset: the public routes that issue and use the
//! single-use tokens of `tokens`. A reset proves the address too, and ends every session.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::SignedIn;
use super::device::Client;
use super::tokens::{self, Purpose};
use super::{Customer, check_email, check_project, fold_email, password, sessions, throttle};
use crate::audit::Actor;
use crate::error::{ApiError, ApiJson, Problem};
use crate::state::AppState;
use crate::time::now_millis;

/// Ask for another verification email for the signed-in customer.
#[utoipa::path(
    post, path = "/auth/{project}/verification", tag = "sessions",
    params(("project" = String, Path)),
    security(("customer_token" = [])),
    responses((status = 202, description = "A `customer.verification_requested` notification carries the token"),
              (status = 401, body = Problem), (status = 409, description = "Already verified", body = Problem),
              (status = 429, description = "Over 3 requests an hour for this customer", body = Problem))
)]
pub(crate) async fn request_verification(State(state): State<AppState>, who: SignedIn) -> Result<StatusCode, ApiError> {
    throttle::spend(&state, "verification_throttled", &[(format!("verify:{}", who.customer_id), 3)]).await?;
    let mut tx = state.db.begin_write().await?;
    let (customer, _) = super::load(&mut tx, &who.project, &who.customer_id).await?;
    if customer.email_verified {
        return Err(ApiError::conflict("already_verified", "the email address is already verified"));
    }
    tokens::issue(&mut tx, &customer, Purpose::VerifyEmail).await?;
    tx.commit().await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    /// The token from the notification (`vev_…` or `vpr_…`).
    token: String,
}

/// Verify an email address with the token sent to it.
#[utoipa::path(
    post, path = "/auth/{project}/verify-email", tag = "sessions",
    params(("project" = String, Path)), request_body = TokenBody,
    responses((status = 204, description = "Verified"), (status = 400, description = "Unknown, expired or used token", body = Problem))
)]
pub(crate) async fn verify_email(
    State(state): State<AppState>,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<StatusCode, ApiError> {
    check_project(&project)?;
    let mut tx = state.db.begin_write().await?;
    let customer_id = tokens::consume(&mut tx, &project, Purpose::VerifyEmail, &body.token).await?;
    let now = now_millis().0;
    sqlx::query(
        "UPDATE customers SET email_verified_at = $1, updated_at = $1 WHERE id = $2 AND email_verified_at IS NULL",
    )
    .bind(now)
    .bind(&customer_id)
    .execute(&mut *tx)
    .await?;
    crate::audit::record::<Value>(
        &mut tx,
        &Actor::Customer(customer_id.clone()),
        "customer.email_verified",
        "customer",
        &customer_id,
        None,
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetRequest {
    email: String,
}

/// Ask for a password reset; answers 202 whether or not the email has an account.
#[utoipa::path(
    post, path = "/auth/{project}/password-reset/request", tag = "sessions",
    params(("project" = String, Path)), request_body = ResetRequest,
    responses(
        (status = 202, description = "A `customer.password_reset_requested` notification carries the token, if the account exists"),
        (status = 422, description = "Not an email address", body = Problem),
        (status = 429, description = "Over 3 requests an hour for this email, or 20 from this address", body = Problem),
    )
)]
pub(crate) async fn request_password_reset(
    State(state): State<AppState>,
    Path(project): Path<String>,
    client: Client,
    ApiJson(body): ApiJson<ResetRequest>,
) -> Result<StatusCode, ApiError> {
    check_project(&project)?;
    check_email(&body.email, "/email")?;
    // Counted whether or not the email has an account, so a 429 tells nothing; it keeps
    // the route from flooding someone's inbox.
    let account = throttle::per_account("reset", &project, &body.email, 3);
    throttle::spend(&state, "reset_throttled", &[account, throttle::per_address("reset", &client, 20)]).await?;
    let mut tx = state.db.begin_write().await?;
    let row = sqlx::query("SELECT * FROM customers WHERE project = $1 AND email_folded = $2")
        .bind(&project)
        .bind(fold_email(&body.email))
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(row) = row {
        tokens::issue(&mut tx, &Customer::from_row(&row)?, Purpose::ResetPassword).await?;
    }
    tx.commit().await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reset {
    token: String,
    password: String,
}

/// Set a new password with a reset token; every session ends.
#[utoipa::path(
    post, path = "/auth/{project}/password-reset", tag = "sessions",
    params(("project" = String, Path)), request_body = Reset,
    responses(
        (status = 204, description = "Password changed; every session ended"),
        (status = 400, description = "Unknown, expired or used token", body = Problem),
        (status = 422, description = "Password refused, with the reason", body = Problem),
    )
)]
pub(crate) async fn reset_password(
    State(state): State<AppState>,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<Reset>,
) -> Result<StatusCode, ApiError> {
    check_project(&project)?;
    let mut tx = state.db.begin_write().await?;
    let customer_id = tokens::consume(&mut tx, &project, Purpose::ResetPassword, &body.token).await?;
    let (customer, _) = super::load(&mut tx, &project, &customer_id).await?;
    password::check(&body.password, &customer.email, "/password")?;
    let hash = password::hash(body.password).await?;
    let now = now_millis().0;
    // Receiving the reset email proves the address too.
    sqlx::query(
        "UPDATE customers SET password_hash = $1, updated_at = $2, email_verified_at = COALESCE(email_verified_at, $2)
         WHERE id = $3",
    )
    .bind(hash)
    .bind(now)
    .bind(&customer_id)
    .execute(&mut *tx)
    .await?;
    let actor = Actor::Customer(customer_id.clone());
    crate::audit::record::<Value>(&mut tx, &actor, "customer.password_reset", "customer", &customer_id, None, None)
        .await?;
    sessions::end_all(&mut tx, &project, &customer_id, "password_reset", &actor).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(StatusCode::NO_CONTENT)
}
