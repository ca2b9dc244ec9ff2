//! The admin console at `/console`: server-rendered pages (maud) for operators, served by the
//! core from its own binary, with no front-end build and no script needed to use it.
//!
//! The console owns no business rules. Every read and write is a request to the core's own
//! `/v1` router, made in process (`Console::api`) with the signed-in operator's `Principal`
//! (`operators::Operator::principal`): the same validation, the same scopes, the same audit
//! trail under the operator's id, and the same problem details, which the pages show next
//! to the fields they name. Pages are grouped by capability, like the API.

mod account;
mod audit;
mod chart;
mod flags;
mod imports;
mod links;
mod me;
mod overview;
mod page;
mod resources;
mod team;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tower::ServiceExt;

use crate::operators::Operator;
use crate::state::AppState;

pub(crate) use account::{Post, SignedIn};

/// What every console handler reaches: the core's state and its `/v1` router.
#[derive(Clone)]
pub(crate) struct Console {
    pub(crate) state: AppState,
    api: Router,
}

/// The console's routes; `api` is the core's documented router with its state, which the
/// console calls in process.
pub(crate) fn router(state: AppState, api: Router) -> Router<AppState> {
    let console = Console { state, api };
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/overview") }))
        .route("/console/assets/console.css", get(page::stylesheet))
        .route("/console/sign-in", get(account::sign_in_page).post(account::sign_in))
        .route("/console/sign-out", post(account::sign_out))
        .route("/console/invite/{token}", get(account::invitation_page).post(account::accept_invitation))
        .route("/console/account", get(me::page))
        .route("/console/account/totp", post(me::totp))
        .route("/console/overview", get(overview::page))
        .route("/console/links", get(links::list).post(links::create))
        .route("/console/links/export.csv", get(links::export))
        .route("/console/links/import", get(imports::page).post(imports::import))
        .route("/console/links/{id}", get(links::detail).post(links::update))
        .route("/console/links/{id}/delete", post(links::delete))
        .route("/console/links/{id}/qr.svg", get(links::qr))
        .route("/console/flags", get(flags::environments).post(flags::create_environment))
        .route("/console/flags/{project}/{env}", get(flags::environment))
        .route("/console/flags/{project}/{env}/flags", post(flags::save_flag))
        .route("/console/flags/{project}/{env}/flags/{key}/kill", post(flags::kill))
        .route("/console/flags/changes/{id}/{verdict}", post(flags::review))
        .route("/console/audit", get(audit::page))
        .route("/console/operators", get(team::page).post(team::invite))
        .route("/console/operators/{id}/disable", post(team::disable))
        .route("/console/{section}", get(resources::section))
        .route("/console/{section}/{table}", post(resources::create))
        .route("/console/{section}/{table}/{id}", get(resources::item))
        .route("/console/{section}/{table}/{id}/{action}", post(resources::act))
        .with_state(console)
        .layer(axum::middleware::map_response(harden))
}

/// Headers on every console answer: pages hold what only operators may see (never cached,
/// never framed, no referrer beyond the console), and may load only the console's own
/// stylesheet and images; there is no script to allow.
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        ("cache-control", "no-store"),
        (
            "content-security-policy",
            "default-src 'none'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
    ];
    for (name, value) in set {
        if !headers.contains_key(name) {
            headers.insert(name, axum::http::HeaderValue::from_static(value));
        }
    }
    response
}

/// An answer of the API, read as JSON.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
    pub(crate) bytes: axum::body::Bytes,
}

impl Reply {
    /// A refusal made by the console itself (a form it cannot send), shaped like the API's.
    pub(crate) fn refusal(status: StatusCode, detail: &str) -> Reply {
        Reply {
            status,
            headers: HeaderMap::new(),
            body: serde_json::json!({ "detail": detail }),
            bytes: Default::default(),
        }
    }

    pub(crate) fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The problem's detail, when the API refused.
    pub(crate) fn detail(&self) -> Option<String> {
        (!self.ok()).then(|| self.body["detail"].as_str().unwrap_or("the request failed").to_owned())
    }

    /// The message for the field at JSON pointer `pointer`, when the API named it.
    /// (The API names fields by JSON pointer or by name, `/utm/source` or `utm.source`.)
    pub(crate) fn field_error(&self, pointer: &str) -> Option<String> {
        let same = |field: &str| field.trim_start_matches('/').replace('.', "/") == pointer.trim_start_matches('/');
        self.body["errors"]
            .as_array()?
            .iter()
            .find(|e| e["field"].as_str().is_some_and(same))
            .and_then(|e| e["message"].as_str())
            .map(str::to_owned)
    }
}

impl Console {
    /// Sends `method uri` with `body` to the `/v1` router as `who`.
    pub(crate) async fn api(&self, who: &Operator, method: Method, uri: &str, body: Option<&Value>) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let body = body.map_or_else(Body::empty, |value| Body::from(value.to_string()));
        let mut request = request.body(body).expect("console requests are well formed");
        request.extensions_mut().insert(who.principal());
        let response = match self.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status: parts.status, headers: parts.headers, body, bytes }
    }

    pub(crate) async fn get(&self, who: &Operator, uri: &str) -> Reply {
        self.api(who, Method::GET, uri, None).await
    }
}

/// A page for an answer the console cannot show (the API refused a read, or a server error).
pub(crate) fn failure(session: &crate::operators::sessions::Session, reply: &Reply) -> Response {
    let status = if reply.status.is_success() { StatusCode::BAD_GATEWAY } else { reply.status };
    let detail = reply.detail().unwrap_or_else(|| "unexpected answer".into());
    (status, page::page(Some(session), "Error", page::Nav::None, page::problem(&detail))).into_response()
}

/// Percent-encodes one path segment or query value.
pub(crate) fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
