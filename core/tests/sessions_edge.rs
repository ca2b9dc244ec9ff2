//! Customer sessions end to end through `verge dev`: sign up and in at the core, validate
//! at the local edge without the core, rotate refresh tokens, end a family on reuse, sign
//! out everywhere and see the edge refuse within a second, rotate the signing key with an
//! overlap, and verify a token with pyseto (a PASETO library outside Rust) from the
//! published PASERK key.

mod common;

use std::time::{Duration, Instant};

use common::fresh_config;
use common::process::{Printed, Reply, http, printed, start_dev, until, verge};
use serde_json::{Value, json};

struct Dev {
    core: String,
    edge: String,
    key: String,
}

const PASSWORD: &str = "a long passphrase here";

impl Dev {
    fn core(&self, method: &str, path: &str, bearer: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let auth = bearer.map(|b| format!("Bearer {b}")).unwrap_or_default();
        let mut headers = vec![("content-type", "application/json")];
        if bearer.is_some() {
            headers.push(("authorization", &auth));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let reply = http(&self.core, method, path, &headers, &body);
        (reply.status, serde_json::from_str(&reply.body).unwrap_or(Value::Null))
    }

    fn sign_in(&self) -> Value {
        let (status, tokens) = self.core(
            "POST",
            "/auth/shop/sign-in",
            None,
            Some(json!({"email": "ada@example.com", "password": PASSWORD})),
        );
        assert_eq!(status, 200, "{tokens}");
        tokens
    }

    fn validate(&self, access: &Value) -> Reply {
        let auth = format!("Bearer {}", access.as_str().unwrap());
        http(&self.edge, "GET", "/sessions/v1/validate", &[("authorization", &auth)], "")
    }

    /// How long until the edge refuses `access` with `code` (panics after 5 s).
    fn refused_within(&self, access: &Value, code: &str) -> Duration {
        let started = Instant::now();
        loop {
            let reply = self.validate(access);
            if reply.status == 401 {
                let problem: Value = serde_json::from_str(&reply.body).unwrap();
                assert_eq!(problem["code"], code, "{}", reply.body);
                return started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(5), "the edge kept accepting the token");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[tokio::test]
async fn sign_in_validate_at_the_edge_rotate_revoke_and_verify_elsewhere() {
    let (config, dir) = fresh_config().await;
    let (_dev, lines) = start_dev(verge(&config, dir.path()));
    let dev = {
        let Printed { core, edge, key } = printed(&lines);
        Dev { core, edge, key }
    };
    let (status, _) = dev.core(
        "POST",
        "/auth/shop/sign-up",
        None,
        Some(json!({"email": "ada@example.com", "password": PASSWORD, "name": "Ada"})),
    );
    assert_eq!(status, 202);
    let first = dev.sign_in();
    until("the key set reaches the edge", Duration::from_secs(5), || {
        dev.validate(&first["access_token"]).status == 200
    });
    let body: Value = serde_json::from_str(&dev.validate(&first["access_token"]).body).unwrap();
    assert_eq!(body["session_id"], first["session_id"]);
    assert!(body["subject"].as_str().unwrap().starts_with("cus_"));

    // Refresh rotates; the new access token validates; the spent refresh token, shown
    // again, ends the whole family, at the edge too.
    let (status, second) =
        dev.core("POST", "/auth/shop/refresh", None, Some(json!({"refresh_token": first["refresh_token"]})));
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(second["session_id"], first["session_id"]);
    assert_eq!(dev.validate(&second["access_token"]).status, 200);
    let (status, reuse) =
        dev.core("POST", "/auth/shop/refresh", None, Some(json!({"refresh_token": first["refresh_token"]})));
    assert_eq!((status, reuse["code"].as_str()), (401, Some("refresh_token_reused")));
    let (status, _) =
        dev.core("POST", "/auth/shop/refresh", None, Some(json!({"refresh_token": second["refresh_token"]})));
    assert_eq!(status, 401, "the family ended with the reuse");
    let took = dev.refused_within(&second["access_token"], "token_revoked");
    assert!(took < Duration::from_secs(1), "the revoked session reached the edge in {took:?}");

    // Sign out everywhere from one device ends the other's too, at the edge within a second.
    let phone = dev.sign_in();
    let laptop = dev.sign_in();
    until("both validate", Duration::from_secs(5), || {
        dev.validate(&phone["access_token"]).status == 200 && dev.validate(&laptop["access_token"]).status == 200
    });
    let (status, sessions) = dev.core("GET", "/auth/shop/sessions", phone["access_token"].as_str(), None);
    assert_eq!(status, 200);
    assert_eq!(sessions["items"].as_array().unwrap().len(), 2);
    let (status, _) = dev.core("POST", "/auth/shop/sign-out-everywhere", laptop["access_token"].as_str(), None);
    assert_eq!(status, 204);
    let took = dev.refused_within(&phone["access_token"], "token_revoked");
    assert!(took < Duration::from_secs(1), "sign out everywhere reached the edge in {took:?}");
    assert_eq!(dev.validate(&laptop["access_token"]).status, 401);

    // A PASETO library outside Rust verifies a token with the published PASERK key.
    let fresh = dev.sign_in();
    let (status, keys) = dev.core("GET", "/.well-known/paserk.json", None, None);
    assert_eq!(status, 200);
    let paserk = keys["keys"][0]["paserk"].as_str().unwrap();
    let python = std::env::var("VERGE_PYSETO_PYTHON")
        .expect("VERGE_PYSETO_PYTHON must name a python with pyseto (scripts/test installs it and sets it)");
    let script = r#"
import json, sys, pyseto
from pyseto import Key
key = Key.from_paserk(sys.argv[1])
decoded = pyseto.decode(key, sys.argv[2], deserializer=json)
footer = decoded.footer
footer = footer.decode() if isinstance(footer, bytes) else json.dumps(footer)
print(json.dumps({"payload": decoded.payload, "footer": footer}))
"#;
    let output = std::process::Command::new(python)
        .args(["-c", script, paserk, fresh["access_token"].as_str().unwrap()])
        .output()
        .expect("run pyseto");
    assert!(
        output.status.success(),
        "pyseto refused the token: {}",
        String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or_default()
    );
    let verified: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(verified["payload"]["sid"], fresh["session_id"]);
    assert_eq!(verified["payload"]["iss"], "verge");
    assert!(verified["footer"].as_str().unwrap().contains(keys["keys"][0]["kid"].as_str().unwrap()));

    // Rotation: the old key's tokens validate through the overlap, then stop; new tokens
    // carry the new key.
    let (status, rotation) =
        dev.core("POST", "/v1/sessions/keys/rotate", Some(&dev.key), Some(json!({"overlap": "3s"})));
    assert_eq!(status, 200, "{rotation}");
    let rotated_at = Instant::now();
    let after = dev.sign_in();
    until("the new key reaches the edge", Duration::from_secs(5), || {
        dev.validate(&after["access_token"]).status == 200
    });
    assert_eq!(dev.validate(&fresh["access_token"]).status, 200, "the old key validates during the overlap");
    let (_, keys) = dev.core("GET", "/.well-known/paserk.json", None, None);
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    std::thread::sleep(Duration::from_secs(3).saturating_sub(rotated_at.elapsed()));
    dev.refused_within(&fresh["access_token"], "token_unknown_key");
    assert_eq!(dev.validate(&after["access_token"]).status, 200);
}
