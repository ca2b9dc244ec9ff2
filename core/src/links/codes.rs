//! Short codes: 7 base62 characters, collision-free and not guessable in sequence.
//!
//! Each new link takes the next number of a counter in the database and the code is that
//! number through a keyed permutation of the 62^7 code space: a four-round Feistel network
//! on 42 bits (HMAC-SHA256 round function, secret per deployment), cycle-walked back into
//! range. A permutation never maps two numbers to one code, so codes cannot collide, and
//! without the key consecutive links give unrelated codes. (A custom alias can take a code
//! the counter will reach later; creating the link then moves on to the next number.)

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of generated codes.
pub(crate) const CODE_LEN: usize = 7;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 62^7: every 7-character code.
const SPACE: u64 = 3_521_614_606_208;
const HALF_BITS: u32 = 21;
const HALF_MASK: u64 = (1 << HALF_BITS) - 1;
const ROUNDS: u8 = 4;

/// The code for counter value `n` (0 ≤ n < 62^7) under `key`.
pub(crate) fn code_for(key: &[u8], n: u64) -> String {
    assert!(n < SPACE, "the code space is exhausted");
    let mut value = n;
    // Cycle-walk: the Feistel network permutes 42 bits, a superset of the code space.
    loop {
        value = feistel(key, value);
        if value < SPACE {
            break;
        }
    }
    let mut code = [b'0'; CODE_LEN];
    for slot in code.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(code.to_vec()).expect("base62 is ASCII")
}

fn feistel(key: &[u8], value: u64) -> u64 {
    let (mut left, mut right) = (value >> HALF_BITS, value & HALF_MASK);
    for round in 0..ROUNDS {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(&[round]);
        mac.update(&right.to_le_bytes());
        let digest = mac.finalize().into_bytes();
        let f = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) & HALF_MASK;
        (left, right) = (right, left ^ f);
    }
    (left << HALF_BITS) | right
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_seven_base62_characters_and_never_repeat() {
        let key = b"test key";
        let codes: HashSet<String> = (0..100_000).map(|n| code_for(key, n)).collect();
        assert_eq!(codes.len(), 100_000);
        assert!(codes.iter().all(|c| c.len() == CODE_LEN && c.bytes().all(|b| b.is_ascii_alphanumeric())));
        assert!(code_for(key, SPACE - 1).len() == CODE_LEN);
    }

    #[test]
    fn consecutive_numbers_give_unrelated_codes_and_the_key_matters() {
        let (a, b) = (code_for(b"k1", 1000), code_for(b"k1", 1001));
        let shared_prefix = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        assert!(shared_prefix < 3, "{a} {b}");
        assert_ne!(code_for(b"k1", 1000), code_for(b"k2", 1000));
    }
}
