//! What a link may point at and be called.
//!
//! Targets are absolute http(s) URLs without credentials, at most [`MAX_URL_LEN`] bytes,
//! with the host normalized (lower case, IDNA to punycode, default port dropped) and never
//! one of our own short domains, so a link cannot loop through the edge. Aliases are 3–50
//! of `[A-Za-z0-9_-]` and not a reserved word.
//!
//! The `*_schema` functions say as much of each rule as JSON Schema can, for the OpenAPI
//! document; what it cannot say (a host that loops, a reserved alias) is still a 422.

use url::Url;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, SchemaType, Type};

use crate::error::FieldError;

pub(crate) const MAX_URL_LEN: usize = 2048;

/// Paths the edge or the platform owns, and words that would confuse visitors.
const RESERVED: &[&str] = &[
    "__verge",
    "admin",
    "api",
    "app",
    "assets",
    "dashboard",
    "favicon.ico",
    "health",
    "healthz",
    "help",
    "login",
    "logout",
    "metrics",
    "ofrep",
    "readyz",
    "robots.txt",
    "settings",
    "signup",
    "static",
    "support",
    "v1",
    "www",
];

/// What [`target`] asks of the text before parsing it (JSON Schema's ECMA-262 dialect).
const TARGET_PATTERN: &str = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s\x00-\x1f\x7f-\x9f]+$";

/// The schema of a target URL.
pub(crate) fn target_schema() -> Object {
    url_schema(Type::String)
}

/// The schema of a target URL that may be `null` (cleared or absent).
pub(crate) fn optional_target_schema() -> Object {
    url_schema(SchemaType::from_iter([Type::String, Type::Null]))
}

/// Country code → target URL.
pub(crate) fn country_targets_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[A-Za-z]{2}$"))))
        .additional_properties(Some(Schema::Object(target_schema())))
        .build()
}

fn url_schema(types: impl Into<SchemaType>) -> Object {
    ObjectBuilder::new()
        .schema_type(types)
        .pattern(Some(TARGET_PATTERN))
        .max_length(Some(MAX_URL_LEN))
        .description(Some("An absolute http(s) URL without credentials, off Verge's own short domains"))
        .build()
}

/// A checked, normalized target URL, or why not. `own_domains` are lower-case hosts.
pub(crate) fn target(field: &str, raw: &str, own_domains: &[String]) -> Result<String, FieldError> {
    let fail = |message: &str| FieldError { field: field.to_owned(), message: message.to_owned() };
    if raw.chars().count() > MAX_URL_LEN {
        return Err(fail(&format!("is longer than {MAX_URL_LEN} characters")));
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(fail("must not contain whitespace or control characters"));
    }
    // The URL parser would also take `https:\\host` or `https:host`; say what we mean.
    let scheme_end = raw.find("://").unwrap_or(0);
    if !(raw[..scheme_end].eq_ignore_ascii_case("http") || raw[..scheme_end].eq_ignore_ascii_case("https")) {
        return Err(fail("must start with http:// or https://"));
    }
    let url = Url::parse(raw).map_err(|err| fail(&format!("is not an absolute URL ({err})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(fail(&format!("must be http or https, not `{}:`", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail("must not carry a user name or password"));
    }
    let Some(host) = url.host_str() else { return Err(fail("has no host")) };
    let host = host.trim_end_matches('.');
    if own_domains.iter().any(|own| own == host) {
        return Err(fail(&format!("points at our own short domain `{host}`, which would loop")));
    }
    let normalized = url.to_string();
    if normalized.len() > MAX_URL_LEN {
        return Err(fail(&format!("is longer than {MAX_URL_LEN} bytes once normalized")));
    }
    Ok(normalized)
}

pub(crate) fn alias(raw: &str) -> Result<(), FieldError> {
    let fail = |message: String| FieldError { field: "alias".into(), message };
    if !(3..=50).contains(&raw.len()) {
        return Err(fail("must be 3 to 50 characters".into()));
    }
    if let Some(bad) = raw.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Err(fail(format!("may hold only letters, digits, `_` and `-`, not `{bad}`")));
    }
    if RESERVED.iter().any(|word| word.eq_ignore_ascii_case(raw)) {
        return Err(fail(format!("`{raw}` is reserved")));
    }
    Ok(())
}

/// A domain as links and the edge name it: a lower-case host name, no port or path.
pub(crate) fn domain(field: &str, raw: &str) -> Result<String, FieldError> {
    let fail = |message: &str| FieldError { field: field.to_owned(), message: message.to_owned() };
    let parsed = Url::parse(&format!("http://{raw}/")).map_err(|_| fail("is not a host name"))?;
    let host = parsed.host_str().ok_or_else(|| fail("is not a host name"))?;
    if parsed.port().is_some() || parsed.path() != "/" || host.len() > 253 || raw.contains(['/', '@', '?', '#']) {
        return Err(fail("must be a bare host name, like `go.example.com`"));
    }
    Ok(host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_web_urls_are_targets() {
        let own = vec!["go.example.com".to_owned()];
        for bad in [
            "javascript:alert(1)",
            "data:text/html,<script>",
            "file:///etc/passwd",
            "ftp://example.com/",
            "//example.com/",
            "/relative",
            "https://user:pw@example.com/",
            "https://go.example.com/abc",
            "https://GO.EXAMPLE.COM./abc",
            "https://exa mple.com/",
            "https:\\\\example.com/",
            "https:example.com/",
        ] {
            assert!(target("url", bad, &own).is_err(), "{bad}");
        }
        assert!(target("url", &format!("https://example.com/{}", "a".repeat(MAX_URL_LEN)), &own).is_err());
        assert_eq!(target("url", "HTTPS://Example.COM:443/Path?q=1", &own).unwrap(), "https://example.com/Path?q=1");
        assert_eq!(target("url", "https://bücher.example/", &own).unwrap(), "https://xn--bcher-kva.example/");
    }

    #[test]
    fn aliases_follow_the_rules() {
        for good in ["abc", "summer-sale_2026", &"x".repeat(50)] {
            assert!(alias(good).is_ok(), "{good}");
        }
        for bad in ["ab", &"x".repeat(51), "a/b", "héllo", "admin", "V1", "__verge"] {
            assert!(alias(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn domains_are_bare_lower_case_hosts() {
        assert_eq!(domain("domain", "Go.Example.COM").unwrap(), "go.example.com");
        for bad in ["go.example.com:8080", "go.example.com/x", "user@go.example.com", ""] {
            assert!(domain("domain", bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 1024, ..Default::default() })]

        /// Whatever is sent as a target: refused, or a plain http(s) URL within the
        /// length limit, without credentials, off our own domains, that parses back to itself.
        #[test]
        fn any_target_is_refused_or_a_safe_web_url(
            raw in "(https?|javascript|file|HTTP|data)?(:|://)?([a-zA-Z0-9@:.%_\\-]{0,20})?(\\.|/|\\?|#|%[0-9a-f]{2}|[^ ]){0,40}",
            noise in ".{0,20}",
        ) {
            let own = vec!["go.example.com".to_owned(), "localhost".to_owned()];
            for candidate in [raw.clone(), format!("{raw}{noise}"), format!("https://{noise}")] {
                if let Ok(normalized) = target("url", &candidate, &own) {
                    let url = Url::parse(&normalized).unwrap();
                    proptest::prop_assert!(matches!(url.scheme(), "http" | "https"), "{normalized}");
                    proptest::prop_assert!(url.username().is_empty() && url.password().is_none(), "{normalized}");
                    proptest::prop_assert!(normalized.len() <= MAX_URL_LEN);
                    let host = url.host_str().unwrap_or_default().trim_end_matches('.');
                    proptest::prop_assert!(!own.iter().any(|d| d == host), "{normalized}");
                    proptest::prop_assert_eq!(target("url", &normalized, &own).unwrap(), normalized.clone());
                }
            }
        }
    }
}
