//! The Stripe provider, on the PaymentIntents API: authorise with `capture_method=manual`
//! and `confirm=true`, capture, cancel (void) and refund. Every call sends the saga's
//! idempotency key as Stripe's `Idempotency-Key`, so Stripe answers a repeated call with
//! its first answer. A 402 card error is a decline (its `decline_code`, else its `code`);
//! a 5xx, a 429 or no answer in time is an outage the saga retries; any other 4xx is a
//! refusal an operator must look at.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::payments::{Authorization, Charge, PaymentProvider, ProviderError};

#[derive(Debug)]
pub(crate) struct Stripe {
    client: reqwest::Client,
    base: String,
    key: SecretString,
}

impl Stripe {
    pub(crate) fn new(base: &str, key: SecretString) -> Stripe {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("Verge/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a TLS client with default settings builds");
        Stripe { client, base: base.trim_end_matches('/').to_owned(), key }
    }

    /// POSTs a form to `path` with the idempotency key; the object, or why not.
    async fn post(
        &self,
        path: &str,
        key: &str,
        form: &[(&str, String)],
    ) -> Result<Result<Value, Refusal>, ProviderError> {
        let sent = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.key.expose_secret())
            .header("idempotency-key", key)
            .form(form)
            .send()
            .await
            .map_err(|err| ProviderError::Unavailable(format!("Stripe: {err}")))?;
        let status = sent.status();
        let body: Value =
            sent.json().await.map_err(|err| ProviderError::Unavailable(format!("Stripe's answer: {err}")))?;
        if status.is_success() {
            return Ok(Ok(body));
        }
        let error = &body["error"];
        let message = error["message"].as_str().unwrap_or("no message").to_owned();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(ProviderError::Unavailable(format!("Stripe answered {status}: {message}")));
        }
        if status.as_u16() == 402 {
            let code = error["decline_code"].as_str().or(error["code"].as_str()).unwrap_or("card_declined").to_owned();
            return Ok(Err(Refusal::Declined { code, message }));
        }
        Err(ProviderError::Rejected(format!("Stripe answered {status}: {message}")))
    }
}

enum Refusal {
    Declined { code: String, message: String },
}

#[async_trait]
impl PaymentProvider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn accepts(&self, method: &str) -> Result<(), String> {
        let ok = method.starts_with("pm_")
            && method.len() <= 255
            && method.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if ok { Ok(()) } else { Err("must be a Stripe PaymentMethod id (`pm_…`)".into()) }
    }

    async fn authorize(&self, charge: &Charge<'_>) -> Result<Authorization, ProviderError> {
        let form = [
            ("amount", charge.amount.to_string()),
            ("currency", charge.currency.to_ascii_lowercase()),
            ("payment_method", charge.method.to_owned()),
            ("capture_method", "manual".to_owned()),
            ("confirm", "true".to_owned()),
            ("metadata[order_id]", charge.order_id.to_owned()),
        ];
        match self.post("/v1/payment_intents", charge.idempotency_key, &form).await? {
            Ok(intent) => match intent["status"].as_str() {
                Some("requires_capture") => {
                    let id = intent["id"]
                        .as_str()
                        .ok_or_else(|| ProviderError::Rejected("an intent without an id".into()))?;
                    Ok(Authorization::Authorized { reference: id.to_owned() })
                }
                Some("requires_action") => Ok(Authorization::Declined {
                    code: "authentication_required".into(),
                    message: "the card needs the customer to authenticate (3-D Secure)".into(),
                }),
                other => {
                    Err(ProviderError::Rejected(format!("the payment intent is {}", other.unwrap_or("in no status"))))
                }
            },
            Err(Refusal::Declined { code, message }) => Ok(Authorization::Declined { code, message }),
        }
    }

    async fn capture(&self, key: &str, reference: &str, amount: i64) -> Result<(), ProviderError> {
        let path = format!("/v1/payment_intents/{reference}/capture");
        match self.post(&path, key, &[("amount_to_capture", amount.to_string())]).await? {
            Ok(_) => Ok(()),
            Err(Refusal::Declined { message, .. }) => Err(ProviderError::Rejected(message)),
        }
    }

    async fn void(&self, key: &str, reference: &str) -> Result<(), ProviderError> {
        match self.post(&format!("/v1/payment_intents/{reference}/cancel"), key, &[]).await? {
            Ok(_) => Ok(()),
            Err(Refusal::Declined { message, .. }) => Err(ProviderError::Rejected(message)),
        }
    }

    async fn refund(&self, key: &str, reference: &str, amount: i64) -> Result<String, ProviderError> {
        let form = [("payment_intent", reference.to_owned()), ("amount", amount.to_string())];
        match self.post("/v1/refunds", key, &form).await? {
            Ok(refund) => Ok(refund["id"].as_str().unwrap_or_default().to_owned()),
            Err(Refusal::Declined { message, .. }) => Err(ProviderError::Rejected(message)),
        }
    }
}
