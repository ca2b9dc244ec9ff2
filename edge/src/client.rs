//! Who the client is, from request headers only a trusted party may set.
//!
//! A platform that knows the client's country says so in its own way (Workers' `cf`
//! object, Fastly's geolocation). Spin says nothing, so a Spin edge learns the country
//! only from a header that the operator names (Spin variable `country_header`) because a
//! proxy in front of it sets that header and drops any copy a client sent. Without that
//! variable no header is trusted: a client-sent country would let anyone pick a
//! country-targeted link's destination.

/// The client's country (ISO 3166-1 alpha-2, upper case) from `trusted_header`, if one is
/// configured and holds two ASCII letters.
pub fn country<'a>(trusted_header: Option<&str>, header: impl Fn(&str) -> Option<&'a [u8]>) -> Option<[u8; 2]> {
    let value = header(trusted_header.filter(|name| !name.is_empty())?)?;
    let code = <[u8; 2]>::try_from(value).ok()?;
    code.iter().all(u8::is_ascii_alphabetic).then(|| code.map(|b| b.to_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(headers: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<&'static [u8]> {
        let headers = headers.to_vec();
        move |name| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_bytes())
    }

    #[test]
    fn no_header_is_trusted_unless_the_operator_names_one() {
        let spoofed = from(&[("verge-client-country", "DE"), ("cf-ipcountry", "FR")]);
        assert_eq!(country(None, &spoofed), None);
        assert_eq!(country(Some(""), &spoofed), None);
        assert_eq!(country(Some("cf-ipcountry"), &spoofed), Some(*b"FR"));
    }

    #[test]
    fn only_two_letters_count() {
        assert_eq!(country(Some("x-country"), from(&[("x-country", "de")])), Some(*b"DE"));
        for bad in ["DEU", "D", "1A", "", "XX\n"] {
            assert_eq!(country(Some("x-country"), from(&[("x-country", bad)])), None, "{bad:?}");
        }
    }
}
