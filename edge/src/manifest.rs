//! The manifest (`verge_shared::kv`) as an instance trusts it: read and decoded at most
//! once per [`RECHECK_MS`], shared by every handler that asks which version of a dataset
//! is live.
//!
//! A read per request was a host round trip and a decode on every OFREP evaluation, a
//! large share of what the guest spends there. A published change now applies within
//! [`RECHECK_MS`]; the manifest stays one consistent snapshot, so an instance never mixes
//! versions. A dataset the kept manifest does not name is looked for again at once
//! ([`with_dataset`]), so something just published (a new flag environment) is not
//! refused for a quarter of a second.

use std::cell::RefCell;
use std::sync::Arc;

use verge_shared::kv::{MANIFEST_KEY, Manifest};

use crate::host::Host;

/// How long an instance trusts the manifest it read before reading it again.
pub(crate) const RECHECK_MS: u64 = 250;

thread_local! {
    /// The manifest this instance read and when.
    static KEPT: RefCell<Option<(u64, Arc<Manifest>)>> = const { RefCell::new(None) };
}

/// The live manifest; `None` when none is published or it cannot be read (not kept, so
/// the next request looks again).
pub(crate) async fn live<H: Host>(host: &H) -> Option<Arc<Manifest>> {
    let now = host.now_millis();
    match trusted(now) {
        Some(manifest) => Some(manifest),
        None => read(host, now).await,
    }
}

/// The live manifest, read again now unless the kept one already names `dataset`.
pub(crate) async fn with_dataset<H: Host>(host: &H, dataset: &str) -> Option<Arc<Manifest>> {
    let now = host.now_millis();
    match trusted(now) {
        Some(manifest) if manifest.get(dataset).is_some() => Some(manifest),
        _ => read(host, now).await,
    }
}

/// The kept manifest, if it is younger than [`RECHECK_MS`] at `now`.
fn trusted(now: u64) -> Option<Arc<Manifest>> {
    KEPT.with_borrow(|kept| {
        kept.as_ref().filter(|(read_at, _)| now.saturating_sub(*read_at) < RECHECK_MS).map(|(_, m)| m.clone())
    })
}

async fn read<H: Host>(host: &H, now: u64) -> Option<Arc<Manifest>> {
    let bytes = host.kv_get(MANIFEST_KEY).await.ok()??;
    let manifest = Arc::new(Manifest::decode(&bytes).ok()?);
    KEPT.with_borrow_mut(|kept| *kept = Some((now, manifest.clone())));
    Some(manifest)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::router::tests::FakeHost;

    fn host_with(datasets: &[(&str, u64)], elapsed_ms: u64) -> FakeHost {
        let mut manifest = Manifest { snapshot: 1, datasets: Vec::new() };
        for (name, version) in datasets {
            manifest.set(name, *version, "aa");
        }
        let host =
            FakeHost { kv: HashMap::from([(MANIFEST_KEY.to_owned(), manifest.encode())]), ..FakeHost::default() };
        host.elapsed_ms.set(elapsed_ms);
        host
    }

    fn version(manifest: Option<Arc<Manifest>>, dataset: &str) -> Option<u64> {
        manifest?.get(dataset).map(|d| d.version)
    }

    #[test]
    fn a_change_applies_once_the_kept_manifest_is_a_quarter_second_old() {
        let first = host_with(&[("flags/a", 1)], 0);
        assert_eq!(version(futures_executor::block_on(live(&first)), "flags/a"), Some(1));
        // The same instance (thread) after a publish: still the kept manifest, then the new one.
        let published = host_with(&[("flags/a", 2)], RECHECK_MS - 1);
        assert_eq!(version(futures_executor::block_on(live(&published)), "flags/a"), Some(1));
        published.elapsed_ms.set(RECHECK_MS);
        assert_eq!(version(futures_executor::block_on(live(&published)), "flags/a"), Some(2));
    }

    #[test]
    fn a_dataset_the_kept_manifest_lacks_is_looked_for_at_once() {
        let first = host_with(&[("flags/a", 1)], 0);
        assert_eq!(version(futures_executor::block_on(live(&first)), "flags/a"), Some(1));
        let published = host_with(&[("flags/a", 1), ("flags/b", 1)], 1);
        assert_eq!(version(futures_executor::block_on(with_dataset(&published, "flags/b")), "flags/b"), Some(1));
    }

    #[test]
    fn no_manifest_is_not_kept() {
        let empty = FakeHost::default();
        assert!(futures_executor::block_on(live(&empty)).is_none());
        let published = host_with(&[("flags/a", 1)], 1);
        assert_eq!(version(futures_executor::block_on(live(&published)), "flags/a"), Some(1));
    }
}
