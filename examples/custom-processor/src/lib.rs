//! custom-processor: how a user adds a function to Gorgon. The function lives in the user's
//! own crate, implements [`processor::Function`], and is registered beside the built-ins in
//! the user's own processor binary (`src/main.rs`), which then runs instead of `processor`.
//!
//! The function here, `fahrenheit`, converts the Celsius number at `field` to Fahrenheit.

#![cfg_attr(not(test), warn(clippy::print_stdout))]

use processor::function::{field_type_error, finite_number};
use processor::{Function, FunctionError, Input, NodeContext, Param, ParamKind, Registry};
use serde_json::{json, Value};

/// Converts the Celsius number at `field` to `{"fahrenheit": f}`.
pub struct Fahrenheit;

impl Function for Fahrenheit {
    fn name(&self) -> &str {
        "fahrenheit"
    }

    fn description(&self) -> &str {
        "Converts the Celsius number at field to {\"fahrenheit\": f}."
    }

    fn params(&self) -> Vec<Param> {
        vec![Param::setting(
            "field",
            ParamKind::Pointer,
            "Where the Celsius number is in the message.",
        )
        .with_default("")]
    }

    fn call(
        &self,
        input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        let pointer = ctx.attr_pointer("field")?.unwrap_or("").to_owned();
        let value = ctx.field(input.data)?;
        let celsius = value
            .as_f64()
            .ok_or_else(|| field_type_error(&pointer, value, "a number"))?;
        Ok(vec![
            json!({ "fahrenheit": finite_number("fahrenheit", celsius * 9.0 / 5.0 + 32.0)? }),
        ])
    }
}

/// The built-in functions plus [`Fahrenheit`].
pub fn registry() -> Registry {
    let mut registry = Registry::builtins();
    registry
        .register(Fahrenheit)
        .expect("no built-in is called fahrenheit");
    registry
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    /// 100 °C is 212 °F; a string is a function error naming the field.
    #[test]
    fn converts_and_refuses_non_numbers() {
        let mut attrs = Map::new();
        attrs.insert("field".into(), json!("/c"));
        let mut ctx = NodeContext {
            topology: "t",
            node: "f",
            sources: &[],
            attrs: &mut attrs,
            now_ms: 0,
        };
        let data = json!({"c": 100});
        let input = Input {
            data: &data,
            source: None,
            msg_id: "m",
            input_id: "i",
        };
        assert_eq!(
            Fahrenheit.call(&input, &mut ctx).unwrap(),
            [json!({"fahrenheit": 212.0})]
        );
        let data = json!({"c": "hot"});
        let input = Input {
            data: &data,
            source: None,
            msg_id: "m",
            input_id: "i",
        };
        let err = Fahrenheit.call(&input, &mut ctx).unwrap_err();
        assert!(err.to_string().contains("\"/c\""), "{err}");
        assert!(registry().contains("fahrenheit") && registry().contains("count"));
    }
}
