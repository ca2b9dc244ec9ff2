//! Customer sessions at the edge: `GET|POST /sessions/v1/validate` checks an access token
//! (bearer or the `verge_session` cookie) against the published keys without calling the
//! core, and OFREP evaluations carrying a session evaluate for its customer.
//!
//! The key set is read like any whole dataset (parsed once per version, rechecked every
//! 250 ms). A verified token is kept per instance until it expires, so the signature is
//! checked once per token and instance; time, key retirement and the two revocation
//! records (`sess/r/s/<session>`, `sess/r/c/<project>/<customer>`) are checked on every
//! request, cached or not, so a revocation applies as soon as the publisher writes it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use verge_shared::sessions::{
    self, ACCESS_COOKIE as COOKIE, Claims, KEYS_DATASET, KEYS_PART, KeySet, Refusal, Verified,
};

use crate::body::Body;
use crate::host::Host;
use crate::ratelimit::sets::{self, Loaded};

pub(crate) const PATH: &str = "/sessions/v1/validate";
/// OFREP's `Authorization` carries the client key, so a session comes as this header or
/// the cookie there.
pub(crate) const SESSION_HEADER: &str = "x-verge-session";
/// Verified tokens kept per instance; the map is emptied when it fills.
const CACHED_TOKENS: usize = 4096;

thread_local! {
    static KEY_SETS: RefCell<Vec<Loaded<KeySet>>> = const { RefCell::new(Vec::new()) };
    static VERIFIED: RefCell<HashMap<Box<str>, Arc<Verified>>> = RefCell::new(HashMap::new());
}

async fn keys<H: Host>(host: &H) -> Arc<KeySet> {
    sets::load(host, &KEY_SETS, KEYS_DATASET, KEYS_PART, |bytes| KeySet::decode(bytes).unwrap_or_default()).await
}

/// The cookie `name`'s value in `request`.
fn cookie<'r>(request: &'r Request<Body>, name: &str) -> Option<&'r str> {
    sessions::cookie(request.headers().get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()), name)
}

fn bearer(request: &Request<Body>) -> Option<&str> {
    let value = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim)
}

/// Validates `token` now: signature (once per instance), lifetime, key retirement and
/// revocations.
pub(crate) async fn validate<H: Host>(host: &H, token: &str) -> Result<Claims, Refusal> {
    let cached = VERIFIED.with_borrow(|kept| kept.get(token).cloned());
    let verified = match cached {
        Some(verified) => verified,
        None => {
            let verified = Arc::new(sessions::verify(&*keys(host).await, token)?);
            VERIFIED.with_borrow_mut(|kept| {
                if kept.len() >= CACHED_TOKENS {
                    kept.clear();
                }
                kept.insert(token.into(), Arc::clone(&verified));
            });
            verified
        }
    };
    let now = host.now_millis() as i64;
    if let Err(refusal) = verified.check_time(now) {
        VERIFIED.with_borrow_mut(|kept| kept.remove(token));
        return Err(refusal);
    }
    let claims = &verified.claims;
    // A record that cannot be read is treated as present: refusing is the safe answer.
    let read = |key: String| async move { host.kv_get(&key).await.unwrap_or_else(|_| Some(Vec::new())) };
    let session = read(sessions::session_revocation_key(&claims.session_id)).await;
    let customer = read(sessions::customer_revocation_key(&claims.project, &claims.subject)).await;
    sessions::check_revocations(claims, session.as_deref(), customer.as_deref())?;
    Ok(claims.clone())
}

/// The session an OFREP request carries (`X-Verge-Session` or the cookie), if valid.
pub(crate) async fn of_request<H: Host>(host: &H, request: &Request<Body>) -> Option<Claims> {
    let token = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .or_else(|| cookie(request, COOKIE))?;
    validate(host, token).await.ok()
}

pub(crate) async fn serve<H: Host>(host: &H, request: &Request<Body>) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::POST {
        return crate::problem::method_not_allowed("GET, POST");
    }
    let token = bearer(request).or_else(|| cookie(request, COOKIE)).filter(|t| !t.is_empty());
    let result = match token {
        Some(token) => validate(host, token).await,
        None => Err(Refusal::Missing),
    };
    let mut response = match result {
        Ok(claims) => {
            let mut body = String::with_capacity(256);
            body.push_str("{\"valid\":true");
            for (name, value) in
                [("subject", &claims.subject), ("session_id", &claims.session_id), ("project", &claims.project)]
            {
                body.push_str(",\"");
                body.push_str(name);
                body.push_str("\":");
                crate::json::push_string(&mut body, value);
            }
            body.push_str(",\"email_verified\":");
            body.push_str(if claims.email_verified { "true" } else { "false" });
            for (name, ms) in [("issued_at", claims.issued_at_ms), ("expires_at", claims.expires_at_ms)] {
                body.push_str(",\"");
                body.push_str(name);
                body.push_str("\":\"");
                body.push_str(&verge_shared::time::rfc3339_millis(ms.max(0) as u64));
                body.push('"');
            }
            body.push('}');
            let mut response = Response::new(body.into_bytes());
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(refusal) => {
            let mut response = crate::problem::response(StatusCode::UNAUTHORIZED, refusal.code(), refusal.detail());
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"verge\""));
            response
        }
    };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests;
