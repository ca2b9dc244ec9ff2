//! Failed link-password attempts, limited per link and client, before any hash is run:
//! the default policy of every password-protected link.
//!
//! Each check of a password costs the edge tens of milliseconds of CPU (Argon2id), so
//! guessing must stop early: at most [`PER_CLIENT`] failures per link and client address,
//! and [`PER_LINK`] per link from all clients, per [`WINDOW_MS`] window. The failures are
//! counted in the platform's rate-limit counters (`Host::counter_add`), so the bound holds
//! across every instance that shares them (see docs/ratelimit.md for each platform). When
//! the counters cannot answer, no password is checked: guessing must never be unlimited.

use verge_shared::sha256_hex;

use crate::host::{Host, HostError};
use crate::ratelimit::counter_name;

pub(crate) const WINDOW_MS: u64 = 15 * 60 * 1000;
pub(crate) const PER_CLIENT: i64 = 5;
pub(crate) const PER_LINK: i64 = 50;

/// The two counters a failure counts in, with their limits, for the window of `now_ms`.
fn counters(link: &str, client: &str, now_ms: u64) -> [(String, i64); 2] {
    let window = now_ms / WINDOW_MS;
    let period_us = WINDOW_MS * 1000;
    let per_client = sha256_hex(format!("password\u{1f}{link}\u{1f}{client}").as_bytes());
    let per_link = sha256_hex(format!("password\u{1f}{link}").as_bytes());
    [(counter_name(&per_client, window, period_us), PER_CLIENT), (counter_name(&per_link, window, period_us), PER_LINK)]
}

/// Seconds until `client` may try `link` again; `None` when it may now.
pub(crate) async fn retry_after<H: Host>(
    host: &H,
    link: &str,
    client: &str,
    now_ms: u64,
) -> Result<Option<u64>, HostError> {
    for (name, limit) in counters(link, client, now_ms) {
        if host.counter_add(&name, 0).await? >= limit {
            let ends = (now_ms / WINDOW_MS + 1) * WINDOW_MS;
            return Ok(Some((ends - now_ms).div_ceil(1000)));
        }
    }
    Ok(None)
}

/// Counts a wrong password from `client` for `link`.
pub(crate) async fn record_failure<H: Host>(host: &H, link: &str, client: &str, now_ms: u64) {
    for (name, _) in counters(link, client, now_ms) {
        // A failure that cannot be counted is caught by the next `retry_after`, which
        // then cannot read the counters either and refuses.
        let _ = host.counter_add(&name, 1).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::tests::FakeHost;

    fn retry(host: &FakeHost, link: &str, client: &str, now: u64) -> Option<u64> {
        futures_executor::block_on(retry_after(host, link, client, now)).unwrap()
    }

    fn fail(host: &FakeHost, link: &str, client: &str, now: u64) {
        futures_executor::block_on(record_failure(host, link, client, now));
    }

    #[test]
    fn a_client_is_stopped_after_its_failures_until_the_window_ends() {
        let host = FakeHost::default();
        let now = 100 * WINDOW_MS + 1_000;
        for _ in 0..PER_CLIENT {
            assert_eq!(retry(&host, "lnk_a", "1.2.3.4", now), None);
            fail(&host, "lnk_a", "1.2.3.4", now);
        }
        assert_eq!(retry(&host, "lnk_a", "1.2.3.4", now + 1_000), Some(WINDOW_MS / 1000 - 2));
        assert_eq!(retry(&host, "lnk_a", "5.6.7.8", now), None, "another client is not stopped");
        assert_eq!(retry(&host, "lnk_b", "1.2.3.4", now), None, "nor another link");
        assert_eq!(retry(&host, "lnk_a", "1.2.3.4", now + WINDOW_MS), None, "the window ends");
    }

    #[test]
    fn a_link_is_stopped_after_failures_from_many_clients() {
        let host = FakeHost::default();
        let now = 7 * WINDOW_MS;
        for client in 0..PER_LINK {
            fail(&host, "lnk_many", &format!("10.0.0.{client}"), now);
        }
        assert!(retry(&host, "lnk_many", "192.0.2.1", now).is_some());
        let names: Vec<String> = host.counters.borrow().keys().cloned().collect();
        assert!(names.iter().all(|name| !name.contains("10.0.0") && !name.contains("lnk_")), "{names:?}");
    }

    #[test]
    fn without_counters_no_attempt_is_allowed() {
        let host = FakeHost { counters_down: true, ..FakeHost::default() };
        assert!(futures_executor::block_on(retry_after(&host, "lnk_a", "1.2.3.4", 0)).is_err());
    }
}
