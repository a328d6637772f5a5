//! The node-function interface: what a function receives, what it may read and write, and how it fails.
//!
//! A [`Function`] runs once per message a node receives. It reads the message ([`Input`]) and the
//! node's attributes ([`NodeContext::attrs`]), may update the attributes (its running state), and
//! returns zero, one or many outputs. Each function declares its attributes as [`Param`]s, which
//! the registry serves and [`validate_attrs`] checks before a topology change is accepted.

use serde_json::{Map, Number, Value};

pub(crate) use protocol::function::{
    attr_message, one_of, quote, show, type_name, POINTER_EXPECTATION,
};
pub use protocol::function::{is_json_pointer, validate_attrs, Param, ParamKind};

/// One message arriving at a node.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The message itself: any JSON value.
    pub data: &'a Value,
    /// The node whose output this message is; `None` when it was injected into this node directly.
    pub source: Option<&'a str>,
    /// The id of this message (unique per message).
    pub msg_id: &'a str,
    /// The id the inject that caused this message returned; the same through the whole graph.
    pub input_id: &'a str,
}

/// The node a function runs for: where it sits, and the attributes it reads and updates.
#[derive(Debug)]
pub struct NodeContext<'a> {
    /// The topology id.
    pub topology: &'a str,
    /// The node id.
    pub node: &'a str,
    /// The ids of the nodes this node receives messages from, as configured now.
    pub sources: &'a [String],
    /// The node's attributes: the settings the user gave and the state the function keeps.
    /// The caller commits them when `call` succeeds and discards every change when it fails.
    pub attrs: &'a mut Map<String, Value>,
    /// The current time in Unix milliseconds, given by the caller so that functions are
    /// deterministic and testable. Functions must read time only from here.
    pub now_ms: i64,
}

impl NodeContext<'_> {
    /// The attribute `name` as stored, whatever its type.
    pub fn attr(&self, name: &str) -> Option<&Value> {
        self.attrs.get(name)
    }

    /// The attribute `name` as a number; `Ok(None)` when it is not set.
    pub fn attr_number(&self, name: &str) -> Result<Option<&Number>, FunctionError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Value::Number(number)) => Ok(Some(number)),
            Some(other) => Err(attr_error(name, "a number", other)),
        }
    }

    /// The attribute `name` as an `f64`; `Ok(None)` when it is not set.
    pub fn attr_f64(&self, name: &str) -> Result<Option<f64>, FunctionError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(value) => match value.as_f64() {
                Some(number) => Ok(Some(number)),
                None => Err(attr_error(name, "a number", value)),
            },
        }
    }

    /// The attribute `name` as a JSON integer of at least 0; `Ok(None)` when it is not set.
    /// A number with a fraction or an exponent (`10.0`, `1e3`) is refused.
    pub fn attr_u64(&self, name: &str) -> Result<Option<u64>, FunctionError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(value) => match value.as_u64() {
                Some(number) => Ok(Some(number)),
                None => Err(attr_error(name, "a non-negative integer", value)),
            },
        }
    }

    /// The attribute `name` as a JSON integer that fits an `i64`; `Ok(None)` when it is not set.
    pub fn attr_i64(&self, name: &str) -> Result<Option<i64>, FunctionError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(value) => match value.as_i64() {
                Some(number) => Ok(Some(number)),
                None => Err(attr_error(name, "an integer", value)),
            },
        }
    }

    /// The attribute `name` as a string; `Ok(None)` when it is not set.
    pub fn attr_str(&self, name: &str) -> Result<Option<&str>, FunctionError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(attr_error(name, "a string", other)),
        }
    }

    /// The attribute `name` as a boolean; `Ok(None)` when it is not set.
    pub fn attr_bool(&self, name: &str) -> Result<Option<bool>, FunctionError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(other) => Err(attr_error(name, "true or false", other)),
        }
    }

    /// The attribute `name` as an array; `Ok(None)` when it is not set.
    pub fn attr_array(&self, name: &str) -> Result<Option<&Vec<Value>>, FunctionError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(attr_error(name, "an array", other)),
        }
    }

    /// The attribute `name` as an object; `Ok(None)` when it is not set.
    pub fn attr_object(&self, name: &str) -> Result<Option<&Map<String, Value>>, FunctionError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Value::Object(entries)) => Ok(Some(entries)),
            Some(other) => Err(attr_error(name, "an object", other)),
        }
    }

    /// The attribute `name` as a string among `choices`; `Ok(None)` when it is not set.
    pub fn attr_choice(&self, name: &str, choices: &[&str]) -> Result<Option<&str>, FunctionError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Value::String(text)) if choices.contains(&text.as_str()) => Ok(Some(text)),
            Some(other) => Err(attr_error(name, &one_of(choices), other)),
        }
    }

    /// The attribute `name` as a JSON pointer (`""` or starting with `/`); `Ok(None)` when it is
    /// not set.
    pub fn attr_pointer(&self, name: &str) -> Result<Option<&str>, FunctionError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Value::String(text)) if is_json_pointer(text) => Ok(Some(text)),
            Some(other) => Err(attr_error(name, POINTER_EXPECTATION, other)),
        }
    }

    /// Sets the attribute `name`.
    pub fn set_attr(&mut self, name: &str, value: impl Into<Value>) {
        self.attrs.insert(name.to_owned(), value.into());
    }

    /// Removes the attribute `name`, returning what it held.
    pub fn remove_attr(&mut self, name: &str) -> Option<Value> {
        self.attrs.remove(name)
    }

    /// The value the `field` attribute points at in `data` (`field` defaults to `""`, the whole
    /// message). Fails, naming the pointer, when the message has nothing there.
    pub fn field<'v>(&self, data: &'v Value) -> Result<&'v Value, FunctionError> {
        let pointer = self.attr_pointer(FIELD)?.unwrap_or("");
        lookup(data, pointer)
    }

    /// The number the `field` attribute points at in `data`. Fails, naming the pointer, when the
    /// message has nothing there or something other than a number.
    pub fn field_number<'v>(&self, data: &'v Value) -> Result<&'v Number, FunctionError> {
        let pointer = self.attr_pointer(FIELD)?.unwrap_or("");
        lookup_number(data, pointer)
    }

    /// The `field` attribute's value in `data` as an `f64`; see [`NodeContext::field_number`].
    pub fn field_f64(&self, data: &Value) -> Result<f64, FunctionError> {
        let pointer = self.attr_pointer(FIELD)?.unwrap_or("");
        let number = lookup_number(data, pointer)?;
        number_f64(number, pointer)
    }
}

/// The name of the attribute that holds the JSON pointer most functions read.
const FIELD: &str = "field";

/// The value at `pointer` in `data`, or an error naming the pointer when nothing is there.
pub fn lookup<'v>(data: &'v Value, pointer: &str) -> Result<&'v Value, FunctionError> {
    data.pointer(pointer).ok_or_else(|| {
        FunctionError::new(format!(
            "field {} is missing from the message",
            quote(pointer)
        ))
    })
}

/// The number at `pointer` in `data`, or an error naming the pointer when it is missing or not a
/// number.
pub fn lookup_number<'v>(data: &'v Value, pointer: &str) -> Result<&'v Number, FunctionError> {
    match lookup(data, pointer)? {
        Value::Number(number) => Ok(number),
        other => Err(field_type_error(pointer, other, "a number")),
    }
}

/// An error saying that the message holds `found` at `pointer` where `expected` was needed, e.g.
/// `field "/celsius" is a string, expected a number`.
pub fn field_type_error(pointer: &str, found: &Value, expected: &str) -> FunctionError {
    let place = if pointer.is_empty() {
        "the message".to_owned()
    } else {
        format!("field {}", quote(pointer))
    };
    FunctionError::new(format!(
        "{place} is {}, expected {expected}",
        type_name(found)
    ))
}

/// Converts a function's numeric result to JSON, refusing NaN and infinities (which JSON cannot
/// carry) with an error naming `what` the number is, e.g. `"sum"`.
pub fn finite_number(what: &str, number: f64) -> Result<Value, FunctionError> {
    Number::from_f64(number).map(Value::Number).ok_or_else(|| {
        FunctionError::new(format!(
            "the {what} is not a finite number ({number}); JSON can only carry finite numbers"
        ))
    })
}

/// `number` as an `f64`, failing (naming the pointer) only when serde_json cannot represent it.
fn number_f64(number: &Number, pointer: &str) -> Result<f64, FunctionError> {
    number.as_f64().ok_or_else(|| {
        FunctionError::new(format!(
            "field {} holds a number too large to compute with",
            quote(pointer)
        ))
    })
}

/// Why a function could not process a message: a sentence a user can act on, such as
/// `field "/celsius" is a string, expected a number`.
///
/// The processor retries the message with backoff and dead-letters it with this text after
/// `max_attempts`, so the text should say what is wrong with the message or the attributes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FunctionError(String);

impl FunctionError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// A node function: runs on every message a node receives.
///
/// Implement it, and register it with [`crate::Registry::register`] in your own processor binary,
/// to add a function to Gorgon.
pub trait Function: Send + Sync + 'static {
    /// The name topologies use to pick this function, e.g. `"moving-average"`.
    fn name(&self) -> &str;

    /// One sentence saying what the function outputs.
    fn description(&self) -> &str;

    /// The attributes the function reads (settings) and keeps (state).
    fn params(&self) -> Vec<Param>;

    /// Processes one message and returns the outputs: none, one or many.
    ///
    /// It must be deterministic given the input, the attributes and `ctx.now_ms`, because a message
    /// can be processed again after a crash. It must never panic on user data (the caller catches
    /// panics, but a panic is reported less clearly than an error). On error the caller discards
    /// every change made to the attributes, retries the message with backoff and, after
    /// `max_attempts`, dead-letters it with the error text.
    fn call(
        &self,
        input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError>;
}

/// An error saying that attribute `name` holds `found` where `expected` was needed.
pub(crate) fn attr_error(name: &str, expected: &str, found: &Value) -> FunctionError {
    FunctionError::new(attr_message(name, expected, found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test attrs must be an object"),
        }
    }

    /// lookup and lookup_number name the pointer, and call the root "the message".
    #[test]
    fn lookup_errors_name_the_pointer() {
        let data = json!({"celsius": "warm"});
        assert_eq!(
            lookup(&data, "/kelvin").unwrap_err().message(),
            "field \"/kelvin\" is missing from the message"
        );
        assert_eq!(
            lookup_number(&data, "/celsius").unwrap_err().message(),
            "field \"/celsius\" is a string, expected a number"
        );
        assert_eq!(
            lookup_number(&data, "").unwrap_err().message(),
            "the message is an object, expected a number"
        );
        assert_eq!(lookup(&data, "").unwrap(), &data);
    }

    /// The typed attribute readers return None when unset and name the attribute when wrong-typed.
    #[test]
    fn attr_readers() {
        let mut map = attrs(json!({
            "count": "abc", "n": 3, "x": 2.5, "s": "hi", "neg": -4, "f": "/a", "bad": "a",
            "long": "a string that is far longer than forty characters in all"
        }));
        let ctx = NodeContext {
            topology: "t",
            node: "n",
            sources: &[],
            attrs: &mut map,
            now_ms: 0,
        };
        assert_eq!(ctx.attr_u64("missing"), Ok(None));
        assert_eq!(ctx.attr_u64("n"), Ok(Some(3)));
        assert_eq!(ctx.attr_f64("n"), Ok(Some(3.0)));
        assert_eq!(ctx.attr_f64("x"), Ok(Some(2.5)));
        assert_eq!(ctx.attr_i64("neg"), Ok(Some(-4)));
        assert_eq!(ctx.attr_str("s"), Ok(Some("hi")));
        assert_eq!(ctx.attr_pointer("f"), Ok(Some("/a")));
        assert_eq!(
            ctx.attr_u64("count").unwrap_err().message(),
            "attribute \"count\" must be a non-negative integer, got \"abc\""
        );
        assert_eq!(
            ctx.attr_u64("neg").unwrap_err().message(),
            "attribute \"neg\" must be a non-negative integer, got -4"
        );
        assert_eq!(
            ctx.attr_f64("long").unwrap_err().message(),
            "attribute \"long\" must be a number, got a long string"
        );
        assert_eq!(
            ctx.attr_str("n").unwrap_err().message(),
            "attribute \"n\" must be a string, got 3"
        );
        assert_eq!(
            ctx.attr_choice("s", &["a", "b"]).unwrap_err().message(),
            "attribute \"s\" must be one of \"a\", \"b\", got \"hi\""
        );
        assert!(ctx.attr_pointer("bad").is_err());
        assert_eq!(
            ctx.attr_array("n").unwrap_err().message(),
            "attribute \"n\" must be an array, got 3"
        );
    }

    /// field() reads the "field" attribute, defaulting to the whole message.
    #[test]
    fn field_reads_the_pointer_attribute() {
        let data = json!({"a": {"b": 4}});
        let mut map = Map::new();
        let mut ctx = NodeContext {
            topology: "t",
            node: "n",
            sources: &[],
            attrs: &mut map,
            now_ms: 0,
        };
        assert_eq!(ctx.field(&data).unwrap(), &data);
        ctx.set_attr("field", "/a/b");
        assert_eq!(ctx.field_f64(&data), Ok(4.0));
        ctx.set_attr("field", "a/b");
        assert!(ctx
            .field(&data)
            .unwrap_err()
            .message()
            .starts_with("attribute \"field\" must be a JSON pointer"));
    }

    /// finite_number refuses NaN and infinity with a message naming the quantity.
    #[test]
    fn finite_number_refuses_non_finite() {
        assert_eq!(finite_number("sum", 1.5), Ok(json!(1.5)));
        assert_eq!(
            finite_number("sum", f64::INFINITY).unwrap_err().message(),
            "the sum is not a finite number (inf); JSON can only carry finite numbers"
        );
        assert!(finite_number("mean", f64::NAN).is_err());
    }
}
