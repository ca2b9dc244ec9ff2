//! `POST /v1/links/bulk`: up to [`MAX_BULK`] links in one request, a result per item.
//!
//! Items are validated independently, so one bad URL does not sink the rest; every valid
//! item is stored in one transaction (one commit and one publisher wake-up for the whole
//! batch), each with its own audit entry and outbox row. An alias taken earlier in the
//! same batch is a 409 for the later item, exactly as two separate requests would be.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Link;
use super::api::{LinkWriters, NewLink, draft, own_domains, store};
use crate::error::{ApiError, ApiJson, FieldError, Problem};
use crate::keys::Authorized;
use crate::state::AppState;

pub(crate) const MAX_BULK: usize = 1000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkLinks {
    /// 1 to 1000 links, each as `POST /v1/links` takes it.
    #[schema(min_items = 1, max_items = 1000)]
    links: Vec<serde_json::Value>,
}

/// What happened to one item, at the same index as in the request.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BulkItem {
    index: usize,
    /// 201 when created, otherwise the status a single create would have answered.
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<Link>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Problem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BulkResult {
    created: usize,
    failed: usize,
    results: Vec<BulkItem>,
}

/// Create many links; valid items are created even when others fail.
#[utoipa::path(
    post, path = "/v1/links/bulk", tag = "links",
    request_body = BulkLinks,
    security(("admin_key" = ["admin", "links:write"])),
    responses(
        (status = 200, description = "A result per item (each 201, 409 or 422)", body = BulkResult),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 422, description = "Not 1 to 1000 items; nothing was created", body = Problem),
    )
)]
pub(crate) async fn create_links(
    State(state): State<AppState>,
    Authorized(principal, _): Authorized<LinkWriters>,
    ApiJson(bulk): ApiJson<BulkLinks>,
) -> Result<Json<BulkResult>, ApiError> {
    if bulk.links.is_empty() || bulk.links.len() > MAX_BULK {
        return Err(ApiError::validation(vec![FieldError {
            field: "links".into(),
            message: format!("must hold 1 to {MAX_BULK} links, not {}", bulk.links.len()),
        }]));
    }
    let own = own_domains(&state).await?;
    let urls = super::ShortUrls::of(&state.config);
    let default_domain = state.config.default_link_domain();
    let drafts: Vec<_> = bulk
        .links
        .into_iter()
        .map(|item| {
            let new: NewLink = serde_json::from_value(item).map_err(|err| {
                ApiError::validation(vec![FieldError { field: "body".into(), message: err.to_string() }])
            })?;
            draft(new, &own, default_domain)
        })
        .collect();

    let actor = principal.actor();
    let mut code_key = None;
    let mut results = Vec::with_capacity(drafts.len());
    let mut tx = state.db.begin_write().await?;
    for (index, draft) in drafts.into_iter().enumerate() {
        let stored = match draft {
            Ok(draft) => store(&mut tx, &actor, draft, &mut code_key, &urls).await,
            Err(err) => Err(err),
        };
        results.push(match stored {
            Ok(link) => BulkItem { index, status: 201, link: Some(link), error: None },
            // A database failure aborts the whole batch: nothing is acknowledged.
            Err(err) if err.status().is_server_error() => return Err(err),
            Err(err) => BulkItem { index, status: err.status().as_u16(), link: None, error: Some(err.into_problem()) },
        });
    }
    tx.commit().await?;
    state.publisher.wake();
    let created = results.iter().filter(|item| item.link.is_some()).count();
    Ok(Json(BulkResult { created, failed: results.len() - created, results }))
}
