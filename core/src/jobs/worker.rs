//! The worker: claims due jobs, runs each under its timeout with at most `job_concurrency`
//! at once, and records how each attempt ended.
//!
//! Successes are marked in batches by one completer task (under load, one statement for
//! many jobs, which is what makes thousands of jobs a second possible on durable commits);
//! failures, rarer, are recorded one by one. Every outcome is conditional on the lease
//! (worker id and attempt), so a late answer from an attempt whose lease was taken over
//! changes nothing.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::Value;
use sqlx::Row;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::{ERRORS_KEPT, JobCtx, JobError, Registry, retry_delay};
use crate::db::Dialect;
use crate::state::AppState;
use crate::time::now_millis;

/// Extra time a lease gives beyond the job's timeout, to record the outcome: a second
/// plus a tenth of the timeout.
const LEASE_GRACE_MS: i64 = 1_000;
/// How often leases are reaped, old jobs deleted and gauges refreshed.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

/// Runs jobs of the kinds in its registry until shut down. Start one per process; every
/// replica may run one.
#[derive(Debug, Clone)]
pub struct Worker {
    state: AppState,
    registry: Arc<Registry>,
    id: String,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Claimed {
    id: String,
    kind: String,
    payload: String,
    attempt: i64,
    max_attempts: i64,
    backoff_ms: i64,
    timeout_ms: i64,
}

impl Worker {
    pub fn new(state: AppState, registry: Registry) -> Worker {
        Worker { state, registry: Arc::new(registry), id: crate::ids::new_id("wkr") }
    }

    /// Runs until `shutdown` resolves, then lets running attempts finish (within the
    /// shutdown grace; any still running are taken up again when their leases run out).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let concurrency = self.state.config.job_concurrency.max(1);
        let permits = Arc::new(Semaphore::new(concurrency));
        let (done_tx, done_rx) = mpsc::unbounded_channel::<(String, i64)>();
        let completer = tokio::spawn(self.clone().complete_batches(done_rx));
        let mut running = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        // Kept by the clock, not by idleness: a worker busy for hours still reaps the leases
        // of replicas that died and keeps the gauges fresh.
        let mut housekept: Option<std::time::Instant> = None;
        let poll = self.state.config.job_poll_interval();
        loop {
            if housekept.is_none_or(|at| at.elapsed() >= HOUSEKEEPING_EVERY) {
                self.housekeep().await;
                housekept = Some(std::time::Instant::now());
            }
            while running.try_join_next().is_some() {}
            let free = permits.available_permits();
            let claimed = if free == 0 { Ok(Vec::new()) } else { self.claim(free).await };
            let claimed = match claimed {
                Ok(claimed) => claimed,
                Err(err) => {
                    tracing::warn!(error = %err, "claiming jobs failed; will retry");
                    Vec::new()
                }
            };
            let idle = claimed.is_empty();
            for job in claimed {
                let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
                let worker = self.clone();
                let done = done_tx.clone();
                running.spawn(async move {
                    worker.attempt(job, done).await;
                    drop(permit);
                });
            }
            if !idle && permits.available_permits() > 0 {
                // More may be due at once; look again, unless asked to stop.
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = std::future::ready(()) => continue,
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.state.job_signal.notified(), if permits.available_permits() > 0 => {}
                _ = permits.clone().acquire_owned(), if permits.available_permits() == 0 => {}
                () = tokio::time::sleep(poll.min(HOUSEKEEPING_EVERY)) => {}
            }
        }
        let grace = self.state.config.shutdown_grace();
        if tokio::time::timeout(grace, async { while running.join_next().await.is_some() {} }).await.is_err() {
            tracing::warn!("jobs still running at shutdown; their leases will run out and they will run again");
            running.abort_all();
        }
        drop(done_tx);
        let _ = completer.await;
    }

    /// Claims and runs every due job until none is left, then returns how many attempts
    /// ran; for tests and benchmarks that want the queue drained without a running loop.
    pub async fn drain(&self) -> Result<usize, sqlx::Error> {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let completer = tokio::spawn(self.clone().complete_batches(done_rx));
        let mut ran = 0;
        loop {
            self.reap().await?;
            let claimed = self.claim(self.state.config.job_concurrency.max(1)).await?;
            if claimed.is_empty() {
                break;
            }
            ran += claimed.len();
            let mut set = JoinSet::new();
            for job in claimed {
                set.spawn(self.clone().attempt_owned(job, done_tx.clone()));
            }
            while set.join_next().await.is_some() {}
        }
        drop(done_tx);
        let _ = completer.await;
        Ok(ran)
    }

    async fn attempt_owned(self, job: Claimed, done: mpsc::UnboundedSender<(String, i64)>) {
        self.attempt(job, done).await;
    }

    async fn claim(&self, limit: usize) -> Result<Vec<Claimed>, sqlx::Error> {
        let kinds = self.registry.kinds();
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_millis().0;
        if self.state.db.dialect() == Dialect::Sqlite {
            // SQLite has one writer: an idle worker's empty UPDATE would still take the write
            // lock twice a second, queueing every API write behind it. A read costs nothing.
            let due = sqlx::query("SELECT 1 FROM jobs WHERE state = 'queued' AND run_at <= $1 LIMIT 1")
                .bind(now)
                .fetch_optional(self.state.db.pool())
                .await?;
            if due.is_none() {
                return Ok(Vec::new());
            }
        }
        let in_kinds = (0..kinds.len()).map(|i| format!("${}", i + 5)).collect::<Vec<_>>().join(", ");
        let skip_locked = if self.state.db.dialect() == Dialect::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_by = $1,
                    locked_until = $2 + timeout_ms + timeout_ms / 10 + $3, updated_at = $2
             WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND run_at <= $2 AND kind IN ({in_kinds})
                          ORDER BY priority DESC, run_at, id LIMIT $4{skip_locked})
             RETURNING id, kind, payload, attempts, max_attempts, backoff_ms, timeout_ms"
        );
        let mut query = sqlx::query(&sql).bind(&self.id).bind(now).bind(LEASE_GRACE_MS).bind(limit as i64);
        for kind in &kinds {
            query = query.bind(kind);
        }
        let rows = query.fetch_all(self.state.db.pool()).await?;
        rows.iter()
            .map(|row| {
                Ok(Claimed {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    payload: row.try_get("payload")?,
                    attempt: row.try_get("attempts")?,
                    max_attempts: row.try_get("max_attempts")?,
                    backoff_ms: row.try_get("backoff_ms")?,
                    timeout_ms: row.try_get("timeout_ms")?,
                })
            })
            .collect()
    }

    async fn attempt(&self, job: Claimed, done: mpsc::UnboundedSender<(String, i64)>) {
        let Some(handler) = self.registry.get(&job.kind) else {
            return; // claimed only for registered kinds
        };
        let ctx = Arc::new(JobCtx {
            id: job.id.clone(),
            kind: job.kind.clone(),
            payload: serde_json::from_str(&job.payload).unwrap_or(Value::Null),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            state: self.state.clone(),
            worker: self.id.clone(),
            completed: AtomicBool::new(false),
        });
        let timeout = Duration::from_millis(job.timeout_ms.max(1) as u64);
        // Spawned so a panic is an outcome, not a dead worker; aborted when this attempt
        // ends early (timeout, or the worker itself stopping), so a timed-out attempt
        // cannot go on to write after its failure is recorded.
        let run = {
            let ctx = ctx.clone();
            tokio::spawn(async move { handler.run(&ctx).await })
        };
        let _abort_on_drop = AbortOnDrop(run.abort_handle());
        let outcome = match tokio::time::timeout(timeout, run).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(join)) if join.is_panic() => Err(JobError::Retry("the handler panicked".into())),
            Ok(Err(_)) => Err(JobError::Retry("the handler was cancelled".into())),
            Err(_) => Err(JobError::Retry(format!("timed out after {} ms", job.timeout_ms))),
        };
        let metrics = &self.state.metrics;
        match outcome {
            Ok(()) => {
                metrics.count_job(&job.kind, "succeeded");
                if !ctx.completed() {
                    let _ = done.send((job.id, job.attempt));
                }
            }
            Err(JobError::LeaseLost) => metrics.count_job(&job.kind, "lease_lost"),
            Err(error) => {
                let outcome = self.record_failure(&job, &error).await;
                metrics.count_job(&job.kind, outcome);
            }
        }
    }

    /// Records a failed attempt: queued again after its backoff, or dead. Returns which.
    async fn record_failure(&self, job: &Claimed, error: &JobError) -> &'static str {
        let now = now_millis().0;
        let (state, run_at, attempts) = match error {
            JobError::Defer { after, .. } => ("queued", now + after.as_millis() as i64, job.attempt - 1),
            JobError::Fatal(_) => ("dead", now, job.attempt),
            _ if job.attempt >= job.max_attempts => ("dead", now, job.attempt),
            JobError::RetryAfter { after, .. } => ("queued", now + after.as_millis() as i64, job.attempt),
            _ => {
                let delay = retry_delay(Duration::from_millis(job.backoff_ms.max(0) as u64), job.attempt);
                ("queued", now + delay.as_millis() as i64, job.attempt)
            }
        };
        let message = error.to_string();
        let recorded = async {
            let mut tx = self.state.db.begin_write().await?;
            let errors: Option<String> = sqlx::query_scalar(
                "SELECT errors FROM jobs WHERE id = $1 AND state = 'running' AND locked_by = $2 AND attempts = $3",
            )
            .bind(&job.id)
            .bind(&self.id)
            .bind(job.attempt)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(errors) = errors else {
                return Ok::<_, sqlx::Error>(()); // the lease was taken over; its new holder decides
            };
            let mut errors: Vec<Value> = serde_json::from_str(&errors).unwrap_or_default();
            errors
                .push(serde_json::json!({ "attempt": job.attempt, "at": crate::time::Millis(now), "error": message }));
            let skip = errors.len().saturating_sub(ERRORS_KEPT);
            let errors: Vec<Value> = errors.into_iter().skip(skip).collect();
            sqlx::query(
                "UPDATE jobs SET state = $1, run_at = $2, attempts = $3, last_error = $4, errors = $5, locked_by = NULL,
                        locked_until = NULL, updated_at = $6, finished_at = CASE WHEN $1 = 'dead' THEN $6 ELSE NULL END
                 WHERE id = $7 AND state = 'running' AND locked_by = $8",
            )
            .bind(state)
            .bind(run_at)
            .bind(attempts)
            .bind(&message)
            .bind(Value::Array(errors).to_string())
            .bind(now)
            .bind(&job.id)
            .bind(&self.id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        };
        if let Err(err) = recorded.await {
            tracing::warn!(job = %job.id, error = %err, "recording a failed attempt failed; its lease will run out");
        }
        if state == "dead" {
            tracing::warn!(job = %job.id, kind = %job.kind, attempts = job.attempt, error = %message, "job is dead");
            "dead"
        } else {
            tracing::debug!(job = %job.id, kind = %job.kind, error = %message, "job will be retried");
            if matches!(error, JobError::Defer { .. }) { "deferred" } else { "retried" }
        }
    }

    /// Marks successes, many per statement when they arrive together.
    async fn complete_batches(self, mut done: mpsc::UnboundedReceiver<(String, i64)>) {
        let mut batch = Vec::new();
        while done.recv_many(&mut batch, 500).await > 0 {
            let chunk = std::mem::take(&mut batch);
            let mut delay = Duration::from_millis(50);
            while let Err(err) = self.mark_succeeded(&chunk).await {
                tracing::warn!(error = %err, jobs = chunk.len(), "marking jobs succeeded failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }

    async fn mark_succeeded(&self, jobs: &[(String, i64)]) -> Result<(), sqlx::Error> {
        // (id, attempt) pairs as `(id = $n AND attempts = $n+1) OR …`: portable, and a
        // pair whose lease moved on matches nothing.
        let pairs = (0..jobs.len())
            .map(|i| format!("(id = ${} AND attempts = ${})", 3 + 2 * i, 4 + 2 * i))
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = format!(
            "UPDATE jobs SET state = 'succeeded', finished_at = $1, updated_at = $1, locked_by = NULL, locked_until = NULL
             WHERE state = 'running' AND locked_by = $2 AND ({pairs})"
        );
        let mut query = sqlx::query(&sql).bind(now_millis().0).bind(&self.id);
        for (id, attempt) in jobs {
            query = query.bind(id).bind(attempt);
        }
        query.execute(self.state.db.pool()).await?;
        Ok(())
    }

    async fn housekeep(&self) {
        if let Err(err) = self.reap().await {
            tracing::warn!(error = %err, "reaping job leases failed; will retry");
        }
        let retention = self.state.config.job_retention_hours as i64 * 3_600_000;
        let deleted = sqlx::query("DELETE FROM jobs WHERE state IN ('succeeded', 'discarded') AND finished_at < $1")
            .bind(now_millis().0 - retention)
            .execute(self.state.db.pool())
            .await;
        if let Err(err) = deleted {
            tracing::warn!(error = %err, "deleting finished jobs failed; will retry");
        }
        match super::api::depths(&self.state.db).await {
            Ok((depths, oldest)) => self
                .state
                .metrics
                .set_job_depths(depths.iter().map(|d| (d.kind.as_str(), d.state.as_str(), d.jobs)), oldest),
            Err(err) => tracing::warn!(error = %err, "reading job queue depths failed"),
        }
    }

    /// Jobs whose lease ran out (their worker died or hung past the grace) count a failed
    /// attempt: queued again now, or dead when it was their last.
    async fn reap(&self) -> Result<(), sqlx::Error> {
        let now = now_millis().0;
        let reaped = sqlx::query(
            "UPDATE jobs SET state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
                    finished_at = CASE WHEN attempts >= max_attempts THEN $1 ELSE NULL END,
                    run_at = $1, last_error = 'the lease ran out: the worker stopped or the attempt hung',
                    locked_by = NULL, locked_until = NULL, updated_at = $1
             WHERE state = 'running' AND locked_until <= $1",
        )
        .bind(now)
        .execute(self.state.db.pool())
        .await?;
        if reaped.rows_affected() > 0 {
            tracing::warn!(jobs = reaped.rows_affected(), "took up jobs whose lease ran out");
        }
        Ok(())
    }
}
