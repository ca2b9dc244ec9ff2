//! RFC 9457 problem documents as the edge answers them.
//!
//! The edge has no serde: a problem body is small and its fields are ours, so it is written
//! by hand with string escaping, keeping the wasm artifact small.

/// The media type of every error body the edge returns.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// A complete problem+json response.
pub fn response(status: http::StatusCode, code: &str, detail: &str) -> http::Response<Vec<u8>> {
    let title = status.canonical_reason().unwrap_or("Error");
    let mut response = http::Response::new(render(status.as_u16(), code, title, detail).into_bytes());
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// 405 with the methods the path does accept.
pub fn method_not_allowed(allow: &'static str) -> http::Response<Vec<u8>> {
    let mut response =
        response(http::StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this path does not accept this method");
    response.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    response
}

/// Renders a problem document with a stable machine-readable `code`.
pub fn render(status: u16, code: &str, title: &str, detail: &str) -> String {
    let mut out = String::with_capacity(64 + code.len() + title.len() + detail.len());
    out.push_str("{\"type\":\"about:blank\",\"status\":");
    out.push_str(&status.to_string());
    for (name, value) in [("code", code), ("title", title), ("detail", detail)] {
        out.push_str(",\"");
        out.push_str(name);
        out.push_str("\":");
        crate::json::push_string(&mut out, value);
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_json_requires() {
        let body = render(404, "not_found", "Not Found", "no \"route\" at /a\\b\n\u{1}");
        assert_eq!(
            body,
            r#"{"type":"about:blank","status":404,"code":"not_found","title":"Not Found","detail":"no \"route\" at /a\\b\n\u0001"}"#
        );
    }
}
