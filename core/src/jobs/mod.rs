//! The durable job queue: every asynchronous step of the core (an order saga's steps, a
//! webhook delivery) is a row in `jobs`, enqueued in the transaction of the write that
//! causes it ([`enqueue`]), so a step is never lost, nor run for a write that rolled back.
//!
//! Workers on every replica claim due jobs, most urgent first (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, so two replicas never claim the same job; SQLite has one writer), and hold
//! a lease on each until its timeout. A job whose worker died is taken up again when its
//! lease runs out. A failed attempt is retried after an exponential backoff with jitter,
//! up to `max_attempts`; then the job is `dead` until an operator retries or discards it
//! (`/v1/jobs`).
//!
//! Effects happen once because handlers are idempotent, keyed by the job id: a handler
//! whose effects are rows commits them with its own completion ([`JobCtx::complete_in`]),
//! which only succeeds while its lease holds; one that calls out (a payment provider)
//! passes a key derived from the job id as the provider's idempotency key.

pub(crate) mod api;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

pub use self::worker::Worker;
use crate::state::AppState;
use crate::time::now_millis;

/// Attempts a job gets unless its kind says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i64 = 10;
/// The first retry waits about this long; each later one twice the last, up to [`MAX_BACKOFF`].
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How long one attempt may run unless its kind says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Failures kept on a job for inspection (the latest ones).
const ERRORS_KEPT: usize = 10;

/// A job to enqueue: its kind (which handler runs it) and payload, and how it is run.
#[derive(Debug, Clone)]
pub struct NewJob {
    kind: String,
    payload: Value,
    priority: i64,
    run_at: Option<i64>,
    max_attempts: i64,
    backoff: Duration,
    timeout: Duration,
    unique_key: Option<String>,
}

impl NewJob {
    pub fn new(kind: impl Into<String>, payload: Value) -> NewJob {
        NewJob {
            kind: kind.into(),
            payload,
            priority: 0,
            run_at: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: DEFAULT_BACKOFF,
            timeout: DEFAULT_TIMEOUT,
            unique_key: None,
        }
    }

    /// Higher runs first among due jobs (default 0).
    pub fn priority(mut self, priority: i64) -> NewJob {
        self.priority = priority;
        self
    }

    /// Not before `at` (Unix milliseconds).
    pub fn run_at(mut self, at: i64) -> NewJob {
        self.run_at = Some(at);
        self
    }

    pub fn delay(self, by: Duration) -> NewJob {
        let at = now_millis().0 + by.as_millis() as i64;
        self.run_at(at)
    }

    pub fn max_attempts(mut self, attempts: i64) -> NewJob {
        self.max_attempts = attempts.max(1);
        self
    }

    pub fn backoff(mut self, first: Duration) -> NewJob {
        self.backoff = first;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> NewJob {
        self.timeout = timeout;
        self
    }

    /// At most one job with this key is ever enqueued: a second [`enqueue`] is a no-op.
    /// Saga steps use it so a step re-enqueued by a retried handler exists once.
    pub fn unique(mut self, key: impl Into<String>) -> NewJob {
        self.unique_key = Some(key.into());
        self
    }
}

/// Adds `job` inside the caller's transaction; its id, or `None` when its unique key was
/// already taken. Wake the workers ([`wake`]) after committing.
pub async fn enqueue(conn: &mut sqlx::AnyConnection, job: NewJob) -> Result<Option<String>, sqlx::Error> {
    let id = crate::ids::new_id("job");
    let now = now_millis().0;
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, kind, payload, unique_key, priority, state, attempts, max_attempts, backoff_ms,
                           timeout_ms, run_at, errors, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $7, $8, $9, '[]', $10, $10)
         ON CONFLICT (unique_key) DO NOTHING",
    )
    .bind(&id)
    .bind(&job.kind)
    .bind(job.payload.to_string())
    .bind(job.unique_key)
    .bind(job.priority)
    .bind(job.max_attempts)
    .bind(job.backoff.as_millis() as i64)
    .bind(job.timeout.as_millis().max(1) as i64)
    .bind(job.run_at.unwrap_or(now))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok((inserted.rows_affected() == 1).then_some(id))
}

/// Tells this process's workers that jobs were committed, so they need not wait for
/// their next poll. Other replicas find them on theirs.
pub fn wake(state: &AppState) {
    state.job_signal.notify_one();
}

/// Why an attempt did not finish the job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Try again after the backoff; counts as an attempt.
    #[error("{0}")]
    Retry(String),
    /// Try again after `after` rather than the job's own backoff (an endpoint's
    /// `Retry-After`, a schedule of the handler's); counts as an attempt.
    #[error("{reason}")]
    RetryAfter { after: Duration, reason: String },
    /// Give up now: the job is dead whatever attempts it has left.
    #[error("{0}")]
    Fatal(String),
    /// Not the job's fault (a circuit breaker is open): run again after `after` without
    /// using up an attempt.
    #[error("deferred: {reason}")]
    Defer { after: Duration, reason: String },
    /// The lease ran out and another attempt may have begun: this one's effects must roll back.
    #[error("the job's lease was lost")]
    LeaseLost,
}

impl From<sqlx::Error> for JobError {
    fn from(err: sqlx::Error) -> JobError {
        JobError::Retry(format!("database: {err}"))
    }
}

/// One attempt at a job, as its handler sees it.
#[derive(Debug)]
pub struct JobCtx {
    pub id: String,
    pub kind: String,
    pub payload: Value,
    /// 1 for the first attempt.
    pub attempt: i64,
    pub max_attempts: i64,
    pub state: AppState,
    worker: String,
    completed: AtomicBool,
}

impl JobCtx {
    /// Marks the job succeeded inside the handler's transaction, so its effects and its
    /// completion commit together; [`JobError::LeaseLost`] when the lease is gone (roll back).
    pub async fn complete_in(&self, conn: &mut sqlx::AnyConnection) -> Result<(), JobError> {
        let now = now_millis().0;
        let done = sqlx::query(
            "UPDATE jobs SET state = 'succeeded', finished_at = $1, updated_at = $1, locked_by = NULL, locked_until = NULL
             WHERE id = $2 AND state = 'running' AND locked_by = $3 AND attempts = $4",
        )
        .bind(now)
        .bind(&self.id)
        .bind(&self.worker)
        .bind(self.attempt)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != 1 {
            return Err(JobError::LeaseLost);
        }
        self.completed.store(true, Ordering::Release);
        Ok(())
    }

    fn completed(&self) -> bool {
        self.completed.load(Ordering::Acquire)
    }
}

/// Runs the jobs of one kind. Must be idempotent per job id: an attempt may be repeated
/// after a crash between its effects and its completion.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn run(&self, job: &JobCtx) -> Result<(), JobError>;
}

/// Which handler runs which kind. Workers claim only kinds they have a handler for, so a
/// replica running an older build leaves newer kinds to the others. The server assembles
/// the core's own (`server::job_registry`); each domain adds its kinds.
#[derive(Default, Clone)]
pub struct Registry {
    handlers: BTreeMap<String, Arc<dyn Handler>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.handlers.keys()).finish()
    }
}

impl Registry {
    pub fn with(mut self, kind: impl Into<String>, handler: impl Handler) -> Registry {
        self.handlers.insert(kind.into(), Arc::new(handler));
        self
    }

    fn get(&self, kind: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(kind).cloned()
    }

    fn kinds(&self) -> Vec<String> {
        self.handlers.keys().cloned().collect()
    }
}

/// The wait before retry number `attempt` (1 after the first failure): the backoff doubled
/// per attempt, capped, then jittered into its upper half so a burst of failures does not
/// retry in lockstep.
pub(crate) fn retry_delay(first: Duration, attempt: i64) -> Duration {
    let doublings = u32::try_from(attempt.saturating_sub(1).clamp(0, 32)).unwrap_or(32);
    let full = first.saturating_mul(2u32.saturating_pow(doublings)).min(MAX_BACKOFF);
    let half = full / 2;
    half + full.saturating_sub(half).mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_jitter_and_a_cap() {
        for attempt in 1..=6 {
            let full = Duration::from_secs(1 << (attempt - 1));
            for _ in 0..100 {
                let delay = retry_delay(Duration::from_secs(1), attempt);
                assert!(delay >= full / 2 && delay <= full, "attempt {attempt}: {delay:?}");
            }
        }
        let late = retry_delay(Duration::from_secs(1), 40);
        assert!(late <= MAX_BACKOFF && late >= MAX_BACKOFF / 2);
        let spread: std::collections::BTreeSet<_> =
            (0..50).map(|_| retry_delay(Duration::from_secs(8), 3).as_millis()).collect();
        assert!(spread.len() > 10, "jitter spreads retries: {spread:?}");
    }
}
