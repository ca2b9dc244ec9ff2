//! Opaque, type-prefixed, time-sortable identifiers (`key_01j9…`, `lnk_01j9…`).
//!
//! An id is `<prefix>_` followed by 26 lowercase Crockford base32 characters encoding 128
//! bits: 48 bits of Unix milliseconds, then 80 random bits (the ULID layout). Sorting ids as
//! strings sorts them by creation time, which is what cursor pagination needs, while the
//! random part keeps them unguessable. Both the core and the edges mint ids (edges for the
//! events they send back), so the format lives here; the caller supplies time and entropy.

use std::fmt;

/// Crockford's base32 alphabet, lowercase: no `i`, `l`, `o` or `u` to misread.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const ENCODED_LEN: usize = 26;

/// Whether `name` is a slug a caller may choose for a project or an index: 1–63 of
/// `a-z`, `0-9`, `-`, `_`, starting with a letter or digit. Such names become edge KV keys.
pub fn is_slug(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

/// Builds an id from a type prefix, a Unix time in milliseconds and 10 random bytes.
///
/// Times past the 48-bit range (year 10889) are clamped rather than wrapped, so order holds.
pub fn format_id(prefix: &str, unix_ms: u64, random: [u8; 10]) -> String {
    let ms = u128::from(unix_ms.min((1 << 48) - 1));
    let mut value = ms << 80;
    for (i, byte) in random.iter().enumerate() {
        value |= u128::from(*byte) << (72 - 8 * i);
    }
    let mut out = String::with_capacity(prefix.len() + 1 + ENCODED_LEN);
    out.push_str(prefix);
    out.push('_');
    // 26 characters of 5 bits carry 130 bits; the top character holds the 3 highest bits.
    for i in (0..ENCODED_LEN).rev() {
        let digit = ((value >> (5 * i)) & 0x1f) as usize;
        out.push(ALPHABET[digit] as char);
    }
    out
}

/// Why a string is not an id of the expected type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    WrongPrefix { expected: String },
    Malformed,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::WrongPrefix { expected } => write!(f, "expected an id starting with `{expected}_`"),
            IdError::Malformed => f.write_str("not a well-formed id"),
        }
    }
}

impl std::error::Error for IdError {}

/// Checks that `id` is a well-formed id with the given prefix and returns its timestamp.
pub fn parse_id(prefix: &str, id: &str) -> Result<u64, IdError> {
    let body = id
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .ok_or_else(|| IdError::WrongPrefix { expected: prefix.to_owned() })?;
    if body.len() != ENCODED_LEN {
        return Err(IdError::Malformed);
    }
    let mut value: u128 = 0;
    for (i, c) in body.bytes().enumerate() {
        let digit = ALPHABET.iter().position(|&a| a == c).ok_or(IdError::Malformed)? as u128;
        // The leading character may only carry the 3 bits left over from 128.
        if i == 0 && digit > 7 {
            return Err(IdError::Malformed);
        }
        value = (value << 5) | digit;
    }
    Ok((value >> 80) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_time_and_shape() {
        let id = format_id("key", 1_700_000_000_123, [0xab; 10]);
        assert!(id.starts_with("key_"));
        assert_eq!(id.len(), 4 + 26);
        assert_eq!(parse_id("key", &id), Ok(1_700_000_000_123));
    }

    #[test]
    fn sorts_by_time_then_randomness() {
        let early = format_id("lnk", 1_000, [0xff; 10]);
        let late = format_id("lnk", 1_001, [0x00; 10]);
        assert!(early < late);
        let a = format_id("lnk", 5, [0; 10]);
        let mut r = [0; 10];
        r[9] = 1;
        let b = format_id("lnk", 5, r);
        assert!(a < b);
        assert_ne!(a, b);
    }

    #[test]
    fn rejects_wrong_prefix_and_garbage() {
        let id = format_id("key", 42, [7; 10]);
        assert_eq!(parse_id("lnk", &id), Err(IdError::WrongPrefix { expected: "lnk".into() }));
        assert_eq!(parse_id("key", "key_short"), Err(IdError::Malformed));
        assert_eq!(parse_id("key", "key_0000000000000000000000000u"), Err(IdError::Malformed));
        // 8 in the leading position would need 131 bits.
        assert_eq!(parse_id("key", "key_80000000000000000000000000"), Err(IdError::Malformed));
    }

    #[test]
    fn clamps_times_beyond_48_bits() {
        let id = format_id("x", u64::MAX, [0; 10]);
        assert_eq!(parse_id("x", &id), Ok((1 << 48) - 1));
    }
}
