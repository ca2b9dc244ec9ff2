//! Envoy's rate limit service (RLS v3) on the core's port: a gRPC client written here from
//! envoy's `rls.proto` field numbers, framing its own messages over HTTP/2 as envoy does,
//! asks `ShouldRateLimit` and gets the same decisions as `POST /v1/ratelimit/check`.

mod common;

use bytes::Bytes;
use common::fresh_config;
use common::process::{CoreForEdges, start_core_for_edges};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

const PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

#[derive(Clone, PartialEq, prost::Message)]
struct RateLimitRequest {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(message, repeated, tag = "2")]
    descriptors: Vec<Descriptor>,
    #[prost(uint32, tag = "3")]
    hits_addend: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Descriptor {
    #[prost(message, repeated, tag = "1")]
    entries: Vec<Entry>,
    #[prost(message, optional, tag = "3")]
    hits_addend: Option<UInt64Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Entry {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct UInt64Value {
    #[prost(uint64, tag = "1")]
    value: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RateLimitResponse {
    #[prost(int32, tag = "1")]
    overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    statuses: Vec<DescriptorStatus>,
    #[prost(message, repeated, tag = "3")]
    response_headers_to_add: Vec<HeaderValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DescriptorStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(message, optional, tag = "2")]
    current_limit: Option<RateLimit>,
    #[prost(uint32, tag = "3")]
    limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    duration_until_reset: Option<Duration>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RateLimit {
    #[prost(string, tag = "3")]
    name: String,
    #[prost(uint32, tag = "1")]
    requests_per_unit: u32,
    #[prost(int32, tag = "2")]
    unit: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Duration {
    #[prost(int64, tag = "1")]
    seconds: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HeaderValue {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

const OK: i32 = 1;
const OVER_LIMIT: i32 = 2;
/// An hour-long window, so no test run straddles a window's end.
const HOUR: i32 = 3;

/// One unary call over a fresh HTTP/2 connection (prior knowledge, as envoy's clusters
/// speak to a plain-text gRPC service): the gRPC status and the answer, if any.
async fn call(core: &CoreForEdges, key: Option<&str>, request: &RateLimitRequest) -> (u32, Option<RateLimitResponse>) {
    let address = core.url.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let message = prost::Message::encode_to_vec(request);
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let mut builder = http::Request::post(format!("{}{PATH}", core.url))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(key) = key {
        builder = builder.header("authorization", format!("Bearer {key}"));
    }
    let response = sender.send_request(builder.body(Full::new(Bytes::from(frame))).unwrap()).await.unwrap();
    assert_eq!(response.status(), 200, "gRPC answers HTTP 200 and puts its status in grpc-status");
    let headers = response.headers().clone();
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let status = trailers.get("grpc-status").or_else(|| headers.get("grpc-status")).expect("a grpc-status");
    let status: u32 = status.to_str().unwrap().parse().unwrap();
    let body = collected.to_bytes();
    let answer = (body.len() > 5).then(|| {
        let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        <RateLimitResponse as prost::Message>::decode(&body[5..5 + length]).unwrap()
    });
    (status, answer)
}

fn request(domain: &str, descriptors: &[&[(&str, &str)]]) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors: descriptors
            .iter()
            .map(|entries| Descriptor {
                entries: entries.iter().map(|(k, v)| Entry { key: (*k).into(), value: (*v).into() }).collect(),
                hits_addend: None,
            })
            .collect(),
        hits_addend: 0,
    }
}

fn key_with(core: &CoreForEdges, scope: &str) -> String {
    let (status, created) = core.call("POST", "/v1/keys", &json!({"name": scope, "scopes": [scope]}));
    assert_eq!(status, 201, "{created}");
    created["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn envoy_asks_should_rate_limit_and_gets_the_global_tiers_decisions() {
    let (config, dir) = fresh_config().await;
    let core = start_core_for_edges(&config, dir.path());
    let checker = key_with(&core, "ratelimit:check");
    let reader = key_with(&core, "read");
    let (status, policy) = core.call(
        "POST",
        "/v1/ratelimit/policies",
        &json!({"name": "per client", "domain": "gateway", "descriptor": [{"key": "remote_address"}],
                "limit": {"algorithm": "fixed_window", "limit": 2, "period_seconds": 3600}}),
    );
    assert_eq!(status, 201, "{policy}");
    let id = policy["id"].as_str().unwrap();

    let client = request("gateway", &[&[("remote_address", "10.0.0.1")]]);
    for remaining in [1, 0] {
        let (status, answer) = call(&core, Some(&checker), &client).await;
        let answer = answer.unwrap();
        assert_eq!((status, answer.overall_code), (0, OK));
        let descriptor = &answer.statuses[0];
        assert_eq!(descriptor.limit_remaining, remaining);
        let limit = descriptor.current_limit.as_ref().unwrap();
        assert_eq!((limit.name.as_str(), limit.requests_per_unit, limit.unit), (id, 2, HOUR));
        assert!(descriptor.duration_until_reset.as_ref().unwrap().seconds > 0);
        let fields: Vec<(&str, &str)> =
            answer.response_headers_to_add.iter().map(|h| (h.key.as_str(), h.value.as_str())).collect();
        assert!(fields.contains(&("ratelimit-policy", format!("\"{id}\";q=2;w=3600").as_str())), "{fields:?}");
    }
    let (_, over) = call(&core, Some(&checker), &client).await;
    let over = over.unwrap();
    assert_eq!((over.overall_code, over.statuses[0].code), (OVER_LIMIT, OVER_LIMIT));
    assert!(over.response_headers_to_add.iter().any(|h| h.key == "retry-after"), "{over:?}");

    // Another client, and a descriptor no policy covers: both OK, the latter with no limit.
    let mixed = request("gateway", &[&[("remote_address", "10.0.0.2")], &[("path", "/x")]]);
    let (_, answer) = call(&core, Some(&checker), &mixed).await;
    let answer = answer.unwrap();
    assert_eq!(answer.overall_code, OK);
    assert_eq!(answer.statuses.len(), 2);
    assert_eq!(answer.statuses[1].current_limit, None);

    // Hits: a descriptor's own addend counts; more than the limit is over at once.
    let mut heavy = request("gateway", &[&[("remote_address", "10.0.0.3")]]);
    heavy.descriptors[0].hits_addend = Some(UInt64Value { value: 3 });
    assert_eq!(call(&core, Some(&checker), &heavy).await.1.unwrap().overall_code, OVER_LIMIT);

    // Who may ask, and what is refused, in gRPC's own status codes.
    assert_eq!(call(&core, None, &client).await.0, 16, "no key: UNAUTHENTICATED");
    assert_eq!(call(&core, Some("verge_not_a_key"), &client).await.0, 16);
    assert_eq!(call(&core, Some(&reader), &client).await.0, 7, "no ratelimit:check: PERMISSION_DENIED");
    assert_eq!(call(&core, Some(&checker), &request("", &[&[("a", "b")]])).await.0, 3, "INVALID_ARGUMENT");
    assert_eq!(call(&core, Some(&checker), &request("gateway", &[])).await.0, 3);

    // The decisions are the global tier's: counted in the policy's statistics.
    let (_, stats) = core.call("GET", &format!("/v1/ratelimit/policies/{id}/stats"), &Value::Null);
    assert_eq!(
        (stats["totals"]["allowed"].as_u64(), stats["totals"]["denied"].as_u64()),
        (Some(3), Some(2)),
        "{stats}"
    );
}
