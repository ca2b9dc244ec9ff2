//! CSV exports, streamed a page at a time so an export of any size holds one page in memory.
//!
//! Fields follow RFC 4180 (quoted when they hold a comma, quote or line break). A text field
//! that a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab, carriage return first)
//! gets a leading `'`, so an exported link title cannot run code in whoever opens the file.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use futures_util::StreamExt;

use crate::error::ApiError;

/// A user-controlled text field, escaped.
pub(crate) fn text(out: &mut String, value: &str) {
    let guarded = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if guarded || value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        if guarded {
            out.push('\'');
        }
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// A text field as it was before [`text`] guarded it against spreadsheet formulas, so
/// an export imports back as it was.
pub(crate) fn unguard(field: &str) -> &str {
    match field.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => field,
    }
}

/// One record: each field escaped as text, comma-separated, CRLF-terminated.
pub(crate) fn record<'a>(out: &mut String, fields: impl IntoIterator<Item = &'a str>) {
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        text(out, field);
    }
    out.push_str("\r\n");
}

/// A `text/csv` attachment whose body is `header` then each chunk `pages` yields. An error
/// after the first byte can only cut the download short; it is logged.
pub(crate) fn download(
    filename: &str,
    header_line: &'static str,
    pages: impl Stream<Item = Result<String, ApiError>> + Send + 'static,
) -> Response {
    let head = futures_util::stream::once(async move { Ok::<_, ApiError>(format!("{header_line}\r\n")) });
    let body = Body::from_stream(head.chain(pages));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        let mut out = String::new();
        record(&mut out, ["plain", "a,b", "say \"hi\"", "=HYPERLINK(\"x\")", "-1", "line\nbreak", ""]);
        assert_eq!(out, "plain,\"a,b\",\"say \"\"hi\"\"\",\"'=HYPERLINK(\"\"x\"\")\",\"'-1\",\"line\nbreak\",\r\n");
    }
}
