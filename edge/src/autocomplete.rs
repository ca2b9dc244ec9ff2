//! `GET /autocomplete/v1/{project}/{index}?q=…&limit=…`: suggestions as the user types.
//!
//! The index's directory is read once per published version (and rechecked every
//! quarter second, as every dataset is); the one or two shards a query needs are read on
//! first use and kept per instance, so a warm instance answers from memory. Each query is
//! reported to the core after the response (`autocomplete.query`), feeding trending and
//! the no-results report. Answers are the same for everyone, so they are cacheable
//! (`public`, with the index version as the ETag) and open to any origin (CORS).

use std::cell::RefCell;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use verge_shared::autocomplete::{self as shared, Directory, MAX_LIMIT, MAX_QUERY_CHARS, Shard, Suggestion};
use verge_shared::kv::versioned_key;
use verge_shared::text::fold_words;

use crate::body::Body;
use crate::events::Events;
use crate::host::Host;
use crate::problem;
use crate::ratelimit::Facts;
use crate::ratelimit::sets::{self, Loaded};
use crate::request::query_param;

pub(crate) const PREFIX: &str = "/autocomplete/v1/";
/// The event kind queries are reported as.
const KIND: &str = "autocomplete.query";
/// Shards kept per instance (each at most [`shared::SHARD_BUDGET`]).
const SHARDS_KEPT: usize = 24;
/// How long browsers and CDN caches may reuse an answer.
const CACHE_CONTROL: &str = "public, max-age=30";

thread_local! {
    static DIRECTORIES: RefCell<Vec<Loaded<Option<Directory>>>> = const { RefCell::new(Vec::new()) };
    static SHARDS: RefCell<Vec<(String, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

fn with_cors(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("ETag, RateLimit, RateLimit-Policy, Retry-After"),
    );
    response
}

fn bad_request(code: &str, detail: &str) -> Response<Body> {
    with_cors(problem::response(StatusCode::BAD_REQUEST, code, detail))
}

pub(crate) async fn serve<H: Host>(host: &H, request: &Request<Body>, events: &mut Events) -> Response<Body> {
    let rest = &request.uri().path()[PREFIX.len()..];
    let Some((project, index)) = rest.split_once('/').filter(|(p, i)| valid_name(p) && valid_name(i)) else {
        return problem::response(
            StatusCode::NOT_FOUND,
            "route_not_found",
            "autocomplete paths are /autocomplete/v1/{project}/{index}",
        );
    };
    match *request.method() {
        Method::GET | Method::HEAD => {}
        Method::OPTIONS => {
            let preflight = Response::builder()
                .status(StatusCode::NO_CONTENT)
                .header(header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS")
                .header(header::ACCESS_CONTROL_ALLOW_HEADERS, "if-none-match")
                .header(header::ACCESS_CONTROL_MAX_AGE, "86400")
                .body(Vec::new())
                .expect("a valid response");
            return with_cors(preflight);
        }
        _ => return with_cors(problem::method_not_allowed("GET, HEAD, OPTIONS")),
    }
    let allowed = match crate::ratelimit::enforce(host, &Facts::of(host, request, "autocomplete", None), events).await {
        Ok(allowed) => allowed,
        Err(refused) => return with_cors(refused),
    };
    let mut response = answer(host, request, project, index, events).await;
    allowed.annotate(&mut response);
    with_cors(response)
}

async fn answer<H: Host>(
    host: &H,
    request: &Request<Body>,
    project: &str,
    index: &str,
    events: &mut Events,
) -> Response<Body> {
    let query = match query_param(request, "q") {
        None => return bad_request("missing_query", "name the text typed so far as `q`"),
        Some(Err(())) => return bad_request("invalid_query", "`q` is not percent-encoded UTF-8"),
        Some(Ok(query)) => query,
    };
    if query.chars().count() > MAX_QUERY_CHARS {
        return bad_request("query_too_long", &format!("`q` is longer than {MAX_QUERY_CHARS} characters"));
    }
    let folded = fold_words(&query).text;
    if folded.is_empty() {
        return bad_request("empty_query", "`q` holds no letter or digit");
    }
    let dataset = shared::dataset(project, index);
    let (directory, version) =
        sets::load_versioned(host, &DIRECTORIES, &dataset, shared::DIR_PART, Directory::decode).await;
    let (Some(directory), Some(version)) = (directory.as_ref(), version) else {
        let detail = format!("no autocomplete index `{index}` is published for project `{project}`");
        return with_cors(problem::response(StatusCode::NOT_FOUND, "index_not_found", &detail));
    };
    let limit = match query_param(request, "limit") {
        None => usize::from(directory.settings.default_limit),
        Some(value) => match value.ok().and_then(|v| v.parse::<usize>().ok()).filter(|n| (1..=MAX_LIMIT).contains(n)) {
            Some(limit) => limit,
            None => return bad_request("invalid_limit", &format!("`limit` must be an integer from 1 to {MAX_LIMIT}")),
        },
    };
    let etag = format!("\"ac-{version}\"");
    let unchanged = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim().trim_start_matches("W/") == etag));
    let budget = directory.settings.typo_budget(&folded);
    let mut shards = Vec::new();
    for n in shared::shards_for(directory, &folded, budget) {
        match shard(host, &versioned_key(&dataset, version, &shared::shard_part(n))).await {
            Some(shard) => shards.push(shard),
            None => {
                let detail = format!("shard {n} of `{dataset}` v{version} cannot be read");
                return with_cors(problem::response(StatusCode::SERVICE_UNAVAILABLE, "index_unavailable", &detail));
            }
        }
    }
    let refs: Vec<&Shard> = shards.iter().map(Arc::as_ref).collect();
    let suggestions = match shared::search(&refs, &directory.settings, &folded, limit) {
        Ok(found) => found,
        Err(err) => {
            return with_cors(problem::response(
                StatusCode::SERVICE_UNAVAILABLE,
                "index_unavailable",
                &err.to_string(),
            ));
        }
    };
    events.push_flagged(
        host,
        KIND,
        &[("project", project), ("index", index), ("query", &folded)],
        &[("empty", suggestions.is_empty())],
    );
    let mut response = if unchanged {
        let mut response = Response::new(Vec::new());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(render(index, &query, &suggestions).into_bytes());
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if request.method() == Method::HEAD {
        response.body_mut().clear();
    }
    response
}

/// The shard under `key`, from this instance's cache or KV.
async fn shard<H: Host>(host: &H, key: &str) -> Option<Arc<Shard>> {
    let kept = SHARDS.with_borrow_mut(|kept| {
        let at = kept.iter().position(|(k, _)| k == key)?;
        let entry = kept.remove(at);
        let shard = entry.1.clone();
        kept.push(entry);
        Some(shard)
    });
    if kept.is_some() {
        return kept;
    }
    let bytes = host.kv_get(key).await.ok()??;
    let shard = Arc::new(Shard::decode(&bytes).ok()?);
    SHARDS.with_borrow_mut(|kept| {
        if kept.len() >= SHARDS_KEPT {
            kept.remove(0);
        }
        kept.push((key.to_owned(), shard.clone()));
    });
    Some(shard)
}

fn render(index: &str, query: &str, suggestions: &[Suggestion]) -> String {
    use crate::json::push_string;
    let mut out = String::with_capacity(64 + suggestions.len() * 96);
    out.push_str("{\"index\":");
    push_string(&mut out, index);
    out.push_str(",\"query\":");
    push_string(&mut out, query);
    out.push_str(",\"suggestions\":[");
    for (i, suggestion) in suggestions.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"text\":");
        push_string(&mut out, &suggestion.text);
        out.push_str(",\"highlight\":");
        match suggestion.highlight {
            Some(h) => out.push_str(&format!("{{\"start\":{},\"end\":{}}}", h.start, h.end)),
            None => out.push_str("null"),
        }
        out.push_str(&format!(",\"typos\":{}", suggestion.typos));
        if let Some(payload) = &suggestion.payload {
            // Stored as JSON the core validated and serialized.
            out.push_str(",\"payload\":");
            out.push_str(payload);
        }
        if let Some(language) = &suggestion.language {
            out.push_str(",\"language\":");
            push_string(&mut out, language);
        }
        out.push_str(&format!(",\"pinned\":{},\"trending\":{}}}", suggestion.pinned, suggestion.trending));
    }
    out.push_str("]}");
    out
}
