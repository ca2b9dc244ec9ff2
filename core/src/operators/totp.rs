//! The optional second factor: time-based one-time passwords (RFC 6238 over RFC 4226's
//! HOTP, HMAC-SHA-1, 6 digits, 30-second steps), which every authenticator app speaks.
//! A code is accepted one step early or late (clock drift), and only once: the step it was
//! accepted for is stored, and a code for that step or an earlier one is refused.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sqlx::Row;

use super::{Credentials, Operator};
use crate::db::Database;
use crate::error::{ApiError, FieldError};
use crate::time::now_millis;

const STEP_SECONDS: i64 = 30;
const DIGITS: u32 = 6;
/// Secret length in bytes (160 bits, RFC 4226's recommendation).
const SECRET_BYTES: usize = 20;
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A new random secret, base32 as authenticator apps take it.
pub(crate) fn new_secret() -> String {
    base32(&rand::random::<[u8; SECRET_BYTES]>())
}

/// The `otpauth://` URI an authenticator app scans.
pub(crate) fn uri(secret: &str, account: &str) -> String {
    let label: String = url::form_urlencoded::byte_serialize(format!("Verge:{account}").as_bytes()).collect();
    format!("otpauth://totp/{label}?secret={secret}&issuer=Verge&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}")
}

fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(5) {
        let mut buffer = [0u8; 5];
        buffer[..chunk.len()].copy_from_slice(chunk);
        let bits = buffer.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..chars {
            out.push(ALPHABET[((bits >> (35 - i * 5)) & 31) as usize] as char);
        }
    }
    out
}

fn unbase32(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u64;
    let mut held = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
        let value = ALPHABET.iter().position(|a| *a == c.to_ascii_uppercase())? as u64;
        bits = (bits << 5) | value;
        held += 5;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
            bits &= (1 << held) - 1;
        }
    }
    Some(out)
}

/// The code for time step `step` (RFC 4226 dynamic truncation).
fn code_at(key: &[u8], step: i64) -> u32 {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let number =
        u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    number % 10u32.pow(DIGITS)
}

/// The time step `code` is valid for at `now_ms`, if it is one of the three around now and
/// later than `after` (the last step a code was accepted for). Compared in constant time.
pub(crate) fn accept(secret: &str, code: &str, now_ms: i64, after: i64) -> Option<i64> {
    use subtle::ConstantTimeEq;
    let key = unbase32(secret)?;
    let code = code.trim().replace(' ', "");
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = now_ms.div_euclid(1000 * STEP_SECONDS);
    let mut found = None;
    for step in [now - 1, now, now + 1] {
        let expected = format!("{:0width$}", code_at(&key, step), width = DIGITS as usize);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && step > after {
            found = Some(step);
        }
    }
    found
}

/// Whether `code` is a fresh TOTP code of the operator (always true without a second
/// factor). Using it up is a conditional update, so two sign-ins cannot share one code.
pub(crate) async fn second_factor_holds(
    db: &Database,
    credentials: &Credentials,
    code: &str,
) -> Result<bool, sqlx::Error> {
    let Some(secret) = &credentials.totp_secret else { return Ok(true) };
    let Some(step) = accept(secret, code, now_millis().0, credentials.totp_step) else { return Ok(false) };
    let used = sqlx::query("UPDATE operators SET totp_step = $1 WHERE id = $2 AND totp_step < $1")
        .bind(step)
        .bind(&credentials.operator.id)
        .execute(db.pool())
        .await?;
    Ok(used.rows_affected() == 1)
}

/// Starts setting up a second factor: a new secret, pending until a code confirms it.
pub(crate) async fn begin_totp(db: &Database, operator: &Operator) -> Result<String, sqlx::Error> {
    let secret = new_secret();
    sqlx::query("UPDATE operators SET totp_pending = $1 WHERE id = $2")
        .bind(&secret)
        .bind(&operator.id)
        .execute(db.pool())
        .await?;
    Ok(secret)
}

/// The secret being set up, if any.
pub(crate) async fn pending_totp(db: &Database, operator: &Operator) -> Result<Option<String>, sqlx::Error> {
    let row =
        sqlx::query("SELECT totp_pending FROM operators WHERE id = $1").bind(&operator.id).fetch_one(db.pool()).await?;
    row.try_get("totp_pending")
}

fn wrong_code() -> ApiError {
    ApiError::validation(vec![FieldError {
        field: "/code".into(),
        message: "is not the current code of the authenticator app".into(),
    }])
}

/// Runs `change` and audits it as `action`, in one transaction.
async fn change_totp<'q>(
    db: &Database,
    operator: &Operator,
    change: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    action: &str,
) -> Result<(), ApiError> {
    let mut tx = db.pool().begin().await?;
    change.execute(&mut *tx).await?;
    crate::audit::record::<Operator>(&mut tx, &operator.actor(), action, "operator", &operator.id, None, None).await?;
    tx.commit().await?;
    Ok(())
}

/// Turns the pending secret on when `code` proves the app holds it (422 `/code` otherwise).
pub(crate) async fn confirm_totp(db: &Database, operator: &Operator, code: &str) -> Result<(), ApiError> {
    let secret = pending_totp(db, operator).await?.ok_or_else(wrong_code)?;
    let step = accept(&secret, code, now_millis().0, 0).ok_or_else(wrong_code)?;
    let change = sqlx::query(
        "UPDATE operators SET totp_secret = totp_pending, totp_pending = NULL, totp_step = $1
         WHERE id = $2 AND totp_pending = $3",
    )
    .bind(step)
    .bind(&operator.id)
    .bind(&secret);
    change_totp(db, operator, change, "operators.totp_enable").await
}

/// Turns the second factor off, after a fresh code proves the operator still holds it.
pub(crate) async fn remove_totp(db: &Database, operator: &Operator, code: &str) -> Result<(), ApiError> {
    let Some(credentials) = super::find_for_sign_in(db, &operator.email).await? else {
        return Err(ApiError::not_found("no such operator"));
    };
    if credentials.totp_secret.is_none() || !second_factor_holds(db, &credentials, code).await? {
        return Err(wrong_code());
    }
    let change =
        sqlx::query("UPDATE operators SET totp_secret = NULL, totp_pending = NULL WHERE id = $1").bind(&operator.id);
    change_totp(db, operator, change, "operators.totp_disable").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc_6238s_sha1_test_vectors() {
        // RFC 6238 appendix B: the ASCII key "12345678901234567890", 8-digit codes; ours
        // are their last six digits.
        let key = b"12345678901234567890";
        for (seconds, eight) in
            [(59, 94287082u32), (1111111109, 7081804), (1234567890, 89005924), (2000000000, 69279037)]
        {
            assert_eq!(code_at(key, seconds / 30), eight % 1_000_000, "at {seconds}");
        }
    }

    #[test]
    fn base32_round_trips_and_codes_are_good_once_and_only_near_now() {
        let secret = new_secret();
        assert_eq!(secret.len(), 32);
        assert_eq!(base32(&unbase32(&secret).unwrap()), secret);
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        let key = unbase32(&secret).unwrap();
        let now_ms = 1_800_000_000_000;
        let step = now_ms / 30_000;
        let code = format!("{:06}", code_at(&key, step));
        assert_eq!(accept(&secret, &code, now_ms, 0), Some(step));
        assert_eq!(accept(&secret, &code, now_ms, step), None, "a code is good once");
        assert_eq!(accept(&secret, &code, now_ms + 30_000, 0), Some(step), "one step of drift");
        assert_eq!(accept(&secret, &code, now_ms + 90_000, 0), None, "three steps later");
        assert_eq!(accept(&secret, "12345", now_ms, 0), None);
        assert!(uri(&secret, "a@b.c").starts_with("otpauth://totp/Verge%3Aa%40b.c?secret="));
    }
}
