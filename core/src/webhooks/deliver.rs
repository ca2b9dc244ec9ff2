//! The `webhook.deliver` job: one attempt at one message, logged whatever happens.
//! A 2xx answer delivers it; anything else (or no answer in time) is retried with
//! backoff until the last attempt marks the message `failed`. Redirects are not followed:
//! the registered URL is where events go.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{DELIVER, sign};
use crate::jobs::{Handler, JobCtx, JobError, Registry, retry_delay};
use crate::time::now_millis;

pub(crate) fn register(registry: Registry) -> Registry {
    registry.with(DELIVER, Deliver)
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Verge-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a TLS client with default settings builds")
    })
}

struct Deliver;

#[async_trait]
impl Handler for Deliver {
    async fn run(&self, job: &JobCtx) -> Result<(), JobError> {
        let message_id = job.payload["message_id"].as_str().ok_or_else(|| JobError::Fatal("no message_id".into()))?;
        let db = &job.state.db;
        let row: Option<(String, String, String, String, i64)> = sqlx::query_as(
            "SELECT m.event_id, m.payload, e.url, e.secret, e.disabled FROM webhook_messages m
             JOIN webhook_endpoints e ON e.id = m.endpoint_id WHERE m.id = $1",
        )
        .bind(message_id)
        .fetch_optional(db.pool())
        .await?;
        let Some((event_id, payload, url, secret, disabled)) = row else {
            return Ok(()); // its endpoint was deleted, and the message with it
        };
        if disabled != 0 {
            return Err(JobError::Fatal("the endpoint is disabled".into()));
        }
        let timestamp = now_millis().0 / 1000;
        let started = Instant::now();
        let sent = client()
            .post(&url)
            .header("content-type", "application/json")
            .header("webhook-id", &event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sign(&secret, &event_id, timestamp, &payload))
            .body(payload)
            .send()
            .await;
        // An endpoint asking for time (429/503 with `Retry-After` in seconds) gets it, up
        // to an hour; otherwise the configured backoff, doubled per attempt.
        let asked = sent
            .as_ref()
            .ok()
            .and_then(|r| r.headers().get("retry-after"))
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let first = Duration::from_millis(job.state.config.webhook_retry_backoff_ms);
        let wait = asked.map_or_else(|| retry_delay(first, job.attempt), |secs| Duration::from_secs(secs.min(3600)));
        let (code, error) = match &sent {
            Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
            Ok(response) => {
                (Some(response.status().as_u16()), Some(format!("the endpoint answered {}", response.status())))
            }
            Err(err) if err.is_timeout() => (None, Some("the endpoint did not answer in time".to_owned())),
            Err(err) => (None, Some(format!("could not reach the endpoint: {err}"))),
        };
        let last = job.attempt >= job.max_attempts;
        let status = match (&error, last) {
            (None, _) => "delivered",
            (Some(_), true) => "failed",
            (Some(_), false) => "pending",
        };
        let now = now_millis().0;
        let mut tx = db.begin_write().await?;
        sqlx::query(
            "INSERT INTO webhook_attempts (id, message_id, response_code, error, duration_ms, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(crate::ids::new_id("wat"))
        .bind(message_id)
        .bind(code.map(i64::from))
        .bind(error.as_deref())
        .bind(started.elapsed().as_millis() as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE webhook_messages SET status = $1, attempts = attempts + 1, updated_at = $2 WHERE id = $3")
            .bind(status)
            .bind(now)
            .bind(message_id)
            .execute(&mut *tx)
            .await?;
        match error {
            None => {
                job.complete_in(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }
            Some(reason) => {
                tx.commit().await?;
                Err(JobError::RetryAfter { after: wait, reason })
            }
        }
    }
}
