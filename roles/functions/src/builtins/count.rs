//! `count`: counts the messages the node received.

use serde_json::{json, Value};

use crate::function::{Function, FunctionError, Input, NodeContext, Param, ParamKind};

/// Counts messages; outputs `{"count": n}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

impl Function for Count {
    fn name(&self) -> &str {
        "count"
    }

    fn description(&self) -> &str {
        "Counts the messages received; outputs {\"count\"}."
    }

    fn params(&self) -> Vec<Param> {
        vec![Param::state(
            "count",
            ParamKind::Integer,
            "State: how many messages the node has received.",
        )]
    }

    fn call(
        &self,
        _input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        let count = ctx
            .attr_u64("count")?
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| {
                FunctionError::new(format!(
                    "attribute \"count\" cannot grow past {}; reset it",
                    u64::MAX
                ))
            })?;
        ctx.set_attr("count", count);
        Ok(vec![json!({ "count": count })])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::TestNode;

    /// count outputs 1, 2, 3 whatever the messages hold, and stores the count as an integer.
    #[test]
    fn counts_every_message() {
        let mut node = TestNode::new(json!({}));
        assert_eq!(
            node.call(&Count, json!({"a": 1})),
            Ok(vec![json!({"count": 1})])
        );
        assert_eq!(
            node.call(&Count, json!(null)),
            Ok(vec![json!({"count": 2})])
        );
        assert_eq!(node.call(&Count, json!("x")), Ok(vec![json!({"count": 3})]));
        assert_eq!(node.attrs(), json!({"count": 3}));
    }

    /// count continues from a count the user set.
    #[test]
    fn continues_from_a_set_count() {
        let mut node = TestNode::new(json!({"count": 41}));
        assert_eq!(node.call(&Count, json!({})), Ok(vec![json!({"count": 42})]));
    }

    /// A count PATCHed to a string or a float is an error naming the attribute; state is unchanged.
    #[test]
    fn wrong_typed_count() {
        let mut node = TestNode::new(json!({"count": "abc"}));
        assert_eq!(
            node.error(&Count, json!({})),
            "attribute \"count\" must be a non-negative integer, got \"abc\""
        );
        assert_eq!(node.attrs(), json!({"count": "abc"}));
        let mut node = TestNode::new(json!({"count": 1.5}));
        assert_eq!(
            node.error(&Count, json!({})),
            "attribute \"count\" must be a non-negative integer, got 1.5"
        );
    }

    /// count refuses to wrap around at the largest integer.
    #[test]
    fn overflow_is_an_error() {
        let mut node = TestNode::new(json!({"count": u64::MAX}));
        assert_eq!(
            node.error(&Count, json!({})),
            "attribute \"count\" cannot grow past 18446744073709551615; reset it"
        );
        assert_eq!(node.attrs(), json!({"count": u64::MAX}));
    }
}
