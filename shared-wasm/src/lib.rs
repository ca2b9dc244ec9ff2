//! Verge's pure domain logic, compiled natively for the core and to wasm for the edges.
//!
//! Everything here is deterministic: no I/O, no clock, no randomness. Callers pass time and
//! random bytes in, so a flag evaluates, a limit decides and a token verifies the same way
//! at every edge and in the core. Keep dependencies few and wasm-friendly (no C, no tokio).

pub mod autocomplete;
pub mod catalog;
pub mod flags;
pub mod gcra;
pub mod ids;
pub mod kv;
pub mod links;
pub mod ratelimit;
pub mod sessions;
pub mod settings;
pub mod text;
pub mod time;

/// Lower-case hex SHA-256 of `data`: content hashes, ETags, and how secrets are known.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    links::hex(&Sha256::digest(data))
}
