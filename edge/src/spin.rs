//! The Spin entry: the edge application as a `wasm32-wasip2` component for Spin (and for
//! Verge's local wasmtime host, which runs the very same component).
//!
//! Only the [`Host`] glue lives here. KV is Spin's `default` key-value store; the client
//! address comes from the `spin-client-addr` header the runtime sets, the country only
//! from the header the `country_header` variable names (see `crate::client`); events go to the
//! core's ingest endpoint named by the `core_url` and `ingest_key` variables, in a task
//! that keeps running after the response is returned (WASIp3 lets an export continue after
//! it has produced its value), merged across the requests of an instance.

use std::cell::OnceCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::Full;
use spin_sdk::http::Request;
use spin_sdk::http_service;
use spin_sdk::key_value::Store;

use crate::host::{Client, Host, HostError};

/// Where events go, read from the variables once per instance (they are fixed for its
/// life); `None` when this edge does not report, so requests skip the send entirely.
static INGEST: OnceLock<Option<Ingest>> = OnceLock::new();

/// The header a trusted proxy puts the client's country in (variable `country_header`),
/// read once per instance; `None` when no header is trusted.
static COUNTRY_HEADER: OnceLock<Option<String>> = OnceLock::new();

async fn country_header() -> Option<&'static str> {
    if COUNTRY_HEADER.get().is_none() {
        let name = spin_sdk::variables::get("country_header").await.ok().filter(|name| !name.is_empty());
        let _ = COUNTRY_HEADER.set(name);
    }
    COUNTRY_HEADER.get().and_then(Option::as_deref)
}

#[derive(Clone)]
struct Ingest {
    url: String,
    key: String,
}

thread_local! {
    /// The `default` store, opened by the first request an instance serves and kept for
    /// the instance's life: instances serve many requests (and several at once), and an
    /// open per request is a host round trip on every one of them.
    static STORE: OnceCell<Rc<Store>> = const { OnceCell::new() };
}

thread_local! {
    /// The counters store (`wasi:keyvalue`, label `verge-counters`), opened once per instance.
    static COUNTERS: OnceCell<Rc<counters::Bucket>> = const { OnceCell::new() };
}

use spin_sdk::experimental::wasi::keyvalue::{atomics, store as counters};

/// The label of the store rate-limit counters live in; in Spin, a store of its own
/// (`key_value_stores` in spin.toml, backed by Redis in the runtime config for counts that
/// hold across a fleet), never the `default` store edge KV is published to.
const COUNTERS_STORE: &str = "verge-counters";

fn counters_bucket() -> Result<Rc<counters::Bucket>, HostError> {
    if let Some(bucket) = COUNTERS.with(|cell| cell.get().cloned()) {
        return Ok(bucket);
    }
    let opened = counters::open(COUNTERS_STORE).map_err(|err| HostError(format!("open counters store: {err:?}")))?;
    Ok(COUNTERS.with(|cell| cell.get_or_init(|| Rc::new(opened)).clone()))
}

thread_local! {
    /// Event batches of this instance's requests waiting for its post in flight: one
    /// outbound call per round trip to the core, not per request (`crate::events`).
    static WAITING: std::cell::RefCell<crate::events::Coalescer> = std::cell::RefCell::default();
}

struct SpinHost {
    client: Client,
}

async fn default_store() -> Result<Rc<Store>, HostError> {
    if let Some(store) = STORE.with(|cell| cell.get().cloned()) {
        return Ok(store);
    }
    let opened = Store::open_default().await.map_err(|err| HostError(format!("open KV store: {err:?}")))?;
    // Two requests may race to open it; the first one stored is kept, the other dropped.
    Ok(STORE.with(|cell| cell.get_or_init(|| Rc::new(opened)).clone()))
}

impl Host for SpinHost {
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        let store = default_store().await?;
        store.get(key).await.map_err(|err| HostError(format!("KV get `{key}`: {err:?}")))
    }

    async fn counter_add(&self, key: &str, delta: i64) -> Result<i64, HostError> {
        let bucket = counters_bucket()?;
        atomics::increment(&bucket, key, delta).map_err(|err| HostError(format!("counter `{key}`: {err:?}")))
    }

    fn now_millis(&self) -> u64 {
        let now = spin_sdk::wasip3::clocks::system_clock::now();
        (now.seconds as u64).saturating_mul(1000) + u64::from(now.nanoseconds / 1_000_000)
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    fn fill_random(&self, buf: &mut [u8]) {
        let bytes = spin_sdk::wasip3::random::random::get_random_bytes(buf.len() as u64);
        buf.copy_from_slice(&bytes[..buf.len()]);
    }

    fn reports_events(&self) -> bool {
        !matches!(INGEST.get(), Some(None))
    }

    #[allow(clippy::print_stderr, reason = "stderr is the platform's log")]
    fn send_after_response(&self, batch: Vec<u8>) {
        if !self.reports_events() || !WAITING.with(|waiting| waiting.borrow_mut().add(batch)) {
            return; // Not reporting, or the task sending for this instance will take it.
        }
        spin_sdk::wasip3::spawn(async move {
            while let Some(post) = WAITING.with(|waiting| waiting.borrow_mut().next_post()) {
                if let Err(err) = send_events(post).await {
                    // The post is lost: events are telemetry the edge never acknowledged.
                    eprintln!("verge edge: events not delivered: {err}");
                }
            }
        });
    }
}

async fn ingest() -> Result<Option<Ingest>, String> {
    if let Some(known) = INGEST.get() {
        return Ok(known.clone());
    }
    let url = spin_sdk::variables::get("core_url").await.map_err(|err| format!("variable core_url: {err:?}"))?;
    let key = spin_sdk::variables::get("ingest_key").await.map_err(|err| format!("variable ingest_key: {err:?}"))?;
    // No ingest key: this edge does not report.
    let found = (!key.is_empty()).then(|| Ingest { url: format!("{}/v1/events", url.trim_end_matches('/')), key });
    Ok(INGEST.get_or_init(|| found).clone())
}

async fn send_events(batch: Vec<u8>) -> Result<(), String> {
    let Some(Ingest { url, key }) = ingest().await? else { return Ok(()) };
    let request = spin_sdk::http::Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::from(batch)))
        .map_err(|err| err.to_string())?;
    let response = spin_sdk::http::send(request).await.map_err(|err| format!("{err:?}"))?;
    if response.status().is_success() { Ok(()) } else { Err(format!("core answered {}", response.status())) }
}

#[http_service]
async fn serve(request: Request) -> http::Response<Full<Bytes>> {
    let client = Client {
        ip: request
            .headers()
            .get("spin-client-addr")
            .and_then(|value| value.to_str().ok())
            .and_then(|addr| addr.parse::<SocketAddr>().ok())
            .map(|addr| addr.ip()),
        country: crate::client::country(country_header().await, |name| {
            request.headers().get(name).map(http::HeaderValue::as_bytes)
        }),
    };
    let (parts, body) = request.into_parts();
    // No edge route reads a GET or HEAD body; skipping the read saves stream round trips
    // with the host on the hottest paths (redirects, health).
    let body = if matches!(parts.method, http::Method::GET | http::Method::HEAD) {
        Vec::new()
    } else {
        match read_body(&parts.headers, body).await {
            Ok(body) => body,
            Err(response) => return into_spin(response),
        }
    };
    let host = SpinHost { client };
    let response = crate::handle(&host, http::Request::from_parts(parts, body)).await;
    into_spin(response)
}

/// Reads the body up to the cap (`crate::body`), frame by frame.
async fn read_body<B>(headers: &http::HeaderMap, body: B) -> Result<Vec<u8>, http::Response<Vec<u8>>>
where
    B: http_body::Body<Data = Bytes>,
{
    if crate::body::declared_too_large(headers) {
        return Err(crate::body::too_large());
    }
    let mut body = std::pin::pin!(body);
    let mut capped = crate::body::Capped::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| crate::body::unreadable())?;
        if let Some(data) = frame.data_ref() {
            capped.push(data).map_err(|_| crate::body::too_large())?;
        }
    }
    Ok(capped.into_bytes())
}

fn into_spin(response: http::Response<Vec<u8>>) -> http::Response<Full<Bytes>> {
    response.map(|body| Full::new(Bytes::from(body)))
}
