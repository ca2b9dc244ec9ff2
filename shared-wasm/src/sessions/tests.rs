use super::*;

const DAY: i64 = 86_400_000;

fn key(seed: u8, retires_at_ms: Option<i64>) -> ([u8; 32], PublicKey) {
    let secret = [seed; 32];
    let public = paseto::public_key(&secret);
    (secret, PublicKey { kid: paseto::paserk_pid(&public), key: public, retires_at_ms })
}

fn claims(issued_at_ms: i64) -> Claims {
    Claims {
        subject: "cus_1".into(),
        session_id: "ses_1".into(),
        project: "shop".into(),
        issued_at_ms,
        expires_at_ms: issued_at_ms + 15 * 60_000,
        email_verified: true,
        locale: None,
    }
}

fn token(secret: &[u8; 32], kid: &str, claims: &Claims) -> String {
    paseto::sign(secret, claims.to_json().as_bytes(), footer(kid).as_bytes(), b"")
}

#[test]
fn a_token_round_trips_through_the_published_key_set() {
    let (secret, public) = key(1, None);
    let set = KeySet::decode(&KeySet::new(vec![public.clone()]).unwrap().encode()).unwrap();
    assert_eq!(set.keys().collect::<Vec<_>>(), [&public]);
    let now = 1_800_000_000_000;
    let verified = verify(&set, &token(&secret, &public.kid, &claims(now))).unwrap();
    assert_eq!(verified.claims, claims(now));
    assert_eq!(verified.check_time(now + 60_000), Ok(()));
    assert_eq!(verified.check_time(now + DAY), Err(Refusal::Expired));
    assert_eq!(verified.check_time(now - DAY), Err(Refusal::NotYetValid));
}

#[test]
fn unknown_and_retired_keys_are_refused() {
    let (secret, public) = key(1, Some(2_000));
    let (other_secret, other) = key(2, None);
    let set = KeySet::new(vec![public.clone()]).unwrap();
    assert_eq!(verify(&set, &token(&other_secret, &other.kid, &claims(1_000))), Err(Refusal::UnknownKey));
    // A token naming a published key but signed by another is a forgery.
    assert_eq!(verify(&set, &token(&other_secret, &public.kid, &claims(1_000))), Err(Refusal::BadSignature));
    let verified = verify(&set, &token(&secret, &public.kid, &claims(1_000))).unwrap();
    assert_eq!(verified.check_time(1_999), Ok(()));
    assert_eq!(verified.check_time(2_000), Err(Refusal::UnknownKey));
}

#[test]
fn foreign_claims_and_footers_are_refused() {
    let (secret, public) = key(1, None);
    let set = KeySet::new(vec![public.clone()]).unwrap();
    let foreign = paseto::sign(&secret, br#"{"iss":"someone","sub":"x"}"#, footer(&public.kid).as_bytes(), b"");
    assert_eq!(verify(&set, &foreign), Err(Refusal::BadClaims));
    let no_kid = paseto::sign(&secret, claims(1).to_json().as_bytes(), b"", b"");
    assert_eq!(verify(&set, &no_kid), Err(Refusal::Malformed));
}

#[test]
fn revocations_apply_to_the_session_and_to_tokens_before_valid_after() {
    let c = claims(5_000);
    assert_eq!(check_revocations(&c, None, None), Ok(()));
    assert_eq!(check_revocations(&c, Some(&encode_revocation(1)), None), Err(Refusal::Revoked));
    assert_eq!(check_revocations(&c, None, Some(&encode_revocation(5_001))), Err(Refusal::Revoked));
    assert_eq!(check_revocations(&c, None, Some(&encode_revocation(5_000))), Ok(()));
    assert_eq!(decode_revocation(&encode_revocation(-3)), Some(-3));
    assert_eq!(decode_revocation(b"\x09123"), None);
}

#[test]
fn cookies_are_found_by_exact_name_across_headers() {
    let headers = ["a=1; verge_session_old=x", "b=2;verge_session=tok.en=; c=3"];
    assert_eq!(cookie(headers, ACCESS_COOKIE), Some("tok.en="));
    assert_eq!(cookie(headers, "a"), Some("1"));
    assert_eq!(cookie(headers, "missing"), None);
}
