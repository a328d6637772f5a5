//! The topology document: parsing (JSON, TOML, the Mermaid-style graph), validation, the
//! Mermaid flowchart of a topology, and the plan that turns one set of nodes into another.
//!
//! Layout: `document.rs` (the document and its JSON and TOML forms), `error.rs` (why a
//! document is refused), `graph.rs` (the Mermaid-style `graph`, the sources it resolves, the
//! flowchart and the targets of each node), `validate.rs` (validation and the cycle search),
//! `plan.rs` (the plan of a change).

mod document;
mod error;
#[cfg(test)]
mod fixtures;
mod graph;
mod plan;
mod validate;

pub use document::TopologyDoc;
pub use error::TopologyError;
pub use graph::{flowchart, parse_graph, targets, GraphEdge};
pub use plan::{plan, Plan};
pub use validate::{FunctionCheck, Limits};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::fixtures::{node, registry, ROOM_EXAMPLE};
    use serde_json::json;

    /// The room-temperatures example parses to its three nodes, and the graph chain becomes their sources.
    #[test]
    fn spec_example_parses_with_sources_from_the_graph() {
        let parsed = TopologyDoc::from_toml(ROOM_EXAMPLE).unwrap();
        assert_eq!(parsed.description.as_deref(), Some("room temperatures"));
        assert_eq!(
            parsed.graph.as_deref(),
            Some("temp-in --> temp-avg --> too-hot\n")
        );
        let declared = vec![
            node("temp-in", "pass", &[], json!({})),
            node("temp-avg", "average", &[], json!({"field": "/celsius"})),
            node(
                "too-hot",
                "threshold",
                &[],
                json!({"field": "/mean", "above": 30.0}),
            ),
        ];
        assert_eq!(parsed.node, declared);
        let resolved = vec![
            node("temp-in", "pass", &[], json!({})),
            node(
                "temp-avg",
                "average",
                &["temp-in"],
                json!({"field": "/celsius"}),
            ),
            node(
                "too-hot",
                "threshold",
                &["temp-avg"],
                json!({"field": "/mean", "above": 30.0}),
            ),
        ];
        assert_eq!(parsed.resolved_nodes().unwrap(), resolved);
        assert_eq!(
            parsed.validate(&Limits::default(), &registry).unwrap(),
            resolved
        );
        assert!(parsed
            .validate_all(&Limits::default(), &registry)
            .is_empty());
    }
}
