//! Customers: the end users of a project, their records, search, history and erasure
//! (`api`), how they sign in (`auth`), their sessions and tokens (`sessions`,
//! `signing`), and what the edge needs to refuse a revoked session (`revocations`).
//!
//! A project is a name in the path (`/v1/customers/{project}/…`, `/auth/{project}/…`),
//! as flag environments name theirs: accounts, settings and sessions are per project, and
//! the same email may belong to one customer in each project. Every change to a customer
//! is an audit entry on the customer's id, so the audit log is their history.

pub(crate) mod api;
pub(crate) mod auth;
pub(crate) mod cookies;
pub(crate) mod device;
pub(crate) mod password;
pub(crate) mod recovery;
pub(crate) mod revocations;
pub(crate) mod sessions;
pub(crate) mod settings;
pub(crate) mod signing;
pub(crate) mod throttle;
pub(crate) mod tokens;

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use crate::error::{ApiError, FieldError};
use crate::keys::{Grants, Scope};
use crate::time::Millis;

/// Keys that may change customers and end their sessions.
#[derive(Debug)]
pub(crate) struct CustomerWriters;
impl Grants for CustomerWriters {
    const SCOPES: &'static [Scope] = &[Scope::CustomersWrite];
}

/// Keys that may read customers.
#[derive(Debug)]
pub(crate) struct CustomerReaders;
impl Grants for CustomerReaders {
    const SCOPES: &'static [Scope] = &[Scope::Read, Scope::CustomersWrite];
}

/// A customer as the admin API shows it: never the password hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Customer {
    pub(crate) id: String,
    pub(crate) project: String,
    pub(crate) email: String,
    pub(crate) name: Option<String>,
    /// E.164, e.g. `+4915112345678`.
    pub(crate) phone: Option<String>,
    /// Your own JSON object.
    #[schema(value_type = Object)]
    pub(crate) metadata: Value,
    pub(crate) email_verified: bool,
    /// Whether the customer can sign in with a password.
    pub(crate) has_password: bool,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) created_at: Millis,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) updated_at: Millis,
}

impl Customer {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Customer, sqlx::Error> {
        let metadata: String = row.try_get("metadata")?;
        Ok(Customer {
            id: row.try_get("id")?,
            project: row.try_get("project")?,
            email: row.try_get("email")?,
            name: row.try_get("name")?,
            phone: row.try_get("phone")?,
            metadata: serde_json::from_str(&metadata)
                .map_err(|err| sqlx::Error::Decode(format!("customers.metadata: {err}").into()))?,
            email_verified: row.try_get::<Option<i64>, _>("email_verified_at")?.is_some(),
            has_password: row.try_get::<Option<String>, _>("password_hash")?.is_some(),
            created_at: Millis(row.try_get("created_at")?),
            updated_at: Millis(row.try_get("updated_at")?),
        })
    }

    /// The record as audit entries keep it (no secrets: there are none in it).
    pub(crate) fn audit_value(&self) -> Value {
        serde_json::to_value(self).expect("a customer serializes")
    }
}

/// Checks a project name: it appears in paths and in edge KV keys.
pub(crate) fn check_project(project: &str) -> Result<(), ApiError> {
    crate::ids::check_slug(project, "project")
}

/// Refuses what is not an email address, as a 422 on `field`.
pub(crate) fn check_email(email: &str, field: &str) -> Result<(), ApiError> {
    let trimmed = email.trim();
    let valid = trimmed.len() <= 254
        && !trimmed.chars().any(char::is_whitespace)
        && trimmed.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if valid {
        Ok(())
    } else {
        Err(ApiError::validation(vec![FieldError { field: field.into(), message: "is not an email address".into() }]))
    }
}

/// The form of an email that makes an account unique: trimmed and case-folded.
pub(crate) fn fold_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Loads a customer of `project`, or 404.
pub(crate) async fn load(
    conn: &mut sqlx::AnyConnection,
    project: &str,
    id: &str,
) -> Result<(Customer, AnyRow), ApiError> {
    let row = sqlx::query("SELECT * FROM customers WHERE project = $1 AND id = $2")
        .bind(project)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no customer `{id}` in project `{project}`")))?;
    Ok((Customer::from_row(&row)?, row))
}

/// Every word a search box may start typing to find `customer`: the whole email and its
/// domain and its words, each word of the name, the phone's digits, and each word of metadata strings.
pub(crate) fn search_terms(customer: &Customer) -> Vec<String> {
    let email = fold_email(&customer.email);
    let mut terms = vec![email.clone()];
    terms.extend(email.split_once('@').map(|(_, domain)| domain.to_owned()));
    terms.extend(verge_shared::text::words(&customer.email));
    if let Some(name) = &customer.name {
        terms.push(verge_shared::text::fold(name));
        terms.extend(verge_shared::text::words(name));
    }
    if let Some(phone) = &customer.phone {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        terms.push(digits);
    }
    fn strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::String(s) => out.push(s),
            Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            Value::Object(map) => map.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let mut texts = Vec::new();
    strings(&customer.metadata, &mut texts);
    for text in texts {
        terms.push(verge_shared::text::fold(text));
        terms.extend(verge_shared::text::words(text));
    }
    // Terms are bounded so one record cannot bloat the index.
    terms.retain(|t| !t.is_empty() && t.len() <= 200);
    terms.sort();
    terms.dedup();
    terms.truncate(200);
    terms
}

/// Replaces a customer's search terms, inside the caller's transaction.
pub(crate) async fn index(conn: &mut sqlx::AnyConnection, customer: &Customer) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM customer_terms WHERE customer_id = $1").bind(&customer.id).execute(&mut *conn).await?;
    for term in search_terms(customer) {
        sqlx::query("INSERT INTO customer_terms (project, term, customer_id) VALUES ($1, $2, $3)")
            .bind(&customer.project)
            .bind(term)
            .bind(&customer.id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The smallest string above every string starting with `prefix` (for a range scan):
/// the prefix with its last character moved up by one code point.
pub(crate) fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    // Only `char::MAX` repeated: nothing sorts above, so take everything after it.
    String::from(char::MAX).repeat(prefix.chars().count() + 1)
}
