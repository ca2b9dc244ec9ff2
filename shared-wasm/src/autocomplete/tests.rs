use super::*;
use crate::text::fold_words;

fn term(text: &str, rank: u32) -> BuildTerm {
    BuildTerm { text: text.into(), rank, ..BuildTerm::default() }
}

/// Builds `terms` into shards of `budget` bytes and answers `query` as an edge would.
fn ask_with(terms: &[BuildTerm], curation: &Curation, budget: usize, query: &str, limit: usize) -> Vec<Suggestion> {
    let settings = Settings::default();
    let parts = build(terms, curation, &settings, budget);
    let directory = Directory::decode(&parts[0].1).expect("directory decodes");
    let folded = fold_words(query).text;
    let wanted = shards_for(&directory, &folded, directory.settings.typo_budget(&folded));
    let shards: Vec<Shard> = wanted.iter().map(|n| Shard::decode(&parts[n + 1].1).expect("shard decodes")).collect();
    let refs: Vec<&Shard> = shards.iter().collect();
    search(&refs, &directory.settings, &folded, limit).expect("searches")
}

fn ask(terms: &[BuildTerm], query: &str) -> Vec<String> {
    ask_with(terms, &Curation::default(), SHARD_BUDGET, query, 5).into_iter().map(|s| s.text).collect()
}

fn cities() -> Vec<BuildTerm> {
    [
        ("São Paulo", 12_325_232),
        ("Paris", 2_138_551),
        ("Parma", 175_895),
        ("Pará de Minas", 97_139),
        ("Sandnes", 63_032),
        ("San Francisco", 864_816),
        ("Santiago", 4_837_295),
        ("Santa Cruz de Tenerife", 206_593),
        ("New York City", 8_804_190),
        ("Newark", 311_549),
        ("Zürich", 341_730),
        ("Zurrieq", 11_152),
        ("Москва", 10_381_222),
        ("Köln", 1_075_935),
        ("St. Louis", 319_294),
    ]
    .into_iter()
    .map(|(text, rank)| term(text, rank))
    .collect()
}

#[test]
fn prefixes_rank_by_weight() {
    assert_eq!(ask(&cities(), "par"), ["Paris", "Parma", "Pará de Minas"]);
    assert_eq!(ask(&cities(), "san"), ["Santiago", "San Francisco", "Santa Cruz de Tenerife", "Sandnes"]);
    assert_eq!(ask(&cities(), "s"), ["São Paulo", "Santiago", "San Francisco", "St. Louis", "Santa Cruz de Tenerife"]);
}

#[test]
fn accents_fold_both_ways_and_punctuation_separates() {
    assert_eq!(ask(&cities(), "sao p"), ["São Paulo"]);
    assert_eq!(ask(&cities(), "ZÜR"), ["Zürich", "Zurrieq"]);
    assert_eq!(ask(&[term("Sao Tome", 1)], "são"), ["Sao Tome"]);
    assert_eq!(ask(&cities(), "st lou"), ["St. Louis"]);
    assert_eq!(ask(&cities(), "моск"), ["Москва"]);
}

#[test]
fn later_words_start_keys_too() {
    assert_eq!(ask(&cities(), "york"), ["New York City"]);
    assert_eq!(ask(&cities(), "paulo"), ["São Paulo"]);
}

#[test]
fn typos_follow_word_length_and_transpositions_count_once() {
    // One typo from four characters: a transposition, a substitution, a missing letter.
    assert_eq!(ask(&cities(), "sanitago"), ["Santiago"]);
    assert_eq!(ask(&cities(), "zurixh"), ["Zürich"]);
    assert_eq!(ask(&cities(), "koln"), ["Köln"]);
    // Three characters allow none; the first character is never a typo.
    assert!(ask(&cities(), "pqr").is_empty());
    assert!(ask(&cities(), "xaris").is_empty());
    // Two from eight: "san fransisco" has two typos in a long word.
    assert_eq!(ask(&cities(), "san fransisco"), ["San Francisco"]);
    assert!(ask(&cities(), "sanfrxnxixco").is_empty(), "three typos are too many");
}

#[test]
fn exact_and_prefix_matches_come_before_fuzzy_ones() {
    let terms = [term("Bern", 1), term("Berlin", 3_600_000), term("Bergen", 285_000)];
    let found = ask_with(&terms, &Curation::default(), SHARD_BUDGET, "bern", 5);
    assert_eq!(found[0].text, "Bern");
    assert_eq!(found[0].typos, 0);
    assert!(found[1..].iter().all(|s| s.typos == 1), "{found:?}");
}

#[test]
fn highlights_point_into_the_original_text() {
    let found = ask_with(&cities(), &Curation::default(), SHARD_BUDGET, "sao pa", 1);
    assert_eq!(found[0].highlight, Some(Highlight { start: 0, end: 6 }));
    let found = ask_with(&cities(), &Curation::default(), SHARD_BUDGET, "york", 1);
    assert_eq!(found[0].highlight, Some(Highlight { start: 4, end: 8 }));
    // UTF-16 units: the emoji takes two.
    let found = ask_with(&[term("🍕 Pizza", 1)], &Curation::default(), SHARD_BUDGET, "piz", 1);
    assert_eq!(found[0].highlight, Some(Highlight { start: 3, end: 6 }));
}

#[test]
fn pins_come_first_and_blocks_never_appear() {
    let terms = cities();
    let parma = terms.iter().position(|t| t.text == "Parma").unwrap();
    let curation = Curation {
        pins: vec![("PAR".into(), vec![parma])],
        blocks: vec!["paris".into(), "*minas".into()],
        ..Curation::default()
    };
    let found = ask_with(&terms, &curation, SHARD_BUDGET, "par", 5);
    assert_eq!(found.iter().map(|s| s.text.as_str()).collect::<Vec<_>>(), ["Parma"]);
    assert!(found[0].pinned);
    let fuzzy = ask_with(&terms, &curation, SHARD_BUDGET, "pari", 5);
    assert_eq!(fuzzy.iter().map(|s| s.text.as_str()).collect::<Vec<_>>(), ["Parma"], "Paris is blocked");
}

#[test]
fn synonyms_find_terms_by_another_name() {
    let curation = Curation { synonyms: vec![vec!["nyc".into(), "new york".into()]], ..Curation::default() };
    let found = ask_with(&cities(), &curation, SHARD_BUDGET, "nyc", 5);
    assert_eq!(found[0].text, "New York City");
    assert_eq!(found[0].highlight, None);
}

#[test]
fn small_shards_answer_like_one_big_one() {
    let terms: Vec<BuildTerm> =
        (0..3_000u32).map(|n| term(&format!("{} item {n}", ["alpha", "beta", "gamma"][n as usize % 3]), n)).collect();
    let parts = build(&terms, &Curation::default(), &Settings::default(), 4 * 1024);
    assert!(parts.len() > 10, "{} parts", parts.len());
    assert!(parts.iter().all(|(_, bytes)| bytes.len() < 8 * 1024));
    for query in ["alpha", "beta item 29", "gamma itme 2", "item 1", "alhpa"] {
        let small: Vec<Suggestion> = ask_with(&terms, &Curation::default(), 4 * 1024, query, 10);
        let big = ask_with(&terms, &Curation::default(), SHARD_BUDGET, query, 10);
        assert_eq!(small, big, "{query}");
        assert!(!big.is_empty(), "{query}");
    }
}

#[test]
fn settings_validate_and_round_trip() {
    let settings = Settings { one_typo_from: 5, two_typos_from: 9, min_prefix: 2, ..Settings::default() };
    assert_eq!(Settings::from_value(&settings.to_value()), Ok(settings));
    let errors = Settings::from_value(&serde_json::json!({"typos": {"one_from": 9, "two_from": 4, "three": 1},
        "default_limit": 0, "colour": "red"}))
    .unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["/default_limit", "/colour", "/typos/three", "/typos/two_from"]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    /// Best-first answers are exactly the brute-force answer: every key that starts
    /// with the query, best rank first.
    #[test]
    fn best_first_matches_brute_force(
        words in proptest::collection::vec(("[abc]{1,6}", 0u32..1000), 1..200),
        query in "[abc]{1,3}",
    ) {
        let terms: Vec<BuildTerm> = words.iter().map(|(w, r)| term(w, *r)).collect();
        let found = ask_with(&terms, &Curation::default(), 512, &query, 10);
        let mut expected: Vec<(u32, &str)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for t in &terms {
            if t.text.starts_with(&query) && seen.insert(t.text.as_str()) {
                let best = terms.iter().filter(|o| o.text == t.text).map(|o| o.rank).max().unwrap();
                expected.push((best, t.text.as_str()));
            }
        }
        expected.sort_by_key(|e| std::cmp::Reverse(e.0));
        let ranks: Vec<u32> = found.iter().map(|s| s.rank).collect();
        let wanted: Vec<u32> = expected.iter().take(10).map(|e| e.0).collect();
        proptest::prop_assert_eq!(ranks, wanted);
    }
}

#[test]
fn a_preferred_language_comes_first_within_each_tier_however_far_down() {
    let mut terms: Vec<BuildTerm> = (0..500).map(|n| term(&format!("Mun{n:03}"), 1_000 + n)).collect();
    terms.push(BuildTerm { text: "München".into(), rank: 1, language: Some("de".into()), ..BuildTerm::default() });
    terms.push(BuildTerm { text: "Munich".into(), rank: 5_000, language: Some("en".into()), ..BuildTerm::default() });
    let parts = build(&terms, &Curation::default(), &Settings::default(), SHARD_BUDGET);
    let directory = Directory::decode(&parts[0].1).unwrap();
    let shards: Vec<Shard> = parts[1..].iter().map(|(_, b)| Shard::decode(b).unwrap()).collect();
    let refs: Vec<&Shard> = shards.iter().collect();
    let texts = |found: Vec<Suggestion>| found.into_iter().map(|s| s.text).collect::<Vec<_>>();
    assert_eq!(texts(search(&refs, &directory.settings, "mun", 2).unwrap()), ["Munich", "Mun499"]);
    assert_eq!(texts(search_preferring(&refs, &directory.settings, "mun", 2, "de").unwrap()), ["München", "Munich"]);
    // A typo tier stays below the exact one, whatever the language.
    let fuzzy = search_preferring(&refs, &directory.settings, "munchen", 3, "de").unwrap();
    assert_eq!(fuzzy[0].text, "München");
    assert_eq!(texts(search_preferring(&refs, &directory.settings, "mun", 2, "fr").unwrap()), ["Munich", "Mun499"]);
}
