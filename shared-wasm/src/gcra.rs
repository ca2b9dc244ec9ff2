//! The generic cell rate algorithm (GCRA): a token bucket kept as one number.
//!
//! A bucket that allows `limit` requests per `period`, with bursts up to `burst`, needs
//! only its theoretical arrival time (TAT): the instant at which it would be full again.
//! One number means one atomic compare-and-set in process and one short Lua script in
//! Redis, and the decision below is the only place the arithmetic lives: every store calls
//! it (the Redis script mirrors it line for line and is tested against it).
//!
//! Times are microseconds since the Unix epoch, so they stay exact in Lua's doubles.

/// Sustained `limit` requests per `period_us`, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub limit: u32,
    pub period_us: u64,
    /// The bucket's size: how many requests may come at once after a quiet spell.
    pub burst: u32,
}

impl Policy {
    /// `limit` per `period_us` with bursts of the same size, the usual token bucket.
    pub fn per_period(limit: u32, period_us: u64) -> Policy {
        Policy { limit, period_us, burst: limit }
    }

    /// The time a full bucket holds: `burst` emission intervals.
    pub fn capacity_us(&self) -> u64 {
        self.emission_interval_us() * u64::from(self.burst.max(1))
    }

    /// Time one unit of cost takes to drip back into the bucket.
    pub fn emission_interval_us(&self) -> u64 {
        (self.period_us / u64::from(self.limit.max(1))).max(1)
    }
}

/// What a bucket says to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Units left after this request (0 when denied).
    pub remaining: u32,
    /// When denied, how long until the same request would be allowed; 0 when allowed.
    /// `u64::MAX` when the cost exceeds the burst and no wait will ever help.
    pub retry_after_us: u64,
    /// How long until the bucket is full again.
    pub reset_after_us: u64,
}

/// Decides a request of `cost` units at `now_us` against a bucket whose stored TAT is
/// `tat_us` (None for a bucket never used or expired). Returns the decision and, when
/// allowed, the TAT to store (the store keeps it until that instant, then may forget it).
pub fn decide(policy: Policy, tat_us: Option<u64>, now_us: u64, cost: u32) -> (Decision, Option<u64>) {
    let interval = policy.emission_interval_us();
    let capacity_us = policy.capacity_us();
    let tat = tat_us.unwrap_or(now_us).max(now_us);
    let reset_now = tat - now_us;
    if cost > policy.burst.max(1) {
        let decision = Decision { allowed: false, remaining: 0, retry_after_us: u64::MAX, reset_after_us: reset_now };
        return (decision, None);
    }
    let new_tat = tat + interval * u64::from(cost);
    let allow_at = new_tat.saturating_sub(capacity_us);
    if now_us < allow_at {
        let decision =
            Decision { allowed: false, remaining: 0, retry_after_us: allow_at - now_us, reset_after_us: reset_now };
        return (decision, None);
    }
    let reset_after_us = new_tat - now_us;
    let remaining = ((capacity_us - reset_after_us) / interval) as u32;
    (Decision { allowed: true, remaining, retry_after_us: 0, reset_after_us }, Some(new_tat))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    fn run(policy: Policy, times: &[u64]) -> Vec<bool> {
        let mut tat = None;
        times
            .iter()
            .map(|&now| {
                let (d, new_tat) = decide(policy, tat, now, 1);
                if let Some(t) = new_tat {
                    tat = Some(t);
                }
                d.allowed
            })
            .collect()
    }

    #[test]
    fn allows_a_full_burst_then_refills_at_the_rate() {
        let policy = Policy::per_period(3, 3 * SECOND);
        let t0 = 100 * SECOND;
        assert_eq!(run(policy, &[t0, t0, t0, t0]), [true, true, true, false]);
        // One unit drips back per second.
        assert_eq!(run(policy, &[t0, t0, t0, t0 + SECOND, t0 + SECOND]), [true, true, true, true, false]);
    }

    #[test]
    fn reports_remaining_retry_and_reset() {
        let policy = Policy::per_period(2, 2 * SECOND);
        let now = 50 * SECOND;
        let (first, tat) = decide(policy, None, now, 1);
        assert_eq!(first, Decision { allowed: true, remaining: 1, retry_after_us: 0, reset_after_us: SECOND });
        let (second, tat) = decide(policy, tat, now, 1);
        assert_eq!(second.remaining, 0);
        let (third, none) = decide(policy, tat, now, 1);
        assert!(!third.allowed);
        assert_eq!(none, None);
        assert_eq!(third.retry_after_us, SECOND);
        assert_eq!(third.reset_after_us, 2 * SECOND);
    }

    #[test]
    fn cost_above_limit_never_passes() {
        let policy = Policy::per_period(5, SECOND);
        let (d, tat) = decide(policy, None, SECOND, 6);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, u64::MAX);
        assert_eq!(tat, None);
    }

    #[test]
    fn a_burst_smaller_than_the_limit_spreads_requests_out() {
        // 10 per 10 s, at most 2 at once: a third request must wait one interval.
        let policy = Policy { limit: 10, period_us: 10 * SECOND, burst: 2 };
        let t0 = 100 * SECOND;
        assert_eq!(run(policy, &[t0, t0, t0, t0 + SECOND, t0 + SECOND]), [true, true, false, true, false]);
        let (d, _) = decide(policy, None, t0, 3);
        assert_eq!(d.retry_after_us, u64::MAX, "a cost above the burst never fits");
    }

    #[test]
    fn an_idle_bucket_is_full_again() {
        let policy = Policy::per_period(2, 2 * SECOND);
        let (_, tat) = decide(policy, None, 0, 2);
        let (later, _) = decide(policy, tat, 10 * SECOND, 1);
        assert!(later.allowed);
        assert_eq!(later.remaining, 1);
    }
}
