//! What every request to the core gets on its way through, wherever it is served: an id
//! (`x-request-id`, the client's or a fresh one), a tracing span, and the answer when it
//! runs out of time. The middleware stack (`server`) and the rate-limit check's fast lane
//! (`ratelimit::lane`) both use them, so a request looks the same in logs either way.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, StatusCode};
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::error::ApiError;

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids: 128 random bits as a UUID v4, from the thread's generator rather than a
/// `getrandom` system call per request (tower-http's `MakeRequestUuid`), which showed in
/// the global rate-limit tier's profile. Ids need to be unique, not secret.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        Some(RequestId::new(new_request_id()))
    }
}

/// A fresh request id (see [`RandomRequestId`]).
pub(crate) fn new_request_id() -> axum::http::HeaderValue {
    let bits: u128 = rand::random();
    // Version 4, variant 1, as MakeRequestUuid wrote them.
    let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    // 8-4-4-4-12 hex digits, written in place (two `format!`s showed in the profile).
    let mut id = [b'-'; 36];
    let digits = (0..36).filter(|i| ![8, 13, 18, 23].contains(i));
    for (n, at) in digits.enumerate() {
        id[at] = b"0123456789abcdef"[((bits >> (124 - 4 * n)) & 0xf) as usize];
    }
    axum::http::HeaderValue::from_bytes(&id).expect("hex digits and dashes are a valid header value")
}

pub(crate) fn request_span(req: &Request) -> tracing::Span {
    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
    // The path only: query strings may carry tokens and personal data.
    tracing::info_span!("request", id, method = %req.method(), path = req.uri().path(), key = tracing::field::Empty)
}

/// The answer to a request abandoned after `limit`.
pub(crate) fn timed_out(limit: Duration) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "request_timeout",
        format!("the request took longer than {} ms and was abandoned", limit.as_millis()),
    )
}
