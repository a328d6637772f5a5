//! `pick`: outputs the value at `field`.

use serde_json::Value;

use super::field_param;
use crate::function::{Function, FunctionError, Input, NodeContext, Param};

/// Outputs the value at `field`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pick;

impl Function for Pick {
    fn name(&self) -> &str {
        "pick"
    }

    fn description(&self) -> &str {
        "Outputs the value at `field`."
    }

    fn params(&self) -> Vec<Param> {
        vec![field_param()]
    }

    fn call(
        &self,
        input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        Ok(vec![ctx.field(input.data)?.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::TestNode;
    use serde_json::json;

    /// pick outputs the value at the pointer, objects and arrays included.
    #[test]
    fn outputs_the_value() {
        let mut node = TestNode::new(json!({"field": "/room/temps"}));
        assert_eq!(
            node.call(&Pick, json!({"room": {"temps": [20, 21]}})),
            Ok(vec![json!([20, 21])])
        );
        assert_eq!(node.attrs(), json!({"field": "/room/temps"}));
    }

    /// pick with no field outputs the whole message; array indexes work in pointers.
    #[test]
    fn default_field_and_indexes() {
        let mut node = TestNode::new(json!({}));
        assert_eq!(node.call(&Pick, json!({"a": 1})), Ok(vec![json!({"a": 1})]));
        let mut node = TestNode::new(json!({"field": "/1"}));
        assert_eq!(node.call(&Pick, json!(["x", "y"])), Ok(vec![json!("y")]));
    }

    /// pick fails naming the pointer when the field is missing, and when `field` is no pointer.
    #[test]
    fn missing_field_and_bad_setting() {
        let mut node = TestNode::new(json!({"field": "/celsius"}));
        assert_eq!(
            node.error(&Pick, json!({"kelvin": 300})),
            "field \"/celsius\" is missing from the message"
        );
        let mut node = TestNode::new(json!({"field": 3}));
        assert_eq!(
            node.error(&Pick, json!({})),
            "attribute \"field\" must be a JSON pointer: \"\" for the whole message, or starting \
             with \"/\" like \"/celsius\", got 3"
        );
    }
}
