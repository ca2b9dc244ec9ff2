//! Rate limits in the core: policies (stored, audited, published to the edge per domain)
//! and the global tier that decides against Redis or the in-process store.
//!
//! The policy model, its validation and every decision live in `verge_shared::ratelimit`,
//! so the policies the core accepts are exactly those every edge can enforce. This module
//! adds storage (`policies`), the check route (`check`) and envoy's YAML (`envoy`).

pub(crate) mod alerts;
pub(crate) mod check;
pub(crate) mod defaults;
pub(crate) mod envoy;
pub(crate) mod lane;
pub(crate) mod policies;
pub(crate) mod rls;
pub(crate) mod stats;

pub(crate) use stats::STATS_KEPT_FOR;

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;
use verge_shared::ratelimit::{Invalid, Policy, PolicySet};

use crate::db::Database;
use crate::error::{ApiError, FieldError};
use crate::keys::{Grants, Scope};
use crate::publish::{DatasetContent, DatasetSource};

/// The dataset of a domain's policies: `rl/<domain>`, one part.
pub(crate) fn dataset(domain: &str) -> String {
    format!("rl/{domain}")
}
pub(crate) const POLICIES_PART: &str = "policies";

/// Keys that may change policies.
#[derive(Debug)]
pub(crate) struct PolicyWriters;
impl Grants for PolicyWriters {
    const SCOPES: &'static [Scope] = &[Scope::RatelimitWrite];
}

/// Keys that may read policies and their statistics.
#[derive(Debug)]
pub(crate) struct PolicyReaders;
impl Grants for PolicyReaders {
    const SCOPES: &'static [Scope] = &[Scope::Read, Scope::RatelimitWrite];
}

/// Keys that may ask for decisions.
#[derive(Debug)]
pub(crate) struct Checkers;
impl Grants for Checkers {
    const SCOPES: &'static [Scope] = &[Scope::RatelimitCheck, Scope::RatelimitWrite];
}

pub(crate) fn validation(errors: Vec<Invalid>, prefix: &str) -> ApiError {
    ApiError::validation(
        errors
            .into_iter()
            .map(|e| FieldError { field: format!("{prefix}{}", e.pointer), message: e.message })
            .collect(),
    )
}

/// A stored policy: its parsed form and its timestamps.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) policy: Policy,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

impl Stored {
    fn from_row(row: &AnyRow) -> Result<Stored, sqlx::Error> {
        let id: String = row.try_get("id")?;
        let text: String = row.try_get("document")?;
        let document: Value = serde_json::from_str(&text)
            .map_err(|err| sqlx::Error::Decode(format!("ratelimit_policies.document: {err}").into()))?;
        let policy = Policy::from_value(&id, &document).map_err(|errors| {
            sqlx::Error::Decode(format!("ratelimit_policies {id}: stored policy no longer valid: {errors:?}").into())
        })?;
        Ok(Stored { policy, created_at: row.try_get("created_at")?, updated_at: row.try_get("updated_at")? })
    }

    /// The API's form: the policy's JSON plus its timestamps.
    pub(crate) fn to_value(&self) -> Value {
        let mut value = self.policy.to_value();
        value["created_at"] = crate::time::Millis(self.created_at).to_string().into();
        value["updated_at"] = crate::time::Millis(self.updated_at).to_string().into();
        value
    }
}

/// The descriptor in canonical JSON: what makes two policies indistinguishable.
pub(crate) fn descriptor_text(policy: &Policy) -> String {
    policy.to_value()["descriptor"].to_string()
}

pub(crate) async fn load(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Stored, ApiError> {
    match sqlx::query("SELECT * FROM ratelimit_policies WHERE id = $1").bind(id).fetch_optional(&mut *conn).await? {
        Some(row) => Ok(Stored::from_row(&row)?),
        None => Err(ApiError::not_found(format!("no rate-limit policy `{id}`"))),
    }
}

/// Memo entries of domains' policy sets.
const MEMO_PREFIX: &str = "ratelimit_domain:";

/// Every policy of `domain`, oldest first: remembered for a second for the check route
/// (see `memo`), and forgotten by every policy write in this process.
pub(crate) async fn domain_set(db: &Database, domain: &str) -> Result<std::sync::Arc<PolicySet>, sqlx::Error> {
    let memo_key = format!("{MEMO_PREFIX}{domain}");
    if let Some(set) = db.memo().get::<PolicySet>(&memo_key) {
        return Ok(set);
    }
    let rows = sqlx::query("SELECT * FROM ratelimit_policies WHERE domain = $1 ORDER BY id")
        .bind(domain)
        .fetch_all(db.pool())
        .await?;
    let policies = rows.iter().map(|row| Stored::from_row(row).map(|s| s.policy)).collect::<Result<_, _>>()?;
    let set = std::sync::Arc::new(PolicySet { policies });
    db.memo().put(memo_key, std::sync::Arc::clone(&set));
    Ok(set)
}

/// The ids of every stored policy, remembered for a second like the sets.
pub(crate) async fn policy_ids(
    db: &Database,
) -> Result<std::sync::Arc<std::collections::HashSet<String>>, sqlx::Error> {
    let memo_key = format!("{MEMO_PREFIX}*ids");
    if let Some(ids) = db.memo().get::<std::collections::HashSet<String>>(&memo_key) {
        return Ok(ids);
    }
    let rows = sqlx::query("SELECT id FROM ratelimit_policies").fetch_all(db.pool()).await?;
    let ids = rows.iter().map(|row| row.try_get::<String, _>("id")).collect::<Result<_, _>>()?;
    let ids = std::sync::Arc::new(ids);
    db.memo().put(memo_key, std::sync::Arc::clone(&ids));
    Ok(ids)
}

/// Call after committing any policy write.
pub(crate) fn forget_sets(db: &Database) {
    db.memo().forget(MEMO_PREFIX);
}

/// Publishes each domain's policies as one dataset, and the keys the edge's check route
/// accepts (those holding `ratelimit:check`) as another.
#[derive(Debug)]
pub(crate) struct RatelimitSource;

#[async_trait::async_trait]
impl DatasetSource for RatelimitSource {
    async fn build(&self, db: &Database) -> Result<Vec<DatasetContent>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM ratelimit_policies ORDER BY domain, id").fetch_all(db.pool()).await?;
        let mut datasets: Vec<(String, PolicySet)> = Vec::new();
        for row in &rows {
            let policy = Stored::from_row(row)?.policy;
            match datasets.last_mut() {
                Some((domain, set)) if *domain == policy.domain => set.policies.push(policy),
                _ => datasets.push((policy.domain.clone(), PolicySet { policies: vec![policy] })),
            }
        }
        let mut contents: Vec<DatasetContent> = datasets
            .into_iter()
            .map(|(domain, set)| DatasetContent {
                name: dataset(&domain),
                parts: vec![(POLICIES_PART.to_owned(), set.to_json())],
            })
            .collect();
        let checkers: Vec<Value> = crate::keys::active_hashes_with(db, crate::keys::Scope::RatelimitCheck)
            .await?
            .into_iter()
            .map(|(hash, expires_at)| serde_json::json!({"hash": hash, "expires_at": expires_at}))
            .collect();
        if !checkers.is_empty() {
            contents.push(DatasetContent {
                name: verge_shared::ratelimit::CHECKERS_DATASET.to_owned(),
                parts: vec![(
                    verge_shared::ratelimit::CHECKERS_PART.to_owned(),
                    Value::Array(checkers).to_string().into_bytes(),
                )],
            });
        }
        Ok(contents)
    }
}
