//! The node model: what a topology document and the API say a node is.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The most sources one node may list (configurable at the API; this is the default).
pub const DEFAULT_MAX_SOURCES: usize = 64;

/// The most node ids one bulk read (`GET .../nodes?ids=`) may name.
pub const MAX_NODE_IDS: usize = 1000;

/// The most nodes one page of `GET .../nodes?limit=` may hold.
pub const MAX_NODE_PAGE: u32 = 10_000;

/// A node as users write it: id, function, the nodes it receives from, and attributes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// The node's slug, unique within its topology.
    pub id: String,
    /// The registered function it runs.
    pub function: String,
    /// The nodes whose outputs it receives, in the order given.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Settings the function reads and state it keeps.
    #[serde(default)]
    pub attrs: Map<String, Value>,
    /// Whether the node's outputs go to the archive (MongoDB). As written, `None` follows
    /// the topology's `archive` (archived unless it says `false`); in resolved nodes
    /// ([`crate::TopologyDoc::resolved_nodes`]) it is the node's own: `Some(false)` when its
    /// outputs are not archived, `None` when they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<bool>,
}

impl NodeSpec {
    /// Whether the node's outputs are archived, for a resolved node.
    pub fn archived(&self) -> bool {
        self.archive != Some(false)
    }
}

/// A node's health as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// `ok`, or `error` after a message was dead-lettered by this node's function.
    pub state: NodeState,
    /// The last function error, if any.
    pub last_error: Option<String>,
    /// Messages of this node dead-lettered so far.
    pub dead_letters: u64,
}

/// See [`NodeStatus::state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// No failure since the last success.
    Ok,
    /// The last message ended in the dead-letter list.
    Error,
}
