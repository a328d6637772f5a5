//! Node routes: create, list, read, change, patch attributes, delete, latched output.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use layout::NodeRecord;
use protocol::api::{
    AttrsView, HistoryParams, HistoryView, ListQuery, NodeList, NodePatch, NodeView,
};
use protocol::history::HistorySource;
use protocol::store::Change;
use protocol::{NodeSpec, NodeState, NodeStatus};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use utoipa::IntoParams;

use super::{etag, if_match, write_access, Path, Query};
use crate::auth::Caller;
use crate::body::{self, Format};
use crate::error::{ApiResult, Failure};
use crate::state::{AppState, TopologyView};

/// Query of `DELETE /v1/topologies/{t}/nodes/{n}`.
#[derive(Deserialize, IntoParams)]
pub struct DeleteQuery {
    /// Also remove the node from the sources of the nodes that list it.
    #[serde(default)]
    force: bool,
}

/// Creates a node.
#[utoipa::path(post, path = "/v1/topologies/{t}/nodes", tag = "nodes",
    params(("t" = String, Path, description = "topology id"),
           ("If-Match" = Option<String>, Header, description = "the rev the change applies to")),
    request_body(content = Object, description = r#"{"id","function","sources":[],"attrs":{}}"#),
    responses((status = 201, body = NodeView), (status = 409, description = "already_exists"),
              (status = 422, description = "invalid_slug, unknown_function, invalid_attrs, unknown_source, cycle")))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(topology): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    write_access(&caller, &topology)?;
    body::format_of(&headers, &[Format::Json])?;
    let bytes = body::read(body, &state.0.limits).await?;
    let node: NodeSpec = body::json_object(&bytes, &state.0.limits, "the node")?;
    let mut applied = state
        .change(&topology, if_match(&headers)?, Change::CreateNode { node })
        .await?;
    let spec = changed_node(&mut applied)?;
    Ok((
        StatusCode::CREATED,
        etag(applied.rev),
        Json(view(spec, None)),
    )
        .into_response())
}

/// Lists the nodes with their attributes, latched outputs and status: all of them in document
/// order, the ones named by `ids`, or a page in id order (`limit`, `after`). Their records are
/// read in one round trip to Redis (one pipeline per partition slot on a cluster).
#[utoipa::path(get, path = "/v1/topologies/{t}/nodes", tag = "nodes",
    params(("t" = String, Path, description = "topology id"), ListQuery),
    responses((status = 200, body = NodeList), (status = 400, description = "invalid_query"),
              (status = 404, description = "not_found")))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(topology): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<NodeList>> {
    let topology_view = state.topology(&caller, &topology).await?;
    let (nodes, missing, next) = match (&query.ids, query.limit, &query.after) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(invalid_query(
                "ids cannot be combined with limit or after: ask for chosen nodes or for a page",
            ));
        }
        (Some(ids), None, None) => {
            let (nodes, missing) = chosen(&topology_view, ids)?;
            (nodes, Some(missing), None)
        }
        (None, Some(limit), after) => {
            if limit == 0 || limit > protocol::MAX_NODE_PAGE {
                return Err(invalid_query(format!(
                    "limit must be 1 to {}",
                    protocol::MAX_NODE_PAGE
                )));
            }
            let (page, more) = topology_view.page(after.as_deref(), limit as usize)?;
            let next = page.last().filter(|_| more).map(|last| {
                format!(
                    "/v1/topologies/{topology}/nodes?limit={limit}&after={}",
                    last.id
                )
            });
            (page, None, next)
        }
        (None, None, Some(_)) => {
            return Err(invalid_query("after pages a list: give limit with it"));
        }
        (None, None, None) => (topology_view.nodes()?.iter().collect(), None, None),
    };
    let ids: Vec<&str> = nodes.iter().map(|node| node.id.as_str()).collect();
    let records = read_records(&state, &topology, &ids).await?;
    Ok(Json(NodeList {
        nodes: nodes
            .into_iter()
            .zip(records)
            .map(|(spec, record)| view(spec.clone(), record))
            .collect(),
        missing,
        next,
    }))
}

/// The nodes `ids` (comma-separated) names, each once in the order given, and the named ids
/// the topology does not have.
fn chosen<'a>(
    topology: &'a TopologyView,
    ids: &str,
) -> ApiResult<(Vec<&'a NodeSpec>, Vec<String>)> {
    let mut seen = std::collections::HashSet::new();
    let named: Vec<&str> = ids
        .split(',')
        .filter(|id| !id.is_empty() && seen.insert(*id))
        .collect();
    if named.is_empty() || named.len() > protocol::MAX_NODE_IDS {
        return Err(invalid_query(format!(
            "ids must name 1 to {} nodes, separated by commas",
            protocol::MAX_NODE_IDS
        )));
    }
    let mut nodes = Vec::with_capacity(named.len());
    let mut missing = Vec::new();
    for id in named {
        match topology.node(id)? {
            Some(node) => nodes.push(node),
            None => missing.push(id.to_owned()),
        }
    }
    Ok((nodes, missing))
}

/// 400 `invalid_query` with `message`.
pub(super) fn invalid_query(message: impl Into<String>) -> Failure {
    Failure::new(protocol::ErrorCode::InvalidQuery, message)
}

/// One node: `{"id","function","sources","attrs","output","status"}`.
#[utoipa::path(get, path = "/v1/topologies/{t}/nodes/{n}", tag = "nodes",
    params(("t" = String, Path, description = "topology id"), ("n" = String, Path, description = "node id")),
    responses((status = 200, body = NodeView), (status = 404, description = "not_found")))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((topology, node)): Path<(String, String)>,
) -> ApiResult<Json<NodeView>> {
    let (spec, record) = one_node(&state, &caller, &topology, &node).await?;
    Ok(Json(view(spec, record)))
}

/// Changes a node's function and/or sources.
#[utoipa::path(patch, path = "/v1/topologies/{t}/nodes/{n}", tag = "nodes",
    params(("t" = String, Path, description = "topology id"), ("n" = String, Path, description = "node id"),
           ("If-Match" = Option<String>, Header, description = "the rev the change applies to")),
    request_body = NodePatch,
    responses((status = 200, body = NodeView), (status = 404, description = "not_found"), (status = 422, description = "validation")))]
pub async fn patch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((topology, node)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    write_access(&caller, &topology)?;
    body::format_of(&headers, &[Format::Json])?;
    let bytes = body::read(body, &state.0.limits).await?;
    let patch: NodePatch = body::json_object(&bytes, &state.0.limits, "the node change")?;
    let mut applied = state
        .change(
            &topology,
            if_match(&headers)?,
            Change::PatchNode {
                node: node.clone(),
                function: patch.function,
                sources: patch.sources,
                archive: patch.archive,
            },
        )
        .await?;
    let record = read_records(&state, &topology, &[&node])
        .await?
        .pop()
        .flatten();
    let spec = changed_node(&mut applied)?;
    Ok((etag(applied.rev), Json(view(spec, record))).into_response())
}

/// A JSON merge patch of the node's attributes (null deletes a key). The change reaches the
/// node through its partition, between the messages before and after it; the reply shows
/// the attributes as they last were with the patch applied.
#[utoipa::path(patch, path = "/v1/topologies/{t}/nodes/{n}/attrs", tag = "nodes",
    params(("t" = String, Path, description = "topology id"), ("n" = String, Path, description = "node id"),
           ("If-Match" = Option<String>, Header, description = "the rev the change applies to")),
    request_body(content = Object, description = "a JSON merge patch"),
    responses((status = 200, body = AttrsView), (status = 404, description = "not_found"), (status = 422, description = "invalid_attrs")))]
pub async fn patch_attrs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((topology, node)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    write_access(&caller, &topology)?;
    body::format_of(&headers, &[Format::Json])?;
    let bytes = body::read(body, &state.0.limits).await?;
    let patch: Map<String, Value> = body::json(&bytes, &state.0.limits, "the attribute patch")?;
    let applied = state
        .change(
            &topology,
            if_match(&headers)?,
            Change::PatchAttrs { node, patch },
        )
        .await?;
    Ok((
        etag(applied.rev),
        Json(AttrsView {
            attrs: applied.attrs.unwrap_or_default(),
        }),
    )
        .into_response())
}

/// Deletes a node: 409 `has_dependents` while other nodes source from it, unless `force`.
#[utoipa::path(delete, path = "/v1/topologies/{t}/nodes/{n}", tag = "nodes",
    params(("t" = String, Path, description = "topology id"), ("n" = String, Path, description = "node id"), DeleteQuery,
           ("If-Match" = Option<String>, Header, description = "the rev the change applies to")),
    responses((status = 204, description = "deleted"), (status = 404, description = "not_found"), (status = 409, description = "has_dependents")))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((topology, node)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    write_access(&caller, &topology)?;
    state
        .change(
            &topology,
            if_match(&headers)?,
            Change::DeleteNode {
                node,
                force: query.force,
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The node's latched output event, or 404 `no_output` before its first output.
#[utoipa::path(get, path = "/v1/topologies/{t}/nodes/{n}/output", tag = "nodes",
    params(("t" = String, Path, description = "topology id"), ("n" = String, Path, description = "node id")),
    responses((status = 200, description = "the output event", body = Object), (status = 404, description = "not_found or no_output")))]
pub async fn output(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((topology, node)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (_, record) = one_node(&state, &caller, &topology, &node).await?;
    let output = record.and_then(|record| record.output).ok_or_else(|| {
        Failure::new(
            protocol::ErrorCode::NoOutput,
            format!("node {node:?} has not output anything yet"),
        )
    })?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        output,
    )
        .into_response())
}

/// The node's spec from the document and its record, if its partition wrote one yet.
async fn one_node(
    state: &AppState,
    caller: &Caller,
    topology: &str,
    node: &str,
) -> ApiResult<(NodeSpec, Option<NodeRecord>)> {
    let spec = state
        .topology(caller, topology)
        .await?
        .node(node)?
        .cloned()
        .ok_or_else(|| Failure::not_found(format!("topology {topology:?} has no node {node:?}")))?;
    let stored = read_records(state, topology, &[node])
        .await?
        .pop()
        .flatten();
    Ok((spec, stored))
}

/// The records of `nodes`, in one round trip.
pub async fn read_records(
    state: &AppState,
    topology: &str,
    nodes: &[&str],
) -> ApiResult<Vec<Option<NodeRecord>>> {
    let nodes: Vec<(&str, &str)> = nodes.iter().map(|node| (topology, *node)).collect();
    Ok(layout::read_node_records(&state.0.client, state.0.settings.partitions, &nodes).await?)
}

/// The API's view of a node: function and sources from the document (what was asked for),
/// attributes, output and status from the partition's record when it has one.
fn view(spec: NodeSpec, record: Option<NodeRecord>) -> NodeView {
    let (attrs, output, status) = match record {
        Some(record) => (
            record.attrs,
            record
                .output
                .and_then(|output| RawValue::from_string(output).ok()),
            record.status,
        ),
        None => (
            spec.attrs,
            None,
            NodeStatus {
                state: NodeState::Ok,
                last_error: None,
                dead_letters: 0,
            },
        ),
    };
    NodeView {
        id: spec.id,
        function: spec.function,
        sources: spec.sources,
        archive: spec.archive,
        attrs,
        output,
        status,
    }
}

/// The node a node change answered with; the store names it in every one.
fn changed_node(applied: &mut protocol::store::Applied) -> ApiResult<NodeSpec> {
    applied.node.take().ok_or_else(|| {
        Failure::new(
            protocol::ErrorCode::Internal,
            "the store's reply did not name the node",
        )
    })
}

/// The node's outputs, newest first unless `order=asc`: the recent ones from its replay
/// buffer in Redis, older ones from the archive in MongoDB, joined by seq.
#[utoipa::path(get, path = "/v1/topologies/{t}/nodes/{n}/history", tag = "nodes",
    params(("t" = String, Path, description = "topology id"), ("n" = String, Path, description = "node id"), HistoryParams),
    responses((status = 200, body = HistoryView, headers(("gorgon-history-source" = String,
                description = "where the page was read: redis, archive or redis+archive"))),
              (status = 400, description = "invalid_query"),
              (status = 404, description = "not_found"), (status = 503, description = "the archive is unreachable")))]
pub async fn history(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((topology, node)): Path<(String, String)>,
    Query(params): Query<HistoryParams>,
) -> ApiResult<Response> {
    // History outlives nodes and topologies: only the token's scope is checked.
    if protocol::validate_slug(&topology).is_err() || !caller.grants.reads(&topology) {
        return Err(Failure::no_topology(&topology));
    }
    let time = |name: &str, text: &Option<String>| -> ApiResult<Option<i64>> {
        text.as_deref()
            .map(|text| {
                protocol::Timestamp::parse(text)
                    .map(protocol::Timestamp::unix_ms)
                    .ok_or_else(|| {
                        invalid_query(format!(
                            "{name} must be an RFC 3339 time such as 2026-11-23T06:00:00Z"
                        ))
                    })
            })
            .transpose()
    };
    let limit = params.limit.unwrap_or(100);
    if limit == 0 || limit > protocol::history::MAX_HISTORY_LIMIT {
        return Err(invalid_query(format!(
            "limit must be 1 to {}",
            protocol::history::MAX_HISTORY_LIMIT
        )));
    }
    let ascending = match params.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => return Err(invalid_query("order must be asc or desc")),
    };
    let query = protocol::history::HistoryQuery {
        topology: topology.clone(),
        node: node.clone(),
        after_seq: params.after_seq,
        before_seq: params.before_seq,
        from_ms: time("from", &params.from)?,
        to_ms: time("to", &params.to)?,
        limit,
        ascending,
    };
    let (page, source) = read_history(&state, &query).await?;
    if page.items.is_empty() && page_of_nothing(&state, &topology, &node).await? {
        return Err(Failure::not_found(format!(
            "topology {topology:?} has no node {node:?}, and the archive holds no outputs of \
             it here"
        )));
    }
    let next = match (page.more, page.items.last()) {
        (true, Some(last)) => {
            let mut parts = vec![
                format!("limit={limit}"),
                format!("order={}", if ascending { "asc" } else { "desc" }),
            ];
            let (after, before) = if ascending {
                (Some(last.seq), query.before_seq)
            } else {
                (query.after_seq, Some(last.seq))
            };
            parts.extend(after.map(|seq| format!("after_seq={seq}")));
            parts.extend(before.map(|seq| format!("before_seq={seq}")));
            parts.extend(
                params
                    .from
                    .as_ref()
                    .map(|from| format!("from={}", encode(from))),
            );
            parts.extend(params.to.as_ref().map(|to| format!("to={}", encode(to))));
            Some(format!(
                "/v1/topologies/{topology}/nodes/{node}/history?{}",
                parts.join("&")
            ))
        }
        _ => None,
    };
    Ok(page_answer(source, page.items, next))
}

/// A page of outputs as the history routes answer it: the items, the path of the next page,
/// and where it was read in the `gorgon-history-source` header.
pub(super) fn page_answer(
    source: HistorySource,
    items: Vec<protocol::OutputEvent>,
    next: Option<String>,
) -> Response {
    (
        [(HISTORY_SOURCE, source.as_str())],
        Json(HistoryView { items, next }),
    )
        .into_response()
}

/// The response header naming where a history page was read: `redis`, `archive` or
/// `redis+archive`.
const HISTORY_SOURCE: &str = "gorgon-history-source";

/// The page `query` asks for: from the node's replay buffer in Redis when it alone tells
/// the page (the newest outputs, or those after a seq it holds), else the archive's page
/// joined with the buffer by seq, or the archive's alone when the node has no usable
/// buffer (it is deleted, the buffer is off, or it is not whole). The same page either way,
/// as the archive would give it once it has caught up (`protocol::history::Recent`).
async fn read_history(
    state: &AppState,
    query: &protocol::history::HistoryQuery,
) -> ApiResult<(protocol::history::HistoryPage, HistorySource)> {
    let recent = layout::read_recent_outputs(
        &state.0.client,
        state.0.settings.partitions,
        (&query.topology, &query.node),
        query.recent_needed(),
    )
    .await?;
    let read = match recent.as_ref().and_then(|recent| recent.answer(query)) {
        Some(page) => (page, HistorySource::Recent),
        None => {
            let archived = state
                .history(&protocol::history::ArchiveQuery::Node(query.clone()))
                .await?;
            match recent {
                Some(recent) => (recent.merge(query, archived), HistorySource::Both),
                None => (archived, HistorySource::Archive),
            }
        }
    };
    metrics::counter!("gorgon_history_pages_total", "source" => read.1.as_str()).increment(1);
    Ok(read)
}

/// Whether an empty history page is of a node that does not exist: history outlives nodes
/// and topologies (a deleted node's archived outputs stay readable), so a node is missing
/// only when it is neither in its topology now nor in the page.
pub(super) async fn page_of_nothing(
    state: &AppState,
    topology: &str,
    node: &str,
) -> ApiResult<bool> {
    Ok(match state.read_topology(topology).await? {
        Some(view) => view.node(node)?.is_none(),
        None => true,
    })
}

/// `text` percent-encoded for a query string (RFC 3339 times carry `:` and `+`).
pub(super) fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
