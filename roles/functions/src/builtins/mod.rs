//! The built-in node functions of SPEC §7, one file per function (`min` and `max` share one).
//!
//! Every built-in reads its settings and state first, computes its outputs, and writes state
//! last, so a message that fails leaves the attributes as they were even before the caller
//! discards the changes. Semantics, with examples, are in `docs/functions.md`.
//!
//! Layout: one file per function; this file holds what several share (the `field` parameter,
//! integer settings, number arithmetic that keeps integers, JSON comparison) and `all`.

pub mod average;
pub mod change;
pub mod count;
pub mod extreme;
pub mod filter;
pub mod merge;
pub mod moving_average;
pub mod pass;
pub mod pick;
pub mod rate;
pub mod scale;
pub mod sum;
pub mod threshold;
pub mod throttle;
pub mod window;

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::{Number, Value};

use crate::function::{
    attr_error, finite_number, Function, FunctionError, NodeContext, Param, ParamKind,
};

/// Every built-in function.
pub(crate) fn all() -> Vec<Arc<dyn Function>> {
    vec![
        Arc::new(pass::Pass),
        Arc::new(filter::Filter),
        Arc::new(threshold::Threshold),
        Arc::new(count::Count),
        Arc::new(sum::Sum),
        Arc::new(average::Average),
        Arc::new(extreme::Min),
        Arc::new(extreme::Max),
        Arc::new(moving_average::MovingAverage),
        Arc::new(rate::Rate),
        Arc::new(change::Change),
        Arc::new(throttle::Throttle),
        Arc::new(pick::Pick),
        Arc::new(scale::Scale),
        Arc::new(merge::Merge),
        Arc::new(window::Window),
    ]
}

/// The `field` parameter: a JSON pointer into the message, `""` (the whole message) by default.
fn field_param() -> Param {
    Param::setting(
        "field",
        ParamKind::Pointer,
        "JSON pointer to the value in the message; \"\" is the whole message.",
    )
    .with_default("")
}

/// An integer setting of at least `minimum`, or `default` when it is not set; refused with the
/// same sentence `validate_attrs` gives, since a PATCH of attributes may have changed it since.
fn integer_setting(
    ctx: &NodeContext<'_>,
    name: &str,
    default: u64,
    minimum: u64,
) -> Result<u64, FunctionError> {
    let Some(value) = ctx.attr(name) else {
        return Ok(default);
    };
    match value.as_u64() {
        Some(integer) if integer >= minimum => Ok(integer),
        _ => {
            let expected = match minimum {
                0 => "a non-negative integer".to_owned(),
                1 => "a positive integer".to_owned(),
                _ => format!("an integer of at least {minimum}"),
            };
            Err(attr_error(name, &expected, value))
        }
    }
}

/// A state attribute holding an array of numbers, copied out; names the first item that is not.
fn number_array(ctx: &NodeContext<'_>, name: &str) -> Result<Vec<Number>, FunctionError> {
    let items = ctx.attr_array(name)?.map(Vec::as_slice).unwrap_or(&[]);
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Number(number) => Ok(number.clone()),
            other => Err(bad_item(name, "numbers", index, other)),
        })
        .collect()
}

/// `attribute "values" must be an array of numbers, but item 2 is "abc"`.
fn bad_item(name: &str, expected: &str, index: usize, found: &Value) -> FunctionError {
    FunctionError::new(format!(
        "attribute {} must be an array of {expected}, but item {index} is {}",
        crate::function::quote(name),
        crate::function::show(found)
    ))
}

/// `number` as an `f64`. Without serde_json's `arbitrary_precision` this always succeeds; with
/// it, a number too large for `f64` becomes NaN, which every result check refuses.
fn to_f64(number: &Number) -> f64 {
    number.as_f64().unwrap_or(f64::NAN)
}

/// A number in arithmetic that keeps integers integral: `2 + 3` gives `5`, not `5.0`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Arith {
    Int(i64),
    Float(f64),
}

impl Arith {
    fn of(number: &Number) -> Self {
        match number.as_i64() {
            Some(integer) => Self::Int(integer),
            None => Self::Float(to_f64(number)),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Self::Int(integer) => integer as f64,
            Self::Float(float) => float,
        }
    }

    /// The sum; integers that would overflow `i64` fall back to floating point.
    fn add(self, other: Self) -> Self {
        match (self, other) {
            (Self::Int(left), Self::Int(right)) => match left.checked_add(right) {
                Some(sum) => Self::Int(sum),
                None => Self::Float(left as f64 + right as f64),
            },
            _ => Self::Float(self.as_f64() + other.as_f64()),
        }
    }

    /// The product; integers that would overflow `i64` fall back to floating point.
    fn mul(self, other: Self) -> Self {
        match (self, other) {
            (Self::Int(left), Self::Int(right)) => match left.checked_mul(right) {
                Some(product) => Self::Int(product),
                None => Self::Float(left as f64 * right as f64),
            },
            _ => Self::Float(self.as_f64() * other.as_f64()),
        }
    }

    /// As JSON; NaN and infinities are refused with an error naming `what` the number is.
    fn to_value(self, what: &str) -> Result<Value, FunctionError> {
        match self {
            Self::Int(integer) => Ok(Value::from(integer)),
            Self::Float(float) => finite_number(what, float),
        }
    }
}

/// Orders two JSON numbers: exactly when both are integers, as `f64` otherwise.
fn compare_numbers(left: &Number, right: &Number) -> Ordering {
    if let (Some(left), Some(right)) = (left.as_i64(), right.as_i64()) {
        return left.cmp(&right);
    }
    if let (Some(left), Some(right)) = (left.as_u64(), right.as_u64()) {
        return left.cmp(&right);
    }
    to_f64(left)
        .partial_cmp(&to_f64(right))
        .unwrap_or(Ordering::Equal)
}

/// JSON equality in which numbers compare by value at any depth: `1 == 1.0`, `[1] == [1.0]`.
fn json_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => {
            compare_numbers(left, right) == Ordering::Equal
        }
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len()
                && left
                    .iter()
                    .zip(right)
                    .all(|(left, right)| json_equal(left, right))
        }
        (Value::Object(left), Value::Object(right)) => {
            left.len() == right.len()
                && left
                    .iter()
                    .all(|(key, left)| right.get(key).is_some_and(|right| json_equal(left, right)))
        }
        _ => left == right,
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A node to call functions on in unit tests.

    use serde_json::{Map, Value};

    use crate::function::{Function, FunctionError, Input, NodeContext};

    /// A node's attributes and sources, kept across calls the way the processor keeps them,
    /// except that a failed call's attribute changes are *not* discarded, so tests also prove
    /// that the built-ins write nothing before they fail.
    pub(crate) struct TestNode {
        pub(crate) attrs: Map<String, Value>,
        pub(crate) sources: Vec<String>,
    }

    impl TestNode {
        pub(crate) fn new(attrs: Value) -> Self {
            let Value::Object(attrs) = attrs else {
                panic!("test attrs must be an object");
            };
            Self {
                attrs,
                sources: Vec::new(),
            }
        }

        /// Calls `function` on `data` as if injected, at time 0.
        pub(crate) fn call(
            &mut self,
            function: &dyn Function,
            data: Value,
        ) -> Result<Vec<Value>, FunctionError> {
            self.call_full(function, None, data, 0)
        }

        /// Calls `function` on `data` as if injected, at `now_ms`.
        pub(crate) fn call_at(
            &mut self,
            function: &dyn Function,
            data: Value,
            now_ms: i64,
        ) -> Result<Vec<Value>, FunctionError> {
            self.call_full(function, None, data, now_ms)
        }

        pub(crate) fn call_full(
            &mut self,
            function: &dyn Function,
            source: Option<&str>,
            data: Value,
            now_ms: i64,
        ) -> Result<Vec<Value>, FunctionError> {
            let input = Input {
                data: &data,
                source,
                msg_id: "m1",
                input_id: "i1",
            };
            let mut ctx = NodeContext {
                topology: "t",
                node: "n",
                sources: &self.sources,
                attrs: &mut self.attrs,
                now_ms,
            };
            function.call(&input, &mut ctx)
        }

        /// The attributes as one JSON object.
        pub(crate) fn attrs(&self) -> Value {
            Value::Object(self.attrs.clone())
        }

        /// The error message of a call that must fail.
        pub(crate) fn error(&mut self, function: &dyn Function, data: Value) -> String {
            self.call(function, data).unwrap_err().message().to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn number(value: Value) -> Number {
        match value {
            Value::Number(number) => number,
            _ => unreachable!(),
        }
    }

    /// Numbers compare by value, exactly for large integers, and 1 equals 1.0 at any depth.
    #[test]
    fn numbers_compare_by_value() {
        assert_eq!(
            compare_numbers(&number(json!(1)), &number(json!(1.0))),
            Ordering::Equal
        );
        assert_eq!(
            compare_numbers(
                &number(json!(9007199254740993_i64)),
                &number(json!(9007199254740992_i64))
            ),
            Ordering::Greater
        );
        assert_eq!(
            compare_numbers(&number(json!(u64::MAX)), &number(json!(-1))),
            Ordering::Greater
        );
        assert!(json_equal(
            &json!({"a": [1, {"b": 2.0}]}),
            &json!({"a": [1.0, {"b": 2}]})
        ));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!json_equal(&json!("1"), &json!(1)));
    }

    /// Integer arithmetic stays integral and falls back to floats on overflow.
    #[test]
    fn arith_keeps_integers() {
        assert_eq!(Arith::Int(2).add(Arith::Int(3)), Arith::Int(5));
        assert_eq!(Arith::Int(2).mul(Arith::Float(1.5)), Arith::Float(3.0));
        assert_eq!(
            Arith::Int(i64::MAX).add(Arith::Int(1)),
            Arith::Float(i64::MAX as f64 + 1.0)
        );
        assert_eq!(Arith::Int(5).to_value("x"), Ok(json!(5)));
        assert!(Arith::Float(f64::INFINITY).to_value("x").is_err());
    }
}
