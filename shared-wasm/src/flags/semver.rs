//! flagd's `sem_ver` operator: `[version, operator, version]` with `=`, `!=`, `<`, `<=`,
//! `>`, `>=`, `^` (same major) and `~` (same major and minor).
//!
//! Versions follow SemVer 2.0.0 precedence (pre-releases sort before their release, build
//! metadata is ignored), leniently read as flagd reads them: a leading `v`/`V` is dropped,
//! missing minor and patch parts are zero, and numbers from the context count as versions
//! (`1.2` is 1.2.0). Anything else is not a version, and the operator yields nothing.

use std::cmp::Ordering;

use serde_json::Value;

#[derive(Debug, PartialEq, Eq)]
struct Version {
    core: [u64; 3],
    pre: Vec<Identifier>,
}

#[derive(Debug, PartialEq, Eq)]
enum Identifier {
    Numeric(u64),
    Text(String),
}

impl Ord for Identifier {
    fn cmp(&self, other: &Identifier) -> Ordering {
        match (self, other) {
            (Identifier::Numeric(a), Identifier::Numeric(b)) => a.cmp(b),
            (Identifier::Numeric(_), Identifier::Text(_)) => Ordering::Less,
            (Identifier::Text(_), Identifier::Numeric(_)) => Ordering::Greater,
            (Identifier::Text(a), Identifier::Text(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Identifier {
    fn partial_cmp(&self, other: &Identifier) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Version {
    fn parse(value: &Value) -> Option<Version> {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        let text = text.strip_prefix(['v', 'V']).unwrap_or(&text);
        let text = text.split_once('+').map_or(text, |(version, _build)| version);
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return None;
        }
        let mut numbers = [0u64; 3];
        for (slot, part) in numbers.iter_mut().zip(&parts) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = part.parse().ok()?;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => pre
                .split('.')
                .map(|id| match id {
                    "" => None,
                    id if id.bytes().all(|b| b.is_ascii_digit()) => id.parse().ok().map(Identifier::Numeric),
                    id if id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
                        Some(Identifier::Text(id.to_owned()))
                    }
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?,
        };
        Some(Version { core: numbers, pre })
    }

    fn precedence(&self, other: &Version) -> Ordering {
        self.core.cmp(&other.core).then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => self.pre.cmp(&other.pre),
        })
    }
}

/// `None` when either side is not a version or the operator is unknown.
pub(crate) fn compare(left: &Value, operator: &str, right: &Value) -> Option<bool> {
    let (a, b) = (Version::parse(left)?, Version::parse(right)?);
    let order = a.precedence(&b);
    Some(match operator {
        "=" => order.is_eq(),
        "!=" => order.is_ne(),
        "<" => order.is_lt(),
        "<=" => order.is_le(),
        ">" => order.is_gt(),
        ">=" => order.is_ge(),
        "^" => a.core[0] == b.core[0],
        "~" => a.core[..2] == b.core[..2],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn precedence_follows_semver() {
        assert_eq!(compare(&json!("1.0.0-alpha"), "<", &json!("1.0.0-alpha.1")), Some(true));
        assert_eq!(compare(&json!("1.0.0-alpha.beta"), "<", &json!("1.0.0-beta")), Some(true));
        assert_eq!(compare(&json!("1.0.0-rc.1"), "<", &json!("1.0.0")), Some(true));
        assert_eq!(compare(&json!("1.0.0+build"), "=", &json!("v1.0.0")), Some(true));
        assert_eq!(compare(&json!(1.2), ">", &json!("1.1")), Some(true));
        assert_eq!(compare(&json!("1.2.3.4"), "=", &json!("1.2.3")), None);
        assert_eq!(compare(&json!("1.0.0"), "≈", &json!("1.0.0")), None);
    }
}
