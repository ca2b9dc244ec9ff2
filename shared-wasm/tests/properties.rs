//! Property tests over what reaches `verge-shared` from outside: flagd documents and
//! evaluation contexts (from operators and from any OFREP client), and the KV records an
//! edge decodes. Whatever the input, nothing panics, and each call ends within a bounded
//! time: the case counts are fixed, and an evaluation case must finish within 2 s.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use verge_shared::flags::FlagSet;
use verge_shared::kv::Manifest;
use verge_shared::links::password::PasswordHash;
use verge_shared::links::{DomainRecord, LinkRecord};
use verge_shared::settings::EdgeSettings;

/// Any JSON value, nested a few levels, with keys and strings drawn from what JsonLogic
/// and flagd use, so generated rules often hold real operators.
fn json_value() -> impl Strategy<Value = Value> {
    let words = prop::sample::select(vec![
        "var",
        "if",
        "==",
        "!=",
        "<",
        "in",
        "and",
        "or",
        "!",
        "+",
        "-",
        "*",
        "/",
        "%",
        "min",
        "max",
        "cat",
        "substr",
        "map",
        "filter",
        "reduce",
        "some",
        "all",
        "none",
        "merge",
        "missing",
        "missing_some",
        "fractional",
        "sem_ver",
        "starts_with",
        "ends_with",
        "$ref",
        "targetingKey",
        "on",
        "off",
        "flags",
        "state",
        "ENABLED",
        "variants",
        "defaultVariant",
        "targeting",
        "$evaluators",
        "email",
        "1.2.3",
        "",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        words.clone().prop_map(|w| Value::String(w.to_owned())),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((words.clone(), inner), 0..4)
                .prop_map(|entries| Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// A flag whose targeting is an arbitrary rule, in a set whose evaluators are arbitrary too.
fn flag_set() -> impl Strategy<Value = Value> {
    (json_value(), json_value(), json_value()).prop_map(|(targeting, evaluator, variant)| {
        json!({
            "flags": {
                "f": {"state": "ENABLED", "variants": {"on": variant, "off": false}, "defaultVariant": "off",
                      "targeting": targeting},
                "g": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                      "targeting": {"if": [{"$ref": "e"}, "b", "a"]}},
            },
            "$evaluators": {"e": evaluator},
        })
    })
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 512, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_flag_set_loads_or_is_refused_and_evaluates_without_panicking(
        set in flag_set(),
        context in json_value(),
        now in any::<u64>(),
    ) {
        let started = Instant::now();
        let context = match context {
            Value::Object(map) => Value::Object(map),
            other => { let mut map = Map::new(); map.insert("targetingKey".into(), other); Value::Object(map) }
        };
        if let Ok(flags) = FlagSet::from_value(&set) {
            for key in ["f", "g", "missing"] {
                let resolution = flags.evaluate(key, None, &context, now);
                // Every answer is a value or a reason why not.
                prop_assert!(resolution.value.is_some() || resolution.error.is_some() || resolution.variant.is_none());
            }
        }
        prop_assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }

    #[test]
    fn any_text_as_a_flag_set_is_parsed_or_refused(text in ".{0,400}") {
        let _ = FlagSet::parse(&text);
    }

    #[test]
    fn kv_records_decode_or_refuse_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = Manifest::decode(&bytes);
        let _ = LinkRecord::decode(&bytes);
        let _ = DomainRecord::decode(&bytes);
        let _ = EdgeSettings::decode(&bytes);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = PasswordHash::decode(text);
        }
    }

    #[test]
    fn kv_records_decode_or_refuse_near_misses(line in "[a-z0-9_/=:,. \\n$-]{0,300}") {
        // Text close to the real formats reaches deeper into the decoders than random bytes.
        for prefix in ["verge-link 1\nid=", "verge-link-domain 1\n", "\u{1}snapshot ", "verge-edge-settings 1\n",
                       "argon2id$m=", "pbkdf2-sha256$"] {
            let text = format!("{prefix}{line}");
            let _ = Manifest::decode(text.as_bytes());
            let _ = LinkRecord::decode(text.as_bytes());
            let _ = DomainRecord::decode(text.as_bytes());
            let _ = EdgeSettings::decode(text.as_bytes());
            if let Some(hash) = PasswordHash::decode(&text) {
                // A decoded hash has bounded parameters, so verifying costs bounded work.
                let _ = hash.verify("x");
            }
        }
    }
}

#[test]
fn records_round_trip_through_their_encodings() {
    let mut manifest = Manifest { snapshot: 7, datasets: Vec::new() };
    manifest.set("flags/web/prod", 3, "abc");
    assert_eq!(Manifest::decode(&manifest.encode()).unwrap(), manifest);
    let settings = EdgeSettings::default();
    assert_eq!(EdgeSettings::decode(&settings.encode()).unwrap(), settings);
}
