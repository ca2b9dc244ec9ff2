//! The audit log: every administrative write records who did what to which object, with
//! the object before and after, in the same transaction as the write itself. Reading it
//! over HTTP is in `routes`.

pub(crate) mod routes;

use std::fmt;

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::pagination::{Cursor, Page, PageParams};
use crate::time::{Millis, now_millis};

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An API key, by id.
    Key(String),
    /// The `verge` command run against the database directly.
    Cli,
    /// Verge itself (bootstrap, scheduled work).
    System,
    /// A customer acting on their own account, by id.
    Customer(String),
    /// An operator signed in to the console, by id (`op_…`).
    Operator(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Key(id) => f.write_str(id),
            Actor::Cli => f.write_str("cli"),
            Actor::System => f.write_str("system"),
            Actor::Customer(id) | Actor::Operator(id) => f.write_str(id),
        }
    }
}

/// Appends an entry inside the caller's transaction.
pub async fn record<T: Serialize>(
    conn: &mut sqlx::AnyConnection,
    actor: &Actor,
    action: &str,
    target_type: &str,
    target_id: &str,
    before: Option<&T>,
    after: Option<&T>,
) -> Result<(), sqlx::Error> {
    let json = |v: Option<&T>| v.map(|v| serde_json::to_string(v).expect("audit values serialize"));
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, action, target_type, target_id, before_json, after_json)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(crate::ids::new_id("aud"))
    .bind(now_millis().0)
    .bind(actor.to_string())
    .bind(action)
    .bind(target_type)
    .bind(target_id)
    .bind(json(before))
    .bind(json(after))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: Millis,
    /// Key id, operator id (`op_…`), customer id, `cli` or `system`.
    pub actor: String,
    /// `<object>.<verb>`, e.g. `key.revoke`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    /// What changed between `before` and `after`, field by field.
    pub changes: Vec<Change>,
}

/// One changed value, located by JSON pointer; `null` on the side where it is absent.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Change {
    pub path: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// The differences between two JSON values: objects are compared key by key, anything
/// else (arrays included) as a whole.
pub fn changes(before: Option<&serde_json::Value>, after: Option<&serde_json::Value>) -> Vec<Change> {
    fn walk(
        path: String,
        before: Option<&serde_json::Value>,
        after: Option<&serde_json::Value>,
        out: &mut Vec<Change>,
    ) {
        match (before, after) {
            (Some(serde_json::Value::Object(a)), Some(serde_json::Value::Object(b))) => {
                let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for key in keys {
                    let escaped = key.replace('~', "~0").replace('/', "~1");
                    walk(format!("{path}/{escaped}"), a.get(key), b.get(key), out);
                }
            }
            (a, b) if a == b => {}
            (a, b) => out.push(Change { path, before: a.cloned(), after: b.cloned() }),
        }
    }
    let mut out = Vec::new();
    walk(String::new(), before, after, &mut out);
    out
}

impl AuditEntry {
    fn from_row(row: &AnyRow) -> Result<AuditEntry, sqlx::Error> {
        let json = |col: &str| -> Result<Option<serde_json::Value>, sqlx::Error> {
            let text: Option<String> = row.try_get(col)?;
            Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
        };
        let (before, after) = (json("before_json")?, json("after_json")?);
        Ok(AuditEntry {
            changes: changes(before.as_ref(), after.as_ref()),
            id: row.try_get("id")?,
            at: Millis(row.try_get("at")?),
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            target_type: row.try_get("target_type")?,
            target_id: row.try_get("target_id")?,
            before,
            after,
        })
    }
}

/// Entries about any of `targets`, newest first: the history of one object that several
/// target ids name (a flag's catalog entry and its definition in each environment).
pub(crate) async fn list_for_targets(
    conn: &mut sqlx::AnyConnection,
    targets: &[String],
    page: &PageParams,
) -> Result<Page<AuditEntry>, ApiError> {
    let cursor = Cursor::from_params(page)?;
    let placeholders: Vec<String> = (0..targets.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT * FROM audit_log WHERE ($1 = '' OR id < $1) AND target_id IN ({}) ORDER BY id DESC LIMIT {}",
        placeholders.join(", "),
        cursor.fetch_limit()
    );
    let mut query = sqlx::query(&sql).bind(cursor.after());
    for target in targets {
        query = query.bind(target);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let entries = rows.iter().map(AuditEntry::from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(cursor.page(entries, |e| e.id.clone()))
}
