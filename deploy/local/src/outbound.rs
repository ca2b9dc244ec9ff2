//! Which outbound HTTP requests the edge component may make: only to the core.
//!
//! Like Spin's `allowed_outbound_hosts`, the local host denies everything except the core's
//! own origin, where the edge sends its event batches. A component that tries anything
//! else gets `HTTP-request-denied`, not a connection.

use std::future::Future;

use http::uri::{Authority, Scheme};
use wasmtime_wasi_http::{Error, WasiHttpHooks};

#[derive(Debug, Clone, Default)]
pub(crate) struct OutboundPolicy {
    /// The core's scheme and authority; `None` denies all outbound requests.
    allowed: Option<(Scheme, Authority)>,
}

impl OutboundPolicy {
    /// Allows requests to the origin of `core_url` (e.g. `http://127.0.0.1:8080`).
    pub(crate) fn only(core_url: Option<&http::Uri>) -> OutboundPolicy {
        let allowed = core_url.and_then(|uri| Some((uri.scheme()?.clone(), uri.authority()?.clone())));
        OutboundPolicy { allowed }
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
        let default: &mut dyn WasiHttpHooks = Default::default();
        default.send_request(request, options, fut)
    }
}
