//! The Compute request loop body and the Fastly [`Host`].

use std::cell::RefCell;

use fastly::kv_store::{KVStore, KVStoreError};
use fastly::{Request, Response};
use verge_edge::{Client, Host, HostError};

use verge_edge::body::MAX_BODY_BYTES;
/// Names wired in fastly.toml (and in the Fastly service configuration).
const KV_STORE: &str = "verge_kv";
/// The Edge Rate Limiting rate counter the edge counts in.
const RATE_COUNTER: &str = "verge_ratelimit";
const SECRET_STORE: &str = "verge_secrets";
const CORE_BACKEND: &str = "core";

struct FastlyHost {
    store: RefCell<Option<KVStore>>,
    client: Client,
    batches: RefCell<Vec<Vec<u8>>>,
}

impl Host for FastlyHost {
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        let mut store = self.store.borrow_mut();
        if store.is_none() {
            let opened = KVStore::open(KV_STORE).map_err(|err| HostError(format!("open KV store: {err}")))?;
            *store = Some(opened.ok_or_else(|| HostError(format!("no KV store named {KV_STORE}")))?);
        }
        match store.as_ref().expect("opened above").lookup(key) {
            Ok(mut found) => Ok(Some(found.take_body_bytes())),
            Err(KVStoreError::ItemNotFound) => Ok(None),
            Err(err) => Err(HostError(format!("KV get `{key}`: {err}"))),
        }
    }

    /// Fastly starts an instance per request, so counts can only live in Edge Rate Limiting:
    /// a POP-wide rate counter that is approximate, lags by a few seconds, looks back at
    /// most 60 s and only counts up (a denied request's take-back is dropped). The lagging
    /// count plus this request's own `delta` is the answer; docs/ratelimit.md bounds it.
    async fn counter_add(&self, key: &str, delta: i64) -> Result<i64, HostError> {
        use fastly::erl::{CounterDuration, RateCounter};
        let counter = RateCounter::open(RATE_COUNTER);
        let entry = key.split_once(':').map_or(key, |(_, rest)| rest);
        let fail = |err| HostError(format!("rate counter `{entry}`: {err:?}"));
        let added = u32::try_from(delta.max(0)).unwrap_or(u32::MAX);
        if added > 0 {
            counter.increment(entry, added).map_err(fail)?;
        }
        let seen = counter.lookup_count(entry, CounterDuration::SixtySecs).map_err(fail)?;
        Ok(i64::from(seen) + i64::from(added))
    }

    fn now_millis(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    fn fill_random(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("WASI random_get");
    }

    fn send_after_response(&self, batch: Vec<u8>) {
        self.batches.borrow_mut().push(batch);
    }
}

pub(crate) fn serve() {
    let mut request = Request::from_client();
    let ip = request.get_client_ip_addr();
    let client = Client {
        ip,
        country: ip.and_then(fastly::geo::geo_lookup).and_then(|geo| geo.country_code().as_bytes().try_into().ok()),
    };
    let response = match read_body(&mut request) {
        Err(refused) => refused,
        Ok(body) => match to_http(&request, body) {
            Some(edge_request) => {
                let host = FastlyHost { store: RefCell::new(None), client, batches: RefCell::new(Vec::new()) };
                let response = futures_executor::block_on(verge_edge::handle(&host, edge_request));
                from_http(response).send_to_client();
                send_events(host.batches.into_inner());
                return;
            }
            None => verge_edge::problem::response(
                http::StatusCode::BAD_REQUEST,
                "bad_request",
                "the request could not be read",
            ),
        },
    };
    from_http(response).send_to_client();
}

/// Reads the body up to the cap (`verge_edge::body`): a declared length over it unread,
/// an undeclared one no further than one byte past it.
fn read_body(request: &mut Request) -> Result<Vec<u8>, http::Response<Vec<u8>>> {
    use std::io::Read;
    let declared = request.get_header("content-length").and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(verge_edge::body::too_large());
    }
    let mut body = Vec::new();
    request
        .take_body()
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|_| verge_edge::body::unreadable())?;
    if body.len() > MAX_BODY_BYTES {
        return Err(verge_edge::body::too_large());
    }
    Ok(body)
}

fn to_http(request: &Request, body: Vec<u8>) -> Option<http::Request<Vec<u8>>> {
    let mut builder = http::Request::builder().method(request.get_method_str()).uri(request.get_url_str());
    for (name, value) in request.get_headers() {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    builder.body(body).ok()
}

fn from_http(response: http::Response<Vec<u8>>) -> Response {
    let (parts, body) = response.into_parts();
    let mut out = Response::from_body(body).with_status(parts.status.as_u16());
    for (name, value) in &parts.headers {
        out.append_header(name.as_str(), value.as_bytes());
    }
    out
}

/// Sends the batches after the client has its response; failures are logged and dropped.
#[allow(clippy::print_stderr, reason = "stderr is Compute's log")]
fn send_events(batches: Vec<Vec<u8>>) {
    if batches.is_empty() {
        return;
    }
    let key = fastly::SecretStore::open(SECRET_STORE)
        .ok()
        .and_then(|store| store.get("ingest_key"))
        .map(|secret| String::from_utf8_lossy(&secret.plaintext()).into_owned());
    let Some(key) = key.filter(|key| !key.is_empty()) else {
        return; // Not configured: this service does not report.
    };
    let pending: Vec<_> = batches
        .into_iter()
        .filter_map(|batch| {
            Request::post("http://core/v1/events")
                .with_header("content-type", "application/json")
                .with_header("authorization", format!("Bearer {key}"))
                .with_body(batch)
                .send_async(CORE_BACKEND)
                .map_err(|err| eprintln!("verge edge: events not sent: {err}"))
                .ok()
        })
        .collect();
    for request in pending {
        match request.wait() {
            Ok(response) if response.get_status().is_success() => {}
            Ok(response) => eprintln!("verge edge: core answered {} to events", response.get_status()),
            Err(err) => eprintln!("verge edge: events not delivered: {err}"),
        }
    }
}
