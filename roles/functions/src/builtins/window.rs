//! `window`: batches of `size` values.

use serde_json::Value;

use super::{field_param, integer_setting};
use crate::function::{Function, FunctionError, Input, NodeContext, Param, ParamKind};

/// The batch size when `size` is not set.
const DEFAULT_SIZE: u64 = 10;

/// Collects the value at `field`; every `size` messages outputs the batch as an array.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window;

impl Function for Window {
    fn name(&self) -> &str {
        "window"
    }

    fn description(&self) -> &str {
        "Collects the values at `field`; every `size` messages outputs the last `size` as an \
         array and starts over."
    }

    fn params(&self) -> Vec<Param> {
        vec![
            field_param(),
            Param::setting(
                "size",
                ParamKind::Integer,
                "How many values each output holds.",
            )
            .with_default(DEFAULT_SIZE)
            .with_minimum(1),
            Param::state(
                "values",
                ParamKind::Array,
                "State: the values collected since the last output, oldest first.",
            ),
        ]
    }

    fn call(
        &self,
        input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        let size = integer_setting(ctx, "size", DEFAULT_SIZE, 1)?;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let value = ctx.field(input.data)?.clone();
        let mut values = ctx.attr_array("values")?.cloned().unwrap_or_default();
        values.push(value);
        if values.len() < size {
            ctx.set_attr("values", values);
            return Ok(Vec::new());
        }
        // A size made smaller since the last message drops the oldest values.
        values.drain(..values.len() - size);
        ctx.set_attr("values", Vec::<Value>::new());
        Ok(vec![Value::Array(values)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::TestNode;
    use serde_json::json;

    /// Every size-th message outputs the batch and clears it; others output nothing.
    #[test]
    fn batches_of_size() {
        let mut node = TestNode::new(json!({"field": "/v", "size": 3}));
        let outputs: Vec<Vec<Value>> = (1..=7)
            .map(|v| node.call(&Window, json!({ "v": v })).unwrap())
            .collect();
        assert_eq!(
            outputs,
            vec![
                vec![],
                vec![],
                vec![json!([1, 2, 3])],
                vec![],
                vec![],
                vec![json!([4, 5, 6])],
                vec![],
            ]
        );
        assert_eq!(
            node.attrs(),
            json!({"field": "/v", "size": 3, "values": [7]})
        );
    }

    /// Size 1 outputs each value as a one-element array; any JSON value can be collected.
    #[test]
    fn size_one_and_any_values() {
        let mut node = TestNode::new(json!({"size": 1}));
        assert_eq!(
            node.call(&Window, json!({"a": null})),
            Ok(vec![json!([{"a": null}])])
        );
        assert_eq!(node.attrs(), json!({"size": 1, "values": []}));
    }

    /// A size lowered below what is held outputs the newest size values at once.
    #[test]
    fn lowered_size() {
        let mut node = TestNode::new(json!({"size": 2, "values": [1, 2, 3, 4]}));
        assert_eq!(node.call(&Window, json!(5)), Ok(vec![json!([4, 5])]));
        assert_eq!(node.attrs(), json!({"size": 2, "values": []}));
    }

    /// The default size is 10.
    #[test]
    fn default_size() {
        let mut node = TestNode::new(json!({}));
        for value in 1..10 {
            assert_eq!(node.call(&Window, json!(value)), Ok(vec![]));
        }
        assert_eq!(
            node.call(&Window, json!(10)),
            Ok(vec![json!([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])])
        );
    }

    /// A bad size, a wrong-typed values or a missing field is an error that changes nothing.
    #[test]
    fn errors() {
        let mut node = TestNode::new(json!({"size": 0}));
        assert_eq!(
            node.error(&Window, json!(1)),
            "attribute \"size\" must be a positive integer, got 0"
        );
        let mut node = TestNode::new(json!({"values": {}}));
        assert_eq!(
            node.error(&Window, json!(1)),
            "attribute \"values\" must be an array, got an object"
        );
        let mut node = TestNode::new(json!({"field": "/v", "values": [1]}));
        assert_eq!(
            node.error(&Window, json!({})),
            "field \"/v\" is missing from the message"
        );
        assert_eq!(node.attrs(), json!({"field": "/v", "values": [1]}));
    }
}
