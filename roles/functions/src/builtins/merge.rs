//! `merge`: the latest message from each source, in one object.

use serde_json::Value;

use crate::function::{Function, FunctionError, Input, NodeContext, Param, ParamKind};

/// The key under which messages injected into the node itself are kept. It is not a slug, so no
/// node id can take it.
pub const INJECTED: &str = "_injected";

/// Outputs an object of the latest message from each source, keyed by source id.
#[derive(Debug, Clone, Copy, Default)]
pub struct Merge;

impl Function for Merge {
    fn name(&self) -> &str {
        "merge"
    }

    fn description(&self) -> &str {
        "Outputs an object of the latest message from each source, keyed by source id \
         (\"_injected\" for messages injected into the node itself)."
    }

    fn params(&self) -> Vec<Param> {
        vec![Param::state(
            "latest",
            ParamKind::Object,
            "State: the latest message from each current source, keyed by source id.",
        )]
    }

    fn call(
        &self,
        input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        let key = input.source.unwrap_or(INJECTED);
        let mut latest = ctx.attr_object("latest")?.cloned().unwrap_or_default();
        // Sources removed from the node since stop showing; injected messages always stay.
        let sources = ctx.sources;
        latest.retain(|id, _| id == INJECTED || sources.iter().any(|source| source == id));
        latest.insert(key.to_owned(), input.data.clone());
        let latest = Value::Object(latest);
        ctx.set_attr("latest", latest.clone());
        Ok(vec![latest])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::TestNode;
    use serde_json::json;

    /// merge keeps the latest message per source and outputs all of them each time.
    #[test]
    fn latest_per_source() {
        let mut node = TestNode::new(json!({}));
        node.sources = vec!["kitchen".to_owned(), "hall".to_owned()];
        assert_eq!(
            node.call_full(&Merge, Some("kitchen"), json!({"c": 20}), 0),
            Ok(vec![json!({"kitchen": {"c": 20}})])
        );
        assert_eq!(
            node.call_full(&Merge, Some("hall"), json!(18), 0),
            Ok(vec![json!({"kitchen": {"c": 20}, "hall": 18})])
        );
        assert_eq!(
            node.call_full(&Merge, Some("kitchen"), json!({"c": 21}), 0),
            Ok(vec![json!({"kitchen": {"c": 21}, "hall": 18})])
        );
        assert_eq!(
            node.attrs(),
            json!({"latest": {"kitchen": {"c": 21}, "hall": 18}})
        );
    }

    /// Injected messages go under "_injected"; a source no longer listed is dropped.
    #[test]
    fn injected_and_removed_sources() {
        let mut node = TestNode::new(json!({"latest": {"old": 1, "hall": 2, "_injected": 3}}));
        node.sources = vec!["hall".to_owned()];
        assert_eq!(
            node.call(&Merge, json!("x")),
            Ok(vec![json!({"hall": 2, "_injected": "x"})])
        );
        assert_eq!(
            node.attrs(),
            json!({"latest": {"hall": 2, "_injected": "x"}})
        );
    }

    /// A wrong-typed latest is an error that changes nothing.
    #[test]
    fn wrong_typed_state() {
        let mut node = TestNode::new(json!({"latest": [1]}));
        assert_eq!(
            node.error(&Merge, json!(1)),
            "attribute \"latest\" must be an object, got an array"
        );
        assert_eq!(node.attrs(), json!({"latest": [1]}));
    }
}
