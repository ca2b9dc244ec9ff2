//! Flag evaluation, native: one flag with targeting, and a bulk evaluation of 50 flags
//! (what an OFREP bulk request does), over a set shaped like real ones: a shared segment
//! by `$ref`, a percentage rollout by `fractional`, a version gate by `sem_ver`.

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use verge_shared::flags::{FlagSet, FlagType};

fn flag_set() -> FlagSet {
    let mut flags = Map::new();
    for i in 0..50 {
        flags.insert(
            format!("feature-{i}"),
            json!({
                "state": "ENABLED",
                "variants": {"on": true, "off": false},
                "defaultVariant": "off",
                "targeting": {"if": [
                    {"$ref": "staff"}, "on",
                    {"sem_ver": [{"var": "appVersion"}, "<", "2.0.0"]}, "off",
                    {"fractional": [["on", 20], ["off", 80]]}
                ]}
            }),
        );
    }
    let set = json!({
        "flags": flags,
        "$evaluators": {"staff": {"in": [{"var": "plan"}, ["internal", "staff"]]}}
    });
    FlagSet::from_value(&set).expect("a valid set")
}

fn context() -> Value {
    json!({"targetingKey": "user-4711", "plan": "pro", "appVersion": "2.3.1", "email": "a@example.com"})
}

fn evaluation(c: &mut Criterion) {
    let flags = flag_set();
    let context = context();
    c.bench_function("one flag with targeting", |b| {
        b.iter(|| flags.evaluate(std::hint::black_box("feature-7"), Some(FlagType::Boolean), &context, 1_700_000_000))
    });
    c.bench_function("bulk of 50 flags", |b| {
        b.iter(|| {
            flags
                .keys()
                .map(|key| flags.evaluate(key, None, &context, 1_700_000_000))
                .filter(|r| r.value.is_some())
                .count()
        })
    });
    let text = serde_json::to_string(&json!({"flags": {}})).unwrap();
    c.bench_function("read an empty set", |b| b.iter(|| FlagSet::parse(std::hint::black_box(&text))));
}

criterion_group!(benches, evaluation);
criterion_main!(benches);
