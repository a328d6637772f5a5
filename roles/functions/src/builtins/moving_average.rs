//! `moving-average`: the mean of the last `window` numbers at `field`.

use serde_json::{json, Value};

use super::average::next_mean;
use super::{field_param, integer_setting, number_array, to_f64};
use crate::function::{
    finite_number, Function, FunctionError, Input, NodeContext, Param, ParamKind,
};

/// The number of values averaged when `window` is not set.
const DEFAULT_WINDOW: u64 = 10;

/// Outputs `{"mean": m}` over the last `window` numbers at `field`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MovingAverage;

impl Function for MovingAverage {
    fn name(&self) -> &str {
        "moving-average"
    }

    fn description(&self) -> &str {
        "Outputs {\"mean\"} of the last `window` numbers at `field`."
    }

    fn params(&self) -> Vec<Param> {
        vec![
            field_param(),
            Param::setting(
                "window",
                ParamKind::Integer,
                "How many of the most recent values to average.",
            )
            .with_default(DEFAULT_WINDOW)
            .with_minimum(1),
            Param::state(
                "values",
                ParamKind::Array,
                "State: the last `window` numbers, oldest first.",
            ),
        ]
    }

    fn call(
        &self,
        input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        let window = integer_setting(ctx, "window", DEFAULT_WINDOW, 1)?;
        let number = ctx.field_number(input.data)?.clone();
        let mut values = number_array(ctx, "values")?;
        values.push(number);
        // A window made smaller since the last message drops the oldest values at once.
        let excess = values
            .len()
            .saturating_sub(usize::try_from(window).unwrap_or(usize::MAX));
        values.drain(..excess);
        let mut mean = 0.0;
        for (index, value) in values.iter().enumerate() {
            mean = next_mean(mean, to_f64(value), index as u64 + 1);
        }
        let mean = finite_number("mean", mean)?;
        ctx.set_attr("values", values);
        Ok(vec![json!({ "mean": mean })])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::TestNode;

    /// The mean covers at most `window` values; the oldest drop out at the boundary.
    #[test]
    fn slides_over_the_window() {
        let mut node = TestNode::new(json!({"field": "/v", "window": 3}));
        let means: Vec<Value> = [1, 2, 3, 4, 8]
            .iter()
            .map(|v| {
                node.call(&MovingAverage, json!({ "v": v }))
                    .unwrap()
                    .remove(0)
            })
            .collect();
        assert_eq!(
            means,
            vec![
                json!({"mean": 1.0}),
                json!({"mean": 1.5}),
                json!({"mean": 2.0}),
                json!({"mean": 3.0}),
                json!({"mean": 5.0}),
            ]
        );
        assert_eq!(
            node.attrs(),
            json!({"field": "/v", "window": 3, "values": [3, 4, 8]})
        );
    }

    /// The default window is 10, and a window of 1 outputs each number as its own mean.
    #[test]
    fn default_and_smallest_window() {
        let mut node = TestNode::new(json!({}));
        for value in 0..12 {
            node.call(&MovingAverage, json!(value)).unwrap();
        }
        assert_eq!(
            node.attrs(),
            json!({"values": [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]})
        );
        let mut node = TestNode::new(json!({"window": 1, "values": [100, 200]}));
        assert_eq!(
            node.call(&MovingAverage, json!(7)),
            Ok(vec![json!({"mean": 7.0})])
        );
        assert_eq!(node.attrs(), json!({"window": 1, "values": [7]}));
    }

    /// A bad window, a bad stored item or a non-number message is an error that changes nothing.
    #[test]
    fn errors() {
        for window in [json!(0), json!(2.0), json!("3")] {
            let mut node = TestNode::new(json!({ "window": window }));
            assert_eq!(
                node.error(&MovingAverage, json!(1)),
                format!("attribute \"window\" must be a positive integer, got {window}")
            );
            assert_eq!(node.attrs(), json!({ "window": window }));
        }
        let mut node = TestNode::new(json!({"values": [1, "two"]}));
        assert_eq!(
            node.error(&MovingAverage, json!(1)),
            "attribute \"values\" must be an array of numbers, but item 1 is \"two\""
        );
        let mut node = TestNode::new(json!({"values": 3}));
        assert_eq!(
            node.error(&MovingAverage, json!(1)),
            "attribute \"values\" must be an array, got 3"
        );
        assert_eq!(node.attrs(), json!({"values": 3}));
    }
}
