//! Redirects: `GET`/`HEAD /{code}` (and the password form's `POST`) on any link domain,
//! answered from the link's KV record alone, with a click event after the response.
//!
//! The decision itself is `verge_shared::links::decide`; this module reads the record,
//! describes the visit, renders the answer and reports the click. Unknown codes fall
//! through to the router's 404 unless the domain names a not-found URL.

use http::{Method, Request, Response, StatusCode, header};
use verge_shared::links::{self, Decision, DomainRecord, LinkRecord, Visit, agent};

use crate::attempts;
use crate::body::Body;
use crate::events::Events;
use crate::host::Host;

/// Serves `code` on `domain` if a link (or the domain's not-found URL) answers it.
pub(crate) async fn serve<H: Host>(
    host: &H,
    request: &Request<Body>,
    domain: &str,
    code: &str,
    events: &mut Events,
) -> Option<Response<Body>> {
    let method = request.method();
    if !(method == Method::GET || method == Method::HEAD || method == Method::POST) {
        return None;
    }
    let Ok(Some(value)) = host.kv_get(&links::link_key(domain, code)).await else {
        return not_found_url(host, domain).await;
    };
    let Ok(link) = LinkRecord::decode(&value) else { return not_found_url(host, domain).await };
    let user_agent = header_str(request, header::USER_AGENT);
    // Reading the agent is a fair share of a redirect's CPU: only device targets and the
    // click event need it.
    let device_targeted = link.ios.is_some() || link.android.is_some() || link.desktop.is_some();
    let agent = (device_targeted || events.is_enabled()).then(|| agent::Agent::parse(user_agent));
    let client = host.client();
    let country = client.country.map(|c| [c[0] as char, c[1] as char].iter().collect::<String>());
    let visit = Visit {
        query: request.uri().query(),
        device: agent.map_or(agent::Device::Other, |agent| agent.device),
        country: country.as_deref(),
        now_millis: host.now_millis(),
    };
    let submitted = (method == Method::POST).then(|| form_password(request.body())).flatten();
    let password_ok = match (&link.password, &submitted) {
        (Some(hash), Some(given)) => {
            let who = client.ip.map(|ip| ip.to_string()).unwrap_or_default();
            match attempts::retry_after(host, &link.id, &who, visit.now_millis).await {
                Ok(None) => {}
                Ok(Some(seconds)) => return Some(too_many_attempts(seconds)),
                Err(_) => return Some(attempts_uncounted()),
            }
            let right = hash.verify(given);
            if !right {
                attempts::record_failure(host, &link.id, &who, visit.now_millis).await;
            }
            right
        }
        _ => false,
    };
    let decision = links::decide(&link, &visit, password_ok);
    // The click event (and the visitor hash in it, a SHA-256) only where events are sent.
    if let (Decision::Redirect { .. }, Some(agent)) = (&decision, agent.filter(|_| events.is_enabled())) {
        let bot = method == Method::HEAD || agent.bot;
        let ip = client.ip.map(|ip| ip.to_string()).unwrap_or_default();
        let salt = visitor_salt(host).await;
        let visitor = links::visitor_hash(salt.as_bytes(), visit.now_millis / 86_400_000, &ip, user_agent);
        let referrer = referrer_host(header_str(request, header::REFERER));
        let mut fields = vec![
            ("link", link.id.as_str()),
            ("domain", domain),
            ("device", visit.device.as_str()),
            ("browser", agent.browser),
            ("os", agent.os),
            ("visitor", visitor.as_str()),
        ];
        if let Some(country) = &country {
            fields.push(("country", country));
        }
        if let Some(referrer) = referrer {
            fields.push(("referrer_host", referrer));
        }
        events.push_flagged(host, "link.click", &fields, &[("bot", bot)]);
    }
    Some(render(decision, method, submitted.is_some()))
}

/// The published visitor-hash salt. It never changes once made, so an instance that
/// lives on (platforms reuse them) reads it from KV once; until the first publish it is
/// empty and read again next time.
async fn visitor_salt<H: Host>(host: &H) -> std::sync::Arc<str> {
    static SALT: std::sync::OnceLock<std::sync::Arc<str>> = std::sync::OnceLock::new();
    if let Some(salt) = SALT.get() {
        return salt.clone();
    }
    let salt: std::sync::Arc<str> = crate::settings::edge_settings(host).await.visitor_salt.into();
    if !salt.is_empty() {
        let _ = SALT.set(salt.clone());
    }
    salt
}

async fn not_found_url<H: Host>(host: &H, domain: &str) -> Option<Response<Body>> {
    let value = host.kv_get(&links::domain_key(domain)).await.ok()??;
    let url = DomainRecord::decode(&value).ok()?.not_found_url?;
    Some(redirect(302, &url))
}

fn render(decision: Decision, method: &Method, tried_password: bool) -> Response<Body> {
    match decision {
        // After the password form, 303 turns the POST into a GET of the target.
        Decision::Redirect { location, .. } if method == Method::POST => redirect(303, &location),
        Decision::Redirect { status, location } => redirect(status, &location),
        Decision::Gone => crate::problem::response(StatusCode::GONE, "link_gone", "this link has expired"),
        Decision::PasswordRequired => password_page(tried_password),
    }
}

/// 429 for a client (or a link) over its failed password attempts; no hash is run.
fn too_many_attempts(retry_after_secs: u64) -> Response<Body> {
    let mut response = crate::problem::response(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        "too many wrong passwords for this link; try again later",
    );
    response.headers_mut().insert(header::RETRY_AFTER, retry_after_secs.into());
    response
}

/// 503 when failed attempts cannot be counted: no password is checked uncounted.
fn attempts_uncounted() -> Response<Body> {
    let mut response = crate::problem::response(
        StatusCode::SERVICE_UNAVAILABLE,
        "attempts_uncounted",
        "passwords cannot be checked right now; try again shortly",
    );
    response.headers_mut().insert(header::RETRY_AFTER, 5.into());
    response
}

fn redirect(status: u16, location: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, "private, max-age=0")
        .body(Vec::new())
        .expect("a valid redirect")
}

/// The interstitial: a form that posts the password back to the same URL.
fn password_page(wrong: bool) -> Response<Body> {
    let notice = if wrong { "<p role=\"alert\">That password is not right.</p>" } else { "" };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width\"><title>Password required</title></head><body><main>\
         <h1>This link is protected</h1>{notice}<form method=\"post\"><label>Password \
         <input type=\"password\" name=\"password\" autofocus required></label> \
         <button>Continue</button></form></main></body></html>"
    );
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-frame-options", "DENY")
        .body(body.into_bytes())
        .expect("a valid page")
}

fn header_str(request: &Request<Body>, name: header::HeaderName) -> &str {
    request.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or("")
}

/// The host of an http(s) referrer.
fn referrer_host(referrer: &str) -> Option<&str> {
    let rest = referrer.strip_prefix("https://").or_else(|| referrer.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?.split(':').next()?;
    (!host.is_empty()).then_some(host)
}

/// `password` from an `application/x-www-form-urlencoded` body.
fn form_password(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let raw = text.split('&').find_map(|pair| pair.strip_prefix("password="))?;
    crate::request::form_decode(raw)
}
