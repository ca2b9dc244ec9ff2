//! The rate-limit datasets an instance has read: each domain's policy set (`rl/<domain>`)
//! and the keys that may use the check route (`rl-checkers`), parsed once per version.
//!
//! An instance trusts the manifest it read for a quarter of a second (`crate::manifest`), so a
//! change applies within a second without a manifest read per request.

use std::cell::RefCell;
use std::sync::Arc;

use verge_shared::kv::versioned_key;
use verge_shared::ratelimit::{CHECKERS_DATASET, CHECKERS_PART, Entry, Pattern, PolicySet};

use crate::host::Host;

/// Datasets kept per instance (an instance serves the edge's own and a few checked domains).
const KEPT: usize = 16;
const POLICIES_PART: &str = "policies";

/// A key that may ask the edge's check route for decisions: its token's SHA-256 (hex) and
/// when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checker {
    pub(crate) hash: String,
    pub(crate) expires_at_ms: Option<u64>,
}

pub(crate) struct Loaded<T> {
    dataset: String,
    /// The version and content hash the manifest named when it was read.
    version: Option<(u64, String)>,
    value: Arc<T>,
}

/// A domain's policy set, with the descriptor shapes its policies have worked out once per
/// version rather than on every request.
#[derive(Default)]
pub(crate) struct Policies {
    pub(crate) set: PolicySet,
    /// Each distinct (keys in order, tier key) among the set's policies.
    pub(crate) shapes: Vec<(Vec<String>, Option<String>)>,
    /// The routes the set's policies name, when every one of them starts with an exact
    /// `route` (as the defaults do): a request on any other route matches none of them.
    routes: Option<Vec<String>>,
}

impl Policies {
    /// A published set holds its own domain's policies alone, so its shapes are theirs.
    fn of(set: PolicySet) -> Policies {
        let mut shapes: Vec<(Vec<String>, Option<String>)> = Vec::new();
        for policy in &set.policies {
            let shape =
                (policy.shape().map(str::to_owned).collect::<Vec<_>>(), policy.tiers.as_ref().map(|t| t.key.clone()));
            if !shapes.contains(&shape) {
                shapes.push(shape);
            }
        }
        let routes = set
            .policies
            .iter()
            .map(|policy| match policy.descriptor.first() {
                Some(Entry { key, value: Some(Pattern::Exact(route)) }) if key == "route" => Some(route.clone()),
                _ => None,
            })
            .collect();
        Policies { set, shapes, routes }
    }

    /// Whether some policy may apply to a request on `route`.
    pub(crate) fn may_apply(&self, route: &str) -> bool {
        self.routes.as_ref().is_none_or(|routes| routes.iter().any(|named| named == route))
    }
}

thread_local! {
    static POLICY_SETS: RefCell<Vec<Loaded<Policies>>> = const { RefCell::new(Vec::new()) };
    static CHECKERS: RefCell<Vec<Loaded<Vec<Checker>>>> = const { RefCell::new(Vec::new()) };
}

/// The live policy set of `domain`; empty when none is published or it cannot be read.
pub(crate) async fn policies<H: Host>(host: &H, domain: &str) -> Arc<Policies> {
    let dataset = format!("rl/{domain}");
    load(host, &POLICY_SETS, &dataset, POLICIES_PART, |bytes| {
        Policies::of(PolicySet::from_json(bytes).unwrap_or_default())
    })
    .await
}

/// The keys the check route accepts; none when none are published.
pub(crate) async fn checkers<H: Host>(host: &H) -> Arc<Vec<Checker>> {
    load(host, &CHECKERS, CHECKERS_DATASET, CHECKERS_PART, parse_checkers).await
}

fn parse_checkers(bytes: &[u8]) -> Vec<Checker> {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_slice(bytes) else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| {
            let hash = item.get("hash")?.as_str()?.to_owned();
            Some(Checker { hash, expires_at_ms: item.get("expires_at").and_then(serde_json::Value::as_u64) })
        })
        .collect()
}

/// A whole-read dataset part as an instance keeps it: parsed once per published version
/// of the manifest the instance trusts (`crate::manifest`). Other capabilities' datasets
/// (the session key set) use it too.
pub(crate) async fn load<H: Host, T: Default>(
    host: &H,
    cache: &'static std::thread::LocalKey<RefCell<Vec<Loaded<T>>>>,
    dataset: &str,
    part: &str,
    parse: fn(&[u8]) -> T,
) -> Arc<T> {
    load_versioned(host, cache, dataset, part, parse).await.0
}

/// [`load`], with the live version of the dataset (`None` when none is published), for
/// datasets whose other parts are read one at a time (an autocomplete index's shards).
pub(crate) async fn load_versioned<H: Host, T: Default>(
    host: &H,
    cache: &'static std::thread::LocalKey<RefCell<Vec<Loaded<T>>>>,
    dataset: &str,
    part: &str,
    parse: fn(&[u8]) -> T,
) -> (Arc<T>, Option<u64>) {
    let manifest = crate::manifest::live(host).await;
    let live = manifest.as_deref().and_then(|m| m.get(dataset)).map(|d| (d.version, d.hash.as_str()));
    let number = live.map(|(version, _)| version);
    let same = |l: &Loaded<T>| l.dataset == dataset && l.version.as_ref().map(|(v, h)| (*v, h.as_str())) == live;
    if let Some(value) = cache.with_borrow(|kept| kept.iter().find(|l| same(l)).map(|l| l.value.clone())) {
        return (value, number);
    }
    let value = match live {
        None => Arc::new(T::default()),
        Some((version, _)) => match host.kv_get(&versioned_key(dataset, version, part)).await {
            Ok(Some(bytes)) => Arc::new(parse(&bytes)),
            // Not kept: the next request reads it again.
            _ => return (Arc::new(T::default()), number),
        },
    };
    cache.with_borrow_mut(|kept| {
        kept.retain(|l| l.dataset != dataset);
        if kept.len() >= KEPT {
            kept.remove(0);
        }
        let version = live.map(|(version, hash)| (version, hash.to_owned()));
        kept.push(Loaded { dataset: dataset.to_owned(), version, value: value.clone() });
        (value, number)
    })
}
