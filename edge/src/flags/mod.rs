//! OFREP, the OpenFeature Remote Evaluation Protocol: `POST /ofrep/v1/evaluate/flags/{key}`
//! and the bulk `POST /ofrep/v1/evaluate/flags`, answered from edge KV alone.
//!
//! A client key (`Authorization: Bearer …` or `X-API-Key`) is looked up by its SHA-256
//! under `flagkeys/`, which names the environment's dataset (kept per instance for a
//! quarter second, `keys`); the manifest gives its live version. A bulk request reads the
//! whole set, which is then kept parsed per instance for that version. A single-flag
//! request on an instance that has not parsed the whole set reads that flag's own record
//! (`verge_shared::flags::flag_part`) instead, so its cost does not grow with the number
//! of flags in the environment; those are kept too. Bulk answers carry an `ETag` over the
//! set's version and the context; a matching `If-None-Match` gets 304. CORS is
//! open (`*`): browser SDKs call this directly, and keys are sent in headers, not cookies.
//! Each request that reached a flag set reports a `flag.evaluation` event (the flag, or
//! `bulk`), from which the core tells which flags have gone stale.

mod keys;

use std::sync::{Arc, Mutex};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::{Map, Value};
use verge_shared::flags::{FlagSet, Resolution};
use verge_shared::kv::versioned_key;

use crate::body::Body;
use crate::events::Events;
use crate::host::Host;
use crate::request::cors;

pub(crate) const PREFIX: &str = "/ofrep/v1/evaluate/flags";
const DOCUMENT_PART: &str = "flagd";
const EVALUATION_KIND: &str = "flag.evaluation";
/// Flag sets kept parsed per instance (an instance serves one or a few environments).
const CACHED_SETS: usize = 4;

struct Live {
    dataset: String,
    version: u64,
    hash: String,
    set: Arc<FlagSet>,
}

static SETS: Mutex<Vec<Arc<Live>>> = Mutex::new(Vec::new());

/// Single flags parsed from their own records: (dataset, version, key) → set of one flag.
type OneFlag = (String, u64, String, Arc<FlagSet>);
static SINGLE_FLAGS: Mutex<Vec<OneFlag>> = Mutex::new(Vec::new());
/// Single-flag sets kept per instance.
const CACHED_FLAGS: usize = 64;

/// The environment a client key may evaluate, at its live version.
struct Current {
    dataset: String,
    version: u64,
    hash: String,
}

/// Serves a path under [`PREFIX`].
pub(crate) async fn serve<H: Host>(
    host: &H,
    request: &Request<Body>,
    rest: &str,
    events: &mut Events,
) -> Response<Body> {
    let key = match rest {
        "" | "/" => None,
        rest => match rest.strip_prefix('/') {
            Some(key) if !key.contains('/') => Some(percent_decode(key)),
            _ => {
                return cors(crate::problem::response(StatusCode::NOT_FOUND, "route_not_found", "no such OFREP route"));
            }
        },
    };
    match *request.method() {
        Method::OPTIONS => return preflight(),
        Method::POST => {}
        _ => {
            let mut response = crate::problem::response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "OFREP evaluations are POST requests",
            );
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
            return cors(response);
        }
    }
    let current = match authorize(host, request).await {
        Ok(current) => current,
        Err(response) => return cors(response),
    };
    let context = match read_context(request.body()) {
        // A signed-in customer's request evaluates for that customer: their id is the
        // targeting key and the session's claims join the context, over what was sent.
        Ok(Value::Object(mut context)) => {
            if let Some(claims) = crate::sessions::of_request(host, request).await {
                context.extend(claims.context());
            }
            Value::Object(context)
        }
        Ok(context) => context,
        Err(details) => {
            let mut body = Map::new();
            if let Some(key) = &key {
                body.insert("key".into(), Value::String(key.clone()));
            }
            body.insert("errorCode".into(), Value::String("INVALID_CONTEXT".into()));
            body.insert("errorDetails".into(), Value::String(details));
            return cors(json_response(StatusCode::BAD_REQUEST, &Value::Object(body)));
        }
    };
    let now = host.now_millis() / 1000;
    match key {
        Some(key) => {
            let set = match one_flag(host, &current, &key).await {
                Ok(set) => set,
                Err(response) => return cors(response),
            };
            let resolution = set.evaluate(&key, None, &context, now);
            let status = match &resolution.error {
                Some((code, _)) if code.as_str() == "FLAG_NOT_FOUND" => StatusCode::NOT_FOUND,
                Some(_) => StatusCode::BAD_REQUEST,
                None => StatusCode::OK,
            };
            if status != StatusCode::NOT_FOUND {
                events.push(host, EVALUATION_KIND, &[("dataset", &current.dataset), ("flag", &key)]);
            }
            let mut body = Vec::with_capacity(160);
            write_evaluation(&mut body, &key, &resolution);
            cors(json_bytes(status, body))
        }
        None => {
            let live = match whole_set(host, &current).await {
                Ok(live) => live,
                Err(response) => return cors(response),
            };
            events.push_flagged(host, EVALUATION_KIND, &[("dataset", &live.dataset)], &[("bulk", true)]);
            let etag = etag(&live, &context);
            let matches = request
                .headers()
                .get(header::IF_NONE_MATCH)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
            let mut response = if matches {
                Response::builder().status(StatusCode::NOT_MODIFIED).body(Vec::new()).expect("a valid response")
            } else {
                // Written straight out, not built as a JSON tree first: the tree's maps and
                // their serialization were most of a bulk request's CPU.
                let mut body = Vec::with_capacity(64 + 128 * 8);
                body.extend_from_slice(b"{\"flags\":[");
                for (i, key) in live.set.keys().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    write_evaluation(&mut body, key, &live.set.evaluate(key, None, &context, now));
                }
                body.extend_from_slice(b"]}");
                json_bytes(StatusCode::OK, body)
            };
            response.headers_mut().insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex is a valid header"));
            cors(response)
        }
    }
}

fn unavailable() -> Response<Body> {
    crate::problem::response(StatusCode::SERVICE_UNAVAILABLE, "flags_unavailable", "flags are not published yet")
}

/// The client key a request carries: `Authorization: Bearer …`, else `X-API-Key`.
pub(crate) fn client_token(request: &Request<Body>) -> Option<&str> {
    let header_text = |name| request.headers().get(name).and_then(|value: &HeaderValue| value.to_str().ok());
    header_text(header::AUTHORIZATION.as_str())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .or_else(|| header_text("x-api-key"))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// The key's environment, live: 401 without a key, 403 with one no environment has.
async fn authorize<H: Host>(host: &H, request: &Request<Body>) -> Result<Current, Response<Body>> {
    let Some(token) = client_token(request) else {
        let mut response = crate::problem::response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send a client key as `Authorization: Bearer …` or `X-API-Key`",
        );
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"verge\""));
        return Err(response);
    };
    let dataset = match keys::dataset_of(host, token).await {
        Ok(Some(dataset)) => dataset,
        Ok(None) => {
            return Err(crate::problem::response(StatusCode::FORBIDDEN, "forbidden", "this client key is not valid"));
        }
        Err(_) => return Err(unavailable()),
    };
    let Some(manifest) = crate::manifest::with_dataset(host, &dataset).await else { return Err(unavailable()) };
    let Some(live) = manifest.get(&dataset) else { return Err(unavailable()) };
    Ok(Current { version: live.version, hash: live.hash.clone(), dataset })
}

/// The set of `key` alone, from the whole set when this instance has it parsed, else from
/// the flag's own record; the whole set when there is no such record (the flag does not
/// exist, or the set was published before flags had records of their own).
async fn one_flag<H: Host>(host: &H, current: &Current, key: &str) -> Result<Arc<FlagSet>, Response<Body>> {
    if let Some(live) = cached(&current.dataset, current.version) {
        return Ok(live.set.clone());
    }
    let found = {
        let flags = SINGLE_FLAGS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        flags
            .iter()
            .find(|(d, v, k, _)| d == &current.dataset && *v == current.version && k == key)
            .map(|f| f.3.clone())
    };
    if let Some(set) = found {
        return Ok(set);
    }
    let part = verge_shared::flags::flag_part(key);
    let bytes = match host.kv_get(&versioned_key(&current.dataset, current.version, &part)).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(whole_set(host, current).await?.set.clone()),
        Err(_) => return Err(unavailable()),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| unavailable())?;
    let set = Arc::new(FlagSet::parse(text).map_err(|_| unavailable())?);
    let mut flags = SINGLE_FLAGS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    flags.retain(|(d, v, _, _)| d != &current.dataset || *v == current.version);
    if flags.len() >= CACHED_FLAGS {
        flags.remove(0);
    }
    flags.push((current.dataset.clone(), current.version, key.to_owned(), set.clone()));
    Ok(set)
}

/// The whole set, parsed once per instance and version.
async fn whole_set<H: Host>(host: &H, current: &Current) -> Result<Arc<Live>, Response<Body>> {
    if let Some(live) = cached(&current.dataset, current.version) {
        return Ok(live);
    }
    let bytes = match host.kv_get(&versioned_key(&current.dataset, current.version, DOCUMENT_PART)).await {
        Ok(Some(bytes)) => bytes,
        _ => return Err(unavailable()),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| unavailable())?;
    let set = FlagSet::parse(text).map_err(|_| unavailable())?;
    let live = Arc::new(Live {
        dataset: current.dataset.clone(),
        version: current.version,
        hash: current.hash.clone(),
        set: Arc::new(set),
    });
    let mut sets = SETS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    sets.retain(|other| other.dataset != live.dataset);
    if sets.len() >= CACHED_SETS {
        sets.remove(0);
    }
    sets.push(live.clone());
    Ok(live)
}

fn cached(dataset: &str, version: u64) -> Option<Arc<Live>> {
    let sets = SETS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    sets.iter().find(|live| live.dataset == dataset && live.version == version).cloned()
}

/// The request's `context` (an object; absent or an empty body is `{}`).
fn read_context(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    let mut request: Value = serde_json::from_slice(body).map_err(|err| format!("the body is not JSON: {err}"))?;
    match request.get_mut("context").map(Value::take) {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(context @ Value::Object(_)) => Ok(context),
        Some(_) => Err("`context` must be an object".into()),
    }
}

/// One flag's OFREP answer: a success, or `errorCode` with `errorDetails`; members in
/// sorted order, as when this was a JSON object of them.
fn write_evaluation(out: &mut Vec<u8>, key: &str, resolution: &Resolution) {
    macro_rules! member {
        ($lead:literal, $value:expr) => {{
            out.extend_from_slice($lead);
            serde_json::to_writer(&mut *out, $value).expect("JSON values serialize");
        }};
    }
    if let Some((code, details)) = &resolution.error {
        member!(b"{\"errorCode\":", code.as_str());
        member!(b",\"errorDetails\":", details);
        member!(b",\"key\":", key);
        out.push(b'}');
        return;
    }
    member!(b"{\"key\":", key);
    member!(b",\"metadata\":", &resolution.metadata);
    member!(b",\"reason\":", resolution.reason.as_str());
    // Without a value (disabled, or no default variant) the client uses its own default.
    if let Some(value) = &resolution.value {
        member!(b",\"value\":", value);
    }
    if let Some(variant) = &resolution.variant {
        member!(b",\"variant\":", variant);
    }
    out.push(b'}');
}

fn etag(live: &Live, context: &Value) -> String {
    let tag =
        verge_shared::sha256_hex(format!("{}\n{}\n{}\n{context}", live.dataset, live.version, live.hash).as_bytes());
    format!("\"{}\"", &tag[..32])
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    json_bytes(status, body.to_string().into_bytes())
}

fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn preflight() -> Response<Body> {
    let response = Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::ACCESS_CONTROL_ALLOW_METHODS, "POST, OPTIONS")
        .header(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "authorization, content-type, x-api-key, if-none-match, x-verge-session",
        )
        .header(header::ACCESS_CONTROL_MAX_AGE, "86400")
        .body(Vec::new())
        .expect("a valid response");
    cors(response)
}

/// A path segment, percent-decoded (flag keys may hold any character).
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = raw.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
