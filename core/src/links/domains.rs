//! Branded link domains: `/v1/links/domains`.
//!
//! A registered domain can hold links (each link lives on exactly one domain, and the
//! edge looks a code up under the request's host only) and may name a not-found URL the
//! edge sends unknown codes to. The default domain comes from configuration and needs no
//! row. A domain that still holds links cannot be removed: its links would silently stop.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use super::api::{LinkReaders, LinkWriters, own_domains};
use super::validate;
use crate::error::{ApiError, ApiJson, FieldError, Problem};
use crate::keys::Authorized;
use crate::publish::enqueue;
use crate::state::AppState;
use crate::time::{Millis, now_millis};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct LinkDomain {
    /// Lower-case host name, e.g. `go.example.com`.
    domain: String,
    /// Where the edge sends visitors of unknown codes (a 404 page without it).
    not_found_url: Option<String>,
    /// Whether this is the configured default domain (not removable over the API).
    default: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    created_at: Option<Millis>,
}

impl LinkDomain {
    fn from_row(row: &AnyRow) -> Result<LinkDomain, sqlx::Error> {
        Ok(LinkDomain {
            domain: row.try_get("domain")?,
            not_found_url: row.try_get("not_found_url")?,
            default: false,
            created_at: Some(Millis(row.try_get("created_at")?)),
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDomain {
    /// A bare host name, like `go.example.com` (international names are stored as punycode).
    #[schema(min_length = 1, max_length = 253)]
    domain: String,
    /// Where the edge sends visitors of unknown codes (a 404 page without it).
    #[schema(schema_with = validate::optional_target_schema)]
    not_found_url: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DomainChanges {
    /// The new not-found URL; `null` removes it.
    #[schema(schema_with = validate::optional_target_schema)]
    not_found_url: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DomainList {
    /// The default domain first, then registered ones by name.
    items: Vec<LinkDomain>,
}

fn checked_not_found_url(raw: Option<String>, own: &[String]) -> Result<Option<String>, ApiError> {
    raw.map(|url| validate::target("not_found_url", &url, own).map_err(|err| ApiError::validation(vec![err])))
        .transpose()
}

/// Register a branded domain.
#[utoipa::path(
    post, path = "/v1/links/domains", tag = "links",
    request_body = NewDomain,
    security(("admin_key" = ["admin", "links:write"])),
    responses(
        (status = 201, description = "Registered", body = LinkDomain),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 409, description = "Already registered (or the default domain)", body = Problem),
        (status = 422, description = "Not a bare host name, or a bad not-found URL", body = Problem),
    )
)]
pub(crate) async fn create_domain(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<LinkWriters>,
    ApiJson(new): ApiJson<NewDomain>,
) -> Result<(StatusCode, Json<LinkDomain>), ApiError> {
    let domain = validate::domain("domain", &new.domain).map_err(|err| ApiError::validation(vec![err]))?;
    let mut own = own_domains(&state).await?;
    if own.contains(&domain) {
        return Err(ApiError::conflict("domain_taken", format!("`{domain}` is already a link domain")));
    }
    own.push(domain.clone());
    let not_found_url = checked_not_found_url(new.not_found_url, &own)?;
    // Targets already pointing at the new domain would start looping through the edge.
    let (links, domains) = targets_at(&state, &domain).await?;
    if links + domains > 0 {
        return Err(ApiError::validation(vec![FieldError {
            field: "domain".into(),
            message: format!(
                "{links} existing links and {domains} domains' not-found URLs point at `{domain}`; \
                 as a link domain they would loop"
            ),
        }]));
    }
    let created = LinkDomain { domain, not_found_url, default: false, created_at: Some(now_millis()) };
    let mut tx = state.db.begin_write().await?;
    sqlx::query("INSERT INTO link_domains (domain, not_found_url, created_at) VALUES ($1, $2, $3)")
        .bind(&created.domain)
        .bind(&created.not_found_url)
        .bind(created.created_at.map(|at| at.0))
        .execute(&mut *tx)
        .await?;
    let actor = principal.actor();
    crate::audit::record(&mut tx, &actor, "link_domain.create", "link_domain", &created.domain, None, Some(&created))
        .await?;
    enqueue(&mut tx, &verge_shared::links::domain_key(&created.domain)).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok((StatusCode::CREATED, Json(created)))
}

/// List link domains.
#[utoipa::path(
    get, path = "/v1/links/domains", tag = "links",
    security(("admin_key" = ["admin", "read", "links:write"])),
    responses(
        (status = 200, description = "Every link domain", body = DomainList),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
    )
)]
pub(crate) async fn list_domains(
    State(state): State<AppState>,
    _: Authorized<LinkReaders>,
) -> Result<Json<DomainList>, ApiError> {
    let default = LinkDomain {
        domain: state.config.default_link_domain().to_owned(),
        not_found_url: None,
        default: true,
        created_at: None,
    };
    let rows = sqlx::query("SELECT * FROM link_domains ORDER BY domain").fetch_all(state.db.pool()).await?;
    let registered = rows.iter().map(LinkDomain::from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(DomainList { items: std::iter::once(default).chain(registered).collect() }))
}

async fn load(conn: &mut sqlx::AnyConnection, domain: &str) -> Result<LinkDomain, ApiError> {
    match sqlx::query("SELECT * FROM link_domains WHERE domain = $1").bind(domain).fetch_optional(&mut *conn).await? {
        Some(row) => Ok(LinkDomain::from_row(&row)?),
        None => Err(ApiError::not_found(format!("`{domain}` is not a registered link domain"))),
    }
}

/// Change a domain's not-found URL.
#[utoipa::path(
    patch, path = "/v1/links/domains/{domain}", tag = "links",
    params(("domain" = String, Path, description = "The host name")),
    request_body = DomainChanges,
    security(("admin_key" = ["admin", "links:write"])),
    responses(
        (status = 200, description = "The changed domain", body = LinkDomain),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "Not a registered domain", body = Problem),
        (status = 422, description = "Bad not-found URL; nothing changed", body = Problem),
    )
)]
pub(crate) async fn update_domain(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<LinkWriters>,
    Path(domain): Path<String>,
    ApiJson(changes): ApiJson<DomainChanges>,
) -> Result<Json<LinkDomain>, ApiError> {
    let domain = domain.to_ascii_lowercase();
    let own = own_domains(&state).await?;
    let not_found_url = checked_not_found_url(changes.not_found_url, &own)?;
    let mut tx = state.db.begin_write().await?;
    let before = load(&mut tx, &domain).await?;
    let after = LinkDomain { not_found_url, ..before.clone() };
    sqlx::query("UPDATE link_domains SET not_found_url = $1 WHERE domain = $2")
        .bind(&after.not_found_url)
        .bind(&domain)
        .execute(&mut *tx)
        .await?;
    let actor = principal.actor();
    crate::audit::record(&mut tx, &actor, "link_domain.update", "link_domain", &domain, Some(&before), Some(&after))
        .await?;
    enqueue(&mut tx, &verge_shared::links::domain_key(&domain)).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(Json(after))
}

/// Remove a branded domain that holds no links.
#[utoipa::path(
    delete, path = "/v1/links/domains/{domain}", tag = "links",
    params(("domain" = String, Path, description = "The host name")),
    security(("admin_key" = ["admin", "links:write"])),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "Not a registered domain", body = Problem),
        (status = 409, description = "The domain still holds links", body = Problem),
    )
)]
pub(crate) async fn delete_domain(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<LinkWriters>,
    Path(domain): Path<String>,
) -> Result<StatusCode, ApiError> {
    let domain = domain.to_ascii_lowercase();
    let mut tx = state.db.begin_write().await?;
    let before = load(&mut tx, &domain).await?;
    let links: i64 = sqlx::query("SELECT COUNT(*) AS n FROM links WHERE domain = $1")
        .bind(&domain)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
    if links > 0 {
        return Err(ApiError::conflict(
            "domain_in_use",
            format!("`{domain}` still holds {links} links; delete them first"),
        ));
    }
    sqlx::query("DELETE FROM link_domains WHERE domain = $1").bind(&domain).execute(&mut *tx).await?;
    let actor = principal.actor();
    crate::audit::record(&mut tx, &actor, "link_domain.delete", "link_domain", &domain, Some(&before), None).await?;
    enqueue(&mut tx, &verge_shared::links::domain_key(&domain)).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(StatusCode::NO_CONTENT)
}

/// How many links (by any of their targets) and domains (by their not-found URL) point at
/// `domain`.
async fn targets_at(state: &AppState, domain: &str) -> Result<(i64, i64), ApiError> {
    let host = crate::db::like_escape(domain);
    // A URL on `domain`: its authority ends at `/`, `:` (a port), `?` or `#`.
    let patterns: Vec<String> = ["http", "https"]
        .iter()
        .flat_map(|scheme| ["/", ":", "?", "#"].map(|end| format!("{scheme}://{host}{end}%")))
        .collect();
    let any_column = |columns: &[&str], quoted: bool| {
        let mut terms = Vec::new();
        for column in columns {
            for n in 1..=patterns.len() {
                // Country URLs are a JSON object: each URL follows a quote.
                let lead = if quoted { "'%\"' || " } else { "" };
                terms.push(format!("{column} LIKE {lead}${n} ESCAPE '\\'"));
            }
        }
        terms.join(" OR ")
    };
    let link_sql = format!(
        "SELECT COUNT(*) AS n FROM links WHERE {} OR {}",
        any_column(&["url", "expired_url", "ios_url", "android_url", "desktop_url"], false),
        any_column(&["country_urls"], true)
    );
    let domain_sql = format!("SELECT COUNT(*) AS n FROM link_domains WHERE {}", any_column(&["not_found_url"], false));
    let mut counts = [0i64; 2];
    for (count, sql) in counts.iter_mut().zip([link_sql, domain_sql]) {
        let mut query = sqlx::query(&sql);
        for pattern in &patterns {
            query = query.bind(pattern);
        }
        *count = query.fetch_one(state.db.pool()).await?.try_get("n")?;
    }
    Ok((counts[0], counts[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_not_found_url_may_not_point_at_our_domains() {
        let own = vec!["go.example.com".to_owned()];
        assert!(checked_not_found_url(Some("https://go.example.com/x".into()), &own).is_err());
        assert!(checked_not_found_url(Some("javascript:alert(1)".into()), &own).is_err());
        assert_eq!(
            checked_not_found_url(Some("https://Example.com/404".into()), &own).unwrap().as_deref(),
            Some("https://example.com/404")
        );
        assert_eq!(checked_not_found_url(None, &own).unwrap(), None);
    }
}
