//! Alert rules: each policy with an `alert` is looked at every interval (a minute by
//! default) over its last `minutes` complete minutes of statistics. When every one of them
//! had more than `denied_percent` denials (would-be denials for a shadow policy), the
//! alert fires: a `ratelimit.alert.firing` notification; when the condition no longer
//! holds, `ratelimit.alert.resolved`.
//!
//! Every replica evaluates; the one whose conditional update moves the policy's row in
//! `ratelimit_alerts` writes the notification in the same transaction, so an alert fires
//! once per episode however many replicas there are, and never without its notification.

use std::time::Duration;

use serde_json::json;
use verge_shared::ratelimit::{Alert, Mode, Policy};

use super::Stored;
use super::stats::{self, MINUTE_MS};
use crate::cache::Cache;
use crate::db::Database;
use crate::time::Millis;

/// What the rule saw over its minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    firing: bool,
    denied: u64,
    decided: u64,
}

/// Looks at `policy`'s last complete minutes before `now_ms`.
async fn look(cache: &Cache, policy: &Policy, alert: Alert, now_ms: i64) -> Result<Seen, crate::cache::CacheError> {
    let current = now_ms.div_euclid(MINUTE_MS);
    let mut seen = Seen { firing: true, denied: 0, decided: 0 };
    for minute in current - i64::from(alert.minutes)..current {
        let counts = stats::minute_counts(cache, &policy.id, minute).await?;
        let denied = if policy.mode == Mode::Shadow { counts.shadow_denied } else { counts.denied };
        let decided = counts.allowed + counts.denied + counts.shadow_denied;
        seen.firing &= alert.over(denied, decided);
        seen.denied += denied;
        seen.decided += decided;
    }
    Ok(seen)
}

/// Evaluates every alert rule once, as of `now_ms`; returns how many changed state here.
pub(crate) async fn evaluate(db: &Database, cache: &Cache, now_ms: i64) -> Result<usize, anyhow::Error> {
    // Policies are few (hundreds); reading them all keeps the rule in one place.
    let rows = sqlx::query("SELECT * FROM ratelimit_policies").fetch_all(db.pool()).await?;
    let mut changed = 0;
    for row in &rows {
        let stored = Stored::from_row(row)?;
        let Some(alert) = stored.policy.alert else { continue };
        let seen = look(cache, &stored.policy, alert, now_ms).await?;
        if transition(db, &stored.policy, alert, seen, now_ms).await? {
            changed += 1;
        }
    }
    Ok(changed)
}

/// Moves the policy's alert to `seen.firing` if it is not there, with its notification.
async fn transition(
    db: &Database,
    policy: &Policy,
    alert: Alert,
    seen: Seen,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO ratelimit_alerts (policy_id, firing, changed_at) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING",
    )
    .bind(&policy.id)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    let firing = i32::from(seen.firing);
    let moved =
        sqlx::query("UPDATE ratelimit_alerts SET firing = $1, changed_at = $2 WHERE policy_id = $3 AND firing <> $1")
            .bind(firing)
            .bind(now_ms)
            .bind(&policy.id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
    if moved {
        let kind = if seen.firing { "ratelimit.alert.firing" } else { "ratelimit.alert.resolved" };
        let current = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let share = if seen.decided == 0 { 0.0 } else { seen.denied as f64 * 100.0 / seen.decided as f64 };
        let data = json!({
            "policy": policy.id,
            "name": policy.name,
            "domain": policy.domain,
            "mode": if policy.mode == Mode::Shadow { "shadow" } else { "enforce" },
            "rule": {"denied_percent": alert.denied_percent, "minutes": alert.minutes},
            "from": Millis(current - i64::from(alert.minutes) * MINUTE_MS),
            "to": Millis(current),
            "denied": seen.denied,
            "decided": seen.decided,
            "denied_percent": (share * 10.0).round() / 10.0,
        });
        crate::notifications::notify(&mut tx, kind, &policy.id, &data).await?;
    }
    tx.commit().await?;
    Ok(moved)
}

/// Forgets a deleted policy's alert state, in the deleting transaction.
pub(crate) async fn forget(conn: &mut sqlx::AnyConnection, policy_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM ratelimit_alerts WHERE policy_id = $1").bind(policy_id).execute(&mut *conn).await?;
    Ok(())
}

/// Evaluates the rules every `interval` until `stop`, just after the tally has moved the
/// last second's counts into the store.
pub(crate) async fn run(
    db: Database,
    cache: Cache,
    tally: crate::tally::Tally,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {
                tally.flush().await;
                if let Err(err) = evaluate(&db, &cache, crate::time::now_millis().0).await {
                    tracing::warn!(error = %err, "evaluating rate-limit alert rules");
                }
            }
        }
    }
}
