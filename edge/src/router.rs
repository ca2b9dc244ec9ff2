//! The one router every platform runs: `(method, path)` to a handler.
//!
//! Paths under `/__verge/` belong to Verge itself; capability routes are added here as
//! capabilities arrive. Anything unmatched is a problem+json 404 (405 with `Allow` when
//! the path exists under another method).

use http::{Method, Request, Response, StatusCode, header};
use verge_shared::kv::{MANIFEST_KEY, Manifest};

pub use crate::body::Body;
use crate::events::Events;
use crate::host::Host;
use crate::problem;
use crate::ratelimit::Facts;
use crate::request::request_host;
use crate::settings::edge_settings;

/// Answers one request, then hands the events it produced to the platform as one batch.
pub async fn handle<H: Host>(host: &H, request: Request<Body>) -> Response<Body> {
    let mut events = Events::new(host.reports_events());
    let response = route(host, &request, &mut events).await;
    if let Some(batch) = events.into_batch() {
        host.send_after_response(batch);
    }
    response
}

async fn route<H: Host>(host: &H, request: &Request<Body>, events: &mut Events) -> Response<Body> {
    let path = request.uri().path();
    match path {
        "/__verge/health" => match *request.method() {
            Method::GET | Method::HEAD => health(host).await,
            _ => problem::method_not_allowed("GET, HEAD"),
        },
        crate::ratelimit::check::PATH => crate::ratelimit::check::serve(host, request, events).await,
        crate::sessions::PATH => crate::sessions::serve(host, request).await,
        _ if path.starts_with(crate::autocomplete::PREFIX) => crate::autocomplete::serve(host, request, events).await,
        _ if path.starts_with(crate::catalog::PREFIX) => crate::catalog::serve(host, request, events).await,
        _ if path.starts_with(crate::flags::PREFIX) => {
            // Preflights are not counted: a browser sends one before its evaluations.
            let allowed = if request.method() == Method::POST {
                let api_key = crate::flags::client_token(request);
                match crate::ratelimit::enforce(host, &Facts::of(host, request, "ofrep", api_key), events).await {
                    Ok(allowed) => Some(allowed),
                    Err(refused) => return crate::request::cors(refused),
                }
            } else {
                None
            };
            let mut response = crate::flags::serve(host, request, &path[crate::flags::PREFIX.len()..], events).await;
            if let Some(allowed) = allowed {
                allowed.annotate(&mut response);
            }
            response
        }
        _ => {
            let code = link_code(path);
            if let Some(code) = code {
                let allowed =
                    match crate::ratelimit::enforce(host, &Facts::of(host, request, "links", None), events).await {
                        Ok(allowed) => allowed,
                        Err(refused) => return refused,
                    };
                let domain = request_host(request).to_ascii_lowercase();
                if let Some(mut response) = crate::links::serve(host, request, &domain, code, events).await {
                    allowed.annotate(&mut response);
                    return response;
                }
            }
            // Unmatched paths are reported (unless the core turned it off): probes and
            // broken links show up in the core.
            if edge_settings(host).await.report_not_found {
                let domain = request_host(request);
                let fields = [("method", request.method().as_str()), ("host", domain), ("path", path)];
                events.push(host, "edge.not_found", &fields);
            }
            match code {
                // A path that could be a short link is answered as one that is not there.
                Some(code) => {
                    let detail = format!("no short link `{code}` on `{}`", request_host(request));
                    problem::response(StatusCode::NOT_FOUND, "link_not_found", &detail)
                }
                None => problem::response(StatusCode::NOT_FOUND, "route_not_found", "no route matches this path"),
            }
        }
    }
}

/// `/{code}` with a code that could be a link's (generated or alias).
fn link_code(path: &str) -> Option<&str> {
    let code = path.strip_prefix('/')?;
    let valid =
        (3..=50).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    valid.then_some(code)
}

/// What the edge sees in KV: the live snapshot and the version of each dataset.
async fn health<H: Host>(host: &H) -> Response<Body> {
    let manifest = match host.kv_get(MANIFEST_KEY).await {
        Ok(Some(bytes)) => match Manifest::decode(&bytes) {
            Ok(manifest) => Some(manifest),
            Err(err) => return problem::response(StatusCode::SERVICE_UNAVAILABLE, "bad_manifest", &err.to_string()),
        },
        Ok(None) => None,
        Err(err) => return problem::response(StatusCode::SERVICE_UNAVAILABLE, "kv_unavailable", &err.to_string()),
    };
    let mut body = String::from("{\"status\":\"ok\",\"snapshot\":");
    match &manifest {
        Some(m) => body.push_str(&m.snapshot.to_string()),
        None => body.push_str("null"),
    }
    body.push_str(",\"datasets\":{");
    for (i, dataset) in manifest.iter().flat_map(|m| &m.datasets).enumerate() {
        if i > 0 {
            body.push(',');
        }
        // Dataset names are ours: lowercase letters, digits, `/`, `-`, `_`; no escaping needed.
        body.push_str(&format!("\"{}\":{}", dataset.name, dataset.version));
    }
    body.push_str("}}");
    let mut response = Response::new(body.into_bytes());
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use verge_shared::kv::versioned_key;
    use verge_shared::settings::{self, EdgeSettings};

    use super::*;
    use crate::host::{Client, HostError};

    #[derive(Default)]
    pub(crate) struct FakeHost {
        pub(crate) kv: HashMap<String, Vec<u8>>,
        pub(crate) sent: RefCell<Vec<Vec<u8>>>,
        pub(crate) counters: RefCell<HashMap<String, i64>>,
        /// Milliseconds past the fixed start the clock has moved.
        pub(crate) elapsed_ms: std::cell::Cell<u64>,
        /// Counters that cannot answer, as when the platform's counter store is down.
        pub(crate) counters_down: bool,
        pub(crate) client: Client,
    }

    impl Host for FakeHost {
        async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
            Ok(self.kv.get(key).cloned())
        }
        async fn counter_add(&self, key: &str, delta: i64) -> Result<i64, HostError> {
            if self.counters_down {
                return Err(HostError("counters unavailable".into()));
            }
            let mut counters = self.counters.borrow_mut();
            let value = counters.entry(key.to_owned()).or_default();
            *value += delta;
            Ok(*value)
        }
        fn now_millis(&self) -> u64 {
            1_800_000_000_000 + self.elapsed_ms.get()
        }
        fn client(&self) -> Client {
            self.client.clone()
        }
        fn fill_random(&self, buf: &mut [u8]) {
            buf.fill(7);
        }
        fn send_after_response(&self, batch: Vec<u8>) {
            self.sent.borrow_mut().push(batch);
        }
    }

    pub(crate) fn get(host: &FakeHost, method: Method, path: &str) -> Response<Body> {
        let request = Request::builder().method(method).uri(path).body(Vec::new()).unwrap();
        futures_executor::block_on(handle(host, request))
    }

    pub(crate) fn text(response: &Response<Body>) -> &str {
        std::str::from_utf8(response.body()).unwrap()
    }

    #[test]
    fn health_shows_the_live_snapshot_and_dataset_versions() {
        let mut manifest = Manifest { snapshot: 42, datasets: Vec::new() };
        manifest.set("flags/prod", 7, "aa");
        manifest.set("rl/policies", 2, "bb");
        let host =
            FakeHost { kv: HashMap::from([(MANIFEST_KEY.to_owned(), manifest.encode())]), ..FakeHost::default() };
        let response = get(&host, Method::GET, "/__verge/health");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(text(&response), r#"{"status":"ok","snapshot":42,"datasets":{"flags/prod":7,"rl/policies":2}}"#);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert!(host.sent.borrow().is_empty(), "health sends no events");
    }

    #[test]
    fn health_before_any_publish_says_so() {
        let response = get(&FakeHost::default(), Method::GET, "/__verge/health");
        assert_eq!(text(&response), r#"{"status":"ok","snapshot":null,"datasets":{}}"#);
    }

    #[test]
    fn an_unreadable_manifest_is_a_503_problem() {
        let host = FakeHost { kv: HashMap::from([(MANIFEST_KEY.to_owned(), vec![99])]), ..FakeHost::default() };
        let response = get(&host, Method::GET, "/__verge/health");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(text(&response).contains("\"code\":\"bad_manifest\""));
    }

    #[test]
    fn unknown_routes_and_methods_are_problems() {
        let host = FakeHost::default();
        let missing = get(&host, Method::GET, "/no/such/route");
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(missing.headers()[header::CONTENT_TYPE], problem::CONTENT_TYPE);
        assert!(text(&missing).contains("\"code\":\"route_not_found\""));
        // A path shaped like a short link that is not one says so.
        let no_link = get(&host, Method::GET, "/nope");
        assert_eq!(no_link.status(), StatusCode::NOT_FOUND);
        assert!(text(&no_link).contains("\"code\":\"link_not_found\""), "{}", text(&no_link));
        let wrong = get(&host, Method::POST, "/__verge/health");
        assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(wrong.headers()[header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn unmatched_paths_are_not_reported_when_the_core_turned_it_off() {
        let mut manifest = Manifest { snapshot: 3, datasets: Vec::new() };
        manifest.set(settings::DATASET, 2, "cc");
        let off = EdgeSettings { report_not_found: false, ..EdgeSettings::default() };
        let host = FakeHost {
            kv: HashMap::from([
                (MANIFEST_KEY.to_owned(), manifest.encode()),
                (versioned_key(settings::DATASET, 2, settings::PART), off.encode()),
            ]),
            ..FakeHost::default()
        };
        assert_eq!(get(&host, Method::GET, "/nope").status(), StatusCode::NOT_FOUND);
        assert!(host.sent.borrow().is_empty());
        // An older version of the settings, no longer in the manifest, is not what counts.
        let on = EdgeSettings::default();
        let mut host = host;
        host.kv.insert(versioned_key(settings::DATASET, 1, settings::PART), on.encode());
        get(&host, Method::GET, "/nope");
        assert!(host.sent.borrow().is_empty());
    }

    #[test]
    fn an_unmatched_path_is_reported_in_one_batch_after_the_response() {
        let host = FakeHost::default();
        let request =
            Request::builder().uri("/wp-login.php?x=1").header(header::HOST, "go.example").body(Vec::new()).unwrap();
        let response = futures_executor::block_on(handle(&host, request));
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let sent = host.sent.borrow();
        assert_eq!(sent.len(), 1, "one batch per request");
        let batch: serde_json::Value = serde_json::from_slice(&sent[0]).unwrap();
        let events = batch["events"].as_array().unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event["kind"], "edge.not_found");
        assert_eq!(event["at"], "2027-01-15T08:00:00.000Z");
        assert_eq!(event["data"], serde_json::json!({"method": "GET", "host": "go.example", "path": "/wp-login.php"}));
        let id = event["id"].as_str().unwrap();
        assert_eq!(verge_shared::ids::parse_id("evt", id).unwrap(), 1_800_000_000_000);
    }

    /// An edge holding one environment's flags and a client key for it.
    fn ofrep_host() -> FakeHost {
        let dataset = "flags/web/prod";
        let set = br#"{"flags": {"beta": {"state": "ENABLED", "variants": {"on": true, "off": false},
            "defaultVariant": "off", "targeting": {"if": [{"in": [{"var": "email"}, ["a@b.c"]]}, "on", "off"]}}}}"#;
        let mut manifest = Manifest { snapshot: 1, datasets: Vec::new() };
        manifest.set(dataset, 1, "h");
        let client_key = format!("flagkeys/{}", verge_shared::flags::client_key_hash("fck_fuzz"));
        FakeHost {
            kv: HashMap::from([
                (MANIFEST_KEY.to_owned(), manifest.encode()),
                (versioned_key(dataset, 1, "flagd"), set.to_vec()),
                (client_key, dataset.as_bytes().to_vec()),
            ]),
            ..FakeHost::default()
        }
    }

    fn ofrep(host: &FakeHost, path: &str, body: Vec<u8>) -> Response<Body> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::AUTHORIZATION, "Bearer fck_fuzz")
            .body(body)
            .unwrap();
        futures_executor::block_on(handle(host, request))
    }

    #[test]
    fn ofrep_evaluates_for_a_known_client_key() {
        let host = ofrep_host();
        let response = ofrep(&host, "/ofrep/v1/evaluate/flags/beta", br#"{"context": {"email": "a@b.c"}}"#.to_vec());
        assert_eq!(response.status(), StatusCode::OK, "{}", text(&response));
        assert!(text(&response).contains("\"value\":true"), "{}", text(&response));
    }

    #[test]
    fn a_single_flag_is_answered_from_its_own_record_without_the_whole_set() {
        // Only the flag's own record is published here: reading the whole set would fail.
        let dataset = "flags/split/prod";
        let own = br#"{"flags": {"beta": {"state": "ENABLED", "variants": {"on": true, "off": false},
            "defaultVariant": "on"}}}"#;
        let mut manifest = Manifest { snapshot: 1, datasets: Vec::new() };
        manifest.set(dataset, 3, "h");
        let host = FakeHost {
            kv: HashMap::from([
                (MANIFEST_KEY.to_owned(), manifest.encode()),
                (versioned_key(dataset, 3, &verge_shared::flags::flag_part("beta")), own.to_vec()),
                (format!("flagkeys/{}", verge_shared::flags::client_key_hash("fck_fuzz")), dataset.as_bytes().to_vec()),
            ]),
            ..FakeHost::default()
        };
        let response = ofrep(&host, "/ofrep/v1/evaluate/flags/beta", b"{}".to_vec());
        assert_eq!(response.status(), StatusCode::OK, "{}", text(&response));
        assert!(text(&response).contains("\"value\":true"), "{}", text(&response));
        // A flag without a record falls back to the whole set, which is missing here.
        let missing = ofrep(&host, "/ofrep/v1/evaluate/flags/other", b"{}".to_vec());
        assert_eq!(missing.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// Whatever body and key a client sends, the answer is well-formed JSON with a
        /// status a client expects, and nothing panics.
        #[test]
        fn any_ofrep_request_gets_a_json_answer(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            json_body in "\\{(\"context\": ?(\\{(\"[a-z]{0,6}\": ?(\"[^\"]{0,8}\"|[0-9]{1,30}|null|true|\\[\\]),?){0,4}\\}|\\[\\]|\"x\"|null))?\\}",
            key in "[a-z%0-9/._~-]{0,16}",
        ) {
            let host = ofrep_host();
            for (path, body) in [
                (format!("/ofrep/v1/evaluate/flags/{key}"), body.clone()),
                (format!("/ofrep/v1/evaluate/flags/{key}"), json_body.clone().into_bytes()),
                ("/ofrep/v1/evaluate/flags".to_owned(), body.clone()),
                ("/ofrep/v1/evaluate/flags".to_owned(), json_body.clone().into_bytes()),
            ] {
                let Ok(uri) = path.parse::<http::Uri>() else { continue };
                let response = ofrep(&host, &uri.to_string(), body);
                let status = response.status().as_u16();
                proptest::prop_assert!([200, 304, 400, 404].contains(&status), "{status} for {path}: {}", text(&response));
                let parsed: Result<serde_json::Value, _> = serde_json::from_slice(response.body());
                proptest::prop_assert!(parsed.is_ok(), "not JSON for {path}: {}", text(&response));
            }
        }
    }
}
