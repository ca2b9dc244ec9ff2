//! Click analytics: `GET /v1/links/analytics` (all links) and `/v1/links/{id}/analytics`.
//!
//! Figures come from `link_clicks`, the typed projection of edge click events. Human clicks
//! and bot clicks (known crawlers, link-preview fetchers, HEAD requests) are kept apart:
//! every figure except `bot_clicks` excludes bots. Unique visitors count distinct visitor
//! hashes; the edge salts them per UTC day, so a visitor counts once per day they visit.
//!
//! The timeline's buckets are calendar hours, days or ISO weeks in the requested time
//! zone, computed here (DST days are 23 or 25 hours long) and handed to the database as a
//! VALUES list, so counting stays in SQL on both dialects.

use axum::Json;
use axum::extract::{Path, State};
use jiff::tz::TimeZone;
use jiff::{RoundMode, Timestamp, ToSpan, Unit, Zoned, ZonedRound};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::api::LinkReaders;
use crate::error::{ApiError, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::state::AppState;
use crate::time::{Millis, now_millis};

/// Most buckets one timeline may have (e.g. 41 days by the hour).
const MAX_BUCKETS: usize = 1000;
/// Entries per breakdown.
const TOP: i64 = 50;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Interval {
    Hour,
    #[default]
    Day,
    Week,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AnalyticsParams {
    /// Start (RFC 3339); 7 days before `to` by default.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<Millis>,
    /// End, exclusive (RFC 3339); now by default.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<Millis>,
    /// IANA time zone of the timeline's buckets, e.g. `Europe/Berlin`; UTC by default.
    tz: Option<String>,
    /// `hour`, `day` (default) or `week` (ISO weeks, starting Monday).
    interval: Option<Interval>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Analytics {
    /// The link, or absent for all links.
    #[serde(skip_serializing_if = "Option::is_none")]
    link_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    from: Millis,
    #[schema(value_type = String, format = DateTime)]
    to: Millis,
    tz: String,
    interval: Interval,
    /// Human clicks.
    clicks: i64,
    /// Distinct visitors among human clicks.
    uniques: i64,
    /// Clicks from bots, link-preview fetchers and HEAD requests; in no other figure.
    bot_clicks: i64,
    timeline: Vec<Bucket>,
    countries: Vec<Share>,
    devices: Vec<Share>,
    browsers: Vec<Share>,
    os: Vec<Share>,
    referrers: Vec<Share>,
    /// Top links (only for all links).
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<Vec<Share>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Bucket {
    /// Bucket start in the requested time zone, with its offset.
    start: String,
    clicks: i64,
    uniques: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Share {
    /// The country code, device, browser, OS, referrer host or link id; `null` when
    /// unknown (no country from the platform, no referrer: a direct visit).
    value: Option<String>,
    clicks: i64,
    uniques: i64,
}

/// The zoned start of each bucket covering `[from, to)`, plus the end of the last.
pub(crate) fn bucket_starts(
    from: Timestamp,
    to: Timestamp,
    tz: &TimeZone,
    interval: Interval,
) -> Result<Vec<Zoned>, String> {
    let first = from.to_zoned(tz.clone());
    let mut start = match interval {
        Interval::Hour => {
            first.round(ZonedRound::new().smallest(Unit::Hour).mode(RoundMode::Trunc)).map_err(|err| err.to_string())?
        }
        Interval::Day => first.start_of_day().map_err(|err| err.to_string())?,
        Interval::Week => {
            let day = first.start_of_day().map_err(|err| err.to_string())?;
            let back = i64::from(day.weekday().to_monday_zero_offset());
            day.checked_sub(back.days()).and_then(|d| d.start_of_day()).map_err(|err| err.to_string())?
        }
    };
    let mut starts = vec![start.clone()];
    while start.timestamp() < to {
        start = match interval {
            Interval::Hour => start.checked_add(1.hour()),
            Interval::Day => start.checked_add(1.day()).and_then(|d| d.start_of_day()),
            Interval::Week => start.checked_add(1.week()).and_then(|d| d.start_of_day()),
        }
        .map_err(|err| err.to_string())?;
        starts.push(start.clone());
        if starts.len() > MAX_BUCKETS + 1 {
            return Err(format!("more than {MAX_BUCKETS} buckets; use a longer interval or a shorter range"));
        }
    }
    Ok(starts)
}

/// Analytics for all links.
#[utoipa::path(
    get, path = "/v1/links/analytics", tag = "links",
    params(AnalyticsParams),
    security(("admin_key" = ["admin", "read", "links:write"])),
    responses(
        (status = 200, description = "Figures for every link", body = Analytics),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 422, description = "Bad range, time zone or interval", body = Problem),
    )
)]
pub(crate) async fn all_links(
    State(state): State<AppState>,
    _: Authorized<LinkReaders>,
    ApiQuery(params): ApiQuery<AnalyticsParams>,
) -> Result<Json<Analytics>, ApiError> {
    Ok(Json(analytics(&state, None, params).await?))
}

/// Analytics for one link.
#[utoipa::path(
    get, path = "/v1/links/{id}/analytics", tag = "links",
    params(("id" = String, Path, description = "Link id (`lnk_…`)"), AnalyticsParams),
    security(("admin_key" = ["admin", "read", "links:write"])),
    responses(
        (status = 200, description = "Figures for the link", body = Analytics),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such link", body = Problem),
        (status = 422, description = "Bad range, time zone or interval", body = Problem),
    )
)]
pub(crate) async fn one_link(
    State(state): State<AppState>,
    _: Authorized<LinkReaders>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<AnalyticsParams>,
) -> Result<Json<Analytics>, ApiError> {
    let found = sqlx::query("SELECT 1 FROM links WHERE id = $1").bind(&id).fetch_optional(state.db.pool()).await?;
    if found.is_none() {
        return Err(ApiError::not_found(format!("no link `{id}`")));
    }
    Ok(Json(analytics(&state, Some(id), params).await?))
}

async fn analytics(state: &AppState, link_id: Option<String>, params: AnalyticsParams) -> Result<Analytics, ApiError> {
    let field = |field: &str, message: String| ApiError::validation(vec![FieldError { field: field.into(), message }]);
    let to = params.to.unwrap_or_else(now_millis);
    let from = params.from.unwrap_or(Millis(to.0 - 7 * 86_400_000));
    if from >= to {
        return Err(field("from", "must be before `to`".into()));
    }
    let tz_name = params.tz.unwrap_or_else(|| "UTC".into());
    let tz = TimeZone::get(&tz_name).map_err(|_| field("tz", format!("`{tz_name}` is not an IANA time zone")))?;
    let interval = params.interval.unwrap_or_default();
    let starts = bucket_starts(from.to_timestamp(), to.to_timestamp(), &tz, interval)
        .map_err(|message| field("interval", message))?;

    // $1 from, $2 to, $3 the link ('' for all); bucket bounds follow.
    let link = link_id.clone().unwrap_or_default();
    let scope = "at >= $1 AND at < $2 AND ($3 = '' OR link_id = $3)";
    let pool = state.db.pool();
    let totals = sqlx::query(&format!(
        "SELECT COALESCE(SUM(CASE WHEN bot = 0 THEN 1 ELSE 0 END), 0) AS clicks,
                COUNT(DISTINCT CASE WHEN bot = 0 THEN visitor END) AS uniques,
                COALESCE(SUM(bot), 0) AS bots
         FROM link_clicks WHERE {scope}"
    ))
    .bind(from.0)
    .bind(to.0)
    .bind(&link)
    .fetch_one(pool)
    .await?;

    let values = (0..starts.len() - 1).map(|i| format!("(${}, ${})", 4 + 2 * i, 5 + 2 * i)).collect::<Vec<_>>();
    let timeline_sql = format!(
        "WITH buckets (b_start, b_end) AS (VALUES {})
         SELECT b.b_start AS b_start, COUNT(c.event_id) AS clicks, COUNT(DISTINCT c.visitor) AS uniques
         FROM buckets b LEFT JOIN link_clicks c
           ON c.at >= b.b_start AND c.at < b.b_end AND c.bot = 0 AND c.at >= $1 AND c.at < $2
              AND ($3 = '' OR c.link_id = $3)
         GROUP BY b.b_start ORDER BY b.b_start",
        values.join(", ")
    );
    let mut query = sqlx::query(&timeline_sql).bind(from.0).bind(to.0).bind(&link);
    for pair in starts.windows(2) {
        query = query.bind(pair[0].timestamp().as_millisecond()).bind(pair[1].timestamp().as_millisecond());
    }
    let counted = query.fetch_all(pool).await?;
    let mut timeline = Vec::with_capacity(counted.len());
    for (row, start) in counted.iter().zip(&starts) {
        timeline.push(Bucket {
            start: start.timestamp().to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            clicks: row.try_get("clicks")?,
            uniques: row.try_get("uniques")?,
        });
    }

    let breakdown = |column: &'static str| {
        let link = link.clone();
        async move {
            let rows = sqlx::query(&format!(
                "SELECT {column} AS value, COUNT(*) AS clicks, COUNT(DISTINCT visitor) AS uniques
                 FROM link_clicks WHERE bot = 0 AND {scope}
                 GROUP BY {column} ORDER BY clicks DESC, value LIMIT {TOP}"
            ))
            .bind(from.0)
            .bind(to.0)
            .bind(&link)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    let value: Option<String> = row.try_get("value")?;
                    Ok(Share {
                        value: value.filter(|v| !v.is_empty()),
                        clicks: row.try_get("clicks")?,
                        uniques: row.try_get("uniques")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
        }
    };
    Ok(Analytics {
        clicks: totals.try_get("clicks")?,
        uniques: totals.try_get("uniques")?,
        bot_clicks: totals.try_get("bots")?,
        countries: breakdown("country").await?,
        devices: breakdown("device").await?,
        browsers: breakdown("browser").await?,
        os: breakdown("os").await?,
        referrers: breakdown("referrer_host").await?,
        links: match link_id {
            None => Some(breakdown("link_id").await?),
            Some(_) => None,
        },
        link_id,
        from,
        to,
        tz: tz_name,
        interval,
        timeline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn shown(starts: &[Zoned]) -> Vec<String> {
        starts.iter().map(|z| z.strftime("%Y-%m-%dT%H:%M%:z").to_string()).collect()
    }

    #[test]
    fn days_follow_the_zone_across_a_dst_change() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // Summer time ended on 2026-10-25 in Berlin: that day is 25 hours long.
        let starts =
            bucket_starts(ts("2026-10-24T10:00:00Z"), ts("2026-10-26T10:00:00Z"), &berlin, Interval::Day).unwrap();
        assert_eq!(
            shown(&starts),
            ["2026-10-24T00:00+02:00", "2026-10-25T00:00+02:00", "2026-10-26T00:00+01:00", "2026-10-27T00:00+01:00"]
        );
        let day = starts[2].timestamp().as_second() - starts[1].timestamp().as_second();
        assert_eq!(day, 25 * 3600);
    }

    #[test]
    fn hours_and_weeks_align_to_local_time() {
        let kolkata = TimeZone::get("Asia/Kolkata").unwrap();
        let starts =
            bucket_starts(ts("2026-11-23T10:10:00Z"), ts("2026-11-23T11:00:00Z"), &kolkata, Interval::Hour).unwrap();
        // 10:10Z is 15:40 in India (+05:30); the local hour starts at 15:00.
        assert_eq!(shown(&starts)[0], "2026-11-23T15:00+05:30");
        let utc = TimeZone::UTC;
        let weeks =
            bucket_starts(ts("2026-11-25T12:00:00Z"), ts("2026-12-01T00:00:00Z"), &utc, Interval::Week).unwrap();
        // 2026-11-25 is a Wednesday; ISO weeks start on Monday.
        assert_eq!(shown(&weeks), ["2026-11-23T00:00+00:00", "2026-11-30T00:00+00:00", "2026-12-07T00:00+00:00"]);
    }

    #[test]
    fn too_many_buckets_are_refused() {
        let utc = TimeZone::UTC;
        assert!(bucket_starts(ts("2020-01-01T00:00:00Z"), ts("2026-01-01T00:00:00Z"), &utc, Interval::Hour).is_err());
        assert!(bucket_starts(ts("2020-01-01T00:00:00Z"), ts("2026-01-01T00:00:00Z"), &utc, Interval::Week).is_ok());
    }
}
