//! Click events from the edges, projected into `link_clicks` as they are ingested.
//!
//! The projection runs in the ingest transaction and is keyed by the event id, so a
//! retried batch adds nothing and an acknowledged click is never lost. Each link the batch
//! touched gets the redirects it newly stored added to its counts (an increment, not a
//! recount, so ingest cost does not grow with a link's history): every redirect, bots
//! included, toward its click limit, and the human ones toward the `clicks` analytics
//! show. A link with a click limit is re-published
//! so the edge learns when it is exhausted. The overshoot is bounded by the clicks that
//! arrive between a click's response and that publish: the event is sent right after the
//! response, and the publisher is woken by the ingest.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sqlx::Row;

use crate::error::FieldError;
use crate::publish::enqueue;

pub(crate) const KIND: &str = "link.click";

/// One click as the edge reports it.
pub(crate) struct Click<'a> {
    pub(crate) event_id: &'a str,
    pub(crate) at: i64,
    pub(crate) data: &'a Map<String, Value>,
}

/// Checks the fields of a `link.click` event; `index` locates it in the batch.
pub(crate) fn check(index: usize, data: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for field in ["link", "domain", "device", "browser", "os", "visitor"] {
        if !data.get(field).is_some_and(Value::is_string) {
            errors.push(FieldError {
                field: format!("/events/{index}/data/{field}"),
                message: "a string is required for link.click".into(),
            });
        }
    }
    if !data.get("bot").is_some_and(Value::is_boolean) {
        errors.push(FieldError {
            field: format!("/events/{index}/data/bot"),
            message: "a boolean is required for link.click".into(),
        });
    }
    errors
}

/// Columns of a `link_clicks` row, for building multi-row inserts.
const COLUMNS: usize = 11;
/// Rows per insert statement: well inside both dialects' bound-parameter limits.
const CHUNK: usize = 500;

/// Stores the clicks (once per event id) and adds the newly stored human clicks to their
/// links' counts; returns whether a link with a click limit needs re-publishing.
pub(crate) async fn project(conn: &mut sqlx::AnyConnection, clicks: &[Click<'_>]) -> Result<bool, sqlx::Error> {
    let text = |data: &Map<String, Value>, field: &str| data.get(field).and_then(Value::as_str).map(str::to_owned);
    // (Redirects, human clicks) per link among the rows this call actually inserted
    // (RETURNING leaves out the retried ones), so a count is never bumped twice for one event.
    let mut added: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for chunk in clicks.chunks(CHUNK) {
        let rows = (0..chunk.len())
            .map(|i| {
                let params = (1..=COLUMNS).map(|c| format!("${}", i * COLUMNS + c)).collect::<Vec<_>>();
                format!("({})", params.join(", "))
            })
            .collect::<Vec<_>>();
        let sql = format!(
            "INSERT INTO link_clicks (event_id, link_id, at, domain, country, device, browser, os, referrer_host, bot, visitor)
             VALUES {} ON CONFLICT (event_id) DO NOTHING RETURNING link_id, bot",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for click in chunk {
            query = query
                .bind(click.event_id)
                .bind(text(click.data, "link").unwrap_or_default())
                .bind(click.at)
                .bind(text(click.data, "domain").unwrap_or_default())
                .bind(text(click.data, "country"))
                .bind(text(click.data, "device").unwrap_or_default())
                .bind(text(click.data, "browser").unwrap_or_default())
                .bind(text(click.data, "os").unwrap_or_default())
                .bind(text(click.data, "referrer_host"))
                .bind(i32::from(click.data.get("bot").and_then(Value::as_bool).unwrap_or(false)))
                .bind(text(click.data, "visitor").unwrap_or_default());
        }
        for row in query.fetch_all(&mut *conn).await? {
            let counts = added.entry(row.try_get("link_id")?).or_default();
            counts.0 += 1;
            counts.1 += i64::from(row.try_get::<i32, _>("bot")? == 0);
        }
    }
    let mut republish = false;
    for (link, (redirects, humans)) in added {
        let limited = sqlx::query(
            "UPDATE links SET redirects = redirects + $1, clicks = clicks + $2 WHERE id = $3
             RETURNING domain, code, max_clicks",
        )
        .bind(redirects)
        .bind(humans)
        .bind(&link)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = limited
            && row.try_get::<Option<i64>, _>("max_clicks")?.is_some()
        {
            let (domain, code): (String, String) = (row.try_get("domain")?, row.try_get("code")?);
            enqueue(conn, &super::link_key(&domain, &code)).await?;
            republish = true;
        }
    }
    Ok(republish)
}
