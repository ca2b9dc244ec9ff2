//! What validating a session costs inside wasm, against a bare Ed25519 verification in the
//! same program and runtime (the goal: validation <= 1.3x the bare verify, and far
//! below it once the instance has verified the token before).
//!
//! Each validation is a whole request through `verge_edge::handle`: routing, the bearer
//! header, the key set from KV, PASETO parsing and verification, the claims, the time and
//! the two revocation records, and the JSON answer. KV is in memory, so the host's own
//! costs (which the platform bills apart) are left out. Uncached rounds use tokens this
//! instance has never seen; cached rounds repeat the first round's tokens.
//!
//! `scripts/bench-sessions` builds it for wasm32-wasip1 (the size-optimised profile that
//! ships) and runs it under Node's WASI (V8, as Cloudflare Workers run it).

use std::collections::HashMap;
use std::time::Instant;

use ed25519_dalek::{Signature, Signer, SigningKey};
use http::{Method, Request, header};
use verge_edge::{Client, Host, HostError};
use verge_shared::kv::{MANIFEST_KEY, Manifest, versioned_key};
use verge_shared::sessions::{Claims, KEYS_DATASET, KEYS_PART, KeySet, PublicKey, footer, paseto};

const NOW_MS: u64 = 1_800_000_000_000;
const PER_ROUND: usize = 500;
const ROUNDS: usize = 5;

struct BenchHost {
    kv: HashMap<String, Vec<u8>>,
}

impl Host for BenchHost {
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self.kv.get(key).cloned())
    }
    async fn counter_add(&self, _key: &str, delta: i64) -> Result<i64, HostError> {
        Ok(delta)
    }
    fn now_millis(&self) -> u64 {
        NOW_MS
    }
    fn client(&self) -> Client {
        Client::default()
    }
    fn fill_random(&self, buf: &mut [u8]) {
        buf.fill(7);
    }
    fn send_after_response(&self, _batch: Vec<u8>) {}
    fn reports_events(&self) -> bool {
        false
    }
}

fn validate(host: &BenchHost, token: &str) {
    let request = Request::builder()
        .method(Method::GET)
        .uri("/sessions/v1/validate")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Vec::new())
        .expect("a valid request");
    let response = futures_executor::block_on(verge_edge::handle(host, request));
    assert_eq!(response.status(), 200, "{}", String::from_utf8_lossy(response.body()));
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

#[allow(clippy::print_stdout)]
fn main() {
    let secret = [5u8; 32];
    let public = paseto::public_key(&secret);
    let kid = paseto::paserk_pid(&public);
    let set = KeySet::new(vec![PublicKey { kid: kid.clone(), key: public, retires_at_ms: None }]).expect("a key set");
    let mut manifest = Manifest { snapshot: 1, datasets: Vec::new() };
    manifest.set(KEYS_DATASET, 1, "h");
    let host = BenchHost {
        kv: HashMap::from([
            (MANIFEST_KEY.to_owned(), manifest.encode()),
            (versioned_key(KEYS_DATASET, 1, KEYS_PART), set.encode()),
        ]),
    };
    let token = |n: usize| {
        let claims = Claims {
            subject: format!("cus_01m90c75f5p3wv8wbwnr{n:06}"),
            session_id: format!("ses_01m90c75f5p3wv8wbwnr{n:06}"),
            project: "shop".into(),
            issued_at_ms: NOW_MS as i64 - 1000,
            expires_at_ms: NOW_MS as i64 + 600_000,
            email_verified: true,
            locale: None,
        };
        paseto::sign(&secret, claims.to_json().as_bytes(), footer(&kid).as_bytes(), b"")
    };
    let tokens: Vec<Vec<String>> =
        (0..ROUNDS).map(|r| (0..PER_ROUND).map(|i| token(r * PER_ROUND + i)).collect()).collect();

    // The bare verification: Ed25519 (verify_strict, as the edge uses) over a message of
    // the size a token's pre-authentication encoding has.
    let signing = SigningKey::from_bytes(&secret);
    let message = paseto::pae(&[paseto::HEADER.as_bytes(), token(0).as_bytes(), footer(&kid).as_bytes(), b""]);
    let signature: Signature = signing.sign(&message);
    let verifying = signing.verifying_key();
    let mut bare = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..PER_ROUND {
            verifying.verify_strict(std::hint::black_box(&message), &signature).expect("it verifies");
        }
        bare.push(started.elapsed().as_nanos() as f64 / PER_ROUND as f64);
    }
    let mut uncached = Vec::new();
    for round in &tokens {
        let started = Instant::now();
        for token in round {
            validate(&host, token);
        }
        uncached.push(started.elapsed().as_nanos() as f64 / PER_ROUND as f64);
    }
    let mut cached = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for token in &tokens[ROUNDS - 1] {
            validate(&host, token);
        }
        cached.push(started.elapsed().as_nanos() as f64 / PER_ROUND as f64);
    }
    let (bare, uncached, cached) = (median(bare), median(uncached), median(cached));
    println!("bare Ed25519 verify            {:>9.1} us", bare / 1000.0);
    println!("validation, first sight        {:>9.1} us  {:.2}x the bare verify", uncached / 1000.0, uncached / bare);
    println!("validation, verified before    {:>9.1} us  {:.3}x the bare verify", cached / 1000.0, cached / bare);
}
