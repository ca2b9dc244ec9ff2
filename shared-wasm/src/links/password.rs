//! Link passwords: PBKDF2-HMAC-SHA256 with a per-link salt, verified at the edge.
//!
//! The iteration count is a trade: every wrong guess must cost an attacker real work, and
//! one check must fit the edge's CPU budget (Workers' free plan allows 10 ms in all).
//! [`ITERATIONS`] costs a few milliseconds in wasm. The count is stored with the hash, so
//! it can be raised later without breaking existing links. Only the hash is ever in KV.

use super::hex;
use pbkdf2::pbkdf2_hmac;
use sha2::Sha256;

/// Iterations for new hashes.
pub const ITERATIONS: u32 = 4_096;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash {
    pub iterations: u32,
    pub salt: [u8; SALT_LEN],
    pub hash: [u8; HASH_LEN],
}

impl PasswordHash {
    /// Hashes `password` with `salt` (16 random bytes from the caller).
    pub fn new(password: &str, salt: [u8; SALT_LEN]) -> PasswordHash {
        let mut hash = [0; HASH_LEN];
        pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, ITERATIONS, &mut hash);
        PasswordHash { iterations: ITERATIONS, salt, hash }
    }

    /// Whether `password` matches, compared in constant time.
    pub fn verify(&self, password: &str) -> bool {
        let mut candidate = [0; HASH_LEN];
        pbkdf2_hmac::<Sha256>(password.as_bytes(), &self.salt, self.iterations, &mut candidate);
        candidate.iter().zip(self.hash.iter()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
    }

    /// `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`.
    pub fn encode(&self) -> String {
        format!("pbkdf2-sha256${}${}${}", self.iterations, hex(&self.salt), hex(&self.hash))
    }

    pub fn decode(text: &str) -> Option<PasswordHash> {
        let mut parts = text.split('$');
        if parts.next()? != "pbkdf2-sha256" {
            return None;
        }
        let iterations = parts.next()?.parse().ok().filter(|&n| n > 0)?;
        let salt = unhex(parts.next()?)?;
        let hash = unhex(parts.next()?)?;
        parts.next().is_none().then_some(PasswordHash { iterations, salt, hash })
    }
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_password_and_round_trips() {
        let hash = PasswordHash::new("correct horse", [7; SALT_LEN]);
        assert!(hash.verify("correct horse"));
        assert!(!hash.verify("correct hors"));
        assert!(!hash.verify(""));
        let decoded = PasswordHash::decode(&hash.encode()).unwrap();
        assert_eq!(decoded, hash);
        assert!(!hash.encode().contains("correct"));
        // Same password, other salt: another hash.
        assert_ne!(PasswordHash::new("correct horse", [8; SALT_LEN]).hash, hash.hash);
    }

    #[test]
    fn refuses_malformed_encodings() {
        for text in ["", "md5$1$00$00", "pbkdf2-sha256$0$00$00", "pbkdf2-sha256$10$zz$00", "pbkdf2-sha256$10$00"] {
            assert_eq!(PasswordHash::decode(text), None, "{text}");
        }
    }
}
