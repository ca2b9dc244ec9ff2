//! The request body limit every entry enforces while reading, not after.
//!
//! Edge routes take small bodies (a password form, an OFREP context). Entries refuse a
//! declared length over [`MAX_BODY_BYTES`] unread and stop reading an undeclared one at the
//! first chunk past it, so no client can make an instance buffer more than the cap.

use http::{HeaderMap, Response, StatusCode, header};

/// A request or response body as the edge application handles it: whole, in memory.
pub type Body = Vec<u8>;

/// Largest request body the edge reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Whether the request's `Content-Length` already passes the cap.
pub fn declared_too_large(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|length| length > MAX_BODY_BYTES as u64)
}

/// A body passed [`MAX_BODY_BYTES`]; answer it with [`too_large`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// A body read chunk by chunk up to the cap.
#[derive(Debug, Default)]
pub struct Capped(Vec<u8>);

impl Capped {
    /// Adds `chunk`; an error once the body passes the cap.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), TooLarge> {
        if self.0.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(TooLarge);
        }
        self.0.extend_from_slice(chunk);
        Ok(())
    }

    /// Bytes read so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

pub fn too_large() -> Response<Vec<u8>> {
    crate::problem::response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &format!("request bodies at the edge are limited to {MAX_BODY_BYTES} bytes"),
    )
}

pub fn unreadable() -> Response<Vec<u8>> {
    crate::problem::response(StatusCode::BAD_REQUEST, "unreadable_body", "the request body could not be read")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_across_chunks() {
        let mut body = Capped::default();
        body.push(&[0; MAX_BODY_BYTES - 1]).unwrap();
        body.push(&[0]).unwrap();
        assert_eq!(body.push(&[0]), Err(TooLarge));
        assert_eq!(too_large().status(), StatusCode::PAYLOAD_TOO_LARGE);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, (MAX_BODY_BYTES + 1).into());
        assert!(declared_too_large(&headers));
        headers.insert(header::CONTENT_LENGTH, MAX_BODY_BYTES.into());
        assert!(!declared_too_large(&headers));
    }
}
