//! The check route's fast lane: `POST /v1/ratelimit/check` without the router's general
//! middleware stack.
//!
//! The global tier is measured against raw Redis (issue 13 asks for 0.8 of its decisions
//! per second), and on that route the stack — request-id, tracing, metrics, panic, timeout,
//! body-limit and authentication layers, each a boxed future and a few allocations — cost
//! about a fifth of the core's CPU per call. The lane does the same work inline for a JSON
//! call of known length within the limit, by a key that may check, and hands anything else
//! (no or bad key, wrong scope, wrong media type, a body of unknown length or over the
//! limit) to the full router, so those refusals are the stack's own. What the lane answers
//! itself comes from the same code as the handler's: the body is parsed by `ApiJson`'s
//! `json_object` and decided by `check::run`. It keeps what the stack adds: the request id
//! (the client's or a fresh one), the request span and its "finished" log line, the request
//! metrics, a 500 problem on a panic and the request timeout. The test
//! `the_fast_lane_answers_every_check_exactly_as_the_full_router_does` holds the two ways
//! to the same answers.

use std::time::Instant;

use axum::Router;
use axum::body::HttpBody;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use tower::ServiceExt as _;
use tracing::Instrument as _;

use super::Checkers;
use super::check::{self, CheckRequest};
use crate::error::{ApiError, is_json_type, json_object, problem_for_status};
use crate::keys::{Grants as _, auth::principal_for};
use crate::requests::{REQUEST_ID, new_request_id, request_span, timed_out};
use crate::state::AppState;

const PATH: &str = "/v1/ratelimit/check";

/// `full` with the lane in front of its check route; every other request goes to `full`.
pub(crate) fn in_front_of(full: Router, state: AppState) -> Router {
    let behind = full.clone();
    let lane = tower::service_fn(move |mut req: Request| {
        let (full, state) = (behind.clone(), state.clone());
        // The full router matches the path again; left in, its match would be appended to
        // this one (`/v1/ratelimit/check/v1/ratelimit/check` in the metrics' route label).
        req.extensions_mut().remove::<MatchedPath>();
        async move {
            if req.method() != Method::POST {
                return full.oneshot(req).await;
            }
            match take(&state, req).await {
                Ok(response) => Ok(response),
                Err(req) => full.oneshot(req).await,
            }
        }
    });
    Router::new().route_service(PATH, lane).fallback_service(full)
}

/// Answers a check call, or gives the request back (whole) for the full router.
async fn take(state: &AppState, mut req: Request) -> Result<Response, Request> {
    let started = Instant::now();
    let Some(limit) = fits(state, &req) else { return Err(req) };
    let Ok(principal) = principal_for(state, req.headers()).await else { return Err(req) };
    if principal.require(Checkers::SCOPES).is_err() {
        return Err(req);
    }
    if !req.headers().contains_key(REQUEST_ID) {
        req.headers_mut().insert(REQUEST_ID, new_request_id());
    }
    let span = request_span(&req);
    span.record("key", tracing::field::display(&principal.key.id));
    let (parts, body) = req.into_parts();
    let timeout = state.config.request_timeout();
    let work = async {
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
            // The declared length did not arrive: the client is gone or lied.
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", "the request body could not be read")
        })?;
        check::run(state, json_object::<CheckRequest>(&bytes)?).await
    };
    // One deadline over reading the body and deciding, as the stack's timeout covers both.
    let answered = tokio::time::timeout(timeout, std::panic::AssertUnwindSafe(work).catch_unwind());
    let response = match answered.instrument(span.clone()).await {
        Ok(Ok(Ok(response))) => response,
        Ok(Ok(Err(error))) => error.into_response(),
        Ok(Err(_panic)) => {
            tracing::error!(parent: &span, "the rate-limit check panicked");
            problem_for_status(StatusCode::INTERNAL_SERVER_ERROR).into_response()
        }
        Err(_) => timed_out(timeout).into_response(),
    };
    let _entered = span.enter();
    Ok(finish(state, &parts, response, started))
}

/// The body limit when the request's body has a known length within it (hyper knows it
/// from `Content-Length`); a chunked body, or one over the limit, takes the full router's
/// way to its answer.
fn fits(state: &AppState, req: &Request) -> Option<usize> {
    let limit = state.config.body_limit_bytes;
    let is_json = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(is_json_type);
    let length = HttpBody::size_hint(req.body()).exact()?;
    (is_json && length <= limit as u64).then_some(limit)
}

/// What the stack adds on the way out: the request id, the metrics and the log line.
fn finish(state: &AppState, parts: &axum::http::request::Parts, mut response: Response, started: Instant) -> Response {
    if let Some(id) = parts.headers.get(REQUEST_ID) {
        response.headers_mut().insert(REQUEST_ID, id.clone());
    }
    // As axum's router does for the routes behind it; hyper would add it on the wire.
    if let Some(length) = HttpBody::size_hint(response.body()).exact() {
        response.headers_mut().insert(header::CONTENT_LENGTH, length.into());
    }
    let status = response.status();
    state.metrics.observe_request(&parts.method, PATH.to_owned(), status, started);
    tracing::info!(latency = ?started.elapsed(), status = status.as_u16(), "finished processing request");
    response
}
