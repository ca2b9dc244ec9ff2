//! Cloudflare Workers entry for the Verge edge application.
//!
//! A thin adapter: it implements [`verge_edge::Host`] over the `VERGE_KV` Workers KV
//! binding, `ctx.wait_until` for event batches, `request.cf` for the country and
//! `CF-Connecting-IP` for the address, a Durable Object for rate-limit counters, and hands every request to [`verge_edge::handle`].
//! No handler logic lives here. Events go to `VERGE_CORE_URL` with the `VERGE_INGEST_KEY`
//! secret; without them the worker does not report.
//!
//! Built for `wasm32-unknown-unknown` by `worker-build` (see `wrangler.toml`); on other
//! targets the crate is empty so the workspace still builds natively.

#[cfg(target_arch = "wasm32")]
mod counters;
#[cfg(target_arch = "wasm32")]
mod worker_entry;
