//! Feature flags: environments holding flagd flag sets, their client keys, and publishing
//! both to edge KV, where OFREP requests are evaluated without calling the core.
//!
//! An environment's flags are one flagd document, checked whole with the evaluator the
//! edges run (`verge_shared::flags`), so a set the core accepts is a set every edge can
//! evaluate. The same functions serve the API and `verge flags`, as `keys` does.

mod access;
pub(crate) mod api;
pub(crate) mod catalog;
pub(crate) mod changes;
pub mod cli;
pub(crate) mod edit;
pub(crate) mod requests;
pub(crate) mod stale;

pub use requests::apply_due_changes;
pub(crate) use stale::EVALUATION_KIND;

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use verge_shared::flags::FlagSet;

use crate::audit::Actor;
use crate::db::Database;
use crate::error::{ApiError, FieldError};
use crate::publish::{DatasetContent, DatasetSource, KeyedValue, enqueue};
use crate::time::{Millis, now_millis};

/// KV key prefix of client-key records: `flagkeys/<sha256 of the token>` → the dataset.
pub(crate) const CLIENT_KEY_PREFIX: &str = "flagkeys/";
/// The dataset part holding the flag set.
pub(crate) const DOCUMENT_PART: &str = "flagd";
const TOKEN_PREFIX: &str = "vfc_";

pub(crate) fn dataset(project: &str, environment: &str) -> String {
    format!("flags/{project}/{environment}")
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Environment {
    pub(crate) project: String,
    pub(crate) name: String,
    /// Changes go through change requests, each approved by a key holder other than its
    /// author, instead of applying directly.
    pub(crate) protected: bool,
    /// How many flags the environment holds.
    pub(crate) flags: usize,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) created_at: Millis,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) updated_at: Millis,
}

impl Environment {
    fn from_row(row: &AnyRow) -> Result<(Environment, Value), sqlx::Error> {
        let text: String = row.try_get("document")?;
        let document: Value = serde_json::from_str(&text)
            .map_err(|err| sqlx::Error::Decode(format!("flag_environments.document: {err}").into()))?;
        let environment = Environment {
            project: row.try_get("project")?,
            name: row.try_get("name")?,
            protected: row.try_get::<i32, _>("protected")? != 0,
            flags: document["flags"].as_object().map_or(0, serde_json::Map::len),
            created_at: Millis(row.try_get("created_at")?),
            updated_at: Millis(row.try_get("updated_at")?),
        };
        Ok((environment, document))
    }
}

/// A project or environment name: 1–50 of `[a-z0-9-]`, starting with a letter or digit.
pub(crate) fn check_name(field: &str, name: &str) -> Result<(), FieldError> {
    let ok = (1..=50).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(FieldError {
            field: field.into(),
            message: "must be 1 to 50 of a-z, 0-9 and `-`, not starting with `-`".into(),
        })
    }
}

/// Checks a flagd document whole. A set that is not flagd's shape is refused; flags whose
/// targeting cannot be used are returned, each located by JSON pointer.
pub(crate) fn check_document(document: &Value) -> Result<Vec<FieldError>, ApiError> {
    let set = FlagSet::from_value(document).map_err(|err| {
        ApiError::validation(vec![FieldError { field: err.0.pointer.clone(), message: err.0.message.clone() }])
    })?;
    Ok(set
        .problems()
        .into_iter()
        .map(|(_, problem)| FieldError { field: problem.pointer, message: problem.message })
        .collect())
}

pub(crate) async fn load(
    conn: &mut sqlx::AnyConnection,
    project: &str,
    name: &str,
) -> Result<(Environment, Value), ApiError> {
    let row = sqlx::query("SELECT * FROM flag_environments WHERE project = $1 AND name = $2")
        .bind(project)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => Ok(Environment::from_row(&row)?),
        None => Err(ApiError::not_found(format!("no environment `{name}` in project `{project}`"))),
    }
}

/// [`load`], locking the row until the transaction ends on PostgreSQL, so that two edits
/// of one environment apply one after the other instead of one overwriting the other.
/// (SQLite's write transactions already exclude each other.)
pub(crate) async fn load_locked(
    conn: &mut sqlx::AnyConnection,
    project: &str,
    name: &str,
) -> Result<(Environment, Value), ApiError> {
    if conn.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT 1 FROM flag_environments WHERE project = $1 AND name = $2 FOR UPDATE")
            .bind(project)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    }
    load(conn, project, name).await
}

/// Creates an environment with an empty flag set.
pub(crate) async fn create_environment(
    db: &Database,
    project: &str,
    name: &str,
    protected: bool,
    actor: &Actor,
) -> Result<Environment, ApiError> {
    let errors: Vec<FieldError> =
        [check_name("project", project), check_name("name", name)].into_iter().filter_map(Result::err).collect();
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let now = now_millis();
    let mut tx = db.begin_write().await?;
    if load(&mut tx, project, name).await.is_ok() {
        return Err(ApiError::conflict("environment_exists", format!("project `{project}` already has `{name}`")));
    }
    sqlx::query(
        "INSERT INTO flag_environments (project, name, protected, document, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(project)
    .bind(name)
    .bind(i32::from(protected))
    .bind(r#"{"flags":{}}"#)
    .bind(now.0)
    .execute(&mut *tx)
    .await?;
    let (environment, _) = load(&mut tx, project, name).await?;
    crate::audit::record(
        &mut tx,
        actor,
        "flags.environment.create",
        "flag_environment",
        &dataset(project, name),
        None,
        Some(&environment),
    )
    .await?;
    enqueue(&mut tx, &dataset(project, name)).await?;
    tx.commit().await?;
    Ok(environment)
}

/// Turns change requests on or off for an environment.
pub(crate) async fn set_protected(
    db: &Database,
    project: &str,
    name: &str,
    protected: bool,
    actor: &Actor,
) -> Result<Environment, ApiError> {
    let mut tx = db.begin_write().await?;
    let (before, _) = load_locked(&mut tx, project, name).await?;
    sqlx::query("UPDATE flag_environments SET protected = $1, updated_at = $2 WHERE project = $3 AND name = $4")
        .bind(i32::from(protected))
        .bind(now_millis().0)
        .bind(project)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let (after, _) = load(&mut tx, project, name).await?;
    let target = dataset(project, name);
    crate::audit::record(
        &mut tx,
        actor,
        "flags.environment.protect",
        "flag_environment",
        &target,
        Some(&before),
        Some(&after),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ClientKey {
    /// `fck_…`
    pub(crate) id: String,
    pub(crate) project: String,
    pub(crate) environment: String,
    pub(crate) name: String,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) created_at: Millis,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(crate) revoked_at: Option<Millis>,
}

impl ClientKey {
    fn from_row(row: &AnyRow) -> Result<ClientKey, sqlx::Error> {
        Ok(ClientKey {
            id: row.try_get("id")?,
            project: row.try_get("project")?,
            environment: row.try_get("environment")?,
            name: row.try_get("name")?,
            created_at: Millis(row.try_get("created_at")?),
            revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(Millis),
        })
    }
}

/// A new client key for one environment; the token is returned once and kept only hashed.
pub(crate) async fn create_client_key(
    db: &Database,
    project: &str,
    environment: &str,
    name: &str,
    actor: &Actor,
) -> Result<(ClientKey, String), ApiError> {
    if !(1..=100).contains(&name.chars().count()) {
        return Err(ApiError::validation(vec![FieldError {
            field: "name".into(),
            message: "must be 1 to 100 characters".into(),
        }]));
    }
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(rand::random::<[u8; 24]>()));
    let hash = verge_shared::flags::client_key_hash(&token);
    let key = ClientKey {
        id: crate::ids::new_id("fck"),
        project: project.to_owned(),
        environment: environment.to_owned(),
        name: name.to_owned(),
        created_at: now_millis(),
        revoked_at: None,
    };
    let mut tx = db.begin_write().await?;
    load(&mut tx, project, environment).await?;
    sqlx::query(
        "INSERT INTO flag_client_keys (id, project, environment, name, token_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&key.id)
    .bind(project)
    .bind(environment)
    .bind(name)
    .bind(&hash)
    .bind(key.created_at.0)
    .execute(&mut *tx)
    .await?;
    crate::audit::record(&mut tx, actor, "flags.client_key.create", "flag_client_key", &key.id, None, Some(&key))
        .await?;
    enqueue(&mut tx, &format!("{CLIENT_KEY_PREFIX}{hash}")).await?;
    tx.commit().await?;
    Ok((key, token))
}

/// Revokes a client key; edges refuse it after the next publish.
pub(crate) async fn revoke_client_key(db: &Database, id: &str, actor: &Actor) -> Result<ClientKey, ApiError> {
    let mut tx = db.begin_write().await?;
    let row = sqlx::query("SELECT * FROM flag_client_keys WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
    let Some(row) = row else { return Err(ApiError::not_found(format!("no client key `{id}`"))) };
    let before = ClientKey::from_row(&row)?;
    let hash: String = row.try_get("token_hash")?;
    if before.revoked_at.is_some() {
        return Ok(before);
    }
    let after = ClientKey { revoked_at: Some(now_millis()), ..before.clone() };
    sqlx::query("UPDATE flag_client_keys SET revoked_at = $1 WHERE id = $2")
        .bind(after.revoked_at.map(|at| at.0))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    crate::audit::record(&mut tx, actor, "flags.client_key.revoke", "flag_client_key", id, Some(&before), Some(&after))
        .await?;
    enqueue(&mut tx, &format!("{CLIENT_KEY_PREFIX}{hash}")).await?;
    tx.commit().await?;
    Ok(after)
}

/// Publishes every environment's flag set as a dataset, and one record per active client
/// key naming the dataset it may evaluate.
#[derive(Debug)]
pub(crate) struct FlagsSource;

#[async_trait::async_trait]
impl DatasetSource for FlagsSource {
    async fn build(&self, db: &Database) -> Result<Vec<DatasetContent>, sqlx::Error> {
        let rows = sqlx::query("SELECT project, name, document FROM flag_environments").fetch_all(db.pool()).await?;
        rows.iter()
            .map(|row| {
                let (project, name, document): (String, String, String) =
                    (row.try_get("project")?, row.try_get("name")?, row.try_get("document")?);
                // The whole set for bulk evaluations, and each flag on its own so a single
                // evaluation on a fresh edge instance reads one small record.
                let parsed: Value = serde_json::from_str(&document)
                    .map_err(|err| sqlx::Error::Decode(format!("flag_environments.document: {err}").into()))?;
                let mut parts = vec![(DOCUMENT_PART.to_owned(), document.into_bytes())];
                parts.extend(verge_shared::flags::per_flag_documents(&parsed));
                Ok(DatasetContent { name: dataset(&project, &name), parts })
            })
            .collect()
    }

    fn keyed_prefix(&self) -> Option<&'static str> {
        Some(CLIENT_KEY_PREFIX)
    }

    async fn keyed_values(&self, db: &Database, keys: &[String]) -> Result<Vec<KeyedValue>, sqlx::Error> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            let hash = &key[CLIENT_KEY_PREFIX.len()..];
            let row = sqlx::query(
                "SELECT project, environment FROM flag_client_keys WHERE token_hash = $1 AND revoked_at IS NULL",
            )
            .bind(hash)
            .fetch_optional(db.pool())
            .await?;
            let value = match row {
                Some(row) => {
                    let (project, environment): (String, String) =
                        (row.try_get("project")?, row.try_get("environment")?);
                    Some(dataset(&project, &environment).into_bytes())
                }
                None => None,
            };
            values.push((key.clone(), value));
        }
        Ok(values)
    }

    async fn keyed_all(&self, db: &Database) -> Result<Vec<(String, Vec<u8>)>, sqlx::Error> {
        let rows =
            sqlx::query("SELECT token_hash, project, environment FROM flag_client_keys WHERE revoked_at IS NULL")
                .fetch_all(db.pool())
                .await?;
        rows.iter()
            .map(|row| {
                let (hash, project, environment): (String, String, String) =
                    (row.try_get("token_hash")?, row.try_get("project")?, row.try_get("environment")?);
                Ok((format!("{CLIENT_KEY_PREFIX}{hash}"), dataset(&project, &environment).into_bytes()))
            })
            .collect()
    }
}
