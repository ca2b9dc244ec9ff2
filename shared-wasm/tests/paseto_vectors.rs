//! The official PASETO v4 and PASERK k4 test vectors, read in place from
//! `../shared/conformance/paseto`: every v4.public vector verifies (and signs to the same
//! token, Ed25519 being deterministic), and every vector that must fail, or that is a
//! v4.local token, is refused by the verifier the edge runs.

use std::path::PathBuf;

use serde_json::Value;
use verge_shared::sessions::paseto;

fn vectors(file: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/paseto").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("the PASETO vectors are missing at {}: {err}", path.display()));
    let document: Value = serde_json::from_str(&text).unwrap();
    document["tests"].as_array().unwrap().clone()
}

fn hex32(text: &str) -> [u8; 32] {
    let bytes: Vec<u8> = (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect();
    bytes.try_into().unwrap()
}

fn text<'a>(vector: &'a Value, name: &str) -> &'a str {
    vector[name].as_str().unwrap_or("")
}

#[test]
fn v4_vectors() {
    let (mut verified, mut refused) = (0, 0);
    for vector in vectors("v4.json") {
        let name = text(&vector, "name");
        let token = text(&vector, "token");
        let implicit = text(&vector, "implicit-assertion").as_bytes();
        let Some(public) = vector["public-key"].as_str().map(hex32) else {
            // Vectors with a symmetric key: a local (or v3) token must never pass as a
            // public one, and a public token made with a local key verifies under none.
            let any_key = paseto::public_key(&[9u8; 32]);
            let result = paseto::verify(&any_key, token, implicit);
            if token.starts_with(paseto::HEADER) {
                assert_eq!(result, Err(paseto::TokenError::BadSignature), "{name}");
            } else {
                assert_eq!(result, Err(paseto::TokenError::WrongPurpose), "{name}");
            }
            refused += 1;
            continue;
        };
        let result = paseto::verify(&public, token, implicit);
        if vector["expect-fail"].as_bool().unwrap() {
            assert!(result.is_err(), "{name} must fail");
            refused += 1;
            continue;
        }
        let (message, footer) = result.unwrap_or_else(|err| panic!("{name}: {err:?}"));
        assert_eq!(String::from_utf8(message).unwrap(), text(&vector, "payload"), "{name}");
        assert_eq!(String::from_utf8(footer).unwrap(), text(&vector, "footer"), "{name}");
        let seed = hex32(text(&vector, "secret-key-seed"));
        assert_eq!(paseto::public_key(&seed), public, "{name}");
        let signed =
            paseto::sign(&seed, text(&vector, "payload").as_bytes(), text(&vector, "footer").as_bytes(), implicit);
        assert_eq!(signed, token, "{name}");
        verified += 1;
    }
    assert_eq!((verified, refused), (3, 14), "every vector was looked at");
}

#[test]
fn paserk_k4_public_and_pid_vectors() {
    let mut checked = 0;
    for (file, encode) in [
        ("PASERK_k4.public.json", paseto::paserk_public as fn(&[u8; 32]) -> String),
        ("PASERK_k4.pid.json", paseto::paserk_pid),
    ] {
        for vector in vectors(file) {
            let name = text(&vector, "name");
            let key = text(&vector, "key");
            if vector["expect-fail"].as_bool().unwrap() {
                // Failing vectors give keys of the wrong length or version; ours only
                // takes 32-byte keys, so such a key cannot even be named.
                assert!(key.len() != 64 || !text(&vector, "paserk").starts_with("k4."), "{name}");
                continue;
            }
            assert_eq!(encode(&hex32(key)), text(&vector, "paserk"), "{name}");
            if file.contains("public") {
                assert_eq!(paseto::parse_paserk_public(text(&vector, "paserk")), Some(hex32(key)), "{name}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "{checked} PASERK vectors checked");
}
