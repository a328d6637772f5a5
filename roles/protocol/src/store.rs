//! The store service: the topology changes the API asks of it, its replies, and where it keeps
//! each topology.
//!
//! web_face sends a [`StoreRequest`] to the [`STORE_SERVICE`](crate::names::STORE_SERVICE)
//! (redpill request/reply, JSON) and gets a [`StoreReply`]. The store validates the change
//! against the whole topology, writes the new document and bumps its `rev`, and sends the
//! node changes to the nodes' partitions.
//!
//! Each topology lives under its own tag, `{t:<topology>}` ([`topology_tag`]):
//!
//! | key suffix | type | content |
//! |---|---|---|
//! | [`TOPOLOGY_RECORD`] | hash | `doc` (the document, JSON), `rev`, `nodes` (node count) |
//! | [`TOPOLOGY_LEASE`] | lease | held by the store applying a change |
//! | outbox [`TOPOLOGY_OUTBOX`] | outbox | node changes committed, on their way to partitions |
//!
//! The set [`TOPOLOGY_INDEX`] (no tag) lists topology ids; it may briefly list a topology that
//! no longer exists (readers skip those). `rev` outlives a deleted topology, so a topology
//! created again continues its count and an old `If-Match` never matches a new document.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::node::NodeSpec;
use crate::topology::{Plan, TopologyDoc};

/// The hash of a topology's document, rev and node count, under [`topology_tag`].
pub const TOPOLOGY_RECORD: &str = "topology";
/// The lease a store holds while it applies a change to a topology.
pub const TOPOLOGY_LEASE: &str = "writer";
/// The outbox of a topology's node changes.
pub const TOPOLOGY_OUTBOX: &str = "changes";
/// The set of topology ids (a plain key).
pub const TOPOLOGY_INDEX: &str = "topologies";
/// The hash of function descriptions processors publish: name → `FunctionDescription` JSON
/// (a plain key).
pub const FUNCTIONS: &str = "functions";

/// The hash-tag name of `topology`'s keys: `t:<topology>`.
pub fn topology_tag(topology: &str) -> String {
    format!("t:{topology}")
}

/// A topology change, as web_face sends it to the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreRequest {
    /// The topology.
    pub topology: String,
    /// Apply only when the topology's rev is this (`If-Match`); `None` applies whatever it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_match: Option<u64>,
    /// What to change.
    pub change: Change,
}

/// What a [`StoreRequest`] changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// Make the topology match `doc`: create, update and delete nodes.
    Put {
        /// The document.
        doc: TopologyDoc,
        /// Plan only; change nothing.
        #[serde(default)]
        dry_run: bool,
        /// Drop the running state of the nodes the document updates.
        #[serde(default)]
        reset_state: bool,
    },
    /// Delete the topology and all its nodes.
    Delete,
    /// Add one node.
    CreateNode {
        /// The node.
        node: NodeSpec,
    },
    /// Change a node's function and/or sources.
    PatchNode {
        /// The node.
        node: String,
        /// The new function.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        function: Option<String>,
        /// The new sources.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sources: Option<Vec<String>>,
    },
    /// A JSON merge patch of a node's attributes.
    PatchAttrs {
        /// The node.
        node: String,
        /// The patch (null deletes a key).
        patch: Map<String, Value>,
    },
    /// Delete one node.
    DeleteNode {
        /// The node.
        node: String,
        /// Also remove it from the sources of the nodes that list it.
        #[serde(default)]
        force: bool,
    },
}

/// The store's answer to a [`StoreRequest`].
pub type StoreReply = Result<Applied, ApiError>;

/// A change the store applied (or, for a dry run, would apply).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The topology's rev after the change (unchanged for a dry run or a change that changed
    /// nothing).
    pub rev: u64,
    /// Whether the change created the topology.
    #[serde(default)]
    pub created_topology: bool,
    /// The nodes created, updated and deleted.
    #[serde(default)]
    pub plan: Plan,
    /// For node changes: the node as the document now lists it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeSpec>,
    /// For attribute patches: the node's attributes with the patch applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<Map<String, Value>>,
}

/// An error as the API answers it: `{"error": {"code", "message"}}`, plus `problems` when a
/// document has more than one (each `{"code", "message"}`, the first being `code`/`message`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// A stable snake_case code.
    pub code: String,
    /// A sentence a person can act on.
    pub message: String,
    /// Every problem found, when there is more than one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

/// One problem of a document; see [`ApiError::problems`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The problem's code.
    pub code: String,
    /// What is wrong.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message` and no list of problems.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            code: code.into(),
            message: message.into(),
            problems: Vec::new(),
        }
    }

    /// The error for a list of document problems (at least one): the first one's code and
    /// message, and the whole list when there is more than one.
    pub fn from_problems(problems: Vec<crate::TopologyError>) -> ApiError {
        let mut listed: Vec<Problem> = problems
            .iter()
            .map(|problem| Problem {
                code: problem.code().to_owned(),
                message: problem.message(),
            })
            .collect();
        let first = listed.first().cloned().unwrap_or(Problem {
            code: "invalid_document".to_owned(),
            message: "the document is not valid".to_owned(),
        });
        if listed.len() == 1 {
            listed.clear();
        }
        ApiError {
            code: first.code,
            message: first.message,
            problems: listed,
        }
    }
}

/// The topology record as stored: the document, its rev and its node count.
#[derive(Clone, Debug, PartialEq)]
pub struct TopologyRecord {
    /// The document.
    pub doc: TopologyDoc,
    /// The rev.
    pub rev: u64,
}

impl TopologyRecord {
    /// Reads a record from its hash fields: `None` when there is no document (never created,
    /// or deleted), `Err` when the stored document does not parse.
    pub fn from_fields(
        fields: &std::collections::HashMap<String, String>,
    ) -> Result<Option<TopologyRecord>, String> {
        let Some(doc) = fields.get("doc") else {
            return Ok(None);
        };
        let doc = TopologyDoc::from_json(doc).map_err(|error| error.message())?;
        Ok(Some(TopologyRecord {
            doc,
            rev: stored_rev(fields),
        }))
    }
}

/// The rev stored in a topology hash, 0 when there is none.
pub fn stored_rev(fields: &std::collections::HashMap<String, String>) -> u64 {
    fields
        .get("rev")
        .and_then(|rev| rev.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Requests travel as tagged JSON and read back the same.
    #[test]
    fn requests_round_trip() {
        let request = StoreRequest {
            topology: "sensors".to_owned(),
            if_match: Some(3),
            change: Change::PatchAttrs {
                node: "avg".to_owned(),
                patch: json!({"field": "/c", "count": null})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
        };
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(
            json,
            json!({"topology": "sensors", "if_match": 3,
                   "change": {"op": "patch_attrs", "node": "avg",
                              "patch": {"field": "/c", "count": null}}})
        );
        assert_eq!(
            serde_json::from_value::<StoreRequest>(json).unwrap(),
            request
        );
    }

    /// One problem gives code and message only; several also list every one.
    #[test]
    fn errors_from_problems() {
        let cycle = crate::TopologyError::Cycle {
            path: vec!["a".into(), "b".into(), "a".into()],
        };
        let one = ApiError::from_problems(vec![cycle.clone()]);
        assert_eq!(one.code, "cycle");
        assert!(one.problems.is_empty());
        let unknown = crate::TopologyError::UnknownFunction {
            node: "a".into(),
            function: "nope".into(),
        };
        let two = ApiError::from_problems(vec![unknown, cycle]);
        assert_eq!(two.code, "unknown_function");
        assert_eq!(
            two.problems
                .iter()
                .map(|problem| problem.code.as_str())
                .collect::<Vec<_>>(),
            ["unknown_function", "cycle"]
        );
    }
}
