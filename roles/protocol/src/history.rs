//! History queries: what web_face asks the store about a node's archived outputs, and the
//! page it answers with.
//!
//! web_face sends a [`HistoryQuery`] to the history service (`layout::HISTORY_SERVICE`)
//! (redpill request/reply, JSON); the store answers a [`HistoryReply`] from MongoDB.

use serde::{Deserialize, Serialize};

use crate::output::OutputEvent;
use crate::store::ApiError;

/// The most items one page may hold.
pub const MAX_HISTORY_LIMIT: u32 = 1000;

/// A page of one node's archived outputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// The topology.
    pub topology: String,
    /// The node.
    pub node: String,
    /// Only outputs with a greater seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
    /// Only outputs with a smaller seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_seq: Option<u64>,
    /// Only outputs at or after this time (Unix ms, output `ts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    /// Only outputs before this time (Unix ms, output `ts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
    /// At most this many (1 to [`MAX_HISTORY_LIMIT`]).
    pub limit: u32,
    /// Oldest first (`true`) or newest first.
    #[serde(default)]
    pub ascending: bool,
}

/// One page, in the order asked for (by `seq`); `more` when outputs beyond it match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// The outputs.
    pub items: Vec<OutputEvent>,
    /// Whether more outputs match after the last item.
    pub more: bool,
}

/// The store's answer to a [`HistoryQuery`].
pub type HistoryReply = Result<HistoryPage, ApiError>;
