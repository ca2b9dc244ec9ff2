//! Verge's autocomplete beside its floor and a peer, on one set of terms and queries.
//!
//! `verge-autocomplete-bench TERMS.ndjson [QUERIES]` reads terms (`text`, `weight`, one
//! JSON object a line), builds Verge's sharded index, an `fst` map of the same folded
//! texts and a tantivy index of them, then times the same queries against each: prefixes
//! of real terms, two to twelve characters, with as many typos as the length allows (one
//! from four characters, two from eight), at a first character left intact.
//!
//! - Verge, warm: shards decoded once, as a warm edge instance keeps them.
//! - Verge, cold: the shards a query needs decoded for it, as a fresh instance would.
//! - fst: `Levenshtein::new(query, typos).starts_with()` streamed over the map, the best
//!   five by weight kept: the automaton query Verge's own walk replaces (the floor).
//! - tantivy: `FuzzyTermQuery::new_prefix` (transpositions cost one), top five by the
//!   weight fast field.
//!
//! Each prints p50, p99 and max per query. Build times and the published shard sizes
//! come first.

use std::collections::BinaryHeap;
use std::cmp::Reverse;
use std::time::{Duration, Instant};

use fst::{IntoStreamer, Streamer};
use tantivy::collector::TopDocs;
use tantivy::query::FuzzyTermQuery;
use tantivy::schema::{FAST, STRING, Schema};
use tantivy::{Index, Order, TantivyDocument, Term, doc};
use verge_shared::autocomplete::{self as ac, BuildTerm, Curation, Directory, Settings, Shard};
use verge_shared::text::fold_words;

const LIMIT: usize = 5;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A prefix of a real term with the typos its length allows, none on the first character.
fn queries(terms: &[BuildTerm], count: usize, settings: &Settings) -> Vec<(String, u8)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let letters: Vec<char> = "abcdefghijklmnopqrstuvwxyz".chars().collect();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let folded: Vec<char> = fold_words(&terms[rng.below(terms.len())].text).text.chars().collect();
        if folded.len() < 2 {
            continue;
        }
        let len = 2 + rng.below(folded.len().min(12) - 1);
        let mut query: Vec<char> = folded[..len].to_vec();
        let allowed = settings.typo_budget(&query.iter().collect::<String>());
        let typos = rng.below(usize::from(allowed) + 1) as u8;
        for _ in 0..typos {
            let at = 1 + rng.below(query.len() - 1);
            match rng.below(4) {
                0 => query[at] = letters[rng.below(letters.len())],
                1 if query.len() > 2 => {
                    query.remove(at);
                }
                2 if at + 1 < query.len() => query.swap(at, at + 1),
                _ => query.insert(at, letters[rng.below(letters.len())]),
            }
        }
        out.push((query.into_iter().collect(), typos));
    }
    out
}

fn report(name: &str, mut times: Vec<Duration>, found: usize) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "  {name:<22} p50 {:>8.1} µs   p99 {:>8.1} µs   max {:>8.1} µs   ({found} of {} queries answered)",
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        times[times.len() - 1].as_secs_f64() * 1e6,
        times.len(),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("usage: verge-autocomplete-bench TERMS.ndjson [QUERIES]");
    let count: usize = args.get(2).map_or(5_000, |n| n.parse().expect("QUERIES is a number"));
    let text = std::fs::read_to_string(path).expect("read the terms");
    let terms: Vec<BuildTerm> = text
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            BuildTerm {
                text: value["text"].as_str().expect("text").to_owned(),
                rank: value["weight"].as_u64().unwrap_or(0).min(u64::from(u32::MAX)) as u32,
                language: value["language"].as_str().map(str::to_owned),
                ..BuildTerm::default()
            }
        })
        .collect();
    let settings = Settings::default();
    println!("{} terms from {path}", terms.len());

    let started = Instant::now();
    let parts = ac::build(&terms, &Curation::default(), &settings, ac::SHARD_BUDGET);
    let built = started.elapsed();
    let shard_sizes: Vec<usize> = parts[1..].iter().map(|(_, bytes)| bytes.len()).collect();
    println!(
        "  Verge index built in {:.2} s: {} shards, largest {} KiB, total {:.1} MiB, directory {} B",
        built.as_secs_f64(),
        shard_sizes.len(),
        shard_sizes.iter().max().unwrap_or(&0) / 1024,
        shard_sizes.iter().sum::<usize>() as f64 / 1_048_576.0,
        parts[0].1.len()
    );
    let directory = Directory::decode(&parts[0].1).expect("directory");
    let shards: Vec<Shard> = parts[1..].iter().map(|(_, bytes)| Shard::decode(bytes).expect("shard")).collect();

    let started = Instant::now();
    let mut keys: Vec<(String, u64)> = terms.iter().map(|t| (fold_words(&t.text).text, u64::from(t.rank))).collect();
    keys.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    keys.dedup_by(|later, earlier| later.0 == earlier.0);
    let map = fst::Map::from_iter(keys.iter().map(|(k, w)| (k.as_str(), *w))).expect("fst map");
    println!("  fst map built in {:.2} s: {:.1} MiB", started.elapsed().as_secs_f64(), map.as_fst().size() as f64 / 1_048_576.0);

    let started = Instant::now();
    let mut schema = Schema::builder();
    let text_field = schema.add_text_field("text", STRING);
    let weight_field = schema.add_u64_field("weight", FAST);
    let index = Index::create_in_ram(schema.build());
    let mut writer = index.writer::<TantivyDocument>(200_000_000).expect("tantivy writer");
    for (key, weight) in &keys {
        writer.add_document(doc!(text_field => key.as_str(), weight_field => *weight)).expect("add");
    }
    writer.commit().expect("commit");
    let reader = index.reader().expect("reader");
    let searcher = reader.searcher();
    println!("  tantivy index built in {:.2} s", started.elapsed().as_secs_f64());

    let queries = queries(&terms, count, &settings);
    if let Some(path) = std::env::var_os("WRITE_QUERIES") {
        let lines: String = queries.iter().map(|(q, _)| format!("{q}\n")).collect();
        std::fs::write(path, lines).expect("write the queries");
    }
    let by_typos = |n: u8| queries.iter().filter(|(_, t)| *t == n).count();
    println!("{} queries: {} exact, {} with one typo, {} with two", queries.len(), by_typos(0), by_typos(1), by_typos(2));

    // Verge, warm and cold.
    for cold in [false, true] {
        let mut times = Vec::with_capacity(queries.len());
        let mut found = 0;
        for (query, _) in &queries {
            let started = Instant::now();
            let folded = fold_words(query).text;
            let wanted = ac::shards_for(&directory, &folded, directory.settings.typo_budget(&folded));
            let decoded: Vec<Shard>;
            let refs: Vec<&Shard> = if cold {
                decoded = wanted.iter().map(|n| Shard::decode(&parts[n + 1].1).expect("shard")).collect();
                decoded.iter().collect()
            } else {
                wanted.iter().map(|n| &shards[*n]).collect()
            };
            let answer = ac::search(&refs, &directory.settings, &folded, LIMIT).expect("search");
            times.push(started.elapsed());
            found += usize::from(!answer.is_empty());
            std::hint::black_box(answer);
        }
        if std::env::var_os("SHOW_SLOWEST").is_some() && !cold {
            let mut slow: Vec<(Duration, &str)> = times.iter().copied().zip(queries.iter().map(|(q, _)| q.as_str())).collect();
            slow.sort();
            for (time, query) in slow.iter().rev().take(15) {
                println!("    slow: {:>7.1} µs  {query:?}", time.as_secs_f64() * 1e6);
            }
        }
        report(if cold { "Verge (cold instance)" } else { "Verge (warm instance)" }, times, found);
    }

    // fst's Levenshtein automaton: every match streamed, the best five kept.
    let mut times = Vec::with_capacity(queries.len());
    let (mut found, mut refused) = (0, 0);
    for (query, _) in &queries {
        let started = Instant::now();
        let folded = fold_words(query).text;
        let typos = u32::from(settings.typo_budget(&folded));
        let Ok(automaton) = fst::automaton::Levenshtein::new(&folded, typos) else {
            refused += 1;
            continue;
        };
        let mut stream = map.search(fst::Automaton::starts_with(automaton)).into_stream();
        let mut best: BinaryHeap<Reverse<(u64, Vec<u8>)>> = BinaryHeap::new();
        while let Some((key, weight)) = stream.next() {
            best.push(Reverse((weight, key.to_vec())));
            if best.len() > LIMIT {
                best.pop();
            }
        }
        times.push(started.elapsed());
        found += usize::from(!best.is_empty());
        std::hint::black_box(best);
    }
    report("fst Levenshtein (floor)", times, found);
    if refused > 0 {
        println!("  (fst refused {refused} queries: its automaton grew past its state limit)");
    }

    // tantivy's fuzzy prefix term query.
    let mut times = Vec::with_capacity(queries.len());
    let mut found = 0;
    for (query, _) in &queries {
        let started = Instant::now();
        let folded = fold_words(query).text;
        let typos = settings.typo_budget(&folded);
        let fuzzy = FuzzyTermQuery::new_prefix(Term::from_field_text(text_field, &folded), typos, true);
        let top = searcher
            .search(&fuzzy, &TopDocs::with_limit(LIMIT).order_by_fast_field::<u64>("weight", Order::Desc))
            .expect("tantivy search");
        times.push(started.elapsed());
        found += usize::from(!top.is_empty());
        std::hint::black_box(top);
    }
    report("tantivy fuzzy prefix", times, found);
}
