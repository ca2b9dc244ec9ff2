//! CSV exports: `GET /v1/links/export` (links, with the list's filters) and
//! `GET /v1/links/clicks/export` (click rows, bots flagged, optionally for one link).
//!
//! Both page through the database with keyset cursors and stream, so a large export holds
//! one page of rows in memory at a time.

use axum::extract::State;
use axum::response::Response;
use futures_util::stream;
use serde::Deserialize;
use sqlx::Row;
use utoipa::IntoParams;

use super::Link;
use super::api::{LinkFilter, LinkReaders, filtered};
use crate::csv;
use crate::error::{ApiError, ApiQuery, Problem};
use crate::keys::Authorized;
use crate::state::AppState;
use crate::time::Millis;

const PAGE: i64 = 1000;

const LINK_HEADER: &str = "id,domain,code,short_url,url,status,expires_at,expired_url,max_clicks,has_password,tags,\
utm_source,utm_medium,utm_campaign,utm_term,utm_content,ios_url,android_url,desktop_url,country_urls,forward_query,\
clicks,created_at,updated_at";

fn link_record(out: &mut String, link: &Link) {
    let opt = |value: &Option<String>| value.clone().unwrap_or_default();
    let countries =
        link.country_urls.iter().map(|(country, url)| format!("{country}={url}")).collect::<Vec<_>>().join(" ");
    let fields = [
        link.id.clone(),
        link.domain.clone(),
        link.code.clone(),
        link.short_url.clone(),
        link.url.clone(),
        link.status.to_string(),
        link.expires_at.map(|at| at.to_string()).unwrap_or_default(),
        opt(&link.expired_url),
        link.max_clicks.map(|max| max.to_string()).unwrap_or_default(),
        link.has_password.to_string(),
        link.tags.join(";"),
        opt(&link.utm.source),
        opt(&link.utm.medium),
        opt(&link.utm.campaign),
        opt(&link.utm.term),
        opt(&link.utm.content),
        opt(&link.ios_url),
        opt(&link.android_url),
        opt(&link.desktop_url),
        countries,
        link.forward_query.to_string(),
        link.clicks.to_string(),
        link.created_at.to_string(),
        link.updated_at.to_string(),
    ];
    csv::record(out, fields.iter().map(String::as_str));
}

/// Export links as CSV (same filters as the list; newest first).
#[utoipa::path(
    get, path = "/v1/links/export", tag = "links",
    params(LinkFilter),
    security(("admin_key" = ["admin", "read", "links:write"])),
    responses(
        (status = 200, description = "CSV, one link per row", content_type = "text/csv"),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
    )
)]
pub(crate) async fn export_links(
    State(state): State<AppState>,
    _: Authorized<LinkReaders>,
    ApiQuery(filter): ApiQuery<LinkFilter>,
) -> Result<Response, ApiError> {
    // `None` once the last page has gone out.
    let pages = stream::try_unfold(Some(String::new()), move |after| {
        let state = state.clone();
        let filter = filter.clone();
        async move {
            let Some(after) = after else { return Ok(None) };
            let urls = super::ShortUrls::of(&state.config);
            let links = filtered(state.db.pool(), &filter, &after, PAGE, &urls).await?;
            let mut out = String::new();
            for link in &links {
                link_record(&mut out, link);
            }
            let next = (links.len() as i64 == PAGE).then(|| links.last().map(|l| l.id.clone())).flatten();
            Ok::<_, ApiError>(if links.is_empty() { None } else { Some((out, next)) })
        }
    });
    Ok(csv::download("links.csv", LINK_HEADER, pages))
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ClickFilter {
    /// Only clicks on this link.
    link_id: Option<String>,
    /// At or after (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<Millis>,
    /// Before (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<Millis>,
}

const CLICK_HEADER: &str = "event_id,at,link_id,domain,country,device,browser,os,referrer_host,bot,visitor";

/// Export clicks as CSV, oldest first, bots included and flagged.
#[utoipa::path(
    get, path = "/v1/links/clicks/export", tag = "links",
    params(ClickFilter),
    security(("admin_key" = ["admin", "read", "links:write"])),
    responses(
        (status = 200, description = "CSV, one click per row", content_type = "text/csv"),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
    )
)]
pub(crate) async fn export_clicks(
    State(state): State<AppState>,
    _: Authorized<LinkReaders>,
    ApiQuery(filter): ApiQuery<ClickFilter>,
) -> Result<Response, ApiError> {
    let from = filter.from.map_or(i64::MIN, |at| at.0);
    let to = filter.to.map_or(i64::MAX, |at| at.0);
    let link = filter.link_id.unwrap_or_default();
    // The keyset: (at, event_id) of the last row sent.
    let pages = stream::try_unfold(Some((from, String::new())), move |position| {
        let state = state.clone();
        let link = link.clone();
        async move {
            let Some((at, event_id)) = position else { return Ok(None) };
            let rows = sqlx::query(&format!(
                "SELECT * FROM link_clicks
                 WHERE (at > $1 OR (at = $1 AND event_id > $2)) AND at < $3 AND ($4 = '' OR link_id = $4)
                 ORDER BY at, event_id LIMIT {PAGE}"
            ))
            .bind(at)
            .bind(&event_id)
            .bind(to)
            .bind(&link)
            .fetch_all(state.db.pool())
            .await?;
            let mut out = String::new();
            let mut last = None;
            for row in &rows {
                let at: i64 = row.try_get("at")?;
                let event_id: String = row.try_get("event_id")?;
                let text = |name: &str| row.try_get::<Option<String>, _>(name).map(Option::unwrap_or_default);
                let fields = [
                    event_id.clone(),
                    Millis(at).to_string(),
                    text("link_id")?,
                    text("domain")?,
                    text("country")?,
                    text("device")?,
                    text("browser")?,
                    text("os")?,
                    text("referrer_host")?,
                    (row.try_get::<i32, _>("bot")? != 0).to_string(),
                    text("visitor")?,
                ];
                csv::record(&mut out, fields.iter().map(String::as_str));
                last = Some((at, event_id));
            }
            let next = if rows.len() as i64 == PAGE { last } else { None };
            Ok::<_, ApiError>(if rows.is_empty() { None } else { Some((out, next)) })
        }
    });
    Ok(csv::download("clicks.csv", CLICK_HEADER, pages))
}
