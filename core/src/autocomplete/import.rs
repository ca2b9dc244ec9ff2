//! Bulk terms: `POST …/terms/import` streams NDJSON or CSV of any size into the index;
//! `GET …/terms/export` streams it back out in either format.
//!
//! The body is parsed on a blocking thread as it arrives and written in batches inside
//! one transaction, so an import of millions of terms holds one batch in memory, not the
//! file. By default a single rejected line rolls the whole import back (422, each bad line
//! named with its number): a file is imported whole or not at all. `on_error=skip`
//! imports the good lines and reports the rejected ones.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use super::terms::{TermInput, upsert};
use super::{IndexReaders, IndexWriters, find};
use crate::error::{ApiError, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::publish::enqueue;
use crate::state::AppState;
use crate::time::now_millis;

/// Terms written per statement batch.
const BATCH: usize = 1_000;
/// Rejected lines reported in full; beyond them only counted.
const REPORTED: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    Ndjson,
    Csv,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnError {
    /// Any rejected line: nothing is imported (the default).
    #[default]
    Reject,
    /// Import the good lines, report the rest.
    Skip,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImportParams {
    /// `ndjson` (one term object a line) or `csv` (a header row naming `text` and any of
    /// `id`, `weight`, `payload` (JSON), `language`); default from `Content-Type`.
    format: Option<Format>,
    /// `reject` (default) or `skip`.
    on_error: Option<OnError>,
    /// Delete every term not in this file (the file becomes the index).
    #[serde(default)]
    replace: bool,
}

/// One rejected line.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Rejected {
    /// 1-based; a CSV file's header is line 1.
    line: u64,
    /// A JSON pointer (NDJSON) or column name (CSV), empty for the whole line.
    field: String,
    message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImportReport {
    /// Terms added or replaced.
    imported: u64,
    /// Terms deleted because `replace` was set and the file did not have them.
    deleted: u64,
    /// Lines rejected (only with `on_error=skip`).
    rejected: u64,
    /// The first 1000 rejected lines.
    errors: Vec<Rejected>,
}

enum Parsed {
    Term(TermInput),
    Rejected(Rejected),
    /// The body could not be read (or was not UTF-8 / CSV at all): the import stops.
    Broken(String),
    /// The body passed the import limit: the import stops.
    TooLarge(u64),
}

fn format_of(params: &ImportParams, headers: &HeaderMap) -> Result<Format, ApiError> {
    if let Some(format) = params.format {
        return Ok(format);
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/json-lines" => {
            Ok(Format::Ndjson)
        }
        "text/csv" => Ok(Format::Csv),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send `Content-Type: application/x-ndjson` or `text/csv`, or name `?format=`",
        )),
    }
}

/// A line refused for `errors`: the first names the field; with several, the message
/// names each (`strip` is taken off the pointers: CSV names columns, not pointers).
fn rejected(line: u64, errors: &[FieldError], strip: &str) -> Rejected {
    let field = |e: &FieldError| e.field.strip_prefix(strip).unwrap_or(&e.field).to_owned();
    let message = match errors {
        [only] => only.message.clone(),
        _ => errors.iter().map(|e| format!("{} {}", field(e), e.message)).collect::<Vec<_>>().join("; "),
    };
    Rejected { line, field: errors.first().map(field).unwrap_or_default(), message }
}

/// Reads the body on this (blocking) thread, sending each line's outcome.
fn parse(reader: impl std::io::Read, format: Format, out: &mpsc::Sender<Parsed>, limit: u64) {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, reader.take(limit + 1));
    let send = |parsed: Parsed| out.blocking_send(parsed).is_ok();
    match format {
        Format::Ndjson => {
            let mut line = String::new();
            let mut number = 0u64;
            let mut total = 0u64;
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(n) => total += n as u64,
                    Err(err) => {
                        send(Parsed::Broken(format!("line {}: {err}", number + 1)));
                        return;
                    }
                }
                number += 1;
                if total > limit {
                    send(Parsed::TooLarge(limit));
                    return;
                }
                let text = line.trim();
                if text.is_empty() {
                    continue;
                }
                let parsed = match serde_json::from_str::<Value>(text) {
                    Ok(value) => match TermInput::from_value(&value) {
                        Ok(term) => Parsed::Term(term),
                        Err(errors) => Parsed::Rejected(rejected(number, &errors, "")),
                    },
                    Err(err) => Parsed::Rejected(Rejected {
                        line: number,
                        field: String::new(),
                        message: format!("not JSON: {err}"),
                    }),
                };
                if !send(parsed) {
                    return;
                }
            }
        }
        Format::Csv => parse_csv(reader, out, limit),
    }
}

fn parse_csv(reader: impl std::io::Read, out: &mpsc::Sender<Parsed>, limit: u64) {
    let send = |parsed: Parsed| out.blocking_send(parsed).is_ok();
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let headers = match csv.headers() {
        Ok(headers) => headers.clone(),
        Err(err) => {
            send(Parsed::Broken(format!("the CSV header cannot be read: {err}")));
            return;
        }
    };
    let columns: Vec<String> = headers.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let known = ["id", "text", "weight", "payload", "language"];
    if let Some(unknown) = columns.iter().find(|c| !known.contains(&c.as_str())) {
        send(Parsed::Broken(format!("line 1: unknown column `{unknown}`; columns are {}", known.join(", "))));
        return;
    }
    if !columns.iter().any(|c| c == "text") {
        send(Parsed::Broken("line 1: the header names no `text` column".into()));
        return;
    }
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => return,
            Ok(true) => {}
            Err(err) => {
                let line = err.position().map_or(0, |p| p.line() + 1);
                send(Parsed::Broken(format!("line {line}: {err}")));
                return;
            }
        }
        // The reader does not count the header's line in record positions.
        let line = record.position().map_or(0, |p| p.line() + 1);
        if record.position().is_some_and(|p| p.byte() > limit) {
            send(Parsed::TooLarge(limit));
            return;
        }
        if record.len() != columns.len() {
            let message = format!("has {} fields; the header names {}", record.len(), columns.len());
            if !send(Parsed::Rejected(Rejected { line, field: String::new(), message })) {
                return;
            }
            continue;
        }
        let mut object = serde_json::Map::new();
        let mut bad = None;
        for (column, field) in columns.iter().zip(record.iter()) {
            if field.is_empty() && column != "text" {
                continue;
            }
            let value = match column.as_str() {
                "weight" => match field.trim().parse::<u64>() {
                    Ok(n) => Value::from(n),
                    Err(_) => Value::String(field.to_owned()),
                },
                "payload" => match serde_json::from_str::<Value>(field) {
                    Ok(value) => value,
                    Err(err) => {
                        bad = Some(Rejected { line, field: "payload".into(), message: format!("is not JSON: {err}") });
                        break;
                    }
                },
                _ => Value::String(crate::csv::unguard(field).to_owned()),
            };
            object.insert(column.clone(), value);
        }
        let parsed = match bad {
            Some(rejected) => Parsed::Rejected(rejected),
            None => match TermInput::from_value(&Value::Object(object)) {
                Ok(term) => Parsed::Term(term),
                Err(errors) => Parsed::Rejected(rejected(line, &errors, "/")),
            },
        };
        if !send(parsed) {
            return;
        }
    }
}

/// Import terms from NDJSON or CSV; see the module docs for what a rejected line does.
#[utoipa::path(
    post, path = "/v1/autocomplete/{project}/indexes/{index}/terms/import", tag = "autocomplete",
    params(("project" = String, Path), ("index" = String, Path), ImportParams),
    request_body(content = String, description = "NDJSON or CSV", content_type = "application/x-ndjson"),
    security(("admin_key" = ["admin", "autocomplete:write"])),
    responses(
        (status = 200, body = ImportReport),
        (status = 400, description = "The body is not NDJSON or CSV at all; nothing was imported", body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 413, description = "Over the import size limit; nothing was imported", body = Problem),
        (status = 415, description = "Neither `format` nor a known `Content-Type`", body = Problem),
        (status = 422, description = "Rejected lines (each with its number); nothing was imported", body = Problem),
    )
)]
pub(crate) async fn import_terms(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<IndexWriters>,
    Path((project, name)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<ImportParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ImportReport>, ApiError> {
    let format = format_of(&params, &headers)?;
    let on_error = params.on_error.unwrap_or_default();
    let limit = state.config.import_limit_bytes as u64;
    let mut tx = state.db.begin_write().await?;
    let index = find(&mut tx, &project, &name).await?;
    let now = now_millis().0;

    let (sender, mut receiver) = mpsc::channel::<Parsed>(4 * BATCH);
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    let parser = tokio::task::spawn_blocking(move || parse(reader, format, &sender, limit));

    let mut report = ImportReport { imported: 0, deleted: 0, rejected: 0, errors: Vec::new() };
    // Ids in this batch, so a file naming one id twice keeps its later line.
    let mut batch: HashMap<String, TermInput> = HashMap::with_capacity(BATCH);
    let mut broken = None;
    if params.replace {
        // Marks every term as old; the import rewrites `updated_at` of those it keeps.
        sqlx::query("UPDATE autocomplete_terms SET updated_at = -1 WHERE index_id = $1")
            .bind(&index.id)
            .execute(&mut *tx)
            .await?;
    }
    while let Some(parsed) = receiver.recv().await {
        match parsed {
            Parsed::Term(term) => {
                batch.insert(term.id.clone(), term);
                if batch.len() >= BATCH {
                    let terms: Vec<TermInput> = batch.drain().map(|(_, t)| t).collect();
                    upsert(&mut tx, &index.id, &terms, now).await?;
                    report.imported += terms.len() as u64;
                }
            }
            Parsed::Rejected(rejected) => {
                report.rejected += 1;
                if report.errors.len() < REPORTED {
                    report.errors.push(rejected);
                }
            }
            Parsed::Broken(reason) => {
                let detail = format!("{reason}; nothing was imported");
                broken = Some(ApiError::new(StatusCode::BAD_REQUEST, "unreadable_import", detail));
            }
            Parsed::TooLarge(limit) => {
                let detail = format!("the body exceeds the import limit of {limit} bytes; nothing was imported");
                broken = Some(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", detail));
            }
        }
    }
    parser.await.map_err(ApiError::internal)?;
    if let Some(refusal) = broken {
        return Err(refusal);
    }
    if report.rejected > 0 && on_error == OnError::Reject {
        let errors = report
            .errors
            .iter()
            .map(|r| FieldError {
                field: format!("line {} {}", r.line, r.field).trim_end().to_owned(),
                message: r.message.clone(),
            })
            .collect();
        return Err(ApiError::validation(errors).with_detail(format!(
            "{} line(s) rejected; nothing was imported (`on_error=skip` imports the others)",
            report.rejected
        )));
    }
    let terms: Vec<TermInput> = batch.drain().map(|(_, t)| t).collect();
    upsert(&mut tx, &index.id, &terms, now).await?;
    report.imported += terms.len() as u64;
    if params.replace {
        report.deleted = sqlx::query("DELETE FROM autocomplete_terms WHERE index_id = $1 AND updated_at = -1")
            .bind(&index.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    let summary = serde_json::json!({"imported": report.imported, "deleted": report.deleted,
        "rejected": report.rejected, "format": format, "replace": params.replace});
    crate::audit::record(
        &mut tx,
        &principal.actor(),
        "autocomplete_terms.import",
        "autocomplete_index",
        &index.id,
        None,
        Some(&summary),
    )
    .await?;
    enqueue(&mut tx, &index.dataset()).await?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(Json(report))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportParams {
    /// `ndjson` (default) or `csv`.
    format: Option<Format>,
}

/// Every term, by id, streamed as NDJSON or CSV in the form import takes.
#[utoipa::path(
    get, path = "/v1/autocomplete/{project}/indexes/{index}/terms/export", tag = "autocomplete",
    params(("project" = String, Path), ("index" = String, Path), ExportParams),
    security(("admin_key" = ["admin", "read", "autocomplete:write"])),
    responses(
        (status = 200, description = "NDJSON or CSV", content_type = "application/x-ndjson", body = String),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, description = "Not a project or index name", body = Problem),
    )
)]
pub(crate) async fn export_terms(
    State(state): State<AppState>,
    _: Authorized<IndexReaders>,
    Path((project, name)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<ExportParams>,
) -> Result<Response, ApiError> {
    let format = params.format.unwrap_or(Format::Ndjson);
    let index = {
        let mut conn = state.db.pool().acquire().await?;
        find(&mut conn, &project, &name).await?
    };
    let db = state.db.clone();
    // Pages by id, so the export streams in bounded memory and never holds a transaction.
    let pages = futures_util::stream::try_unfold((String::new(), true, false), move |(after, first, done)| {
        let db = db.clone();
        let index_id = index.id.clone();
        async move {
            if done {
                return Ok::<_, sqlx::Error>(None);
            }
            let rows = sqlx::query(
                "SELECT term_id, text, weight, payload, language FROM autocomplete_terms
                 WHERE index_id = $1 AND term_id > $2 ORDER BY term_id LIMIT 5000",
            )
            .bind(&index_id)
            .bind(&after)
            .fetch_all(db.pool())
            .await?;
            let mut out = String::new();
            if first && format == Format::Csv {
                out.push_str("id,text,weight,payload,language\r\n");
            }
            let mut last = after;
            for row in &rows {
                let id: String = row.try_get("term_id")?;
                let text: String = row.try_get("text")?;
                let weight: i64 = row.try_get("weight")?;
                let payload: Option<String> = row.try_get("payload")?;
                let language: Option<String> = row.try_get("language")?;
                match format {
                    Format::Ndjson => {
                        let mut object = serde_json::json!({"id": id, "text": text, "weight": weight});
                        if let Some(payload) = &payload {
                            object["payload"] = serde_json::from_str(payload).unwrap_or(Value::Null);
                        }
                        if let Some(language) = &language {
                            object["language"] = Value::String(language.clone());
                        }
                        out.push_str(&object.to_string());
                        out.push('\n');
                    }
                    Format::Csv => {
                        let weight = weight.to_string();
                        let fields = [
                            id.as_str(),
                            &text,
                            &weight,
                            payload.as_deref().unwrap_or(""),
                            language.as_deref().unwrap_or(""),
                        ];
                        crate::csv::record(&mut out, fields);
                    }
                }
                last = id;
            }
            let done = rows.len() < 5000;
            Ok(Some((axum::body::Bytes::from(out), (last, false, done))))
        }
    });
    let content_type = match format {
        Format::Ndjson => "application/x-ndjson",
        Format::Csv => "text/csv; charset=utf-8",
    };
    let extension = if format == Format::Csv { "csv" } else { "ndjson" };
    let disposition = format!("attachment; filename=\"{project}-{name}-terms.{extension}\"");
    Ok((
        [(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        Body::from_stream(pages),
    )
        .into_response())
}
