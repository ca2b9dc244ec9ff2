//! The edge settings the core publishes (`verge_shared::settings`), as handlers read them.

use verge_shared::kv::versioned_key;
use verge_shared::settings::{self, EdgeSettings};

use crate::host::Host;

/// The published edge settings; defaults when they cannot be read, so an edge that has
/// not seen a publish still reports not-found requests.
pub(crate) async fn edge_settings<H: Host>(host: &H) -> EdgeSettings {
    let manifest = crate::manifest::live(host).await;
    let Some(version) = manifest.as_deref().and_then(|m| m.get(settings::DATASET)).map(|d| d.version) else {
        return EdgeSettings::default();
    };
    match host.kv_get(&versioned_key(settings::DATASET, version, settings::PART)).await {
        Ok(Some(value)) => EdgeSettings::decode(&value).unwrap_or_default(),
        _ => EdgeSettings::default(),
    }
}
