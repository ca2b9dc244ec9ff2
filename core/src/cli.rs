//! The `verge` command line: `dev`, `serve`, `migrate`, `keys`, `publish` and `edge`.
//!
//! Commands are thin: they load the [`Config`], call into the library, and print. Key
//! management talks to the database directly, so it works before any server runs.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::audit::Actor;
use crate::config::{Config, LogFormat};
use crate::db::{Database, Dialect};
use crate::edge::local as edge;
use crate::keys::{self, Bootstrap, NewKey, Scope};
use crate::pagination::{Cursor, PageParams};
use crate::publish::snapshot::{BulkFiles, SPIN_RUNTIME_CONFIG, Target};
use crate::publish::{self, LocalEdgeStore};
use crate::server::{self, App};
use crate::time::Millis;

#[derive(Debug, Parser)]
#[command(
    name = "verge",
    version,
    about = "Verge: an edge-first platform. This command runs the core service and manages it.",
    long_about = "Verge: an edge-first platform. This command runs the core service and manages it.\n\n\
        Start with `verge dev`: it runs everything on this machine with embedded storage and \
        prints the URLs and an admin key. Configuration comes from an optional TOML file \
        (--config or VERGE_CONFIG) and VERGE_* environment variables; see the README."
)]
struct Cli {
    /// TOML configuration file; environment variables override it.
    #[arg(long, global = true, env = "VERGE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the embedded database and local state live (default `verge-data`; also
    /// VERGE_DATA_DIR). Every command that reads them takes it.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run Verge on this machine with embedded defaults (SQLite, in-process cache) and print its URLs.
    Dev(DevArgs),
    /// Run the core service as configured (for production: set DATABASE_URL and REDIS_URL).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create, list and revoke admin API keys (works directly on the database).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Import and export flags as flagd JSON; make OFREP client keys.
    #[command(subcommand)]
    Flags(crate::flags::cli::FlagsCommand),
    /// Write a full snapshot of edge configuration for a target platform into a directory.
    ///
    /// local/spin: a kv.db in Spin's key-value schema (plus runtime-config.toml for spin).
    /// cloudflare: kv-bulk.json then kv-manifest.json for `wrangler kv bulk put`, and
    /// kv-delete.json for `wrangler kv bulk delete`. fastly: kv-entries.ndjson then
    /// kv-manifest.ndjson for `fastly kv-store-entry create --file`. Upload the manifest
    /// file last. Publishing an unchanged state into the same directory writes nothing.
    Publish {
        #[arg(long, value_enum)]
        target: Target,
        /// Directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Run the edge on this machine.
    #[command(subcommand)]
    Edge(EdgeCommand),
    /// Manage the keys that sign customers' access tokens.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Console operators: invite one (works directly on the database).
    #[command(subcommand)]
    Operators(OperatorsCommand),
}

#[derive(Debug, Subcommand)]
enum OperatorsCommand {
    /// Print a one-time console invitation link (valid for 7 days) for a new operator.
    Invite {
        /// owner, admin, editor or viewer.
        #[arg(long, default_value = "owner")]
        role: String,
        /// The core's public URL, which the link starts with.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// Start signing with a new key. Tokens signed with the old one keep validating for
    /// the overlap (default 1h, the longest an access token can live), then stop.
    RotateKey {
        /// How long the old key keeps validating, e.g. `15m`, `1h`, `90s`.
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        overlap: String,
    },
}

#[derive(Debug, Subcommand)]
enum EdgeCommand {
    /// Run the local edge host alone over an edge store: a self-hosted PoP.
    ///
    /// The store is a directory holding kv.db (as `verge publish --target local` writes
    /// it) or the file itself. To report events, pass --core-url and set
    /// VERGE_EDGE_INGEST_KEY to a key with the events:ingest scope.
    ///
    /// With --native it runs the same edge application compiled natively instead of the
    /// wasm component, and it may read Redis (VERGE_EDGE_REDIS_URL, where the core
    /// publishes when it has that setting) instead of a store: a fleet of nodes then
    /// follows one core.
    Serve {
        /// The edge store directory (or kv.db file).
        #[arg(long, value_name = "DIR", required_unless_present = "native")]
        store: Option<PathBuf>,
        /// Serve natively (verge-edge-native) rather than under wasmtime.
        #[arg(long)]
        native: bool,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// The core the edge reports events to, e.g. https://verge.example.com.
        #[arg(long, value_name = "URL")]
        core_url: Option<String>,
    },
}

#[derive(Debug, Args)]
struct DevArgs {
    /// Port for the core API on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Port for the local edge on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8081)]
    edge_port: u16,
    /// Run the core only, without the local edge host.
    #[arg(long)]
    no_edge: bool,
    /// Run the edge natively (verge-edge-native) instead of the wasm component.
    #[arg(long, conflicts_with = "no_edge")]
    native: bool,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print its token once.
    Create {
        /// What the key is for, e.g. `ci-deploy`.
        #[arg(long)]
        name: String,
        /// A scope to grant (repeat for several): admin, read, events:ingest, links:write, flags:write,
        /// ratelimit:write, ratelimit:check, customers:write,
        /// autocomplete:write.
        #[arg(long = "scope", required = true, value_name = "SCOPE")]
        scopes: Vec<Scope>,
        /// When the key stops working (RFC 3339, e.g. 2027-01-01T00:00:00Z).
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
    },
    /// List keys, newest first.
    List {
        /// Include revoked and expired keys.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a key by id (`key_…`).
    Revoke { id: String },
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(anyhow::Error::from).and_then(
            |runtime| {
                runtime.block_on(async {
                    let mut config = Config::load(cli.config.as_deref())?;
                    if let Some(dir) = cli.data_dir {
                        config.data_dir = dir;
                    }
                    init_logging(&config, &cli.command);
                    match cli.command {
                        Command::Dev(args) => dev(config, args).await,
                        Command::Serve => serve(config).await,
                        Command::Migrate => migrate(config).await,
                        Command::Keys(command) => keys_command(config, command).await,
                        Command::Flags(command) => crate::flags::cli::run(config, command).await,
                        Command::Sessions(SessionsCommand::RotateKey { overlap }) => rotate_key(config, &overlap).await,
                        Command::Operators(OperatorsCommand::Invite { role, url }) => {
                            invite_operator(config, &role, &url).await
                        }
                        Command::Publish { target, out } => publish_snapshot(config, target, out).await,
                        Command::Edge(EdgeCommand::Serve { store, native, listen, core_url }) => {
                            edge_serve(store, native, listen, core_url).await
                        }
                    }
                })
            },
        );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config, command: &Command) {
    let default = match command {
        Command::Dev(_) | Command::Serve | Command::Edge(_) => "info,sqlx=warn",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// `port`, or when it is 0 one the system has free now, so the edge's URL is known before
/// the core starts (the edge host then binds it).
fn free_port_if_zero(port: u16) -> anyhow::Result<u16> {
    if port != 0 {
        return Ok(port);
    }
    let probe = std::net::TcpListener::bind(("127.0.0.1", 0)).context("finding a free port for the edge")?;
    Ok(probe.local_addr()?.port())
}

/// Runs `app` on `listener` with its publisher and scheduler until `stop` resolves (a
/// signal, or for `verge dev` also its edge host dying), then drains all three.
async fn run_until(
    app: App,
    listener: tokio::net::TcpListener,
    grace: std::time::Duration,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    if let Some(address) = app.state.config.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for metrics on {address}"))?;
        tracing::info!(%address, "serving /metrics");
        let router = app.metrics.clone();
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            let served = axum::serve(metrics, router).with_graceful_shutdown(stop).await;
            if let Err(err) = served {
                tracing::error!(error = %err, "the metrics listener failed");
            }
        });
    }
    let publisher = tokio::spawn(app.state.publisher.clone().run(stopped(stop_rx.clone())));
    let scheduler = tokio::spawn(crate::flags::requests::run_scheduler(
        app.state.db.clone(),
        app.state.publisher.clone(),
        stopped(stop_rx.clone()),
    ));
    let alerts = tokio::spawn(crate::ratelimit::alerts::run(
        app.state.db.clone(),
        app.state.cache.clone(),
        app.state.tally.clone(),
        app.state.config.ratelimit_alert_interval(),
        stopped(stop_rx.clone()),
    ));
    let sweeper = tokio::spawn(crate::customers::revocations::run_sweeper(
        app.state.db.clone(),
        app.state.publisher.clone(),
        stopped(stop_rx.clone()),
    ));
    let trending = tokio::spawn(crate::autocomplete::trending::run(
        app.state.clone(),
        app.state.config.autocomplete_trending_interval(),
        stopped(stop_rx.clone()),
    ));
    let clock = tokio::spawn(crate::catalog::clock::run(
        app.state.db.clone(),
        app.state.publisher.clone(),
        app.state.config.catalog_clock_interval(),
        app.state.config.low_stock_threshold,
        stopped(stop_rx.clone()),
    ));
    if let Err(err) = crate::orders::saga::schedule_sweep(&app.state.db).await {
        tracing::warn!(error = %err, "scheduling the idempotency-key sweep failed; the next start will");
    }
    let worker = (app.state.config.job_concurrency > 0).then(|| {
        let worker = crate::jobs::Worker::new(app.state.clone(), server::job_registry());
        tokio::spawn(worker.run(stopped(stop_rx.clone())))
    });
    let mut server = std::pin::pin!(server::serve(listener, app.router, stopped(stop_rx), grace));
    let served = tokio::select! {
        served = &mut server => served,
        () = stop => {
            let _ = stop_tx.send(true);
            server.await
        }
    };
    let _ = stop_tx.send(true);
    served?;
    publisher.await?;
    scheduler.await?;
    alerts.await?;
    sweeper.await?;
    trending.await?;
    clock.await?;
    if let Some(worker) = worker {
        worker.await?;
    }
    app.state.db.close().await;
    Ok(())
}

async fn dev(mut config: Config, args: DevArgs) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    config.edge_store.get_or_insert_with(|| data_dir.join("edge").join("kv.db"));
    config.listen = SocketAddr::from(([127, 0, 0, 1], args.port));
    // Short links are served by the edge this prints, as printed: on its host, and with
    // `short_url`s that lead to it.
    let edge_listen = SocketAddr::from(([127, 0, 0, 1], free_port_if_zero(args.edge_port)?));
    if !args.no_edge {
        config.links_default_domain.get_or_insert_with(|| edge_listen.ip().to_string());
        config.links_short_url_base.get_or_insert_with(|| format!("http://{edge_listen}"));
    }
    // Built (when stale) before the core is announced: a first build takes minutes, and a
    // core already printed as running would leave requests waiting all that time.
    let edge_program = match (args.no_edge, args.native) {
        (true, _) => None,
        (false, true) => Some(edge::EdgeProgram::Native(edge::native_binary().await?)),
        (false, false) => Some(edge::EdgeProgram::Wasm(edge::artifacts().await?)),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let app = App::build(config.clone()).await?;
    seed_defaults(&app).await?;
    let bootstrap = keys::bootstrap(&app.state.db, config.admin_key.as_ref(), true).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let storage = match app.state.db.dialect() {
        Dialect::Sqlite => format!("SQLite at {}", config.data_dir.join(crate::db::SQLITE_FILE).display()),
        Dialect::Postgres => "PostgreSQL (DATABASE_URL)".to_owned(),
    };
    println!("Verge is running.");
    println!("  core API     {url}/v1");
    println!("  OpenAPI      {url}/openapi.json");
    println!("  health       {url}/healthz  {url}/readyz");
    let metrics = config.metrics_listen.map_or_else(|| url.clone(), |address| format!("http://{address}"));
    println!("  metrics      {metrics}/metrics");
    println!("  storage      {storage}; cache: {}", app.state.cache.backend());
    match bootstrap {
        Bootstrap::Generated(token) => {
            println!("  admin key    {token}");
            println!("               (shown once: store it now; use it as `Authorization: Bearer <key>`)");
        }
        Bootstrap::FromConfig => println!("  admin key    the one in VERGE_ADMIN_KEY"),
        Bootstrap::Existing => println!("  admin key    keys already exist; `verge keys create` makes another"),
    }
    println!("  console      {url}/console");
    if let Some(invitation) =
        crate::operators::first_owner_invitation(&app.state.db).await.map_err(|err| anyhow::anyhow!("{err}"))?
    {
        println!("  first owner  {url}/console/invite/{}", invitation.token);
        println!("               (one-time link: open it to choose your email and password)");
    }
    let mut edge_host = match (&config.edge_store, &edge_program) {
        (Some(store), Some(program)) => {
            let edge_dir = store.parent().unwrap_or(&config.data_dir).to_owned();
            let ingest_key = edge::dev_ingest_key(&app.state.db, &edge_dir).await?;
            let host = edge::EdgeHost::start(edge::HostOptions {
                program,
                store: Some(store),
                listen: edge_listen,
                core_url: Some(&url),
                ingest_key: Some(&ingest_key),
            })
            .await?;
            println!("  edge         {}/__verge/health  ({})", host.url, program.describe());
            println!("  short links  {}/<code>  (links on `{}`)", host.url, config.default_link_domain());
            Some(host)
        }
        _ => None,
    };
    if let Some(store) = &config.edge_store {
        println!("  edge store   {} (the core publishes edge configuration here)", store.display());
    }
    println!("Press Ctrl-C to stop.");
    let grace = config.shutdown_grace();
    // The edge is half of what `verge dev` promises: if its host dies, everything stops,
    // loudly, rather than leaving a core whose edge URL refuses connections.
    let mut edge_died = None;
    let stop = async {
        let Some(host) = edge_host.as_mut() else { return server::shutdown_signal().await };
        tokio::select! {
            () = server::shutdown_signal() => {}
            status = host.exited() => {
                let status = status.map_or_else(|err| err.to_string(), |status| status.to_string());
                tracing::error!(%status, "the edge host exited; stopping the core");
                edge_died = Some(status);
            }
        }
    };
    let served = run_until(app, listener, grace, stop).await;
    if let Some(status) = edge_died {
        served?;
        anyhow::bail!("the edge host exited unexpectedly ({status}); the core was stopped with it");
    }
    if let Some(host) = edge_host {
        host.stop().await?;
    }
    served
}

async fn edge_serve(
    store: Option<PathBuf>,
    native: bool,
    listen: SocketAddr,
    core_url: Option<String>,
) -> anyhow::Result<()> {
    let program = if native {
        edge::EdgeProgram::Native(edge::native_binary().await?)
    } else {
        edge::EdgeProgram::Wasm(edge::artifacts().await?)
    };
    let store_file = store.map(|store| if store.is_dir() { store.join("kv.db") } else { store });
    match &store_file {
        Some(file) if !file.exists() => anyhow::bail!(
            "no edge store at {}: publish one first (`verge publish --target local --out DIR`)",
            file.display()
        ),
        None if std::env::var_os("VERGE_EDGE_REDIS_URL").is_none() => {
            anyhow::bail!("give --store DIR, or set VERGE_EDGE_REDIS_URL for a native node reading Redis")
        }
        _ => {}
    }
    let source = store_file.as_ref().map_or_else(|| "Redis".to_owned(), |file| file.display().to_string());
    let ingest_key = std::env::var("VERGE_EDGE_INGEST_KEY").ok();
    if core_url.is_some() != ingest_key.is_some() {
        tracing::warn!("events are reported only with both --core-url and VERGE_EDGE_INGEST_KEY set");
    }
    let mut host = edge::EdgeHost::start(edge::HostOptions {
        program: &program,
        store: store_file.as_deref(),
        listen,
        core_url: core_url.as_deref(),
        ingest_key: ingest_key.as_deref(),
    })
    .await?;
    println!("edge serving {}/__verge/health from {source}", host.url);
    tokio::select! {
        status = host.exited() => anyhow::bail!("the edge host exited: {}", status?),
        () = server::shutdown_signal() => {
            host.stop().await?;
            Ok(())
        }
    }
}

/// The policies a new installation starts with (`ratelimit::defaults`).
async fn seed_defaults(app: &App) -> anyhow::Result<()> {
    crate::ratelimit::defaults::seed(&app.state.db)
        .await
        .map_err(|err| anyhow::anyhow!("cannot seed the default rate-limit policies: {err:?}"))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let app = App::build(config.clone()).await?;
    seed_defaults(&app).await?;
    match keys::bootstrap(&app.state.db, config.admin_key.as_ref(), false).await? {
        Bootstrap::FromConfig => tracing::info!("installed VERGE_ADMIN_KEY as the first admin key"),
        Bootstrap::Existing if keys::none_exist(&app.state.db).await? => {
            tracing::warn!("no admin keys exist: create one with `verge keys create --name NAME --scope admin`")
        }
        _ => {}
    }
    tracing::info!(address = %listener.local_addr()?, "serving");
    run_until(app, listener, config.shutdown_grace(), server::shutdown_signal()).await
}

async fn invite_operator(config: Config, role: &str, url: &str) -> anyhow::Result<()> {
    let role = crate::operators::Role::parse(role)
        .ok_or_else(|| anyhow::anyhow!("unknown role `{role}`: use owner, admin, editor or viewer"))?;
    let db = Database::connect(&config).await?;
    db.migrate().await?;
    let invitation =
        crate::operators::invite(&db, role, &crate::audit::Actor::Cli).await.map_err(|err| anyhow::anyhow!("{err}"))?;
    println!("{}/console/invite/{}", url.trim_end_matches('/'), invitation.token);
    println!("(one-time link for a new {role}, valid until {}; shown once)", invitation.expires_at);
    Ok(())
}

async fn rotate_key(config: Config, overlap: &str) -> anyhow::Result<()> {
    let overlap_ms = crate::customers::signing::parse_overlap(overlap).map_err(|err| anyhow::anyhow!(err))?;
    let db = Database::connect(&config).await?;
    db.migrate().await?;
    let rotation = crate::customers::signing::rotate(&db, &crate::audit::Actor::Cli, overlap_ms).await?;
    println!("signing with {}", rotation.new_kid);
    for kid in &rotation.retired {
        println!("{kid} validates until {}", rotation.retires_at);
    }
    println!("a running core publishes the new key set to its edges within a second");
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let db = Database::connect(&config).await?;
    db.migrate().await?;
    println!("migrations applied ({:?})", db.dialect());
    Ok(())
}

async fn keys_command(config: Config, command: KeysCommand) -> anyhow::Result<()> {
    let db = Database::connect(&config).await?;
    db.migrate().await?;
    match command {
        KeysCommand::Create { name, scopes, expires_at } => {
            let expires_at = match expires_at {
                Some(text) => Some(Millis(
                    text.parse::<jiff::Timestamp>()
                        .with_context(|| format!("--expires-at `{text}` is not an RFC 3339 time"))?
                        .as_millisecond(),
                )),
                None => None,
            };
            let created = keys::create(&db, NewKey { name, scopes, expires_at }, &Actor::Cli).await?;
            println!("created {} ({})", created.key.id, scope_list(&created.key.scopes));
            println!("token: {}", created.token);
            println!("(shown once: store it now)");
        }
        KeysCommand::List { all } => {
            let mut params = PageParams { limit: Some(crate::pagination::MAX_LIMIT), cursor: None };
            println!("{:<31} {:<20} {:<13} {:<12} {:<25} STATUS", "ID", "NAME", "PREFIX", "SCOPES", "LAST USED");
            loop {
                let page = keys::list(&db, &Cursor::from_params(&params)?, all).await?;
                let now = crate::time::now_millis();
                for key in &page.items {
                    let status = match (key.revoked_at, key.is_active(now)) {
                        (Some(_), _) => "revoked",
                        (None, false) => "expired",
                        (None, true) => "active",
                    };
                    let last_used = key.last_used_at.map_or_else(|| "never".to_owned(), |t| t.to_string());
                    println!(
                        "{:<31} {:<20} {:<13} {:<12} {:<25} {status}",
                        key.id,
                        key.name,
                        key.prefix,
                        scope_list(&key.scopes),
                        last_used
                    );
                }
                match page.next_cursor {
                    Some(next) => params.cursor = Some(next),
                    None => break,
                }
            }
        }
        KeysCommand::Revoke { id } => {
            let key = keys::revoke(&db, &id, &Actor::Cli).await?;
            println!("revoked {} ({})", key.id, key.name);
        }
    }
    Ok(())
}

/// `verge publish`'s progress: a spinner while it compares, then a bar over the keys it
/// writes (drawn on stderr when that is a terminal).
struct PublishProgress(indicatif::ProgressBar);

impl publish::Progress for PublishProgress {
    fn planned(&self, keys: usize) {
        self.0.set_length(keys as u64);
        self.0.set_style(
            indicatif::ProgressStyle::with_template("publishing [{bar:40}] {pos}/{len} keys ({eta} left)")
                .expect("valid template")
                .progress_chars("=> "),
        );
    }

    fn written(&self, keys: usize) {
        self.0.inc(keys as u64);
    }
}

async fn publish_snapshot(config: Config, target: Target, out: PathBuf) -> anyhow::Result<()> {
    let db = Database::connect(&config).await?;
    db.migrate().await?;
    let progress = PublishProgress(indicatif::ProgressBar::new_spinner());
    progress.0.set_style(
        indicatif::ProgressStyle::with_template("{spinner} publishing: comparing with what {prefix} holds…")
            .expect("valid template"),
    );
    progress.0.set_prefix(out.display().to_string());
    progress.0.enable_steady_tick(std::time::Duration::from_millis(100));
    let sources = crate::server::edge_sources(&config);
    let (report, wrote) = match target {
        Target::Local | Target::Spin => {
            let store = LocalEdgeStore::open(&out.join("kv.db")).await?;
            let report = publish::publish_to(&db, &sources, &store, &progress).await?;
            store.close().await;
            if target == Target::Spin {
                std::fs::write(out.join("runtime-config.toml"), SPIN_RUNTIME_CONFIG)?;
            }
            let wrote = report.keys_written + report.keys_removed > 0;
            (report, wrote)
        }
        Target::Cloudflare | Target::Fastly => {
            let files = BulkFiles::open(target, &out)?;
            let report = publish::publish_to(&db, &sources, &files, &progress).await?;
            (report, files.finish()?)
        }
    };
    progress.0.finish_and_clear();
    if wrote {
        println!(
            "published snapshot {} to {}: {} dataset(s) changed, {} key(s) written, {} removed",
            report.snapshot,
            out.display(),
            report.written.len(),
            report.keys_written,
            report.keys_removed
        );
    } else {
        println!("snapshot {} in {} is up to date: nothing written", report.snapshot, out.display());
    }
    Ok(())
}

fn scope_list(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}
