//! `average`: the running mean of the numbers at `field`.

use serde_json::{json, Value};

use super::field_param;
use crate::function::{
    finite_number, Function, FunctionError, Input, NodeContext, Param, ParamKind,
};

/// Keeps the running mean of the number at `field`; outputs `{"mean": m, "count": n}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Average;

impl Function for Average {
    fn name(&self) -> &str {
        "average"
    }

    fn description(&self) -> &str {
        "Outputs {\"mean\", \"count\"}, the running mean of the numbers at `field`."
    }

    fn params(&self) -> Vec<Param> {
        vec![
            field_param(),
            Param::state(
                "count",
                ParamKind::Integer,
                "State: how many numbers the mean covers.",
            ),
            Param::state("mean", ParamKind::Number, "State: the mean so far."),
        ]
    }

    fn call(
        &self,
        input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        let number = ctx.field_f64(input.data)?;
        let count = ctx.attr_u64("count")?;
        let mean = ctx.attr_f64("mean")?;
        // Both are needed to go on; deleting either one restarts the average.
        let (count, mean) = match (count, mean) {
            (Some(count), Some(mean)) => (count, mean),
            _ => (0, 0.0),
        };
        let count = count.checked_add(1).ok_or_else(|| {
            FunctionError::new(format!(
                "attribute \"count\" cannot grow past {}; reset it",
                u64::MAX
            ))
        })?;
        let mean = finite_number("mean", next_mean(mean, number, count))?;
        ctx.set_attr("count", count);
        ctx.set_attr("mean", mean.clone());
        Ok(vec![json!({ "mean": mean, "count": count })])
    }
}

/// The mean of `count` numbers given the mean of the first `count - 1` and the last one.
///
/// The incremental update `mean + (number - mean) / count` never sums the numbers, so it neither
/// overflows nor loses small values against a large total; when `number - mean` itself overflows
/// (values near `f64::MAX` of opposite signs) the terms are divided first.
pub(crate) fn next_mean(mean: f64, number: f64, count: u64) -> f64 {
    if count <= 1 {
        return number;
    }
    let count = count as f64;
    let delta = number - mean;
    if delta.is_finite() {
        mean + delta / count
    } else {
        mean + (number / count - mean / count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::TestNode;

    /// average outputs the exact running mean and count, and stores both.
    #[test]
    fn running_mean() {
        let mut node = TestNode::new(json!({"field": "/celsius"}));
        assert_eq!(
            node.call(&Average, json!({"celsius": 20})),
            Ok(vec![json!({"mean": 20.0, "count": 1})])
        );
        assert_eq!(
            node.call(&Average, json!({"celsius": 22})),
            Ok(vec![json!({"mean": 21.0, "count": 2})])
        );
        assert_eq!(
            node.call(&Average, json!({"celsius": 27})),
            Ok(vec![json!({"mean": 23.0, "count": 3})])
        );
        assert_eq!(
            node.attrs(),
            json!({"field": "/celsius", "count": 3, "mean": 23.0})
        );
    }

    /// Deleting `mean` (or `count`) restarts the average from the next number.
    #[test]
    fn restarts_when_state_is_partial() {
        let mut node = TestNode::new(json!({"count": 7}));
        assert_eq!(
            node.call(&Average, json!(4)),
            Ok(vec![json!({"mean": 4.0, "count": 1})])
        );
        assert_eq!(node.attrs(), json!({"count": 1, "mean": 4.0}));
    }

    /// Wrong-typed state and non-number fields are errors that change nothing.
    #[test]
    fn errors() {
        let mut node = TestNode::new(json!({"count": 2, "mean": "x"}));
        assert_eq!(
            node.error(&Average, json!(1)),
            "attribute \"mean\" must be a number, got \"x\""
        );
        assert_eq!(node.attrs(), json!({"count": 2, "mean": "x"}));
        let mut node = TestNode::new(json!({"field": "/c"}));
        assert_eq!(
            node.error(&Average, json!({"c": "20"})),
            "field \"/c\" is a string, expected a number"
        );
        assert_eq!(node.attrs(), json!({"field": "/c"}));
    }

    /// Numbers near the largest float average without overflowing.
    #[test]
    fn extreme_values_do_not_overflow() {
        assert_eq!(next_mean(f64::MAX, -f64::MAX, 2), 0.0);
        assert_eq!(next_mean(f64::MAX, f64::MAX, 2), f64::MAX);
        assert_eq!(next_mean(1.0, 2.0, 1), 2.0);
    }
}
