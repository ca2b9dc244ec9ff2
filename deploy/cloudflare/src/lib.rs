//! Cloudflare Workers entry for the Verge edge application.
//!
//! A thin adapter: it implements the edge host trait over a Workers KV binding and
//! `wait_until`, and hands every request to `verge-edge`. No handler logic lives here.
//! The platform wiring lands with the edge-runtime issue; until then this crate only pins
//! its place in the workspace and its wasm32-unknown-unknown build.
