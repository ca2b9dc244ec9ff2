//! The Spin entry: the edge application as a `wasm32-wasip2` component for Spin (and for
//! Verge's local wasmtime host, which runs the very same component).
//!
//! Only the [`Host`] glue and the `wasi:http` handler live here. KV is Spin's `default`
//! key-value store; the client address comes from the `spin-client-addr` header the
//! runtime sets, the country only from the header the `country_header` variable names (see
//! `crate::client`); events go to the core's ingest endpoint named by the `core_url` and
//! `ingest_key` variables, in a task that keeps running after the response is returned
//! (WASIp3 lets an export continue after it has produced its value), merged across the
//! requests of an instance.

use std::cell::OnceCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::Full;
use spin_sdk::key_value::Store;
use spin_sdk::wasip3::http::types as wasi;
use spin_sdk::wasip3::{wit_future, wit_stream};
use spin_sdk::wit_bindgen::StreamResult;

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
    /// The clock as first read during this request: a read is a host call, and handlers
    /// ask several times per request for what is, at their scale, one instant.
    now_millis: std::cell::Cell<Option<u64>>,
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
        if let Some(now) = self.now_millis.get() {
            return now;
        }
        let now = spin_sdk::wasip3::clocks::system_clock::now();
        let now = (now.seconds as u64).saturating_mul(1000) + u64::from(now.nanoseconds / 1_000_000);
        self.now_millis.set(Some(now));
        now
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

/// The `wasi:http` handler, written against the raw WASIp3 types rather than the SDK's
/// `http` conversion (`#[http_service]`). That glue asked the host for the headers three
/// times, parsed every header and the URI through builders, cloned the response's header
/// map to copy it again, and read the body through boxed futures: on a single-flag OFREP
/// request it cost more guest time than the evaluation. Here the headers are copied once
/// each way and the body is read straight from its stream.
struct Edge;

spin_sdk::wasip3::http::service::export!(Edge);

impl spin_sdk::wasip3::exports::http::handler::Guest for Edge {
    async fn handle(request: wasi::Request) -> Result<wasi::Response, wasi::ErrorCode> {
        let response = match read_request(request).await {
            Ok(request) => {
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
                crate::handle(&SpinHost { client, now_millis: std::cell::Cell::new(None) }, request).await
            }
            Err(refused) => refused,
        };
        write_response(response)
    }
}

/// The request as the edge application takes it, its body read up to the cap
/// (`crate::body`); a refusal to answer with when it cannot be.
async fn read_request(request: wasi::Request) -> Result<http::Request<Vec<u8>>, http::Response<Vec<u8>>> {
    let malformed = || {
        crate::problem::response(http::StatusCode::BAD_REQUEST, "malformed_request", "the request could not be read")
    };
    let method = match request.get_method() {
        wasi::Method::Get => http::Method::GET,
        wasi::Method::Head => http::Method::HEAD,
        wasi::Method::Post => http::Method::POST,
        wasi::Method::Put => http::Method::PUT,
        wasi::Method::Delete => http::Method::DELETE,
        wasi::Method::Patch => http::Method::PATCH,
        wasi::Method::Options => http::Method::OPTIONS,
        wasi::Method::Connect => http::Method::CONNECT,
        wasi::Method::Trace => http::Method::TRACE,
        wasi::Method::Other(other) => http::Method::from_bytes(other.as_bytes()).map_err(|_| malformed())?,
    };
    let mut uri = http::Uri::builder();
    if let Some(authority) = request.get_authority() {
        let scheme = match request.get_scheme() {
            Some(wasi::Scheme::Https) => http::uri::Scheme::HTTPS,
            _ => http::uri::Scheme::HTTP,
        };
        uri = uri.scheme(scheme).authority(authority);
    }
    let uri = uri.path_and_query(request.get_path_with_query().unwrap_or_else(|| "/".to_owned()));
    let mut builder = http::Request::builder().method(method).uri(uri.build().map_err(|_| malformed())?);
    let fields = request.get_headers().copy_all();
    let headers = builder.headers_mut().ok_or_else(malformed)?;
    headers.reserve(fields.len());
    for (name, value) in fields {
        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| malformed())?;
        let value = http::HeaderValue::from_maybe_shared(Bytes::from(value)).map_err(|_| malformed())?;
        headers.append(name, value);
    }
    // No edge route reads a GET or HEAD body; skipping the read saves stream round trips
    // with the host on the hottest paths (redirects, health).
    let body = if builder.method_ref().is_some_and(|method| method == http::Method::GET || method == http::Method::HEAD)
    {
        Vec::new()
    } else {
        read_body(request, builder.headers_ref().ok_or_else(malformed)?).await?
    };
    builder.body(body).map_err(|_| malformed())
}

/// Reads the body up to the cap (`crate::body`), chunk by chunk from its stream.
async fn read_body(request: wasi::Request, headers: &http::HeaderMap) -> Result<Vec<u8>, http::Response<Vec<u8>>> {
    if crate::body::declared_too_large(headers) {
        return Err(crate::body::too_large());
    }
    // A declared length is read in one go, and no further (the host enforces it, so no
    // read is spent waiting for the end); else in chunks, one past the cap at most.
    let declared =
        headers.get(http::header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    let chunk = declared.map_or(16 * 1024, |length| length.max(1));
    // Dropping the writer tells the host the body was taken in full (its default, `Ok`).
    let (_taken, taken) = wit_future::new(|| Ok(()));
    let (mut stream, _trailers) = wasi::Request::consume_body(request, taken);
    let mut capped = crate::body::Capped::default();
    loop {
        let (result, read) = stream.read(Vec::with_capacity(chunk)).await;
        capped.push(&read).map_err(|_| crate::body::too_large())?;
        match result {
            StreamResult::Complete(_) if declared == Some(capped.len()) => return Ok(capped.into_bytes()),
            StreamResult::Complete(_) => {}
            StreamResult::Dropped => return Ok(capped.into_bytes()),
            StreamResult::Cancelled => return Err(crate::body::unreadable()),
        }
    }
}

/// The response handed to the host: its headers in one list, its body written to a stream
/// by a task that runs once the handler has returned (the host reads it only then).
fn write_response(response: http::Response<Vec<u8>>) -> Result<wasi::Response, wasi::ErrorCode> {
    let (parts, body) = response.into_parts();
    let entries: Vec<(String, Vec<u8>)> =
        parts.headers.iter().map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec())).collect();
    let fields = wasi::Fields::from_list(&entries)
        .map_err(|err| wasi::ErrorCode::InternalError(Some(format!("response headers: {err:?}"))))?;
    // The trailers' writer dropped unwritten sends its default: no trailers.
    let (trailers_writer, trailers) = wit_future::new(|| Ok(None));
    // An empty body is a stream closed at once, not `None`: with no body stream, the
    // event posts an instance sends after its response reached the core later under
    // wasmtime 48's handler (cause not pinned down), so a link's click limit took effect
    // late (`links_edge` saw 5 redirects of a 2-click link, where it allows 4).
    let (mut writer, contents) = wit_stream::new();
    if body.is_empty() {
        drop(writer);
        drop(trailers_writer);
    } else {
        spin_sdk::wasip3::spawn(async move {
            // A client gone before the end loses the rest; nothing else is to be done.
            let _unwritten = writer.write_all(body).await;
            drop(writer);
            drop(trailers_writer);
        });
    }
    let (response, _sent) = wasi::Response::new(fields, Some(contents), trailers);
    response
        .set_status_code(parts.status.as_u16())
        .map_err(|()| wasi::ErrorCode::InternalError(Some("response status".to_owned())))?;
    Ok(response)
}
