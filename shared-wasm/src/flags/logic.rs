//! JsonLogic, as flagd uses it for targeting, with flagd's custom operators
//! (`fractional`, `sem_ver`, `starts_with`, `ends_with`).
//!
//! Rules are checked once when a flag set is loaded ([`check`]: every operator known,
//! every rule object a single operator), so evaluation never meets an unknown operator and
//! cannot fail: an operator given arguments it cannot use yields `null`, which targeting
//! treats as "no match" and answers with the default variant, as flagd does.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

use super::murmur3::murmur3_x86_32;
use super::semver;

const OPERATORS: &[&str] = &[
    "var",
    "missing",
    "missing_some",
    "if",
    "?:",
    "==",
    "===",
    "!=",
    "!==",
    "!",
    "!!",
    "or",
    "and",
    ">",
    ">=",
    "<",
    "<=",
    "max",
    "min",
    "+",
    "-",
    "*",
    "/",
    "%",
    "map",
    "filter",
    "reduce",
    "all",
    "none",
    "some",
    "merge",
    "in",
    "cat",
    "substr",
    "fractional",
    "sem_ver",
    "starts_with",
    "ends_with",
];

/// Where a rule is broken: a JSON pointer into the rule, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub pointer: String,
    pub message: String,
}

/// Checks that every operator in `rule` is known.
pub fn check(rule: &Value) -> Result<(), RuleError> {
    check_at(rule, String::new())
}

fn check_at(rule: &Value, pointer: String) -> Result<(), RuleError> {
    match rule {
        Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(i, item)| check_at(item, format!("{pointer}/{i}")))
        }
        Value::Object(map) => {
            let mut entries = map.iter();
            let (Some((operator, args)), None) = (entries.next(), entries.next()) else {
                return Err(RuleError {
                    pointer,
                    message: format!("a rule object holds exactly one operator, not {}", map.len()),
                });
            };
            if !OPERATORS.contains(&operator.as_str()) {
                return Err(RuleError { pointer, message: format!("unknown operator `{operator}`") });
            }
            check_at(args, format!("{pointer}/{}", operator.replace('~', "~0").replace('/', "~1")))
        }
        _ => Ok(()),
    }
}

/// What a rule reads: the evaluation context (or, inside `map` and friends, the current
/// element), and flagd's injected `$flagd` properties, kept apart so the context is built
/// once per request, not once per flag.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub(crate) data: &'a Value,
    pub(crate) flagd: &'a Value,
    /// Evaluation steps left. A rule is bounded in size, but `map`, `filter` and `reduce`
    /// over a context's arrays multiply its work; at zero every step yields `null` and the
    /// caller answers an error instead of spending unbounded CPU.
    pub(crate) fuel: &'a core::cell::Cell<u32>,
}

/// Evaluation steps one flag evaluation may take: far beyond any real targeting rule
/// (the flagd testbed's largest needs well under a thousand) and a few milliseconds at most.
pub(crate) const EVALUATION_STEPS: u32 = 100_000;

impl<'a> Scope<'a> {
    fn with(&self, data: &'a Value) -> Scope<'a> {
        Scope { data, ..*self }
    }
}

/// Evaluates `rule` in `scope`.
pub(crate) fn evaluate(rule: &Value, scope: &Scope<'_>) -> Value {
    let Some(left) = scope.fuel.get().checked_sub(1) else { return Value::Null };
    scope.fuel.set(left);
    match rule {
        Value::Object(map) if map.len() == 1 => {
            let (operator, args) = map.iter().next().expect("one entry");
            let args: Vec<&Value> = match args {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            apply(operator, &args, scope)
        }
        Value::Array(items) => Value::Array(items.iter().map(|item| evaluate(item, scope)).collect()),
        other => other.clone(),
    }
}

fn apply(operator: &str, args: &[&Value], scope: &Scope<'_>) -> Value {
    let arg = |i: usize| args.get(i).map_or(Value::Null, |rule| evaluate(rule, scope));
    match operator {
        "var" => var(&arg(0), args.get(1).map(|rule| evaluate(rule, scope)), scope),
        "missing" => missing(args, scope),
        "missing_some" => {
            let need = number(&arg(0)).unwrap_or(0.0) as usize;
            let keys = arg(1);
            let keys: Vec<Value> = keys.as_array().cloned().unwrap_or_default();
            let absent: Vec<Value> = keys.iter().filter(|key| var(key, None, scope).is_null()).cloned().collect();
            if keys.len() - absent.len() >= need { Value::Array(Vec::new()) } else { Value::Array(absent) }
        }
        "if" | "?:" => {
            let mut i = 0;
            while i + 1 < args.len() {
                if truthy(&evaluate(args[i], scope)) {
                    return evaluate(args[i + 1], scope);
                }
                i += 2;
            }
            if i < args.len() { evaluate(args[i], scope) } else { Value::Null }
        }
        "==" => Value::Bool(loose_equal(&arg(0), &arg(1))),
        "!=" => Value::Bool(!loose_equal(&arg(0), &arg(1))),
        "===" => Value::Bool(strict_equal(&arg(0), &arg(1))),
        "!==" => Value::Bool(!strict_equal(&arg(0), &arg(1))),
        "!" => Value::Bool(!truthy(&arg(0))),
        "!!" => Value::Bool(truthy(&arg(0))),
        "or" => {
            let mut last = Value::Null;
            for rule in args {
                last = evaluate(rule, scope);
                if truthy(&last) {
                    break;
                }
            }
            last
        }
        "and" => {
            let mut last = Value::Null;
            for rule in args {
                last = evaluate(rule, scope);
                if !truthy(&last) {
                    break;
                }
            }
            last
        }
        "<" | "<=" | ">" | ">=" => {
            let values: Vec<Value> = args.iter().map(|rule| evaluate(rule, scope)).collect();
            let holds = |a: &Value, b: &Value| match compare(a, b) {
                Some(order) => match operator {
                    "<" => order.is_lt(),
                    "<=" => order.is_le(),
                    ">" => order.is_gt(),
                    _ => order.is_ge(),
                },
                None => false,
            };
            // `{"<": [a, b, c]}` is "between" for `<` and `<=`.
            let pairs = if values.len() == 3 && operator.starts_with('<') { 2 } else { 1 };
            Value::Bool(values.len() > pairs && (0..pairs).all(|i| holds(&values[i], &values[i + 1])))
        }
        "max" | "min" => {
            let numbers: Option<Vec<f64>> = args.iter().map(|rule| number(&evaluate(rule, scope))).collect();
            match numbers {
                Some(numbers) if !numbers.is_empty() => {
                    let pick = if operator == "max" { f64::max } else { f64::min };
                    to_value(numbers.into_iter().reduce(pick).expect("not empty"))
                }
                _ => Value::Null,
            }
        }
        "+" | "*" => {
            let numbers: Option<Vec<f64>> = args.iter().map(|rule| number(&evaluate(rule, scope))).collect();
            match numbers {
                Some(numbers) => {
                    to_value(if operator == "+" { numbers.iter().sum() } else { numbers.iter().product() })
                }
                None => Value::Null,
            }
        }
        "-" => match (number(&arg(0)), args.len()) {
            (Some(a), 1) => to_value(-a),
            (Some(a), _) => number(&arg(1)).map_or(Value::Null, |b| to_value(a - b)),
            _ => Value::Null,
        },
        "/" | "%" => match (number(&arg(0)), number(&arg(1))) {
            (Some(_), Some(0.0)) => Value::Null,
            (Some(a), Some(b)) => to_value(if operator == "/" { a / b } else { a % b }),
            _ => Value::Null,
        },
        "map" | "filter" | "all" | "none" | "some" => {
            let items = arg(0);
            let items = items.as_array().cloned().unwrap_or_default();
            let Some(rule) = args.get(1) else { return Value::Null };
            match operator {
                "map" => Value::Array(items.iter().map(|item| evaluate(rule, &scope.with(item))).collect()),
                "filter" => {
                    Value::Array(items.into_iter().filter(|item| truthy(&evaluate(rule, &scope.with(item)))).collect())
                }
                "all" => Value::Bool(
                    !items.is_empty() && items.iter().all(|item| truthy(&evaluate(rule, &scope.with(item)))),
                ),
                "none" => Value::Bool(!items.iter().any(|item| truthy(&evaluate(rule, &scope.with(item))))),
                _ => Value::Bool(items.iter().any(|item| truthy(&evaluate(rule, &scope.with(item))))),
            }
        }
        "reduce" => {
            let items = arg(0);
            let Some(rule) = args.get(1) else { return Value::Null };
            let mut accumulator = arg(2);
            for item in items.as_array().cloned().unwrap_or_default() {
                let mut frame = Map::new();
                frame.insert("current".into(), item);
                frame.insert("accumulator".into(), accumulator);
                accumulator = evaluate(rule, &scope.with(&Value::Object(frame)));
            }
            accumulator
        }
        "merge" => {
            let mut merged = Vec::new();
            for rule in args {
                match evaluate(rule, scope) {
                    Value::Array(items) => merged.extend(items),
                    other => merged.push(other),
                }
            }
            Value::Array(merged)
        }
        "in" => match (arg(0), arg(1)) {
            (Value::String(needle), Value::String(haystack)) => Value::Bool(haystack.contains(&needle)),
            (needle, Value::Array(items)) => Value::Bool(items.iter().any(|item| strict_equal(item, &needle))),
            _ => Value::Bool(false),
        },
        "cat" => Value::String(args.iter().map(|rule| to_text(&evaluate(rule, scope))).collect::<Vec<_>>().concat()),
        "substr" => {
            let text: Vec<char> = to_text(&arg(0)).chars().collect();
            // Float-to-int casts saturate (NaN is 0) and the sums saturate, so any numbers
            // give a defined slice, as json-logic-js's clamping does.
            let len = text.len() as i64;
            let start = number(&arg(1)).unwrap_or(0.0) as i64;
            let start = if start < 0 { len.saturating_add(start).max(0) } else { start.min(len) };
            let end = match args.get(2).map(|rule| number(&evaluate(rule, scope))) {
                Some(Some(count)) if count < 0.0 => len.saturating_add(count as i64).max(start),
                Some(Some(count)) => start.saturating_add(count as i64).min(len),
                _ => len,
            };
            Value::String(text[start as usize..end.max(start) as usize].iter().collect())
        }
        "starts_with" | "ends_with" => match (args.len(), arg(0), arg(1)) {
            (2, Value::String(text), Value::String(affix)) => {
                Value::Bool(if operator == "starts_with" { text.starts_with(&affix) } else { text.ends_with(&affix) })
            }
            _ => Value::Null,
        },
        "sem_ver" => {
            if args.len() != 3 {
                return Value::Null;
            }
            match arg(1) {
                Value::String(op) => semver::compare(&arg(0), &op, &arg(2)).map_or(Value::Null, Value::Bool),
                _ => Value::Null,
            }
        }
        "fractional" => fractional(args, scope),
        _ => Value::Null,
    }
}

/// flagd's `fractional`: `[bucket key?, [variant, weight]…]`. Without a key, the flag key
/// and the targeting key are hashed. The current algorithm: MurmurHash3 x86 32-bit of the
/// key, scaled to the total weight with `(hash * total) >> 32`, then the first bucket whose
/// cumulative weight exceeds it. Weights below zero count as zero; a shorthand bucket
/// `[variant]` weighs 1.
fn fractional(args: &[&Value], scope: &Scope<'_>) -> Value {
    let (key, buckets) = match args.first().map(|rule| evaluate(rule, scope)) {
        Some(Value::Array(_)) | None => {
            // The default key, read in place: this runs for every percentage rollout.
            let mut key = String::with_capacity(64);
            for part in [lookup(scope.flagd, "flagKey"), lookup(scope.data, "targetingKey")] {
                match part {
                    Some(Value::String(text)) => key.push_str(text),
                    Some(other) => key.push_str(&to_text(other)),
                    None => {}
                }
            }
            (key, args)
        }
        Some(Value::String(key)) => (key, &args[1..]),
        Some(_) => return Value::Null,
    };
    let mut weighted: Vec<(Cow<'_, Value>, u64)> = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        // A bucket written as literals (`["on", 50]`, the usual form) is its own value;
        // anything else is evaluated first.
        let parts = match bucket {
            Value::Array(parts) if parts.iter().all(|part| !part.is_object() && !part.is_array()) => {
                Cow::Borrowed(parts)
            }
            _ => match evaluate(bucket, scope) {
                Value::Array(parts) => Cow::Owned(parts),
                _ => return Value::Null,
            },
        };
        let (variant, weight) = match &parts[..] {
            [_] => (0, 1u64),
            [_, weight] => (0, number(weight).map_or(0, |w| w.max(0.0) as u64)),
            _ => return Value::Null,
        };
        let variant = match parts {
            Cow::Borrowed(parts) => Cow::Borrowed(&parts[variant]),
            Cow::Owned(mut parts) => Cow::Owned(parts.swap_remove(variant)),
        };
        weighted.push((variant, weight));
    }
    // Weights summing past u64 have no bucket to scale into: no match, as for a total of 0.
    let total = weighted.iter().try_fold(0u64, |total, (_, weight)| total.checked_add(*weight));
    let Some(total @ 1..) = total else { return Value::Null };
    let hash = u64::from(murmur3_x86_32(key.as_bytes(), 0));
    let point = (u128::from(hash) * u128::from(total)) >> 32;
    let mut cumulative = 0u128;
    for (variant, weight) in weighted {
        cumulative += u128::from(weight);
        if point < cumulative {
            return variant.into_owned();
        }
    }
    Value::Null
}

/// The value at a dotted path (or index) under `root`, if there is one.
fn lookup<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    let mut current = root;
    for segment in path.split('.') {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// `var`: a dotted path (or index) into the data; `""` is all of it; `default` when
/// absent. `$flagd.…` paths read the injected properties.
fn var(path: &Value, default: Option<Value>, scope: &Scope<'_>) -> Value {
    let path = match path {
        Value::Null => return scope.data.clone(),
        Value::String(path) if path.is_empty() => return scope.data.clone(),
        Value::Array(items) => return var(items.first().unwrap_or(&Value::Null), items.get(1).cloned(), scope),
        other => to_text(other),
    };
    let found = match path.strip_prefix("$flagd.") {
        Some(rest) => lookup(scope.flagd, rest),
        None => lookup(scope.data, &path),
    };
    match found {
        Some(value) if !value.is_null() => value.clone(),
        _ => default.unwrap_or(Value::Null),
    }
}

fn missing(args: &[&Value], scope: &Scope<'_>) -> Value {
    let keys: Vec<Value> = match args.first().map(|rule| evaluate(rule, scope)) {
        Some(Value::Array(items)) => items,
        _ => args.iter().map(|rule| evaluate(rule, scope)).collect(),
    };
    Value::Array(keys.into_iter().filter(|key| var(key, None, scope).is_null()).collect())
}

/// JsonLogic truthiness: `false`, `null`, `0`, `""` and `[]` are false.
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(_) => true,
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Null => Some(0.0),
        _ => None,
    }
}

fn to_value(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// How `cat` and keys show a value: strings bare, numbers as JavaScript prints them.
pub(crate) fn to_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn strict_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// JavaScript's `==` for the JSON types.
fn loose_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => a == b,
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => number(a)?.partial_cmp(&number(b)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(rule: Value, data: Value) -> Value {
        check(&rule).unwrap();
        let fuel = core::cell::Cell::new(EVALUATION_STEPS);
        evaluate(&rule, &Scope { data: &data, flagd: &Value::Null, fuel: &fuel })
    }

    #[test]
    fn the_common_operators() {
        assert_eq!(eval(json!({"==": [1, "1"]}), json!({})), json!(true));
        assert_eq!(eval(json!({"===": [1, "1"]}), json!({})), json!(false));
        assert_eq!(eval(json!({"var": "a.b"}), json!({"a": {"b": 7}})), json!(7));
        assert_eq!(eval(json!({"var": ["x", 3]}), json!({})), json!(3));
        assert_eq!(eval(json!({"<": [1, {"var": "n"}, 10]}), json!({"n": 5})), json!(true));
        assert_eq!(eval(json!({"in": ["b", ["a", "b"]]}), json!({})), json!(true));
        assert_eq!(eval(json!({"and": [true, "x", 0]}), json!({})), json!(0));
        assert_eq!(eval(json!({"or": [false, "", "y"]}), json!({})), json!("y"));
        assert_eq!(eval(json!({"+": [1, 2.5]}), json!({})), json!(3.5));
        assert_eq!(eval(json!({"cat": ["v", 1.0, "-", 2]}), json!({})), json!("v1-2"));
        assert_eq!(eval(json!({"substr": ["jsonlogic", -5, 3]}), json!({})), json!("log"));
        assert_eq!(eval(json!({"missing": ["a", "b"]}), json!({"a": 1})), json!(["b"]));
        assert_eq!(eval(json!({"map": [[1, 2], {"*": [{"var": ""}, 2]}]}), json!({})), json!([2, 4]));
        assert_eq!(
            eval(json!({"reduce": [[1, 2, 3], {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]}), json!({})),
            json!(6)
        );
        assert_eq!(eval(json!({"if": [false, 1, false, 2]}), json!({})), json!(null));
    }

    #[test]
    fn broken_rules_are_located() {
        let error = check(&json!({"if": [{"bogus": [1]}, "a", "b"]})).unwrap_err();
        assert_eq!(error.pointer, "/if/0");
        assert!(error.message.contains("bogus"));
        assert_eq!(check(&json!({"if": [{"a": 1, "b": 2}]})).unwrap_err().pointer, "/if/0");
    }
}
