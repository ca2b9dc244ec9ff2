//! Customer passwords: what is refused, and Argon2id hashing off the async runtime.
//!
//! Hashes are PHC strings from the `argon2` crate at its defaults, which are OWASP's first
//! recommendation: Argon2id v19, m = 19 MiB, t = 2, p = 1. The parameters travel in each
//! hash, so they can be raised later without invalidating accounts. Hashing takes tens of
//! milliseconds of one core, so it runs on the blocking pool and bounds sign-ins per
//! second per core (docs/sessions.md gives the measured figure).

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::error::{ApiError, FieldError};

pub(crate) const MIN_LEN: usize = 10;
pub(crate) const MAX_LEN: usize = 256;

/// Passwords at least `MIN_LEN` long that appear at the top of breach corpora; shorter
/// ones are refused for their length already.
const COMMON: &str = include_str!("common-passwords.txt");

/// Why `password` may not be used, if it may not.
pub(crate) fn refusal(password: &str, email: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Some(format!("must be at least {MIN_LEN} characters"));
    }
    if chars > MAX_LEN {
        return Some(format!("must be at most {MAX_LEN} characters"));
    }
    let folded = password.to_lowercase();
    if COMMON.lines().any(|common| common == folded) {
        return Some("is one of the most common passwords in breach data; choose another".into());
    }
    let distinct = {
        let mut seen: Vec<char> = folded.chars().collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    };
    if distinct < 4 {
        return Some("uses too few different characters".into());
    }
    let local = super::fold_email(email);
    let local = local.split('@').next().unwrap_or_default();
    if local.len() >= 4 && folded.contains(local) {
        return Some("must not contain the email address".into());
    }
    None
}

/// Refuses `password` as a 422 on `field`.
pub(crate) fn check(password: &str, email: &str, field: &str) -> Result<(), ApiError> {
    match refusal(password, email) {
        Some(message) => Err(ApiError::validation(vec![FieldError { field: field.into(), message }])),
        None => Ok(()),
    }
}

/// Argon2id PHC string of `password`.
pub(crate) async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes is a valid salt");
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|hash| hash.to_string())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// Whether `password` matches `stored` (constant-time inside `argon2`). With no stored hash
/// (no such account, or no password) a dummy hash is checked, so the answer takes as long
/// either way and timing does not tell which emails have accounts.
pub(crate) async fn verify(password: String, stored: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let exists = stored.is_some();
        let stored = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let matches = PasswordHash::new(&stored)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false);
        exists && matches
    })
    .await
    .map_err(ApiError::internal)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::encode_b64(&[7u8; 16]).expect("16 bytes is a valid salt");
        Argon2::default().hash_password(b"not a password anyone has", &salt).expect("hashing works").to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_short_common_monotonous_and_email_passwords() {
        assert_eq!(refusal("short", "a@b.c").unwrap(), "must be at least 10 characters");
        assert!(refusal("Password123", "a@b.c").unwrap().contains("most common"));
        assert!(refusal("abababababab", "a@b.c").unwrap().contains("too few"));
        assert!(refusal("xx-alice.smith-99", "Alice.Smith@example.com").unwrap().contains("email"));
        assert_eq!(refusal("correct horse battery", "alice@example.com"), None);
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify_only_the_password() {
        let stored = hash("correct horse battery".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(verify("correct horse battery".into(), Some(stored.clone())).await.unwrap());
        assert!(!verify("correct horse batterz".into(), Some(stored)).await.unwrap());
        assert!(!verify("not a password anyone has".into(), None).await.unwrap());
    }
}
