//! Short links at the edge: the KV record of one link, the record of a branded domain, and
//! the redirect decision both sides agree on.
//!
//! A link lives at `links/<domain>/<code>` (one key per link, so a redirect is one KV get
//! and a change rewrites one key), a domain at `links/<domain>` (its not-found URL). Values
//! are text with a format line and `name=value` lines, like the edge settings: cheap to
//! parse without serde, readable in any KV browser, and unknown names are ignored so a
//! newer core can add fields. URLs never hold a newline (the core validates them).
//!
//! The core bakes what it can into the record (UTM parameters are already in every target;
//! a link over its click limit is published as `exhausted`), so the edge only picks the
//! variant, applies the incoming query when asked to, and checks time and password.

pub mod agent;
pub mod password;

use self::password::PasswordHash;

/// Prefix of every links key.
pub const PREFIX: &str = "links/";
const LINK_FORMAT: &str = "verge-link 1";
const DOMAIN_FORMAT: &str = "verge-link-domain 1";

/// The key of the link `code` on `domain` (lower-case host).
pub fn link_key(domain: &str, code: &str) -> String {
    format!("{PREFIX}{domain}/{code}")
}

/// The key of a branded domain's record.
pub fn domain_key(domain: &str) -> String {
    format!("{PREFIX}{domain}")
}

/// What the edge needs of one link.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkRecord {
    /// `lnk_…`, carried into click events.
    pub id: String,
    /// Where to send visitors (UTM already applied).
    pub target: String,
    /// 301, 302, 307 or 308.
    pub status: u16,
    /// Unix milliseconds after which the link is expired.
    pub expires_at: Option<u64>,
    /// Where expired visitors go instead of a 410.
    pub expired_url: Option<String>,
    /// The click limit is reached (the core reconciles this from click events).
    pub exhausted: bool,
    pub password: Option<PasswordHash>,
    /// Append the incoming query string to the target.
    pub forward_query: bool,
    pub ios: Option<String>,
    pub android: Option<String>,
    pub desktop: Option<String>,
    /// Upper-case ISO 3166 alpha-2 code and target, sorted by code.
    pub countries: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError(pub String);

impl core::fmt::Display for RecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "link record: {}", self.0)
    }
}

fn lines<'a>(value: &'a [u8], format: &str) -> Result<impl Iterator<Item = (&'a str, &'a str)>, RecordError> {
    let text = core::str::from_utf8(value).map_err(|_| RecordError("not UTF-8".into()))?;
    let mut lines = text.lines();
    if lines.next() != Some(format) {
        return Err(RecordError("unknown format".into()));
    }
    Ok(lines.filter_map(|line| line.split_once('=')))
}

impl LinkRecord {
    pub fn encode(&self) -> Vec<u8> {
        use core::fmt::Write;
        let mut out = format!("{LINK_FORMAT}\nid={}\ntarget={}\nstatus={}\n", self.id, self.target, self.status);
        let mut field = |name: &str, value: &Option<String>| {
            if let Some(value) = value {
                let _ = writeln!(out, "{name}={value}");
            }
        };
        field("expired_url", &self.expired_url);
        field("ios", &self.ios);
        field("android", &self.android);
        field("desktop", &self.desktop);
        field("password", &self.password.as_ref().map(PasswordHash::encode));
        if let Some(at) = self.expires_at {
            let _ = writeln!(out, "expires_at={at}");
        }
        if self.exhausted {
            out.push_str("exhausted=true\n");
        }
        if self.forward_query {
            out.push_str("forward_query=true\n");
        }
        for (country, target) in &self.countries {
            let _ = writeln!(out, "country.{country}={target}");
        }
        out.into_bytes()
    }

    pub fn decode(value: &[u8]) -> Result<LinkRecord, RecordError> {
        let mut link = LinkRecord { status: 302, ..LinkRecord::default() };
        for (name, value) in lines(value, LINK_FORMAT)? {
            match name {
                "id" => link.id = value.to_owned(),
                "target" => link.target = value.to_owned(),
                "status" => {
                    link.status = match value.parse() {
                        Ok(status @ (301 | 302 | 307 | 308)) => status,
                        _ => return Err(RecordError(format!("status `{value}`"))),
                    }
                }
                "expires_at" => {
                    link.expires_at = Some(value.parse().map_err(|_| RecordError(format!("expires_at `{value}`")))?)
                }
                "expired_url" => link.expired_url = Some(value.to_owned()),
                "exhausted" => link.exhausted = value == "true",
                "forward_query" => link.forward_query = value == "true",
                "password" => {
                    link.password = Some(PasswordHash::decode(value).ok_or_else(|| RecordError("password".into()))?)
                }
                "ios" => link.ios = Some(value.to_owned()),
                "android" => link.android = Some(value.to_owned()),
                "desktop" => link.desktop = Some(value.to_owned()),
                _ => {
                    if let Some(country) = name.strip_prefix("country.") {
                        link.countries.push((country.to_owned(), value.to_owned()));
                    }
                }
            }
        }
        if link.target.is_empty() {
            return Err(RecordError("no target".into()));
        }
        Ok(link)
    }
}

/// What the edge needs of a branded domain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DomainRecord {
    /// Where unknown and deleted codes on this domain send visitors instead of a 404.
    pub not_found_url: Option<String>,
}

impl DomainRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{DOMAIN_FORMAT}\n");
        if let Some(url) = &self.not_found_url {
            out.push_str(&format!("not_found_url={url}\n"));
        }
        out.into_bytes()
    }

    pub fn decode(value: &[u8]) -> Result<DomainRecord, RecordError> {
        let mut domain = DomainRecord::default();
        for (name, value) in lines(value, DOMAIN_FORMAT)? {
            if name == "not_found_url" {
                domain.not_found_url = Some(value.to_owned());
            }
        }
        Ok(domain)
    }
}

/// The request, as far as the decision cares.
#[derive(Debug, Clone, Copy)]
pub struct Visit<'a> {
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    pub device: agent::Device,
    /// Upper-case ISO 3166 alpha-2, as the platform reports it.
    pub country: Option<&'a str>,
    pub now_millis: u64,
}

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Redirect {
        status: u16,
        location: String,
    },
    /// Expired or over its click limit, with nowhere else to go.
    Gone,
    /// Ask for the password (or it was wrong); the form posts back to the same URL.
    PasswordRequired,
}

/// Decides a visit to an existing link. `password_ok` is whether a correct password came
/// with the request (checked by the caller only when the link has one, since it costs CPU).
pub fn decide(link: &LinkRecord, visit: &Visit<'_>, password_ok: bool) -> Decision {
    if link.expires_at.is_some_and(|at| visit.now_millis >= at) {
        return match &link.expired_url {
            Some(url) => Decision::Redirect { status: 302, location: url.clone() },
            None => Decision::Gone,
        };
    }
    if link.exhausted {
        return Decision::Gone;
    }
    if link.password.is_some() && !password_ok {
        return Decision::PasswordRequired;
    }
    let by_country = visit
        .country
        .and_then(|country| link.countries.iter().find(|(code, _)| code.eq_ignore_ascii_case(country)))
        .map(|(_, target)| target);
    let by_device = match visit.device {
        agent::Device::Ios => link.ios.as_ref(),
        agent::Device::Android => link.android.as_ref(),
        agent::Device::Desktop => link.desktop.as_ref(),
        agent::Device::Other => None,
    };
    // A country target is the more specific promise (legal, language), so it wins.
    let target = by_country.or(by_device).unwrap_or(&link.target);
    let location = match visit.query.filter(|q| link.forward_query && !q.is_empty()) {
        Some(query) => append_query(target, query),
        None => target.clone(),
    };
    Decision::Redirect { status: link.status, location }
}

/// A visitor's identity for unique counts: SHA-256 over the day, IP and user agent, keyed
/// by `salt`, first 16 bytes in hex. The day in the hash makes it rotate daily, so the same
/// person is one visitor per day and nobody can follow them across days; raw IPs are
/// never sent to the core.
pub fn visitor_hash(salt: &[u8], day: u64, ip: &str, user_agent: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update((salt.len() as u64).to_le_bytes());
    hasher.update(salt);
    hasher.update(day.to_le_bytes());
    hasher.update((ip.len() as u64).to_le_bytes());
    hasher.update(ip.as_bytes());
    hasher.update(user_agent.as_bytes());
    hex(&hasher.finalize()[..16])
}

/// Lower-case hex, without a formatter call per byte (this runs on every click).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

/// `url` with `query` (already encoded, no `?`) appended, before any fragment.
pub fn append_query(url: &str, query: &str) -> String {
    let (base, fragment) = match url.find('#') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let separator =
        if base.contains('?') { if base.ends_with('?') || base.ends_with('&') { "" } else { "&" } } else { "?" };
    format!("{base}{separator}{query}{fragment}")
}

#[cfg(test)]
mod tests;
