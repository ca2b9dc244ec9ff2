//! The flags admin rules that make it trustworthy, on whichever backend this run tests:
//! protected environments and their change requests, scheduled changes, the project's
//! flag catalog (description, type, tags), per-flag audit, the stale-flag report from
//! edge evaluation events, and concurrent edits of one environment.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::{Value, json};
use verge_core::keys::Scope;
use verge_core::time::{Millis, now_millis};

fn flag(default: &str) -> Value {
    json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": default})
}

struct Env<'a> {
    app: &'a TestApp,
    base: String,
}

impl Env<'_> {
    async fn create<'a>(app: &'a TestApp, key: &str, name: &str, protected: bool) -> Env<'a> {
        let body = json!({"project": "web", "name": name, "protected": protected});
        let created = app.call(Method::POST, "/v1/flags/environments", Some(key), Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        assert_eq!(created.json["protected"], protected);
        Env { app, base: format!("/v1/flags/environments/web/{name}") }
    }

    async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> common::Reply {
        self.app.call(method, &format!("{}{path}", self.base), Some(key), body).await
    }

    async fn flags(&self, key: &str) -> Value {
        self.call(Method::GET, "/flagd", key, None).await.ok()["flags"].clone()
    }

    async fn propose(&self, key: &str, body: Value) -> common::Reply {
        self.call(Method::POST, "/changes", key, Some(body)).await
    }
}

async fn review(app: &TestApp, id: &str, verb: &str, key: &str) -> common::Reply {
    app.call(Method::POST, &format!("/v1/flags/changes/{id}/{verb}"), Some(key), None).await
}

#[tokio::test]
async fn a_protected_environment_changes_only_through_requests_approved_by_another_key() {
    let app = TestApp::new().await;
    let (alice, bob) = (app.key(&[Scope::FlagsWrite]).await, app.key(&[Scope::FlagsWrite]).await);
    let reader = app.key(&[Scope::Read]).await;
    let prod = Env::create(&app, &alice, "prod", true).await;

    // Direct edits and imports are refused, and change nothing.
    prod.call(Method::PUT, "/flags/beta", &alice, Some(flag("off")))
        .await
        .problem(StatusCode::CONFLICT, "change_request_required");
    prod.call(Method::PUT, "/flagd", &alice, Some(json!({"flags": {"beta": flag("on")}})))
        .await
        .problem(StatusCode::CONFLICT, "change_request_required");
    assert_eq!(prod.flags(&reader).await, json!({}));

    // A request that could never apply is refused when proposed, and nothing is recorded.
    let broken = json!({"changes": [{"op": "put_flag", "key": "beta", "flag": {"state": "ON"}}]});
    prod.propose(&alice, broken).await.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let missing = json!({"changes": [{"op": "kill_flag", "key": "nope"}]});
    prod.propose(&alice, missing).await.problem(StatusCode::NOT_FOUND, "not_found");
    let listed = prod.call(Method::GET, "/changes", &reader, None).await;
    assert_eq!(listed.ok()["items"], json!([]));

    let body = json!({"changes": [
        {"op": "put_flag", "key": "beta", "flag": flag("off")},
        {"op": "put_segment", "name": "staff", "rule": {"ends_with": [{"var": "email"}, "@verge.dev"]}},
    ], "comment": "launch beta"});
    let proposed = prod.propose(&alice, body).await;
    assert_eq!(proposed.status, StatusCode::CREATED, "{}", proposed.text);
    assert_eq!(proposed.json["status"], "pending");
    let id = proposed.json["id"].as_str().unwrap().to_owned();
    assert_eq!(prod.flags(&reader).await, json!({}), "pending changes are not applied");

    // Not by its author, not by a reader; by a second key holder, which applies it.
    review(&app, &id, "approve", &alice).await.problem(StatusCode::FORBIDDEN, "self_approval");
    review(&app, &id, "approve", &reader).await.problem(StatusCode::FORBIDDEN, "forbidden");
    let approved = review(&app, &id, "approve", &bob).await;
    assert_eq!(approved.ok()["status"], "applied");
    let (author, reviewer) = (&proposed.json["author"], &approved.json["reviewer"]);
    assert!(reviewer.as_str().is_some_and(|r| r.starts_with("key_")) && reviewer != author, "{reviewer} {author}");
    assert_eq!(prod.flags(&reader).await["beta"], flag("off"));
    review(&app, &id, "approve", &bob).await.problem(StatusCode::CONFLICT, "not_pending");
    review(&app, &id, "cancel", &bob).await.problem(StatusCode::CONFLICT, "not_pending");

    // The edits are audited under the author; the approval under the reviewer.
    let trail = prod.call(Method::GET, "/audit", &reader, None).await;
    let entries = trail.ok()["items"].as_array().unwrap().clone();
    let put = entries.iter().find(|e| e["action"] == "flag.put").expect("the flag's edit is in the trail");
    assert_eq!(&put["actor"], author);
    let audit = app.get(&format!("/v1/audit-log?target_id=flags/web/prod/changes/{id}"), Some(&reader)).await;
    let actions: Vec<_> = audit.ok()["items"].as_array().unwrap().iter().map(|e| e["action"].clone()).collect();
    assert_eq!(actions, [json!("flags.change.approve"), json!("flags.change.propose")]);
    assert_eq!(&audit.json["items"][0]["actor"], reviewer);

    // Two requests that both touch `beta`: once the first applies, the second is stale, so
    // it never overwrites what the first did, and stays pending.
    let delete = json!({"changes": [{"op": "delete_flag", "key": "beta"}]});
    let first = prod.propose(&alice, delete.clone()).await.json["id"].as_str().unwrap().to_owned();
    let second = prod.propose(&alice, delete).await.json["id"].as_str().unwrap().to_owned();
    assert_eq!(review(&app, &first, "approve", &bob).await.ok()["status"], "applied");
    let stale = review(&app, &second, "approve", &bob).await;
    let detail = stale.problem(StatusCode::CONFLICT, "stale_change")["detail"].clone();
    assert!(detail.as_str().unwrap().contains("/flags/beta"), "{detail}");
    let still = app.get(&format!("/v1/flags/changes/{second}"), Some(&reader)).await;
    assert_eq!(still.ok()["status"], "pending");
    assert_eq!(review(&app, &second, "cancel", &alice).await.ok()["status"], "cancelled");
    let pending = prod.call(Method::GET, "/changes?status=pending", &reader, None).await;
    assert_eq!(pending.ok()["items"], json!([]));
    prod.call(Method::GET, "/changes?status=done", &reader, None)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

    // Only an admin lifts protection; then direct edits work again.
    let unprotect = json!({"protected": false});
    prod.call(Method::PATCH, "", &alice, Some(unprotect.clone())).await.problem(StatusCode::FORBIDDEN, "forbidden");
    let admin = app.admin().await;
    assert_eq!(prod.call(Method::PATCH, "", &admin, Some(unprotect)).await.ok()["protected"], false);
    assert_eq!(prod.call(Method::PUT, "/flags/beta", &alice, Some(flag("on"))).await.status, StatusCode::OK);
}

#[tokio::test]
async fn scheduled_changes_apply_at_their_time_or_fail_with_the_reason() {
    let app = TestApp::new().await;
    let (alice, bob) = (app.key(&[Scope::FlagsWrite]).await, app.key(&[Scope::FlagsWrite]).await);
    let db = &app.app.state.db;
    let staging = Env::create(&app, &alice, "staging", false).await;
    staging.call(Method::PUT, "/flags/beta", &alice, Some(flag("off"))).await.ok();
    let in_an_hour = Millis(now_millis().0 + 3_600_000);
    let at = |m: Millis| m.to_string();

    // A batch with no time applies at once, all edits or none.
    let batch = json!({"changes": [
        {"op": "put_flag", "key": "a", "flag": flag("on")},
        {"op": "put_flag", "key": "b", "flag": {"state": "ENABLED", "variants": {"x": 1}, "targeting": {"nope": []}}},
    ]});
    staging.propose(&alice, batch).await.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(staging.flags(&alice).await.get("a").is_none(), "a refused batch stores none of its edits");
    let now = json!({"changes": [{"op": "put_flag", "key": "a", "flag": flag("on")}, {"op": "kill_flag", "key": "a"}]});
    let applied = staging.propose(&alice, now).await;
    assert_eq!(applied.json["status"], "applied", "{}", applied.text);
    assert_eq!(staging.flags(&alice).await["a"]["state"], "DISABLED");

    // Times in the past or too far ahead are refused.
    for bad in [Millis(now_millis().0 - 1000), Millis(now_millis().0 + 400 * 86_400_000)] {
        let body = json!({"changes": [{"op": "kill_flag", "key": "beta"}], "apply_at": at(bad)});
        let refused = staging.propose(&alice, body).await;
        assert_eq!(
            refused.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")["errors"][0]["field"],
            "apply_at"
        );
    }

    let body = json!({"changes": [{"op": "kill_flag", "key": "beta"}], "apply_at": at(in_an_hour)});
    let scheduled = staging.propose(&alice, body).await;
    assert_eq!(scheduled.json["status"], "scheduled", "{}", scheduled.text);
    let id = scheduled.json["id"].as_str().unwrap().to_owned();
    assert_eq!(verge_core::flags::apply_due_changes(db, now_millis()).await.unwrap(), 0);
    assert_eq!(staging.flags(&alice).await["beta"]["state"], "ENABLED", "not before its time");
    assert_eq!(verge_core::flags::apply_due_changes(db, in_an_hour).await.unwrap(), 1);
    assert_eq!(staging.flags(&alice).await["beta"]["state"], "DISABLED");
    let done = app.get(&format!("/v1/flags/changes/{id}"), Some(&alice)).await;
    assert_eq!((&done.ok()["status"], &done.json["applied_at"]), (&json!("applied"), &json!(at(in_an_hour))));
    assert_eq!(verge_core::flags::apply_due_changes(db, in_an_hour).await.unwrap(), 0, "applied once");

    // One that no longer applies fails with the reason; a cancelled one never applies.
    let delete = json!({"changes": [{"op": "delete_flag", "key": "a"}], "apply_at": at(in_an_hour)});
    let doomed = staging.propose(&alice, delete.clone()).await.json["id"].as_str().unwrap().to_owned();
    let cancelled = staging.propose(&alice, delete).await.json["id"].as_str().unwrap().to_owned();
    assert_eq!(review(&app, &cancelled, "cancel", &bob).await.ok()["status"], "cancelled");
    staging.call(Method::DELETE, "/flags/a", &alice, None).await;
    assert_eq!(verge_core::flags::apply_due_changes(db, in_an_hour).await.unwrap(), 0);
    let failed = app.get(&format!("/v1/flags/changes/{doomed}"), Some(&alice)).await;
    assert_eq!(failed.ok()["status"], "failed");
    assert!(failed.json["failure"].as_str().unwrap().contains("stale_change"), "{}", failed.text);
    let cancelled = app.get(&format!("/v1/flags/changes/{cancelled}"), Some(&alice)).await;
    assert_eq!(cancelled.ok()["status"], "cancelled");

    // Scheduled without approval, then the environment was protected: it does not apply.
    let body = json!({"changes": [{"op": "put_flag", "key": "c", "flag": flag("on")}], "apply_at": at(in_an_hour)});
    let sneaky = staging.propose(&alice, body.clone()).await.json["id"].as_str().unwrap().to_owned();
    staging.call(Method::PATCH, "", &alice, Some(json!({"protected": true}))).await.ok();
    verge_core::flags::apply_due_changes(db, in_an_hour).await.unwrap();
    let refused = app.get(&format!("/v1/flags/changes/{sneaky}"), Some(&alice)).await;
    assert_eq!(refused.ok()["status"], "failed");
    assert!(staging.flags(&alice).await.get("c").is_none());

    // In a protected environment a timed request waits for approval, then for its time.
    let pending = staging.propose(&alice, body).await;
    assert_eq!(pending.json["status"], "pending");
    let id = pending.json["id"].as_str().unwrap().to_owned();
    assert_eq!(verge_core::flags::apply_due_changes(db, in_an_hour).await.unwrap(), 0, "unapproved");
    assert_eq!(review(&app, &id, "approve", &bob).await.ok()["status"], "scheduled");
    assert_eq!(verge_core::flags::apply_due_changes(db, in_an_hour).await.unwrap(), 1);
    assert_eq!(staging.flags(&alice).await["c"], flag("on"));
}

#[tokio::test]
async fn the_catalog_types_describes_and_tags_flags_across_environments() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::FlagsWrite]).await;
    let reader = app.key(&[Scope::Read]).await;
    let dev = Env::create(&app, &writer, "dev", false).await;
    let prod = Env::create(&app, &writer, "prod", false).await;
    let color = json!({"state": "ENABLED", "variants": {"red": "#f00", "blue": "#00f"}, "defaultVariant": "red"});
    dev.call(Method::PUT, "/flags/checkout", &writer, Some(flag("off"))).await.ok();
    dev.call(Method::PUT, "/flags/color", &writer, Some(color)).await.ok();
    prod.call(Method::PUT, "/flags/checkout", &writer, Some(flag("on"))).await.ok();

    // The first environment to store a key types it; the others must agree.
    let retyped = json!({"state": "ENABLED", "variants": {"on": "yes", "off": "no"}, "defaultVariant": "on"});
    let refused = prod.call(Method::PUT, "/flags/checkout", &writer, Some(retyped)).await;
    let error = &refused.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")["errors"][0];
    assert_eq!(error["field"], "/flags/checkout/variants/off");
    let mixed =
        json!({"flags": {"odd": {"state": "ENABLED", "variants": {"a": 1, "b": "one"}, "defaultVariant": "a"}}});
    let refused = prod.call(Method::PUT, "/flagd", &writer, Some(mixed)).await;
    assert_eq!(
        refused.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")["errors"][0]["field"],
        "/flags/odd/variants/b"
    );

    let catalog = "/v1/flags/projects/web/flags";
    let detail = app.get(&format!("{catalog}/checkout"), Some(&reader)).await;
    assert_eq!((&detail.ok()["type"], &detail.json["description"]), (&json!("boolean"), &json!("")));
    assert_eq!(detail.json["environments"]["dev"], flag("off"));
    assert_eq!(detail.json["environments"]["prod"], flag("on"));

    let patch = json!({"description": "New checkout; remove after Q1", "tags": ["team:payments", "release"]});
    let described = app.call(Method::PATCH, &format!("{catalog}/checkout"), Some(&writer), Some(patch)).await;
    assert_eq!(described.ok()["tags"], json!(["release", "team:payments"]));
    let bad = json!({"tags": ["Bad Tag"], "description": "x".repeat(2001)});
    let refused = app.call(Method::PATCH, &format!("{catalog}/checkout"), Some(&writer), Some(bad)).await;
    assert_eq!(refused.validation_fields(), ["description", "tags/0"]);
    let retype =
        app.call(Method::PATCH, &format!("{catalog}/checkout"), Some(&writer), Some(json!({"type": "string"}))).await;
    let error = &retype.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")["errors"][0];
    assert_eq!(error["field"], "/environments/dev/flags/checkout/variants/off");
    app.call(Method::PATCH, &format!("{catalog}/checkout"), Some(&reader), Some(json!({"description": "x"})))
        .await
        .problem(StatusCode::FORBIDDEN, "forbidden");
    app.get(&format!("{catalog}/nope"), Some(&reader)).await.problem(StatusCode::NOT_FOUND, "not_found");
    // A flag made and removed within one batch never existed for the catalog.
    let fleeting = json!({"changes": [
        {"op": "put_flag", "key": "fleeting", "flag": flag("on")}, {"op": "delete_flag", "key": "fleeting"},
    ]});
    assert_eq!(dev.propose(&writer, fleeting).await.json["status"], "applied");
    app.get(&format!("{catalog}/fleeting"), Some(&reader)).await.problem(StatusCode::NOT_FOUND, "not_found");

    // Listing: by key, a page at a time, by tag or text.
    let first = app.get(&format!("{catalog}?limit=1"), Some(&reader)).await;
    assert_eq!(first.ok()["items"][0]["key"], "checkout");
    let cursor = first.json["next_cursor"].as_str().unwrap();
    let second = app.get(&format!("{catalog}?limit=1&cursor={cursor}"), Some(&reader)).await;
    assert_eq!((&second.ok()["items"][0]["key"], &second.json["next_cursor"]), (&json!("color"), &Value::Null));
    assert_eq!(second.json["items"][0]["type"], "string");
    fn keys(reply: &common::Reply) -> Vec<Value> {
        reply.json["items"].as_array().unwrap().iter().map(|f| f["key"].clone()).collect()
    }
    assert_eq!(keys(&app.get(&format!("{catalog}?tag=release"), Some(&reader)).await), [json!("checkout")]);
    assert_eq!(keys(&app.get(&format!("{catalog}?tag=team"), Some(&reader)).await), Vec::<Value>::new());
    assert_eq!(keys(&app.get(&format!("{catalog}?q=REMOVE"), Some(&reader)).await), [json!("checkout")]);

    // One flag's history: its catalog entry and each environment's edits.
    let history = app.get(&format!("{catalog}/checkout/audit"), Some(&reader)).await;
    let entries: Vec<_> = history.ok()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].clone(), e["target_id"].clone()))
        .collect();
    assert_eq!(
        entries,
        [
            (json!("flag.describe"), json!("flagcatalog/web/checkout")),
            (json!("flag.put"), json!("flags/web/prod/flags/checkout")),
            (json!("flag.put"), json!("flags/web/dev/flags/checkout")),
        ]
    );
}

#[tokio::test]
async fn the_stale_report_lists_flags_no_edge_evaluated_within_the_window() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::FlagsWrite]).await;
    let ingest = app.key(&[Scope::IngestEvents]).await;
    let prod = Env::create(&app, &writer, "prod", false).await;
    let document = json!({"flags": {"used": flag("on"), "old": flag("on"), "never": flag("on"), "new": flag("on")}});
    prod.call(Method::PUT, "/flagd", &writer, Some(document)).await.ok();
    // Three of the flags were made 90 days ago; `new` just now.
    let day = 86_400_000;
    let long_ago = now_millis().0 - 90 * day;
    sqlx::query("UPDATE flags SET created_at = $1 WHERE key <> 'new'")
        .bind(long_ago)
        .execute(app.app.state.db.pool())
        .await
        .unwrap();

    let event = |data: Value, at: Millis| json!({"id": verge_core::ids::new_id("evt"), "kind": "flag.evaluation", "at": at.to_string(), "data": data});
    // Edges may only report recent evaluations; the projection is then moved back in time
    // as the flags' creation was, as if `old` were last evaluated 40 days ago.
    let six_days_ago = Millis(now_millis().0 - 6 * day);
    let forty_days_ago = Millis(now_millis().0 - 40 * day);
    let batch = json!({"events": [
        event(json!({"dataset": "flags/web/prod", "flag": "used"}), now_millis()),
        event(json!({"dataset": "flags/web/prod", "flag": "used"}), six_days_ago),
        event(json!({"dataset": "flags/web/prod", "flag": "old"}), six_days_ago),
    ]});
    assert_eq!(app.call(Method::POST, "/v1/events", Some(&ingest), Some(batch.clone())).await.ok()["accepted"], 3);
    assert_eq!(app.call(Method::POST, "/v1/events", Some(&ingest), Some(batch)).await.ok()["duplicates"], 3);
    sqlx::query("UPDATE flag_evaluations SET last_evaluated_at = $1 WHERE flag_key = 'old'")
        .bind(forty_days_ago.0)
        .execute(app.app.state.db.pool())
        .await
        .unwrap();

    let report = prod.call(Method::GET, "/stale?days=30", &writer, None).await;
    let items = report.ok()["items"].as_array().unwrap();
    let keys: Vec<_> = items.iter().map(|f| f["key"].clone()).collect();
    assert_eq!(keys, [json!("never"), json!("old")], "least recently evaluated first; `new` is too young");
    assert_eq!(
        (&items[1]["last_evaluated_at"], &items[1]["evaluations"]),
        (&json!(forty_days_ago.to_string()), &json!(1))
    );
    let wider = prod.call(Method::GET, "/stale?days=60", &writer, None).await;
    assert_eq!(wider.ok()["items"].as_array().unwrap().len(), 1, "only `never` within 60 days");
    let detail = app.get("/v1/flags/projects/web/flags/used", Some(&writer)).await;
    assert_eq!(detail.ok()["evaluations"]["prod"]["evaluations"], 2, "a retried batch counts once");
    let used = app.get("/v1/flags/environments/web/prod/stale?days=1", Some(&writer)).await;
    assert!(used.ok()["items"].as_array().unwrap().iter().all(|f| f["key"] != "used"));

    // A bulk evaluation reads every flag, so while bulk clients are active none is stale.
    let bulk = json!({"events": [event(json!({"dataset": "flags/web/prod", "bulk": true}), now_millis())]});
    app.call(Method::POST, "/v1/events", Some(&ingest), Some(bulk)).await.ok();
    let report = prod.call(Method::GET, "/stale?days=30", &writer, None).await;
    assert_eq!(report.ok()["items"], json!([]));
    assert!(report.json["last_bulk_evaluated_at"].is_string());

    // Malformed evaluation events are refused whole.
    let bad = json!({"events": [event(json!({"dataset": "links/x", "flag": ""}), now_millis())]});
    let refused = app.call(Method::POST, "/v1/events", Some(&ingest), Some(bad)).await;
    assert_eq!(refused.validation_fields(), ["/events/0/data/dataset", "/events/0/data/flag"]);
    prod.call(Method::GET, "/stale?days=0", &writer, None)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
}

#[tokio::test]
async fn concurrent_edits_of_one_environment_all_land() {
    let app = TestApp::new().await;
    let writer = app.key(&[Scope::FlagsWrite]).await;
    let env = Env::create(&app, &writer, "prod", false).await;
    let paths: Vec<String> = (0..16).map(|i| format!("/flags/f{i}")).collect();
    let edits = paths.iter().map(|path| env.call(Method::PUT, path, &writer, Some(flag("on"))));
    for reply in futures_util::future::join_all(edits).await {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    assert_eq!(env.flags(&writer).await.as_object().unwrap().len(), 16, "no edit overwrote another");
}

#[tokio::test]
async fn a_request_approved_twice_at_once_applies_once() {
    let app = TestApp::new().await;
    let author = app.key(&[Scope::FlagsWrite]).await;
    let reviewers = [app.key(&[Scope::FlagsWrite]).await, app.key(&[Scope::FlagsWrite]).await];
    let prod = Env::create(&app, &author, "prod", true).await;
    let body = json!({"changes": [{"op": "put_flag", "key": "beta", "flag": flag("on")}]});
    let id = prod.propose(&author, body).await.json["id"].as_str().unwrap().to_owned();
    let (a, b) = tokio::join!(review(&app, &id, "approve", &reviewers[0]), review(&app, &id, "approve", &reviewers[1]));
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{} / {}", a.text, b.text);
    let trail = prod.call(Method::GET, "/audit", &app.key(&[Scope::Read]).await, None).await;
    let puts = trail.ok()["items"].as_array().unwrap().iter().filter(|e| e["action"] == "flag.put").count();
    assert_eq!(puts, 1, "the edit was applied once");
}

#[tokio::test]
async fn a_ref_fan_out_is_refused_with_a_422_even_as_a_proposal() {
    let app = TestApp::new().await;
    let alice = app.key(&[Scope::FlagsWrite]).await;
    let prod = Env::create(&app, &alice, "prod", true).await;
    // Fifteen shared evaluators, each naming the next twice: 2^15 leaves once expanded.
    let mut evaluators = serde_json::Map::new();
    for level in 0..15 {
        let next = json!({"$ref": format!("s{}", level + 1)});
        evaluators.insert(format!("s{level}"), json!({"or": [next.clone(), next]}));
    }
    evaluators.insert("s15".into(), json!({"==": [1, 1]}));
    let mut bomb = flag("off");
    bomb["targeting"] = json!({"if": [{"$ref": "s0"}, "on"]});
    let document = json!({"flags": {"bomb": bomb}, "$evaluators": evaluators});
    let changes = vec![json!({"op": "import", "document": document})];
    let started = std::time::Instant::now();
    let refused = prod.propose(&alice, json!({"changes": changes})).await;
    assert_eq!(refused.validation_fields(), ["/flags/bomb/targeting"]);
    assert!(refused.text.contains("JSON nodes"), "{}", refused.text);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "refused without expanding");
    let listed = prod.call(Method::GET, "/changes", &alice, None).await;
    assert_eq!(listed.ok()["items"], json!([]), "nothing recorded");

    // Kept as a broken flag on purpose, it stays bounded: it answers PARSE_ERROR.
    let kept = json!({"changes": [{"op": "import", "document": document, "keep_broken": true}]});
    assert_eq!(prod.propose(&alice, kept).await.status, StatusCode::CREATED);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn a_request_never_overwrites_an_edit_made_since_it_was_proposed() {
    let app = TestApp::new().await;
    let (alice, bob, carol) =
        (app.key(&[Scope::FlagsWrite]).await, app.key(&[Scope::FlagsWrite]).await, app.key(&[Scope::FlagsWrite]).await);
    let prod = Env::create(&app, &alice, "prod", true).await;
    let seed = json!({"changes": [{"op": "put_flag", "key": "beta", "flag": flag("off")},
                                  {"op": "put_flag", "key": "other", "flag": flag("off")}]});
    let seeded = prod.propose(&alice, seed).await.json["id"].as_str().unwrap().to_owned();
    review(&app, &seeded, "approve", &bob).await.ok();

    // Alice proposes `beta` on; Carol turns it on with a rollout meanwhile, approved first.
    let alices = json!({"changes": [{"op": "put_flag", "key": "beta", "flag": flag("on")}]});
    let alices = prod.propose(&alice, alices).await.json["id"].as_str().unwrap().to_owned();
    let mut rollout = flag("off");
    rollout["targeting"] = json!({"fractional": [["on", 10], ["off", 90]]});
    let carols = json!({"changes": [{"op": "put_flag", "key": "beta", "flag": rollout.clone()}]});
    let carols = prod.propose(&carol, carols).await.json["id"].as_str().unwrap().to_owned();
    // An edit of another flag does not make Alice's request stale.
    let unrelated = json!({"changes": [{"op": "kill_flag", "key": "other"}]});
    let unrelated = prod.propose(&carol, unrelated).await.json["id"].as_str().unwrap().to_owned();
    review(&app, &carols, "approve", &bob).await.ok();
    review(&app, &unrelated, "approve", &bob).await.ok();

    review(&app, &alices, "approve", &bob).await.problem(StatusCode::CONFLICT, "stale_change");
    assert_eq!(prod.flags(&bob).await["beta"], rollout, "Carol's rollout is not overwritten");
    let still = app.get(&format!("/v1/flags/changes/{alices}"), Some(&bob)).await;
    assert_eq!(still.ok()["status"], "pending");
    assert!(still.json["base"]["/flags/beta"].is_string(), "{}", still.text);
}

#[tokio::test]
async fn a_change_from_a_key_revoked_since_does_not_apply() {
    let app = TestApp::new().await;
    let db = &app.app.state.db;
    let admin = app.admin().await;
    let (alice, bob) = (app.key(&[Scope::FlagsWrite]).await, app.key(&[Scope::FlagsWrite]).await);
    let staging = Env::create(&app, &bob, "staging", false).await;
    staging.call(Method::PUT, "/flags/beta", &bob, Some(flag("off"))).await.ok();
    let in_an_hour = Millis(now_millis().0 + 3_600_000);
    let body = json!({"changes": [{"op": "put_flag", "key": "beta", "flag": flag("on")}],
                      "apply_at": in_an_hour.to_string()});
    let proposed = staging.propose(&alice, body.clone()).await;
    let id = proposed.json["id"].as_str().unwrap().to_owned();
    let author = proposed.json["author"].as_str().unwrap().to_owned();

    // Alice's key is revoked (she left, or it leaked): her scheduled change must not run.
    app.call(Method::DELETE, &format!("/v1/keys/{author}"), Some(&admin), None).await.ok();
    assert_eq!(verge_core::flags::apply_due_changes(db, in_an_hour).await.unwrap(), 0);
    let failed = app.get(&format!("/v1/flags/changes/{id}"), Some(&bob)).await;
    assert_eq!(failed.ok()["status"], "failed");
    assert!(failed.json["failure"].as_str().unwrap().contains("actor_revoked"), "{}", failed.text);
    assert_eq!(staging.flags(&bob).await["beta"], flag("off"));

    // Nor does a pending request of hers get approved in a protected environment.
    let prod = Env::create(&app, &bob, "prod", true).await;
    let carol = app.key(&[Scope::FlagsWrite]).await;
    let pending = prod.propose(&carol, json!({"changes": [{"op": "put_flag", "key": "x", "flag": flag("on")}]})).await;
    let pending_id = pending.json["id"].as_str().unwrap().to_owned();
    let carol_id = pending.json["author"].as_str().unwrap().to_owned();
    app.call(Method::DELETE, &format!("/v1/keys/{carol_id}"), Some(&admin), None).await.ok();
    review(&app, &pending_id, "approve", &bob).await.problem(StatusCode::CONFLICT, "actor_revoked");
    assert!(prod.flags(&bob).await.get("x").is_none());
}
