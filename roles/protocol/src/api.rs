//! The REST API's bodies: what web_face answers and reads, as one set of types the server
//! serializes and clients (the `gorgon_client` crate) deserialize, so the two cannot drift.
//!
//! With the `openapi` feature each type also describes itself for the OpenAPI document
//! (web_face turns it on; clients need not).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::{FunctionDescription, NodeStatus, OutputEvent};

/// The answer to a topology change: `{"id","rev","created","updated","deleted"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Applied {
    /// The topology.
    pub id: String,
    /// Its rev after the change (unchanged by a dry run or a change that changed nothing).
    pub rev: u64,
    /// The nodes the change created.
    pub created: Vec<String>,
    /// The nodes it updated.
    pub updated: Vec<String>,
    /// The nodes it deleted.
    pub deleted: Vec<String>,
}

impl Applied {
    /// How many nodes the change created, updated and deleted (0: it changed nothing).
    pub fn changes(&self) -> usize {
        self.created.len() + self.updated.len() + self.deleted.len()
    }

    /// The API's answer for the store's `applied` change of `topology`.
    pub fn new(topology: &str, applied: crate::store::Applied) -> Applied {
        Applied {
            id: topology.to_owned(),
            rev: applied.rev,
            created: applied.plan.created,
            updated: applied.plan.updated,
            deleted: applied.plan.deleted,
        }
    }
}

/// One topology in the list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopologySummary {
    /// The topology id.
    pub id: String,
    /// How many nodes it has.
    pub nodes: u64,
    /// Its rev, for `If-Match`.
    pub rev: u64,
}

/// The topologies the caller may see.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopologyList {
    /// Sorted by id.
    pub topologies: Vec<TopologySummary>,
}

/// A node as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeView {
    /// The node id.
    pub id: String,
    /// Its function.
    pub function: String,
    /// The nodes it receives from.
    pub sources: Vec<String>,
    /// `false` when its outputs do not go to the archive (its own setting or its
    /// topology's); absent when they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<bool>,
    /// Its attributes: settings and running state, as last processed.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub attrs: Map<String, Value>,
    /// The latched output event, or null before the first output. Passed on as stored (as
    /// `.../output` does), never parsed, so whatever the processor latched is shown; read it
    /// with [`NodeView::output_event`].
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub output: Option<Box<RawValue>>,
    /// `{"state": "ok"|"error", "last_error", "dead_letters"}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub status: NodeStatus,
}

impl NodeView {
    /// The latched output as an event: `None` before the first output, an error if what was
    /// latched is not an output event.
    pub fn output_event(&self) -> Option<serde_json::Result<OutputEvent>> {
        self.output
            .as_ref()
            .map(|raw| serde_json::from_str(raw.get()))
    }
}

/// The nodes of a topology: all of them, the ones asked for, or a page.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeList {
    /// In document order for the whole list, in the order asked for with `ids`, in id order
    /// for a page.
    pub nodes: Vec<NodeView>,
    /// With `ids`: the ids asked for that the topology does not have, in the order given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<String>>,
    /// The path of the next page, or null on the last page and without `limit`.
    #[serde(default)]
    pub next: Option<String>,
}

/// Query of `GET /v1/topologies/{t}/nodes`: nothing for every node, `ids` for chosen ones,
/// `limit` (and `after`) for a page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct ListQuery {
    /// Only these nodes: ids separated by commas, at most 1 000, answered in the order given
    /// and each once; those the topology does not have are listed in `missing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<String>,
    /// A page of at most this many nodes (1 to 10 000), in id order; `next` is the path of the
    /// following page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The page starts after this node id (the cursor `next` carries); nodes made or deleted
    /// between pages do not move it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// Body of `PATCH /v1/topologies/{t}/nodes/{n}`: what to change, the rest is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NodePatch {
    /// The new function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The new sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
    /// Whether its outputs go to the archive (MongoDB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<bool>,
}

/// Body of the attribute patch reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttrsView {
    /// The attributes with the patch applied.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub attrs: Map<String, Value>,
}

/// Query of the history route.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct HistoryParams {
    /// Only outputs with a greater seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
    /// Only outputs with a smaller seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_seq: Option<u64>,
    /// Only outputs at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Only outputs before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `desc` (newest first, the default) or `asc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
}

/// Query of the outputs route.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct OutputsParams {
    /// The id an inject answered with (its `msg_id`): every output carries it as its
    /// `input_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_id: Option<String>,
    /// The node the message was injected into: with it, outputs are read from the replay
    /// buffers of the nodes downstream of it (and recent ones not yet archived are found);
    /// without it, from the archive alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Only outputs with a greater `msg_id` (the last of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// A page of outputs: of a node (by seq) or of an inject (by msg_id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryView {
    /// Output events, in the order asked for.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub items: Vec<OutputEvent>,
    /// The path of the next page, or null on the last.
    #[serde(default)]
    pub next: Option<String>,
}

/// The answer to an inject of one message (`application/json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Injected {
    /// The message's id: every output it causes carries it as `input_id`.
    pub msg_id: String,
}

/// The answer to an inject of many messages (`application/x-ndjson`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InjectedMany {
    /// One id a line, in the order of the lines.
    pub msg_ids: Vec<String>,
}

/// One dead-lettered message of a topology.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetterView {
    /// The message id (the inject's `msg_id` for an injected message).
    pub id: String,
    /// The node it was for.
    pub node: String,
    /// Why it was dead-lettered, starting with a reason code such as `node_deleted`.
    pub error: String,
    /// Failed attempts.
    pub attempts: u32,
    /// When, RFC 3339.
    pub at: String,
    /// The message (`null` for a node change).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub data: Option<Value>,
}

/// The dead letters of a topology.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetterList {
    /// Oldest first within each partition.
    pub items: Vec<DeadLetterView>,
}

/// The replay's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Replayed {
    /// The ids put back on their queues.
    pub replayed: Vec<String>,
}

/// The functions nodes can run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FunctionList {
    /// Sorted by name: `{"name", "description", "params": [{"name", "type", "default", "doc",
    /// "state", "required"}]}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub functions: Vec<FunctionDescription>,
}

/// Every error answer: `{"error": {"code", "message", "problems"?}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// The error.
    pub error: crate::store::ApiError,
}
