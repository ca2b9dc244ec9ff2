//! The admin console in a real browser: `verge dev` started as a user would, and Debian's
//! Chromium driven through it by puppeteer-core (core/tests/console-browser/console.mjs):
//! the first owner joins by the printed link, creates a short link and follows it at the
//! edge, sees the click in the chart, creates a flag, kills it and sees OFREP change at the
//! edge, proposes a change in a protected environment that a second operator approves, a
//! viewer finds no controls and is refused by the server, a form without its CSRF token is
//! refused, and every page passes axe-core with no serious or critical violation.
//! Screenshots land in target/console-screenshots.

mod common;

use common::fresh_config;
use common::process::{field, start_dev, verge, workspace_root};

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_runs_verge_from_the_console() {
    let runner = workspace_root().join("target/console-browser");
    assert!(
        runner.join("node_modules/puppeteer-core").is_dir() && runner.join("node_modules/axe-core").is_dir(),
        "puppeteer-core and axe-core are missing in {}: scripts/test installs them (npm ci)",
        runner.display()
    );
    let chromium = std::env::var("VERGE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: scripts/test installs Debian's `chromium`"
    );
    std::fs::copy(workspace_root().join("core/tests/console-browser/console.mjs"), runner.join("console.mjs")).unwrap();

    let (config, dir) = fresh_config().await;
    let (_dev, lines) = start_dev(verge(&config, dir.path()));
    let core = field(&lines, "core API").trim_end_matches("/v1").to_owned();
    let edge = field(&lines, "edge").trim_end_matches("/__verge/health").to_owned();
    let console = field(&lines, "console");
    assert_eq!(console, format!("{core}/console"), "the printed console URL");
    let invite = field(&lines, "first owner").to_owned();
    assert!(invite.starts_with(&format!("{core}/console/invite/vinv_")), "{invite}");

    let screenshots = workspace_root().join("target/console-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(runner.join("console.mjs"))
            .env("CORE_URL", &core)
            .env("EDGE_URL", &edge)
            .env("INVITE_URL", &invite)
            .env("CHROMIUM", &chromium)
            .env("SCREENSHOTS", &screenshots)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let printed = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "the browser run failed:\n{printed}\n{}", String::from_utf8_lossy(&run.stderr));
    let findings: serde_json::Value = serde_json::from_str(printed.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|err| panic!("{err}: {printed}"));
    // Every page it visited was screenshotted.
    let pages = findings["pages"].as_array().expect("pages");
    assert!(pages.len() >= 20, "only {} pages visited: {findings}", pages.len());
    for page in pages {
        let shot = workspace_root().join("target/console-screenshots").join(format!("{}.png", page.as_str().unwrap()));
        let bytes = std::fs::read(&shot).unwrap_or_else(|err| panic!("{}: {err}", shot.display()));
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000, "{} is not a real screenshot", shot.display());
    }
    // The kill switch changed what the edge answers.
    assert_eq!(findings["ofrep"]["before"]["value"], true, "{findings}");
    assert_ne!(findings["ofrep"]["after"]["value"], true, "{findings}");
    // Every page is interactive well under a second on `verge dev`.
    for (page, ms) in findings["timings"].as_object().unwrap() {
        assert!(ms.as_u64().unwrap() < 1_000, "{page} took {ms} ms to load");
    }
}
