//! Validation through `crate::handle` with a fake platform holding a published key set.

use std::collections::HashMap;

use http::Method;
use serde_json::Value;
use verge_shared::kv::{MANIFEST_KEY, Manifest, versioned_key};
use verge_shared::sessions::{
    PublicKey, customer_revocation_key, encode_revocation, footer, paseto, session_revocation_key,
};

use super::*;
use crate::router::tests::{FakeHost, text};

const NOW: i64 = 1_800_000_000_000;
const SECRET: [u8; 32] = [3; 32];

fn kid(secret: &[u8; 32]) -> String {
    paseto::paserk_pid(&paseto::public_key(secret))
}

fn edge(retires_at_ms: Option<i64>) -> FakeHost {
    let public = paseto::public_key(&SECRET);
    let set = KeySet::new(vec![PublicKey { kid: kid(&SECRET), key: public, retires_at_ms }]).unwrap();
    let mut manifest = Manifest { snapshot: 1, datasets: Vec::new() };
    manifest.set(KEYS_DATASET, 1, "h");
    FakeHost {
        kv: HashMap::from([
            (MANIFEST_KEY.to_owned(), manifest.encode()),
            (versioned_key(KEYS_DATASET, 1, KEYS_PART), set.encode()),
        ]),
        ..FakeHost::default()
    }
}

fn claims() -> Claims {
    Claims {
        subject: "cus_1".into(),
        session_id: "ses_1".into(),
        project: "shop".into(),
        issued_at_ms: NOW - 1000,
        expires_at_ms: NOW + 600_000,
        email_verified: true,
        locale: None,
    }
}

fn token_with(secret: &[u8; 32], claims: &Claims) -> String {
    paseto::sign(secret, claims.to_json().as_bytes(), footer(&kid(secret)).as_bytes(), b"")
}

fn validate_with(host: &FakeHost, header_name: header::HeaderName, value: &str) -> Response<Body> {
    let request = Request::builder().method(Method::GET).uri(PATH).header(header_name, value).body(Vec::new()).unwrap();
    futures_executor::block_on(crate::handle(host, request))
}

fn validate_bearer(host: &FakeHost, token: &str) -> Response<Body> {
    validate_with(host, header::AUTHORIZATION, &format!("Bearer {token}"))
}

fn refusal_code(response: &Response<Body>) -> String {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{}", text(response));
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    body["code"].as_str().unwrap().to_owned()
}

#[test]
fn a_valid_token_answers_its_claims_by_bearer_or_cookie() {
    let host = edge(None);
    let token = token_with(&SECRET, &claims());
    for response in
        [validate_bearer(&host, &token), validate_with(&host, header::COOKIE, &format!("a=b; verge_session={token}"))]
    {
        assert_eq!(response.status(), StatusCode::OK, "{}", text(&response));
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["subject"], "cus_1");
        assert_eq!(body["session_id"], "ses_1");
        assert_eq!(body["project"], "shop");
        assert_eq!(body["email_verified"], true);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }
}

#[test]
fn forged_local_tampered_unknown_and_missing_tokens_are_refused_with_their_reason() {
    let host = edge(None);
    let token = token_with(&SECRET, &claims());
    assert_eq!(refusal_code(&validate_bearer(&host, &token_with(&[4; 32], &claims()))), "token_unknown_key");
    // Signed by another key but naming the published one: a forgery.
    let forged = paseto::sign(&[4; 32], claims().to_json().as_bytes(), footer(&kid(&SECRET)).as_bytes(), b"");
    assert_eq!(refusal_code(&validate_bearer(&host, &forged)), "token_bad_signature");
    assert_eq!(
        refusal_code(&validate_bearer(&host, &token.replacen("v4.public.", "v4.local.", 1))),
        "token_wrong_purpose"
    );
    let (body, _) = token.rsplit_once('.').unwrap();
    let (_, other_footer) =
        token_with(&[4; 32], &claims()).rsplit_once('.').map(|(b, f)| (b.to_owned(), f.to_owned())).unwrap();
    let tampered = format!("{body}.{other_footer}");
    assert_eq!(refusal_code(&validate_bearer(&host, &tampered)), "token_unknown_key");
    assert_eq!(refusal_code(&validate_bearer(&host, "v4.public.!!")), "token_malformed");
    let request = Request::builder().method(Method::GET).uri(PATH).body(Vec::new()).unwrap();
    assert_eq!(refusal_code(&futures_executor::block_on(crate::handle(&host, request))), "token_missing");
}

#[test]
fn expiry_and_key_retirement_apply_even_to_cached_tokens() {
    let host = edge(Some(NOW + 60_000));
    let token = token_with(&SECRET, &claims());
    assert_eq!(validate_bearer(&host, &token).status(), StatusCode::OK);
    host.elapsed_ms.set(60_000);
    assert_eq!(refusal_code(&validate_bearer(&host, &token)), "token_unknown_key");
    let host = edge(None);
    assert_eq!(validate_bearer(&host, &token).status(), StatusCode::OK);
    host.elapsed_ms.set(700_000);
    assert_eq!(refusal_code(&validate_bearer(&host, &token)), "token_expired");
}

#[test]
fn revocations_apply_to_cached_tokens() {
    let mut host = edge(None);
    let token = token_with(&SECRET, &claims());
    assert_eq!(validate_bearer(&host, &token).status(), StatusCode::OK);
    host.kv.insert(session_revocation_key("ses_1"), encode_revocation(NOW));
    assert_eq!(refusal_code(&validate_bearer(&host, &token)), "token_revoked");
    host.kv.remove(&session_revocation_key("ses_1"));
    assert_eq!(validate_bearer(&host, &token).status(), StatusCode::OK);
    // Signed out everywhere after the token was issued: refused; a newer token passes.
    host.kv.insert(customer_revocation_key("shop", "cus_1"), encode_revocation(NOW - 500));
    assert_eq!(refusal_code(&validate_bearer(&host, &token)), "token_revoked");
    let newer = token_with(&SECRET, &Claims { issued_at_ms: NOW, ..claims() });
    assert_eq!(validate_bearer(&host, &newer).status(), StatusCode::OK);
}

#[test]
fn an_ofrep_evaluation_with_a_session_evaluates_for_its_customer() {
    let mut host = edge(None);
    // Parsed flag sets are kept process-wide by dataset and version: a name of its own
    // keeps other tests' sets out of this one.
    let dataset = "flags/sessions-test/prod";
    let set = br#"{"flags": {"beta": {"state": "ENABLED", "variants": {"on": true, "off": false},
        "defaultVariant": "off", "targeting": {"if": [{"==": [{"var": "targetingKey"}, "cus_1"]}, "on", "off"]}}}}"#;
    let mut manifest = Manifest::decode(&host.kv[MANIFEST_KEY]).unwrap();
    manifest.set(dataset, 1, "f");
    host.kv.insert(MANIFEST_KEY.to_owned(), manifest.encode());
    host.kv.insert(versioned_key(dataset, 1, "flagd"), set.to_vec());
    host.kv
        .insert(format!("flagkeys/{}", verge_shared::flags::client_key_hash("fck_web")), dataset.as_bytes().to_vec());
    let evaluate = |session: Option<&str>| {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri("/ofrep/v1/evaluate/flags/beta")
            .header(header::AUTHORIZATION, "Bearer fck_web");
        if let Some(token) = session {
            builder = builder.header(SESSION_HEADER, token);
        }
        let body = br#"{"context": {"targetingKey": "someone-else"}}"#.to_vec();
        let response = futures_executor::block_on(crate::handle(&host, builder.body(body).unwrap()));
        assert_eq!(response.status(), StatusCode::OK, "{}", text(&response));
        serde_json::from_slice::<Value>(response.body()).unwrap()["value"].clone()
    };
    assert_eq!(evaluate(None), false);
    let token = token_with(&SECRET, &claims());
    assert_eq!(evaluate(Some(&token)), true, "the session's customer is the targeting key");
    // A session that does not validate adds nothing.
    assert_eq!(evaluate(Some(&token_with(&[4; 32], &claims()))), false);
}
