//! Envoy's rate limit service, gRPC `envoy.service.ratelimit.v3.RateLimitService/
//! ShouldRateLimit`, on the core's own port (HTTP/2 without TLS, as envoy's `envoy_grpc`
//! cluster speaks it), so an Envoy or Istio gateway can use Verge as its rate limit service.
//!
//! Each descriptor is decided by `check::decide`, exactly as `POST /v1/ratelimit/check`
//! decides it (one Redis round trip for all of a call's descriptors), and counted in the
//! same statistics. The caller sends a key with `ratelimit:check` as gRPC metadata
//! (`authorization: Bearer …`, envoy's `initial_metadata`). The messages are written out
//! here with their field numbers from envoy's `rls.proto`, rather than generated, so the
//! build needs no `protoc`.

use std::future::Future;
use std::pin::Pin;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use tonic::{Code, Status};

use super::check::{self, MAX_COST, MAX_DESCRIPTORS, Outcome, Weighed};
use super::{Checkers, domain_set};
use crate::keys::Grants;
use crate::state::AppState;

/// The gRPC method's path.
pub(crate) const PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// `envoy.service.ratelimit.v3.RateLimitRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub(crate) domain: String,
    #[prost(message, repeated, tag = "2")]
    pub(crate) descriptors: Vec<RateLimitDescriptor>,
    /// Hits each descriptor adds; 0 means 1.
    #[prost(uint32, tag = "3")]
    pub(crate) hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub(crate) entries: Vec<Entry>,
    /// A limit set in envoy's route configuration; Verge's policies decide instead.
    #[prost(message, optional, tag = "2")]
    pub(crate) limit: Option<RateLimitOverride>,
    /// `google.protobuf.UInt64Value`: this descriptor's own hits, over the request's.
    #[prost(message, optional, tag = "3")]
    pub(crate) hits_addend: Option<UInt64Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Entry {
    #[prost(string, tag = "1")]
    pub(crate) key: String,
    #[prost(string, tag = "2")]
    pub(crate) value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RateLimitOverride {
    #[prost(uint32, tag = "1")]
    pub(crate) requests_per_unit: u32,
    #[prost(int32, tag = "2")]
    pub(crate) unit: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct UInt64Value {
    #[prost(uint64, tag = "1")]
    pub(crate) value: u64,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RateLimitResponse {
    /// [`CODE_OK`] or [`CODE_OVER_LIMIT`].
    #[prost(int32, tag = "1")]
    pub(crate) overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub(crate) statuses: Vec<DescriptorStatus>,
    /// `envoy.config.core.v3.HeaderValue`s for the client's response.
    #[prost(message, repeated, tag = "3")]
    pub(crate) response_headers_to_add: Vec<HeaderValue>,
}

pub(crate) const CODE_OK: i32 = 1;
pub(crate) const CODE_OVER_LIMIT: i32 = 2;

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DescriptorStatus {
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    #[prost(message, optional, tag = "2")]
    pub(crate) current_limit: Option<RateLimit>,
    #[prost(uint32, tag = "3")]
    pub(crate) limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub(crate) duration_until_reset: Option<Duration>,
}

/// `RateLimitResponse.RateLimit`: `requests_per_unit` per `unit`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RateLimit {
    #[prost(string, tag = "3")]
    pub(crate) name: String,
    #[prost(uint32, tag = "1")]
    pub(crate) requests_per_unit: u32,
    /// 0 unknown, 1 second, 2 minute, 3 hour, 4 day, 7 week.
    #[prost(int32, tag = "2")]
    pub(crate) unit: i32,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Duration {
    #[prost(int64, tag = "1")]
    pub(crate) seconds: i64,
    #[prost(int32, tag = "2")]
    pub(crate) nanos: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HeaderValue {
    #[prost(string, tag = "1")]
    pub(crate) key: String,
    #[prost(string, tag = "2")]
    pub(crate) value: String,
}

/// The unit envoy names a period by, if it is exactly one.
fn unit_of(period_seconds: u32) -> i32 {
    match period_seconds {
        1 => 1,
        60 => 2,
        3600 => 3,
        86_400 => 4,
        604_800 => 7,
        _ => 0,
    }
}

/// The route: one gRPC unary call per HTTP/2 request.
pub(crate) async fn should_rate_limit(State(state): State<AppState>, request: Request) -> Response {
    let codec = tonic_prost::ProstCodec::<RateLimitResponse, RateLimitRequest>::default();
    let mut grpc = tonic::server::Grpc::new(codec);
    grpc.unary(Decider(state), request).await.into_response()
}

struct Decider(AppState);

type Answer = Result<tonic::Response<RateLimitResponse>, Status>;

impl tonic::server::UnaryService<RateLimitRequest> for Decider {
    type Response = RateLimitResponse;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&mut self, request: tonic::Request<RateLimitRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move { answer(&state, request).await })
    }
}

async fn answer(state: &AppState, request: tonic::Request<RateLimitRequest>) -> Answer {
    let headers = request.metadata().clone().into_headers();
    let principal = crate::keys::principal_for(state, &headers)
        .await
        .map_err(|err| Status::new(Code::Unauthenticated, err.to_string()))?;
    principal.require(Checkers::SCOPES).map_err(|err| Status::new(Code::PermissionDenied, err.to_string()))?;
    let request = request.into_inner();
    let descriptors = descriptors(&request)?;
    let set = domain_set(&state.db, &request.domain)
        .await
        .map_err(|err| Status::new(Code::Unavailable, format!("policies unavailable: {err}")))?;
    let now = crate::time::unix_micros();
    let results = check::decide(&state.cache, &set, &request.domain, &descriptors, now).await;
    check::record(state, &results, now);
    Ok(tonic::Response::new(response(&results)))
}

/// The descriptors as `check::decide` takes them, checked as the HTTP route checks them.
fn descriptors(request: &RateLimitRequest) -> Result<Vec<Weighed<'_>>, Status> {
    let invalid = |message: String| Status::new(Code::InvalidArgument, message);
    let domain = &request.domain;
    let domain_ok = (1..=64).contains(&domain.len())
        && domain.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if !domain_ok {
        return Err(invalid("domain: must be 1 to 64 of a-z, 0-9, `_`, `-` and `.`".into()));
    }
    if request.descriptors.is_empty() || request.descriptors.len() > MAX_DESCRIPTORS {
        return Err(invalid(format!("descriptors: must hold 1 to {MAX_DESCRIPTORS}")));
    }
    let base = if request.hits_addend == 0 { 1 } else { u64::from(request.hits_addend) };
    request
        .descriptors
        .iter()
        .enumerate()
        .map(|(i, descriptor)| {
            if descriptor.entries.is_empty() || descriptor.entries.len() > 9 {
                return Err(invalid(format!("descriptors[{i}]: must hold 1 to 9 entries")));
            }
            let entries_ok = descriptor
                .entries
                .iter()
                .all(|e| (1..=64).contains(&e.key.len()) && (1..=512).contains(&e.value.len()));
            if !entries_ok {
                return Err(invalid(format!("descriptors[{i}]: keys are 1 to 64 characters, values 1 to 512")));
            }
            let hits = descriptor.hits_addend.as_ref().map_or(base, |h| h.value);
            let cost = u32::try_from(hits).ok().filter(|c| (1..=MAX_COST).contains(c));
            let cost = cost.ok_or_else(|| invalid(format!("descriptors[{i}]: hits must be 1 to {MAX_COST}")))?;
            Ok((descriptor.entries.iter().map(|e| (e.key.as_str(), e.value.as_str())).collect(), cost))
        })
        .collect()
}

fn response(results: &[Outcome]) -> RateLimitResponse {
    let over = results.iter().any(|r| r.blocks);
    let statuses = results
        .iter()
        .map(|r| DescriptorStatus {
            code: if r.blocks { CODE_OVER_LIMIT } else { CODE_OK },
            current_limit: r.policy.as_ref().zip(r.limit).zip(r.period_seconds).map(|((id, limit), period)| {
                RateLimit { name: id.clone(), requests_per_unit: limit, unit: unit_of(period) }
            }),
            limit_remaining: r.remaining.unwrap_or(0),
            duration_until_reset: r.reset_seconds.map(|seconds| Duration { seconds: seconds as i64, nanos: 0 }),
        })
        .collect();
    let applied: Vec<&(String, String)> = results.iter().filter_map(|r| r.fields.as_ref()).collect();
    let mut response_headers_to_add = Vec::new();
    if !applied.is_empty() {
        let join = |pick: fn(&(String, String)) -> &str| applied.iter().map(|f| pick(f)).collect::<Vec<_>>().join(", ");
        response_headers_to_add.push(HeaderValue { key: "ratelimit-policy".into(), value: join(|f| &f.0) });
        response_headers_to_add.push(HeaderValue { key: "ratelimit".into(), value: join(|f| &f.1) });
    }
    if over {
        let wait = results.iter().filter(|r| r.blocks).filter_map(|r| r.retry_after_seconds).max();
        if let Some(wait) = wait {
            response_headers_to_add.push(HeaderValue { key: "retry-after".into(), value: wait.to_string() });
        }
    }
    RateLimitResponse { overall_code: if over { CODE_OVER_LIMIT } else { CODE_OK }, statuses, response_headers_to_add }
}
