//! The `#[event(fetch)]` handler and the Workers [`Host`].

use std::net::IpAddr;

use verge_edge::{Client, Host, HostError};
use wasm_bindgen::prelude::wasm_bindgen;
use worker::{Context, Env, Fetch, Headers, Method, Request, RequestInit, Response, event};

/// The KV namespace binding in wrangler.toml.
const KV_BINDING: &str = "VERGE_KV";

#[wasm_bindgen]
extern "C" {
    /// Web Crypto, a global in Workers.
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]);
}

/// Posts one request's `waitUntil` task sends at most before handing over.
const POSTS_PER_TASK: usize = 8;

thread_local! {
    /// Event batches of this isolate's requests waiting for its post in flight: one
    /// subrequest per round trip to the core, not per request (`verge_edge::events`).
    static WAITING: std::cell::RefCell<verge_edge::events::Coalescer> = std::cell::RefCell::default();
}

struct WorkersHost<'a> {
    env: &'a Env,
    ctx: &'a Context,
    client: Client,
}

impl Host for WorkersHost<'_> {
    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        let kv = self.env.kv(KV_BINDING).map_err(|err| HostError(format!("KV binding {KV_BINDING}: {err}")))?;
        kv.get(key).bytes().await.map_err(|err| HostError(format!("KV get `{key}`: {err}")))
    }

    async fn counter_add(&self, key: &str, delta: i64) -> Result<i64, HostError> {
        crate::counters::add(self.env, key, delta).await
    }

    fn now_millis(&self) -> u64 {
        worker::Date::now().as_millis()
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    fn fill_random(&self, buf: &mut [u8]) {
        get_random_values(buf);
    }

    fn send_after_response(&self, batch: Vec<u8>) {
        let core_url = self.env.var("VERGE_CORE_URL").map(|v| v.to_string()).unwrap_or_default();
        let key = self.env.secret("VERGE_INGEST_KEY").map(|v| v.to_string()).unwrap_or_default();
        if core_url.is_empty() || key.is_empty() {
            return; // Not configured: this worker does not report.
        }
        if !WAITING.with(|waiting| waiting.borrow_mut().add(batch)) {
            return; // A request of this isolate is sending; its task takes this batch too.
        }
        self.ctx.wait_until(async move {
            // A request's waitUntil work is cut off after 30 s: under steady load one task
            // sends a few posts and hands the rest to the next request's task.
            for _ in 0..POSTS_PER_TASK {
                let Some(post) = WAITING.with(|waiting| waiting.borrow_mut().next_post()) else { return };
                if let Err(err) = send_events(&core_url, &key, post).await {
                    worker::console_error!("verge edge: events not delivered: {err}");
                }
            }
            WAITING.with(|waiting| waiting.borrow_mut().release());
        });
    }
}

async fn send_events(core_url: &str, key: &str, batch: Vec<u8>) -> worker::Result<()> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("authorization", &format!("Bearer {key}"))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(js_sys::Uint8Array::from(&batch[..]).into()));
    let request = Request::new_with_init(&format!("{}/v1/events", core_url.trim_end_matches('/')), &init)?;
    let response = Fetch::Request(request).send().await?;
    match response.status_code() {
        200..=299 => Ok(()),
        status => Err(worker::Error::RustError(format!("core answered {status}"))),
    }
}

/// Reads the body up to the cap (`verge_edge::body`), chunk by chunk from its stream.
async fn read_body(request: &mut Request) -> Result<Vec<u8>, http::Response<Vec<u8>>> {
    use futures_util::StreamExt;
    let declared = request.headers().get("content-length").ok().flatten().and_then(|length| length.parse::<u64>().ok());
    if declared.is_some_and(|length| length > verge_edge::body::MAX_BODY_BYTES as u64) {
        return Err(verge_edge::body::too_large());
    }
    // A request without a body has no stream.
    let Ok(mut stream) = request.stream() else { return Ok(Vec::new()) };
    let mut body = verge_edge::body::Capped::default();
    while let Some(chunk) = stream.next().await {
        body.push(&chunk.map_err(|_| verge_edge::body::unreadable())?).map_err(|_| verge_edge::body::too_large())?;
    }
    Ok(body.into_bytes())
}

#[event(fetch)]
async fn fetch(mut request: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let client = Client {
        ip: request.headers().get("cf-connecting-ip")?.and_then(|ip| ip.parse::<IpAddr>().ok()),
        country: request.cf().and_then(|cf| cf.country()).and_then(|c| c.as_bytes().try_into().ok()),
    };
    let body = match read_body(&mut request).await {
        Ok(body) => body,
        Err(refused) => return into_worker(refused),
    };
    let url = request.url()?;
    let mut builder = http::Request::builder().method(request.method().as_ref()).uri(url.as_str());
    for (name, value) in request.headers().entries() {
        builder = builder.header(name, value);
    }
    let Ok(edge_request) = builder.body(body) else {
        return into_worker(verge_edge::problem::response(
            http::StatusCode::BAD_REQUEST,
            "bad_request",
            "the request could not be read",
        ));
    };
    let host = WorkersHost { env: &env, ctx: &ctx, client };
    into_worker(verge_edge::handle(&host, edge_request).await)
}

fn into_worker(response: http::Response<Vec<u8>>) -> worker::Result<Response> {
    let (parts, body) = response.into_parts();
    let headers = Headers::new();
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            headers.append(name.as_str(), value)?;
        }
    }
    Ok(Response::from_bytes(body)?.with_status(parts.status.as_u16()).with_headers(headers))
}
