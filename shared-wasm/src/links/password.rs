//! Link passwords: Argon2id with a per-link salt, verified at the edge.
//!
//! The hash is published to every edge, so it must resist offline guessing by anyone who
//! can read edge KV: new hashes are Argon2id at OWASP's low-memory parameters
//! ([`MEMORY_KIB`] KiB, [`PASSES`] passes, one lane). One check costs tens of milliseconds
//! of CPU; the edge runs it only for a password form, and limits failed attempts per link
//! and client before hashing. Parameters are stored with each hash, so they can be raised
//! without breaking links. Hashes from before (PBKDF2-HMAC-SHA256) still verify, and are
//! replaced by Argon2id when a link's password is next set.

use super::hex;
use argon2::{Algorithm, Argon2, Params, Version};
use pbkdf2::pbkdf2_hmac;
use sha2::Sha256;

/// Argon2id memory for new hashes, in KiB (OWASP: m=7 MiB, t=5, p=1).
pub const MEMORY_KIB: u32 = 7 * 1024;
/// Argon2id passes for new hashes.
pub const PASSES: u32 = 5;
/// Shortest password a link may be given.
pub const MIN_LEN: usize = 8;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
/// Bounds on stored parameters, so a tampered record cannot make an edge spend unbounded
/// memory or time on one check.
const MAX_MEMORY_KIB: u32 = 64 * 1024;
const MAX_PASSES: u32 = 16;
const MAX_PBKDF2_ITERATIONS: u32 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Argon2id (version 0x13) with this memory (KiB) and these passes, one lane.
    Argon2id { memory_kib: u32, passes: u32 },
    /// Links made before Argon2id: PBKDF2-HMAC-SHA256 with this many iterations.
    Pbkdf2Sha256 { iterations: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash {
    pub scheme: Scheme,
    pub salt: [u8; SALT_LEN],
    pub hash: [u8; HASH_LEN],
}

impl PasswordHash {
    /// Hashes `password` with `salt` (16 random bytes from the caller) with Argon2id.
    pub fn new(password: &str, salt: [u8; SALT_LEN]) -> PasswordHash {
        let scheme = Scheme::Argon2id { memory_kib: MEMORY_KIB, passes: PASSES };
        let hash = derive(scheme, password, &salt).expect("the default parameters are valid");
        PasswordHash { scheme, salt, hash }
    }

    /// Whether `password` matches, compared in constant time.
    pub fn verify(&self, password: &str) -> bool {
        let Some(candidate) = derive(self.scheme, password, &self.salt) else { return false };
        candidate.iter().zip(self.hash.iter()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
    }

    /// `argon2id$m=<KiB>,t=<passes>,p=1$<salt hex>$<hash hex>` (or the older
    /// `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`).
    pub fn encode(&self) -> String {
        let (salt, hash) = (hex(&self.salt), hex(&self.hash));
        match self.scheme {
            Scheme::Argon2id { memory_kib, passes } => format!("argon2id$m={memory_kib},t={passes},p=1${salt}${hash}"),
            Scheme::Pbkdf2Sha256 { iterations } => format!("pbkdf2-sha256${iterations}${salt}${hash}"),
        }
    }

    pub fn decode(text: &str) -> Option<PasswordHash> {
        let mut parts = text.split('$');
        let scheme = match (parts.next()?, parts.next()?) {
            ("argon2id", params) => {
                let mut fields = params.split(',');
                let memory_kib = fields.next()?.strip_prefix("m=")?.parse().ok()?;
                let passes = fields.next()?.strip_prefix("t=")?.parse().ok()?;
                (fields.next()? == "p=1" && fields.next().is_none()).then_some(())?;
                let valid = (8..=MAX_MEMORY_KIB).contains(&memory_kib) && (1..=MAX_PASSES).contains(&passes);
                valid.then_some(Scheme::Argon2id { memory_kib, passes })?
            }
            ("pbkdf2-sha256", iterations) => {
                let iterations = iterations.parse().ok().filter(|n| (1..=MAX_PBKDF2_ITERATIONS).contains(n))?;
                Scheme::Pbkdf2Sha256 { iterations }
            }
            _ => return None,
        };
        let salt = unhex(parts.next()?)?;
        let hash = unhex(parts.next()?)?;
        parts.next().is_none().then_some(PasswordHash { scheme, salt, hash })
    }
}

fn derive(scheme: Scheme, password: &str, salt: &[u8]) -> Option<[u8; HASH_LEN]> {
    let mut out = [0; HASH_LEN];
    match scheme {
        Scheme::Argon2id { memory_kib, passes } => {
            let params = Params::new(memory_kib, passes, 1, Some(HASH_LEN)).ok()?;
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_into(password.as_bytes(), salt, &mut out)
                .ok()?;
        }
        Scheme::Pbkdf2Sha256 { iterations } => pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out),
    }
    Some(out)
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
        assert_eq!(hash.scheme, Scheme::Argon2id { memory_kib: 7168, passes: 5 });
        assert!(hash.verify("correct horse"));
        assert!(!hash.verify("correct hors"));
        assert!(!hash.verify(""));
        let decoded = PasswordHash::decode(&hash.encode()).unwrap();
        assert_eq!(decoded, hash);
        assert!(hash.encode().starts_with("argon2id$m=7168,t=5,p=1$"));
        assert!(!hash.encode().contains("correct"));
        // Same password, other salt: another hash.
        assert_ne!(PasswordHash::new("correct horse", [8; SALT_LEN]).hash, hash.hash);
    }

    #[test]
    fn matches_the_argon2id_reference_implementation() {
        // RFC 9106's parameters are not ours, so check against the crate's own PHC
        // encoder instead: the same password, salt and parameters give the same bytes.
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = [3u8; SALT_LEN];
        let ours = PasswordHash::new("tr0ub4dor&3", salt);
        let params = Params::new(MEMORY_KIB, PASSES, 1, Some(HASH_LEN)).unwrap();
        let salt_string = SaltString::encode_b64(&salt).unwrap();
        let phc = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"tr0ub4dor&3", &salt_string)
            .unwrap();
        assert_eq!(phc.hash.unwrap().as_bytes(), ours.hash);
    }

    #[test]
    fn hashes_from_before_argon2id_still_verify() {
        // Made by the PBKDF2 version this replaced, for the password "s3cret pw".
        let mut legacy = [0; HASH_LEN];
        pbkdf2_hmac::<Sha256>(b"s3cret pw", &[1; SALT_LEN], 4096, &mut legacy);
        let text = format!("pbkdf2-sha256$4096${}${}", hex(&[1; SALT_LEN]), hex(&legacy));
        let decoded = PasswordHash::decode(&text).unwrap();
        assert!(decoded.verify("s3cret pw"));
        assert!(!decoded.verify("s3cret"));
        assert_eq!(decoded.encode(), text);
    }

    #[test]
    fn refuses_malformed_or_unbounded_encodings() {
        let tail = format!("{}${}", "00".repeat(SALT_LEN), "00".repeat(HASH_LEN));
        for text in [
            String::new(),
            "md5$1$00$00".into(),
            format!("pbkdf2-sha256$0${tail}"),
            format!("pbkdf2-sha256$99999999${tail}"),
            "pbkdf2-sha256$10$zz$00".into(),
            format!("argon2id$m=7168,t=5,p=2${tail}"),
            format!("argon2id$m=9999999,t=5,p=1${tail}"),
            format!("argon2id$m=7168,t=0,p=1${tail}"),
            format!("argon2id$m=7168,t=5${tail}"),
        ] {
            assert_eq!(PasswordHash::decode(&text), None, "{text}");
        }
    }
}
