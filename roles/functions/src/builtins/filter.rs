//! `filter`: outputs the message when a test on one of its fields holds.

use std::cmp::Ordering;

use serde_json::Value;

use super::{compare_numbers, field_param, json_equal};
use crate::function::{
    attr_error, field_type_error, lookup, quote, Function, FunctionError, Input, NodeContext,
    Param, ParamKind,
};

/// The tests `op` may name.
const OPS: [&str; 8] = ["gt", "gte", "lt", "lte", "eq", "ne", "contains", "exists"];

/// Outputs the message when `<field> <op> <value>` holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter;

impl Function for Filter {
    fn name(&self) -> &str {
        "filter"
    }

    fn description(&self) -> &str {
        "Outputs the message when `<field> <op> <value>` holds."
    }

    fn params(&self) -> Vec<Param> {
        vec![
            field_param(),
            Param::setting(
                "op",
                ParamKind::one_of(&OPS),
                "The test: gt, gte, lt, lte (numbers), eq, ne (any JSON), contains (substring or \
                 array element), exists (the field is present; `value` unused).",
            )
            .required(),
            Param::setting(
                "value",
                ParamKind::Any,
                "What the field is compared with; required for every op but exists.",
            ),
        ]
    }

    fn call(
        &self,
        input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        let op = ctx.attr_choice("op", &OPS)?.ok_or_else(|| {
            FunctionError::new(format!(
                "attribute \"op\" is required: one of {}",
                OPS.map(quote).join(", ")
            ))
        })?;
        let pointer = ctx.attr_pointer("field")?.unwrap_or("");
        let holds = if op == "exists" {
            input.data.pointer(pointer).is_some()
        } else {
            let value = ctx.attr("value").ok_or_else(|| {
                FunctionError::new(format!(
                    "attribute \"value\" is required when op is {}",
                    quote(op)
                ))
            })?;
            let found = lookup(input.data, pointer)?;
            match op {
                "eq" => json_equal(found, value),
                "ne" => !json_equal(found, value),
                "contains" => contains(found, value, pointer)?,
                _ => {
                    let ordering = compare(found, value, pointer, op)?;
                    match op {
                        "gt" => ordering == Ordering::Greater,
                        "gte" => ordering != Ordering::Less,
                        "lt" => ordering == Ordering::Less,
                        _ => ordering != Ordering::Greater,
                    }
                }
            }
        };
        Ok(if holds {
            vec![input.data.clone()]
        } else {
            Vec::new()
        })
    }
}

/// Orders the field against `value` for the numeric ops; both must be numbers.
fn compare(
    found: &Value,
    value: &Value,
    pointer: &str,
    op: &str,
) -> Result<Ordering, FunctionError> {
    let Value::Number(found) = found else {
        return Err(field_type_error(pointer, found, "a number"));
    };
    let Value::Number(value) = value else {
        return Err(attr_error(
            "value",
            &format!("a number when op is {}", quote(op)),
            value,
        ));
    };
    Ok(compare_numbers(found, value))
}

/// Whether a string field contains `value` as a substring, or an array field holds an element
/// equal to `value`.
fn contains(found: &Value, value: &Value, pointer: &str) -> Result<bool, FunctionError> {
    match found {
        Value::String(text) => match value {
            Value::String(part) => Ok(text.contains(part.as_str())),
            other => Err(attr_error(
                "value",
                "a string when op is \"contains\" and the field is a string",
                other,
            )),
        },
        Value::Array(items) => Ok(items.iter().any(|item| json_equal(item, value))),
        other => Err(field_type_error(
            pointer,
            other,
            "a string or an array for op \"contains\"",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtins::testing::TestNode;
    use serde_json::json;

    fn passes(op: &str, value: Value, message: Value) -> bool {
        let mut node = TestNode::new(json!({"field": "/x", "op": op, "value": value}));
        let outputs = node.call(&Filter, message.clone()).unwrap();
        assert!(outputs.is_empty() || outputs == vec![message]);
        !outputs.is_empty()
    }

    /// The numeric ops compare numbers, at and around the boundary, and 1 equals 1.0.
    #[test]
    fn numeric_ops() {
        assert!(passes("gt", json!(30), json!({"x": 31})));
        assert!(!passes("gt", json!(30), json!({"x": 30})));
        assert!(passes("gte", json!(30), json!({"x": 30.0})));
        assert!(!passes("gte", json!(30), json!({"x": 29.9})));
        assert!(passes("lt", json!(0), json!({"x": -1})));
        assert!(!passes("lt", json!(0), json!({"x": 0})));
        assert!(passes("lte", json!(0.5), json!({"x": 0.5})));
        assert!(!passes("lte", json!(0.5), json!({"x": 1})));
    }

    /// eq and ne compare JSON values exactly, except that numbers compare by value.
    #[test]
    fn equality_ops() {
        assert!(passes("eq", json!(1), json!({"x": 1.0})));
        assert!(passes(
            "eq",
            json!({"a": [1, "b"]}),
            json!({"x": {"a": [1, "b"]}})
        ));
        assert!(!passes("eq", json!("1"), json!({"x": 1})));
        assert!(passes("eq", json!(null), json!({"x": null})));
        assert!(passes("ne", json!("on"), json!({"x": "off"})));
        assert!(!passes("ne", json!(2), json!({"x": 2})));
    }

    /// contains finds substrings in strings and equal elements in arrays.
    #[test]
    fn contains_op() {
        assert!(passes("contains", json!("err"), json!({"x": "an error"})));
        assert!(!passes("contains", json!("ok"), json!({"x": "an error"})));
        assert!(passes("contains", json!(2), json!({"x": [1, 2.0, 3]})));
        assert!(!passes("contains", json!("2"), json!({"x": [1, 2, 3]})));
    }

    /// exists holds when the pointer resolves (even to null); a missing field is not an error.
    #[test]
    fn exists_op() {
        let mut node = TestNode::new(json!({"field": "/x", "op": "exists"}));
        assert_eq!(
            node.call(&Filter, json!({"x": null})),
            Ok(vec![json!({"x": null})])
        );
        assert_eq!(node.call(&Filter, json!({"y": 1})), Ok(vec![]));
        assert_eq!(node.call(&Filter, json!(5)), Ok(vec![]));
        assert_eq!(node.attrs(), json!({"field": "/x", "op": "exists"}));
    }

    /// Numeric ops refuse non-numbers on either side, naming the field or the attribute.
    #[test]
    fn numeric_type_errors() {
        let mut node = TestNode::new(json!({"field": "/x", "op": "gt", "value": 3}));
        assert_eq!(
            node.error(&Filter, json!({"x": "4"})),
            "field \"/x\" is a string, expected a number"
        );
        let mut node = TestNode::new(json!({"field": "/x", "op": "gt", "value": "3"}));
        assert_eq!(
            node.error(&Filter, json!({"x": 4})),
            "attribute \"value\" must be a number when op is \"gt\", got \"3\""
        );
    }

    /// contains refuses fields that are neither strings nor arrays, and non-string needles.
    #[test]
    fn contains_type_errors() {
        let mut node = TestNode::new(json!({"field": "/x", "op": "contains", "value": "a"}));
        assert_eq!(
            node.error(&Filter, json!({"x": 4})),
            "field \"/x\" is a number, expected a string or an array for op \"contains\""
        );
        let mut node = TestNode::new(json!({"field": "/x", "op": "contains", "value": 1}));
        assert_eq!(
            node.error(&Filter, json!({"x": "a1"})),
            "attribute \"value\" must be a string when op is \"contains\" and the field is a \
             string, got 1"
        );
    }

    /// A missing field (for ops other than exists), op or value is an error saying which.
    #[test]
    fn missing_things() {
        let mut node = TestNode::new(json!({"field": "/x", "op": "eq", "value": 1}));
        assert_eq!(
            node.error(&Filter, json!({})),
            "field \"/x\" is missing from the message"
        );
        let mut node = TestNode::new(json!({"value": 1}));
        assert_eq!(
            node.error(&Filter, json!(1)),
            "attribute \"op\" is required: one of \"gt\", \"gte\", \"lt\", \"lte\", \"eq\", \
             \"ne\", \"contains\", \"exists\""
        );
        let mut node = TestNode::new(json!({"op": "lt"}));
        assert_eq!(
            node.error(&Filter, json!(1)),
            "attribute \"value\" is required when op is \"lt\""
        );
        let mut node = TestNode::new(json!({"op": "like", "value": 1}));
        assert!(node
            .error(&Filter, json!(1))
            .starts_with("attribute \"op\" must be one of \"gt\""));
    }

    /// With the default field the test applies to the whole message.
    #[test]
    fn whole_message() {
        let mut node = TestNode::new(json!({"op": "gte", "value": 10}));
        assert_eq!(node.call(&Filter, json!(12)), Ok(vec![json!(12)]));
        assert_eq!(node.call(&Filter, json!(9)), Ok(vec![]));
    }
}
