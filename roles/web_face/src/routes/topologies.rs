//! Topology routes: list, apply a whole document, read it (JSON, TOML, Mermaid), delete.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use protocol::store::Change;
use protocol::{flowchart, ErrorCode, TopologyDoc};
use serde::Deserialize;
use utoipa::IntoParams;

use protocol::api::{Applied, TopologyList, TopologySummary};

use super::{etag, if_match, require_slug, write_access, Path, Query};
use crate::auth::Caller;
use crate::body::{self, Format};
use crate::error::{ApiResult, Failure};
use crate::state::AppState;

/// Query of `PUT /v1/topologies/{t}`.
#[derive(Deserialize, IntoParams)]
pub struct PutQuery {
    /// Return the plan only; change nothing.
    #[serde(default)]
    dry_run: bool,
    /// Drop the running state of every node in the document.
    #[serde(default)]
    reset_state: bool,
}

/// Lists the topologies the caller may see, with node count and rev.
#[utoipa::path(get, path = "/v1/topologies", tag = "topologies",
    responses((status = 200, body = TopologyList)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<TopologyList>> {
    let ids: Vec<String> = layout::list_topologies(&state.0.client)
        .await?
        .into_iter()
        .filter(|id| caller.grants.reads(id))
        .collect();
    let listed: Vec<&str> = ids.iter().map(String::as_str).collect();
    let summaries = layout::read_topology_summaries(&state.0.client, &listed).await?;
    let topologies = ids
        .into_iter()
        .zip(summaries)
        .filter_map(|(id, summary)| {
            let summary = summary?;
            Some(TopologySummary {
                id,
                nodes: summary.nodes,
                rev: summary.rev,
            })
        })
        .collect();
    Ok(Json(TopologyList { topologies }))
}

/// Applies a whole topology document: creates, updates and deletes nodes to match.
#[utoipa::path(put, path = "/v1/topologies/{t}", tag = "topologies",
    params(("t" = String, Path, description = "topology id"), PutQuery,
           ("If-Match" = Option<String>, Header, description = "the rev the change applies to")),
    request_body(content = Object, description = "the topology document, JSON or TOML (Content-Type: application/toml)",
                 content_type = "application/json"),
    responses((status = 201, body = Applied, description = "created"), (status = 200, body = Applied, description = "updated, or the plan of a dry run"),
              (status = 412, description = "rev_mismatch"), (status = 422, description = "the document is not valid")))]
pub async fn put(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(topology): Path<String>,
    Query(query): Query<PutQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    require_slug(&topology, "topology")?;
    write_access(&caller, &topology)?;
    let format = body::format_of(&headers, &[Format::Json, Format::Toml])?;
    let bytes = body::read(body, &state.0.limits).await?;
    let doc = match format {
        Format::Toml => {
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                Failure::new(
                    ErrorCode::MalformedDocument,
                    "the TOML document is not UTF-8",
                )
            })?;
            TopologyDoc::from_toml(text)
        }
        _ => {
            // Depth first, then the document's own reading, which names what is wrong. An
            // array would be read as a document by position; only an object is one.
            let value = body::json::<serde_json::Value>(&bytes, &state.0.limits, "the document")?;
            if !value.is_object() {
                return Err(Failure::new(
                    ErrorCode::MalformedDocument,
                    "the document must be a JSON object",
                ));
            }
            TopologyDoc::from_json(std::str::from_utf8(&bytes).unwrap_or_default())
        }
    }
    .map_err(|error| Failure::new(error.code(), error.message()))?;
    let applied = state
        .change(
            &topology,
            if_match(&headers)?,
            Change::Put {
                doc,
                dry_run: query.dry_run,
                reset_state: query.reset_state,
            },
        )
        .await?;
    let status = if applied.created_topology && !query.dry_run {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let rev = applied.rev;
    Ok((status, etag(rev), Json(Applied::new(&topology, applied))).into_response())
}

/// The topology document; `Accept: application/toml` gives TOML. `ETag` carries the rev.
#[utoipa::path(get, path = "/v1/topologies/{t}", tag = "topologies",
    params(("t" = String, Path, description = "topology id")),
    responses((status = 200, description = "the document, JSON or TOML", body = Object), (status = 404, description = "not_found")))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(topology): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let view = state.topology(&caller, &topology).await?;
    let (doc, rev) = (&view.doc, view.rev);
    let wants_toml = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("application/toml"));
    if wants_toml {
        let text = doc.to_toml().map_err(|error| {
            Failure::from_store(protocol::store::ApiError::new(
                error.code(),
                error.message(),
            ))
        })?;
        return Ok((
            etag(rev),
            [(header::CONTENT_TYPE, "application/toml")],
            text,
        )
            .into_response());
    }
    Ok((etag(rev), Json(doc)).into_response())
}

/// Deletes the topology, its nodes, their state and latched outputs (history stays).
#[utoipa::path(delete, path = "/v1/topologies/{t}", tag = "topologies",
    params(("t" = String, Path, description = "topology id"),
           ("If-Match" = Option<String>, Header, description = "the rev the change applies to")),
    responses((status = 204, description = "deleted"), (status = 404, description = "not_found")))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(topology): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    write_access(&caller, &topology)?;
    state
        .change(&topology, if_match(&headers)?, Change::Delete)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A Mermaid `flowchart LR` of the topology.
#[utoipa::path(get, path = "/v1/topologies/{t}/graph.mmd", tag = "topologies",
    params(("t" = String, Path, description = "topology id")),
    responses((status = 200, description = "Mermaid text", content_type = "text/vnd.mermaid", body = String)))]
pub async fn graph(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(topology): Path<String>,
) -> ApiResult<Response> {
    let view = state.topology(&caller, &topology).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/vnd.mermaid; charset=utf-8")],
        flowchart(view.nodes()?),
    )
        .into_response())
}
