//! Requests and server errors per minute over the last hour, counted in memory by this
//! process, for the console's overview charts. Prometheus keeps the long history; this is
//! the glance an operator wants without one.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

const MINUTES: usize = 60;

#[derive(Debug, Default)]
struct Slot {
    minute: AtomicI64,
    requests: AtomicU64,
    errors: AtomicU64,
}

/// Sixty one-minute slots, reused round the clock.
#[derive(Debug)]
pub(crate) struct Traffic {
    slots: [Slot; MINUTES],
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic { slots: std::array::from_fn(|_| Slot::default()) }
    }
}

fn minute_now() -> i64 {
    crate::time::now_millis().0.div_euclid(60_000)
}

impl Traffic {
    /// Counts one answered request; `server_error` for a 5xx.
    pub(crate) fn record(&self, server_error: bool) {
        self.record_at(minute_now(), server_error);
    }

    fn record_at(&self, minute: i64, server_error: bool) {
        let slot = &self.slots[minute.rem_euclid(MINUTES as i64) as usize];
        let held = slot.minute.load(Ordering::Acquire);
        if held != minute && slot.minute.compare_exchange(held, minute, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            // The first request of a new minute clears what the slot held an hour ago; a
            // request racing this reset may be lost, which a glance can afford.
            slot.requests.store(0, Ordering::Release);
            slot.errors.store(0, Ordering::Release);
        }
        slot.requests.fetch_add(1, Ordering::AcqRel);
        if server_error {
            slot.errors.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// (minute start in Unix ms, requests, server errors) for each of the last 60 minutes,
    /// oldest first, the current minute last.
    pub(crate) fn last_hour(&self) -> Vec<(i64, u64, u64)> {
        self.last_hour_at(minute_now())
    }

    fn last_hour_at(&self, now: i64) -> Vec<(i64, u64, u64)> {
        (now - MINUTES as i64 + 1..=now)
            .map(|minute| {
                let slot = &self.slots[minute.rem_euclid(MINUTES as i64) as usize];
                if slot.minute.load(Ordering::Acquire) == minute {
                    (minute * 60_000, slot.requests.load(Ordering::Acquire), slot.errors.load(Ordering::Acquire))
                } else {
                    (minute * 60_000, 0, 0)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_minute_and_forgets_after_an_hour() {
        let traffic = Traffic::default();
        traffic.record_at(1000, false);
        traffic.record_at(1000, true);
        traffic.record_at(1001, false);
        let hour = traffic.last_hour_at(1001);
        assert_eq!(hour.len(), 60);
        assert_eq!(hour[58], (1000 * 60_000, 2, 1));
        assert_eq!(hour[59], (1001 * 60_000, 1, 0));
        // An hour on, minute 1060 reuses minute 1000's slot and starts from nothing.
        traffic.record_at(1060, false);
        let hour = traffic.last_hour_at(1060);
        assert_eq!(hour[59], (1060 * 60_000, 1, 0));
        assert_eq!(hour[0], (1001 * 60_000, 1, 0));
        assert!(!hour.iter().any(|(at, ..)| *at == 1000 * 60_000));
    }
}
