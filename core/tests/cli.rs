//! The `verge` binary as a user runs it: `verge dev` in an empty directory, SIGTERM, and
//! key management from the command line.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::fresh_config;
use common::process::{field, http_get, start_dev, verge};
use verge_core::Config;

#[tokio::test]
async fn verge_dev_serves_prints_a_key_and_stops_cleanly_on_sigterm() {
    let (config, dir) = fresh_config().await;
    let (mut child, lines) = start_dev(verge(&config, dir.path()));
    let core = field(&lines, "core API").trim_end_matches("/v1").to_owned();
    let key = field(&lines, "admin key").to_owned();
    assert!(key.starts_with("verge_"), "{lines:?}");

    assert_eq!(http_get(&core, "/healthz", None).0, 200);
    assert_eq!(http_get(&core, "/readyz", None).0, 200);
    let (status, body) = http_get(&core, "/v1/keys", None);
    assert_eq!(status, 401);
    assert!(body.contains("\"code\":\"unauthorized\""), "{body}");
    assert_eq!(http_get(&core, "/v1/keys", Some(&key)).0, 200);

    // The local edge runs the component over the store the core publishes into, and shows
    // the snapshot the core just published: the edge settings and the default rate-limit
    // policies.
    assert!(lines.iter().any(|l| l.contains("edge store") && l.contains("kv.db")), "{lines:?}");
    let edge = field(&lines, "edge").trim_end_matches("/__verge/health").to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = http_get(&edge, "/__verge/health", None);
        assert_eq!(status, 200, "{body}");
        if body == r#"{"status":"ok","snapshot":1,"datasets":{"edge/settings":1,"rl/edge":1,"sess/keys":1}}"# {
            break;
        }
        assert!(Instant::now() < deadline, "the edge never saw snapshot 1: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // An unmatched path is a problem+json 404 at the edge, reported back to the core as an
    // event after the response, with the ingest key `verge dev` made for its edge.
    let (status, body) = http_get(&edge, "/no/such/page?secret=1", None);
    assert_eq!(status, 404);
    assert!(body.contains("\"code\":\"route_not_found\""), "{body}");
    let mut db_config = config.clone();
    db_config.data_dir = dir.path().join("verge-data");
    let db = verge_core::db::Database::connect(&db_config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (kind, data, source) = loop {
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT kind, data, source FROM events").fetch_optional(db.pool()).await.unwrap();
        if let Some(row) = row {
            break row;
        }
        assert!(Instant::now() < deadline, "the edge's event never reached the core");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(kind, "edge.not_found");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["path"], "/no/such/page", "the query string is not reported");
    assert_eq!(data["method"], "GET");
    assert_eq!(data["host"], "127.0.0.1");
    let ingest_key = std::fs::read_to_string(dir.path().join("verge-data/edge/ingest.key")).unwrap();
    let (status, body) = http_get(&core, &format!("/v1/keys/{source}"), Some(&key));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"events:ingest\"") && !body.contains("\"admin\""), "{body}");
    assert!(body.contains(&ingest_key[..12]), "the event came with the key in ingest.key: {body}");

    // A new link's `short_url` leads to the edge `verge dev` printed, and redirects there as
    // printed; an unknown code there is a link-not-found problem.
    let auth = format!("Bearer {key}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let created = common::process::http(&core, "POST", "/v1/links", &headers, r#"{"url": "https://example.com/x"}"#);
    assert_eq!(created.status, 201, "{}", created.body);
    let link: serde_json::Value = serde_json::from_str(&created.body).unwrap();
    let short_url = link["short_url"].as_str().unwrap();
    let path = short_url.strip_prefix(&format!("{edge}/")).unwrap_or_else(|| panic!("{short_url} is not on {edge}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = common::process::http(&edge, "GET", &format!("/{path}"), &[], "");
        if reply.status == 302 {
            assert_eq!(reply.header("location"), Some("https://example.com/x"));
            break;
        }
        assert!(Instant::now() < deadline, "{short_url} never redirected: {} {}", reply.status, reply.body);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = http_get(&edge, "/nosuchcode", None);
    assert_eq!(status, 404);
    assert!(body.contains("\"code\":\"link_not_found\""), "{body}");

    // A change made through the core reaches the edge within a second: turning reporting
    // off publishes a new settings version, and once instances have looked at the manifest
    // again (they trust the one they read for 250 ms) a 404 sends nothing.
    let changed = Instant::now();
    let reply = common::process::http(
        &core,
        "PUT",
        "/v1/edge/settings",
        &[("authorization", &format!("Bearer {key}")), ("content-type", "application/json")],
        r#"{"report_not_found":false}"#,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    loop {
        let (_, body) = http_get(&edge, "/__verge/health", None);
        if body.contains(r#""edge/settings":2"#) {
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(1), "the edge still shows {body} a second after the change");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(260));
    assert!(changed.elapsed() < Duration::from_millis(1300), "the change took over a second to apply");
    assert_eq!(http_get(&edge, "/quiet/now", None).0, 404);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let quiet: Vec<(String,)> =
        sqlx::query_as("SELECT data FROM events WHERE data LIKE '%/quiet/now%'").fetch_all(db.pool()).await.unwrap();
    assert!(quiet.is_empty(), "reporting was turned off, yet: {quiet:?}");
    db.close().await;

    let exit = child.terminate();
    assert!(exit.success(), "exit status {exit}");
    if config.database_url.is_none() {
        assert!(dir.path().join("verge-data/verge.db").exists(), "default data dir is ./verge-data");
    }

    // A second start keeps the existing keys and prints none.
    let (mut again, lines) = start_dev(verge(&config, dir.path()));
    assert!(lines.iter().any(|l| l.contains("keys already exist")), "{lines:?}");
    let core = field(&lines, "core API").trim_end_matches("/v1").to_owned();
    assert_eq!(http_get(&core, "/v1/keys", Some(&key)).0, 200, "the first key still works");
    assert!(again.terminate().success());
}

#[tokio::test]
async fn verge_dev_stops_loudly_when_its_edge_host_dies() {
    let (config, dir) = fresh_config().await;
    let log_path = dir.path().join("dev.stderr");
    let mut command = verge(&config, dir.path());
    command.stderr(std::fs::File::create(&log_path).unwrap());
    let (mut dev, lines) = start_dev(command);
    let core = field(&lines, "core API").trim_end_matches("/v1").to_owned();
    let edge = field(&lines, "edge").trim_end_matches("/__verge/health").to_owned();
    assert_eq!(http_get(&edge, "/__verge/health", None).0, 200);

    // The edge host is `verge dev`'s only child process.
    let proc_dir = format!("/proc/{}/task", dev.0.id());
    let children: Vec<String> = std::fs::read_dir(&proc_dir)
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("children")).ok())
        .flat_map(|pids| pids.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    assert_eq!(children.len(), 1, "children of verge dev: {children:?}");
    assert!(Command::new("kill").args(["-KILL", &children[0]]).status().unwrap().success());

    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = dev.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "verge dev kept running without its edge");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!exit.success(), "a dead edge is a failure, not a clean exit");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("the edge host exited unexpectedly (signal: 9"), "{log}");
    let address = core.trim_start_matches("http://");
    assert!(std::net::TcpStream::connect(address).is_err(), "the core stopped with its edge");
}

#[tokio::test]
async fn verge_admin_key_is_used_as_the_bootstrap_key() {
    let (config, dir) = fresh_config().await;
    let chosen = "scripted-admin-key-0123456789abcdefghij";
    let mut command = verge(&config, dir.path());
    command.env("VERGE_ADMIN_KEY", chosen);
    let (mut child, lines) = start_dev(command);
    assert!(!lines.iter().any(|l| l.contains(chosen)), "the configured key must not be printed");
    let core = field(&lines, "core API").trim_end_matches("/v1").to_owned();
    assert_eq!(http_get(&core, "/v1/keys", Some(chosen)).0, 200);
    assert!(child.terminate().success());
}

#[tokio::test]
async fn keys_can_be_managed_from_the_command_line() {
    let (config, dir) = fresh_config().await;
    let run = |args: &[&str]| {
        let output = verge(&config, dir.path()).args(["keys"]).args(args).output().unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        (output.status.success(), stdout, stderr)
    };
    let (ok, created, err) = run(&["create", "--name", "deploy-bot", "--scope", "admin"]);
    assert!(ok, "{err}");
    let id = created.split_whitespace().nth(1).unwrap().to_owned();
    assert!(id.starts_with("key_"), "{created}");
    let token = created.lines().find_map(|l| l.strip_prefix("token: ")).unwrap().to_owned();

    let (ok, listed, _) = run(&["list"]);
    assert!(ok && listed.contains(&id) && listed.contains("deploy-bot") && listed.contains("active"), "{listed}");
    assert!(!listed.contains(&token[12..]), "list must not show secrets");

    let (ok, _, err) = run(&["revoke", &id]);
    assert!(!ok && err.contains("last active admin key"), "{err}");
    let (ok, _, _) = run(&["create", "--name", "second", "--scope", "admin"]);
    assert!(ok);
    let (ok, revoked, err) = run(&["revoke", &id]);
    assert!(ok && revoked.contains("revoked"), "{err}");
    let (_, active, _) = run(&["list"]);
    assert!(!active.contains(&id));
    let (_, all, _) = run(&["list", "--all"]);
    assert!(all.contains(&id) && all.contains("revoked"), "{all}");

    let (ok, _, err) = run(&["create", "--name", "x", "--scope", "root"]);
    assert!(!ok && err.contains("unknown scope `root`"), "{err}");
}

#[tokio::test]
async fn migrate_prepares_an_empty_database() {
    let (config, dir) = fresh_config().await;
    let output = verge(&config, dir.path()).arg("migrate").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("migrations applied"));
    let db =
        verge_core::db::Database::connect(&Config { data_dir: dir.path().join("verge-data"), ..config }).await.unwrap();
    assert!(verge_core::keys::none_exist(&db).await.unwrap(), "tables exist and are empty");
}

#[tokio::test]
async fn publish_writes_each_platform_format_and_nothing_when_unchanged() {
    let (config, dir) = fresh_config().await;
    let out = dir.path().join("snapshot");
    let publish = |target: &str, out: &Path| {
        let output =
            verge(&config, dir.path()).args(["publish", "--target", target, "--out"]).arg(out).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };

    let first = publish("cloudflare", &out.join("cf"));
    assert!(first.contains("published snapshot 1"), "{first}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cf/kv-manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest[0]["key"], "meta/manifest");
    assert_eq!(manifest[0]["base64"], true);
    let written = std::fs::metadata(out.join("cf/kv-manifest.json")).unwrap().modified().unwrap();
    let second = publish("cloudflare", &out.join("cf"));
    assert!(second.contains("up to date: nothing written"), "{second}");
    assert_eq!(std::fs::metadata(out.join("cf/kv-manifest.json")).unwrap().modified().unwrap(), written);

    let fastly = publish("fastly", &out.join("fastly"));
    assert!(fastly.contains("published"), "{fastly}");
    let line = std::fs::read_to_string(out.join("fastly/kv-manifest.ndjson")).unwrap();
    let entry: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(entry["key"], "meta/manifest");

    publish("spin", &out.join("spin"));
    assert!(std::fs::read_to_string(out.join("spin/runtime-config.toml")).unwrap().contains("type = \"spin\""));
    let store = verge_core::publish::LocalEdgeStore::open(&out.join("spin/kv.db")).await.unwrap();
    use verge_core::publish::EdgeStore;
    let bytes = store.get(verge_shared::kv::MANIFEST_KEY).await.unwrap().expect("manifest in kv.db");
    assert_eq!(verge_shared::kv::Manifest::decode(&bytes).unwrap().snapshot, 1);
    store.close().await;
    assert!(publish("local", &out.join("spin")).contains("nothing written"));
}

#[test]
fn every_command_explains_itself() {
    for args in [
        &["--help"][..],
        &["dev", "--help"],
        &["edge", "serve", "--help"],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["keys", "create", "--help"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_verge")).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(text.contains("Usage: verge"), "{args:?}: {text}");
    }
    let dev = Command::new(env!("CARGO_BIN_EXE_verge")).args(["dev", "--help"]).output().unwrap();
    let dev = String::from_utf8(dev.stdout).unwrap();
    assert!(dev.contains("--data-dir") && dev.contains("--port"));
}

#[tokio::test]
async fn every_command_that_reads_the_data_directory_takes_data_dir() {
    let (config, dir) = fresh_config().await;
    let data = dir.path().join("elsewhere");
    let data = data.to_str().unwrap();
    let run = |args: &[&str]| {
        let output = verge(&config, dir.path()).args(args).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{args:?}: {stdout} {stderr}");
        stdout.into_owned()
    };
    run(&["migrate", "--data-dir", data]);
    let created = run(&["keys", "create", "--data-dir", data, "--name", "ci", "--scope", "flags:write"]);
    assert!(created.contains("verge_"), "{created}");
    assert!(run(&["keys", "list", "--data-dir", data]).contains("ci"));
    let flags = dir.path().join("flags.json");
    std::fs::write(
        &flags,
        r#"{"flags": {"beta": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}}"#,
    )
    .unwrap();
    run(&["flags", "import", "--data-dir", data, "--env", "dev", flags.to_str().unwrap()]);
    assert!(run(&["flags", "export", "--data-dir", data, "--env", "dev"]).contains("beta"));
    let out = dir.path().join("snapshot");
    run(&["publish", "--data-dir", data, "--target", "local", "--out", out.to_str().unwrap()]);
    assert!(out.join("kv.db").exists());
    if config.database_url.is_none() {
        // On embedded storage all of it went into that directory, and none into the default.
        assert!(std::path::Path::new(data).join(verge_core::db::SQLITE_FILE).exists());
        assert!(!dir.path().join("verge-data").exists());
    }
}
