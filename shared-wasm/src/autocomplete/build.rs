//! Building an index's parts from its terms and curation: keys, shards, directory.

use std::collections::HashMap;

use super::shard::{KeyEntry, Record, TRENDING, encode};
use super::{DIR_PART, Directory, Settings, shard_part};
use crate::text::fold_words;

/// A term as the builder takes it; ranks already include boosts and trending.
#[derive(Debug, Clone, Default)]
pub struct BuildTerm {
    pub text: String,
    pub rank: u32,
    /// Raw JSON.
    pub payload: Option<String>,
    pub language: Option<String>,
    /// Mixed in from trending queries rather than imported.
    pub trending: bool,
}

/// What curation adds to the terms when building.
#[derive(Debug, Clone, Default)]
pub struct Curation {
    /// A query (folded) and the terms (indexes into the terms) that come first for it.
    pub pins: Vec<(String, Vec<usize>)>,
    /// Patterns over folded text (`*` any run of characters); a match is never published.
    pub blocks: Vec<String>,
    /// Groups of phrases that stand for each other.
    pub synonyms: Vec<Vec<String>>,
}

/// Postings kept per key: a key shared by more terms keeps the best ranked, so no shard
/// can grow past the platforms' value limits on one key.
const POSTINGS_PER_KEY: usize = 1_000;
/// Later words that start a key of their own (beyond them, only earlier starts find a term).
const WORD_STARTS: usize = 8;
/// Marks a posting whose key does not appear in the term's text (a synonym's).
pub(crate) const NO_START: u32 = u32::MAX;

/// A block pattern folded as terms are, `*` kept: `*Fück*` becomes `*fuck*`.
pub fn fold_pattern(pattern: &str) -> String {
    pattern.split('*').map(|piece| fold_words(piece).text).collect::<Vec<_>>().join("*")
}

/// Whether folded `text` matches `pattern` (`*` stands for any run of characters).
pub fn blocked_by(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Every key of one folded text: the whole, each later word start, and synonym variants.
fn keys_of(folded: &str, synonyms: &[Vec<String>], out: &mut Vec<(String, u32)>) {
    out.push((folded.to_owned(), 0));
    let mut chars = 0u32;
    let mut starts = 0;
    for (at, c) in folded.char_indices() {
        chars += 1;
        if c == ' ' && starts < WORD_STARTS {
            out.push((folded[at + 1..].to_owned(), chars));
            starts += 1;
        }
    }
    let padded = format!(" {folded} ");
    for group in synonyms {
        for phrase in group.iter().filter(|p| padded.contains(&format!(" {p} "))) {
            for other in group.iter().filter(|o| *o != phrase) {
                let variant = padded.replacen(&format!(" {phrase} "), &format!(" {other} "), 1);
                out.push((variant.trim().to_owned(), NO_START));
            }
        }
    }
}

/// The index's parts: the directory, then its shards, each under `budget` bytes (but for
/// pins, which join the shard their query falls in).
pub fn build(terms: &[BuildTerm], curation: &Curation, settings: &Settings, budget: usize) -> Vec<(String, Vec<u8>)> {
    let mut entries: Vec<(String, u32, u32)> = Vec::with_capacity(terms.len() * 2);
    let mut keys = Vec::new();
    let mut allowed = vec![false; terms.len()];
    for (index, term) in terms.iter().enumerate() {
        let folded = fold_words(&term.text).text;
        if folded.is_empty() || curation.blocks.iter().any(|pattern| blocked_by(pattern, &folded)) {
            continue;
        }
        allowed[index] = true;
        keys.clear();
        keys_of(&folded, &curation.synonyms, &mut keys);
        entries.extend(keys.drain(..).map(|(key, start)| (key, index as u32, start)));
    }
    // Same key: best rank first, then the earlier term, so the order never depends on luck.
    entries.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then(terms[b.1 as usize].rank.cmp(&terms[a.1 as usize].rank)).then(a.1.cmp(&b.1))
    });
    entries.dedup_by(|later, earlier| later.0 == earlier.0 && later.1 == earlier.1);

    let mut shards: Vec<ShardDraft> = vec![ShardDraft::default()];
    let mut index = 0;
    while index < entries.len() {
        let key = &entries[index].0;
        let end = index + entries[index..].iter().take_while(|e| &e.0 == key).count();
        let group = &entries[index..end];
        let current = shards.last_mut().expect("one shard at least");
        let grows_by = key.len() + 8 + group.len().min(POSTINGS_PER_KEY) * 6 + current.new_records_size(terms, group);
        if current.size + grows_by > budget && !current.keys.is_empty() {
            shards.push(ShardDraft { start: key.clone(), ..ShardDraft::default() });
        }
        let current = shards.last_mut().expect("one shard at least");
        let postings: Vec<(u32, u32)> = group
            .iter()
            .take(POSTINGS_PER_KEY)
            .map(|(_, term, start)| (current.local(terms, *term as usize), *start))
            .collect();
        current.size += key.len() + 8 + postings.len() * 6;
        current.keys.push(KeyEntry { key: key.clone(), rank: terms[group[0].1 as usize].rank, postings });
        index = end;
    }
    for (query, pinned) in &curation.pins {
        let query = fold_words(query).text;
        let shard = shards.iter().rposition(|s| s.start <= query).unwrap_or(0);
        let draft = &mut shards[shard];
        let locals: Vec<u32> =
            pinned.iter().filter(|t| allowed.get(**t) == Some(&true)).map(|t| draft.local(terms, *t)).collect();
        if !locals.is_empty() {
            draft.pins.push((query, locals));
        }
    }
    let directory = Directory { settings: settings.clone(), starts: shards.iter().map(|s| s.start.clone()).collect() };
    let mut parts = vec![(DIR_PART.to_owned(), directory.encode())];
    for (n, draft) in shards.iter_mut().enumerate() {
        draft.pins.sort();
        parts.push((shard_part(n), encode(&draft.keys, &draft.records, &draft.pins)));
    }
    parts
}

#[derive(Default)]
struct ShardDraft {
    start: String,
    size: usize,
    keys: Vec<KeyEntry>,
    records: Vec<Record>,
    pins: Vec<(String, Vec<u32>)>,
    /// Global term index → its number in this shard.
    locals: HashMap<usize, u32>,
}

impl ShardDraft {
    fn record_size(term: &BuildTerm) -> usize {
        term.text.len()
            + term.payload.as_ref().map_or(0, String::len)
            + term.language.as_ref().map_or(0, String::len)
            + 12
    }

    fn new_records_size(&self, terms: &[BuildTerm], group: &[(String, u32, u32)]) -> usize {
        group
            .iter()
            .take(POSTINGS_PER_KEY)
            .filter(|(_, term, _)| !self.locals.contains_key(&(*term as usize)))
            .map(|(_, term, _)| Self::record_size(&terms[*term as usize]))
            .sum()
    }

    fn local(&mut self, terms: &[BuildTerm], term: usize) -> u32 {
        if let Some(local) = self.locals.get(&term) {
            return *local;
        }
        let source = &terms[term];
        let local = self.records.len() as u32;
        self.size += Self::record_size(source);
        self.records.push(Record {
            rank: source.rank,
            flags: if source.trending { TRENDING } else { 0 },
            text: source.text.clone(),
            payload: source.payload.clone().unwrap_or_default(),
            language: source.language.clone().unwrap_or_default(),
        });
        self.locals.insert(term, local);
        local
    }
}
