//! `throttle`: passes at most one message per interval.

use serde_json::Value;

use super::integer_setting;
use crate::function::{Function, FunctionError, Input, NodeContext, Param, ParamKind};

/// The interval in milliseconds when `interval_ms` is not set.
const DEFAULT_INTERVAL_MS: u64 = 1000;

/// Outputs the message when at least `interval_ms` passed since the last message it output.
#[derive(Debug, Clone, Copy, Default)]
pub struct Throttle;

impl Function for Throttle {
    fn name(&self) -> &str {
        "throttle"
    }

    fn description(&self) -> &str {
        "Outputs the message when at least `interval_ms` passed since the last one output; \
         drops it otherwise."
    }

    fn params(&self) -> Vec<Param> {
        vec![
            Param::setting(
                "interval_ms",
                ParamKind::Integer,
                "The least time between two outputs, in milliseconds; 0 passes everything.",
            )
            .with_default(DEFAULT_INTERVAL_MS)
            .with_minimum(0),
            Param::state(
                "last_emit",
                ParamKind::Integer,
                "State: when (Unix ms) the last message was output.",
            ),
        ]
    }

    fn call(
        &self,
        input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        let interval_ms = integer_setting(ctx, "interval_ms", DEFAULT_INTERVAL_MS, 0)?;
        let due = match ctx.attr_i64("last_emit")? {
            None => true,
            Some(last_emit) => {
                i128::from(ctx.now_ms) - i128::from(last_emit) >= i128::from(interval_ms)
            }
        };
        if !due {
            return Ok(Vec::new());
        }
        ctx.set_attr("last_emit", ctx.now_ms);
        Ok(vec![input.data.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::TestNode;
    use serde_json::json;

    /// The first message passes; later ones pass once interval_ms has passed, boundary included.
    #[test]
    fn one_per_interval() {
        let mut node = TestNode::new(json!({"interval_ms": 1000}));
        let passed: Vec<bool> = [5000, 5999, 6000, 6500, 7001]
            .iter()
            .map(|now| {
                !node
                    .call_at(&Throttle, json!({"t": now}), *now)
                    .unwrap()
                    .is_empty()
            })
            .collect();
        assert_eq!(passed, vec![true, false, true, false, true]);
        assert_eq!(
            node.attrs(),
            json!({"interval_ms": 1000, "last_emit": 7001})
        );
        assert_eq!(
            node.call_at(&Throttle, json!({"t": 9000}), 9000),
            Ok(vec![json!({"t": 9000})])
        );
    }

    /// The default interval is 1000 ms; 0 passes every message.
    #[test]
    fn default_and_zero_interval() {
        let mut node = TestNode::new(json!({"last_emit": 0}));
        assert_eq!(node.call_at(&Throttle, json!(1), 999), Ok(vec![]));
        assert_eq!(node.call_at(&Throttle, json!(1), 1000), Ok(vec![json!(1)]));
        let mut node = TestNode::new(json!({"interval_ms": 0}));
        for now in [10, 10, 10] {
            assert_eq!(node.call_at(&Throttle, json!(2), now), Ok(vec![json!(2)]));
        }
    }

    /// A clock that stepped back holds messages until it passes last_emit + interval_ms.
    #[test]
    fn clock_stepping_back() {
        let mut node = TestNode::new(json!({"interval_ms": 100, "last_emit": 5000}));
        assert_eq!(node.call_at(&Throttle, json!(1), 4000), Ok(vec![]));
        assert_eq!(node.attrs(), json!({"interval_ms": 100, "last_emit": 5000}));
    }

    /// A negative interval or a wrong-typed last_emit is an error that changes nothing.
    #[test]
    fn errors() {
        let mut node = TestNode::new(json!({"interval_ms": -1}));
        assert_eq!(
            node.error(&Throttle, json!(1)),
            "attribute \"interval_ms\" must be a non-negative integer, got -1"
        );
        let mut node = TestNode::new(json!({"last_emit": "yesterday"}));
        assert_eq!(
            node.error(&Throttle, json!(1)),
            "attribute \"last_emit\" must be an integer, got \"yesterday\""
        );
        assert_eq!(node.attrs(), json!({"last_emit": "yesterday"}));
    }
}
