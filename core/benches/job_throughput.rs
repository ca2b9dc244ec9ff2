//! Job throughput: how many jobs a second one core's worker finishes, from a queue of
//! `JOBS` (20,000) due no-op jobs, through the production loop (`Worker::run`: claims,
//! runs under the concurrency limit, marks successes in batches), on durable commits.
//!
//! `cargo bench -p verge-core --bench job_throughput` on SQLite; with `DATABASE_URL` set,
//! on that PostgreSQL (a fresh database is the caller's to provide). `scripts/bench-jobs`
//! runs both.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use verge_core::jobs::{Handler, JobCtx, JobError, NewJob, Registry, Worker, enqueue};
use verge_core::{App, Config};

struct Nothing;

#[async_trait]
impl Handler for Nothing {
    async fn run(&self, _: &JobCtx) -> Result<(), JobError> {
        Ok(())
    }
}

async fn count(app: &App, state: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = $1 AND kind = 'bench.nothing'")
        .bind(state)
        .fetch_one(app.state.db.pool())
        .await
        .expect("count")
}

#[tokio::main]
#[allow(clippy::print_stdout)] // the figure is the output
async fn main() {
    let jobs: i64 = std::env::var("JOBS").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config { data_dir: dir.path().to_owned(), job_concurrency: 256, ..Config::default() };
    config.database_url = std::env::var("DATABASE_URL").ok().map(Into::into);
    config.database_max_connections = 16;
    let backend = if config.database_url.is_some() { "PostgreSQL" } else { "SQLite" };
    let app = App::build(config).await.expect("app");
    sqlx::query("DELETE FROM jobs WHERE kind = 'bench.nothing'").execute(app.state.db.pool()).await.expect("clean");
    for chunk in 0..(jobs + 999) / 1000 {
        let mut tx = app.state.db.begin_write().await.expect("begin");
        for _ in 0..1000.min(jobs - chunk * 1000) {
            enqueue(&mut tx, NewJob::new("bench.nothing", serde_json::json!({}))).await.expect("enqueue");
        }
        tx.commit().await.expect("commit");
    }
    let worker = Worker::new(app.state.clone(), Registry::default().with("bench.nothing", Nothing));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let running = tokio::spawn(worker.run(async move {
        let _ = stop_rx.await;
    }));
    while count(&app, "succeeded").await < jobs {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    stop_tx.send(()).expect("worker running");
    running.await.expect("worker stops");
    let rate = jobs as f64 / took.as_secs_f64();
    println!("job throughput on {backend}: {jobs} jobs in {:.2} s = {rate:.0} jobs/s", took.as_secs_f64());
}
