//! Admin API keys: creation, lookup, revocation, and the scopes they carry.
//!
//! A key is a bearer token (`verge_` + 40 random base62 characters) shown once at creation.
//! Only its SHA-256 is stored: a fast hash is right for high-entropy machine secrets (a
//! slow password hash would add milliseconds to every request and no safety). A request's
//! key is looked up by that hash and the stored hash is then compared in constant time.

pub(crate) mod auth;
pub(crate) mod routes;
mod scope;

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

pub(crate) use self::auth::principal_for;
pub use self::auth::{AdminOnly, Authorized, Grants, Principal, Readers};
pub use self::scope::{Scope, ScopeError};
use crate::audit::{self, Actor};
use crate::db::{Database, Dialect};
use crate::pagination::{Cursor, Page};
use crate::time::{Millis, now_millis};

const TOKEN_PREFIX: &str = "verge_";
const TOKEN_RANDOM_LEN: usize = 40;
/// How much of a token is kept in the clear so people can tell keys apart.
const DISPLAY_PREFIX_LEN: usize = 12;

/// A key as the API and CLI show it: never its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    pub created_by: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Millis>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Millis>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Millis>,
}

impl ApiKey {
    pub fn is_active(&self, now: Millis) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }

    fn from_row(row: &AnyRow) -> Result<ApiKey, sqlx::Error> {
        let scopes: String = row.try_get("scopes")?;
        Ok(ApiKey {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            prefix: row.try_get("prefix")?,
            scopes: scope::parse_stored(&scopes),
            created_at: Millis(row.try_get("created_at")?),
            created_by: row.try_get("created_by")?,
            expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(Millis),
            last_used_at: row.try_get::<Option<i64>, _>("last_used_at")?.map(Millis),
            revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(Millis),
        })
    }
}

/// A new key's record and its token, which is never available again.
#[derive(Debug)]
pub struct CreatedKey {
    pub key: ApiKey,
    pub token: String,
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<Millis>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String),
    #[error("no key with id {0}")]
    NotFound(String),
    #[error("that token is already a key")]
    DuplicateToken,
    #[error("{0} is the last active admin key; create another admin key before revoking it")]
    LastAdminKey(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub(crate) fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn generate_token() -> String {
    let random: String = rand::rng().sample_iter(Alphanumeric).take(TOKEN_RANDOM_LEN).map(char::from).collect();
    format!("{TOKEN_PREFIX}{random}")
}

fn validate(new: &NewKey, now: Millis) -> Result<(), KeyError> {
    if new.name.trim().is_empty() || new.name.chars().count() > 100 {
        return Err(KeyError::Invalid("name must be 1 to 100 characters".into()));
    }
    if new.scopes.is_empty() {
        return Err(KeyError::Invalid("a key needs at least one scope".into()));
    }
    if new.expires_at.is_some_and(|at| at <= now) {
        return Err(KeyError::Invalid("expires_at must be in the future".into()));
    }
    Ok(())
}

/// Memo entries of keys, by token hash.
const MEMO_PREFIX: &str = "api_key:";

/// The key whose token this is, revoked and expired ones included. Found keys are
/// remembered for a second (see `memo`); revoking one here forgets them at once.
pub(crate) async fn find_by_token(db: &Database, token: &str) -> Result<Option<ApiKey>, sqlx::Error> {
    let hash = hash_token(token);
    let memo_key = format!("{MEMO_PREFIX}{hash}");
    if let Some(key) = db.memo().get::<ApiKey>(&memo_key) {
        return Ok(Some(ApiKey::clone(&key)));
    }
    let row =
        sqlx::query("SELECT * FROM api_keys WHERE secret_hash = $1").bind(&hash).fetch_optional(db.pool()).await?;
    let Some(row) = row else { return Ok(None) };
    let stored: String = row.try_get("secret_hash")?;
    // The lookup already matched, but compare in constant time regardless, so that no
    // code path depends on comparing a secret-derived value byte by byte.
    if !bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) {
        return Ok(None);
    }
    let key = ApiKey::from_row(&row)?;
    db.memo().put(memo_key, std::sync::Arc::new(key.clone()));
    Ok(Some(key))
}

/// Records in the remembered copy of `key` that it was used at `now` (the caller writes
/// the row).
pub(crate) fn note_used(db: &Database, token: &str, key: &ApiKey, now: Millis) {
    let used = ApiKey { last_used_at: Some(now), ..key.clone() };
    db.memo().put(format!("{MEMO_PREFIX}{}", hash_token(token)), std::sync::Arc::new(used));
}

/// Whether `token` is an active key that holds `scope`.
pub(crate) async fn active_with_scope(db: &Database, token: &str, scope: Scope) -> Result<bool, sqlx::Error> {
    let key = find_by_token(db, token).await?;
    Ok(key.is_some_and(|key| key.is_active(now_millis()) && key.scopes.contains(&scope)))
}

/// Revokes the key `token` belongs to, if any (a secret found exposed).
pub(crate) async fn revoke_token(db: &Database, token: &str, actor: &Actor) -> Result<(), KeyError> {
    match find_by_token(db, token).await? {
        Some(key) => revoke(db, &key.id, actor).await.map(drop),
        None => Ok(()),
    }
}

/// Creates a key with a fresh random token.
pub async fn create(db: &Database, new: NewKey, actor: &Actor) -> Result<CreatedKey, KeyError> {
    insert(db, new, generate_token(), actor).await
}

/// Creates a key whose token the caller chose (the `VERGE_ADMIN_KEY` bootstrap).
pub(crate) async fn insert(db: &Database, new: NewKey, token: String, actor: &Actor) -> Result<CreatedKey, KeyError> {
    let now = now_millis();
    validate(&new, now)?;
    let mut scopes = new.scopes;
    scopes.sort();
    scopes.dedup();
    let key = ApiKey {
        id: crate::ids::new_id("key"),
        name: new.name.trim().to_owned(),
        prefix: token.chars().take(DISPLAY_PREFIX_LEN).collect(),
        scopes,
        created_at: now,
        created_by: actor.to_string(),
        expires_at: new.expires_at,
        last_used_at: None,
        revoked_at: None,
    };
    let mut tx = db.begin_write().await?;
    let inserted = sqlx::query(
        "INSERT INTO api_keys (id, name, prefix, secret_hash, scopes, created_at, created_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&key.id)
    .bind(&key.name)
    .bind(&key.prefix)
    .bind(hash_token(&token))
    .bind(scope::to_stored(&key.scopes))
    .bind(key.created_at.0)
    .bind(&key.created_by)
    .bind(key.expires_at.map(|m| m.0))
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(err) if crate::db::is_unique_violation(&err) => return Err(KeyError::DuplicateToken),
        other => other?,
    };
    audit::record(&mut tx, actor, "key.create", "api_key", &key.id, None, Some(&key)).await?;
    publish_if_edge_checker(&mut tx, &key.scopes).await?;
    tx.commit().await?;
    Ok(CreatedKey { key, token })
}

pub async fn get(db: &Database, id: &str) -> Result<ApiKey, KeyError> {
    let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1").bind(id).fetch_optional(db.pool()).await?;
    let row = row.ok_or_else(|| KeyError::NotFound(id.to_owned()))?;
    Ok(ApiKey::from_row(&row)?)
}

/// Keys newest first, `limit` at a time, optionally with revoked and expired ones.
pub async fn list(db: &Database, cursor: &Cursor, include_inactive: bool) -> Result<Page<ApiKey>, KeyError> {
    let now = now_millis().0;
    let rows = sqlx::query(
        "SELECT * FROM api_keys
         WHERE ($1 = '' OR id < $1)
           AND ($2 = 1 OR (revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $3)))
         ORDER BY id DESC LIMIT $4",
    )
    .bind(cursor.after())
    .bind(i64::from(include_inactive))
    .bind(now)
    .bind(cursor.fetch_limit())
    .fetch_all(db.pool())
    .await?;
    let keys = rows.iter().map(ApiKey::from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(cursor.page(keys, |k| k.id.clone()))
}

/// Whether the key `id` exists and is neither revoked nor expired.
pub(crate) async fn is_active(conn: &mut sqlx::AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1").bind(id).fetch_optional(&mut *conn).await?;
    Ok(match row {
        Some(row) => ApiKey::from_row(&row)?.is_active(now_millis()),
        None => false,
    })
}

/// Arbitrary constant naming the PostgreSQL advisory lock that serialises key revocations.
const REVOKE_LOCK: i64 = 0x7665_7267_656b_6579;

/// Revokes a key; revoking a revoked key again changes nothing. The last active admin key
/// cannot be revoked, so an installation can never lock its operators out.
pub async fn revoke(db: &Database, id: &str, actor: &Actor) -> Result<ApiKey, KeyError> {
    let mut tx = db.begin_write().await?;
    if db.dialect() == Dialect::Postgres {
        // Two revokes of the last two admin keys would each see the other still active
        // under READ COMMITTED; revokes take turns instead. (SQLite's write transactions
        // already do.)
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(REVOKE_LOCK).execute(&mut *tx).await?;
    }
    let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
    let before = ApiKey::from_row(&row.ok_or_else(|| KeyError::NotFound(id.to_owned()))?)?;
    let now = now_millis();
    if before.revoked_at.is_some() {
        return Ok(before);
    }
    if before.is_active(now) && before.scopes.contains(&Scope::Admin) {
        let others = active_admin_keys(&mut tx, now).await?.into_iter().filter(|k| k != id).count();
        if others == 0 {
            return Err(KeyError::LastAdminKey(id.to_owned()));
        }
    }
    sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2").bind(now.0).bind(id).execute(&mut *tx).await?;
    let after = ApiKey { revoked_at: Some(now), ..before.clone() };
    audit::record(&mut tx, actor, "key.revoke", "api_key", id, Some(&before), Some(&after)).await?;
    publish_if_edge_checker(&mut tx, &before.scopes).await?;
    tx.commit().await?;
    db.memo().forget(MEMO_PREFIX);
    Ok(after)
}

/// Keys with `ratelimit:check` also work at the edge's check route, which learns of them
/// (and of their revocation) from a published dataset.
async fn publish_if_edge_checker(conn: &mut sqlx::AnyConnection, scopes: &[Scope]) -> Result<(), sqlx::Error> {
    if scopes.contains(&Scope::RatelimitCheck) {
        crate::publish::enqueue(conn, verge_shared::ratelimit::CHECKERS_DATASET).await?;
    }
    Ok(())
}

/// The secret hashes and expiry times of the active keys holding `scope`.
pub(crate) async fn active_hashes_with(db: &Database, scope: Scope) -> Result<Vec<(String, Option<i64>)>, sqlx::Error> {
    let now = now_millis().0;
    let rows = sqlx::query(
        "SELECT secret_hash, scopes, expires_at FROM api_keys
         WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1) ORDER BY id",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    let mut found = Vec::new();
    for row in &rows {
        let scopes: String = row.try_get("scopes")?;
        if scope::parse_stored(&scopes).contains(&scope) {
            found.push((row.try_get("secret_hash")?, row.try_get::<Option<i64>, _>("expires_at")?));
        }
    }
    Ok(found)
}

async fn active_admin_keys(tx: &mut sqlx::AnyConnection, now: Millis) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, scopes FROM api_keys WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)",
    )
    .bind(now.0)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .iter()
        .filter(|row| row.get::<String, _>("scopes").split(' ').any(|s| s == Scope::Admin.as_str()))
        .map(|row| row.get("id"))
        .collect())
}

/// True when no key has ever been created: the state in which a first admin key is made.
pub async fn none_exist(db: &Database) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM api_keys").fetch_one(db.pool()).await?;
    Ok(row.try_get::<i64, _>("n")? == 0)
}

/// What start-up did about the first admin key.
#[derive(Debug)]
pub enum Bootstrap {
    /// Keys already exist; nothing was created.
    Existing,
    /// The key given in `VERGE_ADMIN_KEY` was installed.
    FromConfig,
    /// A new key was generated; its token is shown once.
    Generated(String),
}

/// Makes sure an empty installation gets an admin key: `configured` when given, else a
/// random one when `generate` is set (`verge dev`).
pub async fn bootstrap(
    db: &Database,
    configured: Option<&secrecy::SecretString>,
    generate: bool,
) -> Result<Bootstrap, KeyError> {
    use secrecy::ExposeSecret;
    if !none_exist(db).await? {
        return Ok(Bootstrap::Existing);
    }
    let new = NewKey { name: "bootstrap admin".into(), scopes: vec![Scope::Admin], expires_at: None };
    match configured {
        Some(token) => match insert(db, new, token.expose_secret().to_owned(), &Actor::System).await {
            // Another replica installed the same key first.
            Ok(_) | Err(KeyError::DuplicateToken) => Ok(Bootstrap::FromConfig),
            Err(err) => Err(err),
        },
        None if generate => Ok(Bootstrap::Generated(create(db, new, &Actor::System).await?.token)),
        None => Ok(Bootstrap::Existing),
    }
}
