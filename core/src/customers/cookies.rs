//! Browser sessions as cookies, and the CSRF check for writes they authenticate.
//!
//! `verge_session` holds the access token (HttpOnly, SameSite=Lax, path `/`, so the edge on
//! the same site reads it too); `verge_refresh` holds the refresh token (HttpOnly,
//! SameSite=Strict, only sent to the project's `/auth/{project}` routes); `verge_csrf` is a
//! random value scripts may read and must echo in `X-CSRF-Token` on every cookie-
//! authenticated write (the double-submit pattern: another site can make the browser send
//! the cookies but cannot read this one). Cookies are `Secure` except on loopback hosts,
//! where `verge dev` serves plain HTTP.

use axum::http::{HeaderMap, HeaderValue, header};
use subtle::ConstantTimeEq;

use super::sessions::{Tokens, random_secret};
use crate::error::ApiError;

pub(crate) const ACCESS: &str = verge_shared::sessions::ACCESS_COOKIE;
pub(crate) const REFRESH: &str = "verge_refresh";
pub(crate) const CSRF: &str = "verge_csrf";
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// The value of cookie `name` in the request, if sent.
pub(crate) fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    verge_shared::sessions::cookie(headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()), name)
}

pub(crate) fn secure(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let host = host
        .rsplit_once(':')
        .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host });
    !matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

fn cookie(
    name: &str,
    value: &str,
    path: &str,
    same_site: &str,
    http_only: bool,
    max_age: Option<i64>,
    secure: bool,
) -> HeaderValue {
    let mut text = format!("{name}={value}; Path={path}; SameSite={same_site}");
    if http_only {
        text.push_str("; HttpOnly");
    }
    if secure {
        text.push_str("; Secure");
    }
    if let Some(seconds) = max_age {
        text.push_str(&format!("; Max-Age={}", seconds.max(0)));
    }
    HeaderValue::from_str(&text).expect("cookie values are base64url and ASCII")
}

/// The `Set-Cookie` headers for `tokens`, and the CSRF value the client must echo. A
/// session without "remember me" gets browser-session cookies (no `Max-Age`).
pub(crate) fn set(request: &HeaderMap, project: &str, tokens: &Tokens, now_ms: i64) -> (Vec<HeaderValue>, String) {
    let secure = secure(request);
    let csrf = random_secret("");
    let seconds = |until_ms: i64| (until_ms - now_ms) / 1000;
    let session_age = tokens.remember.then(|| seconds(tokens.session_expires_at.0));
    let refresh_path = format!("/auth/{project}");
    (
        vec![
            cookie(
                ACCESS,
                &tokens.access_token,
                "/",
                "Lax",
                true,
                Some(seconds(tokens.access_token_expires_at.0)),
                secure,
            ),
            cookie(REFRESH, &tokens.refresh_token, &refresh_path, "Strict", true, session_age, secure),
            cookie(CSRF, &csrf, "/", "Lax", false, session_age, secure),
        ],
        csrf,
    )
}

/// `Set-Cookie` headers that remove the session's cookies.
pub(crate) fn clear(request: &HeaderMap, project: &str) -> Vec<HeaderValue> {
    let secure = secure(request);
    vec![
        cookie(ACCESS, "", "/", "Lax", true, Some(0), secure),
        cookie(REFRESH, "", &format!("/auth/{project}"), "Strict", true, Some(0), secure),
        cookie(CSRF, "", "/", "Lax", false, Some(0), secure),
    ]
}

/// Refuses a cookie-authenticated write whose `X-CSRF-Token` does not match its cookie.
pub(crate) fn check_csrf(headers: &HeaderMap) -> Result<(), ApiError> {
    let cookie = get(headers, CSRF).unwrap_or_default();
    let echoed = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !cookie.is_empty() && bool::from(cookie.as_bytes().ct_eq(echoed.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "a write authenticated by cookie must send the `verge_csrf` cookie's value in `X-CSRF-Token`",
        ))
    }
}
