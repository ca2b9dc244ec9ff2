//! The flagd-testbed evaluator suite, read in place from `../shared/conformance`: every
//! scenario of every feature file runs against `verge_shared::flags`, except those tagged
//! `@fractional-v1` (legacy bucketing) and `@fractional-v3` (unreleased), as SOURCE.md says.
//!
//! A small Gherkin reader: features, backgrounds, scenarios and outlines with tagged
//! example tables, and the handful of step sentences the suite uses. An unknown sentence
//! fails the test, so a newer testbed cannot pass by being skipped.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use verge_shared::flags::{FlagSet, FlagType};

const EXCLUDED: &[&str] = &["@fractional-v1", "@fractional-v3"];

fn testbed() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = root.join("../shared/conformance/flagd-testbed/evaluator");
    assert!(dir.is_dir(), "the flagd testbed is missing at {}: it lives in ../shared/conformance", dir.display());
    dir
}

/// One runnable scenario: its steps, and the example row that fills their `<placeholders>`
/// (filled after the quoted arguments are found, since values may hold quotes).
struct Case {
    name: String,
    steps: Vec<(String, Vec<Vec<String>>)>,
    example: Vec<(String, String)>,
}

impl Case {
    fn fill(&self, text: &str) -> String {
        self.example.iter().fold(text.to_owned(), |acc, (name, value)| acc.replace(&format!("<{name}>"), value))
    }
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    // Split on `|` not preceded by a backslash, then unescape.
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('|' | '"' | '\\' | 'n')) => {
                let next = chars.next().unwrap();
                cell.push(if next == 'n' { '\n' } else { next });
            }
            '|' => out.push(std::mem::take(&mut cell).trim().to_owned()),
            c => cell.push(c),
        }
    }
    out.push(cell.trim().to_owned());
    out
}

fn parse_feature(text: &str) -> Vec<Case> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let mut feature_tags = Vec::new();
    let mut background: Vec<(String, Vec<Vec<String>>)> = Vec::new();
    let mut cases = Vec::new();
    let mut pending_tags: Vec<String> = Vec::new();
    let mut i = 0;
    // Steps of the block being read, and where they go.
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with('@') {
            pending_tags.extend(line.split_whitespace().map(str::to_owned));
            i += 1;
        } else if line.starts_with("Feature:") {
            feature_tags = std::mem::take(&mut pending_tags);
            i += 1;
        } else if line.starts_with("Background:") {
            i += 1;
            while i < lines.len() && is_step(lines[i]) {
                let (step, table, next) = read_step(&lines, i);
                background.push((step, table));
                i = next;
            }
        } else if let Some(name) = line.strip_prefix("Scenario Outline:").or_else(|| line.strip_prefix("Scenario:")) {
            let outline = line.starts_with("Scenario Outline:");
            let scenario_tags: Vec<String> = feature_tags.iter().cloned().chain(pending_tags.drain(..)).collect();
            i += 1;
            let mut steps = background.clone();
            while i < lines.len() && is_step(lines[i]) {
                let (step, table, next) = read_step(&lines, i);
                steps.push((step, table));
                i = next;
            }
            if !outline {
                if !scenario_tags.iter().any(|t| EXCLUDED.contains(&t.as_str())) {
                    cases.push(Case { name: name.trim().to_owned(), steps, example: Vec::new() });
                }
                continue;
            }
            // Example tables, each with its own tags.
            loop {
                let mut example_tags = Vec::new();
                while i < lines.len() && lines[i].starts_with('@') {
                    example_tags.extend(lines[i].split_whitespace().map(str::to_owned));
                    i += 1;
                }
                if i >= lines.len() || !lines[i].starts_with("Examples") {
                    pending_tags = example_tags;
                    break;
                }
                i += 1;
                let header = cells(lines[i]);
                i += 1;
                while i < lines.len() && lines[i].starts_with('|') {
                    let row = cells(lines[i]);
                    i += 1;
                    let tags = scenario_tags.iter().chain(&example_tags);
                    if tags.clone().any(|t| EXCLUDED.contains(&t.as_str())) {
                        continue;
                    }
                    let example = header.iter().cloned().zip(row.iter().cloned()).collect();
                    let name = format!("{} [{}]", name.trim(), row.join(", "));
                    cases.push(Case { name, steps: steps.clone(), example });
                }
            }
        } else {
            panic!("unexpected line in a feature file: {line}");
        }
    }
    cases
}

fn is_step(line: &str) -> bool {
    ["Given ", "When ", "Then ", "And ", "But "].iter().any(|k| line.starts_with(k))
}

fn read_step(lines: &[&str], i: usize) -> (String, Vec<Vec<String>>, usize) {
    let step = lines[i].split_once(' ').unwrap().1.to_owned();
    let mut table = Vec::new();
    let mut next = i + 1;
    while next < lines.len() && lines[next].starts_with('|') {
        table.push(cells(lines[next]));
        next += 1;
    }
    (step, table, next)
}

/// The quoted arguments of a step sentence, and the sentence with them as `"_"`.
fn arguments(step: &str) -> (String, Vec<String>) {
    let mut shape = String::new();
    let mut args = Vec::new();
    let mut rest = step;
    while let Some(start) = rest.find('"') {
        shape.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('"').expect("closing quote");
        args.push(after[..end].to_owned());
        shape.push_str("\"_\"");
        rest = &after[end + 1..];
    }
    shape.push_str(rest);
    (shape, args)
}

fn typed(kind: &str, text: &str) -> Value {
    match kind {
        "Boolean" => Value::Bool(text == "true"),
        "Integer" => json!(text.parse::<i64>().unwrap()),
        "Float" => json!(text.parse::<f64>().unwrap()),
        "Object" => serde_json::from_str(text).unwrap(),
        _ => Value::String(text.to_owned()),
    }
}

fn flag_type(kind: &str) -> FlagType {
    match kind {
        "Boolean" => FlagType::Boolean,
        "String" => FlagType::String,
        "Integer" => FlagType::Integer,
        "Float" => FlagType::Float,
        "Object" => FlagType::Object,
        other => panic!("unknown flag type {other}"),
    }
}

fn same(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => expected == actual,
    }
}

fn run(flags: &FlagSet, case: &Case) -> Result<(), String> {
    let mut flag: Option<(String, String, Value)> = None;
    let mut context = Map::new();
    let mut result = None;
    for (step, table) in &case.steps {
        let (shape, args) = arguments(step);
        let (shape, args) = (case.fill(&shape), args.iter().map(|arg| case.fill(arg)).collect::<Vec<_>>());
        match shape.as_str() {
            "an evaluator" => {}
            s if s.starts_with("a ") && s.ends_with("-flag with key \"_\" and a fallback value \"_\"") => {
                let kind = s["a ".len()..s.find("-flag").unwrap()].to_owned();
                let fallback = typed(&kind, &args[1]);
                flag = Some((kind, args[0].clone(), fallback));
            }
            "a context containing a key \"_\", with type \"_\" and with value \"_\"" => {
                context.insert(args[0].clone(), typed(&args[1], &args[2]));
            }
            "a context containing a targeting key with value \"_\"" => {
                context.insert("targetingKey".into(), Value::String(args[0].clone()));
            }
            "a context containing a nested property with outer key \"_\" and inner key \"_\", with value \"_\"" => {
                context.insert(args[0].clone(), json!({ args[1].clone(): args[2].clone() }));
            }
            "the flag was evaluated with details" => {
                let (kind, key, _) = flag.as_ref().ok_or("no flag before evaluation")?;
                result =
                    Some(flags.evaluate(key, Some(flag_type(kind)), &Value::Object(context.clone()), 1_700_000_000));
            }
            "the resolved details value should be \"_\"" => {
                let (kind, _, fallback) = flag.as_ref().unwrap();
                let resolution = result.as_ref().ok_or("not evaluated")?;
                let actual = resolution.value.clone().unwrap_or_else(|| fallback.clone());
                let expected = typed(kind, &args[0]);
                if !same(&expected, &actual) {
                    return Err(format!("value {actual} (reason {:?}), expected {expected}", resolution.reason));
                }
            }
            "the reason should be \"_\"" => {
                let reason = result.as_ref().ok_or("not evaluated")?.reason.as_str();
                if reason != args[0] {
                    return Err(format!("reason {reason}, expected {}", args[0]));
                }
            }
            "the error-code should be \"_\"" => {
                let error = result.as_ref().ok_or("not evaluated")?.error.as_ref().map(|(code, _)| code.as_str());
                if error != Some(args[0].as_str()) {
                    return Err(format!("error code {error:?}, expected {}", args[0]));
                }
            }
            "the resolved metadata is empty" => {
                let metadata = &result.as_ref().ok_or("not evaluated")?.metadata;
                if !metadata.is_empty() {
                    return Err(format!("metadata {metadata:?}, expected none"));
                }
            }
            "the resolved metadata should contain" => {
                let metadata = &result.as_ref().ok_or("not evaluated")?.metadata;
                for row in &table[1..] {
                    let expected = typed(&row[1], &row[2]);
                    let actual = metadata.get(&row[0]).cloned().unwrap_or(Value::Null);
                    if !same(&expected, &actual) {
                        return Err(format!("metadata {} is {actual}, expected {expected}", row[0]));
                    }
                }
            }
            _ => return Err(format!("unknown step: {step}")),
        }
    }
    Ok(())
}

#[test]
fn flagd_testbed_evaluator_scenarios_pass() {
    let dir = testbed();
    let flags = FlagSet::parse(&std::fs::read_to_string(dir.join("flags/testkit-flags.json")).unwrap()).unwrap();
    let mut features: Vec<PathBuf> =
        std::fs::read_dir(dir.join("gherkin")).unwrap().map(|entry| entry.unwrap().path()).collect();
    features.sort();
    let (mut passed, mut failures) = (0, Vec::new());
    for feature in &features {
        for case in parse_feature(&std::fs::read_to_string(feature).unwrap()) {
            match run(&flags, &case) {
                Ok(()) => passed += 1,
                Err(why) => failures.push(format!("{}: {}: {why}", feature.file_name().unwrap().display(), case.name)),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        passed + failures.len(),
        failures.join("\n")
    );
    // Guard against a reader that silently finds nothing: the v3.9.0 suite has well over 100.
    assert!(passed > 100, "only {passed} scenarios ran");
    #[allow(clippy::print_stdout, reason = "the count shows in `cargo test -- --nocapture`")]
    {
        println!("{passed} flagd-testbed scenarios passed");
    }
}
