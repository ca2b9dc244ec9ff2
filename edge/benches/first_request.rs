//! The first single-flag OFREP request on a fresh edge instance, on a 50-flag and on a
//! 5,000-flag environment: with each flag's own record (what the core publishes), and
//! without (the whole set parsed, as before flags had records). Goal: with records, the
//! 5,000-flag request costs at most 2x the 50-flag one.
//!
//! A fresh instance has nothing parsed; here every iteration sees a new version of the
//! dataset, so no cache of the edge's applies. `cargo bench -p verge-edge --bench first_request`.

use std::cell::Cell;
use std::collections::HashMap;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{Method, Request, header};
use serde_json::{Value, json};
use verge_edge::{Client, Host, HostError};
use verge_shared::kv::{MANIFEST_KEY, Manifest};

const DATASET: &str = "flags/bench/prod";

/// KV holding one environment's parts for whatever version the manifest names.
struct BenchHost {
    parts: HashMap<String, Vec<u8>>,
    client_key: String,
    version: Cell<u64>,
}

impl Host for BenchHost {
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        if key == MANIFEST_KEY {
            let mut manifest = Manifest { snapshot: self.version.get(), datasets: Vec::new() };
            manifest.set(DATASET, self.version.get(), "h");
            return Ok(Some(manifest.encode()));
        }
        if key == self.client_key {
            return Ok(Some(DATASET.as_bytes().to_vec()));
        }
        let prefix = format!("{DATASET}/v{}/", self.version.get());
        Ok(key.strip_prefix(&prefix).and_then(|part| self.parts.get(part)).cloned())
    }
    async fn counter_add(&self, _key: &str, delta: i64) -> Result<i64, HostError> {
        Ok(delta)
    }
    fn now_millis(&self) -> u64 {
        1_800_000_000_000
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

/// `count` flags, each a 50/50 rollout with a targeting rule, as a flagd document.
fn document(count: usize) -> Value {
    let flags: serde_json::Map<String, Value> = (0..count)
        .map(|i| {
            let flag = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "targeting": {"if": [{"ends_with": [{"var": "email"}, "@verge.dev"]}, "on",
                                     {"fractional": [["on", 50], ["off", 50]]}]}});
            (format!("flag-{i}"), flag)
        })
        .collect();
    json!({"flags": flags})
}

fn host(count: usize, with_records: bool) -> BenchHost {
    let document = document(count);
    let mut parts = HashMap::from([("flagd".to_owned(), document.to_string().into_bytes())]);
    if with_records {
        parts.extend(verge_shared::flags::per_flag_documents(&document));
    }
    let client_key = format!("flagkeys/{}", verge_shared::flags::client_key_hash("fck_bench"));
    BenchHost { parts, client_key, version: Cell::new(0) }
}

fn first_request(c: &mut Criterion) {
    let mut group = c.benchmark_group("first single-flag request");
    for with_records in [true, false] {
        for count in [50, 5000] {
            let host = host(count, with_records);
            let label = if with_records { "flag records" } else { "whole set" };
            group.bench_with_input(BenchmarkId::new(label, count), &count, |b, _| {
                b.iter(|| {
                    host.version.set(host.version.get() + 1);
                    let request = Request::builder()
                        .method(Method::POST)
                        .uri("/ofrep/v1/evaluate/flags/flag-7")
                        .header(header::AUTHORIZATION, "Bearer fck_bench")
                        .body(br#"{"context": {"targetingKey": "u1", "email": "a@b.c"}}"#.to_vec())
                        .unwrap();
                    let response = futures_executor::block_on(verge_edge::handle(&host, request));
                    assert_eq!(response.status(), 200);
                    response
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, first_request);
criterion_main!(benches);
