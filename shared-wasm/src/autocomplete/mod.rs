//! Autocomplete indexes: how the core builds them and how an edge answers from them.
//!
//! An index is published as one dataset, `ac/<project>/<index>`: a small directory part
//! (`dir`: the settings and where each shard starts) and shards (`s0`, `s1`, …), each a
//! self-contained range of keys. A key is a term's folded text or the folded text from
//! one of its later words on (so `york` finds `New York`), held in an `fst` map whose
//! values carry the key's rank in their high bits: `fst` pushes the smallest value of a
//! subtree onto the path to it, so every node knows the best rank below it and a query
//! walks best-first to its top results without visiting the rest ([`search`]).
//!
//! A query reads the directory (cached per instance) and the one or two shards holding
//! the keys that start with its first character: a typo is never counted on the first
//! character, which keeps the reads that small (Meilisearch counts a typo there as two).

mod build;
mod search;
mod shard;
#[cfg(test)]
mod tests;

pub use build::{BuildTerm, Curation, blocked_by, build, fold_pattern};
pub use search::{Highlight, Suggestion, search, search_preferring, shards_for};
pub use shard::{Shard, ShardError};

use serde_json::{Value, json};

/// The dataset of an index.
pub fn dataset(project: &str, index: &str) -> String {
    format!("ac/{project}/{index}")
}

/// The part naming the settings and the shards.
pub const DIR_PART: &str = "dir";

/// The part of shard `n`.
pub fn shard_part(n: usize) -> String {
    format!("s{n}")
}

/// Largest shard the builder writes: under Spin's 1 MiB per value, with room to spare.
pub const SHARD_BUDGET: usize = 512 * 1024;
/// Longest query accepted, in characters (before folding).
pub const MAX_QUERY_CHARS: usize = 200;
/// Most suggestions one query may ask for.
pub const MAX_LIMIT: usize = 50;
/// Longest term text, in characters.
pub const MAX_TERM_CHARS: usize = 200;

/// How an index answers; stored with the index and published in its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Words of at least this many characters may have one typo (0: no typos at all).
    pub one_typo_from: u8,
    /// Words of at least this many characters may have two.
    pub two_typos_from: u8,
    /// Queries shorter than this (folded characters) get no suggestions.
    pub min_prefix: u8,
    /// Suggestions when the query names no limit.
    pub default_limit: u8,
    /// Whether trending queries are mixed into what is published.
    pub trending: bool,
    /// Rank added per (decayed) query when trending is mixed in.
    pub trending_weight: u32,
    /// Hours after which a query counts half as much for trending.
    pub trending_half_life_hours: u32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            one_typo_from: 4,
            two_typos_from: 8,
            min_prefix: 1,
            default_limit: 5,
            trending: true,
            trending_weight: 1,
            trending_half_life_hours: 24,
        }
    }
}

/// One refused setting: its JSON member and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Settings {
    pub fn to_value(&self) -> Value {
        json!({
            "typos": {"one_from": self.one_typo_from, "two_from": self.two_typos_from},
            "min_prefix": self.min_prefix,
            "default_limit": self.default_limit,
            "trending": {"enabled": self.trending, "weight": self.trending_weight,
                "half_life_hours": self.trending_half_life_hours},
        })
    }

    /// Reads settings, each missing member taking its default; names every bad member.
    pub fn from_value(value: &Value) -> Result<Settings, Vec<Invalid>> {
        let mut settings = Settings::default();
        let mut errors = Vec::new();
        let Some(object) = value.as_object() else {
            return Err(vec![Invalid { field: String::new(), message: "must be an object".into() }]);
        };
        let mut number = |pointer: &str, min: u64, max: u64| -> Option<u64> {
            let found = value.pointer(pointer)?;
            match found.as_u64().filter(|n| (min..=max).contains(n)) {
                Some(n) => Some(n),
                None => {
                    errors
                        .push(Invalid { field: pointer.into(), message: format!("must be an integer {min}..={max}") });
                    None
                }
            }
        };
        if let Some(n) = number("/typos/one_from", 0, 64) {
            settings.one_typo_from = n as u8;
        }
        if let Some(n) = number("/typos/two_from", 0, 64) {
            settings.two_typos_from = n as u8;
        }
        if let Some(n) = number("/min_prefix", 1, 20) {
            settings.min_prefix = n as u8;
        }
        if let Some(n) = number("/default_limit", 1, MAX_LIMIT as u64) {
            settings.default_limit = n as u8;
        }
        if let Some(n) = number("/trending/weight", 0, 1_000_000_000) {
            settings.trending_weight = n as u32;
        }
        if let Some(n) = number("/trending/half_life_hours", 1, 8_760) {
            settings.trending_half_life_hours = n as u32;
        }
        match value.pointer("/trending/enabled") {
            None => {}
            Some(Value::Bool(b)) => settings.trending = *b,
            Some(_) => errors.push(Invalid { field: "/trending/enabled".into(), message: "must be a boolean".into() }),
        }
        for key in object.keys() {
            if !["typos", "min_prefix", "default_limit", "trending"].contains(&key.as_str()) {
                errors.push(Invalid { field: format!("/{key}"), message: "is not a setting".into() });
            }
        }
        for (section, known) in
            [("typos", &["one_from", "two_from"][..]), ("trending", &["enabled", "weight", "half_life_hours"][..])]
        {
            match object.get(section) {
                None => {}
                Some(Value::Object(members)) => {
                    for key in members.keys().filter(|key| !known.contains(&key.as_str())) {
                        errors.push(Invalid { field: format!("/{section}/{key}"), message: "is not a setting".into() });
                    }
                }
                Some(_) => errors.push(Invalid { field: format!("/{section}"), message: "must be an object".into() }),
            }
        }
        if settings.one_typo_from != 0
            && settings.two_typos_from != 0
            && settings.two_typos_from < settings.one_typo_from
        {
            errors.push(Invalid { field: "/typos/two_from".into(), message: "must not be below `one_from`".into() });
        }
        if errors.is_empty() { Ok(settings) } else { Err(errors) }
    }

    /// Typos a query may carry: per word by its length, at most two in all.
    pub fn typo_budget(&self, folded_query: &str) -> u8 {
        let per_word = |word: &str| {
            let len = word.chars().count();
            if self.two_typos_from != 0 && len >= usize::from(self.two_typos_from) {
                2
            } else if self.one_typo_from != 0 && len >= usize::from(self.one_typo_from) {
                1
            } else {
                0
            }
        };
        folded_query.split(' ').map(per_word).sum::<u8>().min(2)
    }
}

/// The directory part: settings and the first key of each shard, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    pub settings: Settings,
    /// Shard `n` holds the keys from `starts[n]` up to (not including) `starts[n + 1]`.
    pub starts: Vec<String>,
}

impl Directory {
    pub fn encode(&self) -> Vec<u8> {
        json!({"format": 1, "settings": self.settings.to_value(), "shards": self.starts}).to_string().into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Directory> {
        let value: Value = serde_json::from_slice(bytes).ok()?;
        if value.get("format")?.as_u64()? != 1 {
            return None;
        }
        let settings = Settings::from_value(value.get("settings")?).ok()?;
        let starts =
            value.get("shards")?.as_array()?.iter().map(|s| s.as_str().map(str::to_owned)).collect::<Option<_>>()?;
        Some(Directory { settings, starts })
    }
}
