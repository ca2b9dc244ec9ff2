//! `verge publish --target … --out DIR`: a full snapshot of edge configuration on disk,
//! in the format each platform's own tooling loads.
//!
//! | target | files | load with |
//! |---|---|---|
//! | `local` | `kv.db` | `verge edge serve --store DIR` |
//! | `spin` | `kv.db`, `runtime-config.toml` | `spin up --runtime-config-file DIR/runtime-config.toml` |
//! | `cloudflare` | `kv-bulk.json`, then `kv-manifest.json`; `kv-delete.json` | `wrangler kv bulk put` (data first, manifest second), `wrangler kv bulk delete` |
//! | `fastly` | `kv-entries.ndjson`, then `kv-manifest.ndjson`; `local-kv.json` | `fastly kv-store-entry create --file` (data first); `local-kv.json` is the same state for `fastly.toml`'s `[local_server.kv_stores]` (viceroy, `fastly compute serve`) |
//!
//! The bulk targets keep the full state in their files, so publishing into the same
//! directory again compares against it: an unchanged state rewrites nothing, and only
//! what changed is new. The manifest sits in a file of its own because it must be
//! uploaded last.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use verge_shared::kv::MANIFEST_KEY;

use super::{EdgeStore, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Local,
    Spin,
    Cloudflare,
    Fastly,
}

/// One entry as `wrangler kv bulk put` and the Fastly CLI read it.
#[derive(Debug, Serialize, Deserialize)]
struct BulkEntry {
    key: String,
    value: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    base64: bool,
}

/// The platform's bulk files in `dir`, kept in memory while publishing.
#[derive(Debug)]
pub struct BulkFiles {
    target: Target,
    dir: PathBuf,
    entries: Mutex<BTreeMap<String, Vec<u8>>>,
    deleted: Mutex<Vec<String>>,
    changed: AtomicBool,
}

impl BulkFiles {
    fn data_file(&self) -> PathBuf {
        self.dir.join(if self.target == Target::Fastly { "kv-entries.ndjson" } else { "kv-bulk.json" })
    }

    fn manifest_file(&self) -> PathBuf {
        self.dir.join(if self.target == Target::Fastly { "kv-manifest.ndjson" } else { "kv-manifest.json" })
    }

    /// Loads the state a previous publish left in `dir`, if any.
    pub fn open(target: Target, dir: &Path) -> Result<BulkFiles, StoreError> {
        let files = BulkFiles {
            target,
            dir: dir.to_owned(),
            entries: Mutex::new(BTreeMap::new()),
            deleted: Mutex::new(Vec::new()),
            changed: AtomicBool::new(false),
        };
        let mut entries = BTreeMap::new();
        for path in [files.data_file(), files.manifest_file()] {
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let parsed: Vec<BulkEntry> = if target == Target::Fastly {
                text.lines().filter(|l| !l.is_empty()).map(serde_json::from_str).collect::<Result<_, _>>()
            } else {
                serde_json::from_str(&text)
            }
            .map_err(|e| files.fail(format!("{} is not a bulk file this command wrote: {e}", path.display())))?;
            for entry in parsed {
                let value = STANDARD.decode(&entry.value).map_err(|e| files.fail(e.to_string()))?;
                entries.insert(entry.key, value);
            }
        }
        *files.entries.lock().expect("not poisoned") = entries;
        Ok(files)
    }

    fn fail(&self, message: String) -> StoreError {
        StoreError::Backend { store: self.describe(), message }
    }

    /// Writes the files if anything changed; returns whether it wrote.
    pub fn finish(&self) -> Result<bool, StoreError> {
        if !self.changed.load(Ordering::Relaxed) {
            return Ok(false);
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| self.fail(e.to_string()))?;
        let entries = self.entries.lock().expect("not poisoned");
        let bulk = |keys: &mut dyn Iterator<Item = (&String, &Vec<u8>)>| -> Vec<BulkEntry> {
            keys.map(|(key, value)| BulkEntry { key: key.clone(), value: STANDARD.encode(value), base64: true })
                .collect()
        };
        let data = bulk(&mut entries.iter().filter(|(k, _)| *k != MANIFEST_KEY));
        let manifest = bulk(&mut entries.iter().filter(|(k, _)| *k == MANIFEST_KEY));
        let render = |list: &[BulkEntry]| -> String {
            if self.target == Target::Fastly {
                list.iter().map(|e| serde_json::to_string(e).expect("serializes") + "\n").collect()
            } else {
                serde_json::to_string_pretty(list).expect("serializes")
            }
        };
        write_atomically(&self.data_file(), &render(&data)).map_err(|e| self.fail(e.to_string()))?;
        write_atomically(&self.manifest_file(), &render(&manifest)).map_err(|e| self.fail(e.to_string()))?;
        if self.target == Target::Fastly {
            self.write_local_kv(&entries).map_err(|e| self.fail(e.to_string()))?;
        }
        if self.target == Target::Cloudflare {
            let deleted = self.deleted.lock().expect("not poisoned");
            let json = serde_json::to_string_pretty(&*deleted).expect("serializes");
            write_atomically(&self.dir.join("kv-delete.json"), &json).map_err(|e| self.fail(e.to_string()))?;
        }
        Ok(true)
    }
}

impl BulkFiles {
    /// Fastly's local-testing KV file: text values inline as `data`, anything else in a
    /// file under `local-kv/` referenced by absolute path (the format has no base64).
    fn write_local_kv(&self, entries: &BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
        let values_dir = self.dir.canonicalize()?.join("local-kv");
        let mut local = serde_json::Map::new();
        for (key, value) in entries {
            let entry = match std::str::from_utf8(value) {
                Ok(text) => serde_json::json!({ "data": text }),
                Err(_) => {
                    std::fs::create_dir_all(&values_dir)?;
                    let file = values_dir.join(hex::encode(sha2::Sha256::digest(key.as_bytes())));
                    std::fs::write(&file, value)?;
                    serde_json::json!({ "file": file })
                }
            };
            local.insert(key.clone(), entry);
        }
        write_atomically(&self.dir.join("local-kv.json"), &serde_json::to_string_pretty(&local).expect("serializes"))
    }
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(tmp, path)
}

#[async_trait]
impl EdgeStore for BulkFiles {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.entries.lock().expect("not poisoned").get(key).cloned())
    }

    async fn put_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let mut map = self.entries.lock().expect("not poisoned");
        for (key, value) in entries {
            if map.get(key) != Some(value) {
                map.insert(key.clone(), value.clone());
                self.changed.store(true, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut map = self.entries.lock().expect("not poisoned");
        for key in keys {
            if map.remove(key).is_some() {
                self.deleted.lock().expect("not poisoned").push(key.clone());
                self.changed.store(true, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let map = self.entries.lock().expect("not poisoned");
        Ok(map.range(prefix.to_owned()..).map(|(k, _)| k).take_while(|k| k.starts_with(prefix)).cloned().collect())
    }

    fn describe(&self) -> String {
        format!("{:?}:{}", self.target, self.dir.display()).to_lowercase()
    }
}

/// What `spin up` needs to read `kv.db` as its default key-value store.
pub const SPIN_RUNTIME_CONFIG: &str = "[key_value_store.default]\ntype = \"spin\"\npath = \"kv.db\"\n";
