//! Answering a query from an index's shards: fuzzy prefix matching, then best-first.
//!
//! First the map is walked with a row of optimal-string-alignment distances (Levenshtein
//! with adjacent transpositions counted once) per character, keeping only paths still
//! within the query's typo budget. Each node where the whole query has matched (as a
//! prefix of the key) within `d` typos is a root of tier `d`. Then, tier by tier (exact
//! and prefix matches before one typo before two), the roots' subtrees are searched
//! best-first: each node's accumulated output names the best rank below it, so the top
//! `limit` keys come out in rank order after visiting little more than their paths.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use fst::raw::{CompiledAddr, Fst, Node};

use super::build::NO_START;
use super::shard::{Shard, ShardError, TRENDING};
use super::{Directory, Settings};
use crate::text::fold_words;

/// Where a match lies in a suggestion's text, in UTF-16 code units (as JavaScript's
/// `String.prototype.slice` counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Highlight {
    pub start: u32,
    pub end: u32,
}

/// One suggestion, best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    pub text: String,
    /// Raw JSON, as imported.
    pub payload: Option<String>,
    pub language: Option<String>,
    pub highlight: Option<Highlight>,
    /// Typos the match needed: 0 for exact and prefix matches.
    pub typos: u8,
    /// Pinned first for this query by curation.
    pub pinned: bool,
    /// Mixed in from trending queries.
    pub trending: bool,
    /// The published rank: weight, boosts and trending.
    pub rank: u32,
}

/// The shards a query reads, in order: those that can hold keys starting with its first
/// character when typos are allowed, those that can hold keys starting with it otherwise.
pub fn shards_for(directory: &Directory, folded_query: &str, typos: u8) -> Vec<usize> {
    let low: &str = if typos > 0 {
        folded_query.char_indices().nth(1).map_or(folded_query, |(at, _)| &folded_query[..at])
    } else {
        folded_query
    };
    let starts = &directory.starts;
    (0..starts.len())
        .filter(|&n| {
            let begins_low_enough = starts[n].as_str() <= low || starts[n].starts_with(low);
            let ends_high_enough = starts.get(n + 1).is_none_or(|next| next.as_str() > low);
            begins_low_enough && ends_high_enough
        })
        .collect()
}

/// A node where the query matched: the subtree below holds candidates of tier `typos`.
struct Root {
    shard: usize,
    addr: CompiledAddr,
    acc: u64,
    typos: u8,
    /// Characters of the key the query matched, for highlighting.
    matched: u32,
}

/// Walks one shard's map with the distance rows, collecting roots.
struct Walk<'a> {
    fst: &'a Fst<Vec<u8>>,
    query: &'a [char],
    budget: u8,
    shard: usize,
    roots: &'a mut Vec<Root>,
    /// One row of `query.len() + 1` distances per character of the path so far, end to
    /// end in one buffer (the walk visits thousands of nodes; a row each would allocate).
    rows: Vec<u8>,
    path: Vec<char>,
}

impl Walk<'_> {
    fn width(&self) -> usize {
        self.query.len() + 1
    }

    /// Follows every transition of `node`; `pending` holds the bytes of a character not
    /// yet whole.
    fn visit(&mut self, node: Node<'_>, acc: u64, pending: ([u8; 4], usize), best: u8) {
        for transition in node.transitions() {
            let (mut bytes, len) = pending;
            bytes[len] = transition.inp;
            let len = len + 1;
            let acc = acc + transition.out.value();
            let child = self.fst.node(transition.addr);
            match std::str::from_utf8(&bytes[..len]) {
                Ok(text) => {
                    let c = text.chars().next().expect("one character");
                    self.step(child, acc, c, best);
                }
                // Mid-character: keep the bytes until the character is whole.
                Err(err) if err.error_len().is_none() && len < 4 => self.visit(child, acc, (bytes, len), best),
                Err(_) => {}
            }
        }
    }

    fn step(&mut self, node: Node<'_>, acc: u64, c: char, best: u8) {
        let depth = self.path.len() + 1;
        if depth == 1 && self.query.first() != Some(&c) {
            return; // The first character is never a typo.
        }
        let width = self.width();
        let previous = (depth - 1) * width;
        self.rows.resize(previous + 2 * width, 0);
        let (before, row) = self.rows.split_at_mut(previous + width);
        let last = &before[previous..];
        row[0] = depth.min(254) as u8;
        let mut smallest = row[0];
        for (i, &q) in self.query.iter().enumerate() {
            let i = i + 1;
            let substitute = last[i - 1] + u8::from(q != c);
            let mut cost = substitute.min(last[i] + 1).min(row[i - 1] + 1);
            if i > 1 && depth > 1 && q == self.path[depth - 2] && self.query[i - 2] == c {
                cost = cost.min(before[previous - width + i - 2] + 1);
            }
            row[i] = cost.min(254);
            smallest = smallest.min(row[i]);
        }
        let distance = row[width - 1];
        if smallest > self.budget {
            self.rows.truncate(previous + width);
            return;
        }
        let mut best = best;
        if distance <= self.budget && distance < best {
            self.roots.push(Root { shard: self.shard, addr: node.addr(), acc, typos: distance, matched: depth as u32 });
            best = distance;
        }
        if best != 0 {
            // Anything below can only match as well as exactly if `best` is not 0 yet.
            self.path.push(c);
            self.visit(node, acc, ([0; 4], 0), best);
            self.path.pop();
        }
        self.rows.truncate(previous + width);
    }
}

/// The roots of `query` in one shard.
fn roots(fst: &Fst<Vec<u8>>, query: &str, budget: u8, shard: usize, out: &mut Vec<Root>) {
    if budget == 0 {
        // Exact prefix: follow the query's bytes.
        let mut node = fst.root();
        let mut acc = 0;
        for byte in query.bytes() {
            let Some(i) = node.find_input(byte) else { return };
            let transition = node.transition(i);
            acc += transition.out.value();
            node = fst.node(transition.addr);
        }
        out.push(Root { shard, addr: node.addr(), acc, typos: 0, matched: query.chars().count() as u32 });
        return;
    }
    let query: Vec<char> = query.chars().collect();
    let rows: Vec<u8> = (0..=query.len()).map(|n| n.min(254) as u8).collect();
    let mut walk = Walk { fst, query: &query, budget, shard, roots: out, rows, path: Vec::new() };
    walk.visit(fst.root(), 0, ([0; 4], 0), u8::MAX);
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    Node { shard: usize, addr: CompiledAddr, acc: u64, root: usize },
    Key { shard: usize, postings: u32, root: usize },
    Term { shard: usize, term: u32, start: u32, root: usize },
}

fn rank_of(value: u64) -> u32 {
    u32::MAX - (value >> 32) as u32
}

/// The best `limit` suggestions for `folded_query` from `shards` (those [`shards_for`]
/// named, in its order).
pub fn search(
    shards: &[&Shard],
    settings: &Settings,
    folded_query: &str,
    limit: usize,
) -> Result<Vec<Suggestion>, ShardError> {
    search_where(shards, settings, folded_query, limit, &|_| true, usize::MAX)
}

/// Heap items a preferring search may pop looking for terms in its language, so a
/// language few terms have cannot make a query walk a whole shard.
const PREFERRING_POPS: usize = 20_000;

/// [`search`], with the terms in `language` (a primary subtag, `de`) first within the
/// pins and within each typo tier, however far down the ranking they are.
pub fn search_preferring(
    shards: &[&Shard],
    settings: &Settings,
    folded_query: &str,
    limit: usize,
    language: &str,
) -> Result<Vec<Suggestion>, ShardError> {
    let speaks = |l: &str| l.split('-').next().is_some_and(|primary| primary.eq_ignore_ascii_case(language));
    let mut found = search_where(shards, settings, folded_query, limit, &|l| speaks(l), PREFERRING_POPS)?;
    let mut seen: HashSet<(String, Option<String>)> =
        found.iter().map(|s| (s.text.clone(), s.payload.clone())).collect();
    for other in search(shards, settings, folded_query, limit)? {
        if seen.insert((other.text.clone(), other.payload.clone())) {
            found.push(other);
        }
    }
    let prefers = |s: &Suggestion| s.language.as_deref().is_some_and(speaks);
    found.sort_by_key(|s| (!s.pinned, s.typos, !prefers(s)));
    found.truncate(limit);
    Ok(found)
}

/// [`search`] over the terms whose language `keep` accepts, popping at most `max_pops`
/// heap items.
fn search_where(
    shards: &[&Shard],
    settings: &Settings,
    folded_query: &str,
    limit: usize,
    keep: &dyn Fn(&str) -> bool,
    max_pops: usize,
) -> Result<Vec<Suggestion>, ShardError> {
    let mut pops = 0;
    let mut out: Vec<Suggestion> = Vec::with_capacity(limit);
    let mut seen: HashSet<(String, Option<String>)> = HashSet::new();
    if folded_query.chars().count() < usize::from(settings.min_prefix) || limit == 0 {
        return Ok(out);
    }
    let query_chars = folded_query.chars().count() as u32;
    for shard in shards {
        for (_, pinned) in shard.pins.iter().filter(|(query, _)| query == folded_query) {
            for &term in pinned {
                if out.len() < limit && keep(shard.term(term)?.language) {
                    let starts_with_query = fold_words(shard.term(term)?.text).text.starts_with(folded_query);
                    let highlight = Some(0).filter(|_| starts_with_query);
                    push(&mut out, &mut seen, shard, term, highlight, query_chars, 0, true)?;
                }
            }
        }
    }
    let budget = settings.typo_budget(folded_query);
    let mut found = Vec::new();
    for (n, shard) in shards.iter().enumerate() {
        roots(&shard.fst, folded_query, budget, n, &mut found);
    }
    let mut sequence = 0u64;
    for tier in 0..=budget {
        let mut heap = BinaryHeap::new();
        let mut enqueue = |heap: &mut BinaryHeap<(u32, Reverse<u64>, Item)>, rank: u32, item: Item| {
            sequence += 1;
            heap.push((rank, Reverse(sequence), item));
        };
        for (root_index, root) in found.iter().enumerate().filter(|(_, r)| r.typos == tier) {
            let item = Item::Node { shard: root.shard, addr: root.addr, acc: root.acc, root: root_index };
            enqueue(&mut heap, rank_of(root.acc), item);
        }
        while out.len() < limit && pops < max_pops {
            let Some((_, _, item)) = heap.pop() else { break };
            pops += 1;
            match item {
                Item::Node { shard, addr, acc, root } => {
                    let node = shards[shard].fst.node(addr);
                    if node.is_final() {
                        let value = acc + node.final_output().value();
                        enqueue(&mut heap, rank_of(value), Item::Key { shard, postings: value as u32, root });
                    }
                    for transition in node.transitions() {
                        let acc = acc + transition.out.value();
                        enqueue(&mut heap, rank_of(acc), Item::Node { shard, addr: transition.addr, acc, root });
                    }
                }
                Item::Key { shard, postings, root } => {
                    for (term, start) in shards[shard].postings(postings)? {
                        let rank = shards[shard].term(term)?.rank;
                        enqueue(&mut heap, rank, Item::Term { shard, term, start, root });
                    }
                }
                Item::Term { shard, term, start, root } => {
                    if !keep(shards[shard].term(term)?.language) {
                        continue;
                    }
                    let highlight = Some(start).filter(|s| *s != NO_START);
                    let matched = found[root].matched;
                    push(&mut out, &mut seen, shards[shard], term, highlight, matched, tier, false)?;
                }
            }
        }
    }
    Ok(out)
}

/// Adds a term unless an equal one (text and payload) is already there.
#[allow(clippy::too_many_arguments)]
fn push(
    out: &mut Vec<Suggestion>,
    seen: &mut HashSet<(String, Option<String>)>,
    shard: &Shard,
    term: u32,
    start: Option<u32>,
    matched: u32,
    typos: u8,
    pinned: bool,
) -> Result<(), ShardError> {
    let record = shard.term(term)?;
    let payload = Some(record.payload.to_owned()).filter(|p| !p.is_empty());
    if !seen.insert((record.text.to_owned(), payload.clone())) {
        return Ok(());
    }
    out.push(Suggestion {
        text: record.text.to_owned(),
        payload,
        language: Some(record.language.to_owned()).filter(|l| !l.is_empty()),
        highlight: start.and_then(|start| highlight(record.text, start, matched)),
        typos,
        pinned,
        trending: record.flags & TRENDING != 0,
        rank: record.rank,
    });
    Ok(())
}

/// Folded characters `start..start + matched` of `text`, as UTF-16 offsets in `text`.
fn highlight(text: &str, start: u32, matched: u32) -> Option<Highlight> {
    let folded = fold_words(text);
    let end = (start + matched).min(folded.chars() as u32);
    if start >= end {
        return None;
    }
    let first = folded.origin[start as usize] as usize;
    let last = folded.origin[end as usize - 1] as usize;
    let mut units = 0u32;
    let (mut from, mut to) = (0, 0);
    for (index, c) in text.chars().enumerate() {
        if index == first {
            from = units;
        }
        units += c.len_utf16() as u32;
        if index == last {
            to = units;
            break;
        }
    }
    Some(Highlight { start: from, end: to })
}
