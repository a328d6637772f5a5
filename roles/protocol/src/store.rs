//! The store service: the topology changes the API asks of it, its replies, and where it keeps
//! each topology.
//!
//! web_face sends a [`StoreRequest`] to the store service (`layout::STORE_SERVICE`)
//! (redpill request/reply, JSON) and gets a [`StoreReply`]. The store validates the change
//! against the whole topology, writes the new document and bumps its `rev`, and sends the
//! node changes to the nodes' partitions.
//!
//! Where the store keeps topologies is the `layout` crate's.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ErrorCode;
use crate::node::NodeSpec;
use crate::topology::{Plan, TopologyDoc};

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
        /// Whether its outputs are archived.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        archive: Option<bool>,
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
    pub code: ErrorCode,
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
    pub code: ErrorCode,
    /// What is wrong.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message` and no list of problems.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    /// The error for a list of document problems (at least one): the first one's code and
    /// message, and the whole list when there is more than one. An empty list is a fault of
    /// the caller: `internal`.
    pub fn from_problems(problems: Vec<crate::TopologyError>) -> ApiError {
        let mut listed: Vec<Problem> = problems
            .iter()
            .map(|problem| Problem {
                code: problem.code(),
                message: problem.message(),
            })
            .collect();
        let first = listed.first().cloned().unwrap_or(Problem {
            code: ErrorCode::Internal,
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
        assert_eq!(one.code, ErrorCode::Cycle);
        assert!(one.problems.is_empty());
        let unknown = crate::TopologyError::UnknownFunction {
            node: "a".into(),
            function: "nope".into(),
        };
        let two = ApiError::from_problems(vec![unknown, cycle]);
        assert_eq!(two.code, ErrorCode::UnknownFunction);
        assert_eq!(
            serde_json::to_value(&two).unwrap(),
            json!({"code": "unknown_function", "message": two.message, "problems": [
                {"code": "unknown_function", "message": two.message},
                {"code": "cycle", "message": "the edges form a cycle: a -> b -> a; remove one of these edges"},
            ]})
        );
    }
}
