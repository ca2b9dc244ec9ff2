//! Failed link-password attempts, limited per link and client, before any hash is run.
//!
//! Each check of a password costs the edge tens of milliseconds of CPU (Argon2id), so
//! guessing must stop early: at most [`PER_CLIENT`] failures per link and client address,
//! and [`PER_LINK`] per link from all clients, in a [`WINDOW_MS`] window. Until the
//! rate-limit capability counts across instances, the counts live in the instance: a
//! platform that reuses instances (Workers isolates, Spin and the local host, up to 128
//! requests each) enforces them per instance, so an attacker spread over N instances gets
//! N times the attempts; Fastly, which starts an instance per request, cannot enforce them
//! at all. The memory is bounded ([`MAX_TRACKED`] entries).

use std::cell::RefCell;
use std::collections::HashMap;

pub(crate) const WINDOW_MS: u64 = 15 * 60 * 1000;
pub(crate) const PER_CLIENT: u32 = 5;
pub(crate) const PER_LINK: u32 = 50;
const MAX_TRACKED: usize = 10_000;

thread_local! {
    /// Key → (failures, when the window began).
    static FAILURES: RefCell<HashMap<String, (u32, u64)>> = RefCell::new(HashMap::new());
}

fn keys(link: &str, client: &str) -> [(String, u32); 2] {
    [(format!("{link}\u{0}{client}"), PER_CLIENT), (link.to_owned(), PER_LINK)]
}

/// Seconds until `client` may try `link` again; `None` when it may now.
pub(crate) fn retry_after(link: &str, client: &str, now_ms: u64) -> Option<u64> {
    FAILURES.with(|failures| {
        let failures = failures.borrow();
        keys(link, client)
            .iter()
            .filter_map(|(key, limit)| {
                let (count, since) = *failures.get(key)?;
                let ends = since + WINDOW_MS;
                (count >= *limit && now_ms < ends).then(|| (ends - now_ms).div_ceil(1000))
            })
            .max()
    })
}

/// Counts a wrong password from `client` for `link`.
pub(crate) fn record_failure(link: &str, client: &str, now_ms: u64) {
    FAILURES.with(|failures| {
        let mut failures = failures.borrow_mut();
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, (_, since)| now_ms < *since + WINDOW_MS);
            if failures.len() >= MAX_TRACKED {
                failures.clear();
            }
        }
        for (key, _) in keys(link, client) {
            let entry = failures.entry(key).or_insert((0, now_ms));
            if now_ms >= entry.1 + WINDOW_MS {
                *entry = (0, now_ms);
            }
            entry.0 += 1;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_stopped_after_its_failures_until_the_window_ends() {
        let now = 1_000_000;
        for _ in 0..PER_CLIENT {
            assert_eq!(retry_after("lnk_a", "1.2.3.4", now), None);
            record_failure("lnk_a", "1.2.3.4", now);
        }
        assert_eq!(retry_after("lnk_a", "1.2.3.4", now + 1_000), Some(WINDOW_MS / 1000 - 1));
        assert_eq!(retry_after("lnk_a", "5.6.7.8", now), None, "another client is not stopped");
        assert_eq!(retry_after("lnk_b", "1.2.3.4", now), None, "nor another link");
        assert_eq!(retry_after("lnk_a", "1.2.3.4", now + WINDOW_MS), None, "the window ends");
    }

    #[test]
    fn a_link_is_stopped_after_failures_from_many_clients() {
        let now = 5_000_000;
        for client in 0..PER_LINK {
            record_failure("lnk_many", &format!("10.0.0.{client}"), now);
        }
        assert!(retry_after("lnk_many", "192.0.2.1", now).is_some());
    }
}
