//! `pass`: outputs every message unchanged.

use serde_json::Value;

use crate::function::{Function, FunctionError, Input, NodeContext, Param};

/// Outputs every message unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pass;

impl Function for Pass {
    fn name(&self) -> &str {
        "pass"
    }

    fn description(&self) -> &str {
        "Outputs every message unchanged."
    }

    fn params(&self) -> Vec<Param> {
        Vec::new()
    }

    fn call(
        &self,
        input: &Input<'_>,
        _ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        Ok(vec![input.data.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::TestNode;
    use serde_json::json;

    /// pass outputs each message as it came, whatever its type, and keeps no state.
    #[test]
    fn outputs_the_message() {
        let mut node = TestNode::new(json!({"note": "mine"}));
        for message in [json!({"a": [1, 2]}), json!(3), json!(null), json!("text")] {
            assert_eq!(node.call(&Pass, message.clone()), Ok(vec![message]));
        }
        assert_eq!(node.attrs(), json!({"note": "mine"}));
    }
}
