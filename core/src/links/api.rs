//! The `/v1/links` handlers: create, get, list, update, delete.
//!
//! Every write is validated whole first (all field errors at once, nothing changed), then
//! commits the row, its audit entry and the outbox row for its KV key in one transaction.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer};
use sqlx::Row;
use utoipa::openapi::schema::{Array, ArrayBuilder, Object, ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use verge_shared::links::password::PasswordHash;

use super::{Link, ShortUrls, Utm, codes, link_key, validate};
use crate::audit::Actor;
use crate::error::{ApiError, ApiJson, ApiQuery, FieldError, Problem};
use crate::keys::{Authorized, Grants, Scope};
use crate::pagination::{Cursor, Page, PageParams};
use crate::publish::enqueue;
use crate::state::AppState;
use crate::time::{Millis, now_millis};

/// Keys that may change links.
#[derive(Debug)]
pub(crate) struct LinkWriters;
impl Grants for LinkWriters {
    const SCOPES: &'static [Scope] = &[Scope::LinksWrite];
}

/// A new link. Only `url` is required.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewLink {
    /// The destination: an http(s) URL.
    #[schema(schema_with = validate::target_schema)]
    url: String,
    /// Custom code: 3–50 of `[A-Za-z0-9_-]`, not a reserved word; generated (7 characters) when absent.
    #[schema(pattern = "^[A-Za-z0-9_-]{3,50}$")]
    alias: Option<String>,
    /// A registered domain; the default domain when absent.
    #[schema(min_length = 1, max_length = 253)]
    domain: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Millis>,
    /// Where visitors go once the link has expired (410 without it).
    #[schema(schema_with = validate::optional_target_schema)]
    expired_url: Option<String>,
    /// Clicks after which the link answers 410.
    #[serde(default, deserialize_with = "whole")]
    #[schema(minimum = 1)]
    max_clicks: Option<i64>,
    /// 301, 302 (default), 307 or 308.
    #[serde(default, deserialize_with = "whole")]
    #[schema(schema_with = status_schema)]
    status: Option<u16>,
    /// Visitors must enter it (8 to 128 characters); stored only as an Argon2id hash.
    #[schema(min_length = 8, max_length = 128)]
    password: Option<String>,
    /// At most 20 tags of 1 to 50 characters.
    #[serde(default)]
    #[schema(schema_with = tags_schema)]
    tags: Vec<String>,
    #[serde(default, deserialize_with = "Utm::from_object")]
    utm: Utm,
    #[schema(schema_with = validate::optional_target_schema)]
    ios_url: Option<String>,
    #[schema(schema_with = validate::optional_target_schema)]
    android_url: Option<String>,
    #[schema(schema_with = validate::optional_target_schema)]
    desktop_url: Option<String>,
    /// ISO 3166 alpha-2 country code → URL.
    #[serde(default)]
    #[schema(schema_with = validate::country_targets_schema)]
    country_urls: BTreeMap<String, String>,
    /// Append the visitor's query string to the destination.
    #[serde(default)]
    forward_query: bool,
}

/// Changes to a link; absent fields stay, `null` clears an optional one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkChanges {
    #[schema(schema_with = validate::target_schema)]
    url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<Option<Millis>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = validate::optional_target_schema)]
    expired_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_whole")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    max_clicks: Option<Option<i64>>,
    #[serde(default, deserialize_with = "whole")]
    #[schema(schema_with = status_schema)]
    status: Option<u16>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 8, max_length = 128)]
    password: Option<Option<String>>,
    #[schema(schema_with = tags_schema)]
    tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "Utm::from_optional_object")]
    utm: Option<Utm>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = validate::optional_target_schema)]
    ios_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = validate::optional_target_schema)]
    android_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = validate::optional_target_schema)]
    desktop_url: Option<Option<String>>,
    #[schema(schema_with = validate::country_targets_schema)]
    country_urls: Option<BTreeMap<String, String>>,
    forward_query: Option<bool>,
}

/// The redirect statuses a link may answer with.
const REDIRECT_STATUSES: [u16; 4] = [301, 302, 307, 308];

fn status_schema() -> Object {
    ObjectBuilder::new().schema_type(Type::Integer).enum_values(Some(REDIRECT_STATUSES)).build()
}

const MAX_TAGS: usize = 20;
const MAX_TAG_CHARS: usize = 50;

fn tags_schema() -> Array {
    let tag = ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(MAX_TAG_CHARS));
    ArrayBuilder::new().items(tag).max_items(Some(MAX_TAGS)).build()
}

/// A field that was present in the JSON, possibly as `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A whole number, also when written `731.0`: JSON Schema counts that as an integer, so
/// clients generated from the OpenAPI document may send one.
fn whole<'de, D: Deserializer<'de>, T: TryFrom<i64>>(deserializer: D) -> Result<Option<T>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else { return Ok(None) };
    // Beyond 2^53 a float no longer holds every integer exactly.
    let exact = |f: f64| (f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).then_some(f as i64);
    number
        .as_i64()
        .or_else(|| number.as_f64().and_then(exact))
        .and_then(|int| T::try_from(int).ok())
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number in range, not {number}")))
}

fn present_whole<'de, D: Deserializer<'de>, T: TryFrom<i64>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    whole(deserializer).map(Some)
}

/// Longest UTM value: campaign names are short, and every one is baked into each target.
const MAX_UTM_CHARS: usize = 200;

/// Validates every field of `link` (which holds the requested state) in place.
fn check(mut link: Link, password: Option<&str>, own: &[String]) -> Result<Link, ApiError> {
    let mut errors = Vec::new();
    let url = |errors: &mut Vec<FieldError>, field: &str, value: &mut String| match validate::target(field, value, own)
    {
        Ok(normalized) => *value = normalized,
        Err(err) => errors.push(err),
    };
    url(&mut errors, "url", &mut link.url);
    for (field, value) in [
        ("expired_url", &mut link.expired_url),
        ("ios_url", &mut link.ios_url),
        ("android_url", &mut link.android_url),
        ("desktop_url", &mut link.desktop_url),
    ] {
        if let Some(value) = value {
            url(&mut errors, field, value);
        }
    }
    let countries = std::mem::take(&mut link.country_urls);
    for (country, mut target) in countries {
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
            errors.push(FieldError {
                field: format!("country_urls.{country}"),
                message: "keys are ISO 3166 alpha-2 codes".into(),
            });
            continue;
        }
        url(&mut errors, &format!("country_urls.{country}"), &mut target);
        link.country_urls.insert(country.to_ascii_uppercase(), target);
    }
    if !REDIRECT_STATUSES.contains(&link.status) {
        errors.push(FieldError { field: "status".into(), message: "must be 301, 302, 307 or 308".into() });
    }
    if link.max_clicks.is_some_and(|max| max < 1) {
        errors.push(FieldError { field: "max_clicks".into(), message: "must be at least 1".into() });
    }
    for (name, value) in link.utm.fields() {
        let Some(value) = value else { continue };
        if value.is_empty() || value.chars().count() > MAX_UTM_CHARS || value.chars().any(char::is_control) {
            errors.push(FieldError {
                field: format!("utm.{name}"),
                message: format!("must be 1 to {MAX_UTM_CHARS} characters, none of them control characters"),
            });
        }
    }
    if link.tags.len() > MAX_TAGS || link.tags.iter().any(|tag| tag.is_empty() || tag.chars().count() > MAX_TAG_CHARS) {
        errors.push(FieldError {
            field: "tags".into(),
            message: format!("at most {MAX_TAGS} tags of 1 to {MAX_TAG_CHARS} characters"),
        });
    }
    if let Some(password) = password {
        let min = verge_shared::links::password::MIN_LEN;
        if !(min..=128).contains(&password.chars().count()) {
            errors.push(FieldError { field: "password".into(), message: format!("must be {min} to 128 characters") });
        }
        link.password_hash = Some(PasswordHash::new(password, rand::random()).encode());
    }
    link.has_password = link.password_hash.is_some();
    if errors.is_empty() { Ok(link) } else { Err(ApiError::validation(errors)) }
}

/// The default domain and every registered one: where links live, and where they may not point.
pub(super) async fn own_domains(state: &AppState) -> Result<Vec<String>, ApiError> {
    let mut own = vec![state.config.default_link_domain().to_owned()];
    for row in sqlx::query("SELECT domain FROM link_domains").fetch_all(state.db.pool()).await? {
        own.push(row.try_get("domain")?);
    }
    Ok(own)
}

/// The secret keying generated codes, made on first use.
async fn code_key(conn: &mut sqlx::AnyConnection) -> Result<Vec<u8>, ApiError> {
    let found =
        sqlx::query("SELECT value FROM settings WHERE name = 'links.code_key'").fetch_optional(&mut *conn).await?;
    let hex_key: String = match found {
        Some(row) => row.try_get("value")?,
        None => {
            let fresh = hex::encode(rand::random::<[u8; 32]>());
            sqlx::query("INSERT INTO settings (name, value, updated_at, updated_by) VALUES ('links.code_key', $1, $2, 'system')")
                .bind(&fresh)
                .bind(now_millis().0)
                .execute(&mut *conn)
                .await?;
            fresh
        }
    };
    hex::decode(hex_key).map_err(|err| ApiError::internal(format!("links.code_key: {err}")))
}

async fn code_taken(conn: &mut sqlx::AnyConnection, domain: &str, code: &str) -> Result<bool, ApiError> {
    Ok(sqlx::query("SELECT 1 FROM links WHERE domain = $1 AND code = $2")
        .bind(domain)
        .bind(code)
        .fetch_optional(&mut *conn)
        .await?
        .is_some())
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds $1..$14: the fields a link write sets.
fn bind_fields<'q>(query: AnyQuery<'q>, link: &'q Link) -> AnyQuery<'q> {
    query
        .bind(&link.url)
        .bind(i32::from(link.status))
        .bind(link.expires_at.map(|at| at.0))
        .bind(&link.expired_url)
        .bind(link.max_clicks)
        .bind(&link.password_hash)
        .bind(serde_json::to_string(&link.tags).expect("tags serialize"))
        .bind(serde_json::to_string(&link.utm).expect("utm serializes"))
        .bind(&link.ios_url)
        .bind(&link.android_url)
        .bind(&link.desktop_url)
        .bind(serde_json::to_string(&link.country_urls).expect("countries serialize"))
        .bind(i32::from(link.forward_query))
        .bind(link.updated_at.0)
}

async fn insert(conn: &mut sqlx::AnyConnection, link: &Link) -> Result<(), sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO links (url, status, expires_at, expired_url, max_clicks, password_hash, tags, utm, ios_url,
            android_url, desktop_url, country_urls, forward_query, updated_at, created_at, domain, code, id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
    );
    bind_fields(query, link)
        .bind(link.created_at.0)
        .bind(&link.domain)
        .bind(&link.code)
        .bind(&link.id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn update(conn: &mut sqlx::AnyConnection, link: &Link) -> Result<(), sqlx::Error> {
    let query = sqlx::query(
        "UPDATE links SET url = $1, status = $2, expires_at = $3, expired_url = $4, max_clicks = $5,
            password_hash = $6, tags = $7, utm = $8, ios_url = $9, android_url = $10, desktop_url = $11,
            country_urls = $12, forward_query = $13, updated_at = $14
         WHERE id = $15",
    );
    bind_fields(query, link).bind(&link.id).execute(&mut *conn).await?;
    Ok(())
}

/// Create a short link.
#[utoipa::path(
    post, path = "/v1/links", tag = "links",
    request_body = NewLink,
    security(("admin_key" = ["admin", "links:write"])),
    responses(
        (status = 201, description = "Created; the edge serves it after the next publish (well under a second locally)", body = Link),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 409, description = "The alias is taken on this domain", body = Problem),
        (status = 422, description = "Invalid link; nothing was created", body = Problem),
    )
)]
pub(crate) async fn create_link(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<LinkWriters>,
    ApiJson(new): ApiJson<NewLink>,
) -> Result<(StatusCode, Json<Link>), ApiError> {
    let own = own_domains(&state).await?;
    let draft = draft(new, &own, state.config.default_link_domain())?;
    let mut tx = state.db.begin_write().await?;
    let link = store(&mut tx, &principal.actor(), draft, &mut None, &ShortUrls::of(&state.config)).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok((StatusCode::CREATED, Json(link)))
}

/// A new link validated whole, waiting for its code.
#[derive(Debug)]
pub(super) struct Draft {
    link: Link,
    alias: Option<String>,
}

/// Validates `new` without touching the database: every field error at once.
pub(super) fn draft(new: NewLink, own: &[String], default_domain: &str) -> Result<Draft, ApiError> {
    let mut errors = Vec::new();
    let domain = match &new.domain {
        None => default_domain.to_owned(),
        Some(raw) => match validate::domain("domain", raw) {
            Ok(domain) if own.contains(&domain) => domain,
            Ok(domain) => {
                errors.push(FieldError {
                    field: "domain".into(),
                    message: format!("`{domain}` is not a registered link domain"),
                });
                domain
            }
            Err(err) => {
                errors.push(err);
                raw.clone()
            }
        },
    };
    if let Some(alias) = &new.alias
        && let Err(err) = validate::alias(alias)
    {
        errors.push(err);
    }
    let now = now_millis();
    let draft = Link {
        id: crate::ids::new_id("lnk"),
        short_url: String::new(),
        domain,
        code: String::new(),
        url: new.url,
        status: new.status.unwrap_or(302),
        expires_at: new.expires_at,
        expired_url: new.expired_url,
        max_clicks: new.max_clicks,
        has_password: false,
        tags: new.tags,
        utm: new.utm,
        ios_url: new.ios_url,
        android_url: new.android_url,
        desktop_url: new.desktop_url,
        country_urls: new.country_urls,
        forward_query: new.forward_query,
        clicks: 0,
        redirects: 0,
        created_at: now,
        updated_at: now,
        password_hash: None,
    };
    match check(draft, new.password.as_deref(), own) {
        Ok(link) if errors.is_empty() => Ok(Draft { link, alias: new.alias }),
        Ok(_) => Err(ApiError::validation(errors)),
        Err(err) => {
            errors.extend(err.into_problem().errors);
            Err(ApiError::validation(errors))
        }
    }
}

/// Gives `draft` its code and stores it with its audit entry and outbox row, inside the
/// caller's transaction. `code_key` caches the code secret across a bulk request.
pub(super) async fn store(
    tx: &mut sqlx::AnyConnection,
    actor: &Actor,
    draft: Draft,
    code_key_cache: &mut Option<Vec<u8>>,
    urls: &ShortUrls,
) -> Result<Link, ApiError> {
    let Draft { mut link, alias } = draft;
    link.code = match alias {
        Some(alias) => {
            if code_taken(tx, &link.domain, &alias).await? {
                return Err(ApiError::conflict(
                    "alias_taken",
                    format!("`{alias}` is already a link on {}", link.domain),
                ));
            }
            alias
        }
        None => {
            let key = match code_key_cache {
                Some(key) => key.clone(),
                None => code_key_cache.insert(code_key(tx).await?).clone(),
            };
            loop {
                let next: i64 = sqlx::query("UPDATE link_code_counter SET next = next + 1 WHERE id = 1 RETURNING next")
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("next")?;
                let code = codes::code_for(&key, (next - 1) as u64);
                // Only a custom alias can hold a generated code; take the next number.
                if !code_taken(tx, &link.domain, &code).await? {
                    break code;
                }
            }
        }
    };
    link.short_url = urls.url(&link.domain, &link.code);
    insert(tx, &link).await?;
    crate::audit::record(tx, actor, "link.create", "link", &link.id, None, Some(&link)).await?;
    enqueue(tx, &link_key(&link.domain, &link.code)).await?;
    Ok(link)
}

pub(super) async fn load(conn: &mut sqlx::AnyConnection, id: &str, urls: &ShortUrls) -> Result<Link, ApiError> {
    let row = sqlx::query("SELECT * FROM links WHERE id = $1").bind(id).fetch_optional(&mut *conn).await?;
    match row {
        Some(row) => Ok(Link::from_row(&row, urls)?),
        None => Err(ApiError::not_found(format!("no link `{id}`"))),
    }
}

/// Get one link.
#[utoipa::path(
    get, path = "/v1/links/{id}", tag = "links",
    params(("id" = String, Path, description = "Link id (`lnk_…`)")),
    security(("admin_key" = ["admin", "read", "links:write"])),
    responses(
        (status = 200, description = "The link", body = Link),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such link", body = Problem),
    )
)]
pub(crate) async fn get_link(
    State(state): State<AppState>,
    _: Authorized<LinkReaders>,
    Path(id): Path<String>,
) -> Result<Json<Link>, ApiError> {
    let mut conn = state.db.pool().acquire().await?;
    Ok(Json(load(&mut conn, &id, &ShortUrls::of(&state.config)).await?))
}

/// Keys that may read links: readers and link writers.
#[derive(Debug)]
pub(crate) struct LinkReaders;
impl Grants for LinkReaders {
    const SCOPES: &'static [Scope] = &[Scope::Read, Scope::LinksWrite];
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LinkFilter {
    /// Only links with this tag.
    tag: Option<String>,
    /// Only links on this domain.
    domain: Option<String>,
    /// Text in the code or the destination URL.
    q: Option<String>,
    /// Created at or after (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    created_after: Option<Millis>,
    /// Created before (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    created_before: Option<Millis>,
}

/// List links, newest first, filtered.
#[utoipa::path(
    get, path = "/v1/links", tag = "links",
    params(LinkFilter, PageParams),
    security(("admin_key" = ["admin", "read", "links:write"])),
    responses(
        (status = 200, description = "A page of links", body = Page<Link>),
        (status = 400, description = "Bad cursor", body = Problem),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
    )
)]
pub(crate) async fn list_links(
    State(state): State<AppState>,
    _: Authorized<LinkReaders>,
    ApiQuery(filter): ApiQuery<LinkFilter>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<Link>>, ApiError> {
    let cursor = Cursor::from_params(&page)?;
    let urls = ShortUrls::of(&state.config);
    let links = filtered(state.db.pool(), &filter, cursor.after(), cursor.fetch_limit(), &urls).await?;
    Ok(Json(cursor.page(links, |link| link.id.clone())))
}

/// Links matching `filter` with ids below `after` (`''` for the start), newest first.
pub(super) async fn filtered(
    pool: &sqlx::AnyPool,
    filter: &LinkFilter,
    after: &str,
    limit: i64,
    urls: &ShortUrls,
) -> Result<Vec<Link>, sqlx::Error> {
    enum Bind {
        Text(String),
        Time(i64),
    }
    let mut sql = String::from("SELECT * FROM links WHERE ($1 = '' OR id < $1)");
    let mut binds = vec![Bind::Text(after.to_owned())];
    let mut add = |clause: &str, values: Vec<Bind>| {
        let mut clause = clause.to_owned();
        for value in values {
            binds.push(value);
            clause = clause.replacen('?', &format!("${}", binds.len()), 1);
        }
        sql.push_str(&clause);
    };
    if let Some(tag) = &filter.tag {
        // Tags are a JSON array of strings; match the quoted element.
        let quoted = crate::db::like_escape(&serde_json::to_string(tag).expect("strings serialize"));
        add(" AND tags LIKE ? ESCAPE '\\'", vec![Bind::Text(format!("%{quoted}%"))]);
    }
    if let Some(domain) = &filter.domain {
        add(" AND domain = ?", vec![Bind::Text(domain.to_ascii_lowercase())]);
    }
    if let Some(q) = &filter.q {
        let pattern = format!("%{}%", crate::db::like_escape(&q.to_lowercase()));
        add(
            " AND (LOWER(code) LIKE ? ESCAPE '\\' OR LOWER(url) LIKE ? ESCAPE '\\')",
            vec![Bind::Text(pattern.clone()), Bind::Text(pattern)],
        );
    }
    if let Some(after) = filter.created_after {
        add(" AND created_at >= ?", vec![Bind::Time(after.0)]);
    }
    if let Some(before) = filter.created_before {
        add(" AND created_at < ?", vec![Bind::Time(before.0)]);
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {limit}"));
    let mut query = sqlx::query(&sql);
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text),
            Bind::Time(millis) => query.bind(millis),
        };
    }
    query.fetch_all(pool).await?.iter().map(|row| Link::from_row(row, urls)).collect()
}

/// Change a link; the edge serves the new version after the next publish.
#[utoipa::path(
    patch, path = "/v1/links/{id}", tag = "links",
    params(("id" = String, Path, description = "Link id (`lnk_…`)")),
    request_body = LinkChanges,
    security(("admin_key" = ["admin", "links:write"])),
    responses(
        (status = 200, description = "The changed link", body = Link),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such link", body = Problem),
        (status = 422, description = "Invalid change; nothing changed", body = Problem),
    )
)]
pub(crate) async fn update_link(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<LinkWriters>,
    Path(id): Path<String>,
    ApiJson(changes): ApiJson<LinkChanges>,
) -> Result<Json<Link>, ApiError> {
    let own = own_domains(&state).await?;
    let actor = principal.actor();
    let mut tx = state.db.begin_write().await?;
    let before = load(&mut tx, &id, &ShortUrls::of(&state.config)).await?;
    let mut link = before.clone();
    if let Some(url) = changes.url {
        link.url = url;
    }
    if let Some(status) = changes.status {
        link.status = status;
    }
    macro_rules! set {
        ($($field:ident),*) => { $(if let Some(value) = changes.$field { link.$field = value; })* };
    }
    set!(
        expires_at,
        expired_url,
        max_clicks,
        tags,
        utm,
        ios_url,
        android_url,
        desktop_url,
        country_urls,
        forward_query
    );
    let password = match changes.password {
        Some(None) => {
            link.password_hash = None;
            None
        }
        Some(Some(password)) => Some(password),
        None => None,
    };
    link.updated_at = now_millis();
    let link = check(link, password.as_deref(), &own)?;
    update(&mut tx, &link).await?;
    crate::audit::record(&mut tx, &actor, "link.update", "link", &link.id, Some(&before), Some(&link)).await?;
    enqueue(&mut tx, &link_key(&link.domain, &link.code)).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(Json(link))
}

/// Delete a link; the edge stops serving it after the next publish.
#[utoipa::path(
    delete, path = "/v1/links/{id}", tag = "links",
    params(("id" = String, Path, description = "Link id (`lnk_…`)")),
    security(("admin_key" = ["admin", "links:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such link", body = Problem),
    )
)]
pub(crate) async fn delete_link(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<LinkWriters>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let actor = principal.actor();
    let mut tx = state.db.begin_write().await?;
    let before = load(&mut tx, &id, &ShortUrls::of(&state.config)).await?;
    sqlx::query("DELETE FROM links WHERE id = $1").bind(&id).execute(&mut *tx).await?;
    crate::audit::record(&mut tx, &actor, "link.delete", "link", &id, Some(&before), None).await?;
    enqueue(&mut tx, &link_key(&before.domain, &before.code)).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(StatusCode::NO_CONTENT)
}
