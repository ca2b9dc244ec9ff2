//! The `RateLimit-Policy` and `RateLimit` header fields of draft-ietf-httpapi-ratelimit-
//! headers (-10), plus `Retry-After`.
//!
//! Both are Structured Field lists of items named by a string: the policy by its id, with
//! `q` (quota: requests per window), `w` (window in seconds); the current state with `r`
//! (remaining) and `t` (seconds until the quota is whole again). Seconds round up, so a
//! client that waits `t` is never early.

use super::{Algorithm, Decision, Limit};

/// `"<id>";q=<limit>;w=<period>`. A token bucket advertises its burst as the quota
/// when that is smaller, since that is what a client can spend at once.
pub fn policy_field(id: &str, limit: &Limit) -> String {
    let quota = if limit.algorithm == Algorithm::TokenBucket { limit.burst.min(limit.limit) } else { limit.limit };
    let window = if limit.algorithm == Algorithm::TokenBucket && limit.burst < limit.limit {
        // A burst of b refills in b emission intervals.
        (u64::from(limit.period_secs) * u64::from(limit.burst)).div_ceil(u64::from(limit.limit.max(1)))
    } else {
        u64::from(limit.period_secs)
    };
    format!("\"{}\";q={quota};w={window}", sf_string(id))
}

/// `"<id>";r=<remaining>;t=<seconds>`.
pub fn state_field(id: &str, decision: &Decision) -> String {
    format!("\"{}\";r={};t={}", sf_string(id), decision.remaining, seconds_up(decision.reset_after_us))
}

/// The `Retry-After` value of a denial: whole seconds, at least 1. None when no wait
/// will ever help (the cost exceeds what the policy allows at once).
pub fn retry_after(decision: &Decision) -> Option<u64> {
    (decision.retry_after_us != u64::MAX).then(|| seconds_up(decision.retry_after_us).max(1))
}

pub fn seconds_up(us: u64) -> u64 {
    us.div_ceil(1_000_000)
}

/// Policy ids are `[a-z0-9_]`; anything else is dropped rather than escaped, so a field
/// can never be broken open.
fn sf_string(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_draft() {
        let limit = Limit { algorithm: Algorithm::FixedWindow, limit: 100, period_secs: 60, burst: 100 };
        assert_eq!(policy_field("rl_1", &limit), "\"rl_1\";q=100;w=60");
        let decision = Decision { allowed: true, remaining: 42, retry_after_us: 0, reset_after_us: 29_000_001 };
        assert_eq!(state_field("rl_1", &decision), "\"rl_1\";r=42;t=30");
        let bucket = Limit { algorithm: Algorithm::TokenBucket, limit: 60, period_secs: 60, burst: 10 };
        assert_eq!(policy_field("rl_2", &bucket), "\"rl_2\";q=10;w=10");
        assert_eq!(policy_field("a\"b\\c", &limit), "\"abc\";q=100;w=60");
    }

    #[test]
    fn retry_after_rounds_up_and_says_never_when_never() {
        let wait = |us| Decision { allowed: false, remaining: 0, retry_after_us: us, reset_after_us: us };
        assert_eq!(retry_after(&wait(1)), Some(1));
        assert_eq!(retry_after(&wait(2_000_000)), Some(2));
        assert_eq!(retry_after(&wait(u64::MAX)), None);
    }
}
