//! Customer sessions: the access token's claims, the published signing keys, revocation
//! records, and the one validation both the edge and the core run.
//!
//! An access token is PASETO v4.public whose footer names its key by PASERK id
//! (`{"kid":"k4.pid.…"}`). The edge finds that key in the published key set (a key past
//! its overlap window is gone from the set, so its tokens stop validating), verifies the
//! signature, then checks the claims against the clock and two small revocation records:
//! one per revoked session and one per customer ("valid after"), so the edge never reads
//! an unbounded list.

pub mod paseto;

use ed25519_dalek::VerifyingKey;
use serde_json::{Map, Value, json};

use crate::time::{parse_rfc3339_millis, rfc3339_millis};

/// The issuer every Verge access token names.
pub const ISSUER: &str = "verge";
/// Edge KV: the key set is the dataset `sess/keys`, one part.
pub const KEYS_DATASET: &str = "sess/keys";
pub const KEYS_PART: &str = "keys";
/// Edge KV: keyed revocation records live under this prefix.
pub const REVOCATIONS_PREFIX: &str = "sess/r/";
/// Tolerated clock difference between the core that signed and the edge that checks.
pub const LEEWAY_MS: i64 = 30_000;
/// The event an edge sends for each validation, feeding "last seen".
pub const SEEN_EVENT: &str = "session.seen";

const RECORD_FORMAT: u8 = 1;

/// The browser cookie that carries the access token.
pub const ACCESS_COOKIE: &str = "verge_session";

/// The value of cookie `name` among `Cookie` header values (`a=1; b=2`), if sent.
pub fn cookie<'a>(header_values: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    header_values
        .into_iter()
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The KV key of a revoked session's record.
pub fn session_revocation_key(session_id: &str) -> String {
    format!("{REVOCATIONS_PREFIX}s/{session_id}")
}

/// The KV key of a customer's "tokens issued before this are void" record.
pub fn customer_revocation_key(project: &str, customer_id: &str) -> String {
    format!("{REVOCATIONS_PREFIX}c/{project}/{customer_id}")
}

/// A revocation record's value: the Unix milliseconds from which it applies.
pub fn encode_revocation(at_ms: i64) -> Vec<u8> {
    let mut out = vec![RECORD_FORMAT];
    out.extend_from_slice(at_ms.to_string().as_bytes());
    out
}

pub fn decode_revocation(value: &[u8]) -> Option<i64> {
    match value.split_first() {
        Some((&RECORD_FORMAT, rest)) => std::str::from_utf8(rest).ok()?.parse().ok(),
        _ => None,
    }
}

/// What an access token asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The customer id.
    pub subject: String,
    pub session_id: String,
    pub project: String,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
    /// Whether the customer's email was verified when the token was issued.
    pub email_verified: bool,
    /// The customer's language (a BCP 47 tag from their record's `metadata.locale`), for
    /// edges to personalise answers (autocomplete prefers terms in it).
    pub locale: Option<String>,
}

/// Whether `tag` looks like a BCP 47 language tag (`fr`, `pt-BR`): what a `locale` claim may be.
pub fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let first = parts.next().unwrap_or_default();
    tag.len() <= 35
        && (2..=3).contains(&first.len())
        && first.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

impl Claims {
    /// The token's message: PASETO's registered claims (`iss`, `sub`, `iat`, `nbf`, `exp`
    /// as RFC 3339; `iat` keeps milliseconds, which revocation compares) and Verge's
    /// (`sid`, `project`, `email_verified`, and `locale` when known).
    pub fn to_json(&self) -> String {
        let at = |ms: i64| rfc3339_millis(ms.max(0) as u64);
        let mut claims = json!({
            "iss": ISSUER,
            "sub": self.subject,
            "sid": self.session_id,
            "project": self.project,
            "iat": at(self.issued_at_ms),
            // Whole seconds: verifiers that compare `nbf` with a clock in seconds (pyseto)
            // would otherwise call a fresh token not yet valid.
            "nbf": at(self.issued_at_ms.div_euclid(1000) * 1000),
            "exp": at(self.expires_at_ms),
            "email_verified": self.email_verified,
        });
        if let Some(locale) = &self.locale {
            claims["locale"] = locale.as_str().into();
        }
        claims.to_string()
    }

    fn parse(message: &[u8]) -> Option<Claims> {
        let value: Value = serde_json::from_slice(message).ok()?;
        let text = |name: &str| value.get(name).and_then(Value::as_str);
        if text("iss") != Some(ISSUER) {
            return None;
        }
        let nbf = parse_rfc3339_millis(text("nbf")?)?;
        let claims = Claims {
            subject: text("sub")?.to_owned(),
            session_id: text("sid")?.to_owned(),
            project: text("project")?.to_owned(),
            issued_at_ms: parse_rfc3339_millis(text("iat")?)?,
            expires_at_ms: parse_rfc3339_millis(text("exp")?)?,
            email_verified: value.get("email_verified").and_then(Value::as_bool).unwrap_or(false),
            locale: text("locale").filter(|tag| is_language_tag(tag)).map(str::to_owned),
        };
        (nbf == claims.issued_at_ms.div_euclid(1000) * 1000).then_some(claims)
    }

    /// The claims as an OFREP evaluation context adds them (`targetingKey` is the subject).
    pub fn context(&self) -> Map<String, Value> {
        let mut context = Map::new();
        context.insert("targetingKey".into(), self.subject.clone().into());
        context.insert("customerId".into(), self.subject.clone().into());
        context.insert("sessionId".into(), self.session_id.clone().into());
        context.insert("project".into(), self.project.clone().into());
        context.insert("emailVerified".into(), self.email_verified.into());
        if let Some(locale) = &self.locale {
            context.insert("locale".into(), locale.clone().into());
        }
        context
    }
}

/// The footer of every Verge token: the signing key's PASERK id.
pub fn footer(kid: &str) -> String {
    json!({ "kid": kid }).to_string()
}

fn kid_of(footer: &[u8]) -> Option<String> {
    // The footer is read before the signature is checked: bound what is parsed.
    if footer.len() > 256 {
        return None;
    }
    let value: Value = serde_json::from_slice(footer).ok()?;
    value.get("kid")?.as_str().map(str::to_owned)
}

/// One public signing key as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// PASERK `k4.pid`.
    pub kid: String,
    pub key: [u8; 32],
    /// When tokens signed with it stop validating (set once a newer key takes over).
    pub retires_at_ms: Option<i64>,
}

/// The published key set: every key whose tokens may still validate.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<(PublicKey, VerifyingKey)>,
}

impl KeySet {
    pub fn new(keys: Vec<PublicKey>) -> Result<KeySet, String> {
        let keys = keys
            .into_iter()
            .map(|key| {
                let verifying = VerifyingKey::from_bytes(&key.key).map_err(|err| format!("{}: {err}", key.kid))?;
                Ok((key, verifying))
            })
            .collect::<Result<_, String>>()?;
        Ok(KeySet { keys })
    }

    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.iter().map(|(key, _)| key)
    }

    /// The KV form: a format byte, then one line per key: `<k4.public> <retires_at_ms|->`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_FORMAT];
        for (key, _) in &self.keys {
            let retires = key.retires_at_ms.map_or_else(|| "-".to_owned(), |ms| ms.to_string());
            out.extend_from_slice(format!("{} {retires}\n", paseto::paserk_public(&key.key)).as_bytes());
        }
        out
    }

    pub fn decode(value: &[u8]) -> Result<KeySet, String> {
        let Some((&RECORD_FORMAT, body)) = value.split_first() else {
            return Err("unknown key set format".into());
        };
        let body = std::str::from_utf8(body).map_err(|_| "key set is not UTF-8".to_owned())?;
        let keys = body
            .lines()
            .map(|line| {
                let (paserk, retires) = line.split_once(' ').ok_or("key line without retirement")?;
                let key = paseto::parse_paserk_public(paserk).ok_or("not a k4.public key")?;
                let retires_at_ms = match retires {
                    "-" => None,
                    ms => Some(ms.parse().map_err(|_| "bad retirement time")?),
                };
                Ok(PublicKey { kid: paseto::paserk_pid(&key), key, retires_at_ms })
            })
            .collect::<Result<Vec<_>, &str>>()?;
        KeySet::new(keys)
    }

    fn find(&self, kid: &str) -> Option<&(PublicKey, VerifyingKey)> {
        self.keys.iter().find(|(key, _)| key.kid == kid)
    }
}

/// Why a token was refused: a stable code and a sentence for the 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    WrongPurpose,
    Malformed,
    UnknownKey,
    BadSignature,
    BadClaims,
    Expired,
    NotYetValid,
    Revoked,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Missing => "token_missing",
            Refusal::WrongPurpose => "token_wrong_purpose",
            Refusal::Malformed => "token_malformed",
            Refusal::UnknownKey => "token_unknown_key",
            Refusal::BadSignature => "token_bad_signature",
            Refusal::BadClaims => "token_bad_claims",
            Refusal::Expired => "token_expired",
            Refusal::NotYetValid => "token_not_yet_valid",
            Refusal::Revoked => "token_revoked",
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            Refusal::Missing => "no session token: send `Authorization: Bearer <token>` or the `verge_session` cookie",
            Refusal::WrongPurpose => "the token is not PASETO v4.public",
            Refusal::Malformed => "the token is not well-formed PASETO",
            Refusal::UnknownKey => "the token's key id names no current signing key (retired or never published)",
            Refusal::BadSignature => "the token's signature does not verify",
            Refusal::BadClaims => "the token's claims are not Verge's session claims",
            Refusal::Expired => "the token has expired; refresh it",
            Refusal::NotYetValid => "the token is not valid yet",
            Refusal::Revoked => "the session has been signed out or revoked",
        }
    }
}

impl From<paseto::TokenError> for Refusal {
    fn from(err: paseto::TokenError) -> Refusal {
        match err {
            paseto::TokenError::WrongPurpose => Refusal::WrongPurpose,
            paseto::TokenError::Malformed => Refusal::Malformed,
            paseto::TokenError::BadSignature => Refusal::BadSignature,
        }
    }
}

/// A token whose signature verified: its claims and when its key retires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub claims: Claims,
    pub key_retires_at_ms: Option<i64>,
}

/// Verifies a token's signature with the key its footer names and reads its claims. Time
/// and revocation are checked apart (`Verified::check_time`, `check_revocations`), so a
/// verified token can be cached and still be refused once it expires or is revoked.
pub fn verify(keys: &KeySet, token: &str) -> Result<Verified, Refusal> {
    let unverified = paseto::Unverified::parse(token)?;
    let kid = kid_of(&unverified.footer).ok_or(Refusal::Malformed)?;
    let (public, key) = keys.find(&kid).ok_or(Refusal::UnknownKey)?;
    unverified.verify(key, b"")?;
    let claims = Claims::parse(&unverified.message).ok_or(Refusal::BadClaims)?;
    Ok(Verified { claims, key_retires_at_ms: public.retires_at_ms })
}

impl Verified {
    /// Refuses a token outside its lifetime, or signed with a key past its overlap window.
    pub fn check_time(&self, now_ms: i64) -> Result<(), Refusal> {
        if now_ms >= self.claims.expires_at_ms + LEEWAY_MS {
            return Err(Refusal::Expired);
        }
        if self.claims.issued_at_ms > now_ms + LEEWAY_MS {
            return Err(Refusal::NotYetValid);
        }
        if self.key_retires_at_ms.is_some_and(|retires| now_ms >= retires) {
            return Err(Refusal::UnknownKey);
        }
        Ok(())
    }
}

/// Refuses a token whose session was revoked, or whose customer signed out everywhere (or
/// was erased) after it was issued. `session` and `customer` are the two records' values.
pub fn check_revocations(claims: &Claims, session: Option<&[u8]>, customer: Option<&[u8]>) -> Result<(), Refusal> {
    if session.is_some() {
        return Err(Refusal::Revoked);
    }
    if customer.and_then(decode_revocation).is_some_and(|valid_after| claims.issued_at_ms < valid_after) {
        return Err(Refusal::Revoked);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
