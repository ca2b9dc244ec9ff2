//! Counters that keep the public routes from being turned into weapons: guessing
//! passwords (failed sign-ins per account and per client address), burning CPU on
//! Argon2id (sign-ups per address), and flooding an inbox (reset and verification requests).
//!
//! They live in the counter store the global rate-limit tier uses (Redis, or in-process on
//! one node), as fixed windows: an account's failures are counted before any password is
//! hashed, so a locked-out account costs nothing to hammer.

use std::time::Duration;

use super::device::Client;
use super::fold_email;
use crate::error::ApiError;
use crate::state::AppState;

/// Failed sign-ins allowed per account, and per client address, in `SIGN_IN_WINDOW`.
const FAILURES_PER_ACCOUNT: i64 = 5;
const FAILURES_PER_ADDRESS: i64 = 50;
const SIGN_IN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The window of the request quotas (`spend`).
const REQUEST_WINDOW: Duration = Duration::from_secs(60 * 60);

fn too_many(code: &'static str, window: Duration) -> ApiError {
    ApiError::too_many_requests(
        code,
        "too many attempts for this account or from this address; try again later",
        window.as_secs(),
    )
}

/// A counter of one account (by its folded email, hashed: emails are not kept in the
/// counter store) and its limit.
pub(crate) fn per_account(what: &str, project: &str, email: &str, limit: i64) -> (String, i64) {
    let account = verge_shared::sha256_hex(format!("{project}\0{}", fold_email(email)).as_bytes());
    (format!("{what}:acct:{account}"), limit)
}

/// A counter of one client address and its limit.
pub(crate) fn per_address(what: &str, client: &Client, limit: i64) -> (String, i64) {
    (format!("{what}:ip:{}", client.ip.as_deref().unwrap_or("unknown")), limit)
}

/// Refuses a sign-in whose account or address has failed too often; returns the counters
/// to charge if this attempt fails too.
pub(crate) async fn sign_in_allowed(
    state: &AppState,
    project: &str,
    email: &str,
    client: &Client,
) -> Result<[String; 2], ApiError> {
    let counters = [
        per_account("signin", project, email, FAILURES_PER_ACCOUNT),
        per_address("signin", client, FAILURES_PER_ADDRESS),
    ];
    for (key, limit) in &counters {
        let failures = state.cache.increment(key, 0, SIGN_IN_WINDOW).await.map_err(ApiError::internal)?;
        if failures >= *limit {
            return Err(too_many("sign_in_throttled", SIGN_IN_WINDOW));
        }
    }
    Ok(counters.map(|(key, _)| key))
}

pub(crate) async fn sign_in_failed(state: &AppState, counters: &[String]) -> Result<(), ApiError> {
    for key in counters {
        state.cache.increment(key, 1, SIGN_IN_WINDOW).await.map_err(ApiError::internal)?;
    }
    Ok(())
}

/// Counts one request against each `(counter, limit)` an hour; 429 `code` past any limit.
pub(crate) async fn spend(state: &AppState, code: &'static str, counters: &[(String, i64)]) -> Result<(), ApiError> {
    for (key, limit) in counters {
        let used = state.cache.increment(key, 1, REQUEST_WINDOW).await.map_err(ApiError::internal)?;
        if used > *limit {
            return Err(too_many(code, REQUEST_WINDOW));
        }
    }
    Ok(())
}
