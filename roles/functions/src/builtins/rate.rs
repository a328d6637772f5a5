//! `rate`: messages per second over a sliding time window.

use serde_json::{json, Value};

use super::{bad_item, integer_setting};
use crate::function::{
    finite_number, Function, FunctionError, Input, NodeContext, Param, ParamKind,
};

/// The window length in milliseconds when `window_ms` is not set.
const DEFAULT_WINDOW_MS: u64 = 1000;

/// Outputs `{"rate": r}`, the messages per second received in the last `window_ms`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate;

impl Function for Rate {
    fn name(&self) -> &str {
        "rate"
    }

    fn description(&self) -> &str {
        "Outputs {\"rate\"}, the messages per second received over the last `window_ms`."
    }

    fn params(&self) -> Vec<Param> {
        vec![
            Param::setting(
                "window_ms",
                ParamKind::Integer,
                "The length of the sliding window, in milliseconds.",
            )
            .with_default(DEFAULT_WINDOW_MS)
            .with_minimum(1),
            Param::state(
                "times",
                ParamKind::Array,
                "State: the arrival times (Unix ms) of the messages in the window, this one \
                 included, oldest first.",
            ),
        ]
    }

    fn call(
        &self,
        _input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        let window_ms = integer_setting(ctx, "window_ms", DEFAULT_WINDOW_MS, 1)?;
        let now_ms = ctx.now_ms;
        // The window is (now - window_ms, now]: a message exactly window_ms old has left it.
        let start = i128::from(now_ms) - i128::from(window_ms);
        let held = ctx.attr_array("times")?.map(Vec::as_slice).unwrap_or(&[]);
        let mut times = Vec::with_capacity(held.len() + 1);
        for (index, item) in held.iter().enumerate() {
            let time = item
                .as_i64()
                .ok_or_else(|| bad_item("times", "integers (Unix ms)", index, item))?;
            if i128::from(time) > start {
                times.push(time);
            }
        }
        times.push(now_ms);
        let rate = finite_number("rate", times.len() as f64 * 1000.0 / window_ms as f64)?;
        ctx.set_attr("times", times);
        Ok(vec![json!({ "rate": rate })])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::TestNode;

    /// rate counts the messages in the last window_ms and scales to per second; the boundary is
    /// exclusive.
    #[test]
    fn counts_messages_in_the_window() {
        let mut node = TestNode::new(json!({"window_ms": 2000}));
        let rates: Vec<Value> = [1000, 1500, 2500, 3000, 3500]
            .iter()
            .map(|now| node.call_at(&Rate, json!({}), *now).unwrap().remove(0))
            .collect();
        assert_eq!(
            rates,
            vec![
                json!({"rate": 0.5}),
                json!({"rate": 1.0}),
                json!({"rate": 1.5}),
                // 1000 is exactly 2000 ms old at 3000: it has left the window.
                json!({"rate": 1.5}),
                json!({"rate": 1.5}),
            ]
        );
        assert_eq!(
            node.attrs(),
            json!({"window_ms": 2000, "times": [2500, 3000, 3500]})
        );
    }

    /// After a quiet spell longer than the window, only the new message counts.
    #[test]
    fn quiet_spell_empties_the_window() {
        let mut node = TestNode::new(json!({"times": [1, 2, 3]}));
        assert_eq!(
            node.call_at(&Rate, json!(null), 60_000),
            Ok(vec![json!({"rate": 1.0})])
        );
        assert_eq!(node.attrs(), json!({"times": [60_000]}));
    }

    /// A bad window_ms or a bad stored time is an error that changes nothing.
    #[test]
    fn errors() {
        let mut node = TestNode::new(json!({"window_ms": 0}));
        assert_eq!(
            node.error(&Rate, json!(1)),
            "attribute \"window_ms\" must be a positive integer, got 0"
        );
        let mut node = TestNode::new(json!({"times": [5, "x"]}));
        assert_eq!(
            node.error(&Rate, json!(1)),
            "attribute \"times\" must be an array of integers (Unix ms), but item 1 is \"x\""
        );
        assert_eq!(node.attrs(), json!({"times": [5, "x"]}));
    }
}
