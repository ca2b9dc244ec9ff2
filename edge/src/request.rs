//! What every route reads of a request the same way, whichever platform delivered it.

use http::{Request, header};

use crate::body::Body;

/// The host the client asked for: the URI's authority (platforms move `Host` there), else
/// the `Host` header.
pub(crate) fn request_host(request: &Request<Body>) -> &str {
    match request.uri().authority() {
        Some(authority) => authority.host(),
        None => request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or(""),
    }
}
