//! `change`: passes a message on when the value at `field` differs from the last one.

use serde_json::Value;

use super::{field_param, json_equal};
use crate::function::{Function, FunctionError, Input, NodeContext, Param, ParamKind};

/// Outputs the message when the value at `field` differs from the last one seen.
#[derive(Debug, Clone, Copy, Default)]
pub struct Change;

impl Function for Change {
    fn name(&self) -> &str {
        "change"
    }

    fn description(&self) -> &str {
        "Outputs the message when the value at `field` differs from the previous message's."
    }

    fn params(&self) -> Vec<Param> {
        vec![
            field_param(),
            Param::state(
                "last",
                ParamKind::Any,
                "State: the value at `field` in the last message that was output.",
            ),
        ]
    }

    fn call(
        &self,
        input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        let value = ctx.field(input.data)?;
        let changed = ctx.attr("last").is_none_or(|last| !json_equal(last, value));
        if !changed {
            return Ok(Vec::new());
        }
        ctx.set_attr("last", value.clone());
        Ok(vec![input.data.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::TestNode;
    use serde_json::json;

    /// The first message always passes; later ones pass only when the field changes (1 == 1.0).
    #[test]
    fn passes_changes_only() {
        let mut node = TestNode::new(json!({"field": "/on"}));
        let messages = [
            json!({"on": true, "t": 1}),
            json!({"on": true, "t": 2}),
            json!({"on": false, "t": 3}),
            json!({"on": true, "t": 4}),
        ];
        let outputs: Vec<Vec<Value>> = messages
            .iter()
            .map(|message| node.call(&Change, message.clone()).unwrap())
            .collect();
        assert_eq!(
            outputs,
            vec![
                vec![messages[0].clone()],
                vec![],
                vec![messages[2].clone()],
                vec![messages[3].clone()],
            ]
        );
        assert_eq!(node.attrs(), json!({"field": "/on", "last": true}));
        let mut node = TestNode::new(json!({"last": 1}));
        assert_eq!(node.call(&Change, json!(1.0)), Ok(vec![]));
        assert_eq!(node.attrs(), json!({"last": 1}));
    }

    /// A stored null is a value: a null field equals it; objects compare deeply.
    #[test]
    fn null_and_objects() {
        let mut node = TestNode::new(json!({"last": null}));
        assert_eq!(node.call(&Change, json!(null)), Ok(vec![]));
        assert_eq!(
            node.call(&Change, json!({"a": 1})),
            Ok(vec![json!({"a": 1})])
        );
        assert_eq!(node.call(&Change, json!({"a": 1.0})), Ok(vec![]));
        assert_eq!(node.attrs(), json!({"last": {"a": 1}}));
    }

    /// A missing field is an error that changes nothing.
    #[test]
    fn missing_field() {
        let mut node = TestNode::new(json!({"field": "/x", "last": 1}));
        assert_eq!(
            node.error(&Change, json!({"y": 2})),
            "field \"/x\" is missing from the message"
        );
        assert_eq!(node.attrs(), json!({"field": "/x", "last": 1}));
    }
}
