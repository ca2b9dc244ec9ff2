//! Rate-limit counters on Workers: a Durable Object per counter, so a count is exact across
//! every isolate and colo (one object instance holds it, and runs one request at a time).
//!
//! The edge names counters `<expires-at>:<hash>:<window>`; the object is chosen by the
//! hash, so both windows a sliding window reads live in one object and one call each. The
//! object keeps counts in memory, which Cloudflare keeps while the object is in use; an
//! object evicted when idle has nothing left worth counting. Binding `VERGE_COUNTERS`,
//! class `RateCounters` (see wrangler.toml).

use std::cell::RefCell;
use std::collections::HashMap;

use verge_edge::HostError;
use worker::{DurableObject, Env, Request, Response, State, durable_object};

/// The Durable Object binding in wrangler.toml.
pub(crate) const BINDING: &str = "VERGE_COUNTERS";

/// Adds `delta` to counter `key` and returns the new value, through its object.
pub(crate) async fn add(env: &Env, key: &str, delta: i64) -> Result<i64, HostError> {
    let fail = |err: worker::Error| HostError(format!("counter `{key}`: {err}"));
    let shard = key.split(':').nth(1).unwrap_or(key);
    let stub =
        env.durable_object(BINDING).map_err(fail)?.id_from_name(shard).map_err(fail)?.get_stub().map_err(fail)?;
    let mut response = stub.fetch_with_str(&format!("https://counters/{delta}/{key}")).await.map_err(fail)?;
    let text = response.text().await.map_err(fail)?;
    text.parse().map_err(|_| HostError(format!("counter `{key}`: the object answered `{text}`")))
}

#[durable_object(fetch)]
#[derive(Debug)]
pub struct RateCounters {
    /// Counter → value; names carry their expiry, swept as the map doubles.
    counts: RefCell<HashMap<String, i64>>,
    swept_at: RefCell<usize>,
}

impl DurableObject for RateCounters {
    fn new(_state: State, _env: Env) -> Self {
        RateCounters { counts: RefCell::default(), swept_at: RefCell::new(0) }
    }

    async fn fetch(&self, request: Request) -> worker::Result<Response> {
        let url = request.url()?;
        let mut parts = url.path().trim_start_matches('/').splitn(2, '/');
        let (Some(delta), Some(key)) = (parts.next().and_then(|d| d.parse::<i64>().ok()), parts.next()) else {
            return Response::error("expected /{delta}/{counter}", 400);
        };
        let now_secs = worker::Date::now().as_millis() / 1000;
        let mut counts = self.counts.borrow_mut();
        let mut swept_at = self.swept_at.borrow_mut();
        if !counts.contains_key(key) && counts.len() >= (*swept_at * 2).max(1024) {
            counts.retain(|name, _| expires_at(name).is_some_and(|at| at > now_secs));
            *swept_at = counts.len();
        }
        let value = counts.entry(key.to_owned()).or_default();
        *value = value.saturating_add(delta);
        Response::ok(value.to_string())
    }
}

fn expires_at(name: &str) -> Option<u64> {
    name.split_once(':')?.0.parse().ok()
}
