//! A flag set published flag by flag, so a single-flag evaluation reads one small record.
//!
//! Besides the whole flagd document (what bulk evaluations and exports read), each flag is
//! published as a document of its own: that flag, the shared `$evaluators` its targeting
//! names (transitively), and the set's `metadata`. An edge instance that has not parsed
//! the whole set answers a single-flag request from that record alone, so its first
//! request costs the same on a 5,000-flag environment as on a 50-flag one.

use serde_json::{Map, Value};

/// The part name of `key`'s own document: `flag/` and the key in hex, so any key is a
/// safe KV key on every platform.
pub fn flag_part(key: &str) -> String {
    let mut part = String::with_capacity(5 + 2 * key.len());
    part.push_str("flag/");
    part.push_str(&crate::links::hex(key.as_bytes()));
    part
}

/// Each flag of a flagd `document` as `(part name, document of its own)`; nothing for a
/// document without a `flags` object.
pub fn per_flag_documents(document: &Value) -> Vec<(String, Vec<u8>)> {
    let Some(flags) = document.get("flags").and_then(Value::as_object) else { return Vec::new() };
    let evaluators = document.get("$evaluators").and_then(Value::as_object);
    flags
        .iter()
        .map(|(key, flag)| {
            let mut own = Map::new();
            own.insert("flags".into(), Value::Object(Map::from_iter([(key.clone(), flag.clone())])));
            if let Some(evaluators) = evaluators {
                let mut used = Map::new();
                collect_refs(flag.get("targeting").unwrap_or(&Value::Null), evaluators, &mut used);
                if !used.is_empty() {
                    own.insert("$evaluators".into(), Value::Object(used));
                }
            }
            if let Some(metadata) = document.get("metadata") {
                own.insert("metadata".into(), metadata.clone());
            }
            (flag_part(key), Value::Object(own).to_string().into_bytes())
        })
        .collect()
}

/// Adds to `used` every evaluator `rule` names, and those they name in turn.
fn collect_refs(rule: &Value, evaluators: &Map<String, Value>, used: &mut Map<String, Value>) {
    match rule {
        Value::Object(map) => {
            if let (1, Some(Value::String(name))) = (map.len(), map.get("$ref")) {
                if let Some(target) = evaluators.get(name)
                    && !used.contains_key(name)
                {
                    used.insert(name.clone(), target.clone());
                    collect_refs(target, evaluators, used);
                }
                return;
            }
            map.values().for_each(|value| collect_refs(value, evaluators, used));
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, evaluators, used)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::flags::FlagSet;

    #[test]
    fn each_flag_evaluates_alike_from_its_own_document() {
        let document = json!({
            "flags": {
                "beta": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                         "targeting": {"if": [{"$ref": "staff"}, "on"]}},
                "plain": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"},
                "a/b c": {"state": "DISABLED", "variants": {"x": "y"}, "defaultVariant": "x"},
            },
            "$evaluators": {"staff": {"$ref": "inner"}, "inner": {"ends_with": [{"var": "email"}, "@verge.dev"]},
                            "unused": {"==": [1, 1]}},
            "metadata": {"team": "web"},
        });
        let whole = FlagSet::from_value(&document).unwrap();
        let parts = per_flag_documents(&document);
        assert_eq!(parts.len(), 3);
        for (part, bytes) in &parts {
            let own: Value = serde_json::from_slice(bytes).unwrap();
            let key = own["flags"].as_object().unwrap().keys().next().unwrap().clone();
            assert_eq!(part, &flag_part(&key));
            assert!(own["$evaluators"].get("unused").is_none(), "only what the flag names");
            let single = FlagSet::from_value(&own).unwrap();
            for context in [json!({"email": "a@verge.dev"}), json!({"email": "a@b.c"}), json!({})] {
                let (a, b) = (whole.evaluate(&key, None, &context, 0), single.evaluate(&key, None, &context, 0));
                assert_eq!(
                    (a.value, a.variant, a.reason, a.metadata),
                    (b.value, b.variant, b.reason, b.metadata),
                    "{key}"
                );
            }
        }
        assert_eq!(flag_part("a/b c"), "flag/612f622063");
    }
}
