//! Sessions: one per sign-in, carrying a rotating refresh token and handing out short-lived
//! PASETO access tokens.
//!
//! A refresh token is 256 random bits shown once; only its SHA-256 is stored. Each refresh
//! replaces it (a conditional UPDATE on the old hash, so of two concurrent refreshes one
//! wins) and files the old hash as used. Presenting a used token again means it was
//! copied: the whole session (the "family" of tokens it descends from) ends, at the core
//! and, through a revocation record, at the edge.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use verge_shared::sessions::Claims;

use super::device::Client;
use super::settings::{self, AuthSettings};
use super::{Customer, revocations, signing};
use crate::audit::Actor;
use crate::db::Database;
use crate::error::ApiError;
use crate::time::{Millis, now_millis};

/// A fresh random secret: `<prefix>` and 256 bits in base64url.
pub(crate) fn random_secret(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()))
}

pub(crate) fn secret_hash(secret: &str) -> String {
    verge_shared::sha256_hex(secret.as_bytes())
}

/// A session as its customer and operators see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) customer_id: String,
    /// e.g. `Chrome`, `Firefox`, `App`.
    pub(crate) browser: String,
    /// e.g. `macOS`, `iOS`.
    pub(crate) os: String,
    /// Country code from the trusted proxy's header, when configured.
    pub(crate) place: Option<String>,
    pub(crate) ip: Option<String>,
    /// Signed in with "remember me".
    pub(crate) remember: bool,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) created_at: Millis,
    /// The last sign-in or refresh.
    #[schema(value_type = String, format = DateTime)]
    pub(crate) last_seen_at: Millis,
    /// When it ends: unused until then (idle) or at the latest (absolute), whichever first.
    #[schema(value_type = String, format = DateTime)]
    pub(crate) expires_at: Millis,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(crate) revoked_at: Option<Millis>,
    /// `sign_out`, `sign_out_everywhere`, `revoked`, `refresh_reuse`, `session_limit`,
    /// `password_reset`, `operator`.
    pub(crate) revoked_reason: Option<String>,
    /// Whether this is the session the request came with.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) current: bool,
}

impl Session {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Session, sqlx::Error> {
        let idle: i64 = row.try_get("idle_expires_at")?;
        let absolute: i64 = row.try_get("expires_at")?;
        Ok(Session {
            id: row.try_get("id")?,
            customer_id: row.try_get("customer_id")?,
            browser: row.try_get("browser")?,
            os: row.try_get("os")?,
            place: row.try_get("place")?,
            ip: row.try_get("ip")?,
            remember: row.try_get::<i64, _>("remember")? != 0,
            created_at: Millis(row.try_get("created_at")?),
            last_seen_at: Millis(row.try_get("last_seen_at")?),
            expires_at: Millis(idle.min(absolute)),
            revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(Millis),
            revoked_reason: row.try_get("revoked_reason")?,
            current: false,
        })
    }

    pub(crate) fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.0 > now
    }
}

/// Tokens handed to a client at sign-in or refresh.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Tokens {
    /// PASETO v4.public; send as `Authorization: Bearer`.
    pub(crate) access_token: String,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) access_token_expires_at: Millis,
    /// Opaque, single-use: trade it at `/auth/{project}/refresh` for new tokens.
    pub(crate) refresh_token: String,
    pub(crate) session_id: String,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) session_expires_at: Millis,
    pub(crate) token_type: &'static str,
    #[serde(skip)]
    pub(crate) remember: bool,
}

fn access_token(
    key: &signing::SigningKey,
    customer: &Customer,
    session_id: &str,
    settings: &AuthSettings,
) -> (String, Millis) {
    let now = now_millis().0;
    let claims = Claims {
        subject: customer.id.clone(),
        session_id: session_id.to_owned(),
        project: customer.project.clone(),
        issued_at_ms: now,
        expires_at_ms: now + settings.access_ttl_ms(),
        email_verified: customer.email_verified,
        locale: customer
            .metadata
            .get("locale")
            .and_then(serde_json::Value::as_str)
            .filter(|tag| verge_shared::sessions::is_language_tag(tag))
            .map(str::to_owned),
    };
    (key.sign(&claims.to_json()), Millis(claims.expires_at_ms))
}

/// Starts a session for `customer` (already authenticated), ending the oldest ones
/// beyond the project's cap, inside `tx`. The signing key is fetched before the
/// transaction (making the first key is a write of its own).
pub(crate) async fn start(
    key: &signing::SigningKey,
    tx: &mut sqlx::AnyConnection,
    customer: &Customer,
    remember: bool,
    client: &Client,
) -> Result<Tokens, ApiError> {
    let settings = settings::load(tx, &customer.project).await?;
    let now = now_millis().0;
    let (idle, absolute) = settings.session_ttls_ms(remember);
    let id = crate::ids::new_id("ses");
    let refresh = random_secret("vrt_");
    sqlx::query(
        "INSERT INTO customer_sessions (id, project, customer_id, refresh_hash, remember, user_agent, browser, os, ip,
           place, created_at, last_seen_at, idle_expires_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13)",
    )
    .bind(&id)
    .bind(&customer.project)
    .bind(&customer.id)
    .bind(secret_hash(&refresh))
    .bind(i64::from(remember))
    .bind(&client.user_agent)
    .bind(&client.browser)
    .bind(&client.os)
    .bind(&client.ip)
    .bind(&client.place)
    .bind(now)
    .bind(now + idle)
    .bind(now + absolute)
    .execute(&mut *tx)
    .await?;
    let detail = serde_json::json!({
        "session_id": id, "browser": client.browser, "os": client.os, "place": client.place, "remember": remember,
    });
    crate::audit::record(
        tx,
        &Actor::Customer(customer.id.clone()),
        "customer.sign_in",
        "customer",
        &customer.id,
        None,
        Some(&detail),
    )
    .await?;
    end_beyond_cap(tx, customer, settings.max_sessions, now).await?;
    let (access_token, access_expires) = access_token(key, customer, &id, &settings);
    Ok(Tokens {
        access_token,
        access_token_expires_at: access_expires,
        refresh_token: refresh,
        session_id: id,
        session_expires_at: Millis(now + idle.min(absolute)),
        token_type: "Bearer",
        remember,
    })
}

async fn end_beyond_cap(tx: &mut sqlx::AnyConnection, customer: &Customer, cap: u32, now: i64) -> Result<(), ApiError> {
    let active: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM customer_sessions WHERE customer_id = $1 AND revoked_at IS NULL
           AND idle_expires_at > $2 AND expires_at > $2
         ORDER BY created_at DESC, id DESC",
    )
    .bind(&customer.id)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    for id in active.iter().skip(cap as usize) {
        end(tx, id, "session_limit", &Actor::System, now).await?;
    }
    Ok(())
}

/// Ends one session at the core and the edge, inside `tx`. Ending an ended session does
/// nothing.
pub(crate) async fn end(
    tx: &mut sqlx::AnyConnection,
    id: &str,
    reason: &str,
    actor: &Actor,
    now: i64,
) -> Result<bool, ApiError> {
    let row = sqlx::query(
        "UPDATE customer_sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL
         RETURNING customer_id",
    )
    .bind(now)
    .bind(reason)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let customer_id: String = row.try_get("customer_id")?;
    revocations::revoke_session(tx, id, now).await?;
    let detail = serde_json::json!({ "session_id": id, "reason": reason });
    crate::audit::record(tx, actor, "customer.session.end", "customer", &customer_id, None, Some(&detail)).await?;
    Ok(true)
}

/// Ends every session of a customer and voids every access token issued so far, inside `tx`.
pub(crate) async fn end_all(
    tx: &mut sqlx::AnyConnection,
    project: &str,
    customer_id: &str,
    reason: &str,
    actor: &Actor,
) -> Result<usize, ApiError> {
    let now = now_millis().0;
    let ended = sqlx::query(
        "UPDATE customer_sessions SET revoked_at = $1, revoked_reason = $2 WHERE customer_id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(reason)
    .bind(customer_id)
    .execute(&mut *tx)
    .await?
    .rows_affected() as usize;
    revocations::void_before(tx, project, customer_id, now).await?;
    let detail = serde_json::json!({ "sessions_ended": ended, "reason": reason });
    crate::audit::record(tx, actor, "customer.sessions.end_all", "customer", customer_id, None, Some(&detail)).await?;
    Ok(ended)
}

/// Why a refresh was refused.
fn refused(code: &'static str, detail: &str) -> ApiError {
    ApiError::new(axum::http::StatusCode::UNAUTHORIZED, code, detail)
}

/// Trades a refresh token for new tokens (rotation), or ends the family on reuse.
pub(crate) async fn refresh(db: &Database, project: &str, refresh_token: &str) -> Result<Tokens, ApiError> {
    let presented = secret_hash(refresh_token);
    let key = signing::current(db).await?;
    let now = now_millis().0;
    let mut tx = db.begin_write().await?;
    let row = sqlx::query("SELECT * FROM customer_sessions WHERE refresh_hash = $1 AND project = $2")
        .bind(&presented)
        .bind(project)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        let reused: Option<String> =
            sqlx::query_scalar("SELECT session_id FROM customer_refresh_used WHERE refresh_hash = $1")
                .bind(&presented)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(session_id) = reused {
            end(&mut tx, &session_id, "refresh_reuse", &Actor::System, now).await?;
            tx.commit().await?;
            return Err(refused(
                "refresh_token_reused",
                "this refresh token was already used; the session has been ended everywhere as a precaution",
            ));
        }
        return Err(refused("refresh_token_invalid", "the refresh token is unknown"));
    };
    let session = Session::from_row(&row)?;
    if !session.is_active(now) {
        return Err(refused("session_ended", "the session has ended; sign in again"));
    }
    let (customer, _) = super::load(&mut tx, project, &session.customer_id).await?;
    let settings = settings::load(&mut tx, project).await?;
    let (idle, _) = settings.session_ttls_ms(session.remember);
    let absolute: i64 = row.try_get("expires_at")?;
    let next = random_secret("vrt_");
    let rotated = sqlx::query(
        "UPDATE customer_sessions SET refresh_hash = $1, last_seen_at = $2, idle_expires_at = $3
         WHERE id = $4 AND refresh_hash = $5 AND revoked_at IS NULL",
    )
    .bind(secret_hash(&next))
    .bind(now)
    .bind(now + idle)
    .bind(&session.id)
    .bind(&presented)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if rotated != 1 {
        // A concurrent refresh with the same token won: this one is a reuse.
        return Err(refused("refresh_token_reused", "this refresh token was just used by another request"));
    }
    sqlx::query("INSERT INTO customer_refresh_used (refresh_hash, session_id, used_at) VALUES ($1, $2, $3)")
        .bind(&presented)
        .bind(&session.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let (access_token, access_expires) = access_token(&key, &customer, &session.id, &settings);
    tx.commit().await?;
    Ok(Tokens {
        access_token,
        access_token_expires_at: access_expires,
        refresh_token: next,
        session_id: session.id,
        session_expires_at: Millis((now + idle).min(absolute)),
        token_type: "Bearer",
        remember: session.remember,
    })
}

/// A customer's sessions, newest first (active and ended).
pub(crate) async fn list(conn: &mut sqlx::AnyConnection, customer_id: &str) -> Result<Vec<Session>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT * FROM customer_sessions WHERE customer_id = $1 ORDER BY created_at DESC, id DESC LIMIT 200",
    )
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(Session::from_row).collect()
}
