//! Fastly Compute entry for the Verge edge application (`wasm32-wasip1`).
//!
//! A thin adapter: it implements [`verge_edge::Host`] over the `verge_kv` KV store, Fastly's
//! geolocation for the country, and `send_async` for event batches, and hands every
//! request to [`verge_edge::handle`]. No handler logic lives here.
//!
//! The client gets its response first (`send_to_client`); only then are the event batches
//! sent to the `core` backend and awaited, so reporting never delays an answer. The core's
//! ingest key comes from the `verge_secrets` secret store; without it the service does not
//! report. On other targets this binary is an empty `main`, so the workspace builds natively.

#[cfg(all(target_os = "wasi", target_env = "p1"))]
mod compute;

#[cfg(all(target_os = "wasi", target_env = "p1"))]
fn main() {
    compute::serve();
}

#[cfg(not(all(target_os = "wasi", target_env = "p1")))]
fn main() {}
