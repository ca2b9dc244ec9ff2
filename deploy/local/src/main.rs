//! `verge-edge-host`: runs the Verge edge component (the same `.wasm` that ships to Spin)
//! under wasmtime over a local edge store. `verge dev` starts it next to the core;
//! `verge edge serve` runs it alone as a self-hosted PoP.
//!
//! It depends on nothing of Verge's but the store layout (Spin's SQLite key-value schema),
//! and keeps wasmtime out of every other crate's build.

mod counters;
mod kv;
mod outbound;
mod runtime;
mod server;
mod variables;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Run the Verge edge component on this machine.
#[derive(Debug, Parser)]
#[command(name = "verge-edge-host", version)]
struct Args {
    /// The edge component: `verge_edge.wasm` built for wasm32-wasip2.
    #[arg(long)]
    component: PathBuf,
    /// The edge store: a directory (its `kv.db` is used) or a SQLite file in Spin's schema.
    #[arg(long)]
    store: PathBuf,
    /// Address to listen on; port 0 picks a free one (the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// The core, where the edge sends its event batches; without it, events are dropped.
    #[arg(long)]
    core_url: Option<http::Uri>,
    /// Edge ingest key (scope `events:ingest`) for the core. From the environment only, so
    /// it never shows in a process list.
    #[arg(skip = std::env::var("VERGE_EDGE_INGEST_KEY").unwrap_or_default())]
    ingest_key: String,
    /// Requests one component instance serves before it is replaced; 1 gives every
    /// request a fresh instance, as Fastly does.
    #[arg(long, env = "VERGE_EDGE_MAX_INSTANCE_REUSE", default_value_t = runtime::MAX_REUSE, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_instance_reuse: usize,
    /// A header through which a trusted proxy in front of this PoP reports the client's
    /// country (e.g. `cf-ipcountry`); it drives country targeting. Without it the edge
    /// sees no country, and a country header a client sends is ignored.
    #[arg(long, env = "VERGE_EDGE_COUNTRY_HEADER")]
    country_header: Option<http::HeaderName>,
    /// How long connections in flight may take to finish after SIGINT/SIGTERM; then as
    /// long again for instances still sending the events of requests already answered.
    #[arg(long, default_value_t = 5000)]
    shutdown_grace_ms: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,wasmtime=warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let store_file = if args.store.is_dir() { args.store.join("kv.db") } else { args.store.clone() };
    let store = kv::EdgeStore::open(&store_file)
        .map_err(|err| format!("opening edge store {}: {err}", store_file.display()))?;
    let mut variables = HashMap::new();
    variables.insert("core_url".to_owned(), args.core_url.as_ref().map(ToString::to_string).unwrap_or_default());
    variables.insert("ingest_key".to_owned(), args.ingest_key.clone());
    // The host copies a trusted proxy's country header into its own, after dropping any
    // copy of that one a client sent; the guest trusts only the header named here.
    if args.country_header.is_some() {
        variables.insert("country_header".to_owned(), runtime::COUNTRY_HEADER.to_owned());
    }
    let outbound = outbound::OutboundPolicy::only(args.core_url.as_ref());

    let started = Instant::now();
    let runtime = runtime::Runtime::new(
        &args.component,
        store,
        variables::Variables(variables),
        outbound,
        args.max_instance_reuse,
        args.country_header.clone(),
    )
    .map_err(|err| format!("loading component {}: {err:#}", args.component.display()))?;
    tracing::info!(component = %args.component.display(), compile_ms = started.elapsed().as_millis() as u64, "component ready");

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|err| format!("listening on {}: {err}", args.listen))?;
    let address = listener.local_addr().map_err(|err| err.to_string())?;
    // The one line on stdout: `verge dev` and tests read the chosen address from it.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "verge-edge-host listening on http://{address}");
    let _ = stdout.flush();
    drop(stdout);
    tracing::info!(%address, store = %store_file.display(), "edge host serving");

    server::serve(listener, runtime, shutdown_signal(), Duration::from_millis(args.shutdown_grace_ms))
        .await
        .map_err(|err| err.to_string())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}
