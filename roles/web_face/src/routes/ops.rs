//! The function registry, and the routes for operators: liveness, readiness, metrics and the
//! OpenAPI document.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::api::FunctionList;
use serde_json::json;
use utoipa::OpenApi as _;

use crate::error::ApiResult;
use crate::state::AppState;

/// The function registry: every function a running processor (or the built-ins) offers.
#[utoipa::path(get, path = "/v1/functions", tag = "functions",
    responses((status = 200, body = FunctionList)))]
pub async fn functions(State(state): State<AppState>) -> ApiResult<Json<FunctionList>> {
    let mut functions = layout::read_functions(&state.0.client).await?;
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(FunctionList { functions }))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Object)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: Redis answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Object), (status = 503, description = "Redis is unreachable")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    runtime::readyz(&state.0.client).await
}

/// Prometheus text. Besides the API's own counters it reports the output topic's fill level
/// and the archive's backlog (entries not yet archived), read from Redis at each scrape.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let topic = layout::output_topic(&state.0.client, state.0.settings.partitions);
    match topic.stats().await {
        Ok(shards) => {
            let entries: u64 = shards.iter().map(|shard| shard.len).sum();
            let bound: u64 = shards.iter().map(|shard| shard.bound).sum();
            let backlog: u64 = shards
                .iter()
                .map(|shard| shard.backlog(layout::ARCHIVE_GROUP))
                .sum();
            metrics::gauge!("gorgon_output_topic_entries").set(entries as f64);
            metrics::gauge!("gorgon_output_topic_bound").set(bound as f64);
            metrics::gauge!("gorgon_archive_backlog_entries").set(backlog as f64);
        }
        Err(error) => tracing::debug!(%error, "could not read the output topic's stats"),
    }
    let text = state
        .0
        .prometheus
        .as_ref()
        .map(|handle| handle.render())
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The OpenAPI 3 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3", body = Object)))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(super::ApiDoc::openapi())
}
