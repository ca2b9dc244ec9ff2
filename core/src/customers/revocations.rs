//! What the edge must refuse before access tokens expire on their own, published as one
//! small KV record each (`sess/r/s/<session>`, `sess/r/c/<project>/<customer>`), so the
//! edge reads two keys per token and never a list.
//!
//! A record is kept until every token it could refuse has expired (its `keep_until`: the
//! revocation plus the longest access-token lifetime plus clock leeway); after that the
//! tokens fail on their own expiry and the record is dropped from KV.

use sqlx::Row;
use verge_shared::sessions::{
    LEEWAY_MS, REVOCATIONS_PREFIX, customer_revocation_key, encode_revocation, session_revocation_key,
};

use crate::db::Database;
use crate::publish::{DatasetContent, DatasetSource, KeyedValue, enqueue};
use crate::time::now_millis;

/// Access tokens live at most an hour (settings bound them), so a record kept this long
/// after it was made outlives every token it refuses.
const KEEP_FOR_MS: i64 = 60 * 60_000 + 2 * LEEWAY_MS;

async fn put(conn: &mut sqlx::AnyConnection, kv_key: &str, at: i64) -> Result<(), sqlx::Error> {
    // A customer's valid-after time only moves forward.
    sqlx::query(
        "INSERT INTO session_revocations (kv_key, at, keep_until) VALUES ($1, $2, $3)
         ON CONFLICT (kv_key) DO UPDATE SET
           at = CASE WHEN excluded.at > session_revocations.at THEN excluded.at ELSE session_revocations.at END,
           keep_until = excluded.keep_until",
    )
    .bind(kv_key)
    .bind(at)
    .bind(at + KEEP_FOR_MS)
    .execute(&mut *conn)
    .await?;
    enqueue(conn, kv_key).await
}

/// Refuses every token of `session_id` at the edge, inside the caller's transaction.
pub(crate) async fn revoke_session(
    conn: &mut sqlx::AnyConnection,
    session_id: &str,
    at: i64,
) -> Result<(), sqlx::Error> {
    put(conn, &session_revocation_key(session_id), at).await
}

/// Refuses every token of a customer issued before `at` (sign out everywhere, password
/// reset, erasure), inside the caller's transaction.
pub(crate) async fn void_before(
    conn: &mut sqlx::AnyConnection,
    project: &str,
    customer_id: &str,
    at: i64,
) -> Result<(), sqlx::Error> {
    put(conn, &customer_revocation_key(project, customer_id), at).await
}

/// The keyed records under `sess/r/`.
#[derive(Debug)]
pub(crate) struct RevocationsSource;

#[async_trait::async_trait]
impl DatasetSource for RevocationsSource {
    async fn build(&self, _db: &Database) -> Result<Vec<DatasetContent>, sqlx::Error> {
        Ok(Vec::new())
    }

    fn keyed_prefix(&self) -> Option<&'static str> {
        Some(REVOCATIONS_PREFIX)
    }

    async fn keyed_values(&self, db: &Database, keys: &[String]) -> Result<Vec<KeyedValue>, sqlx::Error> {
        let now = now_millis().0;
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            let row = sqlx::query("SELECT at, keep_until FROM session_revocations WHERE kv_key = $1")
                .bind(key)
                .fetch_optional(db.pool())
                .await?;
            let value = match row {
                Some(row) if row.try_get::<i64, _>("keep_until")? > now => Some(encode_revocation(row.try_get("at")?)),
                _ => None,
            };
            values.push((key.clone(), value));
        }
        Ok(values)
    }

    async fn keyed_all(&self, db: &Database) -> Result<Vec<(String, Vec<u8>)>, sqlx::Error> {
        let rows = sqlx::query("SELECT kv_key, at FROM session_revocations WHERE keep_until > $1")
            .bind(now_millis().0)
            .fetch_all(db.pool())
            .await?;
        rows.iter().map(|row| Ok((row.try_get("kv_key")?, encode_revocation(row.try_get("at")?)))).collect()
    }
}

/// Sweeps expired records every minute until `stop`.
pub(crate) async fn run_sweeper(
    db: Database,
    publisher: std::sync::Arc<crate::publish::Publisher>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => match sweep(&db).await {
                Ok(0) => {}
                Ok(_) => publisher.wake(),
                Err(err) => tracing::warn!(error = %err, "sweeping expired session revocations"),
            },
        }
    }
}

/// Drops records whose tokens have all expired, and asks the publisher to delete them from
/// KV.
async fn sweep(db: &Database) -> Result<usize, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let now = now_millis().0;
    let expired: Vec<String> =
        sqlx::query_scalar("SELECT kv_key FROM session_revocations WHERE keep_until <= $1 LIMIT 1000")
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
    for key in &expired {
        sqlx::query("DELETE FROM session_revocations WHERE kv_key = $1").bind(key).execute(&mut *tx).await?;
        enqueue(&mut tx, key).await?;
    }
    tx.commit().await?;
    Ok(expired.len())
}
