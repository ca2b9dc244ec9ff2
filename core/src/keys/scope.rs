//! What a key may do. `admin` may do everything; `read` may read everything except keys;
//! `events:ingest` is for edges sending events back;
//! capability write scopes (`links:write`, `flags:write`, `ratelimit:write`,
//! `customers:write`, `autocomplete:write`, `catalog:write`, `inventory:write`, `jobs:write`, `orders:write`) let a key
//! change one capability; `ratelimit:check` lets an origin ask for decisions and nothing else.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
pub enum Scope {
    #[serde(rename = "admin")]
    Admin,
    #[serde(rename = "read")]
    Read,
    /// Edge ingest keys: send events back to the core, nothing else.
    #[serde(rename = "events:ingest")]
    IngestEvents,
    /// Create, change and delete short links and their domains.
    #[serde(rename = "links:write")]
    LinksWrite,
    /// Change feature flags, their environments and client keys.
    #[serde(rename = "flags:write")]
    FlagsWrite,
    /// Change rate-limit policies.
    #[serde(rename = "ratelimit:write")]
    RatelimitWrite,
    /// Ask the global tier for decisions (`POST /v1/ratelimit/check`), for origins and gateways.
    #[serde(rename = "ratelimit:check")]
    RatelimitCheck,
    /// Create, change, erase customers and end their sessions.
    #[serde(rename = "customers:write")]
    CustomersWrite,
    /// Change autocomplete indexes, their terms and curation, and publish them.
    #[serde(rename = "autocomplete:write")]
    AutocompleteWrite,
    /// Change products, categories, collections and price lists.
    #[serde(rename = "catalog:write")]
    CatalogWrite,
    /// Change stock levels and locations; reserve, release and commit stock.
    #[serde(rename = "inventory:write")]
    InventoryWrite,
    /// Retry and discard background jobs.
    #[serde(rename = "jobs:write")]
    JobsWrite,
    /// Place, cancel, fulfil and refund orders; register webhook endpoints.
    #[serde(rename = "orders:write")]
    OrdersWrite,
}

impl Scope {
    pub const ALL: &[Scope] = &[
        Scope::Admin,
        Scope::Read,
        Scope::IngestEvents,
        Scope::LinksWrite,
        Scope::FlagsWrite,
        Scope::RatelimitWrite,
        Scope::RatelimitCheck,
        Scope::CustomersWrite,
        Scope::AutocompleteWrite,
        Scope::CatalogWrite,
        Scope::InventoryWrite,
        Scope::JobsWrite,
        Scope::OrdersWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Read => "read",
            Scope::IngestEvents => "events:ingest",
            Scope::LinksWrite => "links:write",
            Scope::FlagsWrite => "flags:write",
            Scope::RatelimitWrite => "ratelimit:write",
            Scope::RatelimitCheck => "ratelimit:check",
            Scope::CustomersWrite => "customers:write",
            Scope::AutocompleteWrite => "autocomplete:write",
            Scope::CatalogWrite => "catalog:write",
            Scope::InventoryWrite => "inventory:write",
            Scope::JobsWrite => "jobs:write",
            Scope::OrdersWrite => "orders:write",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown scope `{0}`; known scopes: {known}", known = known_scopes())]
pub struct ScopeError(pub String);

fn known_scopes() -> String {
    Scope::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Scope, ScopeError> {
        Scope::ALL.iter().copied().find(|scope| scope.as_str() == s).ok_or_else(|| ScopeError(s.to_owned()))
    }
}

pub(super) fn to_stored(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}

/// Scopes as stored; a scope this build does not know (written by a newer version) is
/// dropped, which can only ever take rights away.
pub(super) fn parse_stored(stored: &str) -> Vec<Scope> {
    stored.split(' ').filter_map(|s| s.parse().ok()).collect()
}
