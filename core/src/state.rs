//! What every handler can reach: the database, the cache, the configuration and the
//! publisher.
//!
//! It lives below the domain modules, not in `server.rs`: the server assembles the
//! domains' routes, and the domains need only the state, so dependencies point one way.

use std::sync::Arc;

use crate::cache::Cache;
use crate::config::Config;
use crate::db::Database;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::tally::Tally;

/// Cloned for every request by each layer and extractor that takes it, so it is one
/// pointer: a clone is one reference count, not one per field.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub(crate) fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Debug)]
pub struct Shared {
    pub db: Database,
    pub cache: Cache,
    pub config: Arc<Config>,
    /// Wake it after committing a write that enqueued outbox rows.
    pub publisher: Arc<Publisher>,
    /// Statistics counted in process and flushed to `cache` (rate-limit decisions).
    pub(crate) tally: Tally,
    /// Wakes this process's job worker when a write enqueued jobs (`jobs::wake`).
    pub(crate) job_signal: Arc<tokio::sync::Notify>,
    /// The payment provider orders are charged through (behind its circuit breaker).
    pub(crate) payments: Arc<dyn crate::orders::payments::PaymentProvider>,
    /// Order ids whose timeline this process just extended, for live event streams.
    pub(crate) orders_changed: tokio::sync::broadcast::Sender<String>,
    /// This process's Prometheus series, served at `/metrics`.
    pub(crate) metrics: Arc<Metrics>,
}
