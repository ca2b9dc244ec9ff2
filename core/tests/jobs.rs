//! The durable job queue on this run's database: retries with backoff until success or a
//! dead letter, timeouts, deferrals that spend no attempt, leases taken up after a worker
//! dies, exactly-once effects, two workers never running one job twice, and the admin API
//! that retries and discards what gave up.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::{Value, json};
use verge_core::jobs::{Handler, JobCtx, JobError, NewJob, Registry, Worker, enqueue};
use verge_core::keys::Scope;

/// Does what the payload says: fail its first `fail` runs (as `mode`), sleep `sleep_ms`
/// (or `sleep_first_ms` on the first attempt only),
/// and with `effect` insert a row in the same transaction as its completion.
#[derive(Clone, Default)]
struct Scripted {
    runs: Arc<Mutex<HashMap<String, usize>>>,
}

#[async_trait]
impl Handler for Scripted {
    async fn run(&self, job: &JobCtx) -> Result<(), JobError> {
        let run = {
            let mut runs = self.runs.lock().unwrap();
            let count = runs.entry(job.id.clone()).or_default();
            *count += 1;
            *count as i64
        };
        let payload = &job.payload;
        let sleep = payload["sleep_ms"].as_u64().or(payload["sleep_first_ms"].as_u64().filter(|_| job.attempt == 1));
        if let Some(ms) = sleep {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if run <= payload["fail"].as_i64().unwrap_or(0) {
            let reason = format!("scripted failure {run}");
            return Err(match payload["mode"].as_str() {
                Some("fatal") => JobError::Fatal(reason),
                Some("defer") => JobError::Defer { after: Duration::from_millis(1), reason },
                _ => JobError::Retry(reason),
            });
        }
        if payload["effect"].as_bool() == Some(true) {
            let mut tx = job.state.db.begin_write().await?;
            sqlx::query("INSERT INTO job_effects (job_id) VALUES ($1)").bind(&job.id).execute(&mut *tx).await?;
            job.complete_in(&mut tx).await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

impl Scripted {
    fn runs(&self, id: &str) -> usize {
        self.runs.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

async fn app() -> TestApp {
    TestApp::with(|config| config.job_concurrency = 8).await
}

async fn add(app: &TestApp, job: NewJob) -> String {
    let mut conn = app.app.state.db.pool().acquire().await.unwrap();
    enqueue(&mut conn, job).await.unwrap().expect("enqueued")
}

fn scripted(payload: Value) -> NewJob {
    NewJob::new("test.scripted", payload).backoff(Duration::from_millis(1))
}

async fn job(app: &TestApp, key: &str, id: &str) -> Value {
    app.get(&format!("/v1/jobs/{id}"), Some(key)).await.ok().clone()
}

/// Drains until `done` holds or a few seconds pass (retries wait out their backoff).
async fn drain_until(worker: &Worker, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        worker.drain().await.unwrap();
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the queue did not settle");
}

#[tokio::test]
async fn failed_attempts_retry_with_backoff_until_success_or_a_dead_letter_an_operator_retries() {
    let app = app().await;
    let handler = Scripted::default();
    let worker = Worker::new(app.app.state.clone(), Registry::default().with("test.scripted", handler.clone()));
    let key = app.admin().await;
    let flaky = add(&app, scripted(json!({"fail": 2})).max_attempts(5)).await;
    let doomed = add(&app, scripted(json!({"fail": 99})).max_attempts(3)).await;
    drain_until(&worker, async || {
        let (a, b) = (job(&app, &key, &flaky).await, job(&app, &key, &doomed).await);
        a["state"] == "succeeded" && b["state"] == "dead"
    })
    .await;
    let flaky = job(&app, &key, &flaky).await;
    assert_eq!(flaky["attempts"], 3, "{flaky}");
    let errors: Vec<&str> = flaky["errors"].as_array().unwrap().iter().map(|e| e["error"].as_str().unwrap()).collect();
    assert_eq!(errors, ["scripted failure 1", "scripted failure 2"]);
    let dead = job(&app, &key, &doomed).await;
    assert_eq!((dead["attempts"].as_i64(), dead["last_error"].as_str()), (Some(3), Some("scripted failure 3")));
    assert_eq!(handler.runs(dead["id"].as_str().unwrap()), 3, "no attempt past the last");

    // The dead letter is listed by state and kind, and a read key may look but not act.
    let listed = app.get("/v1/jobs?state=dead&kind=test.scripted", Some(&key)).await;
    let ids: Vec<&str> = listed.ok()["items"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [dead["id"].as_str().unwrap()]);
    let stats = app.get("/v1/jobs/stats", Some(&key)).await;
    assert_eq!(stats.ok()["depths"], json!([{"kind": "test.scripted", "state": "dead", "jobs": 1}]));
    let reader = app.key(&[Scope::Read]).await;
    let retry = format!("/v1/jobs/{}/retry", dead["id"].as_str().unwrap());
    app.call(Method::POST, &retry, Some(&reader), None).await.problem(StatusCode::FORBIDDEN, "forbidden");
    let bad = app.get("/v1/jobs?state=lost", Some(&key)).await;
    bad.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

    // Retried by an operator, it runs again with fresh attempts (and fails again, as scripted),
    // then an operator discards it; a succeeded job can be neither.
    let writer = app.key(&[Scope::JobsWrite]).await;
    let retried = app.call(Method::POST, &retry, Some(&writer), None).await;
    assert_eq!((retried.ok()["state"].as_str(), retried.ok()["attempts"].as_i64()), (Some("queued"), Some(0)));
    let id = dead["id"].as_str().unwrap().to_owned();
    drain_until(&worker, async || job(&app, &key, &id).await["state"] == "dead").await;
    assert_eq!(handler.runs(&id), 6);
    let discard = format!("/v1/jobs/{id}/discard");
    assert_eq!(app.call(Method::POST, &discard, Some(&writer), None).await.ok()["state"], "discarded");
    let again = app.call(Method::POST, &discard, Some(&writer), None).await;
    let problem = again.problem(StatusCode::CONFLICT, "job_state");
    assert!(problem["detail"].as_str().unwrap().contains("is discarded"), "{problem}");
    let succeeded = format!("/v1/jobs/{}/retry", flaky["id"].as_str().unwrap());
    app.call(Method::POST, &succeeded, Some(&writer), None).await.problem(StatusCode::CONFLICT, "job_state");
    let audit = app.get(&format!("/v1/audit-log?target_id={id}"), Some(&key)).await;
    let actions: Vec<&str> =
        audit.ok()["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"job.retried") && actions.contains(&"job.discarded"), "{actions:?}");
    app.get("/v1/jobs/job_missing", Some(&key)).await.problem(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn fatal_errors_die_at_once_deferrals_spend_no_attempt_and_hung_attempts_time_out() {
    let app = app().await;
    let handler = Scripted::default();
    let worker = Worker::new(app.app.state.clone(), Registry::default().with("test.scripted", handler.clone()));
    let key = app.admin().await;
    let fatal = add(&app, scripted(json!({"fail": 5, "mode": "fatal"}))).await;
    let deferred = add(&app, scripted(json!({"fail": 4, "mode": "defer"})).max_attempts(2)).await;
    let hung =
        add(&app, scripted(json!({"fail": 0, "sleep_ms": 5_000})).timeout(Duration::from_millis(100)).max_attempts(2))
            .await;
    drain_until(&worker, async || {
        let states = [job(&app, &key, &fatal).await, job(&app, &key, &deferred).await, job(&app, &key, &hung).await];
        states[0]["state"] == "dead" && states[1]["state"] == "succeeded" && states[2]["state"] == "dead"
    })
    .await;
    assert_eq!(handler.runs(&fatal), 1, "a fatal error is not retried");
    // Four deferrals and a success on a job allowed two attempts: deferring spent none.
    assert_eq!(handler.runs(&deferred), 5);
    assert_eq!(job(&app, &key, &deferred).await["attempts"], 1);
    let hung = job(&app, &key, &hung).await;
    assert_eq!(hung["last_error"], "timed out after 100 ms", "{hung}");
}

#[tokio::test]
async fn priorities_delays_and_unique_keys_decide_what_runs_and_when() {
    let app = TestApp::with(|config| config.job_concurrency = 1).await;
    let order = Arc::new(Mutex::new(Vec::new()));
    #[derive(Clone)]
    struct Record(Arc<Mutex<Vec<String>>>);
    #[async_trait]
    impl Handler for Record {
        async fn run(&self, job: &JobCtx) -> Result<(), JobError> {
            self.0.lock().unwrap().push(job.payload["name"].as_str().unwrap().to_owned());
            Ok(())
        }
    }
    let worker = Worker::new(app.app.state.clone(), Registry::default().with("test.record", Record(order.clone())));
    let record = |name: &str| NewJob::new("test.record", json!({"name": name}));
    add(&app, record("low").priority(-1)).await;
    add(&app, record("normal")).await;
    add(&app, record("urgent").priority(10)).await;
    add(&app, record("later").delay(Duration::from_millis(400))).await;
    add(&app, record("once").unique("only-one")).await;
    let mut conn = app.app.state.db.pool().acquire().await.unwrap();
    assert_eq!(enqueue(&mut conn, record("twice").unique("only-one")).await.unwrap(), None);
    drop(conn);
    worker.drain().await.unwrap();
    assert_eq!(
        *order.lock().unwrap(),
        ["urgent", "normal", "once", "low"],
        "by priority, then due time; `later` not yet"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    worker.drain().await.unwrap();
    assert_eq!(order.lock().unwrap().last().map(String::as_str), Some("later"));
    assert_eq!(order.lock().unwrap().len(), 5);
}

#[tokio::test]
async fn two_workers_never_run_one_job_twice_and_effects_commit_with_completion() {
    let app = app().await;
    sqlx::query("CREATE TABLE job_effects (job_id TEXT PRIMARY KEY)").execute(app.app.state.db.pool()).await.unwrap();
    let handler = Scripted::default();
    let registry = Registry::default().with("test.scripted", handler.clone());
    let (a, b) = (Worker::new(app.app.state.clone(), registry.clone()), Worker::new(app.app.state.clone(), registry));
    let mut ids = Vec::new();
    let mut tx = app.app.state.db.begin_write().await.unwrap();
    for _ in 0..600 {
        ids.push(enqueue(&mut tx, scripted(json!({"effect": true}))).await.unwrap().unwrap());
    }
    tx.commit().await.unwrap();
    let (ran_a, ran_b) = tokio::join!(a.drain(), b.drain());
    let (ran_a, ran_b) = (ran_a.unwrap(), ran_b.unwrap());
    assert_eq!(ran_a + ran_b, 600, "every job claimed once between the two ({ran_a} + {ran_b})");
    for id in &ids {
        assert_eq!(handler.runs(id), 1, "{id}");
    }
    let effects: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM job_effects").fetch_one(app.app.state.db.pool()).await.unwrap();
    let succeeded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'")
        .fetch_one(app.app.state.db.pool())
        .await
        .unwrap();
    assert_eq!((effects, succeeded), (600, 600));
}

#[tokio::test]
async fn a_job_whose_worker_died_is_taken_up_when_its_lease_runs_out_and_its_effect_lands_once() {
    let app = app().await;
    sqlx::query("CREATE TABLE job_effects (job_id TEXT PRIMARY KEY)").execute(app.app.state.db.pool()).await.unwrap();
    let handler = Scripted::default();
    let registry = Registry::default().with("test.scripted", handler.clone());
    // The first worker takes the job and dies mid-attempt (its task is aborted, as a
    // killed process would stop): nothing it meant to write commits.
    let id =
        add(&app, scripted(json!({"effect": true, "sleep_first_ms": 300})).timeout(Duration::from_millis(200))).await;
    let doomed = Worker::new(app.app.state.clone(), registry.clone());
    let running = tokio::spawn(async move { doomed.drain().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    running.abort();
    let key = app.admin().await;
    let held = job(&app, &key, &id).await;
    assert_eq!(held["state"], "running", "{held}");
    assert!(held["locked_until"].is_string());
    // A second worker finds it only once the lease (timeout + grace) has run out.
    let rescuer = Worker::new(app.app.state.clone(), registry);
    tokio::time::sleep(Duration::from_millis(200)).await;
    rescuer.drain().await.unwrap();
    assert_eq!(job(&app, &key, &id).await["state"], "running", "the lease still holds");
    drain_until(&rescuer, async || job(&app, &key, &id).await["state"] == "succeeded").await;
    let done = job(&app, &key, &id).await;
    assert_eq!(done["attempts"], 2, "{done}");
    let effects: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM job_effects").fetch_one(app.app.state.db.pool()).await.unwrap();
    assert_eq!(effects, 1);
}

#[tokio::test]
async fn the_running_worker_picks_up_new_jobs_at_once_and_metrics_show_the_queue() {
    let app = app().await;
    let handler = Scripted::default();
    let worker = Worker::new(app.app.state.clone(), Registry::default().with("test.scripted", handler.clone()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stop_rx.await;
    }));
    let key = app.admin().await;
    let dead = add(&app, scripted(json!({"fail": 9, "mode": "fatal"}))).await;
    let id = add(&app, scripted(json!({}))).await;
    let started = std::time::Instant::now();
    while job(&app, &key, &id).await["state"] != "succeeded" || job(&app, &key, &dead).await["state"] != "dead" {
        assert!(started.elapsed() < Duration::from_secs(10), "the worker ran the jobs");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await; // a housekeeping tick refreshes the gauges
    let metrics = app.get("/metrics", None).await.text;
    assert!(metrics.contains(r#"verge_job_attempts_total{kind="test.scripted",outcome="succeeded"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"verge_job_attempts_total{kind="test.scripted",outcome="dead"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"verge_jobs{kind="test.scripted",state="dead"} 1"#), "{metrics}");
    assert!(metrics.contains("verge_job_oldest_due_age_seconds 0"), "{metrics}");
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running).await.expect("the worker stops on shutdown").unwrap();
}
