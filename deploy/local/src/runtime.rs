//! The wasmtime side: one engine, the component compiled once and pre-instantiated, and a
//! fresh, cheap instance per request.
//!
//! Every request gets its own `Store` (as on a CDN, no state survives a request), drawn
//! from the pooling allocator so instantiation is a few slot resets rather than mmap
//! calls. An epoch ticker bounds each request's CPU time, so a runaway guest cannot hold a
//! worker. After the response is out, the store keeps running until the guest's
//! background tasks (event batches sent after the response) finish, within a budget.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::oneshot;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::kv::{EdgeStore, KvView};
use crate::outbound::OutboundPolicy;
use crate::variables::{Variables, VariablesView};

/// How often the epoch advances; a request's CPU budget is counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// CPU (well, wall-in-guest) budget for producing a response: 100 ticks = 1 s.
const REQUEST_BUDGET_TICKS: u64 = 100;
/// How long background work after the response (sending events) may take.
const AFTER_RESPONSE_BUDGET: Duration = Duration::from_secs(10);
/// Largest request body handed to the guest.
const MAX_REQUEST_BODY: usize = 1024 * 1024;
/// Bytes of each pooled slot reset in place rather than returned to the kernel.
const KEEP_RESIDENT: usize = 1 << 20;
/// Concurrent instances the pool holds; more concurrent requests wait for a slot.
const POOL_INSTANCES: u32 = 256;

pub(crate) type Response = http::Response<Full<Bytes>>;

/// Everything shared by all requests.
pub(crate) struct Runtime {
    engine: Engine,
    pre: ServicePre<RequestState>,
    store: Arc<EdgeStore>,
    variables: Arc<Variables>,
    outbound: OutboundPolicy,
}

/// Per-request host state.
pub(crate) struct RequestState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundPolicy,
    store: Arc<EdgeStore>,
    variables: Arc<Variables>,
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound }
    }
}

fn kv_view(state: &mut RequestState) -> KvView<'_> {
    KvView { table: &mut state.table, store: &state.store }
}

fn variables_view(state: &mut RequestState) -> VariablesView<'_> {
    VariablesView(&state.variables)
}

impl Runtime {
    /// Compiles the component and links it against WASI, `wasi:http`, and our Spin imports.
    pub(crate) fn new(
        component: &Path,
        store: Arc<EdgeStore>,
        variables: Variables,
        outbound: OutboundPolicy,
    ) -> wasmtime::Result<Arc<Runtime>> {
        let mut config = Config::new();
        config.wasm_component_model_async(true);
        config.epoch_interruption(true);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 4)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 4)
            .total_stacks(POOL_INSTANCES)
            .max_memory_size(128 << 20)
            // Reset a slot's first pages with memset and keep them mapped: returning them
            // with madvise on every request costs TLB shootdowns and page faults that
            // dwarf the handler itself. Batch what still needs madvise.
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

        let mut linker = Linker::<RequestState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        crate::kv::add_to_linker(&mut linker, kv_view)?;
        crate::variables::add_to_linker(&mut linker, variables_view)?;
        let pre = ServicePre::new(linker.instantiate_pre(&component)?)?;

        let ticker = engine.weak();
        std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;

        Ok(Arc::new(Runtime { engine, pre, store, variables: Arc::new(variables), outbound }))
    }

    fn new_store(&self) -> Store<RequestState> {
        let state = RequestState {
            table: ResourceTable::new(),
            wasi: WasiCtxBuilder::new().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            outbound: self.outbound.clone(),
            store: self.store.clone(),
            variables: self.variables.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.set_epoch_deadline(REQUEST_BUDGET_TICKS);
        store
    }

    /// Runs one request through a fresh instance and returns the guest's response.
    pub(crate) async fn handle<B>(self: &Arc<Self>, request: http::Request<B>, client: SocketAddr) -> Response
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match self.run(request, client).await {
            Ok(response) => response,
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "edge component failed");
                crate::server::problem(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "edge_component_failed",
                    "the edge component failed to answer",
                )
            }
        }
    }

    async fn run<B>(self: &Arc<Self>, request: http::Request<B>, client: SocketAddr) -> wasmtime::Result<Response>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut store = self.new_store();
        let service = self.pre.instantiate_async(&mut store).await?;
        let request = for_guest(request, client);
        let (request, request_io) = wasmtime_wasi_http::p3::Request::from_http(&mut store.data_mut().outbound, request);
        let (answer_tx, answer_rx) = oneshot::channel::<wasmtime::Result<Response>>();

        // The store is driven right here until the answer is ready; if the guest still has
        // work then (events sent after the response), the rest moves to a task of its own,
        // so the client never waits for it and requests without such work pay no spawn.
        let mut run = Box::pin(async move {
            let run = store.run_concurrent(async move |accessor| {
                let answer = async {
                    let response = service
                        .handle(accessor, request)
                        .await?
                        .map_err(|code| wasmtime::format_err!("guest answered with error code {code:?}"))?;
                    let response = accessor.with(|access| response.into_http(access, request_io))?;
                    let (parts, body) = response.into_parts();
                    let body = body.collect().await.map_err(|err| wasmtime::format_err!("response body: {err:?}"))?;
                    wasmtime::Result::Ok(http::Response::from_parts(parts, Full::new(body.to_bytes())))
                };
                let answered = answer.await;
                let failed = answered.is_err();
                let _ = answer_tx.send(answered);
                if !failed {
                    std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                }
            });
            if tokio::time::timeout(AFTER_RESPONSE_BUDGET, run).await.is_err() {
                tracing::warn!("edge component work after the response exceeded its budget; dropped");
            }
        });
        let mut answer_rx = answer_rx;
        tokio::select! {
            biased;
            answer = &mut answer_rx => {
                tokio::spawn(run);
                return answer.unwrap_or_else(|_| Err(wasmtime::format_err!("the component trapped before answering")));
            }
            () = &mut run => {}
        }
        answer_rx.await.unwrap_or_else(|_| Err(wasmtime::format_err!("the component trapped before answering")))
    }
}

/// The request as the guest sees it: an absolute URI, the client address in Spin's
/// `spin-client-addr` header (any such header from outside is replaced), a bounded body.
fn for_guest<B>(
    request: http::Request<B>,
    client: SocketAddr,
) -> http::Request<impl http_body::Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static>
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
    let body = Limited::new(body, MAX_REQUEST_BODY)
        .map_err(|_| wasmtime_wasi_http::Error::HttpRequestBodySize(Some(MAX_REQUEST_BODY as u64)));
    http::Request::from_parts(parts, body)
}
