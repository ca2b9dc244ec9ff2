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
}
