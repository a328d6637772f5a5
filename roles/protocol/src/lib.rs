//! protocol: the vocabulary of the Gorgon mesh — the shapes of the messages roles exchange,
//! the slugs that name topologies and nodes, the partition a node belongs to. It does no I/O
//! and names no Redis key: roles send and receive these through redpill, and where they are
//! kept is the `layout` crate's.
//!
//! Layout: [`roles`] (the name of each role), [`api`] (the REST API's bodies, shared with
//! clients), [`auth`] (API tokens and their scopes),
//! `error.rs` ([`ErrorCode`]: every error code clients are answered with, and its status),
//! `slug.rs`, `partition.rs` (the node → partition hash), `node.rs` (node spec and status),
//! `envelope.rs` (what a partition queue carries), `output.rs` (the output event),
//! [`function`] (what a function declares: its parameters), `patch.rs` (JSON merge patches),
//! `topology/` (the topology document: parsing, validation, the Mermaid chart and the plan
//! of a change), `time.rs` (timestamps), [`store`] (the store service's requests and
//! replies), [`history`] (history queries and pages), [`caused`] (the outputs one inject
//! caused), [`notify`] (what socket.io clients and the notifier send each other), [`stats`]
//! (the report every role publishes once a second, and the names of the metrics the monitor
//! charts).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

pub mod api;
pub mod auth;
pub mod caused;
mod envelope;
mod error;
pub mod function;
pub mod history;
mod node;
pub mod notify;
mod output;
mod partition;
mod patch;
mod slug;
pub mod stats;
pub mod store;
mod time;
mod topology;

pub use envelope::{Body, Edge, Envelope, Message, ENVELOPE_VERSION};
pub use error::{ErrorCode, UnknownCode};
pub use function::{validate_attrs, FunctionDescription, Param, ParamKind};
pub use node::{NodeSpec, NodeState, NodeStatus, DEFAULT_MAX_SOURCES, MAX_NODE_IDS, MAX_NODE_PAGE};
pub use output::{deeper_than, json_text_depth, OutputEvent, MAX_DATA_DEPTH};
pub use partition::{partition_of, DEFAULT_PARTITIONS};
pub use patch::merge_patch;
pub use slug::{validate_slug, Slug, SlugError, MAX_SLUG_LEN, SLUG_PATTERN};
pub use time::Timestamp;
pub use topology::{
    flowchart, parse_graph, plan, targets, FunctionCheck, GraphEdge, Limits, Plan, TopologyDoc,
    TopologyError,
};

/// The name of each role: its directory, package, binary, Procfile process type, tracing
/// `service` field and redpill consumer name are all this one string.
pub mod roles {
    /// The REST API.
    pub const WEB_FACE: &str = "web_face";
    /// The topology store and MongoDB archive.
    pub const STORE: &str = "store";
    /// Runs node functions on the partitions it owns.
    pub const PROCESSOR: &str = "processor";
    /// The socket.io server streaming node outputs.
    pub const NOTIFIER: &str = "notifier";
    /// The stats monitor.
    pub const STATS: &str = "stats";
    /// The load generator and verifier; a client of the mesh rather than a role of it.
    pub const SIMULATOR: &str = "simulator";

    /// The five roles of a deployment, in Procfile order.
    pub const ALL: [&str; 5] = [WEB_FACE, STORE, PROCESSOR, NOTIFIER, STATS];
}

#[cfg(test)]
mod tests {
    use super::roles;

    /// Role names are distinct snake_case words, usable as crate, binary and process names.
    #[test]
    fn role_names_are_distinct_snake_case() {
        let mut names = roles::ALL.to_vec();
        names.push(roles::SIMULATOR);
        for name in &names {
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), roles::ALL.len() + 1);
    }
}
