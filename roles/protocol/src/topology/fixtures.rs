//! What the topology tests share: the documented example, a function registry and builders.

use serde_json::{Map, Value};

use super::{Limits, TopologyDoc, TopologyError};
use crate::node::NodeSpec;

/// The documented example topology (room temperatures), verbatim.
pub(super) const ROOM_EXAMPLE: &str = r#"description = "room temperatures"
graph = """
temp-in --> temp-avg --> too-hot
"""

[[node]]
id = "temp-in"
function = "pass"

[[node]]
id = "temp-avg"
function = "average"
attrs = { field = "/celsius" }

[[node]]
id = "too-hot"
function = "threshold"
attrs = { field = "/mean", above = 30.0 }
"#;

/// The test registry: `pass` takes anything; `average` needs a string `field`;
/// `threshold` needs a string `field` and a number `above`.
pub(super) fn registry(
    function: &str,
    attrs: &Map<String, Value>,
) -> Option<Result<(), Vec<String>>> {
    let mut problems = Vec::new();
    match function {
        "pass" => {}
        "average" | "threshold" => {
            if !attrs.get("field").is_some_and(Value::is_string) {
                problems.push("\"field\" must be a JSON pointer string".to_owned());
            }
            if function == "threshold" && !attrs.get("above").is_some_and(Value::is_number) {
                problems.push("\"above\" must be a number".to_owned());
            }
        }
        _ => return None,
    }
    Some(if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    })
}

pub(super) fn node(id: &str, function: &str, sources: &[&str], attrs: Value) -> NodeSpec {
    NodeSpec {
        id: id.to_owned(),
        function: function.to_owned(),
        sources: sources.iter().map(|source| source.to_string()).collect(),
        attrs: match attrs {
            Value::Object(map) => map,
            _ => Map::new(),
        },
        archive: None,
    }
}

pub(super) fn doc(graph: Option<&str>, nodes: Vec<NodeSpec>) -> TopologyDoc {
    TopologyDoc {
        description: None,
        graph: graph.map(str::to_owned),
        node: nodes,
        archive: None,
    }
}

pub(super) fn first_error(doc: &TopologyDoc) -> TopologyError {
    doc.validate(&Limits::default(), &registry).unwrap_err()
}

pub(super) fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|id| id.to_string()).collect()
}
