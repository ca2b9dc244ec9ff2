//! IP addresses and ranges, for the `remote_address` and `ip_prefix` keys.

use std::fmt;
use std::net::IpAddr;

/// An address range in CIDR form; a bare address is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    base: IpAddr,
    prefix: u8,
}

/// How wide an `ip_prefix` is: one IPv4 /24 or one IPv6 /56 (a typical customer site).
const V4_PREFIX: u8 = 24;
const V6_PREFIX: u8 = 56;

pub fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse().ok()
}

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn mask(width: u8, prefix: u8) -> u128 {
    if prefix == 0 { 0 } else { (!0u128 >> (128 - u32::from(width))) & !((1u128 << (width - prefix)) - 1) }
}

impl Network {
    /// `203.0.113.7`, `203.0.113.0/24` or `2001:db8::/32`. The base must have no bits set
    /// beyond the prefix, so `10.0.0.1/8` (a likely typo) is refused.
    pub fn parse(text: &str) -> Option<Network> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let base = parse_ip(address)?;
        let (value, width) = bits(base);
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse::<u8>().ok()?,
            Some(_) => return None,
            None => width,
        };
        if prefix > width || value & !mask(width, prefix) & (!0u128 >> (128 - u32::from(width))) != 0 {
            return None;
        }
        Some(Network { base, prefix })
    }

    /// The `ip_prefix` range holding `ip`.
    pub fn around(ip: IpAddr) -> Network {
        let (value, width) = bits(ip);
        let prefix = if width == 32 { V4_PREFIX } else { V6_PREFIX };
        let masked = value & mask(width, prefix);
        let base = match ip {
            IpAddr::V4(_) => IpAddr::V4((masked as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(masked.into()),
        };
        Network { base, prefix }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (base, width) = bits(self.base);
        let (value, other_width) = bits(ip);
        width == other_width && value & mask(width, self.prefix) == base
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (_, width) = bits(self.base);
        if self.prefix == width { write!(f, "{}", self.base) } else { write!(f, "{}/{}", self.base, self.prefix) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_contain_their_addresses_only() {
        let net = Network::parse("203.0.113.0/24").unwrap();
        assert!(net.contains(parse_ip("203.0.113.250").unwrap()));
        assert!(!net.contains(parse_ip("203.0.114.1").unwrap()));
        assert!(!net.contains(parse_ip("::ffff:203.0.113.1").unwrap()), "families never mix");
        let v6 = Network::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(parse_ip("2001:db8:1::9").unwrap()));
        let one = Network::parse("198.51.100.7").unwrap();
        assert!(one.contains(parse_ip("198.51.100.7").unwrap()) && !one.contains(parse_ip("198.51.100.8").unwrap()));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains(parse_ip("8.8.8.8").unwrap()));
    }

    #[test]
    fn sloppy_ranges_are_refused() {
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/x", "10.0.0", "::/129", "host/24"] {
            assert_eq!(Network::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn prefixes_group_a_site() {
        assert_eq!(Network::around(parse_ip("203.0.113.77").unwrap()).to_string(), "203.0.113.0/24");
        assert_eq!(Network::around(parse_ip("2001:db8:aa:bb11::1").unwrap()).to_string(), "2001:db8:aa:bb00::/56");
    }
}
