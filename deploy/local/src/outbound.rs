//! Which outbound HTTP requests the edge component may make: only to the core.
//!
//! Like Spin's `allowed_outbound_hosts`, the local host denies everything except the core's
//! own origin, where the edge sends its event batches. A component that tries anything
//! else gets `HTTP-request-denied`, not a connection.
//!
//! Posts to a plain-HTTP core go through one pooled keep-alive client shared by every
//! instance: wasmtime's default hook opens a TCP connection per request, which under load
//! cost the host more CPU than the request being reported and left a socket in TIME_WAIT
//! per post. An `https` core still goes through the default hook (it brings the TLS).

use std::future::Future;

use http::uri::{Authority, Scheme};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use wasmtime_wasi_http::{Error, WasiBody, WasiHttpHooks};

#[derive(Clone)]
pub(crate) struct OutboundPolicy {
    /// The core's scheme and authority; `None` denies all outbound requests.
    allowed: Option<(Scheme, Authority)>,
    /// Keep-alive connections to the core, shared by clones (one per instance).
    pooled: Client<HttpConnector, WasiBody>,
}

impl OutboundPolicy {
    /// Allows requests to the origin of `core_url` (e.g. `http://127.0.0.1:8080`).
    pub(crate) fn only(core_url: Option<&http::Uri>) -> OutboundPolicy {
        let allowed = core_url.and_then(|uri| Some((uri.scheme()?.clone(), uri.authority()?.clone())));
        OutboundPolicy { allowed, pooled: Client::builder(TokioExecutor::new()).build_http() }
    }

    fn allows(&self, uri: &http::Uri) -> bool {
        match (&self.allowed, uri.scheme(), uri.authority()) {
            (Some((scheme, authority)), Some(s), Some(a)) => s == scheme && a == authority,
            _ => false,
        }
    }
}

type BoxedIo = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: BoxedIo,
    ) -> Box<dyn Future<Output = Result<(http::Response<wasmtime_wasi_http::WasiBody>, BoxedIo), Error>> + Send> {
        if !self.allows(request.uri()) {
            tracing::warn!(uri = %request.uri(), "edge component outbound request denied");
            return Box::new(std::future::ready(Err(Error::HttpRequestDenied)));
        }
        if request.uri().scheme() == Some(&Scheme::HTTP) {
            let pooled = self.pooled.clone();
            let first_byte = options.and_then(|o| o.first_byte_timeout).unwrap_or(std::time::Duration::from_secs(600));
            return Box::new(async move {
                let response = match tokio::time::timeout(first_byte, pooled.request(request)).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(err)) if err.is_connect() => return Err(Error::Connect(std::io::Error::other(err))),
                    Ok(Err(err)) => return Err(Error::InternalError(Some(err.to_string()))),
                    Err(_) => return Err(Error::ConnectionReadTimeout),
                };
                let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
                // The pool drives the connection; nothing is left for the caller to await.
                Ok((response, Box::new(std::future::ready(Ok(()))) as BoxedIo))
            });
        }
        let default: &mut dyn WasiHttpHooks = Default::default();
        default.send_request(request, options, fut)
    }
}
