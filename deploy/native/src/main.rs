//! `verge-edge-native`: the Verge edge application compiled natively, for self-hosted PoPs.
//!
//! It is not a second implementation: routes, KV reading and decisions are `verge-edge`
//! and `verge-shared`, exactly as in the wasm builds; this crate only implements the
//! edge's `Host` trait over tokio, with a small HTTP/1.1 server of its own (the role Spin,
//! Workers and Fastly play for the wasm builds). It reads the local edge store the core publishes into, or Redis as
//! the replicated KV a fleet of nodes follows. `verge edge serve --native` runs it.

mod events;
mod host;
mod http1;
mod kv;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serve the Verge edge natively on this machine.
#[derive(Debug, Parser)]
#[command(name = "verge-edge-native", version)]
struct Args {
    /// The local edge store: a directory (its `kv.db` is used) or a SQLite file in Spin's schema.
    #[arg(long, required_unless_present = "redis", conflicts_with = "redis")]
    store: Option<PathBuf>,
    /// Read edge KV from Redis instead (the core publishes there with VERGE_EDGE_REDIS_URL).
    /// From the environment (VERGE_EDGE_REDIS_URL) so a password never shows in a process list.
    #[arg(long, env = "VERGE_EDGE_REDIS_URL", hide_env_values = true)]
    redis: Option<String>,
    /// Prefix of every edge key in Redis.
    #[arg(long, env = "VERGE_EDGE_REDIS_PREFIX", default_value = "verge-edge:")]
    redis_prefix: String,
    /// Address to listen on; port 0 picks a free one (the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// The core, where the edge sends its event batches; without it, events are dropped.
    #[arg(long)]
    core_url: Option<http::Uri>,
    /// Edge ingest key (scope `events:ingest`), from the environment only.
    #[arg(skip = std::env::var("VERGE_EDGE_INGEST_KEY").unwrap_or_default())]
    ingest_key: String,
    /// A header through which a trusted proxy in front of this PoP reports the client's
    /// country (e.g. `cf-ipcountry`). Without it the edge sees no country.
    #[arg(long, env = "VERGE_EDGE_COUNTRY_HEADER")]
    country_header: Option<http::HeaderName>,
    /// How long connections in flight, and then unsent events, may take after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 5000)]
    shutdown_grace_ms: u64,
    /// Connections open at once; more wait in the listen backlog until one closes. Keep it
    /// below the open-file limit (`ulimit -n`).
    #[arg(long, env = "VERGE_EDGE_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // On one CPU (a pinned PoP worker) a single-threaded runtime skips the work stealing
    // and cross-thread wake-ups a multi-threaded one pays for on every request.
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let runtime = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    }
    .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let kv = match (&args.store, &args.redis) {
        (_, Some(url)) => kv::Kv::Redis(
            kv::RedisKv::connect(url, &args.redis_prefix).await.map_err(|err| format!("connecting to Redis: {err}"))?,
        ),
        (Some(store), None) => {
            let file = if store.is_dir() { store.join("kv.db") } else { store.clone() };
            let opened = verge_kv_store::EdgeStore::open(&file)
                .map_err(|err| format!("opening edge store {}: {err}", file.display()))?;
            kv::Kv::Local(opened, Default::default())
        }
        (None, None) => return Err("give --store DIR or --redis URL".into()),
    };
    let target = match (&args.core_url, args.ingest_key.is_empty()) {
        (Some(url), false) => Some((url.clone(), args.ingest_key.clone())),
        _ => None,
    };
    let (events, flushed) = events::EventSender::start(target);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|err| format!("listening on {}: {err}", args.listen))?;
    let address = listener.local_addr().map_err(|err| err.to_string())?;
    // The one line on stdout: `verge edge serve` and tests read the chosen address from it.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "verge-edge-native listening on http://{address}");
    let _ = stdout.flush();
    drop(stdout);
    tracing::info!(%address, kv = %kv.describe(), "native edge serving");

    let grace = Duration::from_millis(args.shutdown_grace_ms);
    let node = Arc::new(host::Node { kv, events, country_header: args.country_header });
    host::serve(listener, node, shutdown_signal(), grace, args.max_connections).await.map_err(|err| err.to_string())?;
    // Every request's sender is gone with the node: the queue drains, then ends.
    flushed.wait(grace).await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
