//! Console sessions: a random token in an HttpOnly cookie, kept here only as its SHA-256,
//! with the session's CSRF token beside it. Sessions end after `SESSION_TTL_MS`, after
//! `IDLE_MS` without a request, on sign-out, or when the operator is disabled.

use sqlx::Row;
use subtle::ConstantTimeEq;

use super::Operator;
use crate::customers::sessions::{random_secret, secret_hash};
use crate::db::Database;
use crate::time::now_millis;

pub(crate) const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
const IDLE_MS: i64 = 2 * 3600 * 1000;
/// `last_seen_at` is written at most this often, so reading pages does not write each time.
const SEEN_RESOLUTION_MS: i64 = 60 * 1000;

/// A signed-in operator and the CSRF token their forms must carry.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) operator: Operator,
    pub(crate) csrf: String,
    token_hash: String,
}

impl Session {
    /// Whether `sent` is this session's CSRF token (compared in constant time).
    pub(crate) fn csrf_matches(&self, sent: &str) -> bool {
        !sent.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(sent.as_bytes()))
    }
}

/// Starts a session for `operator` (audited as `operators.sign_in`); returns the cookie's token.
pub(crate) async fn start(db: &Database, operator: &Operator) -> Result<String, sqlx::Error> {
    let token = random_secret("");
    let now = now_millis().0;
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO operator_sessions (token_hash, operator_id, csrf, created_at, expires_at, last_seen_at)
         VALUES ($1, $2, $3, $4, $5, $4)",
    )
    .bind(secret_hash(&token))
    .bind(&operator.id)
    .bind(random_secret(""))
    .bind(now)
    .bind(now + SESSION_TTL_MS)
    .execute(&mut *tx)
    .await?;
    let actor = operator.actor();
    crate::audit::record::<Operator>(&mut tx, &actor, "operators.sign_in", "operator", &operator.id, None, None)
        .await?;
    tx.commit().await?;
    Ok(token)
}

/// The live session `token` names, if any.
pub(crate) async fn find(db: &Database, token: &str) -> Result<Option<Session>, sqlx::Error> {
    let token_hash = secret_hash(token);
    let row = sqlx::query("SELECT * FROM operator_sessions WHERE token_hash = $1")
        .bind(&token_hash)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let now = now_millis().0;
    let last_seen: i64 = row.try_get("last_seen_at")?;
    if row.try_get::<i64, _>("expires_at")? <= now || now - last_seen >= IDLE_MS {
        end(db, token).await?;
        return Ok(None);
    }
    let operator_id: String = row.try_get("operator_id")?;
    let Some(operator) = super::find(db, &operator_id).await?.filter(|op| op.disabled_at.is_none()) else {
        return Ok(None);
    };
    if now - last_seen >= SEEN_RESOLUTION_MS {
        sqlx::query("UPDATE operator_sessions SET last_seen_at = $1 WHERE token_hash = $2")
            .bind(now)
            .bind(&token_hash)
            .execute(db.pool())
            .await?;
    }
    Ok(Some(Session { operator, csrf: row.try_get("csrf")?, token_hash }))
}

/// Ends the session `token` names (signing out); ending an unknown one does nothing.
pub(crate) async fn end(db: &Database, token: &str) -> Result<(), sqlx::Error> {
    end_hashed(db, &secret_hash(token)).await
}

pub(crate) async fn end_session(db: &Database, session: &Session) -> Result<(), sqlx::Error> {
    end_hashed(db, &session.token_hash).await
}

async fn end_hashed(db: &Database, token_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM operator_sessions WHERE token_hash = $1").bind(token_hash).execute(db.pool()).await?;
    Ok(())
}
