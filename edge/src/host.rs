//! What the edge application needs from a platform, and nothing more.
//!
//! Spin, Cloudflare Workers and Fastly Compute each implement [`Host`] in a thin entry
//! crate. The trait is generic rather than `dyn` (wasm is single-threaded and one
//! platform is compiled in), so calls inline and futures need not be `Send`.

use std::future::Future;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "edge host: {}", self.0)
    }
}

impl std::error::Error for HostError {}

/// Who is asking, as the platform reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    pub ip: Option<IpAddr>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<[u8; 2]>,
}

pub trait Host {
    /// Reads one key of the edge KV store.
    fn kv_get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, HostError>>;
    /// Adds `delta` to the rate-limit counter `key` and returns its new value (a missing
    /// counter starts at zero), atomically across every instance the platform's counter
    /// store serves. Counters never live in edge KV. Names follow
    /// `<expires-at unix seconds>:<name>` so a store may forget them after that.
    fn counter_add(&self, key: &str, delta: i64) -> impl Future<Output = Result<i64, HostError>>;
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
    fn client(&self) -> Client;
    /// Fills `buf` from the platform's cryptographically secure random source.
    fn fill_random(&self, buf: &mut [u8]);
    /// Hands a batch of events (JSON) to the platform to send to the core after the
    /// response is written (`wait_until`, `send_async`); never awaited on the hot path.
    fn send_after_response(&self, batch: Vec<u8>);
    /// False when this edge is known not to report (no core configured), so handlers need
    /// not build events at all.
    fn reports_events(&self) -> bool {
        true
    }
}
