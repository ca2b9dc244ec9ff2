//! `GET /autocomplete/v1/{project}/{index}?q=…&limit=…`: suggestions as the user types.
//!
//! The index's directory is read once per published version (and rechecked every
//! quarter second, as every dataset is); the one or two shards a query needs are read on
//! first use and kept per instance, so a warm instance answers from memory. Each query is
//! reported to the core after the response (`autocomplete.query`), feeding trending and
//! the no-results report. Without a session, answers are the same for everyone, so they
//! are cacheable (`public`, with the index version as the ETag) and open to any origin
//! (CORS). A valid session of the index's project (`X-Verge-Session` or the cookie) whose
//! token names a `locale` personalises them: terms in that language come first within
//! each tier (`search_preferring`), and the answer is `private`.

use std::cell::RefCell;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use verge_shared::autocomplete::{self as shared, Directory, MAX_LIMIT, MAX_QUERY_CHARS, Shard, Suggestion};
use verge_shared::ids::is_slug;
use verge_shared::kv::versioned_key;
use verge_shared::text::fold_words;

use crate::body::Body;
use crate::events::Events;
use crate::host::Host;
use crate::problem;
use crate::ratelimit::Facts;
use crate::ratelimit::sets::{self, Loaded};
use crate::request::{cors, has_etag, query_param, read_preflight};

pub(crate) const PREFIX: &str = "/autocomplete/v1/";
/// The event kind queries are reported as.
const KIND: &str = "autocomplete.query";
/// Shards kept per instance (each at most [`shared::SHARD_BUDGET`]).
const SHARDS_KEPT: usize = 24;
/// How long browsers and CDN caches may reuse an answer.
const CACHE_CONTROL: &str = "public, max-age=30";
/// The same for an answer given to a session: the browser's cache only.
const PRIVATE_CACHE_CONTROL: &str = "private, max-age=30";

thread_local! {
    static DIRECTORIES: RefCell<Vec<Loaded<Option<Directory>>>> = const { RefCell::new(Vec::new()) };
    static SHARDS: RefCell<Vec<(String, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

fn bad_request(code: &str, detail: &str) -> Response<Body> {
    cors(problem::response(StatusCode::BAD_REQUEST, code, detail))
}

pub(crate) async fn serve<H: Host>(host: &H, request: &Request<Body>, events: &mut Events) -> Response<Body> {
    let rest = &request.uri().path()[PREFIX.len()..];
    let Some((project, index)) = rest.split_once('/').filter(|(p, i)| is_slug(p) && is_slug(i)) else {
        return problem::response(
            StatusCode::NOT_FOUND,
            "route_not_found",
            "autocomplete paths are /autocomplete/v1/{project}/{index}",
        );
    };
    match *request.method() {
        Method::GET | Method::HEAD => {}
        Method::OPTIONS => return read_preflight("if-none-match, x-verge-session"),
        _ => return cors(problem::method_not_allowed("GET, HEAD, OPTIONS")),
    }
    let allowed = match crate::ratelimit::enforce(host, &Facts::of(host, request, "autocomplete", None), events).await {
        Ok(allowed) => allowed,
        Err(refused) => return cors(refused),
    };
    let mut response = answer(host, request, project, index, events).await;
    allowed.annotate(&mut response);
    cors(response)
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
        return cors(problem::response(StatusCode::NOT_FOUND, "index_not_found", &detail));
    };
    let limit = match query_param(request, "limit") {
        None => usize::from(directory.settings.default_limit),
        Some(value) => match value.ok().and_then(|v| v.parse::<usize>().ok()).filter(|n| (1..=MAX_LIMIT).contains(n)) {
            Some(limit) => limit,
            None => return bad_request("invalid_limit", &format!("`limit` must be an integer from 1 to {MAX_LIMIT}")),
        },
    };
    let claims = crate::sessions::of_request(host, request).await.filter(|claims| claims.project == project);
    let locale = claims.as_ref().and_then(|claims| claims.locale.as_deref()).map(primary_language);
    let etag = match &locale {
        Some(language) => format!("\"ac-{version}-{language}\""),
        None => format!("\"ac-{version}\""),
    };
    let unchanged = has_etag(request, &etag);
    let budget = directory.settings.typo_budget(&folded);
    let mut shards = Vec::new();
    for n in shared::shards_for(directory, &folded, budget) {
        match shard(host, &versioned_key(&dataset, version, &shared::shard_part(n))).await {
            Some(shard) => shards.push(shard),
            None => {
                let detail = format!("shard {n} of `{dataset}` v{version} cannot be read");
                return cors(problem::response(StatusCode::SERVICE_UNAVAILABLE, "index_unavailable", &detail));
            }
        }
    }
    let refs: Vec<&Shard> = shards.iter().map(Arc::as_ref).collect();
    let searched = match &locale {
        Some(language) => shared::search_preferring(&refs, &directory.settings, &folded, limit, language),
        None => shared::search(&refs, &directory.settings, &folded, limit),
    };
    let suggestions = match searched {
        Ok(found) => found,
        Err(err) => {
            return cors(problem::response(StatusCode::SERVICE_UNAVAILABLE, "index_unavailable", &err.to_string()));
        }
    };
    // Folding may lengthen text (`ﬁ` is two letters); the core takes up to 200 characters.
    let reported = folded.char_indices().nth(MAX_QUERY_CHARS).map_or(folded.as_str(), |(cut, _)| &folded[..cut]);
    events.push_flagged(
        host,
        KIND,
        &[("project", project), ("index", index), ("query", reported)],
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
    let cache_control = if claims.is_some() { PRIVATE_CACHE_CONTROL } else { CACHE_CONTROL };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    headers.insert(header::VARY, HeaderValue::from_static("Cookie, X-Verge-Session"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if request.method() == Method::HEAD {
        response.body_mut().clear();
    }
    response
}

/// `pt` of `pt-BR`, lower case.
fn primary_language(tag: &str) -> String {
    tag.split('-').next().unwrap_or_default().to_ascii_lowercase()
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use verge_shared::autocomplete::{BuildTerm, Curation, Settings};
    use verge_shared::kv::{MANIFEST_KEY, Manifest};

    use super::*;
    use crate::router::tests::{FakeHost, text};

    fn host() -> FakeHost {
        let terms: Vec<BuildTerm> = [("Zürich", 421_878), ("Zug", 30_934), ("Fischingen", 2_800)]
            .into_iter()
            .map(|(text, rank)| BuildTerm { text: text.into(), rank, ..BuildTerm::default() })
            .collect();
        let dataset = shared::dataset("demo", "towns");
        let mut kv = HashMap::new();
        for (part, bytes) in shared::build(&terms, &Curation::default(), &Settings::default(), shared::SHARD_BUDGET) {
            kv.insert(versioned_key(&dataset, 3, &part), bytes);
        }
        let mut manifest = Manifest { snapshot: 1, datasets: Vec::new() };
        manifest.set(&dataset, 3, "h");
        kv.insert(MANIFEST_KEY.to_owned(), manifest.encode());
        FakeHost { kv, ..FakeHost::default() }
    }

    fn ask(host: &FakeHost, uri: &str, headers: &[(&str, &str)]) -> Response<Body> {
        let mut request = Request::builder().uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        futures_executor::block_on(crate::router::handle(host, request.body(Vec::new()).unwrap()))
    }

    #[test]
    fn answers_with_cors_caching_and_a_reported_query() {
        let host = host();
        let response = ask(&host, "/autocomplete/v1/demo/towns?q=zuirch", &[]);
        assert_eq!(response.status(), StatusCode::OK, "{}", text(&response));
        assert_eq!(
            text(&response),
            r#"{"index":"towns","query":"zuirch","suggestions":[{"text":"Zürich","highlight":{"start":0,"end":6},"typos":1,"pinned":false,"trending":false}]}"#
        );
        assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(response.headers()[header::ETAG], "\"ac-3\"");
        let unchanged = ask(&host, "/autocomplete/v1/demo/towns?q=zu", &[("if-none-match", "W/\"ac-3\"")]);
        assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
        assert!(unchanged.body().is_empty());
        let sent = String::from_utf8(host.sent.borrow()[0].clone()).unwrap();
        assert!(sent.contains(r#""kind":"autocomplete.query""#), "{sent}");
        assert!(sent.contains(r#""data":{"project":"demo","index":"towns","query":"zuirch","empty":false}"#), "{sent}");
    }

    #[test]
    fn a_query_that_folds_longer_is_reported_at_the_core_s_length() {
        let host = host();
        let response = ask(&host, &format!("/autocomplete/v1/demo/towns?q={}", "%EF%AC%81".repeat(150)), &[]);
        assert_eq!(response.status(), StatusCode::OK, "{}", text(&response));
        let sent: serde_json::Value = serde_json::from_slice(&host.sent.borrow()[0]).unwrap();
        let query = sent["events"][0]["data"]["query"].as_str().unwrap();
        assert_eq!(query.chars().count(), MAX_QUERY_CHARS);
        assert!(query.starts_with("fifi"));
    }

    #[test]
    fn bad_queries_and_unknown_indexes_are_problems_cors() {
        let host = host();
        for (uri, status, code) in [
            ("/autocomplete/v1/demo/towns", 400, "missing_query"),
            ("/autocomplete/v1/demo/towns?q=%20-", 400, "empty_query"),
            ("/autocomplete/v1/demo/towns?q=%E0%A4", 400, "invalid_query"),
            ("/autocomplete/v1/demo/towns?q=zu&limit=x", 400, "invalid_limit"),
            ("/autocomplete/v1/demo/other?q=zu", 404, "index_not_found"),
            ("/autocomplete/v1/Demo/towns?q=zu", 404, "route_not_found"),
        ] {
            let response = ask(&host, uri, &[]);
            assert_eq!(response.status().as_u16(), status, "{uri}: {}", text(&response));
            assert!(text(&response).contains(&format!("\"code\":\"{code}\"")), "{uri}: {}", text(&response));
        }
        let post = futures_executor::block_on(crate::router::handle(
            &host,
            Request::builder().method(Method::POST).uri("/autocomplete/v1/demo/towns?q=zu").body(Vec::new()).unwrap(),
        ));
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(host.sent.borrow().is_empty(), "refused queries are not reported");
    }
}
