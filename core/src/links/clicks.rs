//! Click events from the edges, projected into `link_clicks` as they are ingested.
//!
//! The projection runs in the ingest transaction and is keyed by the event id, so a
//! retried batch adds nothing and an acknowledged click is never lost. Each link the batch
//! touched gets its human click count refreshed; a link with a click limit is re-published
//! so the edge learns when it is exhausted. The overshoot is bounded by the clicks that
//! arrive between a click's response and that publish: the event is sent right after the
//! response, and the publisher is woken by the ingest.

use std::collections::BTreeSet;

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

/// Stores the clicks (once per event id) and refreshes the counts of the links they hit.
pub(crate) async fn project(conn: &mut sqlx::AnyConnection, clicks: &[Click<'_>]) -> Result<bool, sqlx::Error> {
    if clicks.is_empty() {
        return Ok(false);
    }
    let text = |data: &Map<String, Value>, field: &str| data.get(field).and_then(Value::as_str).map(str::to_owned);
    let mut links = BTreeSet::new();
    for click in clicks {
        let Some(link) = text(click.data, "link") else { continue };
        sqlx::query(
            "INSERT INTO link_clicks (event_id, link_id, at, domain, country, device, browser, os, referrer_host, bot, visitor)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(click.event_id)
        .bind(&link)
        .bind(click.at)
        .bind(text(click.data, "domain").unwrap_or_default())
        .bind(text(click.data, "country"))
        .bind(text(click.data, "device").unwrap_or_default())
        .bind(text(click.data, "browser").unwrap_or_default())
        .bind(text(click.data, "os").unwrap_or_default())
        .bind(text(click.data, "referrer_host"))
        .bind(i32::from(click.data.get("bot").and_then(Value::as_bool).unwrap_or(false)))
        .bind(text(click.data, "visitor").unwrap_or_default())
        .execute(&mut *conn)
        .await?;
        links.insert(link);
    }
    let mut republish = false;
    for link in links {
        sqlx::query(
            "UPDATE links SET clicks = (SELECT COUNT(*) FROM link_clicks WHERE link_id = $1 AND bot = 0) WHERE id = $1",
        )
        .bind(&link)
        .execute(&mut *conn)
        .await?;
        let limited = sqlx::query("SELECT domain, code FROM links WHERE id = $1 AND max_clicks IS NOT NULL")
            .bind(&link)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = limited {
            let (domain, code): (String, String) = (row.try_get("domain")?, row.try_get("code")?);
            enqueue(conn, &super::link_key(&domain, &code)).await?;
            republish = true;
        }
    }
    Ok(republish)
}
