//! What a sign-in request says about where it came from: the client's address (for
//! throttling), its browser and operating system from `User-Agent`, and an approximate
//! place from the country header a trusted proxy sets. Enough for "Chrome on macOS, DE"
//! in a list of sessions; not a fingerprint.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;

use crate::config::Config;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Client {
    pub(crate) ip: Option<String>,
    pub(crate) user_agent: String,
    pub(crate) browser: String,
    pub(crate) os: String,
    pub(crate) place: Option<String>,
}

impl Client {
    pub(crate) fn from_parts(parts: &Parts, config: &Config) -> Client {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip().to_string());
        let headers = &parts.headers;
        let ip = match &config.client_ip_header {
            Some(name) => header(headers, name).and_then(|v| v.rsplit(',').next()).map(|v| v.trim().to_owned()),
            None => peer,
        };
        let place = config
            .client_country_header
            .as_deref()
            .and_then(|name| header(headers, name))
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
            .map(str::to_ascii_uppercase);
        let user_agent: String = header(headers, USER_AGENT.as_str()).unwrap_or_default().chars().take(512).collect();
        let (browser, os) = describe(&user_agent);
        Client { ip, browser: browser.into(), os: os.into(), place, user_agent }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
}

/// (browser, OS) of a `User-Agent`, by the tokens browsers send in the order that tells
/// them apart (Edge and Opera also say Chrome; Chrome also says Safari).
pub(crate) fn describe(user_agent: &str) -> (&'static str, &'static str) {
    let has = |token: &str| user_agent.contains(token);
    let browser = if has("Edg/") {
        "Edge"
    } else if has("OPR/") || has("Opera") {
        "Opera"
    } else if has("Firefox/") {
        "Firefox"
    } else if has("Chrome/") || has("CriOS/") {
        "Chrome"
    } else if has("Safari/") {
        "Safari"
    } else if user_agent.is_empty() {
        "Unknown"
    } else {
        "App"
    };
    let os = if has("iPhone") || has("iPad") {
        "iOS"
    } else if has("Android") {
        "Android"
    } else if has("Windows") {
        "Windows"
    } else if has("Mac OS X") || has("Macintosh") {
        "macOS"
    } else if has("CrOS") {
        "ChromeOS"
    } else if has("Linux") {
        "Linux"
    } else {
        "Unknown"
    };
    (browser, os)
}

impl FromRequestParts<crate::state::AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &crate::state::AppState) -> Result<Self, Self::Rejection> {
        Ok(Client::from_parts(parts, &state.config))
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn tells_common_browsers_and_systems_apart() {
        let chrome_mac = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36";
        let edge_win = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0";
        let safari_ios = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        let firefox_linux = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0";
        assert_eq!(describe(chrome_mac), ("Chrome", "macOS"));
        assert_eq!(describe(edge_win), ("Edge", "Windows"));
        assert_eq!(describe(safari_ios), ("Safari", "iOS"));
        assert_eq!(describe(firefox_linux), ("Firefox", "Linux"));
        assert_eq!(describe("curl/8.5.0"), ("App", "Unknown"));
    }
}
