//! The order saga, each step a job: `order.reserve` → `order.authorize` → `order.confirm`,
//! then `order.capture` when the order is fulfilled; `order.compensate` undoes what a
//! failed or cancelled order holds (releases or restocks its stock, voids its
//! authorisation), and `order.refund` pays back a refund an operator asked for.
//!
//! Every step reads the order's state and does only what is still to do, so a step run
//! twice (after a crash between its effect and its completion) changes nothing the second
//! time. Database effects commit with the step's completion and the next step's job;
//! provider calls happen outside any transaction and carry keys derived from the order,
//! so the provider answers a repeated call as it answered the first.

use async_trait::async_trait;
use serde_json::json;

use super::payments::{Authorization, Charge, ProviderError};
use super::{OrderStatus, PaymentStatus, SagaView, lock, saga_view, timeline};
use crate::inventory::reservations::{End, Holder, Want, end_in, take};
use crate::jobs::{Handler, JobCtx, JobError, NewJob, Registry, enqueue};

pub(crate) const RESERVE: &str = "order.reserve";
pub(crate) const AUTHORIZE: &str = "order.authorize";
pub(crate) const CONFIRM: &str = "order.confirm";
pub(crate) const CAPTURE: &str = "order.capture";
pub(crate) const COMPENSATE: &str = "order.compensate";
pub(crate) const REFUND: &str = "order.refund";
pub(crate) const SWEEP: &str = "orders.sweep";
const SYSTEM: &str = "system";
/// How long an order's stock is held for it before it is confirmed: long enough to ride
/// out a payment provider's outage.
const HOLD_MS: i64 = 24 * 3600 * 1000;

/// Adds the saga's kinds to the registry.
pub(crate) fn register(registry: Registry) -> Registry {
    [RESERVE, AUTHORIZE, CONFIRM, CAPTURE, COMPENSATE, REFUND, SWEEP]
        .into_iter()
        .fold(registry, |registry, kind| registry.with(kind, Saga))
}

/// How long one step may run: longer than a provider call may take (10 s), short enough
/// that a step whose core died is taken up again within about 18 s (its lease).
const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

fn step(kind: &str, order_id: &str) -> NewJob {
    let job = NewJob::new(kind, json!({ "order_id": order_id })).timeout(STEP_TIMEOUT);
    match kind {
        // Calls out: many patient attempts (an open breaker defers without using any).
        AUTHORIZE | CAPTURE | REFUND => job.max_attempts(20).priority(1),
        _ => job.priority(2),
    }
}

/// Enqueues the saga's first step for a new order, in its transaction.
pub(crate) async fn start(conn: &mut sqlx::AnyConnection, order_id: &str) -> Result<(), sqlx::Error> {
    enqueue(conn, step(RESERVE, order_id).unique(format!("{RESERVE}:{order_id}"))).await.map(drop)
}

/// Enqueues `kind` for the order, once per order for forward steps.
pub(crate) async fn then(conn: &mut sqlx::AnyConnection, kind: &str, order_id: &str) -> Result<(), sqlx::Error> {
    let job = step(kind, order_id);
    // Compensation may be needed more than once (a cancel, then a late authorisation);
    // it is idempotent, so it is not unique.
    let job = if kind == COMPENSATE { job } else { job.unique(format!("{kind}:{order_id}")) };
    enqueue(conn, job).await.map(drop)
}

/// Enqueues the refund `refund_id` of the order.
pub(crate) async fn refund(conn: &mut sqlx::AnyConnection, order_id: &str, refund_id: &str) -> Result<(), sqlx::Error> {
    let job = NewJob::new(REFUND, json!({ "order_id": order_id, "refund_id": refund_id }))
        .max_attempts(20)
        .timeout(STEP_TIMEOUT);
    enqueue(conn, job.unique(format!("{REFUND}:{refund_id}"))).await.map(drop)
}

/// Makes sure the hourly sweep of expired idempotency keys is scheduled.
pub(crate) async fn schedule_sweep(db: &crate::db::Database) -> Result<(), sqlx::Error> {
    let hour = crate::time::now_millis().0 / 3_600_000;
    let mut conn = db.pool().acquire().await?;
    let job = NewJob::new(SWEEP, json!({})).run_at((hour + 1) * 3_600_000).unique(format!("{SWEEP}:{}", hour + 1));
    enqueue(&mut conn, job).await.map(drop)
}

struct Saga;

#[async_trait]
impl Handler for Saga {
    async fn run(&self, job: &JobCtx) -> Result<(), JobError> {
        if job.kind == SWEEP {
            let forgotten = super::idempotency::sweep(&job.state.db).await?;
            tracing::debug!(forgotten, "expired idempotency keys forgotten");
            return schedule_sweep(&job.state.db).await.map_err(JobError::from);
        }
        let order_id = job.payload["order_id"].as_str().ok_or_else(|| JobError::Fatal("no order_id".into()))?;
        let outcome = match job.kind.as_str() {
            RESERVE => reserve(job, order_id).await,
            AUTHORIZE => authorize(job, order_id).await,
            CONFIRM => confirm(job, order_id).await,
            CAPTURE => capture(job, order_id).await,
            COMPENSATE => compensate(job, order_id).await,
            REFUND => {
                let refund_id =
                    job.payload["refund_id"].as_str().ok_or_else(|| JobError::Fatal("no refund_id".into()))?;
                pay_refund(job, order_id, refund_id).await
            }
            other => Err(JobError::Fatal(format!("not a saga step: {other}"))),
        };
        if outcome.is_ok() {
            crate::jobs::wake(&job.state);
            timeline::notify(&job.state, order_id);
        }
        outcome
    }
}

/// Opens the step's transaction with the order locked, and reads it.
async fn begin(job: &JobCtx, order_id: &str) -> Result<(sqlx::Transaction<'static, sqlx::Any>, SagaView), JobError> {
    let mut tx = job.state.db.begin_write().await?;
    if !lock(&mut tx, job.state.db.dialect(), order_id).await? {
        return Err(JobError::Fatal(format!("no order `{order_id}`")));
    }
    let order = saga_view(&mut tx, order_id).await?.ok_or_else(|| JobError::Fatal(format!("no order `{order_id}`")))?;
    Ok((tx, order))
}

async fn finish(job: &JobCtx, mut tx: sqlx::Transaction<'static, sqlx::Any>) -> Result<(), JobError> {
    job.complete_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Moves the order from `from` to `to` (conditional), with a failure's code and detail.
async fn move_order(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    from: OrderStatus,
    to: OrderStatus,
    failure: Option<(&str, &str)>,
) -> Result<bool, sqlx::Error> {
    debug_assert!(from.next().contains(&to));
    let moved = sqlx::query(
        "UPDATE orders SET status = $1, failure_code = COALESCE($2, failure_code), failure_detail = COALESCE($3, failure_detail),
                updated_at = $4 WHERE id = $5 AND status = $6",
    )
    .bind(to.as_str())
    .bind(failure.map(|f| f.0))
    .bind(failure.map(|f| f.1))
    .bind(crate::time::now_millis().0)
    .bind(id)
    .bind(from.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(moved.rows_affected() == 1)
}

async fn move_payment(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    from: PaymentStatus,
    to: PaymentStatus,
) -> Result<bool, sqlx::Error> {
    debug_assert!(from.next().contains(&to));
    let moved =
        sqlx::query("UPDATE orders SET payment_status = $1, updated_at = $2 WHERE id = $3 AND payment_status = $4")
            .bind(to.as_str())
            .bind(crate::time::now_millis().0)
            .bind(id)
            .bind(from.as_str())
            .execute(&mut *conn)
            .await?;
    Ok(moved.rows_affected() == 1)
}

/// Fails a pending order for `code`, and schedules the release of what it holds.
async fn fail(conn: &mut sqlx::AnyConnection, id: &str, code: &str, detail: &str) -> Result<(), sqlx::Error> {
    if move_order(conn, id, OrderStatus::Pending, OrderStatus::Failed, Some((code, detail))).await? {
        timeline::record(conn, id, "order.failed", SYSTEM, json!({ "code": code, "detail": detail })).await?;
        then(conn, COMPENSATE, id).await?;
    }
    Ok(())
}

async fn reserve(job: &JobCtx, id: &str) -> Result<(), JobError> {
    let (mut tx, order) = begin(job, id).await?;
    if order.status == OrderStatus::Pending {
        if order.reservation_id.is_some() {
            then(&mut tx, AUTHORIZE, id).await?;
        } else {
            let wants: Vec<Want> = order
                .lines
                .iter()
                .enumerate()
                .map(|(line, (sku, quantity))| Want {
                    sku: sku.clone(),
                    location: None,
                    quantity: *quantity,
                    line,
                    handle: None,
                })
                .collect();
            let holder = Holder { reference: id, expires_at: crate::time::now_millis().0 + HOLD_MS, actor: SYSTEM };
            let dialect = job.state.db.dialect();
            match take(&mut tx, dialect, &holder, &wants, job.state.config.low_stock_threshold).await {
                Ok(reservation) => {
                    sqlx::query("UPDATE orders SET reservation_id = $1 WHERE id = $2")
                        .bind(&reservation)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    timeline::record(&mut tx, id, "stock.reserved", SYSTEM, json!({ "reservation_id": reservation }))
                        .await?;
                    then(&mut tx, AUTHORIZE, id).await?;
                }
                Err(refused) if refused.code() == "insufficient_stock" => {
                    fail(&mut tx, id, "insufficient_stock", refused.detail()).await?;
                }
                Err(other) => return Err(JobError::Retry(other.detail().to_owned())),
            }
        }
    }
    finish(job, tx).await?;
    job.state.publisher.wake();
    Ok(())
}

async fn authorize(job: &JobCtx, id: &str) -> Result<(), JobError> {
    let order = {
        let mut conn = job.state.db.pool().acquire().await?;
        saga_view(&mut conn, id).await?.ok_or_else(|| JobError::Fatal(format!("no order `{id}`")))?
    };
    let answer = if order.status == OrderStatus::Pending && order.payment_status == PaymentStatus::Pending {
        let key = format!("auth:{id}");
        let charge = Charge {
            idempotency_key: &key,
            order_id: id,
            amount: order.total,
            currency: &order.currency,
            method: &order.method,
        };
        Some(job.state.payments.authorize(&charge).await)
    } else {
        None
    };
    let (mut tx, order) = begin(job, id).await?;
    match answer {
        Some(Ok(Authorization::Authorized { reference })) if order.payment_status == PaymentStatus::Pending => {
            move_payment(&mut tx, id, PaymentStatus::Pending, PaymentStatus::Authorized).await?;
            sqlx::query("UPDATE orders SET payment_ref = $1 WHERE id = $2")
                .bind(&reference)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            timeline::record(&mut tx, id, "payment.authorized", SYSTEM, json!({ "amount": order.total })).await?;
        }
        // Recorded by an earlier attempt that died before completing.
        Some(Ok(Authorization::Authorized { .. })) => {}
        Some(Ok(Authorization::Declined { code, message })) => {
            move_payment(&mut tx, id, PaymentStatus::Pending, PaymentStatus::Failed).await?;
            timeline::record(&mut tx, id, "payment.failed", SYSTEM, json!({ "code": code })).await?;
            fail(&mut tx, id, &code, &message).await?;
        }
        Some(Err(ProviderError::BreakerOpen { retry_in })) => {
            return Err(JobError::Defer { after: retry_in, reason: "the payment provider's breaker is open".into() });
        }
        Some(Err(ProviderError::Unavailable(reason))) if job.attempt < job.max_attempts => {
            return Err(JobError::Retry(reason));
        }
        Some(Err(error)) => {
            move_payment(&mut tx, id, PaymentStatus::Pending, PaymentStatus::Failed).await?;
            timeline::record(&mut tx, id, "payment.failed", SYSTEM, json!({ "code": "payment_unavailable" })).await?;
            fail(&mut tx, id, "payment_unavailable", &error.to_string()).await?;
        }
        None => {}
    }
    let now = saga_view(&mut tx, id).await?.ok_or_else(|| JobError::Fatal(format!("no order `{id}`")))?;
    match (now.status, now.payment_status) {
        (OrderStatus::Pending, PaymentStatus::Authorized) => then(&mut tx, CONFIRM, id).await?,
        // Cancelled while the provider answered: give back what it holds.
        (OrderStatus::Cancelled, PaymentStatus::Authorized) => then(&mut tx, COMPENSATE, id).await?,
        _ => {}
    }
    finish(job, tx).await
}

async fn confirm(job: &JobCtx, id: &str) -> Result<(), JobError> {
    let (mut tx, order) = begin(job, id).await?;
    if order.status == OrderStatus::Pending && order.payment_status == PaymentStatus::Authorized {
        let reservation =
            order.reservation_id.as_deref().ok_or_else(|| JobError::Fatal("confirming without stock".into()))?;
        if end_in(&mut tx, reservation, End::Commit, job.state.config.low_stock_threshold).await? {
            move_order(&mut tx, id, OrderStatus::Pending, OrderStatus::Confirmed, None).await?;
            timeline::record(&mut tx, id, "order.confirmed", SYSTEM, json!({})).await?;
        } else {
            let detail = "the stock held for the order expired before payment was authorised";
            fail(&mut tx, id, "reservation_expired", detail).await?;
        }
    }
    finish(job, tx).await?;
    job.state.publisher.wake();
    Ok(())
}

/// The provider's answer as a job outcome: an open breaker defers, an outage retries, a
/// refusal is for an operator (the job dies and shows why).
fn provider_failure(error: ProviderError) -> JobError {
    match error {
        ProviderError::BreakerOpen { retry_in } => JobError::Defer { after: retry_in, reason: error.to_string() },
        ProviderError::Unavailable(reason) => JobError::Retry(reason),
        ProviderError::Rejected(reason) => JobError::Fatal(reason),
    }
}

async fn capture(job: &JobCtx, id: &str) -> Result<(), JobError> {
    let order = {
        let mut conn = job.state.db.pool().acquire().await?;
        saga_view(&mut conn, id).await?.ok_or_else(|| JobError::Fatal(format!("no order `{id}`")))?
    };
    if order.payment_status == PaymentStatus::Authorized {
        let reference =
            order.payment_ref.as_deref().ok_or_else(|| JobError::Fatal("authorised without a reference".into()))?;
        job.state.payments.capture(&format!("capture:{id}"), reference, order.total).await.map_err(provider_failure)?;
    }
    let (mut tx, order) = begin(job, id).await?;
    if move_payment(&mut tx, id, PaymentStatus::Authorized, PaymentStatus::Captured).await? {
        sqlx::query("UPDATE orders SET captured = total WHERE id = $1").bind(id).execute(&mut *tx).await?;
        timeline::record(&mut tx, id, "payment.captured", SYSTEM, json!({ "amount": order.total })).await?;
    }
    finish(job, tx).await
}

async fn compensate(job: &JobCtx, id: &str) -> Result<(), JobError> {
    let low_stock = job.state.config.low_stock_threshold;
    let order = {
        let mut conn = job.state.db.pool().acquire().await?;
        saga_view(&mut conn, id).await?.ok_or_else(|| JobError::Fatal(format!("no order `{id}`")))?
    };
    if !matches!(order.status, OrderStatus::Cancelled | OrderStatus::Failed) {
        return Ok(());
    }
    if order.payment_status == PaymentStatus::Authorized {
        let reference =
            order.payment_ref.as_deref().ok_or_else(|| JobError::Fatal("authorised without a reference".into()))?;
        job.state.payments.void(&format!("void:{id}"), reference).await.map_err(provider_failure)?;
    }
    let (mut tx, _) = begin(job, id).await?;
    if move_payment(&mut tx, id, PaymentStatus::Authorized, PaymentStatus::Voided).await? {
        timeline::record(&mut tx, id, "payment.voided", SYSTEM, json!({})).await?;
    }
    if let Some(reservation) = &order.reservation_id {
        if end_in(&mut tx, reservation, End::Release, low_stock).await? {
            timeline::record(&mut tx, id, "stock.released", SYSTEM, json!({ "reservation_id": reservation })).await?;
        } else if end_in(&mut tx, reservation, End::Restock, low_stock).await? {
            timeline::record(&mut tx, id, "stock.restocked", SYSTEM, json!({ "reservation_id": reservation })).await?;
        }
    }
    finish(job, tx).await?;
    job.state.publisher.wake();
    Ok(())
}

async fn pay_refund(job: &JobCtx, id: &str, refund_id: &str) -> Result<(), JobError> {
    let (status, amount): (String, i64) = {
        let row = sqlx::query_as("SELECT status, amount FROM order_refunds WHERE id = $1 AND order_id = $2")
            .bind(refund_id)
            .bind(id)
            .fetch_optional(job.state.db.pool())
            .await?;
        row.ok_or_else(|| JobError::Fatal(format!("no refund `{refund_id}`")))?
    };
    if status != "pending" {
        return Ok(());
    }
    let order = {
        let mut conn = job.state.db.pool().acquire().await?;
        saga_view(&mut conn, id).await?.ok_or_else(|| JobError::Fatal(format!("no order `{id}`")))?
    };
    let reference =
        order.payment_ref.as_deref().ok_or_else(|| JobError::Fatal("refunding without a payment".into()))?;
    let answer = job.state.payments.refund(refund_id, reference, amount).await;
    let (mut tx, order) = begin(job, id).await?;
    match answer {
        Ok(provider_ref) => {
            let paid = sqlx::query("UPDATE order_refunds SET status = 'succeeded', provider_ref = $1, updated_at = $2 WHERE id = $3 AND status = 'pending'")
                .bind(&provider_ref)
                .bind(crate::time::now_millis().0)
                .bind(refund_id)
                .execute(&mut *tx)
                .await?;
            if paid.rows_affected() == 1 {
                let refunded = order.refunded + amount;
                let to =
                    if refunded == order.captured { PaymentStatus::Refunded } else { PaymentStatus::PartiallyRefunded };
                sqlx::query("UPDATE orders SET refunded = $1, payment_status = $2, updated_at = $3 WHERE id = $4")
                    .bind(refunded)
                    .bind(to.as_str())
                    .bind(crate::time::now_millis().0)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                timeline::record(
                    &mut tx,
                    id,
                    "payment.refunded",
                    SYSTEM,
                    json!({ "refund_id": refund_id, "amount": amount }),
                )
                .await?;
            }
        }
        Err(ProviderError::Rejected(reason)) => {
            sqlx::query(
                "UPDATE order_refunds SET status = 'failed', updated_at = $1 WHERE id = $2 AND status = 'pending'",
            )
            .bind(crate::time::now_millis().0)
            .bind(refund_id)
            .execute(&mut *tx)
            .await?;
            timeline::record(
                &mut tx,
                id,
                "payment.refund_failed",
                SYSTEM,
                json!({ "refund_id": refund_id, "reason": reason }),
            )
            .await?;
        }
        Err(other) => return Err(provider_failure(other)),
    }
    finish(job, tx).await
}
