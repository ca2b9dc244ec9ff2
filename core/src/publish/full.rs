//! A full publish: every dataset and every keyed record brought up to date in one store.
//!
//! It plans first and writes second, so `verge publish` knows how many keys it is about to
//! write and can show a real progress bar, and a store is touched only once nothing is
//! left to read from the database. Whole-read datasets go first, each under a new version,
//! then the manifest that makes them live, then the superseded versions are removed; keyed
//! records follow, written where they differ and deleted where they no longer exist.

use std::collections::HashSet;
use std::sync::Arc;

use verge_shared::kv::{self, MANIFEST_KEY, Manifest};

use super::{DatasetSource, EdgeStore, PublishError, Report, StoreError};
use crate::db::Database;

/// Keys per store write.
const CHUNK: usize = 500;

/// Told how many keys a publish is about to write, then as they are written; `()` ignores
/// both (the background publisher, tests).
pub trait Progress: Sync {
    fn planned(&self, keys: usize);
    fn written(&self, keys: usize);
}

impl Progress for () {
    fn planned(&self, _keys: usize) {}
    fn written(&self, _keys: usize) {}
}

/// Builds every dataset and keyed record and brings `store` up to date with them; see the
/// module docs.
pub async fn publish_to(
    db: &Database,
    sources: &[Arc<dyn DatasetSource>],
    store: &dyn EdgeStore,
    progress: &dyn Progress,
) -> Result<Report, PublishError> {
    publish_above(db, sources, store, progress, None).await
}

/// [`publish_to`], numbering every dataset above `floor` as well: the last manifest seen in
/// a store that has since lost it (a Redis restarted empty, a file rolled back). Edges may
/// still hold parts of those versions in their caches, so a version number is never reused.
pub(super) async fn publish_above(
    db: &Database,
    sources: &[Arc<dyn DatasetSource>],
    store: &dyn EdgeStore,
    progress: &dyn Progress,
    floor: Option<&Manifest>,
) -> Result<Report, PublishError> {
    let datasets = plan_datasets(db, sources, store, floor, None).await?;
    let mut keyed = Vec::new();
    for source in sources {
        if let Some(plan) = plan_keyed(db, source.as_ref(), store).await? {
            keyed.push(plan);
        }
    }
    progress.planned(datasets.keys_to_write() + keyed.iter().map(|plan| plan.changed.len()).sum::<usize>());
    let mut report = write_datasets(store, &datasets, progress).await?;
    for plan in &keyed {
        write_keyed(store, plan, &mut report, progress).await?;
    }
    store.whole().await?;
    Ok(report)
}

/// Brings the whole-read datasets in `store` up to date, manifest last; of the costly
/// sources' datasets (see [`DatasetSource::dataset_prefix`]), only those in `named`.
pub(super) async fn publish_datasets(
    db: &Database,
    sources: &[Arc<dyn DatasetSource>],
    store: &dyn EdgeStore,
    progress: &dyn Progress,
    named: &[String],
) -> Result<Report, PublishError> {
    let plan = plan_datasets(db, sources, store, None, Some(named)).await?;
    progress.planned(plan.keys_to_write());
    write_datasets(store, &plan, progress).await
}

/// What a publish of the whole-read datasets will write.
struct DatasetPlan {
    /// Datasets whose content differs from what the store's manifest names.
    changed: Vec<ChangedDataset>,
    /// Datasets the store names that no source publishes any more.
    removed: Vec<String>,
    /// The manifest once they are written.
    next: Manifest,
    /// False when nothing changed: the live manifest stays as it is.
    write_manifest: bool,
}

struct ChangedDataset {
    name: String,
    version: u64,
    /// Its parts under their versioned keys.
    entries: Vec<(String, Vec<u8>)>,
}

impl DatasetPlan {
    fn keys_to_write(&self) -> usize {
        self.changed.iter().map(|dataset| dataset.entries.len()).sum::<usize>() + usize::from(self.write_manifest)
    }
}

async fn plan_datasets(
    db: &Database,
    sources: &[Arc<dyn DatasetSource>],
    store: &dyn EdgeStore,
    floor: Option<&Manifest>,
    named: Option<&[String]>,
) -> Result<DatasetPlan, PublishError> {
    let current = match store.get(MANIFEST_KEY).await? {
        Some(bytes) => {
            Manifest::decode(&bytes).map_err(|source| PublishError::Manifest { store: store.describe(), source })?
        }
        None => Manifest::default(),
    };
    let mut datasets = Vec::new();
    // Live datasets of costly sources that this publish does not rebuild: kept as they are.
    let mut kept = Vec::new();
    for source in sources {
        match (source.dataset_prefix(), named) {
            (Some(prefix), Some(named)) => {
                let mine: Vec<String> = named.iter().filter(|name| name.starts_with(prefix)).cloned().collect();
                kept.extend(
                    current.datasets.iter().filter(|d| d.name.starts_with(prefix) && !mine.contains(&d.name)).cloned(),
                );
                if !mine.is_empty() {
                    datasets.extend(source.build_named(db, &mine).await?);
                }
            }
            _ => datasets.extend(source.build(db).await?),
        }
    }
    datasets.sort_by(|a, b| a.name.cmp(&b.name));

    // Only what the store holds counts as published; the floor only numbers above itself.
    let floor = floor.filter(|floor| floor.snapshot > current.snapshot);
    let mut next = Manifest { snapshot: current.snapshot.max(floor.map_or(0, |f| f.snapshot)), datasets: Vec::new() };
    for live in &kept {
        next.set(&live.name, live.version, &live.hash);
    }
    let mut changed = Vec::new();
    for dataset in datasets {
        let hash = dataset.hash();
        let live = current.get(&dataset.name);
        if let Some(live) = live.filter(|live| live.hash == hash) {
            next.set(&live.name, live.version, &live.hash);
            continue;
        }
        let seen = floor.and_then(|floor| floor.get(&dataset.name)).map_or(0, |seen| seen.version);
        let version = live.map_or(0, |live| live.version).max(seen) + 1;
        next.set(&dataset.name, version, &hash);
        let entries = dataset
            .parts
            .into_iter()
            .map(|(part, bytes)| (kv::versioned_key(&dataset.name, version, &part), bytes))
            .collect();
        changed.push(ChangedDataset { name: dataset.name, version, entries });
    }
    let removed: Vec<String> =
        current.datasets.iter().filter(|d| next.get(&d.name).is_none()).map(|d| d.name.clone()).collect();
    let first_publish = current.snapshot == 0;
    let write_manifest = !changed.is_empty() || !removed.is_empty() || first_publish || floor.is_some();
    if write_manifest {
        next.snapshot += 1;
    }
    Ok(DatasetPlan { changed, removed, next, write_manifest })
}

async fn write_datasets(
    store: &dyn EdgeStore,
    plan: &DatasetPlan,
    progress: &dyn Progress,
) -> Result<Report, PublishError> {
    let mut report = Report { snapshot: plan.next.snapshot, ..Report::default() };
    for dataset in &plan.changed {
        for chunk in dataset.entries.chunks(CHUNK) {
            store.put_many(chunk).await?;
            report.keys_written += chunk.len();
            progress.written(chunk.len());
        }
        report.written.push(dataset.name.clone());
    }
    if plan.write_manifest {
        // The manifest goes last: until this write, edges keep reading the old versions.
        store.put_many(&[(MANIFEST_KEY.to_owned(), plan.next.encode())]).await?;
        report.keys_written += 1;
        progress.written(1);
    }

    // Versions older than the one just replaced can go: edges that read the previous
    // manifest a moment ago may still be reading the previous version, so it stays.
    for dataset in &plan.changed {
        report.keys_removed += remove_versions(store, &dataset.name, |v| v + 1 < dataset.version).await?;
    }
    for name in &plan.removed {
        report.keys_removed += remove_versions(store, name, |_| true).await?;
    }
    Ok(report)
}

/// What a keyed source's records need in a store: writes where they differ, deletes where
/// the store has a key the source no longer has.
struct KeyedPlan {
    changed: Vec<(String, Vec<u8>)>,
    stale: Vec<String>,
}

async fn plan_keyed(
    db: &Database,
    source: &dyn DatasetSource,
    store: &dyn EdgeStore,
) -> Result<Option<KeyedPlan>, PublishError> {
    let Some(prefix) = source.keyed_prefix() else { return Ok(None) };
    let wanted = source.keyed_all(db).await?;
    let wanted_keys: HashSet<&str> = wanted.iter().map(|(key, _)| key.as_str()).collect();
    let stale: Vec<String> =
        store.keys_with_prefix(prefix).await?.into_iter().filter(|key| !wanted_keys.contains(key.as_str())).collect();
    let mut changed = Vec::new();
    for (key, value) in wanted {
        if store.get(&key).await?.as_deref() != Some(value.as_slice()) {
            changed.push((key, value));
        }
    }
    Ok(Some(KeyedPlan { changed, stale }))
}

async fn write_keyed(
    store: &dyn EdgeStore,
    plan: &KeyedPlan,
    report: &mut Report,
    progress: &dyn Progress,
) -> Result<(), PublishError> {
    for chunk in plan.changed.chunks(CHUNK) {
        store.put_many(chunk).await?;
        report.keys_written += chunk.len();
        progress.written(chunk.len());
    }
    store.delete_many(&plan.stale).await?;
    report.keys_removed += plan.stale.len();
    Ok(())
}

async fn remove_versions(
    store: &dyn EdgeStore,
    dataset: &str,
    doomed: impl Fn(u64) -> bool,
) -> Result<usize, StoreError> {
    let prefix = kv::dataset_prefix(dataset);
    let keys: Vec<String> = store
        .keys_with_prefix(&prefix)
        .await?
        .into_iter()
        .filter(|key| {
            let version = key[prefix.len()..].split('/').next().and_then(|v| v.parse::<u64>().ok());
            version.is_some_and(&doomed)
        })
        .collect();
    store.delete_many(&keys).await?;
    Ok(keys.len())
}
