//! Verge's configuration: one typed struct, read from an optional TOML file and then from
//! `VERGE_*` environment variables (plus the conventional `DATABASE_URL` and `REDIS_URL`).
//!
//! Secrets are `SecretString`s, so printing or logging a `Config` shows `[REDACTED]`
//! instead of a password or key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Everything the core needs to start. Field names are the TOML keys; the environment
/// variable for a field is `VERGE_` + its name in upper case.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Directory for the embedded SQLite database and other local state.
    pub data_dir: PathBuf,
    /// PostgreSQL URL; without it the core uses SQLite in `data_dir`.
    pub database_url: Option<SecretString>,
    /// Maximum database connections in the pool.
    pub database_max_connections: u32,
    /// Redis URL; without it the core uses an in-process store (single node only).
    pub redis_url: Option<SecretString>,
    /// Prefix for every Redis key, so several deployments can share one server.
    pub redis_prefix: String,
    /// Admin key to create on first start against an empty database, instead of a random one.
    pub admin_key: Option<SecretString>,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// Longest a request may take before it is answered with a timeout problem.
    pub request_timeout_ms: u64,
    /// Largest bulk import body (autocomplete terms), in bytes; imports are streamed, so
    /// this bounds the file, not memory. Imports are not held to `request_timeout_ms`.
    pub import_limit_bytes: usize,
    /// How often trending queries are republished into the indexes that received them.
    pub autocomplete_trending_interval_ms: u64,
    /// How often the catalog clock runs: reservations past their expiry are released and
    /// products whose price list starts or ends are republished.
    pub catalog_clock_interval_ms: u64,
    /// Units available at or below which the edge shows a variant as `low`.
    pub low_stock_threshold: i64,
    /// Job attempts one core runs at once; 0 runs no worker on this replica.
    pub job_concurrency: usize,
    /// How often an idle worker looks for due jobs (jobs enqueued by this process wake
    /// it at once; other replicas' are found on the next poll).
    pub job_poll_interval_ms: u64,
    /// How long succeeded and discarded jobs are kept before they are deleted.
    pub job_retention_hours: u64,
    /// Flat tax rates per region, in percent: `DE=19,FR=20,US-CA=7.25`. An order is taxed
    /// at its shipping address's `country-region` rate, else its country's, else not.
    pub tax_rates: String,
    /// `test` (the built-in test provider, docs/orders.md) or `stripe`.
    pub payment_provider: String,
    /// Stripe's secret API key (`sk_…`), for `payment_provider = "stripe"`.
    pub stripe_secret_key: Option<SecretString>,
    /// Where the Stripe API is (a local `localstripe` in tests).
    pub stripe_api_base: String,
    /// How long a failing payment provider is left alone before one call tries it again.
    pub payment_breaker_cooldown_ms: u64,
    /// The first wait before a failed webhook delivery is retried; each later one doubles
    /// (jittered), up to an hour, for 12 attempts in all.
    pub webhook_retry_backoff_ms: u64,
    /// How long shutdown waits for in-flight requests before giving up on them.
    pub shutdown_grace_ms: u64,
    /// `text` for people, `json` for log collectors.
    pub log_format: LogFormat,
    /// A local edge store (SQLite file, Spin's schema) the core publishes into, for edge
    /// hosts on this machine; `verge dev` uses `<data_dir>/edge/kv.db`.
    pub edge_store: Option<PathBuf>,
    /// Redis to publish edge configuration into, for native edge nodes reading it
    /// (`verge edge serve --native`); besides `edge_store`, not instead.
    pub edge_redis_url: Option<SecretString>,
    /// Prefix of every edge key in that Redis.
    pub edge_redis_prefix: String,
    /// The domain short links get when none is named; the edge serves them on this host.
    /// Unset: `localhost` (`verge dev`: `127.0.0.1`, the host its edge URL names).
    pub links_default_domain: Option<String>,
    /// Where links on the default domain are reached, when not `https://<domain>` (for
    /// example `http://127.0.0.1:8081` for a local edge); `verge dev` sets its edge's URL.
    pub links_short_url_base: Option<String>,
    /// Events one key may send to `POST /v1/events` per minute (a token bucket, bursts up
    /// to the same number), so a leaked ingest key cannot flood the database.
    pub ingest_events_per_minute: u32,
    /// How often each core evaluates the rate-limit alert rules (a minute; tests shorten it).
    pub ratelimit_alert_interval_ms: u64,
    /// When set, `/metrics` answers only requests bearing this token.
    pub metrics_token: Option<SecretString>,
    /// When set, `verge serve` answers `/metrics` on this address (say, a private
    /// interface) and not on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// The header a trusted proxy in front of the core sets to the client's IP (say
    /// `cf-connecting-ip`, or `x-forwarded-for`, whose last entry is then used). Unset: the
    /// connection's peer address. Sign-in throttling and session devices use it.
    pub client_ip_header: Option<String>,
    /// The header a trusted proxy sets to the client's country (`cf-ipcountry`), shown as
    /// a session's approximate place.
    pub client_country_header: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("verge-data"),
            database_url: None,
            database_max_connections: 10,
            redis_url: None,
            redis_prefix: "verge:".to_owned(),
            admin_key: None,
            body_limit_bytes: 1024 * 1024,
            request_timeout_ms: 30_000,
            import_limit_bytes: 1024 * 1024 * 1024,
            autocomplete_trending_interval_ms: 300_000,
            catalog_clock_interval_ms: 1_000,
            low_stock_threshold: 5,
            job_concurrency: 32,
            job_poll_interval_ms: 500,
            job_retention_hours: 168,
            tax_rates: String::new(),
            payment_provider: "test".to_owned(),
            stripe_secret_key: None,
            stripe_api_base: "https://api.stripe.com".to_owned(),
            payment_breaker_cooldown_ms: 10_000,
            webhook_retry_backoff_ms: 5_000,
            shutdown_grace_ms: 10_000,
            log_format: LogFormat::Text,
            edge_store: None,
            edge_redis_url: None,
            edge_redis_prefix: "verge-edge:".to_owned(),
            links_default_domain: None,
            links_short_url_base: None,
            ingest_events_per_minute: 1_200_000,
            ratelimit_alert_interval_ms: 60_000,
            metrics_token: None,
            metrics_listen: None,
            client_ip_header: None,
            client_country_header: None,
        }
    }
}

/// Largest event batch `POST /v1/events` takes; here so the quota can be checked against
/// it without configuration depending on a domain.
pub(crate) const EVENT_BATCH_LIMIT: usize = 1000;

/// Shortest admin key accepted from `VERGE_ADMIN_KEY`: keys are bearer secrets and are
/// stored as a fast hash, so they must carry enough entropy on their own.
pub(crate) const MIN_ADMIN_KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} does not exist")]
    MissingFile { path: PathBuf },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads the TOML file at `file` (if given; it must exist), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile { path: path.to_owned() });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let config: Config = figment
            .merge(Env::raw().only(&["DATABASE_URL", "REDIS_URL"]))
            .merge(Env::prefixed("VERGE_"))
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: &str| Err(ConfigError::Invalid(msg.to_owned()));
        if self.body_limit_bytes == 0 {
            return invalid("body_limit_bytes must be greater than 0");
        }
        if self.request_timeout_ms == 0 {
            return invalid("request_timeout_ms must be greater than 0");
        }
        if self.database_max_connections == 0 {
            return invalid("database_max_connections must be greater than 0");
        }
        if let Some(key) = &self.admin_key
            && key.expose_secret().len() < MIN_ADMIN_KEY_LEN
        {
            return Err(ConfigError::Invalid(format!(
                "VERGE_ADMIN_KEY must be at least {MIN_ADMIN_KEY_LEN} characters"
            )));
        }
        if (self.ingest_events_per_minute as usize) < EVENT_BATCH_LIMIT {
            return Err(ConfigError::Invalid(format!(
                "ingest_events_per_minute must allow one full batch ({EVENT_BATCH_LIMIT} events)"
            )));
        }
        self.tax_rates().map_err(ConfigError::Invalid)?;
        match self.payment_provider.as_str() {
            "test" => {}
            "stripe" if self.stripe_secret_key.is_some() => {}
            "stripe" => return invalid("payment_provider = stripe needs VERGE_STRIPE_SECRET_KEY"),
            other => {
                return Err(ConfigError::Invalid(format!(
                    "payment_provider must be `test` or `stripe`, not `{other}`"
                )));
            }
        }
        if self.low_stock_threshold < 0 {
            return invalid("low_stock_threshold must not be negative");
        }
        if let Some(url) = &self.database_url
            && !url.expose_secret().starts_with("postgres")
        {
            return invalid("DATABASE_URL must be a postgres:// or postgresql:// URL");
        }
        Ok(())
    }

    /// [`Config::tax_rates`] parsed: region (`DE`, `US-CA`) → basis points (1900 = 19 %).
    pub fn tax_rates(&self) -> Result<std::collections::BTreeMap<String, i64>, String> {
        let mut rates = std::collections::BTreeMap::new();
        for entry in self.tax_rates.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || format!("tax_rates: `{entry}` is not REGION=PERCENT (`DE=19`, `US-CA=7.25`)");
            let (region, percent) = entry.split_once('=').ok_or_else(bad)?;
            let region = region.trim();
            let valid_region = region.split('-').enumerate().all(|(i, part)| {
                (if i == 0 { part.len() == 2 } else { (1..=3).contains(&part.len()) })
                    && part.bytes().all(|b| b.is_ascii_uppercase() || (i > 0 && b.is_ascii_digit()))
            }) && region.split('-').count() <= 2;
            let (whole, fraction) = percent.trim().split_once('.').unwrap_or((percent.trim(), ""));
            if !valid_region
                || whole.is_empty()
                || fraction.len() > 2
                || !(whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()))
            {
                return Err(bad());
            }
            let bp = whole.parse::<i64>().map_err(|_| bad())? * 100
                + format!("{fraction:0<2}").parse::<i64>().map_err(|_| bad())?;
            if bp > 10_000 {
                return Err(bad());
            }
            rates.insert(region.to_owned(), bp);
        }
        Ok(rates)
    }

    pub fn payment_breaker_cooldown(&self) -> Duration {
        Duration::from_millis(self.payment_breaker_cooldown_ms.max(1))
    }

    /// See [`Config::links_default_domain`].
    pub fn default_link_domain(&self) -> &str {
        self.links_default_domain.as_deref().unwrap_or("localhost")
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn autocomplete_trending_interval(&self) -> Duration {
        Duration::from_millis(self.autocomplete_trending_interval_ms.max(100))
    }

    pub fn catalog_clock_interval(&self) -> Duration {
        Duration::from_millis(self.catalog_clock_interval_ms.max(50))
    }

    pub fn job_poll_interval(&self) -> Duration {
        Duration::from_millis(self.job_poll_interval_ms.max(10))
    }

    pub fn ratelimit_alert_interval(&self) -> Duration {
        Duration::from_millis(self.ratelimit_alert_interval_ms.max(10))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return its own large error
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_secrets() {
        let config = Config {
            database_url: Some("postgres://verge:hunter2@db/verge".into()),
            admin_key: Some("a-very-long-admin-key-that-must-not-print".into()),
            ..Config::default()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("must-not-print"), "{printed}");
    }

    #[test]
    fn toml_file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("verge.toml", "body_limit_bytes = 2048\nrequest_timeout_ms = 5\n")?;
            jail.set_env("VERGE_REQUEST_TIMEOUT_MS", "7000");
            let config = Config::load(Some(Path::new("verge.toml"))).expect("loads");
            assert_eq!(config.body_limit_bytes, 2048);
            assert_eq!(config.request_timeout(), Duration::from_secs(7));
            Ok(())
        });
    }

    #[test]
    fn rejects_weak_admin_key_and_foreign_database() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("VERGE_ADMIN_KEY", "short");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("at least 32"), "{err}");
            jail.set_env("VERGE_ADMIN_KEY", "k".repeat(40));
            jail.set_env("DATABASE_URL", "mysql://x");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("postgres"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/verge.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile { .. }));
    }
}
