//! The Verge edge application: one router and its handlers, shared by every CDN platform.
//!
//! Handlers are written against a small [`Host`] trait (KV get, time, client address,
//! events sent after the response) so that Spin, Cloudflare Workers and Fastly Compute
//! each only implement that trait in a thin entry crate under `deploy/`. Decisions
//! themselves come from `verge-shared`, so the edge and the core agree.

#[cfg(any(test, all(target_family = "wasm", not(target_feature = "atomics"))))]
mod alloc;
mod attempts;
mod autocomplete;
pub mod body;
mod catalog;
pub mod client;
pub mod events;
mod flags;
pub mod host;
mod json;
mod links;
mod manifest;
pub mod problem;
mod ratelimit;
mod request;
mod router;
mod sessions;
mod settings;
#[cfg(all(target_os = "wasi", target_env = "p2"))]
mod spin;

/// Small blocks from free lists per size class; see `alloc` for why.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: alloc::SizeClasses<std::alloc::System> = alloc::SizeClasses::new(std::alloc::System);

pub use events::Events;
pub use host::{Client, Host, HostError};
pub use router::{Body, handle};
