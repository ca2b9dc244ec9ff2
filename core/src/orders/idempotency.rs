//! Idempotency keys for POSTs that create something (draft-ietf-httpapi-idempotency-key-
//! header): a client that lost a response sends the request again with the same
//! `Idempotency-Key` and gets the first response, not a second order.
//!
//! - no key: 400 `idempotency_key_missing`; the same key with a different body: 422
//!   `idempotency_key_reused`; the same key while the first request runs: 409
//!   `idempotency_key_in_use`; otherwise the first response, replayed with
//!   `Idempotent-Replayed: true`.
//! - The key is claimed in its own commit, and its response is stored in the transaction
//!   that does the work, so an acknowledged response is always the one replayed. A request
//!   refused before doing anything (a validation error) frees its key, as Stripe does, so
//!   the corrected request may reuse it. A claim whose request died with its process is
//!   taken over after [`LOCK_MS`] (10 s).
//! - Keys are kept for [`KEY_TTL_MS`] (24 hours), then forgotten.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::db::Database;
use crate::error::ApiError;
use crate::time::now_millis;

pub(crate) const KEY_TTL_MS: i64 = 24 * 3600 * 1000;
/// How long a claimed key stays locked to the request that claimed it; a request still
/// running after it cannot store its response (see [`Claim::finish`]), so a shorter lock
/// only makes a retry after a crash wait less.
pub(crate) const LOCK_MS: i64 = 10_000;
const MAX_KEY_LEN: usize = 255;

/// A key this request holds: finish it with the response, or abandon it.
#[derive(Debug)]
pub(crate) struct Claim {
    owner: String,
    key: String,
    /// The lock's end as this request set it: the claim's token. A request whose claim
    /// was taken over (it outlived its lock) cannot store its response, so it rolls back.
    locked_until: i64,
}

pub(crate) enum Begun {
    Fresh(Claim),
    /// The first response to this key.
    Replay(Response),
}

/// The header's key: a structured-field string (`"…"`) or, leniently, a bare token.
fn key_from(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Err(ApiError::bad_request(
            "idempotency_key_missing",
            "send an `Idempotency-Key` header (a unique string per order, such as a UUID) so a retried request cannot order twice",
        ));
    };
    let text = value.to_str().unwrap_or_default().trim();
    let key = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"') {
        return Err(ApiError::bad_request(
            "idempotency_key_invalid",
            format!("`Idempotency-Key` must be 1–{MAX_KEY_LEN} visible ASCII characters"),
        ));
    }
    Ok(key.to_owned())
}

/// The request's fingerprint: its route and its JSON body with keys in sorted order, so
/// the same document sent again matches however its keys are ordered.
pub(crate) fn fingerprint(route: &str, body: &serde_json::Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(body.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

/// Fingerprint, state, stored status and response, lock and expiry of a key.
type StoredKey = (String, String, Option<i64>, Option<String>, i64, i64);

/// Claims the request's key for `owner` (a key id, a customer), or answers what a repeat
/// of it gets.
pub(crate) async fn begin(
    db: &Database,
    headers: &HeaderMap,
    owner: &str,
    fingerprint: &str,
) -> Result<Begun, ApiError> {
    let key = key_from(headers)?;
    for _ in 0..3 {
        let now = now_millis().0;
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (owner, idem_key, fingerprint, state, locked_until, created_at, expires_at)
             VALUES ($1, $2, $3, 'running', $4, $5, $6) ON CONFLICT (owner, idem_key) DO NOTHING",
        )
        .bind(owner)
        .bind(&key)
        .bind(fingerprint)
        .bind(now + LOCK_MS)
        .bind(now)
        .bind(now + KEY_TTL_MS)
        .execute(db.pool())
        .await?;
        if claimed.rows_affected() == 1 {
            return Ok(Begun::Fresh(Claim { owner: owner.to_owned(), key, locked_until: now + LOCK_MS }));
        }
        let row: Option<StoredKey> = sqlx::query_as(
            "SELECT fingerprint, state, status, response, locked_until, expires_at FROM idempotency_keys
             WHERE owner = $1 AND idem_key = $2",
        )
        .bind(owner)
        .bind(&key)
        .fetch_optional(db.pool())
        .await?;
        let Some((stored, state, status, response, locked_until, expires_at)) = row else {
            continue; // expired and deleted between the two statements
        };
        if expires_at <= now {
            sqlx::query("DELETE FROM idempotency_keys WHERE owner = $1 AND idem_key = $2 AND expires_at = $3")
                .bind(owner)
                .bind(&key)
                .bind(expires_at)
                .execute(db.pool())
                .await?;
            continue;
        }
        if stored != fingerprint {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this `Idempotency-Key` was used with a different request; use a new key for a new order",
            ));
        }
        if state == "done" {
            let status = status.and_then(|s| StatusCode::from_u16(s as u16).ok()).unwrap_or(StatusCode::OK);
            let mut reply = (status, response.unwrap_or_default()).into_response();
            let headers = reply.headers_mut();
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(Begun::Replay(reply));
        }
        if locked_until > now {
            return Err(ApiError::conflict(
                "idempotency_key_in_use",
                "a request with this `Idempotency-Key` is still being processed; retry shortly",
            ));
        }
        // The first request's process died before finishing: take its claim over.
        let taken = sqlx::query(
            "UPDATE idempotency_keys SET locked_until = $1 WHERE owner = $2 AND idem_key = $3 AND state = 'running' AND locked_until = $4",
        )
        .bind(now + LOCK_MS)
        .bind(owner)
        .bind(&key)
        .bind(locked_until)
        .execute(db.pool())
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(Begun::Fresh(Claim { owner: owner.to_owned(), key, locked_until: now + LOCK_MS }));
        }
    }
    Err(ApiError::conflict("idempotency_key_in_use", "this `Idempotency-Key` is contended; retry shortly"))
}

impl Claim {
    /// Stores the response in the transaction that did the work; a 409 (roll back) when
    /// the claim was taken over meanwhile.
    pub(crate) async fn finish(
        &self,
        conn: &mut sqlx::AnyConnection,
        status: StatusCode,
        body: &str,
    ) -> Result<(), ApiError> {
        let stored = sqlx::query(
            "UPDATE idempotency_keys SET state = 'done', status = $1, response = $2
             WHERE owner = $3 AND idem_key = $4 AND state = 'running' AND locked_until = $5",
        )
        .bind(i64::from(status.as_u16()))
        .bind(body)
        .bind(&self.owner)
        .bind(&self.key)
        .bind(self.locked_until)
        .execute(&mut *conn)
        .await?;
        if stored.rows_affected() != 1 {
            return Err(ApiError::conflict(
                "idempotency_key_in_use",
                "this request outlived its hold on the `Idempotency-Key` and another took it over; retry to get that one's answer",
            ));
        }
        Ok(())
    }

    /// Frees the key of a request refused before it did anything (if it still holds it).
    pub(crate) async fn abandon(self, db: &Database) {
        let freed = sqlx::query(
            "DELETE FROM idempotency_keys WHERE owner = $1 AND idem_key = $2 AND state = 'running' AND locked_until = $3",
        )
        .bind(&self.owner)
        .bind(&self.key)
        .bind(self.locked_until)
        .execute(db.pool())
        .await;
        if let Err(err) = freed {
            tracing::warn!(error = %err, "freeing an idempotency key failed; it unlocks by itself");
        }
    }
}

/// Forgets keys past their time; run by the order sweep job.
pub(crate) async fn sweep(db: &Database) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
        .bind(now_millis().0)
        .execute(db.pool())
        .await?;
    Ok(deleted.rows_affected())
}
