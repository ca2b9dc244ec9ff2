//! Which environment a client key opens, remembered per instance for a short while.
//!
//! A browser SDK sends the same key with every evaluation, and finding its environment
//! costs a SHA-256 of the key and a KV read. An instance keeps the keys it found for
//! [`RECHECK_MS`], the staleness the manifest already has (`crate::manifest`): a key revoked
//! in the core stops opening its environment at an instance within that. Only keys that
//! were found are kept, so guessing fills nothing, and a presented key is compared with
//! every kept one in constant time, as any secret is.

use std::cell::RefCell;

use subtle::ConstantTimeEq;
use verge_shared::flags::client_key_hash;

use crate::host::{Host, HostError};
use crate::manifest::RECHECK_MS;

const CLIENT_KEY_PREFIX: &str = "flagkeys/";
/// Keys kept per instance (an instance serves one or a few apps).
const KEPT_KEYS: usize = 16;

struct Found {
    token: String,
    dataset: String,
    read_at: u64,
}

thread_local! {
    static FOUND: RefCell<Vec<Found>> = const { RefCell::new(Vec::new()) };
}

/// The dataset `token` opens; `None` when no environment has it.
pub(super) async fn dataset_of<H: Host>(host: &H, token: &str) -> Result<Option<String>, HostError> {
    let now = host.now_millis();
    let fresh = |found: &Found| now.saturating_sub(found.read_at) < RECHECK_MS;
    let kept = FOUND.with_borrow(|kept| {
        // Every kept key is compared in full, whether an earlier one matched or not.
        let mut matched = None;
        for found in kept {
            if bool::from(found.token.as_bytes().ct_eq(token.as_bytes())) && fresh(found) {
                matched = Some(found.dataset.clone());
            }
        }
        matched
    });
    if kept.is_some() {
        return Ok(kept);
    }
    // The lookup is by hash: the token itself is never stored in KV.
    let value = host.kv_get(&format!("{CLIENT_KEY_PREFIX}{}", client_key_hash(token))).await?;
    let Some(dataset) = value.and_then(|value| String::from_utf8(value).ok()) else { return Ok(None) };
    FOUND.with_borrow_mut(|kept| {
        kept.retain(|found| fresh(found) && !bool::from(found.token.as_bytes().ct_eq(token.as_bytes())));
        if kept.len() >= KEPT_KEYS {
            kept.remove(0);
        }
        kept.push(Found { token: token.to_owned(), dataset: dataset.clone(), read_at: now });
    });
    Ok(Some(dataset))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use futures_executor::block_on;

    use super::*;
    use crate::router::tests::FakeHost;

    fn host_with_key(token: &str, dataset: &str) -> FakeHost {
        let key = format!("{CLIENT_KEY_PREFIX}{}", client_key_hash(token));
        FakeHost { kv: HashMap::from([(key, dataset.as_bytes().to_vec())]), ..FakeHost::default() }
    }

    #[test]
    fn a_found_key_is_kept_for_the_recheck_interval_and_a_revoked_one_then_refused() {
        let published = host_with_key("vfc_kept", "flags/app/prod");
        assert_eq!(block_on(dataset_of(&published, "vfc_kept")).unwrap().as_deref(), Some("flags/app/prod"));
        // Revoked in the core (gone from KV): the instance still knows it, for a while.
        let revoked = FakeHost::default();
        revoked.elapsed_ms.set(RECHECK_MS - 1);
        assert_eq!(block_on(dataset_of(&revoked, "vfc_kept")).unwrap().as_deref(), Some("flags/app/prod"));
        revoked.elapsed_ms.set(RECHECK_MS);
        assert_eq!(block_on(dataset_of(&revoked, "vfc_kept")).unwrap(), None);
    }

    #[test]
    fn only_the_same_key_matches_and_refusals_are_not_kept() {
        let published = host_with_key("vfc_right", "flags/app/prod");
        assert_eq!(block_on(dataset_of(&published, "vfc_right")).unwrap().as_deref(), Some("flags/app/prod"));
        for wrong in ["vfc_righ", "vfc_rightt", "vfc_Right", ""] {
            assert_eq!(block_on(dataset_of(&published, wrong)).unwrap(), None, "{wrong:?}");
        }
        // A key the store gets later is found at once: its earlier refusal was not kept.
        let later = host_with_key("vfc_new", "flags/app/dev");
        assert_eq!(block_on(dataset_of(&FakeHost::default(), "vfc_new")).unwrap(), None);
        assert_eq!(block_on(dataset_of(&later, "vfc_new")).unwrap().as_deref(), Some("flags/app/dev"));
    }
}
