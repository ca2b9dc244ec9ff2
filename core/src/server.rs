//! Assembling the service: state, the router with its middleware, and serving it with
//! graceful shutdown.
//!
//! `App::build` turns a `Config` into a ready `Router`; tests drive that router with
//! `oneshot` and never open a socket, and `serve` puts the same router on a listener.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::cache::{self, Cache};
use crate::config::Config;
use crate::db::Database;
use crate::error::{ApiError, PROBLEM_JSON, problem_for_status};
use crate::metrics::{self, Metrics};
use crate::publish::{self, EdgeStore, LocalEdgeStore, Publisher};
use crate::requests::{REQUEST_ID, RandomRequestId, request_span, timed_out};
pub use crate::state::AppState;
use crate::{
    audit, autocomplete, catalog, console, customers, edge, events, flags, health, inventory, jobs, keys, links,
    notifications, openapi, orders, ratelimit, webhooks,
};

/// A built service: its router, the state behind it, and its API description.
#[derive(Clone)]
pub struct App {
    pub router: Router,
    pub state: AppState,
    pub openapi: utoipa::openapi::OpenApi,
    /// `/metrics` alone, for its own listener when `metrics_listen` is set (it is then
    /// absent from `router`).
    pub metrics: Router,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] crate::db::DbError),
    #[error("cannot reach the cache: {0}")]
    Cache(#[from] crate::cache::CacheError),
    #[error("cannot open the edge store: {0}")]
    EdgeStore(#[from] crate::publish::StoreError),
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("state", &self.state).finish_non_exhaustive()
    }
}

/// Every capability's edge dataset source, in publishing order. Capabilities add theirs
/// here, where their routes are added too, so `publish` never imports the domains it serves.
/// Every job kind the core enqueues, with its handler.
pub fn job_registry() -> crate::jobs::Registry {
    webhooks::register(orders::saga::register(crate::jobs::Registry::default()))
}

pub fn edge_sources(config: &Config) -> Vec<Arc<dyn publish::DatasetSource>> {
    vec![
        Arc::new(edge::settings::SettingsSource),
        Arc::new(links::LinksSource),
        Arc::new(flags::FlagsSource),
        Arc::new(ratelimit::RatelimitSource),
        Arc::new(customers::signing::SessionKeysSource),
        Arc::new(customers::revocations::RevocationsSource),
        Arc::new(autocomplete::AutocompleteSource),
        Arc::new(catalog::storefront::CatalogSource { low_stock: config.low_stock_threshold }),
    ]
}

impl App {
    /// Connects to the database and cache the configuration names, applies migrations,
    /// and builds the router.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let db = Database::connect(&config).await?;
        db.migrate().await?;
        let cache = cache::connect(&config).await?;
        let mut stores: Vec<Arc<dyn EdgeStore>> = Vec::new();
        if let Some(path) = &config.edge_store {
            stores.push(Arc::new(LocalEdgeStore::open(path).await?));
        }
        if let Some(url) = &config.edge_redis_url {
            let url = secrecy::ExposeSecret::expose_secret(url);
            stores.push(Arc::new(publish::RedisEdgeStore::connect(url, &config.edge_redis_prefix).await?));
        }
        let publisher = Publisher::new(db.clone(), edge_sources(&config), stores);
        Ok(App::from_parts(config, db, cache, publisher))
    }

    pub fn from_parts(config: Config, db: Database, cache: Cache, publisher: Arc<Publisher>) -> App {
        let tally = crate::tally::Tally::new(cache.clone(), crate::ratelimit::STATS_KEPT_FOR);
        let metrics = Metrics::new();
        let job_signal = Arc::new(tokio::sync::Notify::new());
        let payments = crate::orders::payment_provider(&config, &db);
        let (orders_changed, _) = tokio::sync::broadcast::channel(1024);
        let state = AppState::new(crate::state::Shared {
            db,
            cache,
            config: Arc::new(config),
            publisher,
            tally,
            metrics,
            job_signal,
            payments,
            orders_changed,
        });
        let (router, openapi, metrics) = router(state.clone());
        App { router, state, openapi, metrics }
    }
}

/// Every documented route. `/v1` routes are added only through `OpenApiRouter::routes`,
/// so a route cannot exist without its OpenAPI description.
fn documented_routes() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .merge(keys::routes::router())
        .routes(routes!(audit::routes::list_entries))
        .routes(routes!(events::ingest))
        .routes(routes!(edge::settings::get_settings, edge::settings::put_settings))
        .routes(routes!(links::api::create_link, links::api::list_links))
        .routes(routes!(flags::api::create_environment, flags::api::list_environments))
        .routes(routes!(flags::api::export_flagd, flags::api::import_flagd))
        .routes(routes!(flags::api::create_client_key, flags::api::list_client_keys))
        .routes(routes!(flags::api::revoke_client_key))
        .routes(routes!(flags::edit::get_flag, flags::edit::put_flag, flags::edit::delete_flag))
        .routes(routes!(flags::edit::kill_flag))
        .routes(routes!(flags::edit::put_segment, flags::edit::delete_segment))
        .routes(routes!(flags::edit::environment_audit))
        .routes(routes!(flags::api::update_environment))
        .routes(routes!(flags::requests::propose, flags::requests::list))
        .routes(routes!(flags::requests::get))
        .routes(routes!(flags::requests::approve))
        .routes(routes!(flags::requests::cancel))
        .routes(routes!(flags::stale::report))
        .routes(routes!(flags::catalog::list_flags))
        .routes(routes!(flags::catalog::get_flag, flags::catalog::patch_flag))
        .routes(routes!(flags::catalog::flag_audit))
        .routes(routes!(links::bulk::create_links))
        .routes(routes!(links::export::export_links))
        .routes(routes!(links::export::export_clicks))
        .routes(routes!(links::analytics::all_links))
        .routes(routes!(links::analytics::one_link))
        .routes(routes!(links::qr::link_qr))
        .routes(routes!(links::domains::create_domain, links::domains::list_domains))
        .routes(routes!(links::domains::update_domain, links::domains::delete_domain))
        .routes(routes!(links::api::get_link, links::api::update_link, links::api::delete_link))
        .routes(routes!(ratelimit::policies::create_policy, ratelimit::policies::list_policies))
        .routes(routes!(
            ratelimit::policies::get_policy,
            ratelimit::policies::replace_policy,
            ratelimit::policies::delete_policy
        ))
        .routes(routes!(ratelimit::envoy::import, ratelimit::envoy::export))
        .routes(routes!(ratelimit::check::check))
        .routes(routes!(ratelimit::stats::policy_stats))
        .routes(routes!(notifications::list))
        .routes(routes!(customers::api::create_customer, customers::api::list_customers))
        .routes(routes!(customers::settings::get_settings, customers::settings::put_settings))
        .routes(routes!(customers::api::get_customer, customers::api::update_customer, customers::api::delete_customer))
        .routes(routes!(customers::api::erase_customer))
        .routes(routes!(customers::api::customer_history))
        .routes(routes!(customers::api::export_customer))
        .routes(routes!(customers::api::customer_sessions))
        .routes(routes!(customers::api::end_customer_sessions))
        .routes(routes!(customers::signing::rotate_route))
        .routes(routes!(autocomplete::indexes::create_index, autocomplete::indexes::list_indexes))
        .routes(routes!(
            autocomplete::indexes::get_index,
            autocomplete::indexes::update_index,
            autocomplete::indexes::delete_index
        ))
        .routes(routes!(autocomplete::indexes::publish_index))
        .routes(routes!(autocomplete::terms::list_terms))
        .routes(routes!(autocomplete::import::import_terms))
        .routes(routes!(autocomplete::import::export_terms))
        .routes(routes!(autocomplete::terms::put_term, autocomplete::terms::get_term, autocomplete::terms::delete_term))
        .routes(routes!(autocomplete::rules::create_rule, autocomplete::rules::list_rules))
        .routes(routes!(autocomplete::rules::delete_rule))
        .routes(routes!(autocomplete::trending::trending))
        .routes(routes!(autocomplete::trending::no_results))
        .routes(routes!(catalog::products::create_product, catalog::products::list_products))
        .routes(routes!(catalog::bulk::import_products))
        .routes(routes!(catalog::bulk::export_products))
        .routes(routes!(
            catalog::products::get_product,
            catalog::products::replace_product,
            catalog::products::delete_product
        ))
        .routes(routes!(catalog::taxonomy::create_category, catalog::taxonomy::list_categories))
        .routes(routes!(
            catalog::taxonomy::get_category,
            catalog::taxonomy::update_category,
            catalog::taxonomy::delete_category
        ))
        .routes(routes!(catalog::taxonomy::create_collection, catalog::taxonomy::list_collections))
        .routes(routes!(
            catalog::taxonomy::get_collection,
            catalog::taxonomy::update_collection,
            catalog::taxonomy::delete_collection
        ))
        .routes(routes!(catalog::price_lists::create_price_list, catalog::price_lists::list_price_lists))
        .routes(routes!(catalog::price_lists::get_price_list, catalog::price_lists::delete_price_list))
        .routes(routes!(inventory::levels::create_location, inventory::levels::list_locations))
        .routes(routes!(inventory::levels::get_level))
        .routes(routes!(inventory::levels::adjust, inventory::levels::list_adjustments))
        .routes(routes!(inventory::reservations::reserve))
        .routes(routes!(inventory::reservations::get_reservation))
        .routes(routes!(inventory::reservations::commit_reservation))
        .routes(routes!(inventory::reservations::release_reservation))
        .routes(routes!(jobs::api::list_jobs))
        .routes(routes!(jobs::api::queue_stats))
        .routes(routes!(jobs::api::get_job))
        .routes(routes!(jobs::api::retry_job))
        .routes(routes!(jobs::api::discard_job))
        .routes(routes!(orders::checkout::create_order, orders::api::list_orders))
        .routes(routes!(orders::api::get_order))
        .routes(routes!(orders::api::get_timeline))
        .routes(routes!(orders::api::cancel_order))
        .routes(routes!(orders::api::fulfil_order))
        .routes(routes!(orders::api::refund_order))
        .routes(routes!(orders::stream::order_events))
        .routes(routes!(orders::checkout::create_own_order, orders::api::list_own_orders))
        .routes(routes!(orders::api::get_own_order))
        .routes(routes!(orders::api::cancel_own_order))
        .routes(routes!(orders::stream::own_order_events))
        .routes(routes!(webhooks::api::create_endpoint, webhooks::api::list_endpoints))
        .routes(routes!(webhooks::api::get_endpoint, webhooks::api::delete_endpoint))
        .routes(routes!(webhooks::api::get_secret))
        .routes(routes!(webhooks::api::list_messages))
        .routes(routes!(webhooks::api::redeliver));
    let customer_routes = OpenApiRouter::new()
        .routes(routes!(customers::signing::well_known))
        .routes(routes!(customers::auth::sign_up))
        .routes(routes!(customers::auth::sign_in))
        .routes(routes!(customers::auth::refresh))
        .routes(routes!(customers::auth::me))
        .routes(routes!(customers::auth::sign_out))
        .routes(routes!(customers::auth::sign_out_everywhere))
        .routes(routes!(customers::auth::my_sessions))
        .routes(routes!(customers::auth::end_my_session))
        .routes(routes!(customers::recovery::request_verification))
        .routes(routes!(customers::recovery::verify_email))
        .routes(routes!(customers::recovery::request_password_reset))
        .routes(routes!(customers::recovery::reset_password));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .merge(v1)
        .merge(customer_routes)
}

fn router(state: AppState) -> (Router, utoipa::openapi::OpenApi, Router) {
    let (api, mut doc) = documented_routes().split_for_parts();
    openapi::complete(&mut doc);
    let doc_json = Arc::new(doc.to_pretty_json().expect("the OpenAPI document serializes"));
    let api = api.route("/openapi.json", get(move || openapi::serve(Arc::clone(&doc_json))));
    // gRPC has no place in an OpenAPI document; docs/ratelimit.md describes it.
    let api = api.route(ratelimit::rls::PATH, axum::routing::post(ratelimit::rls::should_rate_limit));
    // The console calls the documented routes in process, as the signed-in operator.
    let console = console::router(state.clone(), api.clone().with_state(state.clone()));
    let api = api.merge(console);
    let (router, metrics) = with_middleware(api, state.clone());
    (ratelimit::lane::in_front_of(router, state), doc, metrics)
}

/// Wraps `routes` in the middleware every request goes through and adds `/metrics`
/// (unless it has a listener of its own); also returns `/metrics` alone.
fn with_middleware(routes: Router<AppState>, state: AppState) -> (Router, Router) {
    let metrics = Arc::clone(&state.metrics);
    let config = Arc::clone(&state.config);
    let exposition = metrics::Exposition { metrics: Arc::clone(&metrics), token: config.metrics_token.clone() };
    let metrics_alone = Router::new().route("/metrics", get(metrics::serve)).with_state(exposition);
    let routes = routes.with_state(state.clone());
    let routes = if config.metrics_listen.is_some() { routes } else { routes.merge(metrics_alone.clone()) };
    let router = routes
        // Layers run top to bottom on the way in: ids and tracing first, so every later
        // step (including a timeout or a panic) is logged under the request's id.
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(middleware::from_fn_with_state(metrics, metrics::track))
                .layer(middleware::from_fn(problem_for_bare_errors))
                .layer(CatchPanicLayer::new())
                .layer(middleware::from_fn_with_state(config.request_timeout(), request_timeout))
                .layer(DefaultBodyLimit::max(config.body_limit_bytes))
                .layer(middleware::from_fn_with_state(
                    (config.body_limit_bytes, config.import_limit_bytes),
                    reject_declared_oversize,
                ))
                // Every path under /v1, routed or not, needs a key: an unknown /v1 path
                // says 401 to strangers, not 404.
                .layer(middleware::from_fn_with_state(state, keys::auth::require_key_under_v1)),
        );
    (router, metrics_alone)
}

/// Turns error responses that carry no body of their own (router 404/405, body limit
/// 413, caught panics) into problem documents, so every error a client sees has one shape.
async fn problem_for_bare_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_problem =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    // The console's own error pages are HTML with their status; they stay as they are.
    let is_page = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if (status.is_client_error() || status.is_server_error()) && !is_problem && !is_page {
        let mut problem = problem_for_status(status).into_response();
        // Keep headers such as `Allow` on a 405.
        for (name, value) in response.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                problem.headers_mut().insert(name.clone(), value.clone());
            }
        }
        return problem;
    }
    response
}

/// Bulk imports stream their body (bounded by `import_limit_bytes` as it is read) and may
/// take longer than an ordinary request.
fn is_bulk_import(path: &str) -> bool {
    (path.starts_with("/v1/autocomplete/") && path.ends_with("/terms/import")) || path == "/v1/catalog/products/import"
}

/// Answers 413 at once when `Content-Length` already exceeds the limit; bodies without a
/// length are cut off by `DefaultBodyLimit` as they are read.
async fn reject_declared_oversize(
    State((body_limit, import_limit)): State<(usize, usize)>,
    req: Request,
    next: Next,
) -> Response {
    let limit = if is_bulk_import(req.uri().path()) { import_limit } else { body_limit };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    if is_bulk_import(req.uri().path()) {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => timed_out(limit).into_response(),
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish for up to `grace`, and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, service).with_graceful_shutdown(async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => return result,
        () = shutdown => {}
    }
    tracing::info!(grace_ms = grace.as_millis() as u64, "shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("in-flight requests did not finish within the grace period; stopping anyway");
            Ok(())
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn app_with(routes: Router<AppState>, timeout_ms: u64) -> (Router, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = Config { data_dir: dir.path().to_owned(), request_timeout_ms: timeout_ms, ..Config::default() };
        let db = Database::connect(&config).await.unwrap();
        let publisher = Publisher::new(db.clone(), Vec::new(), Vec::new());
        let cache: Cache = Arc::new(cache::MemoryStore::new());
        let tally = crate::tally::Tally::new(cache.clone(), Duration::from_secs(60));
        let payments = crate::orders::payment_provider(&config, &db);
        let state = AppState::new(crate::state::Shared {
            db,
            cache,
            config: Arc::new(config),
            publisher,
            tally,
            metrics: Metrics::new(),
            job_signal: Default::default(),
            payments,
            orders_changed: tokio::sync::broadcast::channel(1).0,
        });
        (with_middleware(routes, state).0, dir)
    }

    async fn problem(router: Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let response = router.oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn slow_requests_are_abandoned_with_a_timeout_problem() {
        let slow = Router::new().route("/slow", get(|| tokio::time::sleep(Duration::from_secs(5))));
        let (router, _dir) = app_with(slow, 50).await;
        let started = std::time::Instant::now();
        let (status, body) = problem(router, "/slow").await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["code"], "request_timeout");
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_problem_that_reveals_nothing() {
        async fn boom() -> &'static str {
            panic!("secret internal state")
        }
        let (router, _dir) = app_with(Router::new().route("/boom", get(boom)), 1_000).await;
        let (status, body) = problem(router, "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["code"], "internal");
        assert!(!body.to_string().contains("secret"));
    }

    #[tokio::test]
    async fn shutdown_lets_in_flight_requests_finish_then_returns() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let slow = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
        let (router, _dir) = app_with(slow, 5_000).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, async { stopped.await.unwrap() }, Duration::from_secs(5)));

        let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
        client.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(()).unwrap();

        let mut response = String::new();
        client.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("done"), "{response}");
        tokio::time::timeout(Duration::from_secs(2), server).await.expect("server returned").unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(address).await.is_err(), "still accepting after shutdown");
    }
}
