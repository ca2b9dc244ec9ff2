//! PASETO v4.public tokens and PASERK `k4.public` / `k4.pid` key strings.
//!
//! v4.public is one algorithm (Ed25519) named by the token's header, so there is nothing to
//! negotiate and nothing to confuse: a token whose header is not exactly `v4.public.` is
//! refused before any key is looked at. The signature covers the header, the message, the
//! footer and an implicit assertion through PASETO's pre-authentication encoding (PAE).
//! Decoding is strict base64url without padding (`base64ct`), so a token has one spelling.

use base64ct::{Base64UrlUnpadded, Encoding};
use blake2::Blake2bVar;
use blake2::digest::{Update, VariableOutput};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

pub const HEADER: &str = "v4.public.";
const SIGNATURE_LEN: usize = 64;
const PASERK_PUBLIC: &str = "k4.public.";
const PASERK_PID: &str = "k4.pid.";

/// Why a token did not verify. The edge names the reason in its 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not `v4.public.`: another version, or `v4.local` (a wrong purpose).
    WrongPurpose,
    /// Not base64url, too short to hold a signature, or more than one footer.
    Malformed,
    /// The signature does not match the key, header, message, footer and assertion.
    BadSignature,
}

/// Pre-authentication encoding: the count of pieces, then each piece length-prefixed, all
/// lengths little-endian 64-bit with the top bit clear.
pub fn pae(pieces: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + pieces.iter().map(|p| p.len() + 8).sum::<usize>());
    out.extend_from_slice(&le64(pieces.len()));
    for piece in pieces {
        out.extend_from_slice(&le64(piece.len()));
        out.extend_from_slice(piece);
    }
    out
}

fn le64(n: usize) -> [u8; 8] {
    ((n as u64) & (u64::MAX >> 1)).to_le_bytes()
}

/// Signs `message` with the 32-byte Ed25519 seed `secret`.
pub fn sign(secret: &[u8; 32], message: &[u8], footer: &[u8], implicit: &[u8]) -> String {
    let key = SigningKey::from_bytes(secret);
    let signature = key.sign(&pae(&[HEADER.as_bytes(), message, footer, implicit]));
    let mut body = Vec::with_capacity(message.len() + SIGNATURE_LEN);
    body.extend_from_slice(message);
    body.extend_from_slice(&signature.to_bytes());
    let mut token = format!("{HEADER}{}", Base64UrlUnpadded::encode_string(&body));
    if !footer.is_empty() {
        token.push('.');
        token.push_str(&Base64UrlUnpadded::encode_string(footer));
    }
    token
}

/// The Ed25519 public key of the seed `secret`.
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(secret).verifying_key().to_bytes()
}

/// A token taken apart but not yet verified: the footer names the key to verify it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    pub message: Vec<u8>,
    signature: [u8; SIGNATURE_LEN],
    pub footer: Vec<u8>,
}

impl Unverified {
    pub fn parse(token: &str) -> Result<Unverified, TokenError> {
        let rest = token.strip_prefix(HEADER).ok_or(TokenError::WrongPurpose)?;
        let (body, footer) = match rest.split_once('.') {
            Some((_, footer)) if footer.contains('.') => return Err(TokenError::Malformed),
            Some((body, footer)) => (body, Base64UrlUnpadded::decode_vec(footer).map_err(|_| TokenError::Malformed)?),
            None => (rest, Vec::new()),
        };
        let mut message = Base64UrlUnpadded::decode_vec(body).map_err(|_| TokenError::Malformed)?;
        let Some(split) = message.len().checked_sub(SIGNATURE_LEN) else { return Err(TokenError::Malformed) };
        let signature: [u8; SIGNATURE_LEN] = message[split..].try_into().map_err(|_| TokenError::Malformed)?;
        message.truncate(split);
        Ok(Unverified { message, signature, footer })
    }

    /// Checks the signature with `key`; `implicit` must be what the signer asserted.
    pub fn verify(&self, key: &VerifyingKey, implicit: &[u8]) -> Result<(), TokenError> {
        let signed = pae(&[HEADER.as_bytes(), &self.message, &self.footer, implicit]);
        // `verify_strict` also refuses small-order keys and non-canonical signatures.
        key.verify_strict(&signed, &Signature::from_bytes(&self.signature)).map_err(|_| TokenError::BadSignature)
    }
}

/// Verifies `token` with the raw 32-byte `public` key and returns its message and footer.
pub fn verify(public: &[u8; 32], token: &str, implicit: &[u8]) -> Result<(Vec<u8>, Vec<u8>), TokenError> {
    let key = VerifyingKey::from_bytes(public).map_err(|_| TokenError::BadSignature)?;
    let unverified = Unverified::parse(token)?;
    unverified.verify(&key, implicit)?;
    Ok((unverified.message, unverified.footer))
}

/// PASERK `k4.public.<base64url key>`.
pub fn paserk_public(public: &[u8; 32]) -> String {
    format!("{PASERK_PUBLIC}{}", Base64UrlUnpadded::encode_string(public))
}

/// The key of a PASERK `k4.public` string.
pub fn parse_paserk_public(paserk: &str) -> Option<[u8; 32]> {
    let encoded = paserk.strip_prefix(PASERK_PUBLIC)?;
    Base64UrlUnpadded::decode_vec(encoded).ok()?.try_into().ok()
}

/// PASERK `k4.pid`: the key's id, BLAKE2b-264 of `k4.pid.` and its `k4.public` string.
pub fn paserk_pid(public: &[u8; 32]) -> String {
    let mut hasher = Blake2bVar::new(33).expect("33 bytes is a valid BLAKE2b output length");
    hasher.update(PASERK_PID.as_bytes());
    hasher.update(paserk_public(public).as_bytes());
    let mut digest = [0u8; 33];
    hasher.finalize_variable(&mut digest).expect("the buffer is the requested length");
    format!("{PASERK_PID}{}", Base64UrlUnpadded::encode_string(&digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(byte: u8) -> [u8; 32] {
        [byte; 32]
    }

    #[test]
    fn a_signed_token_verifies_and_any_change_breaks_it() {
        let secret = seed(7);
        let public = public_key(&secret);
        let token = sign(&secret, b"{\"sub\":\"a\"}", b"{\"kid\":\"x\"}", b"");
        assert_eq!(verify(&public, &token, b""), Ok((b"{\"sub\":\"a\"}".to_vec(), b"{\"kid\":\"x\"}".to_vec())));
        assert_eq!(verify(&public, &token, b"other"), Err(TokenError::BadSignature));
        assert_eq!(verify(&public_key(&seed(8)), &token, b""), Err(TokenError::BadSignature));
        let local = token.replacen("v4.public.", "v4.local.", 1);
        assert_eq!(verify(&public, &local, b""), Err(TokenError::WrongPurpose));
        let (body, _) = token.rsplit_once('.').unwrap();
        let refootered = format!("{body}.{}", Base64UrlUnpadded::encode_string(b"{\"kid\":\"y\"}"));
        assert_eq!(verify(&public, &refootered, b""), Err(TokenError::BadSignature));
        assert_eq!(verify(&public, &format!("{token}.x"), b""), Err(TokenError::Malformed));
        assert_eq!(verify(&public, "v4.public.AAAA", b""), Err(TokenError::Malformed));
    }

    #[test]
    fn pae_matches_the_specification_examples() {
        assert_eq!(pae(&[]), b"\x00\x00\x00\x00\x00\x00\x00\x00");
        assert_eq!(pae(&[b""]), b"\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00");
        assert_eq!(pae(&[b"test"]), b"\x01\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00test");
    }
}
