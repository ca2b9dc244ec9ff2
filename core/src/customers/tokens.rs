//! Single-use, expiring tokens for email verification and password reset.
//!
//! A token is 256 random bits; only its SHA-256 is stored. Issuing one writes a
//! notification (`customer.verification_requested`, `customer.password_reset_requested`)
//! in the same transaction, for the delivery channel to send: the token travels there and
//! nowhere else (it is never logged, and `GET /v1/notifications` shows it only to keys that
//! may change customers). Using a token is a conditional UPDATE, so it works once.

use serde_json::json;

use super::Customer;
use super::sessions::{random_secret, secret_hash};
use crate::error::ApiError;
use crate::time::{Millis, now_millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    VerifyEmail,
    ResetPassword,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::ResetPassword => "reset_password",
        }
    }

    fn notification(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "customer.verification_requested",
            Purpose::ResetPassword => "customer.password_reset_requested",
        }
    }

    fn ttl_ms(self) -> i64 {
        match self {
            Purpose::VerifyEmail => 24 * 60 * 60_000,
            Purpose::ResetPassword => 60 * 60_000,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "vev_",
            Purpose::ResetPassword => "vpr_",
        }
    }
}

/// Issues a token for `customer` and the notification that delivers it, inside `tx`.
pub(crate) async fn issue(tx: &mut sqlx::AnyConnection, customer: &Customer, purpose: Purpose) -> Result<(), ApiError> {
    let token = random_secret(purpose.prefix());
    let now = now_millis().0;
    let expires_at = now + purpose.ttl_ms();
    sqlx::query(
        "INSERT INTO customer_tokens (token_hash, purpose, project, customer_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(secret_hash(&token))
    .bind(purpose.as_str())
    .bind(&customer.project)
    .bind(&customer.id)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    let data = json!({
        "project": customer.project,
        "customer_id": customer.id,
        "email": customer.email,
        "token": token,
        "expires_at": Millis(expires_at).to_string(),
    });
    crate::notifications::notify(tx, purpose.notification(), &customer.id, &data).await?;
    Ok(())
}

/// Uses a token once: the customer it was issued to, or a 400 that does not say whether
/// the token never existed, expired or was used.
pub(crate) async fn consume(
    tx: &mut sqlx::AnyConnection,
    project: &str,
    purpose: Purpose,
    token: &str,
) -> Result<String, ApiError> {
    let now = now_millis().0;
    let customer_id: Option<String> = sqlx::query_scalar(
        "UPDATE customer_tokens SET used_at = $1
         WHERE token_hash = $2 AND purpose = $3 AND project = $4 AND used_at IS NULL AND expires_at > $1
         RETURNING customer_id",
    )
    .bind(now)
    .bind(secret_hash(token))
    .bind(purpose.as_str())
    .bind(project)
    .fetch_optional(&mut *tx)
    .await?;
    customer_id.ok_or_else(|| {
        ApiError::bad_request("token_invalid", "the token is unknown, expired or already used; request a new one")
    })
}
