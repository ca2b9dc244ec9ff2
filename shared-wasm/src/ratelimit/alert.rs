//! An alert rule on a policy: fire when more than `denied_percent` of the policy's
//! decisions were denials (or, for a shadow policy, would-be denials) in each of the last
//! `minutes` minutes, like a Prometheus rule with a `for:` clause. The core evaluates it
//! from the policy's statistics; the edge carries it along and ignores it.

use serde_json::{Value, json};

use super::Invalid;
use super::limit::allow_only;

/// The longest a condition may be required to hold.
pub const MAX_ALERT_MINUTES: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    /// 1–100: the share of denials, in percent, above which a minute counts as bad.
    pub denied_percent: u8,
    /// 1–60: how many minutes in a row must be bad.
    pub minutes: u8,
}

impl Alert {
    pub(super) fn parse(value: &Value, errors: &mut Vec<Invalid>) -> Option<Alert> {
        let Some(object) = value.as_object() else {
            errors.push(Invalid::new("/alert", "must be an object: {\"denied_percent\": …, \"minutes\": …}"));
            return None;
        };
        allow_only(object, "/alert", &["denied_percent", "minutes"], errors);
        let mut whole = |name: &str, max: u64| {
            let found = object.get(name).and_then(Value::as_u64).filter(|n| (1..=max).contains(n));
            if found.is_none() {
                errors.push(Invalid::new(format!("/alert/{name}"), format!("must be a whole number from 1 to {max}")));
            }
            found.map(|n| n as u8)
        };
        let denied_percent = whole("denied_percent", 100);
        let minutes = whole("minutes", MAX_ALERT_MINUTES);
        Some(Alert { denied_percent: denied_percent?, minutes: minutes? })
    }

    pub(super) fn to_value(self) -> Value {
        json!({"denied_percent": self.denied_percent, "minutes": self.minutes})
    }

    /// Whether one minute with these counts is over the threshold (a minute with no
    /// decisions is not).
    pub fn over(&self, denied: u64, decided: u64) -> bool {
        decided > 0 && denied.saturating_mul(100) > u64::from(self.denied_percent).saturating_mul(decided)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_is_over_only_strictly_above_the_share_and_never_when_empty() {
        let rule = Alert { denied_percent: 50, minutes: 3 };
        assert!(!rule.over(5, 10), "exactly half is not above half");
        assert!(rule.over(6, 10));
        assert!(!rule.over(0, 0), "a minute without decisions");
        assert!(!Alert { denied_percent: 100, minutes: 1 }.over(10, 10), "nothing is above 100 %");
    }
}
