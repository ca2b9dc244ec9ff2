//! Short links: `/v1/links…` in the core, one KV record per link at the edge, clicks back.
//!
//! A write validates, commits the row with its audit entry and an outbox row naming the
//! link's KV key, and wakes the publisher, which rewrites just that key; the edge answers
//! redirects from it without calling the core. Click events come back through the ingest
//! endpoint and are projected into `link_clicks` for analytics.

pub(crate) mod analytics;
pub(crate) mod api;
pub(crate) mod bulk;
pub(crate) mod clicks;
mod codes;
pub(crate) mod domains;
pub(crate) mod export;
pub(crate) mod qr;
mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;
use verge_shared::links::password::PasswordHash;
use verge_shared::links::{self as edge, DomainRecord, LinkRecord};

use crate::db::Database;
use crate::publish::{DatasetContent, DatasetSource, KeyedValue};
use crate::time::Millis;

/// UTM parameters appended to every target of a link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Utm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub(crate) source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub(crate) medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub(crate) campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub(crate) term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub(crate) content: Option<String>,
}

impl Utm {
    /// Reads UTM parameters only from a JSON object (a derived struct would take an array).
    pub(crate) fn from_object<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Utm, D::Error> {
        let object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        serde_json::from_value(serde_json::Value::Object(object)).map_err(serde::de::Error::custom)
    }

    /// [`Utm::from_object`] for a field that may be absent.
    pub(crate) fn from_optional_object<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Utm>, D::Error> {
        Utm::from_object(deserializer).map(Some)
    }

    /// Each parameter by its name in the API.
    pub(crate) fn fields(&self) -> [(&'static str, &Option<String>); 5] {
        [
            ("source", &self.source),
            ("medium", &self.medium),
            ("campaign", &self.campaign),
            ("term", &self.term),
            ("content", &self.content),
        ]
    }

    /// `url` with these parameters set (replacing any of the same name).
    fn apply(&self, url: &str) -> String {
        let pairs = [
            ("utm_source", &self.source),
            ("utm_medium", &self.medium),
            ("utm_campaign", &self.campaign),
            ("utm_term", &self.term),
            ("utm_content", &self.content),
        ];
        if pairs.iter().all(|(_, value)| value.is_none()) {
            return url.to_owned();
        }
        let Ok(mut parsed) = url::Url::parse(url) else { return url.to_owned() };
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(name, _)| !pairs.iter().any(|(utm, value)| value.is_some() && name == utm))
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        {
            let mut query = parsed.query_pairs_mut();
            query.clear().extend_pairs(kept);
            for (name, value) in pairs {
                if let Some(value) = value {
                    query.append_pair(name, value);
                }
            }
        }
        parsed.to_string()
    }
}

/// A short link as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct Link {
    /// `lnk_…`
    pub(crate) id: String,
    pub(crate) domain: String,
    /// The generated code or the custom alias.
    pub(crate) code: String,
    /// `https://<domain>/<code>`
    pub(crate) short_url: String,
    /// The destination.
    pub(crate) url: String,
    /// 301, 302, 307 or 308.
    pub(crate) status: u16,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(crate) expires_at: Option<Millis>,
    pub(crate) expired_url: Option<String>,
    pub(crate) max_clicks: Option<i64>,
    /// Whether visitors must give a password (the password itself is never shown).
    pub(crate) has_password: bool,
    pub(crate) tags: Vec<String>,
    pub(crate) utm: Utm,
    pub(crate) ios_url: Option<String>,
    pub(crate) android_url: Option<String>,
    pub(crate) desktop_url: Option<String>,
    /// ISO 3166 alpha-2 country code → URL.
    pub(crate) country_urls: BTreeMap<String, String>,
    pub(crate) forward_query: bool,
    /// Clicks counted so far (bots excluded), reconciled from edge events.
    pub(crate) clicks: i64,
    /// Every redirect served so far, bots and `HEAD`s included: what `max_clicks` limits.
    pub(crate) redirects: i64,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) created_at: Millis,
    #[schema(value_type = String, format = DateTime)]
    pub(crate) updated_at: Millis,
    /// Not shown; kept for the edge record.
    #[serde(skip)]
    pub(crate) password_hash: Option<String>,
}

/// Where short links are reached: `https://<domain>/<code>`, except that links on the
/// default domain use the configured base when there is one (`verge dev` sets its edge's
/// URL, `http://127.0.0.1:8081`, so the `short_url` a new user is shown works as printed).
#[derive(Debug, Clone, Default)]
pub(crate) struct ShortUrls {
    default_domain: String,
    base: Option<String>,
}

impl ShortUrls {
    pub(crate) fn of(config: &crate::Config) -> ShortUrls {
        ShortUrls {
            default_domain: config.default_link_domain().to_owned(),
            base: config.links_short_url_base.as_ref().map(|base| base.trim_end_matches('/').to_owned()),
        }
    }

    pub(crate) fn url(&self, domain: &str, code: &str) -> String {
        match &self.base {
            Some(base) if domain == self.default_domain => format!("{base}/{code}"),
            _ => format!("https://{domain}/{code}"),
        }
    }
}

impl Link {
    fn from_row(row: &AnyRow, urls: &ShortUrls) -> Result<Link, sqlx::Error> {
        let json = |name: &str| -> Result<String, sqlx::Error> { row.try_get(name) };
        fn decode<T: serde::de::DeserializeOwned>(name: &str, text: String) -> Result<T, sqlx::Error> {
            serde_json::from_str(&text).map_err(|err| sqlx::Error::Decode(format!("links.{name}: {err}").into()))
        }
        let domain: String = row.try_get("domain")?;
        let code: String = row.try_get("code")?;
        let password_hash: Option<String> = row.try_get("password_hash")?;
        Ok(Link {
            id: row.try_get("id")?,
            short_url: urls.url(&domain, &code),
            domain,
            code,
            url: row.try_get("url")?,
            status: row.try_get::<i32, _>("status")? as u16,
            expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(Millis),
            expired_url: row.try_get("expired_url")?,
            max_clicks: row.try_get("max_clicks")?,
            has_password: password_hash.is_some(),
            tags: decode("tags", json("tags")?)?,
            utm: decode("utm", json("utm")?)?,
            ios_url: row.try_get("ios_url")?,
            android_url: row.try_get("android_url")?,
            desktop_url: row.try_get("desktop_url")?,
            country_urls: decode("country_urls", json("country_urls")?)?,
            forward_query: row.try_get::<i32, _>("forward_query")? != 0,
            clicks: row.try_get("clicks")?,
            redirects: row.try_get("redirects")?,
            created_at: Millis(row.try_get("created_at")?),
            updated_at: Millis(row.try_get("updated_at")?),
            password_hash,
        })
    }

    /// The edge's view: UTM baked into every target, exhaustion decided here.
    fn record(&self) -> LinkRecord {
        let with_utm = |url: &Option<String>| url.as_deref().map(|url| self.utm.apply(url));
        LinkRecord {
            id: self.id.clone(),
            target: self.utm.apply(&self.url),
            status: self.status,
            expires_at: self.expires_at.map(|at| at.0.max(0) as u64),
            expired_url: self.expired_url.clone(),
            exhausted: self.max_clicks.is_some_and(|max| self.redirects >= max),
            password: self.password_hash.as_deref().and_then(PasswordHash::decode),
            forward_query: self.forward_query,
            ios: with_utm(&self.ios_url),
            android: with_utm(&self.android_url),
            desktop: with_utm(&self.desktop_url),
            countries: self.country_urls.iter().map(|(country, url)| (country.clone(), self.utm.apply(url))).collect(),
        }
    }
}

/// The secret salt of visitor hashes (hex), made on first use. The edge mixes it with the
/// day, so hashes rotate daily and cannot be reversed by hashing every IPv4 address.
pub(crate) async fn visitor_salt(conn: &mut sqlx::AnyConnection) -> Result<String, sqlx::Error> {
    const SELECT: &str = "SELECT value FROM settings WHERE name = 'links.visitor_salt'";
    if let Some(row) = sqlx::query(SELECT).fetch_optional(&mut *conn).await? {
        return row.try_get("value");
    }
    // Two first publishes may race here; the first insert wins and both read it back.
    sqlx::query(
        "INSERT INTO settings (name, value, updated_at, updated_by) VALUES ('links.visitor_salt', $1, $2, 'system')
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(hex::encode(rand::random::<[u8; 32]>()))
    .bind(crate::time::now_millis().0)
    .execute(&mut *conn)
    .await?;
    sqlx::query(SELECT).fetch_one(&mut *conn).await?.try_get("value")
}

/// The KV key of a link, as enqueued in the outbox.
pub(crate) fn link_key(domain: &str, code: &str) -> String {
    edge::link_key(domain, code)
}

/// Publishes one KV record per link and per branded domain.
#[derive(Debug)]
pub(crate) struct LinksSource;

#[async_trait::async_trait]
impl DatasetSource for LinksSource {
    async fn build(&self, _db: &Database) -> Result<Vec<DatasetContent>, sqlx::Error> {
        Ok(Vec::new())
    }

    fn keyed_prefix(&self) -> Option<&'static str> {
        Some(edge::PREFIX)
    }

    async fn keyed_values(&self, db: &Database, keys: &[String]) -> Result<Vec<KeyedValue>, sqlx::Error> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            let rest = &key[edge::PREFIX.len()..];
            let value = match rest.split_once('/') {
                Some((domain, code)) => sqlx::query("SELECT * FROM links WHERE domain = $1 AND code = $2")
                    .bind(domain)
                    .bind(code)
                    .fetch_optional(db.pool())
                    .await?
                    .map(|row| Link::from_row(&row, &ShortUrls::default()).map(|link| link.record().encode()))
                    .transpose()?,
                None => sqlx::query("SELECT not_found_url FROM link_domains WHERE domain = $1")
                    .bind(rest)
                    .fetch_optional(db.pool())
                    .await?
                    .map(|row| row.try_get("not_found_url").map(|url| DomainRecord { not_found_url: url }.encode()))
                    .transpose()?,
            };
            values.push((key.clone(), value));
        }
        Ok(values)
    }

    async fn keyed_all(&self, db: &Database) -> Result<Vec<(String, Vec<u8>)>, sqlx::Error> {
        let mut all = Vec::new();
        for row in sqlx::query("SELECT domain, not_found_url FROM link_domains").fetch_all(db.pool()).await? {
            let domain: String = row.try_get("domain")?;
            all.push((
                edge::domain_key(&domain),
                DomainRecord { not_found_url: row.try_get("not_found_url")? }.encode(),
            ));
        }
        for row in sqlx::query("SELECT * FROM links").fetch_all(db.pool()).await? {
            let link = Link::from_row(&row, &ShortUrls::default())?;
            all.push((link_key(&link.domain, &link.code), link.record().encode()));
        }
        Ok(all)
    }
}
