//! Signing keys for access tokens: the current key signs, a rotated key keeps validating
//! for an overlap window, and the public halves are published to edge KV (`sess/keys`)
//! and served as PASERK at `/.well-known/paserk.json` for any PASETO library.
//!
//! Keys are per deployment, not per project: a token's `project` claim says whose it is.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;
use verge_shared::sessions::{KEYS_DATASET, KEYS_PART, KeySet, PublicKey, paseto};

use crate::audit::Actor;
use crate::db::Database;
use crate::error::ApiError;
use crate::publish::{DatasetContent, DatasetSource};
use crate::time::{Millis, now_millis};

/// The key that signs new tokens.
#[derive(Clone)]
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    secret: [u8; 32],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    pub(crate) fn sign(&self, message: &str) -> String {
        paseto::sign(&self.secret, message.as_bytes(), verge_shared::sessions::footer(&self.kid).as_bytes(), b"")
    }
}

const MEMO_KEY: &str = "session_keys:current";

/// The current signing key, made on first use.
pub(crate) async fn current(db: &Database) -> Result<Arc<SigningKey>, sqlx::Error> {
    if let Some(key) = db.memo().get::<SigningKey>(MEMO_KEY) {
        return Ok(key);
    }
    let row = sqlx::query(
        "SELECT kid, secret_key FROM session_keys WHERE retires_at IS NULL ORDER BY created_at DESC, kid LIMIT 1",
    )
    .fetch_optional(db.pool())
    .await?;
    let key = match row {
        Some(row) => decode(row.try_get("kid")?, &row.try_get::<String, _>("secret_key")?)?,
        None => {
            let mut tx = db.begin_write().await?;
            let key = insert_new(&mut tx).await?;
            crate::audit::record(
                &mut tx,
                &Actor::System,
                "session_key.create",
                "session_key",
                &key.kid,
                None,
                Some(&key.kid),
            )
            .await?;
            tx.commit().await?;
            key
        }
    };
    let key = Arc::new(key);
    db.memo().put(MEMO_KEY.to_owned(), Arc::clone(&key));
    Ok(key)
}

fn decode(kid: String, secret_hex: &str) -> Result<SigningKey, sqlx::Error> {
    let secret = hex::decode(secret_hex)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| sqlx::Error::Decode(format!("session_keys {kid}: not a 32-byte seed").into()))?;
    Ok(SigningKey { kid, secret })
}

async fn insert_new(conn: &mut sqlx::AnyConnection) -> Result<SigningKey, sqlx::Error> {
    let secret: [u8; 32] = rand::random();
    let public = paseto::public_key(&secret);
    let kid = paseto::paserk_pid(&public);
    sqlx::query("INSERT INTO session_keys (kid, public_key, secret_key, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&kid)
        .bind(paseto::paserk_public(&public))
        .bind(hex::encode(secret))
        .bind(now_millis().0)
        .execute(&mut *conn)
        .await?;
    crate::publish::enqueue(conn, KEYS_DATASET).await?;
    Ok(SigningKey { kid, secret })
}

/// What a rotation did.
#[derive(Debug, Serialize)]
pub(crate) struct Rotation {
    pub(crate) new_kid: String,
    pub(crate) retired: Vec<String>,
    pub(crate) retires_at: Millis,
}

/// Makes a new current key; the keys it replaces validate for `overlap_ms` more.
pub(crate) async fn rotate(db: &Database, actor: &Actor, overlap_ms: i64) -> Result<Rotation, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let retires_at = now_millis().0 + overlap_ms;
    let retired: Vec<String> =
        sqlx::query_scalar("SELECT kid FROM session_keys WHERE retires_at IS NULL").fetch_all(&mut *tx).await?;
    sqlx::query("UPDATE session_keys SET retires_at = $1 WHERE retires_at IS NULL")
        .bind(retires_at)
        .execute(&mut *tx)
        .await?;
    let key = insert_new(&mut tx).await?;
    let rotation = Rotation { new_kid: key.kid.clone(), retired, retires_at: Millis(retires_at) };
    crate::audit::record(&mut tx, actor, "session_key.rotate", "session_key", &key.kid, None, Some(&rotation)).await?;
    tx.commit().await?;
    db.memo().forget(MEMO_KEY);
    Ok(rotation)
}

/// Longest overlap a rotation may give the old key.
const MAX_OVERLAP_MS: i64 = 7 * 24 * 60 * 60_000;

/// An overlap such as `15m`, `1h` or `90s`, in milliseconds.
pub(crate) fn parse_overlap(text: &str) -> Result<i64, String> {
    let span: jiff::Span = text.parse().map_err(|err| format!("`{text}` is not a duration like 15m or 1h: {err}"))?;
    let ms = span.total(jiff::Unit::Millisecond).map_err(|err| format!("`{text}`: {err}"))? as i64;
    if (0..=MAX_OVERLAP_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(format!("the overlap must be between 0 and 7 days, not `{text}`"))
    }
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateBody {
    /// How long the replaced key keeps validating, e.g. `15m` (default `1h`, the longest
    /// an access token lives).
    #[schema(pattern = "^([0-9]{1,5}s|[0-9]{1,4}m|[0-9]{1,2}h)$")]
    overlap: Option<String>,
}

/// Start signing access tokens with a new key (as `verge sessions rotate-key`).
#[utoipa::path(
    post, path = "/v1/sessions/keys/rotate", tag = "sessions",
    request_body = RotateBody,
    security(("admin_key" = ["admin"])),
    responses(
        (status = 200, description = "The new key's id, the replaced ones and when they retire"),
        (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem),
    )
)]
pub(crate) async fn rotate_route(
    State(state): State<crate::state::AppState>,
    crate::keys::Authorized(principal, _): crate::keys::Authorized<crate::keys::AdminOnly>,
    crate::error::ApiJson(body): crate::error::ApiJson<RotateBody>,
) -> Result<Json<Rotation>, ApiError> {
    let overlap = parse_overlap(body.overlap.as_deref().unwrap_or("1h")).map_err(|message| {
        ApiError::validation(vec![crate::error::FieldError { field: "/overlap".into(), message }])
    })?;
    let rotation = rotate(&state.db, &principal.actor(), overlap).await?;
    state.publisher.wake();
    Ok(Json(rotation))
}

/// Every key whose tokens may still validate, newest first.
pub(crate) async fn published(db: &Database) -> Result<KeySet, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT public_key, retires_at FROM session_keys WHERE retires_at IS NULL OR retires_at > $1
         ORDER BY created_at DESC, kid",
    )
    .bind(now_millis().0)
    .fetch_all(db.pool())
    .await?;
    let keys = rows
        .iter()
        .map(|row| {
            let paserk: String = row.try_get("public_key")?;
            let key = paseto::parse_paserk_public(&paserk)
                .ok_or_else(|| sqlx::Error::Decode(format!("session_keys: `{paserk}` is not k4.public").into()))?;
            Ok(PublicKey { kid: paseto::paserk_pid(&key), key, retires_at_ms: row.try_get("retires_at")? })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    KeySet::new(keys).map_err(|err| sqlx::Error::Decode(err.into()))
}

/// Publishes the key set to edge KV.
#[derive(Debug)]
pub(crate) struct SessionKeysSource;

#[async_trait::async_trait]
impl DatasetSource for SessionKeysSource {
    async fn build(&self, db: &Database) -> Result<Vec<DatasetContent>, sqlx::Error> {
        let keys = published(db).await?;
        Ok(vec![DatasetContent { name: KEYS_DATASET.to_owned(), parts: vec![(KEYS_PART.to_owned(), keys.encode())] }])
    }
}

/// One public key in PASERK form.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PaserkKey {
    /// PASERK `k4.pid`: the `kid` in every token's footer.
    kid: String,
    /// PASERK `k4.public`: the Ed25519 public key.
    paserk: String,
    /// When tokens signed with this key stop validating; absent for the current key.
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    retires_at: Option<Millis>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PaserkKeys {
    /// The token format these keys verify.
    version: &'static str,
    keys: Vec<PaserkKey>,
}

/// The public keys that verify Verge's access tokens, as PASERK (no authentication).
#[utoipa::path(
    get, path = "/.well-known/paserk.json", tag = "sessions",
    responses((status = 200, description = "Current and overlapping keys, newest first", body = PaserkKeys))
)]
pub(crate) async fn well_known(State(state): State<crate::state::AppState>) -> Result<impl IntoResponse, ApiError> {
    current(&state.db).await?;
    let set = published(&state.db).await?;
    let keys = set
        .keys()
        .map(|key| PaserkKey {
            kid: key.kid.clone(),
            paserk: paseto::paserk_public(&key.key),
            retires_at: key.retires_at_ms.map(Millis),
        })
        .collect();
    Ok(([(header::CACHE_CONTROL, "public, max-age=60")], Json(PaserkKeys { version: "v4.public", keys })))
}
