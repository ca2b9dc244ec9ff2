//! Edits to an environment's flag set as values, so one path applies them all.
//!
//! The direct routes apply a single [`Change`] at once; a change request holds a list until
//! a different key holder approves it; a scheduled change holds one until its time
//! (`requests.rs`). Every path ends in [`commit`]: the environment's row is locked, the
//! edits are applied in order to its document, the result is checked with the edge's
//! evaluator and against the project's flag catalog, and the document, one audit entry
//! per edit and the outbox row are written in the caller's transaction. A held change is
//! therefore checked exactly like a direct one, when proposed and again when applied.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{Environment, check_document, dataset};
use crate::audit::Actor;
use crate::error::{ApiError, FieldError};
use crate::publish::enqueue;
use crate::time::now_millis;

/// One edit of an environment's flag set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
#[schema(as = FlagEdit)]
pub(crate) enum Change {
    /// Create or replace a flag (`state`, `variants`, `defaultVariant`, `targeting`,
    /// `metadata`, as flagd defines one; percentage rollouts are `fractional` rules).
    PutFlag {
        key: String,
        #[schema(value_type = Object)]
        flag: Value,
    },
    DeleteFlag {
        key: String,
    },
    /// The kill switch: `state` DISABLED, so every client falls back to its code default.
    KillFlag {
        key: String,
    },
    /// Create or replace a segment: a JsonLogic rule flags share with `{"$ref": name}`.
    PutSegment {
        name: String,
        #[schema(value_type = Object)]
        rule: Value,
    },
    DeleteSegment {
        name: String,
    },
    /// Replace the whole set with a flagd document. With `keep_broken`, flags whose
    /// targeting cannot be used are stored anyway and answer PARSE_ERROR, as in flagd.
    Import {
        #[schema(value_type = Object)]
        document: Value,
        #[serde(default)]
        keep_broken: bool,
    },
}

impl Change {
    /// The member of the set this edit replaces, as a JSON pointer; `""` for an import,
    /// which replaces the whole set.
    pub(crate) fn member(&self) -> String {
        let escape = |name: &str| name.replace('~', "~0").replace('/', "~1");
        match self {
            Change::PutFlag { key, .. } | Change::DeleteFlag { key } | Change::KillFlag { key } => {
                format!("/flags/{}", escape(key))
            }
            Change::PutSegment { name, .. } | Change::DeleteSegment { name } => {
                format!("/$evaluators/{}", escape(name))
            }
            Change::Import { .. } => String::new(),
        }
    }
}

/// What the members `changes` touch look like in `document` now: pointer → SHA-256 of
/// the member's JSON, `None` where it is absent. A change request records this when it
/// is proposed and is applied only while it still holds.
pub(crate) fn base_of(document: &Value, changes: &[Change]) -> std::collections::BTreeMap<String, Option<String>> {
    changes
        .iter()
        .map(|change| {
            let member = change.member();
            let digest = document.pointer(&member).map(|value| verge_shared::sha256_hex(value.to_string().as_bytes()));
            (member, digest)
        })
        .collect()
}

/// What [`commit`] stored.
#[derive(Debug)]
pub(crate) struct Committed {
    pub(crate) environment: Environment,
    pub(crate) document: Value,
    /// Flags kept although their targeting cannot be used.
    pub(crate) broken: Vec<FieldError>,
}

/// One applied edit, as the audit log records it.
struct Edit {
    action: &'static str,
    target_type: &'static str,
    target: String,
    before: Option<Value>,
    after: Option<Value>,
}

/// A flag key or segment name: 1–200 printable characters.
fn check_member_name(field: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::validation(vec![FieldError {
            field: field.into(),
            message: "must be 1 to 200 printable characters".into(),
        }]));
    }
    Ok(())
}

fn members<'a>(document: &'a mut Value, member: &str) -> Result<&'a mut serde_json::Map<String, Value>, ApiError> {
    document
        .as_object_mut()
        .ok_or_else(|| ApiError::internal("stored set is not an object"))?
        .entry(member)
        .or_insert_with(|| Value::Object(serde_json::Map::new()))
        .as_object_mut()
        .ok_or_else(|| ApiError::internal(format!("stored set: `{member}` is not an object")))
}

fn missing(noun: &str, name: &str) -> ApiError {
    ApiError::not_found(format!("no {noun} `{name}` in this environment"))
}

/// Applies one change to `document` in memory.
fn apply(document: &mut Value, env: &str, change: Change) -> Result<Edit, ApiError> {
    let member_edit = |action, member: &str, name: &str, before, after| Edit {
        action,
        target_type: if member == "flags" { "flag" } else { "segment" },
        target: format!("{env}/{}/{name}", member.trim_start_matches('$')),
        before,
        after,
    };
    Ok(match change {
        Change::PutFlag { key, flag } => {
            check_member_name("key", &key)?;
            let before = members(document, "flags")?.insert(key.clone(), flag.clone());
            member_edit("flag.put", "flags", &key, before, Some(flag))
        }
        Change::DeleteFlag { key } => {
            let before = members(document, "flags")?.remove(&key).ok_or_else(|| missing("flag", &key))?;
            member_edit("flag.delete", "flags", &key, Some(before), None)
        }
        Change::KillFlag { key } => {
            let flag = members(document, "flags")?.get_mut(&key).ok_or_else(|| missing("flag", &key))?;
            let before = flag.clone();
            flag["state"] = Value::String("DISABLED".into());
            let after = flag.clone();
            member_edit("flag.kill", "flags", &key, Some(before), Some(after))
        }
        Change::PutSegment { name, rule } => {
            check_member_name("name", &name)?;
            verge_shared::flags::check(&rule).map_err(|err| {
                ApiError::validation(vec![FieldError {
                    field: format!("/$evaluators/{name}{}", err.pointer),
                    message: err.message,
                }])
            })?;
            let before = members(document, "$evaluators")?.insert(name.clone(), rule.clone());
            member_edit("segment.put", "$evaluators", &name, before, Some(rule))
        }
        Change::DeleteSegment { name } => {
            let before = members(document, "$evaluators")?.remove(&name).ok_or_else(|| missing("segment", &name))?;
            member_edit("segment.delete", "$evaluators", &name, Some(before), None)
        }
        Change::Import { document: imported, .. } => {
            if !imported.is_object() {
                return Err(ApiError::validation(vec![FieldError {
                    field: "/".into(),
                    message: "a flagd flag set is a JSON object".into(),
                }]));
            }
            let before = std::mem::replace(document, imported.clone());
            Edit {
                action: "flags.import",
                target_type: "flag_environment",
                target: env.to_owned(),
                before: Some(before),
                after: Some(imported),
            }
        }
    })
}

/// The flags a change sets, whose variants the catalog checks.
fn flags_set(change: &Change) -> Vec<String> {
    match change {
        Change::PutFlag { key, .. } => vec![key.clone()],
        Change::Import { document, .. } => {
            document["flags"].as_object().map_or(Vec::new(), |f| f.keys().cloned().collect())
        }
        _ => Vec::new(),
    }
}

/// Applies `changes` in order to the environment, checks the result whole, and writes it
/// with its audit entries and outbox row in `tx`. Protection is the caller's business.
pub(crate) async fn commit(
    tx: &mut sqlx::AnyConnection,
    (project, env): (&str, &str),
    changes: Vec<Change>,
    actor: &Actor,
) -> Result<Committed, ApiError> {
    let (_, mut document) = super::load_locked(tx, project, env).await?;
    // Problems the set already had (kept with `keep_broken`) do not block other edits.
    let mut tolerated: Vec<String> = check_document(&document)?.into_iter().map(|p| p.field).collect();
    let target = dataset(project, env);
    let mut edits = Vec::with_capacity(changes.len());
    let mut typed_keys: Vec<String> = Vec::new();
    for change in changes {
        if let Change::Import { document: imported, keep_broken } = &change {
            let broken = check_document(imported)?;
            if !broken.is_empty() && !keep_broken {
                return Err(ApiError::validation(broken));
            }
            tolerated = broken.into_iter().map(|p| p.field).collect();
        }
        typed_keys.extend(flags_set(&change));
        edits.push(apply(&mut document, &target, change)?);
    }
    let problems = check_document(&document)?;
    let new_problems: Vec<FieldError> =
        problems.iter().filter(|problem| !tolerated.contains(&problem.field)).cloned().collect();
    if !new_problems.is_empty() {
        return Err(ApiError::validation(new_problems));
    }
    typed_keys.sort();
    typed_keys.dedup();
    // A flag set and then deleted within one batch is not in the set to check.
    typed_keys.retain(|key| document["flags"].get(key).is_some());
    super::catalog::record_flags(tx, project, &document, &typed_keys).await?;
    let now = now_millis();
    sqlx::query("UPDATE flag_environments SET document = $1, updated_at = $2 WHERE project = $3 AND name = $4")
        .bind(document.to_string())
        .bind(now.0)
        .bind(project)
        .bind(env)
        .execute(&mut *tx)
        .await?;
    for edit in &edits {
        crate::audit::record(
            tx,
            actor,
            edit.action,
            edit.target_type,
            &edit.target,
            edit.before.as_ref(),
            edit.after.as_ref(),
        )
        .await?;
    }
    enqueue(tx, &target).await?;
    let (environment, document) = super::load(tx, project, env).await?;
    Ok(Committed { environment, document, broken: problems })
}

/// Refuses direct edits of a protected environment: they go through change requests.
pub(crate) fn ensure_unprotected(environment: &Environment) -> Result<(), ApiError> {
    if environment.protected {
        return Err(ApiError::conflict(
            "change_request_required",
            format!(
                "`{}/{}` is protected: propose the change with POST /v1/flags/environments/{}/{}/changes \
                 and have a different key holder approve it",
                environment.project, environment.name, environment.project, environment.name
            ),
        ));
    }
    Ok(())
}

/// Applies `changes` now to an environment that is not protected, in one transaction.
pub(crate) async fn apply_directly(
    db: &crate::db::Database,
    (project, env): (&str, &str),
    changes: Vec<Change>,
    actor: &Actor,
) -> Result<Committed, ApiError> {
    let mut tx = db.begin_write().await?;
    let (environment, _) = super::load_locked(&mut tx, project, env).await?;
    ensure_unprotected(&environment)?;
    let committed = commit(&mut tx, (project, env), changes, actor).await?;
    tx.commit().await?;
    Ok(committed)
}
