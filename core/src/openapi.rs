//! The OpenAPI 3.1 document, generated from the handlers' annotations and served at
//! `/openapi.json`. Only the parts no handler can say live here: the title, the security
//! scheme, and the problems every operation can answer whatever its handler does (a
//! malformed request, a missing key, an unknown id, a body too large or not JSON), which
//! [`complete`] adds so that each handler documents only its own outcomes.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use crate::error::PROBLEM_JSON;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Verge core API",
        description = "Admin API of the Verge core. Every `/v1` route needs `Authorization: Bearer <admin key>`; errors are RFC 9457 problem documents with a stable `code`.",
    ),
    modifiers(&AdminKeyScheme),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "keys", description = "Admin API keys"),
        (name = "audit", description = "Audit log of administrative writes"),
        (name = "events", description = "Events sent back by edges"),
        (name = "notifications", description = "What the core reports happened (alerts, …), in order"),
        (name = "customers", description = "Customer records, search, history, export and erasure (admin key)"),
        (name = "autocomplete", description = "Autocomplete indexes, terms, curation and trending (admin key); queries are answered by the edge"),
        (name = "catalog", description = "Products, variants, prices, categories, collections and price lists (admin key); storefronts read them at the edge"),
        (name = "orders", description = "Checkout with idempotency keys, the order saga, cancellation, fulfilment, refunds and live events (admin key, or a customer's own)"),
        (name = "webhooks", description = "Endpoints that receive order events, signed per Standard Webhooks, and their delivery log (admin key)"),
        (name = "jobs", description = "The durable job queue behind every asynchronous step: inspect, retry and discard jobs (admin key)"),
        (name = "inventory", description = "Stock per SKU and location, adjustments, and reservations that never oversell (admin key)"),
        (name = "sessions", description = "Customer sign-in, sessions and tokens: public per-project routes, no admin key"),
    )
)]
pub(crate) struct ApiDoc;

struct AdminKeyScheme;

impl Modify for AdminKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("admin_key", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        // A customer's PASETO access token, as a bearer token or the `verge_session` cookie.
        components.add_security_scheme("customer_token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// Makes every problem answer `application/problem+json` (what the server sends) and adds
/// the problems the middleware and extractors answer on every operation that can meet them.
pub(crate) fn complete(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            complete_operation(path, operation);
        }
    }
}

fn complete_operation(path: &str, operation: &mut Operation) {
    for response in operation.responses.responses.values_mut() {
        if let RefOr::T(response) = response
            && let Some(content) = response.content.shift_remove("application/json")
        {
            let is_problem =
                matches!(&content.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/schemas/Problem"));
            let media_type = if is_problem { PROBLEM_JSON } else { "application/json" };
            response.content.insert(media_type.to_owned(), content);
        }
    }
    // The customer routes under /auth meet the same extractors and middleware (bar the
    // admin key, whose 401/403 become a customer token's).
    if !path.starts_with("/v1/") && !path.starts_with("/auth/") {
        return;
    }
    let mut add = |status: &str, description: &str| {
        operation.responses.responses.entry(status.to_owned()).or_insert_with(|| {
            let mut response = utoipa::openapi::Response::new(description);
            response.content.insert(PROBLEM_JSON.to_owned(), Content::new(Some(Ref::from_schema_name("Problem"))));
            RefOr::T(response)
        });
    };
    add("400", "Malformed request: a query parameter, path segment or body that does not parse");
    add("401", "Missing or invalid key");
    add("403", "Key lacks the scope");
    add(
        "503",
        "The database or cache cannot be reached for now (`database_unavailable`, `cache_unavailable`); `Retry-After` says when to try again",
    );
    if path.contains('{') {
        add("404", "Nothing with this id");
    }
    let has_query = operation.parameters.iter().flatten().any(|p| p.parameter_in == ParameterIn::Query);
    if has_query && operation.request_body.is_none() {
        add("422", "A query parameter out of its range; nothing was read");
    }
    if operation.request_body.is_some() {
        add("413", "Body larger than the configured limit");
        add("415", "Body not sent as `application/json`");
        add("422", "Body that parses but is invalid; nothing was changed");
    }
}

pub(crate) async fn serve(doc: Arc<String>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc.as_str().to_owned()).into_response()
}
