//! Flags end to end through `verge dev`: the flagd testbed's flag set imported with
//! `verge flags import`, a client key from `verge flags client-key`, and the local edge
//! answering OFREP from KV, then a change through the API reaching the edge within a second.

mod common;

use std::time::{Duration, Instant};

use common::fresh_config;
use common::process::{Reply, field, http, start_dev, verge, workspace_root};
use serde_json::{Value, json};

fn ofrep(edge: &str, path: &str, headers: &[(&str, &str)], body: &Value) -> (Reply, Value) {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let reply = http(edge, "POST", &format!("/ofrep/v1/evaluate/flags{path}"), &all, &body.to_string());
    let json = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    (reply, json)
}

#[tokio::test]
async fn the_edge_answers_ofrep_for_an_imported_flagd_set_and_follows_changes_within_a_second() {
    let (config, dir) = fresh_config().await;
    let (_dev, lines) = start_dev(verge(&config, dir.path()));
    let core = field(&lines, "core API").trim_end_matches("/v1").to_owned();
    let admin = field(&lines, "admin key").to_owned();
    let edge = field(&lines, "edge").trim_end_matches("/__verge/health").to_owned();

    let testbed = workspace_root().join("../shared/conformance/flagd-testbed/evaluator/flags/testkit-flags.json");
    assert!(testbed.is_file(), "the flagd testbed is missing at {}", testbed.display());
    let imported = verge(&config, dir.path())
        .args(["flags", "import", "--env", "development", "--keep-broken"])
        .arg(&testbed)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&imported.stdout);
    assert!(imported.status.success(), "{said}{}", String::from_utf8_lossy(&imported.stderr));
    assert!(said.contains("created environment default/development"), "{said}");
    let flag_count = serde_json::from_str::<Value>(&std::fs::read_to_string(&testbed).unwrap()).unwrap()["flags"]
        .as_object()
        .unwrap()
        .len();
    assert!(said.contains(&format!("imported {flag_count} flags")), "{said}");
    // The testbed holds one deliberately broken flag; it is named, and kept only when asked.
    assert!(
        said.contains("kept broken (answers PARSE_ERROR): /flags/ref-to-nonexistent-evaluator-flag/targeting"),
        "{said}"
    );
    let made = verge(&config, dir.path()).args(["flags", "client-key", "--env", "development"]).output().unwrap();
    let said = String::from_utf8_lossy(&made.stdout);
    let token = said.lines().find_map(|line| line.strip_prefix("token: ")).expect("a token").to_owned();
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];

    // The CLI wrote the database; the running core publishes it within its poll interval.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (reply, body) = loop {
        let (reply, body) = ofrep(&edge, "/boolean-flag", &auth, &json!({"context": {}}));
        if reply.status == 200 || Instant::now() > deadline {
            break (reply, body);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        body,
        json!({"key": "boolean-flag", "value": true, "reason": "STATIC", "variant": "on", "metadata": {}})
    );
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));

    // Targeting, a shared evaluator, fractional and metadata, as the testbed defines them.
    let context = json!({"context": {"targetingKey": "5c3d8535-f81a-4478-a6d3-afaa4d51199e"}});
    let (_, hit) = ofrep(&edge, "/targeting-key-flag", &auth, &context);
    assert_eq!((&hit["value"], &hit["reason"]), (&json!("hit"), &json!("TARGETING_MATCH")));
    let (_, ballmer) =
        ofrep(&edge, "/some-email-targeted-flag", &auth, &json!({"context": {"email": "ballmer@macrosoft.com"}}));
    assert_eq!(ballmer["value"], "hi");
    let (_, cards) = ofrep(&edge, "/fractional-flag", &auth, &json!({"context": {"user": {"name": "jack"}}}));
    assert_eq!(cards["value"], "hearts", "flagd's current fractional algorithm");
    let (_, meta) = ofrep(&edge, "/metadata-flag", &auth, &json!({}));
    assert_eq!(meta["metadata"], json!({"string": "1.0.2", "integer": 2, "boolean": true, "float": 0.1}));

    // Errors as OFREP specifies them.
    let (reply, missing) = ofrep(&edge, "/no-such-flag", &auth, &json!({"context": {}}));
    assert_eq!((reply.status, &missing["errorCode"]), (404, &json!("FLAG_NOT_FOUND")));
    let (reply, bad) = ofrep(&edge, "/boolean-flag", &auth, &json!({"context": 7}));
    assert_eq!((reply.status, &bad["errorCode"]), (400, &json!("INVALID_CONTEXT")));
    let (reply, parse) = ofrep(&edge, "/ref-to-nonexistent-evaluator-flag", &auth, &json!({}));
    assert_eq!((reply.status, &parse["errorCode"]), (400, &json!("PARSE_ERROR")));
    assert_eq!(ofrep(&edge, "/boolean-flag", &[], &json!({})).0.status, 401);
    assert_eq!(ofrep(&edge, "/boolean-flag", &[("authorization", "Bearer vfc_wrong")], &json!({})).0.status, 403);
    assert_eq!(ofrep(&edge, "/boolean-flag", &[("x-api-key", token.as_str())], &json!({})).0.status, 200);

    // Bulk: every flag, an ETag, 304 when nothing changed, a new tag for a new context.
    let (reply, all) = ofrep(&edge, "", &auth, &json!({"context": {"targetingKey": "a"}}));
    assert_eq!(reply.status, 200);
    assert_eq!(all["flags"].as_array().unwrap().len(), flag_count);
    let etag = reply.header("etag").expect("an ETag").to_owned();
    let unchanged = [("authorization", bearer.as_str()), ("if-none-match", etag.as_str())];
    let (reply, _) = ofrep(&edge, "", &unchanged, &json!({"context": {"targetingKey": "a"}}));
    assert_eq!((reply.status, reply.body.as_str()), (304, ""));
    let (reply, _) = ofrep(&edge, "", &unchanged, &json!({"context": {"targetingKey": "b"}}));
    assert_eq!(reply.status, 200);
    assert_ne!(reply.header("etag"), Some(etag.as_str()));

    // A real client: the OpenFeature SDKs with their OFREP providers, server and web.
    let sdk_dir = workspace_root().join("target/ofrep-js");
    assert!(
        sdk_dir.join("node_modules/@openfeature/ofrep-provider").is_dir(),
        "the OpenFeature SDKs are missing in {}: scripts/test installs them (npm ci)",
        sdk_dir.display()
    );
    std::fs::copy(workspace_root().join("core/tests/ofrep-js/check.mjs"), sdk_dir.join("check.mjs")).unwrap();
    let run = std::process::Command::new("node")
        .arg(sdk_dir.join("check.mjs"))
        .env("EDGE_URL", &edge)
        .env("CLIENT_KEY", &token)
        .output()
        .expect("node runs");
    let printed = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{printed}{}", String::from_utf8_lossy(&run.stderr));
    let sdk: Value = serde_json::from_str(printed.trim()).unwrap_or_else(|err| panic!("{err}: {printed}"));
    let server = &sdk["server"];
    assert_eq!(server["boolean"], json!({"value": true, "reason": "STATIC", "variant": "on"}));
    assert_eq!(server["integer"]["value"], 10);
    assert_eq!(
        server["object"]["value"],
        json!({"showImages": true, "title": "Check out these pics!", "imagesPerPage": 100})
    );
    assert_eq!(server["targeting"], json!({"value": "hit", "reason": "TARGETING_MATCH", "variant": "hit"}));
    assert_eq!(server["fractional"]["value"], "hearts");
    assert_eq!(
        (&server["missing"]["value"], &server["missing"]["errorCode"]),
        (&json!("fallback"), &json!("FLAG_NOT_FOUND"))
    );
    assert_eq!(
        (&server["wrongType"]["value"], &server["wrongType"]["errorCode"]),
        (&json!(13), &json!("TYPE_MISMATCH"))
    );
    let web = &sdk["web"];
    assert_eq!(web["boolean"], json!({"value": true, "reason": "STATIC", "variant": "on"}));
    assert_eq!(web["targeting"], json!({"value": "hit", "reason": "TARGETING_MATCH", "variant": "hit"}));
    assert_eq!(
        (&web["missing"]["value"], &web["missing"]["errorCode"]),
        (&json!("fallback"), &json!("FLAG_NOT_FOUND"))
    );

    // CORS preflight for browser SDKs.
    let preflight = http(&edge, "OPTIONS", "/ofrep/v1/evaluate/flags", &[("origin", "https://app.example")], "");
    assert_eq!(preflight.status, 204);
    assert!(preflight.header("access-control-allow-headers").unwrap().contains("authorization"));

    // A change through the API: a broken set is refused where it is broken; a good one
    // reaches the edge within a second.
    let api = |method: &str, path: &str, body: &Value| {
        let headers = [("authorization", format!("Bearer {admin}")), ("content-type", "application/json".into())];
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = http(&core, method, path, &headers, &body.to_string());
        (reply.status, serde_json::from_str::<Value>(&reply.body).unwrap_or(Value::Null))
    };
    let path = "/v1/flags/environments/default/development/flagd";
    let (status, mut document) = api("GET", path, &Value::Null);
    assert_eq!(status, 200);
    let mut broken = document.clone();
    broken["flags"]["boolean-flag"]["targeting"] = json!({"if": [{"bogus": []}, "on"]});
    let (status, problem) = api("PUT", path, &broken);
    assert_eq!((status, &problem["errors"][0]["field"]), (422, &json!("/flags/boolean-flag/targeting/if/0")));
    document["flags"]["boolean-flag"]["defaultVariant"] = json!("off");
    // Still the testbed's set with its one broken flag, so it must be kept on purpose.
    assert_eq!(api("PUT", path, &document).0, 422);
    let (status, imported) = api("PUT", &format!("{path}?keep_broken=true"), &document);
    assert_eq!((status, imported["broken"].as_array().map(Vec::len)), (200, Some(1)), "{imported}");
    let changed = Instant::now();
    loop {
        let (_, body) = ofrep(&edge, "/boolean-flag", &auth, &json!({}));
        if body["value"] == false {
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(1), "the edge still answers {body} after a second");
        std::thread::sleep(Duration::from_millis(10));
    }

    // A scheduled change: the running core's scheduler applies it at its time.
    let apply_at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
    let schedule = json!({"changes": [{"op": "kill_flag", "key": "string-flag"}], "apply_at": apply_at.to_string()});
    let (status, scheduled) = api("POST", "/v1/flags/environments/default/development/changes", &schedule);
    assert_eq!((status, &scheduled["status"]), (201, &json!("scheduled")), "{scheduled}");
    let (_, before) = ofrep(&edge, "/string-flag", &auth, &json!({}));
    assert_eq!(before["reason"], "STATIC", "not before its time");
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let (_, body) = ofrep(&edge, "/string-flag", &auth, &json!({}));
        if body["reason"] == "DISABLED" {
            break;
        }
        assert!(Instant::now() < deadline, "the scheduled kill never reached the edge: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(jiff::Timestamp::now() >= apply_at, "applied early");

    // The edge reported its evaluations back to the core.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, detail) = api("GET", "/v1/flags/projects/default/flags/boolean-flag", &Value::Null);
        assert_eq!(status, 200, "{detail}");
        if detail["evaluations"]["development"]["evaluations"].as_i64().is_some_and(|n| n > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "no evaluation events arrived: {detail}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Protected: `verge flags import` proposes instead of applying; a key holder approves.
    let (status, _) = api("PATCH", "/v1/flags/environments/default/development", &json!({"protected": true}));
    assert_eq!(status, 200);
    document["flags"]["boolean-flag"]["defaultVariant"] = json!("on");
    let file = dir.path().join("proposed.json");
    std::fs::write(&file, document.to_string()).unwrap();
    let proposed = verge(&config, dir.path())
        .args(["flags", "import", "--env", "development", "--keep-broken"])
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&proposed.stdout);
    assert!(proposed.status.success(), "{said}{}", String::from_utf8_lossy(&proposed.stderr));
    let id = said.split_whitespace().find(|word| word.starts_with("fcr_")).expect("a change request id").to_owned();
    let (_, body) = ofrep(&edge, "/boolean-flag", &auth, &json!({}));
    assert_eq!(body["value"], false, "a proposal changes nothing");
    let (status, approved) = api("POST", &format!("/v1/flags/changes/{id}/approve"), &Value::Null);
    assert_eq!((status, &approved["status"]), (200, &json!("applied")), "{approved}");
    let changed = Instant::now();
    loop {
        let (_, body) = ofrep(&edge, "/boolean-flag", &auth, &json!({}));
        if body["value"] == true {
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(1), "the approved change is not at the edge: {body}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
