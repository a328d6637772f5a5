//! `sum`: the running total of the numbers at `field`.

use serde_json::{json, Value};

use super::{field_param, Arith};
use crate::function::{Function, FunctionError, Input, NodeContext, Param, ParamKind};

/// Adds the number at `field` to a running total; outputs `{"sum": s}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sum;

impl Function for Sum {
    fn name(&self) -> &str {
        "sum"
    }

    fn description(&self) -> &str {
        "Outputs {\"sum\"}, the running total of the numbers at `field`."
    }

    fn params(&self) -> Vec<Param> {
        vec![
            field_param(),
            Param::state(
                "sum",
                ParamKind::Number,
                "State: the total so far; an integer while every number added was one.",
            ),
        ]
    }

    fn call(
        &self,
        input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        let number = Arith::of(ctx.field_number(input.data)?);
        let total = match ctx.attr_number("sum")? {
            Some(sum) => Arith::of(sum).add(number),
            None => number,
        };
        let total = total.to_value("sum")?;
        ctx.set_attr("sum", total.clone());
        Ok(vec![json!({ "sum": total })])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::TestNode;

    /// sum keeps an integer total for integers and turns to a float at the first fraction.
    #[test]
    fn running_total() {
        let mut node = TestNode::new(json!({"field": "/n"}));
        assert_eq!(
            node.call(&Sum, json!({"n": 2})),
            Ok(vec![json!({"sum": 2})])
        );
        assert_eq!(
            node.call(&Sum, json!({"n": -5})),
            Ok(vec![json!({"sum": -3})])
        );
        assert_eq!(
            node.call(&Sum, json!({"n": 0.5})),
            Ok(vec![json!({"sum": -2.5})])
        );
        assert_eq!(
            node.call(&Sum, json!({"n": 3})),
            Ok(vec![json!({"sum": 0.5})])
        );
        assert_eq!(node.attrs(), json!({"field": "/n", "sum": 0.5}));
    }

    /// A missing or non-number field and a wrong-typed total are errors that change nothing.
    #[test]
    fn errors() {
        let mut node = TestNode::new(json!({"field": "/n", "sum": 4}));
        assert_eq!(
            node.error(&Sum, json!({"m": 1})),
            "field \"/n\" is missing from the message"
        );
        assert_eq!(
            node.error(&Sum, json!({"n": [1]})),
            "field \"/n\" is an array, expected a number"
        );
        assert_eq!(node.attrs(), json!({"field": "/n", "sum": 4}));
        let mut node = TestNode::new(json!({"sum": "4"}));
        assert_eq!(
            node.error(&Sum, json!(1)),
            "attribute \"sum\" must be a number, got \"4\""
        );
    }

    /// Integer overflow falls back to a float; a float overflow to infinity is an error.
    #[test]
    fn overflow() {
        let mut node = TestNode::new(json!({"sum": i64::MAX}));
        assert_eq!(
            node.call(&Sum, json!(1)),
            Ok(vec![json!({"sum": 9223372036854775808.0})])
        );
        let mut node = TestNode::new(json!({"sum": 1.7e308}));
        assert_eq!(
            node.error(&Sum, json!(1.7e308)),
            "the sum is not a finite number (inf); JSON can only carry finite numbers"
        );
        assert_eq!(node.attrs(), json!({"sum": 1.7e308}));
    }
}
