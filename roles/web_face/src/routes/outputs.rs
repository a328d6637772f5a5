//! The outputs one inject caused, across its topology: the way a message took through the
//! graph, read from the replay buffers in Redis when they tell it whole, else joined with the
//! archive in MongoDB.

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use protocol::caused::{self, CausedQuery};
use protocol::history::{ArchiveQuery, HistoryPage, HistorySource, MAX_HISTORY_LIMIT};

use protocol::api::{HistoryView, OutputsParams};

use super::nodes::{encode, invalid_query, page_answer};
use super::{Path, Query};
use crate::auth::Caller;
use crate::error::{ApiResult, Failure};
use crate::state::AppState;

/// The longest `input_id` or `after` accepted (ids the API makes are 32 characters).
const MAX_ID_LEN: usize = 128;

/// The outputs one inject caused in the topology, every node's, oldest first (by `msg_id`, a
/// UUIDv7: the order they were made in, to the millisecond).
#[utoipa::path(get, path = "/v1/topologies/{t}/outputs", tag = "nodes",
    params(("t" = String, Path, description = "topology id"), OutputsParams),
    responses((status = 200, body = HistoryView, headers(("gorgon-history-source" = String,
                description = "where the page was read: redis, archive or redis+archive"))),
              (status = 400, description = "invalid_query"),
              (status = 404, description = "not_found"), (status = 503, description = "the archive is unreachable")))]
pub async fn caused(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(topology): Path<String>,
    Query(params): Query<OutputsParams>,
) -> ApiResult<Response> {
    // Outputs outlive nodes and topologies: only the token's scope is checked.
    if protocol::validate_slug(&topology).is_err() || !caller.grants.reads(&topology) {
        return Err(Failure::no_topology(&topology));
    }
    let input_id = match params.input_id {
        Some(id) if !id.is_empty() && id.len() <= MAX_ID_LEN => id,
        _ => {
            return Err(invalid_query(format!(
                "input_id is required: the msg_id an inject answered with (at most \
                 {MAX_ID_LEN} characters)"
            )))
        }
    };
    if params
        .after
        .as_ref()
        .is_some_and(|after| after.len() > MAX_ID_LEN)
    {
        return Err(invalid_query(format!(
            "after must be a msg_id of at most {MAX_ID_LEN} characters"
        )));
    }
    if let Some(node) = &params.node {
        if protocol::validate_slug(node).is_err() {
            return Err(invalid_query(format!("node {node:?} is not a node id")));
        }
    }
    let limit = params.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_HISTORY_LIMIT {
        return Err(invalid_query(format!(
            "limit must be 1 to {MAX_HISTORY_LIMIT}"
        )));
    }
    let query = CausedQuery {
        topology: topology.clone(),
        input_id,
        after: params.after,
        limit,
    };
    let (page, source, exists) = read_caused(&state, &query, params.node.as_deref()).await?;
    if page.items.is_empty() && !exists {
        return Err(Failure::not_found(format!(
            "there is no topology {topology:?}, and the archive holds no outputs of it with \
             this input_id"
        )));
    }
    let next = match (page.more, page.items.last()) {
        (true, Some(last)) => {
            let mut parts = vec![format!("input_id={}", encode(&query.input_id))];
            parts.extend(params.node.as_ref().map(|node| format!("node={node}")));
            parts.push(format!("after={}", encode(&last.msg_id)));
            parts.push(format!("limit={limit}"));
            Some(format!(
                "/v1/topologies/{topology}/outputs?{}",
                parts.join("&")
            ))
        }
        _ => None,
    };
    Ok(page_answer(source, page.items, next))
}

/// The page `query` asks for, where it was read, and whether the topology exists. With the
/// node the message was injected into, the buffers of it and every node downstream (at most
/// `protocol::MAX_NODE_IDS`) are searched in one round trip; they answer alone when they
/// tell the page whole (`protocol::caused::answer`), else they are joined with the archive's
/// page. Without the node, or with more nodes downstream, the archive answers alone.
async fn read_caused(
    state: &AppState,
    query: &CausedQuery,
    node: Option<&str>,
) -> ApiResult<(HistoryPage, HistorySource, bool)> {
    let view = state.read_topology(&query.topology).await?;
    let reached = match (&view, node) {
        (Some(view), Some(node)) => view.downstream(node, protocol::MAX_NODE_IDS)?,
        _ => None,
    };
    let read = match reached {
        Some(reached) => {
            let nodes: Vec<(&str, &str)> = reached
                .iter()
                .map(|node| (query.topology.as_str(), *node))
                .collect();
            // The buffers and when the edges settled, at once.
            let (held, settled_ms) = tokio::try_join!(
                layout::read_caused_outputs(
                    &state.0.client,
                    state.0.settings.partitions,
                    &nodes,
                    &query.input_id,
                ),
                layout::read_topology_settled(&state.0.client, &query.topology),
            )?;
            let injected_ms =
                redpill::id_time_ms(&query.input_id).and_then(|ms| i64::try_from(ms).ok());
            match caused::answer(query, &held, injected_ms, settled_ms) {
                Some(page) => (page, HistorySource::Recent),
                None => {
                    let archived = archived(state, query).await?;
                    (caused::merge(query, &held, archived), HistorySource::Both)
                }
            }
        }
        None => (archived(state, query).await?, HistorySource::Archive),
    };
    metrics::counter!("gorgon_caused_pages_total", "source" => read.1.as_str()).increment(1);
    Ok((read.0, read.1, view.is_some()))
}

/// The archive's page for `query`.
async fn archived(state: &AppState, query: &CausedQuery) -> ApiResult<HistoryPage> {
    state.history(&ArchiveQuery::Caused(query.clone())).await
}
