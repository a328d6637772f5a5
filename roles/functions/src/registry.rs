//! The function registry: the node functions a processor can run, by name.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use protocol::FunctionDescription;

use crate::function::Function;

/// The functions a processor can run, by name. Fixed once the processor starts.
///
/// Cloning is cheap: the functions are shared.
#[derive(Clone)]
pub struct Registry {
    functions: BTreeMap<String, Arc<dyn Function>>,
    /// The names of the built-in functions: every call of one is short and bounded (a few
    /// microseconds), which a processor may rely on to run small batches without a thread
    /// hand-off. A function registered later is never one of them.
    builtin: BTreeSet<String>,
}

impl Registry {
    /// A registry with no function.
    pub fn empty() -> Self {
        Self {
            functions: BTreeMap::new(),
            builtin: BTreeSet::new(),
        }
    }

    /// A registry with every built-in function (see `docs/functions.md`).
    pub fn builtins() -> Self {
        let functions: BTreeMap<String, Arc<dyn Function>> = crate::builtins::all()
            .into_iter()
            .map(|function| (function.name().to_owned(), function))
            .collect();
        let builtin = functions.keys().cloned().collect();
        Self { functions, builtin }
    }

    /// Adds `function` under its name. Refuses a name already taken, so a user's function never
    /// silently replaces a built-in one, and a name that is empty or holds whitespace.
    pub fn register(&mut self, function: impl Function) -> Result<(), RegistryError> {
        self.register_shared(Arc::new(function))
    }

    /// Adds a function already behind an `Arc`; see [`Registry::register`].
    pub fn register_shared(&mut self, function: Arc<dyn Function>) -> Result<(), RegistryError> {
        let name = function.name().to_owned();
        if name.is_empty()
            || name
                .chars()
                .any(|char| char.is_whitespace() || char.is_control())
        {
            return Err(RegistryError::InvalidName { name });
        }
        if self.functions.contains_key(&name) {
            return Err(RegistryError::Duplicate { name });
        }
        self.functions.insert(name, function);
        Ok(())
    }

    /// Whether `name` is a built-in function (see [`Registry::builtins`]), whose calls are
    /// short and bounded; false for one registered by [`Registry::register`].
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(name)
    }

    /// The function called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Function>> {
        self.functions.get(name)
    }

    /// Whether a function is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    /// The functions, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Function>> {
        self.functions.values()
    }

    /// The function names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(String::as_str)
    }

    /// How many functions there are.
    pub fn len(&self) -> usize {
        self.functions.len()
    }

    /// Whether there is no function.
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    /// Every function with its parameters, sorted by name: what `GET /v1/functions` serves.
    pub fn describe(&self) -> Vec<FunctionDescription> {
        self.iter()
            .map(|function| FunctionDescription {
                name: function.name().to_owned(),
                description: function.description().to_owned(),
                params: function.params(),
            })
            .collect()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_set().entries(self.names()).finish()
    }
}

/// Why a function could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Another function already has this name.
    #[error("a function named \"{name}\" is already registered; give yours another name")]
    Duplicate {
        /// The name asked for.
        name: String,
    },
    /// The name is empty or holds whitespace or control characters.
    #[error("function name {name:?} is not usable: it must be non-empty, without whitespace")]
    InvalidName {
        /// The name asked for.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::function::{FunctionError, Input, NodeContext, Param};
    use serde_json::{json, Value};

    struct Named(&'static str);

    impl Function for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn description(&self) -> &str {
            "test"
        }
        fn params(&self) -> Vec<Param> {
            Vec::new()
        }
        fn call(
            &self,
            _input: &Input<'_>,
            _ctx: &mut NodeContext<'_>,
        ) -> Result<Vec<Value>, FunctionError> {
            Ok(Vec::new())
        }
    }

    /// The built-in registry holds exactly the sixteen functions of SPEC §7.
    #[test]
    fn builtins_are_the_spec_list() {
        let registry = Registry::builtins();
        let names: Vec<&str> = registry.names().collect();
        assert_eq!(
            names,
            vec![
                "average",
                "change",
                "count",
                "filter",
                "max",
                "merge",
                "min",
                "moving-average",
                "pass",
                "pick",
                "rate",
                "scale",
                "sum",
                "threshold",
                "throttle",
                "window",
            ]
        );
        assert_eq!(registry.len(), 16);
        assert!(registry.get("count").is_some());
        assert!(registry.get("nope").is_none());
    }

    /// Registering a name already taken is refused and leaves the first function in place.
    #[test]
    fn duplicate_registration_is_refused() {
        let mut registry = Registry::builtins();
        assert_eq!(
            registry.register(Named("count")),
            Err(RegistryError::Duplicate {
                name: "count".to_owned()
            })
        );
        assert_eq!(registry.get("count").unwrap().description(), {
            crate::builtins::count::Count.description()
        });
        assert_eq!(
            registry.register(Named("count")).unwrap_err().to_string(),
            "a function named \"count\" is already registered; give yours another name"
        );
    }

    /// A user function registers into an empty registry; empty or spaced names are refused.
    #[test]
    fn register_and_invalid_names() {
        let mut registry = Registry::empty();
        assert!(registry.is_empty());
        registry.register(Named("my-function")).unwrap();
        assert_eq!(registry.names().collect::<Vec<_>>(), vec!["my-function"]);
        assert_eq!(
            registry.register(Named("")),
            Err(RegistryError::InvalidName {
                name: String::new()
            })
        );
        assert!(registry.register(Named("two words")).is_err());
        assert_eq!(registry.len(), 1);
    }

    /// Only the built-ins are built-in: a user's function beside them is not.
    #[test]
    fn builtins_are_known_as_such() {
        let mut registry = Registry::builtins();
        registry.register(Named("mine")).unwrap();
        assert!(registry.is_builtin("count"));
        assert!(registry.is_builtin("window"));
        assert!(!registry.is_builtin("mine"));
        assert!(!registry.is_builtin("nope"));
        assert!(!Registry::empty().is_builtin("count"));
    }

    /// describe() serves the exact JSON for a function, sorted by name.
    #[test]
    fn describe_exact_json() {
        let registry = Registry::builtins();
        let described = serde_json::to_value(registry.describe()).unwrap();
        let names: Vec<&str> = described
            .as_array()
            .unwrap()
            .iter()
            .map(|function| function["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, registry.names().collect::<Vec<_>>());
        let moving_average = described
            .as_array()
            .unwrap()
            .iter()
            .find(|function| function["name"] == "moving-average")
            .unwrap();
        assert_eq!(
            moving_average,
            &json!({
                "name": "moving-average",
                "description": "Outputs {\"mean\"} of the last `window` numbers at `field`.",
                "params": [
                    {"name": "field", "type": "pointer", "default": "",
                     "doc": "JSON pointer to the value in the message; \"\" is the whole message.",
                     "state": false, "required": false},
                    {"name": "window", "type": "integer", "default": 10,
                     "doc": "How many of the most recent values to average.",
                     "state": false, "required": false, "minimum": 1},
                    {"name": "values", "type": "array", "default": null,
                     "doc": "State: the last `window` numbers, oldest first.",
                     "state": true, "required": false},
                ]
            })
        );
    }

    /// Every built-in's defaults pass its own validation, and no built-in requires a state attr.
    #[test]
    fn builtin_defaults_are_valid() {
        for function in Registry::builtins().iter() {
            let params = function.params();
            let mut defaults = serde_json::Map::new();
            for param in &params {
                assert!(!(param.state && param.required), "{}", param.name);
                if let Some(default) = &param.default {
                    defaults.insert(param.name.to_owned(), default.clone());
                }
            }
            if let Err(problems) = crate::function::validate_attrs(&params, &defaults) {
                for problem in problems {
                    assert!(
                        problem.ends_with("is required"),
                        "{}: {problem}",
                        function.name()
                    );
                }
            }
        }
    }
}
