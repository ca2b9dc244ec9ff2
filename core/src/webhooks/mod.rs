//! Webhooks: events (today the order timeline's) delivered to endpoints an operator
//! registers, signed per the Standard Webhooks specification, retried with backoff
//! through the job queue, with a log of every attempt and manual redelivery.
//!
//! A delivery is a message (one event for one endpoint) plus a `webhook.deliver` job,
//! both written in the transaction of the change the event reports. Every attempt sends
//! the same `webhook-id` (the event's id), so receivers deduplicate retries; each carries
//! a fresh `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `id.timestamp.body` with the endpoint's secret (`whsec_…`).

pub(crate) mod api;
mod deliver;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

pub(crate) use self::deliver::register;
use crate::jobs::{NewJob, enqueue as enqueue_job};
use crate::time::now_millis;

/// Every event type an endpoint may subscribe to.
pub(crate) const EVENT_TYPES: &[&str] = &[
    "order.created",
    "stock.reserved",
    "payment.authorized",
    "payment.failed",
    "order.confirmed",
    "order.failed",
    "order.cancelled",
    "order.fulfilled",
    "payment.captured",
    "payment.voided",
    "stock.released",
    "stock.restocked",
    "refund.requested",
    "payment.refunded",
    "payment.refund_failed",
];

pub(crate) const DELIVER: &str = "webhook.deliver";
/// Attempts per message: with the backoff, about a day of retries before it is `failed`.
const ATTEMPTS: i64 = 12;

fn delivery(message_id: &str) -> NewJob {
    // The handler picks each retry's wait (configuration, or the endpoint's Retry-After).
    NewJob::new(DELIVER, json!({ "message_id": message_id }))
        .max_attempts(ATTEMPTS)
        .timeout(std::time::Duration::from_secs(20))
}

/// Queues `payload` (an event of `event_type` with id `event_id`) for every enabled
/// endpoint subscribed to it, in the caller's transaction.
pub(crate) async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    event_id: &str,
    event_type: &str,
    payload: &Value,
) -> Result<(), sqlx::Error> {
    let endpoints: Vec<(String, String)> =
        sqlx::query_as("SELECT id, event_types FROM webhook_endpoints WHERE disabled = 0")
            .fetch_all(&mut *conn)
            .await?;
    let now = now_millis().0;
    for (endpoint, types) in endpoints {
        let types: Vec<String> = serde_json::from_str(&types).unwrap_or_default();
        if !types.is_empty() && !types.iter().any(|t| t == event_type) {
            continue;
        }
        let message = crate::ids::new_id("msg");
        sqlx::query(
            "INSERT INTO webhook_messages (id, endpoint_id, event_id, event_type, payload, status, attempts, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)",
        )
        .bind(&message)
        .bind(&endpoint)
        .bind(event_id)
        .bind(event_type)
        .bind(payload.to_string())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        enqueue_job(conn, delivery(&message)).await?;
    }
    Ok(())
}

/// A new endpoint secret: `whsec_` and 32 random bytes in base64.
pub(crate) fn new_secret() -> String {
    format!("whsec_{}", STANDARD.encode(rand::random::<[u8; 32]>()))
}

/// The `webhook-signature` value for a message: `v1,` and the base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` keyed with the secret's decoded bytes.
pub(crate) fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let key = STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_standard_webhooks_reference_does() {
        // The example of the Standard Webhooks specification (and its reference libraries).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        let signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
