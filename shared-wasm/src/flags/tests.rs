use serde_json::{Value, json};

use super::*;

fn set(flags: Value) -> FlagSet {
    FlagSet::from_value(
        &json!({"flags": flags, "$evaluators": {"staff": {"ends_with": [{"var": "email"}, "@verge.dev"]}}}),
    )
    .unwrap()
}

#[test]
fn targeting_refs_and_reasons() {
    let flags = set(json!({
        "beta": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                 "targeting": {"if": [{"$ref": "staff"}, "on"]}},
        "off": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"},
    }));
    let staff = flags.evaluate("beta", Some(FlagType::Boolean), &(json!({"email": "a@verge.dev"})), 0);
    assert_eq!((staff.value, staff.reason), (Some(json!(true)), Reason::TargetingMatch));
    let other = flags.evaluate("beta", Some(FlagType::Boolean), &(json!({"email": "a@b.c"})), 0);
    assert_eq!(
        (other.value, other.variant.as_deref(), other.reason),
        (Some(json!(false)), Some("off"), Reason::Default)
    );
    assert_eq!(flags.evaluate("off", None, &json!({}), 0).reason, Reason::Disabled);
    let mismatch = flags.evaluate("beta", Some(FlagType::String), &json!({}), 0);
    assert_eq!(mismatch.error.map(|e| e.0), Some(ErrorCode::TypeMismatch));
    assert_eq!(flags.evaluate("nope", None, &json!({}), 0).error.map(|e| e.0), Some(ErrorCode::FlagNotFound));
}

#[test]
fn broken_flags_are_reported_with_their_place_and_do_not_sink_the_set() {
    let flags = set(json!({
        "bad": {"state": "ENABLED", "variants": {"a": 1}, "targeting": {"if": [{"nope": []}, "a"]}},
        "good": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"},
    }));
    let problems = flags.problems();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].1.pointer, "/flags/bad/targeting/if/0");
    assert_eq!(flags.evaluate("bad", None, &json!({}), 0).error.map(|e| e.0), Some(ErrorCode::ParseError));
    assert_eq!(flags.evaluate("good", None, &json!({}), 0).value, Some(json!(1)));
    let shape = FlagSet::from_value(&json!({"flags": {"x": {"state": "ON", "variants": {"a": 1}}}})).unwrap_err();
    assert_eq!(shape.0.pointer, "/flags/x/state");
}

fn boolean_flag(targeting: Value) -> Value {
    json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": targeting})
}

#[test]
fn ref_fan_out_is_refused_before_it_expands() {
    // Each evaluator names the next twice: 2^15 copies of the leaf if expanded naively,
    // with `$ref`s nesting no deeper than allowed.
    let mut evaluators = serde_json::Map::new();
    for level in 0..15 {
        let next = json!({"$ref": format!("e{}", level + 1)});
        evaluators.insert(format!("e{level}"), json!({"or": [next.clone(), next]}));
    }
    evaluators.insert("e15".into(), json!({"==": [1, 1]}));
    let document = json!({"flags": {"bomb": boolean_flag(json!({"if": [{"$ref": "e0"}, "on"]}))},
                          "$evaluators": evaluators});
    let started = std::time::Instant::now();
    let flags = FlagSet::from_value(&document).unwrap();
    let problems = flags.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].1.message.contains("10000 JSON nodes"), "{}", problems[0].1.message);
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "refused early, not after expanding");
}

#[test]
fn deep_nesting_is_refused_with_its_place() {
    let mut rule = json!({"var": "x"});
    for _ in 0..100 {
        rule = json!({"!": [rule]});
    }
    let flags = FlagSet::from_value(&json!({"flags": {"deep": boolean_flag(rule)}})).unwrap();
    let problems = flags.problems();
    assert!(problems[0].1.message.contains("more than 64 levels"), "{problems:?}");
    assert!(problems[0].1.pointer.starts_with("/flags/deep/targeting"));
}

#[test]
fn a_whole_set_is_bounded_as_well_as_each_flag() {
    // About 6,400 nodes per flag, within the per-flag bound; 200 flags pass the set's.
    let wide: Vec<Value> = (0..1_600).map(|i| json!({"==": [i, 1]})).collect();
    let flags: serde_json::Map<String, Value> =
        (0..200).map(|i| (format!("f{i}"), boolean_flag(json!({"or": [{"$ref": "wide"}]})))).collect();
    let document = json!({"flags": flags, "$evaluators": {"wide": {"or": wide}}});
    let Err(err) = FlagSet::from_value(&document) else { panic!("a set over the bound was accepted") };
    assert!(err.0.message.contains("1000000 JSON nodes"), "{err}");
}

#[test]
fn evaluation_work_is_bounded_for_any_context() {
    // A rule within bounds, but `some` within `some` within `some` over 1,000 items each:
    // a billion steps unless evaluation is bounded too.
    let items: Vec<Value> = (0..1_000).map(Value::from).collect();
    let innermost = json!({"some": [items, false]});
    let middle = json!({"some": [items, innermost]});
    let rule = json!({"if": [{"some": [items, middle]}, "on"]});
    let flags = FlagSet::from_value(&json!({"flags": {"slow": boolean_flag(rule)}})).unwrap();
    assert!(flags.problems().is_empty());
    let started = std::time::Instant::now();
    let slow = flags.evaluate("slow", None, &json!({}), 0);
    assert_eq!(slow.error.map(|e| e.0), Some(ErrorCode::General));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn arithmetic_at_the_extremes_has_a_defined_result() {
    let substr = |start: f64, count: f64| {
        let rule = json!({"if": [{"==": [{"substr": ["verge", start, count]}, "ve"]}, "on"]});
        let flags = FlagSet::from_value(&json!({"flags": {"s": boolean_flag(rule)}})).unwrap();
        flags.evaluate("s", None, &json!({}), 0).variant
    };
    assert_eq!(substr(0.0, 2.0).as_deref(), Some("on"));
    for (start, count) in [(-9.2e18, 9.2e18), (9.2e18, -9.2e18), (-1e300, -1e300), (1e300, 1e300), (-9.2e18, -9.2e18)] {
        assert_eq!(substr(start, count).as_deref(), Some("off"), "substr({start}, {count})");
    }
    // Weights whose sum passes u64: no bucket, so the default variant, as for weights of 0.
    let rule = json!({"fractional": [["on", 1.8e19], ["off", 1.8e19]]});
    let flags = FlagSet::from_value(&json!({"flags": {"f": boolean_flag(rule)}})).unwrap();
    let resolution = flags.evaluate("f", None, &json!({"targetingKey": "u"}), 0);
    assert_eq!((resolution.variant.as_deref(), resolution.reason), (Some("off"), Reason::Default));
}
