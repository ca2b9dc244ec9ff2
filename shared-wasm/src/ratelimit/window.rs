//! Fixed and sliding windows: counts per period, kept as three numbers.
//!
//! A window bucket stores the index of the window it last counted in, that window's count
//! and the count of the window before. A fixed window allows `limit` per window and
//! starts from zero at each boundary (cheap, but twice the limit can pass around one).
//! The sliding window estimates the last `period` as Cloudflare does: the previous
//! window's count weighted by how much of it still overlaps, plus the current count.
//!
//! Stores keep the three numbers atomically (a lock in process, a Lua script in Redis that
//! mirrors [`decide`] step for step) and call [`decide`] for every figure they report, so
//! the arithmetic lives only here. Denied requests are not counted: a client that keeps
//! retrying while over the limit does not push its own reset further away.

use crate::gcra::Decision;

/// What a window bucket holds between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowState {
    /// `now / period` when it last counted.
    pub window: u64,
    pub current: u64,
    pub previous: u64,
}

/// Whether the previous window's count weighs on the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fixed,
    Sliding,
}

/// The counts as seen from window `index`: a bucket last used long ago holds nothing.
pub fn rolled(state: Option<WindowState>, index: u64) -> (u64, u64) {
    match state {
        Some(s) if s.window >= index => (s.current, s.previous),
        Some(s) if s.window + 1 == index => (0, s.current),
        _ => (0, 0),
    }
}

/// The previous window's weight at `elapsed_us` into a window of `period_us`, as a
/// fraction; computed in doubles so the Redis script (Lua numbers are doubles) reaches the
/// same answer bit for bit: every operand is an integer below 2^53.
fn estimate(kind: Kind, current: u64, previous: u64, elapsed_us: u64, period_us: u64) -> f64 {
    match kind {
        Kind::Fixed => current as f64,
        Kind::Sliding => previous as f64 * ((period_us - elapsed_us) as f64 / period_us as f64) + current as f64,
    }
}

/// Decides a request of `cost` at `now_us` against `state`, for `limit` per `period_us`.
/// Returns the decision and, when allowed, the state to store (for two periods, after
/// which the bucket has nothing left to say).
pub fn decide(
    kind: Kind,
    limit: u32,
    period_us: u64,
    state: Option<WindowState>,
    now_us: u64,
    cost: u32,
) -> (Decision, Option<WindowState>) {
    let period_us = period_us.max(1);
    let index = now_us / period_us;
    let elapsed = now_us % period_us;
    let to_boundary = period_us - elapsed;
    // A request that read the clock just before a racing one rolled the window over
    // counts in the newer window.
    let index = index.max(state.map_or(0, |s| s.window));
    let (current, previous) = rolled(state, index);
    let limit_f = f64::from(limit);
    let used = estimate(kind, current, previous, elapsed, period_us);
    // Everything counted now has left the estimate by the end of the next window (sliding)
    // or of this one (fixed).
    let reset_after_us = match kind {
        Kind::Fixed if current > 0 => to_boundary,
        Kind::Sliding if current > 0 => to_boundary + period_us,
        Kind::Sliding if previous > 0 => to_boundary,
        _ => 0,
    };
    if cost > limit {
        return (Decision { allowed: false, remaining: 0, retry_after_us: u64::MAX, reset_after_us }, None);
    }
    if used + f64::from(cost) > limit_f {
        let retry_after_us = wait_until_fits(kind, limit, period_us, current, previous, elapsed, cost);
        return (Decision { allowed: false, remaining: 0, retry_after_us, reset_after_us }, None);
    }
    let after = used + f64::from(cost);
    let remaining = (limit_f - after).floor().max(0.0) as u32;
    let reset_after_us = match kind {
        Kind::Fixed => to_boundary,
        Kind::Sliding => to_boundary + period_us,
    };
    let stored = WindowState { window: index, current: current + u64::from(cost), previous };
    (Decision { allowed: true, remaining, retry_after_us: 0, reset_after_us }, Some(stored))
}

/// How long a denied request must wait before the same request fits.
fn wait_until_fits(
    kind: Kind,
    limit: u32,
    period_us: u64,
    current: u64,
    previous: u64,
    elapsed: u64,
    cost: u32,
) -> u64 {
    let to_boundary = period_us - elapsed;
    let room = u64::from(limit - cost);
    // The first instant `t` into a window at which `count * (period - t) / period`
    // drops to `spare` or below.
    let drained_by = |count: u64, spare: u64| -> u64 {
        let excess = u128::from(count.saturating_sub(spare)) * u128::from(period_us);
        excess.div_ceil(u128::from(count.max(1))) as u64
    };
    match kind {
        Kind::Fixed => to_boundary,
        // Within this window the previous count keeps draining, if that can be enough.
        Kind::Sliding if current <= room && previous > 0 => {
            drained_by(previous, room - current).saturating_sub(elapsed).clamp(1, to_boundary)
        }
        // Otherwise in the next window, where this window's count is the one draining.
        Kind::Sliding => to_boundary + drained_by(current, room),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    fn run(kind: Kind, limit: u32, period: u64, times: &[u64]) -> Vec<bool> {
        let mut state = None;
        times
            .iter()
            .map(|&now| {
                let (d, next) = decide(kind, limit, period, state, now, 1);
                if next.is_some() {
                    state = next;
                }
                d.allowed
            })
            .collect()
    }

    #[test]
    fn a_fixed_window_allows_the_limit_then_starts_over_at_the_boundary() {
        let t0 = 100 * SECOND;
        let got = run(Kind::Fixed, 2, 10 * SECOND, &[t0, t0 + 1, t0 + 2, t0 + 10 * SECOND, t0 + 10 * SECOND]);
        assert_eq!(got, [true, true, false, true, true]);
    }

    #[test]
    fn a_sliding_window_weighs_the_previous_window() {
        let period = 10 * SECOND;
        let t0 = 100 * SECOND;
        // 10 in the first window; halfway through the next, 5 of them still count.
        let mut times = vec![t0; 10];
        times.extend([t0 + period + period / 2; 6]);
        let got = run(Kind::Sliding, 10, period, &times);
        assert_eq!(got.iter().filter(|a| **a).count(), 15);
        assert!(!got[15], "the sixth request halfway through is one too many");
    }

    #[test]
    fn denied_requests_say_when_to_come_back_and_that_wait_is_enough() {
        for kind in [Kind::Fixed, Kind::Sliding] {
            let period = 10 * SECOND;
            let t0 = 100 * SECOND + 3 * SECOND;
            let mut state = None;
            for _ in 0..4 {
                state = decide(kind, 4, period, state, t0, 1).1.or(state);
            }
            let (denied, none) = decide(kind, 4, period, state, t0, 1);
            assert!(!denied.allowed && none.is_none(), "{kind:?}");
            let retry = denied.retry_after_us;
            assert!(decide(kind, 4, period, state, t0 + retry, 1).0.allowed, "{kind:?} allows after {retry} µs");
            // The estimate is in doubles, the wait in exact integers: they agree to the µs
            // or so; a millisecond earlier is clearly too early.
            assert!(!decide(kind, 4, period, state, t0 + retry - 1_000, 1).0.allowed, "{kind:?}: not earlier");
        }
    }

    #[test]
    fn remaining_and_reset_describe_the_window() {
        let period = 60 * SECOND;
        let now = 600 * SECOND + 15 * SECOND;
        let (d, state) = decide(Kind::Fixed, 5, period, None, now, 2);
        assert_eq!((d.remaining, d.reset_after_us), (3, 45 * SECOND));
        assert_eq!(state, Some(WindowState { window: 10, current: 2, previous: 0 }));
        let (big, _) = decide(Kind::Fixed, 5, period, state, now, 6);
        assert_eq!(big.retry_after_us, u64::MAX);
    }

    #[test]
    fn a_late_request_from_an_earlier_window_counts_in_the_newer_one() {
        let state = Some(WindowState { window: 11, current: 1, previous: 4 });
        assert_eq!(rolled(state, 10), (1, 4));
        assert_eq!(rolled(state, 12), (0, 1));
        assert_eq!(rolled(state, 13), (0, 0));
    }
}
