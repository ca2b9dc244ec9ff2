//! Feature flags in the flagd flag-definition format, evaluated the same way in the core
//! and at every edge.
//!
//! A [`FlagSet`] is read once from flagd JSON (`flags`, shared `$evaluators`, `metadata`):
//! `$ref`s are resolved and every targeting rule is checked then, so a request evaluates a
//! ready tree and never re-reads the set. A flag whose rule cannot be used (an unknown
//! operator, a `$ref` to no evaluator) is kept with its problem and answers `PARSE_ERROR`,
//! as flagd does, while the rest of the set keeps working; [`FlagSet::problems`] lists
//! them for the admin, which refuses such a set. Reasons and error codes are
//! OpenFeature's.

mod logic;
mod murmur3;
mod parts;
mod semver;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub use logic::{RuleError, check};
pub use parts::{flag_part, per_flag_documents};

/// The type an evaluation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagType {
    Boolean,
    String,
    Integer,
    Float,
    Object,
}

impl FlagType {
    fn admits(self, value: &Value) -> bool {
        match self {
            FlagType::Boolean => value.is_boolean(),
            FlagType::String => value.is_string(),
            FlagType::Integer => value.is_i64() || value.is_u64(),
            FlagType::Float => value.is_number(),
            FlagType::Object => value.is_object() || value.is_array(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Static,
    Default,
    TargetingMatch,
    Disabled,
    Error,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::Default => "DEFAULT",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    FlagNotFound,
    ParseError,
    TypeMismatch,
    TargetingKeyMissing,
    InvalidContext,
    General,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::General => "GENERAL",
        }
    }
}

/// The outcome of one evaluation. `value` is `None` when the caller's own default applies
/// (an error, a disabled flag, or no default variant).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub value: Option<Value>,
    pub variant: Option<String>,
    pub reason: Reason,
    pub error: Option<(ErrorCode, String)>,
    pub metadata: Map<String, Value>,
}

impl Resolution {
    fn error(code: ErrorCode, message: String, metadata: Map<String, Value>) -> Resolution {
        Resolution { value: None, variant: None, reason: Reason::Error, error: Some((code, message)), metadata }
    }
}

#[derive(Debug, Clone)]
struct Flag {
    enabled: bool,
    variants: Map<String, Value>,
    default_variant: Option<String>,
    /// `Ok(None)`: no targeting. `Err`: why the rule cannot be used.
    targeting: Result<Option<Value>, RuleError>,
    metadata: Map<String, Value>,
    /// JSON nodes in the expanded targeting, counted against [`MAX_SET_NODES`].
    rule_nodes: usize,
}

/// A whole flagd flag set, ready to evaluate.
#[derive(Debug, Clone, Default)]
pub struct FlagSet {
    flags: BTreeMap<String, Flag>,
}

/// A flag set that cannot be read at all (not the flagd shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagSetError(pub RuleError);

impl core::fmt::Display for FlagSetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.0.pointer, self.0.message)
    }
}

fn invalid(pointer: String, message: impl Into<String>) -> FlagSetError {
    FlagSetError(RuleError { pointer, message: message.into() })
}

impl FlagSet {
    pub fn parse(json: &str) -> Result<FlagSet, FlagSetError> {
        let value: Value = serde_json::from_str(json).map_err(|err| invalid(String::new(), err.to_string()))?;
        FlagSet::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<FlagSet, FlagSetError> {
        let root = value.as_object().ok_or_else(|| invalid(String::new(), "a flag set is a JSON object"))?;
        let flags = root
            .get("flags")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("/flags".into(), "`flags` must be an object of flags"))?;
        let empty = Map::new();
        let evaluators = match root.get("$evaluators") {
            None => &empty,
            Some(Value::Object(map)) => map,
            Some(_) => return Err(invalid("/$evaluators".into(), "`$evaluators` must be an object")),
        };
        let set_metadata = match root.get("metadata") {
            None => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(invalid("/metadata".into(), "`metadata` must be an object")),
        };
        let mut compiled = BTreeMap::new();
        let mut set_budget = MAX_SET_NODES;
        for (key, definition) in flags {
            let at = format!("/flags/{}", key.replace('~', "~0").replace('/', "~1"));
            let flag = Flag::read(definition, &at, evaluators, &set_metadata)?;
            set_budget = set_budget.checked_sub(flag.rule_nodes).ok_or_else(|| {
                let message = format!("the set's targeting, with `$ref`s expanded, passes {MAX_SET_NODES} JSON nodes");
                invalid(format!("{at}/targeting"), message)
            })?;
            compiled.insert(key.clone(), flag);
        }
        Ok(FlagSet { flags: compiled })
    }

    /// Flags whose targeting cannot be used, with where and why.
    pub fn problems(&self) -> Vec<(String, RuleError)> {
        let mut problems = Vec::new();
        for (key, flag) in &self.flags {
            if let Err(err) = &flag.targeting {
                problems.push((key.clone(), err.clone()));
            }
        }
        problems
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.flags.keys().map(String::as_str)
    }

    /// Evaluates `key` for `context` (an object) at `now_secs` (Unix seconds). `expected` is
    /// the type the caller asks for; `None` accepts any.
    pub fn evaluate(&self, key: &str, expected: Option<FlagType>, context: &Value, now_secs: u64) -> Resolution {
        let Some(flag) = self.flags.get(key) else {
            return Resolution::error(ErrorCode::FlagNotFound, format!("flag `{key}` not found"), Map::new());
        };
        let metadata = flag.metadata.clone();
        if !flag.enabled {
            return Resolution { value: None, variant: None, reason: Reason::Disabled, error: None, metadata };
        }
        let (variant, reason) = match &flag.targeting {
            Err(err) => {
                let message = format!("targeting at {}: {}", err.pointer, err.message);
                return Resolution::error(ErrorCode::ParseError, message, metadata);
            }
            Ok(None) => (flag.default_variant.clone(), Reason::Static),
            Ok(Some(rule)) => {
                let mut flagd = Map::new();
                flagd.insert("flagKey".into(), Value::String(key.to_owned()));
                flagd.insert("timestamp".into(), Value::from(now_secs));
                let flagd = Value::Object(flagd);
                let fuel = core::cell::Cell::new(logic::EVALUATION_STEPS);
                let outcome = logic::evaluate(rule, &logic::Scope { data: context, flagd: &flagd, fuel: &fuel });
                if fuel.get() == 0 {
                    let message = format!(
                        "targeting took more than {} evaluation steps for this context",
                        logic::EVALUATION_STEPS
                    );
                    return Resolution::error(ErrorCode::General, message, metadata);
                }
                match outcome {
                    Value::Null => (flag.default_variant.clone(), Reason::Default),
                    Value::String(name) => (Some(name), Reason::TargetingMatch),
                    Value::Bool(b) => (Some(b.to_string()), Reason::TargetingMatch),
                    Value::Number(n) => (Some(logic::to_text(&Value::Number(n))), Reason::TargetingMatch),
                    other => {
                        let message = format!("targeting returned {other}, not a variant name");
                        return Resolution::error(ErrorCode::General, message, metadata);
                    }
                }
            }
        };
        let Some(variant) = variant else {
            // No default variant: the caller's default, as flagd answers.
            return Resolution { value: None, variant: None, reason: Reason::Default, error: None, metadata };
        };
        let Some(value) = flag.variants.get(&variant) else {
            let message = format!("targeting chose variant `{variant}`, which flag `{key}` does not have");
            return Resolution::error(ErrorCode::General, message, metadata);
        };
        if let Some(expected) = expected
            && !expected.admits(value)
        {
            let message = format!("flag `{key}` is not of type {expected:?}");
            return Resolution::error(ErrorCode::TypeMismatch, message, metadata);
        }
        Resolution { value: Some(value.clone()), variant: Some(variant), reason, error: None, metadata }
    }
}

impl Flag {
    fn read(
        definition: &Value,
        at: &str,
        evaluators: &Map<String, Value>,
        set_metadata: &Map<String, Value>,
    ) -> Result<Flag, FlagSetError> {
        let definition = definition.as_object().ok_or_else(|| invalid(at.into(), "a flag is an object"))?;
        let enabled = match definition.get("state").and_then(Value::as_str) {
            Some("ENABLED") => true,
            Some("DISABLED") => false,
            _ => return Err(invalid(format!("{at}/state"), "`state` must be ENABLED or DISABLED")),
        };
        let variants = match definition.get("variants") {
            Some(Value::Object(map)) if !map.is_empty() => map.clone(),
            _ => return Err(invalid(format!("{at}/variants"), "`variants` must be a non-empty object")),
        };
        let default_variant = match definition.get("defaultVariant") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) if variants.contains_key(name) => Some(name.clone()),
            Some(other) => {
                return Err(invalid(format!("{at}/defaultVariant"), format!("{other} is not one of the variants")));
            }
        };
        let mut rule_nodes = 0;
        let targeting = match definition.get("targeting") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) if map.is_empty() => Ok(None),
            Some(rule) => resolve_refs(rule, evaluators)
                .and_then(|(rule, nodes)| {
                    rule_nodes = nodes;
                    logic::check(&rule).map(|()| Some(rule))
                })
                .map_err(|err| RuleError { pointer: format!("{at}/targeting{}", err.pointer), ..err }),
        };
        let mut metadata = set_metadata.clone();
        match definition.get("metadata") {
            None => {}
            Some(Value::Object(map)) => metadata.extend(map.clone()),
            Some(_) => return Err(invalid(format!("{at}/metadata"), "`metadata` must be an object")),
        }
        Ok(Flag { enabled, variants, default_variant, targeting, metadata, rule_nodes })
    }
}

/// How large one flag's targeting may grow once its `$ref`s are expanded, in JSON nodes,
/// and how deep it may nest. `$ref`s can fan out (an evaluator naming another twice, and so
/// on), so a small document could otherwise expand exponentially; these bound the memory
/// and the evaluation work of every flag, in the core and at the edge alike.
pub const MAX_RULE_NODES: usize = 10_000;
pub const MAX_RULE_DEPTH: usize = 64;
/// The same bound for a whole set's expanded targeting, so thousands of flags each near
/// [`MAX_RULE_NODES`] cannot add up to gigabytes.
pub const MAX_SET_NODES: usize = 1_000_000;
/// How many `$ref`s may nest inside one another.
const MAX_REF_DEPTH: usize = 16;

/// `rule` with every `{"$ref": name}` replaced by that shared evaluator, within
/// [`MAX_RULE_NODES`] and [`MAX_RULE_DEPTH`].
/// Also returns the nodes it holds.
fn resolve_refs(rule: &Value, evaluators: &Map<String, Value>) -> Result<(Value, usize), RuleError> {
    let mut budget = MAX_RULE_NODES;
    let rule = expand(rule, evaluators, 0, 0, &mut budget)?;
    Ok((rule, MAX_RULE_NODES - budget))
}

fn expand(
    rule: &Value,
    evaluators: &Map<String, Value>,
    refs: usize,
    depth: usize,
    budget: &mut usize,
) -> Result<Value, RuleError> {
    let refused = |message: String| RuleError { pointer: String::new(), message };
    if refs > MAX_REF_DEPTH {
        return Err(refused(format!("`$ref`s nest more than {MAX_REF_DEPTH} deep (a cycle?)")));
    }
    if depth > MAX_RULE_DEPTH {
        return Err(refused(format!("the rule nests more than {MAX_RULE_DEPTH} levels deep")));
    }
    let is_ref = matches!(rule, Value::Object(map) if map.len() == 1 && map.contains_key("$ref"));
    if !is_ref {
        *budget = budget.checked_sub(1).ok_or_else(|| {
            refused(format!("the rule, with its `$ref`s expanded, has more than {MAX_RULE_NODES} JSON nodes"))
        })?;
    }
    match rule {
        Value::Object(map) if is_ref => {
            let name = map["$ref"].as_str().unwrap_or_default();
            let target = evaluators
                .get(name)
                .ok_or_else(|| refused(format!("`$ref` to `{name}`, which is not among the `$evaluators`")))?;
            expand(target, evaluators, refs + 1, depth, budget)
        }
        Value::Object(map) => {
            let mut resolved = Map::new();
            for (name, value) in map {
                resolved.insert(name.clone(), expand(value, evaluators, refs, depth + 1, budget)?);
            }
            Ok(Value::Object(resolved))
        }
        Value::Array(items) => items
            .iter()
            .map(|item| expand(item, evaluators, refs, depth + 1, budget))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// How a client key is known at the edge and in the core: hex SHA-256 of its token, so
/// neither KV nor the database holds a usable key.
pub fn client_key_hash(token: &str) -> String {
    crate::sha256_hex(token.as_bytes())
}

#[cfg(test)]
mod tests;
