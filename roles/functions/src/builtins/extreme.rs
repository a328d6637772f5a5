//! `min` and `max`: the smallest and largest number seen at `field`.

use std::cmp::Ordering;

use serde_json::{json, Value};

use super::{compare_numbers, field_param};
use crate::function::{Function, FunctionError, Input, NodeContext, Param, ParamKind};

/// Keeps the smallest number seen at `field`; outputs `{"min": v}` on every message.
#[derive(Debug, Clone, Copy, Default)]
pub struct Min;

/// Keeps the largest number seen at `field`; outputs `{"max": v}` on every message.
#[derive(Debug, Clone, Copy, Default)]
pub struct Max;

impl Function for Min {
    fn name(&self) -> &str {
        "min"
    }

    fn description(&self) -> &str {
        "Outputs {\"min\"}, the smallest number seen at `field`, on every message."
    }

    fn params(&self) -> Vec<Param> {
        params("min", "smallest")
    }

    fn call(
        &self,
        input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        extreme(input, ctx, "min", Ordering::Less)
    }
}

impl Function for Max {
    fn name(&self) -> &str {
        "max"
    }

    fn description(&self) -> &str {
        "Outputs {\"max\"}, the largest number seen at `field`, on every message."
    }

    fn params(&self) -> Vec<Param> {
        params("max", "largest")
    }

    fn call(
        &self,
        input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        extreme(input, ctx, "max", Ordering::Greater)
    }
}

fn params(name: &'static str, adjective: &str) -> Vec<Param> {
    vec![
        field_param(),
        Param::state(
            name,
            ParamKind::Number,
            format!("State: the {adjective} number seen so far, as it came."),
        ),
    ]
}

/// Replaces the stored `name` with the number at `field` when it compares as `replace_when`.
fn extreme(
    input: &Input<'_>,
    ctx: &mut NodeContext<'_>,
    name: &str,
    replace_when: Ordering,
) -> Result<Vec<Value>, FunctionError> {
    let number = ctx.field_number(input.data)?;
    let kept = match ctx.attr_number(name)? {
        Some(current) if compare_numbers(number, current) != replace_when => current.clone(),
        _ => number.clone(),
    };
    ctx.set_attr(name, kept.clone());
    Ok(vec![json!({ name: kept })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::TestNode;

    /// min outputs the current smallest on every message, keeping numbers as they came.
    #[test]
    fn min_tracks_the_smallest() {
        let mut node = TestNode::new(json!({"field": "/v"}));
        let outputs: Vec<Value> = [5.0, 7.0, 2.5, 2.5, 3.0]
            .iter()
            .map(|v| node.call(&Min, json!({ "v": v })).unwrap().remove(0))
            .collect();
        assert_eq!(
            outputs,
            vec![
                json!({"min": 5.0}),
                json!({"min": 5.0}),
                json!({"min": 2.5}),
                json!({"min": 2.5}),
                json!({"min": 2.5}),
            ]
        );
        assert_eq!(node.attrs(), json!({"field": "/v", "min": 2.5}));
    }

    /// max outputs the current largest, and integers stay integers.
    #[test]
    fn max_tracks_the_largest() {
        let mut node = TestNode::new(json!({}));
        assert_eq!(node.call(&Max, json!(-3)), Ok(vec![json!({"max": -3})]));
        assert_eq!(node.call(&Max, json!(10)), Ok(vec![json!({"max": 10})]));
        assert_eq!(node.call(&Max, json!(9.9)), Ok(vec![json!({"max": 10})]));
        assert_eq!(node.attrs(), json!({"max": 10}));
    }

    /// A wrong-typed stored extreme or a non-number is an error that changes nothing.
    #[test]
    fn errors() {
        let mut node = TestNode::new(json!({"max": [1]}));
        assert_eq!(
            node.error(&Max, json!(1)),
            "attribute \"max\" must be a number, got an array"
        );
        assert_eq!(node.attrs(), json!({"max": [1]}));
        let mut node = TestNode::new(json!({}));
        assert_eq!(
            node.error(&Min, json!("1")),
            "the message is a string, expected a number"
        );
        assert_eq!(node.attrs(), json!({}));
    }
}
