//! Fastly Compute entry for the Verge edge application.
//!
//! A thin adapter: it implements the edge host trait over a Fastly KV store and
//! `send_async`, and hands every request to `verge-edge`. No handler logic lives here.
//! The platform wiring lands with the edge-runtime issue; until then this crate only pins
//! its place in the workspace and its wasm32-wasip1 build.
