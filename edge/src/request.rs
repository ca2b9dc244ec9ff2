//! What every route reads of a request the same way, whichever platform delivered it.

use http::{HeaderValue, Request, Response, header};

use crate::body::Body;

/// The host the client asked for: the URI's authority (platforms move `Host` there), else
/// the `Host` header.
pub(crate) fn request_host(request: &Request<Body>) -> &str {
    match request.uri().authority() {
        Some(authority) => authority.host(),
        None => request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or(""),
    }
}

/// A form or query-string value decoded: `+` is a space, `%XX` a byte; `None` when the
/// escapes are broken or the bytes are not UTF-8.
pub(crate) fn form_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = raw.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The first value of query parameter `name`: `None` when absent, `Some(Err(()))` when
/// its escapes are broken.
pub(crate) fn query_param(request: &Request<Body>, name: &str) -> Option<Result<String, ()>> {
    let query = request.uri().query()?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| form_decode(value).ok_or(()))
    })
}

/// A response any origin may read, with the headers browsers' scripts need exposed: the
/// answer of an edge route browsers call directly (OFREP, autocomplete).
pub(crate) fn cors(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("ETag, RateLimit, RateLimit-Policy, Retry-After"),
    );
    response
}

/// Whether the request's `If-None-Match` names `etag` (weakly compared, as RFC 9110 asks).
pub(crate) fn has_etag(request: &Request<Body>, etag: &str) -> bool {
    request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim().trim_start_matches("W/") == etag))
}

/// The answer to a CORS preflight for a read-only route.
pub(crate) fn read_preflight(allow_headers: &'static str) -> Response<Body> {
    let preflight = Response::builder()
        .status(http::StatusCode::NO_CONTENT)
        .header(header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS")
        .header(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers)
        .header(header::ACCESS_CONTROL_MAX_AGE, "86400")
        .body(Vec::new())
        .expect("a valid response");
    cors(preflight)
}
