//! The edge KV layout: key names and the manifest that makes a publish atomic.
//!
//! Datasets that an edge reads as a whole (a flag set, a policy set) are written under
//! versioned keys, `<dataset>/v<version>/<part>`, and made live by rewriting one small
//! manifest key last. An edge reads the manifest first and then only keys of the versions
//! it names, so it never sees half a publish: a publish that dies midway leaves the old
//! manifest, which still names complete data.
//!
//! Every value starts with a format byte. The manifest body is plain text, one dataset a
//! line, so the edge parses it without serde in a few microseconds.

/// The key of the manifest; written last by every publish.
pub const MANIFEST_KEY: &str = "meta/manifest";

/// Format byte of manifest values.
pub const MANIFEST_FORMAT: u8 = 1;

/// The key of one part of one version of a whole-read dataset.
pub fn versioned_key(dataset: &str, version: u64, part: &str) -> String {
    format!("{dataset}/v{version}/{part}")
}

/// The prefix under which every version of `dataset` lives.
pub fn dataset_prefix(dataset: &str) -> String {
    format!("{dataset}/v")
}

/// One dataset's live version and the content hash it was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetVersion {
    pub name: String,
    pub version: u64,
    /// Hex SHA-256 of the dataset's content, so an unchanged dataset is never rewritten.
    pub hash: String,
}

/// Which version of each dataset is live, under one monotonically increasing snapshot number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub snapshot: u64,
    /// Sorted by name.
    pub datasets: Vec<DatasetVersion>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    UnknownFormat(u8),
    Empty,
    Malformed(String),
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestError::UnknownFormat(v) => write!(f, "manifest format {v} is newer than this edge understands"),
            ManifestError::Empty => f.write_str("empty manifest value"),
            ManifestError::Malformed(line) => write!(f, "malformed manifest line `{line}`"),
        }
    }
}

impl std::error::Error for ManifestError {}

impl Manifest {
    pub fn get(&self, name: &str) -> Option<&DatasetVersion> {
        self.datasets.binary_search_by(|d| d.name.as_str().cmp(name)).ok().map(|i| &self.datasets[i])
    }

    /// Sets `name` to `version` and `hash`, keeping the list sorted.
    pub fn set(&mut self, name: &str, version: u64, hash: &str) {
        let entry = DatasetVersion { name: name.to_owned(), version, hash: hash.to_owned() };
        match self.datasets.binary_search_by(|d| d.name.as_str().cmp(name)) {
            Ok(i) => self.datasets[i] = entry,
            Err(i) => self.datasets.insert(i, entry),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![MANIFEST_FORMAT];
        out.extend_from_slice(format!("snapshot {}\n", self.snapshot).as_bytes());
        for d in &self.datasets {
            out.extend_from_slice(format!("{} {} {}\n", d.name, d.version, d.hash).as_bytes());
        }
        out
    }

    pub fn decode(value: &[u8]) -> Result<Manifest, ManifestError> {
        let (&format, body) = value.split_first().ok_or(ManifestError::Empty)?;
        if format != MANIFEST_FORMAT {
            return Err(ManifestError::UnknownFormat(format));
        }
        let text = std::str::from_utf8(body).map_err(|_| ManifestError::Malformed("not UTF-8".into()))?;
        let mut lines = text.lines();
        let malformed = |line: &str| ManifestError::Malformed(line.to_owned());
        let first = lines.next().ok_or(ManifestError::Empty)?;
        let snapshot = first.strip_prefix("snapshot ").and_then(|n| n.parse().ok()).ok_or_else(|| malformed(first))?;
        let mut manifest = Manifest { snapshot, datasets: Vec::new() };
        for line in lines {
            let mut fields = line.split(' ');
            let (Some(name), Some(version), Some(hash), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(malformed(line));
            };
            let version = version.parse().map_err(|_| malformed(line))?;
            manifest.set(name, version, hash);
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_stays_sorted() {
        let mut m = Manifest { snapshot: 7, datasets: Vec::new() };
        m.set("rl/policies", 3, "bb");
        m.set("flags/prod", 12, "aa");
        m.set("rl/policies", 4, "cc");
        assert_eq!(m.datasets.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["flags/prod", "rl/policies"]);
        let decoded = Manifest::decode(&m.encode()).unwrap();
        assert_eq!(decoded, m);
        assert_eq!(decoded.get("rl/policies").unwrap().version, 4);
        assert_eq!(decoded.get("links"), None);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert_eq!(Manifest::decode(&[]), Err(ManifestError::Empty));
        assert_eq!(Manifest::decode(&[9, b'x']), Err(ManifestError::UnknownFormat(9)));
        assert!(matches!(Manifest::decode(b"\x01snapshot x\n"), Err(ManifestError::Malformed(_))));
        assert!(matches!(Manifest::decode(b"\x01snapshot 1\nflags 2\n"), Err(ManifestError::Malformed(_))));
    }

    #[test]
    fn keys_follow_the_layout() {
        assert_eq!(versioned_key("flags/prod", 3, "0"), "flags/prod/v3/0");
        assert!(versioned_key("flags/prod", 3, "0").starts_with(&dataset_prefix("flags/prod")));
    }
}
