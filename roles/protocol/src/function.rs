//! What a node function declares about itself: its parameters (the attributes it reads and
//! keeps), their kinds, and the check of a node's attributes against them.
//!
//! Processors publish these descriptions; the store validates topology changes against them
//! and the API serves them at `GET /v1/functions`. The functions themselves live in the
//! processor crate.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One function as a registry describes it:
/// `{"name", "description", "params": [{"name", "type", "default", "doc", "state", "required"}]}`,
/// plus `"minimum"` on parameters that have one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDescription {
    /// The function's name.
    pub name: String,
    /// What it outputs.
    pub description: String,
    /// The attributes it reads and keeps.
    pub params: Vec<Param>,
}

impl FunctionDescription {
    /// Checks a node's attributes against this function's parameters; see [`validate_attrs`].
    pub fn validate(&self, attrs: &Map<String, Value>) -> Result<(), Vec<String>> {
        validate_attrs(&self.params, attrs)
    }
}

/// What a JSON pointer setting must be, as a phrase.
pub const POINTER_EXPECTATION: &str =
    "a JSON pointer: \"\" for the whole message, or starting with \"/\" like \"/celsius\"";

/// One attribute a function reads or keeps, as served by the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    /// The attribute name.
    pub name: String,
    /// What values it takes.
    #[serde(rename = "type")]
    pub kind: ParamKind,
    /// The value used when the attribute is not set; `None` when there is none.
    #[serde(default)]
    pub default: Option<Value>,
    /// One or two sentences for users.
    pub doc: String,
    /// `true` for running state the function keeps (a count), `false` for a setting the user gives.
    pub state: bool,
    /// Whether the setting must be given. Never true for state.
    pub required: bool,
    /// The smallest value accepted, for numbers and integers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<i64>,
}

impl Param {
    /// A setting the user gives, optional and without a default.
    pub fn setting(name: impl Into<String>, kind: ParamKind, doc: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind,
            default: None,
            doc: doc.into(),
            state: false,
            required: false,
            minimum: None,
        }
    }

    /// Running state the function keeps in the attributes.
    pub fn state(name: impl Into<String>, kind: ParamKind, doc: impl Into<String>) -> Self {
        Self {
            state: true,
            ..Self::setting(name, kind, doc)
        }
    }

    /// The same, with a default value.
    pub fn with_default(self, default: impl Into<Value>) -> Self {
        Self {
            default: Some(default.into()),
            ..self
        }
    }

    /// The same, required.
    pub fn required(self) -> Self {
        Self {
            required: true,
            ..self
        }
    }

    /// The same, with a smallest accepted value.
    pub fn with_minimum(self, minimum: i64) -> Self {
        Self {
            minimum: Some(minimum),
            ..self
        }
    }

    /// Checks one value against this parameter's kind and minimum, returning what it must be.
    fn check(&self, value: &Value) -> Result<(), String> {
        let fits = match &self.kind {
            ParamKind::Any => true,
            ParamKind::Number => value
                .as_f64()
                .is_some_and(|number| self.minimum.is_none_or(|min| number >= min as f64)),
            ParamKind::Integer => integer_at_least(value, self.minimum),
            ParamKind::String => value.is_string(),
            ParamKind::Bool => value.is_boolean(),
            ParamKind::Pointer => value.as_str().is_some_and(is_json_pointer),
            ParamKind::Enum(choices) => value
                .as_str()
                .is_some_and(|text| choices.iter().any(|choice| choice == text)),
            ParamKind::Array => value.is_array(),
            ParamKind::Object => value.is_object(),
        };
        if fits {
            Ok(())
        } else {
            Err(attr_message(&self.name, &self.expectation(), value))
        }
    }

    /// What a value of this parameter must be, as a phrase: "a positive integer".
    fn expectation(&self) -> String {
        match (&self.kind, self.minimum) {
            (ParamKind::Integer, Some(1)) => "a positive integer".to_owned(),
            (ParamKind::Integer, Some(0)) => "a non-negative integer".to_owned(),
            (ParamKind::Integer, Some(min)) => format!("an integer of at least {min}"),
            (ParamKind::Integer, None) => "an integer".to_owned(),
            (ParamKind::Number, Some(min)) => format!("a number of at least {min}"),
            (ParamKind::Number, None) => "a number".to_owned(),
            (ParamKind::String, _) => "a string".to_owned(),
            (ParamKind::Bool, _) => "true or false".to_owned(),
            (ParamKind::Pointer, _) => POINTER_EXPECTATION.to_owned(),
            (ParamKind::Enum(choices), _) => one_of(choices),
            (ParamKind::Array, _) => "an array".to_owned(),
            (ParamKind::Object, _) => "an object".to_owned(),
            (ParamKind::Any, _) => "any JSON value".to_owned(),
        }
    }
}

/// Whether `value` is a JSON integer (not `10.0`) of at least `minimum`.
fn integer_at_least(value: &Value, minimum: Option<i64>) -> bool {
    let Value::Number(number) = value else {
        return false;
    };
    if let Some(integer) = number.as_i64() {
        minimum.is_none_or(|min| integer >= min)
    } else {
        // Integers above i64::MAX are u64 and exceed any i64 minimum; floats are refused.
        number.is_u64()
    }
}

/// The kind of value a [`Param`] takes. Serialized in snake_case: `"number"`, `"pointer"`, and
/// `{"enum": ["gt", ...]}` for a choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// Any JSON number.
    Number,
    /// A JSON integer: `10`, not `10.0`.
    Integer,
    /// A string.
    String,
    /// `true` or `false`.
    Bool,
    /// A JSON pointer string: `""` (the whole message) or starting with `/`.
    Pointer,
    /// One of these strings.
    Enum(Vec<String>),
    /// Any JSON value.
    Any,
    /// A JSON array.
    Array,
    /// A JSON object.
    Object,
}

impl ParamKind {
    /// A choice among `choices`.
    pub fn one_of(choices: &[&str]) -> ParamKind {
        ParamKind::Enum(choices.iter().map(|choice| (*choice).to_owned()).collect())
    }
}

/// Checks a node's attributes against its function's parameters, returning every problem found.
///
/// Only settings (`state == false`) are checked: each one present must match its kind and minimum,
/// and each required one must be present. State is left to the function, which reports a
/// wrong-typed state attribute when it next runs. Attributes no parameter names are allowed, so
/// users may keep their own notes on a node. `null` is a value like any other: it fits only
/// parameters of kind `any` (a JSON merge patch deletes the attribute instead).
pub fn validate_attrs(params: &[Param], attrs: &Map<String, Value>) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for param in params.iter().filter(|param| !param.state) {
        match attrs.get(&param.name) {
            Some(value) => {
                if let Err(problem) = param.check(value) {
                    problems.push(problem);
                }
            }
            None if param.required => {
                problems.push(format!("attribute \"{}\" is required", param.name));
            }
            None => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Whether `text` is a JSON pointer (RFC 6901): empty, or starting with `/`, with every `~`
/// followed by `0` or `1`.
pub fn is_json_pointer(text: &str) -> bool {
    if !(text.is_empty() || text.starts_with('/')) {
        return false;
    }
    let mut chars = text.chars();
    while let Some(char) = chars.next() {
        if char == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return false;
        }
    }
    true
}

/// `attribute "window" must be a positive integer, got 0`.
pub fn attr_message(name: &str, expected: &str, found: &Value) -> String {
    format!(
        "attribute {} must be {expected}, got {}",
        quote(name),
        show(found)
    )
}

/// `one of "gt", "gte", "lt"`.
pub fn one_of<S: AsRef<str>>(choices: &[S]) -> String {
    let quoted: Vec<String> = choices
        .iter()
        .map(|choice| quote(choice.as_ref()))
        .collect();
    format!("one of {}", quoted.join(", "))
}

/// `text` as a JSON string literal, so quotes and control characters in it stay readable.
pub fn quote(text: &str) -> String {
    Value::from(text).to_string()
}

/// The JSON type of `value` with its article: "a string", "an array".
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A short rendering of `value` for an error message: scalars and short strings as JSON, long
/// strings, arrays and objects by their type only.
pub fn show(value: &Value) -> String {
    const LONGEST_SHOWN: usize = 40;
    match value {
        Value::String(text) if text.chars().count() > LONGEST_SHOWN => "a long string".to_owned(),
        Value::Array(_) | Value::Object(_) => type_name(value).to_owned(),
        scalar => scalar.to_string(),
    }
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

    fn window_param() -> Param {
        Param::setting("window", ParamKind::Integer, "how many")
            .with_default(10)
            .with_minimum(1)
    }

    /// validate_attrs accepts good settings and ignores attributes no parameter names.
    #[test]
    fn validate_accepts_good_and_unknown_attrs() {
        let params = vec![
            window_param(),
            Param::setting("field", ParamKind::Pointer, "where"),
            Param::setting("op", ParamKind::one_of(&["gt", "lt"]), "how").required(),
        ];
        let given = attrs(json!({"window": 3, "field": "/a~1b", "op": "gt", "mine": [1]}));
        assert_eq!(validate_attrs(&params, &given), Ok(()));
    }

    /// validate_attrs names every bad or missing setting, in parameter order.
    #[test]
    fn validate_reports_each_problem() {
        let params = vec![
            window_param(),
            Param::setting("field", ParamKind::Pointer, "where"),
            Param::setting("op", ParamKind::one_of(&["gt", "lt"]), "how").required(),
            Param::setting("factor", ParamKind::Number, "times"),
            Param::setting("name", ParamKind::String, "label"),
        ];
        let given = attrs(json!({"window": 0, "field": "celsius", "factor": "2", "name": null}));
        assert_eq!(
            validate_attrs(&params, &given),
            Err(vec![
                "attribute \"window\" must be a positive integer, got 0".to_owned(),
                "attribute \"field\" must be a JSON pointer: \"\" for the whole message, or \
                 starting with \"/\" like \"/celsius\", got \"celsius\""
                    .to_owned(),
                "attribute \"op\" is required".to_owned(),
                "attribute \"factor\" must be a number, got \"2\"".to_owned(),
                "attribute \"name\" must be a string, got null".to_owned(),
            ])
        );
    }

    /// Integer settings refuse floats such as 10.0, and minimums 0 and other values read well.
    #[test]
    fn validate_integer_refuses_floats() {
        let params = vec![
            window_param(),
            Param::setting("gap", ParamKind::Integer, "").with_minimum(0),
            Param::setting("big", ParamKind::Integer, "").with_minimum(5),
        ];
        let given = attrs(json!({"window": 10.0, "gap": -1, "big": 4}));
        assert_eq!(
            validate_attrs(&params, &given),
            Err(vec![
                "attribute \"window\" must be a positive integer, got 10.0".to_owned(),
                "attribute \"gap\" must be a non-negative integer, got -1".to_owned(),
                "attribute \"big\" must be an integer of at least 5, got 4".to_owned(),
            ])
        );
        assert_eq!(
            validate_attrs(&params, &attrs(json!({"window": u64::MAX}))),
            Ok(())
        );
    }

    /// validate_attrs leaves state attributes alone, even wrong-typed ones.
    #[test]
    fn validate_skips_state() {
        let params = vec![Param::state("count", ParamKind::Integer, "seen")];
        assert_eq!(
            validate_attrs(&params, &attrs(json!({"count": "abc"}))),
            Ok(())
        );
    }

    /// JSON pointers must be empty or start with "/", and "~" must escape 0 or 1.
    #[test]
    fn pointer_syntax() {
        for good in ["", "/", "/a", "/a/0", "/a~0b~1c"] {
            assert!(is_json_pointer(good), "{good}");
        }
        for bad in ["a", "a/b", "/a~", "/a~2", "#/a"] {
            assert!(!is_json_pointer(bad), "{bad}");
        }
    }

    /// Params serialize with "type" in snake_case, enums as {"enum": [...]}, and no null minimum.
    #[test]
    fn param_serializes() {
        let op = Param::setting("op", ParamKind::one_of(&["gt"]), "how").required();
        assert_eq!(
            serde_json::to_value(&op).unwrap(),
            json!({"name": "op", "type": {"enum": ["gt"]}, "default": null, "doc": "how",
                   "state": false, "required": true})
        );
        assert_eq!(
            serde_json::to_value(window_param()).unwrap(),
            json!({"name": "window", "type": "integer", "default": 10, "doc": "how many",
                   "state": false, "required": false, "minimum": 1})
        );
    }

    /// A description reads back from the JSON it serializes to.
    #[test]
    fn description_round_trips() {
        let description = FunctionDescription {
            name: "filter".to_owned(),
            description: "passes matching messages".to_owned(),
            params: vec![
                window_param(),
                Param::setting("op", ParamKind::one_of(&["gt", "lt"]), "how").required(),
                Param::state("count", ParamKind::Integer, "seen"),
            ],
        };
        let json = serde_json::to_string(&description).unwrap();
        let back: FunctionDescription = serde_json::from_str(&json).unwrap();
        assert_eq!(back, description);
        assert_eq!(
            back.validate(&attrs(json!({"op": "eq"}))).unwrap_err(),
            vec!["attribute \"op\" must be one of \"gt\", \"lt\", got \"eq\"".to_owned()]
        );
    }
}
