//! Folding text for search: the same words match however they were typed.
//!
//! Compatibility decomposition (NFKD) splits `é` into `e` and a combining accent and `ﬁ`
//! into `fi`; dropping the combining marks and lower-casing then makes `Café`, `CAFE` and
//! `café` one word. Searches fold the query the same way, so a prefix of the folded query
//! is a prefix of the folded text.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// `text` decomposed, without combining marks, lower-cased, whitespace collapsed.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.nfkd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase) {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    out
}

/// The folded words of `text`: runs of letters and digits.
pub fn words(text: &str) -> impl Iterator<Item = String> {
    fold(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .into_iter()
}

/// Text folded for suggestions, remembering where each folded character came from, so a
/// match found in the folded text can be highlighted in the original.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folded {
    /// Runs of letters and digits, folded as [`fold`] does, joined by single spaces.
    pub text: String,
    /// For each `char` of `text`, the index (in `char`s) of the original character.
    pub origin: Vec<u32>,
}

impl Folded {
    pub fn chars(&self) -> usize {
        self.origin.len()
    }
}

/// `text` folded for suggestions: like [`fold`], and punctuation separates words as
/// whitespace does, so `St. Louis` and `st louis` are one key.
pub fn fold_words(text: &str) -> Folded {
    let mut folded = Folded { text: String::with_capacity(text.len()), origin: Vec::with_capacity(text.len()) };
    let mut pending_space = false;
    for (index, original) in text.chars().enumerate() {
        let index = index as u32;
        for c in original.nfkd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase) {
            if !c.is_alphanumeric() {
                pending_space = !folded.text.is_empty();
                continue;
            }
            if pending_space {
                folded.text.push(' ');
                folded.origin.push(index);
                pending_space = false;
            }
            folded.text.push(c);
            folded.origin.push(index);
        }
    }
    folded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_accents_compatibility_forms_and_spaces() {
        assert_eq!(fold("  Café  CRÈME\tﬁne "), "cafe creme fine");
        assert_eq!(fold("Zoë Ångström"), "zoe angstrom");
        assert_eq!(fold("ＡＢＣ"), "abc");
        assert_eq!(words("Anne-Marie O'Neil, 42").collect::<Vec<_>>(), ["anne", "marie", "o", "neil", "42"]);
    }

    #[test]
    fn fold_words_separates_at_punctuation_and_remembers_origins() {
        let folded = fold_words(" St. Étienne—ﬁn ");
        assert_eq!(folded.text, "st etienne fin");
        // A space stands where the next word starts; `ﬁ` (index 13) became `f` and `i`.
        assert_eq!(folded.origin, [1, 2, 5, 5, 6, 7, 8, 9, 10, 11, 13, 13, 13, 14]);
        assert_eq!(fold_words("?!").text, "");
    }
}
