//! Local wasmtime host for the Verge edge component: `verge dev` and self-hosted PoPs.
//!
//! It runs the same Spin component that ships to a CDN, under wasmtime, over a durable
//! local edge store that the core's publisher writes. It depends on nothing of ours but
//! the edge KV layout, and keeps wasmtime out of every other crate's build. The host itself
//! lands with the edge-runtime issue.
