//! `/healthz` says the process is alive; `/readyz` says its dependencies answer, so a load
//! balancer only sends traffic to a replica that can serve it.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    status: &'static str,
    version: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Readiness {
    status: &'static str,
    /// `ok` or what went wrong, per dependency.
    database: String,
    cache: String,
}

/// Readiness: the database and the cache both answer within 2 s.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, body = Readiness),
        (status = 503, description = "A dependency failed; `code` is `not_ready` and `detail` names it \
            (`database: unavailable`); the cause is logged, never answered", body = crate::error::Problem),
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    // Both at once, so a hung dependency costs one timeout, not two.
    let (database, cache) = tokio::join!(
        check(async { state.db.ping().await.map_err(|e| e.to_string()) }),
        check(async { state.cache.ping().await.map_err(|e| e.to_string()) }),
    );
    match (&database, &cache) {
        (Ok(()), Ok(())) => Json(Readiness { status: "ok", database: "ok".into(), cache: "ok".into() }).into_response(),
        _ => {
            // The causes go to the log only: driver errors can carry host names, user
            // names and configuration that an unauthenticated caller must not see.
            let failed: Vec<&str> = [("database", &database), ("cache", &cache)]
                .into_iter()
                .filter_map(|(name, result)| {
                    let cause = result.as_ref().err()?;
                    tracing::warn!(dependency = name, cause = %cause, "not ready");
                    Some(name)
                })
                .collect();
            let detail = failed.iter().map(|name| format!("{name}: unavailable")).collect::<Vec<_>>().join("; ");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", detail).into_response()
        }
    }
}

async fn check(probe: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    }
}
