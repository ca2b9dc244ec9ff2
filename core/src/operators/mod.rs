//! Operators: the people who use the admin console. Each has an email, an Argon2id password
//! (the customers' hashing and rules, `customers::password`) and one role, which is a fixed
//! set of the API's scopes. The console acts for an operator by handing the API a
//! `Principal` with the role's scopes and the operator's id, so every change goes through the
//! same handlers and is audited under the operator.
//!
//! Operators join only by a one-time invitation: the first owner's is made by `verge dev`
//! (or `verge operators invite`), later ones by an owner in the console.

pub(crate) mod sessions;
pub(crate) mod totp;

pub(crate) use totp::{begin_totp, confirm_totp, pending_totp, remove_totp, second_factor_holds};

use std::fmt;

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::Actor;
use crate::customers::fold_email;
use crate::customers::sessions::{random_secret, secret_hash};
use crate::db::Database;
use crate::error::{ApiError, FieldError};
use crate::keys::{ApiKey, Principal, Scope};
use crate::time::{Millis, now_millis};

/// How long an invitation link stays valid.
pub(crate) const INVITATION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// What an operator may do, from most to least.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    /// Everything, and inviting and disabling operators.
    Owner,
    /// Everything the API allows an `admin` key.
    Admin,
    /// Change every capability (each `…:write` scope) and read everything; no keys.
    Editor,
    /// Read everything; change nothing.
    Viewer,
}

impl Role {
    pub(crate) const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Editor, Role::Viewer];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// The API scopes the role holds (docs/console.md lists them).
    pub(crate) fn scopes(self) -> Vec<Scope> {
        match self {
            Role::Owner | Role::Admin => vec![Scope::Admin],
            // Every capability's write scope (new ones included), and reading.
            Role::Editor => std::iter::once(Scope::Read)
                .chain(Scope::ALL.iter().copied().filter(|scope| scope.to_string().ends_with(":write")))
                .collect(),
            Role::Viewer => vec![Scope::Read],
        }
    }

    /// Whether the role may change anything at all (the console hides forms otherwise).
    pub(crate) fn writes(self) -> bool {
        self != Role::Viewer
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Operator {
    pub(crate) id: String,
    pub(crate) email: String,
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) created_at: Millis,
    pub(crate) invited_by: String,
    pub(crate) disabled_at: Option<Millis>,
    /// Whether sign-in also takes a code from an authenticator app.
    pub(crate) totp: bool,
}

impl Operator {
    fn from_row(row: &AnyRow) -> Result<Operator, sqlx::Error> {
        let role: String = row.try_get("role")?;
        Ok(Operator {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            name: row.try_get("name")?,
            role: Role::parse(&role)
                .ok_or_else(|| sqlx::Error::Decode(format!("operators.role: unknown role `{role}`").into()))?,
            created_at: Millis(row.try_get("created_at")?),
            invited_by: row.try_get("invited_by")?,
            disabled_at: row.try_get::<Option<i64>, _>("disabled_at")?.map(Millis),
            totp: row.try_get::<Option<String>, _>("totp_secret")?.is_some(),
        })
    }

    /// The principal the API sees when the console acts for this operator: the role's
    /// scopes, and the operator's id as the actor of every change.
    pub(crate) fn principal(&self) -> Principal {
        Principal {
            key: ApiKey {
                id: self.id.clone(),
                name: self.email.clone(),
                prefix: "console".into(),
                scopes: self.role.scopes(),
                created_at: self.created_at,
                created_by: self.invited_by.clone(),
                expires_at: None,
                last_used_at: None,
                revoked_at: None,
            },
        }
    }

    pub(crate) fn actor(&self) -> Actor {
        Actor::Operator(self.id.clone())
    }
}

/// Whether `id` names an operator (audit actors, change-request authors).
pub(crate) fn is_operator_id(id: &str) -> bool {
    id.starts_with("op_")
}

pub(crate) async fn find(db: &Database, id: &str) -> Result<Option<Operator>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM operators WHERE id = $1").bind(id).fetch_optional(db.pool()).await?;
    row.as_ref().map(Operator::from_row).transpose()
}

/// What signing in as an operator checks.
pub(crate) struct Credentials {
    pub(crate) operator: Operator,
    pub(crate) password_hash: String,
    pub(crate) totp_secret: Option<String>,
    pub(crate) totp_step: i64,
}

/// The operator and their credentials for `email`, if one exists.
pub(crate) async fn find_for_sign_in(db: &Database, email: &str) -> Result<Option<Credentials>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM operators WHERE email = $1")
        .bind(fold_email(email))
        .fetch_optional(db.pool())
        .await?;
    match row {
        Some(row) => Ok(Some(Credentials {
            operator: Operator::from_row(&row)?,
            password_hash: row.try_get("password_hash")?,
            totp_secret: row.try_get("totp_secret")?,
            totp_step: row.try_get("totp_step")?,
        })),
        None => Ok(None),
    }
}

/// Whether operator `id` exists and is not disabled (a change request of a disabled
/// operator no longer applies).
pub(crate) async fn is_active(conn: &mut sqlx::AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    let row =
        sqlx::query("SELECT disabled_at FROM operators WHERE id = $1").bind(id).fetch_optional(&mut *conn).await?;
    Ok(match row {
        Some(row) => row.try_get::<Option<i64>, _>("disabled_at")?.is_none(),
        None => false,
    })
}

pub(crate) async fn list(db: &Database) -> Result<Vec<Operator>, sqlx::Error> {
    let rows = sqlx::query("SELECT * FROM operators ORDER BY created_at, id").fetch_all(db.pool()).await?;
    rows.iter().map(Operator::from_row).collect()
}

/// Names for audit actors that are operators: id → email.
pub(crate) async fn emails(db: &Database) -> Result<std::collections::HashMap<String, String>, sqlx::Error> {
    Ok(list(db).await?.into_iter().map(|op| (op.id, op.email)).collect())
}

async fn none_exist(db: &Database) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM operators").fetch_one(db.pool()).await?;
    Ok(row.try_get::<i64, _>("n")? == 0)
}

/// A new invitation's id and the token its link carries (shown once).
#[derive(Debug)]
pub struct Invitation {
    pub id: String,
    pub token: String,
    pub expires_at: Millis,
}

/// Invites one operator with `role`, on behalf of `by`.
pub(crate) async fn invite(db: &Database, role: Role, by: &Actor) -> Result<Invitation, ApiError> {
    let mut tx = db.pool().begin().await?;
    let invitation = insert_invitation(&mut tx, role, by).await?;
    tx.commit().await?;
    Ok(invitation)
}

async fn insert_invitation(conn: &mut sqlx::AnyConnection, role: Role, by: &Actor) -> Result<Invitation, ApiError> {
    let now = now_millis();
    let invitation = Invitation {
        id: crate::ids::new_id("inv"),
        token: random_secret("vinv_"),
        expires_at: Millis(now.0 + INVITATION_TTL_MS),
    };
    sqlx::query(
        "INSERT INTO operator_invitations (id, token_hash, role, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&invitation.id)
    .bind(secret_hash(&invitation.token))
    .bind(role.as_str())
    .bind(by.to_string())
    .bind(now.0)
    .bind(invitation.expires_at.0)
    .execute(&mut *conn)
    .await?;
    crate::audit::record(
        conn,
        by,
        "operators.invite",
        "operator_invitation",
        &invitation.id,
        None,
        Some(&serde_json::json!({ "role": role, "expires_at": invitation.expires_at })),
    )
    .await?;
    Ok(invitation)
}

/// While no operator exists, a fresh owner invitation (earlier unused ones are withdrawn,
/// so only the link printed last works); `None` once someone has signed up.
pub async fn first_owner_invitation(db: &Database) -> Result<Option<Invitation>, ApiError> {
    if !none_exist(db).await? {
        return Ok(None);
    }
    let mut tx = db.pool().begin().await?;
    sqlx::query("DELETE FROM operator_invitations WHERE accepted_at IS NULL AND created_by = 'system'")
        .execute(&mut *tx)
        .await?;
    let invitation = insert_invitation(&mut tx, Role::Owner, &Actor::System).await?;
    tx.commit().await?;
    Ok(Some(invitation))
}

/// The role of the open invitation `token`, or why it cannot be used.
pub(crate) async fn open_invitation(db: &Database, token: &str) -> Result<(String, Role), ApiError> {
    let row = sqlx::query("SELECT * FROM operator_invitations WHERE token_hash = $1")
        .bind(secret_hash(token))
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else {
        return Err(ApiError::not_found("this invitation link is not valid; ask an owner for a new one"));
    };
    if row.try_get::<Option<i64>, _>("accepted_at")?.is_some() {
        return Err(ApiError::conflict("invitation_used", "this invitation has been used; sign in instead"));
    }
    if row.try_get::<i64, _>("expires_at")? <= now_millis().0 {
        return Err(ApiError::conflict(
            "invitation_expired",
            "this invitation has expired; ask an owner for a new one",
        ));
    }
    let role: String = row.try_get("role")?;
    Ok((row.try_get("id")?, Role::parse(&role).ok_or_else(|| ApiError::internal("invitation with unknown role"))?))
}

/// What someone accepting an invitation chose.
#[derive(Debug)]
pub(crate) struct Acceptance {
    pub(crate) email: String,
    pub(crate) name: String,
    pub(crate) password: String,
}

/// Creates the operator an invitation names, using it up. Refusals are 422s by field
/// (`/email`, `/name`, `/password`) or 409s for a used or expired link or a taken email.
pub(crate) async fn accept(db: &Database, token: &str, form: Acceptance) -> Result<Operator, ApiError> {
    let (invitation_id, role) = open_invitation(db, token).await?;
    let email = fold_email(&form.email);
    let mut errors = Vec::new();
    let at = email.find('@');
    if email.len() > 254 || at.is_none_or(|at| at == 0 || at == email.len() - 1) || email.contains(char::is_whitespace)
    {
        errors.push(FieldError { field: "/email".into(), message: "must be an email address".into() });
    }
    let name = form.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        errors.push(FieldError { field: "/name".into(), message: "must be 1–100 characters".into() });
    }
    if let Some(message) = crate::customers::password::refusal(&form.password, &email) {
        errors.push(FieldError { field: "/password".into(), message });
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let hash = crate::customers::password::hash(form.password).await?;
    let now = now_millis();
    let operator = Operator {
        id: crate::ids::new_id("op"),
        email,
        name,
        role,
        created_at: now,
        invited_by: invitation_id.clone(),
        disabled_at: None,
        totp: false,
    };
    let mut tx = db.pool().begin().await?;
    // Conditional, so two people racing on one link cannot both join.
    let used = sqlx::query(
        "UPDATE operator_invitations SET accepted_at = $1, accepted_by = $2 WHERE id = $3 AND accepted_at IS NULL",
    )
    .bind(now.0)
    .bind(&operator.id)
    .bind(&invitation_id)
    .execute(&mut *tx)
    .await?;
    if used.rows_affected() != 1 {
        return Err(ApiError::conflict("invitation_used", "this invitation has been used; sign in instead"));
    }
    let taken =
        sqlx::query("SELECT 1 FROM operators WHERE email = $1").bind(&operator.email).fetch_optional(&mut *tx).await?;
    if taken.is_some() {
        return Err(ApiError::conflict("email_taken", "an operator with this email exists; sign in instead"));
    }
    sqlx::query(
        "INSERT INTO operators (id, email, name, role, password_hash, created_at, invited_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&operator.id)
    .bind(&operator.email)
    .bind(&operator.name)
    .bind(role.as_str())
    .bind(hash)
    .bind(now.0)
    .bind(&operator.invited_by)
    .execute(&mut *tx)
    .await?;
    crate::audit::record(&mut tx, &operator.actor(), "operators.join", "operator", &operator.id, None, Some(&operator))
        .await?;
    tx.commit().await?;
    Ok(operator)
}

/// Disables `id` and ends their sessions. Nobody can disable themselves (409), so the
/// owner doing it remains and an installation never loses its last owner.
pub(crate) async fn disable(db: &Database, id: &str, by: &Operator) -> Result<Operator, ApiError> {
    if id == by.id {
        return Err(ApiError::conflict("self_disable", "you cannot disable yourself; ask another owner"));
    }
    let mut tx = db.pool().begin().await?;
    let row = sqlx::query("SELECT * FROM operators WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
    let before = match row {
        Some(row) => Operator::from_row(&row)?,
        None => return Err(ApiError::not_found(format!("no operator `{id}`"))),
    };
    if before.disabled_at.is_some() {
        return Err(ApiError::conflict("operator_disabled", format!("{} is already disabled", before.email)));
    }
    let now = now_millis();
    sqlx::query("UPDATE operators SET disabled_at = $1 WHERE id = $2").bind(now.0).bind(id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM operator_sessions WHERE operator_id = $1").bind(id).execute(&mut *tx).await?;
    let after = Operator { disabled_at: Some(now), ..before.clone() };
    crate::audit::record(&mut tx, &by.actor(), "operators.disable", "operator", id, Some(&before), Some(&after))
        .await?;
    tx.commit().await?;
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editors_write_every_capability_but_not_keys_or_ingest() {
        let scopes = Role::Editor.scopes();
        assert!(
            scopes.contains(&Scope::Read)
                && scopes.contains(&Scope::OrdersWrite)
                && scopes.contains(&Scope::LinksWrite)
        );
        for never in [Scope::Admin, Scope::IngestEvents, Scope::RatelimitCheck] {
            assert!(!scopes.contains(&never), "{never}");
        }
        assert_eq!(Role::Viewer.scopes(), vec![Scope::Read]);
        assert_eq!(Role::parse("owner"), Some(Role::Owner));
        assert_eq!(Role::parse("root"), None);
    }
}
