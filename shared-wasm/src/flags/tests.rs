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
