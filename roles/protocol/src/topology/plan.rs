//! The plan of a change: which nodes applying a topology creates, updates and deletes.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::node::NodeSpec;

/// What applying a topology changes: node ids in document order (`deleted` in the order of
/// the current nodes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Nodes to create.
    pub created: Vec<String>,
    /// Nodes whose function, sources or listed attributes change.
    pub updated: Vec<String>,
    /// Nodes to delete.
    pub deleted: Vec<String>,
}

impl Plan {
    /// Whether applying changes nothing.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.updated.is_empty() && self.deleted.is_empty()
    }
}

/// The plan that turns the `current` nodes into the `next` ones; both should be resolved
/// (see [`TopologyDoc::resolved_nodes`](super::TopologyDoc::resolved_nodes)). A node is
/// updated when its function differs, its sources differ (order counts: a function may tell
/// its inputs apart by position), whether it is archived differs, or an attribute `next` lists has a different value in
/// `current`. Attributes `next` does not list are the function's running state and are left
/// alone, so they do not count.
pub fn plan(current: &[NodeSpec], next: &[NodeSpec]) -> Plan {
    let current_by_id: HashMap<&str, &NodeSpec> = current
        .iter()
        .map(|node| (node.id.as_str(), node))
        .collect();
    let next_ids: HashSet<&str> = next.iter().map(|node| node.id.as_str()).collect();
    let mut plan = Plan::default();
    for node in next {
        match current_by_id.get(node.id.as_str()) {
            None => plan.created.push(node.id.clone()),
            Some(old) => {
                let changed = old.function != node.function
                    || old.sources != node.sources
                    || old.archive != node.archive
                    || node
                        .attrs
                        .iter()
                        .any(|(key, value)| old.attrs.get(key) != Some(value));
                if changed {
                    plan.updated.push(node.id.clone());
                }
            }
        }
    }
    plan.deleted = current
        .iter()
        .filter(|node| !next_ids.contains(node.id.as_str()))
        .map(|node| node.id.clone())
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::fixtures::{ids, node};
    use serde_json::json;

    /// The plan lists created, updated and deleted nodes in order; attributes not listed in
    /// the next document are running state and do not make an update.
    #[test]
    fn plan_lists_the_changes() {
        let current = vec![
            node("a", "pass", &[], json!({"count": 5})),
            node("b", "average", &["a"], json!({"field": "/x", "sum": 10})),
            node("gone", "pass", &[], json!({})),
            node("c", "pass", &["a"], json!({})),
            node("d", "pass", &["a", "b"], json!({})),
            node("e", "threshold", &[], json!({"above": 30})),
            node("f", "pass", &[], json!({})),
            node("also-gone", "pass", &[], json!({})),
        ];
        let next = vec![
            node("new", "pass", &[], json!({})),
            node("f", "average", &[], json!({})),
            node("e", "threshold", &[], json!({"above": 30.0})),
            node("d", "pass", &["b", "a"], json!({})),
            node("c", "pass", &["a"], json!({})),
            node("b", "average", &["a"], json!({"field": "/x"})),
            node("a", "pass", &[], json!({"count": 5})),
            node("newer", "pass", &[], json!({})),
        ];
        assert_eq!(
            plan(&current, &next),
            Plan {
                created: ids(&["new", "newer"]),
                updated: ids(&["f", "e", "d"]),
                deleted: ids(&["gone", "also-gone"]),
            }
        );
        assert!(plan(&current, &current).is_empty());
        assert_eq!(
            plan(&[], &current[..2]),
            Plan {
                created: ids(&["a", "b"]),
                ..Plan::default()
            }
        );
        assert_eq!(
            serde_json::to_value(plan(&current[..1], &[])).unwrap(),
            json!({"created": [], "updated": [], "deleted": ["a"]})
        );
        let changed_attr = [node("b", "average", &["a"], json!({"field": "/y"}))];
        assert_eq!(plan(&current[1..2], &changed_attr).updated, ids(&["b"]));
    }
}
