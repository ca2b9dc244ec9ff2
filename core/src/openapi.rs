//! The OpenAPI 3.1 document, generated from the handlers' annotations and served at
//! `/openapi.json`. Only the parts no handler can say (title, security scheme) live here.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

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
    )
)]
pub(crate) struct ApiDoc;

struct AdminKeyScheme;

impl Modify for AdminKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("admin_key", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

pub(crate) async fn serve(doc: Arc<String>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc.as_str().to_owned()).into_response()
}
