//! `threshold`: reports when a number crosses above or below set limits.

use std::cmp::Ordering;

use serde_json::{json, Value};

use super::{compare_numbers, field_param};
use crate::function::{Function, FunctionError, Input, NodeContext, Param, ParamKind};

/// The states a value can be in.
const STATES: [&str; 3] = ["above", "below", "normal"];

/// Outputs `{"state", "value"}` when the value at `field` moves between above, below and normal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Threshold;

impl Function for Threshold {
    fn name(&self) -> &str {
        "threshold"
    }

    fn description(&self) -> &str {
        "Outputs {\"state\", \"value\"} when the number at `field` changes state: \"above\" \
         (greater than `above`), \"below\" (less than `below`) or \"normal\"."
    }

    fn params(&self) -> Vec<Param> {
        vec![
            field_param(),
            Param::setting(
                "above",
                ParamKind::Number,
                "A value greater than this is \"above\". Set `above`, `below` or both.",
            ),
            Param::setting(
                "below",
                ParamKind::Number,
                "A value less than this is \"below\". Set `above`, `below` or both.",
            ),
            Param::state(
                "state",
                ParamKind::one_of(&STATES),
                "State: the state last output.",
            ),
        ]
    }

    fn call(
        &self,
        input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        let above = ctx.attr_number("above")?;
        let below = ctx.attr_number("below")?;
        if let (Some(above), Some(below)) = (above, below) {
            if compare_numbers(below, above) == Ordering::Greater {
                return Err(FunctionError::new(format!(
                    "attribute \"below\" ({below}) must not be greater than \"above\" ({above})"
                )));
            }
        }
        if above.is_none() && below.is_none() {
            return Err(FunctionError::new(
                "threshold needs attribute \"above\", \"below\" or both",
            ));
        }
        let value = ctx.field_number(input.data)?;
        let state = if above.is_some_and(|above| compare_numbers(value, above) == Ordering::Greater)
        {
            "above"
        } else if below.is_some_and(|below| compare_numbers(value, below) == Ordering::Less) {
            "below"
        } else {
            "normal"
        };
        let changed = ctx.attr_choice("state", &STATES)? != Some(state);
        if !changed {
            return Ok(Vec::new());
        }
        ctx.set_attr("state", state);
        Ok(vec![json!({ "state": state, "value": value })])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::TestNode;

    /// The first message always outputs; later ones only when the state changes.
    #[test]
    fn outputs_on_change_only() {
        let mut node = TestNode::new(json!({"field": "/mean", "above": 30.0, "below": 10}));
        let outputs: Vec<Vec<Value>> = [
            json!(20),
            json!(25),
            json!(31),
            json!(30.5),
            json!(30),
            json!(10),
            json!(9.5),
            json!(9),
        ]
        .iter()
        .map(|mean| node.call(&Threshold, json!({ "mean": mean })).unwrap())
        .collect();
        assert_eq!(
            outputs,
            vec![
                vec![json!({"state": "normal", "value": 20})],
                vec![],
                vec![json!({"state": "above", "value": 31})],
                vec![],
                vec![json!({"state": "normal", "value": 30})],
                vec![],
                vec![json!({"state": "below", "value": 9.5})],
                vec![],
            ]
        );
        assert_eq!(
            node.attrs(),
            json!({"field": "/mean", "above": 30.0, "below": 10, "state": "below"})
        );
    }

    /// With only `above` set, values at or under it are normal; the limit itself is not above.
    #[test]
    fn above_only() {
        let mut node = TestNode::new(json!({"above": 5, "state": "normal"}));
        assert_eq!(node.call(&Threshold, json!(5)), Ok(vec![]));
        assert_eq!(
            node.call(&Threshold, json!(6)),
            Ok(vec![json!({"state": "above", "value": 6})])
        );
        assert_eq!(node.attrs(), json!({"above": 5, "state": "above"}));
    }

    /// With only `below` set, a value under it is below.
    #[test]
    fn below_only() {
        let mut node = TestNode::new(json!({"below": -2}));
        assert_eq!(
            node.call(&Threshold, json!(-3)),
            Ok(vec![json!({"state": "below", "value": -3})])
        );
    }

    /// Missing limits, crossed limits, non-numbers and a bad stored state are errors, with no write.
    #[test]
    fn errors() {
        let mut node = TestNode::new(json!({}));
        assert_eq!(
            node.error(&Threshold, json!(1)),
            "threshold needs attribute \"above\", \"below\" or both"
        );
        let mut node = TestNode::new(json!({"above": 10, "below": 20}));
        assert_eq!(
            node.error(&Threshold, json!(1)),
            "attribute \"below\" (20) must not be greater than \"above\" (10)"
        );
        let mut node = TestNode::new(json!({"above": "10"}));
        assert_eq!(
            node.error(&Threshold, json!(1)),
            "attribute \"above\" must be a number, got \"10\""
        );
        let mut node = TestNode::new(json!({"above": 10, "field": "/t"}));
        assert_eq!(
            node.error(&Threshold, json!({"t": true})),
            "field \"/t\" is a boolean, expected a number"
        );
        let mut node = TestNode::new(json!({"above": 10, "state": "hot"}));
        assert_eq!(
            node.error(&Threshold, json!(1)),
            "attribute \"state\" must be one of \"above\", \"below\", \"normal\", got \"hot\""
        );
        assert_eq!(node.attrs(), json!({"above": 10, "state": "hot"}));
    }
}
