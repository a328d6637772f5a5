//! `scale`: a linear transform of the number at `field`.

use serde_json::Value;

use super::{field_param, Arith};
use crate::function::{Function, FunctionError, Input, NodeContext, Param, ParamKind};

/// Outputs the number at `field` times `factor` plus `offset`, as a bare number.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scale;

impl Function for Scale {
    fn name(&self) -> &str {
        "scale"
    }

    fn description(&self) -> &str {
        "Outputs the number at `field` times `factor` plus `offset`, as a bare number."
    }

    fn params(&self) -> Vec<Param> {
        vec![
            field_param(),
            Param::setting(
                "factor",
                ParamKind::Number,
                "What the number is multiplied by.",
            )
            .with_default(1),
            Param::setting(
                "offset",
                ParamKind::Number,
                "What is added after multiplying.",
            )
            .with_default(0),
        ]
    }

    fn call(
        &self,
        input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        let factor = ctx.attr_number("factor")?.map_or(Arith::Int(1), Arith::of);
        let offset = ctx.attr_number("offset")?.map_or(Arith::Int(0), Arith::of);
        let number = Arith::of(ctx.field_number(input.data)?);
        let scaled = number.mul(factor).add(offset).to_value("scaled value")?;
        Ok(vec![scaled])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::TestNode;
    use serde_json::json;

    /// Celsius to Fahrenheit: x * 1.8 + 32, as a bare number.
    #[test]
    fn linear_transform() {
        let mut node = TestNode::new(json!({"field": "/c", "factor": 1.8, "offset": 32}));
        assert_eq!(node.call(&Scale, json!({"c": 100})), Ok(vec![json!(212.0)]));
        assert_eq!(node.call(&Scale, json!({"c": -40})), Ok(vec![json!(-40.0)]));
        assert_eq!(
            node.attrs(),
            json!({"field": "/c", "factor": 1.8, "offset": 32})
        );
    }

    /// Integers stay integers when factor and offset are integers; the defaults change nothing.
    #[test]
    fn integers_and_defaults() {
        let mut node = TestNode::new(json!({}));
        assert_eq!(node.call(&Scale, json!(7)), Ok(vec![json!(7)]));
        assert_eq!(node.call(&Scale, json!(0.25)), Ok(vec![json!(0.25)]));
        let mut node = TestNode::new(json!({"factor": 1000, "offset": -1}));
        assert_eq!(node.call(&Scale, json!(3)), Ok(vec![json!(2999)]));
    }

    /// Non-numbers, wrong-typed settings and overflow to infinity are errors.
    #[test]
    fn errors() {
        let mut node = TestNode::new(json!({"field": "/c"}));
        assert_eq!(
            node.error(&Scale, json!({"c": null})),
            "field \"/c\" is null, expected a number"
        );
        let mut node = TestNode::new(json!({"factor": "2"}));
        assert_eq!(
            node.error(&Scale, json!(1)),
            "attribute \"factor\" must be a number, got \"2\""
        );
        let mut node = TestNode::new(json!({"factor": 1e300}));
        assert_eq!(
            node.error(&Scale, json!(1e300)),
            "the scaled value is not a finite number (inf); JSON can only carry finite numbers"
        );
    }
}
