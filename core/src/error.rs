//! Every error the API returns: RFC 9457 `application/problem+json` with a stable `code`.
//!
//! Handlers return `Result<_, ApiError>`; domain errors convert into it with `From`, and
//! internal failures are logged with their cause while the client sees only a generic
//! detail and the request id to quote.

use std::borrow::Cow;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document as Verge sends it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:verge:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable error code.
    pub code: String,
    /// Per-field problems for validation errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// JSON pointer or parameter name of the offending field.
    pub field: String,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    detail: String,
    errors: Vec<FieldError>,
    /// Seconds for a `Retry-After` header (429 and 503).
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, code: Cow::Borrowed(code), detail: detail.into(), errors: Vec::new(), retry_after: None }
    }

    /// 429: the caller is over a quota; it may try again after `retry_after_secs`.
    pub fn too_many_requests(code: &'static str, detail: impl Into<String>, retry_after_secs: u64) -> Self {
        ApiError { retry_after: Some(retry_after_secs), ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, detail) }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// A request that parsed but failed validation; `errors` says where.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        ApiError { errors, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", detail) }
    }

    /// The same error with another `detail`.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// Logs `cause` and answers 500 without revealing it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; quote the x-request-id header when reporting it",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub(crate) fn detail(&self) -> &str {
        &self.detail
    }

    /// The fields a validation error names (empty for other errors).
    pub(crate) fn field_errors(&self) -> &[FieldError] {
        &self.errors
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// The problem document this error answers with (also used inside bulk results).
    pub(crate) fn into_problem(self) -> Problem {
        Problem {
            kind: format!("urn:verge:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code.into_owned(),
            errors: self.errors,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry_after = self.retry_after;
        let problem = self.into_problem();
        let mut response = (status, Json(problem)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"verge\""));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            // The database is down or restarting, not the request at fault: say so, with
            // when to try again, so clients retry instead of reporting a bug. The pool
            // reconnects by itself once the database is back.
            err if database_unreachable(&err) => {
                tracing::warn!(error = %err, "database unreachable");
                ApiError {
                    retry_after: Some(1),
                    ..Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "database_unavailable",
                        "the database cannot be reached at the moment; try again shortly",
                    )
                }
            }
            err => ApiError::internal(format_args!("database: {err}")),
        }
    }
}

impl From<crate::cache::CacheError> for ApiError {
    fn from(err: crate::cache::CacheError) -> Self {
        match err {
            // Redis down or restarting: a retry shortly will do, as for the database.
            crate::cache::CacheError::Backend(_) => {
                tracing::warn!(error = %err, "cache unreachable");
                ApiError {
                    retry_after: Some(1),
                    ..Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "cache_unavailable",
                        "the cache cannot be reached at the moment; try again shortly",
                    )
                }
            }
            err => ApiError::internal(err),
        }
    }
}

/// A lost or refused connection, or a server shutting down or starting up (SQLSTATE
/// classes 08 and 57P), as opposed to an error in the statement.
fn database_unreachable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// The code and detail for an error response that carried no problem body of its own
/// (the router's 404/405, the body-limit layer's 413, a caught panic).
pub(crate) fn problem_for_status(status: StatusCode) -> ApiError {
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => ("route_not_found", "no route matches this path"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this path does not accept this method"),
        StatusCode::PAYLOAD_TOO_LARGE => ("body_too_large", "the request body exceeds the configured limit"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "send the body as application/json"),
        StatusCode::INTERNAL_SERVER_ERROR => {
            ("internal", "an internal error occurred; quote the x-request-id header when reporting it")
        }
        _ => ("http_error", "the request failed"),
    };
    ApiError::new(status, code, detail)
}

/// `axum::Json` for the API's bodies, which are all JSON objects, with rejections answered
/// as problem documents.
///
/// Anything else is refused before it reaches serde: a derived struct would otherwise also
/// take its fields as an array, in order, which no client means and the schema forbids.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(is_json_type);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "body_too_large" } else { "invalid_body" };
            ApiError::new(status, code, rejection.body_text())
        })?;
        json_object(&bytes).map(ApiJson)
    }
}

/// A request body that must be one JSON object of type `T`, with `ApiJson`'s errors (the
/// rate-limit check's fast lane parses with it too, so its answers are the same).
pub(crate) fn json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Anything but an object is refused before serde: a derived struct would otherwise
    // also take its fields as an array, in order.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b != b'{') {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "the body must be a JSON object"));
    }
    // Plain serde first: axum's `Json` tracks the path through the document as it goes
    // (for the error's pointer), which costs allocations on every request. A body that
    // fails is parsed again by it, for the same error with its path.
    match serde_json::from_slice::<T>(bytes) {
        Ok(value) => Ok(value),
        Err(_) => match Json::<T>::from_bytes(bytes) {
            Ok(Json(value)) => Ok(value),
            Err(rejection) => Err(json_rejection(rejection)),
        },
    }
}

/// `application/json` or `application/<anything>+json`, any case, parameters ignored.
pub(crate) fn is_json_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().as_bytes();
    let (kind, subtype) = essence.split_at(essence.len().min(12));
    kind.eq_ignore_ascii_case(b"application/")
        && (subtype.eq_ignore_ascii_case(b"json")
            || (subtype.len() >= 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case(b"+json")))
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let code = match &rejection {
        JsonRejection::JsonDataError(_) => "invalid_body",
        JsonRejection::JsonSyntaxError(_) => "invalid_json",
        JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        _ => "invalid_body",
    };
    ApiError::new(status, code, rejection.body_text())
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// `axum::extract::Query`, with rejections answered as problem documents.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|rejection: QueryRejection| ApiError::bad_request("invalid_query", rejection.body_text()))
    }
}

/// For PATCH bodies: `Option<Option<T>>` that tells a member set to `null` (`Some(None)`)
/// from one left out (`None`). Use with `#[serde(default, with = "…")]`.
pub(crate) mod null_or_absent {
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_media_types_are_told_apart_without_case() {
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/merge-patch+json ",
            "application/problem+JSON",
        ] {
            assert!(super::is_json_type(json), "{json}");
        }
        for other in
            ["text/plain", "application/jsonx", "application/xml", "application/", "applicationjson", "text/x+json", ""]
        {
            assert!(!super::is_json_type(other), "{other}");
        }
    }
}
