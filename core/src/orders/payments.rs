//! Payment providers behind one small trait, as Spin puts key-value stores behind `Store`:
//! the built-in `test` provider for `verge dev` and tests, and Stripe in production.
//!
//! Every call carries an idempotency key derived from the job that makes it, so a call
//! repeated after a crash or a timeout is recognised by the provider and answered as the
//! first time: an authorisation is never taken twice. A [`Breaker`] in front of the
//! provider stops calling it after repeated failures and tells the saga when to come
//! back, so an outage makes orders wait rather than fail in a burst.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::db::Database;
use crate::time::now_millis;

/// An amount to authorise on a payment method.
#[derive(Debug, Clone)]
pub struct Charge<'a> {
    pub idempotency_key: &'a str,
    pub order_id: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    /// The provider's token for the payment method (a test card number for `test`).
    pub method: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// Funds are held; `reference` names the hold for capture, void and refund.
    Authorized { reference: String },
    /// The issuer said no (`card_declined`, `insufficient_funds`, …): final for this order.
    Declined { code: String, message: String },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// No answer in time, or a 5xx: worth trying again later with the same key.
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
    /// The breaker is open after repeated failures: try again in `retry_in`.
    #[error("the payment provider failed repeatedly; calls resume in {retry_in:?}")]
    BreakerOpen { retry_in: Duration },
    /// The provider refused the request itself (a 4xx that retrying cannot fix).
    #[error("the payment provider refused the request: {0}")]
    Rejected(String),
}

/// What the order saga needs from a card processor.
#[async_trait]
pub trait PaymentProvider: Send + Sync + std::fmt::Debug + 'static {
    fn name(&self) -> &'static str;
    /// Whether `method` is a payment method this provider can charge (checked at checkout).
    fn accepts(&self, method: &str) -> Result<(), String>;
    async fn authorize(&self, charge: &Charge<'_>) -> Result<Authorization, ProviderError>;
    async fn capture(&self, key: &str, reference: &str, amount: i64) -> Result<(), ProviderError>;
    async fn void(&self, key: &str, reference: &str) -> Result<(), ProviderError>;
    /// Returns the refund's own reference.
    async fn refund(&self, key: &str, reference: &str, amount: i64) -> Result<String, ProviderError>;
}

/// The test cards of the `test` provider: the number, what it does, and its decline code.
pub const TEST_CARDS: &[(&str, &str, Option<&str>)] = &[
    ("4242424242424242", "succeeds", None),
    ("4000000000000002", "is declined", Some("card_declined")),
    ("4000000000009995", "is declined for insufficient funds", Some("insufficient_funds")),
    ("4000000000000119", "times out (the provider never answers in time)", None),
];
const TIMEOUT_CARD: &str = "4000000000000119";

/// A card processor in test mode whose ledger is a table in the core's database: the
/// state a real processor keeps on its side, so it survives a restarted core exactly as
/// Stripe's would. [`TestProvider::outage`] makes it unreachable for a while, for drills.
#[derive(Debug)]
pub struct TestProvider {
    db: Database,
}

impl TestProvider {
    pub fn new(db: Database) -> TestProvider {
        TestProvider { db }
    }

    /// Makes every call fail for `lasting`, as an unreachable provider would, on every
    /// core sharing `db`.
    pub async fn outage(db: &Database, lasting: Duration) -> Result<(), sqlx::Error> {
        let until = now_millis().0 + lasting.as_millis() as i64;
        sqlx::query("DELETE FROM payment_test_outages").execute(db.pool()).await?;
        sqlx::query("INSERT INTO payment_test_outages (id, until_ms) VALUES ('outage', $1)")
            .bind(until)
            .execute(db.pool())
            .await?;
        Ok(())
    }

    /// Ends an outage now.
    pub async fn recover(db: &Database) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM payment_test_outages").execute(db.pool()).await.map(drop)
    }

    async fn check_up(&self) -> Result<(), ProviderError> {
        let until: Option<i64> = sqlx::query_scalar("SELECT MAX(until_ms) FROM payment_test_outages")
            .fetch_one(self.db.pool())
            .await
            .map_err(|err| ProviderError::Unavailable(err.to_string()))?;
        if until.is_some_and(|until| until > now_millis().0) {
            return Err(ProviderError::Unavailable("connection refused (the test provider is in an outage)".into()));
        }
        Ok(())
    }

    /// Records the first answer under `key` and returns whichever answer is recorded.
    async fn once(
        &self,
        key: &str,
        kind: &str,
        reference: &str,
        outcome: &str,
        amount: i64,
        currency: &str,
    ) -> Result<String, ProviderError> {
        let failed = |err: sqlx::Error| ProviderError::Unavailable(err.to_string());
        sqlx::query(
            "INSERT INTO payment_test_ledger (idem_key, kind, reference, outcome, amount, currency, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (idem_key) DO NOTHING",
        )
        .bind(key)
        .bind(kind)
        .bind(reference)
        .bind(outcome)
        .bind(amount)
        .bind(currency)
        .bind(now_millis().0)
        .execute(self.db.pool())
        .await
        .map_err(failed)?;
        sqlx::query_scalar("SELECT outcome FROM payment_test_ledger WHERE idem_key = $1")
            .bind(key)
            .fetch_one(self.db.pool())
            .await
            .map_err(failed)
    }

    async fn authorization(&self, reference: &str) -> Result<(i64, String), ProviderError> {
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT amount, currency FROM payment_test_ledger WHERE idem_key = $1 AND kind = 'authorization' AND outcome = 'authorized'",
        )
        .bind(reference)
        .fetch_optional(self.db.pool())
        .await
        .map_err(|err| ProviderError::Unavailable(err.to_string()))?;
        row.ok_or_else(|| ProviderError::Rejected(format!("no authorisation `{reference}`")))
    }

    /// How many succeeded calls of `kind` concern `reference`, and their amounts' sum.
    async fn total(&self, reference: &str, kind: &str) -> Result<(i64, i64), ProviderError> {
        let (count, sum): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), CAST(SUM(amount) AS BIGINT) FROM payment_test_ledger
             WHERE reference = $1 AND kind = $2 AND outcome = 'succeeded'",
        )
        .bind(reference)
        .bind(kind)
        .fetch_one(self.db.pool())
        .await
        .map_err(|err| ProviderError::Unavailable(err.to_string()))?;
        Ok((count, sum.unwrap_or(0)))
    }

    /// Whether a call with `key` was already answered (a repeat gets the same answer).
    async fn answered(&self, key: &str) -> Result<bool, ProviderError> {
        let found: Option<String> = sqlx::query_scalar("SELECT idem_key FROM payment_test_ledger WHERE idem_key = $1")
            .bind(key)
            .fetch_optional(self.db.pool())
            .await
            .map_err(|err| ProviderError::Unavailable(err.to_string()))?;
        Ok(found.is_some())
    }
}

#[async_trait]
impl PaymentProvider for TestProvider {
    fn name(&self) -> &'static str {
        "test"
    }

    fn accepts(&self, method: &str) -> Result<(), String> {
        if TEST_CARDS.iter().any(|(number, ..)| *number == method) {
            return Ok(());
        }
        let numbers: Vec<&str> = TEST_CARDS.iter().map(|(number, ..)| *number).collect();
        Err(format!("the test provider takes only its test cards: {}", numbers.join(", ")))
    }

    async fn authorize(&self, charge: &Charge<'_>) -> Result<Authorization, ProviderError> {
        self.check_up().await?;
        if charge.method == TIMEOUT_CARD {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Err(ProviderError::Unavailable("timed out waiting for the issuer".into()));
        }
        let decline = TEST_CARDS.iter().find(|(number, ..)| *number == charge.method).and_then(|(_, _, code)| *code);
        let outcome = match decline {
            Some(code) => format!("declined:{code}"),
            None => "authorized".to_owned(),
        };
        let key = charge.idempotency_key;
        let recorded =
            self.once(key, "authorization", charge.order_id, &outcome, charge.amount, charge.currency).await?;
        Ok(match recorded.strip_prefix("declined:") {
            Some(code) => {
                Authorization::Declined { code: code.to_owned(), message: format!("the card was declined ({code})") }
            }
            // The authorisation's reference is its key: unique, and what later calls name.
            None => Authorization::Authorized { reference: key.to_owned() },
        })
    }

    async fn capture(&self, key: &str, reference: &str, amount: i64) -> Result<(), ProviderError> {
        self.check_up().await?;
        if self.answered(key).await? {
            return Ok(());
        }
        let (authorized, currency) = self.authorization(reference).await?;
        if self.total(reference, "void").await?.0 > 0 {
            return Err(ProviderError::Rejected("the authorisation was voided".into()));
        }
        let (_, captured) = self.total(reference, "capture").await?;
        if captured + amount > authorized {
            return Err(ProviderError::Rejected(format!(
                "{amount} exceeds the {} left to capture",
                authorized - captured
            )));
        }
        self.once(key, "capture", reference, "succeeded", amount, &currency).await.map(drop)
    }

    async fn void(&self, key: &str, reference: &str) -> Result<(), ProviderError> {
        self.check_up().await?;
        if self.answered(key).await? {
            return Ok(());
        }
        let (_, currency) = self.authorization(reference).await?;
        if self.total(reference, "capture").await?.0 > 0 {
            return Err(ProviderError::Rejected("a captured authorisation cannot be voided; refund it".into()));
        }
        self.once(key, "void", reference, "succeeded", 0, &currency).await.map(drop)
    }

    async fn refund(&self, key: &str, reference: &str, amount: i64) -> Result<String, ProviderError> {
        self.check_up().await?;
        if self.answered(key).await? {
            return Ok(key.to_owned());
        }
        let (_, currency) = self.authorization(reference).await?;
        let (_, captured) = self.total(reference, "capture").await?;
        let (_, refunded) = self.total(reference, "refund").await?;
        if refunded + amount > captured {
            return Err(ProviderError::Rejected(format!(
                "{amount} exceeds the {} left to refund",
                captured - refunded
            )));
        }
        self.once(key, "refund", reference, "succeeded", amount, &currency).await?;
        Ok(key.to_owned())
    }
}

/// Consecutive failures that open the breaker.
const BREAKER_THRESHOLD: u32 = 5;

/// A circuit breaker around a provider: after [`BREAKER_THRESHOLD`] unavailable answers in
/// a row it stops calling for `cooldown`, answering [`ProviderError::BreakerOpen`]; then
/// it lets one call through (half-open), and closes on its success.
#[derive(Debug)]
pub struct Breaker {
    inner: std::sync::Arc<dyn PaymentProvider>,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
    trial_running: bool,
}

impl Breaker {
    pub fn new(inner: std::sync::Arc<dyn PaymentProvider>, cooldown: Duration) -> Breaker {
        Breaker { inner, cooldown, state: Mutex::new(BreakerState::default()) }
    }

    fn admit(&self) -> Result<(), ProviderError> {
        let mut state = self.state.lock().expect("breaker lock");
        let Some(until) = state.open_until else {
            return Ok(());
        };
        let now = Instant::now();
        if now < until || state.trial_running {
            let retry_in = until.saturating_duration_since(now).max(Duration::from_millis(100));
            return Err(ProviderError::BreakerOpen { retry_in });
        }
        state.trial_running = true;
        Ok(())
    }

    fn observe<T>(&self, result: &Result<T, ProviderError>) {
        let mut state = self.state.lock().expect("breaker lock");
        state.trial_running = false;
        match result {
            Err(ProviderError::Unavailable(_)) => {
                state.failures += 1;
                if state.failures >= BREAKER_THRESHOLD || state.open_until.is_some() {
                    if state.open_until.is_none() {
                        tracing::warn!(provider = self.inner.name(), "payment provider failing; breaker open");
                    }
                    state.open_until = Some(Instant::now() + self.cooldown);
                }
            }
            _ => {
                if state.open_until.take().is_some() {
                    tracing::info!(provider = self.inner.name(), "payment provider answering again; breaker closed");
                }
                state.failures = 0;
            }
        }
    }

    async fn call<T>(&self, call: impl Future<Output = Result<T, ProviderError>>) -> Result<T, ProviderError> {
        self.admit()?;
        let result = call.await;
        self.observe(&result);
        result
    }
}

#[async_trait]
impl PaymentProvider for Breaker {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn accepts(&self, method: &str) -> Result<(), String> {
        self.inner.accepts(method)
    }

    async fn authorize(&self, charge: &Charge<'_>) -> Result<Authorization, ProviderError> {
        self.call(self.inner.authorize(charge)).await
    }

    async fn capture(&self, key: &str, reference: &str, amount: i64) -> Result<(), ProviderError> {
        self.call(self.inner.capture(key, reference, amount)).await
    }

    async fn void(&self, key: &str, reference: &str) -> Result<(), ProviderError> {
        self.call(self.inner.void(key, reference)).await
    }

    async fn refund(&self, key: &str, reference: &str, amount: i64) -> Result<String, ProviderError> {
        self.call(self.inner.refund(key, reference, amount)).await
    }
}
