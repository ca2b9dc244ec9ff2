//! The wasmtime side: one engine, the component compiled once and pre-instantiated, and
//! instances drawn from the pooling allocator and reused for a bounded number of requests.
//!
//! Dispatch is wasmtime-wasi-http's `ProxyHandler`, the machinery `wasmtime serve` runs
//! on: a WASIp3 instance takes up to [`MAX_REUSE`] requests (at most
//! [`MAX_CONCURRENT_PER_INSTANCE`] at once) before it is dropped, and an instance that traps
//! or overruns its budget is dropped at once, so the next request gets a fresh one. Reuse is
//! what a Workers isolate does too; the edge keeps no request state in the instance, and
//! its tests run under both. Instantiation stays cheap for when it happens (resident pool
//! slots). Epoch ticks make a busy guest yield, so an overrun is noticed and the instance
//! killed; guest work after the response (event batches) gets its own, longer budget.
//!
//! At shutdown idle instances go at once, but one still sending its events after a
//! response is waited for (within that budget and the host's grace), so stopping a PoP
//! does not throw away the clicks and evaluations it just served.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::{Semaphore, watch};
use wasmtime::component::{Component, GuestTaskId, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreContextMut};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyHandler, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use verge_kv_store::counters::Counters;

use crate::counters::CountersView;
use crate::kv::{EdgeStore, KvView};
use crate::outbound::OutboundPolicy;
use crate::variables::{Variables, VariablesView};

/// How often the epoch advances; a busy guest yields to the host at each tick.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Time a request has to produce its response before its instance is killed.
const REQUEST_BUDGET: Duration = Duration::from_secs(1);
/// How long background work after the response (sending events) may take.
const AFTER_RESPONSE_BUDGET: Duration = Duration::from_secs(10);
/// How long an idle instance is kept for the next request.
const IDLE_INSTANCE: Duration = Duration::from_secs(5);
/// Requests one instance serves before it is replaced (wasmtime serve's WASIp3 default).
pub(crate) const MAX_REUSE: usize = 128;
/// Requests one instance serves at the same time (wasmtime serve's WASIp3 default).
const MAX_CONCURRENT_PER_INSTANCE: usize = 16;
/// Requests in flight across the host; more wait for a permit.
const MAX_REQUESTS_IN_FLIGHT: usize = 1024;
/// Largest request body handed to the guest.
const MAX_REQUEST_BODY: usize = 1024 * 1024;
/// Bytes of each pooled slot reset in place rather than returned to the kernel.
const KEEP_RESIDENT: usize = 1 << 20;
/// Instances the pool holds at once.
const POOL_INSTANCES: u32 = 256;

/// Responses go out whole, with a `Content-Length`, as the CDNs send small bodies.
pub(crate) type Response = http::Response<Full<Bytes>>;

/// Everything shared by all requests.
pub(crate) struct Runtime {
    handler: ProxyHandler<Instances>,
    in_flight: Semaphore,
    /// The header a trusted proxy in front of this PoP puts the client's country in.
    country_header: Option<http::HeaderName>,
    /// Closed when the last instance is gone: each holds the handler, whose state holds
    /// the sending side.
    instances_gone: watch::Receiver<bool>,
}

/// Where the guest finds the client's country (ISO 3166 alpha-2), as the edge's Spin entry
/// reads it. Set only by this host: a value the client sent is always replaced.
pub(crate) const COUNTRY_HEADER: &str = "verge-client-country";

/// Makes instances; the `ProxyHandler` decides when.
struct Instances {
    engine: Engine,
    pre: ProxyPre<InstanceState>,
    store: Arc<EdgeStore>,
    counters: Arc<Counters>,
    variables: Arc<Variables>,
    outbound: OutboundPolicy,
    max_reuse: usize,
    /// Set once the host stops taking requests.
    shutting_down: watch::Sender<bool>,
}

/// Host state of one instance (shared by the requests it serves).
pub(crate) struct InstanceState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundPolicy,
    store: Arc<EdgeStore>,
    counters: Arc<Counters>,
    variables: Arc<Variables>,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound }
    }
}

fn kv_view(state: &mut InstanceState) -> KvView<'_> {
    KvView { table: &mut state.table, store: &state.store }
}

fn counters_view(state: &mut InstanceState) -> CountersView<'_> {
    CountersView { table: &mut state.table, counters: &state.counters }
}

fn variables_view(state: &mut InstanceState) -> VariablesView<'_> {
    VariablesView(&state.variables)
}

impl Runtime {
    /// Compiles the component and links it against WASI, `wasi:http`, and our Spin imports.
    /// `max_reuse` of 1 gives every request a fresh instance.
    pub(crate) fn new(
        component: &Path,
        store: Arc<EdgeStore>,
        variables: Variables,
        outbound: OutboundPolicy,
        max_reuse: usize,
        country_header: Option<http::HeaderName>,
    ) -> wasmtime::Result<Arc<Runtime>> {
        let mut config = Config::new();
        config.wasm_component_model_async(true);
        config.epoch_interruption(true);
        // `VERGE_EDGE_PROFILER=perfmap` names JIT-compiled guest code for `perf` (the
        // redirect benchmark uses it to measure time spent inside the guest).
        if std::env::var("VERGE_EDGE_PROFILER").as_deref() == Ok("perfmap") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 4)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 4)
            .total_stacks(POOL_INSTANCES)
            .max_memory_size(128 << 20)
            // Reset a slot's first pages with memset and keep them mapped: returning them
            // with madvise on every instantiation costs TLB shootdowns and page faults
            // that dwarf the handler itself. Batch what still needs madvise.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .async_stack_keep_resident(KEEP_RESIDENT)
            .decommit_batch_size(64);
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // A 128 MiB linear memory per instance needs no 4 GiB reservation each.
        config.memory_reservation(128 << 20);
        let engine = Engine::new(&config)?;

        let bytes = std::fs::read(component)
            .map_err(|err| wasmtime::format_err!("reading component {}: {err}", component.display()))?;
        let component = Component::new(&engine, &bytes)?;

        let mut linker = Linker::<InstanceState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        crate::kv::add_to_linker(&mut linker, kv_view)?;
        crate::counters::add_to_linker(&mut linker, counters_view)?;
        crate::variables::add_to_linker(&mut linker, variables_view)?;
        let pre = ProxyPre::P3(ServicePre::new(linker.instantiate_pre(&component)?)?);

        let ticker = engine.weak();
        std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;

        let (shutting_down, instances_gone) = watch::channel(false);
        let instances = Instances {
            engine,
            pre,
            store,
            counters: Arc::new(Counters::default()),
            variables: Arc::new(variables),
            outbound,
            max_reuse: max_reuse.max(1),
            shutting_down,
        };
        Ok(Arc::new(Runtime {
            handler: ProxyHandler::new(instances),
            in_flight: Semaphore::new(MAX_REQUESTS_IN_FLIGHT),
            country_header,
            instances_gone,
        }))
    }

    /// Runs one request through the component and returns the guest's response, or a
    /// problem response from the host when the component could not answer.
    pub(crate) async fn handle<B>(&self, request: http::Request<B>, client: SocketAddr) -> Response
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let _permit = self.in_flight.acquire().await.expect("the in-flight semaphore is never closed");
        let answer = async {
            let (parts, body) =
                self.handler.handle((), for_guest(request, client, self.country_header.as_ref())).await?.into_parts();
            let body = body.collect().await.map_err(|err| wasmtime::format_err!("response body: {err}"))?;
            Ok::<_, wasmtime::Error>(http::Response::from_parts(parts, Full::new(body.to_bytes())))
        };
        match answer.await {
            Ok(response) => response,
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "edge component failed");
                problem(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "edge_component_failed",
                    "the edge component failed to answer",
                )
            }
        }
    }

    /// Stops the runtime once no more requests can arrive: idle instances are dropped at
    /// once, and instances still working after a response (sending events) are waited for,
    /// up to `grace`. Instances torn down from now on are not failures.
    pub(crate) async fn shut_down(self: Arc<Self>, grace: Duration) {
        self.handler.state().shutting_down.send_replace(true);
        let mut instances_gone = self.instances_gone.clone();
        // Our handle on the handler (and so on the sending side) goes; the instances'
        // handles go as each finishes.
        drop(self);
        let all_gone = async { while instances_gone.changed().await.is_ok() {} };
        if tokio::time::timeout(grace, all_gone).await.is_err() {
            tracing::warn!("edge instances still busy after the grace period (events may be lost); stopping anyway");
        }
    }
}

impl HandlerState for Instances {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiry;
    type WorkerState = Reuse;

    async fn instantiate(&self) -> wasmtime::Result<Instance<InstanceState, Expiry, Reuse>> {
        let state = InstanceState {
            table: ResourceTable::new(),
            wasi: WasiCtxBuilder::new().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            outbound: self.outbound.clone(),
            store: self.store.clone(),
            counters: self.counters.clone(),
            variables: self.variables.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        // Yield to the host at every tick, so the expiry below is checked even while
        // the guest computes.
        store.epoch_deadline_async_yield_and_update(1);
        store.set_epoch_deadline(1);
        let proxy = self.pre.instantiate_async(&mut store).await?;
        Ok(Instance {
            store,
            proxy,
            view: <InstanceState as WasiHttpView>::http,
            expiration: Expiry {
                sleep: Box::pin(tokio::time::sleep(Duration::MAX)),
                shutdown: Box::pin(stopping(self.shutting_down.subscribe())),
                stopping: false,
            },
            state: Reuse { max_reuse: self.max_reuse, shutting_down: self.shutting_down.subscribe() },
        })
    }
}

/// Resolves once the host is shutting down.
async fn stopping(mut shutting_down: watch::Receiver<bool>) {
    // An error means the runtime is gone, which is a shutdown too.
    let _ = shutting_down.wait_for(|stopping| *stopping).await;
}

/// When an instance is dropped: when a request overruns its budget, when background work
/// after the response overruns its own, after sitting idle, or, once the host is shutting
/// down, as soon as it is idle.
pub(crate) struct Expiry {
    sleep: Pin<Box<tokio::time::Sleep>>,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
    stopping: bool,
}

impl WorkerExpiration for Expiry {
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, status: WorkerStatus, since: Instant) -> Poll<()> {
        let this = self.get_mut();
        // Only an idle instance cares; a busy one is polled again when it becomes idle.
        if status == WorkerStatus::Idle {
            this.stopping = this.stopping || this.shutdown.as_mut().poll(cx).is_ready();
            if this.stopping {
                return Poll::Ready(());
            }
        }
        let budget = match status {
            WorkerStatus::Requests => REQUEST_BUDGET,
            WorkerStatus::PostReturn => AFTER_RESPONSE_BUDGET,
            WorkerStatus::Idle => IDLE_INSTANCE,
        };
        let deadline = tokio::time::Instant::from_std(since + budget);
        let sleep = &mut this.sleep;
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx)
    }
}

/// How many requests an instance takes, in all and at once.
pub(crate) struct Reuse {
    max_reuse: usize,
    shutting_down: watch::Receiver<bool>,
}

impl WorkerState for Reuse {
    type StoreData = InstanceState;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.max_reuse {
            ShouldAccept::Never
        } else if concurrent >= MAX_CONCURRENT_PER_INSTANCE {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, InstanceState>,
        (): (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        Box::pin(tokio::time::sleep(REQUEST_BUDGET))
    }

    fn drop(&self, store: Store<InstanceState>, result: wasmtime::Result<()>) {
        // Past the shutdown grace, workers still running are torn down and reported as
        // failed; that is the shutdown, not a fault of theirs.
        if let Err(err) = result
            && !*self.shutting_down.borrow()
        {
            tracing::warn!(error = %format!("{err:#}"), "edge instance dropped after a failure");
        }
        drop(store);
    }
}

/// The request as the guest sees it: an absolute URI, the client address in Spin's
/// `spin-client-addr` header (any such header from outside is replaced), the country from
/// the trusted `country_header` if one is configured and holds two letters, a bounded body.
fn for_guest<B>(
    request: http::Request<B>,
    client: SocketAddr,
    country_header: Option<&http::HeaderName>,
) -> http::Request<WasiBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut parts, body) = request.into_parts();
    let host = parts.headers.get(http::header::HOST).and_then(|value| value.to_str().ok()).unwrap_or("localhost");
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Ok(uri) = format!("http://{host}{path}").parse() {
        parts.uri = uri;
    }
    parts.headers.insert(
        "spin-client-addr",
        http::HeaderValue::from_str(&client.to_string()).expect("socket addresses are valid header values"),
    );
    let country = country_header
        .and_then(|name| parts.headers.get(name))
        .and_then(|value| value.to_str().ok())
        .filter(|value| value.len() == 2 && value.bytes().all(|b| b.is_ascii_alphabetic()))
        .map(|value| http::HeaderValue::from_str(&value.to_ascii_uppercase()).expect("two letters"));
    parts.headers.remove(COUNTRY_HEADER);
    if let Some(country) = country {
        parts.headers.insert(COUNTRY_HEADER, country);
    }
    let body = Limited::new(body, MAX_REQUEST_BODY)
        .map_err(|_| wasmtime_wasi_http::Error::HttpRequestBodySize(Some(MAX_REQUEST_BODY as u64)))
        .boxed_unsync();
    http::Request::from_parts(parts, body)
}

/// A problem+json response from the host itself (the component could not answer).
pub(crate) fn problem(status: http::StatusCode, code: &str, detail: &str) -> Response {
    let body = format!(
        r#"{{"type":"about:blank","status":{},"code":"{code}","title":"{}","detail":"{detail}"}}"#,
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
    );
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/problem+json"));
    response
}
