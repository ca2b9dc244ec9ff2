//! The storefront's reads: `GET /catalog/v1/products/{handle}`, and
//! `GET /catalog/v1/categories/{handle}?page=N` and `/catalog/v1/collections/{handle}?page=N`
//! for listings.
//!
//! Each answer is one KV read: the core rendered the JSON, so the edge picks the segment
//! its clock falls in (a price list starting or ending switches it, see
//! `verge_shared::catalog`) and serves it as is. Answers are public, so browsers and CDN
//! caches may keep them, but never past the moment their segment ends.

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use verge_shared::catalog::{self as shared, Listing, Record};

use crate::body::Body;
use crate::events::Events;
use crate::host::Host;
use crate::problem;
use crate::ratelimit::Facts;
use crate::request::{cors, has_etag, query_param, read_preflight};

pub(crate) const PREFIX: &str = "/catalog/v1/";
/// How long caches may keep an answer, at most (seconds).
const MAX_AGE_SECS: u64 = 30;
/// Listing pages a storefront may ask for; far beyond any real listing.
const MAX_PAGE: usize = 100_000;

fn not_found(code: &str, detail: &str) -> Response<Body> {
    cors(problem::response(StatusCode::NOT_FOUND, code, detail))
}

pub(crate) async fn serve<H: Host>(host: &H, request: &Request<Body>, events: &mut Events) -> Response<Body> {
    let rest = &request.uri().path()[PREFIX.len()..];
    let target = match rest.split_once('/') {
        Some(("products", handle)) => Target::Product(handle),
        Some(("categories", handle)) => Target::Listing(Listing::Category, handle),
        Some(("collections", handle)) => Target::Listing(Listing::Collection, handle),
        _ => {
            let detail = "catalog paths are /catalog/v1/products/{handle}, /catalog/v1/categories/{handle} and /catalog/v1/collections/{handle}";
            return not_found("route_not_found", detail);
        }
    };
    match *request.method() {
        Method::GET | Method::HEAD => {}
        Method::OPTIONS => return read_preflight("if-none-match"),
        _ => return cors(problem::method_not_allowed("GET, HEAD, OPTIONS")),
    }
    let allowed = match crate::ratelimit::enforce(host, &Facts::of(host, request, "catalog", None), events).await {
        Ok(allowed) => allowed,
        Err(refused) => return cors(refused),
    };
    let mut response = answer(host, request, target).await;
    allowed.annotate(&mut response);
    cors(response)
}

#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    Product(&'a str),
    Listing(Listing, &'a str),
}

async fn answer<H: Host>(host: &H, request: &Request<Body>, target: Target<'_>) -> Response<Body> {
    let (key, missing) = match target {
        Target::Product(handle) => {
            if !shared::is_handle(handle) {
                return not_found("product_not_found", &format!("no product `{handle}` is published"));
            }
            (shared::product_key(handle), ("product_not_found", format!("no product `{handle}` is published")))
        }
        Target::Listing(listing, handle) => {
            let noun = match listing {
                Listing::Category => "category",
                Listing::Collection => "collection",
            };
            if !shared::is_handle(handle) {
                return not_found("listing_not_found", &format!("no {noun} `{handle}` is published"));
            }
            let page = match query_param(request, "page") {
                None => 1,
                Some(value) => {
                    match value.ok().and_then(|v| v.parse::<usize>().ok()).filter(|n| (1..=MAX_PAGE).contains(n)) {
                        Some(page) => page,
                        None => {
                            let detail = format!("`page` must be an integer from 1 to {MAX_PAGE}");
                            return cors(problem::response(StatusCode::BAD_REQUEST, "invalid_page", &detail));
                        }
                    }
                }
            };
            let missing = if page == 1 {
                ("listing_not_found", format!("no {noun} `{handle}` is published"))
            } else {
                ("page_not_found", format!("{noun} `{handle}` has no page {page}"))
            };
            (shared::page_key(listing, handle, page), missing)
        }
    };
    let bytes = match host.kv_get(&key).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return not_found(missing.0, &missing.1),
        Err(err) => {
            return cors(problem::response(StatusCode::SERVICE_UNAVAILABLE, "kv_unavailable", &err.to_string()));
        }
    };
    let now = host.now_millis();
    let segment = match Record::decode_at(&bytes, now) {
        Ok(Some(segment)) => segment,
        // A record the core has not yet rolled past its last moment: what it said is gone.
        Ok(None) => return not_found(missing.0, &missing.1),
        Err(err) => {
            let detail = format!("`{key}`: {err}");
            return cors(problem::response(StatusCode::SERVICE_UNAVAILABLE, "bad_record", &detail));
        }
    };
    let mut response = if has_etag(request, &segment.etag) {
        let mut response = Response::new(Vec::new());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(segment.body);
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    };
    let max_age = MAX_AGE_SECS.min(segment.until.saturating_sub(now) / 1000);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    if let Ok(value) = HeaderValue::from_str(&segment.etag) {
        headers.insert(header::ETAG, value);
    }
    if request.method() == Method::HEAD {
        response.body_mut().clear();
    }
    response
}
